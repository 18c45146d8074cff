"""Address changes, as the kernel announces them (rtnetlink), and the addresses an
interface has now (``ip -o addr``). The watcher's side effects, and nothing else."""

from __future__ import annotations

import socket
import subprocess
import time

from .server_setup import address_change, interface_addresses

RTMGRP_IPV4_IFADDR = 0x10
RTMGRP_IPV6_IFADDR = 0x100


def address_events() -> socket.socket:
    """A socket that becomes readable when any interface gains or loses an address."""
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    sock.bind((0, RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR))
    sock.setblocking(False)
    return sock


def drain(sock: socket.socket) -> None:
    """Read every pending announcement: what changed is read from ``ip`` afterwards."""
    try:
        while sock.recv(65536):
            pass
    except BlockingIOError:
        pass


def addresses(interface: str) -> frozenset[str] | None:
    """The interface's addresses now; None if ``ip`` cannot tell (no such interface,
    or no answer within 10 s)."""
    try:
        done = subprocess.run(
            ["ip", "-o", "addr", "show", "dev", interface],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return interface_addresses(done.stdout) if done.returncode == 0 else None


SETTLE = 0.5  # seconds: addresses come in bursts (an IPv6 address and its routes)


class AddressWatch:
    """An interface's addresses as knockd last started with them, and the kernel's
    announcements that they may have changed (``fileno`` is for select)."""

    def __init__(self, interface: str) -> None:
        self.interface = interface
        self.events = address_events()
        self.known = addresses(interface)

    def fileno(self) -> int:
        return self.events.fileno()

    def look(self) -> frozenset[str] | None:
        return addresses(self.interface)

    def shown(self) -> str:
        """The addresses known, for a "watching" line."""
        if self.known is None:
            return "not known yet (ip could not tell)"
        return ", ".join(sorted(self.known)) or "none"

    def change(self, announced: bool) -> str | None:
        """A line saying what changed, if the addresses now differ from the ones
        knockd started with; after an announcement, the rest of its burst is awaited
        first. A look that failed (None) is no baseline: "no addresses" would make
        the next look that works read as a change, and restart knockd for nothing.
        The first look that works becomes it."""
        if announced:
            time.sleep(SETTLE)  # the condition is the kernel's burst ending: no event says so
            drain(self.events)
        now = self.look()
        if now is None or now == self.known:
            return None
        if self.known is None:
            self.known = now
            return None
        return address_change(self.interface, self.known, now)

    def started_with(self, now: frozenset[str] | None) -> None:
        """knockd (re)started and sees these addresses."""
        self.known = now
