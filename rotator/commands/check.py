"""``knockssh-rotator check``: the server's doctor. Gathers the facts (files,
/proc, command outputs) read-only; ``rotator.doctor`` decides from them alone."""

from __future__ import annotations

import argparse
import subprocess

from .. import conffile, doctor, files, knockdconf, proc, server_setup, systemd
from ..arguments import DEFAULT_CONFIG, Out, Parser, path_arg, write_out
from ..errors import RotatorError
from ..scheme import whole_number
from ..text import printable


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


def main(argv: list[str]) -> int:
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


def read_or_empty(path: str) -> str:
    return _read_file(path)[0] or ""


def gather(args: argparse.Namespace) -> doctor.Facts:
    try:
        conf_text, conf_error = conffile.read_text(args.config), None
    except RotatorError as exc:
        conf_text, conf_error = None, str(exc).removeprefix(f"{args.config}: ")
    ip_link = _output(["ip", "-o", "link", "show"])
    interfaces = doctor.interfaces_of(ip_link) if ip_link is not None else None
    under_systemd = systemd.under_systemd()
    pid = _knockd_pid(args, under_systemd)
    knockd_interface = (
        knockdconf.interface_on_command_line(proc.command_line(pid)[1:]) if pid else None
    )
    env_text, env_mode, env_error = _read_file(args.env_file)
    if under_systemd:
        timer = _output(["systemctl", "is-active", "knockssh-rotator.timer"]) or ""
        rotator_active: bool | None = timer.strip() == "active" or _follower_running()
    else:
        rotator_active = _follower_running()
    ntp = _output(["timedatectl", "show", "-p", "NTPSynchronized", "--value"])
    restart = _output(["systemctl", "show", "-p", "Restart", "--value", args.unit])
    return doctor.Facts(
        conf_path=args.config,
        conf_text=conf_text,
        conf_error=conf_error,
        interfaces=interfaces,
        default_interface=server_setup.default_route_interface(read_or_empty("/proc/net/route")),
        knockd_interface=knockd_interface,
        knockd_running=pid is not None,
        iptables={tool: _output([tool, "-S", "INPUT"]) for tool in ("iptables", "ip6tables")},
        nft_ruleset=_output(["nft", "list", "ruleset"]),
        env_path=args.env_file,
        env_values=None if env_text is None else doctor.parse_env_file(env_text),
        env_error=env_error,
        env_mode=env_mode,
        systemd=under_systemd,
        rotator_active=rotator_active,
        knockd_restart=restart.strip() if under_systemd and restart else None,
        ntp_synchronized=None if ntp is None else ntp.strip() == "yes",
        listening=doctor.listening_ports(
            "".join(read_or_empty(f"/proc/net/{t}") for t in ("tcp", "tcp6", "udp", "udp6"))
        ),
    )


def _knockd_pid(args: argparse.Namespace, under_systemd: bool) -> int | None:
    """The knockd that reads the checked file: the pidfile's, else the unit's main
    process, else any knockd of this machine (another -c file, a container's) whose
    configuration is that very file."""
    if args.pidfile:
        text = _read_file(args.pidfile)[0] or ""
        pid = whole_number(text.strip()) or 0
        return pid if pid > 0 and _is_knockd(pid) else None
    candidates = []
    if under_systemd:
        try:
            candidates.append(systemd.main_pid(args.unit))
        except RotatorError:
            pass
    candidates += [p for p in proc.pids() if p not in candidates]
    for pid in candidates:
        if pid > 0 and _is_knockd(pid):
            config = doctor.knockd_config(proc.command_line(pid))
            if proc.same_file(pid, config, args.config):
                return pid
    return None


def _is_knockd(pid: int) -> bool:
    return proc.pid_alive(pid) and proc.process_name(pid) == "knockd"


def _follower_running() -> bool:
    for pid in proc.pids():
        words = proc.command_line(pid)
        if "--follow" in words and any(w.endswith("knockssh-rotator") for w in words):
            return True
    return False
