"""``knockssh add HOST``: a host entry in the mapping file, its secret in a private
file beside it, and the ssh_config lines ssh still needs."""

from __future__ import annotations

import json
import os

from rotator import scheme

from . import mapping
from .errors import KnocksshError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


def secret_path(hosts_toml: str, host: str) -> str:
    """Where ``host``'s secret is kept: secrets/ beside the mapping file, one file
    per host, its name the host's with anything unusual replaced."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in ".-_") else "_" for c in host)
    return os.path.join(os.path.dirname(hosts_toml), "secrets", f"{safe.lstrip('.')}.secret")


def checked_secret(text: str, source: str) -> str:
    """The secret as read (one line, the newline dropped), refused as the scheme refuses
    it, naming ``source``."""
    secret = text[:-1] if text.endswith("\n") else text
    secret = secret.rstrip("\r")
    if not secret.strip():
        raise KnocksshError(f"{source}: the secret is empty or blank")
    if "\n" in secret:
        raise KnocksshError(f"{source}: the secret must be one line")
    try:
        ports = scheme.parse_port_spec(scheme.DEFAULTS["PORTS"])
        scheme.validate(scheme.Settings(secret, ports=ports), {"secret": source})
    except scheme.SchemeError as exc:
        raise KnocksshError(str(exc)) from None
    return secret


def entry_text(host: str, service: str, secret_file: str) -> str:
    """A ``[[host]]`` entry; JSON's string quoting is valid TOML for these."""
    return (
        f"\n[[host]]\nmatch = [{json.dumps(host)}]\nservice = {json.dumps(service)}\n"
        f"secret_file = {json.dumps(secret_file)}\n"
    )


def check_host(host: str) -> str:
    """A host name fit for a ``match`` list and an ssh_config ``Host`` line."""
    bad = [c for c in host if c.isspace() or not c.isprintable() or c in "\"'\\#,="]
    if not host or bad:
        raise KnocksshError(f"refusing host name {host!r}: a name or address, no spaces or quotes")
    return host


def add(
    host: str, service: str, secret: str, cli_config: str | None, env: Mapping[str, str]
) -> tuple[str, str]:
    """Append the entry (creating the mapping file 0600 if needed, keeping every byte
    already in it) and store the secret; the mapping file's and the secret's paths.
    Everything is checked before anything is written."""
    check_host(host)
    scheme.utf8(service, "--service")
    path, _ = mapping.config_path(cli_config, env)
    old = b""
    mode = 0o600
    if os.path.exists(path):
        existing = mapping.load(path, {})
        found = existing.lookup(host)
        if found is not None:
            raise KnocksshError(f"{path}: {host} already has an entry (host entry {found.number})")
        with open(path, "rb") as f:
            old = f.read()
            mode = os.fstat(f.fileno()).st_mode & 0o777
    stored = secret_path(path, host)
    addition = entry_text(host, service, stored).encode()
    if not old:
        addition = addition.lstrip(b"\n")
    elif not old.endswith(b"\n"):
        addition = b"\n" + addition
    new = old + addition
    mapping.parse(new, path, 0o600)  # what we would write must read back
    os.makedirs(os.path.dirname(path) or ".", mode=0o700, exist_ok=True)  # ours: private
    _store_secret(stored, secret)
    try:
        _write(path, new, mode)
    except KnocksshError:
        os.unlink(stored)  # nothing half done
        raise
    return path, stored


def _store_secret(path: str, secret: str) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise KnocksshError(f"{path} exists: left as it was (remove it to start over)") from None
    except OSError as exc:
        raise KnocksshError(f"{path}: cannot write: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")


def _write(path: str, data: bytes, mode: int) -> None:
    """``data`` to ``path`` through a temporary file beside it, renamed over it."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, mode=0o700, exist_ok=True)
    temp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.new")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except OSError as exc:
        if os.path.exists(temp):
            os.unlink(temp)
        raise KnocksshError(f"{path}: cannot write: {exc.strerror}") from None


def ssh_uses_knockssh(host: str, ssh_args: tuple[str, ...] = ()) -> bool | None:
    """Does ``ssh -G HOST`` give a ProxyCommand running knockssh? None if ssh cannot tell."""
    from .wrappers import ssh_config_of

    config = ssh_config_of([*ssh_args, host])
    if not config:
        return None
    return "knockssh" in config.get("proxycommand", "")
