"""The mapping file (hosts.toml): which hosts to knock, and how.

Hosts are chosen with ssh_config-style patterns: ``*``, ``?`` and ``!negation``,
case-insensitive (kept here, not in a module of their own: each module is a
fraction of a millisecond at every ssh connection).
"""

from __future__ import annotations

import os
import sys

from .errors import KnocksshError

TYPE_CHECKING = False  # typing and tomllib cost more start-up time than all of knockssh
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

TUNABLES: dict[str, tuple[type | tuple[type, ...], Callable[[Any], bool], str]] = {
    # key -> (types, check, description); the scheme's own limits are in scheme.validate
    "period": (int, lambda v: 1 <= v <= 10**9, "a whole number of seconds from 1 to 10**9"),
    "length": (int, lambda v: 5 <= v <= 32, "a whole number from 5 to 32"),
    "ports": (str, lambda v: True, 'a port list such as "2000-65536"'),
    "proto_modulo": (int, lambda v: 0 <= v <= 65536, "a whole number from 0 to 65536"),
    "connect_timeout": (
        (int, float),
        lambda v: 0 < v <= 3600,
        "seconds, more than 0, at most 3600",
    ),
    "clock_skew": ((int, float), lambda v: 0 <= v <= 86400, "seconds from 0 to 86400"),
    "knock_delay_ms": ((int, float), lambda v: 0 <= v <= 10_000, "milliseconds from 0 to 10000"),
}
SECRET_KEYS = ("secret_file", "secret_env", "secret_command", "secret")
HOST_KEYS = {"match", "service", "sequence", "knock_host", *SECRET_KEYS, *TUNABLES}
DEFAULT_KEYS = HOST_KEYS - {"match", "sequence"}


DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds
DEFAULT_CLOCK_SKEW = 300.0  # seconds; also covers a knockd_rotator server ~250 s late


class HostEntry:
    """One ``[[host]]`` entry merged over ``[defaults]``, as typed fields (validated
    once, by parse()); the secret is not read yet."""

    __slots__ = (
        "clock_skew",
        "connect_timeout",
        "knock_delay",
        "knock_host",
        "length",
        "number",
        "path",
        "patterns",
        "period",
        "ports",
        "proto_modulo",
        "secret",
        "secret_command",
        "secret_env",
        "secret_file",
        "service",
        "static_sequence",
        "values",
    )

    def __init__(
        self, path: str, number: int, patterns: tuple[str, ...], values: Mapping[str, Any]
    ) -> None:
        self.path = path
        self.number = number  # 1-based, for messages
        self.patterns = patterns
        self.values = values  # as read: with_service() derives an entry from them
        self.service: str | None = values.get("service")
        self.static_sequence: str | None = values.get("sequence")
        self.knock_host: str | None = values.get("knock_host")
        self.period: int | None = values.get("period")
        self.length: int | None = values.get("length")
        self.ports: str | None = values.get("ports")
        self.proto_modulo: int | None = values.get("proto_modulo")
        self.connect_timeout = float(values.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
        self.clock_skew = float(values.get("clock_skew", DEFAULT_CLOCK_SKEW))
        delay = values.get("knock_delay_ms")
        self.knock_delay: float | None = None if delay is None else float(delay) / 1000
        self.secret: str | None = values.get("secret")
        self.secret_file: str | None = values.get("secret_file")
        self.secret_env: str | None = values.get("secret_env")
        command = values.get("secret_command")
        self.secret_command: tuple[str, ...] | None = None if command is None else tuple(command)

    def __repr__(self) -> str:  # values may hold a secret
        return f"HostEntry({self.label!r})"

    @property
    def label(self) -> str:
        if not self.number:  # not from a file: the path says where it came from
            return self.path
        return f"{self.path}: host entry {self.number} ({self.patterns[0]})"

    def with_service(self, service: str) -> HostEntry:
        """The same entry knocking ``service`` (rotated) instead of its own sequence."""
        values = {k: v for k, v in self.values.items() if k != "sequence"}
        values["service"] = service
        return HostEntry(self.path, self.number, self.patterns, values)


class HostMap:
    __slots__ = ("entries", "found", "path")

    def __init__(self, path: str, entries: tuple[HostEntry, ...], found: bool = True) -> None:
        self.path = path
        self.entries = entries
        self.found = found  # False: no file at the default path (an empty map)

    def unmatched(self, host: str) -> str:
        """Why ``host`` is not knocked for, naming the file: for messages."""
        if not self.found:
            return f"no knock: there is no mapping file {self.path}"
        return f"no knock: no entry of {self.path} matches {host}"

    def lookup(self, host: str) -> HostEntry | None:
        for entry in self.entries:
            if matches(entry.patterns, host):
                return entry
        return None


# -- host patterns ---------------------------------------------------------

BAD_PATTERN_CHARS = frozenset(" \t\r\n,\"'\\")


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` is unusable, or None."""
    body = pattern[1:] if pattern.startswith("!") else pattern
    if not body:
        return "empty pattern"
    if any(c in BAD_PATTERN_CHARS or ord(c) < 32 for c in body):
        return f"pattern {pattern!r} holds whitespace, a quote, a comma or a control character"
    if body.startswith("!"):
        return f"pattern {pattern!r} is negated twice"
    return None


def glob(pattern: str, name: str) -> bool:
    """``*`` matches any run of characters, ``?`` exactly one (iterative, no regex)."""
    p = n = 0
    star_p, star_n = -1, 0
    while n < len(name):
        if p < len(pattern) and (pattern[p] == "?" or pattern[p] == name[n]):
            p += 1
            n += 1
        elif p < len(pattern) and pattern[p] == "*":
            star_p, star_n = p, n
            p += 1
        elif star_p >= 0:
            p = star_p + 1
            star_n += 1
            n = star_n
        else:
            return False
    return all(c == "*" for c in pattern[p:])


def matches(patterns: tuple[str, ...], host: str) -> bool:
    """As ssh's Host line: no negated pattern matches and at least one plain one does."""
    host = host.lower()
    hit = False
    for pattern in patterns:
        if pattern.startswith("!"):
            if glob(pattern[1:], host):
                return False
        elif not hit and glob(pattern, host):
            hit = True
    return hit


# -- reading the file -------------------------------------------------------


def config_path(cli_path: str | None, env: Mapping[str, str]) -> tuple[str, bool]:
    """The mapping file's absolute path and whether the user named it explicitly. A
    relative $XDG_CONFIG_HOME is ignored, as the XDG rule says; a relative file named
    by the user is taken from the current directory, once, here. ``--config`` on the
    command line wins over $KNOCKSSH_CONFIG."""
    named = cli_path or env.get("KNOCKSSH_CONFIG")
    if named:
        return os.path.abspath(os.path.expanduser(named)), True
    base = env.get("XDG_CONFIG_HOME") or ""
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".config")
    return os.path.join(base, "knockssh", "hosts.toml"), False


LIMIT = 1024 * 1024  # bytes: a mapping file is a few KiB


def load(cli_path: str | None = None, env: Mapping[str, str] | None = None) -> HostMap:
    from rotator.files import read_regular

    env = os.environ if env is None else env
    path, explicit = config_path(cli_path, env)
    try:
        data, st = read_regular(path, LIMIT)  # a FIFO is refused, not waited on
    except FileNotFoundError:
        if explicit:
            raise KnocksshError(f"{path}: mapping file not found") from None
        return HostMap(path, (), found=False)
    except OSError as exc:
        raise KnocksshError(f"{path}: cannot read mapping file: {exc.strerror}") from None
    return parse(data, path, st.st_mode)


def _toml_loads(text: str) -> dict[str, Any]:
    from .toml_subset import loads

    doc = loads(text)
    if doc is not None:
        return doc
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on old interpreters only
        import tomli as tomllib
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(str(exc)) from None


def parse(data: bytes, path: str, mode: int = 0o600) -> HostMap:
    """Validate a mapping file's bytes; ``mode`` is its permission bits for the secret check."""
    try:
        doc = _toml_loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise KnocksshError(f"{path}: not UTF-8 text") from None
    except ValueError as exc:
        raise KnocksshError(f"{path}: invalid TOML: {exc}") from None
    for key in doc:
        if key not in ("defaults", "host"):
            raise KnocksshError(f"{path}: unknown top-level key {key!r} (use [defaults], [[host]])")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict):
        raise KnocksshError(f"{path}: [defaults] must be a table")
    _check_values(defaults, DEFAULT_KEYS, f"{path}: [defaults]")
    hosts = doc.get("host", [])
    if not isinstance(hosts, list) or not all(isinstance(h, dict) for h in hosts):
        raise KnocksshError(f"{path}: host entries must be written [[host]]")
    holds_secret = "secret" in defaults
    entries = []
    for index, raw in enumerate(hosts, 1):
        where = f"{path}: host entry {index}"
        patterns = _patterns(raw.get("match"), where)
        where = f"{where} ({patterns[0]})"
        _check_values(raw, HOST_KEYS, where)
        inherited = defaults
        if any(k in raw for k in SECRET_KEYS):  # a host's own secret replaces the default one
            inherited = {k: v for k, v in defaults.items() if k not in SECRET_KEYS}
        values = {**inherited, **raw}
        del values["match"]
        _check_entry(values, where)
        holds_secret = holds_secret or "secret" in raw
        entries.append(HostEntry(path, index, patterns, values))
    if holds_secret:
        refuse_if_exposed(path, mode)
    return HostMap(path, tuple(entries))


def refuse_if_exposed(path: str, mode: int) -> None:
    if mode & 0o077:
        raise KnocksshError(
            f"{path}: holds a secret but is accessible by group or others "
            f"(mode {mode & 0o777:04o}); run: chmod 600 {path}"
        )


def _patterns(value: object, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(p, str) for p in value):
        raise KnocksshError(f"{where}: key 'match' must be a non-empty list of host patterns")
    for pattern in value:
        problem = check_pattern(pattern)
        if problem:
            raise KnocksshError(f"{where}: key 'match': {problem}")
    if all(p.startswith("!") for p in value):
        raise KnocksshError(f"{where}: key 'match' has only negated patterns: it matches no host")
    return tuple(p.lower() for p in value)


def _check_values(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    for key, value in table.items():
        if key not in allowed:
            raise KnocksshError(f"{where}: unknown key {key!r}")
        if key in TUNABLES:
            types, ok, wanted = TUNABLES[key]
            if isinstance(value, bool) or not isinstance(value, types) or not ok(value):
                raise KnocksshError(f"{where}: key {key!r} must be {wanted}")
        elif key == "secret_command":
            if not (isinstance(value, list) and value and all(isinstance(a, str) for a in value)):
                raise KnocksshError(f"{where}: key 'secret_command' must be a list of strings")
        elif key != "match" and (not isinstance(value, str) or not value):
            raise KnocksshError(f"{where}: key {key!r} must be a non-empty string")


def _check_entry(values: Mapping[str, Any], where: str) -> None:
    from rotator.scheme import SchemeError, parse_port_spec, parse_sequence

    if ("service" in values) == ("sequence" in values):
        raise KnocksshError(f"{where}: give exactly one of 'service' (rotated) or 'sequence'")
    sources = [k for k in SECRET_KEYS if k in values]
    if len(sources) > 1:
        raise KnocksshError(f"{where}: keys {', '.join(sources)}: give only one secret source")
    try:
        if "sequence" in values:
            parse_sequence(values["sequence"])
        if "ports" in values:
            parse_port_spec(values["ports"])
    except SchemeError as exc:
        key = "sequence" if "sequence" in values else "ports"
        raise KnocksshError(f"{where}: key {key!r}: {exc}") from None
