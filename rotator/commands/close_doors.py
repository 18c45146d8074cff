"""``knockssh-rotator close-doors``: remove the iptables door rules that a knockd
which died can no longer close. knockd.service's drop-in runs it before each start
of knockd; ``--follow`` before it starts a dead knockd again."""

from __future__ import annotations

import argparse

from ..arguments import Out, Parser
from ..firewall import close_doors


def close_doors_parser() -> argparse.ArgumentParser:
    return Parser(
        prog="knockssh-rotator close-doors",
        description="Delete every iptables and ip6tables rule a knock opened (marked "
        "knockssh-door). knockd's drop-in runs it before knockd starts.",
    )


def main(argv: list[str]) -> int:
    close_doors_parser().parse_args(argv)
    out = Out(False, False)
    for rule in close_doors():
        out.say(f"closed: {rule}")
    return 0
