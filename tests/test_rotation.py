"""One rotation, decided purely: which sections change, when a grace twin is due, and
which extra runs the rotator schedules, each at the edges of its windows."""

import pytest

from rotator import knockdconf, rotation, scheme
from rotator.knockdconf import ConfError
from rotator.scheme import Settings

SECRET = "0123456789abc"
SETTINGS = Settings(SECRET, ports=scheme.parse_port_spec("2000-65535"), period=100)
TEXT = "[options]\n  UseSyslog\n[s_ROTATOR]\n  sequence = 1,2,3\n  cmd_timeout = 5\n"
START = 1_000_000  # a period start (a multiple of 100)


def sequence(start, name="s_ROTATOR"):
    return scheme.knockd_form(scheme.derive(SETTINGS, name, start))


def test_a_rotation_names_old_and_new_and_its_period():
    done = rotation.rotate(TEXT, SETTINGS, START + 50)
    assert done.changes == (rotation.Change("s_ROTATOR", "1,2,3", sequence(START)),)
    assert done.sections == ("s_ROTATOR",) and done.period_start == START
    assert done.grace_until is None and knockdconf.GRACE_BEGIN not in done.text
    again = rotation.rotate(done.text, SETTINGS, START + 99)
    assert again.changes == () and again.text == done.text


@pytest.mark.parametrize(
    "grace, after_start, twin",
    [(0, 0, False), (1, 0, True), (1, 1, False), (30, 29, True), (30, 30, False)],
)
def test_the_grace_twin_lives_exactly_grace_seconds(grace, after_start, twin):
    done = rotation.rotate(TEXT, SETTINGS, START + after_start, grace)
    if not twin:
        assert done.grace_until is None and knockdconf.GRACE_BEGIN not in done.text
        return
    assert done.grace_until == START + grace
    assert f"s_ROTATOR until {START + grace}" in done.text
    assert f"sequence = {sequence(START - 100)}" in done.text  # the previous period's
    assert knockdconf.strip_grace(done.text) == rotation.rotate(TEXT, SETTINGS, START).text


def test_two_sections_that_would_share_a_sequence_are_refused_by_name():
    twice = TEXT + "[s_ROTATOR]\n  sequence = 4\n"
    with pytest.raises(ConfError) as caught:
        rotation.rotate(twice, SETTINGS, START)
    assert str(caught.value) == (
        "line 6: rotator sections s_ROTATOR and s_ROTATOR would get the same sequence "
        "(a duplicated section name?)"
    )


def runs(at, grace=0, interval=50):
    return rotation.extra_runs(at, SETTINGS.replace(server_interval=interval), grace)


@pytest.mark.parametrize(
    "at, grace, interval, expected",
    [
        (START + 10, 0, 50, []),  # the next boundary (START + 100) is after the regular run
        (START + 50, 0, 50, []),  # the boundary is the regular run itself
        (START + 51, 0, 50, [START + 100]),
        (START + 51, 1, 50, [START + 100]),  # the next grace ends with the regular run
        (START + 51, 1, 52, [START + 100, START + 101]),
        (START + 51, 2, 52, [START + 100, START + 102]),
        (START + 51, 3, 52, [START + 100]),
        (START, 1, 50, [START + 1]),  # this period's grace still running
        (START + 1, 1, 50, []),  # ... just ended
        (START, 50, 50, []),  # ... ends with the regular run
        (START, 49, 50, [START + 49]),
        (START, 0, 200, [START + 100]),
    ],
)
def test_extra_runs_at_the_edges(at, grace, interval, expected):
    assert runs(at, grace, interval) == expected


def test_phase_and_next_change_without_grace_follow_the_boundaries():
    assert rotation.phase(START, 100) == rotation.Phase(START, False)
    assert rotation.next_change(START, 100) == START + 100
    assert rotation.phase(START + 9, 100, 10) == rotation.Phase(START, True)
    assert rotation.next_change(START + 9, 100, 10) == START + 10
    assert rotation.phase(START + 10, 100, 10) == rotation.Phase(START, False)
    assert rotation.next_change(START + 10, 100, 10) == START + 100
    every_30 = SETTINGS.replace(server_interval=30)
    assert rotation.next_regular_run(1_000_010, every_30) == 1_000_020  # on the 30 s grid


def test_moved_on_tells_a_clock_step_from_a_run_within_its_phase():
    assert not rotation.moved_on(START + 1, START + 99, 100)  # the same period
    assert rotation.moved_on(START + 99, START + 100, 100)  # the boundary passed
    assert rotation.moved_on(START + 50, START - 3600, 100)  # stepped back an hour
    assert rotation.moved_on(START + 5, START + 10, 100, 10)  # the grace ended
    assert not rotation.moved_on(START + 5, START + 9, 100, 10)
