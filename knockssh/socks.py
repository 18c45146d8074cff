"""``knockssh socks``: a SOCKS5 proxy (RFC 1928) that knocks.

Any program that speaks SOCKS5 (graphical ssh clients, database clients, a
browser, git) reaches a knocked port through it: a CONNECT to a destination the
mapping file names knocks first, with the ProxyCommand's own code, door lock and
path memory (``client.open_connection``); any other destination is connected
directly. Domain names are resolved here, once, so that the knock and the
connection reach the same address.

The protocol is a few pure functions (``greeting``, ``request``, ``reply``,
``reply_code``) tested without a socket; ``Server`` around them is thread per
client, with a bound on clients and on how long a silent one holds its slot.
Only method 0x00 (no authentication) is offered: the proxy listens on loopback
unless told otherwise, and says loudly when it is told otherwise.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import signal
import socket
import struct
import threading
import time

from .client import open_connection
from .errors import ConnectFailure, KnocksshError
from .log import Log

VERSION = 5
NO_AUTH, NO_ACCEPTABLE = 0x00, 0xFF
CONNECT = 0x01
IPV4, DOMAIN, IPV6 = 0x01, 0x03, 0x04
SUCCEEDED, GENERAL_FAILURE, NET_UNREACHABLE, HOST_UNREACHABLE = 0x00, 0x01, 0x03, 0x04
REFUSED, TTL_EXPIRED, COMMAND_NOT_SUPPORTED, ADDRESS_NOT_SUPPORTED = 0x05, 0x06, 0x07, 0x08

DEFAULT_LISTEN = "127.0.0.1:1080"
MAX_CLIENTS = 64  # connections served at once; more wait in the listen backlog
HANDSHAKE_SECONDS = 10.0  # how long a client may take to say where it wants to go


class Refused(Exception):
    """A request the proxy answers with ``code`` (None: it just closes)."""

    def __init__(self, code: int | None, why: str) -> None:
        super().__init__(why)
        self.code = code


# -- the protocol, pure ------------------------------------------------------------


def greeting(data: bytes) -> tuple[bool, int] | None:
    """A client's greeting (VER NMETHODS METHODS): whether it offers no-auth, and how
    many bytes it took; None while incomplete. Refused(None) if it is not SOCKS5."""
    if not data:
        return None
    if data[0] != VERSION:
        raise Refused(None, f"not SOCKS5 (version byte {data[0]})")
    if len(data) < 2 or len(data) < 2 + data[1]:
        return None
    return NO_AUTH in data[2 : 2 + data[1]], 2 + data[1]


def request(data: bytes) -> tuple[str, int, int] | None:
    """A CONNECT request (VER CMD RSV ATYP DST.ADDR DST.PORT): the host (an address
    or a name, as text) and port, and how many bytes it took; None while incomplete.
    Refused with the RFC's code for anything else."""
    if len(data) < 4:
        return None
    if data[0] != VERSION:
        raise Refused(None, f"not SOCKS5 (version byte {data[0]})")
    kind = data[3]
    if kind == IPV4:
        end = 4 + 4
    elif kind == IPV6:
        end = 4 + 16
    elif kind == DOMAIN:
        if len(data) < 5:
            return None
        end = 5 + data[4]
    else:
        raise Refused(ADDRESS_NOT_SUPPORTED, f"address type {kind}")
    if len(data) < end + 2:
        return None
    if data[1] != CONNECT:
        raise Refused(COMMAND_NOT_SUPPORTED, f"command {data[1]} (only CONNECT)")
    raw = data[4:end] if kind != DOMAIN else data[5:end]
    if kind == DOMAIN:
        try:
            host = raw.decode("ascii")
        except UnicodeDecodeError:
            raise Refused(HOST_UNREACHABLE, "a host name that is not ASCII") from None
        if not host or not all(c.isalnum() or c in ".-_" for c in host):
            raise Refused(HOST_UNREACHABLE, "not a host name")
    else:
        host = str(ipaddress.ip_address(raw))
    (port,) = struct.unpack("!H", data[end : end + 2])
    if port == 0:
        raise Refused(HOST_UNREACHABLE, "port 0")
    return host, port, end + 2


def reply(code: int, bound: tuple[str, int] | None = None) -> bytes:
    """The reply (VER REP RSV ATYP BND.ADDR BND.PORT); a failure binds 0.0.0.0:0."""
    host, port = bound or ("0.0.0.0", 0)
    address = ipaddress.ip_address(host.split("%", 1)[0])
    kind = IPV4 if address.version == 4 else IPV6
    return bytes([VERSION, code, 0, kind]) + address.packed + struct.pack("!H", port)


REASONS = {  # ConnectFailure.reason -> the RFC's reply
    "unresolved": HOST_UNREACHABLE,
    "unreachable": HOST_UNREACHABLE,
    "network": NET_UNREACHABLE,
    "refused": REFUSED,
    "timeout": TTL_EXPIRED,
}


def reply_code(reason: str) -> int:
    return REASONS.get(reason, GENERAL_FAILURE)


def listen_address(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` or ``[IPv6]:PORT`` for --listen; ValueError saying why not."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isascii() or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: ADDR:PORT, the port from 1 to 65535")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"--listen {text!r}: an IP address to listen on, not {host!r}") from None
    return host, int(port)


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


# -- the server ------------------------------------------------------------------


class Stop:
    """SIGTERM and SIGINT caught from now on (before anything is said or bound, so
    that a signal at any moment ends the proxy with status 0): noted, and a byte on
    ``wake`` so that the accept loop's select returns."""

    def __init__(self) -> None:
        self.signals: list[int] = []
        self.wake, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda signum, _frame: self.signals.append(signum))
        signal.set_wakeup_fd(wake_w)


class Server:
    """Accept SOCKS5 clients on ``listener`` until SIGTERM or SIGINT."""

    def __init__(
        self,
        listener: socket.socket,
        log: Log,
        config: str | None = None,
        max_clients: int = MAX_CLIENTS,
        handshake_seconds: float = HANDSHAKE_SECONDS,
    ) -> None:
        self.listener = listener
        self.log = log
        self.config = config
        self.slots = threading.BoundedSemaphore(max_clients)
        self.handshake_seconds = handshake_seconds

    def serve(self, stop: Stop) -> int:
        stopping, wake_r = stop.signals, stop.wake
        self.listener.setblocking(False)
        while not stopping:
            if not self.slots.acquire(timeout=0.5):
                continue  # all slots busy: the backlog holds the newcomers
            listening = self.listener.fileno()
            ready, _, _ = select.select([listening, wake_r], [], [])
            if stopping or listening not in ready:
                self.slots.release()
                continue
            try:
                conn, _ = self.listener.accept()
            except OSError:
                self.slots.release()
                continue
            threading.Thread(target=self._client, args=(conn,), daemon=True).start()
        self.listener.close()
        return 0

    def _client(self, conn: socket.socket) -> None:
        try:
            self._handle(conn)
        except Exception as exc:  # one client's trouble never ends the proxy
            self.log.info(f"client: {exc}")
        finally:
            conn.close()
            self.slots.release()

    def _handle(self, conn: socket.socket) -> None:
        conn.setblocking(True)
        deadline = time.monotonic() + self.handshake_seconds
        buf = b""
        try:
            while (found := greeting(buf)) is None:
                buf += _recv(conn, deadline)
            offers_no_auth, used = found
            if not offers_no_auth:
                conn.sendall(bytes([VERSION, NO_ACCEPTABLE]))
                return
            conn.sendall(bytes([VERSION, NO_AUTH]))
            buf = buf[used:]
            while (asked := request(buf)) is None:
                buf += _recv(conn, deadline)
        except Refused as exc:
            self.log.info(f"client refused: {exc}")
            if exc.code is not None:
                conn.sendall(reply(exc.code))
            return
        host, port, used = asked
        conn.settimeout(None)
        try:
            raw = open_connection(host, port, config=self.config, log=self.log)
            upstream = socket.socket(fileno=raw.detach())
        except ConnectFailure as exc:
            self.log.error(str(exc))
            conn.sendall(reply(reply_code(exc.reason)))
            return
        except KnocksshError as exc:
            self.log.error(str(exc))
            conn.sendall(reply(GENERAL_FAILURE))
            return
        with upstream:
            upstream.setblocking(True)
            conn.sendall(reply(SUCCEEDED, upstream.getsockname()[:2]))
            if buf[used:]:
                upstream.sendall(buf[used:])  # a client that did not wait for the reply
            relay(conn, upstream)


def _recv(conn: socket.socket, deadline: float) -> bytes:
    left = deadline - time.monotonic()
    if left <= 0:
        raise Refused(None, "silent past the handshake time")
    conn.settimeout(left)
    try:
        data = conn.recv(512)
    except socket.timeout:
        raise Refused(None, "silent past the handshake time") from None
    if not data:
        raise Refused(None, "closed during the handshake")
    return data


def relay(a: socket.socket, b: socket.socket) -> None:
    """Both directions until both ends are done; each direction in its own thread,
    through a pipe with os.splice where the kernel can (no copy through Python)."""
    other = threading.Thread(target=_one_way, args=(b, a), daemon=True)
    other.start()
    _one_way(a, b)
    other.join()


SPLICE_CHUNK = 256 * 1024


def _one_way(src: socket.socket, dst: socket.socket) -> None:
    try:
        if hasattr(os, "splice"):
            _splice(src, dst)
        else:  # Python 3.9
            while data := src.recv(SPLICE_CHUNK):
                dst.sendall(data)
    except OSError as exc:
        if exc.errno not in (errno.ECONNRESET, errno.EPIPE, errno.EBADF, errno.ENOTCONN):
            raise
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _splice(src: socket.socket, dst: socket.socket) -> None:
    r, w = os.pipe()
    try:
        while True:
            moved = os.splice(src.fileno(), w, SPLICE_CHUNK)
            if not moved:
                return
            while moved:
                moved -= os.splice(r, dst.fileno(), moved)
    finally:
        os.close(r)
        os.close(w)


def listener_for(listen: str, log: Log) -> socket.socket:
    """The socket systemd passed (socket activation), else one bound to ``listen``."""
    if os.environ.get("LISTEN_PID") == str(os.getpid()) and os.environ.get("LISTEN_FDS") == "1":
        return socket.socket(fileno=3)
    host, port = listen_address(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise KnocksshError(f"--listen {listen}: {exc.strerror}") from None
    sock.listen(128)
    if not is_loopback(host):
        log.warn(
            f"WARNING: listening on {host}, not on loopback: anyone who reaches port {port} "
            "can use this proxy, and your knocks, with no password"
        )
    return sock
