#!/usr/bin/env python3
"""The knockssh lab: a real knockd + sshd + firewall host in network namespaces.

Two namespaces joined by a veth pair, dual-stack (198.18.0.0/15 and 2001:2::/48,
the benchmarking ranges): the server runs knockd (kept current by
``knockssh-rotator --pidfile``, with ``start_command_6`` for IPv6 knockers), sshd
with throwaway keys, and a firewall (iptables + ip6tables, or one nftables table
for both families) that drops new connections to sshd unless a knock opened the
door. Root only. Used by the pytest fixtures, the README demo and bench/.

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

if __package__ is None or __package__ == "":  # run as a script: the checkout's rotator
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from rotator import server_setup  # the lab runs what knockssh-rotator init ships
from rotator.proc import wait_for as wait_for  # the one wait, for the lab's users

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

STATE_ROOT = "/run/knockssh-lab"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HOSTS = ("netns", "systemd", "container")
# What an admin's root shell has; the secret and the lab's settings stay out of the guest
GUEST_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}
SERVER_IP, CLIENT_IP, PREFIX = "198.18.0.1", "198.18.0.2", 24
SERVER_IP6, CLIENT_IP6, PREFIX6 = "2001:2::1", "2001:2::2", 64
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
    "man": "man-db",  # the man pages' tests
    "nc": "netcat-openbsd",
    "ip": "iproute2",
    "tcpdump": "tcpdump",
    "knock": "knockd",
    "systemd-nspawn": "systemd-container",  # the systemd host (--host systemd)
    "mmdebstrap": "mmdebstrap",
    "podman": "podman",  # the knockd container (--host container), with:
    "runc": "runc",
    "conmon": "conmon",
    "netavark": "netavark",
    "catatonit": "catatonit",
}


def run(
    cmd: list[str], ns: str | None = None, check: bool = True, **kw: Any
) -> subprocess.CompletedProcess[str]:
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    return subprocess.run(cmd, check=check, text=True, capture_output=True, **kw)


def missing_tools() -> list[str]:
    paths = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/lib/podman"
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


def write_private(path: str, text: str, exclusive: bool = True) -> None:
    """Write ``text`` to a file only its owner can read (0600)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


# -- firewalls: one class per backend ------------------------------------------


class Firewall:
    """The server's firewall as ``knockssh-rotator init`` sets it up (its rules and
    knockd's start/stop commands come from ``rotator.server_setup``), and what the
    tests observe of it: is an address admitted, close every door."""

    name = ""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def install(self) -> None:
        for command in server_setup.firewall_rules(SSH_PORT, self.name):
            run(["sh", "-c", command], ns=self.ns)

    def admits(self, address: str) -> bool:
        """Is a rule admitting ``address`` to sshd in place now?"""
        raise NotImplementedError

    def close(self) -> None:
        """Remove every knocked-in address."""
        raise NotImplementedError


IPTABLES = {4: "/usr/sbin/iptables", 6: "/usr/sbin/ip6tables"}


class Iptables(Firewall):
    name = "iptables"
    TOOLS = IPTABLES

    def _rule(self, source: str) -> list[str]:
        return ["INPUT", "-s", source, "-p", "tcp", "--dport", str(SSH_PORT), "-j", "ACCEPT"]

    def admits(self, address: str) -> bool:
        six = ":" in address
        out = run([self.TOOLS[6 if six else 4], "-S", "INPUT"], ns=self.ns).stdout
        return f"-s {address}/{128 if six else 32} " in out

    def close(self) -> None:
        for tool, source in ((self.TOOLS[4], CLIENT_IP), (self.TOOLS[6], CLIENT_IP6)):
            while run([tool, "-D", *self._rule(source)], ns=self.ns, check=False).returncode == 0:
                pass


class Nftables(Firewall):
    name = "nftables"
    TABLE = server_setup.NFT_TABLE

    def admits(self, address: str) -> bool:
        nft_set = "allowed6" if ":" in address else "allowed"
        out = run(["nft", "list", "set", "inet", self.TABLE, nft_set], ns=self.ns).stdout
        return address in out

    def close(self) -> None:
        for nft_set in ("allowed", "allowed6"):
            run(["nft", "flush", "set", "inet", self.TABLE, nft_set], ns=self.ns)


FIREWALLS: dict[str, type[Firewall]] = {f.name: f for f in (Iptables, Nftables)}


# -- configuration files ---------------------------------------------------------


def knockd_conf(lab: Lab) -> str:
    """What init writes (its door commands, its firewall's), with the lab's log and
    pidfile (the tests read both) and its short timeouts."""
    return server_setup.knockd_conf_text(
        lab.server_if,
        SSH_PORT,
        lab.firewall().name,
        SERVICE,
        log_file=lab.knockd_log,
        pid_file=lab.knockd_pidfile,
        seq_timeout=5,
        cmd_timeout=lab.cmd_timeout,
    )


def sshd_config(lab: Lab) -> str:
    return f"""\
ListenAddress {SERVER_IP}:{SSH_PORT}
ListenAddress [{SERVER_IP6}]:{SSH_PORT}
ListenAddress {SERVER_IP}:{OPEN_PORT}
ListenAddress [{SERVER_IP6}]:{OPEN_PORT}
HostKey {lab.path("host_key")}
PidFile {lab.path("sshd.pid")}
AuthorizedKeysFile {lab.path("authorized_keys")}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LoginGraceTime 20
MaxStartups 200
Subsystem sftp internal-sftp
"""


def ssh_config(lab: Lab) -> str:
    return f"""\
Host *
    User root
    IdentityFile {lab.path("client_key")}
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 15
Host lab
    HostName knocked.lab
    ProxyCommand knockssh %h %p
Host lab6
    HostName knocked6.lab
    ProxyCommand knockssh %h %p
Host dual
    HostName dual.lab
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
Host inner
    HostName {SERVER_IP}
    Port {OPEN_PORT}
    ProxyJump lab
"""


def hosts_toml(secret_path: str, link: str) -> str:
    # on the veth, failure tests end sooner; an impaired link gets the client's default
    timeout = "connect_timeout = 6\n" if link == "lan" else ""
    return f"""\
[defaults]
period = {PERIOD}
{timeout}
[[host]]
match = ["{SERVER_IP}", "{SERVER_IP6}", "knocked.lab", "knocked6.lab", "dual.lab", "!open.lab"]
service = "{SERVICE}"
secret_file = "{secret_path}"
"""


# dual.lab: IPv6 first, as a resolver orders a dual-stack name with global addresses
ETC_HOSTS = f"""\
127.0.0.1 localhost
{SERVER_IP} knocked.lab open.lab
{SERVER_IP6} knocked6.lab open6.lab
{SERVER_IP6} dual.lab
{SERVER_IP} dual.lab
"""


# Link profiles, each way: lan is the plain veth; the others go through linkbridge.py
LINKS: dict[str, str | None] = {
    "lan": None,
    "wan": "delay=25ms,jitter=5ms,order=keep",
    "mobile": "delay=40ms,jitter=20ms,loss=2%",  # per-packet jitter: packets overtake
    "lossy": "delay=10ms,loss=10%",
}


def link_spec(link: str) -> str | None:
    """The linkbridge spec of a profile name or of a spec given as is (None: veth)."""
    if link in LINKS:
        return LINKS[link]
    if "=" not in link:
        raise ValueError(f"unknown link profile {link!r} (one of {', '.join(LINKS)}, or k=v,...)")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from linkbridge import parse_spec

    parse_spec(link)  # refuse a bad spec before anything is made
    return link


MARKER_PORT = 9  # discard: a datagram the client sends to mark the end of a capture


class Capture:
    """tcpdump in the server namespace, as a context manager. On leaving, the client
    sends a marker datagram and the capture waits until tcpdump has written it, so
    every packet sent before is in the file (no sleep). ``packets()`` gives
    (destination address, destination port) of each captured packet in order."""

    def __init__(self, lab: Lab, bpf: str) -> None:
        self.lab = lab
        self.file = lab.path(f"capture-{secrets.token_hex(3)}.pcap")
        marked = f"({bpf}) or (udp and dst port {MARKER_PORT})"
        self.cmd = ["tcpdump", "-i", lab.server_if, "--immediate-mode", "-U", "-n"]
        self.cmd += ["-w", self.file, marked]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.server_ns, *self.cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for(lambda: os.path.exists(self.file), 10):
            raise RuntimeError("tcpdump did not start")
        return self

    def _mark(self) -> bool:
        """Send the marker from the client; has tcpdump written one yet?"""
        send = f"echo mark > /dev/udp/{SERVER_IP}/{MARKER_PORT}"
        run(["bash", "-c", send], ns=self.lab.client_ns, check=False)
        marker = f"> {SERVER_IP}.{MARKER_PORT}: UDP"
        return marker in run(["tcpdump", "-n", "-r", self.file], check=False).stdout

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        try:
            if not wait_for(self._mark, 10, step=0.1):
                raise RuntimeError("the capture's end marker never arrived")
        finally:
            self.proc.terminate()
            self.proc.wait(10)

    def packets(self) -> list[tuple[str, int]]:
        dump = run(["tcpdump", "-n", "-r", self.file]).stdout
        found = []
        for line in dump.splitlines():
            if " > " not in line or ": " not in line.split(" > ", 1)[1]:
                continue
            dst = line.split(" > ", 1)[1].split(": ", 1)[0]  # 198.18.0.1.2345 or 2001:2::1.2345
            address, _, port = dst.rpartition(".")
            if port.isdigit() and not (port == str(MARKER_PORT) and "UDP" in line):
                found.append((address, int(port)))
        return found


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
            if host == "systemd":
                self._systemd_host()
                return
            if host == "container":
                self._container_host()
                return
            self.firewall().install()
            self.rotate(reload=False)
            self.start_knockd()
            self._sshd()
        except BaseException:
            self.down()
            raise

    def guest(self) -> systemd_host.Guest:
        """The booted Debian of ``up(host="systemd")``: a copy of the checkout at /src,
        read-only, with the wheel built from it in /src/dist."""
        binds = {self.path("src"): "/src"}
        return systemd_host.Guest(self.name, self.server_ns, self.path("guest"), binds)

    def _checkout_with_wheel(self) -> str:
        """A copy of the checkout in the lab's directory, with the wheel built from it
        in dist/, as an admin has it; and the default route a server has."""
        run(["ip", "route", "add", "default", "via", CLIENT_IP], ns=self.server_ns)
        skip = shutil.ignore_patterns(
            ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "rootfs.tar"
        )
        src = self.path("src")
        shutil.copytree(ROOT, src, ignore=skip)
        run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", f"{src}/dist", src])
        return src

    def knockd_container(self) -> container.Container:
        """The knockd container of ``up(host="container")``: the lab's secret and the
        client's public key mounted into it."""
        key = self.path("client_key.pub")
        return container.Container(self.name, self.server_ns, self.path("secret"), key)

    def _container_host(self) -> None:
        image = container.build(self._checkout_with_wheel())
        server = self.knockd_container()
        server.start(image)
        if not wait_for(lambda: "following the clock" in server.logs(), 30):
            raise RuntimeError(f"the knockd container did not start: {server.logs()[-800:]}")

    def _systemd_host(self) -> None:
        self._checkout_with_wheel()
        guest = self.guest()
        guest.boot()
        heading, after = systemd_host.SETUPS[self._state().get("setup", "server-setup")]
        with open(os.path.join(ROOT, "README.md")) as f:
            setup = systemd_host.readme_server_setup(f.read(), heading, after)
        for line in setup:
            done = guest.shell(line, cwd="/src", check=False, env=GUEST_ENV)
            if done.returncode != 0 and not self._only_the_hosts_clock(line, done.stdout):
                said = (done.stdout + done.stderr).strip()
                raise RuntimeError(f"README {heading}: {line!r} failed: {said}")
        with open(self.path("client_key.pub")) as f:
            key = f.read()
        guest.shell("install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys", input=key)
        env = guest.run(["cat", "/etc/knockssh/rotator.env"]).stdout
        found = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
        os.unlink(self.path("secret"))  # the lab's own: the guest made the real one
        write_private(self.path("secret"), found["KNOCKD_ROTATOR_SECRET"] + "\n")

    def _only_the_hosts_clock(self, line: str, said: str) -> bool:
        """The doctor's one finding is the clock, and the kernel (the host's: the guest
        shares it) really is not NTP-synchronised. Nothing a setup does in a lab
        without the Internet can change that, and the lab must not touch the host's
        clock, so this finding alone does not fail the setup."""
        if not line.startswith("knockssh-rotator check"):
            return False
        problems = [p for p in said.splitlines() if p.strip()]
        if len(problems) != 1 or "not NTP-synchronised" not in problems[0]:
            return False
        show = ["timedatectl", "show", "-p", "NTPSynchronized", "--value"]
        return self.guest().run(show, check=False).stdout.strip() == "no"

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
        """The link profile (or spec) the lab was brought up with."""
        return str(self._state().get("link", "lan"))

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
        return pid if _not_zombie(pid) else None  # a gone process has no /proc entry

    def pending_stops(self) -> list[int]:
        """knockd's children still waiting out cmd_timeout to run a stop_command (the
        lab's own knockd; the systemd host's are in its guest, see close_door)."""
        pid = self.knockd_pid()
        return _children(pid) if pid else []

    def _sshd(self) -> None:
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
        for child in self.pending_stops():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        if self.host() == "systemd":
            main = "$(systemctl show -p MainPID --value knockd.service)"
            self.guest().shell(f"pkill -KILL -P {main} || true")
        self.firewall().close()

    def _state(self) -> dict[str, str]:
        try:
            with open(self.path("state.json")) as f:
                return dict(json.load(f))
        except (OSError, ValueError):
            return {}

    def firewall(self) -> Firewall:
        return FIREWALLS[self._state().get("firewall", "iptables")](self.server_ns)

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
                veth = ["ip", "link", "add", outer, "netns", self.client_ns, "type", "veth"]
                run([*veth, "peer", "name", inner, "netns", ns])
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
            for ns in made:
                _kill_netns_processes(ns)
                run(["ip", "netns", "del", ns], check=False)
                shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
            run(["iptables", "-t", "nat", "-D", *masquerade], ns=self.client_ns, check=False)

    def down(self) -> None:
        if os.path.isdir(self.path("guest")):
            self.guest().stop()
        if self.host() == "container":
            self.knockd_container().stop()
        for ns in (self.server_ns, self.client_ns):
            _kill_netns_processes(ns)
            run(["ip", "netns", "del", ns], check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.netns_etc, ignore_errors=True)

    def status(self) -> str:
        if not self.exists():
            return f"{self.name}: down"
        if self.host() != "netns":
            return (
                f"{self.name}: up in {self.dir}; server {self.server_ns} {SERVER_IP} "
                f"{SERVER_IP6} ({self.host()} host), client {self.client_ns} {CLIENT_IP} "
                f"{CLIENT_IP6}, link {self.link()}; "
                f"door {'open' if self.door_open() else 'closed'}"
            )
        knockd = self.knockd_pid()
        sshd = read(self.path("sshd.pid")).strip()
        return (
            f"{self.name}: up in {self.dir}; server {self.server_ns} {SERVER_IP} {SERVER_IP6} "
            f"(knockd pid {knockd or 'DEAD'}, sshd pid {sshd or '?'}, "
            f"{self.firewall().name}), client {self.client_ns} {CLIENT_IP} {CLIENT_IP6}, "
            f"link {self.link()}; "
            f"door {'open' if self.door_open() else 'closed'}"
        )


def _kill_netns_processes(ns: str) -> None:
    for pid in run(["ip", "netns", "pids", ns], check=False).stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)


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


def new_name() -> str:
    return f"kl{os.getpid() % 100000}{secrets.token_hex(2)}"


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
        return demo(args.link)
    lab = Lab(args.name)
    if args.action == "up":
        try:
            lab.up(args.firewall, args.link, args.host)
        except ValueError as exc:
            print(f"lab: {exc}", file=sys.stderr)
            return 2
        print(lab.dir)
    elif args.action == "down":
        lab.down()
    print(lab.status())
    return 0


if __name__ == "__main__":
    sys.exit(main())
