"""What a release is made of: ``python -m build``'s sdist and wheel (twine-checked,
and a wheel built again from the sdist lacks nothing), and the Debian package's
version in step with the code's. The Debian package itself is built, linted,
installed and purged in a booted guest (tests/lab/test_quick_start.py)."""

import os
import subprocess
import sys
import zipfile

import pytest
from helpers import ROOT

from rotator.version import VERSION

WHEEL_MUST_HOLD = (
    "knockssh/cli.py",
    "rotator/units/knockssh-rotator.service",
    f"knockssh-{VERSION}.data/scripts/knockssh",
    f"knockssh-{VERSION}.data/data/share/man/man1/knockssh.1",
    f"knockssh-{VERSION}.data/data/share/man/man8/knockssh-rotator.8",
)


def build(*args, out):
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    build(ROOT, out=out)
    return out


def test_sdist_and_wheel_pass_twine_check(dist):
    made = sorted(os.listdir(dist))
    assert made == [f"knockssh-{VERSION}-py3-none-any.whl", f"knockssh-{VERSION}.tar.gz"]
    done = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *(str(dist / m) for m in made)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.count("PASSED") == 2, done.stdout + done.stderr


def test_a_wheel_from_the_sdist_lacks_nothing(dist, tmp_path):
    """pip, pipx and distributions build from the sdist: what it leaves out, they lack."""
    again = tmp_path / "again"
    build("--wheel", str(dist / f"knockssh-{VERSION}.tar.gz"), out=again)
    for wheel in (dist / f"knockssh-{VERSION}-py3-none-any.whl", *again.glob("*.whl")):
        names = set(zipfile.ZipFile(wheel).namelist())
        assert [m for m in WHEEL_MUST_HOLD if m not in names] == [], wheel


def test_the_debian_version_is_the_codes():
    with open(os.path.join(ROOT, "debian", "changelog")) as f:
        first = f.readline()
    assert first.startswith(f"knockssh ({VERSION}) "), first
