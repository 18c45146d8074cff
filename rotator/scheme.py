"""The rotation scheme, byte-compatible with knockd_rotator.

Pure: no I/O, no clock, no environment reads (callers pass them in), standard
library only. This file can be copied alone onto any machine with Python 3.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs more start-up time than this whole module
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from typing import Any, Union

    Ports = Union[tuple[int, ...], "PortList"]

SUFFIX = "_ROTATOR"
MIN_SECRET_CHARS = 10
PLACEHOLDER = "change-me"  # how every example secret we ship begins: refused as a secret
MIN_LENGTH = 5
MAX_LENGTH = 32  # knockd's SEQ_MAX
MIN_ENTROPY_BITS = 40.0
MAX_PORT = 65535
LEGACY_TOP_PORT = 65536  # in knockd_rotator's default spec; never knocked nor written

ENV_PREFIX = "KNOCKD_ROTATOR_"
DEFAULTS = {
    "LENGTH": "10",
    "PORTS": "2000-65536",
    "PERIOD_MODULO": "21600",
    "PROTO_MODULO": "0",
    "SERVER_INTERVAL": "3600",
}


class SchemeError(ValueError):
    """A setting or input the scheme refuses; the message is meant for users."""


class Knock(tuple[int, str]):
    """One knock: ``(port, proto)`` with proto "tcp" or "udp"; compares equal to that tuple."""

    __slots__ = ()

    def __new__(cls, port: int, proto: str = "tcp") -> Knock:
        return super().__new__(cls, (port, proto))

    @property
    def port(self) -> int:
        return self[0]

    @property
    def proto(self) -> str:
        return self[1]

    def __repr__(self) -> str:
        return f"Knock(port={self[0]}, proto={self[1]!r})"

    def __str__(self) -> str:
        return f"{self[0]}:{self[1]}"


class Settings:
    """Everything that shapes a sequence. Plain slots, not a NamedTuple: see TYPE_CHECKING."""

    __slots__ = ("length", "period", "ports", "proto_modulo", "secret", "server_interval")

    def __init__(
        self,
        secret: str,
        length: int = 10,
        ports: Ports = (),
        period: int = 21600,
        proto_modulo: int = 0,
        server_interval: int = 3600,
    ) -> None:
        self.secret = secret
        self.length = length
        self.ports = ports
        self.period = period
        self.proto_modulo = proto_modulo
        self.server_interval = server_interval

    def _values(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Settings) and self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable: no hashing

    def replace(self, **changes: object) -> Settings:
        values = {name: getattr(self, name) for name in self.__slots__}
        return Settings(**{**values, **changes})

    def __repr__(self) -> str:  # never show the secret
        return (
            f"Settings(secret=<hidden>, length={self.length}, ports=<{len(self.ports)} ports>, "
            f"period={self.period}, proto_modulo={self.proto_modulo}, "
            f"server_interval={self.server_interval})"
        )

    @property
    def entropy_bits(self) -> float:
        return entropy_bits(self.length, len(self.ports))


# -- periods ---------------------------------------------------------------


def period_start(at: float, period: int, offset: int = 0) -> int:
    """Start (UNIX seconds) of the period holding instant ``at``, shifted by ``offset`` periods."""
    return (int(at // period) + offset) * period


def next_boundary(at: float, period: int) -> int:
    return period_start(at, period, 1)


# -- port specs ------------------------------------------------------------


class PortList:
    """Sorted, distinct ports held as inclusive ranges.

    Indexing, ``len`` and iteration behave as on the tuple of every port, without
    building it: the legacy default holds 63 537 ports, milliseconds to build and
    sort at every connection. Compares equal to that tuple.
    """

    __slots__ = ("_size", "_spans")

    def __init__(self, spans: tuple[tuple[int, int], ...]) -> None:
        self._spans = spans  # sorted, disjoint (low, high) pairs
        self._size = sum(high - low + 1 for low, high in spans)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> int:
        if index < 0:
            index += self._size
        if not 0 <= index < self._size:
            raise IndexError("port index out of range")
        for low, high in self._spans:
            if index <= high - low:
                return low + index
            index -= high - low + 1
        raise AssertionError("unreachable: the size covers every span")

    def __iter__(self) -> Iterator[int]:
        for low, high in self._spans:
            yield from range(low, high + 1)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (PortList, tuple)):
            return tuple(self) == tuple(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal to tuples: no hash of its own

    def __repr__(self) -> str:
        spec = ",".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in self._spans)
        return f"PortList({spec!r})"


def parse_port_spec(spec: str) -> PortList:
    """``"2000-3000,4000"`` -> sorted ports; ranges include both ends; duplicates refused."""
    spans: list[tuple[int, int]] = []
    for raw in spec.split(","):
        part = raw.strip()
        if not part:
            raise SchemeError(f"empty item in port list {spec!r}")
        if "-" in part:
            lo_text, hi_text = part.split("-", 1)
            lo, hi = _port_number(lo_text, spec), _port_number(hi_text, spec)
            if lo > hi:
                raise SchemeError(f"range {part!r} runs backwards in port list {spec!r}")
            spans.append((lo, hi))
        else:
            port = _port_number(part, spec)
            spans.append((port, port))
    spans.sort()
    for (_, previous_high), (low, _) in zip(spans, spans[1:]):
        if low <= previous_high:
            raise SchemeError(f"duplicate ports (or overlapping ranges) in port list {spec!r}")
    ports = PortList(tuple(spans))
    if len(ports) < 2:
        raise SchemeError(f"port list {spec!r} must hold at least 2 ports")
    return ports


def _port_number(text: str, spec: str) -> int:
    text = text.strip()
    if not text.isdigit() or not text.isascii():
        raise SchemeError(f"{text!r} is not a port number in port list {spec!r}")
    port = int(text)
    if not 1 <= port <= LEGACY_TOP_PORT:
        raise SchemeError(f"port {port} is outside 1-{MAX_PORT} in port list {spec!r}")
    return port


# -- settings and validation -----------------------------------------------


def entropy_bits(length: int, port_count: int) -> float:
    import math  # here, not at the top: a shared library to load, for messages only

    return length * math.log2(port_count) if port_count > 1 else 0.0


ENV_NAMES = {  # where settings_from_env takes each setting from
    "secret": ENV_PREFIX + "SECRET",
    "length": ENV_PREFIX + "LENGTH",
    "ports": ENV_PREFIX + "PORTS",
    "period": ENV_PREFIX + "PERIOD_MODULO",
    "proto_modulo": ENV_PREFIX + "PROTO_MODULO",
    "server_interval": ENV_PREFIX + "SERVER_INTERVAL",
}
MAX_PERIOD = 10**9  # seconds (31 years)
MAX_PROTO_MODULO = 65536


def validate(settings: Settings, named: Mapping[str, str] | None = None) -> list[str]:
    """Raise SchemeError for a setting the scheme refuses; return warnings (not printed).
    ``named`` says where each setting came from (a variable, a file's key): an error
    starts with that name."""

    def refuse(field: str, message: str) -> SchemeError:
        where = (named or {}).get(field)
        return SchemeError(f"{where}: {message}" if where else message)

    if not settings.secret:
        raise refuse("secret", "the shared secret is required")
    if len(settings.secret) < MIN_SECRET_CHARS:
        raise refuse("secret", f"the secret must be at least {MIN_SECRET_CHARS} characters long")
    if settings.secret.lower().startswith(PLACEHOLDER):
        raise refuse(
            "secret",
            "this is the example's placeholder, not a secret: make one with `openssl rand -hex 64`",
        )
    if settings.length < MIN_LENGTH:
        raise refuse("length", f"sequence length {settings.length} is below {MIN_LENGTH}")
    if settings.length > MAX_LENGTH:
        raise refuse(
            "length", f"sequence length {settings.length} is above knockd's limit of {MAX_LENGTH}"
        )
    if len(settings.ports) < 2:
        raise refuse("ports", "the port list must hold at least 2 ports")
    if not 1 <= settings.period <= MAX_PERIOD:
        raise refuse("period", f"period {settings.period} must be from 1 to {MAX_PERIOD} seconds")
    if not 0 <= settings.proto_modulo <= MAX_PROTO_MODULO:
        raise refuse(
            "proto_modulo", f"proto_modulo {settings.proto_modulo} must be from 0 to 65536"
        )
    if not 1 <= settings.server_interval <= MAX_PERIOD:
        raise refuse(
            "server_interval", f"server interval {settings.server_interval} must be positive"
        )
    # length * log2(ports) < 40, exactly, in whole numbers
    if len(settings.ports) ** settings.length < 2**MIN_ENTROPY_BITS:
        raise SchemeError(
            f"insufficient entropy: {settings.entropy_bits:.2f} bits < {MIN_ENTROPY_BITS:.0f} "
            "(raise the length or add ports)"
        )
    if len(settings.ports) <= 3:
        return [f"only {len(settings.ports)} ports to choose from: this weakens the sequence"]
    return []


def whole_number(text: str) -> int | None:
    """``text`` as a whole number of at most 12 ASCII digits (an optional leading
    minus), else None: checked as text, before any arithmetic could overflow."""
    digits = text[1:] if text.startswith("-") else text
    if len(text) > 12 or not (digits.isascii() and digits.isdigit()):
        return None
    return int(text, 10)


def utf8(text: str, what: str) -> str:
    """``text`` if it is UTF-8 (the scheme hashes UTF-8 bytes); else SchemeError naming
    ``what`` (Python hands undecodable bytes of argv and the environment on as
    surrogates, which only fail later, deep in the hashing)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise SchemeError(f"{what} is not valid UTF-8 text") from None
    return text


def settings_from_env(env: Mapping[str, str], **overrides: object) -> Settings:
    """Build Settings from KNOCKD_ROTATOR_* values in ``env``; ``overrides`` win when not None."""

    def raw(name: str) -> str:
        return utf8(env.get(ENV_PREFIX + name, DEFAULTS.get(name, "")), ENV_PREFIX + name)

    def integer(name: str) -> int:
        text = raw(name).strip()
        value = whole_number(text)
        if value is None:
            shown = text if len(text) <= 24 else text[:20] + "..."
            raise SchemeError(
                f"{ENV_PREFIX}{name}={shown!r} is not a whole number (at most 12 digits)"
            )
        return value

    values: dict[str, object] = {"secret": raw("SECRET")}
    for field, name in (
        ("length", "LENGTH"),
        ("period", "PERIOD_MODULO"),
        ("proto_modulo", "PROTO_MODULO"),
        ("server_interval", "SERVER_INTERVAL"),
    ):
        if overrides.get(field) is None:
            values[field] = integer(name)
    if overrides.get("ports") is None:
        try:
            values["ports"] = parse_port_spec(raw("PORTS"))
        except SchemeError as exc:
            raise SchemeError(f"{ENV_PREFIX}PORTS: {exc}") from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values)  # type: ignore[arg-type]


# -- derivation ------------------------------------------------------------


def rotator_name(service: str) -> str:
    return service if service.endswith(SUFFIX) else service + SUFFIX


def derive(settings: Settings, service: str, start: int) -> tuple[Knock, ...]:
    """The knock sequence of ``service`` for the period starting at ``start``.

    Raises SchemeError when the sequence would hold a port knockd cannot use
    (65536 from the legacy default port list).
    """
    sha256 = _sha256()
    seed = f"{start}{rotator_name(service)}{settings.secret}"
    ports = settings.ports
    knocks = []
    for i in range(1, settings.length + 1):
        n = int(sha256(f"{seed}{i}".encode()).hexdigest()[:8], 16)
        port = ports[n % len(ports)]
        if port > MAX_PORT:
            raise SchemeError(
                f"the sequence of {rotator_name(service)} for the period starting at {start} "
                f"would knock port {port}, which does not exist; use --offset to take "
                "another period"
            )
        mod = settings.proto_modulo
        knocks.append(Knock(port, "tcp" if mod == 0 or port % mod == 0 else "udp"))
    return tuple(knocks)


def _sha256() -> Any:
    """hashlib loads OpenSSL (milliseconds at every ssh connection); CPython's own
    SHA-256 module gives the same digests and loads in microseconds."""
    try:
        from _sha2 import sha256  # type: ignore[import-not-found]  # CPython >= 3.12
    except ImportError:
        try:
            from _sha256 import sha256  # type: ignore[import-not-found]  # CPython < 3.12
        except ImportError:
            from hashlib import sha256
    return sha256


def client_form(knocks: tuple[Knock, ...]) -> str:
    return " ".join(map(str, knocks))


def knockd_form(knocks: tuple[Knock, ...]) -> str:
    return ",".join(map(str, knocks))


def parse_sequence(text: str) -> tuple[Knock, ...]:
    """A static knockd sequence, ``"7000,8000:udp,9000"`` (also space-separated)."""
    items = [p for p in text.replace(",", " ").split() if p]
    if not items:
        raise SchemeError("empty knock sequence")
    if len(items) > MAX_LENGTH:
        raise SchemeError(f"{len(items)} knocks is above knockd's limit of {MAX_LENGTH}")
    knocks = []
    for item in items:
        port_text, _, proto = item.partition(":")
        proto = (proto or "tcp").lower()
        if not port_text.isdigit() or not 1 <= int(port_text) <= MAX_PORT:
            raise SchemeError(f"{item!r}: port must be a number from 1 to {MAX_PORT}")
        if proto not in ("tcp", "udp"):
            raise SchemeError(f"{item!r}: protocol must be tcp or udp")
        knocks.append(Knock(int(port_text), proto))
    return tuple(knocks)
