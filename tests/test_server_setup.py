"""knockssh-rotator init: what it writes and prints for a machine."""

import os
import re
import stat
import subprocess
import sys

import pytest
from helpers import ROOT, ROTATOR_CODE
from lab import wait_for

from rotator import knockdconf, server_setup

EXAMPLE = os.path.join(ROOT, "server", "knockd.conf.example")


def directives(text):
    return {s.name: [(d.key, d.value) for d in s.directives] for s in knockdconf.parse(text)}


def test_the_iptables_knockd_conf_is_the_shipped_example():
    with open(EXAMPLE) as f:
        example = f.read()
    assert directives(server_setup.knockd_conf_text("eth0", 22, "iptables")) == directives(example)


@pytest.mark.parametrize("firewall", server_setup.FIREWALLS)
def test_every_knockd_conf_parses_and_guards_the_port_it_is_given(firewall):
    text = server_setup.knockd_conf_text("ens5", 2222, firewall, "gate")
    sections = {s.name: s for s in knockdconf.parse(text)}
    door = sections["gate_ROTATOR"]
    commands = [d.value for d in door.directives if d.key.endswith(("COMMAND", "COMMAND_6"))]
    assert all("%IP%" in c for c in commands)
    assert sections["options"].find("INTERFACE")[0].value == "ens5"
    if firewall == "iptables":
        assert len(commands) == 4 and all("--dport 2222" in c for c in commands)
        assert " || " in door.find("START_COMMAND")[0].value  # idempotent
    else:  # the kernel closes the door: a set element that times out, no stop command
        assert commands == [
            f"/usr/sbin/nft add element inet knock {s} {{ %IP% timeout 30s }}"
            for s in ("allowed", "allowed6")
        ]
    commands = server_setup.firewall_commands(2222, firewall)
    assert any("2222" in c and "drop" in c.lower() for c in commands)


def test_facts_of_the_machine():
    route = (
        "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
        "ens5\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
        "ens5\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\n"
    )
    assert server_setup.default_route_interface(route) == "ens5"
    assert server_setup.default_route_interface(route.split("\n")[0]) is None
    assert server_setup.sshd_port("#Port 22\nPort 2222 # mine\n") == 2222
    assert server_setup.sshd_port("Port 0\n") == 22 and server_setup.sshd_port("") == 22


def init(*args):
    code = ROTATOR_CODE
    return subprocess.run(
        [sys.executable, "-c", code, "init", *args], capture_output=True, text=True, cwd=ROOT
    )


def test_init_writes_a_private_env_file_once_and_shows_the_secret_only_when_asked(tmp_path):
    env_file = tmp_path / "knockssh" / "rotator.env"
    common = ["--env-file", str(env_file), "--interface", "ens5", "--port", "22"]
    done = init(*common)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(env_file.parent.stat().st_mode) == 0o700
    secret = re.search(r"(?m)^KNOCKD_ROTATOR_SECRET=([0-9a-f]{64})$", env_file.read_text())[1]
    assert secret not in done.stdout
    assert "Interface = ens5" in done.stdout and "knockssh add " in done.stdout
    for name in server_setup.UNITS:  # the package's units, which server/ links to
        assert server_unit(name) in done.stdout
    before = env_file.read_bytes()
    again = init(*common, "--show-secret")
    assert again.returncode == 1 and "exists: left as it was" in again.stderr
    assert again.stdout == "" and env_file.read_bytes() == before
    env_file.unlink()
    shown = init(*common, "--show-secret")
    new = re.search(r"(?m)^KNOCKD_ROTATOR_SECRET=(\w+)$", env_file.read_text())[1]
    assert f"secret: {new}\n" in shown.stdout and new not in shown.stderr and new != secret


def test_the_env_file_init_writes_is_one_the_rotator_takes(tmp_path, monkeypatch, capsys):
    from rotator import cli

    text = server_setup.env_file_text("f" * 64)
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            monkeypatch.setenv(key, value)
    conf = tmp_path / "knockd.conf"
    conf.write_text(server_setup.knockd_conf_text("lo", 22, "iptables"))
    assert cli.main(["--config", str(conf), "--dry-run"]) == 0
    assert "ssh_ROTATOR: would change" in capsys.readouterr().out


@pytest.mark.parametrize("firewall", server_setup.FIREWALLS)
def test_the_setup_script_is_sh_and_carries_the_files_whole(firewall):
    units = {name: server_unit(name) for name in server_setup.UNITS}
    script = server_setup.setup_script(
        "ens5", 22, firewall, "ssh", "/etc/knockssh/rotator.env", "h", units
    )
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    conf = server_setup.knockd_conf_text("ens5", 22, firewall)
    assert f"cat > /etc/knockd.conf.new <<'EOF'\n{conf}EOF\n" in script
    for name, text in units.items():
        assert f"cat > /etc/systemd/system/{name} <<'EOF'\n{text}EOF\n" in script
    assert SECRET_FREE.search(script) is None


def server_unit(name):
    with open(os.path.join(ROOT, "server", name)) as f:  # the link in server/
        return f.read()


SECRET_FREE = re.compile(r"KNOCKD_ROTATOR_SECRET=")


@pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="a network namespace of its own needs root; CI is root",
)
@pytest.mark.parametrize("firewall", server_setup.FIREWALLS)
def test_what_init_ships_runs_in_a_real_firewall(firewall):
    """The rules, twice (a second init must not fail nor add rules), then a door's
    start and stop commands as knockd runs them: in a namespace made here."""
    ns = f"kss{os.getpid()}{firewall[:2]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:

        def sh(command):
            return subprocess.run(
                ["ip", "netns", "exec", ns, "sh", "-c", command],
                capture_output=True,
                text=True,
                check=False,
            )

        for _ in range(2):
            for command in server_setup.firewall_rules(2222, firewall):
                done = sh(command)
                assert done.returncode == 0, (command, done.stderr)
        nft = firewall == "nftables"
        listing = "nft list table inet knock" if nft else "iptables -S INPUT; ip6tables -S INPUT"
        rules = sh(listing).stdout
        assert rules.count("2222") == (3 if nft else 2), rules  # one drop per family
        text = server_setup.knockd_conf_text("lo", 2222, firewall, cmd_timeout=1)
        conf = {d.key: d.value for d in knockdconf.parse(text)[1].directives}
        for start, stop, ip in (
            ("START_COMMAND", "STOP_COMMAND", "192.0.2.7"),
            ("START_COMMAND_6", "STOP_COMMAND_6", "2001:db8::7"),
        ):
            for _ in range(2):  # idempotent: a second knock adds nothing
                assert sh(conf[start].replace("%IP%", ip)).returncode == 0
            assert sh(listing).stdout.count(ip) == 1
            if nft:  # no stop command: the kernel removes the element after cmd_timeout
                assert stop not in conf
                assert wait_for(lambda ip=ip: ip not in sh(listing).stdout, 5)
                continue
            assert sh(conf[stop].replace("%IP%", ip)).returncode == 0
            assert ip not in sh(listing).stdout
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_init_supervises_knockd_with_the_drop_in_the_readme_installs():
    """One text: what init writes is the file the README's setup copies."""
    with open(os.path.join(ROOT, "server", "knockd.service.d", "knockssh.conf")) as f:
        assert f.read() == server_setup.KNOCKD_DROPIN_TEXT
    assert "Restart=always" in server_setup.KNOCKD_DROPIN_TEXT
    units = {name: "[Unit]\n" for name in server_setup.UNITS}
    script = server_setup.setup_script("eth0", 22, "iptables", "ssh", "/e.env", "h", units)
    at = script.index(f"cat > {server_setup.KNOCKD_DROPIN} <<'EOF'")
    assert at < script.index("systemctl daemon-reload") < script.index("systemctl restart knockd")


def test_door_rules_are_found_by_their_mark_only():
    listing = (
        "-P INPUT ACCEPT\n"
        "-A INPUT -s 192.0.2.7/32 -p tcp -m tcp --dport 22 -m comment --comment knockssh-door -j ACCEPT\n"
        "-A INPUT -s 192.0.2.8/32 -p tcp -m tcp --dport 22 -j ACCEPT\n"
        '-A INPUT -m comment --comment "not knockssh-door" -j ACCEPT\n'
        "-A INPUT -m comment --comment knockssh-door-x -j ACCEPT\n"
        '-A INPUT -m comment --comment "knockssh-door\n'
    )
    assert server_setup.door_rules(listing) == [
        ["INPUT", "-s", "192.0.2.7/32", "-p", "tcp", "-m", "tcp", "--dport", "22", "-m",
         "comment", "--comment", "knockssh-door", "-j", "ACCEPT"]
    ]  # fmt: skip


@pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="needs root (network namespaces); CI is root",
)
def test_close_doors_removes_the_doors_and_nothing_else(tmp_path):
    """In a namespace made here: init's rules, two doors opened as knockd opens them,
    a rule of the admin's; close-doors leaves the rules and the admin's."""
    ns = f"kscd{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:

        def sh(command):
            return subprocess.run(["ip", "netns", "exec", ns, "sh", "-c", command],
                                  capture_output=True, text=True, check=False)  # fmt: skip

        for command in server_setup.firewall_rules(22, "iptables"):
            assert sh(command).returncode == 0
        conf = {
            d.key: d.value
            for d in knockdconf.parse(server_setup.knockd_conf_text("lo", 22, "iptables"))[
                1
            ].directives
        }
        assert sh(conf["START_COMMAND"].replace("%IP%", "192.0.2.7")).returncode == 0
        assert sh(conf["START_COMMAND_6"].replace("%IP%", "2001:db8::7")).returncode == 0
        assert sh("iptables -I INPUT -s 192.0.2.9 -p tcp --dport 22 -j ACCEPT").returncode == 0
        before = sh("iptables -S INPUT; ip6tables -S INPUT").stdout
        done = sh(f"PYTHONPATH={ROOT} {sys.executable} -c '{ROTATOR_CODE}' close-doors")
        assert done.returncode == 0, done.stderr
        assert done.stdout.count("closed: ") == 2 and "192.0.2.7/32" in done.stdout
        after = sh("iptables -S INPUT; ip6tables -S INPUT").stdout
        assert after.splitlines() == [x for x in before.splitlines() if "knockssh-door" not in x]
        assert "192.0.2.9/32" in after and "--dport 22 -j DROP" in after
        again = sh(f"PYTHONPATH={ROOT} {sys.executable} -c '{ROTATOR_CODE}' close-doors")
        assert again.returncode == 0 and again.stdout == ""
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def test_interface_addresses_and_interface_of():
    text = (
        "2: eth0    inet 192.0.2.1/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever\n"
        "2: eth0    inet6 2001:db8::1/64 scope global \\       valid_lft forever\n"
        "2: eth0    link/ether 00:11:22:33:44:55\n"
    )
    assert server_setup.interface_addresses(text) == {"192.0.2.1", "2001:db8::1"}
    assert knockdconf.interface_of(knockdconf.parse("[options]\n  Interface = ens5\n")) == "ens5"
    assert knockdconf.interface_of(knockdconf.parse("[a]\n  sequence = 1\n")) == "eth0"


@pytest.mark.parametrize(
    ("argv", "interface"),
    [
        (["-d", "-c", "/etc/knockd.conf", "-i", "ens5"], "ens5"),
        (["-iens6"], "ens6"),
        (["-di", "ens7", "-c", "f"], "ens7"),  # a cluster: -d, then -i with the next word
        (["--interface", "ens8"], "ens8"),
        (["--interface=ens9"], "ens9"),
        (["-i", "a", "--interface=b"], "b"),  # the last one wins, as with getopt
        (["-c", "-ifile"], None),  # -c's value, not an -i
        (["--config", "-i"], None),
        (["-p", "/run/-ix.pid"], None),
        (["--", "-i", "x"], None),  # operands
        (["-i"], None),  # no value: knockd would refuse to start
        (["-d", "-v"], None),
        ([], None),
    ],
)
def test_the_interface_on_knockd_command_line(argv, interface):
    assert knockdconf.interface_on_command_line(argv) == interface


def test_an_address_change_in_one_line():
    before, now = frozenset({"192.0.2.1", "2001:db8::1"}), frozenset({"192.0.2.1", "192.0.2.9"})
    assert server_setup.address_change("eth0", before, now) == (
        "eth0: addresses changed (+192.0.2.9, -2001:db8::1)"
    )
    assert server_setup.address_change("eth0", frozenset(), before) == (
        "eth0: addresses changed (+192.0.2.1, 2001:db8::1, -none)"
    )


@pytest.mark.skipif(
    os.geteuid() != 0 and os.environ.get("CI") != "true",
    reason="needs root (network namespaces); CI is root",
)
def test_watch_sees_an_address_come_and_go(tmp_path):
    """knockssh-rotator watch in a namespace made here, on a veth: an address added is
    announced and answered by a restart of knockd's unit (here without systemd: the
    restart fails and says so; the watcher goes on and ends on SIGTERM)."""
    ns = f"ksw{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    watcher = None
    try:

        def ip(*args):
            subprocess.run(["ip", "netns", "exec", ns, "ip", *args], check=True)

        ip("link", "add", "w0", "type", "veth", "peer", "name", "w1")
        ip("link", "set", "w0", "up")
        conf = tmp_path / "knockd.conf"
        conf.write_text("[options]\n  Interface = w0\n[ssh_ROTATOR]\n  sequence = 1,2,3\n")
        watcher = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", ROTATOR_CODE, "watch", "--config", str(conf)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": ROOT, "PATH": f"{tmp_path}:/usr/sbin:/usr/bin:/sbin:/bin"},
        )  # fmt: skip
        (tmp_path / "systemctl").write_text('#!/bin/sh\necho "no systemd here" >&2\nexit 1\n')
        (tmp_path / "systemctl").chmod(0o755)
        first = watcher.stdout.readline()
        assert first.startswith("watching the addresses of w0: "), first
        ip("addr", "add", "198.18.7.7/24", "dev", "w0")
        line = watcher.stdout.readline()
        assert line == "w0: addresses changed (+198.18.7.7, -none): restarting knockd.service\n"
        assert "systemctl restart knockd.service: no systemd here" in watcher.stderr.readline()
    finally:
        if watcher is not None:
            watcher.terminate()
            watcher.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert watcher.returncode == 0


def test_a_look_that_failed_is_no_baseline_for_a_change():
    """``ip`` failing (no such interface, a timeout) is not "no addresses": from
    there, the first look that works would read as a change and restart knockd.
    It becomes the baseline instead; only a later difference is a change."""
    from rotator.netlink import AddressWatch

    missing = AddressWatch("ks-no-such-if0")
    assert missing.known is None and missing.change(False) is None
    assert missing.shown() == "not known yet (ip could not tell)"
    watch = AddressWatch("lo")
    seen = watch.known
    assert seen is not None and "127.0.0.1" in seen
    watch.known = None  # as if the first look had failed
    assert watch.change(False) is None and watch.known == seen
    watch.known = seen | {"198.18.99.99"}
    assert watch.change(False) == "lo: addresses changed (+none, -198.18.99.99)"
