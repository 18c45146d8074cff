"""What the lab's parts share: its addresses and names, running a command in a
namespace, the tools it needs, small files and processes."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys

if __package__ is None or __package__ == "":  # run as a script: the checkout's rotator
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from rotator.proc import pid_alive as pid_alive  # the one /proc reader
from rotator.proc import wait_for as wait_for  # the one wait, for the lab's users

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATE_ROOT = "/run/knockssh-lab"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
    # the Debian package (dpkg-buildpackage, as debian/control's Build-Depends say)
    "dh": "debhelper",
    "dh_python3": "dh-python",
    "lintian": "lintian",
    "/usr/share/dh-python/dhpython/build/plugin_pyproject.py": "pybuild-plugin-pyproject",
    "/usr/share/doc/python3-all": "python3-all",
    "/usr/lib/python3/dist-packages/setuptools": "python3-setuptools",
}


def run(
    cmd: list[str], ns: str | None = None, check: bool = True, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (in namespace ``ns``), its output captured; with ``check``, a
    failure raises LabCommandFailed, which says what the command wrote."""
    if ns:
        cmd = ["ip", "netns", "exec", ns, *cmd]
    done = subprocess.run(cmd, text=True, capture_output=True, **kw)
    if check and done.returncode != 0:
        raise LabCommandFailed(done.returncode, cmd, done.stdout, done.stderr)
    return done


class LabCommandFailed(subprocess.CalledProcessError):
    def __str__(self) -> str:
        said = (self.stderr or self.stdout or "").strip()
        return f"{super().__str__()}: {said}" if said else super().__str__()


def missing_tools() -> list[str]:
    paths = os.environ.get("PATH", "") + ":/usr/sbin:/sbin:/usr/lib/podman"
    return sorted(
        {
            pkg
            for cmd, pkg in PACKAGES.items()
            if not (os.path.exists(cmd) if cmd.startswith("/") else shutil.which(cmd, path=paths))
        }
    )


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
