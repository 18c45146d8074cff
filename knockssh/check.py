"""``knockssh check [HOST]``: what the mapping file says, host by host; never the secret.

The sequence settings are validated with a stand-in secret, and each secret source is
described rather than read: a ``secret_command`` (pass, gpg) is not run, since a
command that prompts would prompt for every host; a file's mode and length are
checked; an environment variable's presence is. For one HOST it also says whether
``ssh -G HOST`` runs knockssh, and shows HOST's last failures from the failure log
(the only place a failure under ControlPersist is told).
"""

from __future__ import annotations

import os

from . import mapping
from .errors import KnocksshError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from rotator.scheme import Settings


STAND_IN = "stand-in secret, never used for a knock"


def describe_secret(entry: mapping.HostEntry, env: Mapping[str, str]) -> tuple[str, bool]:
    """Where the entry's secret comes from, and whether that looks usable; the secret
    itself is never shown, and a secret_command is never run."""
    from .secrets import ENV_SECRET, resolve

    command = entry.secret_command
    if command is not None:
        return f"from secret_command {command[0]} (not run by check)", True
    try:
        resolve(entry, env)  # a file, a variable or the inline value: nothing runs
    except KnocksshError as exc:  # it names the source
        return str(exc).removeprefix(f"{entry.label}: "), False
    if entry.secret_file is not None:
        return f"from secret_file {entry.secret_file}", True
    if entry.secret_env is not None:
        return f"from secret_env {entry.secret_env}", True
    if entry.secret is not None:
        return "from inline in the mapping file", True
    return f"from ${ENV_SECRET}", True


def counted(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def duration(seconds: int) -> str:
    """``4h 56m 4s``, ``2m 0s``, ``9s``: what a person reads at a glance."""
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes}m {secs}s"
    return f"{minutes}m {secs}s" if minutes else f"{secs}s"


def report(
    config: str | None,
    host: str | None,
    at: float,
    env: Mapping[str, str] | None = None,
    ssh_args: tuple[str, ...] = (),
) -> tuple[str, bool]:
    """The report's text and whether all is well: a missing mapping file, an entry
    that cannot knock, or a HOST that no entry matches or that ssh does not send
    through knockssh is not."""
    env = os.environ if env is None else env
    hostmap = mapping.load(config, env)
    if not hostmap.found:
        return (
            f"mapping file: {hostmap.path} does not exist\n"
            f"  make one with: knockssh add HOST --secret-stdin   (or name one with --config)\n",
            False,
        )
    count = counted(len(hostmap.entries), "host entry", "host entries")
    lines = [f"mapping file: {hostmap.path} ({count})"]
    entries = hostmap.entries
    ok = True
    ssh_lines: list[str] = []
    target = host
    if host is not None:  # knockssh is given ssh's HostName (%h), so look that up
        ssh_lines, ok, hostname = _ssh(host, ssh_args)
        target = hostname or host
        if target.lower() != host.lower():
            lines.append(f"{host}: ssh connects to HostName {target}")
        entry = hostmap.lookup(target)
        if entry is None:
            lines.append(f"{target}: {hostmap.unmatched(target)}: ssh connects without knocking")
            ok, ssh_lines = False, []
        entries = () if entry is None else (entry,)
    for entry in entries:
        entry_lines, fine = _entry(entry, target, at, env)
        lines += entry_lines
        ok = ok and fine
    if host is not None:
        lines += ssh_lines + _failures(env, (host, str(target)))
    return "\n".join(lines) + "\n", ok


def _entry(
    entry: mapping.HostEntry, host: str | None, at: float, env: Mapping[str, str]
) -> tuple[list[str], bool]:
    from rotator import scheme

    from .sequences import settings_for

    shown = [p for p in entry.patterns if mapping.matches((p,), host)] if host else []
    head = f"host entry {entry.number}: match {', '.join(entry.patterns)}"
    if shown:
        head += f" (matched by {', '.join(shown)})"
    lines = [head]
    if entry.static_sequence is not None:
        knocks = scheme.parse_sequence(entry.static_sequence)
        return [*lines, f"  static sequence of {len(knocks)} knocks, no rotation"], True
    try:
        settings: Settings = settings_for(entry, env, secret=STAND_IN)
    except KnocksshError as exc:
        return [*lines, f"  error: {exc}"], False
    source, fine = describe_secret(entry, env)
    lines.append(f"  {'' if fine else 'error: '}secret: {source}")
    nxt = scheme.next_boundary(at, settings.period)
    lines.append(
        f"  service {entry.service} (knockd.conf section "
        f"[{scheme.rotator_name(str(entry.service))}]): {settings.length} knocks from "
        f"{len(settings.ports)} ports, entropy {settings.entropy_bits:.1f} bits"
    )
    lines.append(
        f"  period {settings.period}s, current one started at "
        f"{scheme.period_start(at, settings.period)}, next rotation in {duration(int(nxt - at))}"
    )
    if entry.knock_host:
        lines.append(f"  knocks at {entry.knock_host}")
    return lines, fine


def _ssh(host: str, ssh_args: tuple[str, ...]) -> tuple[list[str], bool, str]:
    """Whether ``ssh -G HOST`` runs knockssh (if ssh cannot tell, that is not counted
    as a failure: paramiko needs no ssh), and the HostName it resolves HOST to."""
    from .wrappers import proxy_program, ssh_config_of

    config = ssh_config_of([*ssh_args, host])
    if not config:
        return [f"ssh -G {host}: ssh could not tell (is OpenSSH's ssh on PATH?)"], True, ""
    proxy = config.get("proxycommand", "none")
    hostname = config.get("hostname", "")
    if "knockssh" in proxy:
        return [f"ssh runs knockssh for {host}: ProxyCommand {proxy}"], True, hostname
    if config.get("proxyjump", "none") != "none":
        why = f"it goes through ProxyJump {config['proxyjump']}"
    else:
        why = f"its ProxyCommand is {proxy}"
    return (
        [
            f"error: ssh does not run knockssh for {host} ({why}); add to ~/.ssh/config:",
            f"    Host {host}",
            f"        ProxyCommand {proxy_program()} %h %p",
            "  (knockssh-ssh, -scp and -rsync add it by themselves)",
        ],
        False,
        hostname,
    )


def _failures(env: Mapping[str, str], names: tuple[str, ...]) -> list[str]:
    from .failures import log_path, recent

    found = recent(env, tuple(dict.fromkeys(n.lower() for n in names)))
    if not found:
        return [f"no failure of {names[0]} in {log_path(env)}"]
    return [f"last failures of {names[0]} (from {log_path(env)}):", *(f"  {f}" for f in found)]
