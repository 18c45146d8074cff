#!/usr/bin/env python3
"""The knockssh lab: a real knockd + sshd + firewall host in network namespaces.

Two namespaces joined by a veth pair (198.18.0.0/15, the benchmarking range):
the server runs knockd (kept current by ``knockssh-rotator --pidfile``), sshd with
throwaway keys, and a firewall (iptables or nftables) that drops new connections
to sshd unless a knock opened the door. Root only. Used by the pytest fixtures,
the README demo and bench/.

    lab.py up [--name N] [--firewall iptables|nftables]   -> prints the state dir
    lab.py status [--name N]
    lab.py down [--name N]
    lab.py demo                                           -> up, ssh through knockssh, down
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time

STATE_ROOT = "/run/knockssh-lab"
SERVER_IP, CLIENT_IP, PREFIX = "198.18.0.1", "198.18.0.2", 24
SSH_PORT = 22
OPEN_PORT = 2200  # the same sshd, not behind the knock: for pass-through tests
SERVICE = "ssh"
PERIOD = 21600
CMD_TIMEOUT = 10
PACKAGES = {  # command -> Debian package
    "knockd": "knockd",
    "sshd": "openssh-server",
    "ssh": "openssh-client",
    "iptables": "iptables",
    "nft": "nftables",
    "rsync": "rsync",
    "faketime": "faketime",
    "nc": "netcat-openbsd",
    "ip": "iproute2",
    "tcpdump": "tcpdump",
}


def run(
    cmd: list[str], ns: str | None = None, check: bool = True, **kw
) -> subprocess.CompletedProcess:
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


def missing_tools() -> list[str]:
    paths = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
    return sorted({pkg for cmd, pkg in PACKAGES.items() if not shutil.which(cmd, path=paths)})


def install_missing() -> None:
    pkgs = missing_tools()
    if pkgs:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", *pkgs], check=True, env=env)


def unavailable_reason() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, firewall, knockd)"
    if missing_tools():
        return (
            f"missing Debian packages: {' '.join(missing_tools())} (run server/lab/lab.sh install)"
        )
    probe = f"ksprobe{os.getpid()}"
    done = run(["ip", "netns", "add", probe], check=False)
    if done.returncode != 0:
        return f"network namespaces unavailable: {done.stderr.strip()}"
    run(["ip", "netns", "del", probe], check=False)
    return None


class Lab:
    def __init__(self, name: str, cmd_timeout: int = CMD_TIMEOUT) -> None:
        self.name = name
        self.cmd_timeout = cmd_timeout  # seconds knockd keeps the door open
        self.dir = os.path.join(STATE_ROOT, name)
        short = name[-8:]
        self.server_ns, self.client_ns = f"{name}-s", f"{name}-c"
        self.server_if, self.client_if = f"ks{short}s", f"ks{short}c"
        self.server_ip, self.client_ip, self.port = SERVER_IP, CLIENT_IP, SSH_PORT

    # paths
    def path(self, *parts: str) -> str:
        return os.path.join(self.dir, *parts)

    @property
    def knockd_conf(self) -> str:
        return self.path("knockd.conf")

    @property
    def knockd_pidfile(self) -> str:
        return self.path("knockd.pid")

    @property
    def knockd_log(self) -> str:
        return self.path("knockd.log")

    @property
    def ssh_config(self) -> str:
        return self.path("ssh_config")

    @property
    def hosts_toml(self) -> str:
        return self.path("hosts.toml")

    def secret(self) -> str:
        with open(self.path("secret")) as f:
            return f.read().strip()

    def rotator_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KNOCKD_ROTATOR_SECRET": self.secret(),
            "KNOCKD_ROTATOR_PERIOD_MODULO": str(PERIOD),
        }

    def client_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("KNOCKD_ROTATOR_")}
        env["KNOCKSSH_CONFIG"] = self.hosts_toml
        return env

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def in_client(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        if kw.get("env") is None:
            kw["env"] = self.client_env()
        return subprocess.run(["ip", "netns", "exec", self.client_ns, *cmd], **kw)

    def in_server(self, cmd: list[str], **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["ip", "netns", "exec", self.server_ns, *cmd], **kw)

    # lifecycle
    def up(self, firewall: str = "iptables") -> None:
        if self.exists():
            return
        os.makedirs(self.dir, mode=0o700)
        try:
            self._network()
            self._files(firewall)
            self._firewall(firewall)
            self.rotate(reload=False)
            self.start_knockd()
            self._sshd()
            with open(self.path("state.json"), "w") as f:
                json.dump({"firewall": firewall}, f)
        except BaseException:
            self.down()
            raise

    def _network(self) -> None:
        for ns in (self.server_ns, self.client_ns):
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "set", "lo", "up"], ns=ns)
        run(
            [
                "ip",
                "link",
                "add",
                self.server_if,
                "netns",
                self.server_ns,
                "type",
                "veth",
                "peer",
                "name",
                self.client_if,
                "netns",
                self.client_ns,
            ]
        )
        for ns, dev, ip in (
            (self.server_ns, self.server_if, SERVER_IP),
            (self.client_ns, self.client_if, CLIENT_IP),
        ):
            run(["ip", "addr", "add", f"{ip}/{PREFIX}", "dev", dev], ns=ns)
            run(["ip", "link", "set", dev, "up"], ns=ns)
            # no IPv6 on the veth: no router solicitations in knockd's capture
            run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.disable_ipv6=1"], ns=ns, check=False)

    @property
    def netns_etc(self) -> str:
        return f"/etc/netns/{self.client_ns}"

    def _files(self, firewall: str) -> None:
        os.makedirs(self.netns_etc, exist_ok=True)
        with open(os.path.join(self.netns_etc, "hosts"), "w") as f:
            f.write(f"127.0.0.1 localhost\n{SERVER_IP} knocked.lab open.lab\n")
        secret_path = self.path("secret")
        fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, (secrets.token_hex(32) + "\n").encode())
        os.close(fd)
        if firewall == "nftables":
            start = "nft add element inet knocklab allowed { %IP% }"
            stop = "nft delete element inet knocklab allowed { %IP% }"
        else:
            rule = f"INPUT -s %IP% -p tcp --dport {SSH_PORT} -j ACCEPT"
            start = f"/usr/sbin/iptables -C {rule} || /usr/sbin/iptables -I {rule}"
            stop = f"/usr/sbin/iptables -D {rule}"
        conf = f"""\
[options]
    LogFile   = {self.knockd_log}
    PidFile   = {self.knockd_pidfile}
    Interface = {self.server_if}

# kept current by knockssh-rotator
[{SERVICE}_ROTATOR]
    sequence      = 1:tcp
    seq_timeout   = 5
    tcpflags      = syn
    start_command = {start}
    cmd_timeout   = {self.cmd_timeout}
    stop_command  = {stop}
"""
        fd = os.open(self.knockd_conf, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, conf.encode())
        os.close(fd)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.path("host_key")])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.path("client_key")])
        shutil.copy(self.path("client_key.pub"), self.path("authorized_keys"))
        with open(self.path("sshd_config"), "w") as f:
            f.write(f"""\
ListenAddress {SERVER_IP}:{SSH_PORT}
ListenAddress {SERVER_IP}:{OPEN_PORT}
HostKey {self.path("host_key")}
PidFile {self.path("sshd.pid")}
AuthorizedKeysFile {self.path("authorized_keys")}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LoginGraceTime 20
Subsystem sftp internal-sftp
""")
        with open(self.ssh_config, "w") as f:
            f.write(f"""\
Host *
    User root
    IdentityFile {self.path("client_key")}
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 15
Host lab
    HostName knocked.lab
    ProxyCommand knockssh %h %p
Host lab-fdpass
    HostName knocked.lab
    ProxyCommand knockssh --fdpass %h %p
    ProxyUseFdpass yes
Host plain
    HostName knocked.lab
Host open
    HostName open.lab
    Port {OPEN_PORT}
    ProxyCommand knockssh %h %p
""")
        fd = os.open(self.hosts_toml, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(
            fd,
            f"""\
[defaults]
period = {PERIOD}
connect_timeout = 6

[[host]]
match = ["{SERVER_IP}", "knocked.lab", "!open.lab"]
service = "{SERVICE}"
secret_file = "{secret_path}"
""".encode(),
        )
        os.close(fd)

    def _firewall(self, firewall: str) -> None:
        if firewall == "nftables":
            rules = f"""
table inet knocklab {{
    set allowed {{ type ipv4_addr; }}
    chain input {{
        type filter hook input priority 0; policy accept;
        ct state established,related accept
        ip saddr @allowed tcp dport {SSH_PORT} accept
        tcp dport {SSH_PORT} drop
    }}
}}
"""
            run(["nft", "-f", "-"], ns=self.server_ns, input=rules)
        else:
            ipt = ["/usr/sbin/iptables"]
            run(
                [
                    *ipt,
                    "-A",
                    "INPUT",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "ESTABLISHED,RELATED",
                    "-j",
                    "ACCEPT",
                ],
                ns=self.server_ns,
            )
            run(
                [*ipt, "-A", "INPUT", "-p", "tcp", "--dport", str(SSH_PORT), "-j", "DROP"],
                ns=self.server_ns,
            )

    def rotate(
        self,
        reload: bool = True,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        at: int | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        cmd = ["knockssh-rotator", "--config", self.knockd_conf, "--no-schedule"]
        cmd += ["--pidfile", self.knockd_pidfile] if reload else ["--no-reload"]
        if at is not None:
            cmd += ["--at", str(at)]
        return run(cmd + (extra or []), check=check, env=env or self.rotator_env())

    def start_knockd(self) -> None:
        if os.path.exists(self.knockd_log):
            os.unlink(self.knockd_log)
        run(["knockd", "-d", "-c", self.knockd_conf, "-i", self.server_if], ns=self.server_ns)
        if not wait_for(lambda: "listening on" in read(self.knockd_log), 10):
            raise RuntimeError(f"knockd did not start: {read(self.knockd_log)}")

    def knockd_pid(self) -> int | None:
        try:
            pid = int(read(self.knockd_pidfile).strip())
        except ValueError:
            return None
        return pid if _not_zombie(pid) else None  # a gone process has no /proc entry

    def pending_stops(self) -> list[int]:
        """knockd's children still waiting out cmd_timeout to run a stop_command."""
        pid = self.knockd_pid()
        return _children(pid) if pid else []

    def _sshd(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        run(["/usr/sbin/sshd", "-f", self.path("sshd_config")], ns=self.server_ns)
        if not wait_for(lambda: os.path.exists(self.path("sshd.pid")), 10):
            raise RuntimeError("sshd did not start")

    def stop_sshd(self) -> None:
        _kill_pidfile(self.path("sshd.pid"))

    def door_open(self) -> bool:
        """Is a rule admitting the client in the firewall now?"""
        state = self.firewall()
        if state == "nftables":
            out = run(
                ["nft", "list", "set", "inet", "knocklab", "allowed"], ns=self.server_ns
            ).stdout
            return CLIENT_IP in out
        out = run(["/usr/sbin/iptables", "-S", "INPUT"], ns=self.server_ns).stdout
        return f"-s {CLIENT_IP}/32" in out

    def close_door(self) -> None:
        """Remove the client's rule, and cancel the stop_commands knockd still has
        pending from earlier knocks: one firing later would remove the rule that the
        next knock adds (knockd waits out cmd_timeout in a forked child)."""
        for child in self.pending_stops():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        if self.firewall() == "nftables":
            run(["nft", "flush", "set", "inet", "knocklab", "allowed"], ns=self.server_ns)
            return
        rule = ["INPUT", "-s", CLIENT_IP, "-p", "tcp", "--dport", str(SSH_PORT), "-j", "ACCEPT"]
        while (
            run(["/usr/sbin/iptables", "-D", *rule], ns=self.server_ns, check=False).returncode == 0
        ):
            pass

    def firewall(self) -> str:
        try:
            with open(self.path("state.json")) as f:
                return str(json.load(f)["firewall"])
        except (OSError, ValueError, KeyError):
            return "iptables"

    def down(self) -> None:
        for ns in (self.server_ns, self.client_ns):
            pids = run(["ip", "netns", "pids", ns], check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.netns_etc, ignore_errors=True)

    def status(self) -> str:
        if not self.exists():
            return f"{self.name}: down"
        knockd = self.knockd_pid()
        sshd = read(self.path("sshd.pid")).strip()
        return (
            f"{self.name}: up in {self.dir}; server {self.server_ns} {SERVER_IP} "
            f"(knockd pid {knockd or 'DEAD'}, sshd pid {sshd or '?'}, "
            f"{self.firewall()}), client {self.client_ns} {CLIENT_IP}; "
            f"door {'open' if self.door_open() else 'closed'}"
        )


def read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _state_and_parent(pid: int | str) -> tuple[str, int] | None:
    """A process's state letter and parent pid from /proc, or None once it is gone."""
    stat = read(f"/proc/{pid}/stat")
    fields = stat.rsplit(")", 1)[1].split() if stat else []  # after "(comm)"
    return (fields[0], int(fields[1])) if fields else None


def _not_zombie(pid: int) -> bool:
    found = _state_and_parent(pid)
    return found is not None and found[0] != "Z"


def _children(pid: int) -> list[int]:
    """Live (not zombie) children of ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        process = _state_and_parent(entry) if entry.isdigit() else None
        if process is not None and process[0] != "Z" and process[1] == pid:
            found.append(int(entry))
    return found


def _kill_pidfile(path: str) -> None:
    try:
        os.kill(int(read(path).strip()), signal.SIGTERM)
    except (ValueError, ProcessLookupError):
        pass


def wait_for(condition, timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return bool(condition())


def new_name() -> str:
    return f"kl{os.getpid() % 100000}{secrets.token_hex(2)}"


def demo() -> int:
    lab = Lab(new_name())
    print(
        f"== bringing up the lab {lab.name}: knockd + sshd + DROP firewall "
        f"in netns {lab.server_ns}",
        flush=True,
    )
    lab.up()
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", choices=["up", "down", "status", "demo", "install"])
    p.add_argument("--name", default="knocklab")
    p.add_argument("--firewall", choices=["iptables", "nftables"], default="iptables")
    args = p.parse_args(argv)
    if args.action == "install":
        install_missing()
        return 0
    reason = unavailable_reason()
    if reason:
        print(f"lab: {reason}", file=sys.stderr)
        return 1
    if args.action == "demo":
        return demo()
    lab = Lab(args.name)
    if args.action == "up":
        lab.up(args.firewall)
        print(lab.dir)
    elif args.action == "down":
        lab.down()
    print(lab.status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
