"""The knockd container (server/container/), built here from the project's files and
run by podman in the lab's server namespace: the client gets in through it."""

import hashlib
import time

import pytest
from helpers import paramiko_both_ways
from lab import wait_for

pytestmark = pytest.mark.lab

CLIENT_TIMEOUT = 60


def ssh_in(lab, record, *cmd):
    argv = ["ssh", "-F", lab.ssh_config, "lab", *cmd]
    return record(lab.in_client(argv, capture_output=True, timeout=CLIENT_TIMEOUT))


def test_openssh_gets_in_through_the_containers_knockd(container_lab, record):
    lab = container_lab
    lab.close_door()
    done = ssh_in(lab, record, "cat /proc/1/cmdline")
    assert done.returncode == 0, done.stderr
    pid1 = done.stdout.decode().split("\0")
    assert "--follow" in pid1 and "--pidfile" in pid1  # the container's rotator
    assert lab.door_open()


def test_paramiko_gets_in_both_ways(container_lab):
    assert paramiko_both_ways(container_lab) == [b"paramiko 42\n", b"paramiko 42\n"]


def test_the_secret_is_a_mounted_file_only(container_lab):
    lab = container_lab
    secret = lab.secret()
    server = lab.knockd_container()
    for text in (
        server.logs(),
        server.exec("cat", "/proc/1/environ", "/proc/1/cmdline").stdout,
        server.exec("ps", "-eo", "args").stdout,
    ):
        assert text and secret not in text
        assert hashlib.sha256(secret.encode()).hexdigest() not in text
    assert server.exec("cat", "/run/secrets/secret").stdout.strip() == secret


def test_the_container_keeps_knockd_running_and_closes_what_it_left(container_lab, record):
    """knockd SIGKILLed with a door open (its pending stop_command killed too): the
    rotator, PID 1, closes the door and starts knockd again; a knock gets in."""
    lab = container_lab
    server = lab.knockd_container()
    lab.close_door()
    assert ssh_in(lab, record, "true").returncode == 0 and lab.door_open()
    pid = server.exec("cat", "/run/knockd.pid").stdout.strip()
    server.exec("sh", "-c", f"pkill -KILL -P {pid}; kill -KILL {pid}")

    def restarted():
        now = server.exec("cat", "/run/knockd.pid", check=False).stdout.strip()
        return now not in ("", pid) and server.exec("kill", "-0", now, check=False).returncode == 0

    assert wait_for(restarted, 15), server.logs()[-1500:]
    assert not lab.door_open()  # closed at once, not after cmd_timeout
    assert "ended: closing its doors and starting it again" in server.logs()
    started = time.monotonic()
    assert ssh_in(lab, record, "true").returncode == 0
    assert time.monotonic() - started < 15


def test_podman_stop_ends_the_rotator_cleanly(container_lab):
    """Last in this module: SIGTERM to the rotator (PID 1 of the container)."""
    server = container_lab.knockd_container()
    assert server.running()
    assert server.stop() == 0
    assert not server.running()
