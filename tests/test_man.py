"""The man pages: in step with --help, well-formed, and found by man after an install."""

import os
import re
import shutil
import subprocess
import sys

import pytest
from helpers import ROOT

from knockssh.cli import USAGE
from rotator.commands.check import check_parser
from rotator.commands.init import init_parser
from rotator.commands.rotate import build_parser
from rotator.version import VERSION

MAN = os.path.join(ROOT, "man")
PAGES = ["knockssh.1", "knockssh-ssh.1", "knockssh-rotator.8"]


def page(name):
    with open(os.path.join(MAN, name)) as f:
        return f.read().replace("\\-", "-")


def need_man():
    if shutil.which("man") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("man is missing (lab.py install installs man-db)")
        pytest.skip("man is not installed")


def test_every_option_of_the_help_is_in_its_page():
    client = set(re.findall(r"(?<![\w-])--?[a-z0-9][a-z0-9-]*", USAGE)) - {"-m"}
    assert {"--config", "--offset", "--version", "-4"} <= client
    assert not {o for o in client if o not in page("knockssh.1")}
    parsers = (build_parser(), init_parser(), check_parser())
    rotator = {o for p in parsers for a in p._actions for o in a.option_strings}
    assert {"--follow", "--grace", "--version", "--show-secret", "--env-file"} <= rotator
    assert not {o for o in rotator if o not in page("knockssh-rotator.8")}


def test_pages_carry_this_version_and_the_wrappers_share_one():
    for name in PAGES:
        assert f'"knockssh {VERSION}"' in page(name).split("\n")[0], name
    for name in ("knockssh-scp.1", "knockssh-rsync.1"):
        assert page(name) == ".so man1/knockssh-ssh.1\n"


@pytest.mark.parametrize("name", PAGES)
def test_pages_render_without_warnings(name):
    need_man()
    done = subprocess.run(
        ["man", "--warnings", "-l", os.path.join(MAN, name)],
        capture_output=True,
        text=True,
        env={**os.environ, "MANPAGER": "cat", "MANWIDTH": "80"},
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert "SYNOPSIS" in done.stdout


def test_man_finds_the_pages_of_a_venv_install(tmp_path):
    """pip install . into a venv puts them in share/man beside bin/, where man looks
    for each directory on PATH."""
    need_man()
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--no-deps", ROOT]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    version = subprocess.run([str(venv / "bin" / "knockssh"), "--version"], capture_output=True)
    assert version.stdout == f"knockssh {VERSION}\n".encode()  # the launcher is installed too
    env = {k: v for k, v in os.environ.items() if k != "MANPATH"}
    env["PATH"] = f"{venv / 'bin'}:/usr/bin:/bin"
    for name, found in (
        ("knockssh", "man1/knockssh.1"),
        ("knockssh-rsync", "man1/knockssh-ssh.1"),  # its .so, followed
        ("knockssh-rotator", "man8/knockssh-rotator.8"),
    ):
        done = subprocess.run(
            ["man", "-w", name], capture_output=True, text=True, env=env, check=False
        )
        assert done.stdout.strip() == f"{venv}/share/man/{found}", done
