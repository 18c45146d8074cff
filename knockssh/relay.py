"""Carrying the connection for ssh: a byte relay over stdin/stdout, or fd-passing.

The relay copies each direction with blocking calls in its own thread (the server
to stdout in the caller's thread, stdin to the server in a helper): no busy loop,
and neither direction can stall the other. Measured here, this beat both a single
poll loop and non-blocking os.splice (blocking splice deadlocks with ssh); see
the notes in README.md.
"""

from __future__ import annotations

import os
import socket
import stat
import threading

BUFSIZE = 256 * 1024


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _upstream(fd_in: int, sock: socket.socket, errors: list[BaseException]) -> None:
    buf = bytearray(BUFSIZE)
    view = memoryview(buf)
    try:
        while True:
            n = os.readv(fd_in, [buf])
            if n == 0:
                break
            sock.sendall(view[:n])
        sock.shutdown(socket.SHUT_WR)  # ssh closed its side: tell the server, keep reading
    except BrokenPipeError:
        pass  # the server went away; the other direction reports how
    except OSError as exc:
        errors.append(exc)


def relay(sock: socket.socket, fd_in: int = 0, fd_out: int = 1) -> None:
    """Copy ``fd_in`` -> ``sock`` and ``sock`` -> ``fd_out`` until both directions end.

    Raises OSError for an abnormal end (connection reset, ...).
    """
    errors: list[BaseException] = []
    up = threading.Thread(target=_upstream, args=(fd_in, sock, errors), daemon=True)
    up.start()
    buf = bytearray(BUFSIZE)
    view = memoryview(buf)
    try:
        while True:
            n = sock.recv_into(buf)
            if n == 0:
                break
            _write_all(fd_out, view[:n])
    except BrokenPipeError:
        return  # ssh is gone: nobody left to serve
    finally:
        try:
            os.close(fd_out)  # EOF to ssh
        except OSError:
            pass
    up.join()
    if errors:
        raise errors[0]


def is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def pass_fd(sock: socket.socket, fd_out: int = 1) -> None:
    """ProxyUseFdpass: hand the connected socket to ssh over ``fd_out`` (SCM_RIGHTS).

    ssh reads one data byte with the descriptor, so exactly one byte is sent.
    """
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    channel = socket.socket(fileno=fd_out)
    try:
        socket.send_fds(channel, [b"\0"], [sock.fileno()])
    finally:
        channel.detach()
