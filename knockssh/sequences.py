"""The sequences a host entry knocks at an instant: its settings (with the secret,
which may mean reading a file or running a command) and the plan's choice of
periods."""

from __future__ import annotations

from rotator import scheme

from . import plan
from .errors import KnocksshError
from .secrets import resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from .mapping import HostEntry


def settings_for(
    entry: HostEntry, env: Mapping[str, str], secret: str | None = None
) -> scheme.Settings:
    """The entry's settings, validated with the scheme's own rules; ``secret`` stands
    in for the real one (read only when None), for a check that must not run
    ``secret_command``."""
    try:
        ports = scheme.parse_port_spec(entry.ports) if entry.ports else None
        settings = scheme.settings_from_env(
            env,
            secret=resolve(entry, env) if secret is None else secret,
            length=entry.length,
            ports=ports,
            period=entry.period,
            proto_modulo=entry.proto_modulo,
        )
        from_env = {k: v for k, v in scheme.ENV_NAMES.items() if getattr(entry, k, None) is None}
        scheme.validate(settings, from_env)
    except scheme.SchemeError as exc:
        raise KnocksshError(f"{entry.label}: {exc}") from None
    return settings


def attempts_for(
    entry: HostEntry, env: Mapping[str, str], at: float, offset: int | None = None
) -> tuple[list[plan.Attempt], int | None]:
    """The sequences to try for ``entry`` at instant ``at``, current first, and the
    period (None for a static sequence); ``offset`` forces one period."""
    if entry.static_sequence is not None:
        return [plan.Attempt("static sequence", scheme.parse_sequence(entry.static_sequence))], None
    settings = settings_for(entry, env)
    offsets = plan.offsets_to_knock(at, settings.period, entry.clock_skew, offset)
    found, skipped = plan.rotated_attempts(settings, str(entry.service), offsets, at)
    if not found and offset is None and skipped:
        # the current sequence holds port 65536 (the legacy default list): the
        # server then keeps the previous one; the next is never sent early
        found, more = plan.rotated_attempts(settings, str(entry.service), (-1,), at)
        skipped += more
    if not found:
        raise KnocksshError(f"{entry.label}: {skipped[0]}")
    return found, settings.period
