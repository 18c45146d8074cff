"""Which sequences to knock for a host, in order: the current period, then the
previous one, then the next (clock skew, a server that has not rotated yet)."""

from __future__ import annotations

from rotator import scheme

from .errors import KnocksshError
from .secrets import resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .mapping import HostEntry

FALLBACK_OFFSETS = (0, -1, 1)


class Attempt:
    """One sequence to knock and what to call it in messages."""

    __slots__ = ("knocks", "label")

    def __init__(self, label: str, knocks: tuple[scheme.Knock, ...]) -> None:
        self.label = label  # "period 1763784000 (current)" or "static sequence"
        self.knocks = knocks

    def __repr__(self) -> str:
        return f"Attempt({self.label!r}, {len(self.knocks)} knocks)"


def settings_for(entry: HostEntry, env: Mapping[str, str]) -> scheme.Settings:
    try:
        ports = scheme.parse_port_spec(entry.get("ports")) if entry.get("ports") else None
        settings = scheme.settings_from_env(
            env,
            secret=resolve(entry, env),
            length=entry.get("length"),
            ports=ports,
            period=entry.get("period"),
            proto_modulo=entry.get("proto_modulo"),
        )
        scheme.validate(settings)
    except scheme.SchemeError as exc:
        raise KnocksshError(f"{entry.label}: {exc}") from None
    return settings


def attempts(
    entry: HostEntry, env: Mapping[str, str], at: float, offset: int | None = None
) -> list[Attempt]:
    """Sequences to try for ``entry`` at instant ``at``; ``offset`` forces one period."""
    if entry.static_sequence is not None:
        return [Attempt("static sequence", scheme.parse_sequence(entry.static_sequence))]
    settings = settings_for(entry, env)
    service = str(entry.service)
    found = []
    skipped = []
    for off in (offset,) if offset is not None else FALLBACK_OFFSETS:
        start = scheme.period_start(at, settings.period, off)
        name = {0: "current", -1: "previous", 1: "next"}.get(off, f"offset {off:+d}")
        try:
            found.append(
                Attempt(f"period {start} ({name})", scheme.derive(settings, service, start))
            )
        except scheme.SchemeError as exc:
            skipped.append(str(exc))
    if not found:
        raise KnocksshError(f"{entry.label}: {skipped[0]}")
    return found
