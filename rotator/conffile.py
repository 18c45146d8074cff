"""knockd.conf on disk: read whole (a regular file, bounded), locked against a
concurrent rotator, replaced atomically. Errors are RotatorError naming the file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from . import files
from .errors import RotatorError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


CONF_LIMIT = 4 * 1024 * 1024  # bytes: a knockd.conf is a few KiB; /dev/zero is not one


def read_text(path: str) -> str:
    """A regular file's text, every byte kept (undecodable ones as surrogates);
    a FIFO, a device or a huge file is an error, never a hang."""
    try:
        data, _ = files.read_regular(path, CONF_LIMIT)
    except OSError as exc:
        raise RotatorError(f"{path}: cannot read: {exc.strerror}") from None
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
            raise RotatorError(
                f"{path}: cannot open its directory {directory}: {exc.strerror}"
            ) from None
        base = os.path.basename(path)
        for name in os.listdir(directory):
            if files.is_temp_of(base, name):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(directory, name))  # a killed writer's temp file
        yield


def atomic_write(path: str, text: str, before_rename: Callable[[], None] | None = None) -> None:
    """Replace ``path`` with ``text``: temp file in the same directory, same owner and
    mode, fsync, rename, fsync of the directory. A crash leaves the old file whole."""
    try:
        files.replace(path, text.encode("utf-8", "surrogateescape"), 0o600, before_rename)
    except OSError as exc:  # a read-only or full file system, a directory not ours, ...
        raise RotatorError(f"{path}: cannot write: {exc.strerror}; left as it was") from None


def target_of(path: str) -> str:
    """Where a knockd.conf that is a symlink really is: it is rewritten there, so the
    link keeps pointing at the current file (replacing the link would leave its old
    target stale)."""
    return os.path.realpath(path) if os.path.islink(path) else path
