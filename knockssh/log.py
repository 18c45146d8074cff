"""Diagnostics on stderr (fd 2): stdout may carry an ssh connection."""

from __future__ import annotations

import os
import time

from rotator.text import printable

__all__ = ["Log", "printable"]

QUIET, NORMAL, VERBOSE = 0, 1, 2


class Log:
    def __init__(self, level: int = NORMAL, prog: str = "knockssh") -> None:
        self.level = level
        self.prog = prog
        self._t0 = time.monotonic()

    def _emit(self, text: str) -> None:
        try:
            os.write(2, f"{self.prog}: {printable(text)}\n".encode(errors="replace"))
        except OSError:
            pass  # stderr gone (ControlPersist): diagnostics are best effort

    def error(self, text: str) -> None:
        if self.level > QUIET:
            self._emit(text)

    warn = error

    def info(self, text: str) -> None:
        if self.level >= VERBOSE:
            self._emit(text)

    def step(self, text: str, since: float) -> None:
        """Verbose: one step and how long it took since ``since`` (monotonic)."""
        if self.level >= VERBOSE:
            self._emit(f"{text} ({(time.monotonic() - since) * 1000:.1f} ms)")
