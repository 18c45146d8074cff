"""End to end against real knockd, sshd and a firewall in network namespaces."""

import os
import socket
import subprocess
import sys
import time

import pytest
from helpers import ROOT, copy_round_trip, paramiko_both_ways
from lab import (
    CMD_TIMEOUT,
    PERIOD,
    SERVER_IP,
    Capture,
    Lab,
    new_name,
    read,
    wait_for,
    write_private,
)

from knockssh import plan

pytestmark = pytest.mark.lab

CLIENT_TIMEOUT = 60


def ssh(lab, record, host, *cmd, config=None, env=None, tool="ssh", timeout=CLIENT_TIMEOUT):
    argv = [tool, "-F", config or lab.ssh_config, host, *cmd]
    return record(lab.in_client(argv, capture_output=True, env=env, timeout=timeout))


def period_now():
    return int(time.time()) // PERIOD * PERIOD


def sequence_ports(lab, record, at=None, offset=0, secret=None):
    """The ports of the ``ssh`` sequence (``knockssh generate``) for instant ``at``."""
    env = {**os.environ, **lab.rotator_env()}
    if secret:
        env["KNOCKD_ROTATOR_SECRET"] = secret
    when = [] if at is None else ["--at", str(int(at))]
    out = record(
        lab.in_client(
            ["knockssh", "generate", "ssh", *when, "--offset", str(offset)],
            capture_output=True,
            env=env,
        )
    ).stdout.decode()
    return [int(k.split(":")[0]) for k in out.split()]


def reaches_sshd(lab, record, argv, env=None):
    """Run a ProxyCommand (``knockssh ... HOST 22``) in the client namespace, writing an
    ssh banner to it; did sshd's banner come back? The run is returned too."""
    done = record(
        lab.in_client(
            argv, capture_output=True, env=env, input=b"SSH-2.0-probe\r\n", timeout=CLIENT_TIMEOUT
        )
    )
    return done.stdout.startswith(b"SSH-2.0-OpenSSH"), done


def test_ssh_proxycommand(fresh, record):
    done = ssh(fresh, record, "lab", "echo hello from $(hostname) via $SSH_CONNECTION")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(b"hello from ") and b"198.18.0.2" in done.stdout
    assert fresh.door_open()


def test_ssh_proxy_use_fdpass(fresh, record):
    done = ssh(fresh, record, "lab-fdpass", "echo fdpass ok")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"fdpass ok\n"


def test_unmapped_host_passes_straight_through(fresh, record):
    done = ssh(fresh, record, "open", "echo open port")
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"open port\n"
    assert not fresh.door_open()  # nothing was knocked


def test_no_knock_no_connection(fresh, record):
    done = record(fresh.in_client(["nc", "-z", "-w", "2", SERVER_IP, "22"], capture_output=True))
    assert done.returncode != 0
    assert not fresh.door_open()


def test_scp_and_rsync_wrappers(fresh, record, tmp_path):
    sent, back = copy_round_trip(fresh, record, tmp_path, fresh.path("copied.bin"))
    assert sent == back
    fresh.close_door()
    done = record(
        fresh.in_client(
            ["knockssh-ssh", "-F", fresh.ssh_config, "plain", "echo", "'a b'", "'$(x)'"],
            capture_output=True,
            timeout=CLIENT_TIMEOUT,
        )
    )
    assert done.returncode == 0 and done.stdout == b"a b $(x)\n", done.stderr


def test_paramiko_proxycommand_and_api(fresh, record):
    assert paramiko_both_ways(fresh) == [b"paramiko 42\n", b"paramiko 42\n"]


def test_knocks_on_the_wire(fresh, record):
    """Each TCP knock is exactly one SYN, in order, never retransmitted, after one
    packet that clears any attempt knockd still holds for us."""
    knocks = sequence_ports(fresh, record)
    with Capture(fresh, f"tcp[tcpflags] & tcp-syn != 0 and dst host {SERVER_IP}") as capture:
        done = record(fresh.in_client(["knockssh", "knock", "knocked.lab"], capture_output=True))
        assert done.returncode == 0, done.stderr
        assert wait_for(fresh.door_open, 5)
        time.sleep(1.5)  # proving an absence: the kernel's first SYN retry would come at 1 s
    assert [port for _, port in capture.packets()] == [knocks[-1], *knocks]


def test_wrong_secret_fails_within_timeout(fresh, record, tmp_path):
    bad_secret = tmp_path / "bad.secret"
    write_private(str(bad_secret), "not-the-right-secret-at-all\n")
    hosts = tmp_path / "hosts.toml"
    write_private(
        str(hosts),
        f'[[host]]\nmatch = ["knocked.lab"]\nservice = "ssh"\n'
        f'period = {PERIOD}\nconnect_timeout = 3\nsecret_file = "{bad_secret}"\n',
    )
    t = time.monotonic()
    done = record(
        fresh.in_client(
            ["knockssh", "knocked.lab", "22"],
            capture_output=True,
            env={**fresh.client_env(), "KNOCKSSH_CONFIG": str(hosts)},
            stdin=subprocess.DEVNULL,
        )
    )
    elapsed = time.monotonic() - t
    assert done.returncode == 1 and done.stdout == b""
    assert elapsed < 3 + 2
    message = done.stderr.decode()
    assert "no connection within 3s" in message and "(current)" in message
    # neighbouring periods only near a boundary (clock_skew, 300 s by default)
    near = plan.seconds_to_boundary(time.time(), PERIOD) < 300
    assert ("(next)" in message or "(previous)" in message) == near
    assert "secret" in message and message.count("\n") == 1
    assert not fresh.door_open()


def test_knockd_stopped_gives_clear_message(fresh, record):
    os.kill(fresh.knockd_pid(), 15)
    assert wait_for(lambda: fresh.knockd_pid() is None, 5)
    try:
        hosts = fresh.path("hosts-fast.toml")
        text = read(fresh.hosts_toml).replace("connect_timeout = 6", "connect_timeout = 1.5")
        write_private(hosts, text, exclusive=False)
        done = record(
            fresh.in_client(
                ["knockssh", "knocked.lab", "22"],
                capture_output=True,
                env={**fresh.client_env(), "KNOCKSSH_CONFIG": hosts},
                stdin=subprocess.DEVNULL,
            )
        )
        assert done.returncode == 1 and b"knockd" in done.stderr and b"port 22" in done.stderr
    finally:
        fresh.start_knockd()


def test_sshd_down_gives_clear_message_and_no_more_knocks(fresh, record):
    # the door opens (knockd is up) but nothing listens: refused, at once and clearly
    fresh.stop_sshd()
    assert wait_for(
        lambda: b":22 " not in fresh.in_server(["ss", "-ltn"], capture_output=True).stdout, 5
    )
    try:
        knocks = sequence_ports(fresh, record)
        with Capture(fresh, f"tcp and dst host {SERVER_IP}") as capture:
            done = record(
                fresh.in_client(
                    ["knockssh", "knocked.lab", "22"],
                    capture_output=True,
                    stdin=subprocess.DEVNULL,
                    timeout=CLIENT_TIMEOUT,
                )
            )
        assert done.returncode == 1 and b"nothing listens on port 22" in done.stderr
        assert fresh.door_open()
        seen = [port for _, port in capture.packets() if port != 22]
        assert seen == [knocks[-1], *knocks]  # one clearing packet, one sequence, no more
    finally:
        fresh.start_sshd()


def test_rotation_by_sighup(fresh, record):
    pid = fresh.knockd_pid()
    now = period_now()
    # open the door with the current sequence just before the rotation
    done = record(fresh.in_client(["knockssh", "knock", "knocked.lab"], capture_output=True))
    assert done.returncode == 0 and wait_for(fresh.door_open, 5)
    # rotate to the next period (as the server will at the boundary)
    done = record(fresh.rotate(at=now + PERIOD, extra=["-v"]))
    assert "ssh_ROTATOR: changed" in done.stdout and "re-read" in done.stdout
    assert fresh.knockd_pid() == pid  # reloaded, not restarted
    # the door opened before the rotation still closes (knockd's stop_command child
    # survived the reload; a restart would have killed it and left the door open)
    assert wait_for(lambda: not fresh.door_open(), CMD_TIMEOUT + 5)
    # the old sequence no longer opens it; the new one does
    done = record(
        fresh.in_client(["knockssh", "knock", "knocked.lab", "--offset", "0"], capture_output=True)
    )
    assert done.returncode == 0
    assert not wait_for(fresh.door_open, 1.5)
    done = record(
        fresh.in_client(["knockssh", "knock", "knocked.lab", "--offset", "1"], capture_output=True)
    )
    assert wait_for(fresh.door_open, 5)
    assert fresh.knockd_pid() == pid


def test_bad_knockd_conf_is_refused_and_knockd_survives(fresh, record):
    pid = fresh.knockd_pid()
    original = read(fresh.knockd_conf)
    broken = original.replace("tcpflags      = syn", "tcpflags      = syn,bogus")
    fd = os.open(fresh.knockd_conf, os.O_WRONLY | os.O_TRUNC)
    os.write(fd, broken.encode())
    os.close(fd)
    try:
        done = record(fresh.rotate(at=period_now() + PERIOD, check=False))
        assert done.returncode == 1
        assert "knockd.conf: line" in done.stderr and "tcp flag" in done.stderr
        assert read(fresh.knockd_conf) == broken  # untouched
        assert fresh.knockd_pid() == pid
    finally:
        fd = os.open(fresh.knockd_conf, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, original.encode())
        os.close(fd)


def test_client_past_boundary_falls_back_to_previous(fresh, record):
    # the server is still on this period; the client's clock is 5 s into the next
    t = period_now() + PERIOD + 5
    argv = ["faketime", f"@{t}", "knockssh", "-v", "knocked.lab", "22"]
    got_in, done = reaches_sshd(fresh, record, argv)
    assert got_in and b"(previous)" in done.stderr
    assert b"connected through the door" in done.stderr


def test_close_door_cancels_pending_stop_commands(fresh, record):
    # knockd waits out cmd_timeout in a child; left running, that child's
    # stop_command would remove the rule a later test's knock adds
    done = record(fresh.in_client(["knockssh", "knock", "knocked.lab"], capture_output=True))
    assert done.returncode == 0 and wait_for(fresh.door_open, 5)
    assert fresh.pending_stops()
    fresh.close_door()
    assert not fresh.door_open()
    assert wait_for(lambda: not fresh.pending_stops(), 5)


def test_grace_keeps_previous_sequence(fresh, record):
    boundary = period_now() + PERIOD
    done = record(fresh.rotate(at=boundary + 10, extra=["--grace", "600"]))
    assert "grace" in done.stdout and "_GRACE" in read(fresh.knockd_conf)
    # a client still on the previous period gets in during the grace window
    done = record(
        fresh.in_client(["knockssh", "knock", "knocked.lab", "--offset", "0"], capture_output=True)
    )
    assert wait_for(fresh.door_open, 5)
    fresh.close_door()
    # after the window the twin is gone and the previous sequence stops working
    done = record(fresh.rotate(at=boundary + 700, extra=["--grace", "600"]))
    assert "_GRACE" not in read(fresh.knockd_conf)
    record(
        fresh.in_client(["knockssh", "knock", "knocked.lab", "--offset", "0"], capture_output=True)
    )
    assert not wait_for(fresh.door_open, 1.5)


def test_packet_loss(fresh, record):
    """One in twenty of the client's packets (knocks, SYNs, data) are lost on the way out.

    tc netem is not in this kernel (no sch_netem), so the loss is made with the
    iptables statistic match in the client namespace, before knockd's capture.
    """
    drop = [
        "OUTPUT",
        "-o",
        fresh.client_if,
        "-m",
        "statistic",
        "--mode",
        "random",
        "--probability",
        "0.05",
        "-j",
        "DROP",
    ]
    subprocess.run(["ip", "netns", "exec", fresh.client_ns, "iptables", "-A", *drop], check=True)
    try:
        outcomes = []
        for _ in range(4):
            fresh.close_door()
            t = time.monotonic()
            done = record(
                fresh.in_client(
                    ["ssh", "-F", fresh.ssh_config, "lab", "echo", "ok"],
                    capture_output=True,
                    timeout=CLIENT_TIMEOUT,
                )
            )
            elapsed = time.monotonic() - t
            assert elapsed < 6 + 15  # connect_timeout plus ssh's own exchange under loss
            if done.returncode == 0:
                outcomes.append(done.stdout == b"ok\n")
            else:  # a failure says why (knockssh's line, or ssh's own), never a traceback
                assert done.stderr.strip() and b"Traceback" not in done.stderr, done.stderr
                outcomes.append(False)
        assert any(outcomes)
    finally:
        subprocess.run(
            ["ip", "netns", "exec", fresh.client_ns, "iptables", "-D", *drop], check=False
        )


def test_bad_mapping_file_one_line_error(fresh, record, tmp_path):
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[[host]]\nmatch = ["knocked.lab"]\nservice = "ssh"\nperiodd = 5\n')
    done = record(
        fresh.in_client(
            ["ssh", "-F", fresh.ssh_config, "lab", "true"],
            capture_output=True,
            env={**fresh.client_env(), "KNOCKSSH_CONFIG": str(hosts)},
        )
    )
    assert done.returncode == 255
    assert (
        f"knockssh: {hosts}: host entry 1 (knocked.lab): unknown key 'periodd'".encode()
        in done.stderr
    )
    assert b"Traceback" not in done.stderr


def test_nftables_firewall_brought_up_as_a_person_does(record):
    """lab.py up, then the commands it printed, pasted into a shell."""
    other = Lab(new_name())
    lab_py = os.path.join(ROOT, "server", "lab", "lab.py")
    try:
        up = subprocess.run(
            [sys.executable, lab_py, "up", "--name", other.name, "--firewall", "nftables"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert up.returncode == 0 and up.stdout.split("\n")[0] == other.dir, up.stderr
        assert f"server/lab/lab.sh down --name {other.name}" in up.stderr
        assert not other.door_open()
        pasted = [line.strip() for line in up.stderr.splitlines() if "ip netns exec" in line]
        ssh_line = next(line for line in pasted if " ssh -F " in line)
        done = record(subprocess.run(["sh", "-c", ssh_line], capture_output=True, timeout=60))
        assert done.returncode == 0 and done.stdout.decode().strip() == socket.gethostname()
        assert other.door_open()
        check_line = next(line for line in pasted if "knockssh check lab" in line)
        done = record(subprocess.run(["sh", "-c", check_line], capture_output=True, timeout=60))
        assert done.returncode == 0 and b"ssh runs knockssh for lab" in done.stdout, done.stdout
    finally:
        other.down()
    assert not os.path.exists(other.dir)
