"""Side effects of the rotator: atomic writes, the lock, reload/verify/rollback."""

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import pytest
from helpers import ROOT, ROTATOR, ROTATOR_CODE, SECRET

from rotator import cli, conffile, files, knockd, proc, systemd

OLD = "[options]\n  logfile = LOG\n[ssh_ROTATOR]\n  sequence = 1:tcp\n"


def child(code):
    return subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.PIPE, cwd=ROOT
    )


def test_atomic_write_keeps_mode_and_content(tmp_path):
    path = tmp_path / "knockd.conf"
    path.write_text(OLD)
    os.chmod(path, 0o600)
    conffile.atomic_write(str(path), "new\r\ncontent \xff")
    assert path.read_bytes() == "new\r\ncontent \xff".encode()
    assert path.stat().st_mode & 0o777 == 0o600
    assert os.listdir(tmp_path) == ["knockd.conf"]


def test_non_utf8_bytes_round_trip(tmp_path):
    path = tmp_path / "knockd.conf"
    path.write_bytes(b"# caf\xe9\n[a]\nsequence=1\n")
    conffile.atomic_write(str(path), conffile.read_text(str(path)))
    assert path.read_bytes() == b"# caf\xe9\n[a]\nsequence=1\n"


def test_killed_writer_leaves_old_file_whole(tmp_path):
    path = tmp_path / "knockd.conf"
    path.write_text(OLD)
    code = (
        "import sys, time\n"
        "from rotator import conffile\n"
        "def hold():\n"
        "    sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(600)\n"
        f"conffile.atomic_write({str(path)!r}, 'x' * 100000, before_rename=hold)\n"
    )
    proc = child(code)
    assert proc.stdout.readline() == b"ready\n"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert path.read_text() == OLD
    leftovers = [n for n in os.listdir(tmp_path) if n != "knockd.conf"]
    assert leftovers and files.is_temp_of("knockd.conf", leftovers[0])
    with conffile.locked(str(path)):  # the next run clears a dead writer's temp file
        pass
    assert os.listdir(tmp_path) == ["knockd.conf"]


def test_lock_excludes_and_dies_with_its_holder(tmp_path):
    path = tmp_path / "knockd.conf"
    path.write_text(OLD)
    proc = child(
        "import sys\nfrom rotator import conffile\n"
        f"with conffile.locked({str(path)!r}):\n"
        "    sys.stdout.write('locked\\n'); sys.stdout.flush(); sys.stdin.read()\n"
    )
    assert proc.stdout.readline() == b"locked\n"
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        proc.kill()
        proc.wait()
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no stale lock after a crash
    finally:
        os.close(fd)


class FakeKnockd(knockd.Reloader):
    """Stands in for knockd's process in the decision logic (real knockd: tests/lab)."""

    def __init__(self, log, dies=False, logs=True):
        self.log, self.dies, self.logs = log, dies, logs
        self.up, self.restarts, self.reloads = True, 0, 0

    def reload(self):
        self.reloads += 1
        if self.logs:
            with open(self.log, "a") as f:
                f.write("re-reading config file: x\n")
        if self.dies:
            self.up = False

    def alive(self):
        return self.up

    def restart(self):
        self.restarts += 1
        self.up = True


def run_rotator(tmp_path, fake, monkeypatch, capsys, *extra, create=True):
    path = tmp_path / "knockd.conf"
    log = tmp_path / "knockd.log"
    if create and not path.exists():
        path.write_text(OLD.replace("LOG", str(log)))
        os.chmod(path, 0o640)
    monkeypatch.setenv("KNOCKD_ROTATOR_SECRET", SECRET)
    code = cli.main(["--config", str(path), "--at", "1700000000", *extra], find=lambda: fake)
    return code, path, capsys.readouterr()


def test_reload_verified_by_log(tmp_path, monkeypatch, capsys):
    fake = FakeKnockd(str(tmp_path / "knockd.log"))
    code, path, out = run_rotator(tmp_path, fake, monkeypatch, capsys, "-v")
    assert code == 0 and fake.reloads == 1 and fake.restarts == 0
    assert "ssh_ROTATOR: changed 1:tcp -> " in out.out and "re-read" in out.out
    assert path.stat().st_mode & 0o777 == 0o640
    # second run: nothing changes, no write, no reload
    mtime = path.stat().st_mtime_ns
    code, _, out = run_rotator(tmp_path, fake, monkeypatch, capsys)
    assert code == 0 and fake.reloads == 1 and path.stat().st_mtime_ns == mtime
    assert SECRET not in out.out + out.err


def test_knockd_dies_on_reload_rolls_back(tmp_path, monkeypatch, capsys):
    fake = FakeKnockd(str(tmp_path / "knockd.log"), dies=True)
    code, path, out = run_rotator(tmp_path, fake, monkeypatch, capsys)
    assert code == 1
    assert path.read_text() == OLD.replace("LOG", str(tmp_path / "knockd.log"))
    assert fake.restarts == 1 and fake.up
    assert "exited after the reload" in out.err and "restored" in out.err
    assert len(out.err.strip().splitlines()) == 1


def test_silent_knockd_is_an_error(tmp_path, monkeypatch, capsys):
    fake = FakeKnockd(str(tmp_path / "knockd.log"), logs=False)
    fake.log_timeout = 0.1  # it never logs: no need to wait the real 5 s
    code, path, out = run_rotator(tmp_path, fake, monkeypatch, capsys)
    assert code == 1 and "did not log a reload" in out.err and "1:tcp" in path.read_text()


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "cannot read"),
        ("[ssh_ROTATOR]\ntcpflags=syn\n", "line 1"),
        ("[x_ROTATOR]\nsequence=1\n[x_ROTATOR]\nsequence=1\n", "line 3"),
        ("oops\n", "line 1"),
    ],
)
def test_bad_files_change_nothing(tmp_path, monkeypatch, capsys, content, message):
    path = tmp_path / "knockd.conf"
    if content is not None:
        path.write_text(content)
    fake = FakeKnockd(str(tmp_path / "log"))
    code, _, out = run_rotator(tmp_path, fake, monkeypatch, capsys, create=False)
    assert code == 1 and message in out.err and str(path) in out.err
    assert len(out.err.strip().splitlines()) == 1
    assert fake.reloads == 0
    if content is not None:
        assert path.read_text() == content


def test_dry_run_and_no_section(tmp_path, monkeypatch, capsys):
    fake = FakeKnockd(str(tmp_path / "log"))
    code, path, out = run_rotator(tmp_path, fake, monkeypatch, capsys, "--dry-run")
    assert code == 0 and "would change" in out.out and "1:tcp" in path.read_text()
    path.write_text("[static]\nsequence=1,2\n")
    code, path, out = run_rotator(tmp_path, fake, monkeypatch, capsys)
    assert code == 0 and "no *_ROTATOR section" in out.out and fake.reloads == 0


def test_boundary_run_never_carries_the_secret():
    cmd = systemd.schedule_run(1700006400, 1700006000, "knockssh-rotator.service")
    assert cmd[:2] == ["systemd-run", "--on-active=400000ms"]
    assert systemd.schedule_run(10, 9.9995, "u")[1] == "--on-active=1ms"  # rounded up, never early
    assert cmd[-3:] == ["systemctl", "start", "knockssh-rotator.service"]
    assert not any(SECRET in a or "SECRET" in a for a in cmd)


def test_a_pid_that_is_not_knockd_is_refused_and_not_signalled(tmp_path, monkeypatch, capsys):
    """A real process (sleep) behind the pidfile: a SIGHUP would kill it."""
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        # Popen returns once exec closed its pipe, a moment before the kernel sets
        # the new argv: await the process as the pidfile's reader will see it.
        assert proc.wait_for(lambda: proc.command_line(sleeper.pid) == ["sleep", "60"], 5)
        pidfile = tmp_path / "knockd.pid"
        pidfile.write_text(f"{sleeper.pid}\n")
        path = tmp_path / "knockd.conf"
        path.write_text(OLD.replace("LOG", str(tmp_path / "knockd.log")))
        before = path.read_bytes()
        monkeypatch.setenv("KNOCKD_ROTATOR_SECRET", SECRET)
        code = cli.main(["--config", str(path), "--pidfile", str(pidfile), "--at", "1700000000"])
        out = capsys.readouterr()
        assert code == 1 and "'sleep', not knockd: refusing to signal it" in out.err
        assert out.err.count("\n") == 1 and "changed" not in out.out  # nothing reported
        assert path.read_bytes() == before  # nothing written
        assert sleeper.poll() is None  # not signalled
    finally:
        sleeper.kill()
        sleeper.wait()


NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="runs a process as another user; CI is root",
)


@contextlib.contextmanager
def fake_knockd(owner: int, run_as: int, dir_mode: int = 0o755):
    """A copy of sleep named knockd, owned by ``owner``, in a directory of
    ``dir_mode``, running as ``run_as``: what a stale pidfile may name after pid reuse."""
    directory = tempfile.mkdtemp(prefix="knockssh-stranger-", dir="/tmp")
    try:
        os.chmod(directory, dir_mode)
        exe = os.path.join(directory, "knockd")
        shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
        os.chown(exe, owner, owner)
        os.chmod(exe, 0o755)
        user = {} if run_as == 0 else {"user": run_as, "group": run_as, "extra_groups": []}
        process = subprocess.Popen([exe, "600"], cwd="/", **user)  # type: ignore[call-overload]
        try:
            assert proc.wait_for(lambda: proc.process_name(process.pid) == "knockd", 5)
            yield process
        finally:
            process.kill()
            process.wait()
    finally:
        shutil.rmtree(directory)


def rotate_with_pidfile(tmp_path, pid, *extra):
    pidfile = tmp_path / "knockd.pid"
    pidfile.write_text(f"{pid}\n")
    path = tmp_path / "knockd.conf"
    path.write_text(OLD.replace("LOG", str(tmp_path / "knockd.log")))
    args = ["--config", str(path), "--pidfile", str(pidfile), *extra]
    env = {**os.environ, "KNOCKD_ROTATOR_SECRET": SECRET, "PYTHONPATH": ROOT}
    code = ROTATOR_CODE
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@needs_root
@pytest.mark.parametrize(
    ("owner", "run_as", "dir_mode", "why"),
    [
        (NOBODY, NOBODY, 0o755, "not as root"),
        (NOBODY, 0, 0o755, "not root's alone"),  # root runs a binary another user can swap
        (0, 0, 0o777, "not root's alone"),  # in a directory anyone can write
    ],
)
def test_a_knockd_that_is_not_roots_is_never_signalled(tmp_path, owner, run_as, dir_mode, why):
    with fake_knockd(owner, run_as, dir_mode) as stranger:
        rotator = rotate_with_pidfile(tmp_path, stranger.pid, "--at", "1700000000")
        out, err = rotator.communicate(timeout=30)
        assert rotator.returncode == 1 and why in err and "refusing to signal it" in err, err
        assert err.count("\n") == 1 and "written" not in out
        assert stranger.poll() is None  # no SIGHUP: sleep would have died of it


@needs_root
def _exe(pid: str) -> str | None:
    """A process's executable; None once it has ended (any other process may end
    while /proc is listed)."""
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None


def test_follow_never_signals_nor_runs_a_strangers_knockd(tmp_path):
    """The reported attack: a stale pidfile names another user's process whose
    executable is named knockd. --follow refuses it, keeps retrying, still stops
    on SIGTERM, and no process runs that user's program as root."""
    with fake_knockd(NOBODY, NOBODY) as stranger:
        follower = rotate_with_pidfile(tmp_path, stranger.pid, "--follow")
        try:
            line = follower.stderr.readline()  # type: ignore[union-attr]
            assert "not as root" in line and "trying again" in line, line
            exe = os.readlink(f"/proc/{stranger.pid}/exe")
            as_root = [
                p
                for p in os.listdir("/proc")
                if p.isdigit()
                and int(p) != stranger.pid
                and proc.process_name(int(p)) == "knockd"
                and _exe(p) == exe
            ]
            assert as_root == [] and stranger.poll() is None
        finally:
            follower.terminate()
            out, _ = follower.communicate(timeout=10)
        assert follower.returncode == 0 and out.rstrip().endswith("stopped")


def test_a_symlinked_knockd_conf_is_rewritten_at_its_target(tmp_path, monkeypatch, capsys):
    real = tmp_path / "etc" / "knockd.conf"
    real.parent.mkdir()
    real.write_text(OLD.replace("LOG", str(tmp_path / "knockd.log")))
    link = tmp_path / "knockd.conf"
    link.symlink_to(real)
    monkeypatch.setenv("KNOCKD_ROTATOR_SECRET", SECRET)
    code = cli.main(["--config", str(link), "--no-reload", "--no-schedule", "--at", "1700000000"])
    assert code == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "sequence = 1:tcp\n" not in real.read_text() and real.read_text() == link.read_text()
    assert f"{real}: written" in capsys.readouterr().out


def test_warnings_and_an_empty_config_path_are_said_plainly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("KNOCKD_ROTATOR_SECRET", SECRET)
    with pytest.raises(SystemExit) as exited:
        cli.main(["--config", "", "--no-reload"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err == "knockssh-rotator: error: argument --config: the path is empty (try --help)\n"
    path = tmp_path / "knockd.conf"
    path.write_text(OLD.replace("LOG", str(tmp_path / "log")))
    monkeypatch.setenv("KNOCKD_ROTATOR_PORTS", "2000-2002")  # few ports: a warning, not an error
    monkeypatch.setenv("KNOCKD_ROTATOR_LENGTH", "32")
    assert cli.main(["--config", str(path), "--dry-run", "--at", "1700000000"]) == 0
    err = capsys.readouterr().err
    assert (
        err == "knockssh-rotator: warning: only 3 ports to choose from: this weakens the sequence\n"
    )


def rotator_cmd(*args, env=None):
    return subprocess.run(
        [*ROTATOR, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "KNOCKD_ROTATOR_SECRET": SECRET, **(env or {})},
        cwd=ROOT,
        timeout=60,
    )


def test_a_missing_directory_is_one_line(tmp_path):
    done = rotator_cmd("--config", str(tmp_path / "nope" / "knockd.conf"), "--no-reload")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1 and "cannot open its directory" in done.stderr


def test_no_systemctl_changes_nothing(tmp_path):
    path = tmp_path / "knockd.conf"
    path.write_text(OLD.replace("LOG", str(tmp_path / "log")))
    before = path.read_bytes()
    done = rotator_cmd("--config", str(path), env={"PATH": str(tmp_path)})  # no systemctl there
    assert done.returncode == 1 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr == (
        "knockssh-rotator: error: systemctl not found: reload knockd with --pidfile PATH, "
        "or use --no-reload\n"
    )
    assert path.read_bytes() == before


def test_a_read_only_file_system_is_one_line_and_changes_nothing(tmp_path):
    """A private mount namespace with a tmpfs remounted read-only: even root cannot write."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("a read-only mount needs root (unshare -m), and CI=true runs as root")
        pytest.skip("a read-only mount needs root (unshare -m)")
    script = f"""
set -e
mount -t tmpfs tmpfs {tmp_path}
printf '[ssh_ROTATOR]\\n  sequence = 1:tcp\\n' > {tmp_path}/knockd.conf
mount -o remount,ro {tmp_path}
{sys.executable} -c 'import sys; from rotator.cli import main; sys.exit(main())' \\
    --config {tmp_path}/knockd.conf --no-reload --no-schedule || echo "rc=$?"
cat {tmp_path}/knockd.conf
"""
    done = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ, "KNOCKD_ROTATOR_SECRET": SECRET, "PYTHONPATH": ROOT},
        timeout=60,
    )
    assert "rc=1" in done.stdout and "sequence = 1:tcp" in done.stdout  # unchanged
    assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "cannot write: Read-only file system; left as it was" in done.stderr
    assert "changed" not in done.stdout


def test_the_secret_from_a_systemd_credential_and_the_grace_from_the_environment(
    tmp_path, monkeypatch, capsys
):
    """LoadCredential=secret:… puts the secret in $CREDENTIALS_DIRECTORY/secret; the
    result is the same rotation as with KNOCKD_ROTATOR_SECRET."""
    by_variable, by_credential = tmp_path / "a.conf", tmp_path / "b.conf"
    for path in (by_variable, by_credential):
        path.write_text(OLD.replace("LOG", str(tmp_path / "log")))
    at = ["--at", str(1699984800 + 10), "--no-reload", "--no-schedule"]  # 10 s into a period
    monkeypatch.setenv("KNOCKD_ROTATOR_SECRET", SECRET)
    assert cli.main(["--config", str(by_variable), *at]) == 0
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "secret").write_text(SECRET + "\n")
    monkeypatch.delenv("KNOCKD_ROTATOR_SECRET")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    monkeypatch.setenv("KNOCKD_ROTATOR_GRACE", "60")
    assert cli.main(["--config", str(by_credential), *at]) == 0
    out = capsys.readouterr().out
    assert "(grace)" in out and SECRET not in out
    assert by_credential.read_text().startswith(by_variable.read_text().rstrip("\n"))
    assert "_GRACE" in by_credential.read_text() and "_GRACE" not in by_variable.read_text()


def test_the_example_placeholder_is_refused_as_a_secret(tmp_path, monkeypatch, capsys):
    with open(os.path.join(ROOT, "server", "rotator.env.example")) as f:
        example = dict(line.split("=", 1) for line in f.read().splitlines() if "=" in line)
    monkeypatch.setenv("KNOCKD_ROTATOR_SECRET", example["KNOCKD_ROTATOR_SECRET"])
    path = tmp_path / "knockd.conf"
    path.write_text(OLD.replace("LOG", str(tmp_path / "log")))
    assert cli.main(["--config", str(path), "--no-reload"]) == 1
    err = capsys.readouterr().err
    assert "KNOCKD_ROTATOR_SECRET: this is the example's placeholder" in err
    assert "openssl rand -hex 64" in err


def test_version(capsys):
    from rotator.version import VERSION

    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"knockssh-rotator {VERSION}\n"


@pytest.mark.parametrize("fifo", ["knockd.conf", "knockd.pid"])
def test_follow_on_a_fifo_says_so_and_stops_on_sigterm(tmp_path, fifo):
    """A FIFO where the config or the pidfile should be: an error line and a retry,
    never a blocked open that no SIGTERM can end."""
    conf = tmp_path / "knockd.conf"
    if fifo == "knockd.conf":
        os.mkfifo(conf, 0o600)
    else:
        conf.write_text(OLD.replace("LOG", str(tmp_path / "knockd.log")))
        os.mkfifo(tmp_path / fifo, 0o600)
    env = {**os.environ, "KNOCKD_ROTATOR_SECRET": SECRET, "PYTHONPATH": ROOT}
    code = ROTATOR_CODE
    args = ["--follow", "--config", str(conf), "--pidfile", str(tmp_path / "knockd.pid")]
    follower = subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = follower.stderr.readline()
        assert fifo in line and "FIFO" in line and "trying again" in line, line
    finally:
        follower.terminate()
        out, _ = follower.communicate(timeout=10)
    assert follower.returncode == 0 and out.rstrip().endswith("stopped"), out
