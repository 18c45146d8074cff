"""knockd as a process: telling it to re-read its configuration and seeing that
it survived. ``PidfileReloader`` signals a knockd found by its pidfile (hosts
without systemd, containers); ``rotator.systemd`` has the unit's."""

from __future__ import annotations

import os
import signal
import subprocess

from . import files
from .errors import RotatorError
from .proc import command_line, pid_alive, status_ids, wait_for
from .scheme import whole_number


class Reloader:
    """How knockd is told to re-read its configuration, and how we see that it did."""

    log_timeout = 5.0  # seconds to wait for knockd to log the reload

    def reload(self) -> None:
        raise NotImplementedError

    def alive(self) -> bool:
        raise NotImplementedError

    def restart(self) -> None:
        raise NotImplementedError


def trusted_knockd(pid: int) -> str:
    """The executable of process ``pid`` if it is knockd as installed by root: the
    binary is named knockd, owned by root and writable by nobody else (nor are the
    directories above it), and the process runs as root. Else RotatorError, saying why.
    A stale pidfile may name anyone's process: it is never signalled, and its
    command never run."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
        running = os.stat(f"/proc/{pid}/exe")
    except OSError as exc:
        raise RotatorError(f"pid {pid}: cannot see its executable: {exc.strerror}") from None
    if os.path.basename(exe) != "knockd":
        raise RotatorError(f"pid {pid} is {os.path.basename(exe)!r}, not knockd")
    uids = status_ids(pid, "Uid:")
    if uids != {0}:
        raise RotatorError(f"pid {pid} runs {exe} as uid {max(uids, default=-1)}, not as root")
    try:
        installed = os.stat(exe)
    except OSError as exc:
        raise RotatorError(f"pid {pid} runs {exe}, which is gone: {exc.strerror}") from None
    if (installed.st_dev, installed.st_ino) != (running.st_dev, running.st_ino):
        raise RotatorError(f"pid {pid} runs a {exe} that is no longer the installed one")
    path = exe
    while True:
        st = os.stat(path)
        if st.st_uid != 0 or st.st_mode & 0o022:
            raise RotatorError(
                f"{path} is not root's alone (uid {st.st_uid}): not trusted as knockd"
            )
        if path == "/":
            return exe
        path = os.path.dirname(path)


STOP_SECONDS = 5.0


class PidfileReloader(Reloader):
    """SIGHUP to the pid in a pidfile; to restart, the knockd binary that pid ran."""

    def __init__(self, pidfile: str) -> None:
        self.pidfile = pidfile
        self.pid = self._read_pid()
        if not pid_alive(self.pid):
            raise RotatorError(f"{pidfile}: knockd (pid {self.pid}) is not running")
        try:
            self.exe = trusted_knockd(self.pid)
        except RotatorError as exc:
            raise RotatorError(f"{pidfile}: {exc}: refusing to signal it") from None
        # Read now, while knockd lives: a restart after a failed reload needs them.
        # The command is the binary checked above, never the process's argv[0].
        self.arguments = command_line(self.pid)[1:]

    def _read_pid(self) -> int:
        try:
            data, _ = files.read_regular(self.pidfile, 4096)
        except OSError as exc:
            raise RotatorError(f"{self.pidfile}: cannot read: {exc.strerror}") from None
        pid = whole_number(data.decode("ascii", "replace").strip())
        if pid is None or pid <= 1:
            raise RotatorError(f"{self.pidfile}: no knockd pid in this file")
        return pid

    def reload(self) -> None:
        try:
            os.kill(self.pid, signal.SIGHUP)
        except ProcessLookupError:
            raise RotatorError(f"knockd (pid {self.pid}) is not running") from None

    def alive(self) -> bool:
        return pid_alive(self.pid)

    def stop(self) -> bool:
        """End this knockd (SIGTERM, SIGKILL after STOP_SECONDS): whether it ended."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                return True
            if wait_for(lambda: not self.alive(), STOP_SECONDS):
                return True
        return False

    def restart(self) -> None:
        """Start the same knockd again: one that daemonizes (``-d``) is waited for,
        one in the foreground is left running in a session of its own."""
        argv = [self.exe, *self.arguments]
        if "-d" in self.arguments or "--daemon" in self.arguments:
            subprocess.run(argv, check=True, start_new_session=True, timeout=30)
        else:
            subprocess.Popen(argv, start_new_session=True, stdin=subprocess.DEVNULL)
        self.pid = self._read_pid() if wait_for(self._new_pid, 5) else self.pid

    def _new_pid(self) -> bool:
        try:
            return self._read_pid() != self.pid and pid_alive(self._read_pid())
        except RotatorError:
            return False


RELOAD_SEEN = "re-reading config file"


SETTLE_SECONDS = 0.5  # how long knockd must stay up after a reload with no log to read


def reload_and_verify(reloader: Reloader, logfile: str | None) -> str:
    """Reload knockd; return how survival was established, or raise RotatorError."""
    timeout = reloader.log_timeout
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
            raise RotatorError(f"knockd did not log a reload in {logfile} within {timeout:g}s")
    raise RotatorError("knockd exited after the reload")


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


def reloader_for(pidfile: str | None, unit: str) -> Reloader:
    """knockd by its pidfile when one is given, else by its systemd unit."""
    from .systemd import SystemdReloader

    return PidfileReloader(pidfile) if pidfile else SystemdReloader(unit)
