"""What ``knockssh-rotator init`` writes and prints for a machine: the env file, the
knockd.conf section and the firewall commands. Pure: the facts about the machine
(its interface, its ssh port, its firewall tool) come in as arguments."""

from __future__ import annotations

from . import scheme

SERVICE_MAX = 64


def service_problem(name: str) -> str | None:
    """Why ``name`` cannot be a service a command writes somewhere (a knockd.conf
    section, a mapping entry, a script), or None. Letters, digits, '.', '_' and '-',
    a letter or digit first, without the section suffix (knockd's section for
    service ``ssh`` is ``ssh_ROTATOR``)."""
    if not name or len(name) > SERVICE_MAX:
        return f"a service name has 1 to {SERVICE_MAX} characters"
    if not (
        name.isascii()
        and name[0].isalnum()
        and name.replace("-", "a").replace("_", "a").replace(".", "a").isalnum()
    ):
        return "a service name has letters, digits, '.', '_' and '-' only, a letter or digit first"
    if name.upper().endswith(scheme.SUFFIX.upper()):
        return f"give the service without {scheme.SUFFIX} (its section is SERVICE{scheme.SUFFIX})"
    return None


ENV_FILE = "/etc/knockssh/rotator.env"
FIREWALLS = ("iptables", "nftables")


def env_file_text(secret: str) -> str:
    return f"""\
# {ENV_FILE} (chmod 600), written by knockssh-rotator init.
KNOCKD_ROTATOR_SECRET={secret}
KNOCKD_ROTATOR_LENGTH=10
KNOCKD_ROTATOR_PORTS=2000-65536
KNOCKD_ROTATOR_PERIOD_MODULO=21600
KNOCKD_ROTATOR_PROTO_MODULO=0
KNOCKD_ROTATOR_SERVER_INTERVAL=3600
# seconds the previous period's sequence stays valid after a boundary (less than the period)
KNOCKD_ROTATOR_GRACE=300
"""


def _door(firewall: str, port: int, six: bool, cmd_timeout: int) -> tuple[str, str | None]:
    """A door's start and stop commands: the start is idempotent (a second knock
    while the door is open adds no second rule), both act on %IP% only. With
    nftables the door is a set element that the kernel removes after
    ``cmd_timeout`` seconds: no stop command, and no crash or restart of knockd
    can leave it open."""
    if firewall == "nftables":
        element = f"inet {NFT_TABLE} {'allowed6' if six else 'allowed'}"
        return f"/usr/sbin/nft add element {element} {{ %IP% timeout {cmd_timeout}s }}", None
    tool = "/usr/sbin/ip6tables" if six else "/usr/sbin/iptables"
    rule = f"INPUT -s %IP% -p tcp --dport {port} -m comment --comment {DOOR_MARK} -j ACCEPT"
    return f"{tool} -C {rule} || {tool} -I {rule}", f"{tool} -D {rule}"


DOOR_MARK = "knockssh-door"  # on every iptables door rule: close-doors removes them


def door_rules(listing: str) -> list[list[str]]:
    """The door rules in an ``iptables -S INPUT`` listing, each as the arguments that
    ``iptables -D`` takes to delete it (its ``-A`` left out)."""
    import shlex

    found = []
    for line in listing.splitlines():
        if DOOR_MARK not in line:
            continue
        try:
            words = shlex.split(line)
        except ValueError:  # an unbalanced quote: not a line iptables wrote
            continue
        if words[:1] == ["-A"] and ("--comment", DOOR_MARK) in zip(words, words[1:]):
            found.append(words[1:])
    return found


NFT_TABLE = "knock"


def knockd_conf_text(
    interface: str,
    port: int,
    firewall: str,
    service: str = "ssh",
    *,
    log_file: str | None = None,
    pid_file: str | None = None,
    seq_timeout: int = 10,
    cmd_timeout: int = 30,
) -> str:
    """A knockd.conf with one rotator door for ``port``; the sequence is a placeholder
    the first rotation replaces. Logged to syslog unless ``log_file`` is given (the
    lab reads knockd's log; a server's journal has it)."""
    start, stop = _door(firewall, port, False, cmd_timeout)
    start6, stop6 = _door(firewall, port, True, cmd_timeout)
    stops = f"\n    stop_command  = {stop}" if stop else ""
    stops6 = f"\n    stop_command_6  = {stop6}" if stop6 else ""
    logging = f"LogFile   = {log_file}" if log_file else "UseSyslog"
    pid = f"\n    PidFile   = {pid_file}" if pid_file else ""
    return f"""\
[options]
    {logging}{pid}
    Interface = {interface}

[{service}_ROTATOR]
    sequence      = 2000:tcp,2001:tcp,2002:tcp,2003:tcp,2004:tcp
    seq_timeout   = {seq_timeout}
    tcpflags      = syn
    start_command = {start}
    cmd_timeout   = {cmd_timeout}{stops}
    start_command_6 = {start6}{stops6}
"""


def firewall_rules(port: int, firewall: str) -> list[str]:
    """Keep established sessions, drop new ones to ``port`` unless a door admits
    them; IPv4 and IPv6 alike. Shell commands, each safe to run twice."""
    if firewall == "nftables":
        return [f"nft -f - <<'EOF'\n{nft_table(port)}\nEOF"]
    commands = []
    for tool in ("iptables", "ip6tables"):
        established = "INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT"
        drop = f"INPUT -p tcp --dport {port} -j DROP"
        commands.append(f"{tool} -C {established} 2>/dev/null || {tool} -I {established}")
        commands.append(f"{tool} -C {drop} 2>/dev/null || {tool} -A {drop}")
    return commands


FIREWALL_FILE = "/etc/knockssh/firewall.nft"
FIREWALL_SCRIPT = "/etc/knockssh/firewall.sh"  # what knockssh-firewall.service runs
FIREWALL_UNIT = "knockssh-firewall.service"


def nft_table(port: int) -> str:
    """knockssh's own nftables table. Declared, deleted, then defined, in one
    transaction: loading it again replaces it instead of appending its rules
    (sessions stay: conntrack). The door sets time their elements out."""
    return f"""\
table inet {NFT_TABLE}
delete table inet {NFT_TABLE}
table inet {NFT_TABLE} {{
    set allowed {{ type ipv4_addr; flags timeout; }}
    set allowed6 {{ type ipv6_addr; flags timeout; }}
    chain input {{
        type filter hook input priority 0; policy accept;
        ct state established,related accept
        ip saddr @allowed tcp dport {port} accept
        ip6 saddr @allowed6 tcp dport {port} accept
        tcp dport {port} drop
    }}
}}"""


def firewall_script(port: int, firewall: str) -> str:
    """What knockssh-firewall.service runs: the nftables table loaded from its file,
    or the idempotent iptables commands."""
    script = (
        f"nft -f {FIREWALL_FILE}"
        if firewall == "nftables"
        else "\n".join(firewall_rules(port, firewall))
    )
    return f"# knockssh-rotator init: loaded at boot by {FIREWALL_UNIT}\n{script}\n"


def setup_files(
    interface: str, port: int, firewall: str, service: str, units: dict[str, str]
) -> dict[str, str]:
    """The files init's script writes, by name, as ``init --print`` shows them."""
    return {
        "knockd.conf": knockd_conf_text(interface, port, firewall, service),
        "firewall.nft": nft_table(port) + "\n",
        "firewall.sh": firewall_script(port, firewall),
        "knockd-dropin": KNOCKD_DROPIN_TEXT,
        **units,
    }


def firewall_commands(port: int, firewall: str) -> list[str]:
    """The rules, in files of init's own, loaded now and at boot by a unit of its
    own (knockssh-firewall.service runs FIREWALL_SCRIPT): the admin's
    /etc/nftables.conf or /etc/iptables/rules.v4 is never rewritten. nftables: a
    table of its own; iptables: the idempotent commands."""
    table = [f"cat > {FIREWALL_FILE} <<'EOF'\n{nft_table(port)}\nEOF"]
    return [
        *(table if firewall == "nftables" else []),
        f"cat > {FIREWALL_SCRIPT} <<'EOF'\n{firewall_script(port, firewall)}EOF",
        f"sh {FIREWALL_SCRIPT}",
    ]


IFNAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


def interface_problem(name: str) -> str | None:
    """Why ``name`` cannot be a network interface this script names, or None (Linux
    allows 15 bytes; we take letters, digits, '_', '.' and '-', as udev names them)."""
    if not 0 < len(name) <= 15 or not set(name) <= IFNAME_CHARS or name in (".", ".."):
        return "an interface name has 1 to 15 letters, digits, '_', '.' or '-'"
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot be named in the script (in its comments), or None."""
    if not path.startswith("/"):
        return "give an absolute path"
    if not path.isprintable() or len(path) > 1024:
        return "a path of printable characters (no newline, no control character)"
    return None


def host_for_comment(nodename: str) -> str:
    """This machine's name for the script's last comment; a name that could end the
    comment (a newline set with sethostname) or confuse a terminal becomes a word."""
    ok = 0 < len(nodename) <= 253 and set(nodename) <= IFNAME_CHARS
    return nodename if ok else "THIS-SERVER"


def default_route_interface(proc_net_route: str) -> str | None:
    """The interface of the IPv4 default route, from /proc/net/route's text."""
    for line in proc_net_route.splitlines()[1:]:
        fields = line.split()
        if len(fields) > 2 and fields[1] == "00000000":
            return fields[0]
    return None


def sshd_port(sshd_config: str) -> int:
    """The first ``Port`` of an sshd_config text (sshd's default, 22, without one)."""
    for line in sshd_config.splitlines():
        words = line.split("#", 1)[0].split()
        if len(words) == 2 and words[0].lower() == "port" and words[1].isdigit():
            port = int(words[1])
            if 0 < port < 65536:
                return port
    return 22


UNITS = (
    "knockssh-rotator.service",
    "knockssh-rotator.timer",
    "knockssh-firewall.service",
    "knockssh-addresses.service",
)
PROGRAM = (
    "/usr/local/bin/knockssh-rotator"  # ExecStart= of rotator/units/ (the package's: /usr/bin)
)
KNOCKD_DROPIN = "/etc/systemd/system/knockd.service.d/knockssh.conf"
KNOCKD_DROPIN_TEXT = """\
# knockd.service.d/knockssh.conf: knockssh-rotator init writes it in /etc/systemd/system,
# the Debian package knockssh-server installs it in /lib/systemd/system.
# Behind a knock, knockd is the only way in: whenever it ends (a crash, an exit with
# status 0 on a poll error, an OOM kill), systemd starts it again, without a limit;
# before each start, the iptables doors a dead knockd can no longer close are closed.
[Unit]
StartLimitIntervalSec=0

[Service]
ExecStartPre=-knockssh-rotator close-doors
Restart=always
RestartSec=1
"""


INIT_RECORD = "/etc/knockssh/init.conf"  # what a run of init's script set up: uninit reads it
UNIT_DIR = "/etc/systemd/system"
KNOCKD_BACKUP = "/etc/knockd.conf.before-knockssh"
# where a package's units are: there, init writes no unit and no drop-in of its own
PACKAGED_UNIT_DIRS = ("/lib/systemd/system", "/usr/lib/systemd/system")


def record_text(port: int, firewall: str) -> str:
    return f"# written by the script of knockssh-rotator init\nPORT={port}\nFIREWALL={firewall}\n"


def parse_record(text: str) -> tuple[int | None, str | None]:
    """The port and firewall an init record names (None: not there, or not valid)."""
    port: int | None = None
    firewall: str | None = None
    for line in text.splitlines():
        key, _, value = line.strip().partition("=")
        if key == "PORT" and value.isascii() and value.isdigit() and 0 < int(value) < 65536:
            port = int(value)
        elif key == "FIREWALL" and value in FIREWALLS:
            firewall = value
    return port, firewall


def setup_script(
    interface: str,
    port: int,
    firewall: str,
    service: str,
    env_file: str,
    host: str,
    units: dict[str, str],
    packaged: bool = False,
    revert_after: int = 300,
    program: str = "knockssh-rotator",
) -> str:
    """What ``knockssh-rotator init`` prints: a shell script to read, then to run
    (``knockssh-rotator init | sh``). It holds no secret: the env file does. With
    ``packaged`` (the Debian package), the units and knockd's drop-in are the
    package's: the script writes none.

    Safe apply: before it changes anything, the script arms a transient timer that
    runs ``uninit`` (``program`` is how it names knockssh-rotator) after
    ``revert_after`` seconds, unless ``knockssh-rotator confirm`` stops it, which
    the admin runs from a new session that a knock let in. 0 arms nothing.

    It runs as root, so nothing given may add a line to it: the values are checked
    here again (ValueError), whatever the caller checked."""
    for problem in (
        None if 0 <= revert_after <= MAX_REVERT_AFTER else f"revert after {revert_after} s",
        None if _tame_path(program) else "the rotator's path holds characters a script cannot",
        service_problem(service),
        interface_problem(interface),
        path_problem(env_file),
        None if firewall in FIREWALLS else f"unknown firewall {firewall!r}",
        None if 0 < port < 65536 else f"port {port} out of range",
    ):
        if problem:
            raise ValueError(problem)
    host = host_for_comment(host)
    conf = knockd_conf_text(interface, port, firewall, service)
    lines = [
        "#!/bin/sh",
        f"# knockssh-rotator init: a knockd server on {interface}, guarding ssh port {port}"
        f" with {firewall}.",
        f"# The settings and the new secret are in {env_file} (0600). Read this, then run it:",
        "#   knockssh-rotator init ... | sh",
        "set -eu",
        "# what is set up, for 'knockssh-rotator uninit'",
        f"install -d -m 700 {INIT_RECORD.rsplit('/', 1)[0]}",
        f"install -m 600 /dev/null {INIT_RECORD}",
        f"cat > {INIT_RECORD} <<'EOF'\n{record_text(port, firewall)}EOF",
        *revert_commands(revert_after, program),
        "# knockd.conf (the one it replaces is kept as /etc/knockd.conf.before-knockssh,"
        " or with the time after that name when such a copy exists already)",
        "if [ -e /etc/knockd.conf ]; then",
        f"  backup={KNOCKD_BACKUP}",
        '  [ ! -e "$backup" ] || backup="$backup.$(date +%Y%m%dT%H%M%S).$$"',
        '  cp -p /etc/knockd.conf "$backup"',
        "fi",
        "install -m 600 /dev/null /etc/knockd.conf.new",
        f"cat > /etc/knockd.conf.new <<'EOF'\n{conf}EOF",
        "mv /etc/knockd.conf.new /etc/knockd.conf",
        f"# the firewall: established sessions kept, new ones to port {port} dropped unless a"
        " door admits them, IPv4 and IPv6; saved for boot",
        *firewall_commands(port, firewall),
        *(
            ["# knockd restarted whenever it ends, and the rotator's units: the package's"]
            if packaged
            else [
                "# knockd restarted whenever it ends: it is the only way in",
                f"install -d {KNOCKD_DROPIN.rsplit('/', 1)[0]}",
                f"cat > {KNOCKD_DROPIN} <<'EOF'\n{KNOCKD_DROPIN_TEXT}EOF",
                "# the rotator's units",
                *(f"cat > {UNIT_DIR}/{name} <<'EOF'\n{text}EOF" for name, text in units.items()),
            ]
        ),
        "# then knockd and the timer",
        "systemctl daemon-reload",
        f"systemctl enable knockd.service knockssh-rotator.timer {FIREWALL_UNIT}",
        "systemctl enable knockssh-addresses.service",
        "systemctl restart knockd.service",
        "systemctl start knockssh-rotator.timer knockssh-rotator.service",
        "systemctl start knockssh-addresses.service",
        f"# clients: knockssh add {host} --service {service} --secret-stdin"
        f"   (with the secret from {env_file})",
        *(
            [
                f"echo 'knockssh-rotator: set up. From a NEW ssh session through knockssh, run"
                f" knockssh-rotator confirm within {revert_after} s, or all of this is undone.' >&2"
            ]
            if revert_after
            else []
        ),
        "",
    ]
    return "\n".join(lines)


MAX_REVERT_AFTER = 86400
REVERT_UNIT = "knockssh-revert"


def _tame_path(path: str) -> bool:
    return (
        bool(path)
        and path.isascii()
        and path.isprintable()
        and not set(path) & set(" '\"\\$`;&|<>()*?[]{}#~%")
    )


def revert_commands(revert_after: int, program: str) -> list[str]:
    """Arm the safe apply's revert: a transient timer that runs uninit's script."""
    if not revert_after:
        return ["# no automatic revert (--revert-after 0)"]
    return [
        f"# safe apply: in {revert_after} s all this is undone (knockssh-rotator uninit), unless",
        "# 'knockssh-rotator confirm' runs first, from a new ssh session a knock let in",
        f"systemctl stop {REVERT_UNIT}.timer 2>/dev/null || true",
        f"systemctl reset-failed {REVERT_UNIT}.timer {REVERT_UNIT}.service 2>/dev/null || true",
        f"systemd-run --quiet --unit={REVERT_UNIT} --on-active={revert_after}"
        " --timer-property=AccuracySec=1s --description='knockssh: undo init unless confirmed'"
        f" /bin/sh -c '{program} uninit | sh'",
    ]


def uninit_script(port: int, firewall: str) -> str:
    """What ``knockssh-rotator uninit`` prints: init undone, in the order that never
    locks anyone out. New connections to ``port`` are admitted first; then the
    rotator stops, knockd.conf comes back as it was before init (the first backup)
    and knockd restarts on it, and what init wrote is removed. The rule init added
    for established sessions stays (it may be the admin's own, and it admits only
    what is already admitted); the secret stays in the env file (purge removes it)."""
    if firewall not in FIREWALLS or not 0 < port < 65536:
        raise ValueError(f"firewall {firewall!r}, port {port}")
    if firewall == "nftables":
        opened = [f"nft delete table inet {NFT_TABLE} 2>/dev/null || true"]
    else:
        opened = [
            f"while {tool} -C INPUT -p tcp --dport {port} -j DROP 2>/dev/null; do "
            f"{tool} -D INPUT -p tcp --dport {port} -j DROP; done"
            for tool in ("iptables", "ip6tables")
        ]
    opened += [
        f"systemctl disable {FIREWALL_UNIT} 2>/dev/null || true",
        f"rm -f {FIREWALL_FILE} {FIREWALL_SCRIPT}",
    ]
    units = " ".join(f"{UNIT_DIR}/{name}" for name in UNITS)
    lines = [
        "#!/bin/sh",
        f"# knockssh-rotator uninit: ssh port {port} reachable without a knock again, as",
        "# before init. Read this, then run it:  knockssh-rotator uninit | sh",
        "set -eu",
        f"# the firewall ({firewall}) first: whatever fails after this, nobody is locked out",
        *opened,
        "# the rotator stops, with the runs it scheduled (systemd-run's knockssh-rotator-at-*),"
        " and a pending revert (this is one)",
        f"systemctl stop {REVERT_UNIT}.timer 2>/dev/null || true",
        "systemctl disable --now knockssh-rotator.timer 2>/dev/null || true",
        "systemctl disable --now knockssh-addresses.service 2>/dev/null || true",
        "systemctl stop 'knockssh-rotator-at-*.timer' knockssh-rotator.service 2>/dev/null || true",
        f"rm -f {units} {KNOCKD_DROPIN} {INIT_RECORD}",
        f"rmdir {KNOCKD_DROPIN.rsplit('/', 1)[0]} 2>/dev/null || true",
        "systemctl daemon-reload",
        "# knockd.conf as it was before init, and knockd on it",
        f"if [ -e {KNOCKD_BACKUP} ]; then mv {KNOCKD_BACKUP} /etc/knockd.conf; fi",
        "systemctl try-restart knockd.service",
        f"# the secret stays in {ENV_FILE}: remove it (apt purge does) before a new init",
        "",
    ]
    return "\n".join(lines)


def interface_addresses(ip_o_addr: str) -> frozenset[str]:
    """The addresses in ``ip -o addr show dev IF`` output (without their prefix
    length): what knockd's capture filter is made of when it starts."""
    found = set()
    for line in ip_o_addr.splitlines():
        words = line.split()
        if len(words) > 3 and words[2] in ("inet", "inet6"):
            found.add(words[3].split("/", 1)[0])
    return frozenset(found)


def address_change(interface: str, before: frozenset[str], now: frozenset[str]) -> str:
    """What changed between two sets of an interface's addresses, in one line."""
    added, gone = sorted(now - before), sorted(before - now)
    return (
        f"{interface}: addresses changed (+{', '.join(added) or 'none'}, "
        f"-{', '.join(gone) or 'none'})"
    )
