"""``knockssh-rotator client add|list|revoke``: a door per person or machine.

A client's door is an ordinary rotator section, ``[NAME_ROTATOR]``, modelled on the
host's own, whose sequence the rotator derives with the client's own secret
(``/etc/knockssh/clients/NAME.secret``). Adding or revoking one rotates at once and
reloads knockd (same pid: the other doors, and doors already open, are untouched).
``add`` prints the enrolment line, the one place a secret is ever printed."""

from __future__ import annotations

import argparse
import os
import socket
import time

from .. import clients, enrolment, files, knockdconf, server_setup
from ..arguments import DEFAULT_CONFIG, Out, Parser, path_arg, tcp_port
from ..errors import RotatorError
from ..scheme import DEFAULTS, ENV_PREFIX
from . import rotate

SECRET_BYTES = 32  # a client's secret: 256 random bits, URL-safe text

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def client_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="knockssh-rotator client",
        description="A door of its own for each person or machine: add (prints the "
        "enrolment line), list, revoke.",
    )
    p.add_argument("action", choices=("add", "list", "revoke"))
    p.add_argument("name", nargs="?", help="the client: 1-32 of a-z, 0-9, '-'")
    p.add_argument(
        "--config", type=path_arg, default=DEFAULT_CONFIG, help="knockd.conf (default %(default)s)"
    )
    p.add_argument("--pidfile", type=path_arg, help="SIGHUP the knockd whose pid is here")
    p.add_argument("--no-reload", action="store_true", help="write the file but do not reload")
    rotate.add_common(p)
    p.add_argument(
        "--env-file",
        type=path_arg,
        default=server_setup.ENV_FILE,
        help="the rotator's settings when they are not in the environment (default %(default)s)",
    )
    p.add_argument("--host", help="the server's name for clients (default: its FQDN)")
    p.add_argument("--port", type=tcp_port, help="sshd's port (default: init's, else 22)")
    p.add_argument("--qr", action="store_true", help="add: also draw the line as a QR code")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv: list[str]) -> int:
    args = client_parser().parse_args(argv)
    args.grace, args.dry_run = None, False  # as a run of the rotator: the grace from the env
    out = Out(False, args.quiet, to_stderr=args.action == "add")  # stdout: the line alone
    where = clients.directory(args.clients_dir, os.environ)
    if args.action == "list":
        if args.name is not None:
            raise RotatorError("client list takes no name")
        return _list(args, out, where)
    if args.name is None:
        raise RotatorError(f"client {args.action} needs a NAME")
    problem = clients.name_problem(args.name)
    if problem:
        raise RotatorError(problem)
    if args.action == "add":
        return _add(args, out, where)
    return _revoke(args, out, where)


def _settings_env(args: argparse.Namespace) -> dict[str, str]:
    """KNOCKD_ROTATOR_* as the timer's runs see them: the environment, else the env
    file (an admin's shell has not read it)."""
    env = dict(os.environ)
    if not env.get(ENV_PREFIX + "SECRET"):
        try:
            data, _ = files.read_regular(args.env_file, 64 * 1024)
        except OSError as exc:
            raise RotatorError(
                f"{args.env_file}: cannot read the rotator's settings: {exc.strerror}"
            ) from None
        from ..doctor import parse_env_file

        file_values = parse_env_file(data.decode("utf-8", "surrogateescape"))
        env.update({k: v for k, v in file_values.items() if k.startswith(ENV_PREFIX)})
    return env


def _rotate(args: argparse.Namespace, out: Out, env: dict[str, str], edit: rotate.Edit) -> None:
    """Edit knockd.conf and rotate it at once, as a run of the rotator would."""
    args.grace, args.dry_run = None, False
    settings = rotate.settings_of(args, out, env)
    rotate.rotate_once(args, out, settings, time.time(), rotate.find_knockd(args), edit)


def _add(args: argparse.Namespace, out: Out, where: str) -> int:
    name = args.name
    env = _settings_env(args)
    settings = rotate.settings_of(args, Out(False, True), env)  # said again by _rotate
    ports = env.get(ENV_PREFIX + "PORTS") or DEFAULTS["PORTS"]
    host = args.host or socket.getfqdn()
    problem = enrolment.host_problem(host)
    if problem:
        raise RotatorError(f"--host {host!a}: {problem}")
    drawer = _qr_drawer() if args.qr else None  # missing: said before anything is written
    port = args.port or _init_port() or 22
    known = frozenset(clients.names(where))

    def with_door(text: str) -> str:
        return knockdconf.with_client(text, name, known)

    rotate.edited(with_door, _conf_text(args), args.config)  # refused: nothing written yet
    made = not os.path.lexists(where)
    secret = _new_secret()
    path = clients.store(where, name, secret)
    try:
        _rotate(args, out, env, with_door)
    except BaseException:
        clients.remove(where, name)  # nothing half done: the section was not written
        if made:
            os.rmdir(where)
        raise
    out.say(f"client {name}: door [{name}_ROTATOR] added, secret in {path}")
    line = enrolment.line(
        enrolment.Enrolment(
            host, port, name, settings.period, settings.length, ports, settings.proto_modulo, secret
        )
    )
    print(line, flush=True)  # the enrolment line: the one place the secret is printed
    if drawer is not None:
        print(drawer(line), flush=True)
    return 0


def _new_secret() -> str:
    import secrets

    return secrets.token_urlsafe(SECRET_BYTES)


def _init_port() -> int | None:
    try:
        data, _ = files.read_regular(server_setup.INIT_RECORD, 4096)
    except OSError:
        return None
    return server_setup.parse_record(data.decode("utf-8", "replace"))[0]


def _qr_drawer() -> Callable[[str], str]:
    """What draws a line as a QR code of text blocks (qrcode, a server-side extra)."""
    try:
        import qrcode  # type: ignore[import-untyped]
    except ImportError:
        raise RotatorError(
            "--qr needs the Python module qrcode (apt install python3-qrcode, or pip "
            "install 'knockssh[qr]'): nothing was added"
        ) from None

    def draw(line: str) -> str:
        import io

        code = qrcode.QRCode(border=2, error_correction=qrcode.constants.ERROR_CORRECT_L)
        code.add_data(line)
        code.make(fit=True)
        drawn = io.StringIO()
        code.print_ascii(out=drawn, invert=True)
        return drawn.getvalue()

    return draw


def _revoke(args: argparse.Namespace, out: Out, where: str) -> int:
    name = args.name
    had_section: list[bool] = []

    def without(text: str) -> str:
        new = knockdconf.without_client(text, name)
        had_section.append(new is not None)
        return text if new is None else new

    if name not in clients.names(where):
        conf = _conf_text(args)
        if knockdconf.without_client(conf, name) is None:
            raise RotatorError(f"no client {name}: no secret in {where}, no [{name}_ROTATOR]")
    _rotate(args, out, _settings_env(args), without)
    removed = clients.remove(where, name)
    what = " and ".join(
        w for w, done in (("its door", any(had_section)), ("its secret", removed)) if done
    )
    out.say(
        f"client {name}: {what} removed; its next knock opens nothing "
        "(a door it opened already closes at cmd_timeout)"
    )
    return 0


def _conf_text(args: argparse.Namespace) -> str:
    from .. import conffile

    try:
        return conffile.read_text(args.config)
    except knockdconf.ConfError as exc:
        raise RotatorError(f"{args.config}: {exc}") from None


def _list(args: argparse.Namespace, out: Out, where: str) -> int:
    added = clients.names(where)
    try:
        sections = knockdconf.rotator_sections(knockdconf.parse(_conf_text(args)))
    except knockdconf.ConfError as exc:
        raise RotatorError(f"{args.config}: {exc}") from None
    doors = {s.name[: -len("_ROTATOR")] for s in sections}
    for name, when in added.items():
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when))
        note = "" if name in doors else f"  (no [{name}_ROTATOR] in {args.config})"
        print(f"{name}\tadded {stamp}{note}", flush=True)
    if not added:
        out.say(f"no clients ({where} holds no secret)")
    return 0
