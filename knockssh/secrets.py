"""Where a host's shared secret comes from. The secret itself never reaches a message."""

from __future__ import annotations

import os

from rotator import scheme

from .errors import KnocksshError
from .mapping import refuse_if_exposed

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .mapping import HostEntry

ENV_SECRET = "KNOCKD_ROTATOR_SECRET"


def resolve(entry: HostEntry, env: Mapping[str, str]) -> str:
    """The entry's secret, from the one source it names, read by the one rule both
    ends keep (``rotator.secret``); refused naming that source."""
    from rotator.secret import read_secret

    source, raw = _read(entry, env)
    try:
        secret = read_secret(raw, source)
    except scheme.SchemeError as exc:
        raise KnocksshError(f"{entry.label}: {exc}") from None
    if len(secret) < scheme.MIN_SECRET_CHARS:
        raise KnocksshError(
            f"{entry.label}: {source}: the secret must be at least "
            f"{scheme.MIN_SECRET_CHARS} characters long"
        )
    return secret


def _read(entry: HostEntry, env: Mapping[str, str]) -> tuple[str, bytes | str]:
    if entry.secret is not None:
        return "secret", entry.secret
    if entry.secret_file is not None:
        path = os.path.expanduser(entry.secret_file)
        return f"secret_file {path}", _from_file(entry, path)
    if entry.secret_env is not None:
        name = entry.secret_env
        if not env.get(name):
            raise KnocksshError(f"{entry.label}: secret_env: variable {name} is not set")
        return f"secret_env {name}", env[name]
    if entry.secret_command is not None:
        argv = list(entry.secret_command)
        return f"secret_command {argv[0]}", _from_command(entry, argv)
    if env.get(ENV_SECRET):
        return ENV_SECRET, env[ENV_SECRET]
    raise KnocksshError(
        f"{entry.label}: no secret: set secret_file, secret_env, secret_command or secret, "
        f"or export {ENV_SECRET}"
    )


def _from_file(entry: HostEntry, path: str) -> bytes:
    from rotator.files import read_regular
    from rotator.secret import LIMIT

    try:
        data, st = read_regular(path, LIMIT)  # a FIFO is refused, not waited on
    except OSError as exc:
        raise KnocksshError(f"{entry.label}: secret_file {path}: {exc.strerror}") from None
    refuse_if_exposed(path, st.st_mode)
    return data


COMMAND_TIMEOUT = 60.0  # seconds at most; never longer than the entry's connect_timeout


def _from_command(entry: HostEntry, argv: list[str]) -> bytes:
    """The first line ``argv`` prints. It runs in a process group of its own, so that
    at the time limit the whole group goes: a child it left behind would otherwise
    keep our stderr open (``... 2>&1 | cat`` would hang) and run on."""
    import signal
    import subprocess
    import sys

    limit = min(COMMAND_TIMEOUT, entry.connect_timeout)
    where = f"{entry.label}: secret_command {argv[0]}"
    try:
        if sys.version_info >= (3, 11):
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, process_group=0
            )
        else:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, preexec_fn=os.setpgrp
            )
    except OSError as exc:
        raise KnocksshError(f"{where}: {exc.strerror}") from None
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        out = None
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # whatever it left running
        except OSError:
            pass
        proc.wait()
    if out is None:
        raise KnocksshError(f"{where}: no answer within {limit:g}s (the command was stopped)")
    if proc.returncode != 0:
        raise KnocksshError(f"{where} exited with status {proc.returncode}")
    return bytes(out).lstrip(b"\r\n").split(b"\n", 1)[0]  # its first line (pass: then notes)
