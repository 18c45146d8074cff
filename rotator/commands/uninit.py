"""``knockssh-rotator uninit``: a shell script that undoes what init's script set
up, to read, then to run (``knockssh-rotator uninit | sh``). The Debian package
runs it when it is removed."""

from __future__ import annotations

import argparse
import shutil

from .. import server_setup
from ..arguments import Out, Parser, tcp_port, write_out
from .check import read_or_empty


def uninit_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="knockssh-rotator uninit",
        description="Print a shell script that undoes init: new ssh connections admitted "
        "again first, then the rotator stopped, knockd.conf as it was before init, and "
        "init's files removed (the env file with the secret is kept). Read it, then run "
        "it (uninit | sh).",
    )
    p.add_argument(
        "--port", type=tcp_port, help=f"sshd's port (default: from {server_setup.INIT_RECORD})"
    )
    p.add_argument(
        "--firewall",
        choices=server_setup.FIREWALLS,
        help=f"default: from {server_setup.INIT_RECORD}",
    )
    return p


def main(argv: list[str]) -> int:
    args = uninit_parser().parse_args(argv)
    port, firewall = server_setup.parse_record(read_or_empty(server_setup.INIT_RECORD))
    port = args.port or port or server_setup.sshd_port(read_or_empty("/etc/ssh/sshd_config"))
    firewall = args.firewall or firewall or ("nftables" if shutil.which("nft") else "iptables")
    return write_out(server_setup.uninit_script(port, firewall), Out(False, False))
