"""A knocked connect through ``knockssh socks`` against the same connect through the
ProxyCommand, in one run on the lab (root): each sample closes the door first, so
every connect knocks; the two kinds alternate, so load falls on both alike.

    python bench/socks_vs_proxy.py [--runs N]

A sample is the time until sshd's banner arrives: for the ProxyCommand, from the
start of ``knockssh knocked.lab 22``; for SOCKS, from the start of a client process
that greets the (already running) proxy and CONNECTs to the same name.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server", "lab"))
import lab as labmod  # noqa: E402

CLIENT = r"""
import socket, struct
with socket.create_connection(("127.0.0.1", 1080)) as c:
    c.sendall(b"\x05\x01\x00")
    c.recv(2)
    c.sendall(b"\x05\x01\x00\x03\x0bknocked.lab\x00\x16")
    reply = b""
    while len(reply) < 10:
        reply += c.recv(10 - len(reply))
    assert reply[1] == 0, reply
    assert c.recv(64).startswith(b"SSH-2.0-")
"""


def timed(argv: list[str], lab: labmod.Lab, stdin: bytes | None = None) -> float:
    started = time.perf_counter()
    done = lab.in_client(argv, capture_output=True, input=stdin, timeout=60)
    took = time.perf_counter() - started
    if done.returncode != 0 and b"SSH-2.0-" not in done.stdout:
        raise RuntimeError(done.stderr.decode(errors="replace"))
    return took


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=20)
    args = p.parse_args()
    lab = labmod.Lab(labmod.new_name())
    lab.up()
    try:
        lab.rotate()
        proxy = subprocess.Popen(
            ["ip", "netns", "exec", lab.client_ns, "knockssh", "socks", "-q"],
            env=lab.client_env(),
        )
        try:
            if not labmod.wait_for(
                lambda: lab.in_client(["nc", "-z", "127.0.0.1", "1080"]).returncode == 0, 10
            ):
                raise RuntimeError("the proxy did not listen")
            times: dict[str, list[float]] = {"ProxyCommand": [], "SOCKS": []}
            for _ in range(args.runs):
                lab.close_door()
                argv = ["knockssh", "knocked.lab", "22"]
                times["ProxyCommand"].append(timed(argv, lab, b"SSH-2.0-bench\r\n"))
                lab.close_door()
                times["SOCKS"].append(timed([sys.executable, "-c", CLIENT], lab))
        finally:
            proxy.send_signal(signal.SIGTERM)
            proxy.wait(10)
    finally:
        lab.down()
    medians = {k: sorted(v)[len(v) // 2] * 1000 for k, v in times.items()}
    print(f"knocked connect to sshd's banner, door closed before each, {args.runs} runs each")
    for name, ms in medians.items():
        print(f"  {name:<13} median {ms:.1f} ms")
    print(f"  ratio SOCKS / ProxyCommand: {medians['SOCKS'] / medians['ProxyCommand']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
