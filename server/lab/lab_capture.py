"""Capturing what the client sends, for tests that count knocks."""

from __future__ import annotations

import os
import secrets
import subprocess

from lab_base import SERVER_IP, run, wait_for

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lab import Lab


MARKER_PORT = 9  # discard: a datagram the client sends to mark the end of a capture


class Capture:
    """tcpdump in the server namespace, as a context manager. On leaving, the client
    sends a marker datagram and the capture waits until tcpdump has written it, so
    every packet sent before is in the file (no sleep). ``packets()`` gives
    (destination address, destination port) of each captured packet in order."""

    def __init__(self, lab: Lab, bpf: str) -> None:
        self.lab = lab
        self.file = lab.path(f"capture-{secrets.token_hex(3)}.pcap")
        marked = f"({bpf}) or (udp and dst port {MARKER_PORT})"
        self.cmd = ["tcpdump", "-i", lab.server_if, "--immediate-mode", "-U", "-n"]
        self.cmd += ["-w", self.file, marked]
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Capture:
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.server_ns, *self.cmd],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not wait_for(lambda: os.path.exists(self.file), 10):
            raise RuntimeError("tcpdump did not start")
        return self

    def _mark(self) -> bool:
        """Send the marker from the client; has tcpdump written one yet?"""
        send = f"echo mark > /dev/udp/{SERVER_IP}/{MARKER_PORT}"
        run(["bash", "-c", send], ns=self.lab.client_ns, check=False)
        marker = f"> {SERVER_IP}.{MARKER_PORT}: UDP"
        return marker in run(["tcpdump", "-n", "-r", self.file], check=False).stdout

    def __exit__(self, *exc: object) -> None:
        assert self.proc is not None
        try:
            if not wait_for(self._mark, 10, step=0.1):
                raise RuntimeError("the capture's end marker never arrived")
        finally:
            self.proc.terminate()
            self.proc.wait(10)

    def packets(self) -> list[tuple[str, int]]:
        dump = run(["tcpdump", "-n", "-r", self.file]).stdout
        found = []
        for line in dump.splitlines():
            if " > " not in line or ": " not in line.split(" > ", 1)[1]:
                continue
            dst = line.split(" > ", 1)[1].split(": ", 1)[0]  # 198.18.0.1.2345 or 2001:2::1.2345
            address, _, port = dst.rpartition(".")
            if port.isdigit() and not (port == str(MARKER_PORT) and "UDP" in line):
                found.append((address, int(port)))
        return found
