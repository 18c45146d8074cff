"""``knockssh-rotator --follow``: stay running and rotate at each boundary, for
hosts without systemd and for containers."""

from __future__ import annotations

import argparse
import os
import subprocess
import time

from ..arguments import Out
from ..errors import RotatorError
from ..firewall import close_doors
from ..knockd import PidfileReloader
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
    keeper: PidfileReloader | None = None
    applied: Phase | None = None
    retry_at = 0.0
    while not stopping:
        if keeper is None:
            keeper = _keeper(args)
        elif not keeper.alive():
            _start_again(keeper, out)
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


def _keeper(args: argparse.Namespace) -> PidfileReloader | None:
    """With --pidfile, the follower keeps knockd running, as systemd's Restart=always
    does elsewhere: behind a knock it is the only way in. Only a knockd it has seen
    running, and trusts (root's knockd binary), is started again; until then, None
    (the rotation says what is wrong with the pidfile)."""
    if not args.pidfile:
        return None
    try:
        return PidfileReloader(args.pidfile)
    except RotatorError:
        return None


def _start_again(keeper: PidfileReloader, out: Out) -> None:
    """knockd ended: close the doors it can no longer close, then start it again."""
    out.error(f"knockd (pid {keeper.pid}) ended: closing its doors and starting it again")
    for rule in close_doors():
        out.say(f"closed: {rule}")
    try:
        keeper.restart()
    except (OSError, subprocess.SubprocessError) as exc:
        out.error(f"knockd did not start again: {exc} (trying again in {RECHECK_SECONDS:g}s)")
        return
    out.say(f"knockd running again (pid {keeper.pid})")
