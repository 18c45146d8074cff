"""A door per client: the enrolment line, the knockd.conf edits and the rotation with
a client's own secret (pure, no mocks), then client add/list/revoke and knockssh
enroll as users run them, in a directory of their own (no knockd: --no-reload)."""

import os
import stat
import subprocess

import pytest
from helpers import KNOCKSSH, ROOT, ROTATOR, SECRET
from hypothesis import given
from hypothesis import strategies as st

from rotator import enrolment, knockdconf
from rotator.rotation import rotate
from rotator.scheme import Settings, derive, knockd_form, parse_port_spec, period_start

CONF = (
    "[options]\n  UseSyslog\n\n# the admin's door\n[ssh_ROTATOR]\n  sequence = 1,2,3\n"
    "  seq_timeout = 5\n  start_command = /bin/true %IP%\n  cmd_timeout = 30\n\n# after\n"
)
AT = 1_796_342_400.0


def sample(**changes):
    values = dict(
        host="srv.example",
        port=22,
        service="alice",
        period=21600,
        length=10,
        ports="2000-65536",
        proto_modulo=0,
        secret="s3cret with spaces & = ? % # é",
    )
    values.update(changes)
    return enrolment.Enrolment(**values)


def test_the_line_reads_back_and_is_versioned():
    e = sample()
    line = enrolment.line(e)
    assert line.startswith("knockssh://srv.example:22/alice?v=1&")
    assert enrolment.parse(line + "\r\n") == e
    six = sample(host="2001:db8::1", port=2222)
    assert "knockssh://[2001:db8::1]:2222/" in enrolment.line(six)
    assert enrolment.parse(enrolment.line(six)) == six
    assert "s3cret" not in repr(e)


@given(
    secret=st.text(
        st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=12, max_size=60
    ).filter(lambda s: s.strip(" \t") == s and s.isprintable()),
    port=st.integers(1, 65535),
    length=st.integers(5, 32),
)
def test_any_secret_and_settings_survive_the_line(secret, port, length):
    e = sample(secret=secret, port=port, length=length)
    assert enrolment.parse(enrolment.line(e)) == e


def test_a_bad_line_never_shows_itself():
    line = enrolment.line(sample()).replace("v=1", "v=9")
    with pytest.raises(enrolment.EnrolmentError) as caught:
        enrolment.parse(line)
    assert "s3cret" not in str(caught.value) and "version 9" in str(caught.value)


def test_a_client_door_copies_the_hosts_section_and_goes_away_exactly():
    added = knockdconf.with_client(CONF, "alice")
    assert added.startswith(CONF)
    tail = added[len(CONF) :]
    assert tail == (
        "\n[alice_ROTATOR]\n  sequence = 1,2,3\n  seq_timeout = 5\n"
        "  start_command = /bin/true %IP%\n  cmd_timeout = 30\n"
    )
    assert knockdconf.without_client(added, "alice") == CONF
    assert knockdconf.without_client(CONF, "alice") is None
    with pytest.raises(knockdconf.ConfError, match="line 5: section ssh_ROTATOR exists"):
        knockdconf.with_client(CONF, "ssh")
    with pytest.raises(knockdconf.ConfError, match="no \\*_ROTATOR section"):
        knockdconf.with_client("[options]\n  UseSyslog\n", "alice")


def test_a_clients_door_is_modelled_on_the_host_not_on_another_client():
    bob = "[bob_ROTATOR]\n  sequence = 4,5,6\n  seq_timeout = 9\n\n"
    conf = CONF.replace("# the admin's door\n", bob)  # a client's section comes first
    carol = knockdconf.with_client(conf, "carol", frozenset({"bob"}))
    assert carol.endswith("[carol_ROTATOR]\n  sequence = 1,2,3\n  seq_timeout = 5\n" + (
        "  start_command = /bin/true %IP%\n  cmd_timeout = 30\n"
    ))  # fmt: skip
    unknown = knockdconf.with_client(conf, "carol")  # nothing says bob is a client
    assert unknown.endswith("[carol_ROTATOR]\n  sequence = 4,5,6\n  seq_timeout = 9\n")


def test_each_door_rotates_with_its_own_secret():
    settings = Settings(SECRET, ports=parse_port_spec("2000-65536"))
    conf = knockdconf.with_client(CONF, "alice")
    rotation = rotate(conf, settings, AT, secrets={"alice": "alice-secret-123"})
    start = period_start(AT, settings.period)
    sections = {s.name: s for s in knockdconf.parse(rotation.text)}
    own = settings.replace(secret="alice-secret-123")
    alice = sections["alice_ROTATOR"].find("SEQUENCE")[0].value
    assert alice == knockd_form(derive(own, "alice", start))
    ssh = sections["ssh_ROTATOR"].find("SEQUENCE")[0].value
    assert ssh == knockd_form(derive(settings, "ssh", start))
    shared = rotate(conf, settings, AT).text  # without its file, the shared secret
    assert knockd_form(derive(settings, "alice", start)) in shared and alice not in shared
    graced = rotate(conf, settings, AT + 10, grace=60, secrets={"alice": "alice-secret-123"})
    assert knockd_form(derive(own, "alice", start - settings.period)) in graced.text


# -- as users run them ------------------------------------------------------------------


def run(argv, tmp, stdin=b"", env=None):
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "XDG_CONFIG_HOME": str(tmp / "config"),
        "XDG_STATE_HOME": str(tmp / "state"),
        "PYTHONPATH": ROOT,
        "KNOCKD_ROTATOR_SECRET": SECRET,
        **(env or {}),
    }
    return subprocess.run(argv, input=stdin, capture_output=True, env=environment, timeout=30)


def rotator(tmp, *args):
    where = ["--config", str(tmp / "knockd.conf"), "--clients-dir", str(tmp / "clients")]
    return run([*ROTATOR, "client", *args, *where, "--no-reload"], tmp)


def test_add_enroll_list_revoke(tmp_path):
    (tmp_path / "knockd.conf").write_text(CONF)
    added = rotator(tmp_path, "add", "alice", "--host", "srv.example", "--port", "2222")
    assert added.returncode == 0, added.stderr
    line = added.stdout.decode()
    assert line.startswith("knockssh://srv.example:2222/alice?v=1&") and line.count("\n") == 1
    secret_file = tmp_path / "clients" / "alice.secret"
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "clients").stat().st_mode) == 0o700
    assert secret_file.read_text().strip() in line  # the one place it is printed
    assert secret_file.read_text().strip().encode() not in added.stderr
    assert b"alice: door [alice_ROTATOR] added" in added.stderr
    bob = rotator(tmp_path, "add", "bob", "--host", "srv.example")
    assert bob.returncode == 0, bob.stderr

    enrolled = run([*KNOCKSSH, "enroll"], tmp_path, stdin=line.encode())
    assert enrolled.returncode == 0, enrolled.stderr
    shown = enrolled.stdout.decode()
    assert "Host srv.example\n    Port 2222\n    ProxyCommand " in shown
    generated = run([*KNOCKSSH, "generate", "--host", "srv.example"], tmp_path)
    conf = knockdconf.parse((tmp_path / "knockd.conf").read_text())
    alice = next(s for s in conf if s.name == "alice_ROTATOR").find("SEQUENCE")[0].value
    assert generated.stdout.decode().split() == alice.split(",")

    listed = rotator(tmp_path, "list")
    assert listed.returncode == 0
    names = [row.split("\t")[0] for row in listed.stdout.decode().splitlines()]
    assert names == ["alice", "bob"] and b"added 20" in listed.stdout
    assert secret_file.read_text().strip().encode() not in listed.stdout + listed.stderr

    before = (tmp_path / "knockd.conf").read_text()
    revoked = rotator(tmp_path, "revoke", "bob")
    assert revoked.returncode == 0, revoked.stderr
    after = (tmp_path / "knockd.conf").read_text()
    assert "[bob_ROTATOR]" in before and "[bob_ROTATOR]" not in after
    assert alice in after  # the others untouched
    assert not (tmp_path / "clients" / "bob.secret").exists()
    again = rotator(tmp_path, "revoke", "bob")
    assert again.returncode == 1 and b"no client bob" in again.stderr


def test_add_with_qr_draws_the_line_after_it(tmp_path):
    (tmp_path / "knockd.conf").write_text(CONF)
    added = rotator(tmp_path, "add", "phone", "--host", "srv.example", "--qr")
    assert added.returncode == 0, added.stderr
    line, *drawn = added.stdout.decode().splitlines()
    assert line.startswith("knockssh://srv.example:22/phone?v=1&")
    assert len(drawn) >= 20 and all(set(row) <= set("\xa0█▀▄") for row in drawn if row)
    widths = {len(row) for row in drawn if row}
    assert len(widths) == 1  # a square of text blocks, one width
