"""The client where its users live: many connections at once, machines behind one
NAT, retries knockd accepts, no sequence before its time, IPv6 and dual-stack
names. Against the lab's real knockd, sshd and firewalls."""

import contextlib
import os
import signal
import subprocess
import threading
import time

import pytest
from helpers import setns
from lab import (
    CLIENT_IP,
    CLIENT_IP6,
    PERIOD,
    SERVER_IP,
    Capture,
    Lab,
    new_name,
    read,
    wait_for,
    write_private,
)
from test_lab import period_now, reaches_sshd, sequence_ports, ssh

from knockssh import failures

pytestmark = pytest.mark.lab

TIMEOUT = 90  # seconds any one client run may take before the test calls it hung


def in_parallel(lab, record, argvs, envs=None):
    """Start every argv at once in the client namespace; their CompletedProcesses."""
    envs = envs or [None] * len(argvs)
    procs = [
        subprocess.Popen(
            ["ip", "netns", "exec", ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env or lab.client_env(),
        )
        for (ns, argv), env in zip(argvs, envs)
    ]
    done = []
    for p in procs:
        out, err = p.communicate(timeout=TIMEOUT)
        done.append(record(subprocess.CompletedProcess(p.args, p.returncode, out, err)))
    return done


@pytest.mark.parametrize("count", [2, 10, 50])
def test_simultaneous_ssh_all_get_in_with_a_handful_of_sequences(fresh, record, count):
    mark = len(read(fresh.knockd_log))
    argv = ["ssh", "-F", fresh.ssh_config, "lab", "echo", "in"]
    done = in_parallel(fresh, record, [(fresh.client_ns, argv)] * count)
    assert [d.returncode for d in done] == [0] * count, [d.stderr for d in done if d.returncode]
    assert all(d.stdout == b"in\n" for d in done)
    assert 1 <= fresh.sequences_started(mark) <= 3


def test_proxyjump_fan_out_through_a_knocked_bastion(fresh, record):
    mark = len(read(fresh.knockd_log))
    argv = ["ssh", "-F", fresh.ssh_config, "inner", "echo", "inner"]
    done = in_parallel(fresh, record, [(fresh.client_ns, argv)] * 20)
    assert [d.returncode for d in done] == [0] * 20, [d.stderr for d in done if d.returncode]
    assert 1 <= fresh.sequences_started(mark) <= 3


def control_options(lab):
    # a short path: a socket's name has at most 107 bytes, and ssh adds 17 for a temporary
    return ["-o", "ControlMaster=auto", "-o", f"ControlPath={lab.dir}/cm-%C"]


def test_first_connections_racing_for_a_control_master(fresh, record):
    control = control_options(fresh)
    control += ["-o", "ControlPersist=30"]
    argv = ["ssh", "-F", fresh.ssh_config, *control, "lab", "echo", "mux"]
    try:
        done = in_parallel(fresh, record, [(fresh.client_ns, argv)] * 10)
        assert [d.returncode for d in done] == [0] * 10, [d.stderr for d in done if d.returncode]
    finally:
        fresh.in_client(["ssh", "-F", fresh.ssh_config, *control, "-O", "exit", "lab"])


def test_paramiko_from_five_threads(fresh):
    paramiko = pytest.importorskip("paramiko", reason="paramiko is in the test extra")
    key = paramiko.Ed25519Key.from_private_key_file(fresh.path("client_key"))
    results, errors = [], []
    env = fresh.client_env()

    def work(i):
        try:
            setns(f"/run/netns/{fresh.client_ns}")
            import knockssh

            # an address: /etc/netns/NS/hosts is bound over /etc/hosts by ip netns exec only
            sock = knockssh.connect(SERVER_IP, 22, config=fresh.hosts_toml, env=env)
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            client.connect(
                SERVER_IP, 22, "root", pkey=key, sock=sock, look_for_keys=False,
                allow_agent=False, timeout=30, banner_timeout=30,
            )  # fmt: skip
            try:
                _, out, _ = client.exec_command(f"echo thread {i}")
                results.append(out.read())
            finally:
                client.close()
        except Exception as exc:  # reported below, with the others'
            errors.append(repr(exc))

    mark = len(read(fresh.knockd_log))
    threads = [threading.Thread(target=work, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(TIMEOUT)
    assert not errors
    assert sorted(results) == [f"thread {i}\n".encode() for i in range(5)]
    assert 1 <= fresh.sequences_started(mark) <= 2


@pytest.mark.parametrize("count", [2, 3])
def test_machines_behind_one_nat(fresh, record, count):
    """Each has its own lock (another machine): only the plan's clearing and random
    pauses, growing after each collision, keep them apart. All get in, 20 times of 20."""
    with fresh.nat_clients(count) as machines:
        envs = [fresh.client_env(machine=ns) for ns in machines]
        argv = ["ssh", "-F", fresh.ssh_config, "lab", "echo", "nat"]
        outcomes = []
        for _ in range(20):
            fresh.close_door()
            for ns in machines:  # a first connection each time: no memory of an open door
                fresh.forget_doors(machine=ns)
            done = in_parallel(fresh, record, [(ns, argv) for ns in machines], envs)
            outcomes.append([d.returncode for d in done])
            assert fresh.door_open(), (outcomes, [d.stderr[-300:] for d in done])  # shared address
        assert outcomes == [[0] * count] * 20


def test_a_half_sent_sequence_does_not_cost_the_first_round(fresh, record):
    """A sequence cut off after 4 knocks leaves knockd an attempt for our address;
    the clearing packet ends it, so the next connect gets in on its first round."""
    first_four = [str(port) for port in sequence_ports(fresh, record)[:4]]
    done = record(
        fresh.in_client(["knock", "-d", "1", SERVER_IP, *first_four], capture_output=True)
    )
    assert done.returncode == 0
    got_in, done = reaches_sshd(fresh, record, ["knockssh", "-v", "knocked.lab", "22"])
    assert got_in, done.stderr
    assert done.stderr.count(b"knocked 10 ports") == 1  # the first round got in


# -- on the wire ---------------------------------------------------------------


def short_timeout_hosts(lab, secret_path=None):
    text = read(lab.hosts_toml).replace("connect_timeout = 6", "connect_timeout = 3")
    if secret_path:
        text = text.replace(lab.path("secret"), secret_path)
    path = lab.path(f"hosts-{os.getpid()}-{time.monotonic_ns()}.toml")
    write_private(path, text)
    return path


@contextlib.contextmanager
def knockd_stopped(lab):
    os.kill(lab.knockd_pid(), signal.SIGTERM)
    assert wait_for(lambda: lab.knockd_pid() is None, 5)
    try:
        yield
    finally:
        lab.start_knockd()


@contextlib.contextmanager
def no_door(lab, case, tmp_path):
    """The server state in which knocking cannot succeed, and the mapping file."""
    if case == "knockd stopped":
        with knockd_stopped(lab):
            yield short_timeout_hosts(lab), None
    else:
        wrong = tmp_path / "wrong.secret"
        write_private(str(wrong), "a-wrong-secret-of-some-length\n")
        yield short_timeout_hosts(lab, str(wrong)), "a-wrong-secret-of-some-length"


def knock_ports(capture):
    return [port for address, port in capture.packets() if port != 22]


@pytest.mark.parametrize("case", ["knockd stopped", "wrong secret"])
@pytest.mark.parametrize("where", ["far from a boundary", "just before a boundary"])
def test_only_sequences_whose_time_has_come(fresh, record, tmp_path, case, where):
    at = period_now() + (PERIOD // 2 if where == "far from a boundary" else PERIOD - 100)
    with no_door(fresh, case, tmp_path) as (hosts, secret):
        current = sequence_ports(fresh, record, at, 0, secret)
        following = sequence_ports(fresh, record, at, 1, secret)
        previous = sequence_ports(fresh, record, at, -1, secret)
        env = {**fresh.client_env(), "KNOCKSSH_CONFIG": hosts}
        with Capture(fresh, f"tcp and dst host {SERVER_IP}") as capture:
            done = record(
                fresh.in_client(
                    ["faketime", f"@{at}", "knockssh", "knocked.lab", "22"],
                    capture_output=True,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    timeout=TIMEOUT,
                )
            )
    assert done.returncode == 1 and b"no connection within 3s" in done.stderr
    seen = knock_ports(capture)
    assert seen.count(current[0]) >= 2  # retried rounds
    assert not set(seen) & (set(previous) - set(current) - set(following))
    if where == "far from a boundary":
        assert set(seen) <= set(current)
        assert b"only a clock off by more than that" in done.stderr
    else:
        assert set(following) - set(current) <= set(seen)  # the next one too, in full
        assert b"a clock off by that much could be the cause" in done.stderr


# -- ssh going away, failures under ControlPersist --------------------------------------


def _children_named(parent, name):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read(f"/proc/{entry}/stat")
            if stat and f"({name})" in stat and int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
    return found


def gone(pid):
    stat = read(f"/proc/{pid}/stat")
    return not stat or stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_knocking_stops_when_ssh_is_killed(fresh, record):
    with knockd_stopped(fresh):  # knockssh would knock on for connect_timeout (6 s)
        ssh_proc = subprocess.Popen(
            ["ip", "netns", "exec", fresh.client_ns, "ssh", "-F", fresh.ssh_config, "lab", "true"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=fresh.client_env(),
        )
        try:
            # ip netns exec execs ssh, which runs the ProxyCommand through the shell's exec
            proxy = []
            assert wait_for(
                lambda: proxy.extend(_children_named(ssh_proc.pid, "knockssh")) or proxy, 10
            )
            ssh_proc.send_signal(signal.SIGKILL)  # no SIGHUP from a killed ssh
            ssh_proc.wait(10)
            assert wait_for(lambda: gone(proxy[0]), 1.0)  # it had 6 s of knocking left
        finally:
            ssh_proc.kill()


def test_failures_under_control_persist_are_in_the_log(fresh, record):
    env = fresh.client_env(machine="persist")
    control = control_options(fresh)
    control += ["-o", "ControlPersist=30"]
    with knockd_stopped(fresh):
        done = record(
            fresh.in_client(
                ["ssh", "-F", fresh.ssh_config, *control, "lab", "true"],
                capture_output=True,
                env=env,
                timeout=TIMEOUT,
            )
        )
    assert done.returncode == 255 and b"knockssh" not in done.stderr  # ssh hid our message
    path = failures.log_path(env)
    text = read(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert text.count("\n") == 1 and "knocked.lab port 22: no connection" in text
    assert fresh.secret() not in text


# -- IPv6 and the address family ---------------------------------------------------


@pytest.mark.parametrize(
    "argv, source",
    [
        (["knockssh", "-4", "dual.lab", "22"], CLIENT_IP),
        (["knockssh", "dual.lab", "-4", "22"], CLIENT_IP),
        (["knockssh", "dual.lab", "22", "-4"], CLIENT_IP),
        (["knockssh", "-6", "dual.lab", "22"], CLIENT_IP6),
        (["knockssh", "dual.lab", "22", "-6"], CLIENT_IP6),
        (["knockssh", "knocked6.lab", "22"], CLIENT_IP6),
    ],
)
def test_family_flags_in_every_position(fresh, record, argv, source):
    got_in, done = reaches_sshd(fresh, record, argv)
    assert got_in, done.stderr
    assert fresh.door_open(source)
    other = CLIENT_IP6 if source == CLIENT_IP else CLIENT_IP
    assert not fresh.door_open(other)  # the address being connected to was knocked


@pytest.mark.parametrize("flag, source", [("-4", CLIENT_IP), ("-6", CLIENT_IP6)])
def test_knock_command_takes_the_family_anywhere(fresh, record, flag, source):
    done = record(fresh.in_client(["knockssh", "knock", "dual.lab", flag], capture_output=True))
    assert done.returncode == 0, done.stderr
    assert wait_for(lambda: fresh.door_open(source), 5)


def test_ipv6_session_through_openssh(fresh, record):
    done = ssh(fresh, record, "lab6", "echo $SSH_CONNECTION")
    assert done.returncode == 0 and done.stdout.startswith(CLIENT_IP6.encode()), done.stderr


def test_dual_stack_name_falls_back_to_ipv4_when_the_ipv6_door_never_opens(fresh, record):
    """knockd without _6 commands runs the IPv4 command with an IPv6 address, which
    fails: the IPv6 door never opens. ssh still gets in over IPv4 in time."""
    original = read(fresh.knockd_conf)
    write_private(
        fresh.knockd_conf,
        "".join(line for line in original.splitlines(True) if "_command_6" not in line),
        exclusive=False,
    )
    fresh.reload_knockd()
    try:
        t = time.monotonic()
        done = ssh(fresh, record, "dual", "echo $SSH_CONNECTION")
        assert done.returncode == 0 and done.stdout.startswith(CLIENT_IP.encode()), done.stderr
        assert time.monotonic() - t < 6 + 5  # connect_timeout, plus ssh's own exchange
        assert not fresh.door_open(CLIENT_IP6)
    finally:
        write_private(fresh.knockd_conf, original, exclusive=False)
        fresh.reload_knockd()


def test_ipv6_and_ipv4_doors_with_nftables(record):
    other = Lab(new_name())
    other.up("nftables")
    try:
        for host, source in (("lab6", CLIENT_IP6), ("lab", CLIENT_IP)):
            done = ssh(other, record, host, "echo nft")
            assert done.returncode == 0 and done.stdout == b"nft\n", done.stderr
            assert other.door_open(source)
    finally:
        other.down()
