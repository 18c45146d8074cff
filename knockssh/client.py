"""Look a host up, knock its sequence, and connect as soon as the door opens.

The decisions (which sequences, in what order, with what pauses, when to give
up) are knockssh.plan's; this module carries them out: resolve, take the door's
lock, clear, knock, dial, and move on to the next address of the name.
"""

from __future__ import annotations

import os
import time

from . import mapping, plan
from .dial import Refused, Reordered, Unreachable, dial
from .doorlock import DoorLock, lock_dir
from .errors import ConnectFailure, KnocksshError, reason_of
from .knock import Timings, send_knocks
from .log import QUIET, Log
from .net import SOCK_STREAM, RawSocket, gaierror, getaddrinfo, public, round_trip
from .paths import network_of, recall, remember
from .peer import NOBODY, PeerGone

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Mapping

    from rotator.scheme import Knock

    from .net import Sockaddr
    from .peer import Watch

DEFAULT_CONNECT_TIMEOUT = mapping.DEFAULT_CONNECT_TIMEOUT  # also for unmapped hosts


def resolve(host: str, port: int, family: int) -> list[tuple[int, Sockaddr]]:
    """Addresses of ``host`` in the resolver's order, each once."""
    try:
        found = getaddrinfo(host, port, family, SOCK_STREAM)
    except gaierror as exc:
        raise ConnectFailure(f"{host}: cannot resolve: {exc.strerror}", "unresolved") from None
    except UnicodeError:  # the idna codec: a label too long or empty, a bad character
        raise ConnectFailure(f"{host}: not a valid host name (IDNA)", "unresolved") from None
    seen: dict[object, tuple[int, Sockaddr]] = {}
    for fam, sockaddr in found:
        seen.setdefault(sockaddr[0], (fam, sockaddr))
    return list(seen.values())


class Target:
    """One address to connect to, and where to knock for it (the same address, or
    ``knock_host`` in the same family)."""

    __slots__ = ("family", "knock_at", "sockaddr")

    def __init__(self, family: int, sockaddr: Sockaddr, knock_at: Sockaddr) -> None:
        self.family = family
        self.sockaddr = sockaddr
        self.knock_at = knock_at


def targets_for(entry: mapping.HostEntry, host: str, port: int, family: int) -> list[Target]:
    found = []
    for fam, sockaddr in resolve(host, port, family):
        knock_at = sockaddr
        if entry.knock_host:
            try:
                knock_at = resolve(entry.knock_host, port, fam)[0][1]
            except KnocksshError:
                continue  # knock_host has no address in this family
        found.append(Target(fam, sockaddr, knock_at))
    if not found:
        raise KnocksshError(
            f"{host}: knock_host {entry.knock_host} has no address in the family of {host}"
        )
    return found


def connect(
    host: str,
    port: int = 22,
    *,
    config: str | None = None,
    family: int = 0,
    offset: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Log | None = None,
    at: float | None = None,
) -> socket.socket:
    """Knock for ``host`` as its mapping-file entry says, then return the connected socket.

    Usable as paramiko's ``sock=``; safe from several threads at once (they take
    turns knocking). An unmapped host is connected without knocking. Raises
    KnocksshError with a message meant for users.
    """
    return public(
        open_connection(
            host, port, config=config, family=family, offset=offset, env=env, log=log, at=at
        )
    )


def open_connection(
    host: str,
    port: int,
    *,
    config: str | None = None,
    family: int = 0,
    offset: int | None = None,
    env: Mapping[str, str] | None = None,
    log: Log | None = None,
    at: float | None = None,
    watch: Watch = NOBODY,
) -> RawSocket:
    """connect() for the ProxyCommand path: the connection as a plain ``_socket`` object."""
    env = os.environ if env is None else env
    log = log or Log(QUIET)
    t = time.monotonic()
    hostmap = mapping.load(config, env)
    entry = hostmap.lookup(host)
    if entry is None:
        log.step(f"{host}: {hostmap.unmatched(host)}, connecting without knocking", t)
        try:
            return _direct(host, port, family, DEFAULT_CONNECT_TIMEOUT, log)
        except ConnectFailure as exc:  # say so: a dropped SYN looks like a firewall problem
            raise ConnectFailure(f"{exc} ({hostmap.unmatched(host)})", exc.reason) from None
    log.step(f"{host}: matched {entry.label}", t)
    return Knocker(entry, env, log, watch).connect(host, port, family, offset, at)


def _direct(host: str, port: int, family: int, timeout: float, log: Log) -> RawSocket:
    deadline = time.monotonic() + timeout
    addresses = resolve(host, port, family)
    error: OSError | None = None
    for fam, sockaddr in addresses:
        t = time.monotonic()
        try:
            sock = dial(fam, sockaddr, max(0.1, deadline - t), retry=False)
        except OSError as exc:
            error = exc
            continue
        log.step(f"connected to {sockaddr[0]} port {port}", t)
        return sock
    assert error is not None
    raise ConnectFailure(f"{host} port {port}: {error.strerror or error}", reason_of(error))


def _random() -> float:
    """A number in [0, 1): the ``random`` module costs an import on every start."""
    return int.from_bytes(os.urandom(2), "big") / 65536


class Knocker:
    """Carries out the plan for one host entry."""

    __slots__ = ("delay", "entry", "env", "locks", "log", "watch")

    def __init__(
        self, entry: mapping.HostEntry, env: Mapping[str, str], log: Log, watch: Watch = NOBODY
    ) -> None:
        self.entry = entry
        self.env = env
        self.log = log
        self.watch = watch
        self.delay = entry.knock_delay
        self.locks = lock_dir(env)

    def attempts(
        self, at: float | None, offset: int | None
    ) -> tuple[list[plan.Attempt], int | None]:
        from .sequences import attempts_for

        t = time.monotonic()
        found = attempts_for(self.entry, self.env, time.time() if at is None else at, offset)
        self.log.step(
            f"computed {len(found[0])} sequence(s): {', '.join(a.label for a in found[0])}", t
        )
        return found

    def knock_once(
        self,
        target: Target,
        attempt: plan.Attempt,
        clear: tuple[Knock, ...],
        gap: float,
        timings: Timings | None = None,
    ) -> None:
        """Clear any stale attempt, then knock ``attempt``'s sequence at ``target``,
        ``gap`` seconds apart (left open in ``timings``, to time the path)."""
        t = time.monotonic()
        knocks = (*clear, *attempt.knocks)
        send_knocks(target.family, target.knock_at, knocks, gap, self.watch, timings)
        self.log.step(
            f"knocked {len(attempt.knocks)} ports {gap * 1000:.3g} ms apart at "
            f"{target.knock_at[0]} (after {len(clear)} clearing), {attempt.label}",
            t,
        )

    def lock(self, target: Target, deadline: float) -> tuple[DoorLock | None, bool | None]:
        """The lock for ``target``'s knock address, and whether to try the door first
        (we waited for a sibling, or one got through recently); None: the lock could
        not be had by ``deadline``."""
        if self.locks is None:
            return None, False
        lock = DoorLock(self.locks, str(target.knock_at[0]))
        t = time.monotonic()
        waited = lock.acquire(deadline, self.watch)
        if waited is None:
            return lock, None
        if waited:
            self.log.step(f"waited for another knockssh knocking {target.knock_at[0]}", t)
            return lock, True
        since = lock.opened_since()
        first = plan.try_door_first(since)
        if first:
            self.log.info(f"a knockssh got through {since:.1f}s ago: trying the door first")
        return lock, first

    def knock_only(self, host: str, family: int, offset: int | None) -> plan.Attempt:
        """``knockssh knock``: one clear-and-knock of one period at the first address,
        spaced as the ProxyCommand's first round would be."""
        tries, _ = self.attempts(None, 0 if offset is None else offset)
        target = targets_for(self.entry, host, 0, family)[0]
        lock, _ = self.lock(target, time.monotonic() + DEFAULT_CONNECT_TIMEOUT)
        address = str(target.knock_at[0])
        path = recall(self.env, address, self.delay, network_of(address))
        try:
            self.knock_once(target, tries[0], plan.clearing_knocks(tries), plan.spacing(0, path))
        finally:
            if lock is not None:
                lock.release()
        return tries[0]

    def connect(
        self, host: str, port: int, family: int, offset: int | None, at: float | None
    ) -> RawSocket:
        if at is None:
            at = time.time()
        tries, period = self.attempts(at, offset)
        clear = plan.clearing_knocks(tries)
        timeout = self.entry.connect_timeout
        deadline = time.monotonic() + timeout
        targets = targets_for(self.entry, host, port, family)
        ends = []
        for i, target in enumerate(targets):
            share = (deadline - time.monotonic()) / (len(targets) - i)
            sock, how = self._one_address(target, tries, clear, share)
            if sock is not None:
                return sock
            ends.append((target, how))
        entry = self.entry
        refused = bool(ends) and all(how == plan.REFUSED for _, how in ends)
        raise ConnectFailure(
            plan.failure_message(
                plan.Failure(
                    f"{host} port {port}",
                    port,
                    timeout,
                    f"service {entry.service}" if entry.service else "static sequence",
                    ", ".join(a.label for a in tries),
                    [(str(t.sockaddr[0]), how) for t, how in ends],
                    period,
                    at,
                    entry.clock_skew,
                    entry.label,
                )
            ),
            "refused" if refused else "timeout",
        )

    def _one_address(
        self, target: Target, tries: list[plan.Attempt], clear: tuple[Knock, ...], budget: float
    ) -> tuple[RawSocket | None, str]:
        """Follow the plan at one address for ``budget`` seconds: the connection, or
        None and how the last step ended."""
        begun = time.monotonic()
        deadline = begun + budget
        history: list[tuple[str, str]] = []
        lock, waited = self.lock(target, deadline)
        if waited is None:
            return None, plan.TIMED_OUT
        address = str(target.knock_at[0])
        network = network_of(address)
        known = recall(self.env, address, self.delay, network)
        path = plan.PathInfo(known.rtt, known.spacing, known.fixed, known.age, known.jitter)
        if known.rtt is not None or known.spacing is not None:
            self.log.info(f"remembered for {address} from {network or 'here'}: {path}")
        measured: float | None = None  # the widest spread our knocks showed in this connect
        try:
            while True:
                step = plan.next_step(
                    len(tries),
                    budget,
                    time.monotonic() - begun,
                    history,
                    _random(),
                    bool(waited),
                    path,
                    len(tries[0].knocks),
                )
                if step is None:
                    return None, history[-1][1] if history else plan.TIMED_OUT
                if step.pause and lock is not None:
                    lock.release()  # a sibling may knock meanwhile; then we try its door
                    self.watch.sleep(step.pause)
                    lock, waited = self.lock(target, deadline)
                    if waited is None:
                        return None, plan.TIMED_OUT
                    if waited:
                        continue
                else:
                    self.watch.sleep(step.pause)
                waited = False
                timings = Timings() if step.kind == plan.KNOCK else None
                if timings is not None:
                    self.knock_once(target, tries[step.attempt], clear, step.gap, timings)
                sock, how = self._dial(target, step, timings)
                if timings is not None:
                    spread = self._learn(address, path, timings)
                    if spread is not None:
                        measured = max(spread, measured or 0.0)
                    how = plan.round_outcome(
                        how, timings.sent, len(timings.rtts), timings.jitter(), step.gap
                    )
                    if how == plan.COLLIDED:
                        self.log.info(f"{address}: every knock answered, no door: a collision")
                if sock is not None:
                    if lock is not None:
                        lock.mark_opened()
                    gap = step.gap if step.kind == plan.KNOCK else known.spacing
                    jitter = path.jitter if measured is None else measured
                    learnt = plan.PathInfo(round_trip(sock) or path.rtt, gap, jitter=jitter)
                    remember(self.env, address, known, learnt, network)
                    return sock, ""
                history.append((step.kind, how))
        finally:
            if lock is not None:
                lock.release()

    def _learn(self, address: str, path: plan.PathInfo, timings: Timings) -> float | None:
        """What the server's answers to our knocks told of the path. One round's
        spread is a sample of the path's jitter, small ones often (a round given
        up early saw a few answers only): within a connect it may widen what was
        known, never narrow it. What is remembered afterwards is this connect's
        own widest (returned here), so the next connect starts from it without
        the estimate growing from one connect to the next."""
        rtt, jitter = timings.rtt(), timings.jitter()
        if rtt is None:
            return None
        path.rtt = rtt
        if jitter is not None:
            path.jitter = max(jitter, path.jitter or 0.0)
        self.log.info(
            f"{address}: {len(timings.rtts)} of {timings.sent} knocks answered, round trip "
            f"{rtt * 1000:.1f} ms" + (f", spread {jitter * 1000:.1f} ms" if jitter else "")
        )
        return jitter

    def _dial(
        self, target: Target, step: plan.Step, timings: Timings | None
    ) -> tuple[RawSocket | None, str]:
        t = time.monotonic()
        what = "the door a sibling opened" if step.kind == plan.PROBE else "the door"
        try:
            sock = dial(
                target.family,
                target.sockaddr,
                step.window,
                watch=self.watch,
                refusal_ends=step.kind == plan.KNOCK,
                timings=timings,
                hasty=step.hasty,
            )
        except PeerGone:
            raise
        except Refused:
            self.log.step(f"refused at {target.sockaddr[0]}: the door opened, nothing listens", t)
            return None, plan.REFUSED
        except Unreachable as exc:
            self.log.step(f"{target.sockaddr[0]}: {exc.strerror}", t)
            return None, plan.UNREACHABLE
        except Reordered:
            self.log.step(f"{target.sockaddr[0]}: answers out of order: knocking spaced", t)
            return None, plan.REORDERED
        except OSError as exc:
            self.log.step(f"no connection to {target.sockaddr[0]}: {exc.strerror or exc}", t)
            return None, plan.TIMED_OUT
        self.log.step(f"connected through {what} at {target.sockaddr[0]}", t)
        return sock, ""
