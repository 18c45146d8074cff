"""A new user's first day with the client (issue 24): every mistake is told, with
what and where; every command a real process."""

import os
import re
import socket
import subprocess
import sys

import pytest
from helpers import KNOCKSSH, ROOT, SECRET

from knockssh import wrappers

OTHER_SECRET = "another-secret-9876"


def run(tmp_path, *args, stdin=b"", env=None, argv0=None):
    """knockssh ARGS with a home of its own under ``tmp_path``."""
    base = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
        "PYTHONPATH": ROOT,
    }
    return subprocess.run(
        [*(argv0 or KNOCKSSH), *args],
        input=stdin,
        capture_output=True,
        env={**base, **(env or {})},
        cwd=tmp_path,
        timeout=30,
    )


def hosts_file(tmp_path):
    return tmp_path / "config" / "knockssh" / "hosts.toml"


def add(tmp_path, host, secret=SECRET, *more):
    done = run(tmp_path, "add", host, "--secret-stdin", *more, stdin=secret.encode())
    assert done.returncode == 0, done.stderr
    return done


def closed_port():
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_config(tmp_path, text):
    path = tmp_path / "ssh_config"
    path.write_text(text)
    return str(path)


# -- 3. no silent no-knock ----------------------------------------------------


def test_a_failed_unmapped_host_says_no_entry_matched_and_names_the_file(tmp_path):
    add(tmp_path, "box.example")
    port = str(closed_port())
    done = run(tmp_path, "127.0.0.1", port, stdin=None)
    assert done.returncode == 1 and done.stdout == b""
    hosts = hosts_file(tmp_path)
    assert f"no knock: no entry of {hosts} matches 127.0.0.1".encode() in done.stderr
    log = (tmp_path / "state" / "knockssh" / "failures.log").read_text()
    assert f"127.0.0.1 port {port}: " in log and "no knock: no entry of" in log


def test_a_missing_mapping_file_is_named_when_a_connection_fails(tmp_path):
    done = run(tmp_path, "127.0.0.1", str(closed_port()), stdin=None)
    assert done.returncode == 1 and done.stderr.count(b"\n") == 1
    assert f"no knock: there is no mapping file {hosts_file(tmp_path)}".encode() in done.stderr


def test_check_without_a_mapping_file_fails_and_says_how_to_make_one(tmp_path):
    done = run(tmp_path, "check")
    assert done.returncode == 1
    assert f"{hosts_file(tmp_path)} does not exist".encode() in done.stdout
    assert b"knockssh add HOST --secret-stdin" in done.stdout


def test_check_of_an_unmapped_host_fails_naming_the_file(tmp_path):
    add(tmp_path, "box.example")
    done = run(tmp_path, "check", "other.example")
    assert done.returncode == 1
    assert b"other.example: no knock: no entry of" in done.stdout


# -- 4. the reason reaches the user ---------------------------------------------


def test_check_host_shows_its_newest_failures_and_only_its_own(tmp_path):
    add(tmp_path, "box.example")
    log = tmp_path / "state" / "knockssh" / "failures.log"
    log.parent.mkdir(parents=True)
    lines = [f"2026-12-0{d}T10:00:00Z box.example port 22: no connection {d}" for d in range(1, 8)]
    lines.insert(3, "2026-12-02T11:00:00Z boxer.example port 22: not this one")
    lines.insert(4, "2026-12-02T12:00:00Z /x/hosts.toml: box.example is a word here")
    lines.append("2026-12-08T10:00:00Z box.example: cannot resolve: \x1b[2J")
    log.write_text("\n".join(lines) + "\n")
    config = ssh_config(tmp_path, "Host *\n  ProxyCommand knockssh %h %p\n")
    done = run(tmp_path, "check", "box.example", "-F", config)
    assert done.returncode == 0, done.stdout
    shown = done.stdout.decode().split("last failures of box.example")[1].splitlines()[1:]
    assert [line.strip()[-12:] for line in shown[:4]] == [f"connection {d}" for d in (4, 5, 6, 7)]
    assert shown[4].endswith("cannot resolve: \\x1b[2J") and len(shown) == 5
    assert b"boxer" not in done.stdout and b"is a word" not in done.stdout


def test_check_finds_failures_recorded_under_the_hostname_ssh_resolves(tmp_path):
    """ssh gives the ProxyCommand %h after HostName: the mapping file is read, and
    failures are kept, under it."""
    add(tmp_path, "real.example")
    log = tmp_path / "state" / "knockssh" / "failures.log"
    log.parent.mkdir(parents=True)
    log.write_text("2026-12-01T10:00:00Z real.example port 22: refused\n")
    config = ssh_config(
        tmp_path, "Host alias\n  HostName real.example\n  ProxyCommand knockssh %h %p\n"
    )
    done = run(tmp_path, "check", "alias", "-F", config)
    assert done.returncode == 0, done.stdout
    assert b"alias: ssh connects to HostName real.example" in done.stdout
    assert b"host entry 1: match real.example" in done.stdout
    assert b"real.example port 22: refused" in done.stdout


# -- 5. generate from a host's entry -------------------------------------------


def test_generate_host_matches_generate_with_the_secret_by_hand(tmp_path):
    add(tmp_path, "box.example", SECRET, "--service", "gate")
    mine = run(tmp_path, "generate", "--host", "box.example", "--at", "1700000000")
    by_hand = run(
        tmp_path, "generate", "gate", "--at", "1700000000", env={"KNOCKD_ROTATOR_SECRET": SECRET}
    )
    assert mine.returncode == 0 and mine.stdout == by_hand.stdout and mine.stdout.count(b" ") == 9
    knockd = run(tmp_path, "generate", "--host", "box.example", "--at", "1700000000",
                 "--format", "knockd")  # fmt: skip
    assert knockd.stdout == mine.stdout.replace(b" ", b",")
    assert SECRET.encode() not in mine.stdout + mine.stderr + knockd.stderr
    other = run(tmp_path, "generate", "--host", "box.example", "ssh", "--at", "1700000000")
    assert other.returncode == 0 and other.stdout != mine.stdout  # SERVICE overrides


@pytest.mark.parametrize(
    "args, named",
    [
        (["--host", "nowhere.example"], "nowhere.example: no knock: no entry of"),
        (["--host", "box.example", "--format", "json"], "--format must be client or knockd"),
        (["--host", "box.example", "a", "b"], "usage: knockssh generate"),
        (["--format", "knockd"], "usage: knockssh generate"),
    ],
)
def test_generate_host_mistakes_are_one_line(tmp_path, args, named):
    add(tmp_path, "box.example")
    done = run(tmp_path, "generate", *args)
    assert done.returncode in (1, 2) and done.stdout == b""
    assert named.encode() in done.stderr and done.stderr.count(b"\n") == 1


def test_generate_host_of_a_static_entry_prints_it(tmp_path):
    hosts = hosts_file(tmp_path)
    hosts.parent.mkdir(parents=True)
    hosts.write_text('[[host]]\nmatch = ["s"]\nsequence = "7000,8000:udp,9000"\n')
    done = run(tmp_path, "generate", "--host", "s", "--format", "knockd")
    assert done.stdout == b"7000:tcp,8000:udp,9000:tcp\n"


# -- 6. does ssh run knockssh for HOST? ----------------------------------------


def test_check_host_asks_ssh_g_whether_knockssh_runs(tmp_path):
    add(tmp_path, "box.example")
    runs = ssh_config(tmp_path, "Host box.example\n  ProxyCommand knockssh %h %p\n")
    done = run(tmp_path, "check", "box.example", "-F", runs)
    assert done.returncode == 0 and b"ssh runs knockssh for box.example" in done.stdout
    other = ssh_config(tmp_path, "Host box.example\n  ProxyCommand nc %h %p\n")
    done = run(tmp_path, "check", "box.example", "-F", other)
    assert done.returncode == 1
    assert b"ssh does not run knockssh for box.example (its ProxyCommand is nc" in done.stdout
    jump = ssh_config(tmp_path, "Host box.example\n  ProxyJump gw.example\n")
    done = run(tmp_path, "check", "box.example", "-F", jump)
    assert done.returncode == 1 and b"ProxyJump gw.example" in done.stdout


# -- 7. add names knockssh so ssh finds it; --replace; remove -------------------


def test_add_prints_an_absolute_knockssh_off_the_default_path(tmp_path):
    bin_dir = tmp_path / "my bin%dir"  # a space to quote, a % to double for ssh
    bin_dir.mkdir()
    launcher = bin_dir / "knockssh"
    launcher.write_text(f"#!{sys.executable}\nfrom knockssh.cli import run\nrun()\n")
    launcher.chmod(0o755)
    done = run(tmp_path, "add", "box.example", "--secret-stdin", stdin=SECRET.encode(),
               argv0=[str(launcher)])  # fmt: skip
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.decode().splitlines() if "ProxyCommand" in x).strip()
    assert line == f"ProxyCommand '{str(launcher).replace('%', '%%')}' %h %p"
    config = ssh_config(tmp_path, f"Host box.example\n  {line}\n")
    check = run(tmp_path, "check", "box.example", "-F", config)
    assert check.returncode == 0, check.stdout  # ssh -G reads what add printed


def test_the_bare_name_when_the_default_path_finds_this_very_program(tmp_path):
    launcher = tmp_path / "knockssh"
    launcher.write_text("#!/bin/sh\n")
    launcher.chmod(0o755)
    assert wrappers.proxy_program(str(launcher), str(tmp_path)) == "knockssh"
    assert wrappers.proxy_program(str(launcher), "/nonexistent") == str(launcher)
    assert wrappers.proxy_program("/usr/bin/python3 -m knockssh", "/x") == (
        "/usr/bin/python3 -m knockssh"
    )


def test_replace_gives_an_entry_a_new_secret_and_keeps_the_mapping_file(tmp_path):
    add(tmp_path, "box.example")
    hosts = hosts_file(tmp_path)
    before = hosts.read_bytes()
    old = run(tmp_path, "generate", "--host", "box.example", "--at", "1700000000").stdout
    again = run(tmp_path, "add", "box.example", "--secret-stdin", stdin=OTHER_SECRET.encode())
    assert again.returncode == 1 and b"--replace" in again.stderr
    done = add(tmp_path, "box.example", OTHER_SECRET, "--replace")
    assert b"replaced the secret of box.example" in done.stdout
    assert hosts.read_bytes() == before
    secret = hosts.parent / "secrets" / "box.example.secret"
    assert secret.read_text() == OTHER_SECRET + "\n" and secret.stat().st_mode & 0o777 == 0o600
    new = run(tmp_path, "generate", "--host", "box.example", "--at", "1700000000").stdout
    by_hand = run(tmp_path, "generate", "ssh", "--at", "1700000000",
                  env={"KNOCKD_ROTATOR_SECRET": OTHER_SECRET}).stdout  # fmt: skip
    assert new == by_hand != old
    assert OTHER_SECRET.encode() not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "hosts_text, args, named",
    [
        ('[[host]]\nmatch = ["box.example"]\nservice = "ssh"\nsecret_env = "S"\n', [],
         "not an entry 'knockssh add' made for box.example"),
        ('[[host]]\nmatch = ["*.example"]\nservice = "ssh"\nsecret_env = "S"\n', [],
         "not an entry 'knockssh add' made"),
        (None, ["--service", "web"], "knocks service 'ssh', not 'web'"),
    ],
)  # fmt: skip
def test_replace_refuses_what_add_did_not_make(tmp_path, hosts_text, args, named):
    if hosts_text is None:
        add(tmp_path, "box.example")
    else:
        hosts_file(tmp_path).parent.mkdir(parents=True)
        hosts_file(tmp_path).write_text(hosts_text)
    before = hosts_file(tmp_path).read_bytes()
    done = run(tmp_path, "add", "box.example", "--secret-stdin", "--replace", *args,
               stdin=OTHER_SECRET.encode())  # fmt: skip
    assert done.returncode == 1 and named.encode() in done.stderr
    assert done.stderr.count(b"\n") == 1 and OTHER_SECRET.encode() not in done.stderr
    assert hosts_file(tmp_path).read_bytes() == before


HAND_WRITTEN = (
    "# my hosts\r\n[defaults]\r\nconnect_timeout = 5\r\n\r\n"
    '[[host]]\r\nmatch = ["a.example"]  # the first\r\nsequence = "1,2,3"\r\n'
    "\r\n# the next one is b\r\n"
    '[[host]]\r\nmatch = ["b.example"]\r\nservice = "ssh"\r\nsecret_env = "S"'
)


def test_add_then_remove_gives_back_every_byte(tmp_path):
    hosts = hosts_file(tmp_path)
    hosts.parent.mkdir(parents=True)
    hosts.write_bytes(HAND_WRITTEN.encode())
    hosts.chmod(0o640)
    for name in ("c.example", "d.example"):
        add(tmp_path, name)
    with_d = hosts.read_bytes()
    done = run(tmp_path, "remove", "c.example")
    assert done.returncode == 0, done.stderr
    secrets = hosts.parent / "secrets"
    assert b"removed the entry of c.example and its secret" in done.stdout
    assert sorted(os.listdir(secrets)) == ["d.example.secret"]
    assert b'"d.example"' in hosts.read_bytes() and b"c.example" not in hosts.read_bytes()
    assert run(tmp_path, "remove", "d.example").returncode == 0
    assert hosts.read_bytes() == HAND_WRITTEN.encode() + b"\n"  # add ended the last line
    assert hosts.stat().st_mode & 0o777 == 0o640 and os.listdir(secrets) == []
    assert with_d != hosts.read_bytes()


def test_remove_takes_a_hand_written_entry_and_keeps_the_comment_of_the_next(tmp_path):
    hosts = hosts_file(tmp_path)
    hosts.parent.mkdir(parents=True)
    hosts.write_bytes(HAND_WRITTEN.encode())
    done = run(tmp_path, "remove", "a.example")
    assert done.returncode == 0, done.stderr
    assert b"removed the entry of a.example from" in done.stdout  # no secret of ours
    text = hosts.read_bytes().decode()
    assert text == HAND_WRITTEN.replace(
        '\r\n[[host]]\r\nmatch = ["a.example"]  # the first\r\nsequence = "1,2,3"\r\n', ""
    )
    assert "# the next one is b" in text


@pytest.mark.parametrize(
    "host, named",
    [
        ("x.lab.example", "matches *.lab.example, !old.lab.example, not x.lab.example alone"),
        ("nowhere.example", "no entry matches nowhere.example: nothing removed"),
        ("-x", "would read as an option"),
        ("*", "not a pattern"),
    ],
)
def test_remove_refuses_with_one_line_and_changes_nothing(tmp_path, host, named):
    hosts = hosts_file(tmp_path)
    hosts.parent.mkdir(parents=True)
    text = '[[host]]\nmatch = ["*.lab.example", "!old.lab.example"]\nsequence = "1,2,3"\n'
    hosts.write_text(text)
    done = run(tmp_path, "remove", "--", host)
    assert done.returncode == 1 and named.encode() in done.stderr
    assert done.stderr.count(b"\n") == 1 and hosts.read_text() == text


def test_remove_without_a_mapping_file_is_one_line(tmp_path):
    done = run(tmp_path, "remove", "box.example")
    assert done.returncode == 1 and b"no mapping file" in done.stderr
    assert not hosts_file(tmp_path).exists()


# -- 8. small things ------------------------------------------------------------


def test_config_on_the_command_line_wins_over_the_variable(tmp_path):
    mine, theirs = tmp_path / "mine.toml", tmp_path / "theirs.toml"
    mine.write_text('[[host]]\nmatch = ["m"]\nsequence = "1,2,3"\n')
    theirs.write_text("")
    done = run(tmp_path, "check", "--config", str(mine), env={"KNOCKSSH_CONFIG": str(theirs)})
    assert done.returncode == 0 and f"mapping file: {mine} (1 host entry)".encode() in done.stdout
    assert b"--config (it wins)" in run(tmp_path, "--help").stdout


def test_check_speaks_plainly(tmp_path):
    add(tmp_path, "box.example")
    out = run(tmp_path, "check", "--at", "1700000000").stdout.decode()
    assert "(1 host entry)" in out
    assert "service ssh (knockd.conf section [ssh_ROTATOR])" in out
    # 1700000000 is 4h 13m 20s into a 6-hour period
    assert re.search(r"next rotation in 1h 46m 40s\n", out), out
