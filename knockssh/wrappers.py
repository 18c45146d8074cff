"""``knockssh-ssh``, ``knockssh-scp``, ``knockssh-rsync``: the real programs with our
ProxyCommand added; every user argument passes through untouched.

ssh runs a ProxyCommand through ``$SHELL -c`` and expands ``%`` tokens across the
whole string. knockssh-ssh asks ``ssh -G`` for the final HostName and port and puts
them in as shell-quoted, ``%``-doubled literals, as it does knockssh's path: ssh
checks host names typed on its command line, not a HostName from ssh_config, so
``%h`` is never handed to a shell. scp and rsync run knockssh-ssh as their ssh.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

PROXY_KEYS = ("proxycommand", "proxyjump")


# Set by knockssh-scp and knockssh-rsync when the user named an ssh of their own
SSH_PROGRAM = "KNOCKSSH_SSH"


def sibling(name: str) -> str:
    """The program ``name`` beside this wrapper (same installation), else on PATH,
    else the bare name."""
    here = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), name)
    if os.access(here, os.X_OK):
        return here
    return shutil.which(name) or name


def knockssh_path() -> str:
    found = sibling("knockssh")
    return found if found != "knockssh" else f"{sys.executable} -m knockssh"


def proxy_program(mine: str | None = None, default_path: str | None = None) -> str:
    """How ssh_config should name this knockssh: ``knockssh`` when the system's
    default PATH (confstr CS_PATH: what cron, desktop launchers and VS Code may
    have) finds this very program, else its absolute path (shell-quoted, ``%``
    doubled for ssh)."""
    mine = knockssh_path() if mine is None else mine
    if default_path is None:
        try:
            default_path = os.confstr("CS_PATH") or "/bin:/usr/bin"
        except (ValueError, OSError):
            default_path = "/bin:/usr/bin"
    found = shutil.which("knockssh", path=default_path)
    if found and os.path.realpath(found) == os.path.realpath(mine):
        return "knockssh"
    words = mine.rsplit(" ", 2) if mine.endswith(" -m knockssh") else [mine]
    return " ".join(shlex.quote(w) for w in words).replace("%", "%%")


def proxy_command(host: str, port: str, exe: str | None = None) -> str:
    """The ProxyCommand: knockssh, ``--``, the final HostName and port (``ssh -G``),
    each a shell-quoted literal with its ``%`` doubled."""
    exe = exe if exe is not None else knockssh_path()
    words = exe.rsplit(" ", 2) if exe.endswith(" -m knockssh") else [exe]
    return " ".join(shlex.quote(w) for w in [*words, "--", host, port]).replace("%", "%%")


def proxy_option(host: str, port: str, exe: str | None = None) -> str:
    return "ProxyCommand=" + proxy_command(host, port, exe)


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


def ssh_config_of(ssh_args: Sequence[str], program: str = "ssh") -> dict[str, str]:
    """What ``ssh -G`` says ssh will use for these arguments (first value of each key);
    empty if it cannot tell."""
    try:
        done = subprocess.run(
            [program, "-G", *ssh_args],
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


def config_sets_proxy(ssh_args: Sequence[str], config: Mapping[str, str] | None = None) -> bool:
    """Does ssh_config already give the destination a proxy (``ssh -G``)?"""
    config = ssh_config_of(ssh_args) if config is None else config
    return any(config.get(key, "none").lower() not in ("", "none") for key in PROXY_KEYS)


def ssh_argv(
    args: Sequence[str],
    config: Mapping[str, str] | None,
    exe: str | None = None,
    program: str = "ssh",
) -> list[str]:
    """ssh with our ProxyCommand naming the final HostName and port of ``config``
    (what ``ssh -G ARGS`` printed; None when not asked, as for a user's own proxy)
    as quoted literals. Pure: the caller runs ``ssh -G``. When ssh cannot read its
    configuration for these arguments ({}) it would fail on them too: they then go to
    it unchanged, and it says why."""
    if user_sets_proxy(args) or config is None:
        return [program, *args]
    if config_sets_proxy(args, config):
        return [program, *args]
    host, port = config.get("hostname"), config.get("port")
    if host and port and port.isdigit():  # the final HostName, as a literal: never '%h'
        return [program, "-o", proxy_option(host, port, exe), *args]
    return [program, *args]


def scp_argv(
    args: Sequence[str], ssh_wrapper: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """scp runs ``knockssh-ssh`` as its ssh (``-S``), which sees each host's final
    HostName through ``ssh -G`` as it does for itself: no ``%h`` ever reaches a shell.
    A ``-S PROGRAM`` of the user's own is what knockssh-ssh then runs."""
    if user_sets_proxy(args):
        return ["scp", *args], {}
    out, program = list(args), ""
    it = enumerate(out)
    for i, arg in it:
        if arg == "--" or not arg.startswith("-") or arg == "-":
            if arg == "--":
                break
            continue
        for j, flag in enumerate(arg[1:], 1):
            if flag not in VALUE_FLAGS:
                continue
            if flag == "S":
                if arg[j + 1 :]:
                    program, out[i] = arg[j + 1 :], arg[: j + 1] + ssh_wrapper_path(ssh_wrapper)
                elif i + 1 < len(out):
                    program, out[i + 1] = out[i + 1], ssh_wrapper_path(ssh_wrapper)
            elif not arg[j + 1 :]:
                next(it, None)  # the next word is this flag's value
            break
    if program:
        return ["scp", *out], _ssh_program(program)
    return ["scp", "-S", ssh_wrapper_path(ssh_wrapper), *out], {}


def ssh_wrapper_path(given: str | None = None) -> str:
    return given if given is not None else sibling("knockssh-ssh")


def _ssh_program(program: str) -> dict[str, str]:
    """The environment that makes knockssh-ssh run ``program`` instead of ssh."""
    return {} if program == "ssh" else {SSH_PROGRAM: program}


def rsync_quote(arg: str) -> str:
    """Quote one argument for rsync's own splitting of ``-e`` (double quotes, "" inside)."""
    return '"' + arg.replace('"', '""') + '"'


def rsync_words(rsh: str) -> list[str]:
    """rsync's splitting of ``-e``: spaces separate, "..." and '...' quote, and a
    doubled quote inside quotes stands for itself."""
    words: list[str] = []
    cur: list[str] = []
    quote, started, i = "", False, 0
    while i < len(rsh):
        c = rsh[i]
        if quote:
            if c != quote:
                cur.append(c)
            elif rsh[i + 1 : i + 2] == quote:
                cur.append(c)
                i += 1
            else:
                quote = ""
        elif c in "'\"":
            quote, started = c, True
        elif c == " ":
            if cur or started:
                words.append("".join(cur))
            cur, started = [], False
        else:
            cur.append(c)
        i += 1
    if cur or started:
        words.append("".join(cur))
    return words


def rsync_argv(
    args: Sequence[str], env: Mapping[str, str] | None = None, ssh_wrapper: str | None = None
) -> tuple[list[str], dict[str, str]]:
    """rsync's remote shell (``-e``, ``--rsh``, ``RSYNC_RSH``, else ssh) becomes
    ``knockssh-ssh`` with the same arguments; the program it named is what
    knockssh-ssh runs. Unchanged when that shell already sets a proxy."""
    env = os.environ if env is None else env
    out = list(args)
    at: tuple[int, str] | None = None  # where the user's -e is, and its prefix
    rsh = env.get("RSYNC_RSH") or "ssh"
    for i, arg in enumerate(out):
        if arg == "--":
            break
        if arg in ("-e", "--rsh") and i + 1 < len(out):
            at, rsh = (i + 1, ""), out[i + 1]
            break
        for prefix in ("--rsh=", "-e"):
            if arg.startswith(prefix) and len(arg) > len(prefix) and not arg.startswith("--e"):
                at, rsh = (i, prefix), arg[len(prefix) :]
                break
        if at:
            break
    words = rsync_words(rsh)
    if not words or user_sets_proxy(words[1:]):
        return ["rsync", *out], {}
    ours = " ".join(rsync_quote(w) for w in [ssh_wrapper_path(ssh_wrapper), *words[1:]])
    if at is None:
        return ["rsync", "-e", ours, *out], _ssh_program(words[0])
    index, prefix = at
    out[index] = prefix + ours
    return ["rsync", *out], _ssh_program(words[0])


def _version(name: str) -> bool:
    """``--version`` as the only argument: our version (the real program's own is
    ``ssh -V`` or ``rsync --version``, run directly)."""
    if sys.argv[1:] != ["--version"]:
        return False
    from .version import VERSION

    os.write(1, f"{name} (knockssh {VERSION})\n".encode())
    return True


def _run(argv: list[str], env: Mapping[str, str] | None = None) -> int:
    try:
        return subprocess.call(argv, env={**os.environ, **env} if env else None)
    except FileNotFoundError:
        os.write(2, f"{os.path.basename(sys.argv[0])}: {argv[0]} is not installed\n".encode())
        return 127
    except KeyboardInterrupt:
        return 130


def ssh_main() -> int:
    if _version("knockssh-ssh"):
        return 0
    program = os.environ.get(SSH_PROGRAM) or "ssh"
    if os.path.basename(program) == "knockssh-ssh":  # never ourselves again
        program = "ssh"
    args = sys.argv[1:]
    config = None if user_sets_proxy(args) else ssh_config_of(args, program)
    return _run(ssh_argv(args, config, program=program))


def scp_main() -> int:
    if _version("knockssh-scp"):
        return 0
    return _run(*scp_argv(sys.argv[1:]))


def rsync_main() -> int:
    if _version("knockssh-rsync"):
        return 0
    return _run(*rsync_argv(sys.argv[1:]))
