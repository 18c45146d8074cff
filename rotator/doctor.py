"""``knockssh-rotator check``: what is wrong with a knockd server, decided purely from
facts gathered elsewhere (files' texts, command outputs, modes). Each finding is one
line: what is wrong, and what to run to fix it."""

from __future__ import annotations

import math
import re
from typing import NamedTuple

from . import knockdconf
from .knockdconf import ConfError
from .scheme import ENV_NAMES, SchemeError, settings_from_env, validate, whole_number


class Facts(NamedTuple):
    """What ``check`` saw. None where it could not be read (then nothing is said)."""

    conf_path: str
    conf_text: str | None  # None: unreadable (conf_error says why)
    conf_error: str | None
    interfaces: dict[str, bool] | None  # name -> up; None: no way to list them (no ip)
    default_interface: str | None
    knockd_interface: str | None  # from knockd's own command line (-i), if running
    knockd_running: bool
    iptables: dict[str, str | None]  # "iptables"/"ip6tables" -> `-S INPUT` output
    nft_ruleset: str | None
    env_path: str
    env_values: dict[str, str] | None  # None: the env file could not be read
    env_error: str | None  # why not: "missing", or "cannot be read: ..."
    env_mode: int | None
    systemd: bool
    rotator_active: bool | None  # the timer (under systemd) or a --follow process
    knockd_restart: str | None  # knockd.service's Restart= (None: not under systemd)
    ntp_synchronized: bool | None
    listening: frozenset[int] = frozenset()  # ports services listen on (TCP and UDP)


class Finding(NamedTuple):
    problem: str
    fix: str

    def line(self) -> str:
        return f"{self.problem} -- fix: {self.fix}"


def findings(facts: Facts) -> list[Finding]:
    found: list[Finding] = []
    sections = _sections(facts, found)
    if facts.interfaces is not None and (
        sections or facts.knockd_interface
    ):  # else which interface knockd takes is unknown
        _interface(facts, sections, found)
    if not facts.knockd_running:
        found.append(Finding("knockd is not running", "systemctl enable --now knockd.service"))
    if facts.knockd_restart is not None and facts.knockd_restart != "always":
        found.append(
            Finding(
                "knockd.service is not restarted when knockd ends "
                f"(Restart={facts.knockd_restart}): a crash locks everyone out",
                "install the drop-in knockssh-rotator init writes "
                "(/etc/systemd/system/knockd.service.d/knockssh.conf), then systemctl "
                "daemon-reload",
            )
        )
    ports = _protected_ports(sections) if sections else [22]
    for port in ports:
        _firewall(facts, port, found)
    for section in sections:
        if section.is_rotator:
            _door(facts, section, found)
    _secret(facts, found)
    if facts.rotator_active is False:
        fix = (
            "systemctl enable --now knockssh-rotator.timer"
            if facts.systemd
            else "run knockssh-rotator --follow under your init system"
        )
        found.append(Finding("nothing runs the rotator: the sequence never rotates", fix))
    if facts.ntp_synchronized is False:
        found.append(
            Finding(
                "the system clock is not NTP-synchronised: clients knock by the clock",
                "apt install systemd-timesyncd (or chrony); timedatectl set-ntp true",
            )
        )
    return found


def _sections(facts: Facts, found: list[Finding]) -> list[knockdconf.Section]:
    if facts.conf_text is None:
        found.append(
            Finding(f"{facts.conf_path}: {facts.conf_error}", "knockssh-rotator init prints one")
        )
        return []
    try:
        sections = knockdconf.parse(facts.conf_text)
        knockdconf.rotator_sections(sections)
    except ConfError as exc:
        found.append(Finding(f"{facts.conf_path}: {exc}", f"edit {facts.conf_path}"))
        return []
    if not any(s.is_rotator for s in sections):
        found.append(
            Finding(
                f"{facts.conf_path} has no *_ROTATOR section: nothing rotates",
                "knockssh-rotator init prints one",
            )
        )
    return sections


def _interface(facts: Facts, sections: list[knockdconf.Section], found: list[Finding]) -> None:
    assert facts.interfaces is not None
    name = facts.knockd_interface or knockdconf.interface_of(sections)
    suggestion = (
        f"set 'Interface = {facts.default_interface}' (the default route's) in "
        f"{facts.conf_path}, then systemctl restart knockd.service"
        if facts.default_interface and facts.default_interface != name
        else f"set Interface in {facts.conf_path} to this machine's interface"
    )
    if name not in facts.interfaces:
        found.append(
            Finding(f"knockd listens on {name}, which this machine does not have", suggestion)
        )
    elif not facts.interfaces[name]:
        found.append(Finding(f"knockd's interface {name} is down", f"ip link set {name} up"))


def _protected_ports(sections: list[knockdconf.Section]) -> list[int]:
    ports = set()
    for section in sections:
        for directive in section.directives:
            if directive.key.startswith("START_COMMAND"):
                for text in re.findall(r"(?:--dport|dport)\s+(\d{1,5})\b", directive.value, re.A):
                    ports.add(int(text))
    return sorted(ports) or [22]


def _firewall(facts: Facts, port: int, found: list[Finding]) -> None:
    for family, tool, nft_families in (
        ("IPv4", "iptables", ("ip", "inet")),
        ("IPv6", "ip6tables", ("ip6", "inet")),
    ):
        rules = facts.iptables.get(tool)
        drops, keeps = _iptables_guards(rules or "", port)
        nft_drops, nft_keeps = _nft_guards(facts.nft_ruleset or "", port, nft_families)
        if rules is None and facts.nft_ruleset is None:
            continue  # nothing to read the firewall with
        if not (drops or nft_drops):
            found.append(
                Finding(
                    f"new connections to port {port} are not dropped over {family}: "
                    "the knock protects nothing there",
                    "knockssh-rotator init prints the firewall commands",
                )
            )
        elif not (keeps or nft_keeps):
            found.append(
                Finding(
                    f"no ESTABLISHED,RELATED accept over {family}: sessions die when the "
                    "door closes",
                    f"{tool} -I INPUT 1 -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
                )
            )


def _iptables_guards(rules: str, port: int) -> tuple[bool, bool]:
    lines = rules.splitlines()
    drops = "-P INPUT DROP" in lines or any(
        re.search(rf"--dport {port}\b.*-j (DROP|REJECT)", line) and "-s " not in line
        for line in lines
    )
    keeps = any(
        "ESTABLISHED" in line and line.endswith("-j ACCEPT") and line.startswith("-A INPUT")
        for line in lines
    )
    return drops, keeps


def _nft_guards(ruleset: str, port: int, families: tuple[str, ...]) -> tuple[bool, bool]:
    drops = keeps = False
    for table in re.split(r"(?m)^table ", ruleset)[1:]:
        if table.split(" ", 1)[0] not in families:
            continue
        for chain in re.split(r"(?m)^\s*chain ", table)[1:]:
            if "hook input" not in chain:
                continue
            body = chain.splitlines()
            if "policy drop" in chain or any(
                re.search(rf"^\s*(meta l4proto tcp )?tcp dport {port}\b.*\b(drop|reject)", line)
                for line in body
            ):
                drops = True
            if any(
                "ct state" in line and "established" in line and "accept" in line for line in body
            ):
                keeps = True
    return drops, keeps


def _door(facts: Facts, section: knockdconf.Section, found: list[Finding]) -> None:
    where = f"{facts.conf_path} [{section.name}]"
    for start_key, stop_key in (
        ("START_COMMAND", "STOP_COMMAND"),
        ("START_COMMAND_6", "STOP_COMMAND_6"),
    ):
        starts = section.find(start_key)
        if not starts:
            continue
        start = starts[-1].value
        if "%IP%" not in start:
            found.append(
                Finding(
                    f"{where}: {start_key.lower()} does not use %IP%: it opens the door for "
                    "everyone",
                    "admit only the knocker: -s %IP%",
                )
            )
        if re.search(r"\b(iptables|ip6tables)\b.*\s-[IA]\s", start) and " -C " not in start:
            found.append(
                Finding(
                    f"{where}: {start_key.lower()} is not idempotent: a second knock adds a "
                    "second rule, and the stop_command removes only one",
                    "check first: iptables -C RULE || iptables -I RULE",
                )
            )
        stops = section.find(stop_key)
        if stops and "%IP%" not in stops[-1].value:
            found.append(Finding(f"{where}: {stop_key.lower()} does not use %IP%", "-s %IP%"))
        if not stops and not re.search(r"\btimeout\s+\d", start):
            found.append(
                Finding(
                    f"{where}: {start_key.lower()} opens a door that nothing closes (no "
                    f"{stop_key.lower()}, no timeout)",
                    "make the door an nftables set element with a timeout "
                    "(knockssh-rotator init prints one)",
                )
            )
    _timeouts(facts, section, where, found)


def _timeouts(facts: Facts, section: knockdconf.Section, where: str, found: list[Finding]) -> None:
    period = _period(facts)
    for key, limit in (("SEQ_TIMEOUT", 60), ("CMD_TIMEOUT", period)):
        values = section.find(key)
        value = whole_number(values[-1].value) if values else None
        if value is None:
            continue
        if value <= 0 or value > limit or value >= period:
            found.append(
                Finding(
                    f"{where}: {key.lower()} = {value} does not fit a {period} s period "
                    f"(want 1 to {min(limit, period - 1)})",
                    f"edit {key.lower()} in {facts.conf_path}",
                )
            )


def _period(facts: Facts) -> int:
    value = whole_number((facts.env_values or {}).get(ENV_NAMES["period"], ""))
    return value if value is not None and value > 0 else 21600


def _secret(facts: Facts, found: list[Finding]) -> None:
    if facts.env_values is None:
        if facts.env_error in (None, "missing"):
            found.append(Finding(f"{facts.env_path} is missing", "knockssh-rotator init"))
        else:
            found.append(
                Finding(
                    f"{facts.env_path} {facts.env_error}",
                    f"make {facts.env_path} a regular file readable by root (chmod 600)",
                )
            )
        return
    if facts.env_mode is not None and facts.env_mode & 0o077:
        found.append(
            Finding(
                f"{facts.env_path} is readable by others (mode {facts.env_mode:o}): it holds "
                "the secret",
                f"chmod 600 {facts.env_path}",
            )
        )
    try:
        settings = settings_from_env(facts.env_values)
        validate(settings, ENV_NAMES)
    except SchemeError as exc:
        found.append(Finding(f"{facts.env_path}: {exc}", f"edit {facts.env_path}"))
        return
    if settings.length < SAFE_LENGTH:
        found.append(
            Finding(
                f"{facts.env_path}: sequences of {settings.length} knocks: a port scan in "
                f"ascending order completes one in about 1 period of "
                f"{math.factorial(settings.length)}",
                f"{ENV_NAMES['length']}=10 in {facts.env_path}",
            )
        )
    busy = sorted(p for p in facts.listening if p in settings.ports)
    if busy:
        shown = ", ".join(map(str, busy[:5])) + (" ..." if len(busy) > 5 else "")
        found.append(
            Finding(
                f"{facts.env_path}: services listen on ports of the knock range ({shown}): "
                "a client's own traffic to them breaks its knock",
                f"leave them out of {ENV_NAMES['ports']} in {facts.env_path}",
            )
        )


SAFE_LENGTH = 8


def listening_ports(proc_net: str) -> frozenset[int]:
    """Local ports in LISTEN (TCP) or unconnected (UDP) state, from the text of
    /proc/net/tcp, tcp6, udp and udp6, concatenated."""
    ports = set()
    for line in proc_net.splitlines():
        fields = line.split()
        # state LISTEN (TCP) or unconnected (UDP), and no remote end: not a connection
        if len(fields) > 3 and fields[3] in ("0A", "07") and fields[2].endswith(":0000"):
            port = fields[1].rsplit(":", 1)[-1]
            if len(port) == 4 and all(c in "0123456789ABCDEF" for c in port):
                ports.add(int(port, 16))
    return frozenset(ports)


def knockd_config(argv: list[str]) -> str:
    """The knockd.conf a knockd command line reads: ``-c FILE``, ``-cFILE``,
    ``--config FILE`` or ``--config=FILE`` (the last one wins, as with getopt),
    else knockd's default."""
    found = "/etc/knockd.conf"
    words = iter(argv[1:])
    for word in words:
        if word == "--":
            break
        if word in ("-c", "--config"):
            found = next(words, found)
        elif word.startswith("--config="):
            found = word.split("=", 1)[1]
        elif word.startswith("-c"):
            found = word[2:]
    return found


def interfaces_of(ip_link: str) -> dict[str, bool]:
    """Interface name -> administratively up, from ``ip -o link show`` (this network
    namespace's, which a container's /sys need not show)."""
    found = {}
    for line in ip_link.splitlines():
        parts = line.split(": ", 2)
        if len(parts) == 3:
            flags = parts[2].split(">", 1)[0].lstrip("<").split(",")
            found[parts[1].split("@", 1)[0]] = "UP" in flags
    return found


def parse_env_file(text: str) -> dict[str, str]:
    """KEY=VALUE lines as systemd's EnvironmentFile= reads them (comments and blank
    lines skipped, one level of quotes removed)."""
    values = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key.strip()] = value
    return values
