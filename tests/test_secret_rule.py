"""One rule reads a secret at both ends: what a user pasted, however an editor
saved it, gives the same sequence to the client and to the rotator."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers import ROOT, ROTATOR_CODE, SECRET

from knockssh import mapping, secrets
from rotator import scheme
from rotator.secret import read_secret

FORMS = {
    "plain": SECRET.encode(),
    "newline": SECRET.encode() + b"\n",
    "crlf": SECRET.encode() + b"\r\n",
    "trailing blank lines": SECRET.encode() + b"\n\n\r\n\n",
    "bom": b"\xef\xbb\xbf" + SECRET.encode() + b"\n",
    "spaces": b"  " + SECRET.encode() + b" \t\n",
}
AT = 1_700_000_000


def rotator_sequence(tmp_path, credential: bytes) -> str:
    """The sequence the rotator writes, its secret from a systemd credential."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "secret").write_bytes(credential)
    conf = tmp_path / "knockd.conf"
    conf.write_text("[ssh_ROTATOR]\n  sequence = 1:tcp\n")
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": ROOT, "CREDENTIALS_DIRECTORY": str(creds)}
    code = ROTATOR_CODE
    done = subprocess.run(
        [sys.executable, "-c", code, "--config", str(conf), "--dry-run", "--at", str(AT)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split(" -> ")[1].split()[0]


@pytest.mark.parametrize("form", FORMS, ids=list(FORMS))
def test_both_ends_derive_the_same_sequence(tmp_path, form):
    data = FORMS[form]
    stored = tmp_path / "client.secret"
    stored.write_bytes(data)
    stored.chmod(0o600)
    entry = mapping.HostEntry("host entry 1", 1, ("h",), {"secret_file": str(stored)})
    client = secrets.resolve(entry, {})
    assert client == SECRET
    start = scheme.period_start(AT, 21600)
    settings = scheme.settings_from_env({"KNOCKD_ROTATOR_SECRET": client})  # the defaults
    knocks = scheme.derive(settings, "ssh", start)
    assert scheme.knockd_form(knocks) == rotator_sequence(tmp_path, data)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (SECRET.encode() + b"\nsecond line\n", "one line"),
        (SECRET.encode()[:5] + b"\x00" + SECRET.encode(), "control character"),
        (SECRET.encode()[:5] + b"\t" + SECRET.encode(), "control character"),
        (b"\xff" + SECRET.encode(), "UTF-8"),
        (b" \r\n\n", "empty or blank"),
    ],
)
def test_what_the_rule_refuses_names_the_source(data, why):
    with pytest.raises(scheme.SchemeError) as refused:
        read_secret(data, "FILE")
    assert str(refused.value).startswith("FILE: ") and why in str(refused.value)
