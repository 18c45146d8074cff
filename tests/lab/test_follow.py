"""knockssh-rotator --follow, for hosts without systemd and for containers: against
the lab's real knockd (reloaded by --pidfile), across real period boundaries, and
across a jump of its clock (libfaketime, reading its offset from a file)."""

import glob
import os
import signal
import subprocess
import threading
import time

import pytest
from lab import read, wait_for

pytestmark = pytest.mark.lab


class Follower:
    """The rotator in --follow mode in the server namespace; its stdout lines are
    kept with the wall-clock time each arrived."""

    def __init__(self, lab, env):
        argv = ["knockssh-rotator", "--follow", "--config", lab.knockd_conf]
        argv += ["--pidfile", lab.knockd_pidfile]
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", lab.server_ns, *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.lines: list[tuple[float, str]] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append((time.time(), line.rstrip("\n")))

    def changes(self):
        return [(t, line) for t, line in self.lines if ": changed " in line]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=20)
        self.reader.join(5)
        return code, self.proc.stderr.read()


def generated(lab, record, at, period=None):
    """The lab's sequence for instant ``at``, as knockssh generate derives it."""
    env = {**os.environ, **lab.rotator_env()}
    if period:
        env["KNOCKD_ROTATOR_PERIOD_MODULO"] = str(period)
    done = lab.in_client(
        ["knockssh", "generate", "ssh", "--at", str(int(at))], capture_output=True, env=env
    )
    return record(done).stdout.decode().split()


def test_follow_rotates_at_three_boundaries_and_stops_on_sigterm(fresh, record):
    period = 10
    env = {**fresh.rotator_env(), "KNOCKD_ROTATOR_PERIOD_MODULO": str(period)}
    pid = fresh.knockd_pid()
    follower = Follower(fresh, env)
    try:
        assert wait_for(lambda: len(follower.changes()) >= 4, 4 * period + 10), follower.lines
    finally:
        code, err = follower.stop()
    assert code == 0 and follower.lines[-1][1] == "stopped", (follower.lines, err)
    assert err == ""
    changes = follower.changes()
    for arrived, _ in changes[1:4]:  # the first came at start-up
        boundary = arrived // period * period
        assert arrived - boundary <= 2, (arrived, changes)
    assert fresh.knockd_pid() == pid  # reloaded by SIGHUP, never restarted
    arrived, line = changes[3]
    assert line.split(" -> ")[1].split(",") == generated(fresh, record, arrived, period)


def libfaketime():
    found = glob.glob("/usr/lib/*/faketime/libfaketime.so.1")
    if not found:
        raise AssertionError("libfaketime is missing (lab.py install installs faketime)")
    return found[0]


def test_follow_catches_a_jump_of_the_clock(fresh, record, tmp_path):
    """The clock jumps a period ahead (as after a suspend): the follower rotates to
    the period the clock now shows within its recheck time, not at the boundary it
    had computed before the jump. libfaketime moves the monotonic clock too (not
    faking it breaks Python's sleep), so a timeout running at the jump expires:
    the follower's first look at knockd's addresses can fail, and must not then
    read the next one as a change that restarts knockd."""
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = {
        **fresh.rotator_env(),
        "LD_PRELOAD": libfaketime(),
        "FAKETIME_TIMESTAMP_FILE": str(offset),
        "FAKETIME_NO_CACHE": "1",
    }
    follower = Follower(fresh, env)
    try:
        assert wait_for(lambda: any("following" in line for _, line in follower.lines), 10)
        before = fresh.knockd_pid()
        jumped = time.time()
        offset.write_text(f"+{fresh_period(fresh)}\n")
        assert wait_for(lambda: follower.changes(), 15), follower.lines
        caught = follower.changes()[0][0]
    finally:
        code, err = follower.stop()
    assert code == 0, err
    assert caught - jumped <= 7  # RECHECK_SECONDS (5) and a reload
    new = follower.changes()[0][1].split(" -> ")[1].split(",")
    assert new == generated(fresh, record, jumped + fresh_period(fresh))
    assert fresh.knockd_pid() == before, (follower.lines, read(fresh.knockd_log)[-2000:])


def fresh_period(lab):
    return int(lab.rotator_env()["KNOCKD_ROTATOR_PERIOD_MODULO"])


def test_follow_keeps_knockd_running_and_closes_the_doors_it_left(fresh, record):
    """knockd SIGKILLed with a door open: the follower closes the door (its
    stop_command died with knockd) and starts knockd again; the next knock gets in."""
    if fresh.firewall().name != "iptables":
        pytest.fail("this test needs the lab's iptables firewall")
    follower = Follower(fresh, fresh.rotator_env())
    try:
        assert wait_for(
            lambda: follower.changes() or any("following" in x for _, x in follower.lines), 10
        )
        assert ssh(fresh, record).returncode == 0 and fresh.door_open()
        old = fresh.knockd_pid()
        fresh.host_kind().cancel_pending_stops()  # as if they died with knockd (a cgroup kill)
        os.kill(old, signal.SIGKILL)
        assert wait_for(lambda: fresh.knockd_pid() not in (None, old), 15), follower.lines
        assert not fresh.door_open()  # closed by close-doors, not by a stop_command
        assert any("closed: iptables INPUT -s " in line for _, line in follower.lines), (
            follower.lines
        )
        started = time.monotonic()
        assert ssh(fresh, record).returncode == 0
        assert time.monotonic() - started < 15
    finally:
        code, err = follower.stop()
    assert code == 0, err
    assert "ended: closing its doors and starting it again" in err


def ssh(lab, record):
    argv = ["ssh", "-F", lab.ssh_config, "lab", "true"]
    return record(lab.in_client(argv, capture_output=True, timeout=60))


def test_follow_restarts_knockd_when_its_interface_gains_an_address(fresh, record, tmp_path):
    """knockd reads its interface's addresses only when it starts: a knock to an
    address added later is seen once the follower has restarted knockd (within 15 s),
    and the door it opens still closes after cmd_timeout."""
    new = "198.18.0.50"
    hosts = tmp_path / "hosts.toml"
    secret = fresh.path("secret")
    hosts.write_text(f'[[host]]\nmatch = ["{new}"]\nservice = "ssh"\nsecret_file = "{secret}"\n')
    knock = ["knockssh", "knock", new, "--config", str(hosts)]

    def in_server_ip(*args):
        record(fresh.in_server(["ip", *args], capture_output=True, check=True))

    # first, why: without a restart, knockd ignores a knock to an address it gained
    in_server_ip("addr", "add", f"{new}/24", "dev", fresh.server_if)
    try:
        assert record(fresh.in_client(knock, capture_output=True, timeout=30)).returncode == 0
        assert not wait_for(fresh.door_open, 2)
    finally:
        in_server_ip("addr", "del", f"{new}/24", "dev", fresh.server_if)
    follower = Follower(fresh, fresh.rotator_env())

    def said(text):
        return any(text in line for _, line in follower.lines)

    try:
        assert wait_for(lambda: said(f"watching the addresses of {fresh.server_if}"), 10), (
            follower.lines
        )
        old = fresh.knockd_pid()
        in_server_ip("addr", "add", f"{new}/24", "dev", fresh.server_if)
        added = time.monotonic()
        changed = f"{fresh.server_if}: addresses changed (+{new}, -none): restarting knockd"
        assert wait_for(lambda: said(changed) and said("knockd running again"), 15), follower.lines
        assert fresh.knockd_pid() not in (None, old)
        restart = next(t for t, line in follower.lines if "restarting knockd" in line)
        again = next(t for t, line in follower.lines if "knockd running again" in line)
        print(f"knockd down {again - restart:.2f} s for an address added (--follow)")  # -s
        done = record(fresh.in_client(knock, capture_output=True, timeout=30))
        assert done.returncode == 0, done.stderr
        assert wait_for(fresh.door_open, 5)
        assert time.monotonic() - added < 15
        in_server_ip("addr", "del", f"{new}/24", "dev", fresh.server_if)
        assert wait_for(lambda: said(f"(+none, -{new}): restarting knockd"), 15), follower.lines
        assert wait_for(lambda: not fresh.door_open(), fresh.cmd_timeout + 10)
    finally:
        gone = ["ip", "addr", "del", f"{new}/24", "dev", fresh.server_if]
        fresh.in_server(gone, capture_output=True, check=False)  # gone already if all went well
        code, err = follower.stop()
    assert code == 0, err
    assert "ended" not in err  # a restart it chose, not a crash it answered
