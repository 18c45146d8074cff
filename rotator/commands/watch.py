"""``knockssh-rotator watch``: restart knockd when its interface's addresses change.

knockd builds its capture filter from the interface's addresses when it starts, so
knocks to an address gained later (a DHCP renumbering, a new IPv6 address) are never
seen. The watcher waits for the kernel's announcements (rtnetlink, and a look every
minute in case one was missed) and restarts knockd when the set differs from the one
knockd started with. Open doors survive a restart: nftables times them out in the
kernel; with iptables, knockd's drop-in closes them before knockd starts."""

from __future__ import annotations

import argparse
import os
import select
import signal

from .. import conffile, knockdconf, netlink
from ..arguments import DEFAULT_CONFIG, Out, Parser, path_arg
from ..errors import RotatorError
from ..systemd import systemctl

LOOK_ANYWAY = 60.0  # seconds between looks without an announcement


def watch_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="knockssh-rotator watch",
        description="Stay running and restart knockd (its systemd unit) when the "
        "addresses of its interface (knockd.conf's Interface) change.",
    )
    p.add_argument(
        "--config", type=path_arg, default=DEFAULT_CONFIG, help="knockd.conf (default %(default)s)"
    )
    p.add_argument("--unit", default="knockd.service", help="knockd's systemd unit")
    return p


def main(argv: list[str]) -> int:
    args = watch_parser().parse_args(argv)
    out = Out(False, False)
    try:
        interface = knockdconf.interface_of(knockdconf.parse(conffile.read_text(args.config)))
    except (RotatorError, knockdconf.ConfError) as exc:
        out.error(f"{args.config}: {exc}")
        return 1
    stopping: list[int] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    signal.set_wakeup_fd(wake_w)
    addresses = netlink.AddressWatch(interface)
    out.say(f"watching the addresses of {interface}: {addresses.shown()}")
    while not stopping:
        ready, _, _ = select.select([addresses.fileno(), wake_r], [], [], LOOK_ANYWAY)
        changed = addresses.change(announced=addresses.fileno() in ready)
        if changed is None:
            continue
        now = addresses.look()  # before the restart: a change in between is seen next
        out.say(f"{changed}: restarting {args.unit}")
        done = systemctl("restart", args.unit)
        if done.returncode != 0:
            out.error(f"systemctl restart {args.unit}: {done.stderr.strip() or 'failed'}")
            continue  # known stays: the next look tries again
        addresses.started_with(now)
    out.say("stopped")
    return 0
