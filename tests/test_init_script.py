"""``knockssh-rotator init | sh`` as root runs it: in a sandbox (a mount namespace
with a tmpfs on /etc, a UTS namespace with a hostile host name, and PATH stubs for
the firewall and systemctl), so that the script really runs and nothing it does
reaches this machine. No input may add a line to it; a second run keeps the
admin's edited knockd.conf."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT
from hypothesis import given
from hypothesis import strategies as st

from rotator import server_setup

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="the sandbox needs root (unshare of mount and UTS namespaces); CI is root",
)

STUBS = ("iptables", "ip6tables", "nft", "netfilter-persistent", "systemctl", "systemd-run")

SANDBOX = r"""
set -eu
"$PYTHON" -c 'import ctypes, os; n = os.environb[b"HOSTILE_HOST"]
assert ctypes.CDLL(None).sethostname(n, len(n)) == 0 and os.uname().nodename.count("\n") == 2'
"$PYTHON" -c 'import sys; from rotator.cli import main; sys.exit(main())' \
    init --interface lo --env-file "$TMP/rotator.env" > "$TMP/script.sh"
mount -t tmpfs knockssh-test /etc
mkdir -p /etc/systemd/system
printf 'edited by the admin\n' > /etc/knockd.conf
PATH="$TMP/stubs:$PATH" sh "$TMP/script.sh" > "$TMP/run1.out" 2>&1
printf 'edited again\n' > /etc/knockd.conf
PATH="$TMP/stubs:$PATH" sh "$TMP/script.sh" > "$TMP/run2.out" 2>&1
ls -a /etc > "$TMP/etc.list"
cat /etc/knockd.conf.before-knockssh* > "$TMP/backups"
cp /etc/knockd.conf "$TMP/knockd.conf"
"""


def test_a_hostile_host_name_adds_no_line_and_a_second_run_keeps_a_backup(tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in STUBS:
        stub = stubs / name
        stub.write_text(f'#!/bin/sh\necho "{name} $*" >> "$TMP/stubs.log"\n')
        stub.chmod(0o755)
    pwned = Path(f"/tmp/kp{os.getpid()}")  # a host name has at most 64 bytes
    pwned.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PYTHONPATH": ROOT,
        "PYTHON": sys.executable,
        "TMP": str(tmp_path),
        "HOSTILE_HOST": f"box\ntouch {pwned}\n#",
    }
    done = subprocess.run(
        ["unshare", "--mount", "--uts", "--fork", "sh", "-c", SANDBOX],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    ran = [(tmp_path / n).read_text() for n in ("run1.out", "run2.out") if (tmp_path / n).exists()]
    assert done.returncode == 0, (done.stderr, ran)
    assert not pwned.exists(), "the host name ran as a command"
    script = (tmp_path / "script.sh").read_text()
    assert "# clients: knockssh add THIS-SERVER --service ssh" in script
    assert "[ssh_ROTATOR]" in (tmp_path / "knockd.conf").read_text()
    # both of the admin's versions are kept: the first run's name, then a dated one
    assert (tmp_path / "backups").read_text().count("edited") == 2
    backups = [n for n in (tmp_path / "etc.list").read_text().split() if "before" in n]
    assert len(backups) == 2, backups
    assert "systemctl restart knockd.service" in (tmp_path / "stubs.log").read_text()


UNITS = {name: "[Unit]\n" for name in server_setup.UNITS}
SAFE = "abcdefghijklmnopqrstuvwxyz0123456789._-"


@given(
    service=st.text(min_size=1, max_size=20),
    interface=st.text(min_size=1, max_size=20),
    env_file=st.text(min_size=1, max_size=30),
    host=st.text(max_size=30),
)
def test_no_value_adds_a_line_to_the_script(service, interface, env_file, host):
    """Whatever the four values, the script is refused (ValueError) or has exactly
    the lines it has for tame values: none can end a comment or a heredoc."""
    tame = server_setup.setup_script("eth0", 22, "iptables", "ssh", "/e.env", "h", UNITS)
    try:
        script = server_setup.setup_script(
            interface, 22, "iptables", service, "/" + env_file, host, UNITS
        )
    except ValueError:
        assert (
            server_setup.service_problem(service)
            or server_setup.interface_problem(interface)
            or server_setup.path_problem("/" + env_file)
        )
        return
    assert script.count("\n") == tame.count("\n")
    heredoc_ends = [line for line in script.split("\n") if line == "EOF"]
    assert len(heredoc_ends) == tame.split("\n").count("EOF")


@pytest.mark.parametrize("service", ["ssh\ntouch /x", "x\nEOF", "a]b", "ssh_ROTATOR", ""])
def test_setup_script_refuses_what_could_break_it(service):
    with pytest.raises(ValueError):
        server_setup.setup_script("eth0", 22, "iptables", service, "/e.env", "h", UNITS)


ROUND_TRIP = r"""
set -eu
mount -t tmpfs knockssh-test /etc
mkdir -p /etc/systemd/system /etc/ssh
printf 'the admin knockd.conf\n' > /etc/knockd.conf
printf 'Port 2222\n' > /etc/ssh/sshd_config
rotator() { "$PYTHON" -c 'import sys; from rotator.cli import main; sys.exit(main())' "$@"; }
rotator init --interface lo --firewall iptables > "$TMP/init.sh"
PATH="$TMP/stubs:$PATH" sh "$TMP/init.sh" > "$TMP/init.out" 2>&1
find /etc -type f | sort > "$TMP/after-init"
printf 'Port 22\n' > /etc/ssh/sshd_config  # uninit takes the port init used, from its record
rotator uninit > "$TMP/uninit.sh"
echo "--- uninit" >> "$TMP/stubs.log"
PATH="$TMP/stubs:$PATH" sh "$TMP/uninit.sh" > "$TMP/uninit.out" 2>&1
find /etc -type f | sort > "$TMP/after-uninit"
cp /etc/knockd.conf "$TMP/knockd.conf"
"""

# a firewall holding init's DROP rule once: -C finds it until -D removes it
IPTABLES_STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$TMP/stubs.log"
case "$*" in
  "-C INPUT -p tcp --dport 2222 -j DROP") [ ! -e "$TMP/dropped-$(basename "$0")" ] ;;
  "-D INPUT -p tcp --dport 2222 -j DROP") touch "$TMP/dropped-$(basename "$0")" ;;
esac
"""


def test_uninit_undoes_init_and_opens_the_port_first(tmp_path):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    for name in STUBS:
        text = (
            IPTABLES_STUB
            if name.endswith("tables")
            else f'#!/bin/sh\necho "{name} $*" >> "$TMP/stubs.log"\n'
        )
        (stubs / name).write_text(text)
        (stubs / name).chmod(0o755)
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHON": sys.executable, "TMP": str(tmp_path)}
    done = subprocess.run(
        ["unshare", "--mount", "--fork", "sh", "-c", ROUND_TRIP],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stderr, (tmp_path / "stubs.log").read_text())
    after_init = (tmp_path / "after-init").read_text().split()
    assert server_setup.INIT_RECORD in after_init and server_setup.KNOCKD_DROPIN in after_init
    assert "/etc/systemd/system/knockssh-rotator.timer" in after_init
    left = (tmp_path / "after-uninit").read_text().split()
    assert left == ["/etc/knockd.conf", "/etc/knockssh/rotator.env", "/etc/ssh/sshd_config"]
    assert (tmp_path / "knockd.conf").read_text() == "the admin knockd.conf\n"
    log = (tmp_path / "stubs.log").read_text().splitlines()
    assert log[0] == "systemctl stop knockssh-revert.timer"  # the revert is armed first
    assert log[2].startswith("systemd-run --quiet --unit=knockssh-revert --on-active=300 ")
    assert log[2].endswith(" /bin/sh -c /usr/local/bin/knockssh-rotator uninit | sh")
    uninit = log[log.index("--- uninit") + 1 :]
    assert uninit[:4] == [
        "iptables -C INPUT -p tcp --dport 2222 -j DROP",
        "iptables -D INPUT -p tcp --dport 2222 -j DROP",
        "iptables -C INPUT -p tcp --dport 2222 -j DROP",
        "ip6tables -C INPUT -p tcp --dport 2222 -j DROP",
    ]  # the port is open again before anything else is touched
    assert "systemctl disable --now knockssh-rotator.timer" in uninit
    assert uninit[-1] == "systemctl try-restart knockd.service"


def test_init_names_the_rotator_it_runs_in_the_unit(tmp_path):
    """Run as /some/dir/knockssh-rotator (a venv, pip --user), the unit starts that
    one, not /usr/local/bin's."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "knockssh-rotator"
    launcher.write_text(
        f"#!{sys.executable}\nimport sys\nfrom rotator.cli import main\nsys.exit(main())\n"
    )
    launcher.chmod(0o755)
    env = {**os.environ, "PYTHONPATH": ROOT, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(
        ["knockssh-rotator", "init", "--interface", "lo", "--env-file", str(tmp_path / "r.env")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"ExecStart={launcher} --config /etc/knockd.conf" in done.stdout
    assert "/usr/local/bin/knockssh-rotator" not in done.stdout


def test_uninit_script_refuses_what_it_cannot_write():
    for firewall, port in (("pf", 22), ("iptables", 0), ("nftables", 65536)):
        with pytest.raises(ValueError):
            server_setup.uninit_script(port, firewall)
    assert server_setup.parse_record("PORT=99999\nFIREWALL=pf\n") == (None, None)
    assert server_setup.parse_record(server_setup.record_text(2222, "nftables")) == (
        2222,
        "nftables",
    )


@pytest.mark.parametrize("value", ["x", "-1", "86401", "1e3", ""])
def test_a_bad_revert_delay_is_one_line_and_writes_nothing(tmp_path, value):
    env_file = tmp_path / "r.env"
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from rotator.cli import main; sys.exit(main())",
         "init", "--interface", "lo", "--env-file", str(env_file), "--revert-after", value],
        env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 2 and done.stdout == "" and not env_file.exists()
    assert "--revert-after: seconds from 0 (no revert) to 86400" in done.stderr
    assert done.stderr.count("\n") == 1


def test_confirm_without_systemd_says_so(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", "import sys; from rotator.cli import main; sys.exit(main())",
         "confirm"],
        env={**os.environ, "PYTHONPATH": ROOT, "PATH": str(tmp_path)},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1 and "systemctl not found" in done.stderr


@pytest.mark.parametrize("firewall", server_setup.FIREWALLS)
def test_init_print_shows_the_files_the_script_writes_and_writes_nothing(tmp_path, firewall):
    """The Ansible role takes init's files from ``init --print``: each is what the
    script writes, byte for byte, and printing one writes no env file."""
    env = {**os.environ, "PYTHONPATH": ROOT}
    common = ["--interface", "lo", "--port", "2222", "--firewall", firewall]
    common += ["--env-file", str(tmp_path / "rotator.env"), "--revert-after", "0"]
    rotator = [sys.executable, "-c", "import sys; from rotator.cli import main; sys.exit(main())"]
    names = ["knockd.conf", "firewall.sh", "knockd-dropin", *server_setup.UNITS]
    names += ["firewall.nft"] if firewall == "nftables" else []
    printed = {}
    for name in names:
        done = subprocess.run(
            [*rotator, "init", "--print", name, *common], capture_output=True, env=env, check=True
        )
        printed[name] = done.stdout.decode()
    assert not (tmp_path / "rotator.env").exists()
    script = subprocess.run(
        [*rotator, "init", *common], capture_output=True, env=env, check=True
    ).stdout.decode()
    for name, text in printed.items():
        assert text and f"<<'EOF'\n{text}EOF" in script, name
    dropped = "tcp dport 2222 drop" if firewall == "nftables" else "--dport 2222 -j DROP"
    assert dropped in printed.get("firewall.nft", printed["firewall.sh"])
