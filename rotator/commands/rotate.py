"""``knockssh-rotator`` (the default command): rewrite knockd.conf's ``*_ROTATOR``
sections with the current sequences and reload knockd, once; under systemd,
schedule the next runs. ``--follow`` (``rotator.commands.follow``) repeats it."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from collections.abc import Mapping

from .. import clients, conffile, files, secret, systemd
from ..arguments import DEFAULT_CONFIG, Out, Parser, path_arg, seconds, unix_seconds
from ..errors import RotatorError
from ..knockd import Reloader, reload_and_verify, reloader_for
from ..knockdconf import ConfError, log_file, parse
from ..rotation import Rotation, extra_runs, moved_on, next_regular_run, rotate
from ..scheme import (
    ENV_NAMES,
    SchemeError,
    Settings,
    settings_from_env,
    utf8,
    validate,
    whole_number,
)
from ..text import shown
from ..version import VERSION

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    FindKnockd = Callable[[], Reloader | None]
    Edit = Callable[[str], str]


GRACE_ENV = "KNOCKD_ROTATOR_GRACE"


def grace_of(given: int | None, env: Mapping[str, str]) -> tuple[int, str]:
    """The grace in seconds and where it came from: --grace, else KNOCKD_ROTATOR_GRACE
    (so the unit need not fix it), else none."""
    if given is not None:
        return given, "--grace"
    text = utf8(env.get(GRACE_ENV, ""), GRACE_ENV).strip()
    if not text:
        return 0, GRACE_ENV
    value = whole_number(text)
    if value is None or value < 0:
        raise SchemeError(f"{GRACE_ENV}={shown(text)} is not a whole number of seconds")
    return value, GRACE_ENV


def add_common(p: argparse.ArgumentParser) -> None:
    """What every command that rotates takes besides --config and --pidfile."""
    p.add_argument("--unit", default="knockd.service", help="knockd's systemd unit")
    p.add_argument(
        "--clients-dir",
        type=path_arg,
        help=f"client doors' secrets (default ${clients.DIR_ENV}, else {clients.DEFAULT_DIR})",
    )


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="knockssh-rotator",
        description="Rewrite the *_ROTATOR sections of knockd.conf with the current "
        "sequence and reload knockd (SIGHUP, never a restart). Settings come from "
        "KNOCKD_ROTATOR_* variables; the secret from KNOCKD_ROTATOR_SECRET. "
        "Other commands: init, confirm, check, uninit, close-doors, watch, client "
        "(each with --help).",
    )
    p.add_argument(
        "--config", type=path_arg, default=DEFAULT_CONFIG, help="knockd.conf (default %(default)s)"
    )
    p.add_argument("--dry-run", action="store_true", help="show what would change, touch nothing")
    p.add_argument("--no-reload", action="store_true", help="write the file but do not reload")
    p.add_argument(
        "--pidfile",
        type=path_arg,
        help="SIGHUP the knockd whose pid is here (else systemctl reload)",
    )
    add_common(p)
    p.add_argument("--at", type=unix_seconds, help="act as if now were UNIX_SECONDS (tests)")
    p.add_argument(
        "--grace",
        type=seconds,
        metavar="SECONDS",
        help="keep the previous period's sequence valid this long after a boundary "
        "(default $KNOCKD_ROTATOR_GRACE, else 0)",
    )
    p.add_argument("--no-schedule", action="store_true", help="never schedule a boundary run")
    p.add_argument(
        "--follow",
        action="store_true",
        help="stay running and rotate at each boundary, for hosts without systemd and "
        "containers (SIGTERM ends it)",
    )
    p.add_argument(
        "--self-unit",
        default="knockssh-rotator.service",
        help="the unit a boundary run starts (default %(default)s)",
    )
    p.add_argument("--version", action="version", version=f"knockssh-rotator {VERSION}")
    v = p.add_mutually_exclusive_group()
    v.add_argument("-v", "--verbose", action="store_true")
    v.add_argument("-q", "--quiet", action="store_true")
    return p


CREDENTIAL = "secret"  # LoadCredential=secret:/etc/knockssh/secret


def environment(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The settings' environment, and where the secret came from: the variable, else
    the systemd credential ``secret`` ($CREDENTIALS_DIRECTORY/secret: only this
    service's processes can read it, and it is in no environment). Either is read
    by the one rule both ends keep (``rotator.secret``)."""
    values, named = secret.environment(env), dict(ENV_NAMES)
    variable = ENV_NAMES["secret"]
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not env.get(variable) and directory:
        path = os.path.join(directory, CREDENTIAL)
        try:
            data, _ = files.read_regular(path, secret.LIMIT)
        except FileNotFoundError:
            return values, named
        except OSError as exc:
            raise RotatorError(f"{path}: cannot read: {exc.strerror}") from None
        named["secret"] = f"credential {path}"
        values[variable] = secret.read_secret(data, named["secret"])
    return values, named


def settings_of(
    args: argparse.Namespace, out: Out, given: Mapping[str, str] | None = None
) -> Settings:
    """The scheme's settings from the environment (or the credential), with the
    grace put in ``args.grace``; warnings said, errors raised."""
    given = os.environ if given is None else given
    env, named = environment(given)
    settings = settings_from_env(env)
    for warning in validate(settings, named):
        out.warn(warning)
    args.grace, where = grace_of(args.grace, given)
    if args.grace >= settings.period:
        raise SchemeError(f"{where} must be less than the period ({settings.period}s)")
    return settings


def find_knockd(args: argparse.Namespace) -> FindKnockd:
    """How this run finds knockd (None with --no-reload): asked anew for each run."""
    return lambda: None if args.no_reload else reloader_for(args.pidfile, args.unit)


def run(
    args: argparse.Namespace, out: Out, settings: Settings, find: FindKnockd | None = None
) -> int:
    now = time.time() if args.at is None else float(args.at)
    for _ in range(CLOCK_STEPS_FOLLOWED):
        rotation = rotate_once(args, out, settings, now, find or find_knockd(args))
        if rotation is not None and rotation.sections:
            _schedule(args, out, now, settings)
        if args.at is not None or not moved_on(now, time.time(), settings.period, args.grace):
            break
        # the clock was stepped during this run (its OnClockChange start is then
        # lost, as the unit was still active): once more, for the clock as it is now
        out.say("the clock moved during this run: rotating again")
        now = time.time()
    return 0


CLOCK_STEPS_FOLLOWED = 3  # runs at most, should the clock move during each


def rotate_once(
    args: argparse.Namespace,
    out: Out,
    settings: Settings,
    now: float,
    find: FindKnockd,
    edit: Edit | None = None,
) -> Rotation | None:
    """One rotation of knockd.conf for instant ``now``: written and knockd (as
    ``find`` finds it, before anything is touched) reloaded when something changed
    (None for a dry run). ``edit`` changes the text first, under the same lock (a
    client's door added or removed). Client doors take their own secrets."""
    path = args.config = conffile.target_of(args.config)
    own = clients.secrets(clients.directory(args.clients_dir, os.environ))
    if args.dry_run:
        text = conffile.read_text(path)
        _report(_rotated(text, settings, now, args.grace, path, own), path, out, True)
        return None
    with conffile.locked(path):
        old = conffile.read_text(path)
        rotation = _rotated(
            old if edit is None else edited(edit, old, path), settings, now, args.grace, path, own
        )
        if rotation.sections and rotation.text != old:
            # said once written, never before: a failure must not read as a rotation
            report = lambda: _report(rotation, path, out, False)  # noqa: E731
            _write_and_reload(args, out, old, rotation.text, report, find())
        else:
            _report(rotation, path, out, False)
    return rotation


def _rotated(
    text: str, settings: Settings, now: float, grace: int, path: str, own: dict[str, str]
) -> Rotation:
    try:
        return rotate(text, settings, now, grace, own)
    except ConfError as exc:
        raise RotatorError(f"{path}: {exc}") from None


def edited(edit: Edit, text: str, path: str) -> str:
    try:
        return edit(text)
    except ConfError as exc:
        raise RotatorError(f"{path}: {exc}") from None


def _report(rotation: Rotation, path: str, out: Out, dry: bool) -> int:
    if not rotation.sections:
        out.say(f"{path}: no *_ROTATOR section: nothing to do")
        return 0
    out.detail(f"period starting at {rotation.period_start}")
    for change in rotation.changes:
        verb = "would change" if dry else "changed"
        out.say(f"{change.section}: {verb} {change.old} -> {change.new}")
    unchanged = len(rotation.sections) - len(rotation.changes)
    if unchanged:
        out.detail(f"{unchanged} section(s) already current")
    if rotation.grace_until is not None:
        out.say(f"previous sequences stay valid until {rotation.grace_until} (grace)")
    if dry:
        out.say("dry run: nothing written")
    return 0


def _write_and_reload(
    args: argparse.Namespace,
    out: Out,
    old: str,
    new: str,
    written: Callable[[], object],
    reloader: Reloader | None,
) -> None:
    conffile.atomic_write(args.config, new)
    out.say(f"{args.config}: written")
    written()
    if reloader is None:
        return
    logfile = log_file(parse(new))
    try:
        out.detail(reload_and_verify(reloader, logfile))
    except RotatorError as exc:
        conffile.atomic_write(args.config, old)
        try:
            reloader.restart()
            back = (
                "knockd restarted on the previous file"
                if reloader.alive()
                else ("knockd could NOT be started again: start it by hand")
            )
        except (OSError, subprocess.SubprocessError, RotatorError) as again:
            back = f"knockd could NOT be started again ({again}): start it by hand"
        raise RotatorError(f"{exc}; {args.config} restored; {back}") from None
    out.say("knockd reloaded")


def _schedule(args: argparse.Namespace, out: Out, now: float, settings: Settings) -> None:
    """Under systemd, the rotator schedules its own next runs (systemd-run): at the
    boundaries and grace ends before the next regular run, and that regular run, so
    KNOCKD_ROTATOR_SERVER_INTERVAL is the one place the interval is set (the timer
    only starts the chain at boot and repairs it daily)."""
    runs = sorted({*extra_runs(now, settings, args.grace), next_regular_run(now, settings)})
    if not runs or args.no_schedule or args.dry_run:
        return
    if not systemd.under_systemd():
        out.detail(f"not under systemd: no run scheduled for {runs}")
        return
    for at in runs:
        ok, err = systemd.schedule(at, now, args.self_unit)
        if ok:
            out.say(f"scheduled a run at {at} ({int(at - now)}s from now)")
        elif "already" in err:
            out.detail(f"a run at {at} is already scheduled")
        else:
            out.error(f"could not schedule a run at {at}: {err}")
