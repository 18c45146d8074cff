"""``knockssh check``: what the mapping file says, host by host; never the secret.

The sequence settings are validated with a stand-in secret, and each secret source is
described rather than read: a ``secret_command`` (pass, gpg) is not run, since a
command that prompts would prompt for every host; a file's mode and length are
checked; an environment variable's presence is.
"""

from __future__ import annotations

import os

from . import mapping
from .errors import KnocksshError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


STAND_IN = "stand-in secret, never used for a knock"


def describe_secret(entry: mapping.HostEntry, env: Mapping[str, str]) -> tuple[str, bool]:
    """Where the entry's secret comes from, and whether that looks usable; the secret
    itself is never shown, and a secret_command is never run."""
    from .secrets import ENV_SECRET, resolve

    command = entry.secret_command
    if command is not None:
        return f"from secret_command {command[0]} (not run by check)", True
    try:
        resolve(entry, env)  # a file, a variable or the inline value: nothing runs
    except KnocksshError as exc:  # it names the source
        return str(exc).removeprefix(f"{entry.label}: "), False
    if entry.secret_file is not None:
        return f"from secret_file {entry.secret_file}", True
    if entry.secret_env is not None:
        return f"from secret_env {entry.secret_env}", True
    if entry.secret is not None:
        return "from inline in the mapping file", True
    return f"from ${ENV_SECRET}", True


def report(config: str | None, host: str | None, at: float) -> tuple[str, bool]:
    from rotator import scheme

    from .sequences import settings_for

    hostmap = mapping.load(config, os.environ)
    lines = [f"mapping file: {hostmap.path} ({len(hostmap.entries)} host entries)"]
    entries = hostmap.entries
    if host is not None:
        entry = hostmap.lookup(host)
        if entry is None:
            lines.append(f"{host}: no entry matches: connected without knocking")
            return "\n".join(lines) + "\n", True
        entries = (entry,)
    ok = True
    for entry in entries:
        shown = [p for p in entry.patterns if mapping.matches((p,), host)] if host else []
        head = f"host entry {entry.number}: match {', '.join(entry.patterns)}"
        if shown:
            head += f" (matched by {', '.join(shown)})"
        lines.append(head)
        if entry.static_sequence is not None:
            knocks = scheme.parse_sequence(entry.static_sequence)
            lines.append(f"  static sequence of {len(knocks)} knocks, no rotation")
            continue
        try:
            settings = settings_for(entry, os.environ, secret=STAND_IN)
        except KnocksshError as exc:
            ok = False
            lines.append(f"  error: {exc}")
            continue
        source, fine = describe_secret(entry, os.environ)
        ok = ok and fine
        lines.append(f"  {'' if fine else 'error: '}secret: {source}")
        nxt = scheme.next_boundary(at, settings.period)
        lines.append(
            f"  service {scheme.rotator_name(str(entry.service))}: {settings.length} knocks from "
            f"{len(settings.ports)} ports, entropy {settings.entropy_bits:.1f} bits"
        )
        lines.append(
            f"  period {settings.period}s, current one started at "
            f"{scheme.period_start(at, settings.period)}, next rotation in {int(nxt - at)}s"
        )
        if entry.knock_host:
            lines.append(f"  knocks at {entry.knock_host}")
    return "\n".join(lines) + "\n", ok
