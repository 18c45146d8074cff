"""The knock plan, pure: which periods, which packets clear a stale attempt, which
step comes next. No network, no clock, no mocks."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from knockd_model import Knockd

from knockssh import plan
from rotator import scheme
from rotator.scheme import Knock, Settings, parse_port_spec

P = 21600
SKEW = 300


def offsets(at, skew=SKEW, offset=None):
    return plan.offsets_to_knock(at, P, skew, offset)


def test_far_from_a_boundary_only_the_current_period():
    assert offsets(10 * P + P / 2) == [0]
    assert offsets(10 * P + SKEW + 1) == [0]
    assert offsets(11 * P - SKEW - 1) == [0]


def test_near_a_boundary_the_neighbour_on_that_side_only():
    assert offsets(11 * P - 100) == [0, 1]  # the next period only 100 s before its start
    assert offsets(10 * P + 100) == [0, -1]  # a server up to ~250 s late is still on it
    assert offsets(11 * P - SKEW) == [0, 1]


def test_a_short_period_within_the_skew_both_sides_nearer_first():
    assert plan.offsets_to_knock(1000 * 30 + 10, 30, SKEW, None) == [0, -1, 1]
    assert plan.offsets_to_knock(1000 * 30 + 20, 30, SKEW, None) == [0, 1, -1]


def test_skew_zero_and_forced_offset():
    assert offsets(11 * P - 1, skew=0) == [0]
    assert offsets(11 * P - 1, offset=-3) == [-3]
    assert offsets(10 * P + P / 2, offset=1) == [1]


def test_no_sequence_before_its_time():
    """Whatever the instant, a later period is knocked only within SKEW of its start."""
    for at in range(10 * P, 11 * P, 97):
        for off in offsets(at):
            start = (at // P + off) * P
            assert start - at <= SKEW


def test_seconds_to_boundary():
    assert plan.seconds_to_boundary(10 * P + 5, P) == 5
    assert plan.seconds_to_boundary(11 * P - 7, P) == 7


def test_rotated_attempts_label_and_derive():
    settings = Settings("0123456789abc", 10, parse_port_spec("2000-65535"), P)
    found, skipped = plan.rotated_attempts(settings, "ssh", [0, 1], 10 * P + 5)
    assert [a.label for a in found] == [f"period {10 * P} (current)", f"period {11 * P} (next)"]
    assert skipped == [] and found[0].knocks != found[1].knocks


# -- clearing -------------------------------------------------------------


def seq(*ports):
    return plan.Attempt("s", tuple(Knock(p) for p in ports))


def stale_then_knock(doors, stage, clear, door=0):
    """knockd holds an attempt `stage` knocks into `door`; we clear, then knock door 0."""
    model = Knockd(doors).send([*doors[door][:stage], *clear])
    model.opened.clear()  # clearing may complete an attempt one knock from done
    return model.send(doors[0])


def test_one_packet_usually_clears():
    attempt = seq(2001, 2002, 2003, 2004, 2005)
    assert plan.clearing_knocks([attempt]) == (Knock(2005),)


@pytest.mark.parametrize("stage", range(0, 5))
def test_after_clearing_the_sequence_opens_the_door(stage):
    attempt = seq(2001, 2002, 2003, 2004, 2005)
    clear = plan.clearing_knocks([attempt])
    assert stale_then_knock([attempt.knocks], stage, clear).opened == [0]


@pytest.mark.parametrize("stage", range(1, 5))
def test_without_clearing_a_stale_attempt_costs_the_round(stage):
    """Why clearing exists: the first knock only fails the stale attempt."""
    attempt = seq(2001, 2002, 2003, 2004, 2005)
    assert stale_then_knock([attempt.knocks], stage, ()).opened == []


def test_repeated_last_port_needs_a_pair():
    attempt = seq(2001, 2005, 2003, 2005, 2005)  # the last knock is also knock 2 and 4
    clear = plan.clearing_knocks([attempt])
    assert len(clear) == 2 and Knock(2001) not in clear
    for stage in range(5):
        assert stale_then_knock([attempt.knocks], stage, clear).opened == [0], stage


def test_neighbouring_sequences_are_cleared_too_and_never_started():
    current, nxt = seq(2001, 2002, 2003, 2004, 2005), seq(3001, 2005, 3003, 3004, 3005)
    clear = plan.clearing_knocks([current, nxt])
    doors = [current.knocks, nxt.knocks]
    assert not set(clear) & {current.knocks[0], nxt.knocks[0]}
    for door in range(2):
        for stage in range(5):
            assert 0 in stale_then_knock(doors, stage, clear, door).opened, (door, stage)


def test_nothing_to_clear_with_a_single_knock():
    assert plan.clearing_knocks([seq(7000)]) == ()


knock_lists = st.lists(st.integers(2000, 2012), min_size=5, max_size=12)


@given(knock_lists, st.data())
def test_clearing_always_leaves_knockd_ready(ports, data):
    """For any sequence (repeats included) and any stale stage, clear + knock opens
    the door, or no clearing was offered because none provably works."""
    attempt = seq(*ports)
    clear = plan.clearing_knocks([attempt])
    if not clear:
        return
    stage = data.draw(st.integers(0, len(ports) - 1))
    model = stale_then_knock([attempt.knocks], stage, clear)
    assert model.opened == [0]


def test_clearing_is_found_for_typical_sequences():
    import random

    rng = random.Random(7)
    for _ in range(200):
        attempt = seq(*(rng.randrange(2000, 65536) for _ in range(10)))
        assert plan.clearing_knocks([attempt]), attempt


# -- steps ----------------------------------------------------------------


def run(n, timeout, outcomes, rand=0.5, waited_at=(), path=plan.UNKNOWN, knocks=10):
    """Drive next_step as the client does, each step taking its whole window
    (plus its pause and its knocking) and ending with the next of ``outcomes``."""
    history, elapsed, steps = [], 0.0, []
    outcomes = iter(outcomes)
    while True:
        waited = len(history) in waited_at
        step = plan.next_step(n, timeout, elapsed, history, rand, waited, path, knocks)
        if step is None:
            return steps
        steps.append(step)
        sending = knocks * step.gap if step.kind == plan.KNOCK else 0
        elapsed += step.pause + sending + step.window
        history.append((step.kind, next(outcomes, plan.TIMED_OUT)))


def test_first_round_fast_later_rounds_paused_wider_and_spaced():
    steps = run(1, 10, [])
    assert steps[0].pause == 0 and steps[0].gap == plan.FAST_SPACING
    assert steps[0].window == plan.window(0, plan.UNKNOWN)
    assert all(s.kind == plan.KNOCK for s in steps)
    assert all(s.pause > 0 for s in steps[1:])
    windows = [s.window for s in steps[:-1]]
    assert windows == sorted(windows) and len(set(windows)) == len(windows)
    gaps = [s.gap for s in steps]
    assert gaps[1:4] == list(plan.SPACING_STEPS) and max(gaps) == plan.SPACING_STEPS[-1]
    spent = sum(s.pause + 10 * s.gap + s.window for s in steps)
    assert spent <= 10 + 1e-9


def test_every_round_fits_in_the_timeout_with_its_knocking():
    for timeout in (0.3, 1, 2.5, 6, 10):
        steps = run(2, timeout, [], rand=0.99)
        assert sum(s.pause + 10 * s.gap + s.window for s in steps) <= timeout + 1e-9


def test_the_window_grows_with_the_round_trip():
    lan, mobile = plan.PathInfo(rtt=0.0002), plan.PathInfo(rtt=0.06, jitter=0.06)
    assert plan.window(0, lan) == plan.window(5, lan) == plan.MIN_WINDOW
    assert plan.window(0, mobile) == pytest.approx(0.15 + 4 * 0.06 + 2 * 0.06)
    unknown = [plan.window(r, plan.UNKNOWN) for r in range(30)]
    assert unknown == sorted(unknown) and unknown[-1] == plan.MAX_WINDOW


def test_where_knocks_go_unanswered_the_first_round_starts_from_what_got_through():
    """A server that drops closed ports never answers a knock, so disorder cannot
    show early: there the first round starts from the spacing that last got through
    on this network, then widens; where knocks are answered, it goes fast."""
    silent = plan.PathInfo(rtt=0.1, spacing=0.02, age=0)
    assert [s.gap for s in run(1, 10, [], path=silent)[:4]] == [0.02, 0.05, 0.1, 0.1]
    assert {s.gap for s in run(1, 10, [], path=plan.PathInfo(spacing=0.2, age=0))} == {0.2}
    answered = plan.PathInfo(rtt=0.1, spacing=0.02, age=0, jitter=0.04)
    gaps = [s.gap for s in run(1, 10, [], path=answered)]
    assert gaps[0] == plan.FAST_SPACING and gaps[1] > plan.JITTER_FACTOR * 0.04


def test_a_remembered_spacing_halves_every_ten_minutes_and_then_is_forgotten():
    """A spacing a bad network needed is a starting point only: it halves every
    ten minutes, so it does not outlive that network (and a fast round that gets
    through is what is remembered next)."""
    mobile = 0.1
    first = [
        plan.spacing(0, plan.PathInfo(rtt=0.03, spacing=mobile, age=age))
        for age in (0, 600, 1200, 3600)
    ]
    assert first == [pytest.approx(0.1), pytest.approx(0.05), pytest.approx(0.025), 0.001]
    assert plan.remembered_spacing(plan.PathInfo(spacing=0.001, age=0)) is None
    assert plan.remembered_spacing(plan.PathInfo(spacing=0.1)) is None  # age unknown: none
    later = [s.gap for s in run(1, 10, [], path=plan.PathInfo(rtt=0.03, spacing=0.1, age=600))]
    assert later[:3] == [pytest.approx(0.05), 0.1, 0.1]  # then wider than what failed


def test_knocks_go_wider_apart_than_the_measured_jitter_after_a_failed_round():
    mobile = plan.PathInfo(rtt=0.08, jitter=0.06)
    gaps = [s.gap for s in run(1, 10, [], path=mobile)]
    wide = plan.JITTER_FACTOR * 0.06 + 0.001
    assert gaps[0] == plan.FAST_SPACING  # the path may keep order: no spacing needed
    assert gaps[1] == pytest.approx(wide) and gaps[2] > wide
    assert max(gaps) <= plan.MAX_GROWTH * wide


def test_the_first_round_is_fast_whatever_was_remembered():
    """A path that keeps order is tried fast first, whatever another network or an
    earlier hour needed: a path that reorders shows it in its answers at once."""
    for path in (
        plan.PathInfo(rtt=0.05, spacing=0.001, jitter=0.015, age=0),  # wan: jittery, in order
        plan.PathInfo(rtt=0.08, spacing=0.05, jitter=0.07, age=0),  # mobile, an hour ago
        plan.PathInfo(rtt=0.0001, spacing=0.08, jitter=0.0004, age=0),  # spaced by bad luck
    ):
        first = run(1, 10, [], path=path)[0]
        assert first.gap == plan.FAST_SPACING and first.hasty, path


def test_a_reordered_round_is_followed_at_once_by_a_spaced_one():
    """Answers out of order end the fast round early (hasty); the next round goes
    without a random pause (the path, not another knocker, broke the sequence),
    once the late knocks can have arrived (the spread of the round trips), spaced
    wider than the jitter those answers showed. Only the first round is hasty: a
    spaced round waits for its door."""
    mobile = plan.PathInfo(rtt=0.08, jitter=0.06)
    steps = run(1, 10, [plan.REORDERED], path=mobile, rand=0.99)
    assert steps[0].hasty and not any(s.hasty for s in steps[1:])
    assert steps[1].pause == 0.06 and steps[1].gap > plan.JITTER_FACTOR * 0.06  # a drain
    assert steps[2].pause > 0.3  # a spaced round that failed: maybe another knocker
    two = run(2, 10, [plan.REORDERED, plan.REORDERED], path=mobile)
    assert [s.hasty for s in two[:3]] == [True, True, False]
    assert two[1].pause == two[2].pause == 0.06  # each lets the stragglers by
    assert not run(1, 10, [], path=plan.PathInfo(fixed=0.001))[0].hasty  # as the user set it
    assert not run(1, 10, [], knocks=1)[0].hasty  # one knock cannot be out of order


def test_answers_out_of_order_are_told_from_answers_read_together():
    assert not plan.out_of_order([])
    assert not plan.out_of_order([(0.010, 0), (0.011, 1), (0.013, 2)])  # in order
    assert plan.out_of_order([(0.010, 1), (0.020, 0)])  # the first knock's answer came later
    assert not plan.out_of_order([(0.010, 1), (0.010, 0)])  # one poll: no order to tell
    assert not plan.out_of_order([(0.0100, 1), (0.0105, 0)])  # closer than REORDER_SLACK
    assert plan.out_of_order([(0.01, 0), (0.02, 3), (0.03, 1), (0.04, 2)])  # 1 after 3
    assert not plan.out_of_order([(0.01, 0), (0.03, 2)])  # a lost answer is no disorder


@given(st.lists(st.floats(0, 1), min_size=2, max_size=12))
def test_answers_in_the_order_sent_are_never_out_of_order(times):
    assert not plan.out_of_order([(t, i) for i, t in enumerate(sorted(times))])


def test_a_path_that_only_loses_keeps_its_knocks_fast():
    lossy = plan.PathInfo(rtt=0.02, spacing=0.1, jitter=0.0005, age=0)  # spacing: an old lucky one
    steps = run(1, 10, [], path=lossy)
    assert all(s.gap < 0.003 for s in steps) and len(steps) >= 15  # many short rounds


def test_a_fixed_spacing_is_used_as_given():
    steps = run(1, 10, [], path=plan.PathInfo(fixed=0.0))
    assert {s.gap for s in steps} == {0.0}


def test_a_round_is_a_collision_only_when_nothing_was_lost_or_reordered():
    t = plan.TIMED_OUT
    assert plan.round_outcome(t, 11, 11, 0.0004, 0.001) == plan.COLLIDED  # a quiet lan
    assert plan.round_outcome(t, 11, 10, 0.0004, 0.001) == t  # a knock lost
    assert plan.round_outcome(t, 11, 11, 0.02, 0.001) == t  # a spread that reorders
    assert plan.round_outcome(t, 11, 11, 0.02, 0.05) == plan.COLLIDED  # spaced wider than it
    assert plan.round_outcome(t, 11, 11, None, 0.001) == t  # no measure
    assert plan.round_outcome(plan.REFUSED, 11, 11, 0.0, 0.001) == plan.REFUSED


def test_collisions_back_off_like_ethernet_and_losses_do_not():
    """Rounds whose every knock was answered and still no door collided with another
    knocker: the pause's range doubles from the second on (up to 8 times), the
    spacing stays fast. Rounds that lost knocks keep short pauses."""
    assert [plan.backoff(n) for n in range(0, 7)] == [1.0, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    lan = plan.PathInfo(rtt=0.0002, jitter=0.0001)
    steps = run(1, 30, [plan.COLLIDED] * 10, rand=0.5, path=lan)
    pauses = [s.pause for s in steps[1:6]]
    limit = plan.pause_limit(10, plan.FAST_SPACING)
    assert pauses == [pytest.approx(0.5 * limit * f) for f in (1, 2, 4, 8, 8)]
    assert {s.gap for s in steps[:10]} == {plan.FAST_SPACING}  # collisions: no wider spacing
    lossy = run(1, 30, [plan.TIMED_OUT] * 10, rand=0.5, path=lan)
    assert [s.pause for s in lossy[1:6]] == [pytest.approx(0.5 * limit)] * 5


def test_the_pause_follows_the_random_draw_and_the_sequence_length():
    assert run(1, 10, [], rand=0.0)[1].pause == 0
    second = run(1, 10, [], rand=0.5)[1]
    assert second.pause == pytest.approx(0.5 * plan.pause_limit(10, second.gap))
    assert plan.pause_limit(10, 0.001) == plan.MAX_PAUSE
    assert plan.pause_limit(10, 0.1) == pytest.approx(1.0)  # a sequence's own length


def test_rounds_go_over_the_periods_in_order_pausing_only_between_rounds():
    steps = run(2, 10, [])
    assert [s.attempt for s in steps[:6]] == [0, 1, 0, 1, 0, 1]
    assert [s.round for s in steps[:4]] == [0, 0, 1, 1]
    assert steps[1].pause == 0 and steps[2].pause > 0 and steps[3].pause == 0


def test_refused_after_knocking_ends_at_once():
    steps = run(2, 10, [plan.REFUSED])
    assert len(steps) == 1
    assert len(run(1, 10, [plan.TIMED_OUT, plan.UNREACHABLE])) == 2


def test_waiting_for_a_sibling_tries_its_door_first():
    steps = run(1, 10, [], waited_at=(0,))
    assert steps[0].kind == plan.PROBE and steps[0].window == plan.probe_window(None)
    assert steps[1].kind == plan.KNOCK and steps[1].pause == 0 and steps[1].round == 0
    fast = run(1, 10, [], waited_at=(0,), path=plan.PathInfo(rtt=0.0001))
    assert fast[0].window == plan.MIN_PROBE  # a few round trips of a fast path


def test_a_refused_probe_does_not_end_the_plan():
    """A door refusing before we knocked may be a REJECT firewall: knock anyway."""
    steps = run(1, 10, [plan.REFUSED], waited_at=(0,))
    assert [s.kind for s in steps[:2]] == [plan.PROBE, plan.KNOCK]


def test_gives_up_when_the_time_is_spent():
    assert plan.next_step(1, 10, 10 - plan.MIN_STEP / 2, [], 0.5) is None
    last = run(1, 3, [])[-1]
    assert last.window <= 3


def test_a_short_timeout_still_knocks_once():
    steps = run(1, 0.2, [])
    assert len(steps) == 1 and steps[0].window == pytest.approx(0.2 - 10 * plan.FAST_SPACING)


def test_the_door_is_tried_first_only_when_a_sibling_got_through_recently():
    assert plan.try_door_first(0.0) and plan.try_door_first(plan.RECENTLY_OPENED - 0.01)
    assert not plan.try_door_first(plan.RECENTLY_OPENED)
    assert not plan.try_door_first(float("inf"))  # nobody ever did


def failure(ends, at=1_700_000_000.0, period=21600, skew=300.0):
    return plan.Failure(
        "h port 22", 22, 10.0, "service ssh", "period 1", ends, period, at, skew, "host entry 1"
    )


def test_a_failure_says_what_can_be_told_of_its_cause():
    refused = plan.failure_message(failure([("192.0.2.1", plan.REFUSED)]))
    assert "connection refused at 192.0.2.1" in refused and "nothing listens on port 22" in refused
    start = 1_700_000_000 // 21600 * 21600
    near = plan.failure_message(failure([("192.0.2.1", "timed out")], at=start + 100))
    assert "a period boundary is 100s away, so a clock off by that much" in near
    far = plan.failure_message(failure([("192.0.2.1", "timed out")], at=start + 5000))
    assert "only a clock off by more than that" in far
    static = plan.failure_message(failure([("192.0.2.1", "timed out")], period=None))
    assert "clock" not in static and "check the secret" in static


# -- exact values and messages at the edges (the mutation run found them loose) ----

K = [Knock(port, "tcp") for port in range(0, 5)]
SECRET = "0123456789abc"


def test_exact_failure_messages():
    two = [("192.0.2.1", plan.REFUSED), ("2001:db8::1", plan.REFUSED)]
    assert plan.failure_message(failure(two)) == (
        "h port 22: connection refused at 192.0.2.1, 2001:db8::1 after knocking service ssh "
        "(period 1): the door opened but nothing listens on port 22; is sshd running? "
        "(host entry 1)"
    )
    mixed = [("192.0.2.1", plan.REFUSED), ("2001:db8::1", plan.TIMED_OUT)]
    assert plan.failure_message(failure(mixed, period=None)) == (
        "h port 22: no connection within 10s after knocking service ssh (period 1) at "
        "192.0.2.1 (refused), 2001:db8::1 (timed out); check the secret, that knockd "
        "listens on the server's interface, and the firewall rules (host entry 1)"
    )
    start = 1_700_000_000 // 21600 * 21600
    at_skew = plan.failure_message(failure([("a", plan.TIMED_OUT)], at=start + 300.0))
    assert "; a period boundary is 300s away, so a clock off by that much could be the " in at_skew
    past = plan.failure_message(failure([("a", plan.TIMED_OUT)], at=start + 300.5))
    assert "; the nearest period boundary is 300s away, so only a clock off by more" in past


def test_rotated_attempts_name_far_offsets_and_keep_why_one_was_skipped():
    settings = scheme.Settings(SECRET, ports=scheme.parse_port_spec("2000-65535"), period=100)
    found, skipped = plan.rotated_attempts(settings, "ssh", [2, -3], 1000.0)
    assert [a.label for a in found] == ["period 1200 (offset +2)", "period 700 (offset -3)"]
    assert skipped == []
    edge = scheme.Settings(SECRET, length=32, ports=scheme.parse_port_spec("65535-65536"))
    found, skipped = plan.rotated_attempts(edge, "ssh", range(-20, 20), 1e9)
    assert skipped and len(found) + len(skipped) == 40
    assert all(s.startswith("the sequence of ssh_ROTATOR for the period") for s in skipped)


def test_clearing_ignores_one_knock_sequences_and_clears_two_knock_ones():
    assert plan.clearing_knocks([plan.Attempt("a", (K[1], K[2]))]) == (K[2],)
    two = [plan.Attempt("a", (K[1], K[2], K[3])), plan.Attempt("b", (K[3],))]
    assert plan.clearing_knocks(two) == (K[3],)  # the one-knock door has no half-done state


def test_clearing_may_take_the_second_knock_twice():
    """1,2,1: the last knock alone starts or advances an attempt; 2 twice fails all."""
    assert plan.clearing_knocks([plan.Attempt("a", (K[1], K[2], K[1]))]) == (K[2], K[2])


def test_defaults_of_the_plans_records():
    assert plan.PathInfo().age == float("inf") and plan.PathInfo().rtt is None
    assert plan.Step(plan.KNOCK, 0, 0.0, 1.0, 0).gap == 0.0


def test_spacing_window_and_probe_exact_values():
    assert plan.spacing(0, plan.PathInfo(spacing=0.1, jitter=0.02, age=0)) == plan.FAST_SPACING
    assert plan.spacing(1, plan.PathInfo(jitter=0.02)) == pytest.approx(0.016)
    assert plan.spacing(2, plan.PathInfo(jitter=0.02)) == pytest.approx(0.024)
    assert plan.window(0, plan.UNKNOWN) == pytest.approx(0.55)
    assert plan.window(1, plan.UNKNOWN) == pytest.approx(0.55 * 1.25)
    assert plan.probe_window(0.02) == pytest.approx(0.03)  # a round trip and 10 ms
    assert plan.probe_window(0.05, 0.01) == pytest.approx(0.08)  # wan: and twice the spread
    assert plan.probe_window(0.08, 0.04) == pytest.approx(0.15)  # mobile: what a knock costs
    assert plan.probe_window(None) == pytest.approx(0.11)  # UNKNOWN_RTT
    assert plan.probe_window(0.001) == plan.MIN_PROBE
    assert plan.probe_window(1.0) == plan.PROBE_WINDOW


@given(st.floats(0, 5), st.one_of(st.none(), st.floats(0, 5)))
def test_a_door_found_shut_costs_no_more_than_an_open_one_saves(rtt, jitter):
    """The probe waits at least for an answer of a fast path, and never longer than
    the least a knock round would take (knocks there, knockd's delay, the connect)."""
    probe = plan.probe_window(rtt, jitter)
    assert plan.MIN_PROBE <= probe <= plan.PROBE_WINDOW
    assert probe <= max(plan.MIN_PROBE, 1.5 * rtt + plan.DOOR_DELAY)


def test_a_step_needs_min_step_left_and_counts_the_sending():
    fixed0 = plan.PathInfo(fixed=0.0)
    step = plan.next_step(1, plan.MIN_STEP, 0.0, [], 0.0, path=fixed0)  # exactly enough
    assert step is not None and step.kind == plan.KNOCK and step.window == plan.MIN_STEP
    probe = plan.next_step(1, plan.MIN_STEP, 0.0, [], 0.5, waited=True)
    assert probe is not None and probe.kind == plan.PROBE
    assert (probe.attempt, probe.pause, probe.round, probe.window) == (0, 0.0, 0, plan.MIN_STEP)
    # ten knocks 0.1 s apart by default: 1.06 s leaves 0.06 s to wait, 1.04 s nothing
    tenth = plan.PathInfo(fixed=0.1)
    assert plan.next_step(1, 1.06, 0.0, [], 0.0, path=tenth).window == pytest.approx(0.06)
    assert plan.next_step(1, 1.04, 0.0, [], 0.0, path=tenth) is None
    # a later round: the pause (0.5 s * 0.5) and the sending (4 * 0.125) both count
    eighth = plan.PathInfo(fixed=0.125)
    history = [(plan.KNOCK, plan.TIMED_OUT)]
    assert plan.next_step(1, 0.79, 0.0, history, 0.5, path=eighth, knocks=4) is None
    later = plan.next_step(1, 0.85, 0.0, history, 0.5, path=eighth, knocks=4)
    assert later is not None and later.pause == 0.25 and later.window == pytest.approx(0.1)
