"""Fixtures for the end-to-end tests: a lab per session, always torn down."""

import os
import sys
import time

import pytest
from helpers import ROOT

sys.path.insert(0, os.path.join(ROOT, "server", "lab"))
import lab as labmod

OUTPUTS: list[bytes] = []  # every captured output, checked for the secret at the end


def _require_lab():
    reason = labmod.unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"end-to-end tests cannot run under CI=true: {reason}")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lab():
    """The namespace lab (knockd and sshd in the server namespace), for the session."""
    yield from _lab_on("netns")


def _lab_on(host, setup="server-setup"):
    _require_lab()
    instance = labmod.Lab(labmod.new_name())
    instance.up(host=host, setup=setup)
    try:
        yield instance
        for out in OUTPUTS:
            assert instance.secret().encode() not in out, "the secret leaked into an output"
    finally:
        instance.down()


@pytest.fixture(scope="module")
def systemd_lab():
    """A lab whose server is a booted Debian 12 (systemd-nspawn), set up by the
    README's server setup; one per test module, always torn down."""
    yield from _lab_on("systemd")


@pytest.fixture(scope="module")
def quick_start_lab():
    """A booted Debian 12 set up by the server part of the README's quick start."""
    yield from _lab_on("systemd", setup="quick-start")


@pytest.fixture(scope="module")
def container_lab():
    """A lab whose server is the knockd container (server/container/) under podman."""
    yield from _lab_on("container")


BOUNDARY_MARGIN = 30  # seconds; longer than any one test takes


@pytest.fixture
def fresh(lab):
    """The lab on the current period with the door closed before the test, and
    the test clear of a period boundary (the tests compute "the current period"
    on both sides, so one straddling a boundary would fail without a bug)."""
    left = labmod.PERIOD - time.time() % labmod.PERIOD
    if left < BOUNDARY_MARGIN:
        time.sleep(left + 1)  # the condition awaited is the clock itself
    done = lab.rotate()
    OUTPUTS.extend([done.stdout.encode(), done.stderr.encode()])
    lab.close_door()
    if not lab.knockd_pid():
        lab.start_knockd()
    return lab


@pytest.fixture
def record():
    def keep(done):
        for stream in (done.stdout, done.stderr):
            if stream:
                OUTPUTS.append(stream if isinstance(stream, bytes) else stream.encode())
        return done

    return keep
