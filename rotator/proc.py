"""Reading /proc: is a process alive, what it runs, as whom. The one place the
rotator and the doctor look at other processes."""

from __future__ import annotations

import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float, step: float = 0.02) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (it is asked once
    more at the deadline); whether it held. The one wait of the rotator, the lab and
    the tests."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def process_name(pid: int) -> str:
    """The program a process runs: the name of its executable, else its comm."""
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def command_line(pid: int) -> list[str]:
    """A process's argv, or [] when it cannot be read."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="surrogateescape") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def status_ids(pid: int, field: str) -> set[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return {int(v) for v in line.split()[1:] if v.isascii() and v.isdigit()}
    except OSError:
        pass
    return set()


def pids() -> list[int]:
    """Every process this namespace shows."""
    try:
        return sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    except OSError:
        return []


def same_file(pid: int, path: str, other: str) -> bool:
    """Is ``path``, as process ``pid`` sees it (its root and working directory: a
    container's /etc is not ours), the file ``other`` names here?"""
    seen = f"/proc/{pid}/root{path}" if path.startswith("/") else f"/proc/{pid}/cwd/{path}"
    try:
        return os.path.samefile(seen, other)
    except OSError:
        return False
