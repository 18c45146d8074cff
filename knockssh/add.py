"""``knockssh add HOST``: a host entry in the mapping file, its secret in a private
file beside it, and the ssh_config lines ssh still needs.

Everything is checked before anything is written, and the writing is done under a
lock on the mapping file's directory, so that concurrent ``add``s each keep their
entry. The mapping file is replaced atomically, only if it is a regular file the
user may write (through a symbolic link to its target: dotfiles keep their link);
the secret goes into a new 0600 file in a ``secrets/`` directory nobody else
controls."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat

from rotator import files, scheme, server_setup
from rotator.secret import LIMIT as SECRET_LIMIT
from rotator.secret import read_secret

from . import mapping
from .errors import KnocksshError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

SAFE_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-")


def secret_path(directory: str, host: str) -> str:
    """Where ``host``'s secret is kept: ``secrets/`` in ``directory``, one file per
    host. Letters, digits, '.' and '-' are kept, every other byte of the name is
    written ``_XX``, so two hosts never share a file (é.example is
    _c3_a9.example.secret)."""
    name = "".join(
        c if c in SAFE_NAME_CHARS and not (i == 0 and c == ".") else _escaped(c)
        for i, c in enumerate(host)
    )
    return os.path.join(directory, "secrets", f"{name}.secret")


def _escaped(c: str) -> str:
    return "".join(f"_{b:02x}" for b in c.encode("utf-8", "surrogateescape"))


def checked_secret(data: bytes, source: str) -> str:
    """The secret as read by the one rule of both ends (``rotator.secret``), refused
    as the scheme refuses it, naming ``source``."""
    try:
        secret = read_secret(data, source)
        ports = scheme.parse_port_spec(scheme.DEFAULTS["PORTS"])
        scheme.validate(scheme.Settings(secret, ports=ports), {"secret": source})
    except scheme.SchemeError as exc:
        raise KnocksshError(str(exc)) from None
    return secret


def read_secret_stdin() -> bytes:
    """The secret on standard input: a line from a terminal, else the whole input
    (so a second line is seen and refused), bounded either way."""
    try:
        if os.isatty(0):
            line = b""
            while not line.endswith(b"\n") and len(line) <= SECRET_LIMIT:
                chunk = os.read(0, 1)
                if not chunk:
                    break
                line += chunk
            return line
        return files.read_bounded(0, SECRET_LIMIT)
    except OSError as exc:
        if exc.errno == errno.EBADF:
            raise KnocksshError("standard input is closed: no secret to read") from None
        raise KnocksshError(f"standard input: {exc.strerror}") from None


def read_secret_file(path: str) -> bytes:
    """A secret file as given: a regular file, or a pipe (``<(pass show x)``); read
    to its end, bounded."""
    try:
        fd = os.open(os.path.expanduser(path), os.O_RDONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise KnocksshError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise KnocksshError(f"{path}: cannot read: is a directory")
        return files.read_bounded(fd, SECRET_LIMIT)
    except OSError as exc:
        raise KnocksshError(f"{path}: cannot read: {exc.strerror}") from None
    finally:
        os.close(fd)


def toml_string(text: str) -> str:
    """A TOML basic string: quotes, backslashes and control characters escaped,
    everything else (é, emoji) as it is."""
    out = []
    for c in text:
        if c in '"\\':
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def entry_text(
    host: str, service: str, secret_file: str, tunables: Mapping[str, int | str] | None = None
) -> str:
    more = "".join(
        f"{key} = {toml_string(value) if isinstance(value, str) else value}\n"
        for key, value in (tunables or {}).items()
    )
    return (
        f"\n[[host]]\nmatch = [{toml_string(host)}]\nservice = {toml_string(service)}\n"
        f"secret_file = {toml_string(secret_file)}\n{more}"
    )


PATTERN_CHARS = "*?![]"


def check_host(host: str) -> str:
    """One host name or address, fit for a ``match`` list, an ssh_config ``Host``
    line and ``ssh -G``. A pattern is refused: ``*`` would send every server you
    connect to a knock made with this secret (patterns are for the file, by hand)."""
    bad = [c for c in host if c.isspace() or not c.isprintable() or c in "\"'\\#,="]
    if not host or bad:
        raise KnocksshError(f"refusing host name {host!r}: a name or address, no spaces or quotes")
    if host.startswith("-"):
        raise KnocksshError(f"refusing host name {host!r}: it would read as an option")
    if any(c in PATTERN_CHARS for c in host):
        raise KnocksshError(
            f"refusing host {host!r}: add takes one host, not a pattern "
            f"(write patterns into the mapping file by hand)"
        )
    return host


def check_service(service: str) -> str:
    problem = server_setup.service_problem(service)
    if problem:
        raise KnocksshError(f"--service {service!r}: {problem}")
    return service


def add(
    host: str,
    service: str | None,
    secret: str,
    cli_config: str | None,
    env: Mapping[str, str],
    replace: bool = False,
    tunables: Mapping[str, int | str] | None = None,
) -> tuple[str, str, bool]:
    """Append the entry (creating the mapping file 0600 if needed, keeping every byte
    already in it) and store the secret; with ``replace``, an entry of HOST's own
    gets the new secret instead. ``tunables`` (period, length...) go into a new
    entry. The mapping file's and the secret's paths, and whether an entry was
    replaced."""
    check_host(host)
    check_service(service or "ssh")
    path, _ = mapping.config_path(cli_config, env)
    directory = os.path.dirname(path)
    _directory(directory, "the mapping file's directory")
    with _locked(directory):
        target, old, mode = _current(path)
        found = mapping.parse(old, path, mode).lookup(host) if old else None
        stored = secret_path(directory, host)
        if found is not None:
            if not replace:
                raise KnocksshError(
                    f"{path}: {host} already has an entry (host entry {found.number}); "
                    f"--replace gives it a new secret, 'knockssh remove {host}' removes it"
                )
            _replace_secret(found, host, service, stored, secret)
            return path, stored, True
        service = service or "ssh"
        addition = entry_text(host, service, stored, tunables).encode()
        if not old:
            addition = addition.lstrip(b"\n")
        elif not old.endswith(b"\n"):
            addition = b"\n" + addition
        new = old + addition
        mapping.parse(new, path, 0o600)  # what we would write must read back
        _directory(os.path.dirname(stored), "the secrets directory", follow=False)
        _store_secret(stored, secret)
        try:
            files.replace(target, new, 0o600)
        except OSError as exc:
            os.unlink(stored)  # nothing half done
            raise KnocksshError(f"{path}: cannot write: {exc.strerror}; left as it was") from None
    return path, stored, False


@contextlib.contextmanager
def _locked(directory: str) -> Iterator[None]:
    """The lock every writer of the mapping file takes, on its directory."""
    lock = files.locked(directory)
    try:
        lock.__enter__()
    except OSError as exc:
        raise KnocksshError(f"{directory}: cannot lock: {exc.strerror}") from None
    try:
        yield
    finally:
        lock.__exit__()


def _replace_secret(
    entry: mapping.HostEntry, host: str, service: str | None, stored: str, secret: str
) -> None:
    """A new secret for the entry ``add`` made for ``host`` (its own secret file);
    an entry written by hand, or one whose service differs, is left alone."""
    if entry.patterns != (host.lower(),) or entry.secret_file != stored:
        raise KnocksshError(
            f"{entry.label}: not an entry 'knockssh add' made for {host} (its secret is not "
            f"in {stored}): change it by hand"
        )
    if service is not None and service != entry.service:
        raise KnocksshError(
            f"{entry.label}: knocks service {entry.service!r}, not {service!r}: "
            f"--replace changes only the secret"
        )
    _directory(os.path.dirname(stored), "the secrets directory", follow=False)
    try:
        files.replace(stored, (secret + "\n").encode(), 0o600, keep_mode=False)
    except OSError as exc:
        raise KnocksshError(f"{stored}: cannot write: {exc.strerror}; left as it was") from None


HEADER = re.compile(r"[ \t]*\[\[[ \t]*host[ \t]*\]\][ \t]*(#.*)?\r?\n?")
TABLE = re.compile(r"[ \t]*\[")
SPACE_OR_COMMENT = re.compile(r"[ \t]*(#.*)?\r?\n?")


def without_entry(text: str, number: int) -> str | None:
    """``text`` without its ``number``-th ``[[host]]`` table: from its header to the
    next table, less the comments and blank lines just before that table (they
    belong to it), and one blank line before the header (``add`` writes one).
    None if the table cannot be found; the caller checks the result by parsing it."""
    lines = text.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if HEADER.fullmatch(line)]
    if not 1 <= number <= len(headers):
        return None
    start = headers[number - 1]
    end = next((i for i in range(start + 1, len(lines)) if TABLE.match(lines[i])), len(lines))
    while end > start + 1 and SPACE_OR_COMMENT.fullmatch(lines[end - 1]):
        end -= 1
    if start > 0 and not lines[start - 1].strip():
        start -= 1
    return "".join(lines[:start] + lines[end:])


def _same(entry: mapping.HostEntry) -> str:
    return repr((entry.patterns, sorted(entry.values.items())))


def remove(host: str, cli_config: str | None, env: Mapping[str, str]) -> tuple[str, str | None]:
    """Remove the entry of ``host`` (one of its own: ``match = ["HOST"]``), keeping
    every other byte of the mapping file, and the secret file ``add`` stored for it.
    The mapping file's path and the removed secret file's (None: none was ours)."""
    check_host(host)
    path, _ = mapping.config_path(cli_config, env)
    directory = os.path.dirname(path)
    if not os.path.lexists(path):
        raise KnocksshError(f"{path}: no mapping file, so no entry for {host}")
    with _locked(directory):
        target, old, mode = _current(path)
        if not old:
            raise KnocksshError(f"{path}: no mapping file, so no entry for {host}")
        hostmap = mapping.parse(old, path, mode)
        found = hostmap.lookup(host)
        if found is None:
            raise KnocksshError(f"{path}: no entry matches {host}: nothing removed")
        if found.patterns != (host.lower(),):
            raise KnocksshError(
                f"{found.label}: matches {', '.join(found.patterns)}, not {host} alone: "
                f"edit the file by hand"
            )
        try:
            text = old.decode("utf-8")
        except UnicodeDecodeError:  # parse() refused it already
            raise KnocksshError(f"{path}: not UTF-8 text") from None
        new = without_entry(text, found.number)
        others = [_same(e) for e in hostmap.entries if e is not found]
        if new is None or [_same(e) for e in mapping.parse(new.encode(), path).entries] != others:
            raise KnocksshError(
                f"{found.label}: its lines could not be told apart: edit the file by hand"
            )
        try:
            files.replace(target, new.encode(), mode)
        except OSError as exc:
            raise KnocksshError(f"{path}: cannot write: {exc.strerror}; left as it was") from None
    stored = secret_path(directory, host)
    if found.secret_file != stored:
        return path, None
    try:
        os.unlink(stored)
    except FileNotFoundError:
        return path, None
    except OSError as exc:
        raise KnocksshError(f"{stored}: entry removed, secret file not: {exc.strerror}") from None
    return path, stored


def _directory(directory: str, what: str, follow: bool = True) -> None:
    """Make ``directory`` private (0700) if it is missing; refuse one that someone
    else could change under us."""
    try:
        files.private_directory(directory)
    except OSError as exc:
        raise KnocksshError(f"{directory}: cannot make {what}: {exc.strerror}") from None
    problem = files.unsafe_directory(directory, follow=follow)
    if problem:
        raise KnocksshError(f"{directory}: {problem}: not a safe place for a secret")


def _current(path: str) -> tuple[str, bytes, int]:
    """The file to replace (a link's target), what it holds and its mode; refused if
    it is not a regular file or not writable by its owner."""
    target = os.path.realpath(path) if os.path.islink(path) else path
    try:
        data, st = files.read_regular(target, mapping.LIMIT)
    except FileNotFoundError:
        if target != path:
            raise KnocksshError(f"{path}: a link to {target}, which is missing") from None
        return path, b"", 0o600
    except OSError as exc:
        raise KnocksshError(f"{path}: cannot read mapping file: {exc.strerror}") from None
    if not st.st_mode & stat.S_IWUSR:
        raise KnocksshError(
            f"{path}: read-only (mode {stat.S_IMODE(st.st_mode):04o}): left as it was"
        )
    return target, data, stat.S_IMODE(st.st_mode)


def _store_secret(path: str, secret: str) -> None:
    try:
        files.create_private(path, (secret + "\n").encode())
    except FileExistsError:
        raise KnocksshError(
            f"{path} exists but no entry names it: left as it was (remove it to start over)"
        ) from None
    except OSError as exc:
        raise KnocksshError(f"{path}: cannot write: {exc.strerror}") from None


def ssh_uses_knockssh(host: str, ssh_args: tuple[str, ...] = ()) -> bool | None:
    """Does ``ssh -G HOST`` give a ProxyCommand running knockssh? None if ssh cannot tell."""
    from .wrappers import ssh_config_of

    config = ssh_config_of([*ssh_args, host])
    if not config:
        return None
    return "knockssh" in config.get("proxycommand", "")
