"""What the client remembers of the path to each knock address, between runs.

One small file per address in ``$XDG_STATE_HOME/knockssh/paths/`` (else
``~/.local/state/knockssh/paths/``): the round-trip time of the last connection
(the kernel's estimate, TCP_INFO), the spread of the round trips our knocks
measured, and the knock spacing that got through. The
next run starts from them: windows that fit the path, and knocks already spaced
wider than its jitter where fast ones were reordered. Forgotten after MAX_AGE.
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


def _path(env: Mapping[str, str], address: str) -> str:
    return os.path.join(state_dir(env), "paths", address.replace("/", "_"))


LIMITS = (10.0, 1.0, 10.0)  # seconds: the most a remembered rtt, spacing, jitter can be
FUTURE_SLACK = 300.0  # seconds a stamp may lie ahead (clocks get set); more is a lie


def recall(env: Mapping[str, str], address: str, fixed: float | None = None) -> PathInfo:
    """What was remembered for ``address``: nothing if unknown, unreadable, old, from
    the future, or holding a value no path has (inf, nan, 1e308); such a file is
    rewritten by the next ``remember``."""
    from rotator.files import read_regular

    try:
        data, _ = read_regular(_path(env, address), 100, follow=False)  # a FIFO never blocks
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


def remember(env: Mapping[str, str], address: str, before: PathInfo, now: PathInfo) -> None:
    """Keep ``now`` for ``address`` unless it adds nothing to ``before`` (a write per
    connection would cost more than it saves); best effort."""
    rtt, gap = now.rtt or 0.0, now.spacing or 0.0
    same_gap = abs(gap - (before.spacing or 0.0)) < 1e-6
    close_rtt = before.rtt is not None and abs(rtt - before.rtt) <= 0.25 * before.rtt + 0.001
    if same_gap and close_rtt and before.age < MAX_AGE / 2:
        return
    from rotator.files import replace

    path = _path(env, address)
    jitter = "-" if now.jitter is None else f"{now.jitter:.6f}"
    line = f"{time.time():.0f} {rtt:.6f} {gap:.6f} {jitter}\n"
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        replace(
            path, line.encode(), 0o600, durable=False, keep_mode=False
        )  # never onto a planted FIFO
    except OSError:
        pass
