"""One rotation of a knockd.conf, decided purely: text, settings and instant in,
new text and the list of changes out."""

from __future__ import annotations

from typing import NamedTuple

from . import knockdconf
from .knockdconf import ConfError
from .scheme import SUFFIX, Settings, derive, knockd_form, next_boundary, period_start

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping


class Change(NamedTuple):
    section: str
    old: str
    new: str


class Rotation(NamedTuple):
    text: str
    changes: tuple[Change, ...]
    sections: tuple[str, ...]  # every rotator section, changed or not
    period_start: int
    grace_until: int | None  # set while a grace twin is in the text


def rotate(
    text: str,
    settings: Settings,
    at: float,
    grace: int = 0,
    secrets: Mapping[str, str] | None = None,
) -> Rotation:
    """The knockd.conf text with every rotator section on the period holding ``at``.
    A section whose service has a secret of its own in ``secrets`` (a client's door)
    is derived with it, every other with the settings' secret.

    Raises ConfError (bad file) or SchemeError (bad settings, or a period whose
    sequence cannot be knocked); nothing is to be written then.
    """
    base = knockdconf.strip_grace(text)
    sections = knockdconf.rotator_sections(knockdconf.parse(base))
    start = period_start(at, settings.period)
    own = secrets or {}

    def settings_of(name: str) -> Settings:
        secret = own.get(name[: -len(SUFFIX)])
        return settings if secret is None else settings.replace(secret=secret)

    wanted: dict[str, str] = {}
    owner: dict[str, str] = {}
    for section in sections:
        value = knockd_form(derive(settings_of(section.name), section.name, start))
        if value in owner:
            raise ConfError(
                section.line + 1,
                f"rotator sections {owner[value]} and {section.name} would get the same "
                "sequence (a duplicated section name?)",
            )
        owner[value] = section.name
        wanted[section.name] = value
    new_text = knockdconf.rewrite(base, wanted)
    grace_until = None
    if grace > 0 and at - start < grace and sections:
        grace_until = start + grace
        twins = {
            s.name: knockd_form(derive(settings_of(s.name), s.name, start - settings.period))
            for s in sections
        }
        new_text = knockdconf.add_grace(new_text, twins, grace_until)
    changes = tuple(
        Change(s.name, s.find("SEQUENCE")[0].value, wanted[s.name])
        for s in sections
        if s.find("SEQUENCE")[0].value != wanted[s.name]
    )
    return Rotation(new_text, changes, tuple(s.name for s in sections), start, grace_until)


def extra_runs(at: float, settings: Settings, grace: int = 0) -> list[int]:
    """Instants before the next regular run (``at + server_interval``) at which the
    rotator must run again: the next period boundary, and the end of a grace window."""
    horizon = at + settings.server_interval
    boundary = next_boundary(at, settings.period)
    runs = []
    current_grace_end = period_start(at, settings.period) + grace
    if grace > 0 and at < current_grace_end < horizon:
        runs.append(current_grace_end)
    if boundary < horizon:
        runs.append(boundary)
        if grace > 0 and boundary + grace < horizon:
            runs.append(boundary + grace)
    return runs


def next_regular_run(at: float, settings: Settings) -> int:
    """The next regular run: the next multiple of ``server_interval`` after ``at``.
    On that grid, every run made in between names the same instant, so the runs
    scheduled for it (one unit per instant) fold into one, however often the
    rotator is started by hand."""
    return period_start(at, settings.server_interval, 1)


class Phase(NamedTuple):
    """What knockd.conf should say at an instant: the period's start, and whether the
    previous period's grace twin is still due. A follower rotates when it changes."""

    period_start: int
    in_grace: bool


def phase(at: float, period: int, grace: int = 0) -> Phase:
    start = period_start(at, period)
    return Phase(start, at < start + grace)


def moved_on(started: float, now: float, period: int, grace: int = 0) -> bool:
    """Does ``now`` hold another phase than ``started`` did (a clock step, or a run
    that went past a boundary)? Then the run rotates again."""
    return phase(started, period, grace) != phase(now, period, grace)


def next_change(at: float, period: int, grace: int = 0) -> int:
    """The first instant after ``at`` at which phase() changes: the grace's end when
    it is still running, else the next boundary."""
    start = period_start(at, period)
    if at < start + grace:
        return start + grace
    return next_boundary(at, period)
