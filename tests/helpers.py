"""Shared test helpers (pyproject sets pytest's pythonpath to tests/)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "0123456789abc"  # test-only; asserted never to appear in outputs

sys.path.insert(0, os.path.join(ROOT, "server", "lab"))
from lab import write_private  # noqa: E402  (one helper for 0600 files: lab, bench, tests)

__all__ = ["ROOT", "SECRET", "run_cli", "write_private"]


def run_cli(module, *args, env=None, timeout=30):
    """Run ``python -m module args`` and return the CompletedProcess (bytes)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
