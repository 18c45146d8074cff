"""Client doors' secrets on disk: one 0600 file per client, NAME.secret, in a 0700
directory (``/etc/knockssh/clients``, or ``--clients-dir`` /
``KNOCKD_ROTATOR_CLIENTS_DIR``). The I/O of ``client`` and of every rotation;
what a name may be is decided here too, purely."""

from __future__ import annotations

import os
import re
import stat

from . import files, secret
from .errors import RotatorError

DEFAULT_DIR = "/etc/knockssh/clients"
DIR_ENV = "KNOCKD_ROTATOR_CLIENTS_DIR"
NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
EXTENSION = ".secret"


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a client, or None."""
    if NAME.fullmatch(name):
        return None
    shown = name if name.isprintable() and len(name) <= 40 else "(not shown)"
    return (
        f"client name {shown!r}: 1 to 32 of a-z, 0-9 and '-', a letter or digit first "
        "(it names a knockd section and a file)"
    )


def directory(given: str | None, env: dict[str, str] | os._Environ[str]) -> str:
    return given or env.get(DIR_ENV) or DEFAULT_DIR


def path_of(where: str, name: str) -> str:
    return os.path.join(where, name + EXTENSION)


def _checked_directory(where: str) -> bool:
    """Whether the directory exists; RotatorError if it is not one only root controls."""
    if not os.path.lexists(where):
        return False
    problem = files.unsafe_directory(where, follow=False)
    if problem is None and stat.S_IMODE(os.stat(where).st_mode) & 0o077:
        problem = f"is open to others (mode {stat.S_IMODE(os.stat(where).st_mode):04o})"
    if problem:
        raise RotatorError(f"{where}: {problem}: not a place for client secrets (chmod 700)")
    return True


def names(where: str) -> dict[str, float]:
    """Each client with a secret file, and when it was added (the file's mtime)."""
    if not _checked_directory(where):
        return {}
    found = {}
    for entry in sorted(os.listdir(where)):
        name = entry[: -len(EXTENSION)]
        if entry.endswith(EXTENSION) and name_problem(name) is None:
            found[name] = os.lstat(os.path.join(where, entry)).st_mtime
    return found


def secrets(where: str) -> dict[str, str]:
    """Each client's secret, read by the one rule for secrets; RotatorError naming
    the file if one is not a private regular file or holds no valid secret (never
    the secret)."""
    found = {}
    for name in names(where):
        path = path_of(where, name)
        try:
            data, st = files.read_regular(path, secret.LIMIT, follow=False)
        except OSError as exc:
            raise RotatorError(f"{path}: cannot read: {exc.strerror}") from None
        if st.st_mode & 0o077 or st.st_uid not in (0, os.geteuid()):
            raise RotatorError(f"{path}: readable by others or not ours: chmod 600, owner root")
        found[name] = secret.read_secret(data, path)
    return found


def store(where: str, name: str, value: str) -> str:
    """A new secret file for ``name`` (never over an existing one); its path."""
    try:
        files.private_directory(where)
    except OSError as exc:
        raise RotatorError(f"{where}: cannot make the clients directory: {exc.strerror}") from None
    _checked_directory(where)
    path = path_of(where, name)
    try:
        files.create_private(path, (value + "\n").encode())
    except FileExistsError:
        raise RotatorError(
            f"{path} exists already: client {name} has a secret (revoke it first)"
        ) from None
    except OSError as exc:
        raise RotatorError(f"{path}: cannot write: {exc.strerror}") from None
    return path


def remove(where: str, name: str) -> bool:
    """Remove ``name``'s secret file; whether there was one."""
    try:
        os.unlink(path_of(where, name))
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise RotatorError(f"{path_of(where, name)}: cannot remove: {exc.strerror}") from None
    return True
