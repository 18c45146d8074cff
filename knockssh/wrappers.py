"""``knockssh-ssh``, ``knockssh-scp``, ``knockssh-rsync``: the real programs with our
ProxyCommand added; every user argument passes through untouched.

ssh runs a ProxyCommand through ``$SHELL -c`` and expands ``%`` tokens across the
whole string, so the one literal we insert (the path of knockssh) is shell-quoted
and has its ``%`` doubled, and the host and port stay ssh's own quoted tokens.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

PROXY_KEYS = ("proxycommand", "proxyjump")


def knockssh_path() -> str:
    """The knockssh script beside this wrapper (same installation), else on PATH."""
    here = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "knockssh")
    if os.access(here, os.X_OK):
        return here
    found = shutil.which("knockssh")
    if found:
        return found
    return f"{sys.executable} -m knockssh"  # pragma: no cover - uninstalled checkout


def proxy_command(exe: str | None = None, host: str | None = None, port: str | None = None) -> str:
    """The ProxyCommand: knockssh, then the host and port. Given ``host`` (the final
    HostName, from ``ssh -G``) it is inserted as a shell-quoted literal: ssh checks
    host names typed on its command line but not HostName from ssh_config, so a
    HostName holding a quote would end ``'%h'``'s quoting and run in the shell."""
    exe = exe if exe is not None else knockssh_path()
    words = exe.rsplit(" ", 2) if exe.endswith(" -m knockssh") else [exe]
    if host is not None and port is not None:
        words += ["--", host, port]
        return " ".join(shlex.quote(w) for w in words).replace("%", "%%")
    return " ".join(shlex.quote(w) for w in words).replace("%", "%%") + " '%h' '%p'"


def proxy_option(exe: str | None = None, host: str | None = None, port: str | None = None) -> str:
    return "ProxyCommand=" + proxy_command(exe, host, port)


# ssh's and scp's option letters that take a value (-vo X, -vJ X and -oX bundle too)
VALUE_FLAGS = frozenset("BbcDEeFIiJLlmOoPpQRSWwX")


def user_sets_proxy(args: Sequence[str]) -> bool:
    """True when the arguments already choose a ProxyCommand or ProxyJump: ``-J``,
    ``-o Key=value``, ``-oKey value``, bundled after other flags (``-vJ host``,
    ``-vo ProxyCommand=…``)."""
    it = iter(args)
    for arg in it:
        if arg == "--" or not arg.startswith("-") or arg == "-":
            if arg == "--":
                return False
            continue
        for i, flag in enumerate(arg[1:], 1):
            if flag not in VALUE_FLAGS:
                continue
            value = arg[i + 1 :] or next(it, "")
            if flag == "J":
                return True
            if flag == "o" and _option_key(value) in PROXY_KEYS:
                return True
            break  # the rest of the word was the value
    return False


def _option_key(value: str) -> str:
    """The key of an ssh ``-o`` value: ``Key=value``, ``Key value`` or ``Key = value``."""
    words = value.strip().replace("=", " ", 1).split(None, 1)
    return words[0].lower() if words else ""


def ssh_config_of(ssh_args: Sequence[str]) -> dict[str, str]:
    """What ``ssh -G`` says ssh will use for these arguments (first value of each key);
    empty if it cannot tell."""
    try:
        done = subprocess.run(
            ["ssh", "-G", *ssh_args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if done.returncode != 0:
        return {}
    found: dict[str, str] = {}
    for line in done.stdout.decode(errors="surrogateescape").splitlines():
        key, _, value = line.partition(" ")
        found.setdefault(key, value.strip())
    return found


def config_sets_proxy(ssh_args: Sequence[str], config: dict[str, str] | None = None) -> bool:
    """Does ssh_config already give the destination a proxy (``ssh -G``)?"""
    config = ssh_config_of(ssh_args) if config is None else config
    return any(config.get(key, "none").lower() not in ("", "none") for key in PROXY_KEYS)


def ssh_argv(args: Sequence[str], exe: str | None = None) -> list[str]:
    if user_sets_proxy(args):
        return ["ssh", *args]
    config = ssh_config_of(args)
    if config_sets_proxy(args, config):
        return ["ssh", *args]
    host, port = config.get("hostname"), config.get("port")
    if host and port and port.isdigit():  # the final HostName, as a literal: never '%h'
        return ["ssh", "-o", proxy_option(exe, host, port), *args]
    return ["ssh", "-o", proxy_option(exe), *args]


def scp_argv(args: Sequence[str], exe: str | None = None) -> list[str]:
    if user_sets_proxy(args):
        return ["scp", *args]
    return ["scp", "-o", proxy_option(exe), *args]


def rsync_quote(arg: str) -> str:
    """Quote one argument for rsync's own splitting of ``-e`` (double quotes, "" inside)."""
    return '"' + arg.replace('"', '""') + '"'


def rsync_argv(
    args: Sequence[str], env: Mapping[str, str] | None = None, exe: str | None = None
) -> list[str]:
    """Put our ProxyCommand into ``-e``/``--rsh``, added to the user's own if given."""
    env = os.environ if env is None else env
    out = list(args)
    ours = rsync_quote("-o" + proxy_option(exe))
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg in ("-e", "--rsh") and i + 1 < len(out):
            if not _rsh_sets_proxy(out[i + 1]):
                out[i + 1] = f"{out[i + 1]} {ours}"
            return ["rsync", *out]
        for prefix in ("--rsh=", "-e"):
            if arg.startswith(prefix) and len(arg) > len(prefix) and not arg.startswith("--e"):
                value = arg[len(prefix) :]
                if not _rsh_sets_proxy(value):
                    out[i] = f"{prefix}{value} {ours}"
                return ["rsync", *out]
    base = env.get("RSYNC_RSH") or "ssh"
    if _rsh_sets_proxy(base):
        return ["rsync", *out]
    return ["rsync", "-e", f"{base} {ours}", *out]


def _rsh_sets_proxy(rsh: str) -> bool:
    try:
        words = shlex.split(rsh)
    except ValueError:
        return False
    return user_sets_proxy(words[1:])


def _run(argv: list[str]) -> int:
    try:
        return subprocess.call(argv)
    except FileNotFoundError:
        os.write(2, f"{os.path.basename(sys.argv[0])}: {argv[0]} is not installed\n".encode())
        return 127
    except KeyboardInterrupt:
        return 130


def ssh_main() -> int:
    return _run(ssh_argv(sys.argv[1:]))


def scp_main() -> int:
    return _run(scp_argv(sys.argv[1:]))


def rsync_main() -> int:
    return _run(rsync_argv(sys.argv[1:]))
