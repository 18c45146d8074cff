#!/usr/bin/env python3
"""relay_cpu.py [--gb N] [--rounds N]: the relay's own CPU per GB, without ssh.

A server process sends N GB over loopback TCP; the relay (knockssh.relay, in this
process) carries it into a pipe that a reader process drains, as ssh drains its
ProxyCommand's stdout. Alternated rounds of the splice path and the copy loop, the
medians of this process's CPU (user + system) per GB and of the rate."""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from knockssh import relay
from knockssh.net import RawSocket

CHUNK = 1 << 20


def serve(listener: socket.socket, size: int) -> None:
    conn, _ = listener.accept()
    block = b"\0" * CHUNK
    for _ in range(size // CHUNK):
        conn.sendall(block)
    conn.shutdown(socket.SHUT_WR)
    conn.recv(1)


def drain(fd: int, size: int) -> None:
    got = 0
    while chunk := os.read(fd, CHUNK):
        got += len(chunk)
    os._exit(0 if got == size else 1)


def one(splice: bool, size: int) -> tuple[float, float]:
    """CPU seconds per GB and MB/s of one relayed transfer."""
    listener = socket.create_server(("127.0.0.1", 0))
    server = os.fork()
    if server == 0:
        serve(listener, size)
        os._exit(0)
    conn = socket.create_connection(listener.getsockname())
    sock = RawSocket(fileno=conn.detach())
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    reader = os.fork()
    if reader == 0:
        os.close(out_w)
        drain(out_r, size)
    os.close(out_r)
    os.close(in_w)  # nothing to upload: ssh's side closed at once
    chosen = relay.splices
    relay.splices = chosen if splice else (lambda fd: False)  # type: ignore[assignment]
    before, t = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    try:
        relay.relay(sock, in_r, out_w)
    finally:
        relay.splices = chosen
    after, took = resource.getrusage(resource.RUSAGE_SELF), time.monotonic() - t
    for pid in (reader, server):
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit("the transfer was not byte-complete")
    os.close(in_r)
    sock.close()
    listener.close()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu / (size / (1 << 30)), size / took / 1e6


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gb", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    size = args.gb << 30
    results: dict[str, list[tuple[float, float]]] = {"splice": [], "copy": []}
    for _ in range(args.rounds):
        for name in results:
            results[name].append(one(name == "splice", size))
    print(f"relay of {args.gb} GB, loopback TCP into a pipe, {args.rounds} rounds (medians)")
    for name, rows in results.items():
        cpu = statistics.median(r[0] for r in rows)
        rate = statistics.median(r[1] for r in rows)
        print(f"  {name:7} {cpu:.2f} s CPU per GB   {rate:6.0f} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
