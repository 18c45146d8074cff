"""The enrolment line: everything a client needs to knock one door, in one URI (pure).

    knockssh://HOST:PORT/SERVICE?v=1&period=P&length=L&ports=SPEC&proto_modulo=M&secret=S

HOST is a name or an address (an IPv6 address in brackets), PORT sshd's port,
SERVICE the door's service (its knockd section is SERVICE_ROTATOR); the query holds
the scheme's settings and the secret, each percent-encoded (RFC 3986), every key
exactly once, no other key. ``v`` is the form's version: a reader refuses any other
version rather than guess. docs/enrolment.md describes it for other clients.

Errors never show the line: it holds the secret."""

from __future__ import annotations

from typing import NamedTuple
from urllib.parse import quote, unquote

from .scheme import SchemeError, Settings, parse_port_spec, validate
from .secret import read_secret

SCHEME = "knockssh://"
VERSION = "1"
KEYS = ("v", "period", "length", "ports", "proto_modulo", "secret")
LIMIT = 8192  # characters: a line longer than this is not an enrolment line


class EnrolmentError(ValueError):
    pass


class Enrolment(NamedTuple):
    host: str
    port: int
    service: str
    period: int
    length: int
    ports: str  # the spec, as KNOCKD_ROTATOR_PORTS gives it
    proto_modulo: int
    secret: str

    def __repr__(self) -> str:  # never show the secret
        return f"Enrolment(host={self.host!r}, port={self.port}, service={self.service!r}, ...)"


def line(e: Enrolment) -> str:
    host = f"[{e.host}]" if ":" in e.host else e.host
    query = {
        "v": VERSION,
        "period": str(e.period),
        "length": str(e.length),
        "ports": e.ports,
        "proto_modulo": str(e.proto_modulo),
        "secret": e.secret,
    }
    encoded = "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    return f"{SCHEME}{quote(host, safe='[]:')}:{e.port}/{quote(e.service, safe='')}?{encoded}"


def parse(text: str) -> Enrolment:
    """The enrolment in ``text`` (one line; surrounding whitespace ignored), checked
    as the scheme checks settings; EnrolmentError saying what is wrong, never the
    line itself."""
    text = text.strip(" \t\r\n")
    if len(text) > LIMIT:
        raise EnrolmentError(f"not an enrolment line: longer than {LIMIT} characters")
    if "\n" in text or "\r" in text:
        raise EnrolmentError("not an enrolment line: more than one line")
    if not text.startswith(SCHEME):
        raise EnrolmentError(f"not an enrolment line: it does not begin with {SCHEME}")
    rest = text[len(SCHEME) :]
    where, question, query = rest.partition("?")
    if not question:
        raise EnrolmentError("enrolment line: no settings (nothing after '?')")
    authority, slash, service = where.partition("/")
    if not slash or not service:
        raise EnrolmentError("enrolment line: no service after the host and port")
    host, port = _authority(authority)
    values: dict[str, str] = {}
    for item in query.split("&"):
        key, eq, value = item.partition("=")
        if not eq or key not in KEYS:
            shown = key if key.isidentifier() and len(key) <= 20 else "(not shown)"
            raise EnrolmentError(f"enrolment line: unknown setting {shown}")
        if key in values:
            raise EnrolmentError(f"enrolment line: {key} given twice")
        values[key] = _unquoted(value, key)
    if values.get("v") != VERSION:
        if "v" not in values:
            raise EnrolmentError("enrolment line: no version (v=)")
        shown = values["v"] if values["v"].isdigit() and len(values["v"]) < 6 else "?"
        raise EnrolmentError(
            f"enrolment line: version {shown}, this knockssh reads version {VERSION} "
            "(a newer knockssh may read it)"
        )
    missing = [k for k in KEYS if k not in values]
    if missing:
        raise EnrolmentError(f"enrolment line: {', '.join(missing)} missing")
    service = _unquoted(service, "service")
    try:
        secret = read_secret(values["secret"], "the secret")
        try:
            ports = parse_port_spec(values["ports"])
        except SchemeError as exc:
            raise SchemeError(f"ports: {exc}") from None
        settings = Settings(
            secret,
            length=_number(values["length"], "length"),
            ports=ports,
            period=_number(values["period"], "period"),
            proto_modulo=_number(values["proto_modulo"], "proto_modulo"),
        )
        validate(settings, {"secret": "the enrolment line's secret"})
    except SchemeError as exc:
        raise EnrolmentError(f"enrolment line: {exc}") from None
    return Enrolment(
        host,
        port,
        service,
        settings.period,
        settings.length,
        values["ports"],
        settings.proto_modulo,
        secret,
    )


def host_problem(host: str) -> str | None:
    """Why ``host`` cannot be the line's host (a name or an address), or None."""
    if not host or any(c.isspace() or not c.isprintable() or c in "\"'\\#,=/?@[]" for c in host):
        return "not a host name or an address (no spaces, quotes or URL punctuation)"
    if host.startswith("-"):
        return "it would read as an option"
    return None


def _authority(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, close, port_part = text[1:].partition("]")
        if not close or not port_part.startswith(":"):
            raise EnrolmentError("enrolment line: an IPv6 host is [ADDRESS]:PORT")
        port_text = port_part[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise EnrolmentError("enrolment line: no port after the host (HOST:PORT)")
    host = _unquoted(host, "host")
    problem = host_problem(host)
    if problem:
        raise EnrolmentError(f"enrolment line: the host: {problem}")
    port = _number(port_text, "port")
    if not 1 <= port <= 65535:
        raise EnrolmentError("enrolment line: the port is not from 1 to 65535")
    return host, port


def _unquoted(text: str, what: str) -> str:
    try:
        return unquote(text, errors="strict")
    except UnicodeDecodeError:
        raise EnrolmentError(f"enrolment line: the {what} is not UTF-8 text") from None


def _number(text: str, what: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise EnrolmentError(f"enrolment line: {what} is not a whole number")
    return int(text)
