"""``knockssh check``: what the mapping file says, host by host; never the secret."""

from __future__ import annotations

import os

from . import mapping
from .errors import KnocksshError


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
            settings = settings_for(entry, os.environ)
        except KnocksshError as exc:
            ok = False
            lines.append(f"  error: {exc}")
            continue
        nxt = scheme.next_boundary(at, settings.period)
        lines.append(
            f"  service {scheme.rotator_name(str(entry.service))}: {settings.length} knocks from "
            f"{len(settings.ports)} ports, entropy {settings.entropy_bits:.1f} bits"
        )
        lines.append(
            f"  period {settings.period}s, current one started at "
            f"{scheme.period_start(at, settings.period)}, next rotation in {int(nxt - at)}s"
        )
        if entry.get("knock_host"):
            lines.append(f"  knocks at {entry.get('knock_host')}")
    return "\n".join(lines) + "\n", ok
