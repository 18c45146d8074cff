"""Carrying the connection for ssh: a byte relay over stdin/stdout, or fd-passing.

Each direction runs in its own thread (the server to stdout in the caller's thread,
stdin to the server in a helper): no busy loop, and neither direction can stall the
other. From the server to ssh's pipe, the bulk of every download, the kernel moves
the bytes itself (``splice(2)``, Linux, Python 3.10 and later): nothing is copied
through this process. It splices only what poll() says has arrived, never blocking
inside splice: a splice that waits for the socket holds the pipe's lock, and ssh,
reading the pipe, would wait with it. While a download streams, the socket gathers
before it wakes the relay (``SO_RCVLOWAT``, 2 ms at most): through ssh the bytes come
a packet at a time. From ssh to the server the bytes are copied:
splice from a pipe into a socket that is full holds ssh's pipe the same way.
Elsewhere (another system, stdout not a pipe) both directions copy.
"""

from __future__ import annotations

import _thread
import os
import select
import stat
import sys

from .net import (
    IPPROTO_TCP,
    SCM_RIGHTS,
    SHUT_WR,
    SO_KEEPALIVE,
    SO_RCVLOWAT,
    SOL_SOCKET,
    TCP_NODELAY,
    RawSocket,
)

BUFSIZE = 256 * 1024
PIPE_SIZE = 1 << 20  # what Linux lets anyone ask for (/proc/sys/fs/pipe-max-size)
F_SETPIPE_SZ, F_GETPIPE_SZ = 1031, 1032  # Linux's values; fcntl names them from 3.10 on


def _write_all(fd: int, data: memoryview) -> None:
    while data:
        data = data[os.write(fd, data) :]


def _upstream(fd_in: int, sock: RawSocket, errors: list[BaseException]) -> None:
    buf = bytearray(BUFSIZE)
    view = memoryview(buf)
    try:
        while True:
            n = os.readv(fd_in, [buf])
            if n == 0:
                break
            sock.sendall(view[:n])
        sock.shutdown(SHUT_WR)  # ssh closed its side: tell the server, keep reading
    except BrokenPipeError:
        pass  # the server went away; the other direction reports how
    except OSError as exc:
        errors.append(exc)


def relay(sock: RawSocket, fd_in: int = 0, fd_out: int = 1) -> None:
    """Copy ``fd_in`` -> ``sock`` and ``sock`` -> ``fd_out`` until both directions end.

    Raises OSError for an abnormal end (connection reset, ...). The helper thread
    comes from ``_thread``: ``threading`` costs milliseconds of start-up and we need
    only a start and a join.
    """
    _grow_pipes(fd_in, fd_out)
    # as ssh does on a socket of its own: without TCP_NODELAY, Nagle holds back ssh's
    # small window adjustments for up to a round trip, and a 50 ms path moved 0.64x
    try:
        sock.setsockopt(IPPROTO_TCP, TCP_NODELAY, 1)
        sock.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1)
    except OSError:
        pass  # not TCP (a test's socketpair)
    errors: list[BaseException] = []
    up_done = _thread.allocate_lock()
    up_done.acquire()

    def upstream() -> None:
        try:
            _upstream(fd_in, sock, errors)
        finally:
            up_done.release()

    _thread.start_new_thread(upstream, ())
    try:
        if splices(fd_out):
            _splice_down(sock, fd_out)
        else:
            _copy_down(sock, fd_out)
    except BrokenPipeError:
        return  # ssh is gone: nobody left to serve
    finally:
        try:
            os.close(fd_out)  # EOF to ssh
        except OSError:
            pass
    up_done.acquire()  # join the helper: ssh's side may still be sending
    if errors:
        raise errors[0]


def splices(fd_out: int) -> bool:
    """Whether the server's bytes can go to ``fd_out`` by splice: Linux's os.splice,
    and a pipe to splice into (ssh's stdout for its ProxyCommand is one)."""
    if not hasattr(os, "splice") or not sys.platform.startswith("linux"):
        return False
    try:
        return stat.S_ISFIFO(os.fstat(fd_out).st_mode)
    except OSError:
        return False


def _copy_down(sock: RawSocket, fd_out: int) -> None:
    buf = bytearray(BUFSIZE)
    view = memoryview(buf)
    while True:
        n = sock.recv_into(buf)
        if n == 0:
            return
        _write_all(fd_out, view[:n])


SPLICE_F_MOVE, SPLICE_F_NONBLOCK = 1, 2  # Linux's values; os names them from 3.10 on
EINVAL = 22

STREAMING = 16 * 1024  # a splice that moved this much says a download is streaming
GATHER = 256 * 1024  # bytes a streaming socket gathers before it wakes the relay
GATHER_WAIT_MS = 2  # the longest it holds fewer: the stream may have paused


def streaming(moved: int) -> bool:
    """Whether the socket should gather before the next wake-up, from what the last
    splice moved. A keystroke's echo is never this large, so an interactive session
    is never held back; the tail of a burst waits GATHER_WAIT_MS at most."""
    return moved >= STREAMING


def _gather(sock: RawSocket, on: bool) -> bool:
    """Make the socket wake the relay only once GATHER bytes are in (or any byte);
    whether it now gathers. A socket that cannot (not TCP) never does."""
    try:
        sock.setsockopt(SOL_SOCKET, SO_RCVLOWAT, GATHER if on else 1)
    except OSError:
        return False
    return on


def _splice_down(sock: RawSocket, fd_out: int) -> None:
    """Socket to pipe in the kernel until the server's EOF. Each splice takes only
    what has arrived and never waits: when the pipe is full it fails at once
    (EAGAIN), and the wait for room, like the wait for data, is a poll(). A socket
    the kernel cannot splice from (EINVAL) is copied instead.

    While a download streams, the socket gathers GATHER bytes before it wakes the
    relay (``SO_RCVLOWAT``), for at most GATHER_WAIT_MS: through ssh the bytes
    arrive a packet at a time, and waking once per packet cost more CPU than nc's
    whole copy loop."""
    sock_fd = sock.fileno()
    arrived, room = select.poll(), select.poll()
    arrived.register(sock_fd, select.POLLIN)
    room.register(fd_out, select.POLLOUT)
    splice = os.splice  # type: ignore[attr-defined,unused-ignore]  # Linux, Python 3.10+
    gathering = False
    while True:
        if not arrived.poll(GATHER_WAIT_MS if gathering else None):
            gathering = _gather(sock, False)  # a pause: what has come is taken next
            continue
        try:
            moved = splice(sock_fd, fd_out, PIPE_SIZE, flags=SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
        except BlockingIOError:
            room.poll()  # the pipe is full: ssh reads it, then on
            continue
        except OSError as exc:
            if exc.errno != EINVAL:
                raise
            _gather(sock, False)  # a blocking recv must not wait for GATHER bytes
            return _copy_down(sock, fd_out)
        if moved == 0:
            return  # the server's EOF
        if streaming(moved) != gathering:
            gathering = _gather(sock, not gathering)


def _grow_pipes(*fds: int) -> None:
    """Let the pipes from ssh hold 1 MiB rather than 64 KiB, on Linux.

    A 1 GB download relayed over loopback into a pipe then took 20 times fewer
    context switches and 30-40 % less CPU, at twice the rate. Best effort: a pipe
    already as large, a socket, or a lower system limit is left as it is.
    """
    if not sys.platform.startswith("linux"):
        return
    import fcntl

    for fd in fds:
        try:
            if fcntl.fcntl(fd, F_GETPIPE_SZ) < PIPE_SIZE:
                fcntl.fcntl(fd, F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass


def is_socket(fd: int) -> bool:
    try:
        return stat.S_ISSOCK(os.fstat(fd).st_mode)
    except OSError:
        return False


def pass_fd(sock: RawSocket, fd_out: int = 1) -> None:
    """ProxyUseFdpass: hand the connected socket to ssh over ``fd_out`` (SCM_RIGHTS).

    ssh reads one data byte with the descriptor, so exactly one byte is sent
    (what ``socket.send_fds`` does, without importing socket.py).
    """
    sock.setsockopt(SOL_SOCKET, SO_KEEPALIVE, 1)
    channel = RawSocket(fileno=fd_out)
    try:
        fd = sock.fileno().to_bytes(4, sys.byteorder, signed=True)  # one C int
        channel.sendmsg([b"\0"], [(SOL_SOCKET, SCM_RIGHTS, fd)])
    finally:
        channel.detach()
