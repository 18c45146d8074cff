"""Shared test helpers (pyproject sets pytest's pythonpath to tests/)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "0123456789abc"  # test-only; asserted never to appear in outputs


def run_cli(module, *args, env=None, timeout=30):
    """Run ``python -m module args`` and return the CompletedProcess (bytes)."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
