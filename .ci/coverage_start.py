"""Line coverage of every Python process of a CI run, subprocesses and the lab's
included: .ci/run installs this module into the test venv with a .pth file that
imports it, so each interpreter of that venv starts coverage (a test that builds
its own environment still gets it). The ProxyCommand's own exit path runs the
exit handlers, so its data is saved too."""

import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("COVERAGE_PROCESS_START", os.path.join(ROOT, "pyproject.toml"))
os.environ.setdefault("COVERAGE_FILE", os.path.join(ROOT, ".coverage-data", "run"))

import coverage  # noqa: E402

coverage.process_startup()
