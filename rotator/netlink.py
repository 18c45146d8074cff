"""Address changes, as the kernel announces them (rtnetlink), and the addresses an
interface has now (``ip -o addr``). The watcher's side effects, and nothing else."""

from __future__ import annotations

import socket
import subprocess

from .server_setup import interface_addresses

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
    """The interface's addresses now; None if ``ip`` cannot tell (no such interface)."""
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
