#!/usr/bin/env python3
"""knockssh benchmarks on the lab's real knockd, sshd and DROP firewall (root).

    python3 bench/bench.py [--runs 25] [--mb 1024]
        [--only latency,concurrency,throughput,coldstart,scale]
    python3 bench/bench.py --link wan|mobile|lossy|day|day-same|SPEC|all [--runs N]

Run it with the interpreter knockssh is installed for (the README's command does).
Prints medians of alternated runs and ratios to the baseline taken in the same run;
BENCH_SAMPLES=1 also prints every connect-latency sample.
"""

from __future__ import annotations

import argparse
import functools
import os
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server", "lab"))
import lab as labmod  # noqa: E402

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from lab import Lab

NAT_ROUNDS, NAT_RUNS = 20, 3  # on wan: 3 runs of 20 rounds per machine count
BENCH_CMD_TIMEOUT = 2  # seconds the door stays open: each knocked run waits for it to shut
SECRET = "0123456789abcdef"  # for the local cold-start and scale files only
BENCH_HOSTS = """
Host direct
    HostName open.lab
    Port 2200
Host direct6
    HostName open6.lab
    Port 2200
Host lab-nodelay
    HostName nodelay.lab
    ProxyCommand knockssh %h %p
Host recipe-delay
    HostName knocked.lab
    ProxyCommand sh -c 'knock -d 100 %h $(cat {seq_file}) && sleep 0.1 && exec nc %h %p'
Host recipe-fast
    HostName knocked.lab
    ProxyCommand sh -c 'knock %h $(cat {seq_file}) && exec nc %h %p'
Host nc-open
    HostName open.lab
    Port 2200
    ProxyCommand {cpu_of} {cpu_file}.nc nc %h %p
Host relay-open
    HostName open.lab
    Port 2200
    ProxyCommand {cpu_of} {cpu_file}.relay knockssh %h %p
Host fdpass-open
    HostName open.lab
    Port 2200
    ProxyCommand knockssh --fdpass %h %p
    ProxyUseFdpass yes
"""
DOOR_PROBE = os.path.join(HERE, "door_probe.py")


def timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Table:
    """What one bench function measured: rows of (case, median, note), the baseline
    the ratios are taken against, and notes. Measuring and printing stay apart:
    every bench function returns tables, and show() is the one printer."""

    def __init__(
        self, title: str, rows: list[tuple[str, float, str]], base: float, unit: str
    ) -> None:
        self.title, self.rows, self.base, self.unit = title, rows, base, unit
        self.notes: list[str] = []

    def show(self) -> None:
        print(f"\n{self.title}")
        if self.rows:
            print(f"  {'case':46} {'median':>10}  {'ratio':>6}")
        for name, value, note in self.rows:
            ratio = value / self.base if self.base else float("nan")
            print(f"  {name:46} {value:>9.3f}{self.unit}  {ratio:>5.2f}x {note}")
        for note in self.notes:
            print(f"  {note}")


table = Table


def launcher() -> str:
    """The knockssh command ssh runs, installed for this interpreter."""
    beside = os.path.join(os.path.dirname(sys.executable), "knockssh")
    found = beside if os.path.exists(beside) else shutil.which("knockssh")
    if not found:
        sys.exit("knockssh is not installed for this interpreter (see the README's command)")
    return found


def shut_by_knockd(lab: Lab) -> None:
    """Wait for knockd's own stop_command to close the doors (IPv4 and IPv6), and
    make the next knockssh a first connection (no note of a door opened seconds
    ago). Deleting the rule by hand would leave knockd's pending stop_command to
    delete the next run's rule mid-way."""

    def shut() -> bool:
        return not lab.door_open(labmod.CLIENT_IP) and not lab.door_open(labmod.CLIENT_IP6)

    if not labmod.wait_for(shut, lab.cmd_timeout + 10, step=0.05):
        rules = labmod.run(["iptables", "-S", "INPUT"], ns=lab.server_ns).stdout
        ps = labmod.run(["ps", "-eo", "pid,etimes,args"]).stdout.splitlines()
        clients = "\n".join(line for line in ps if "knock" in line or " nc " in line)
        log = labmod.read(lab.knockd_log)[-1500:]
        raise RuntimeError(
            f"knockd did not close the door within cmd_timeout\n{rules}\n{clients}\n{log}"
        )
    lab.forget_doors()


def current_sequence(lab: Lab) -> str:
    """Keep knockd on the current period, as the rotator's timer would (a run may cross
    a boundary), and give the recipes the sequence they knock."""
    lab.rotate()
    seq = subprocess.run(
        ["knockssh", "generate", "ssh"],
        env=lab.rotator_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    with open(lab.path("bench_seq"), "w") as f:
        f.write(seq + "\n")
    return seq


def bench_latency(lab: Lab, cfg: str, runs: int) -> list[Table]:
    with open(cfg, "a") as f:
        f.write(bench_hosts(lab))
    with open(os.path.join(lab.netns_etc, "hosts"), "a") as f:
        f.write(f"{labmod.SERVER_IP} nodelay.lab\n")
    hosts = lab.path("hosts.bench.toml")  # the lab's file plus knock_delay_ms = 0
    nodelay = (
        '[[host]]\nmatch = ["nodelay.lab"]\nservice = "ssh"\n'
        f'secret_file = "{lab.path("secret")}"\nknock_delay_ms = 0\n\n[[host]]'
    )
    text = labmod.read(lab.hosts_toml).replace("[[host]]", nodelay, 1)
    labmod.write_private(hosts, text, exclusive=False)
    env = {**lab.client_env(), "KNOCKSSH_CONFIG": hosts}
    cases = {
        "direct, open port (floor)": "direct",
        "ProxyCommand knockssh %h %p": "lab",
        "  the same, knock_delay_ms = 0": "lab-nodelay",
        "ProxyUseFdpass + knockssh --fdpass": "lab-fdpass",
        "knock -d 100 ...; sleep 0.1; exec nc": "recipe-delay",
        "knock ...; exec nc": "recipe-fast",
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    failed = dict.fromkeys(cases, 0)
    why: dict[str, str] = {}
    door: dict[str, list[tuple[float, float]]] = {"1": [], "0": []}
    interpreter: list[float] = []
    probe_env = {**env, "PYTHONPATH": os.path.join(HERE, "..")}
    for _ in range(runs):
        seq = current_sequence(lab)
        for name, host in cases.items():
            shut_by_knockd(lab)
            t0 = time.perf_counter()
            done = lab.in_client(["ssh", "-F", cfg, host, "true"], capture_output=True, env=env)
            if done.returncode == 0:
                samples[name].append(time.perf_counter() - t0)
            else:
                failed[name] += 1
                why.setdefault(name, done.stderr.decode(errors="replace").strip()[-160:])
        for delay in door:
            shut_by_knockd(lab)
            done = lab.in_client(
                [sys.executable, DOOR_PROBE, labmod.SERVER_IP, seq, delay],
                capture_output=True,
                text=True,
                env=probe_env,
            )
            if done.returncode == 0:
                since_first, since_last = map(float, done.stdout.split())
                door[delay].append((since_first, since_last))
        interpreter.append(timed(lambda: subprocess.run([sys.executable, "-c", "pass"])))
    base = median(samples["direct, open port (floor)"])
    found = table(
        f"connect latency: ssh HOST true (s), 10-knock sequence, DROP firewall, {runs} runs",
        [
            (k, median(v), f"({failed[k]}/{runs} runs failed)" if failed[k] else "")
            for k, v in samples.items()
        ],
        base,
        "s",
    )
    if os.environ.get("BENCH_SAMPLES"):
        for k, v in samples.items():
            found.notes.append(f"{k.strip()}: " + " ".join(f"{x * 1000:.0f}" for x in v))
    for name, text in why.items():
        found.notes.append(f"{name.strip()}: first failure said: {text!r}")
    burst = median([first for first, _ in door["0"]])
    spaced_first = median([first for first, _ in door["1"]])
    spaced_last = median([last for _, last in door["1"]])
    python = median(interpreter)
    found.notes += [
        f"the door opens {burst * 1000:.1f} ms after 10 knocks sent back to back, "
        f"{spaced_first * 1000:.1f} ms after the first of 10 knocks 1 ms apart",
        f"({spaced_last * 1000:.1f} ms after the last): knockd 0.8 reads its capture in 50 ms "
        "batches, then runs the firewall command.",
        f"floor for any knocking client: direct + {burst * 1000:.1f} ms = {base + burst:.3f}s "
        f"= {(base + burst) / base:.2f}x;",
        f"for one run by a Python interpreter, + python -c pass ({python * 1000:.1f} ms): "
        f"{base + burst + python:.3f}s = {(base + burst + python) / base:.2f}x",
    ]
    return [found]


def ssh_times(lab: Lab, cfg: str, hosts: list[str], env: dict[str, str]) -> list[float | None]:
    """Start ``ssh HOST true`` for every host at once; each one's time, None if it failed."""
    times: list[float | None] = [None] * len(hosts)

    def one(i: int, host: str) -> None:
        t = time.perf_counter()
        done = lab.in_client(["ssh", "-F", cfg, host, "true"], capture_output=True, env=env)
        if done.returncode == 0:
            times[i] = time.perf_counter() - t

    threads = [threading.Thread(target=one, args=(i, h)) for i, h in enumerate(hosts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


CONCURRENT = 20


def proxy_times(lab: Lab, argv: list[str], count: int, env: dict[str, str]) -> list[float | None]:
    """Start ``count`` copies of a ProxyCommand at once (stdin at EOF): each one's time
    until the server hung up after its banner, None if it failed."""
    times: list[float | None] = [None] * count

    def one(i: int) -> None:
        t = time.perf_counter()
        done = lab.in_client(argv, capture_output=True, env=env, stdin=subprocess.DEVNULL)
        if done.returncode == 0 and done.stdout.startswith(b"SSH-2.0-"):
            times[i] = time.perf_counter() - t

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times


def bench_concurrency(lab: Lab, cfg: str, runs: int) -> list[Table]:
    """20 first connections at once against one alone, knocked and direct; IPv6
    against IPv4. The two cores run all 20 ssh clients and sshd children too, so
    the direct rows are the floor that CPU sharing sets."""
    env = lab.client_env()
    alone: dict[str, list[float]] = {"lab": [], "direct": []}
    crowd: dict[str, list[tuple[float, float]]] = {"lab": [], "direct": []}
    family: dict[str, list[float]] = {h: [] for h in ("lab", "lab6", "direct", "direct6")}
    proxies = {
        "knocked": ["knockssh", "knocked.lab", "22"],
        "unmapped": ["knockssh", "open.lab", str(labmod.OPEN_PORT)],
    }
    proxy_alone: dict[str, list[float]] = {k: [] for k in proxies}
    proxy_crowd: dict[str, list[tuple[float, float]]] = {k: [] for k in proxies}
    failed = 0
    for _ in range(runs):
        for name, argv in proxies.items():
            shut_by_knockd(lab)
            (t,) = proxy_times(lab, argv, 1, env)
            if t is not None:
                proxy_alone[name].append(t)
            shut_by_knockd(lab)
            times = proxy_times(lab, argv, CONCURRENT, env)
            done = [t for t in times if t is not None]
            failed += len(times) - len(done)
            if done:
                proxy_crowd[name].append((median(done), max(done)))
        current_sequence(lab)
        for host in alone:
            shut_by_knockd(lab)
            (t,) = ssh_times(lab, cfg, [host], env)
            if t is not None:
                alone[host].append(t)
            shut_by_knockd(lab)
            times = ssh_times(lab, cfg, [host] * CONCURRENT, env)
            done = [t for t in times if t is not None]
            failed += len(times) - len(done)
            if done:
                crowd[host].append((median(done), max(done)))
        for host in family:
            shut_by_knockd(lab)
            (t,) = ssh_times(lab, cfg, [host], env)
            if t is not None:
                family[host].append(t)
    base = median(alone["lab"])
    rows = [("knockssh, one alone", base, "")]
    for host, label in (("lab", "knockssh"), ("direct", "direct")):
        rows.append(
            (f"{label}, {CONCURRENT} at once: median", median([m for m, _ in crowd[host]]), "")
        )
        rows.append(
            (f"{label}, {CONCURRENT} at once: slowest", median([s for _, s in crowd[host]]), "")
        )
    rows.append(("direct, one alone", median(alone["direct"]), ""))
    note = f"({failed} of {runs * 4 * CONCURRENT} concurrent connects failed)" if failed else ""
    found = [
        table(
            f"concurrent first connections: ssh HOST true (s), ratio to one knockssh alone, "
            f"{runs} runs {note}",
            rows,
            base,
            "s",
        )
    ]
    proxy_base = median(proxy_alone["knocked"])
    rows = []
    for name, label in (
        ("knocked", "knockssh HOST 22, knocked"),
        ("unmapped", "knockssh, no knock"),
    ):
        rows.append((f"{label}: one alone", median(proxy_alone[name]), ""))
        for i, what in ((0, "median"), (1, "slowest")):
            value = median([pair[i] for pair in proxy_crowd[name]])
            rows.append((f"{label}: {CONCURRENT} at once, {what}", value, ""))
    found.append(
        table(
            f"the ProxyCommand alone (no ssh): start to the server's banner and hang-up (s), "
            f"ratio to one knocked alone, {runs} runs",
            rows,
            proxy_base,
            "s",
        )
    )
    found.append(
        table(
            f"IPv6 against IPv4: ssh HOST true (s), ratio to knockssh over IPv4, {runs} runs",
            [
                ("knockssh over IPv4", median(family["lab"]), ""),
                ("knockssh over IPv6", median(family["lab6"]), ""),
                ("direct over IPv4", median(family["direct"]), ""),
                ("direct over IPv6", median(family["direct6"]), ""),
            ],
            median(family["lab"]),
            "s",
        )
    )
    return found


def p95(values: list[float]) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


class LinkRow:
    """One case of the per-link latency bench: every sample, and how many failed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.samples: list[float] = []
        self.failed = 0

    def success(self) -> str:
        total = len(self.samples) + self.failed
        return f"{len(self.samples)}/{total}"


LINK_CASES = {
    "direct, open port": "direct",
    "ProxyCommand knockssh %h %p": "lab",
    "knock -d 100 ...; sleep 0.1; exec nc": "recipe-delay",
}


def measure_link(lab: Lab, cfg: str, runs: int) -> list[LinkRow]:
    """Connect latency over the lab's link: direct, knockssh and the usual recipe,
    alternated. knockssh keeps what it learnt of the path between runs, as it does
    for a user (the first run has nothing); each knocked run starts at a shut door."""
    env = lab.client_env()
    rows = {name: LinkRow(name) for name in LINK_CASES}
    for _ in range(runs):
        current_sequence(lab)
        for name, host in LINK_CASES.items():
            shut_by_knockd(lab)
            t0 = time.perf_counter()
            done = lab.in_client(
                ["ssh", "-F", cfg, host, "true"], capture_output=True, env=env, timeout=120
            )
            if done.returncode == 0:
                rows[name].samples.append(time.perf_counter() - t0)
            else:
                rows[name].failed += 1
    return list(rows.values())


def link_table(title: str, rows: list[LinkRow]) -> Table:
    base = median(rows[0].samples)
    found = table(
        title,
        [
            (
                row.name,
                median(row.samples),
                f"p95 {p95(row.samples):.3f}s, {median(row.samples) - base:+.3f}s over direct, "
                f"got in {row.success()}",
            )
            for row in rows
        ],
        base,
        "s",
    )
    if os.environ.get("BENCH_SAMPLES"):
        for row in rows:
            found.notes.append(f"{row.name}: " + " ".join(f"{x * 1000:.0f}" for x in row.samples))
    return found


def bench_link(link: str, runs: int, mb: int) -> Iterator[Table]:
    """The tables of one link profile, each as soon as it is measured."""
    lab = labmod.Lab(labmod.new_name(), cmd_timeout=BENCH_CMD_TIMEOUT)
    lab.up(link=link)
    try:
        cfg = lab.path("ssh_config.bench")
        with open(lab.ssh_config) as src, open(cfg, "w") as dst:
            dst.write(src.read() + bench_hosts(lab))
        spec = labmod.link_spec(link) or "veth"
        yield link_table(
            f"link {link} ({spec}, each way): ssh HOST true (s), {runs} runs",
            measure_link(lab, cfg, runs),
        )
        if link == "wan":
            yield from bench_throughput(lab, cfg, mb, max(3, runs // 5))
            for run in range(1, NAT_RUNS + 1):
                for count in (2, 3):
                    yield nat_rounds(lab, cfg, count, NAT_ROUNDS, run)
    finally:
        lab.down()


# a laptop's day (as tests/lab/test_links.py): each network has its own gateway
DAY = [
    ("lan", "198.18.0.11"),
    ("mobile", "198.18.0.12"),
    ("wan", "198.18.0.13"),
    ("lan", "198.18.0.11"),
]
DAY_CASES = {
    "direct, open port": "direct",
    "knockssh, state carried from the network before": "carried",
    "knockssh, fresh state": "fresh",
}


def bench_day(runs: int, same_network: bool = False) -> list[Table]:
    """One lab whose client moves lan -> mobile -> wan -> lan (the bridge re-impairs,
    the gateway changes), with one state directory carried all day, against a fresh
    one each connect and against direct, alternated on each network. With
    ``same_network`` the gateway stays: one network whose link worsens and heals,
    the case knockssh cannot tell from its key."""
    lab = labmod.Lab(labmod.new_name(), cmd_timeout=BENCH_CMD_TIMEOUT)
    lab.up(link="lossy")  # over the bridge, so the client can move
    carried = tempfile.mkdtemp(prefix="knockssh-day-")
    try:
        cfg = lab.path("ssh_config.bench")
        with open(lab.ssh_config) as src, open(cfg, "w") as dst:
            dst.write(src.read() + bench_hosts(lab))
        found = []
        before = "nothing"
        for link, gateway in DAY:
            lab.move(link, DAY[0][1] if same_network else gateway)
            rows = {name: LinkRow(name) for name in DAY_CASES}
            for _ in range(runs):
                current_sequence(lab)
                for name, kind in DAY_CASES.items():
                    shut_by_knockd(lab)
                    state = carried if kind == "carried" else tempfile.mkdtemp(dir=lab.dir)
                    env = {**lab.client_env(), "XDG_STATE_HOME": state}
                    host = "direct" if kind == "direct" else "lab"
                    t0 = time.perf_counter()
                    argv = ["ssh", "-F", cfg, host, "true"]
                    done = lab.in_client(argv, capture_output=True, env=env, timeout=120)
                    if done.returncode == 0:
                        rows[name].samples.append(time.perf_counter() - t0)
                    else:
                        rows[name].failed += 1
            spec = labmod.link_spec(link) or "no impairment"
            where = "the same network" if same_network else "its own network"
            title = f"{link} after {before}, {where} ({spec}, each way): ssh HOST true, {runs} runs"
            found.append(link_table(title, list(rows.values())))
            before = link
        return found
    finally:
        lab.down()
        shutil.rmtree(carried, ignore_errors=True)


def nat_rounds(lab: Lab, cfg: str, count: int, rounds: int, run: int = 1) -> Table:
    """``count`` machines behind one NAT connect at the same instant, ``rounds`` times,
    each its own state and lock, the door shut before each round (default settings
    of the link's mapping file): how many got in, and their connect times."""
    samples: list[float] = []
    failed = 0
    with lab.nat_clients(count) as machines:
        envs = [lab.client_env(machine=ns) for ns in machines]
        for _ in range(rounds):
            lab.close_door()  # and knockd's pending stop_commands, as the NAT test does
            for ns in machines:
                lab.forget_doors(machine=ns)
            times: list[float | None] = [None] * count

            def one(i: int, times: list[float | None]) -> None:
                t = time.perf_counter()
                argv = ["ssh", "-F", cfg, "lab", "true"]
                done = lab.in_ns(machines[i], argv, capture_output=True, env=envs[i], timeout=120)
                if done.returncode == 0:
                    times[i] = time.perf_counter() - t

            threads = [threading.Thread(target=one, args=(i, times)) for i in range(count)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            samples += [x for x in times if x is not None]
            failed += sum(1 for x in times if x is None)
    total = count * rounds
    return table(
        f"{count} machines behind one NAT at the same instant, {rounds} rounds (run {run})",
        [(f"got in {len(samples)}/{total}", median(samples), f"p95 {p95(samples):.3f}s")],
        0.0,
        "s",
    )


def bench_hosts(lab: Lab) -> str:
    def literal(*words: str) -> str:  # for ssh_config: shell-quoted, % doubled
        return " ".join(shlex.quote(w) for w in words).replace("%", "%%")

    return (
        BENCH_HOSTS.replace("{seq_file}", literal(lab.path("bench_seq")))
        .replace("{cpu_of}", literal(sys.executable, os.path.join(HERE, "cpu_of.py")))
        .replace("{cpu_file}", literal(lab.path("proxy_cpu")))
    )


def proxy_cpu(lab: Lab, which: str) -> list[float]:
    """CPU seconds of each relay-open or nc-open ProxyCommand so far (cpu_of.py)."""
    return [float(x) for x in labmod.read(lab.path(f"proxy_cpu.{which}")).split()]


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all cores: client and server share this machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def busy_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    return (after[0] - before[0]) / max(1, after[1] - before[1])


def bench_throughput(lab: Lab, cfg: str, mb: int, runs: int) -> list[Table]:
    cases = {
        "direct": "direct",
        "knockssh relay": "relay-open",
        "knockssh --fdpass": "fdpass-open",
        "nc as ProxyCommand": "nc-open",
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    busy: dict[str, list[float]] = {k: [] for k in cases}
    remote = f"head -c {mb}M /dev/zero"
    for _ in range(runs):
        for name, host in cases.items():
            before = cpu_ticks()
            argv = ["ssh", "-F", cfg, "-c", "aes128-gcm@openssh.com", host, remote]
            t = timed(functools.partial(lab.in_client, argv, check=True, stdout=subprocess.DEVNULL))
            samples[name].append(mb / t)
            busy[name].append(busy_share(before, cpu_ticks()))
    base = median(samples["direct"])
    # the ProxyCommand's own CPU (cpu_of.py): ssh never reaps it, so rusage misses it
    own = {"knockssh relay": proxy_cpu(lab, "relay"), "nc as ProxyCommand": proxy_cpu(lab, "nc")}
    rows = [
        (
            k,
            median(v),
            f"(cores busy {median(busy[k]) * 100:.0f}%"
            + (f", proxy CPU {median(own[k]) * 1024 / mb:.2f} s per GB)" if k in own else ")"),
        )
        for k, v in samples.items()
    ]
    return [
        table(
            f"bulk download of {mb} MB through ssh (MB/s, higher is better), {runs} runs",
            rows,
            base,
            "",
        )
    ]


def _local_files(tmp: str) -> dict[str, str]:
    hosts = os.path.join(tmp, "hosts.toml")
    with open(hosts, "w") as f:
        f.write(
            '[[host]]\nmatch = ["h"]\nservice = "ssh"\nsecret_env = "KNOCKD_ROTATOR_SECRET"\n'
            '[[host]]\nmatch = ["127.0.0.1"]\nsequence = "1,2,3,4,5,6,7,8,9,10"\n'
        )
    return {**os.environ, "KNOCKD_ROTATOR_SECRET": SECRET, "KNOCKSSH_CONFIG": hosts}


def bench_coldstart(runs: int) -> list[Table]:
    tmp = tempfile.mkdtemp()  # the working directory too: a checkout there would shadow
    env = _local_files(tmp)
    knockssh = launcher()
    cases = {
        "python -c pass (floor, same interpreter)": [sys.executable, "-c", "pass"],
        "  python -c 'import os; os._exit(0)' (no teardown)": [
            sys.executable,
            "-c",
            "import os; os._exit(0)",
        ],
        "  python -c 'import rotator, knockssh' (packages)": [
            sys.executable,
            "-c",
            "import rotator, knockssh",
        ],
        "knockssh generate ssh": [knockssh, "generate", "ssh"],
        "knockssh check": [knockssh, "check"],
    }
    samples: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(runs * 10):
        for name, cmd in cases.items():
            run = functools.partial(
                subprocess.run, cmd, env=env, check=True, capture_output=True, cwd=tmp
            )
            samples[name].append(timed(run))
    base = median(samples["python -c pass (floor, same interpreter)"])
    found = table(
        f"cold start (ms), {runs * 10} runs",
        [(k, median(v) * 1000, "") for k, v in samples.items()],
        base * 1000,
        "ms",
    )
    found.notes += _import_profile(knockssh, env, tmp)
    return [found]


def _import_profile(knockssh: str, env: dict[str, str], cwd: str) -> list[str]:
    """-X importtime of the whole ProxyCommand path: knock, connect, relay to the end."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = server.accept()
        conn.sendall(b"SSH-2.0-bench\r\n")
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    port = str(server.getsockname()[1])
    bare = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True, cwd=cwd
    ).stderr
    done = subprocess.run(
        [sys.executable, "-X", "importtime", knockssh, "127.0.0.1", port],
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=30,
        cwd=cwd,
    )
    server.close()
    at_start = {line.rsplit("|", 1)[1].strip() for line in bare.splitlines() if "|" in line}
    rows = [
        line.replace("import time:", "").strip()
        for line in done.stderr.splitlines()
        if "|" in line and "cumulative" not in line
    ]
    ours = [r for r in rows if r.rsplit("|", 1)[1].strip() not in at_start]
    total = sum(int(r.split("|")[0]) for r in ours)
    heaviest = sorted(ours, key=lambda r: -int(r.split("|")[0]))[:8]
    return [
        f"import-time profile of the ProxyCommand path (knock, connect, relay; loopback): "
        f"{len(ours)} modules beyond the interpreter's own start, {total / 1000:.1f} ms in all "
        "(self us | cumulative us | module):",
        *(f"  {row}" for row in heaviest),
    ]


def bench_scale() -> list[Table]:
    tmp = tempfile.mkdtemp()
    hosts = os.path.join(tmp, "hosts.toml")
    with open(hosts, "w") as f:
        for i in range(10000):
            f.write(
                f'[[host]]\nmatch = ["h{i}.example.org", "*.z{i}.example"]\n'
                f'service = "s{i}"\nsecret_env = "S"\n\n'
            )
    env = {**os.environ, "KNOCKSSH_CONFIG": hosts, "S": SECRET}
    t = timed(
        lambda: subprocess.run(
            [launcher(), "check", "h9990.example.org"], env=env, check=True, capture_output=True
        )
    )
    conf = os.path.join(tmp, "knockd.conf")
    with open(conf, "w") as f:
        for i in range(500):
            f.write(f"[s{i}_ROTATOR]\n    sequence = 1:tcp\n    tcpflags = syn\n\n")
    # not the legacy default list: with 500 sections, one period in a few has a
    # sequence that would knock port 65536, which the rotator rightly refuses
    renv = {**os.environ, "KNOCKD_ROTATOR_SECRET": SECRET, "KNOCKD_ROTATOR_PORTS": "2000-65535"}
    r = timed(
        lambda: subprocess.run(
            ["knockssh-rotator", "--config", conf, "--no-reload", "--no-schedule", "-q"],
            env=renv,
            check=True,
        )
    )
    found = table("scale", [], 1.0, "s")
    found.notes += [
        f"lookup near the end of 10 000 host entries (knockssh check HOST): {t:.3f}s",
        f"knockssh-rotator on 500 rotator sections (parse, derive, write): {r:.3f}s",
    ]
    return [found]


def show(tables: list[Table]) -> None:
    for found in tables:
        found.show()
    sys.stdout.flush()


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=25)
    p.add_argument("--mb", type=int, default=1024)
    p.add_argument("--only", default="latency,concurrency,throughput,coldstart,scale")
    p.add_argument(
        "--link",
        help="instead: connect latency over an impaired lab link (wan, mobile, lossy, "
        "or a linkbridge spec; throughput and NAT too on wan), day (lan, mobile, wan, lan "
        "with one state directory; day-same: on one network), or all of them",
    )
    args = p.parse_args()
    if args.link:
        reason = labmod.unavailable_reason()
        if reason:
            print(f"lab unavailable: {reason}")
            return 1
        links = (
            ["lan", "wan", "mobile", "lossy", "day", "day-same"]
            if args.link == "all"
            else [args.link]
        )
        for link in links:
            if link in ("day", "day-same"):
                show(bench_day(args.runs, same_network=link == "day-same"))
            else:
                for found in bench_link(link, args.runs, min(args.mb, 256)):
                    show([found])
        return 0
    parts = args.only.split(",")
    print(
        f"machine: {os.cpu_count()} cores, Linux {os.uname().release}, "
        f"Python {sys.version.split()[0]}, "
        f"{subprocess.run(['ssh', '-V'], capture_output=True, text=True).stderr.strip()}"
    )
    if "coldstart" in parts:
        show(bench_coldstart(args.runs))
    if "scale" in parts:
        show(bench_scale())
    if {"latency", "concurrency", "throughput"} & set(parts):
        reason = labmod.unavailable_reason()
        if reason:
            print(f"lab unavailable: {reason}")
            return 1
        lab = labmod.Lab(labmod.new_name(), cmd_timeout=BENCH_CMD_TIMEOUT)
        lab.up()
        try:
            cfg = lab.path("ssh_config.bench")
            with open(lab.ssh_config) as src, open(cfg, "w") as dst:
                dst.write(src.read())
            if "latency" in parts:
                show(bench_latency(lab, cfg, args.runs))
            else:
                with open(cfg, "a") as f:
                    f.write(bench_hosts(lab))
            if "concurrency" in parts:
                show(bench_concurrency(lab, cfg, max(3, args.runs // 3)))
            if "throughput" in parts:
                show(bench_throughput(lab, cfg, args.mb, max(3, args.runs // 3)))
        finally:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
