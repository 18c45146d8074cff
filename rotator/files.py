"""Reading and writing files that someone else may have put in the way: one place
for the rules both the rotator and the client keep (standard library only, so the
client may import it).

- A file we read is a regular file of bounded size, opened without blocking: a
  FIFO, a device or a directory where a file should be is an error, never a hang
  or an endless read.
- A file we replace is replaced atomically (a temporary file beside it, renamed
  over it), keeping its mode and owner, and only if it is a regular file: never a
  device, never through a link the caller did not resolve on purpose.
- A file we create holding a secret is created 0600, never over anything.
- Writers of one directory take turns on an ``flock`` of the directory.

Errors are ``OSError`` with a ``strerror`` fit to follow "PATH: cannot read: ".
"""

from __future__ import annotations

import errno
import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

MIB = 1024 * 1024
TEMP_MARK = ".new."  # in a temporary file's name: .NAME.new.RANDOM


def kind(mode: int) -> str:
    """What a file that is not a regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISLNK, "a symbolic link"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: str, mode: int) -> OSError:
    code = errno.EISDIR if stat.S_ISDIR(mode) else errno.EINVAL
    return OSError(code, f"is {kind(mode)}, not a regular file", path)


def read_regular(path: str, limit: int = MIB, follow: bool = True) -> tuple[bytes, os.stat_result]:
    """The bytes of the regular file ``path`` (at most ``limit``) and its status.
    Opened with O_NONBLOCK, so a FIFO is refused instead of waited on."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    fd = os.open(path, flags if follow else flags | os.O_NOFOLLOW)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_regular(path, st.st_mode)
        try:
            return read_bounded(fd, limit), st
        except OSError as exc:
            if exc.errno != errno.EFBIG:
                raise
            raise OSError(
                exc.errno, f"larger than {limit} bytes: not the file expected", path
            ) from None
    finally:
        os.close(fd)


def read_bounded(fd: int, limit: int) -> bytes:
    """At most ``limit`` bytes from ``fd`` (a file, a pipe, a terminal), to its end;
    more (an endless stream, a planted huge file) is an error, not a MemoryError."""
    chunks, size = [], 0
    while size <= limit:
        chunk = os.read(fd, min(limit + 1 - size, MIB))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:
        raise OSError(errno.EFBIG, f"more than {limit} bytes")
    return b"".join(chunks)


def regular_or_absent(path: str) -> os.stat_result | None:
    """``path``'s own status (a link is not followed) if it is a regular file, None
    if nothing is there; OSError if something else is."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise not_regular(path, st.st_mode)
    return st


def replace(
    path: str,
    data: bytes,
    mode: int = 0o600,
    before_rename: Callable[[], None] | None = None,
    durable: bool = True,
    keep_mode: bool = True,
) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, flushed to
    disk (unless not ``durable``: the client's own state is not worth an fsync on
    every connect), renamed over it, the directory flushed. An existing file keeps its
    mode and owner (``mode`` is for a new one, or for every one unless ``keep_mode``:
    a file that is ours alone); anything there that is not a regular
    file (a device, a FIFO, a symbolic link, a directory) is refused and left as it was."""
    directory = os.path.dirname(os.path.abspath(path))
    old = regular_or_absent(path)
    kept = old if keep_mode else None
    name = os.path.basename(path)
    fd, temp = _temp_file(directory, name)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), stat.S_IMODE(kept.st_mode) if kept else mode)
            if kept and (kept.st_uid, kept.st_gid) != (os.geteuid(), os.getegid()):
                os.fchown(f.fileno(), kept.st_uid, kept.st_gid)
            if durable:
                os.fsync(f.fileno())
        if before_rename:
            before_rename()
        os.replace(temp, path)
    except BaseException:
        _unlink_quietly(temp)
        raise
    if durable:
        _sync_directory(directory)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _temp_file(directory: str, name: str) -> tuple[int, str]:
    for _ in range(100):
        temp = os.path.join(directory, f".{name}{TEMP_MARK}{os.urandom(6).hex()}")
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
            return os.open(temp, flags, 0o600), temp
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary name", directory)


def is_temp_of(name: str, temp_name: str) -> bool:
    """Is ``temp_name`` one of ``replace``'s temporary files for ``name``?"""
    return temp_name.startswith(f".{name}{TEMP_MARK}")


def _sync_directory(directory: str) -> None:
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def create_private(path: str, data: bytes) -> None:
    """A new file only its owner can read (0600), never over anything already there
    (FileExistsError), never through a link; flushed to disk."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(path)
        raise
    os.close(fd)


def private_directory(path: str) -> None:
    """Make ``path`` (0700, parents as needed) unless it is there; something that is
    not a directory in its place is NotADirectoryError."""
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, "is not a directory", path) from None


def unsafe_directory(path: str, follow: bool = True) -> str | None:
    """Why a directory we keep secrets in cannot be trusted, or None: it must be a
    directory (not a link, unless ``follow``), owned by us or root, and writable by
    nobody else (a sticky, shared directory like /tmp is not a place for secrets)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        return str(exc.strerror)
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return f"is {kind(st.st_mode)}, not a directory"
    if st.st_uid not in (os.geteuid(), 0):
        return f"belongs to another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"is writable by others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


class locked:
    """``with locked(directory):`` an exclusive ``flock`` on ``directory`` for the
    time of the block (its inode survives renames of the files in it, and a lock
    dies with its holder). A class, not a generator: contextlib is not imported on
    the client's start-up path."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.fd = -1

    def __enter__(self) -> int:
        import fcntl

        self.fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(self.fd)
            raise
        return self.fd

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)
