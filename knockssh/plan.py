"""The knock plan: which sequences to knock, in what order, with what pauses, and
when to give up. Pure: a function of the settings, the instant and what happened
so far; no clock, no network, no randomness of its own (the caller passes a
random number), so every decision is tested without mocks.

How knockd matches knocks shapes every rule here (see the README and knockd's
``sniff()``): it keeps one attempt per source address, fails it at the first
captured packet that is not its next step, and starts an attempt only from a
door's first step when no attempt is under way.
"""

from __future__ import annotations

from rotator import scheme

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

WINDOW_GROWTH = 1.25  # each later round waits longer: a slow path needs more
MAX_PAUSE = 0.3  # the random pause before a later round is drawn from at least [0, this)
BACKOFF_DOUBLINGS = 3  # the pause's range doubles after each collision, up to 8 times
PROBE_WINDOW = 0.3  # at most, trying a door a sibling just opened before knocking ourselves
MIN_PROBE = 0.02
DOOR_DELAY = 0.03  # seconds knockd takes at the least to open a door: its batch, the command
MIN_STEP = 0.05  # a step with less time than this left is not worth starting
RECENTLY_OPENED = 5.0  # seconds: a door a sibling got through this recently is tried first

PROBE, KNOCK = "probe", "knock"
TIMED_OUT, REFUSED, UNREACHABLE = "timed out", "refused", "unreachable"
# a round whose every knock the server answered, in time and in order, and still no
# door: nothing was lost or reordered, so another knocker's sequence broke ours
COLLIDED = "timed out, every knock answered"
# a fast round whose answers came back out of order: the path reorders, so knockd
# most likely saw our knocks out of order too; the next round goes at once, spaced
REORDERED = "answers out of order"
NAMES = {0: "current", -1: "previous", 1: "next"}


class Attempt:
    """One sequence to knock and what to call it in messages."""

    __slots__ = ("knocks", "label")

    def __init__(self, label: str, knocks: tuple[scheme.Knock, ...]) -> None:
        self.label = label  # "period 1763784000 (current)" or "static sequence"
        self.knocks = knocks

    def __repr__(self) -> str:
        return f"Attempt({self.label!r}, {len(self.knocks)} knocks)"


def offsets_to_knock(at: float, period: int, clock_skew: float, offset: int | None) -> list[int]:
    """Which periods to knock at instant ``at``, current first.

    A neighbouring period is knocked only when ``at`` lies within ``clock_skew``
    seconds of the boundary to it, the nearer one first: a sequence is never sent
    earlier than that before its period (anyone who saw it could open the door
    for the whole period). ``offset`` forces exactly one period.
    """
    if offset is not None:
        return [offset]
    start = scheme.period_start(at, period)
    to_next, since_start = start + period - at, at - start
    found = [0]
    for distance, neighbour in sorted(((to_next, 1), (since_start, -1))):
        if distance <= clock_skew:
            found.append(neighbour)
    return found


def rotated_attempts(
    settings: scheme.Settings, service: str, offsets: Sequence[int], at: float
) -> tuple[list[Attempt], list[str]]:
    """The sequences of ``offsets``' periods, and why any could not be derived."""
    found, skipped = [], []
    for off in offsets:
        start = scheme.period_start(at, settings.period, off)
        name = NAMES.get(off, f"offset {off:+d}")
        try:
            found.append(
                Attempt(f"period {start} ({name})", scheme.derive(settings, service, start))
            )
        except scheme.SchemeError as exc:
            skipped.append(str(exc))
    return found, skipped


def seconds_to_boundary(at: float, period: int) -> float:
    """How far ``at`` is from the nearest period boundary."""
    start = scheme.period_start(at, period)
    return min(at - start, start + period - at)


# -- clearing a stale attempt ---------------------------------------------


def _leaves_nothing(
    sequences: Sequence[tuple[scheme.Knock, ...]], packets: Sequence[scheme.Knock]
) -> bool:
    """Would ``packets`` end every half-done attempt at any of ``sequences``, and
    start none when there is no attempt? Follows knockd 0.8's matching: a packet
    that is an attempt's next step advances it (the last step completes it), any
    other captured packet fails it; only a door's first step starts an attempt."""
    firsts = {seq[0] for seq in sequences}
    if any(p in firsts for p in packets):
        return False
    for seq in sequences:
        for stage in range(1, len(seq)):  # an attempt that has seen `stage` knocks
            live: int | None = stage
            for p in packets:
                if live is None:
                    break  # gone: later packets start nothing (none is a first step)
                live = live + 1 if seq[live] == p else None
                if live == len(seq):
                    live = None  # completed: knockd removes it
            if live is not None:
                return False
    return True


def clearing_knocks(attempts: Sequence[Attempt]) -> tuple[scheme.Knock, ...]:
    """Packets that, sent before a sequence, end any attempt knockd still holds for
    our address (half done by a lost knock or a colliding knocker), so that the
    sequence's first knock starts clean. They are ports of the sequences we knock
    (only those reach knockd's capture filter), never a first step.

    Usually one packet does it: the last knock of the first sequence fails every
    half-done attempt but one a single knock from done, which it completes.
    """
    sequences = [a.knocks for a in attempts if len(a.knocks) > 1]
    if not sequences:
        return ()
    ours = sequences[0]
    candidates = list(dict.fromkeys(reversed(ours[1:])))  # last knock first, no repeats
    for p in candidates:
        if _leaves_nothing(sequences, (p,)):
            return (p,)
    for p in candidates:
        for q in candidates:
            if _leaves_nothing(sequences, (p, q)):  # p == q too: a repeat can finish it off
                return (p, q)
    return ()  # nothing provably clears: a stale attempt then expires after seq_timeout


# -- the steps -------------------------------------------------------------


class PathInfo:
    """What we know of the path to a knock address: the round-trip time and its
    spread (jitter), measured from the server's answers to our knocks or remembered
    in the user's state directory with the knock spacing that last got through,
    and a spacing the mapping file fixes (``knock_delay_ms``: used as given)."""

    __slots__ = ("age", "fixed", "jitter", "rtt", "spacing")

    def __init__(
        self,
        rtt: float | None = None,
        spacing: float | None = None,
        fixed: float | None = None,
        age: float = float("inf"),
        jitter: float | None = None,
    ) -> None:
        self.rtt = rtt
        self.spacing = spacing
        self.fixed = fixed
        self.age = age  # seconds since it was remembered
        self.jitter = jitter

    def __repr__(self) -> str:
        return (
            f"PathInfo(rtt={self.rtt}, jitter={self.jitter}, spacing={self.spacing}, "
            f"fixed={self.fixed})"
        )


UNKNOWN = PathInfo()
FAST_SPACING = 0.001  # seconds between knocks in a first round: knockd reads in 50 ms batches
SPACING_STEPS = (0.02, 0.05, 0.1)  # later rounds when the jitter is unknown
MAX_SPACING = 0.1
JITTER_FACTOR = 0.75  # of the round trips' spread: the one-way spread is about half of it
SPACING_GROWTH = 1.5
MAX_GROWTH = 2.0
UNKNOWN_RTT = 0.1  # assumed until measured: a window then fits a mobile path
SPACING_HALF_LIFE = 600.0  # seconds: a remembered spacing halves every ten minutes
MIN_WINDOW = 0.25
MAX_WINDOW = 3.0


def spacing(rnd: int, path: PathInfo) -> float:
    """Seconds between knocks in round ``rnd``. A jittery path reorders knocks sent
    close together, and knockd fails a sequence at the first knock out of order.
    Where the server answers our knocks, the first round goes fast: a path that
    keeps order needs no spacing, whatever its jitter or what another network
    needed, and one that reorders shows it within a round trip (the answers come
    back out of order: REORDERED), so trying costs little. Where it never did (a
    firewall that drops closed ports), disorder cannot show, so the first round
    starts from the (decaying) spacing that last got through on this network.
    Later rounds, once the path's jitter is known, go as wide as it, then wider
    each round in case it was underestimated. A path that only loses packets
    keeps its knocks fast: spacing would not save them, and a long sequence
    collides more with another knocker's (two machines behind a NAT). Without a
    measure, later rounds widen in fixed steps."""
    if path.fixed is not None:
        return path.fixed
    if path.jitter is not None:
        if rnd == 0:
            return FAST_SPACING  # the path may keep order; if not, its answers tell at once
        wide = max(FAST_SPACING, JITTER_FACTOR * path.jitter + 0.001)
        return min(MAX_SPACING, wide * min(MAX_GROWTH, SPACING_GROWTH ** (rnd - 1)))
    base = remembered_spacing(path) or FAST_SPACING  # knocks unanswered: no early sign
    ladder = [base, *(step for step in SPACING_STEPS if step > base)]
    return ladder[min(rnd, len(ladder) - 1)]


def remembered_spacing(path: PathInfo) -> float | None:
    """The spacing to start from, as remembered: a starting point only, which
    halves every SPACING_HALF_LIFE since it got through, so a wide spacing a bad
    network needed does not outlive it (a fast round that gets through is then
    remembered instead); None once it is down to fast knocking."""
    if path.spacing is None:
        return None
    decayed = path.spacing * 0.5 ** (path.age / SPACING_HALF_LIFE)
    return decayed if decayed >= 2 * FAST_SPACING else None


def window(rnd: int, path: PathInfo) -> float:
    """Seconds to wait for the door after round ``rnd``'s last knock: the door opens
    a knockd batch (50 ms) and a firewall command after the knocks arrive, then a
    round trip answers our connect. Sized by the path's round trip and jitter once
    known (short rounds, so a lossy path gets many); until then each round waits
    longer than the one before, in case the path is slower than assumed."""
    if path.rtt is None:
        return min(MAX_WINDOW, (0.15 + 4 * UNKNOWN_RTT) * WINDOW_GROWTH**rnd)
    return min(MAX_WINDOW, max(MIN_WINDOW, 0.15 + 4 * path.rtt + 2 * (path.jitter or 0.0)))


def pause_limit(knocks: int, gap: float) -> float:
    """The random pause before a later round is drawn below this: a sequence's own
    length (at least MAX_PAUSE), so two knockers behind one address that overlapped
    once rarely do again; collisions widen it further (backoff)."""
    return max(MAX_PAUSE, knocks * gap)


def round_outcome(how: str, sent: int, answered: int, jitter: float | None, gap: float) -> str:
    """How a knock round that got no door is read: COLLIDED when the server
    answered every knock (none lost) and the spread of its answers is too small to
    have reordered knocks ``gap`` apart, so that another knocker behind our
    address must have broken the sequence; else as the dial ended."""
    if how != TIMED_OUT or sent < 2 or answered < sent or jitter is None:
        return how
    return COLLIDED if JITTER_FACTOR * jitter <= max(gap, FAST_SPACING) else how


REORDER_SLACK = 0.001  # seconds: answers closer together than this are not ordered


def out_of_order(answers: Sequence[tuple[float, int]]) -> bool:
    """Did the server's answers to a round's knocks, as (arrival, index sent) pairs,
    come back out of order: a knock answered REORDER_SLACK or more after a later
    knock was? Answers read together (one poll) share an arrival and count as in
    order, so a slow reader never sees disorder that was not on the path."""
    return any(
        later > index and answered <= arrival - REORDER_SLACK
        for arrival, index in answers
        for answered, later in answers
    )


def drain(path: PathInfo) -> float:
    """The pause after a round given up on answers out of order: its last knocks
    may still be on their way, and one arriving after the next round's clearing
    packet would break that round too. The spread of the round trips bounds how
    late they can be (the round trip itself, until the spread is known)."""
    return path.jitter if path.jitter is not None else (path.rtt or UNKNOWN_RTT)


def backoff(collided: int) -> float:
    """How much wider the random pause's range is after ``collided`` rounds that
    failed with every knock answered (COLLIDED): from the second such round on it
    doubles each time, as Ethernet backs off after collisions. Knockers behind one
    address draw further apart each time, where a wider spacing would only make
    their rounds longer and collide again. Rounds that lost knocks do not grow it:
    a lossy path needs many short rounds."""
    return float(2 ** min(max(collided - 1, 0), BACKOFF_DOUBLINGS))


def probe_window(rtt: float | None, jitter: float | None = None) -> float:
    """How long to try a door a sibling got through before knocking ourselves: long
    enough for its answer (a round trip, twice the spread, and 10 ms for the
    scheduler), and never longer than a knock round would take at the least (the
    knocks' half round trip, knockd's door delay, the connect's round trip), so a
    door found shut costs no more than an open one saves. Without a measure the
    round trip is assumed to be UNKNOWN_RTT."""
    trip = UNKNOWN_RTT if rtt is None else rtt
    answer = trip + 2 * (jitter or 0.0) + 0.01
    saves = 1.5 * trip + DOOR_DELAY
    return max(MIN_PROBE, min(answer, saves, PROBE_WINDOW))


class Step:
    """What to do next: try the door (PROBE) or clear, knock ``attempt`` ``gap``
    seconds apart and wait (KNOCK), after ``pause`` seconds; wait up to ``window``
    seconds for the door."""

    __slots__ = ("attempt", "gap", "hasty", "kind", "pause", "round", "window")

    def __init__(
        self,
        kind: str,
        attempt: int,
        pause: float,
        window: float,
        round: int,
        gap: float = 0.0,
        hasty: bool = False,
    ) -> None:
        self.kind = kind
        self.attempt = attempt  # index into the attempts
        self.pause = pause
        self.window = window
        self.round = round  # 0 for the first pass over the attempts
        self.gap = gap
        self.hasty = hasty  # fast knocks on a hunch: stop waiting once answers show disorder

    def __repr__(self) -> str:
        return (
            f"Step({self.kind}, attempt {self.attempt}, round {self.round}, "
            f"pause {self.pause:.3f}, gap {self.gap:.3f}, window {self.window:.3f})"
        )


def next_step(
    n_attempts: int,
    timeout: float,
    elapsed: float,
    history: Sequence[tuple[str, str]],
    rand: float,
    waited: bool = False,
    path: PathInfo = UNKNOWN,
    knocks: int = 10,
) -> Step | None:
    """The next step, or None to give up.

    ``history`` holds each step so far as (kind, how it ended): TIMED_OUT,
    REFUSED or UNREACHABLE (a success ends the plan). ``waited``: since the last
    step we waited for a sibling knocking the same address (or one got through
    recently), so the door may be open: try it for a few round trips before
    knocking. ``rand`` in [0, 1) draws the pause before a later round, so that
    knockers behind one address (two machines behind a NAT, two users) stop
    colliding round after round. ``knocks``: the length of a sequence.
    """
    last = history[-1] if history else None
    if last is not None and last[0] == KNOCK and last[1] in (REFUSED, UNREACHABLE):
        return None  # the door opened and nothing listens, or no route: knocking won't help
    left = timeout - elapsed
    if left < MIN_STEP:
        return None
    if waited:
        return Step(PROBE, 0, 0.0, min(probe_window(path.rtt, path.jitter), left), 0)
    knocked = sum(1 for kind, _ in history if kind == KNOCK)
    collided = sum(1 for kind, how in history if kind == KNOCK and how == COLLIDED)
    rnd, index = divmod(knocked, n_attempts)
    gap = spacing((knocked - collided) // n_attempts, path)  # a collision is no reordering
    later = rnd > 0 and index == 0 and last is not None and last[0] == KNOCK
    if last is not None and last[0] == KNOCK and last[1] == REORDERED:
        pause = drain(path)  # the path, not another knocker: only its stragglers to let by
    elif later:
        pause = pause_limit(knocks, gap) * backoff(collided) * rand
    else:
        pause = 0.0
    sending = knocks * gap
    if left - pause - sending < MIN_STEP:
        return None
    hasty = rnd == 0 and path.fixed is None and knocks > 1
    return Step(
        KNOCK, index, pause, min(window(rnd, path), left - pause - sending), rnd, gap, hasty
    )


def try_door_first(opened_since: float) -> bool:
    """Try the door before knocking when a sibling got through it this recently (it
    may still be open: knockd's door stays for cmd_timeout)."""
    return opened_since < RECENTLY_OPENED


class Failure:
    """What a connect that gave up knows, for its one-line message."""

    __slots__ = (
        "at",
        "ends",
        "label",
        "period",
        "periods",
        "port",
        "skew",
        "timeout",
        "what",
        "where",
    )

    def __init__(
        self,
        where: str,
        port: int,
        timeout: float,
        what: str,
        periods: str,
        ends: list[tuple[str, str]],
        period: int | None,
        at: float,
        skew: float,
        label: str,
    ) -> None:
        self.where, self.port, self.timeout, self.what = where, port, timeout, what
        self.periods, self.ends, self.period, self.at = periods, ends, period, at
        self.skew, self.label = skew, label


def failure_message(f: Failure) -> str:
    """Why the connect failed, as far as can be told: refused everywhere means the
    door opened and nothing listens; else the nearness of a period boundary says
    whether a wrong clock could be the cause."""
    if f.ends and all(how == REFUSED for _, how in f.ends):
        addresses = ", ".join(address for address, _ in f.ends)
        return (
            f"{f.where}: connection refused at {addresses} after knocking {f.what} "
            f"({f.periods}): the door opened but nothing listens on port {f.port}; is sshd "
            f"running? ({f.label})"
        )
    addresses = ", ".join(f"{address} ({how})" for address, how in f.ends)
    clock = ""
    if f.period is not None:
        near = seconds_to_boundary(f.at, f.period)
        if near <= f.skew:
            clock = (
                f"a period boundary is {near:.0f}s away, so a clock off by that much "
                f"could be the cause (compare date -u on both sides); "
            )
        else:
            clock = (
                f"the nearest period boundary is {near:.0f}s away, so only a clock off "
                f"by more than that could be the cause (date -u); "
            )
    return (
        f"{f.where}: no connection within {f.timeout:g}s after knocking {f.what} "
        f"({f.periods}) at {addresses}; {clock}check the secret, that knockd listens on the "
        f"server's interface, and the firewall rules ({f.label})"
    )
