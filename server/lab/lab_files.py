"""The lab's configuration files: knockd.conf (rendered by ``rotator.server_setup``),
sshd's, the client's ssh_config and mapping file, and the link profiles."""

from __future__ import annotations

import os
import sys

from lab_base import OPEN_PORT, PERIOD, SERVER_IP, SERVER_IP6, SERVICE, SSH_PORT

from rotator import server_setup

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lab import Lab


# -- configuration files ---------------------------------------------------------


def knockd_conf(lab: Lab) -> str:
    """What init writes (its door commands, its firewall's), with the lab's log and
    pidfile (the tests read both) and its short timeouts."""
    return server_setup.knockd_conf_text(
        lab.server_if,
        SSH_PORT,
        lab.firewall().name,
        SERVICE,
        log_file=lab.knockd_log,
        pid_file=lab.knockd_pidfile,
        seq_timeout=5,
        cmd_timeout=lab.cmd_timeout,
    )


def sshd_config(lab: Lab) -> str:
    return f"""\
ListenAddress {SERVER_IP}:{SSH_PORT}
ListenAddress [{SERVER_IP6}]:{SSH_PORT}
ListenAddress {SERVER_IP}:{OPEN_PORT}
ListenAddress [{SERVER_IP6}]:{OPEN_PORT}
HostKey {lab.path("host_key")}
PidFile {lab.path("sshd.pid")}
AuthorizedKeysFile {lab.path("authorized_keys")}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
LoginGraceTime 20
MaxStartups 200
Subsystem sftp internal-sftp
"""


def ssh_config(lab: Lab) -> str:
    return f"""\
Host *
    User root
    IdentityFile {lab.path("client_key")}
    IdentitiesOnly yes
    StrictHostKeyChecking no
    UserKnownHostsFile /dev/null
    LogLevel ERROR
    BatchMode yes
    ConnectTimeout 15
Host lab
    HostName knocked.lab
    ProxyCommand knockssh %h %p
Host lab6
    HostName knocked6.lab
    ProxyCommand knockssh %h %p
Host dual
    HostName dual.lab
    ProxyCommand knockssh %h %p
Host lab-fdpass
    HostName knocked.lab
    ProxyCommand knockssh --fdpass %h %p
    ProxyUseFdpass yes
Host plain
    HostName knocked.lab
Host open
    HostName open.lab
    Port {OPEN_PORT}
    ProxyCommand knockssh %h %p
Host inner
    HostName {SERVER_IP}
    Port {OPEN_PORT}
    ProxyJump lab
"""


def hosts_toml(secret_path: str, link: str) -> str:
    # on the veth, failure tests end sooner; an impaired link gets the client's default
    timeout = "connect_timeout = 6\n" if link == "lan" else ""
    return f"""\
[defaults]
period = {PERIOD}
{timeout}
[[host]]
match = ["{SERVER_IP}", "{SERVER_IP6}", "knocked.lab", "knocked6.lab", "dual.lab", "!open.lab"]
service = "{SERVICE}"
secret_file = "{secret_path}"
"""


# dual.lab: IPv6 first, as a resolver orders a dual-stack name with global addresses
ETC_HOSTS = f"""\
127.0.0.1 localhost
{SERVER_IP} knocked.lab open.lab
{SERVER_IP6} knocked6.lab open6.lab
{SERVER_IP6} dual.lab
{SERVER_IP} dual.lab
"""


# Link profiles, each way: lan is the plain veth; the others go through linkbridge.py
LINKS: dict[str, str | None] = {
    "lan": None,
    "wan": "delay=25ms,jitter=5ms,order=keep",
    "mobile": "delay=40ms,jitter=20ms,loss=2%",  # per-packet jitter: packets overtake
    "lossy": "delay=10ms,loss=10%",
}


def link_spec(link: str) -> str | None:
    """The linkbridge spec of a profile name or of a spec given as is (None: veth)."""
    if link in LINKS:
        return LINKS[link]
    if "=" not in link:
        raise ValueError(f"unknown link profile {link!r} (one of {', '.join(LINKS)}, or k=v,...)")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from linkbridge import parse_spec

    parse_spec(link)  # refuse a bad spec before anything is made
    return link


def how_to_use(lab: Lab) -> str:
    """What ``up`` tells a person: the commands to use the lab from a shell."""
    client = f"ip netns exec {lab.client_ns} env KNOCKSSH_CONFIG={lab.hosts_toml}"
    return (
        f"the lab {lab.name} is up. The client is network namespace {lab.client_ns};"
        f" from your shell (as root, with knockssh on PATH):\n"
        f"  {client} ssh -F {lab.ssh_config} lab hostname\n"
        f"  {client} knockssh check lab -F {lab.ssh_config}\n"
        f"  ip netns exec {lab.client_ns} bash     (a shell on the client)\n"
        f"Each 'up' makes a new secret and new ssh keys: use the files of {lab.dir}.\n"
        f"When done: server/lab/lab.sh down --name {lab.name}"
    )
