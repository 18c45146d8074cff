"""Look a host up, knock its sequence, and connect as soon as the door opens."""

from __future__ import annotations

import os
import time

from . import mapping
from .dial import dial
from .errors import KnocksshError
from .knock import send_knocks
from .log import QUIET, Log
from .net import SOCK_STREAM, RawSocket, gaierror, getaddrinfo, public

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping

    from .net import Sockaddr

DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_KNOCK_DELAY_MS = 1.0
ROUNDS = 3  # how many times each period's sequence is knocked within connect_timeout
MIN_WINDOW = 0.5  # seconds to wait for the door after one knock sequence


def resolve(host: str, port: int, family: int) -> list[tuple[int, Sockaddr]]:
    try:
        return getaddrinfo(host, port, family, SOCK_STREAM)
    except gaierror as exc:
        raise KnocksshError(f"{host}: cannot resolve: {exc.strerror}") from None


def knock_delay(entry: mapping.HostEntry) -> float:
    """Seconds between two knocks."""
    return float(entry.get("knock_delay_ms", DEFAULT_KNOCK_DELAY_MS)) / 1000


def addresses_for(
    entry: mapping.HostEntry, host: str, port: int, family: int
) -> tuple[tuple[int, Sockaddr], tuple[int, Sockaddr]]:
    """Where to connect, and where to knock: ``knock_host`` (same family), else the same."""
    target = resolve(host, port, family)[0]
    if entry.get("knock_host"):
        return target, resolve(entry.get("knock_host"), port, target[0])[0]
    return target, target


def connect(
    host: str,
    port: int = 22,
    *,
    config: str | None = None,
    family: int = 0,
    offset: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Log | None = None,
    at: float | None = None,
) -> socket.socket:
    """Knock for ``host`` as its mapping-file entry says, then return the connected socket.

    Usable as paramiko's ``sock=``. An unmapped host is connected without knocking.
    Raises KnocksshError with a message meant for users.
    """
    return public(
        open_connection(
            host, port, config=config, family=family, offset=offset, env=env, log=log, at=at
        )
    )


def open_connection(
    host: str,
    port: int,
    *,
    config: str | None = None,
    family: int = 0,
    offset: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Log | None = None,
    at: float | None = None,
) -> RawSocket:
    """connect() for the ProxyCommand path: the connection as a plain ``_socket`` object."""
    env = os.environ if env is None else env
    log = log or Log(QUIET)
    t = time.monotonic()
    entry = mapping.load(config, env).lookup(host)
    if entry is None:
        log.step(f"{host}: not in the mapping file, connecting without knocking", t)
        return _direct(host, port, family, DEFAULT_CONNECT_TIMEOUT, log)
    log.step(f"{host}: matched {entry.label}", t)
    return knock_and_connect(entry, host, port, family, offset, env, log, at)


def _direct(host: str, port: int, family: int, timeout: float, log: Log) -> RawSocket:
    deadline = time.monotonic() + timeout
    addresses = resolve(host, port, family)
    error: OSError | None = None
    for fam, sockaddr in addresses:
        t = time.monotonic()
        try:
            sock = dial(fam, sockaddr, max(0.1, deadline - t), retry=False)
        except OSError as exc:
            error = exc
            continue
        log.step(f"connected to {sockaddr[0]} port {port}", t)
        return sock
    assert error is not None
    raise KnocksshError(f"{host} port {port}: {error.strerror or error}")


def knock_and_connect(
    entry: mapping.HostEntry,
    host: str,
    port: int,
    family: int,
    offset: int | None,
    env: Mapping[str, str],
    log: Log,
    at: float | None = None,
) -> RawSocket:
    from .plan import attempts as plan_attempts

    t = time.monotonic()
    tries = plan_attempts(entry, env, time.time() if at is None else at, offset)
    log.step(f"computed {len(tries)} sequence(s) of {len(tries[0].knocks)} knocks", t)
    (fam, sockaddr), (knock_fam, knock_addr) = addresses_for(entry, host, port, family)
    timeout = float(entry.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT))
    delay = knock_delay(entry)
    deadline = time.monotonic() + timeout
    # rounds over the periods in order, so a knock lost on the way is sent again
    window = max(MIN_WINDOW, timeout / (ROUNDS * len(tries)))
    while time.monotonic() < deadline:
        for attempt in tries:
            t = time.monotonic()
            if t >= deadline:
                break
            send_knocks(knock_fam, knock_addr, attempt.knocks, delay)
            log.step(f"knocked {len(attempt.knocks)} ports at {knock_addr[0]}, {attempt.label}", t)
            t = time.monotonic()
            try:
                sock = dial(fam, sockaddr, max(min(window, deadline - t), 0.05))
            except OSError as exc:
                log.info(f"no connection after {attempt.label}: {exc.strerror or exc}")
                continue
            log.step(f"door open: connected to {sockaddr[0]} port {port}", t)
            return sock
    what = f"service {entry.service}" if entry.service else "static sequence"
    periods = ", ".join(a.label for a in tries)
    raise KnocksshError(
        f"{host} port {port}: no connection within {timeout:g}s after knocking {what} "
        f"({periods}); check the clock (date -u), the secret, that knockd listens on the "
        f"server's interface, and the firewall rules ({entry.label})"
    )
