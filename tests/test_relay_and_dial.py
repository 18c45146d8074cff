"""The relay and the dialer on real loopback sockets; retry/fallback decisions with mocks."""

import errno
import hashlib
import itertools
import os
import socket
import subprocess
import sys
import threading

import pytest
from helpers import ROOT

from knockssh import dial


class Server:
    """A loopback TCP server running ``handler(conn)`` for one connection."""

    def __init__(self, handler):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.result = {}
        self.thread = threading.Thread(target=self._serve, args=(handler,), daemon=True)
        self.thread.start()

    def _serve(self, handler):
        conn, _ = self.sock.accept()
        with conn:
            self.result["value"] = handler(conn)

    def join(self):
        self.thread.join(30)
        self.sock.close()
        return self.result.get("value")


def proxy(port, tmp_path, *extra):
    empty = tmp_path / "hosts.toml"
    empty.write_text("")
    env = {**os.environ, "KNOCKSSH_CONFIG": str(empty)}
    return subprocess.Popen(
        [sys.executable, "-m", "knockssh", *extra, "127.0.0.1", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=ROOT,
    )


def drain(conn):
    h, n = hashlib.sha256(), 0
    while chunk := conn.recv(1 << 16):
        h.update(chunk)
        n += len(chunk)
    return h.hexdigest(), n


def test_large_upload_then_half_close_then_reply(tmp_path):
    data = os.urandom(8 << 20)

    def handler(conn):
        digest, n = drain(conn)  # sees EOF: the relay shut down its write side
        conn.sendall(f"{digest} {n}".encode())  # and can still answer
        return n

    server = Server(handler)
    p = proxy(server.port, tmp_path)
    out, err = p.communicate(data, timeout=60)
    assert server.join() == len(data)
    assert out.decode() == f"{hashlib.sha256(data).hexdigest()} {len(data)}"
    assert p.returncode == 0 and err == b""


def test_large_download_and_server_eof_closes_stdout(tmp_path):
    data = os.urandom(16 << 20)

    def handler(conn):
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        return conn.recv(100)  # stdin of the relay still flows after the server's EOF

    server = Server(handler)
    p = proxy(server.port, tmp_path)
    got = p.stdout.read()  # returns at EOF: the relay closed stdout
    assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest()
    p.stdin.write(b"late bytes")
    p.stdin.close()
    assert p.wait(30) == 0
    assert server.join() == b"late bytes"


def test_abrupt_peer_close_is_an_error(tmp_path):
    def handler(conn):
        conn.recv(1)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    server = Server(handler)
    p = proxy(server.port, tmp_path)
    p.stdin.write(b"x")
    p.stdin.flush()
    server.join()  # closed with RST
    assert p.wait(30) == 1
    assert b"connection lost" in p.stderr.read()
    assert p.stdout.read() == b""


def test_refused_direct_connection_fails_fast(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    p = proxy(port, tmp_path)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1 and out == b""
    assert b"127.0.0.1 port" in err and b"refused" in err.lower()


def test_fdpass_requires_socket_stdout(tmp_path):
    p = proxy(9, tmp_path, "--fdpass")
    _, err = p.communicate(timeout=30)
    assert p.returncode == 2 and b"ProxyUseFdpass" in err


def test_fdpass_hands_over_a_connected_socket(tmp_path):
    server = Server(lambda conn: conn.sendall(b"hello from server"))
    ours, theirs = socket.socketpair()
    empty = tmp_path / "hosts.toml"
    empty.write_text("")
    p = subprocess.Popen(
        [sys.executable, "-m", "knockssh", "--fdpass", "127.0.0.1", str(server.port)],
        stdin=theirs,
        stdout=theirs,
        env={**os.environ, "KNOCKSSH_CONFIG": str(empty)},
        cwd=ROOT,
    )
    theirs.close()
    msg, fds, _, _ = socket.recv_fds(ours, 1, 1)
    assert p.wait(30) == 0  # exits right after passing
    assert msg == b"\0" and len(fds) == 1
    with socket.socket(fileno=fds[0]) as conn:
        assert conn.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert conn.recv(100) == b"hello from server"
    server.join()


def test_dial_retries_until_the_door_opens(monkeypatch):
    """A port that refuses at first and listens later: dial keeps trying and wins."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    opened = threading.Event()

    def open_later():
        opened.wait()
        srv = socket.create_server(("127.0.0.1", port))
        conn, _ = srv.accept()
        conn.close()
        srv.close()

    t = threading.Thread(target=open_later, daemon=True)
    t.start()
    original = dial._start
    calls = []

    def counting(family, addr):
        calls.append(addr)
        if len(calls) == 3:
            opened.set()  # the door opens while attempts are under way
        return original(family, addr)

    monkeypatch.setattr(dial, "_start", counting)
    sock = dial.dial(socket.AF_INET, ("127.0.0.1", port), 5)
    sock.close()
    t.join(5)
    assert len(calls) >= 3


def test_retry_schedule_is_dense_while_knockd_opens_then_backs_off():
    pauses = list(itertools.islice(dial.retry_intervals(), 40))
    fast = pauses[: dial.FAST_ATTEMPTS]
    assert set(fast) == {dial.FAST_INTERVAL} and sum(fast) == pytest.approx(0.1)
    later = pauses[dial.FAST_ATTEMPTS :]
    assert later == sorted(later) and later[0] == 2 * dial.FAST_INTERVAL
    assert later[-1] == dial.MAX_RETRY_INTERVAL


def test_dial_keeps_at_most_max_pending_attempts(monkeypatch):
    """Attempts into a black hole: old ones are closed so sockets do not pile up."""
    started = []

    class Silent:  # a connect that never completes (a DROP firewall)
        def __init__(self):
            self.r, self.w = os.pipe()
            os.set_blocking(self.w, False)
            try:  # fill the pipe: never writable, so POLLOUT never fires
                while True:
                    os.write(self.w, b"x" * 4096)
            except BlockingIOError:
                pass
            self.closed = False

        def fileno(self):
            return self.w

        def close(self):
            self.closed = True
            os.close(self.r)
            os.close(self.w)

    most_open = []

    def start(family, addr):
        started.append(Silent())
        most_open.append(sum(not s.closed for s in started))
        return started[-1], 0

    monkeypatch.setattr(dial, "_start", start)
    monkeypatch.setattr(dial, "FAST_INTERVAL", 0.001)
    with pytest.raises(TimeoutError):
        dial.dial(socket.AF_INET, ("192.0.2.1", 22), 0.15)
    assert len(started) > dial.MAX_PENDING
    assert max(most_open) == dial.MAX_PENDING  # the oldest went before a new one started
    assert all(s.closed for s in started)  # nothing left behind after the deadline


def test_dial_times_out_with_an_error():
    # port 9 on loopback refuses; the dialer keeps retrying until its deadline
    with pytest.raises(OSError) as info:
        dial.dial(socket.AF_INET, ("127.0.0.1", 9), 0.3)
    assert info.value.errno in (errno.ECONNREFUSED, errno.ETIMEDOUT)


def test_ascii_names_reach_the_resolver_as_bytes(mocker):
    """A str would load the idna codec (and re) on every connection; non-ASCII still works."""
    from knockssh import net

    seen = []

    def fake(host, port, family, type):
        seen.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("192.0.2.1", port))]

    mocker.patch.object(net, "_getaddrinfo", side_effect=fake)
    assert net.getaddrinfo("bastion.example.org", 22, 0, socket.SOCK_STREAM) == [
        (socket.AF_INET, ("192.0.2.1", 22))
    ]
    net.getaddrinfo("bücher.example", 22, 0, socket.SOCK_STREAM)
    assert seen == [b"bastion.example.org", "bücher.example"]


def test_connect_returns_a_standard_socket(tmp_path):
    """The Python API hands out socket.socket (paramiko's sock=), though the path uses _socket."""
    import knockssh

    empty = tmp_path / "hosts.toml"
    empty.write_text("")
    server = Server(lambda conn: conn.sendall(b"SSH-2.0-test\r\n"))
    sock = knockssh.connect("127.0.0.1", server.port, env={"KNOCKSSH_CONFIG": str(empty)})
    with sock:
        assert isinstance(sock, socket.socket)
        assert sock.recv(64) == b"SSH-2.0-test\r\n"
    server.join()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="F_SETPIPE_SZ is Linux's")
def test_relay_grows_the_pipes_from_ssh(tmp_path):
    import fcntl

    from knockssh.relay import F_GETPIPE_SZ, PIPE_SIZE

    def handler(conn):
        conn.sendall(b"SSH-2.0-test\r\n")
        return conn.recv(100)

    server = Server(handler)
    p = proxy(server.port, tmp_path)
    assert p.stdout.read(14) == b"SSH-2.0-test\r\n"  # the relay runs: it grew them first
    assert fcntl.fcntl(p.stdout.fileno(), F_GETPIPE_SZ) == PIPE_SIZE
    assert fcntl.fcntl(p.stdin.fileno(), F_GETPIPE_SZ) == PIPE_SIZE
    p.stdin.write(b"bye")
    p.stdin.close()
    assert p.wait(30) == 0
    assert server.join() == b"bye"


@pytest.mark.parametrize("stdout_kind", ["pipe", "socketpair"])
def test_the_relay_is_byte_exact_both_ways_with_splice_and_without(stdout_kind):
    """A pipe for stdout, as ssh gives one, is spliced into; a socket is copied to.
    Both ways byte-exact, the upload's EOF reaches the server as a half-close, and the
    server's EOF closes stdout."""
    from knockssh.net import RawSocket
    from knockssh.relay import relay, splices

    down, up = os.urandom(24 << 20), os.urandom(6 << 20)

    def handler(conn):
        conn.sendall(down)
        conn.shutdown(socket.SHUT_WR)
        return drain(conn)

    server = Server(handler)
    conn = socket.create_connection(("127.0.0.1", server.port))
    sock = RawSocket(fileno=conn.detach())
    in_r, in_w = os.pipe()
    if stdout_kind == "pipe":
        out_r, out_w = os.pipe()
    else:
        left, right = socket.socketpair()
        out_r, out_w = left.detach(), right.detach()
    assert splices(out_w) == (stdout_kind == "pipe")
    errors = []

    def run():
        try:
            relay(sock, in_r, out_w)
        except BaseException as exc:
            errors.append(exc)

    relaying = threading.Thread(target=run)
    relaying.start()

    def upload():
        with os.fdopen(in_w, "wb") as f:
            f.write(up)

    uploading = threading.Thread(target=upload)
    uploading.start()
    got = bytearray()
    while chunk := os.read(out_r, 1 << 20):
        got += chunk
    uploading.join(30)
    relaying.join(30)
    os.close(out_r)
    os.close(in_r)
    sock.close()
    assert not errors and not relaying.is_alive()
    assert hashlib.sha256(got).digest() == hashlib.sha256(down).digest()
    assert server.join() == (hashlib.sha256(up).hexdigest(), len(up))


def test_a_keystroke_after_a_download_is_not_held_back():
    """While a download streams, the socket gathers before it wakes the relay; the
    few bytes that follow it (a prompt, an echo) must still come through alone,
    with nothing after them to fill the gathering up."""
    import select

    from knockssh.net import RawSocket
    from knockssh.relay import GATHER, relay

    burst = os.urandom(4 * GATHER)

    def handler(conn):
        conn.sendall(burst)
        assert conn.recv(4) == b"next"  # the client has read the whole burst
        conn.sendall(b"$ ")
        return conn.recv(4)

    server = Server(handler)
    conn = socket.create_connection(("127.0.0.1", server.port))
    sock = RawSocket(fileno=conn.detach())
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    relaying = threading.Thread(target=relay, args=(sock, in_r, out_w), daemon=True)
    relaying.start()

    def read_exactly(n):
        got = bytearray()
        while len(got) < n and select.select([out_r], [], [], 10)[0]:
            got += os.read(out_r, n - len(got))
        return bytes(got)

    try:
        assert read_exactly(len(burst)) == burst
        os.write(in_w, b"next")
        assert read_exactly(2) == b"$ "
        os.write(in_w, b"done")
        os.close(in_w)
        assert server.join() == b"done"
        relaying.join(10)
        assert not relaying.is_alive()
    finally:
        os.close(out_r)
        os.close(in_r)


def test_only_a_large_splice_makes_the_socket_gather():
    from knockssh.relay import STREAMING, streaming

    assert streaming(STREAMING) and streaming(1 << 20)
    assert not streaming(STREAMING - 1) and not streaming(1) and not streaming(0)
