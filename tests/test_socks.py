"""knockssh socks: the SOCKS5 protocol as pure functions, then the proxy as a real
process on loopback: good clients get through (knocking where the mapping file
says so), bad ones get the RFC's reply or a close, and the proxy serves on.
The real knockd behind it: tests/lab/test_socks_lab.py."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import time

import pytest
from helpers import KNOCKSSH, ROOT, BannerServer

from knockssh import socks
from rotator.proc import wait_for


def test_greeting_and_request_as_the_rfc_writes_them():
    assert socks.greeting(b"") is None
    assert socks.greeting(b"\x05") is None
    assert socks.greeting(b"\x05\x02\x00") is None  # one of two methods so far
    assert socks.greeting(b"\x05\x02\x02\x00rest") == (True, 4)
    assert socks.greeting(b"\x05\x01\x02") == (False, 3)  # username/password only
    with pytest.raises(socks.Refused) as bad:
        socks.greeting(b"\x04\x01\x00")
    assert bad.value.code is None
    v4 = b"\x05\x01\x00\x01" + bytes([192, 0, 2, 1]) + struct.pack("!H", 22)
    assert socks.request(v4) == ("192.0.2.1", 22, len(v4))
    assert socks.request(v4[:-1]) is None
    v6 = b"\x05\x01\x00\x04" + socket.inet_pton(socket.AF_INET6, "2001:2::1") + b"\x00\x16"
    assert socks.request(v6) == ("2001:2::1", 22, len(v6))
    name = b"\x05\x01\x00\x03\x0bknocked.lab\x00\x16"
    assert socks.request(name) == ("knocked.lab", 22, len(name))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\x05\x02\x00\x01" + bytes(6), socks.COMMAND_NOT_SUPPORTED),  # BIND
        (b"\x05\x03\x00\x01" + bytes(6), socks.COMMAND_NOT_SUPPORTED),  # UDP ASSOCIATE
        (b"\x05\x01\x00\x07" + bytes(6), socks.ADDRESS_NOT_SUPPORTED),
        (b"\x05\x01\x00\x03\x03a b\x00\x16", socks.HOST_UNREACHABLE),
        (b"\x05\x01\x00\x03\x02\xff\xfe\x00\x16", socks.HOST_UNREACHABLE),
        (b"\x05\x01\x00\x01" + bytes(4) + b"\x00\x00", socks.HOST_UNREACHABLE),  # port 0
        (b"\x04\x01\x00\x01" + bytes(6), None),
    ],
)
def test_requests_refused_with_the_rfc_code(data, code):
    with pytest.raises(socks.Refused) as refused:
        socks.request(data)
    assert refused.value.code == code


def test_replies_and_failure_codes():
    assert (
        socks.reply(socks.SUCCEEDED, ("127.0.0.1", 80)) == b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00P"
    )
    assert socks.reply(socks.REFUSED)[:4] == b"\x05\x05\x00\x01"
    assert socks.reply(0, ("::1", 1))[3] == socks.IPV6
    assert socks.reply_code("refused") == socks.REFUSED
    assert socks.reply_code("timeout") == socks.TTL_EXPIRED
    assert socks.reply_code("unresolved") == socks.HOST_UNREACHABLE
    assert socks.reply_code("network") == socks.NET_UNREACHABLE
    assert socks.reply_code("?") == socks.GENERAL_FAILURE
    assert socks.listen_address("[::1]:1080") == ("::1", 1080)
    for bad in ("1080", "localhost:1080", "127.0.0.1:0", "127.0.0.1:x"):
        with pytest.raises(ValueError):
            socks.listen_address(bad)


# -- the proxy as a process ------------------------------------------------------------


class Proxy:
    """``knockssh socks`` on a free loopback port, with its own mapping file."""

    def __init__(self, tmp_path, mapping: str, *extra: str) -> None:
        probe = socket.create_server(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        hosts = tmp_path / "hosts.toml"
        hosts.write_text(mapping)
        env = {
            **os.environ,
            "PYTHONPATH": ROOT,
            "KNOCKSSH_CONFIG": str(hosts),
            "XDG_STATE_HOME": str(tmp_path / "state"),
            "HOME": str(tmp_path),
        }
        self.proc = subprocess.Popen(
            [*KNOCKSSH, "socks", "--listen", f"127.0.0.1:{self.port}", "-v", *extra],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert wait_for(self._listening, 10), "the proxy did not listen"

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def client(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=10)
        return self.proc.returncode, err


def connect_through(sock: socket.socket, host: bytes | str, port: int) -> bytes:
    """A good client: greeting, CONNECT (a name as the domain type), the reply."""
    sock.sendall(b"\x05\x01\x00")
    assert sock.recv(2) == b"\x05\x00"
    if isinstance(host, bytes):
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + struct.pack("!H", port))
    else:
        packed = socket.inet_pton(socket.AF_INET, host)
        sock.sendall(b"\x05\x01\x00\x01" + packed + struct.pack("!H", port))
    return recv_exactly(sock, 10)


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


STATIC = '[[host]]\nmatch = ["127.0.0.1", "localhost"]\nsequence = "1,2,3"\nconnect_timeout = 2\n'


def test_mapped_and_direct_destinations_get_through_and_sigterm_ends_it(tmp_path):
    proxy = Proxy(tmp_path, STATIC)
    try:
        for host in (b"localhost", "127.0.0.1"):
            with BannerServer() as port, proxy.client() as c:
                assert connect_through(c, host, port)[:2] == b"\x05\x00"
                assert recv_exactly(c, len(BannerServer.BANNER)) == BannerServer.BANNER
        with BannerServer("127.0.0.2") as port, proxy.client() as c:  # not in the mapping
            assert connect_through(c, "127.0.0.2", port)[:2] == b"\x05\x00"
            assert recv_exactly(c, len(BannerServer.BANNER)) == BannerServer.BANNER
    finally:
        code, err = proxy.stop()
    assert code == 0 and "Traceback" not in err, err
    assert ": host entry 1" in err and "no knock: no entry of" in err


def test_failures_get_the_rfc_reply(tmp_path):
    closed = socket.create_server(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    proxy = Proxy(tmp_path, STATIC)
    try:
        with proxy.client() as c:  # knocked, then refused: the door opened, nothing listens
            assert connect_through(c, "127.0.0.1", dead_port)[1] == socks.REFUSED
        with proxy.client() as c:
            assert connect_through(c, "127.0.0.2", dead_port)[1] == socks.REFUSED
        with proxy.client() as c:
            assert connect_through(c, b"nosuch.invalid", 22)[1] == socks.HOST_UNREACHABLE
    finally:
        code, err = proxy.stop()
    assert code == 0 and "Traceback" not in err, err


BAD_CLIENTS = {
    "wrong version": (b"\x04\x01\x00\x01\x00\x16\x7f\x00\x00\x01\x00", b""),
    "truncated greeting": (b"\x05\x03\x00", b""),
    "no acceptable method": (b"\x05\x01\x02", b"\x05\xff"),
    "bind": (
        b"\x05\x01\x00" + b"\x05\x02\x00\x01\x7f\x00\x00\x01\x00\x16",
        b"\x05\x00" + socks.reply(socks.COMMAND_NOT_SUPPORTED),
    ),
    "unknown address type": (
        b"\x05\x01\x00" + b"\x05\x01\x00\x09" + bytes(6),
        b"\x05\x00" + socks.reply(socks.ADDRESS_NOT_SUPPORTED),
    ),
    "255 bytes of garbage name": (
        b"\x05\x01\x00" + b"\x05\x01\x00\x03\xff" + bytes(range(255)) + b"\x00\x16",
        b"\x05\x00" + socks.reply(socks.HOST_UNREACHABLE),
    ),
    "silent": (b"", b""),
}


def test_bad_clients_get_a_reply_or_a_close_and_a_good_one_gets_through_meanwhile(tmp_path):
    proxy = Proxy(tmp_path, STATIC)
    try:
        held = []
        for name, (data, expected) in BAD_CLIENTS.items():
            c = proxy.client()
            held.append(c)
            c.sendall(data)
            if name in ("silent", "truncated greeting"):
                continue  # checked below, after the handshake time
            c.settimeout(10)
            got = recv_exactly(c, len(expected) + 1)
            assert got[: len(expected)] == expected, name
            assert got[len(expected) :] == b"", f"{name}: not closed"
        with BannerServer() as port, proxy.client() as c:  # the bad ones hold their slots
            assert connect_through(c, "127.0.0.1", port)[:2] == b"\x05\x00"
            assert recv_exactly(c, len(BannerServer.BANNER)) == BannerServer.BANNER
        for c in held:
            c.close()
    finally:
        code, err = proxy.stop()
    assert code == 0 and "Traceback" not in err, err


def test_a_silent_client_is_let_go_after_the_handshake_time(tmp_path):
    proxy = Proxy(tmp_path, STATIC)
    try:
        with proxy.client() as c:
            c.settimeout(socks.HANDSHAKE_SECONDS + 10)
            started = time.monotonic()
            assert c.recv(1) == b""  # closed by the proxy, not by us
            assert time.monotonic() - started >= socks.HANDSHAKE_SECONDS - 1
    finally:
        proxy.stop()


def test_listening_beyond_loopback_is_said_loudly_and_bad_listen_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": ROOT, "HOME": str(tmp_path)}
    done = subprocess.run(
        [*KNOCKSSH, "socks", "--listen", "localhost:1080"], env=env, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--listen" in done.stderr
    probe = socket.create_server(("0.0.0.0", 0))
    port = probe.getsockname()[1]
    probe.close()
    proc = subprocess.Popen(
        [*KNOCKSSH, "socks", "--listen", f"0.0.0.0:{port}"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stderr.readline()
        assert "WARNING" in line and "not on loopback" in line, line
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
    assert proc.returncode == 0


@pytest.mark.skipif(
    not shutil.which("systemd-socket-activate") and os.environ.get("CI") != "true",
    reason="systemd-socket-activate (package systemd) passes the socket as systemd does",
)
def test_the_example_units_socket_activation_passes_the_listener(tmp_path):
    """examples/knockssh-socks.socket: systemd hands the proxy a listening socket
    (LISTEN_FDS); systemd-socket-activate does just that, without a systemd."""
    units = os.path.join(ROOT, "examples")
    with open(os.path.join(units, "knockssh-socks.socket")) as f:
        assert "ListenStream=127.0.0.1:1080" in f.read()
    with open(os.path.join(units, "knockssh-socks.service")) as f:
        assert "ExecStart=%h/.local/bin/knockssh socks" in f.read()
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(STATIC)
    env = {**os.environ, "PYTHONPATH": ROOT, "KNOCKSSH_CONFIG": str(hosts), "HOME": str(tmp_path)}
    proc = subprocess.Popen(
        ["systemd-socket-activate", "-l", f"127.0.0.1:{port}", *KNOCKSSH, "socks"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        conns: list[socket.socket] = []

        def connected() -> bool:
            try:
                conns.append(socket.create_connection(("127.0.0.1", port), 10))
                return True
            except OSError:  # systemd-socket-activate has not bound it yet
                return False

        assert wait_for(connected, 10)
        with BannerServer() as target, conns[0] as c:
            assert connect_through(c, "127.0.0.1", target)[:2] == b"\x05\x00"
            assert recv_exactly(c, len(BannerServer.BANNER)) == BannerServer.BANNER
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert f"127.0.0.1 port {port}" in err, err
