"""knockssh socks against the lab's real knockd, sshd and firewall: the proxy runs
in the client namespace, as on a laptop, and SOCKS5 clients reach the knocked port
through it."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading

import pytest
from lab import OPEN_PORT, read, wait_for

pytestmark = pytest.mark.lab

PORT = 1080  # the client namespace's own loopback: nothing else there uses it

CLIENT = r"""
import socket, struct, sys
host, port = sys.argv[1].encode(), int(sys.argv[2])
with socket.create_connection(("127.0.0.1", 1080), timeout=30) as c:
    c.sendall(b"\x05\x01\x00")
    assert c.recv(2) == b"\x05\x00"
    c.sendall(b"\x05\x01\x00\x03" + bytes([len(host)]) + host + struct.pack("!H", port))
    reply = b""
    while len(reply) < 4:
        reply += c.recv(4 - len(reply))
    rest = {1: 6, 4: 18}[reply[3]]
    while rest:
        rest -= len(c.recv(rest))
    banner = c.recv(64) if reply[1] == 0 else b""
    print(reply[1], banner.split(b"\r")[0].decode(errors="replace"))
"""


@contextlib.contextmanager
def proxy(lab, record, mapping=None):
    """``knockssh socks`` in the client namespace; stopped with SIGTERM, which
    must end it at once with status 0."""
    env = lab.client_env()
    if mapping:
        env["KNOCKSSH_CONFIG"] = mapping
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.client_ns, "knockssh", "socks", "-v"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    try:
        assert wait_for(lambda: any("SOCKS5 proxy on" in x for x in lines), 10), lines
        yield lines
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        record(subprocess.CompletedProcess(proc.args, code, "", "".join(lines)))
        assert code == 0, lines
        assert not any("Traceback" in x for x in lines), lines


def through(lab, record, host, port=22):
    """The hand-made client (domain-name address type) in the client namespace:
    the reply code and the first line the destination sent."""
    done = record(
        lab.in_client(
            [sys.executable, "-c", CLIENT, host, str(port)], capture_output=True, text=True
        )
    )
    assert done.returncode == 0, done.stderr
    code, _, banner = done.stdout.strip().partition(" ")
    return int(code), banner


def test_openssh_through_nc_and_the_proxy_gets_in(fresh, record):
    with proxy(fresh, record):
        command = "ProxyCommand=nc -X 5 -x 127.0.0.1:1080 %h %p"
        done = record(
            fresh.in_client(
                [
                    "ssh",
                    "-F",
                    fresh.ssh_config,
                    "-o",
                    command,
                    "knocked.lab",
                    "echo socks-$((6*7))",
                ],
                capture_output=True,
                text=True,
                timeout=60,
            )
        )
    assert done.returncode == 0 and done.stdout.strip() == "socks-42", done.stderr


def test_a_domain_name_is_knocked_for_and_an_unmapped_one_is_not(fresh, record):
    with proxy(fresh, record):
        code, banner = through(fresh, record, "knocked.lab")
        assert code == 0 and banner.startswith("SSH-2.0-"), banner
        fresh.close_door()
        since = len(read(fresh.knockd_log))
        code, banner = through(fresh, record, "open.lab", OPEN_PORT)  # "!open.lab": no knock
        assert code == 0 and banner.startswith("SSH-2.0-"), banner
        assert fresh.sequences_started(since) == 0
        code, _ = through(fresh, record, "nosuch.lab")
        assert code == 4  # host unreachable: the name does not resolve


def test_ipv6_through_the_proxy(fresh, record):
    with proxy(fresh, record):
        code, banner = through(fresh, record, "knocked6.lab")
    assert code == 0 and banner.startswith("SSH-2.0-"), banner


def test_twenty_connects_at_once_all_get_in_with_few_sequences(fresh, record):
    since = len(read(fresh.knockd_log))
    results: list[tuple[int, str]] = []
    with proxy(fresh, record):
        threads = [
            threading.Thread(target=lambda: results.append(through(fresh, record, "knocked.lab")))
            for _ in range(20)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert len(results) == 20 and all(c == 0 and b.startswith("SSH-2.0-") for c, b in results)
    assert fresh.sequences_started(since) <= 3  # they take turns at one door


def test_a_door_that_never_opens_is_ttl_expired(fresh, record, tmp_path):
    """A wrong secret: the knocks go unanswered by the door, and the client hears
    the RFC's "TTL expired" when connect_timeout runs out."""
    wrong = tmp_path / "wrong.secret"
    wrong.write_text("not-the-lab-secret-at-all\n")
    wrong.chmod(0o600)
    mapping = tmp_path / "hosts.toml"
    mapping.write_text(
        f'[[host]]\nmatch = ["knocked.lab"]\nservice = "ssh"\nsecret_file = "{wrong}"\n'
        "connect_timeout = 2\n"
    )
    with proxy(fresh, record, str(mapping)) as lines:
        code, _ = through(fresh, record, "knocked.lab")
    assert code == 6, lines  # TTL expired
    assert any("no connection within 2s" in line for line in lines), lines
