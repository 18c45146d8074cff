"""``knockssh generate``: exactly one line on stdout, errors on stderr, no secret."""

import os
import subprocess
import sys

import pytest
from helpers import ROOT, SECRET, run_cli


def env_with(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KNOCKD_ROTATOR_")}
    env["KNOCKD_ROTATOR_SECRET"] = SECRET
    env.update(extra)
    return env


@pytest.mark.parametrize("word", ["generate", "gen", "gene", "g", "GENERATE"])
def test_generate_and_abbreviations(word):
    done = run_cli("knockssh", word, "ssh", "--at", "1700000000", env=env_with())
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        b"4419:tcp 57793:tcp 29736:tcp 42429:tcp 55222:tcp 30034:tcp 32693:tcp 10941:tcp "
        b"55402:tcp 7154:tcp\n"
    )
    assert done.stderr == b""


def test_offset_moves_one_period():
    env = env_with()
    previous = run_cli(
        "knockssh", "generate", "ssh", "--at", "1700000000", "--offset", "-1", env=env
    )
    earlier = run_cli("knockssh", "generate", "ssh", "--at", str(1700000000 - 21600), env=env)
    assert previous.returncode == 0 and previous.stdout == earlier.stdout
    assert previous.stdout.count(b"\n") == 1


def test_warnings_go_to_stderr():
    env = env_with(KNOCKD_ROTATOR_PORTS="2000-2002", KNOCKD_ROTATOR_LENGTH="30")
    done = run_cli("knockssh", "generate", "ssh", "--at", "1", env=env)
    assert done.returncode == 0
    assert len(done.stdout.splitlines()) == 1
    assert b"warning" in done.stderr


@pytest.mark.parametrize(
    "env,args,message",
    [
        (
            {"KNOCKD_ROTATOR_SECRET": ""},
            ["ssh"],
            b"KNOCKD_ROTATOR_SECRET: the shared secret is required",
        ),
        ({"KNOCKD_ROTATOR_SECRET": "short"}, ["ssh"], b"at least 10"),
        ({"KNOCKD_ROTATOR_LENGTH": "ten"}, ["ssh"], b"KNOCKD_ROTATOR_LENGTH"),
        ({"KNOCKD_ROTATOR_LENGTH": "4"}, ["ssh"], b"below 5"),
        ({"KNOCKD_ROTATOR_LENGTH": "40"}, ["ssh"], b"limit of 32"),
        ({"KNOCKD_ROTATOR_PORTS": "2000,2000"}, ["ssh"], b"duplicate"),
        ({"KNOCKD_ROTATOR_PORTS": "2000-2001"}, ["ssh"], b"entropy"),
        ({"KNOCKD_ROTATOR_PERIOD_MODULO": "0"}, ["ssh"], b"KNOCKD_ROTATOR_PERIOD_MODULO: period 0"),
        (
            {"KNOCKD_ROTATOR_PROTO_MODULO": "-2"},
            ["ssh"],
            b"KNOCKD_ROTATOR_PROTO_MODULO: proto_modulo -2 must be from 0 to 65536",
        ),
        ({}, [], b"usage"),
        ({}, ["ssh", "--offset", "x"], b"--offset"),
        ({}, ["ssh", "--bogus"], b"unknown option"),
    ],
)
def test_error_paths(env, args, message):
    done = run_cli("knockssh", "generate", *args, env=env_with(**env))
    assert done.returncode != 0
    assert done.stdout == b""
    assert message in done.stderr
    assert b"Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2  # the error (and a usage hint)
    assert SECRET.encode() not in done.stderr


def test_65536_error_names_period_and_offset():
    # with 7 ports the period starting at 0 draws 65536
    env = env_with(
        KNOCKD_ROTATOR_PORTS="65530-65536",
        KNOCKD_ROTATOR_LENGTH="15",
        KNOCKD_ROTATOR_PERIOD_MODULO="60",
    )
    done = run_cli("knockssh", "generate", "ssh", "--at", "0", env=env)
    assert done.returncode == 1 and done.stdout == b""
    assert (
        b"65536" in done.stderr
        and b"--offset" in done.stderr
        and b"period starting at 0" in done.stderr
    )


def test_unknown_command_is_a_usage_error():
    done = run_cli("knockssh", "frobnicate", env=env_with())
    assert done.returncode == 2 and b"unknown command" in done.stderr


@pytest.mark.parametrize(("args", "code"), [(["--help"], 0), (["frobnicate"], 2)])
def test_fast_exit_keeps_exit_handlers_buffers_and_status(args, code):
    """run() skips the interpreter's teardown, not what the teardown would have done."""
    script = (
        "import atexit, os, sys\n"
        "atexit.register(lambda: os.write(2, b'handler ran'))\n"
        "sys.stdout.write('buffered text')\n"  # still in Python's buffer
        f"sys.argv[1:] = {args!r}\n"
        "from knockssh.cli import run\n"
        "run()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, cwd=ROOT, env=env_with(), timeout=30
    )
    assert done.returncode == code
    assert b"buffered text" in done.stdout
    assert done.stderr.startswith(b"knockssh: unknown" if code else b"handler ran")
    assert done.stderr.endswith(b"handler ran")


def _bytes_argv(*words):
    """An argv with raw bytes, as a shell passes them (Python sees surrogates)."""
    return [w if isinstance(w, bytes) else w.encode() for w in words]


@pytest.mark.parametrize(
    "argv, env, named",
    [
        ([b"generate", b"ss\xffh"], {}, b"argument 2 ('ss\\udcffh') is not valid UTF-8 text"),
        ([b"check", b"bad\xffhost"], {}, b"argument 2 ('bad\\udcffhost') is not valid UTF-8"),
        ([b"\xff.example", b"22"], {}, b"argument 1 ('\\udcff.example') is not valid UTF-8"),
        (
            [b"generate", b"ssh"],
            {b"KNOCKD_ROTATOR_SECRET": b"abcdefghijkl\xff"},
            b"KNOCKD_ROTATOR_SECRET: the secret is not valid UTF-8 text",
        ),
        (
            [b"generate", b"ssh"],
            {b"KNOCKD_ROTATOR_PORTS": b"2000-3000\xff"},
            b"KNOCKD_ROTATOR_PORTS is not valid UTF-8 text",
        ),
    ],
)
def test_text_that_is_not_utf8_is_named_not_a_traceback(argv, env, named):
    base = {k.encode(): v.encode() for k, v in env_with().items()}
    done = subprocess.run(
        [sys.executable.encode(), b"-m", b"knockssh", *argv],
        capture_output=True,
        env={**base, **env},
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode in (1, 2) and done.stdout == b""
    assert named in done.stderr and b"Traceback" not in done.stderr
    assert SECRET.encode() not in done.stderr


ROTATOR = b"import sys; from rotator.cli import main; sys.exit(main())"


def test_the_rotator_names_text_that_is_not_utf8():
    base = {k.encode(): v.encode() for k, v in env_with().items()}
    done = subprocess.run(
        [sys.executable.encode(), b"-c", ROTATOR, b"--config", b"/nonexistent/\xff"],
        capture_output=True,
        env=base,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 2 and b"Traceback" not in done.stderr
    assert done.stderr == (
        b"knockssh-rotator: error: argument 2 ('/nonexistent/\\udcff') is not valid UTF-8 text\n"
    )


def test_subcommand_help():
    done = run_cli("knockssh", "check", "-h", env=env_with())
    assert done.returncode == 0 and done.stdout.startswith(b"usage: knockssh")


HUGE = "1" + "0" * 400


@pytest.mark.parametrize(
    "argv, env, named",
    [
        (
            ["generate", "ssh"],
            {"KNOCKD_ROTATOR_PERIOD_MODULO": HUGE},
            "KNOCKD_ROTATOR_PERIOD_MODULO",
        ),
        (["generate", "ssh"], {"KNOCKD_ROTATOR_LENGTH": "1" * 5000}, "KNOCKD_ROTATOR_LENGTH"),
        (["generate", "ssh", "--at", HUGE], {}, "--at must be a whole number"),
        (["generate", "ssh", "--offset", HUGE], {}, "--offset must be a whole number"),
        (["generate", "ssh", "--offset", "5000"], {}, "--offset must be from -1000 to 1000"),
        (["127.0.0.1", "5" * 5000], {}, "port must be a whole number"),
        (["127.0.0.1", "70000"], {}, "port must be from 1 to 65535"),
    ],
)
def test_numbers_out_of_range_are_named_not_a_traceback(argv, env, named):
    done = run_cli("knockssh", *argv, env=env_with(**env))
    assert done.returncode in (1, 2) and done.stdout == b""
    assert named.encode() in done.stderr and b"Traceback" not in done.stderr


@pytest.mark.parametrize(
    "key, value",
    [("period", HUGE), ("length", "4"), ("length", "33"), ("proto_modulo", "70000"),
     ("connect_timeout", "inf")],
)  # fmt: skip
def test_mapping_numbers_use_the_schemes_limits(tmp_path, key, value):
    hosts = tmp_path / "hosts.toml"
    hosts.write_text(f'[[host]]\nmatch = ["h"]\nservice = "s"\n{key} = {value}\n')
    done = run_cli("knockssh", "check", "h", env=env_with(KNOCKSSH_CONFIG=str(hosts)))
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    assert f"host entry 1 (h): key '{key}' must be".encode() in done.stderr


def test_the_rotators_at_is_checked_before_arithmetic():
    done = subprocess.run(
        [sys.executable, "-c", ROTATOR.decode(), "--config", "/nonexistent", "--at", HUGE],
        capture_output=True,
        env=env_with(),
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 2 and b"Traceback" not in done.stderr
    assert b"at most 12 digits" in done.stderr
