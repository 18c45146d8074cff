"""knockssh starts on every ssh connection: the modules that cost milliseconds to
import stay off its paths. A structural check; bench/ measures the time."""

import os
import subprocess
import sys

import pytest
from helpers import ROOT, SECRET, BannerServer

HEAVY = {
    "collections",  # collections.abc pulls it in
    "enum",
    "hashlib",  # loads OpenSSL
    "re",
    "selectors",
    "socket",  # enum conversions of every constant
    "subprocess",
    "threading",
    "tomllib",
    "typing",
}
# -S: no site, so no .pth file (an editable install's finder imports re and more at
# every start) hides what knockssh itself imports; the checkout comes from PYTHONPATH.
PYTHON = [sys.executable, "-S"]
RUN_AND_REPORT = """\
import atexit, os, sys
atexit.register(lambda: os.write(2, ("MODULES " + " ".join(sys.modules)).encode()))
sys.argv[1:] = os.environ["ARGS"].split(" ")
from knockssh.cli import main
sys.exit(main())
"""  # no json here: it imports re


def at_start():
    """What this interpreter imports before any code runs."""
    code = "import os, sys; os.write(1, ' '.join(sys.modules).encode())"
    done = subprocess.run([*PYTHON, "-c", code], capture_output=True, check=True)
    return set(done.stdout.decode().split())


def imported(args, tmp_path, **kw):
    """Modules knockssh ARGS imports beyond the interpreter's own start, and its stdout."""
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(
        '[[host]]\nmatch = ["127.0.0.1"]\nsequence = "1,2,3"\n\n'
        '[[host]]\nmatch = ["rotated"]\nservice = "ssh"\nsecret_env = "S"\n'
    )
    env = {**os.environ, "ARGS": " ".join(args), "KNOCKSSH_CONFIG": str(hosts), "S": SECRET}
    env["KNOCKD_ROTATOR_SECRET"] = SECRET
    env["PYTHONPATH"] = ROOT
    check = kw.pop("check", True)
    done = subprocess.run([*PYTHON, "-c", RUN_AND_REPORT], capture_output=True, env=env, **kw)
    assert done.returncode == 0 or not check, done.stderr
    modules = set(done.stderr.decode().rsplit("MODULES ", 1)[1].split())
    return modules - at_start(), done.stdout


@pytest.mark.parametrize("args", [["generate", "ssh"], ["check"], ["--help"], ["--version"]])
def test_commands_stay_lean(args, tmp_path):
    modules, out = imported(args, tmp_path)
    assert out  # the command did its work
    assert modules & HEAVY == set()


def test_check_of_a_host_adds_only_what_running_ssh_g_needs(tmp_path):
    modules, out = imported(["check", "rotated"], tmp_path, check=False)
    assert b"host entry 2" in out
    assert "knockssh.wrappers" in modules  # it asked ssh -G
    # subprocess brings selectors, threading and enum (signal); shlex brings re
    assert modules & HEAVY <= {"subprocess", "selectors", "threading", "enum", "re", "collections"}
    assert modules & HEAVY >= {"subprocess"}


def test_proxycommand_path_stays_lean(tmp_path):
    """Knock (static sequence on loopback), connect, relay to the end: nothing heavy."""
    with BannerServer() as port:
        modules, out = imported(
            ["-v", "127.0.0.1", str(port)], tmp_path, stdin=subprocess.DEVNULL, timeout=30
        )
    assert out == b"SSH-2.0-test\r\n"
    assert {"knockssh.knock", "knockssh.dial", "knockssh.relay"} <= modules  # it did knock
    assert "knockssh.socks" not in modules  # the SOCKS proxy stays off this path
    assert modules & HEAVY == set()


def test_version_is_the_packages_and_costs_one_module(tmp_path):
    from importlib.metadata import version

    modules, out = imported(["--version"], tmp_path)
    assert out == f"knockssh {version('knockssh')}\n".encode()
    help_modules, _ = imported(["--help"], tmp_path)
    assert modules - help_modules <= {"knockssh.version", "rotator", "rotator.version"}
