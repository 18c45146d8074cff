#!/usr/bin/env python3
"""The knockssh lab: a real knockd + sshd + firewall host in network namespaces.

Two namespaces joined by a veth pair, dual-stack (198.18.0.0/15 and 2001:2::/48,
the benchmarking ranges): the server runs knockd (kept current by
``knockssh-rotator --pidfile``, with ``start_command_6`` for IPv6 knockers), sshd
with throwaway keys, and a firewall (iptables + ip6tables, or one nftables table
for both families) that drops new connections to sshd unless a knock opened the
door. Root only. Used by the pytest fixtures, the README demo and bench/.

    lab.py install                              the Debian packages the lab needs
    lab.py up [--name N] [--firewall iptables|nftables] [--link PROFILE]  -> the state dir
    lab.py status [--name N]
    lab.py down [--name N]
    lab.py demo [--link PROFILE]               -> up, ssh through knockssh showing each step, down

--link: lan (a veth, the default), wan, mobile, lossy (see LINKS), or a spec for
linkbridge.py such as delay=30ms,jitter=10ms,loss=1%,dup=0.1%,rate=50mbit,order=keep.
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

import container
import systemd_host
from lab_base import (
    CLIENT_IP,
    CLIENT_IP6,
    CMD_TIMEOUT,
    OPEN_PORT,
    PERIOD,
    PREFIX,
    PREFIX6,
    SERVER_IP,
    SERVER_IP6,
    SSH_PORT,
    STATE_ROOT,
    _children,
    _kill_netns_processes,
    _kill_pidfile,
    install_missing,
    new_name,
    pid_alive,
    read,
    run,
    unavailable_reason,
    wait_for,
    write_private,
)
from lab_capture import Capture
from lab_files import (
    ETC_HOSTS,
    LINKS,
    hosts_toml,
    how_to_use,
    knockd_conf,
    link_spec,
    ssh_config,
    sshd_config,
)
from lab_firewalls import FIREWALLS, Firewall
from lab_hosts import HOST_KINDS, ContainerHost, Host, SystemdHost

__all__ = [  # what the tests and bench/ take from the lab
    "CLIENT_IP",
    "CLIENT_IP6",
    "CMD_TIMEOUT",
    "LINKS",
    "OPEN_PORT",
    "PERIOD",
    "SERVER_IP",
    "Capture",
    "Lab",
    "link_spec",
    "new_name",
    "read",
    "run",
    "unavailable_reason",
    "wait_for",
    "write_private",
]
HOSTS = tuple(HOST_KINDS)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any


class Lab:
    def __init__(self, name: str, cmd_timeout: int = CMD_TIMEOUT) -> None:
        self.name = name
        self.cmd_timeout = cmd_timeout  # seconds knockd keeps the door open
        self.dir = os.path.join(STATE_ROOT, name)
        short = name[-8:]
        self.short = short
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

    def client_env(self, machine: str = "client") -> dict[str, str]:
        """The client's environment; each ``machine`` has its own runtime and state
        directories (knockssh's door locks and failure log), as separate hosts do."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("KNOCKD_ROTATOR_")}
        env["KNOCKSSH_CONFIG"] = self.hosts_toml
        for var, kind in (("XDG_RUNTIME_DIR", "run"), ("XDG_STATE_HOME", "state")):
            env[var] = self.path(f"{machine}-{kind}")
            os.makedirs(env[var], mode=0o700, exist_ok=True)
        return env

    def forget_doors(self, machine: str = "client") -> None:
        """Make the next connect from ``machine`` a first one: drop knockssh's door
        locks, and with them its note of when a door last opened."""
        locks = os.path.join(self.client_env(machine)["XDG_RUNTIME_DIR"], "knockssh")
        shutil.rmtree(locks, ignore_errors=True)

    def exists(self) -> bool:
        return os.path.isdir(self.dir)

    def in_client(self, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        return self.in_ns(self.client_ns, cmd, **kw)

    def in_ns(self, ns: str, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        if kw.get("env") is None:
            kw["env"] = self.client_env()
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], **kw)

    def in_server(self, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[Any]:
        return subprocess.run(["ip", "netns", "exec", self.server_ns, *cmd], **kw)

    # lifecycle
    def up(
        self,
        firewall: str = "iptables",
        link: str = "lan",
        host: str = "netns",
        setup: str = "server-setup",
    ) -> None:
        """Bring the lab up behind ``firewall`` over ``link``: a profile of LINKS, or a
        spec such as ``delay=30ms,jitter=10ms,loss=1%`` (linkbridge.parse_spec).
        ``host`` is ``netns`` (knockd and sshd run in the server namespace: fast) or
        ``systemd`` (a booted Debian 12, set up by the README's ``setup``: its "Server
        setup", or the server part of its "Quick start") or ``container``."""
        if self.exists():
            return
        if host not in HOSTS:
            raise ValueError(f"unknown host {host!r} (choose from {', '.join(HOSTS)})")
        if setup not in systemd_host.SETUPS:
            raise ValueError(
                f"unknown setup {setup!r} (choose from {', '.join(systemd_host.SETUPS)})"
            )
        spec = link_spec(link)
        os.makedirs(self.dir, mode=0o700)
        try:
            with open(self.path("state.json"), "w") as f:
                json.dump({"firewall": firewall, "link": link, "host": host, "setup": setup}, f)
            self._network(spec)
            self._files()
            self.host_kind().start()
        except BaseException:
            self.down()
            raise

    def host_kind(self) -> Host:
        """What kind of server this lab has (``up``'s ``host``)."""
        return HOST_KINDS[self.host()](self)

    def guest(self) -> systemd_host.Guest:
        """The booted Debian of ``up(host="systemd")``: a copy of the checkout at /src,
        read-only, with the wheel built from it in /src/dist."""
        return SystemdHost(self).guest()

    def knockd_container(self) -> container.Container:
        """The knockd container of ``up(host="container")``: the lab's secret and the
        client's public key mounted into it."""
        return ContainerHost(self).knockd_container()

    def setup(self) -> str:
        """Which part of the README set a systemd host up."""
        return str(self._state().get("setup", "server-setup"))

    def host(self) -> str:
        return str(self._state().get("host", "netns"))

    def _network(self, spec: str | None) -> None:
        for ns in (self.server_ns, self.client_ns):
            run(["ip", "netns", "add", ns])
            run(["ip", "link", "set", "lo", "up"], ns=ns)
        if spec is None:
            veth = ["ip", "link", "add", self.server_if, "netns", self.server_ns, "type", "veth"]
            run([*veth, "peer", "name", self.client_if, "netns", self.client_ns])
        else:
            self._bridge(spec)
        for ns, dev, ip, ip6 in (
            (self.server_ns, self.server_if, SERVER_IP, SERVER_IP6),
            (self.client_ns, self.client_if, CLIENT_IP, CLIENT_IP6),
        ):
            # IPv6 without router solicitations or DAD delay: addresses usable at once
            for key, value in (("accept_ra", 0), ("router_solicitations", 0), ("accept_dad", 0)):
                run(["sysctl", "-qw", f"net.ipv6.conf.{dev}.{key}={value}"], ns=ns, check=False)
            run(["ip", "addr", "add", f"{ip}/{PREFIX}", "dev", dev], ns=ns)
            run(["ip", "addr", "add", f"{ip6}/{PREFIX6}", "dev", dev, "nodad"], ns=ns)
            run(["ip", "link", "set", dev, "up"], ns=ns)
        for ns, dev in ((self.server_ns, self.server_if), (self.client_ns, self.client_if)):
            self._settle(ns, dev)

    @staticmethod
    def _settle(ns: str, dev: str) -> None:
        """Wait for the link-local address the kernel adds once the link has a
        carrier (later, on a loaded machine): knockd, started before it, would
        be restarted by a follower that sees the interface gain an address."""
        show = ["ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link"]
        if not wait_for(lambda: run(show, ns=ns, check=False).stdout.strip(), 10):
            raise RuntimeError(f"{dev}: no link-local address within 10s")

    def _bridge(self, spec: str) -> None:
        """A TUN device in each namespace and linkbridge.py between them, impairing
        both directions with ``spec``. It runs in the server namespace, so the
        teardown's kill of that namespace's processes ends it."""
        for ns, dev in ((self.server_ns, self.server_if), (self.client_ns, self.client_if)):
            run(["ip", "tuntap", "add", "dev", dev, "mode", "tun"], ns=ns)
        ready = self.path("bridge.pid")
        ends = [self.client_ns, self.client_if, self.server_ns, self.server_if]
        bridge = os.path.join(os.path.dirname(os.path.abspath(__file__)), "linkbridge.py")
        with open(self.path("bridge.log"), "wb") as log:
            subprocess.Popen(
                [sys.executable, bridge, "--ready", ready, *ends, spec, spec],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        if not wait_for(lambda: os.path.exists(ready), 10):
            raise RuntimeError(f"the link bridge did not start: {read(self.path('bridge.log'))}")

    def link(self) -> str:
        """The link profile (or spec) the lab is on now."""
        return str(self._state().get("link", "lan"))

    def move(self, link: str, gateway: str | None = None) -> None:
        """The client moves to another network, as a laptop does, without the lab
        coming down: the bridge impairs with ``link``'s spec from now on (``lan``:
        none) and the client's default route goes via ``gateway`` (an address on
        the link; None: no default route), which is how knockssh tells networks
        apart. Only for a lab brought up over the bridge (an impaired ``link``)."""
        ready = self.path("bridge.pid")
        if not os.path.exists(ready):
            raise ValueError("move needs a lab brought up over the bridge (an impaired link)")
        spec = link_spec(link) or ""
        pid, generation = (int(word) for word in read(ready).split())
        write_private(ready + ".next", f"{spec}\n{spec}\n", exclusive=False)
        os.kill(pid, signal.SIGHUP)
        if not wait_for(lambda: read(ready).split() == [str(pid), str(generation + 1)], 10):
            raise RuntimeError(
                f"the link bridge did not take {link}: {read(self.path('bridge.log'))}"
            )
        route = ["ip", "route", "replace", "default", "via", gateway] if gateway else None
        run(["ip", "route", "del", "default"], ns=self.client_ns, check=False)
        if route:
            run(route, ns=self.client_ns)
        state = self._state()
        state["link"] = link
        with open(self.path("state.json"), "w") as f:
            json.dump(state, f)

    @property
    def netns_etc(self) -> str:
        return f"/etc/netns/{self.client_ns}"

    def _files(self) -> None:
        os.makedirs(self.netns_etc, exist_ok=True)
        with open(os.path.join(self.netns_etc, "hosts"), "w") as f:
            f.write(ETC_HOSTS)
        secret_path = self.path("secret")
        write_private(secret_path, secrets.token_hex(32) + "\n")
        write_private(self.knockd_conf, knockd_conf(self))
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.path("host_key")])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.path("client_key")])
        shutil.copy(self.path("client_key.pub"), self.path("authorized_keys"))
        with open(self.path("sshd_config"), "w") as f:
            f.write(sshd_config(self))
        with open(self.ssh_config, "w") as f:
            f.write(ssh_config(self))
        write_private(self.hosts_toml, hosts_toml(secret_path, self.link()))

    def rotate(
        self,
        reload: bool = True,
        extra: list[str] | None = None,
        env: dict[str, str] | None = None,
        at: int | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        cmd = ["knockssh-rotator", "--config", self.knockd_conf, "--no-schedule"]
        cmd += ["--pidfile", self.knockd_pidfile] if reload else ["--no-reload"]
        if at is not None:
            cmd += ["--at", str(at)]
        return run(cmd + (extra or []), check=check, env=env or self.rotator_env())

    def reload_knockd(self) -> None:
        """SIGHUP knockd and wait until it has re-read its file."""
        mark = len(read(self.knockd_log))
        pid = self.knockd_pid()
        assert pid is not None, "knockd is not running"
        os.kill(pid, signal.SIGHUP)
        if not wait_for(lambda: "re-reading" in read(self.knockd_log)[mark:], 10):
            raise RuntimeError("knockd did not re-read its file")

    def start_knockd(self) -> None:
        if os.path.exists(self.knockd_log):
            os.unlink(self.knockd_log)
        run(["knockd", "-d", "-c", self.knockd_conf, "-i", self.server_if], ns=self.server_ns)
        if not wait_for(lambda: "listening on" in read(self.knockd_log), 10):
            raise RuntimeError(f"knockd did not start: {read(self.knockd_log)}")

    def sequences_started(self, since: int = 0) -> int:
        """How many knock sequences knockd saw begin after log offset ``since``
        (``len(read(knockd_log))`` taken earlier)."""
        return read(self.knockd_log)[since:].count(": Stage 1\n")

    def knockd_pid(self) -> int | None:
        try:
            pid = int(read(self.knockd_pidfile).strip())
        except ValueError:
            return None
        return pid if pid_alive(pid) else None  # a zombie or a gone process is not alive

    def pending_stops(self) -> list[int]:
        """knockd's children still waiting out cmd_timeout to run a stop_command (the
        lab's own knockd; the systemd host's are in its guest, see close_door)."""
        pid = self.knockd_pid()
        return _children(pid) if pid else []

    def start_sshd(self) -> None:
        os.makedirs("/run/sshd", exist_ok=True)
        run(["/usr/sbin/sshd", "-f", self.path("sshd_config")], ns=self.server_ns)
        if not wait_for(lambda: os.path.exists(self.path("sshd.pid")), 10):
            raise RuntimeError("sshd did not start")

    def stop_sshd(self) -> None:
        _kill_pidfile(self.path("sshd.pid"))

    def door_open(self, address: str = CLIENT_IP) -> bool:
        """Is a rule admitting ``address`` (the client, by default over IPv4) in place now?"""
        return self.firewall().admits(address)

    def close_door(self) -> None:
        """Remove the client's rules, and cancel the stop_commands knockd still has
        pending from earlier knocks: one firing later would remove the rule that the
        next knock adds (knockd waits out cmd_timeout in a forked child)."""
        self.host_kind().cancel_pending_stops()
        self.firewall().close()

    def _state(self) -> dict[str, str]:
        try:
            with open(self.path("state.json")) as f:
                return dict(json.load(f))
        except (OSError, ValueError):
            return {}

    def firewall(self) -> Firewall:
        return FIREWALLS[self._state().get("firewall", "iptables")](self.server_ns)

    def note_firewall(self, name: str) -> None:
        """The firewall the server really has (a guest's init chose it)."""
        state = {**self._state(), "firewall": name}
        with open(self.path("state.json"), "w") as f:
            json.dump(state, f)

    @contextlib.contextmanager
    def nat_clients(self, count: int) -> Iterator[list[str]]:
        """``count`` more client namespaces behind the client namespace, which
        masquerades them: knockd sees all of them as CLIENT_IP, as machines behind
        one NAT. Yields their namespace names; always removes what it made."""
        made: list[str] = []
        masquerade = ["POSTROUTING", "-o", self.client_if, "-j", "MASQUERADE"]
        try:
            run(["sysctl", "-qw", "net.ipv4.ip_forward=1"], ns=self.client_ns)
            run(["iptables", "-t", "nat", "-A", *masquerade], ns=self.client_ns)
            for i in range(1, count + 1):
                ns = f"{self.name}-n{i}"
                run(["ip", "netns", "add", ns])
                made.append(ns)
                inner, outer = f"ks{self.short}m{i}", f"ks{self.short}n{i}"
                # made in the new namespace, then one end moved to the client's
                run(["ip", "link", "add", inner, "type", "veth", "peer", "name", outer], ns=ns)
                run(["ip", "link", "set", outer, "netns", self.client_ns], ns=ns)
                run(["ip", "addr", "add", f"198.19.{i}.1/24", "dev", outer], ns=self.client_ns)
                run(["ip", "link", "set", outer, "up"], ns=self.client_ns)
                run(["ip", "link", "set", "lo", "up"], ns=ns)
                run(["ip", "addr", "add", f"198.19.{i}.2/24", "dev", inner], ns=ns)
                run(["ip", "link", "set", inner, "up"], ns=ns)
                run(["ip", "route", "add", "default", "via", f"198.19.{i}.1"], ns=ns)
                os.makedirs(f"/etc/netns/{ns}", exist_ok=True)
                with open(f"/etc/netns/{ns}/hosts", "w") as f:
                    f.write(ETC_HOSTS)
            yield made
        finally:
            for i, ns in enumerate(made, 1):
                _kill_netns_processes(ns)
                # the pair now: a deleted namespace's devices go later, in the background,
                # and the next NAT machine of the same number would find its name taken
                run(["ip", "link", "del", f"ks{self.short}n{i}"], ns=self.client_ns, check=False)
                run(["ip", "netns", "del", ns], check=False)
                shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
            run(["iptables", "-t", "nat", "-D", *masquerade], ns=self.client_ns, check=False)

    def down(self) -> None:
        self.host_kind().stop()
        for ns in (self.server_ns, self.client_ns):
            _kill_netns_processes(ns)
            run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.netns_etc, ignore_errors=True)

    def status(self) -> str:
        if not self.exists():
            return f"{self.name}: down"
        return (
            f"{self.name}: up in {self.dir}; server {self.server_ns} {SERVER_IP} {SERVER_IP6} "
            f"({self.host_kind().describe()}), client {self.client_ns} {CLIENT_IP} "
            f"{CLIENT_IP6}, link {self.link()}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("action", choices=["up", "down", "status", "demo", "install"])
    p.add_argument("--name", default="knocklab")
    p.add_argument("--firewall", choices=["iptables", "nftables"], default="iptables")
    p.add_argument(
        "--host",
        choices=HOSTS,
        default="netns",
        help="netns: knockd and sshd in the server namespace (fast); systemd: a booted "
        "Debian 12 (systemd-nspawn) set up by the README's server setup; container: "
        "server/container/ under podman",
    )
    p.add_argument(
        "--link",
        default="lan",
        help=f"{', '.join(LINKS)}, or delay=...,jitter=...,loss=...,dup=...,rate=...,order=keep",
    )
    args = p.parse_args(argv)
    if args.action == "install":
        install_missing()
        return 0
    reason = unavailable_reason()
    if reason:
        print(f"lab: {reason}", file=sys.stderr)
        return 1
    if args.action == "demo":
        from lab_demo import demo

        return demo(args.link)
    lab = Lab(args.name)
    if args.action == "up":
        try:
            lab.up(args.firewall, args.link, args.host)
        except ValueError as exc:
            print(f"lab: {exc}", file=sys.stderr)
            return 2
        print(lab.dir)
        print(how_to_use(lab), file=sys.stderr)
    elif args.action == "down":
        lab.down()
    print(lab.status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
