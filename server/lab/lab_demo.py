"""``lab.py demo``: up, ssh through knockssh showing each step, down."""

from __future__ import annotations

from lab import Lab, link_spec, new_name


def demo(link: str = "lan") -> int:
    lab = Lab(new_name())
    print(
        f"== bringing up the lab {lab.name}: knockd + sshd + DROP firewall "
        f"in netns {lab.server_ns}, link {link} ({link_spec(link) or 'veth'})",
        flush=True,
    )
    lab.up(link=link)
    try:
        print(f"== {lab.status()}", flush=True)
        print(
            f"== ssh -F {lab.ssh_config} lab  (ProxyCommand knockssh %h %p; -v shows each step)",
            flush=True,
        )
        cfg = lab.path("ssh_config.demo")
        with open(lab.ssh_config) as src, open(cfg, "w") as dst:
            dst.write(
                src.read().replace("ProxyCommand knockssh %h %p", "ProxyCommand knockssh -v %h %p")
            )
        done = lab.in_client(
            [
                "ssh",
                "-F",
                cfg,
                "lab",
                "echo session running: $(id -un)@$(hostname) sees $SSH_CONNECTION",
            ]
        )
        door = "open" if lab.door_open() else "closed"
        print(
            f"== door after the session: {door} "
            f"(knockd closes it after cmd_timeout={lab.cmd_timeout}s)",
            flush=True,
        )
        return done.returncode
    finally:
        print(f"== tearing down {lab.name}", flush=True)
        lab.down()
