"""Sockets for the ProxyCommand path, straight from CPython's ``_socket``.

``socket.py`` is a thin Python layer over ``_socket`` whose import (enum
conversions, selectors) costs more than everything else knockssh does before its
first knock (measured in bench/). The path from ssh to the door needs only plain
socket objects, a few constants and getaddrinfo; ``public()`` turns a connection
into a ``socket.socket`` for Python callers such as paramiko.
"""

from __future__ import annotations

import sys
from _socket import (
    AF_INET,
    AF_INET6,
    IPPROTO_TCP,
    SCM_RIGHTS,
    SHUT_WR,
    SO_ERROR,
    SO_KEEPALIVE,
    SO_RCVLOWAT,
    SOCK_DGRAM,
    SOCK_STREAM,
    SOL_SOCKET,
    TCP_NODELAY,
    gaierror,
)
from _socket import getaddrinfo as _getaddrinfo
from _socket import socket as RawSocket

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Any

    Sockaddr = Any  # (host, port) or (host, port, flowinfo, scope_id)

__all__ = [
    "AF_INET",
    "AF_INET6",
    "IPPROTO_TCP",
    "SCM_RIGHTS",
    "SHUT_WR",
    "SOCK_DGRAM",
    "SOCK_STREAM",
    "SOL_SOCKET",
    "SO_ERROR",
    "SO_KEEPALIVE",
    "SO_RCVLOWAT",
    "TCP_NODELAY",
    "RawSocket",
    "gaierror",
    "getaddrinfo",
    "public",
    "round_trip",
    "with_port",
]


def getaddrinfo(host: str, port: int, family: int, type: int) -> list[tuple[int, Sockaddr]]:
    """(family, sockaddr) pairs for ``host``. An ASCII name goes to the resolver as
    bytes: given a str, getaddrinfo loads the idna codec, and with it re (10 ms)."""
    name: str | bytes = host.encode("ascii") if host.isascii() else host
    return [(info[0], info[4]) for info in _getaddrinfo(name, port, family, type)]


def with_port(sockaddr: Sockaddr, port: int) -> Sockaddr:
    return (sockaddr[0], port, *sockaddr[2:])


def round_trip(sock: RawSocket) -> float | None:
    """The kernel's smoothed round-trip time of a connected TCP socket (Linux), in seconds."""
    try:
        info = sock.getsockopt(6, 11, 104)  # IPPROTO_TCP, TCP_INFO
    except OSError:
        return None
    if len(info) < 72:
        return None
    return int.from_bytes(info[68:72], sys.byteorder) / 1e6  # tcpi_rtt, microseconds


def public(sock: RawSocket) -> socket.socket:
    """The same connection as a ``socket.socket`` (``sock`` is consumed)."""
    import socket

    return socket.socket(fileno=sock.detach())
