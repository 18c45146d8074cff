"""``knockssh-rotator --follow``: stay running and rotate at each boundary, for
hosts without systemd and for containers."""

from __future__ import annotations

import argparse
import os
import time

from ..arguments import Out
from ..errors import RotatorError
from ..rotation import Phase, next_change, phase
from ..scheme import SchemeError, Settings
from .rotate import find_knockd, rotate_once

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .rotate import FindKnockd

RECHECK_SECONDS = 5.0  # how long a follower sleeps at most before it looks at the clock


RETRY_SECONDS = 30.0  # after a failed run


def run(
    args: argparse.Namespace, out: Out, settings: Settings, find: FindKnockd | None = None
) -> int:
    """Stay running and rotate whenever the phase (period, grace) changes. The clock
    is read again at least every RECHECK_SECONDS, so a jump of the clock or a
    suspend is caught within that; SIGTERM or SIGINT ends the loop between runs
    (never inside one: a write or a reload is always finished)."""
    import select
    import signal

    stopping: list[int] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    signal.set_wakeup_fd(wake_w)  # a signal ends the select() below at once
    out.say(f"following the clock: period {settings.period}s, grace {args.grace}s")
    applied: Phase | None = None
    retry_at = 0.0
    while not stopping:
        now = time.time()
        wanted = phase(now, settings.period, args.grace)
        if wanted != applied and now >= retry_at:
            try:
                rotate_once(args, out, settings, now, find or find_knockd(args))
                applied = wanted
            except (SchemeError, RotatorError, OSError) as exc:
                out.error(f"{exc} (trying again in {RETRY_SECONDS:g}s)")
                retry_at = now + RETRY_SECONDS
        due = next_change(time.time(), settings.period, args.grace)
        if not stopping:
            select.select([wake_r], [], [], max(0.0, min(RECHECK_SECONDS, due - time.time())))
    out.say("stopped")
    return 0
