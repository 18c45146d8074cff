"""knockssh add: an entry appended, the secret stored privately, ssh_config advice."""

import os
import stat
import subprocess
import sys

from helpers import ROOT, SECRET

from knockssh import add


def knockssh(tmp_path, *args, stdin=b""):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYTHONPATH": ROOT,
    }
    return subprocess.run(
        [sys.executable, "-m", "knockssh", *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=ROOT,
        timeout=30,
    )


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_a_first_host_makes_private_files_and_check_confirms(tmp_path):
    done = knockssh(tmp_path, "add", "box.example", "--secret-stdin", stdin=SECRET.encode() + b"\n")
    assert done.returncode == 0, done.stderr
    hosts = tmp_path / "config" / "knockssh" / "hosts.toml"
    secret = hosts.parent / "secrets" / "box.example.secret"
    assert mode(hosts) == 0o600 and mode(hosts.parent) == 0o700 and mode(secret) == 0o600
    assert secret.read_text() == SECRET + "\n"
    assert SECRET.encode() not in done.stdout + done.stderr
    assert b"then: knockssh check box.example" in done.stdout
    check = knockssh(tmp_path, "check", "box.example")
    assert check.returncode == 0, check.stdout
    assert f"from secret_file {secret}".encode() in check.stdout


def test_every_existing_byte_and_the_mode_are_kept(tmp_path):
    hosts = tmp_path / "config" / "knockssh" / "hosts.toml"
    hosts.parent.mkdir(parents=True)
    old = b"# my hosts\n[defaults]\nconnect_timeout = 5  # short\n\n"
    old += b'[[host]]\nmatch = ["a"]\nsequence = "1,2,3"'
    hosts.write_bytes(old)  # no newline at the end
    hosts.chmod(0o640)
    (tmp_path / "s").write_text(SECRET + "\n")
    done = knockssh(tmp_path, "add", "b", "--service", "gate", "--secret-file", str(tmp_path / "s"))
    assert done.returncode == 0, done.stderr
    new = hosts.read_bytes()
    assert new.startswith(old + b"\n") and b'service = "gate"' in new[len(old) :]
    assert mode(hosts) == 0o640
    again = knockssh(tmp_path, "add", "b", "--secret-file", str(tmp_path / "s"))
    assert again.returncode == 1 and again.stderr.count(b"\n") == 1
    assert b"b already has an entry (host entry 2)" in again.stderr
    assert hosts.read_bytes() == new


def test_ssh_config_advice_follows_ssh_g(tmp_path):
    with_proxy = tmp_path / "with"
    with_proxy.write_text("Host box\n  ProxyCommand knockssh %h %p\n")
    without = tmp_path / "without"
    without.write_text("Host other\n  ProxyCommand knockssh %h %p\n")
    assert add.ssh_uses_knockssh("box", ("-F", str(with_proxy))) is True
    assert add.ssh_uses_knockssh("box", ("-F", str(without))) is False


def test_secret_path_keeps_host_names_tame_and_apart():
    assert add.secret_path("/c", "a.b-c") == "/c/secrets/a.b-c.secret"
    assert add.secret_path("/c", "../../x") == "/c/secrets/_2e._2f.._2fx.secret"
    # one file per host: names differing only in what is escaped stay apart
    names = ["é.example", "è.example", "_c3_a9.example", "a_b", "a-b", ".x", "_2ex"]
    assert len({add.secret_path("/c", n) for n in names}) == len(names)
    assert add.secret_path("/c", "é.example") == "/c/secrets/_c3_a9.example.secret"
