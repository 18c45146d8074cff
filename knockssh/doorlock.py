"""One door, one knock: knockers of the same address take turns.

knockd keeps one attempt per source address, so two sequences from one machine
interleave and fail each other. knockssh processes and threads that knock the
same address therefore hold an ``flock`` on a file named after it while they
knock and wait for the door. The lock dies with its holder (a killed knockssh
leaves nothing held). Locks live in ``$XDG_RUNTIME_DIR/knockssh``, else in
``/tmp/knockssh-UID`` (0700, ours, not a symlink); each user has their own, so
two users, like two machines behind one NAT, are kept apart only by the plan's
random pauses. The lock file also holds when a holder last got through the door:
a knocker that finds it recent tries the door before knocking again.
"""

from __future__ import annotations

import fcntl
import os
import stat
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .peer import Watch

POLL_FIRST, POLL_MAX = 0.001, 0.008  # seconds between tries while a sibling knocks


def _own_private_dir(path: str, create: bool = True) -> bool:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            return False
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            pass  # a sibling made it just now
        except OSError:
            return False
        try:
            st = os.lstat(path)
        except OSError:
            return False
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o077


def lock_dir(env: Mapping[str, str]) -> str | None:
    """The directory for our lock files, or None if no safe one can be had."""
    runtime = env.get("XDG_RUNTIME_DIR")
    # $XDG_RUNTIME_DIR belongs to the login manager: used when there, never made
    if runtime and os.path.isabs(runtime) and _own_private_dir(runtime, create=False):
        path = os.path.join(runtime, "knockssh")
    else:
        path = f"/tmp/knockssh-{os.geteuid()}"
    return path if _own_private_dir(path) else None


class DoorLock:
    """An exclusive lock on one knock address; ``acquire`` then ``release``."""

    __slots__ = ("fd", "path")

    def __init__(self, directory: str, address: str) -> None:
        self.path = os.path.join(directory, address.replace("/", "_") + ".lock")
        self.fd = -1

    def acquire(self, deadline: float, watch: Watch) -> bool | None:
        """Take the lock by ``deadline`` (monotonic). True if a sibling held it and we
        waited, False if it was free, None if it could not be had in time (or the
        file cannot be opened: then we knock unlocked rather than not at all)."""
        try:
            self.fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
            )
        except OSError:
            return False
        pause = POLL_FIRST
        waited = False
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return waited
            except BlockingIOError:
                pass
            except OSError:
                return waited  # no flock on this file system: knock unlocked
            left = deadline - time.monotonic()
            if left <= 0:
                self.release()
                return None
            waited = True
            watch.sleep(min(pause, left))
            pause = min(pause * 2, POLL_MAX)

    def opened_since(self) -> float:
        """Seconds since a holder of this lock last got through the door (inf if
        never): the door may still be open, so trying it beats knocking again."""
        try:
            return max(0.0, time.time() - float(os.pread(self.fd, 32, 0).decode()))
        except (OSError, ValueError):
            return float("inf")

    def mark_opened(self) -> None:
        """Note that we got through the door just now (for the next holder)."""
        try:
            os.pwrite(self.fd, f"{time.time():.3f}".encode().ljust(32), 0)
        except OSError:
            pass

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing drops the flock
            self.fd = -1
