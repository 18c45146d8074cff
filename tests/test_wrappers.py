"""Wrapper argument handling: pass-through, ProxyCommand quoting, scp -S, rsync -e."""

import os
import shlex
import shutil
import subprocess
import sys

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
    command = expand(wrappers.proxy_command("host.example", "22", WEIRD), "x", "y")
    printed = through_the_shell(command, tmp_path)
    assert printed == repr([WEIRD, "--", "host.example", "22"])
    assert not (tmp_path / "pwned").exists()


def test_ssh_args_pass_through_untouched():
    args = ["-p", "2200", "host", "echo", "a b", "$(x)", "--", "-q"]
    argv = wrappers.ssh_argv(args, CONFIG, "/usr/bin/knockssh")
    assert argv == ["ssh", "-o", "ProxyCommand=/usr/bin/knockssh -- h.example 2200", *args]


CONFIG = {"hostname": "h.example", "port": "2200"}


def test_unreadable_ssh_config_goes_to_ssh_unchanged():
    """ssh -G failing means ssh fails on the same arguments: it says why, not us."""
    assert wrappers.ssh_argv(["-Z", "h"], {}, "/k") == ["ssh", "-Z", "h"]


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
def test_users_proxy_wins(args):
    assert wrappers.ssh_argv(args, CONFIG, "/k") == ["ssh", *args]
    assert wrappers.scp_argv(args, "/kssh") == (["scp", *args], {})
    rsh = "ssh " + " ".join(wrappers.rsync_quote(a) for a in args[:-1])
    assert wrappers.rsync_argv(["-e", rsh, "s", "h:d"], {}, "/kssh")[0][2] == rsh


@pytest.mark.parametrize(
    "args",
    [
        ["-v", "h"],
        ["-vF", "ProxyJump.conf", "h"],  # a value of another flag, not a ProxyJump
        ["-o", "User=proxyjump", "h"],
        ["-i", "-J", "h"],  # -i takes "-J" as its value
        ["-i", "-S", "h"],  # and "-S" too: not scp's ssh program
        ["--", "-J", "h"],
    ],
)
def test_words_that_only_look_like_a_proxy(args):
    assert wrappers.scp_argv(args, "/kssh") == (["scp", "-S", "/kssh", *args], {})


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-S", "/opt/my ssh", "a", "h:b"], ["-S", "/kssh", "a", "h:b"]),
        (["-S/opt/my ssh", "a", "h:b"], ["-S/kssh", "a", "h:b"]),
        (["-rS/opt/my ssh", "a", "h:b"], ["-rS/kssh", "a", "h:b"]),
        (["-P", "2", "-S", "/opt/my ssh", "a", "h:b"], ["-P", "2", "-S", "/kssh", "a", "h:b"]),
    ],
)  # fmt: skip
def test_scp_users_ssh_program_is_what_knockssh_ssh_runs(args, expected):
    assert wrappers.scp_argv(args, "/kssh") == (["scp", *expected], {"KNOCKSSH_SSH": "/opt/my ssh"})


def test_a_hostname_from_ssh_config_never_reaches_the_shell_as_code(tmp_path):
    """ssh checks command-line host names, not HostName from ssh_config: knockssh-ssh
    puts the final HostName (ssh -G) in as a quoted literal, never as '%h'."""
    cfg = evil_config(tmp_path)
    args = ["-F", str(cfg), "target"]
    argv = wrappers.ssh_argv(args, wrappers.ssh_config_of(args), "/usr/bin/knockssh")
    proxy = argv[2].removeprefix("ProxyCommand=")
    assert "%h" not in proxy and argv[3:] == ["-F", str(cfg), "target"]
    printed = through_the_shell(expand(proxy, "unused", "unused"), tmp_path)
    assert printed == repr(["/usr/bin/knockssh", "--", EVIL, "2222"])
    assert not (tmp_path / "pwned").exists()


EVIL = "x'$(touch pwned)'y"


def evil_config(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text(f'Host target\n  HostName "{EVIL}"\n  Port 2222\n')
    return cfg


def test_config_proxy_wins(tmp_path):
    cfg = tmp_path / "cfg"
    cfg.write_text("Host jumped\n  ProxyJump bastion\n")
    assert wrappers.config_sets_proxy(["-F", str(cfg), "jumped"])
    assert not wrappers.config_sets_proxy(["-F", str(cfg), "direct"])


def test_scp_keeps_argument_order():
    args = ["-r", "local dir/", "host:/remote path/"]
    assert wrappers.scp_argv(args, "/kssh") == (["scp", "-S", "/kssh", *args], {})


def test_rsync_words_split_as_rsync_does():
    assert wrappers.rsync_words('ssh -o "a b" \'c d\' "say ""hi""" \'\' e') == [
        "ssh", "-o", "a b", "c d", 'say "hi"', "", "e",
    ]  # fmt: skip
    assert wrappers.rsync_words(wrappers.rsync_quote(WEIRD)) == [WEIRD]


def test_rsync_default_rsh():
    argv, env = wrappers.rsync_argv(["-a", "src/", "h:dst/"], {}, WEIRD)
    assert argv[:2] == ["rsync", "-e"] and argv[3:] == ["-a", "src/", "h:dst/"]
    assert wrappers.rsync_words(argv[2]) == [WEIRD] and env == {}


@pytest.mark.parametrize("form", ["split", "joined", "long"])
def test_rsync_users_rsh_runs_through_knockssh_ssh(form):
    theirs = "/opt/my-ssh -F cfg -p 2200"
    args = {
        "split": ["-a", "-e", theirs, "s", "h:d"],
        "joined": ["-a", "-e" + theirs, "s", "h:d"],
        "long": ["-a", "--rsh=" + theirs, "s", "h:d"],
    }[form]
    argv, env = wrappers.rsync_argv(args, {}, "/kssh")
    rsh = argv[3] if form == "split" else argv[2].removeprefix("--rsh=").removeprefix("-e")
    assert wrappers.rsync_words(rsh) == ["/kssh", "-F", "cfg", "-p", "2200"]
    assert env == {"KNOCKSSH_SSH": "/opt/my-ssh"}
    assert argv[-2:] == ["s", "h:d"] and len(argv) == len(args) + 1


def test_rsync_env_rsh_and_user_proxy():
    argv, env = wrappers.rsync_argv(["s", "h:d"], {"RSYNC_RSH": "ssh -i key"}, "/kssh")
    assert wrappers.rsync_words(argv[2]) == ["/kssh", "-i", "key"] and env == {}
    mine = ["-e", "ssh -J bastion", "s", "h:d"]
    assert wrappers.rsync_argv(mine, {}, "/kssh") == (["rsync", *mine], {})
    via_env = {"RSYNC_RSH": "ssh -vJ bastion"}
    assert wrappers.rsync_argv(["s", "h:d"], via_env, "/kssh") == (["rsync", "s", "h:d"], {})


def installed_wrappers(tmp_path):
    """knockssh-scp, -rsync and -ssh side by side, with a knockssh that only records
    the argv it was started with (as the ProxyCommand's shell hands it over)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, main in (
        ("knockssh-ssh", "ssh"),
        ("knockssh-scp", "scp"),
        ("knockssh-rsync", "rsync"),
    ):
        script = bin_dir / name
        script.write_text(
            f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {wrappers_root()!r})\n"
            f"from knockssh.wrappers import {main}_main\nsys.exit({main}_main())\n"
        )
        script.chmod(0o755)
    record = bin_dir / "knockssh"
    record.write_text(
        f"#!{sys.executable}\nimport sys\n"
        f"open({str(tmp_path / 'argv')!r}, 'a').write(repr(sys.argv[1:]) + chr(10))\n"
        "sys.exit(1)\n"
    )
    record.chmod(0o755)
    return bin_dir


def wrappers_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(wrappers.__file__)))


@pytest.mark.parametrize("tool", ["scp", "rsync"])
def test_a_hostile_hostname_reaches_knockssh_as_one_word_through_real_programs(tool, tmp_path):
    """The real scp and rsync start knockssh-ssh, which starts the real ssh, whose
    ProxyCommand goes through the shell: the HostName arrives whole, nothing runs."""
    if shutil.which(tool) is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{tool} is not installed (lab.py install installs it)")
        pytest.skip(f"{tool} is not installed")
    bin_dir = installed_wrappers(tmp_path)
    cfg = evil_config(tmp_path)
    (tmp_path / "src").write_text("payload")
    if tool == "scp":
        argv = [str(bin_dir / "knockssh-scp"), "-F", str(cfg), "src", "target:dst"]
    else:
        argv = [str(bin_dir / "knockssh-rsync"), "-e", f"ssh -F {cfg}", "src", "target:dst"]
    done = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=30, check=False)
    assert done.returncode != 0  # our recording knockssh never connects
    assert (tmp_path / "argv").read_text() == repr(["--", EVIL, "2222"]) + "\n"
    assert not (tmp_path / "pwned").exists()


def test_shlex_round_trip_of_our_literal():
    command = wrappers.proxy_command("h", "22", WEIRD).replace("%%", "%")
    assert shlex.split(command) == [WEIRD, "--", "h", "22"]


@pytest.mark.parametrize("name", ["ssh", "scp", "rsync"])
def test_version_alone_is_ours(name):
    from rotator.version import VERSION

    code = f"import sys; from knockssh.wrappers import {name}_main; sys.exit({name}_main())"
    done = subprocess.run(
        [sys.executable, "-c", code, "--version"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and done.stdout == f"knockssh-{name} (knockssh {VERSION})\n"
