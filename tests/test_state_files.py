"""The files the client keeps for itself (remembered paths, failures.log, door
locks), as a lying disk or a hostile co-user leaves them: a bad file is ignored
(and replaced where safe), never waited on, and the connect goes on."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time

import pytest
from helpers import KNOCKSSH, ROOT, BannerServer

from knockssh import doorlock, failures, paths
from knockssh.plan import PathInfo


def state(tmp_path):
    return {"XDG_STATE_HOME": str(tmp_path / "state"), "HOME": str(tmp_path)}


def plant_path(env, address, content: bytes):
    path = paths._path(env, address)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(path, "wb") as f:
        f.write(content)
    return path


NOW = int(time.time())  # the lies below hold however long after this a test runs
LIES = [
    ("inf rtt", f"{NOW} inf 0.001 -\n"),
    ("huge rtt", f"{NOW} 1e308 0.001 -\n"),
    ("nan spacing", f"{NOW} 0.02 nan -\n"),
    ("negative rtt", f"{NOW} -1 0.001 -\n"),
    ("inf jitter", f"{NOW} 0.02 0.001 inf\n"),
    ("future stamp", f"{NOW + 10 * 24 * 3600} 0.02 0.1 -\n"),
    ("nan stamp", "nan 0.02 0.1 -\n"),
    ("too few words", f"{NOW} 0.02\n"),
    ("garbage", "\x00\xff\xfe binary"),
    ("too long", f"{NOW} 0.02 0.001 - " + "9" * 200),
]


@pytest.mark.parametrize(("name", "content"), LIES, ids=[lie[0] for lie in LIES])
def test_a_remembered_value_no_path_has_is_forgotten_and_replaced(tmp_path, name, content):
    env = state(tmp_path)
    path = plant_path(env, "192.0.2.1", content.encode("latin-1"))
    known = paths.recall(env, "192.0.2.1")
    assert (known.rtt, known.spacing, known.jitter) == (None, None, None), name
    paths.remember(env, "192.0.2.1", known, PathInfo(0.03, 0.002))
    again = paths.recall(env, "192.0.2.1")
    assert (again.rtt, again.spacing) == (0.03, 0.002)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_a_good_memory_is_still_recalled(tmp_path):
    env = state(tmp_path)
    plant_path(env, "192.0.2.1", f"{int(time.time()) - 60} 0.05 0.02 0.004\n".encode())
    known = paths.recall(env, "192.0.2.1")
    assert (known.rtt, known.spacing, known.jitter) == (0.05, 0.02, 0.004)
    assert 59 <= known.age <= 120


def test_a_fifo_is_never_waited_on(tmp_path):
    env = state(tmp_path)
    fifo = paths._path(env, "192.0.2.1")
    os.makedirs(os.path.dirname(fifo), mode=0o700)
    os.mkfifo(fifo, 0o600)
    log = failures.log_path(env)
    os.mkfifo(log, 0o600)
    done = threading.Event()

    def both() -> None:
        paths.recall(env, "192.0.2.1")
        failures.record(env, "no connection")
        done.set()

    threading.Thread(target=both, daemon=True).start()
    assert done.wait(5), "a FIFO blocked the client"
    assert stat.S_ISFIFO(os.lstat(log).st_mode)  # someone else's: left alone


def test_a_planted_huge_failures_log_is_cut_to_the_bound(tmp_path):
    env = state(tmp_path)
    log = failures.log_path(env)
    os.makedirs(os.path.dirname(log), mode=0o700)
    with open(log, "wb") as f:
        f.write(b"".join(b"%07d old line\n" % i for i in range(600 * 1024 // 17)))
    assert os.path.getsize(log) > 600_000
    failures.record(env, "the newest failure")
    with open(log, "rb") as f:
        data = f.read()
    assert len(data) <= failures.MAX_BYTES
    assert data.endswith(b"the newest failure\n") and data.count(b"\n") > 100
    assert data.split(b"\n", 1)[0].endswith(b"old line")  # starts at a line


def test_a_linked_failures_log_is_not_followed(tmp_path):
    env = state(tmp_path)
    log = failures.log_path(env)
    os.makedirs(os.path.dirname(log), mode=0o700)
    target = tmp_path / "victim"
    target.write_bytes(b"precious\n")
    os.symlink(target, log)
    failures.record(env, "no connection")
    assert target.read_bytes() == b"precious\n"


def test_a_missing_runtime_dir_is_not_made(tmp_path):
    """$XDG_RUNTIME_DIR belongs to the login manager: without it, locks go to
    /tmp/knockssh-UID and the runtime directory is not created."""
    runtime = tmp_path / "1000"  # its parent exists: only knockssh could make it
    where = doorlock.lock_dir({"XDG_RUNTIME_DIR": str(runtime)})
    assert not runtime.exists()
    assert where == f"/tmp/knockssh-{os.geteuid()}"
    runtime.mkdir(parents=True, mode=0o700)
    assert doorlock.lock_dir({"XDG_RUNTIME_DIR": str(runtime)}) == str(runtime / "knockssh")


def test_the_connect_goes_on_past_every_bad_state_file(tmp_path):
    """A real ProxyCommand run (static sequence on loopback) with a FIFO for its
    remembered path, inf for another, a FIFO failures.log and a FIFO lock."""
    env = state(tmp_path)
    fifo = paths._path(env, "127.0.0.1")
    os.makedirs(os.path.dirname(fifo), mode=0o700)
    os.mkfifo(fifo, 0o600)
    os.mkfifo(failures.log_path(env), 0o600)
    runtime = tmp_path / "run"
    (runtime / "knockssh").mkdir(parents=True, mode=0o700)
    runtime.chmod(0o700)
    os.mkfifo(runtime / "knockssh" / "127.0.0.1.lock", 0o600)
    hosts = tmp_path / "hosts.toml"
    hosts.write_text('[[host]]\nmatch = ["127.0.0.1"]\nsequence = "1,2,3"\nconnect_timeout = 5\n')
    with BannerServer() as port:
        done = subprocess.run(
            [*KNOCKSSH, "127.0.0.1", str(port)],
            env={
                **os.environ,
                **env,
                "KNOCKSSH_CONFIG": str(hosts),
                "XDG_RUNTIME_DIR": str(runtime),
                "PYTHONPATH": ROOT,
            },
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,  # a FIFO that blocked would hold it past this
        )
    assert done.returncode == 0 and done.stdout == b"SSH-2.0-test\r\n", done.stderr


def test_what_one_network_taught_is_not_recalled_on_another(tmp_path):
    """Keyed by where the client is (local address and gateway) as well as by the
    knock address: a spacing a hotspot needed is not where a home network starts."""
    env = {"XDG_STATE_HOME": str(tmp_path)}
    hotspot, home = "192.0.2.7 via 0101a8c0", "198.51.100.9 via 0100a8c0"
    taught = PathInfo(rtt=0.08, spacing=0.1, jitter=0.04)
    paths.remember(env, "203.0.113.5", PathInfo(), taught, hotspot)
    assert paths.recall(env, "203.0.113.5", None, hotspot).spacing == 0.1
    assert paths.recall(env, "203.0.113.5", None, home).spacing is None
    assert paths.recall(env, "203.0.113.5").spacing is None  # nor without a network


def test_the_network_is_the_local_address_towards_the_server_and_the_gateway():
    here = paths.network_of("127.0.0.1")
    assert here.startswith("127.0.0.1 via ")
    assert paths.network_of("not an address") == ""
