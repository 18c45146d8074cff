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
    """Append one line; best effort (a read-only home must not hide the real error)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if at is None else at))
    line = f"{stamp} {printable(message)}\n".encode()
    path = log_path(env)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            if os.fstat(fd).st_size + len(line) > MAX_BYTES:
                _keep_newer_half(path)
                os.close(fd)
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            os.write(fd, line)
        finally:
            os.close(fd)
    except OSError:
        pass


def _keep_newer_half(path: str) -> None:
    with open(path, "rb") as f:
        data = f.read()
    keep = data[len(data) // 2 :]
    keep = keep[keep.find(b"\n") + 1 :]  # from a line's start
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.write(fd, keep)
    finally:
        os.close(fd)
    os.replace(tmp, path)
