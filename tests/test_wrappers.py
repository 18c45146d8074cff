"""Wrapper argument handling: pass-through, ProxyCommand quoting, rsync -e."""

import shlex
import subprocess

import pytest

from knockssh import wrappers

WEIRD = "/opt/my tools/$(touch pwned)/100%/kno'ck\"ssh"


def expand(proxy, host, port):
    """What ssh does: %% -> %, %h/%p -> values; then $SHELL -c 'exec ...'."""
    out, i = [], 0
    while i < len(proxy):
        if proxy[i] == "%":
            out.append({"%": "%", "h": host, "p": port}[proxy[i + 1]])
            i += 2
        else:
            out.append(proxy[i])
            i += 1
    return "".join(out)


def through_the_shell(command, cwd):
    """The argv a ProxyCommand (already %-expanded) reaches its program with."""
    return subprocess.run(
        ["sh", "-c", f"exec python3 -c 'import sys; print(sys.argv[1:])' {command}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    ).stdout.strip()


def test_proxy_command_survives_the_shell(tmp_path):
    command = expand(wrappers.proxy_command(WEIRD), "host.example", "22")
    assert through_the_shell(command, tmp_path) == repr([WEIRD, "host.example", "22"])
    assert not (tmp_path / "pwned").exists()


def test_ssh_args_pass_through_untouched(monkeypatch):
    monkeypatch.setattr(wrappers, "ssh_config_of", lambda args: {})
    args = ["-p", "2200", "host", "echo", "a b", "$(x)", "--", "-q"]
    argv = wrappers.ssh_argv(args, "/usr/bin/knockssh")
    assert argv == ["ssh", "-o", "ProxyCommand=/usr/bin/knockssh '%h' '%p'", *args]


@pytest.mark.parametrize(
    "args",
    [
        ["-o", "ProxyCommand=nc %h %p", "h"],
        ["-oProxyJump=bastion", "h"],
        ["-o", "proxyjump bastion", "h"],
        ["-J", "bastion", "h"],
        ["-Jbastion", "h"],
        ["-vJ", "bastion", "h"],
        ["-vJbastion", "h"],
        ["-vo", "ProxyCommand=nc %h %p", "h"],
        ["-4vo", "ProxyJump bastion", "h"],
        ["-voProxyCommand=nc %h %p", "h"],
        ["-o", "ProxyCommand = nc %h %p", "h"],
        ["-C", "-o", "proxycommand=nc %h %p", "h"],
    ],
)
def test_users_proxy_wins(args, monkeypatch):
    monkeypatch.setattr(wrappers, "ssh_config_of", lambda a: {})
    assert wrappers.ssh_argv(args, "/k") == ["ssh", *args]
    assert wrappers.scp_argv(args, "/k") == ["scp", *args]


@pytest.mark.parametrize(
    "args",
    [
        ["-v", "h"],
        ["-vF", "ProxyJump.conf", "h"],  # a value of another flag, not a ProxyJump
        ["-o", "User=proxyjump", "h"],
        ["-i", "-J", "h"],  # -i takes "-J" as its value
        ["--", "-J", "h"],
    ],
)
def test_words_that_only_look_like_a_proxy(args, monkeypatch):
    assert wrappers.scp_argv(args, "/k")[1:3] == ["-o", wrappers.proxy_option("/k")]


def test_a_hostname_from_ssh_config_never_reaches_the_shell_as_code(tmp_path):
    """ssh checks command-line host names, not HostName from ssh_config: knockssh-ssh
    puts the final HostName (ssh -G) in as a quoted literal, never as '%h'."""
    evil = "x'$(touch pwned)'y"
    cfg = tmp_path / "cfg"
    cfg.write_text(f'Host target\n  HostName "{evil}"\n  Port 2222\n')
    argv = wrappers.ssh_argv(["-F", str(cfg), "target"], "/usr/bin/knockssh")
    proxy = argv[2].removeprefix("ProxyCommand=")
    assert "%h" not in proxy and argv[3:] == ["-F", str(cfg), "target"]
    printed = through_the_shell(expand(proxy, "unused", "unused"), tmp_path)
    assert printed == repr(["/usr/bin/knockssh", "--", evil, "2222"])
    assert not (tmp_path / "pwned").exists()


def test_config_proxy_wins(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text("Host jumped\n  ProxyJump bastion\n")
    assert wrappers.config_sets_proxy(["-F", str(cfg), "jumped"])
    assert not wrappers.config_sets_proxy(["-F", str(cfg), "direct"])


def test_scp_keeps_argument_order():
    args = ["-r", "local dir/", "host:/remote path/"]
    assert wrappers.scp_argv(args, "/k") == ["scp", "-o", "ProxyCommand=/k '%h' '%p'", *args]


def rsync_split(rsh):
    """rsync's splitting of -e: spaces separate, "..." and '...' quote, doubled quote inside."""
    words, cur, quote, i, started = [], [], None, 0, False
    while i < len(rsh):
        c = rsh[i]
        if quote:
            if c == quote:
                if i + 1 < len(rsh) and rsh[i + 1] == quote:
                    cur.append(c)
                    i += 1
                else:
                    quote = None
            else:
                cur.append(c)
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


def test_rsync_default_rsh():
    argv = wrappers.rsync_argv(["-a", "src/", "h:dst/"], {}, WEIRD)
    assert argv[:2] == ["rsync", "-e"] and argv[3:] == ["-a", "src/", "h:dst/"]
    assert rsync_split(argv[2]) == ["ssh", "-o" + wrappers.proxy_option(WEIRD)]


@pytest.mark.parametrize("form", ["split", "joined", "long"])
def test_rsync_users_rsh_is_extended(form):
    theirs = "ssh -F cfg -p 2200"
    args = {
        "split": ["-a", "-e", theirs, "s", "h:d"],
        "joined": ["-a", "-e" + theirs, "s", "h:d"],
        "long": ["-a", "--rsh=" + theirs, "s", "h:d"],
    }[form]
    argv = wrappers.rsync_argv(args, {}, "/k")
    rsh = next(a for a in argv if theirs in a)
    rsh = rsh.split("=", 1)[1] if rsh.startswith("--rsh=") else rsh.removeprefix("-e")
    assert rsync_split(rsh) == ["ssh", "-F", "cfg", "-p", "2200", "-oProxyCommand=/k '%h' '%p'"]
    assert argv[-2:] == ["s", "h:d"] and len(argv) == len(args) + 1


def test_rsync_env_rsh_and_user_proxy():
    argv = wrappers.rsync_argv(["s", "h:d"], {"RSYNC_RSH": "ssh -i key"}, "/k")
    assert rsync_split(argv[2])[:3] == ["ssh", "-i", "key"]
    mine = ["-e", "ssh -J bastion", "s", "h:d"]
    assert wrappers.rsync_argv(mine, {}, "/k") == ["rsync", *mine]


def test_shlex_round_trip_of_our_literal():
    assert shlex.split(wrappers.proxy_command(WEIRD).replace("%%", "%"))[0] == WEIRD
