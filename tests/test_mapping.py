"""The mapping file: lookup, validation errors naming file/entry/key, secret sources."""

import os

import pytest
from helpers import write_private
from lab import wait_for

from knockssh import mapping
from knockssh.errors import KnocksshError
from knockssh.mapping import glob, matches
from knockssh.secrets import resolve
from knockssh.sequences import attempts_for

GOOD = b"""
[defaults]
period = 3600
knock_delay_ms = 2

[[host]]
match = ["bastion.example.org", "*.lab.example.org", "!old.lab.example.org"]
service = "ssh"
secret_env = "BASTION_SECRET"
knock_host = "203.0.113.7"

[[host]]
match = ["legacy.example.net"]
sequence = "7000,8000:udp,9000"

[[host]]
match = ["check", "generate"]
service = "ssh"
secret_env = "BASTION_SECRET"
"""


def load(tmp_path, data, mode=0o600):
    path = tmp_path / "hosts.toml"
    path.write_bytes(data)
    os.chmod(path, mode)
    return mapping.load(str(path), {})


def test_lookup_first_match_and_negation(tmp_path):
    m = load(tmp_path, GOOD)
    assert m.lookup("bastion.example.org").number == 1
    assert m.lookup("A.LAB.example.org").number == 1
    assert m.lookup("old.lab.example.org") is None
    assert m.lookup("legacy.example.net").static_sequence == "7000,8000:udp,9000"
    assert m.lookup("check").number == 3
    assert m.lookup("elsewhere") is None
    bastion = m.lookup("bastion.example.org")
    assert bastion.period == 3600  # from [defaults]
    assert bastion.connect_timeout == 10.0 and bastion.clock_skew == 300.0  # the defaults
    assert bastion.knock_delay == 0.002 and bastion.service == "ssh"  # seconds, from ms
    assert bastion.knock_host == "203.0.113.7" and bastion.secret_env == "BASTION_SECRET"


def test_glob():
    assert glob("*", "") and glob("a*c", "abbbc") and glob("?b", "ab")
    assert not glob("a?c", "ac") and not glob("*.org", "org")
    assert matches(("*", "!x"), "y") and not matches(("*", "!x"), "x")


@pytest.mark.parametrize(
    "data,message",
    [
        (
            b'[[host]]\nmatch = ["a"]\nservice = "s"\nsecret_env = "X"\ncolour = 1\n',
            "host entry 1 (a): unknown key 'colour'",
        ),
        (
            b'[[host]]\nmatch = ["a"]\nservice = "s"\nsecret_env = "X"\nperiod = "6h"\n',
            "host entry 1 (a): key 'period'",
        ),
        (b'[[host]]\nmatch = ["a"]\nservice = "s"\nsecret_env = "X"\nperiod = true\n', "'period'"),
        (b'[[host]]\nmatch = ["a b"]\nservice = "s"\n', "key 'match'"),
        (b'[[host]]\nmatch = []\nservice = "s"\n', "key 'match'"),
        (b'[[host]]\nmatch = ["!a"]\nservice = "s"\n', "only negated"),
        (b'[[host]]\nservice = "s"\n', "key 'match'"),
        (b'[[host]]\nmatch = ["a"]\n', "exactly one of"),
        (b'[[host]]\nmatch = ["a"]\nservice = "s"\nsequence = "1,2"\n', "exactly one of"),
        (b'[[host]]\nmatch = ["a"]\nsequence = "1,99999"\n', "key 'sequence'"),
        (b'[[host]]\nmatch = ["a"]\nservice = "s"\nports = "5-1"\n', "key 'ports'"),
        (
            b'[[host]]\nmatch = ["a"]\nservice = "s"\nsecret_env = "A"\nsecret_file = "f"\n',
            "only one secret source",
        ),
        (b'[[host]]\nmatch = ["a"]\nservice = "s"\nsecret_command = "pass"\n', "list of strings"),
        (b"[defaults]\nlength = -1\n", "[defaults]: key 'length'"),
        (b"[hosts]\n", "unknown top-level key"),
        (b"[[host]\n", "invalid TOML"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_errors_name_file_entry_and_key(tmp_path, data, message):
    with pytest.raises(KnocksshError) as info:
        load(tmp_path, data)
    assert str(tmp_path / "hosts.toml") in str(info.value)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_inline_secret_needs_private_file(tmp_path):
    data = b'[[host]]\nmatch = ["a"]\nservice = "s"\nsecret = "0123456789abcdef"\n'
    with pytest.raises(KnocksshError, match="chmod 600") as info:
        load(tmp_path, data, 0o644)
    assert "0123456789abcdef" not in str(info.value)
    assert load(tmp_path, data, 0o600).lookup("a") is not None


def test_secret_sources(tmp_path):
    secret_file = tmp_path / "s.secret"
    write_private(str(secret_file), "file-secret-123\n")
    data = (
        f'[[host]]\nmatch = ["f"]\nservice = "s"\nsecret_file = "{secret_file}"\n'
        '[[host]]\nmatch = ["c"]\nservice = "s"\n'
        'secret_command = ["sh", "-c", "echo cmd-secret-123"]\n'
        '[[host]]\nmatch = ["e"]\nservice = "s"\nsecret_env = "MY_SECRET"\n'
        '[[host]]\nmatch = ["d"]\nservice = "s"\n'
        '[[host]]\nmatch = ["x"]\nservice = "s"\nsecret_command = ["false"]\n'
    ).encode()
    m = load(tmp_path, data)
    env = {"MY_SECRET": "env-secret-123", "KNOCKD_ROTATOR_SECRET": "rotator-secret"}
    assert resolve(m.lookup("f"), env) == "file-secret-123"
    assert resolve(m.lookup("c"), env) == "cmd-secret-123"
    assert resolve(m.lookup("e"), env) == "env-secret-123"
    assert resolve(m.lookup("d"), env) == "rotator-secret"
    with pytest.raises(KnocksshError, match="exited with status 1"):
        resolve(m.lookup("x"), env)
    with pytest.raises(KnocksshError, match="MY_SECRET is not set"):
        resolve(m.lookup("e"), {})
    os.chmod(secret_file, 0o640)
    with pytest.raises(KnocksshError, match="accessible by group or others"):
        resolve(m.lookup("f"), env)


@pytest.mark.parametrize(
    "source, content, named",
    [
        ("file", "", "secret_file {file}: the secret is empty"),
        ("file", "  \t \n", "secret_file {file}: the secret is empty or blank"),
        ("command", "", "secret_command true: the secret is empty"),
        ("command", "echo '   '", "secret_command sh: the secret is empty or blank"),
        ("inline", "   ", "secret: the secret is empty or blank"),
        ("rotator env", "   ", "KNOCKD_ROTATOR_SECRET: the secret is empty or blank"),
    ],
)
def test_an_empty_or_blank_secret_is_refused_naming_its_source(tmp_path, source, content, named):
    secret_file = tmp_path / "s.secret"
    write_private(str(secret_file), content)
    line = {
        "file": f'secret_file = "{secret_file}"',
        "command": (
            'secret_command = ["true"]'
            if not content
            else f'secret_command = ["sh", "-c", "{content}"]'
        ),
        "inline": f'secret = "{content}"',
        "rotator env": "",
    }[source]
    m = load(tmp_path, f'[[host]]\nmatch = ["h"]\nservice = "s"\n{line}\n'.encode())
    with pytest.raises(KnocksshError) as info:
        resolve(
            m.lookup("h"), {"KNOCKD_ROTATOR_SECRET": content} if source == "rotator env" else {}
        )
    assert named.format(file=secret_file) in str(info.value)
    assert "host entry 1 (h)" in str(info.value)


def test_attempt_order_and_forced_offset(tmp_path):
    m = load(tmp_path, GOOD)
    entry = m.lookup("bastion.example.org")
    env = {"BASTION_SECRET": "0123456789abc"}
    tries, period = attempts_for(entry, env, 7200 + 5)  # 5 s after a boundary
    assert period == 3600
    assert [t.label for t in tries] == ["period 7200 (current)", "period 3600 (previous)"]
    assert len({t.knocks for t in tries}) == 2
    forced, _ = attempts_for(entry, env, 7205, offset=-2)
    assert [t.label for t in forced] == ["period 0 (offset -2)"]
    static, period = attempts_for(m.lookup("legacy.example.net"), env, 0)
    assert period is None
    assert [str(k) for k in static[0].knocks] == ["7000:tcp", "8000:udp", "9000:tcp"]


def test_config_path_precedence():
    env = {"XDG_CONFIG_HOME": "/x"}
    assert mapping.config_path(None, env) == ("/x/knockssh/hosts.toml", False)
    assert mapping.config_path("/c.toml", env) == ("/c.toml", True)
    both = {**env, "KNOCKSSH_CONFIG": "/e.toml"}
    assert mapping.config_path("/c.toml", both) == ("/c.toml", True)  # the command line wins
    assert mapping.config_path(None, both) == ("/e.toml", True)


def test_missing_default_file_maps_nothing(tmp_path):
    assert mapping.load(None, {"XDG_CONFIG_HOME": str(tmp_path)}).entries == ()
    with pytest.raises(KnocksshError, match="not found"):
        mapping.load(str(tmp_path / "nope.toml"), {})


def _running(marker):
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(pid)
        except OSError:
            pass
    return found


def test_a_hanging_secret_command_is_stopped_with_what_it_left_behind(tmp_path):
    """Its shell exits, its child keeps stdout open: stopped, as a group, at the
    entry's connect_timeout (1 s here), not at 60 s."""
    import time

    marker = "31.4159"
    data = (
        '[[host]]\nmatch = ["h"]\nservice = "s"\nconnect_timeout = 1\n'
        f'secret_command = ["sh", "-c", "sleep {marker} & echo started"]\n'
    ).encode()
    m = load(tmp_path, data)
    t = time.monotonic()
    with pytest.raises(KnocksshError, match=r"secret_command sh: no answer within 1s"):
        resolve(m.lookup("h"), {})
    assert time.monotonic() - t < 10
    # SIGKILL is delivered at once but the process takes a moment to be gone
    assert wait_for(lambda: _running(marker) == [], 5), _running(marker)


def test_check_describes_secrets_without_running_secret_command(tmp_path):
    import subprocess
    import sys

    from helpers import ROOT

    ran = tmp_path / "ran"
    short = tmp_path / "short.secret"
    write_private(str(short), "abc\n")
    hosts = tmp_path / "hosts.toml"
    write_private(
        str(hosts),
        '[[host]]\nmatch = ["c"]\nservice = "s"\n'
        f'secret_command = ["sh", "-c", "touch {ran}; echo abcdefghijkl"]\n'
        f'[[host]]\nmatch = ["f"]\nservice = "s"\nsecret_file = "{short}"\n'
        '[[host]]\nmatch = ["e"]\nservice = "s"\nsecret_env = "UNSET_HERE"\n',
    )
    env = {**os.environ, "KNOCKSSH_CONFIG": str(hosts)}
    done = subprocess.run(
        [sys.executable, "-m", "knockssh", "check"], capture_output=True, env=env, cwd=ROOT
    )
    out = done.stdout.decode()
    assert not ran.exists()  # the command was not run
    assert "secret: from secret_command sh (not run by check)" in out
    assert f"error: secret: secret_file {short}: the secret must be at least 10" in out
    assert "error: secret: " in out and "UNSET_HERE is not set" in out
    assert "entropy" in out and done.returncode == 1
