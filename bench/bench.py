#!/usr/bin/env python3
"""knockssh benchmarks on the lab's real knockd, sshd and DROP firewall (root).

    python3 bench/bench.py [--runs 7] [--mb 1024] [--only latency,throughput,coldstart,scale]

Prints medians of alternated runs and ratios to the baseline taken in the same run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "server", "lab"))
import lab as labmod  # noqa: E402

DIRECT_HOSTS = """
Host direct
    HostName open.lab
    Port 2200
Host recipe-delay
    HostName knocked.lab
    ProxyCommand sh -c 'knock -d 100 %h {seq} && sleep 0.1 && exec nc %h %p'
Host recipe-fast
    HostName knocked.lab
    ProxyCommand sh -c 'knock %h {seq} && exec nc %h %p'
Host nc-open
    HostName open.lab
    Port 2200
    ProxyCommand nc %h %p
Host relay-open
    HostName open.lab
    Port 2200
    ProxyCommand knockssh %h %p
Host fdpass-open
    HostName open.lab
    Port 2200
    ProxyCommand knockssh --fdpass %h %p
    ProxyUseFdpass yes
"""


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def table(title: str, rows: list[tuple[str, float, str]], base: float, unit: str, higher=False):
    print(f"\n{title}")
    print(f"  {'case':44} {'median':>10}  {'ratio':>6}")
    for name, value, note in rows:
        ratio = value / base if base else float("nan")
        print(f"  {name:44} {value:>9.3f}{unit}  {ratio:>5.2f}x {note}")


def bench_latency(lab, cfg, runs):
    seq = " ".join(
        subprocess.run(["knockssh", "generate", "ssh"], env=lab.rotator_env(), capture_output=True,
                       text=True, check=True).stdout.split()
    )
    with open(cfg, "a") as f:
        f.write(DIRECT_HOSTS.replace("{seq}", seq))
    cases = {
        "direct, open port (floor)": "direct",
        "ProxyCommand knockssh %h %p": "lab",
        "ProxyUseFdpass + knockssh --fdpass": "lab-fdpass",
        "knock -d 100 ...; sleep 0.1; exec nc": "recipe-delay",
        "knock ...; exec nc": "recipe-fast",
    }
    samples = {k: [] for k in cases}
    failed = {k: 0 for k in cases}
    for _ in range(runs):
        for name, host in cases.items():
            lab.close_door()
            assert not lab.door_open()
            t0 = time.perf_counter()
            done = lab.in_client(["ssh", "-F", cfg, host, "true"], capture_output=True)
            if done.returncode == 0:
                samples[name].append(time.perf_counter() - t0)
            else:
                failed[name] += 1
    base = statistics.median(samples["direct, open port (floor)"])
    table("connect latency: ssh HOST true (s), 10-knock sequence, DROP firewall",
          [(k, statistics.median(v) if v else float("nan"),
            f"({failed[k]}/{runs} runs failed)" if failed[k] else "")
           for k, v in samples.items()], base, "s")


def bench_throughput(lab, cfg, mb, runs):
    cases = {"direct": "direct", "knockssh relay": "relay-open", "knockssh --fdpass": "fdpass-open",
             "nc as ProxyCommand": "nc-open"}
    samples = {k: [] for k in cases}
    cpu = {k: [] for k in cases}
    remote = f"head -c {mb}M /dev/zero"
    for _ in range(runs):
        for name, host in cases.items():
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = timed(lambda: lab.in_client(["ssh", "-F", cfg, "-c", "aes128-gcm@openssh.com",
                                             host, remote], check=True, stdout=subprocess.DEVNULL))
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            samples[name].append(mb / t)
            cpu[name].append((after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime))
    base = statistics.median(samples["direct"])
    rows = [(k, statistics.median(v), f"(ssh+proxy CPU {statistics.median(cpu[k]) * 1024 / mb:.2f} s/GB)")
            for k, v in samples.items()]
    table(f"bulk download of {mb} MB through ssh (MB/s, higher is better)", rows, base, "", True)


def bench_coldstart(runs):
    env = {**os.environ, "KNOCKD_ROTATOR_SECRET": "0123456789abcdef"}
    tmp = tempfile.mkdtemp()
    hosts = os.path.join(tmp, "hosts.toml")
    with open(hosts, "w") as f:
        f.write('[[host]]\nmatch = ["h"]\nservice = "ssh"\nsecret_env = "KNOCKD_ROTATOR_SECRET"\n')
    env["KNOCKSSH_CONFIG"] = hosts
    cases = {
        "python -c pass (floor)": [sys.executable, "-c", "pass"],
        "knockssh generate ssh": [sys.executable, "-m", "knockssh", "generate", "ssh"],
        "knockssh check": [sys.executable, "-m", "knockssh", "check"],
    }
    samples = {k: [] for k in cases}
    for _ in range(runs * 5):
        for name, cmd in cases.items():
            samples[name].append(timed(lambda: subprocess.run(cmd, env=env, check=True,
                                                              capture_output=True)))
    base = statistics.median(samples["python -c pass (floor)"])
    table("cold start (s)", [(k, statistics.median(v), "") for k, v in samples.items()], base, "s")
    prof = subprocess.run([sys.executable, "-X", "importtime", "-m", "knockssh", "generate", "ssh"],
                          env=env, capture_output=True, text=True).stderr.splitlines()
    top = sorted((line for line in prof if "|" in line and "cumulative" not in line),
                 key=lambda line: -int(line.split("|")[1]))[:8]
    print("  import-time profile of the generate path (self us | cumulative us | module):")
    for line in top:
        print("   ", line.replace("import time:", "").strip())


def bench_scale():
    tmp = tempfile.mkdtemp()
    hosts = os.path.join(tmp, "hosts.toml")
    with open(hosts, "w") as f:
        for i in range(10000):
            f.write(f'[[host]]\nmatch = ["h{i}.example.org", "*.z{i}.example"]\n'
                    f'service = "s{i}"\nsecret_env = "S"\n\n')
    env = {**os.environ, "KNOCKSSH_CONFIG": hosts, "S": "0123456789abcdef"}
    t = timed(lambda: subprocess.run([sys.executable, "-m", "knockssh", "check", "h9990.example.org"],
                                     env=env, check=True, capture_output=True))
    conf = os.path.join(tmp, "knockd.conf")
    with open(conf, "w") as f:
        for i in range(500):
            f.write(f"[s{i}_ROTATOR]\n    sequence = 1:tcp\n    tcpflags = syn\n\n")
    renv = {**os.environ, "KNOCKD_ROTATOR_SECRET": "0123456789abcdef"}
    r = timed(lambda: subprocess.run(["knockssh-rotator", "--config", conf, "--no-reload",
                                      "--no-schedule", "-q"], env=renv, check=True))
    print("\nscale")
    print(f"  lookup near the end of 10 000 host entries (knockssh check HOST): {t:.3f}s")
    print(f"  knockssh-rotator on 500 rotator sections (parse, derive, write): {r:.3f}s")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--mb", type=int, default=1024)
    p.add_argument("--only", default="latency,throughput,coldstart,scale")
    args = p.parse_args()
    parts = args.only.split(",")
    print(f"machine: {os.cpu_count()} cores, {os.uname().release}, Python {sys.version.split()[0]}")
    if "coldstart" in parts:
        bench_coldstart(args.runs)
    if "scale" in parts:
        bench_scale()
    if "latency" in parts or "throughput" in parts:
        reason = labmod.unavailable_reason()
        if reason:
            print(f"lab unavailable: {reason}")
            return 1
        lab = labmod.Lab(labmod.new_name())
        lab.up()
        try:
            cfg = lab.path("ssh_config.bench")
            with open(lab.ssh_config) as src, open(cfg, "w") as dst:
                dst.write(src.read())
            if "latency" in parts:
                bench_latency(lab, cfg, args.runs)
            if "throughput" in parts:
                if "latency" not in parts:
                    with open(cfg, "a") as f:
                        f.write(DIRECT_HOSTS.replace("{seq}", "1"))
                bench_throughput(lab, cfg, args.mb, max(1, args.runs // 2))
        finally:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
