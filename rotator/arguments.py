"""What every rotator command shares: argument types, a parser that says a mistake
in one line, and where output goes."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from .scheme import whole_number

DEFAULT_CONFIG = "/etc/knockd.conf"


def unix_seconds(text: str) -> int:
    """An instant for --at: a whole number of seconds, checked before any arithmetic."""
    value = whole_number(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError("a whole number of UNIX seconds, at most 12 digits")
    return value


def seconds(text: str) -> int:
    """A duration for --grace: a whole number of seconds, checked as text."""
    value = whole_number(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError("a whole number of seconds, at most 12 digits")
    return value


def path_arg(text: str) -> str:
    """A file's path on the command line: never empty (``--config=`` names nothing)."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty")
    return text


def tcp_port(text: str) -> int:
    value = whole_number(text)
    if value is None or not 0 < value < 65536:
        raise argparse.ArgumentTypeError("a port from 1 to 65535")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line said in one line (its usage
    block would make it several)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (try --help)\n")


class Out:
    """What a command says: to stdout, or to stderr (``to_stderr``) where stdout
    carries the command's product (client add's enrolment line)."""

    def __init__(self, verbose: bool, quiet: bool, to_stderr: bool = False) -> None:
        self.verbose, self.quiet, self.to_stderr = verbose, quiet, to_stderr

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, file=sys.stderr if self.to_stderr else sys.stdout, flush=True)

    def detail(self, text: str) -> None:
        if self.verbose:
            print(text, file=sys.stderr if self.to_stderr else sys.stdout, flush=True)

    def error(self, text: str) -> None:
        print(f"knockssh-rotator: error: {text}", file=sys.stderr, flush=True)

    def warn(self, text: str) -> None:
        print(f"knockssh-rotator: warning: {text}", file=sys.stderr, flush=True)


def write_out(text: str, out: Out) -> int:
    """``text`` to stdout; a closed stdout (``| head``, a reader gone) is one line."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- the exit's flush goes there
        except OSError:
            pass
        out.error(f"standard output: {exc.strerror or exc}")
        return 1
    return 0
