"""``knockssh-rotator init``: the env file with a fresh secret (never over an
existing one), and for this machine a shell script to read, then to run."""

from __future__ import annotations

import argparse
import os

from .. import files, server_setup
from ..arguments import Out, Parser, path_arg, tcp_port, write_out
from ..scheme import whole_number
from ..server_setup import service_problem
from ..text import shown
from .check import read_or_empty


def revert_seconds(text: str) -> int:
    value = whole_number(text)
    if value is None or not 0 <= value <= server_setup.MAX_REVERT_AFTER:
        raise argparse.ArgumentTypeError(
            f"seconds from 0 (no revert) to {server_setup.MAX_REVERT_AFTER}"
        )
    return value


def init_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="knockssh-rotator init",
        description="Write the env file with a fresh secret (never over an existing one) "
        "and print, for this machine, a shell script that writes knockd.conf, sets the "
        "firewall and starts the units: read it, then run it (init | sh).",
    )
    p.add_argument(
        "--env-file", type=path_arg, default=server_setup.ENV_FILE, help="default %(default)s"
    )
    p.add_argument("--interface", help="knockd's interface (default: the default route's)")
    p.add_argument("--port", type=tcp_port, help="sshd's port (default: from sshd_config, else 22)")
    p.add_argument(
        "--firewall",
        choices=server_setup.FIREWALLS,
        help="default: nftables if nft is present (Debian 12), else iptables",
    )
    p.add_argument("--service", default="ssh", help="the rotator section's name (default ssh)")
    p.add_argument(
        "--revert-after",
        type=revert_seconds,
        default=300,
        help="undo everything after SECONDS unless 'knockssh-rotator confirm' runs first, "
        "from a new knocked session (default %(default)s; 0: never)",
    )
    p.add_argument("--show-secret", action="store_true", help="print the secret (stdout only)")
    p.add_argument(
        "--print",
        dest="print_file",
        metavar="FILE",
        choices=PRINTABLE,
        help="print one file the script would write, and nothing else: no env file, no "
        "secret (for configuration management: server/ansible/); one of " + ", ".join(PRINTABLE),
    )
    return p


PRINTABLE = (
    "knockd.conf",
    "firewall.nft",
    "firewall.sh",
    "knockd-dropin",
    *server_setup.UNITS,
)


def main(argv: list[str]) -> int:
    import secrets
    import shutil

    args = init_parser().parse_args(argv)
    out = Out(False, False)
    interface = args.interface or server_setup.default_route_interface(
        read_or_empty("/proc/net/route")
    )
    if not interface:
        out.error("no default route to take knockd's interface from: give --interface")
        return 1
    problems = [
        ("--service", args.service, service_problem(args.service)),
        ("--interface", interface, server_setup.interface_problem(interface)),
        ("--env-file", args.env_file, server_setup.path_problem(args.env_file)),
    ]
    for option, value, problem in problems:
        if problem:
            out.error(f"{option} {shown(value, 40)}: {problem}")
            return 2 if option != "--interface" or args.interface else 1
    port = args.port or server_setup.sshd_port(read_or_empty("/etc/ssh/sshd_config"))
    firewall = args.firewall or ("nftables" if shutil.which("nft") else "iptables")
    packaged = any(
        os.path.exists(os.path.join(d, server_setup.UNITS[0]))
        for d in server_setup.PACKAGED_UNIT_DIRS
    )
    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "units")
    program = _this_program()
    units = {
        name: _unit(os.path.join(here, name)).replace(server_setup.PROGRAM, program)
        for name in server_setup.UNITS
    }
    script = server_setup.setup_script(
        interface,
        port,
        firewall,
        args.service,
        args.env_file,
        os.uname().nodename,
        {} if packaged else units,
        packaged,
        args.revert_after,
        program,
    )
    if args.print_file:
        files_of = server_setup.setup_files(interface, port, firewall, args.service, units)
        return write_out(files_of[args.print_file], out)
    secret = secrets.token_hex(32)
    try:
        files.private_directory(os.path.dirname(args.env_file))
        files.create_private(args.env_file, server_setup.env_file_text(secret).encode())
    except FileExistsError:
        out.error(f"{args.env_file} exists: left as it was (remove it to start over)")
        return 1
    except OSError as exc:
        out.error(f"{args.env_file}: cannot write: {exc.strerror}")
        return 1
    text = script + (f"# secret: {secret}\n" if args.show_secret else "")
    return write_out(text, out)


def _this_program() -> str:
    """The knockssh-rotator running now, as the unit should start it: its path as
    found on PATH (a link in /usr/local/bin stays a link: a rebuilt venv keeps
    working); the units' own path when it cannot be told or cannot be written in a
    unit (a space, a quote, a control character)."""
    import shutil
    import sys

    found = (
        shutil.which(sys.argv[0]) if os.path.basename(sys.argv[0]) == "knockssh-rotator" else None
    )
    path = os.path.abspath(found) if found else ""
    tame = path.isascii() and path.isprintable() and not set(path) & set(" '\"\\$%;")
    return path if found and tame else server_setup.PROGRAM


def _unit(path: str) -> str:
    with open(path, encoding="utf-8") as f:  # shipped with the package
        return f.read()
