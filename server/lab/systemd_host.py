"""A Debian 12 server with systemd as PID 1, for the lab: a root file system made
with mmdebstrap (cached, rebuilt when its inputs change), booted by systemd-nspawn
inside the lab's server namespace, so the client namespace reaches it over the
lab's link. Every change the guest makes goes to an overlay in the lab's directory
(the cached tree stays clean), and survives a reboot of the guest.

Nothing here configures the server: the README's "Server setup" does that, run in
the guest as written (``readme_server_setup``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

SUITE = "bookworm"
PACKAGES = (  # a fresh Debian 12 server, plus what the README's apt line installs
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "procps",
    "openssh-server",
    "python3",
    "python3-venv",
    "knockd",
    "iptables",
    "iptables-persistent",
    "nftables",
    "netcat-openbsd",
    "rsync",
    "python3-apt",  # what Ansible's apt module needs on a server it manages
)
RECIPE = 3  # bump when the build below changes
POWEROFF_WAIT = 15.0  # seconds a guest gets to power off before it is killed
CACHE = "/var/cache/knockssh-lab"


def rootfs_key() -> str:
    return hashlib.sha256(repr((SUITE, PACKAGES, RECIPE)).encode()).hexdigest()[:12]


def rootfs() -> str:
    """The cached root file system, built first if its inputs changed (about a
    minute; nothing else is rebuilt). Older builds are removed."""
    path = os.path.join(CACHE, f"rootfs-{rootfs_key()}")
    if os.path.isdir(path):
        return path
    os.makedirs(CACHE, exist_ok=True)
    building = path + ".building"
    shutil.rmtree(building, ignore_errors=True)
    subprocess.run(
        [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            # the lab sets the guest's network up from outside, in its namespace; no
            # getty on a read-only console; a machine id of its own at each boot
            "--customize-hook=chroot $1 systemctl mask console-getty.service getty@tty1.service"
            " systemd-networkd.service systemd-networkd-wait-online.service"
            " systemd-networkd.socket",
            "--customize-hook=rm -f $1/etc/machine-id",
            SUITE,
            building,
        ],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    os.rename(building, path)
    for old in os.listdir(CACHE):
        if old.startswith("rootfs-") and os.path.join(CACHE, old) != path:
            shutil.rmtree(os.path.join(CACHE, old), ignore_errors=True)
    return path


def readme_server_setup(readme: str, heading: str = "Server setup", after: str = "") -> list[str]:
    """The commands of a README section: its first indented block (after the first
    paragraph starting with ``after``, if given), one command per line, comments kept
    (the shell drops them)."""
    section = readme.split(f"\n## {heading}", 1)[1].split("\n## ", 1)[0]
    if after:
        section = section.split(f"\n{after}", 1)[1]
    block: list[str] = []
    for line in section.split("\n")[1:]:
        if line.startswith("    "):
            block.append(line[4:])
        elif block and line.strip():
            break
    return [line for line in block if line.strip()]


SETUPS = {  # how a systemd host is set up: the README's section, and where in it
    "server-setup": ("Server setup", ""),
    "quick-start": ("Quick start", "Server ("),
    "bare": None,  # not at all: plain sshd and the lab's key, for Ansible to set up
}


CGROUP_ROOTS = ("/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified")


class Guest:
    """One booted guest: ``boot()``, ``run()`` commands in it, ``stop()``."""

    def __init__(self, name: str, netns: str, workdir: str, binds: dict[str, str]) -> None:
        self.name = name
        self.netns = netns
        self.workdir = workdir
        self.binds = binds  # host path -> guest path, read-only
        self.root = os.path.join(workdir, "root")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def pidfile(self) -> str:
        return os.path.join(self.workdir, "nspawn.pid")

    def nspawn_pid(self) -> int | None:
        """systemd-nspawn's pid: ours, or (another process of the lab) from the pidfile."""
        if self.process is not None:
            return self.process.pid if self.process.poll() is None else None
        try:
            with open(self.pidfile) as f:
                pid = int(f.read())
            os.kill(pid, 0)
            with open(f"/proc/{pid}/stat") as f:
                ended = f.read().rpartition(")")[2].split()[0] in ("Z", "X")
        except (OSError, ValueError, IndexError):
            return None
        if ended:  # exited; its parent (another Guest of this process) has not reaped it
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return None
        return pid

    @property
    def console(self) -> str:
        return os.path.join(self.workdir, "console.log")

    def mount(self) -> None:
        """The cached tree under an overlay of our own (kept across guest reboots)."""
        lower = rootfs()
        for part in ("upper", "work", "root"):
            os.makedirs(os.path.join(self.workdir, part), exist_ok=True)
        if not os.path.ismount(self.root):
            options = f"lowerdir={lower},upperdir={self.workdir}/upper,workdir={self.workdir}/work"
            subprocess.run(
                ["mount", "-t", "overlay", "overlay", "-o", options, self.root], check=True
            )

    def boot(self, timeout: float = 60) -> None:
        self.mount()
        cgroups = [os.path.join(root, self.name) for root in CGROUP_ROOTS]
        for path in cgroups:
            os.makedirs(path, exist_ok=True)
        enter = " ".join(f"echo $$ > {path}/cgroup.procs;" for path in cgroups)
        nspawn = [
            "systemd-nspawn",
            "--quiet",
            f"--directory={self.root}",
            "--boot",
            "--register=no",
            "--keep-unit",
            f"--machine={self.name}",
            f"--network-namespace-path=/run/netns/{self.netns}",
            "--capability=CAP_NET_ADMIN",
            "--console=read-only",
            *(f"--bind-ro={host}:{guest}" for host, guest in self.binds.items()),
        ]
        with open(self.console, "ab") as log:
            self.process = subprocess.Popen(
                ["sh", "-c", f'{enter} exec "$@"', "nspawn", *nspawn],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        with open(self.pidfile, "w") as f:
            f.write(f"{self.process.pid}\n")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited: {tail(self.console)}")
            if self.leader() is not None:
                state = self.run(["systemctl", "is-system-running"], check=False).stdout.strip()
                if state in ("running", "degraded"):
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the guest did not finish booting: {tail(self.console)}")

    def leader(self) -> int | None:
        """The guest's PID 1 (systemd), as a host pid: the child of nspawn."""
        pid = self.nspawn_pid()
        if pid is None:
            return None
        try:
            with open(f"/proc/{pid}/task/{pid}/children") as f:
                children = [int(c) for c in f.read().split()]
        except OSError:
            return None
        for child in children:
            try:
                with open(f"/proc/{child}/comm") as f:
                    if f.read().strip() == "systemd":
                        return child
            except OSError:
                continue
        return None

    def run(
        self, cmd: list[str], check: bool = True, timeout: float = 120, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        """``cmd`` inside the guest (all its namespaces), output as text."""
        leader = self.leader()
        if leader is None:
            raise RuntimeError("the guest is not running")
        done = subprocess.run(
            ["nsenter", "-t", str(leader), "-a", "--", *cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kw,
        )
        if check and done.returncode != 0:
            raise RuntimeError(f"in the guest, {cmd!r} failed: {done.stderr.strip()}")
        return done

    def shell(self, command: str, cwd: str = "/", **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", f"cd {cwd} && {command}"], **kw)

    def stop(self) -> None:
        """Power off; if that takes longer than POWEROFF_WAIT, kill the guest's
        cgroup (its root file system is a throwaway copy: nothing is lost)."""
        pid = self.nspawn_pid()
        if pid is not None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=10)
            deadline = time.monotonic() + POWEROFF_WAIT
            while self.nspawn_pid() is not None and time.monotonic() < deadline:
                if self.process is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.process.wait(timeout=0.1)
                else:
                    time.sleep(0.1)
        self.kill()
        if os.path.ismount(self.root):
            subprocess.run(["umount", "-l", self.root], check=False)

    def kill(self) -> None:
        """Every process of the guest, then its cgroups, deepest first."""
        pid = self.nspawn_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        for root in CGROUP_ROOTS:
            top = os.path.join(root, self.name)
            kill = os.path.join(top, "cgroup.kill")
            if os.path.exists(kill):
                with contextlib.suppress(OSError), open(kill, "w") as f:
                    f.write("1")
            for _ in range(50):
                if not os.path.isdir(top):
                    break
                for path in sorted(
                    (d for d, _, _ in os.walk(top)), key=lambda d: d.count("/"), reverse=True
                ):
                    for pid in _pids(path):
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                    with contextlib.suppress(OSError):
                        os.rmdir(path)
                time.sleep(0.05)
        if self.process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)


def _pids(cgroup: str) -> list[int]:
    try:
        with open(os.path.join(cgroup, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def tail(path: str, lines: int = 15) -> str:
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return ""
    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(text.splitlines()[-lines:]))
