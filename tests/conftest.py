import os

import pytest
from helpers import SECRET


@pytest.fixture
def scheme_env(monkeypatch):
    """A clean KNOCKD_ROTATOR_* environment with a valid secret."""
    for key in list(os.environ):
        if key.startswith("KNOCKD_ROTATOR_") or key == "KNOCKSSH_CONFIG":
            monkeypatch.delenv(key)
    monkeypatch.setenv("KNOCKD_ROTATOR_SECRET", SECRET)
    return os.environ
