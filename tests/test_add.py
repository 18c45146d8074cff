"""knockssh add: an entry appended, the secret stored privately, ssh_config advice."""

import os
import stat
import subprocess
import sys

from helpers import ROOT, SECRET

from knockssh import add


def knockssh(tmp_path, *args, stdin=b"", cwd=ROOT, **env_changes):
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "PYTHONPATH": ROOT,
        **env_changes,
    }
    return subprocess.run(
        [sys.executable, "-m", "knockssh", *args],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=30,
    )


def start_add(tmp_path, host, secret):
    env = {**os.environ, "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env["PYTHONPATH"] = ROOT
    proc = subprocess.Popen(
        [sys.executable, "-m", "knockssh", "add", host, "--secret-stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    return proc, secret


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
    check = knockssh(tmp_path, "check", "box.example")  # ssh_config not changed yet
    assert check.returncode == 1 and b"error: ssh does not run knockssh" in check.stdout
    assert f"from secret_file {secret}".encode() in check.stdout
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host box.example\n  ProxyCommand knockssh %h %p\n")
    check = knockssh(tmp_path, "check", "box.example", "-F", str(ssh_config))
    assert check.returncode == 0, check.stdout
    assert b"ssh runs knockssh for box.example" in check.stdout


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


def test_concurrent_adds_keep_every_entry(tmp_path):
    """Eight adds at once (the report: 5 to 7 of 8 entries were lost)."""
    started = [start_add(tmp_path, f"h{i}.test", f"{SECRET}-{i}") for i in range(8)]
    for proc, secret in started:  # all are running before any gets its secret
        proc.stdin.write(secret.encode() + b"\n")
        proc.stdin.close()
    for proc, _ in started:
        assert proc.wait(30) == 0, proc.stderr.read()
    hosts = tmp_path / "config" / "knockssh" / "hosts.toml"
    text = hosts.read_text()
    for i in range(8):
        assert f'match = ["h{i}.test"]' in text
        stored = hosts.parent / "secrets" / f"h{i}.test.secret"
        assert stored.read_text() == f"{SECRET}-{i}\n"
    checked = knockssh(tmp_path, "check")
    assert checked.returncode == 0 and b"(8 host entries)" in checked.stdout


def test_a_symlinked_mapping_file_is_written_at_its_target(tmp_path):
    """dotfiles: hosts.toml is a link into a repository; the link stays, the
    target gets the entry, and the secret stays out of the repository."""
    repo = tmp_path / "dotfiles"
    repo.mkdir()
    (repo / "hosts.toml").write_text('[[host]]\nmatch = ["a"]\nsequence = "1,2,3"\n')
    link = tmp_path / "config" / "knockssh" / "hosts.toml"
    link.parent.mkdir(parents=True, mode=0o700)
    link.symlink_to(repo / "hosts.toml")
    done = knockssh(tmp_path, "add", "b.test", "--secret-stdin", stdin=SECRET.encode())
    assert done.returncode == 0, done.stderr
    assert link.is_symlink() and 'match = ["b.test"]' in (repo / "hosts.toml").read_text()
    assert (link.parent / "secrets" / "b.test.secret").exists()
    assert os.listdir(repo) == ["hosts.toml"]


def test_emoji_hosts_paths_and_twin_idn_names_read_back(tmp_path):
    config = tmp_path / "conf\U0001f511" / "hosts.toml"
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host *\n  ProxyCommand knockssh %h %p\n")
    for host in ("\U0001f511.example", "é.example", "è.example"):
        done = knockssh(
            tmp_path,
            "add",
            host,
            "--secret-stdin",
            stdin=SECRET.encode(),
            KNOCKSSH_CONFIG=str(config),
        )
        assert done.returncode == 0, done.stderr
        checked = knockssh(
            tmp_path, "check", host, "-F", str(ssh_config), KNOCKSSH_CONFIG=str(config)
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"match {host}".encode() in checked.stdout
    assert len(os.listdir(config.parent / "secrets")) == 3  # é and è: two files


def test_relative_config_locations_store_absolute_paths(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    # a relative XDG_CONFIG_HOME is ignored (the XDG rule): ~/.config is used
    done = knockssh(tmp_path, "add", "x.test", "--secret-stdin", stdin=SECRET.encode(),
                    cwd=work, XDG_CONFIG_HOME="relcfg")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".config" / "knockssh" / "hosts.toml").exists()
    assert os.listdir(work) == []
    # a relative KNOCKSSH_CONFIG is taken from the current directory, and the
    # secret_file stored in it is absolute, so it resolves from anywhere
    done = knockssh(tmp_path, "add", "y.test", "--secret-stdin", stdin=SECRET.encode(),
                    cwd=work, KNOCKSSH_CONFIG="rel.toml")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f'secret_file = "{work}/secrets/y.test.secret"' in (work / "rel.toml").read_text()
    elsewhere = knockssh(tmp_path, "check", "y.test", KNOCKSSH_CONFIG=str(work / "rel.toml"))
    assert b"error: secret" not in elsewhere.stdout
    assert b"secret: from secret_file" in elsewhere.stdout


def test_check_prints_no_control_character_from_the_mapping_file(tmp_path):
    """A pattern holding C1 controls (CSI, a terminal's escape) is shown escaped."""
    hosts = tmp_path / "config" / "knockssh" / "hosts.toml"
    hosts.parent.mkdir(parents=True)
    hosts.write_text('[[host]]\nmatch = ["a\\u009b2Jb"]\nsequence = "1,2,3"\n')
    done = knockssh(tmp_path, "check")
    assert done.returncode == 0, done.stderr
    # patterns are kept lowercase
    assert "\x9b".encode() not in done.stdout and b"\\x9b2jb" in done.stdout
