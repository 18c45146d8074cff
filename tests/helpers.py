"""Shared test helpers (pyproject sets pytest's pythonpath to tests/)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "0123456789abc"  # test-only; asserted never to appear in outputs

sys.path.insert(0, os.path.join(ROOT, "server", "lab"))
from lab import write_private  # noqa: E402  (one helper for 0600 files: lab, bench, tests)

# the two programs as users start them, from the checkout (PYTHONPATH=ROOT)
KNOCKSSH = [sys.executable, "-c", "from knockssh.cli import run; run()"]
ROTATOR_CODE = "import sys; from rotator.cli import main; sys.exit(main())"
ROTATOR = [sys.executable, "-c", ROTATOR_CODE]

__all__ = [
    "KNOCKSSH",
    "ROOT",
    "ROTATOR",
    "ROTATOR_CODE",
    "SECRET",
    "copy_round_trip",
    "paramiko_both_ways",
    "run_cli",
    "setns",
    "write_private",
]


def run_cli(module, *args, env=None, timeout=30):
    """Run ``python -m module args`` and return the CompletedProcess (bytes)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def setns(path):
    """This thread into the network namespace at ``path`` (CLONE_NEWNET)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, 0x40000000) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def paramiko_both_ways(lab, command="echo paramiko $((6*7))"):
    """``command``'s output over paramiko to the lab's server, twice, each after a
    closed door: through ``paramiko.ProxyCommand("knockssh HOST 22")``, then with
    ``sock=knockssh.connect(...)`` from a thread in the client namespace."""
    import threading

    import pytest
    from lab import SERVER_IP

    paramiko = pytest.importorskip("paramiko", reason="paramiko is in the test extra")
    key = paramiko.Ed25519Key.from_private_key_file(lab.path("client_key"))

    def run(sock):
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        client.connect(
            SERVER_IP,
            22,
            "root",
            pkey=key,
            sock=sock,
            look_for_keys=False,
            allow_agent=False,
            timeout=20,
            banner_timeout=20,
        )
        try:
            _, out, _ = client.exec_command(command)
            return out.read()
        finally:
            client.close()

    lab.close_door()
    env = f"env KNOCKSSH_CONFIG={lab.hosts_toml}"
    cmd = f"ip netns exec {lab.client_ns} {env} knockssh {SERVER_IP} 22"
    outputs = [run(paramiko.ProxyCommand(cmd))]
    lab.close_door()
    result = {}

    def connect_in_client_ns():
        setns(f"/run/netns/{lab.client_ns}")
        import knockssh

        result["sock"] = knockssh.connect(SERVER_IP, 22, config=lab.hosts_toml, env={})

    thread = threading.Thread(target=connect_in_client_ns)
    thread.start()
    thread.join(30)
    outputs.append(run(result["sock"]))
    return outputs


def copy_round_trip(lab, record, tmp_path, remote, timeout=60):
    """3 MiB of random bytes to the lab's server with knockssh-scp (to ``remote``),
    and back with knockssh-rsync, each after a closed door: the SHA-256 of what was
    sent and of what came back."""
    import hashlib

    src = tmp_path / "payload with space.bin"
    src.write_bytes(os.urandom(3 << 20))
    back = tmp_path / "back"
    for argv in (
        ["knockssh-scp", "-F", lab.ssh_config, str(src), f"plain:{remote}"],
        ["knockssh-rsync", "-a", "-e", f"ssh -F {lab.ssh_config}", f"plain:{remote}", str(back)],
    ):
        lab.close_door()
        done = record(lab.in_client(argv, capture_output=True, timeout=timeout))
        assert done.returncode == 0, done.stderr
    return tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in (src, back))


class BannerServer:
    """``with BannerServer() as port``: a loopback server for one connection that
    sends an ssh banner and reads to the end (a stand-in sshd behind a static knock)."""

    BANNER = b"SSH-2.0-test\r\n"

    def __init__(self, host="127.0.0.1"):
        self.host = host

    def __enter__(self):
        import socket
        import threading

        self.server = socket.create_server((self.host, 0))

        def serve():
            conn, _ = self.server.accept()
            with conn:
                conn.sendall(self.BANNER)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(4096):
                    pass

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        return self.server.getsockname()[1]

    def __exit__(self, *exc):
        self.thread.join(10)
        self.server.close()
