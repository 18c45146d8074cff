"""``knockssh-rotator --follow``: stay running and rotate at each boundary, for
hosts without systemd and for containers."""

from __future__ import annotations

import argparse
import os
import subprocess
import time

from .. import conffile, knockdconf
from ..arguments import Out
from ..errors import RotatorError
from ..firewall import close_doors
from ..knockd import PidfileReloader
from ..netlink import AddressWatch
from ..rotation import Phase, next_change, phase
from ..scheme import SchemeError, Settings
from .rotate import find_knockd, rotate_once

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .rotate import FindKnockd

RECHECK_SECONDS = 5.0  # how long a follower sleeps at most before it looks at the clock


RETRY_SECONDS = 30.0  # after a failed run

LOOK_ANYWAY = 60.0  # seconds between looks at knockd's addresses without an announcement


def run(
    args: argparse.Namespace, out: Out, settings: Settings, find: FindKnockd | None = None
) -> int:
    """Stay running and rotate whenever the phase (period, grace) changes. The clock
    is read again at least every RECHECK_SECONDS, so a jump of the clock or a
    suspend is caught within that; SIGTERM or SIGINT ends the loop between runs
    (never inside one: a write or a reload is always finished). With --pidfile it
    also keeps knockd running, and restarts it when its interface's addresses change
    (knockd reads them only when it starts)."""
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
    addresses: AddressWatch | None = None
    applied: Phase | None = None
    retry_at, looked_at = 0.0, time.monotonic()
    announced = False
    while not stopping:
        if keeper is None:
            keeper = _keeper(args)
        elif not keeper.alive():
            _start_again(keeper, out, addresses)
        if keeper is not None:
            addresses = addresses or _watch(args, keeper, out)
            if addresses and (announced or time.monotonic() - looked_at >= LOOK_ANYWAY):
                looked_at = time.monotonic()
                _follow_addresses(keeper, addresses, out, announced)
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
            waits = [wake_r] if addresses is None else [wake_r, addresses.fileno()]
            timeout = max(0.0, min(RECHECK_SECONDS, due - time.time()))
            announced = (
                addresses is not None
                and addresses.fileno() in select.select(waits, [], [], timeout)[0]
            )
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


def _watch(args: argparse.Namespace, keeper: PidfileReloader, out: Out) -> AddressWatch | None:
    """The addresses of the interface knockd listens on: its own ``-i``, else
    knockd.conf's Interface. None while the file cannot be read (the rotation says
    why; the next loop tries again)."""
    interface = knockdconf.interface_on_command_line(keeper.arguments)
    try:
        if interface is None:
            interface = knockdconf.interface_of(knockdconf.parse(conffile.read_text(args.config)))
        watch = AddressWatch(interface)
    except (RotatorError, knockdconf.ConfError, OSError):
        return None
    out.say(f"watching the addresses of {interface}: {watch.shown()}")
    return watch


def _follow_addresses(
    keeper: PidfileReloader, addresses: AddressWatch, out: Out, announced: bool
) -> None:
    changed = addresses.change(announced)
    if changed is None:
        return
    out.say(f"{changed}: restarting knockd (pid {keeper.pid})")
    if keeper.stop():
        _start_again(keeper, out, addresses, crashed=False)
    else:
        out.error(f"knockd (pid {keeper.pid}) did not stop: it still listens on the old addresses")


def _start_again(
    keeper: PidfileReloader, out: Out, addresses: AddressWatch | None, crashed: bool = True
) -> None:
    """knockd ended: close the doors it can no longer close, then start it again."""
    if crashed:
        out.error(f"knockd (pid {keeper.pid}) ended: closing its doors and starting it again")
    for rule in close_doors():
        out.say(f"closed: {rule}")
    # looked at before knockd starts: a change in between is then seen at the next look
    seen = addresses.look() if addresses is not None else None
    try:
        keeper.restart()
    except (OSError, subprocess.SubprocessError) as exc:
        out.error(f"knockd did not start again: {exc} (trying again in {RECHECK_SECONDS:g}s)")
        return
    if addresses is not None:
        addresses.started_with(seen)
    out.say(f"knockd running again (pid {keeper.pid})")
