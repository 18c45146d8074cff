"""The knockd container (server/container/) under podman, for the lab: built here
without a registry from the systemd host's cached Debian root file system, run with
runc in the lab's server namespace. Podman's storage is kept apart from any other
(its own root, run root and configuration under /var/cache/knockssh-lab/podman).
"""

from __future__ import annotations

import os
import subprocess

import systemd_host

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STORE = os.path.join(systemd_host.CACHE, "podman")
IMAGE = "localhost/knockssh-server:lab"
# crun cannot run on these hybrid-cgroup hosts; setrlimit needs explicit ulimits
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""


def podman(*args: str, check: bool = True, **kw: Any) -> subprocess.CompletedProcess[str]:
    os.makedirs(STORE, exist_ok=True)
    conf = os.path.join(STORE, "containers.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write(CONTAINERS_CONF)
    store = [
        f"--root={STORE}/root",
        f"--runroot={STORE}/run",
        f"--tmpdir={STORE}/tmp",
        f"--network-config-dir={STORE}/net",
    ]
    done = subprocess.run(
        ["podman", *store, *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CONTAINERS_CONF": conf},
        timeout=300,
        **kw,
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {args[0]} failed: {done.stderr.strip()[-800:]}")
    return done


def build(context: str) -> str:
    """The image from ``context`` (a checkout with dist/ holding the wheel); the root
    file system goes in as rootfs.tar, made from the cached tree."""
    tar = os.path.join(context, "rootfs.tar")
    if not os.path.exists(tar):
        subprocess.run(["tar", "-C", systemd_host.rootfs(), "-cf", tar, "."], check=True)
    containerfile = os.path.join(context, "server", "container", "Containerfile")
    podman("build", "--quiet", "-t", IMAGE, "-f", containerfile, context)
    podman("image", "prune", "--force", check=False)  # the build this one replaced
    return IMAGE


class Container:
    """One running knockd container in ``netns``, its secret and the client's public
    key mounted read-only."""

    def __init__(self, name: str, netns: str, secret: str, authorized_key: str) -> None:
        self.name = name
        self.netns = netns
        self.secret = secret
        self.authorized_key = authorized_key

    def start(self, image: str) -> None:
        podman(
            "run",
            "-d",
            f"--name={self.name}",
            f"--network=ns:/run/netns/{self.netns}",
            "--cap-add=NET_RAW,NET_ADMIN",
            f"--volume={self.secret}:/run/secrets/secret:ro",
            f"--volume={self.authorized_key}:/root/.ssh/authorized_keys:ro",
            image,
        )

    def logs(self) -> str:
        done = podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def exec(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return podman("exec", self.name, *cmd, check=check)

    def running(self) -> bool:
        done = podman("inspect", "-f", "{{.State.Running}}", self.name, check=False)
        return done.stdout.strip() == "true"

    def stop(self) -> int | None:
        """SIGTERM (podman stop), then removal; the entrypoint's exit status."""
        podman("stop", "-t", "10", self.name, check=False)
        done = podman("inspect", "-f", "{{.State.ExitCode}}", self.name, check=False)
        podman("rm", "-f", self.name, check=False)
        try:
            return int(done.stdout.strip())
        except ValueError:
            return None
