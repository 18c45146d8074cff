"""The ProxyCommand's start-up cost, this checkout against a baseline revision, in
one run: each sample of one is taken right after a sample of the other, so load on
the machine falls on both alike. Medians and their ratio.

    python bench/startup_compare.py [--base REV] [--runs N]

Each sample is a whole ProxyCommand connect through a static knock on loopback to a
server that sends a banner and closes: start, read the mapping file, knock, dial,
relay, exit. Nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def serve_forever(server: socket.socket) -> None:
    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        with conn:
            conn.sendall(b"SSH-2.0-bench\r\n")
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass


def sample(checkout: str, port: int, env: dict[str, str]) -> float:
    code = "from knockssh.cli import run; run()"
    argv = [sys.executable, "-S", "-c", code, "127.0.0.1", str(port)]
    started = time.perf_counter()
    done = subprocess.run(
        argv, env={**env, "PYTHONPATH": checkout}, stdin=subprocess.DEVNULL, capture_output=True
    )
    took = time.perf_counter() - started
    if done.stdout != b"SSH-2.0-bench\r\n":
        raise RuntimeError(f"{checkout}: {done.stderr.decode(errors='replace')}")
    return took


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--base", default="HEAD~1", help="the baseline revision (default HEAD~1)")
    p.add_argument("--runs", type=int, default=200)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "-q", "--detach", base, args.base])
        try:
            hosts = os.path.join(tmp, "hosts.toml")
            with open(hosts, "w") as f:
                f.write('[[host]]\nmatch = ["127.0.0.1"]\nsequence = "1,2,3"\n')
            env = {
                "PATH": os.environ["PATH"],
                "HOME": tmp,
                "KNOCKSSH_CONFIG": hosts,
                "XDG_STATE_HOME": os.path.join(tmp, "state"),
                "XDG_RUNTIME_DIR": tmp,
            }
            server = socket.create_server(("127.0.0.1", 0))
            threading.Thread(target=serve_forever, args=(server,), daemon=True).start()
            port = server.getsockname()[1]
            times: dict[str, list[float]] = {"base": [], "this": []}
            for _ in range(args.runs):
                times["base"].append(sample(base, port, env))
                times["this"].append(sample(ROOT, port, env))
            server.close()
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", base])
    medians = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
    print(f"ProxyCommand connect on loopback, {args.runs} interleaved runs each")
    print(f"  baseline {args.base}: median {medians['base']:.2f} ms")
    print(f"  this checkout:  median {medians['this']:.2f} ms")
    print(f"  ratio: {medians['this'] / medians['base']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
