"""The I/O around the plan, for real on loopback: the door lock, ssh hanging up,
a refusal after knocking, the failure log, knock_host, -4/-6 on the command line."""

import os
import signal
import socket
import subprocess
import sys
import threading

import pytest
from helpers import ROOT, SECRET

from knockssh import client, doorlock, failures, plan
from knockssh.mapping import HostEntry
from knockssh.peer import Watch


def knockssh(*args, env=None, **kw):
    kw = {"stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE, **kw}
    return subprocess.Popen([sys.executable, "-m", "knockssh", *args], env=env, cwd=ROOT, **kw)


def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def home(tmp_path):
    """A mapping file knocking a static sequence at 127.0.0.1, and private
    runtime and state directories."""
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        '[[host]]\nmatch = ["127.0.0.1", "localhost"]\nsequence = "7001,7002,7003,7004,7005"\n'
        "connect_timeout = 20\n"
    )
    env = {
        **os.environ,
        "KNOCKSSH_CONFIG": str(hosts),
        "XDG_RUNTIME_DIR": str(runtime),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "KNOCKD_ROTATOR_SECRET": SECRET,
    }
    return env


# -- the lock ---------------------------------------------------------------


def test_lock_dir_is_private_and_ours(tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    path = doorlock.lock_dir({"XDG_RUNTIME_DIR": str(runtime)})
    assert path == str(runtime / "knockssh")
    assert os.stat(path).st_mode & 0o777 == 0o700


def test_a_shared_runtime_dir_is_not_used(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chmod(shared, 0o777)
    assert doorlock.lock_dir({"XDG_RUNTIME_DIR": str(shared)}) == f"/tmp/knockssh-{os.geteuid()}"


def test_a_lock_dir_that_is_a_symlink_is_refused(tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir(mode=0o700)
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    (runtime / "knockssh").symlink_to(target)
    assert not doorlock._own_private_dir(str(runtime / "knockssh"))


HOLD = """
import sys, time
from knockssh.doorlock import DoorLock
from knockssh.peer import NOBODY
lock = DoorLock(sys.argv[1], "127.0.0.1")
print(lock.acquire(time.monotonic() + 5, NOBODY), flush=True)
sys.stdin.read()
"""


def test_the_lock_excludes_other_processes_and_dies_with_its_holder(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    try:
        assert holder.stdout.readline() == b"False\n"  # it was free
        lock = doorlock.DoorLock(str(tmp_path), "127.0.0.1")
        assert lock.acquire(0, Watch()) is None  # held: not had by a deadline already passed
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        got = lock.acquire(float("inf"), Watch())
        assert got is False  # free at once: the kernel dropped the dead holder's lock
        lock.release()
    finally:
        holder.kill()
        holder.wait(10)


def test_threads_take_turns():
    """flock is per open file: two threads of one process exclude each other too."""
    import tempfile
    import time

    inside, overlaps = [], []
    with tempfile.TemporaryDirectory() as d:

        def work():
            lock = doorlock.DoorLock(d, "192.0.2.1")
            lock.acquire(time.monotonic() + 20, Watch())
            if inside:
                overlaps.append(1)
            inside.append(1)
            time.sleep(0.01)  # hold it while the other thread tries
            inside.pop()
            lock.release()

        threads = [threading.Thread(target=work) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not overlaps


def test_knockssh_stops_when_ssh_hangs_up_while_it_waits(home):
    """ssh killed (no SIGHUP): the pipe to it loses its reader, and knockssh,
    waiting for a sibling's lock with 20 s left, ends at once."""
    lock = doorlock.DoorLock(doorlock.lock_dir(home), "127.0.0.1")
    assert lock.acquire(float("inf"), Watch()) is False
    try:
        p = knockssh("-v", "127.0.0.1", str(closed_port()), env=home)
        line = p.stderr.readline()  # it started and matched its entry
        assert b"matched" in line, line
        p.stdout.close()  # ssh is gone
        assert p.wait(timeout=5) == 1  # well within its 20 s; we still hold the lock
        assert b"Traceback" not in p.stderr.read()
    finally:
        lock.release()


# -- refused, failure log ---------------------------------------------------


def test_refused_after_knocking_ends_without_more_knocks(home):
    p = knockssh("-v", "127.0.0.1", str(closed_port()), env=home)
    out, err = p.communicate(timeout=30)
    assert p.returncode == 1 and out == b""
    lines = err.decode().splitlines()
    assert sum("knocked 5 ports" in line for line in lines) == 1, err
    assert "nothing listens" in lines[-1] and "is sshd running" in lines[-1]


def test_failures_are_logged_privately_without_the_secret(home):
    p = knockssh("127.0.0.1", str(closed_port()), env=home, stderr=subprocess.DEVNULL)
    p.communicate(timeout=30)
    assert p.returncode == 1
    path = failures.log_path(home)
    assert os.stat(path).st_mode & 0o777 == 0o600
    with open(path) as f:
        text = f.read()
    assert text.count("\n") == 1 and "127.0.0.1 port" in text and "nothing listens" in text
    assert SECRET not in text


def test_failure_log_stays_bounded_and_escapes_control_characters(tmp_path, monkeypatch):
    monkeypatch.setattr(failures, "MAX_BYTES", 2000)
    env = {"XDG_STATE_HOME": str(tmp_path)}
    for i in range(200):
        failures.record(env, f"failure {i} host a\nforged line")
    with open(failures.log_path(env)) as f:
        text = f.read()
    assert len(text) <= 2000
    assert "failure 199 " in text and "failure 0 " not in text
    assert all("\\nforged" in line for line in text.splitlines())


# -- addresses and flags ------------------------------------------------------


def test_knock_host_is_knocked_in_the_family_of_the_target():
    entry = HostEntry("h.toml", 1, ("h",), {"sequence": "1,2,3", "knock_host": "127.0.0.2"})
    (target,) = client.targets_for(entry, "127.0.0.1", 22, socket.AF_INET)
    assert target.sockaddr == ("127.0.0.1", 22) and target.knock_at[0] == "127.0.0.2"


def test_each_address_once_in_the_resolvers_order():
    found = client.resolve("localhost", 22, 0)
    assert len({a[1][0] for a in found}) == len(found)


class Banner:
    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"SSH-2.0-test\r\n")


@pytest.mark.parametrize(
    "args",
    [["-4", "{h}", "{p}"], ["{h}", "-4", "{p}"], ["{h}", "{p}", "-4"], ["-v4", "{h}", "{p}"]],
)
def test_ipv4_flag_in_any_position(tmp_path, args):
    server = Banner()
    empty = tmp_path / "hosts.toml"
    empty.write_text("")
    argv = [a.format(h="127.0.0.1", p=server.port) for a in args]
    p = knockssh(*argv, env={**os.environ, "KNOCKSSH_CONFIG": str(empty)})
    out, err = p.communicate(timeout=30)
    server.sock.close()
    assert out == b"SSH-2.0-test\r\n", err


def test_ipv6_flag_asks_for_ipv6(tmp_path):
    empty = tmp_path / "hosts.toml"
    empty.write_text("")
    p = knockssh("127.0.0.1", "22", "-6", env={**os.environ, "KNOCKSSH_CONFIG": str(empty)})
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and b"127.0.0.1: cannot resolve" in err


def test_a_flag_never_becomes_a_service(home):
    p = knockssh("knock", "127.0.0.1", "-4", "-v", env=home)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert b"static sequence" in err and b"period" not in err  # not a service named -4
    assert err.count(b"host entry") == 1  # the entry's label once, not nested


def test_generate_takes_the_family_flags_too(home):
    a = subprocess.run(
        [sys.executable, "-m", "knockssh", "generate", "ssh", "--at", "7200"],
        capture_output=True,
        env=home,
        cwd=ROOT,
    )
    b = subprocess.run(
        [sys.executable, "-m", "knockssh", "generate", "-4", "ssh", "--at", "7200", "-6"],
        capture_output=True,
        env=home,
        cwd=ROOT,
    )
    assert a.returncode == 0 and a.stdout == b.stdout and a.stdout.count(b":tcp") == 10


# -- what is remembered of a path, and timing it --------------------------------


def test_a_path_is_remembered_privately_and_rewritten_only_when_it_changed(tmp_path):
    from knockssh import paths
    from knockssh.plan import PathInfo

    env = {"XDG_STATE_HOME": str(tmp_path)}
    assert paths.recall(env, "2001:2::1").rtt is None
    paths.remember(env, "2001:2::1", PathInfo(), PathInfo(0.08, 0.05, jitter=0.03))
    got = paths.recall(env, "2001:2::1", fixed=None)
    assert (got.rtt, got.spacing, got.jitter) == (0.08, 0.05, 0.03) and got.age < 60
    file = tmp_path / "knockssh" / "paths" / "2001:2::1"
    assert file.stat().st_mode & 0o777 == 0o600
    before = file.stat().st_mtime_ns
    paths.remember(env, "2001:2::1", got, PathInfo(0.085, 0.05))  # within 25 %: kept as is
    assert file.stat().st_mtime_ns == before
    paths.remember(env, "2001:2::1", got, PathInfo(0.2, 0.1))
    assert paths.recall(env, "2001:2::1").spacing == 0.1
    assert paths.recall(env, "2001:2::1", fixed=0.0).fixed == 0.0


def test_an_old_memory_is_forgotten(tmp_path):
    from knockssh import paths

    (tmp_path / "knockssh" / "paths").mkdir(parents=True)
    (tmp_path / "knockssh" / "paths" / "192.0.2.1").write_text("1000 0.1 0.05 -\n")
    assert paths.recall({"XDG_STATE_HOME": str(tmp_path)}, "192.0.2.1").spacing is None


def test_knocks_time_the_path_and_are_closed_in_time():
    """Knocks to closed loopback ports are answered by resets: round trips, read
    while knocking and while the dial waits (here for a door that only refuses)."""
    from knockssh.dial import Refused, dial
    from knockssh.knock import Timings, send_knocks
    from rotator.scheme import Knock

    port = closed_port()
    timings = Timings()
    send_knocks(socket.AF_INET, ("127.0.0.1", 0), [Knock(port)] * 5, 0.002, timings=timings)
    with pytest.raises(Refused):
        dial(socket.AF_INET, ("127.0.0.1", port), 2, timings=timings)
    assert timings.open == {}  # every knock closed
    assert timings.sent == 5 and len(timings.rtts) == 5
    assert 0 < timings.rtt() < 0.5 and 0 <= timings.jitter() < 0.5
    assert sorted(index for _, index in timings.answers) == [0, 1, 2, 3, 4]
    assert not plan.out_of_order(timings.answers)  # loopback keeps order


def test_a_hasty_dial_ends_once_the_answers_came_out_of_order():
    """The first round's dial gives up on answers out of order (the path reorders),
    and only a hasty one: a spaced round waits for its door."""
    from knockssh.dial import Reordered, dial
    from knockssh.knock import Timings

    port = closed_port()
    timings = Timings()
    timings.answers += [(0.02, 1), (0.03, 0)]  # as if read from the path
    with pytest.raises(Reordered):  # not the timeout's TimeoutError: it did not wait it out
        dial(
            socket.AF_INET, ("127.0.0.1", port), 30, refusal_ends=False, timings=timings, hasty=True
        )
    with pytest.raises(OSError) as patient:
        dial(socket.AF_INET, ("127.0.0.1", port), 0.2, refusal_ends=False, timings=timings)
    assert not isinstance(patient.value, Reordered)


def test_a_host_name_with_a_newline_cannot_forge_a_second_line(tmp_path):
    empty = tmp_path / "hosts.toml"
    empty.write_text("")
    p = knockssh(
        "forged\nknockssh: connected", "22", env={**os.environ, "KNOCKSSH_CONFIG": str(empty)}
    )
    _, err = p.communicate(timeout=30)
    assert p.returncode != 0 and err.count(b"\n") <= 2  # the error, and "try --help" at most
    assert b"forged\\nknockssh: connected" in err and b"\nknockssh: connected" not in err


def test_a_non_ascii_name_too_long_for_idna_is_one_line(tmp_path):
    empty = tmp_path / "hosts.toml"
    empty.write_text("")
    p = knockssh("é" * 70 + ".example", "22", env={**os.environ, "KNOCKSSH_CONFIG": str(empty)})
    _, err = p.communicate(timeout=30)
    assert p.returncode == 1 and b"Traceback" not in err
    assert err.count(b"\n") == 1 and b"not a valid host name (IDNA)" in err
