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
from rotator.commands.client import client_parser
from rotator.commands.init import init_parser
from rotator.commands.rotate import build_parser
from rotator.commands.uninit import uninit_parser
from rotator.commands.watch import watch_parser
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
    parsers = (
        build_parser(),
        init_parser(),
        check_parser(),
        uninit_parser(),
        watch_parser(),
        client_parser(),
    )
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


README_MAN_FIX = "for s in 1 8; do mkdir -p ~/.local/share/man/man$s"


def readme_man_fix():
    with open(os.path.join(ROOT, "README.md")) as f:
        lines = [line.strip() for line in f if README_MAN_FIX in line]
    assert len(lines) == 1
    return lines[0]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), ROOT]
    subprocess.run(build, check=True, capture_output=True, timeout=300)
    (found,) = out.glob("knockssh-*.whl")
    return found


@pytest.mark.parametrize("pipx_version", ["1.1.0", "1.18.4"])  # Debian 12's; PyPI's
def test_man_finds_the_pages_after_pipx_install(tmp_path, wheel, pipx_version):
    """With pipx >= 1.5 man finds the pages at once; with Debian's 1.1.0 after the
    README's one line."""
    need_man()
    tools = tmp_path / "pipx-venv"
    subprocess.run([sys.executable, "-m", "venv", str(tools)], check=True)
    pip = [str(tools / "bin" / "pip"), "install", "-q", f"pipx=={pipx_version}"]
    subprocess.run(pip, check=True, capture_output=True, timeout=300)
    home = tmp_path / "home"
    home.mkdir()
    env = {"HOME": str(home), "PATH": f"{home}/.local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    install = [str(tools / "bin" / "pipx"), "install", str(wheel)]
    done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr

    def where(name):
        return subprocess.run(["man", "-w", name], capture_output=True, text=True, env=env)

    if pipx_version == "1.1.0":
        assert where("knockssh").returncode != 0  # what the user saw
        subprocess.run(["sh", "-c", readme_man_fix()], env=env, check=True, timeout=30)
    for name, found in (
        ("knockssh", "man1/knockssh.1"),
        ("knockssh-rotator", "man8/knockssh-rotator.8"),
    ):
        done = where(name)  # man shows a linked page by its target
        assert done.returncode == 0 and done.stdout.strip().endswith(f"/share/man/{found}"), done
        assert os.path.samefile(done.stdout.strip(), home / ".local/share/man" / found)
