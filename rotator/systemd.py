"""systemd: reloading knockd's unit, asking about units, and scheduling the
rotator's own next runs."""

from __future__ import annotations

import math
import os
import subprocess

from .errors import RotatorError
from .knockd import Reloader
from .proc import pid_alive
from .scheme import whole_number


class SystemdReloader(Reloader):
    """``systemctl reload`` (Debian's unit: ExecReload=kill -HUP $MAINPID)."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.pid = main_pid(unit)
        if not self.pid:
            raise RotatorError(f"{unit} is not running")

    def reload(self) -> None:
        done = systemctl("reload", self.unit)
        if done.returncode != 0:
            raise RotatorError(f"systemctl reload {self.unit} failed: {done.stderr.strip()}")

    def alive(self) -> bool:
        return main_pid(self.unit) == self.pid and pid_alive(self.pid)

    def restart(self) -> None:
        systemctl("restart", self.unit)
        self.pid = main_pid(self.unit)


def systemctl(*args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["systemctl", *args], capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise RotatorError(
            "systemctl not found: reload knockd with --pidfile PATH, or use --no-reload"
        ) from None
    except subprocess.TimeoutExpired:
        raise RotatorError(f"systemctl {' '.join(args)}: no answer within 60 s") from None


def main_pid(unit: str) -> int:
    """The unit's main process, 0 when it has none (or systemctl cannot tell)."""
    out = systemctl("show", "--property=MainPID", "--value", unit).stdout.strip()
    pid = whole_number(out)
    return pid if pid is not None and pid > 0 else 0


def schedule_run(at: int, now: float, unit: str) -> list[str]:
    """A one-off run of our own service at ``at`` (no secret on any command line:
    the service reads it from its EnvironmentFile or credential). It fires at the
    boundary or up to 0.1 s after, never before: in milliseconds, rounded up."""
    delay_ms = max(1, math.ceil((at - now) * 1000))
    return [
        "systemd-run",
        f"--on-active={delay_ms}ms",
        f"--unit=knockssh-rotator-at-{at}",
        "--timer-property=AccuracySec=100ms",
        f"--description=knockssh-rotator run at {at}",
        "systemctl",
        "start",
        unit,
    ]


def under_systemd() -> bool:
    return os.path.isdir("/run/systemd/system")


def schedule(at: int, now: float, unit: str) -> tuple[bool, str]:
    """Start ``unit`` at ``at`` with systemd-run: whether it worked, and its stderr."""
    done = subprocess.run(schedule_run(at, now, unit), capture_output=True, text=True, check=False)
    return done.returncode == 0, done.stderr.strip()
