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


def _traced_threads() -> None:
    """coverage follows threads that ``threading`` starts; the relay starts its
    upstream copier with ``_thread`` (``threading`` costs start-up time), so such
    threads start the same tracer here, for the measurement only."""
    import _thread
    import sys
    import threading

    start = _thread.start_new_thread

    def start_traced(function, args, kwargs=None):  # type: ignore[no-untyped-def]
        hook = threading._trace_hook  # type: ignore[attr-defined]  # coverage's, if any

        def run(*a, **kw):  # type: ignore[no-untyped-def]
            if hook is not None:
                sys.settrace(hook)
            return function(*a, **kw)

        return start(run, args, kwargs or {})

    _thread.start_new_thread = start_traced


if coverage.Coverage.current() is not None:
    _traced_threads()
