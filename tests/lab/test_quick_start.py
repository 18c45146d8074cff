"""The README's quick start, both halves: a booted Debian 12 set up by the server's
four commands as written (the fixture runs them), then the client's commands as
written, with the server's name and the secret its init made, get a knocked ssh
session into it."""

import os

import pytest
from helpers import ROOT
from systemd_host import readme_server_setup

pytestmark = pytest.mark.lab

EXAMPLE_HOST = "server.example.org"
HOST = "knocked.lab"  # the lab server's name, as the client namespace resolves it


def readme_client_commands():
    with open(os.path.join(ROOT, "README.md")) as f:
        return readme_server_setup(f.read(), "Quick start", "Client (")


def test_the_server_part_left_a_server_that_checks_well(quick_start_lab):
    guest = quick_start_lab.guest()
    done = guest.run(["knockssh-rotator", "check"], check=False)
    problems = [p for p in done.stdout.splitlines() if p != "all well"]
    clock = guest.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], check=False)
    allowed = ["not NTP-synchronised"] if clock.stdout.strip() == "no" else []
    assert [p for p in problems if not any(a in p for a in allowed)] == [], done.stdout
    active = guest.run(["systemctl", "is-active", "knockd.service", "knockssh-rotator.timer"])
    assert active.stdout.split() == ["active", "active"]


def test_the_client_part_as_written_gets_a_knocked_session(quick_start_lab, record, tmp_path):
    """The pipx line is the one not run: the client namespace has knockssh installed
    already (this checkout's). ``ssh HOST`` runs with the lab's key and host-key
    options plus the ssh_config lines ``knockssh add`` printed, as a user adds them."""
    lab = quick_start_lab
    commands = [c.replace(EXAMPLE_HOST, HOST) for c in readme_client_commands()]
    assert commands[0].startswith("pipx install ") and len(commands) == 3
    (tmp_path / f"{HOST}.secret").write_text(lab.secret() + "\n")
    env = {**lab.client_env(), "KNOCKSSH_CONFIG": str(tmp_path / "hosts.toml")}
    added = record(
        lab.in_client(["sh", "-c", commands[1]], capture_output=True, env=env, cwd=tmp_path)
    )
    assert added.returncode == 0, added.stderr
    printed = added.stdout.decode().splitlines()
    start = printed.index(f"Host {HOST}")
    with open(lab.ssh_config) as f:
        defaults = f.read().split("\nHost lab\n", 1)[0]  # the lab's Host * block
    config = tmp_path / "ssh_config"
    config.write_text("\n".join(printed[start : start + 2]) + "\n" + defaults + "\n")
    assert commands[2] == f"ssh {HOST}"
    lab.close_door()
    ssh = commands[2].replace("ssh ", f"ssh -F {config} ", 1) + " 'ps -p 1 -o comm='"
    done = record(lab.in_client(["sh", "-c", ssh], capture_output=True, env=env, timeout=60))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().strip() == "systemd" and lab.door_open()
