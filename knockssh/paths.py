"""What the client remembers of the path to each knock address, between runs.

One small file per address and network in ``$XDG_STATE_HOME/knockssh/paths/``
(else ``~/.local/state/knockssh/paths/``): the round-trip time of the last
connection (the kernel's estimate, TCP_INFO), the spread of the round trips our
knocks measured, and the knock spacing that got through. The network is where the
client is now: the local address the kernel picks towards the knock address and
the default gateway, so what a phone's hotspot taught is not applied at home. The
next run starts from them: windows that fit the path, and knocks already spaced
wider than its jitter where fast ones were reordered (a spacing that halves every
ten minutes: plan.remembered_spacing). Forgotten after MAX_AGE.
"""

from __future__ import annotations

import os
import time

from .plan import PathInfo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_AGE = 24 * 3600  # seconds: a laptop moves between networks


def state_dir(env: Mapping[str, str]) -> str:
    """knockssh's directory under ``$XDG_STATE_HOME`` (else ~/.local/state)."""
    base = env.get("XDG_STATE_HOME")
    if not base or not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "knockssh")


def _path(env: Mapping[str, str], address: str, network: str = "") -> str:
    name = f"{address} from {network}" if network else address
    return os.path.join(state_dir(env), "paths", name.replace("/", "_").replace(" ", "_"))


def network_of(address: str) -> str:
    """Where this machine is, as seen towards ``address``: the local address the
    kernel would send from (a UDP socket connected, nothing sent) and, on Linux, the
    default gateway; "" if it cannot be told."""
    from _socket import AF_INET, AF_INET6, SOCK_DGRAM
    from _socket import socket as raw

    family = AF_INET6 if ":" in address else AF_INET
    try:
        probe = raw(family, SOCK_DGRAM)
        try:
            probe.connect((address, 9))
            local = str(probe.getsockname()[0])
        finally:
            probe.close()
    except OSError:
        return ""
    return f"{local} via {_gateway(family == AF_INET6)}"


def _gateway(six: bool) -> str:
    """The default route's gateway (Linux's /proc/net), or "-"."""
    try:
        with open("/proc/net/ipv6_route" if six else "/proc/net/route") as f:
            lines = f.read().splitlines()
    except OSError:
        return "-"
    for line in lines:
        words = line.split()
        if six and len(words) >= 10 and words[0] == "0" * 32 and words[1] == "00":
            return words[4]
        if not six and len(words) >= 3 and words[1] == "00000000" and words[2] != "00000000":
            return words[2]
    return "-"


LIMITS = (10.0, 1.0, 10.0)  # seconds: the most a remembered rtt, spacing, jitter can be
FUTURE_SLACK = 300.0  # seconds a stamp may lie ahead (clocks get set); more is a lie


def recall(
    env: Mapping[str, str], address: str, fixed: float | None = None, network: str = ""
) -> PathInfo:
    """What was remembered for ``address`` from ``network``: nothing if unknown,
    unreadable, old, from the future, or holding a value no path has (inf, nan,
    1e308); such a file is rewritten by the next ``remember``."""
    from rotator.files import read_regular

    try:
        data, _ = read_regular(_path(env, address, network), 100, follow=False)  # FIFO: no block
        words = data.decode().split()
        if len(words) != 4:
            raise ValueError(words)
        stamp, rtt, gap = (float(word) for word in words[:3])
        jitter_text = words[3]
        jitter = 0.0 if jitter_text == "-" else float(jitter_text)
    except (OSError, ValueError, UnicodeDecodeError):
        return PathInfo(fixed=fixed)
    age = time.time() - stamp
    values = (rtt, gap, jitter)
    sane = all(0.0 <= v <= limit for v, limit in zip(values, LIMITS))  # False for nan
    if not sane or not -FUTURE_SLACK <= age <= MAX_AGE:
        return PathInfo(fixed=fixed)
    known_jitter = None if jitter_text == "-" else jitter
    return PathInfo(rtt or None, gap or None, fixed, max(0.0, age), known_jitter)


def remember(
    env: Mapping[str, str], address: str, before: PathInfo, now: PathInfo, network: str = ""
) -> None:
    """Keep ``now`` for ``address`` unless it adds nothing to ``before`` (a write per
    connection would cost more than it saves); best effort."""
    rtt, gap = now.rtt or 0.0, now.spacing or 0.0
    same_gap = abs(gap - (before.spacing or 0.0)) < 1e-6
    close_rtt = before.rtt is not None and abs(rtt - before.rtt) <= 0.25 * before.rtt + 0.001
    if same_gap and close_rtt and before.age < MAX_AGE / 2:
        return
    from rotator.files import replace

    path = _path(env, address, network)
    jitter = "-" if now.jitter is None else f"{now.jitter:.6f}"
    line = f"{time.time():.0f} {rtt:.6f} {gap:.6f} {jitter}\n"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        replace(
            path, line.encode(), 0o600, durable=False, keep_mode=False
        )  # never onto a planted FIFO
    except OSError:
        pass
