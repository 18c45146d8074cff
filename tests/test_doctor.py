"""knockssh-rotator check's decisions, from facts alone: a good server has nothing to
say, and each fault, provoked alone, gives its one finding."""

import os
import subprocess

import pytest
from helpers import ROOT, ROTATOR, SECRET

from rotator import doctor, server_setup

PORT = 22
CONF = server_setup.knockd_conf_text("ens5", PORT, "iptables")
IPTABLES = (
    "-P INPUT ACCEPT\n"
    "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
    "-A INPUT -p tcp -m tcp --dport 22 -j DROP\n"
)
NFT = """\
table inet knock {
\tchain input {
\t\ttype filter hook input priority filter; policy accept;
\t\tct state established,related accept
\t\tip saddr @allowed tcp dport 22 accept
\t\ttcp dport 22 drop
\t}
}
"""
GOOD = doctor.Facts(
    conf_path="/etc/knockd.conf",
    conf_text=CONF,
    conf_error=None,
    interfaces={"lo": True, "ens5": True},
    default_interface="ens5",
    knockd_interface=None,
    knockd_running=True,
    iptables={"iptables": IPTABLES, "ip6tables": IPTABLES},
    nft_ruleset=None,
    env_path="/etc/knockssh/rotator.env",
    env_values=doctor.parse_env_file(server_setup.env_file_text(SECRET)),
    env_error=None,
    env_mode=0o600,
    systemd=True,
    rotator_active=True,
    knockd_restart="always",
    ntp_synchronized=True,
)


def test_a_good_server_has_nothing_to_say():
    assert doctor.findings(GOOD) == []
    nft_only = GOOD._replace(iptables={"iptables": None, "ip6tables": None}, nft_ruleset=NFT)
    assert doctor.findings(nft_only) == []  # an inet table covers both families
    assert doctor.findings(GOOD._replace(ntp_synchronized=None, rotator_active=None)) == []


def replace_in_conf(old, new):
    assert old in CONF
    return CONF.replace(old, new)


FAULTS = [
    ("unreadable conf", {"conf_text": None, "conf_error": "cannot read"}, "/etc/knockd.conf: cannot read"),
    ("conf does not parse", {"conf_text": CONF + "frob\n"}, "line 14"),
    ("no rotator section", {"conf_text": "[options]\n  Interface = ens5\n"}, "no *_ROTATOR section"),
    ("interface missing", {"conf_text": replace_in_conf("ens5", "eth0")}, "knockd listens on eth0, which this machine does not have -- fix: set 'Interface = ens5'"),
    ("interface down", {"interfaces": {"ens5": False}}, "interface ens5 is down"),
    ("knockd -i wins", {"knockd_interface": "eth1"}, "knockd listens on eth1"),
    ("knockd not running", {"knockd_running": False}, "knockd is not running"),
    ("no drop", {"iptables": {"iptables": IPTABLES.replace("-j DROP", "-j ACCEPT"), "ip6tables": IPTABLES}}, "not dropped over IPv4"),
    ("ipv6 open", {"iptables": {"iptables": IPTABLES, "ip6tables": "-P INPUT ACCEPT\n"}}, "not dropped over IPv6"),
    ("no established", {"iptables": {"iptables": IPTABLES.replace("RELATED,ESTABLISHED", "NEW"), "ip6tables": IPTABLES}}, "no ESTABLISHED,RELATED accept over IPv4"),
    ("not idempotent", {"conf_text": replace_in_conf("start_command = /usr/sbin/iptables -C INPUT -s %IP% -p tcp --dport 22 -j ACCEPT || ", "start_command = ")}, "start_command is not idempotent"),
    ("no %IP%", {"conf_text": replace_in_conf("stop_command  = /usr/sbin/iptables -D INPUT -s %IP%", "stop_command  = /usr/sbin/iptables -D INPUT")}, "stop_command does not use %IP%"),
    ("seq_timeout", {"conf_text": replace_in_conf("seq_timeout   = 10", "seq_timeout   = 600")}, "seq_timeout = 600"),
    ("cmd_timeout", {"conf_text": replace_in_conf("cmd_timeout   = 30", "cmd_timeout   = 99999")}, "cmd_timeout = 99999"),
    ("env missing", {"env_values": None, "env_mode": None, "env_error": "missing"}, "rotator.env is missing -- fix: knockssh-rotator init"),
    ("env a directory", {"env_values": None, "env_mode": None, "env_error": "cannot be read: is a directory, not a regular file"}, "rotator.env cannot be read: is a directory"),
    ("env unreadable", {"env_values": None, "env_mode": None, "env_error": "cannot be read: Permission denied"}, "rotator.env cannot be read: Permission denied"),
    ("env readable", {"env_mode": 0o644}, "readable by others (mode 644)"),
    ("placeholder", {"env_values": {**GOOD.env_values, "KNOCKD_ROTATOR_SECRET": "change-me-to-something"}}, "placeholder"),
    ("no secret", {"env_values": {"KNOCKD_ROTATOR_LENGTH": "10"}}, "KNOCKD_ROTATOR_SECRET: the shared secret is required"),
    ("timer inactive", {"rotator_active": False}, "fix: systemctl enable --now knockssh-rotator.timer"),
    ("no follower", {"rotator_active": False, "systemd": False}, "knockssh-rotator --follow"),
    ("clock", {"ntp_synchronized": False}, "not NTP-synchronised"),
    ("knockd unsupervised", {"knockd_restart": "no"}, "not restarted when knockd ends (Restart=no)"),
    ("superscript period", {"env_values": {**GOOD.env_values, "KNOCKD_ROTATOR_PERIOD_MODULO": "²"}}, "KNOCKD_ROTATOR_PERIOD_MODULO"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "changes", "expected"), FAULTS, ids=[f[0] for f in FAULTS])
def test_each_fault_gives_its_one_finding(name, changes, expected):
    found = [f.line() for f in doctor.findings(GOOD._replace(**changes))]
    assert len(found) == 1 and expected in found[0], found


def test_without_ip_the_interface_is_not_judged():
    """No ip on PATH: which interfaces exist is unknown, so none is called missing."""
    facts = GOOD._replace(interfaces=None, conf_text=replace_in_conf("ens5", "eth0"))
    assert doctor.findings(facts) == []


def test_numbers_that_are_not_ascii_or_too_long_are_not_numbers():
    five_thousand = "9" * 5000
    conf = replace_in_conf("cmd_timeout   = 30", f"cmd_timeout   = {five_thousand}")
    conf = conf.replace("--dport 22", f"--dport {five_thousand}", 1)
    facts = GOOD._replace(conf_text=conf.replace("seq_timeout   = 10", "seq_timeout   = ²"))
    lines = [f.line() for f in doctor.findings(facts)]  # no ValueError on the way
    # a value that is no whole number is not judged, and no port is made of one
    assert not any("timeout" in line or "9999" in line for line in lines), lines


def test_the_env_file_is_read_as_systemd_reads_it():
    text = "# c\n\nA=1\n B = \"two words\" \n;x\nC='q'\nnot a line\n"
    assert doctor.parse_env_file(text) == {"A": "1", "B": "two words", "C": "q"}


def test_interfaces_as_ip_link_shows_them():
    text = (
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\n"
        "2: ens5@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 state UP\n"
        "3: eth1: <BROADCAST,MULTICAST> mtu 1500 qdisc noop state DOWN\n"
    )
    assert doctor.interfaces_of(text) == {"lo": True, "ens5": True, "eth1": False}


# -- the doctor as a process, on hostile files: one report, never a hang or a traceback

DOCTOR = [*ROTATOR, "check"]
CONF_OK = "[options]\n  Interface = lo\n[ssh_ROTATOR]\n  sequence = 1,2,3\n  cmd_timeout = 30\n"
ENV_OK = f"KNOCKD_ROTATOR_SECRET={SECRET}\n"
HOSTILE = [  # (id, files: name -> bytes, or "fifo"/"dir"; extra args; stdout must hold)
    ("superscript-timeout", {"conf": CONF_OK.replace("= 30", "= ²")}, [], "all well|"),
    ("5000-digit-timeout", {"conf": CONF_OK.replace("= 30", "= " + "9" * 5000)}, [], "|"),
    ("5000-digit-port", {"conf": CONF_OK + "  start_command = x --dport " + "9" * 5000 + " %IP%\n"}, [], "|"),
    ("superscript-period", {"env": ENV_OK + "KNOCKD_ROTATOR_PERIOD_MODULO=²\n"}, [], "KNOCKD_ROTATOR_PERIOD_MODULO"),
    ("superscript-pid", {"pid": "²\n"}, [], "knockd is not running"),
    ("5000-digit-pid", {"pid": "9" * 5000}, [], "knockd is not running"),
    ("interface-not-utf8", {"conf": CONF_OK.replace("= lo", "= e\udcffth0")}, [], "\\udcff"),
    ("interface-escape", {"conf": CONF_OK.replace("= lo", "= e\x1b[2J\rth0")}, [], "\\x1b[2J\\r"),
    ("config-dev-zero", {}, ["--config", "/dev/zero"], "/dev/zero: cannot read: is a character device"),
    ("config-fifo", {"conf": "fifo"}, [], "knockd.conf: cannot read: is a FIFO"),
    ("env-fifo", {"env": "fifo"}, [], "rotator.env cannot be read: is a FIFO"),
    ("pid-fifo", {"pid": "fifo"}, [], "knockd is not running"),
    ("env-directory", {"env": "dir"}, [], "rotator.env cannot be read: is a directory"),
]  # fmt: skip


def run_doctor(tmp_path, files, extra, path=None, stdout=subprocess.PIPE):
    names = {"conf": "knockd.conf", "env": "rotator.env", "pid": "knockd.pid"}
    defaults = {"conf": CONF_OK, "env": ENV_OK}
    for key, name in names.items():
        content = files.get(key, defaults.get(key))
        target = tmp_path / name
        if content == "fifo":
            os.mkfifo(target, 0o600)
        elif content == "dir":
            target.mkdir()
        elif content is not None:
            target.write_bytes(content.encode("utf-8", "surrogateescape"))
            target.chmod(0o600)
    args = ["--config", str(tmp_path / "knockd.conf"), "--env-file", str(tmp_path / "rotator.env")]
    args += ["--pidfile", str(tmp_path / "knockd.pid")]  # never another knockd of this machine
    env = {**os.environ, "PYTHONPATH": ROOT, "PATH": path or os.environ["PATH"]}
    return subprocess.run(
        [*DOCTOR, *args, *extra], stdout=stdout, stderr=subprocess.PIPE, env=env, timeout=30
    )


@pytest.mark.parametrize(
    ("name", "files", "extra", "expected"), HOSTILE, ids=[h[0] for h in HOSTILE]
)
def test_the_doctor_reports_hostile_files_without_a_traceback_or_a_hang(
    tmp_path, name, files, extra, expected
):
    done = run_doctor(tmp_path, files, extra)
    out, err = done.stdout.decode(), done.stderr.decode()
    assert done.returncode == 1 and err == "", (out, err)  # findings, in one report
    assert all(line.isprintable() for line in out.splitlines()), out  # no ESC, CR or \udcff raw
    assert any(e in out for e in expected.split("|") if e) or expected.endswith("|"), out


def test_without_ip_the_doctor_claims_no_missing_interface(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    conf = CONF_OK.replace("= lo", "= nosuch0")
    done = run_doctor(tmp_path, {"conf": conf}, [], path=str(empty))
    assert done.returncode == 1 and b"Traceback" not in done.stderr
    assert b"does not have" not in done.stdout, done.stdout
    again = tmp_path / "again"
    again.mkdir()
    with_ip = run_doctor(again, {"conf": conf}, [])
    assert b"knockd listens on nosuch0, which this machine does not have" in with_ip.stdout


def test_a_closed_stdout_is_one_line(tmp_path):
    read, write = os.pipe()
    os.close(read)
    try:
        done = run_doctor(tmp_path, {}, [], stdout=write)
    finally:
        os.close(write)
    err = done.stderr.decode()
    assert done.returncode == 1 and err.count("\n") == 1 and "standard output" in err, err
