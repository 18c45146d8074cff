"""A small log of failed connections, for when nobody saw stderr.

Under ``ControlPersist`` OpenSSH sends the master's ProxyCommand stderr to
/dev/null, so a failed knock shows only ssh's "Connection closed by remote
host". Every failure of the ProxyCommand is therefore also appended to
``$XDG_STATE_HOME/knockssh/failures.log`` (else ``~/.local/state/knockssh/``):
mode 0600, at most MAX_BYTES (the older half goes when it grows past that), one
line per failure, control characters escaped. Messages never hold a secret.
"""

from __future__ import annotations

import os
import stat
import time

from .log import printable
from .paths import state_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_BYTES = 64 * 1024


def log_path(env: Mapping[str, str]) -> str:
    return os.path.join(state_dir(env), "failures.log")


def record(env: Mapping[str, str], message: str, at: float | None = None) -> None:
    """Append one line; best effort (a read-only home must not hide the real error).
    Only a regular file of ours is written: a FIFO or a device planted there is left
    alone (and never waited on), a link is not followed."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))
    line = f"{stamp} {printable(message)}\n".encode()
    path = log_path(env)
    flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, flags, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
                return
            os.fchmod(fd, 0o600)
            if st.st_size + len(line) > MAX_BYTES:
                _keep_newer_half(path, fd, st.st_size)
                os.close(fd)
                fd = os.open(path, flags, 0o600)
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass


def _keep_newer_half(path: str, fd: int, size: int) -> None:
    """Replace the log by its newest lines, at most MAX_BYTES / 2 of them (read from
    its end: a planted huge file is not read whole)."""
    keep = os.pread(fd, MAX_BYTES // 2, max(0, size - MAX_BYTES // 2)) if size else b""
    if size > MAX_BYTES // 2:
        keep = keep[keep.find(b"\n") + 1 :]  # from a line's start
    from rotator.files import replace

    replace(path, keep, 0o600, durable=False, keep_mode=False)


def recent(env: Mapping[str, str], names: tuple[str, ...], count: int = 5) -> list[str]:
    """The newest ``count`` lines of the log about any of ``names`` (a message starts
    with the host as ssh gave it: ``HOST port 22: …`` or ``HOST: …``), oldest first.
    Only the log's last MAX_BYTES are read; an unreadable log has no lines."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    try:
        fd = os.open(log_path(env), flags)
    except OSError:
        return []
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return []
        data = os.pread(fd, MAX_BYTES, max(0, st.st_size - MAX_BYTES))
    except OSError:
        return []
    finally:
        os.close(fd)
    lowered = tuple(n.lower() for n in names if n)
    found = []
    for line in data.decode("utf-8", "replace").splitlines():
        _, _, message = line.partition(" ")
        head = message.lower()
        if any(head.startswith((f"{n} ", f"{n}:")) for n in lowered):
            found.append(printable(line))
    return found[-count:]
