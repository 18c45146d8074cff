"""The rotator's side effects: locking, atomic writes, reloading knockd and
checking it survived, scheduling a run at the next boundary. Kept apart from the
pure scheme and the knockd.conf rewriter."""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Callable

from . import files
from .scheme import whole_number

CONF_LIMIT = 4 * 1024 * 1024  # bytes: a knockd.conf is a few KiB; /dev/zero is not one


class ApplyError(RuntimeError):
    pass


def read_text(path: str) -> str:
    """A regular file's text, every byte kept (undecodable ones as surrogates);
    a FIFO, a device or a huge file is an error, never a hang."""
    try:
        data, _ = files.read_regular(path, CONF_LIMIT)
    except OSError as exc:
        raise ApplyError(f"{path}: cannot read: {exc.strerror}") from None
    return data.decode("utf-8", "surrogateescape")


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive flock on the file's directory (its inode survives renames,
    and a lock dies with its holder, so it is never stale); clear writers' leftovers."""
    directory = os.path.dirname(os.path.abspath(path))
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(files.locked(directory))
        except OSError as exc:
            raise ApplyError(
                f"{path}: cannot open its directory {directory}: {exc.strerror}"
            ) from None
        base = os.path.basename(path)
        for name in os.listdir(directory):
            if files.is_temp_of(base, name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))  # a killed writer's temp file
        yield


def create_private(path: str, text: str) -> None:
    """A new file only its owner can read (0600), in a 0700 directory made if needed;
    FileExistsError when the file is there already (it is never replaced)."""
    files.private_directory(os.path.dirname(path) or ".")
    files.create_private(path, text.encode("utf-8", "surrogateescape"))


def atomic_write(path: str, text: str, before_rename: Callable[[], None] | None = None) -> None:
    """Replace ``path`` with ``text``: temp file in the same directory, same owner and
    mode, fsync, rename, fsync of the directory. A crash leaves the old file whole."""
    try:
        files.replace(path, text.encode("utf-8", "surrogateescape"), 0o600, before_rename)
    except OSError as exc:  # a read-only or full file system, a directory not ours, ...
        raise ApplyError(f"{path}: cannot write: {exc.strerror}; left as it was") from None


def log_size(path: str | None) -> int:
    if not path:
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def log_since(path: str | None, offset: int) -> str:
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def process_name(pid: int) -> str:
    """The program a process runs: the name of its executable, else its comm."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def command_line(pid: int) -> list[str]:
    """A process's argv, or [] when it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="surrogateescape") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def target_of(path: str) -> str:
    """Where a knockd.conf that is a symlink really is: it is rewritten there, so the
    link keeps pointing at the current file (replacing the link would leave its old
    target stale)."""
    return os.path.realpath(path) if os.path.islink(path) else path


class Reloader:
    """How knockd is told to re-read its configuration, and how we see that it did."""

    def reload(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError


def trusted_knockd(pid: int) -> str:
    """The executable of process ``pid`` if it is knockd as installed by root: the
    binary is named knockd, owned by root and writable by nobody else (nor are the
    directories above it), and the process runs as root. Else ApplyError, saying why.
    A stale pidfile may name anyone's process: it is never signalled, and its
    command never run."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        running = os.stat(f"/proc/{pid}/exe")
    except OSError as exc:
        raise ApplyError(f"pid {pid}: cannot see its executable: {exc.strerror}") from None
    if os.path.basename(exe) != "knockd":
        raise ApplyError(f"pid {pid} is {os.path.basename(exe)!r}, not knockd")
    uids = _status_ids(pid, "Uid:")
    if uids != {0}:
        raise ApplyError(f"pid {pid} runs {exe} as uid {max(uids, default=-1)}, not as root")
    try:
        installed = os.stat(exe)
    except OSError as exc:
        raise ApplyError(f"pid {pid} runs {exe}, which is gone: {exc.strerror}") from None
    if (installed.st_dev, installed.st_ino) != (running.st_dev, running.st_ino):
        raise ApplyError(f"pid {pid} runs a {exe} that is no longer the installed one")
    path = exe
    while True:
        st = os.stat(path)
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise ApplyError(f"{path} is not root's alone (uid {st.st_uid}): not trusted as knockd")
        if path == "/":
            return exe
        path = os.path.dirname(path)


def _status_ids(pid: int, field: str) -> set[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return {int(v) for v in line.split()[1:] if v.isascii() and v.isdigit()}
    except OSError:
        pass
    return set()


class PidfileReloader(Reloader):
    """SIGHUP to the pid in a pidfile; to restart, the knockd binary that pid ran."""

    def __init__(self, pidfile: str) -> None:
        self.pidfile = pidfile
        self.pid = self._read_pid()
        if not pid_alive(self.pid):
            raise ApplyError(f"{pidfile}: knockd (pid {self.pid}) is not running")
        try:
            self.exe = trusted_knockd(self.pid)
        except ApplyError as exc:
            raise ApplyError(f"{pidfile}: {exc}: refusing to signal it") from None
        # Read now, while knockd lives: a restart after a failed reload needs them.
        # The command is the binary checked above, never the process's argv[0].
        self.arguments = command_line(self.pid)[1:]

    def _read_pid(self) -> int:
        try:
            data, _ = files.read_regular(self.pidfile, 4096)
        except OSError as exc:
            raise ApplyError(f"{self.pidfile}: cannot read: {exc.strerror}") from None
        pid = whole_number(data.decode("ascii", "replace").strip())
        if pid is None or pid <= 1:
            raise ApplyError(f"{self.pidfile}: no knockd pid in this file")
        return pid

    def reload(self) -> None:
        try:
            os.kill(self.pid, signal.SIGHUP)
        except ProcessLookupError:
            raise ApplyError(f"knockd (pid {self.pid}) is not running") from None

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def restart(self) -> None:
        subprocess.run([self.exe, *self.arguments], check=True, start_new_session=True, timeout=30)
        self.pid = self._read_pid() if wait_for(self._new_pid, 5) else self.pid

    def _new_pid(self) -> bool:
        try:
            return self._read_pid() != self.pid and pid_alive(self._read_pid())
        except ApplyError:
            return False


class SystemdReloader(Reloader):
    """``systemctl reload`` (Debian's unit: ExecReload=kill -HUP $MAINPID)."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.pid = self._main_pid()
        if not self.pid:
            raise ApplyError(f"{unit} is not running")

    def _systemctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["systemctl", *args], capture_output=True, text=True, check=False, timeout=60
            )
        except FileNotFoundError:
            raise ApplyError(
                "systemctl not found: reload knockd with --pidfile PATH, or use --no-reload"
            ) from None
        except subprocess.TimeoutExpired:
            raise ApplyError(f"systemctl {' '.join(args)}: no answer within 60 s") from None

    def _main_pid(self) -> int:
        out = self._systemctl("show", "--property=MainPID", "--value", self.unit).stdout
        return int(out) if out.strip().isdigit() else 0

    def reload(self) -> None:
        done = self._systemctl("reload", self.unit)
        if done.returncode != 0:
            raise ApplyError(f"systemctl reload {self.unit} failed: {done.stderr.strip()}")

    def alive(self) -> bool:
        return self._main_pid() == self.pid and pid_alive(self.pid)

    def restart(self) -> None:
        self._systemctl("restart", self.unit)
        self.pid = self._main_pid()


RELOAD_SEEN = "re-reading config file"
SETTLE_SECONDS = 0.5  # how long knockd must stay up after a reload with no log to read


def reload_and_verify(reloader: Reloader, logfile: str | None, timeout: float = 5.0) -> str:
    """Reload knockd; return how survival was established, or raise ApplyError."""
    offset = log_size(logfile)
    reloader.reload()
    if logfile and wait_for(lambda: RELOAD_SEEN in log_since(logfile, offset), timeout):
        # knockd parses right after logging this; a bad file makes it exit at once
        wait_for(lambda: not reloader.alive(), SETTLE_SECONDS)
        if reloader.alive():
            return f"knockd re-read its configuration (seen in {logfile}) and is running"
    else:
        wait_for(lambda: not reloader.alive(), SETTLE_SECONDS)
        if reloader.alive() and not logfile:
            return "knockd is running after the reload"
        if reloader.alive():
            raise ApplyError(f"knockd did not log a reload in {logfile} within {timeout:g}s")
    raise ApplyError("knockd exited after the reload")


def schedule_run(at: int, now: float, unit: str) -> list[str]:
    """A one-off run of our own service at ``at`` (no secret on any command line:
    the service reads it from its EnvironmentFile or credential). It fires at the
    boundary or up to 0.1 s after, never before: in milliseconds, rounded up."""
    delay_ms = max(1, math.ceil((at - now) * 1000))
    return [
        "systemd-run",
        f"--on-active={delay_ms}ms",
        f"--unit=knockssh-rotator-at-{at}",
        "--timer-property=AccuracySec=100ms",
        f"--description=knockssh-rotator run at {at}",
        "systemctl",
        "start",
        unit,
    ]


def under_systemd() -> bool:
    return os.path.isdir("/run/systemd/system")
