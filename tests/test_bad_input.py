"""Every user mistake: one stderr line naming the place, a non-zero exit, no traceback,
every input file byte-for-byte and mode unchanged, no secret in any output.

Each case is a real process (the programs as users start them) in a directory of its
own: a mapping file, a knockd.conf, secret files, an environment. Nothing here
reaches the network: every case fails before a knock or a connection.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from helpers import KNOCKSSH, ROOT, ROTATOR, SECRET

PROGRAMS = {
    "knockssh": KNOCKSSH,
    "knockssh-rotator": ROTATOR,
}
for _name in ("ssh", "scp", "rsync"):
    PROGRAMS[f"knockssh-{_name}"] = [
        sys.executable,
        "-c",
        f"import sys; from knockssh.wrappers import {_name}_main; sys.exit({_name}_main())",
    ]

HOSTS = "config/knockssh/hosts.toml"  # where XDG_CONFIG_HOME puts it
CONF = "knockd.conf"
GOOD_SECRET_FILE = "good.secret"
HOST = '[[host]]\nmatch = ["h.test"]\nservice = "ssh"\nsecret_file = "{tmp}/good.secret"\n'
KNOCKD_CONF = (
    "[options]\n  UseSyslog\n\n[ssh_ROTATOR]\n  sequence = 7000,8000,9000\n"
    "  seq_timeout = 10\n  start_command = /bin/true %IP%\n"
)


@dataclass
class Case:
    id: str
    argv: list[str | bytes]  # the program's name first
    place: str  # what the one line must name ({tmp} is the case's directory)
    files: dict[str, str | bytes] = field(default_factory=dict)
    env: dict[str, str | bytes] = field(default_factory=dict)
    modes: dict[str, int] = field(default_factory=dict)
    code: int | None = None  # None: any non-zero status
    stdin: bytes | None = b""  # None: standard input closed
    stdin_path: str = ""  # else stdin read from this file (/dev/zero: endless)
    setup: str = ""  # a name in SETUPS: what files alone cannot plant
    powerless: bool = False  # root without the power to override file permissions
    stdout_closed: bool = False  # stdout a pipe nobody reads any more
    writes: bool = False  # the command did its work before the error (stdout_closed)


def mapping(text: str, *, host: str = HOST) -> dict[str, str | bytes]:
    return {HOSTS: text + "\n" + host, GOOD_SECRET_FILE: SECRET + "\n"}


# -- the mapping file ---------------------------------------------------------------

BAD_VALUES = [  # (key = value, what the message names)
    ("period = 0", "period"),
    ("period = -5", "period"),
    ("period = 1" + "0" * 400, "period"),
    ('period = "600"', "period"),
    ("period = 1.5", "period"),
    ("period = true", "period"),
    ("length = 4", "length"),
    ("length = 33", "length"),
    ("length = 1" + "0" * 30, "length"),
    ('ports = "abc"', "ports"),
    ('ports = "70000"', "ports"),
    ('ports = ""', "ports"),
    ('ports = "9000-2000"', "ports"),
    ("ports = 2000", "ports"),
    ("proto_modulo = 70000", "proto_modulo"),
    ("proto_modulo = -1", "proto_modulo"),
    ("connect_timeout = inf", "connect_timeout"),
    ("connect_timeout = nan", "connect_timeout"),
    ("connect_timeout = 0", "connect_timeout"),
    ("connect_timeout = 3601", "connect_timeout"),
    ("connect_timeout = 1" + "0" * 400, "connect_timeout"),
    ("clock_skew = -1", "clock_skew"),
    ("clock_skew = 1e9", "clock_skew"),
    ("knock_delay_ms = -1", "knock_delay_ms"),
    ("knock_delay_ms = 10001", "knock_delay_ms"),
    ("perod = 600", "perod"),
    ('service = ""', "service"),
    ("service = 5", "service"),
]


def mapping_cases() -> Iterator[Case]:
    commands = {
        "check": ["knockssh", "check"],
        "proxy": ["knockssh", "h.test", "22"],
        "knock": ["knockssh", "knock", "h.test"],
    }
    for line, key in BAD_VALUES:
        for where, files in (
            ("defaults", mapping("[defaults]\n" + line)),
            ("host", {HOSTS: HOST + line + "\n", GOOD_SECRET_FILE: SECRET + "\n"}),
        ):
            for name, argv in commands.items():
                if where == "host" and name != "proxy":
                    continue  # one command is enough for the second place
                yield Case(f"{where}-{key}-{line[:24]}-{name}", argv, f"hosts.toml&{key}", files)
    broken = [
        ("not-toml", "[[host]\n", "hosts.toml&line 1"),
        ("duplicate-key", '[[host]]\nmatch = ["a"]\nmatch = ["b"]\n', "hosts.toml&line 3"),
        ("unterminated-string", '[[host]]\nmatch = ["a\n', "hosts.toml&line 2"),
        ("no-match", '[[host]]\nservice = "ssh"\n', "match"),
        ("empty-match", "[[host]]\nmatch = []\n", "match"),
        ("match-number", "[[host]]\nmatch = 5\n", "match"),
        ("unknown-table", "[hosts]\nx = 1\n", "hosts"),
        ("host-not-array", "host = 5\n", "host"),
        ("defaults-not-table", "defaults = 5\n", "defaults"),
        ("bad-sequence", '[[host]]\nmatch = ["h.test"]\nsequence = "abc"\n', "sequence"),
        ("sequence-port", '[[host]]\nmatch = ["h.test"]\nsequence = "70000"\n', "sequence"),
        ("command-string", '[[host]]\nmatch = ["h.test"]\nsecret_command = "pass"\n', "secret_command"),
        ("command-empty", '[[host]]\nmatch = ["h.test"]\nsecret_command = []\n', "secret_command"),
        ("two-secrets", HOST + 'secret_env = "X"\n', "secret"),
        ("not-utf8", b'[[host]]\nmatch = ["h\xff"]\n', "hosts.toml"),
    ]  # fmt: skip
    for name, text, place in broken:
        files: dict[str, str | bytes] = {HOSTS: text, GOOD_SECRET_FILE: SECRET + "\n"}
        yield Case(f"file-{name}-check", ["knockssh", "check"], place, files)
        yield Case(f"file-{name}-proxy", ["knockssh", "h.test", "22"], place, files)
    yield Case("file-missing", ["knockssh", "check", "--config", "{tmp}/nope.toml"], "nope.toml")
    yield Case(
        "file-is-directory",
        ["knockssh", "check", "--config", "{tmp}"],
        "{tmp}",
    )
    yield Case("config-empty", ["knockssh", "check", "--config", ""], "--config")


# -- secrets ---------------------------------------------------------------------


def secret_cases() -> Iterator[Case]:
    def host(line: str) -> str:
        return '[[host]]\nmatch = ["h.test"]\nservice = "ssh"\n' + line + "\n"

    sources: list[tuple[str, str, dict[str, str | bytes], dict[str, str | bytes], str]] = [
        ("file-missing", 'secret_file = "{tmp}/none.secret"', {}, {}, "none.secret"),
        ("file-empty", 'secret_file = "{tmp}/s"', {"s": ""}, {}, "{tmp}/s"),
        ("file-blank", 'secret_file = "{tmp}/s"', {"s": "  \n\t\n"}, {}, "{tmp}/s"),
        ("file-short", 'secret_file = "{tmp}/s"', {"s": "abc\n"}, {}, "{tmp}/s"),
        ("file-not-utf8", 'secret_file = "{tmp}/s"', {"s": b"abcdefghijkl\xff\n"}, {}, "{tmp}/s"),
        ("file-directory", 'secret_file = "{tmp}"', {}, {}, "{tmp}"),
        ("env-unset", 'secret_env = "KS_SECRET"', {}, {}, "KS_SECRET"),
        ("env-empty", 'secret_env = "KS_SECRET"', {}, {"KS_SECRET": ""}, "KS_SECRET"),
        ("env-blank", 'secret_env = "KS_SECRET"', {}, {"KS_SECRET": "   "}, "KS_SECRET"),
        ("env-short", 'secret_env = "KS_SECRET"', {}, {"KS_SECRET": "abc"}, "KS_SECRET"),
        ("env-not-utf8", 'secret_env = "KS_SECRET"', {}, {"KS_SECRET": b"abcdefghijkl\xff"}, "KS_SECRET"),
        ("command-missing", 'secret_command = ["/nonexistent/pass"]', {}, {}, "secret_command"),
        ("command-fails", 'secret_command = ["false"]', {}, {}, "secret_command"),
        ("command-silent", 'secret_command = ["true"]', {}, {}, "secret_command"),
        ("command-blank", 'secret_command = ["echo", "   "]', {}, {}, "secret_command"),
        ("command-not-utf8", 'secret_command = ["printf", "abcdefghijkl\\\\377"]', {}, {}, "secret_command"),
        ("command-hangs", 'secret_command = ["sh", "-c", "sleep 30 & sleep 30"]\nconnect_timeout = 0.5', {}, {}, "secret_command"),
        ("inline-short", 'secret = "abc"', {}, {}, "secret"),
        ("inline-blank", 'secret = "      "', {}, {}, "secret"),
        ("none", "", {}, {}, "secret"),
    ]  # fmt: skip
    for name, line, extra, env, place in sources:
        files: dict[str, str | bytes] = {HOSTS: host(line), **extra}
        modes = {"s": 0o600} if "s" in extra else {}
        for command, argv in (
            ("proxy", ["knockssh", "h.test", "22"]),
            ("knock", ["knockssh", "knock", "h.test"]),
        ):
            yield Case(f"secret-{name}-{command}", list(argv), place, files, env, modes)  # type: ignore[arg-type]


# -- the environment and the command line ------------------------------------------

ENV_VALUES = [
    ("SECRET", None, "KNOCKD_ROTATOR_SECRET"),
    ("SECRET", "", "KNOCKD_ROTATOR_SECRET"),
    ("SECRET", "short", "KNOCKD_ROTATOR_SECRET"),
    ("SECRET", b"abcdefghijkl\xff", "KNOCKD_ROTATOR_SECRET"),
    ("PERIOD_MODULO", "0", "KNOCKD_ROTATOR_PERIOD_MODULO"),
    ("PERIOD_MODULO", "-1", "KNOCKD_ROTATOR_PERIOD_MODULO"),
    ("PERIOD_MODULO", "abc", "KNOCKD_ROTATOR_PERIOD_MODULO"),
    ("PERIOD_MODULO", "1.5", "KNOCKD_ROTATOR_PERIOD_MODULO"),
    ("PERIOD_MODULO", "1" * 401, "KNOCKD_ROTATOR_PERIOD_MODULO"),
    ("LENGTH", "4", "KNOCKD_ROTATOR_LENGTH"),
    ("LENGTH", "33", "KNOCKD_ROTATOR_LENGTH"),
    ("LENGTH", "x", "KNOCKD_ROTATOR_LENGTH"),
    ("PORTS", "abc", "KNOCKD_ROTATOR_PORTS"),
    ("PORTS", "70000", "KNOCKD_ROTATOR_PORTS"),
    ("PORTS", "9000-2000", "KNOCKD_ROTATOR_PORTS"),
    ("PROTO_MODULO", "70000", "KNOCKD_ROTATOR_PROTO_MODULO"),
    ("PROTO_MODULO", "x", "KNOCKD_ROTATOR_PROTO_MODULO"),
    ("SERVER_INTERVAL", "x", "KNOCKD_ROTATOR_SERVER_INTERVAL"),
    (
        "SECRET",
        "change-me-to-the-output-of-openssl-rand-hex-64",
        "KNOCKD_ROTATOR_SECRET&placeholder",
    ),
    ("GRACE", "x", "KNOCKD_ROTATOR_GRACE"),
    ("GRACE", "21600", "KNOCKD_ROTATOR_GRACE&less than the period"),
    ("GRACE", "9" * 401, "KNOCKD_ROTATOR_GRACE"),
]


def env_cases() -> Iterator[Case]:
    for name, value, place in ENV_VALUES:
        env: dict[str, str | bytes] = {} if name == "SECRET" else {"KNOCKD_ROTATOR_SECRET": SECRET}
        if value is not None:
            env["KNOCKD_ROTATOR_" + name] = value
        label = f"{name}-{str(value)[:12]}"
        if name not in ("SERVER_INTERVAL", "GRACE"):  # the client has no use for them
            yield Case(f"env-{label}-generate", ["knockssh", "generate", "ssh"], place, {}, env)
        yield Case(
            f"env-{label}-rotator",
            ["knockssh-rotator", "--config", "{tmp}/knockd.conf", "--no-reload"],
            place,
            {CONF: KNOCKD_CONF},
            env,
        )


def command_line_cases() -> Iterator[Case]:
    env: dict[str, str | bytes] = {"KNOCKD_ROTATOR_SECRET": SECRET}
    hosts = mapping("")
    cases: list[tuple[str, list[str | bytes], str, int | None]] = [
        ("no-args", ["knockssh"], "HOST PORT", 2),
        ("three-args", ["knockssh", "a", "b", "c"], "c", 2),
        ("unknown-option", ["knockssh", "-x", "h.test", "22"], "-x", 2),
        ("port-zero", ["knockssh", "h.test", "0"], "port", 2),
        ("port-big", ["knockssh", "h.test", "70000"], "port", 2),
        ("port-5000-digits", ["knockssh", "h.test", "9" * 5000], "port", 2),
        ("offset-word", ["knockssh", "--offset", "x", "h.test", "22"], "--offset", 2),
        ("offset-huge", ["knockssh", "--offset", "9" * 401, "h.test", "22"], "--offset", 2),
        ("config-no-value", ["knockssh", "h.test", "22", "--config"], "--config", 2),
        ("both-families", ["knockssh", "-4", "-6", "h.test", "22"], "-4", 2),
        ("generate-nothing", ["knockssh", "generate"], "SERVICE", 2),
        ("generate-at-word", ["knockssh", "generate", "ssh", "--at", "x"], "--at", 2),
        ("generate-at-huge", ["knockssh", "generate", "ssh", "--at", "9" * 401], "--at", 2),
        ("generate-service-not-utf8", ["knockssh", "generate", b"ss\xffh"], "argument 2", 2),
        ("generate-two", ["knockssh", "generate", "a", "b"], "SERVICE", 2),
        ("check-host-not-utf8", ["knockssh", "check", b"bad\xffhost"], "argument 2", 2),
        ("knock-nothing", ["knockssh", "knock"], "HOST", 2),
        ("knock-unknown-host", ["knockssh", "knock", "nowhere.test"], "nowhere.test", None),
        ("idna-too-long", ["knockssh", "é" * 70 + ".example", "22"], "é", None),
        ("host-with-newline", ["knockssh", "knock", "bad\nhost"], "bad\\nhost", None),
        ("host-not-utf8", ["knockssh", b"h\xff.test", "22"], "argument 1", 2),
    ]
    for name, argv, place, code in cases:
        yield Case(f"cli-{name}", argv, place, hosts, env, code=code)
    add = ["knockssh", "add", "new.test", "--secret-stdin"]
    adds: list[tuple[str, list[str | bytes], bytes, str, int | None]] = [
        ("short", add, b"abc\n", "standard input&at least 10", 1),
        ("blank", add, b"   \n", "standard input&empty or blank", 1),
        ("empty", add, b"", "standard input&empty or blank", 1),
        ("placeholder", add, b"change-me-please-now\n", "standard input&placeholder", 1),
        ("not-utf8", add, b"abcdefghijkl\xff\n", "standard input&UTF-8", 1),
        ("taken", ["knockssh", "add", "h.test", "--secret-stdin"], b"abcdefghijkl\n", "h.test&already", 1),
        ("space", ["knockssh", "add", "a b", "--secret-stdin"], b"abcdefghijkl\n", "a b", 1),
        ("newline", ["knockssh", "add", "a\nb", "--secret-stdin"], b"abcdefghijkl\n", "a\\nb", 1),
        ("no-secret", ["knockssh", "add", "new.test"], b"", "--secret-stdin", 2),
        ("both", [*add, "--secret-file", "{tmp}/x"], b"", "--secret-stdin", 2),
        ("file-missing", ["knockssh", "add", "n.test", "--secret-file", "{tmp}/none"], b"", "{tmp}/none", 1),
    ]  # fmt: skip
    for name, argv, stdin, place, code in adds:
        yield Case(f"add-{name}", argv, place, hosts, env, code=code, stdin=stdin)
    broken = {HOSTS: "[[host]\n"}
    yield Case(
        "add-to-broken-file", add, "hosts.toml&line 1", broken, env, code=1, stdin=b"abcdefghijkl\n"
    )
    rotator: list[tuple[str, list[str | bytes], str, dict[str, str | bytes]]] = [
        ("missing-dir", ["--config", "{tmp}/nope/knockd.conf", "--no-reload"], "{tmp}/nope", {}),
        ("missing-file", ["--config", "{tmp}/none.conf", "--no-reload"], "none.conf", {}),
        ("config-empty", ["--config", "", "--no-reload"], "--config", {}),
        ("config-directory", ["--config", "{tmp}", "--no-reload"], "{tmp}", {}),
        ("at-word", ["--config", "{tmp}/knockd.conf", "--at", "x", "--dry-run"], "--at", {}),
        ("at-huge", ["--config", "{tmp}/knockd.conf", "--at", "9" * 401, "--dry-run"], "--at", {}),
        ("grace-negative", ["--config", "{tmp}/knockd.conf", "--grace", "-1", "--dry-run"], "--grace", {}),
        ("grace-word", ["--config", "{tmp}/knockd.conf", "--grace", "x", "--dry-run"], "--grace", {}),
        ("pidfile-missing", ["--config", "{tmp}/knockd.conf", "--pidfile", "{tmp}/none.pid"], "none.pid", {}),
        ("pidfile-garbage", ["--config", "{tmp}/knockd.conf", "--pidfile", "{tmp}/bad.pid"], "bad.pid", {"bad.pid": "knockd\n"}),
        ("pidfile-dead", ["--config", "{tmp}/knockd.conf", "--pidfile", "{tmp}/dead.pid"], "dead.pid", {"dead.pid": "999999999\n"}),
        ("unknown-option", ["--config", "{tmp}/knockd.conf", "--frobnicate"], "--frobnicate", {}),
        ("follow-at", ["--config", "{tmp}/knockd.conf", "--follow", "--at", "5"], "--follow", {}),
        ("follow-dry-run", ["--config", "{tmp}/knockd.conf", "--follow", "--dry-run"], "--follow", {}),
        ("config-not-utf8", ["--config", b"{tmp}/knockd\xff.conf", "--no-reload"], "argument 2", {}),
    ]  # fmt: skip
    for name, args, place, extra in rotator:
        files = {CONF: KNOCKD_CONF, **extra}
        yield Case(f"rotator-{name}", ["knockssh-rotator", *args], place, files, env)
    init = ["knockssh-rotator", "init", "--interface", "lo", "--env-file"]
    yield Case("init-exists", [*init, "{tmp}/e.env"], "{tmp}/e.env&exists", {"e.env": "X=1\n"})
    yield Case(
        "init-dir-is-a-file", [*init, "{tmp}/f/e.env"], "{tmp}/f/e.env&cannot write", {"f": ""}
    )
    yield Case("init-port-word", [*init, "{tmp}/e.env", "--port", "x"], "--port", code=2)
    yield Case("init-port-big", [*init, "{tmp}/e.env", "--port", "70000"], "--port", code=2)
    yield Case("init-firewall", [*init, "{tmp}/e.env", "--firewall", "pf"], "--firewall", code=2)
    yield Case(
        "rotator-credential-unreadable",
        ["knockssh-rotator", "--config", "{tmp}/knockd.conf", "--no-reload"],
        "{tmp}/creds/secret",
        {CONF: KNOCKD_CONF, "creds/secret/x": ""},
        {"CREDENTIALS_DIRECTORY": "{tmp}/creds"},
    )
    yield Case(
        "rotator-no-systemctl",
        ["knockssh-rotator", "--config", "{tmp}/knockd.conf"],
        "systemctl",
        {CONF: KNOCKD_CONF},
        {**env, "PATH": "{tmp}"},
    )


# -- knockd.conf ------------------------------------------------------------------


def knockd_conf_cases() -> Iterator[Case]:
    env: dict[str, str | bytes] = {"KNOCKD_ROTATOR_SECRET": SECRET}
    confs: list[tuple[str, str | bytes, str]] = [
        ("unclosed-section", "[ssh_ROTATOR\n  sequence = 1,2,3\n", "knockd.conf&line 1"),
        ("section-not-utf8", b"[ss\xffh_ROTATOR]\n  sequence = 1,2,3\n", "line 1&UTF-8"),
        ("value-not-utf8", b"[ssh_ROTATOR]\n  sequence = 1,2,\xff\n", "line 2&UTF-8"),
        ("bad-port", "[ssh_ROTATOR]\n  sequence = 1,2,99999\n", "line 2&99999"),
        ("bad-protocol", "[ssh_ROTATOR]\n  sequence = 1:sctp,2\n", "line 2&sctp"),
        ("unknown-directive", "[ssh_ROTATOR]\n  sequence = 1,2\n  frob = 1\n", "line 3&frob"),
        ("one-time", "[ssh_ROTATOR]\n  sequence = 1,2\n  one_time_sequences = /x\n", "ssh_ROTATOR"),
        ("no-sequence", "[ssh_ROTATOR]\n  seq_timeout = 10\n", "ssh_ROTATOR"),
        ("two-sequences", "[ssh_ROTATOR]\n  sequence = 1,2,3\n  sequence = 4,5,6\n", "ssh_ROTATOR"),
        ("twice", "[ssh_ROTATOR]\n  sequence = 1,2\n[ssh_ROTATOR]\n  sequence = 1,2\n", "ssh_ROTATOR"),
        ("empty-service", "[_ROTATOR]\n  sequence = 1,2,3\n", "_ROTATOR"),
        ("binary", b"\x00\x01\x02\xff\xfe", "knockd.conf"),
    ]  # fmt: skip
    for name, text, place in confs:
        for mode in ("--no-reload", "--dry-run"):
            argv = ["knockssh-rotator", "--config", "{tmp}/knockd.conf", mode]
            yield Case(f"conf-{name}{mode}", list(argv), place, {CONF: text}, env)  # type: ignore[arg-type]


def wrapper_cases() -> Iterator[Case]:
    empty: dict[str, str | bytes] = {"PATH": "{tmp}/empty"}  # no ssh, scp or rsync there
    for tool, args in (
        ("ssh", ["h.test"]),
        ("scp", ["a", "h.test:b"]),
        ("rsync", ["a", "h.test:b"]),
    ):
        argv: list[str | bytes] = [f"knockssh-{tool}", *args]
        yield Case(
            f"wrap-{tool}-missing",
            argv,
            f"{tool} is not installed",
            {"empty/.keep": ""},
            empty,
            code=127,
        )
    yield Case(
        "wrap-own-ssh-missing",
        ["knockssh-ssh", "h.test"],
        "/nonexistent/ssh is not installed",
        {},
        {"KNOCKSSH_SSH": "/nonexistent/ssh"},
        code=127,
    )


# -- the newest surfaces, as a careless user, a hostile co-user or a lying disk ---

CFG = "config/knockssh"  # the mapping file's directory (XDG_CONFIG_HOME=config)
NOBODY = 65534


def _fifo(name: str) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        (tmp / name).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(tmp / name, 0o600)

    return make


def _secrets_elsewhere(tmp: Path) -> None:
    (tmp / "elsewhere").mkdir(mode=0o700)
    (tmp / CFG).mkdir(parents=True, mode=0o700)
    os.symlink(tmp / "elsewhere", tmp / CFG / "secrets")


def _secrets_shared(tmp: Path) -> None:
    (tmp / CFG / "secrets").mkdir(parents=True)
    os.chown(tmp / CFG / "secrets", NOBODY, NOBODY)
    os.chmod(tmp / CFG / "secrets", 0o777)


def _config_dir_readonly(tmp: Path) -> None:
    (tmp / CFG).mkdir(parents=True)
    os.chmod(tmp / CFG, 0o500)


def _null_device(tmp: Path) -> None:
    os.mknod(tmp / "null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))


def _clients_dir(mode: int, secret_mode: int = 0o600) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        (tmp / "clients").mkdir()
        os.chmod(tmp / "clients", mode)
        (tmp / "clients" / "alice.secret").write_text("alice-secret-alice-secret\n")
        os.chmod(tmp / "clients" / "alice.secret", secret_mode)

    return make


def _clients_link(tmp: Path) -> None:
    (tmp / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp / "elsewhere", tmp / "clients")


SETUPS: dict[str, Callable[[Path], None]] = {
    "clients-private": _clients_dir(0o700),
    "clients-open": _clients_dir(0o755),
    "clients-secret-readable": _clients_dir(0o700, 0o644),
    "clients-link": _clients_link,
    "mapping-fifo": _fifo(HOSTS),
    "conf-fifo": _fifo(CONF),
    "pid-fifo": _fifo("knockd.pid"),
    "secrets-link": _secrets_elsewhere,
    "secrets-shared": _secrets_shared,
    "config-readonly": _config_dir_readonly,
    "null-device": _null_device,
}


def hostile_cases() -> Iterator[Case]:
    env: dict[str | bytes, str | bytes] = {"KNOCKD_ROTATOR_SECRET": SECRET}  # type: ignore[assignment]
    good = b"abcdefghijkl\n"
    add = ["knockssh", "add", "new.test", "--secret-stdin"]
    adds: list[tuple[str, list[str | bytes], str, dict[str, object]]] = [
        ("char-device", add, "{tmp}/null&character device", {"setup": "null-device", "env": {"KNOCKSSH_CONFIG": "{tmp}/null"}}),
        ("read-only-file", add, "hosts.toml&read-only", {"files": mapping(""), "modes": {HOSTS: 0o400}}),
        ("mapping-fifo", add, "hosts.toml&FIFO", {"setup": "mapping-fifo"}),
        ("secrets-symlink", add, "secrets&symbolic link", {"setup": "secrets-link"}),
        ("secrets-other-user", add, "secrets&another user", {"setup": "secrets-shared"}),
        ("secrets-a-file", add, "secrets&not a directory", {"files": {CFG + "/secrets": ""}}),
        ("config-dir-a-file", add, "knockssh&not a directory", {"files": {CFG: ""}}),
        ("config-dir-read-only", add, "Permission denied", {"setup": "config-readonly", "powerless": True}),
        ("star", ["knockssh", "add", "*", "--secret-stdin"], "'*'&pattern", {}),
        ("glob", ["knockssh", "add", "*.example", "--secret-stdin"], "*.example&pattern", {}),
        ("negated", ["knockssh", "add", "!neg.example", "--secret-stdin"], "!neg.example&pattern", {}),
        ("dash", ["knockssh", "add", "--secret-stdin", "--", "-oProxyCommand"], "-oProxyCommand&option", {}),
        ("esc", ["knockssh", "add", "a\x1b[2Jb", "--secret-stdin"], "\\x1b", {}),
        ("cr", ["knockssh", "add", "a\rb", "--secret-stdin"], "\\r", {}),
        ("service-newline", [*add, "--service", "ssh\nHost *\n  ProxyCommand evil %h"], "--service&\\n", {}),
        ("service-esc", [*add, "--service", "\x1b]0;pwn\x07"], "--service&\\x1b", {}),
        ("service-emoji", [*add, "--service", "ssh\U0001f511"], "--service&letters", {}),
        ("service-suffix", [*add, "--service", "ssh_ROTATOR"], "--service&_ROTATOR", {}),
        ("stdin-closed", add, "standard input&closed", {"stdin": None}),
        ("stdin-endless", add, "standard input&more than", {"stdin_path": "/dev/zero"}),
        ("secret-file-endless", ["knockssh", "add", "new.test", "--secret-file", "/dev/zero"], "/dev/zero&more than", {}),
        ("stdin-nul", add, "standard input&control character", {"stdin": b"abcdefghijkl\x00xyz\n"}),
        ("stdin-two-lines", add, "standard input&one line", {"stdin": b"abcdefghijkl\nsecond line\n"}),
        ("secret-file-dir", ["knockssh", "add", "new.test", "--secret-file", "{tmp}"], "{tmp}&directory", {}),
    ]  # fmt: skip
    for name, argv, place, extra in adds:
        fields: dict[str, object] = {"env": env, "code": None, "stdin": good, **extra}
        yield Case(f"hostile-add-{name}", argv, place, **fields)  # type: ignore[arg-type]
    yield Case(
        "hostile-add-stdout-closed",
        add,
        "standard output&the entry was written",
        stdin=good,
        stdout_closed=True,
        writes=True,
    )
    init = ["knockssh-rotator", "init", "--interface", "lo", "--env-file", "{tmp}/e.env"]
    inits: list[tuple[str, list[str | bytes], str]] = [
        ("service-newline", [*init, "--service", "ssh\ntouch {tmp}/pwned"], "--service"),
        ("service-heredoc", [*init, "--service", "x\nEOF\ntouch {tmp}/pwned"], "--service"),
        ("service-suffix", [*init, "--service", "ssh_ROTATOR"], "--service&_ROTATOR"),
        ("service-bracket", [*init, "--service", "a]b"], "--service"),
        ("interface-newline", ["knockssh-rotator", "init", "--env-file", "{tmp}/e.env", "--interface", "lo\ntouch {tmp}/pwned"], "--interface"),
        ("interface-long", ["knockssh-rotator", "init", "--env-file", "{tmp}/e.env", "--interface", "x" * 16], "--interface"),
        ("env-file-newline", ["knockssh-rotator", "init", "--interface", "lo", "--env-file", "{tmp}/e\ntouch {tmp}/pwned"], "--env-file"),
        ("env-file-relative", ["knockssh-rotator", "init", "--interface", "lo", "--env-file", "e.env"], "--env-file&absolute"),
        ("env-file-empty", ["knockssh-rotator", "init", "--interface", "lo", "--env-file="], "--env-file"),
    ]  # fmt: skip
    for name, argv, place in inits:
        yield Case(f"hostile-init-{name}", argv, place, code=2)
    conf = {CONF: KNOCKD_CONF}
    rotator: list[tuple[str, list[str | bytes], str, dict[str, object]]] = [
        ("config-fifo", ["--config", "{tmp}/knockd.conf", "--no-reload"], "knockd.conf&FIFO", {"setup": "conf-fifo"}),
        ("config-dev-zero", ["--config", "/dev/zero", "--no-reload"], "/dev/zero&character device", {}),
        ("pidfile-fifo", ["--config", "{tmp}/knockd.conf", "--pidfile", "{tmp}/knockd.pid"], "knockd.pid&FIFO", {"setup": "pid-fifo", "files": conf}),
        ("pidfile-superscript", ["--config", "{tmp}/knockd.conf", "--pidfile", "{tmp}/p"], "{tmp}/p&no knockd pid", {"files": {**conf, "p": "²\n"}}),
        ("pidfile-5000-digits", ["--config", "{tmp}/knockd.conf", "--pidfile", "{tmp}/p"], "{tmp}/p&cannot read", {"files": {**conf, "p": "9" * 5000}}),
        ("config-eq-empty", ["--config=", "--no-reload"], "--config", {"code": 2}),
        ("pidfile-eq-empty", ["--config", "{tmp}/knockd.conf", "--pidfile="], "--pidfile", {"code": 2, "files": conf}),
        ("check-config-eq-empty", ["check", "--config="], "--config", {"code": 2}),
        ("check-env-file-eq-empty", ["check", "--env-file="], "--env-file", {"code": 2}),
    ]  # fmt: skip
    for name, args, place, extra in rotator:
        fields = {"env": env, **extra}
        yield Case(f"hostile-rotator-{name}", ["knockssh-rotator", *args], place, **fields)  # type: ignore[arg-type]
    for name, argv in (("check", ["knockssh", "check"]), ("proxy", ["knockssh", "h.test", "22"])):
        yield Case(f"hostile-mapping-fifo-{name}", argv, "hosts.toml&FIFO", setup="mapping-fifo")


def enrolment(**changes: str) -> str:
    """An enrolment line with SECRET (asserted never shown), ``changes`` replacing
    query values as they are written (``drop_KEY`` to leave KEY out)."""
    from urllib.parse import quote

    values = {"v": "1", "period": "21600", "length": "10", "ports": "2000-65536"}
    values.update(proto_modulo="0", secret=quote(SECRET, safe=""))
    values.update({k: v for k, v in changes.items() if not k.startswith("drop_")})
    query = "&".join(f"{k}={v}" for k, v in values.items() if f"drop_{k}" not in changes)
    return f"knockssh://srv.test:22/alice?{query}"


def client_cases() -> Iterator[Case]:
    """knockssh-rotator client add|list|revoke and knockssh enroll."""
    env: dict[str, str | bytes] = {"KNOCKD_ROTATOR_SECRET": SECRET}
    conf = {CONF: KNOCKD_CONF}
    where = ["--config", "{tmp}/knockd.conf", "--clients-dir", "{tmp}/clients", "--no-reload"]
    add = ["knockssh-rotator", "client", "add", "alice", *where]
    clients: list[tuple[str, list[str | bytes], str, dict[str, object]]] = [
        ("upper", ["knockssh-rotator", "client", "add", "Alice", *where], "'Alice'&client name", {}),
        ("dash-first", ["knockssh-rotator", "client", "add", "-x", *where], "-x", {"code": 2}),
        ("too-long", ["knockssh-rotator", "client", "add", "a" * 33, *where], "client name", {}),
        ("underscore", ["knockssh-rotator", "client", "add", "a_b", *where], "'a_b'&client name", {}),
        ("dot-dot", ["knockssh-rotator", "client", "add", "../x", *where], "'../x'&client name", {}),
        ("dot", ["knockssh-rotator", "client", "add", "a.b", *where], "'a.b'&client name", {}),
        ("newline", ["knockssh-rotator", "client", "add", "a\n[x]", *where], "client name", {}),
        ("emoji", ["knockssh-rotator", "client", "add", "a\U0001f511", *where], "client name", {}),
        ("empty", ["knockssh-rotator", "client", "add", "", *where], "client name", {}),
        ("no-name", ["knockssh-rotator", "client", "add", *where], "needs a NAME", {}),
        ("unknown-action", ["knockssh-rotator", "client", "grant", "x", *where], "grant", {"code": 2}),
        ("list-with-name", ["knockssh-rotator", "client", "list", "x", *where], "no name", {}),
        ("clash-host", ["knockssh-rotator", "client", "add", "ssh", *where], "knockd.conf&line 4&ssh_ROTATOR&exists", {}),
        ("no-rotator-section", add, "knockd.conf&no *_ROTATOR", {"files": {CONF: "[options]\n  UseSyslog\n"}}),
        ("conf-missing", add, "{tmp}/knockd.conf", {"files": {}}),
        ("conf-broken", add, "knockd.conf&line 2", {"files": {CONF: "[ssh_ROTATOR]\n  frob = 1\n"}}),
        ("exists", add, "alice.secret&exists already", {"setup": "clients-private"}),
        ("dir-open", add, "{tmp}/clients&mode 0755", {"setup": "clients-open"}),
        ("dir-link", add, "{tmp}/clients&symbolic link", {"setup": "clients-link"}),
        ("dir-a-file", add, "{tmp}/clients", {"files": {**conf, "clients": "x"}}),
        ("host-space", [*add, "--host", "a b"], "--host&'a b'&not a host", {}),
        ("host-slash", [*add, "--host", "srv/x?y"], "--host&not a host", {}),
        ("host-newline", [*add, "--host", "srv\nx"], "--host&\\n", {}),
        ("port-zero", [*add, "--port", "0"], "--port", {"code": 2}),
        ("port-word", [*add, "--port", "ssh"], "--port", {"code": 2}),
        ("no-secret", add, "{tmp}/e.env&cannot read", {"env": {}, "extra": ["--env-file", "{tmp}/e.env"]}),
        ("secret-readable", ["knockssh-rotator", "client", "add", "bob", *where], "alice.secret&readable by others", {"setup": "clients-secret-readable"}),
        ("revoke-unknown", ["knockssh-rotator", "client", "revoke", "zed", *where], "no client zed", {}),
        ("revoke-bad-name", ["knockssh-rotator", "client", "revoke", "../ssh", *where], "client name", {}),
        ("list-dir-open", ["knockssh-rotator", "client", "list", *where], "{tmp}/clients&mode 0755", {"setup": "clients-open"}),
    ]  # fmt: skip
    for name, argv, place, extra in clients:
        argv = [*argv, *extra.pop("extra", [])]  # type: ignore[misc]
        fields: dict[str, object] = {"env": env, "files": conf, **extra}
        yield Case(f"client-{name}", argv, place, **fields)  # type: ignore[arg-type]
    enroll = ["knockssh", "enroll"]
    lines: list[tuple[str, bytes, str]] = [
        ("other-scheme", b"https://srv.test/alice", "standard input&does not begin"),
        ("version-2", enrolment(v="2").encode(), "version 2"),
        ("no-version", enrolment(drop_v="").encode(), "no version"),
        ("unknown-key", enrolment(x="1").encode(), "unknown setting x"),
        ("key-twice", (enrolment() + "&period=600").encode(), "period given twice"),
        ("no-secret", enrolment(drop_secret="").encode(), "secret missing"),
        ("empty-secret", enrolment(secret="").encode(), "secret&empty"),
        ("secret-nul", enrolment(secret=SECRET + "%00").encode(), "control character"),
        ("secret-not-utf8", enrolment(secret=SECRET + "%ff").encode(), "secret&UTF-8"),
        ("secret-short", enrolment(secret="abc").encode(), "secret"),
        ("length-4", enrolment(length="4").encode(), "length"),
        ("period-zero", enrolment(period="0").encode(), "period"),
        ("period-word", enrolment(period="day").encode(), "period&whole number"),
        ("ports-bad", enrolment(ports="9000-2000").encode(), "ports"),
        ("port-zero", enrolment().replace(":22/", ":0/").encode(), "port"),
        ("port-big", enrolment().replace(":22/", ":70000/").encode(), "port"),
        ("no-port", enrolment().replace(":22/", "/").encode(), "no port"),
        ("host-quote", enrolment().replace("srv.test", 'a"b').encode(), "host"),
        ("host-dash", enrolment().replace("srv.test", "-oProxyCommand").encode(), "option"),
        ("host-equals", enrolment().replace("srv.test", "-oProxyCommand=x").encode(), "host"),
        ("host-star", enrolment().replace("srv.test", "*").encode(), "pattern"),
        ("service-suffix", enrolment().replace("/alice?", "/ssh_ROTATOR?").encode(), "_ROTATOR"),
        ("service-newline", enrolment().replace("/alice?", "/a%0Ab?").encode(), "service"),
        ("no-service", enrolment().replace("/alice?", "/?").encode(), "no service"),
        ("ipv6-unclosed", enrolment().replace("srv.test:22", "[2001:db8::1:22").encode(), "IPv6"),
        ("two-lines", (enrolment() + "\n" + enrolment()).encode(), "more than one line"),
        ("not-utf8", b"knockssh://\xff", "UTF-8"),
        ("empty", b"", "does not begin"),
    ]
    for name, data, place in lines:
        yield Case(f"enroll-{name}", list(enroll), place, stdin=data)  # type: ignore[arg-type]
    yield Case("enroll-argv", [*enroll, enrolment()], "never as an argument", code=2)
    yield Case("enroll-endless", list(enroll), "standard input&more than", stdin_path="/dev/zero")
    yield Case("enroll-stdin-closed", list(enroll), "standard input&closed", stdin=None)
    yield Case("enroll-file-missing", [*enroll, "--file", "{tmp}/nope"], "{tmp}/nope&cannot read")
    taken = {HOSTS: '[[host]]\nmatch = ["srv.test"]\nservice = "ssh"\nsecret = "abcdefghijkl"\n'}
    yield Case(
        "enroll-exists",
        list(enroll),
        "srv.test&already has an entry",
        files=taken,
        stdin=enrolment().encode(),
    )


CASES = [
    *client_cases(),
    *mapping_cases(),
    *secret_cases(),
    *env_cases(),
    *command_line_cases(),
    *knockd_conf_cases(),
    *wrapper_cases(),
    *hostile_cases(),
]


def test_the_table_is_large_and_every_id_unique():
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES)


def fill(value: str | bytes, tmp: str) -> str | bytes:
    if isinstance(value, bytes):
        return value.replace(b"{tmp}", os.fsencode(tmp))
    return value.replace("{tmp}", tmp)


def snapshot(root: str) -> dict[str, tuple[bytes, int]]:
    """Every file under ``root`` but the client's own state: content and mode (what
    a link points at, a FIFO's or a device's kind: never opened)."""
    found = {}
    for top, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in ("state", "run")]
        for name in [*files, *(d for d in dirs if os.path.islink(os.path.join(top, d)))]:
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                found[path] = (os.fsencode(os.readlink(path)), st.st_mode)
            elif not stat.S_ISREG(st.st_mode):
                found[path] = (str(st.st_rdev).encode(), st.st_mode)
            else:
                with open(path, "rb") as f:
                    found[path] = (f.read(), stat.S_IMODE(st.st_mode))
        for name in dirs:
            path = os.path.join(top, name)
            found[path + "/"] = (b"", os.lstat(path).st_mode)
    return found


def _plant(case: Case, tmp: str) -> None:
    for name, content in case.files.items():
        path = Path(tmp, name)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = fill(content, tmp)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        path.chmod(case.modes.get(name, 0o600))
    if case.setup:
        SETUPS[case.setup](Path(tmp))


def _run(case: Case, tmp: str) -> tuple[subprocess.CompletedProcess[bytes], str]:
    env: dict[str | bytes, str | bytes] = {
        "PATH": os.environ["PATH"],
        "HOME": tmp,
        "XDG_CONFIG_HOME": os.path.join(tmp, "config"),
        "XDG_STATE_HOME": os.path.join(tmp, "state"),
        "XDG_RUNTIME_DIR": os.path.join(tmp, "run"),
        "PYTHONPATH": ROOT,
        "LC_ALL": "C.UTF-8",
    }
    env.update({k: fill(v, tmp) for k, v in case.env.items()})
    program, *args = case.argv
    argv = [*PROGRAMS[str(program)], *(fill(a, tmp) for a in args)]
    if case.powerless:  # as a user's process is: file permissions hold for it
        argv = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--", *argv]
    close_stdin = case.stdin is None

    def child() -> None:
        os.close(0)

    stdin = open(case.stdin_path, "rb") if case.stdin_path else None  # noqa: SIM115
    broken = os.pipe() if case.stdout_closed else None
    if broken:
        os.close(broken[0])
    try:
        done = subprocess.run(
            argv,
            input=None if stdin or close_stdin else case.stdin,
            stdin=stdin,
            stdout=broken[1] if broken else subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=tmp,
            timeout=30,
            check=False,
            preexec_fn=child if close_stdin else None,
        )
    finally:
        if stdin:
            stdin.close()
        if broken:
            os.close(broken[1])
    err = done.stderr.decode(errors="replace")
    return done, f"stderr={err!r} stdout={(done.stdout or b'')[:300]!r}"


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path):
    tmp = str(tmp_path)
    _plant(case, tmp)
    before = snapshot(tmp)
    done, shown = _run(case, tmp)
    err = done.stderr.decode(errors="replace")
    assert done.returncode != 0, shown
    if case.code is not None:
        assert done.returncode == case.code, shown
    assert "Traceback" not in err, shown
    assert err.endswith("\n") and err.count("\n") == 1, shown
    place = fill(case.place, tmp)
    assert all(p in err for p in str(place).split("&")), f"{place!r} not named: {shown}"
    assert SECRET.encode() not in (done.stdout or b"") + done.stderr
    if not case.writes:
        assert snapshot(tmp) == before, "an input file changed"
