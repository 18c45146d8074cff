"""server/ansible/ against three booted Debian 12 guests at once, with ansible-core as
admins run it: a first run over plain ssh guards all three; then plain ssh is refused
and knocked ssh gets in; a second run through knockssh changes nothing; a client the
playbook adds gets in with its fetched enrolment line, and once the playbook marks it
absent it no longer does, while the fleet's secret still works.

Each guest is a lab of its own (its own server and client namespaces, so all three
are 198.18.0.1); the control node reaches each through its lab's client namespace
(``ip netns exec`` in the ProxyCommand: the lab's network, not part of the roles), by
a name of its own (fleetN.lab) that the namespace's hosts file gives."""

import glob
import json
import os
import re
import subprocess
import threading
import time

import pytest
from helpers import ROOT
from lab import Lab, new_name, unavailable_reason
from lab_hosts import build_debs
from systemd_host import rootfs

pytestmark = pytest.mark.lab

ANSIBLE = os.path.join(ROOT, "server", "ansible")
GUESTS = 3
FLEET_SECRET = "fleet-secret-for-the-lab-only-0123"  # asserted never shown
OUTPUTS: list[bytes] = []  # every output of the module, searched for the secret


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"end-to-end tests cannot run under CI=true: {reason}")
        pytest.skip(reason)
    rootfs()  # built once, before three guests want it
    labs = [Lab(new_name()) for _ in range(GUESTS)]
    errors: list[BaseException] = []

    def up(lab):
        try:
            lab.up(host="systemd", setup="bare")
            if lab is labs[-1]:  # the last one gets the Debian package, the others the wheel
                build_debs(lab.path("src"))
        except BaseException as exc:  # said below, once all are up or failed
            errors.append(exc)

    started = time.monotonic()
    threads = [threading.Thread(target=up, args=(lab,)) for lab in labs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors, errors
        print(f"three guests up in {time.monotonic() - started:.0f} s")  # -s
        for i, lab in enumerate(labs, 1):
            with open(f"/etc/netns/{lab.client_ns}/hosts", "a") as f:
                f.write(f"198.18.0.1 fleet{i}.lab\n")
        yield Fleet(labs, tmp_path_factory.mktemp("fleet"))
        for out in OUTPUTS:
            assert FLEET_SECRET.encode() not in out, "the fleet's secret leaked into an output"
    finally:
        downs = [threading.Thread(target=lab.down) for lab in labs]  # each powers off: at once
        for t in downs:
            t.start()
        for t in downs:
            t.join()


class Fleet:
    def __init__(self, labs, tmp):
        self.labs, self.tmp = labs, tmp
        self.wheel = glob.glob(os.path.join(labs[0].path("src"), "dist", "*.whl"))[0]
        self.deb = glob.glob(os.path.join(labs[-1].path("src"), "knockssh-server_*.deb"))[0]
        self.client_dir = tmp / "client"
        self.runs = 0

    def name(self, i):
        return f"fleet{i + 1}.lab"

    def inventory(self, proxy):
        hosts = {}
        for i, lab in enumerate(self.labs):
            hosts[f"fleet{i + 1}"] = {
                "ansible_host": self.name(i),
                "ansible_user": "root",
                "ansible_ssh_private_key_file": lab.path("client_key"),
                "knockssh_package": self.deb if lab is self.labs[-1] else self.wheel,
                "ansible_ssh_common_args": (
                    f"-o ProxyCommand='ip netns exec {lab.client_ns} {proxy} %h %p' "
                    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
                ),
            }
        path = self.tmp / "inventory.json"
        path.write_text(json.dumps({"knockssh_servers": {"hosts": hosts}}))
        return path

    def play(self, proxy, clients):
        """One run of site.yml, on a connection of its own (no ControlPersist master
        of an earlier run is reused); its PLAY RECAP by host."""
        self.runs += 1
        values = {
            "knockssh_secret": FLEET_SECRET,
            "knockssh_clients": clients,
            "knockssh_enroll_dir": str(self.tmp / "enrolment"),
            "knockssh_check_ignore": ["not NTP-synchronised"],  # the lab has no NTP
            "knockssh_client_dir": str(self.client_dir),
            "knockssh_client_ssh_config": str(self.tmp / "ssh_config"),
        }
        extra = self.tmp / "vars.json"
        extra.write_text(json.dumps(values))
        extra.chmod(0o600)
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": os.path.join(ANSIBLE, "ansible.cfg"),
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.tmp / f"cp{self.runs}"),
            "ANSIBLE_NOCOLOR": "1",
            "KNOCKSSH_CONFIG": str(self.client_dir / "hosts.toml"),
        }
        argv = ["ansible-playbook", "-i", str(self.inventory(proxy)), "-e", f"@{extra}"]
        argv += ["--forks", str(GUESTS), "site.yml"]
        started = time.monotonic()
        done = subprocess.run(argv, cwd=ANSIBLE, env=env, capture_output=True, timeout=600)
        OUTPUTS.extend([done.stdout, done.stderr])
        print(f"run {self.runs} ({proxy}): {time.monotonic() - started:.0f} s")  # -s
        out = done.stdout.decode()
        assert done.returncode == 0, out[-4000:] + done.stderr.decode()[-2000:]
        recap = {}
        for host, counts in re.findall(r"^(\S+)\s+:\s+(ok=.*)$", out, re.M):
            recap[host] = dict(pair.split("=") for pair in counts.split())
        return recap

    def ssh(self, i, proxy, env=None, timeout=20):
        lab = self.labs[i]
        argv = ["ssh", "-i", lab.path("client_key"), "-o", "BatchMode=yes"]
        argv += ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
        argv += ["-o", f"ConnectTimeout={timeout}", "-o", f"ProxyCommand={proxy} %h %p"]
        argv += [f"root@{self.name(i)}", "echo in"]
        environment = {**os.environ, "KNOCKSSH_CONFIG": str(self.client_dir / "hosts.toml")}
        done = lab.in_client(argv, capture_output=True, env={**environment, **(env or {})})
        OUTPUTS.extend([done.stdout, done.stderr])
        return done

    def close_doors(self):
        for lab in self.labs:
            lab.guest().run(["nft", "flush", "set", "inet", "knock", "allowed"])


def test_the_playbook_guards_three_servers_and_changes_nothing_the_second_time(fleet):
    """fleet1 and fleet2 get the wheel, fleet3 the Debian package."""
    first = fleet.play("nc", {"carol": "present"})
    assert set(first) >= {"fleet1", "fleet2", "fleet3", "localhost"}
    assert all(first[f"fleet{i}"]["failed"] == "0" for i in (1, 2, 3))
    fleet.close_doors()
    for i in range(GUESTS):
        plain = fleet.ssh(i, "nc -w 5", timeout=5)
        assert plain.returncode != 0, f"fleet{i + 1}: plain ssh got in"
        knocked = fleet.ssh(i, "knockssh")
        assert knocked.returncode == 0 and knocked.stdout == b"in\n", knocked.stderr
    packaged = fleet.labs[-1].guest().run(["dpkg-query", "-W", "knockssh-server"], check=False)
    assert packaged.returncode == 0, packaged.stderr
    second = fleet.play("knockssh", {"carol": "present"})
    assert {h: c["changed"] for h, c in second.items()} == dict.fromkeys(second, "0"), second
    assert (fleet.tmp / "ssh_config").read_text().count("ProxyCommand knockssh %h %p") == 1


def test_a_client_the_playbook_adds_gets_in_and_once_absent_does_not(fleet):
    line = fleet.tmp / "enrolment" / "fleet1-carol.line"
    assert oct(line.stat().st_mode & 0o777) == "0o600"
    assert line.read_text().startswith("knockssh://fleet1.lab:22/carol?v=1&")
    carol = fleet.tmp / "carol"
    carol.mkdir(mode=0o700)
    env = {"XDG_CONFIG_HOME": str(carol), "KNOCKSSH_CONFIG": str(carol / "knockssh/hosts.toml")}
    env_all = {**os.environ, **env}
    enrolled = fleet.labs[0].in_client(
        ["knockssh", "enroll", "--file", str(line)], capture_output=True, env=env_all
    )
    assert enrolled.returncode == 0, enrolled.stderr
    fleet.close_doors()
    done = fleet.ssh(0, "knockssh", env)
    assert done.returncode == 0 and done.stdout == b"in\n", done.stderr
    fleet.play("knockssh", {"carol": "absent"})
    fleet.close_doors()
    refused = fleet.ssh(0, "knockssh", env, timeout=10)
    assert refused.returncode != 0, "carol got in after the playbook revoked her"
    fleet.close_doors()
    shared = fleet.ssh(0, "knockssh")
    assert shared.returncode == 0 and shared.stdout == b"in\n", shared.stderr
