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
    ("not idempotent", {"conf_text": replace_in_conf("start_command = /usr/sbin/iptables -C INPUT -s %IP% -p tcp --dport 22 -m comment --comment knockssh-door -j ACCEPT || ", "start_command = ")}, "start_command is not idempotent"),
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


EXACT = {  # each fault's whole line: what is wrong, and the fix
    'unreadable conf': '/etc/knockd.conf: cannot read -- fix: knockssh-rotator init prints one',
    'conf does not parse': '/etc/knockd.conf: line 14: syntax error: the line is not KEY = VALUE (not shown) -- fix: edit /etc/knockd.conf',
    'no rotator section': '/etc/knockd.conf has no *_ROTATOR section: nothing rotates -- fix: knockssh-rotator init prints one',
    'interface missing': "knockd listens on eth0, which this machine does not have -- fix: set 'Interface = ens5' (the default route's) in /etc/knockd.conf, then systemctl restart knockd.service",
    'interface down': "knockd's interface ens5 is down -- fix: ip link set ens5 up",
    'knockd -i wins': "knockd listens on eth1, which this machine does not have -- fix: set 'Interface = ens5' (the default route's) in /etc/knockd.conf, then systemctl restart knockd.service",
    'knockd not running': 'knockd is not running -- fix: systemctl enable --now knockd.service',
    'no drop': 'new connections to port 22 are not dropped over IPv4: the knock protects nothing there -- fix: knockssh-rotator init prints the firewall commands',
    'ipv6 open': 'new connections to port 22 are not dropped over IPv6: the knock protects nothing there -- fix: knockssh-rotator init prints the firewall commands',
    'no established': 'no ESTABLISHED,RELATED accept over IPv4: sessions die when the door closes -- fix: iptables -I INPUT 1 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT',
    'not idempotent': '/etc/knockd.conf [ssh_ROTATOR]: start_command is not idempotent: a second knock adds a second rule, and the stop_command removes only one -- fix: check first: iptables -C RULE || iptables -I RULE',
    'no %IP%': '/etc/knockd.conf [ssh_ROTATOR]: stop_command does not use %IP% -- fix: -s %IP%',
    'seq_timeout': '/etc/knockd.conf [ssh_ROTATOR]: seq_timeout = 600 does not fit a 21600 s period (want 1 to 60) -- fix: edit seq_timeout in /etc/knockd.conf',
    'cmd_timeout': '/etc/knockd.conf [ssh_ROTATOR]: cmd_timeout = 99999 does not fit a 21600 s period (want 1 to 21599) -- fix: edit cmd_timeout in /etc/knockd.conf',
    'env missing': '/etc/knockssh/rotator.env is missing -- fix: knockssh-rotator init',
    'env a directory': '/etc/knockssh/rotator.env cannot be read: is a directory, not a regular file -- fix: make /etc/knockssh/rotator.env a regular file readable by root (chmod 600)',
    'env unreadable': '/etc/knockssh/rotator.env cannot be read: Permission denied -- fix: make /etc/knockssh/rotator.env a regular file readable by root (chmod 600)',
    'env readable': '/etc/knockssh/rotator.env is readable by others (mode 644): it holds the secret -- fix: chmod 600 /etc/knockssh/rotator.env',
    'placeholder': "/etc/knockssh/rotator.env: KNOCKD_ROTATOR_SECRET: this is the example's placeholder, not a secret: make one with `openssl rand -hex 64` -- fix: edit /etc/knockssh/rotator.env",
    'no secret': '/etc/knockssh/rotator.env: KNOCKD_ROTATOR_SECRET: the shared secret is required -- fix: edit /etc/knockssh/rotator.env',
    'timer inactive': 'nothing runs the rotator: the sequence never rotates -- fix: systemctl enable --now knockssh-rotator.timer',
    'no follower': 'nothing runs the rotator: the sequence never rotates -- fix: run knockssh-rotator --follow under your init system',
    'clock': 'the system clock is not NTP-synchronised: clients knock by the clock -- fix: apt install systemd-timesyncd (or chrony); timedatectl set-ntp true',
    'knockd unsupervised': 'knockd.service is not restarted when knockd ends (Restart=no): a crash locks everyone out -- fix: install the drop-in knockssh-rotator init writes (/etc/systemd/system/knockd.service.d/knockssh.conf), then systemctl daemon-reload',
    'superscript period': "/etc/knockssh/rotator.env: KNOCKD_ROTATOR_PERIOD_MODULO='²' is not a whole number (at most 12 digits) -- fix: edit /etc/knockssh/rotator.env",
}  # fmt: skip


@pytest.mark.parametrize(("name", "changes", "expected"), FAULTS, ids=[f[0] for f in FAULTS])
def test_each_fault_gives_its_one_finding(name, changes, expected):
    found = [f.line() for f in doctor.findings(GOOD._replace(**changes))]
    assert len(found) == 1 and expected in found[0], found


def test_each_fault_says_exactly_what_and_how_to_fix_it():
    assert set(EXACT) == {f[0] for f in FAULTS}
    for name, changes, _ in FAULTS:
        assert [f.line() for f in doctor.findings(GOOD._replace(**changes))] == [EXACT[name]]


def lines_of(**changes):
    return [f.line() for f in doctor.findings(GOOD._replace(**changes))]


def test_knockd_listens_on_eth0_without_an_interface_line():
    conf = replace_in_conf("    Interface = ens5\n", "")
    assert lines_of(conf_text=conf) == [
        "knockd listens on eth0, which this machine does not have -- fix: set 'Interface = "
        "ens5' (the default route's) in /etc/knockd.conf, then systemctl restart knockd.service"
    ]
    assert lines_of(conf_text=conf, default_interface=None) == [
        "knockd listens on eth0, which this machine does not have -- fix: set Interface in "
        "/etc/knockd.conf to this machine's interface"
    ]
    assert lines_of(conf_text=conf, interfaces={"eth0": True}) == []  # eth0 there: fine
    gone = {"lo": True}  # the default route's interface is knockd's, and is gone
    assert lines_of(interfaces=gone)[0].endswith("to this machine's interface")


@pytest.mark.parametrize(
    "key, value, period, fits",
    [
        ("seq_timeout", 1, 21600, True),
        ("seq_timeout", 60, 21600, True),
        ("seq_timeout", 61, 21600, False),
        ("seq_timeout", 0, 21600, False),
        ("cmd_timeout", 21599, 21600, True),
        ("cmd_timeout", 21600, 21600, False),
        ("cmd_timeout", 59, 60, True),
        ("seq_timeout", 60, 60, False),  # not shorter than the period
    ],
)
def test_timeouts_fit_the_period_at_their_edges(key, value, period, fits):
    default = {"seq_timeout": "10", "cmd_timeout": "30"}[key]
    conf = replace_in_conf(f"{key:<13} = {default}", f"{key:<13} = {value}")
    env = {**GOOD.env_values, "KNOCKD_ROTATOR_PERIOD_MODULO": str(period)}
    found = [line for line in lines_of(conf_text=conf, env_values=env) if "timeout" in line]
    want = min(60 if key == "seq_timeout" else period, period - 1)
    assert found == ([] if fits else [
        f"/etc/knockd.conf [ssh_ROTATOR]: {key} = {value} does not fit a {period} s period "
        f"(want 1 to {want}) -- fix: edit {key} in /etc/knockd.conf"
    ])  # fmt: skip


def test_a_period_that_is_no_number_or_zero_is_the_default():
    conf = replace_in_conf("cmd_timeout   = 30", "cmd_timeout   = 21600")
    for period in ("0", "x", ""):
        env = {**GOOD.env_values, "KNOCKD_ROTATOR_PERIOD_MODULO": period}
        found = [f.problem for f in doctor.findings(GOOD._replace(conf_text=conf, env_values=env))]
        assert (
            "/etc/knockd.conf [ssh_ROTATOR]: cmd_timeout = 21600 does not fit a 21600 s period (want 1 to 21599)"
            in found
        )


def test_the_firewall_is_judged_for_the_port_the_door_opens():
    conf = CONF.replace("--dport 22", "--dport 2222")
    found = lines_of(conf_text=conf)
    assert found == [
        f"new connections to port 2222 are not dropped over {family}: the knock protects "
        "nothing there -- fix: knockssh-rotator init prints the firewall commands"
        for family in ("IPv4", "IPv6")
    ]
    nft = "start_command = /usr/sbin/nft add element inet knock allowed { %IP% } # tcp dport 2222"
    assert doctor.findings(
        GOOD._replace(conf_text=CONF + "[x_ROTATOR]\n sequence = 1\n " + nft + "\n")
    )


def test_iptables_guards():
    assert (
        lines_of(
            iptables={
                "iptables": "-P INPUT DROP\n-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT\n",
                "ip6tables": IPTABLES,
            }
        )
        == []
    )
    from_one = IPTABLES.replace("-A INPUT -p tcp", "-A INPUT -s 10.0.0.1 -p tcp")
    assert lines_of(iptables={"iptables": from_one, "ip6tables": IPTABLES})[0].startswith(
        "new connections to port 22 are not dropped over IPv4"
    )
    assert lines_of(iptables={"iptables": None, "ip6tables": None}) == []  # nothing to read


NFT_V4 = NFT.replace("table inet knock", "table ip knock")


@pytest.mark.parametrize(
    "ruleset, found",
    [
        (NFT, []),
        (NFT_V4, ["IPv6: not dropped"]),
        ("table ip6 other {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t}\n}\n" + NFT_V4, ["IPv6: no established"]),
        (NFT.replace("hook input", "hook output"), ["IPv4: not dropped", "IPv6: not dropped"]),
        (NFT.replace("\t\ttcp dport 22 drop\n", ""), ["IPv4: not dropped", "IPv6: not dropped"]),
        (NFT.replace("ct state established,related accept", "ct state established,related drop"), ["IPv4: no established", "IPv6: no established"]),
        (NFT.replace("ct state established,related accept", "ct state new accept"), ["IPv4: no established", "IPv6: no established"]),
        (NFT.replace("tcp dport 22 drop", "meta l4proto tcp tcp dport 22 reject"), []),
        ("table bridge b {\n\tchain input {\n\t\ttype filter hook input priority 0; policy drop;\n\t}\n}\n" + NFT, []),
    ],
)  # fmt: skip
def test_nft_guards(ruleset, found):
    lines = lines_of(iptables={"iptables": None, "ip6tables": None}, nft_ruleset=ruleset)
    short = [
        f"{line.split(' over ')[1][:4]}: {'not dropped' if 'not dropped' in line else 'no established'}"
        for line in lines
    ]
    assert short == found, lines


def test_an_ipv6_door_without_the_knocker_opens_for_everyone():
    (line,) = [x for x in CONF.splitlines() if "start_command_6" in x]
    conf = replace_in_conf(line, line.replace("-s %IP% ", ""))
    assert lines_of(conf_text=conf) == [
        "/etc/knockd.conf [ssh_ROTATOR]: start_command_6 does not use %IP%: it opens the door "
        "for everyone -- fix: admit only the knocker: -s %IP%"
    ]


def test_interfaces_of_reads_names_and_flags_only():
    text = "4: br-x: <NO-CARRIER,BROADCAST,UP> mtu 1500 link: a: b\n5: tun0: <POINTOPOINT> x>y\nnoise\n"
    assert doctor.interfaces_of(text) == {"br-x": True, "tun0": False}


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


# -- edges the mutation run found loose ---------------------------------------------


def test_ports_are_ascii_digits_only():
    """A start_command with Arabic-Indic digits names no port: the firewall is judged
    for 22 (re.ASCII), not for a port int() would read out of them."""
    odd = (
        CONF
        + "[x_ROTATOR]\n  sequence = 1,2\n  start_command = x --dport \u0662\u0662\u0662\u0662 %IP%\n"
    )
    assert not [line for line in lines_of(conf_text=odd) if "2222" in line]


def test_ipv6_is_judged_when_ipv4_cannot_be_read():
    assert lines_of(iptables={"iptables": None, "ip6tables": "-P INPUT ACCEPT\n"}) == [
        "new connections to port 22 are not dropped over IPv6: the knock protects nothing "
        "there -- fix: knockssh-rotator init prints the firewall commands"
    ]


def test_an_input_chain_after_another_chain_is_read():
    ruleset = NFT.replace(
        "\tchain input {",
        "\tchain out {\n\t\ttype filter hook output priority 0;\n\t}\n\tchain input {",
    )
    assert lines_of(iptables={"iptables": None, "ip6tables": None}, nft_ruleset=ruleset) == []


def test_the_ipv6_door_alone_is_judged_both_ways():
    conf = "[options]\n  Interface = ens5\n[ssh_ROTATOR]\n  sequence = 1,2\n  start_command_6 = x -s %IP% --dport 22\n  stop_command_6 = y\n"
    assert lines_of(conf_text=conf) == [
        "/etc/knockd.conf [ssh_ROTATOR]: stop_command_6 does not use %IP% -- fix: -s %IP%"
    ]


def test_a_timeout_that_is_no_number_does_not_hide_the_next():
    conf = replace_in_conf("seq_timeout   = 10", "seq_timeout   = x")
    conf = conf.replace("cmd_timeout   = 30", "cmd_timeout   = 0")
    assert [line for line in lines_of(conf_text=conf) if "timeout" in line] == [
        "/etc/knockd.conf [ssh_ROTATOR]: cmd_timeout = 0 does not fit a 21600 s period "
        "(want 1 to 21599) -- fix: edit cmd_timeout in /etc/knockd.conf"
    ]


def test_a_one_second_period_is_a_period():
    env = {**GOOD.env_values, "KNOCKD_ROTATOR_PERIOD_MODULO": "1"}
    found = [line for line in lines_of(env_values=env) if "timeout" in line]
    assert found and all("a 1 s period" in line for line in found)


@pytest.mark.parametrize(
    "line, expected",
    [
        ("1: lo: <UP,LOWER_UP> mtu 1", {"lo": True}),
        ("1: lo: <LOWER_UP,UP> mtu 1 x>y", {"lo": True}),
        ("1: lo: <XUP> mtu 1", {"lo": False}),
        ("1: lo: < UP> mtu 1", {"lo": False}),
        ("2: veth0@if2@x: <UP> mtu 1", {"veth0": True}),
    ],
)
def test_interfaces_of_edges(line, expected):
    assert doctor.interfaces_of(line + "\n") == expected


def test_the_env_file_edges_as_systemd_reads_them():
    text = "# A=1\n; B=2\nC=x=y\nD='abc\nE=ab\nF=''\nG=XabX\nH=\"q\"\n"
    assert doctor.parse_env_file(text) == {
        "C": "x=y",
        "D": "'abc",
        "E": "ab",
        "F": "",
        "G": "XabX",
        "H": "q",
    }


def test_an_nftables_door_closes_by_its_timeout_or_is_named():
    nft = server_setup.knockd_conf_text("ens5", PORT, "nftables")
    assert (
        lines_of(conf_text=nft, iptables={"iptables": None, "ip6tables": None}, nft_ruleset=NFT)
        == []
    )
    forever = nft.replace(" timeout 30s", "")
    assert lines_of(
        conf_text=forever, iptables={"iptables": None, "ip6tables": None}, nft_ruleset=NFT
    ) == [
        f"/etc/knockd.conf [ssh_ROTATOR]: {key} opens a door that nothing closes (no {stop}, "
        "no timeout) -- fix: make the door an nftables set element with a timeout "
        "(knockssh-rotator init prints one)"
        for key, stop in (("start_command", "stop_command"), ("start_command_6", "stop_command_6"))
    ]


@pytest.mark.parametrize(
    "pasted", [SECRET * 4, f"{SECRET * 4}=", f"KNOCKD_ROTATOR_SECRET={SECRET * 4}"]
)
def test_a_secret_pasted_into_knockd_conf_is_never_shown(tmp_path, pasted):
    """Its syntax error names the line only: the doctor's and the rotator's output go to
    terminals and journals."""
    done = run_doctor(tmp_path, {"conf": CONF_OK + pasted + "\n"}, [])
    assert done.returncode == 1 and b"line 6: syntax error" in done.stdout, done.stdout
    assert SECRET.encode() not in done.stdout + done.stderr
    rotate = subprocess.run(
        [*ROTATOR, "--config", str(tmp_path / "knockd.conf"), "--dry-run"],
        env={**os.environ, "PYTHONPATH": ROOT, "KNOCKD_ROTATOR_SECRET": "x" * 12 + "y"},
        capture_output=True, timeout=30,
    )  # fmt: skip
    assert rotate.returncode == 1 and b"line 6: syntax error" in rotate.stderr
    assert SECRET.encode() not in rotate.stdout + rotate.stderr


PROC_NET = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2
   2: 0100007F:9C40 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 3
   3: 00000000000000000000000000000000:13C4 00000000000000000000000000000000:0000 0A 0 0 0 0 0 4
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  5: 00000000:14E9 00000000:0000 07 00000000:00000000 00:00000000 00000000   104        0 5 2 0 0
  6: 00000000:0277 0A000001:0035 01 00000000:00000000 00:00000000 00000000   104        0 6 2 0 0
"""


def test_listening_ports_from_proc_net():
    # tcp 22, 8080, 5060 (IPv6); udp 5353; an established connection is no listener
    assert doctor.listening_ports(PROC_NET) == {22, 8080, 5060, 5353}
    assert doctor.listening_ports("garbage\n1: x y z\n") == set()


def test_services_in_the_knock_range_and_short_sequences_are_named():
    found = lines_of(listening=frozenset({22, 8080, 5353}))
    assert found == [
        "/etc/knockssh/rotator.env: services listen on ports of the knock range (5353, 8080): "
        "a client's own traffic to them breaks its knock -- fix: leave them out of "
        "KNOCKD_ROTATOR_PORTS in /etc/knockssh/rotator.env"
    ]
    many = lines_of(listening=frozenset(range(3000, 3007)))
    assert "(3000, 3001, 3002, 3003, 3004 ...)" in many[0]
    short = {**GOOD.env_values, "KNOCKD_ROTATOR_LENGTH": "7"}
    assert lines_of(env_values=short) == [
        "/etc/knockssh/rotator.env: sequences of 7 knocks: a port scan in ascending order "
        "completes one in about 1 period of 5040 -- fix: KNOCKD_ROTATOR_LENGTH=10 in "
        "/etc/knockssh/rotator.env"
    ]
    assert lines_of(env_values={**GOOD.env_values, "KNOCKD_ROTATOR_LENGTH": "8"}) == []


@pytest.mark.parametrize(
    "argv, config",
    [
        (["knockd"], "/etc/knockd.conf"),
        (["knockd", "-i", "eth0", "-c", "/a.conf"], "/a.conf"),
        (["knockd", "-c/b.conf", "-d"], "/b.conf"),
        (["knockd", "--config", "rel.conf"], "rel.conf"),
        (["knockd", "--config=/c.conf", "-c", "/d.conf"], "/d.conf"),  # the last one wins
        (["knockd", "--", "-c", "/e.conf"], "/etc/knockd.conf"),
    ],
)
def test_the_config_a_knockd_reads(argv, config):
    assert doctor.knockd_config(argv) == config


@pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="needs root (network namespaces); CI is root",
)
def test_the_doctor_judges_the_knockd_that_reads_the_checked_file(tmp_path):
    """Two real knockd in a namespace made here, on files A and B: checking B judges
    B's knockd, whatever the order of the processes."""
    import argparse

    from rotator.commands import check

    ns = f"ksd{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs = []
    try:
        for name in ("a", "b"):
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "ip",
                    "link",
                    "add",
                    f"d{name}",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    f"p{name}",
                ],
                check=True,
            )
            subprocess.run(
                ["ip", "netns", "exec", ns, "ip", "link", "set", f"d{name}", "up"], check=True
            )
            conf = tmp_path / f"{name}.conf"
            conf.write_text(server_setup.knockd_conf_text(f"d{name}", 22, "nftables"))
            procs.append(subprocess.Popen(
                ["ip", "netns", "exec", ns, "knockd", "-i", f"d{name}", "-c", str(conf)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))  # fmt: skip
        pids = {}
        for name, p in zip("ab", procs):
            assert proc_wait_for(lambda p=p: _knockd_child(p.pid), 10)
            pids[name] = _knockd_child(p.pid)
        for name in "ab":
            args = argparse.Namespace(
                pidfile=None, unit="knockd.service", config=str(tmp_path / f"{name}.conf")
            )
            assert check._knockd_pid(args, under_systemd=False) == pids[name]
        args = argparse.Namespace(
            pidfile=None, unit="knockd.service", config=str(tmp_path / "none.conf")
        )
        (tmp_path / "none.conf").write_text("")
        assert check._knockd_pid(args, under_systemd=False) is None
    finally:
        for p in procs:
            subprocess.run(["pkill", "-KILL", "-P", str(p.pid)], check=False)
            p.kill()
            p.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], check=False)


def _knockd_child(pid):
    """The knockd process under ``ip netns exec`` (it execs, so the same pid)."""
    from rotator import proc

    return pid if proc.process_name(pid) == "knockd" else None


def proc_wait_for(condition, timeout):
    from rotator.proc import wait_for

    return wait_for(condition, timeout)


@pytest.mark.parametrize(
    "argv, config",
    [
        (["knockd", "-c", "/a", "-c"], "/a"),  # a last -c without its file changes nothing
        (["knockd", "--config=/c.conf"], "/c.conf"),
        (["knockd", "--config=/x=y"], "/x=y"),
    ],
)
def test_the_config_a_knockd_reads_at_the_edges(argv, config):
    assert doctor.knockd_config(argv) == config


@pytest.mark.parametrize(
    "text, ports",
    [
        ("0: 00000000:0016 00000000:0000 0A\n", {22}),  # four fields are enough
        ("0: 00000000:0016 00000000:0000\n", set()),  # three are not
        ("0: 00000000:0X16 00000000:0000 0A x\n", set()),
        ("0: 00000000:ZZZZ 00000000:0000 0A x\n", set()),
        ("0: 00000000:00016 00000000:0000 0A x\n", set()),
    ],
)
def test_listening_ports_read_only_four_hex_digits(text, ports):
    assert doctor.listening_ports(text) == ports


@pytest.mark.parametrize("count, tail", [(5, "3004)"), (6, "3004 ...)")])
def test_busy_ports_are_cut_after_five(count, tail):
    found = lines_of(listening=frozenset(range(3000, 3000 + count)))
    assert f"(3000, 3001, 3002, 3003, {tail}:" in found[0]
