"""The lab as the field: delay, jitter, reordering and loss on the link (the
userspace bridge), and a client that gets through them all. Success rates and
what the wire shows, never timings."""

import os
import subprocess
import sys

import pytest
from conftest import OUTPUTS, _require_lab
from helpers import ROOT
from lab import (
    LINKS,
    PERIOD,
    SERVER_IP,
    Capture,
    Lab,
    link_spec,
    new_name,
    read,
    run,
    wait_for,
    write_private,
)
from test_lab import period_now, reaches_sshd, sequence_ports

pytestmark = pytest.mark.lab

CONNECTS = 5  # per profile: a bounded series, the first one with nothing remembered
TIMEOUT = 90


@pytest.fixture(scope="module", params=["mobile", "wan", "lossy"])
def impaired(request):
    _require_lab()
    lab = Lab(new_name())
    lab.up("iptables", link=request.param)
    try:
        yield lab
        for out in OUTPUTS:
            assert lab.secret().encode() not in out
    finally:
        lab.down()


def fresh_start(lab):
    """Door closed, knockd current, nothing remembered of the path or the door."""
    lab.rotate()
    lab.close_door()
    lab.forget_doors()
    for name in ("paths",):
        state = os.path.join(lab.client_env()["XDG_STATE_HOME"], "knockssh", name)
        for entry in os.listdir(state) if os.path.isdir(state) else ():
            os.unlink(os.path.join(state, entry))


def keep(done):
    for out in (done.stdout, done.stderr):
        if out:
            OUTPUTS.append(out if isinstance(out, bytes) else out.encode())
    return done


def test_every_connect_through_openssh_gets_in(impaired):
    fresh_start(impaired)
    outcomes = []
    for _ in range(CONNECTS):
        impaired.close_door()
        impaired.forget_doors()  # a first connection to a closed door, but the path is known
        done = keep(
            impaired.in_client(
                ["ssh", "-F", impaired.ssh_config, "lab", "echo", "in"],
                capture_output=True,
                timeout=TIMEOUT,
            )
        )
        outcomes.append((done.returncode, done.stdout, done.stderr[-200:]))
    assert [o[:2] for o in outcomes] == [(0, b"in\n")] * CONNECTS, outcomes


# a laptop's day: each network has its own default gateway, which is how knockssh
# tells them apart; back on the first one, what it taught there applies again
DAY = [
    ("lan", "198.18.0.11"),
    ("mobile", "198.18.0.12"),
    ("wan", "198.18.0.13"),
    ("lan", "198.18.0.11"),
]


def test_what_the_last_network_taught_never_keeps_a_connect_out(tmp_path):
    """As users live: one state directory carried from lan to mobile to wan and back
    to lan, the lab's link changing under the client (and its gateway with it).
    Every connect gets in on each network, and back on lan the first round knocks
    fast again: the spacing mobile needed stayed with mobile."""
    _require_lab()
    lab = Lab(new_name())
    lab.up("iptables", link="lossy")  # over the bridge, so the client can move
    try:
        env = {**lab.client_env(), "XDG_STATE_HOME": str(tmp_path)}
        lab.rotate()
        legs = []
        for link, gateway in DAY:
            lab.move(link, gateway)
            outcomes = []
            for _ in range(CONNECTS):
                lab.close_door()
                lab.forget_doors()
                argv = ["ssh", "-F", lab.ssh_config, "lab", "echo", "in"]
                done = keep(lab.in_client(argv, capture_output=True, timeout=TIMEOUT, env=env))
                outcomes.append((done.returncode, done.stdout, done.stderr[-200:]))
            legs.append((link, outcomes))
        lab.close_door()
        lab.forget_doors()
        got_in, done = reaches_sshd(lab, keep, ["knockssh", "-v", "knocked.lab", "22"], env)
        assert got_in, done.stderr
        for secret in (lab.secret().encode(),):
            assert all(secret not in out for out in OUTPUTS)
    finally:
        lab.down()
    for link, outcomes in legs:
        assert [o[:2] for o in outcomes] == [(0, b"in\n")] * CONNECTS, (link, outcomes)
    networks = os.listdir(tmp_path / "knockssh" / "paths")
    assert len(networks) == 3, networks  # lan, mobile, wan: one memory each
    first = next(line for line in done.stderr.splitlines() if b"knocked 10 ports" in line)
    assert b" 1 ms apart" in first, done.stderr  # lan's own lesson, not mobile's


def test_rotation_on_the_impaired_link(impaired):
    """knockd re-reads its file on SIGHUP: the old sequence no longer opens the door,
    the new one does, even through delay, reordering and loss."""
    fresh_start(impaired)
    hosts = impaired.path("hosts-short.toml")
    write_private(
        hosts,
        read(impaired.hosts_toml).replace("[defaults]\n", "[defaults]\nconnect_timeout = 4\n"),
        exclusive=False,
    )
    env = {**impaired.client_env(), "KNOCKSSH_CONFIG": hosts}
    keep(impaired.rotate(at=period_now() + PERIOD))
    try:
        stale = keep(
            impaired.in_client(
                ["knockssh", "--offset", "0", "knocked.lab", "22"],
                capture_output=True,
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=TIMEOUT,
            )
        )
        assert stale.returncode == 1 and not impaired.door_open()
        argv = ["knockssh", "--offset", "1", "knocked.lab", "22"]  # default connect_timeout
        got_in, new = reaches_sshd(impaired, keep, argv)
        assert got_in, new.stderr
    finally:
        keep(impaired.rotate())


def inversions(arrived, sent):
    """Adjacent pairs of ``arrived`` that came in the opposite order to ``sent``."""
    rank = {port: i for i, port in reversed(list(enumerate(sent)))}
    ranks = [rank[p] for p in arrived if p in rank]
    return sum(1 for a, b in zip(ranks, ranks[1:]) if a > b)


@pytest.mark.parametrize("impaired", ["mobile"], indirect=True)  # per-packet jitter
def test_reordering_on_the_wire_and_the_door_opening_later(impaired):
    fresh_start(impaired)
    knocks = sequence_ports(impaired, keep)
    sent = [knocks[-1], *knocks]  # the clearing packet, then the sequence
    with Capture(impaired, f"tcp[tcpflags] & tcp-syn != 0 and dst host {SERVER_IP}") as capture:
        got_in, done = reaches_sshd(impaired, keep, ["knockssh", "-v", "knocked.lab", "22"])
    assert got_in, done.stderr
    arrived = [port for _, port in capture.packets() if port != 22]
    first_round = arrived[: len(sent)]  # the next round starts half a second later
    assert inversions(first_round, sent) >= 1, (first_round, sent)
    assert done.stderr.count(b"knocked 10 ports") >= 2  # the door opened in a later round
    assert impaired.door_open()


RECEIVER = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 9999))
s.settimeout(3)
print("ready", flush=True)
got = []
try:
    while len(got) < 200:
        data, _ = s.recvfrom(64)
        n, sent = struct.unpack("!Id", data)
        got.append((n, time.monotonic() - sent))
except socket.timeout:
    pass
print(" ".join(f"{n}:{d:.4f}" for n, d in got))
"""
SENDER = """
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for n in range(200):
    s.sendto(struct.pack("!Id", n, time.monotonic()), (sys.argv[1], 9999))
    time.sleep(0.001)
"""


def test_the_link_delays_jitters_reorders_and_loses(impaired):
    """200 datagrams 1 ms apart, stamped with the (shared) monotonic clock."""
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", impaired.server_ns, sys.executable, "-c", RECEIVER, SERVER_IP],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout.readline() == "ready\n"
        run([sys.executable, "-c", SENDER, SERVER_IP], ns=impaired.client_ns)
        out, _ = receiver.communicate(timeout=30)
    finally:
        receiver.kill()
    got = [(int(n), float(d)) for n, d in (item.split(":") for item in out.split())]
    delays = sorted(d for _, d in got)
    order = [n for n, _ in got]
    disorder = sum(1 for a, b in zip(order, order[1:]) if a > b)
    if impaired.link() == "wan":  # 25 ms ± 5 ms, order kept
        assert delays[0] > 0.019 and delays[-1] < 0.2 and disorder == 0 and len(got) == 200
    elif impaired.link() == "mobile":  # 40 ms ± 20 ms, per packet; 2 % loss
        assert delays[0] > 0.019 and delays[len(delays) // 2] < 0.1 and disorder > 10
        assert len(got) >= 170
    else:  # lossy: 10 ms, 10 % loss
        assert delays[0] > 0.009 and disorder == 0 and 150 <= len(got) <= 195


def test_the_bridge_never_outlives_the_lab():
    _require_lab()
    lab = Lab(new_name())
    lab.up(link="delay=5ms,jitter=1ms,dup=1%,rate=100mbit")
    try:
        pid = int(read(lab.path("bridge.pid")).split()[0])
        assert os.path.exists(f"/proc/{pid}")
        assert lab.link() == "delay=5ms,jitter=1ms,dup=1%,rate=100mbit"
    finally:
        lab.down()
    assert wait_for(lambda: not read(f"/proc/{pid}/cmdline"), 5)  # gone, or a zombie


def test_profiles_and_specs():
    assert link_spec("lan") is None and set(LINKS) == {"lan", "wan", "mobile", "lossy"}
    assert link_spec("delay=1ms") == "delay=1ms"
    for bad in ("bogus", "delay=1ms,loss=2", "color=red"):
        with pytest.raises(ValueError):
            link_spec(bad)


def test_lab_refuses_a_bad_link_and_makes_nothing(tmp_path):
    _require_lab()
    name = new_name()
    lab_py = os.path.join(ROOT, "server", "lab", "lab.py")
    done = subprocess.run(
        [sys.executable, lab_py, "up", "--name", name, "--link", "delay=5ms,loss=7"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "loss" in done.stderr and "Traceback" not in done.stderr
    assert not Lab(name).exists()
    assert name + "-s" not in run(["ip", "netns", "list"]).stdout
