"""``knockssh-rotator``: keep knockd's ``*_ROTATOR`` sections on the current sequence."""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import NoReturn

from knockssh.version import VERSION

from . import apply, doctor, files, knockdconf, server_setup
from .knockdconf import ConfError
from .rotation import (
    Phase,
    Rotation,
    extra_runs,
    next_change,
    next_regular_run,
    phase,
    rotate,
)
from .scheme import (
    ENV_NAMES,
    SchemeError,
    Settings,
    service_problem,
    settings_from_env,
    utf8,
    validate,
    whole_number,
)
from .text import printable, shown

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

DEFAULT_CONFIG = "/etc/knockd.conf"


def unix_seconds(text: str) -> int:
    """An instant for --at: a whole number of seconds, checked before any arithmetic."""
    value = whole_number(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError("a whole number of UNIX seconds, at most 12 digits")
    return value


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
        shown = text if len(text) <= 24 else text[:20] + "..."
        raise SchemeError(f"{GRACE_ENV}={shown!r} is not a whole number of seconds")
    return value, GRACE_ENV


def seconds(text: str) -> int:
    """A duration for --grace: a whole number of seconds, checked as text."""
    value = whole_number(text)
    if value is None or value < 0:
        raise argparse.ArgumentTypeError("a whole number of seconds, at most 12 digits")
    return value


def path_arg(text: str) -> str:
    """A file's path on the command line: never empty (``--config=`` names nothing)."""
    if not text:
        raise argparse.ArgumentTypeError("the path is empty")
    return text


def tcp_port(text: str) -> int:
    value = whole_number(text)
    if value is None or not 0 < value < 65536:
        raise argparse.ArgumentTypeError("a port from 1 to 65535")
    return value


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line said in one line (its usage
    block would make it several)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (try --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="knockssh-rotator",
        description="Rewrite the *_ROTATOR sections of knockd.conf with the current "
        "sequence and reload knockd (SIGHUP, never a restart). Settings come from "
        "KNOCKD_ROTATOR_* variables; the secret from KNOCKD_ROTATOR_SECRET.",
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
    p.add_argument("--unit", default="knockd.service", help="knockd's systemd unit")
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


class Out:
    def __init__(self, verbose: bool, quiet: bool) -> None:
        self.verbose, self.quiet = verbose, quiet

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text, flush=True)

    def detail(self, text: str) -> None:
        if self.verbose:
            print(text, flush=True)

    def error(self, text: str) -> None:
        print(f"knockssh-rotator: error: {text}", file=sys.stderr, flush=True)

    def warn(self, text: str) -> None:
        print(f"knockssh-rotator: warning: {text}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    for i, arg in enumerate(sys.argv[1:] if argv is None else argv, 1):
        try:
            utf8(arg, f"argument {i} ({arg!a})")
        except SchemeError as exc:
            Out(False, False).error(str(exc))
            return 2
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["init"]:
        return init(argv[1:])
    if argv[:1] == ["check"]:
        return check(argv[1:])
    args = build_parser().parse_args(argv)
    out = Out(args.verbose, args.quiet)
    try:
        return run(args, out)
    except (SchemeError, apply.ApplyError) as exc:
        out.error(str(exc))
        return 1
    except ConfError as exc:
        out.error(f"{args.config}: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


CREDENTIAL = "secret"  # LoadCredential=secret:/etc/knockssh/secret


def environment(env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """The settings' environment, and where the secret came from: the variable, else
    the systemd credential ``secret`` ($CREDENTIALS_DIRECTORY/secret: only this
    service's processes can read it, and it is in no environment)."""
    values, named = dict(env), dict(ENV_NAMES)
    directory = env.get("CREDENTIALS_DIRECTORY")
    if not env.get(ENV_NAMES["secret"]) and directory:
        path = os.path.join(directory, CREDENTIAL)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return values, named
        except OSError as exc:
            raise apply.ApplyError(f"{path}: cannot read: {exc.strerror}") from None
        text = data.decode("utf-8", errors="surrogateescape").rstrip("\r\n")
        values[ENV_NAMES["secret"]] = utf8(text, f"credential {path}")
        named["secret"] = f"credential {path}"
    return values, named


def run(args: argparse.Namespace, out: Out) -> int:
    env, named = environment(os.environ)
    settings = settings_from_env(env)
    for warning in validate(settings, named):
        out.warn(warning)
    args.grace, where = grace_of(args.grace, os.environ)
    if args.grace >= settings.period:
        raise SchemeError(f"{where} must be less than the period ({settings.period}s)")
    if not args.config:
        raise apply.ApplyError("--config: the path is empty")
    if args.follow:
        if args.at is not None or args.dry_run:
            raise SchemeError("--follow goes by the clock: it takes neither --at nor --dry-run")
        return follow(args, out, settings)
    now = time.time() if args.at is None else float(args.at)
    rotation = rotate_once(args, out, settings, now)
    if rotation is not None and rotation.sections:
        _schedule(args, out, now, settings)
    return 0


RECHECK_SECONDS = 5.0  # how long a follower sleeps at most before it looks at the clock
RETRY_SECONDS = 30.0  # after a failed run


def follow(args: argparse.Namespace, out: Out, settings: Settings) -> int:
    """Stay running and rotate whenever the phase (period, grace) changes. The clock
    is read again at least every RECHECK_SECONDS, so a jump of the clock or a
    suspend is caught within that; SIGTERM or SIGINT ends the loop between runs
    (never inside one: a write or a reload is always finished)."""
    import select
    import signal

    stopping: list[int] = []
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, _frame: stopping.append(signum))
    signal.set_wakeup_fd(wake_w)  # a signal ends the select() below at once
    out.say(f"following the clock: period {settings.period}s, grace {args.grace}s")
    applied: Phase | None = None
    retry_at = 0.0
    while not stopping:
        now = time.time()
        wanted = phase(now, settings.period, args.grace)
        if wanted != applied and now >= retry_at:
            try:
                rotate_once(args, out, settings, now)
                applied = wanted
            except (SchemeError, apply.ApplyError, ConfError, OSError) as exc:
                where = f"{args.config}: " if isinstance(exc, ConfError) else ""
                out.error(f"{where}{exc} (trying again in {RETRY_SECONDS:g}s)")
                retry_at = now + RETRY_SECONDS
        due = next_change(time.time(), settings.period, args.grace)
        if not stopping:
            select.select([wake_r], [], [], max(0.0, min(RECHECK_SECONDS, due - time.time())))
    out.say("stopped")
    return 0


def rotate_once(
    args: argparse.Namespace, out: Out, settings: Settings, now: float
) -> Rotation | None:
    """One rotation of knockd.conf for instant ``now``: written and knockd reloaded
    when something changed (None for a dry run)."""
    path = args.config = apply.target_of(args.config)
    if args.dry_run:
        _report(rotate(apply.read_text(path), settings, now, args.grace), path, out, True)
        return None
    with apply.locked(path):
        old = apply.read_text(path)
        rotation = rotate(old, settings, now, args.grace)
        if rotation.sections and rotation.text != old:
            # said once written, never before: a failure must not read as a rotation
            report = lambda: _report(rotation, path, out, False)  # noqa: E731
            _write_and_reload(args, out, old, rotation.text, report)
        else:
            _report(rotation, path, out, False)
    return rotation


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
    args: argparse.Namespace, out: Out, old: str, new: str, written: Callable[[], object]
) -> None:
    reloader: apply.Reloader | None = None
    if not args.no_reload:  # find knockd before touching anything
        reloader = (
            apply.PidfileReloader(args.pidfile)
            if args.pidfile
            else apply.SystemdReloader(args.unit)
        )
    apply.atomic_write(args.config, new)
    out.say(f"{args.config}: written")
    written()
    if reloader is None:
        return
    logfile = _logfile(new)
    try:
        out.detail(apply.reload_and_verify(reloader, logfile))
    except apply.ApplyError as exc:
        apply.atomic_write(args.config, old)
        try:
            reloader.restart()
            back = (
                "knockd restarted on the previous file"
                if reloader.alive()
                else ("knockd could NOT be started again: start it by hand")
            )
        except (OSError, subprocess.SubprocessError, apply.ApplyError) as again:
            back = f"knockd could NOT be started again ({again}): start it by hand"
        raise apply.ApplyError(f"{exc}; {args.config} restored; {back}") from None
    out.say("knockd reloaded")


def _logfile(text: str) -> str | None:
    for section in knockdconf.parse(text):
        if section.name == "options":
            found = section.find("LOGFILE")
            if found:
                return found[-1].value
    return None


def _schedule(args: argparse.Namespace, out: Out, now: float, settings: Settings) -> None:
    """Under systemd, the rotator schedules its own next runs (systemd-run): at the
    boundaries and grace ends before the next regular run, and that regular run, so
    KNOCKD_ROTATOR_SERVER_INTERVAL is the one place the interval is set (the timer
    only starts the chain at boot and repairs it daily)."""
    runs = sorted({*extra_runs(now, settings, args.grace), next_regular_run(now, settings)})
    if not runs or args.no_schedule or args.dry_run:
        return
    if not apply.under_systemd():
        out.detail(f"not under systemd: no run scheduled for {runs}")
        return
    for at in runs:
        cmd = apply.schedule_run(at, now, args.self_unit)
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            out.say(f"scheduled a run at {at} ({int(at - now)}s from now)")
        elif "already" in done.stderr:
            out.detail(f"a run at {at} is already scheduled")
        else:
            out.error(f"could not schedule a run at {at}: {done.stderr.strip()}")


def init_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="knockssh-rotator init",
        description="Write the env file with a fresh secret (never over an existing one) "
        "and print, for this machine, a shell script that writes knockd.conf, sets the "
        "firewall and starts the units: read it, then run it (init | sh).",
    )
    p.add_argument(
        "--env-file", type=path_arg, default=server_setup.ENV_FILE, help="default %(default)s"
    )
    p.add_argument("--interface", help="knockd's interface (default: the default route's)")
    p.add_argument("--port", type=tcp_port, help="sshd's port (default: from sshd_config, else 22)")
    p.add_argument(
        "--firewall", choices=server_setup.FIREWALLS, help="default: iptables if present"
    )
    p.add_argument("--service", default="ssh", help="the rotator section's name (default ssh)")
    p.add_argument("--show-secret", action="store_true", help="print the secret (stdout only)")
    return p


def init(argv: list[str]) -> int:
    import secrets
    import shutil

    args = init_parser().parse_args(argv)
    out = Out(False, False)
    interface = args.interface or server_setup.default_route_interface(
        _read_or_empty("/proc/net/route")
    )
    if not interface:
        out.error("no default route to take knockd's interface from: give --interface")
        return 1
    problems = [
        ("--service", args.service, service_problem(args.service)),
        ("--interface", interface, server_setup.interface_problem(interface)),
        ("--env-file", args.env_file, server_setup.path_problem(args.env_file)),
    ]
    for option, value, problem in problems:
        if problem:
            out.error(f"{option} {shown(value, 40)}: {problem}")
            return 2 if option != "--interface" or args.interface else 1
    port = args.port or server_setup.sshd_port(_read_or_empty("/etc/ssh/sshd_config"))
    firewall = args.firewall or ("iptables" if shutil.which("iptables") else "nftables")
    here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "units")
    units = {name: _read_strict(os.path.join(here, name)) for name in server_setup.UNITS}
    script = server_setup.setup_script(
        interface, port, firewall, args.service, args.env_file, os.uname().nodename, units
    )
    secret = secrets.token_hex(32)
    try:
        apply.create_private(args.env_file, server_setup.env_file_text(secret))
    except FileExistsError:
        out.error(f"{args.env_file} exists: left as it was (remove it to start over)")
        return 1
    except OSError as exc:
        out.error(f"{args.env_file}: cannot write: {exc.strerror}")
        return 1
    text = script + (f"# secret: {secret}\n" if args.show_secret else "")
    return write_out(text, out)


def write_out(text: str, out: Out) -> int:
    """``text`` to stdout; a closed stdout (``| head``, a reader gone) is one line."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except OSError as exc:
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- the exit's flush goes there
        out.error(f"standard output: {exc.strerror or exc}")
        return 1
    return 0


def _read_or_empty(path: str) -> str:
    return _read_file(path)[0] or ""


def check_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="knockssh-rotator check",
        description="Check this knockd server (read-only): one line per problem, with "
        "what to run to fix it; exit 0 only when all is well.",
    )
    p.add_argument(
        "--config", type=path_arg, default=DEFAULT_CONFIG, help="knockd.conf (default %(default)s)"
    )
    p.add_argument(
        "--env-file", type=path_arg, default=server_setup.ENV_FILE, help="default %(default)s"
    )
    p.add_argument(
        "--pidfile", type=path_arg, help="knockd's pidfile (else its systemd unit, else a search)"
    )
    p.add_argument("--unit", default="knockd.service", help="knockd's systemd unit")
    return p


def check(argv: list[str]) -> int:
    args = check_parser().parse_args(argv)
    found = doctor.findings(gather(args))
    lines = [printable(finding.line()) for finding in found] or ["all well"]
    code = write_out("".join(f"{line}\n" for line in lines), Out(False, False))
    return code or (1 if found else 0)


def _output(cmd: list[str]) -> str | None:
    """A command's stdout, or None when it is missing or fails."""
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, errors="replace", timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _read_file(path: str) -> tuple[str | None, int | None, str | None]:
    """A small regular file's text, its mode, and else why it could not be read
    ("missing" only when nothing is there)."""
    try:
        data, st = files.read_regular(path, 1024 * 1024)
    except FileNotFoundError:
        return None, None, "missing"
    except OSError as exc:
        return None, None, f"cannot be read: {exc.strerror}"
    return data.decode("utf-8", "surrogateescape"), st.st_mode & 0o7777, None


def gather(args: argparse.Namespace) -> doctor.Facts:
    try:
        conf_text, conf_error = apply.read_text(args.config), None
    except apply.ApplyError as exc:
        conf_text, conf_error = None, str(exc).removeprefix(f"{args.config}: ")
    ip_link = _output(["ip", "-o", "link", "show"])
    interfaces = doctor.interfaces_of(ip_link) if ip_link is not None else None
    systemd = apply.under_systemd()
    pid = _knockd_pid(args, systemd)
    knockd_interface = None
    if pid:
        words = apply.command_line(pid)
        for flag in ("-i", "--interface"):
            if flag in words[:-1]:
                knockd_interface = words[words.index(flag) + 1]
    env_text, env_mode, env_error = _read_file(args.env_file)
    if systemd:
        timer = _output(["systemctl", "is-active", "knockssh-rotator.timer"]) or ""
        rotator_active: bool | None = timer.strip() == "active" or _follower_running()
    else:
        rotator_active = _follower_running()
    ntp = _output(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    return doctor.Facts(
        conf_path=args.config,
        conf_text=conf_text,
        conf_error=conf_error,
        interfaces=interfaces,
        default_interface=server_setup.default_route_interface(_read_or_empty("/proc/net/route")),
        knockd_interface=knockd_interface,
        knockd_running=pid is not None,
        iptables={tool: _output([tool, "-S", "INPUT"]) for tool in ("iptables", "ip6tables")},
        nft_ruleset=_output(["nft", "list", "ruleset"]),
        env_path=args.env_file,
        env_values=None if env_text is None else doctor.parse_env_file(env_text),
        env_error=env_error,
        env_mode=env_mode,
        systemd=systemd,
        rotator_active=rotator_active,
        ntp_synchronized=None if ntp is None else ntp.strip() == "yes",
    )


def _knockd_pid(args: argparse.Namespace, systemd: bool) -> int | None:
    if args.pidfile:
        text = _read_file(args.pidfile)[0] or ""
    elif systemd:
        text = _output(["systemctl", "show", "-p", "MainPID", "--value", args.unit]) or ""
    else:
        text = str(next((p for p in _pids() if apply.process_name(p) == "knockd"), 0))
    pid = whole_number(text.strip()) or 0
    return pid if pid > 0 and apply.pid_alive(pid) and apply.process_name(pid) == "knockd" else None


def _follower_running() -> bool:
    for pid in _pids():
        words = apply.command_line(pid)
        if "--follow" in words and any(w.endswith("knockssh-rotator") for w in words):
            return True
    return False


def _pids() -> list[int]:
    return [int(p) for p in _listdir("/proc") if p.isdigit()]


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _read_strict(path: str) -> str:
    with open(path, errors="surrogateescape") as f:
        return f.read()
