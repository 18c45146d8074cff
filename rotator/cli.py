"""``knockssh-rotator``: keep knockd's ``*_ROTATOR`` sections on the current sequence.

The entry alone: it picks the command (``rotator.commands``), and says the domain
error (``RotatorError``, or the scheme's ``SchemeError``) in one line, once."""

from __future__ import annotations

import sys

from .arguments import Out
from .errors import RotatorError
from .scheme import SchemeError, utf8

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .commands.rotate import FindKnockd


COMMANDS = {  # the word on the command line -> its module in rotator/commands/
    "init": "init",
    "confirm": "confirm",
    "check": "check",
    "uninit": "uninit",
    "close-doors": "close_doors",
    "watch": "watch",
    "client": "client",
}


def main(argv: list[str] | None = None, find: FindKnockd | None = None) -> int:
    """The command; ``find`` says how a rotation finds knockd (by default, by
    --pidfile or the systemd unit): tests give a stand-in, nothing is patched."""
    argv = sys.argv[1:] if argv is None else argv
    out = Out(False, False)
    for i, arg in enumerate(argv, 1):
        try:
            utf8(arg, f"argument {i} ({arg!a})")
        except SchemeError as exc:
            out.error(str(exc))
            return 2
    try:
        if argv[:1] and argv[0] in COMMANDS:
            import importlib

            command = importlib.import_module(f".commands.{COMMANDS[argv[0]]}", __package__)
            return int(command.main(argv[1:]))
        return _rotate(argv, out, find)
    except SchemeError as exc:
        out.error(str(exc))
        return 1
    except RotatorError as exc:
        out.error(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


def _rotate(argv: list[str], out: Out, find: FindKnockd | None) -> int:
    from .commands import follow, rotate

    args = rotate.build_parser().parse_args(argv)
    out.verbose, out.quiet = args.verbose, args.quiet
    settings = rotate.settings_of(args, out)
    if args.follow:
        if args.at is not None or args.dry_run:
            raise SchemeError("--follow goes by the clock: it takes neither --at nor --dry-run")
        return follow.run(args, out, settings, find)
    return rotate.run(args, out, settings, find)
