"""``knockssh``: the ProxyCommand (``knockssh HOST PORT``) and its subcommands."""

from __future__ import annotations

import os
import sys

from .errors import KnocksshError, UsageError
from .log import NORMAL, QUIET, VERBOSE, Log, printable
from .peer import PeerGone

TYPE_CHECKING = False
if TYPE_CHECKING:
    from rotator.scheme import Knock, Settings

USAGE = """\
usage: knockssh [-4|-6] [--config PATH] [--fdpass] [--offset N] [-v|-q] HOST PORT
       knockssh generate SERVICE [--offset N] [--at UNIX_SECONDS] [--format client|knockd]
       knockssh generate --host HOST [--config PATH] [--offset N] [--at ..] [--format ..]
       knockssh knock HOST [SERVICE] [--service S] [--offset N] [-4|-6] [--config PATH]
       knockssh check [HOST] [--config PATH] [-F SSH_CONFIG]
       knockssh add HOST [--service S] (--secret-file PATH | --secret-stdin) [--replace]
       knockssh remove HOST [--config PATH]   (the entry and its stored secret)
       knockssh enroll [--file F] [--config PATH]   (a server's enrolment line, on stdin)
       knockssh socks [--listen ADDR:PORT] [--config PATH]   (a SOCKS5 proxy that knocks)
       knockssh --version
Every command takes -4/-6 and -v/-q anywhere on its line.

HOST PORT (two arguments, the second a port number) is the ProxyCommand form:
  ProxyCommand knockssh %h %p           in ~/.ssh/config
It knocks when HOST is in the mapping file, then relays stdin/stdout to the
connection (or, with --fdpass under ProxyUseFdpass yes, hands the socket to ssh).
The mapping file is --config (it wins), else $KNOCKSSH_CONFIG, else
$XDG_CONFIG_HOME/knockssh/hosts.toml. Sequences use KNOCKD_ROTATOR_* variables
for anything the mapping file does not set. Diagnostics go to stderr only;
failures of the ProxyCommand are also kept in
$XDG_STATE_HOME/knockssh/failures.log (~/.local/state/knockssh/failures.log),
since under ControlPersist ssh discards the ProxyCommand's stderr.
"""
COMMANDS = ("generate", "knock", "check", "add", "remove", "enroll", "socks")
COMMON_FLAGS = {"-v": "verbose", "--verbose": "verbose", "-q": "quiet", "--quiet": "quiet"}
NET_FLAGS = {"-4": "ipv4", "-6": "ipv6"}
VALUE_OPTIONS = (
    "--config",
    "--offset",
    "--at",
    "--service",
    "--secret-file",
    "--listen",
    "--host",
    "--format",
    "--file",
    "-F",
)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    log = Log(NORMAL)
    command = ""
    try:
        if args and args[0] in ("-h", "--help", "help"):
            os.write(1, USAGE.encode())
            return 0
        if "--version" in (args[: args.index("--")] if "--" in args else args):
            from .version import VERSION

            os.write(1, f"knockssh {VERSION}\n".encode())
            return 0
        for i, arg in enumerate(args, 1):
            if not _is_utf8(arg):
                raise UsageError(f"argument {i} ({arg!a}) is not valid UTF-8 text")
        command, rest = _command(args)
        if "-h" in rest or "--help" in rest:
            os.write(1, USAGE.encode())
            return 0
        commands = {"proxy": _proxy, "generate": _generate, "knock": _knock, "check": _check}
        more = {"add": _add, "remove": _remove, "enroll": _enroll, "socks": _socks}
        return {**commands, **more}[command](rest, log)
    except PeerGone:
        return 1  # ssh is gone: nobody to tell
    except KnocksshError as exc:
        if isinstance(exc, UsageError):
            log.error(f"{exc} (try 'knockssh --help')")
        else:
            log.error(str(exc))
        if command == "proxy" and not isinstance(exc, UsageError):
            from .failures import record

            record(os.environ, str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def run() -> None:
    """The ``knockssh`` command: ``main()``, then exit without the interpreter's teardown.

    Freeing every module and object at exit costs about 3 ms on the test machine,
    as much as all our imports, and with ``--fdpass`` ssh waits for our exit. knockssh
    writes with ``os.write``; exit handlers still run and Python's buffers are flushed.
    """
    code = main()
    import atexit  # built in

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (AttributeError, OSError):  # None when started without that fd; a closed pipe
            pass
    os._exit(code)


def _command(args: list[str]) -> tuple[str, list[str]]:
    """ProxyCommand form first: two positionals whose second is a port, whatever the host."""
    positions = _positional_indexes(args)
    words = [args[i] for i in positions]
    if len(words) == 2 and words[1].isascii() and words[1].isdigit():
        return "proxy", args
    if not words:
        raise UsageError("missing HOST PORT or a command")
    full = [c for c in COMMANDS if c.startswith(words[0].lower())] if words[0] else []
    if len(full) != 1:
        raise UsageError(
            f"unknown command {words[0]!r} (expected HOST PORT, {', '.join(COMMANDS)})"
        )
    return full[0], args[: positions[0]] + args[positions[0] + 1 :]


def _positional_indexes(args: list[str]) -> list[int]:
    found: list[int] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            return found + list(range(i + 1, len(args)))
        if arg.startswith("-") and arg != "-":  # -4, -6 are flags, never a name
            if arg in VALUE_OPTIONS:
                i += 1  # skip its value
        else:
            found.append(i)
        i += 1
    return found


def _is_utf8(text: str) -> bool:  # not scheme.utf8: an unmapped host never loads the scheme
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _level(opts: dict[str, str]) -> int:
    return QUIET if opts.get("quiet") else VERBOSE if opts.get("verbose") else NORMAL


def _family(opts: dict[str, str]) -> int:
    from .net import AF_INET, AF_INET6

    if opts.get("ipv4") and opts.get("ipv6"):
        raise UsageError("-4 and -6 exclude each other")
    return AF_INET if opts.get("ipv4") else AF_INET6 if opts.get("ipv6") else 0


def _offset(opts: dict[str, str]) -> int | None:
    return None if opts.get("offset") is None else integer(opts["offset"], "--offset", -1000, 1000)


def _proxy(args: list[str], log: Log) -> int:
    opts, (host, port_text) = parse(
        args,
        {**COMMON_FLAGS, **NET_FLAGS, "--fdpass": "fdpass"},
        {"--config": "config", "--offset": "offset"},
    )
    log.level = _level(opts)
    port = integer(port_text, "port", 1, 65535)
    if host.startswith("-") or not host:
        raise UsageError(f"refusing host name {host!r}")
    from .client import open_connection
    from .relay import is_socket, pass_fd, relay

    if opts.get("fdpass") and not is_socket(1):
        raise UsageError("--fdpass needs ProxyUseFdpass yes (stdout is not a socket)")
    from .peer import Watch

    sock = open_connection(
        host,
        port,
        config=opts.get("config"),
        family=_family(opts),
        offset=_offset(opts),
        log=log,
        watch=Watch((1,)),  # stdout is ssh: its hang-up ends the knocking at once
    )
    if opts.get("fdpass"):
        pass_fd(sock)
        return 0  # ssh waits for our exit before it goes on: run() skips the teardown
    try:
        relay(sock)
    except OSError as exc:
        raise KnocksshError(f"{host} port {port}: connection lost: {exc.strerror or exc}") from None
    return 0


FORMATS = ("client", "knockd")  # knockssh's and knockd_rotator's spaces; knockd.conf's commas


def _generate(args: list[str], log: Log) -> int:
    opts, positionals = parse(
        args,
        {**COMMON_FLAGS, **NET_FLAGS},  # accepted everywhere; a sequence has no family
        {
            "--offset": "offset",
            "--at": "at",
            "--service": "service",
            "--host": "host",
            "--config": "config",
            "--format": "format",
        },
    )
    log.level = _level(opts)
    if opts.get("service"):
        positionals.append(str(opts["service"]))
    form = opts.get("format", "client")
    if form not in FORMATS:
        raise UsageError(f"--format must be {' or '.join(FORMATS)}, not {form!r}")
    if len(positionals) > 1 or not (positionals or opts.get("host")):
        raise UsageError(
            "usage: knockssh generate SERVICE | --host HOST [--offset N] [--at UNIX_SECONDS]"
        )
    from rotator import scheme, secret

    try:
        at = _instant(opts)
        if opts.get("host"):
            knocks, settings, start = _host_sequence(opts, positionals, at)
        else:
            settings = scheme.settings_from_env(secret.environment(os.environ))
            for warning in scheme.validate(settings, scheme.ENV_NAMES):
                log.warn(f"warning: {warning}")
            start = scheme.period_start(at, settings.period, _offset(opts) or 0)
            knocks = scheme.derive(settings, positionals[0], start)
    except scheme.SchemeError as exc:
        raise KnocksshError(str(exc)) from None
    if log.level >= VERBOSE and settings is not None:  # entropy_bits would load math first
        log.info(f"entropy {settings.entropy_bits:.2f} bits; period starting at {start}")
    shown = scheme.knockd_form(knocks) if form == "knockd" else scheme.client_form(knocks)
    _write_out(shown + "\n")
    return 0


def _host_sequence(
    opts: dict[str, str], positionals: list[str], at: float
) -> tuple[tuple[Knock, ...], Settings | None, int | None]:
    """``generate --host HOST``: the sequence HOST's entry knocks in the period of
    ``at`` (its secret and settings; SERVICE, if given, instead of its service)."""
    from rotator import scheme

    from . import mapping
    from .sequences import settings_for

    host = opts["host"]
    hostmap = mapping.load(opts.get("config"), os.environ)
    entry = hostmap.lookup(host)
    if entry is None:
        raise KnocksshError(f"{host}: {hostmap.unmatched(host)}")
    if positionals:
        entry = entry.with_service(positionals[0])
    if entry.static_sequence is not None:
        return scheme.parse_sequence(entry.static_sequence), None, None
    settings = settings_for(entry, os.environ)
    start = scheme.period_start(at, settings.period, _offset(opts) or 0)
    return scheme.derive(settings, str(entry.service), start), settings, start


def _instant(opts: dict[str, str]) -> float:
    import time

    return time.time() if opts.get("at") is None else integer(opts["at"], "--at", 0, 10**11)


def _knock(args: list[str], log: Log) -> int:
    opts, positionals = parse(
        args,
        {**COMMON_FLAGS, **NET_FLAGS},
        {"--config": "config", "--offset": "offset", "--service": "service"},
    )
    log.level = _level(opts)
    if not 1 <= len(positionals) <= 2:
        raise UsageError("usage: knockssh knock HOST [SERVICE] [--service S] [--offset N]")
    host = positionals[0]
    service = opts.get("service") or (positionals[1] if len(positionals) == 2 else None)
    from . import mapping
    from .client import Knocker

    entry = mapping.load(opts.get("config"), os.environ).lookup(host)
    if service:
        entry = (
            entry.with_service(str(service))
            if entry
            else mapping.HostEntry("command line", 0, (host,), {"service": service})
        )
    if entry is None:
        raise KnocksshError(f"{host}: not in the mapping file; name a SERVICE to knock")
    family = _family(opts)
    chosen = Knocker(entry, os.environ, log).knock_only(host, family, _offset(opts))
    log.info(f"knocked {len(chosen.knocks)} ports for {host}, {chosen.label} ({entry.label})")
    return 0


def _add(args: list[str], log: Log) -> int:
    opts, positionals = parse(
        args,
        {
            **COMMON_FLAGS,
            **NET_FLAGS,
            "--secret-stdin": "secret_stdin",
            "--replace": "replace",
        },
        {"--config": "config", "--service": "service", "--secret-file": "secret_file"},
    )
    log.level = _level(opts)
    if len(positionals) != 1 or bool(opts.get("secret_stdin")) == bool(opts.get("secret_file")):
        raise UsageError(
            "usage: knockssh add HOST [--service S] (--secret-file PATH | --secret-stdin) "
            "[--replace]"
        )
    from . import add

    host, service = positionals[0], opts.get("service")
    add.check_host(host)
    add.check_service(service or "ssh")
    if opts.get("secret_stdin"):
        source, data = "standard input", add.read_secret_stdin()
    else:
        source = str(opts["secret_file"])
        data = add.read_secret_file(source)
    secret = add.checked_secret(data, source)
    path, stored, replaced = add.add(
        host, service, secret, opts.get("config"), os.environ, bool(opts.get("replace"))
    )
    if replaced:
        out = [f"replaced the secret of {host} in {printable(stored)} (0600)"]
    else:
        out = [
            f"added {host} (service {service or 'ssh'}) to {printable(path)}; "
            f"its secret is in {printable(stored)} (0600)"
        ]
    from .wrappers import proxy_program

    uses = add.ssh_uses_knockssh(host)
    if uses is False or uses is None:
        out += [
            "ssh does not run knockssh for this host yet: add to ~/.ssh/config",
            f"Host {host}",
            f"    ProxyCommand {proxy_program()} %h %p",
        ]
    out.append(f"then: knockssh check {host}")
    _write_out("\n".join(out) + "\n", "the entry was written")
    return 0


def _enroll(args: list[str], log: Log) -> int:
    """The enrolment line a server's ``client add`` printed, from stdin or --file
    (never argv: it holds the secret), as ``add`` would write it by hand."""
    opts, positionals = parse(
        args, {**COMMON_FLAGS, **NET_FLAGS}, {"--config": "config", "--file": "file"}
    )
    log.level = _level(opts)
    if positionals:
        raise UsageError(
            "usage: knockssh enroll [--file F] [--config PATH] (the line on stdin, "
            "never as an argument: it holds a secret)"
        )
    from rotator.enrolment import EnrolmentError
    from rotator.enrolment import parse as parse_line

    from . import add

    source = str(opts["file"]) if opts.get("file") else "standard input"
    data = add.read_secret_file(source) if opts.get("file") else add.read_secret_stdin()
    try:
        e = parse_line(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise KnocksshError(f"{source}: not an enrolment line: not UTF-8 text") from None
    except EnrolmentError as exc:
        raise KnocksshError(f"{source}: {exc}") from None
    add.check_host(e.host)
    add.check_service(e.service)
    tunables: dict[str, int | str] = {
        "period": e.period,
        "length": e.length,
        "ports": e.ports,
        "proto_modulo": e.proto_modulo,
    }
    path, stored, _ = add.add(
        e.host, e.service, e.secret, opts.get("config"), os.environ, tunables=tunables
    )
    from .wrappers import proxy_program

    out = [
        f"enrolled {e.host} (service {e.service}) in {printable(path)}; "
        f"its secret is in {printable(stored)} (0600)",
        "for ssh, in ~/.ssh/config:",
        f"Host {e.host}",
        *([f"    Port {e.port}"] if e.port != 22 else []),
        f"    ProxyCommand {proxy_program()} %h %p",
        f"then: knockssh check {e.host}",
    ]
    _write_out("\n".join(out) + "\n", "the entry was written")
    return 0


def _remove(args: list[str], log: Log) -> int:
    opts, positionals = parse(args, {**COMMON_FLAGS, **NET_FLAGS}, {"--config": "config"})
    log.level = _level(opts)
    if len(positionals) != 1:
        raise UsageError("usage: knockssh remove HOST [--config PATH]")
    from . import add

    host = positionals[0]
    path, stored = add.remove(host, opts.get("config"), os.environ)
    gone = f" and its secret {printable(stored)}" if stored else ""
    _write_out(f"removed the entry of {host}{gone} from {printable(path)}\n", "it was removed")
    return 0


def _write_out(text: str, done: str = "") -> None:
    """``text`` to stdout; a reader that went away (``| head``) is one line."""
    try:
        os.write(1, text.encode(errors="backslashreplace"))
    except OSError as exc:
        after = f" ({done})" if done else ""
        raise KnocksshError(f"standard output: {exc.strerror or exc}{after}") from None


def _socks(args: list[str], log: Log) -> int:
    opts, positionals = parse(args, COMMON_FLAGS, {"--listen": "listen", "--config": "config"})
    log.level = _level(opts)
    if positionals:
        raise UsageError("usage: knockssh socks [--listen ADDR:PORT] [--config PATH]")
    from . import socks

    stop = socks.Stop()
    try:
        listener = socks.listener_for(opts.get("listen") or socks.DEFAULT_LISTEN, log)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    where = listener.getsockname()
    log.error(f"SOCKS5 proxy on {where[0]} port {where[1]} (knocking for mapped hosts)")
    return socks.Server(listener, log, opts.get("config")).serve(stop)


def _check(args: list[str], log: Log) -> int:
    opts, positionals = parse(
        args, {**COMMON_FLAGS, **NET_FLAGS}, {"--config": "config", "--at": "at", "-F": "ssh"}
    )
    log.level = _level(opts)
    if len(positionals) > 1:
        raise UsageError("usage: knockssh check [HOST] [--config PATH] [-F SSH_CONFIG]")
    from .check import report

    ssh_args = ("-F", opts["ssh"]) if opts.get("ssh") else ()
    host = positionals[0] if positionals else None
    text, ok = report(opts.get("config"), host, _instant(opts), ssh_args=ssh_args)
    _write_out("\n".join(printable(line) for line in text.split("\n")))
    return 0 if ok else 1


# -- arguments: argparse costs more start-up time than the whole ProxyCommand
# path, and our grammar is tiny ------------------------------------------------


def parse(
    args: list[str], flags: dict[str, str], options: dict[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Split ``args`` into options and positionals.

    ``flags`` and ``options`` map every spelling (``-v``, ``--verbose``) to a key;
    flags count their occurrences (as text: every value is a str), options take a
    value (``--x V`` or ``--x=V``).
    ``--`` ends option parsing; a lone ``-`` is a positional.
    """
    found: dict[str, str] = {}
    positionals: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            positionals.extend(it)
            break
        if not arg.startswith("-") or arg == "-":
            positionals.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in flags and not eq:
            key = flags[name]
            found[key] = str(int(found.get(key, "0")) + 1)
        elif name in options:
            if not eq:
                following = next(it, None)
                if following is None:
                    raise UsageError(f"option {name} needs a value")
                value = following
            if not value:
                raise UsageError(f"option {name}: the value is empty")
            found[options[name]] = value
        elif len(arg) > 2 and arg[1] != "-" and all("-" + c in flags for c in arg[1:]):
            for c in arg[1:]:  # bundled short flags: -vv
                key = flags["-" + c]
                found[key] = str(int(found.get(key, "0")) + 1)
        else:
            raise UsageError(f"unknown option {name}")
    return found, positionals


def integer(value: object, what: str, low: int, high: int) -> int:
    """A whole number from ``low`` to ``high``, its digits checked before any arithmetic
    (as scheme.whole_number does; not imported: an unmapped host never loads the scheme)."""
    text = str(value)
    shown = text if len(text) <= 24 else text[:20] + "..."
    digits = text[1:] if text.startswith("-") else text
    if len(text) > 12 or not (digits.isascii() and digits.isdigit()):
        raise UsageError(f"{what} must be a whole number from {low} to {high}, not {shown!r}")
    number = int(text, 10)
    if not low <= number <= high:
        raise UsageError(f"{what} must be from {low} to {high}, not {number}")
    return number
