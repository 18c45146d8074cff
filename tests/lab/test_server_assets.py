"""The firewall and knockd files shipped in server/, applied for real in a network
namespace of the test's own: both address families are covered."""

import os
import shutil
import subprocess

import pytest
from helpers import ROOT
from lab import new_name, read, run, wait_for

pytestmark = pytest.mark.lab

SERVER = os.path.join(ROOT, "server")


@pytest.fixture
def netns():
    from conftest import _require_lab

    _require_lab()
    name = new_name() + "-a"
    run(["ip", "netns", "add", name])
    run(["ip", "link", "set", "lo", "up"], ns=name)
    try:
        yield name
    finally:
        for pid in run(["ip", "netns", "pids", name], check=False).stdout.split():
            subprocess.run(["kill", "-9", pid], check=False)
        run(["ip", "netns", "del", name], check=False)


def test_iptables_script_drops_new_ssh_over_both_families_and_is_idempotent(netns):
    for _ in range(2):
        run(["sh", os.path.join(SERVER, "firewall.iptables.sh")], ns=netns)
    for tool in ("iptables", "ip6tables"):
        rules = run([tool, "-S", "INPUT"], ns=netns).stdout.splitlines()
        assert rules.count("-A INPUT -p tcp -m tcp --dport 22 -j DROP") == 1, (tool, rules)
        established = [r for r in rules if "ESTABLISHED" in r and r.endswith("ACCEPT")]
        assert len(established) == 1 and rules.index(established[0]) == 1  # before the DROP


def test_nft_ruleset_takes_both_families(netns):
    run(["nft", "-f", os.path.join(SERVER, "firewall.nft")], ns=netns)
    for nft_set, address in (("allowed", "198.18.0.2"), ("allowed6", "2001:2::2")):
        run(["nft", "add", "element", "inet", "knock", nft_set, "{", address, "}"], ns=netns)
        assert address in run(["nft", "list", "set", "inet", "knock", nft_set], ns=netns).stdout
    ruleset = run(["nft", "list", "table", "inet", "knock"], ns=netns).stdout
    assert "ip6 saddr @allowed6 tcp dport 22 accept" in ruleset


def test_knockd_example_has_ipv6_commands_knockd_accepts(netns, tmp_path):
    text = read(os.path.join(SERVER, "knockd.conf.example"))
    assert "start_command_6" in text and "stop_command_6" in text and "ip6tables" in text
    conf = tmp_path / "knockd.conf"
    log = tmp_path / "knockd.log"
    conf.write_text(
        text.replace("UseSyslog", f"LogFile = {log}").replace("Interface = eth0", "Interface = lo")
    )
    knockd = subprocess.Popen(
        ["ip", "netns", "exec", netns, shutil.which("knockd") or "knockd", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_for(lambda: "listening on lo" in read(str(log)), 10), knockd.stderr
        assert knockd.poll() is None
    finally:
        knockd.kill()
        knockd.wait(10)
