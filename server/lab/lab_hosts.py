"""The kinds of lab server, behind one interface: knockd and sshd in the server
namespace (fast), a booted Debian 12 set up by the README (systemd_host), or the
knockd container under podman (container). The lab asks its host kind to start,
stop, cancel knockd's pending stop_commands and describe itself; it never asks
which kind it has."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys

import container
import systemd_host
from lab_base import CLIENT_IP, GUEST_ENV, ROOT, read, run, wait_for, write_private

from rotator.server_setup import INIT_RECORD

TYPE_CHECKING = False
if TYPE_CHECKING:
    from lab import Lab


class Host:
    """A kind of lab server."""

    name = ""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab

    def start(self) -> None:
        """Bring the server up (the namespaces and the lab's files exist)."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop what runs outside the namespaces (the namespaces go after)."""

    def cancel_pending_stops(self) -> None:
        """Kill knockd's children still waiting out cmd_timeout to run a stop_command."""

    def describe(self) -> str:
        lab = self.lab
        return f"{self.name} host, door {'open' if lab.door_open() else 'closed'}"


class NamespaceHost(Host):
    """knockd, sshd and the firewall in the server namespace itself."""

    name = "netns"

    def start(self) -> None:
        lab = self.lab
        lab.firewall().install()
        lab.rotate(reload=False)
        lab.start_knockd()
        lab.start_sshd()

    def cancel_pending_stops(self) -> None:
        for child in self.lab.pending_stops():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)

    def describe(self) -> str:
        lab = self.lab
        knockd = lab.knockd_pid()
        sshd = read(lab.path("sshd.pid")).strip()
        return (
            f"knockd pid {knockd or 'DEAD'}, sshd pid {sshd or '?'}, {lab.firewall().name}, "
            f"door {'open' if lab.door_open() else 'closed'}"
        )


DEB_BUILD_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # Debian's python3, not a venv's or pyenv's


def build_debs(src: str) -> list[str]:
    """``dpkg-buildpackage -us -uc -b`` in the copy ``src``, as the README says; the
    packages (written beside ``src``) moved into it, for the guest, which sees ``src``."""
    env = {**os.environ, "PATH": DEB_BUILD_PATH, "DEB_BUILD_OPTIONS": "nocheck"}
    done = run(["dpkg-buildpackage", "-us", "-uc", "-b"], cwd=src, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dpkg-buildpackage failed: {(done.stdout + done.stderr)[-1500:]}")
    parent = os.path.dirname(src)
    debs = []
    for name in sorted(os.listdir(parent)):
        if name.endswith((".deb", ".changes", ".buildinfo")):
            if name.endswith(".deb"):
                debs.append(os.path.join(src, name))
            os.replace(os.path.join(parent, name), os.path.join(src, name))
    return debs


def checkout_with_wheel(lab: Lab, debs: bool = False) -> str:
    """A copy of the checkout in the lab's directory, with the wheel built from it
    in dist/ (and with ``debs`` the Debian packages), as an admin has it; and the
    default route a server has."""
    run(["ip", "route", "add", "default", "via", CLIENT_IP], ns=lab.server_ns)
    skip = shutil.ignore_patterns(
        ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "rootfs.tar"
    )
    src = lab.path("src")
    shutil.copytree(ROOT, src, ignore=skip)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", f"{src}/dist", src])
    if debs:
        build_debs(src)
    return src


class SystemdHost(Host):
    """A booted Debian 12 (systemd as PID 1), set up by a part of the README."""

    name = "systemd"

    def guest(self) -> systemd_host.Guest:
        lab = self.lab
        binds = {lab.path("src"): "/src"}
        return systemd_host.Guest(lab.name, lab.server_ns, lab.path("guest"), binds)

    def start(self) -> None:
        lab = self.lab
        checkout_with_wheel(lab, debs=lab.setup() == "quick-start")
        guest = self.guest()
        guest.boot()
        with open(lab.path("client_key.pub")) as f:
            key = f.read()
        guest.shell("install -d -m 700 /root/.ssh && cat > /root/.ssh/authorized_keys", input=key)
        part = systemd_host.SETUPS[lab.setup()]
        if part is None:
            return  # bare: sshd as Debian starts it, nothing guarded
        heading, after = part
        with open(os.path.join(ROOT, "README.md")) as f:
            setup = systemd_host.readme_server_setup(f.read(), heading, after)
        for line in setup:
            if line.startswith("knockssh-rotator confirm"):
                done = self.confirm(line)  # as the README says: from a knocked session
            else:
                done = guest.shell(line, cwd="/src", check=False, env=GUEST_ENV)
            if done.returncode != 0 and not self._only_the_hosts_clock(line, done.stdout):
                said = (done.stdout + done.stderr).strip()
                raise RuntimeError(f"README {heading}: {line!r} failed: {said}")
        self.take_secret()
        self.take_firewall()

    def take_firewall(self) -> None:
        """init chose the firewall (nftables on Debian 12): the lab observes that one."""
        record = self.guest().run(["cat", INIT_RECORD], check=False).stdout
        for line in record.splitlines():
            if line.startswith("FIREWALL="):
                self.lab.note_firewall(line.split("=", 1)[1].strip())

    def take_secret(self) -> None:
        """The secret the guest's init made becomes the lab's (its clients knock with it)."""
        env = self.guest().run(["cat", "/etc/knockssh/rotator.env"]).stdout
        found = dict(line.split("=", 1) for line in env.splitlines() if "=" in line)
        os.unlink(self.lab.path("secret"))  # the lab's own, or the last init's
        write_private(self.lab.path("secret"), found["KNOCKD_ROTATOR_SECRET"] + "\n")

    def confirm(
        self, command: str = "knockssh-rotator confirm"
    ) -> subprocess.CompletedProcess[str]:
        """``command`` over ssh through knockssh, from the client namespace: a new
        session a knock let in, as the script of init asks."""
        self.take_secret()
        ssh = ["ssh", "-F", self.lab.ssh_config, "lab", command]
        return self.lab.in_client(ssh, capture_output=True, text=True, timeout=60)

    def _only_the_hosts_clock(self, line: str, said: str) -> bool:
        """The doctor's one finding is the clock, and the kernel (the host's: the guest
        shares it) really is not NTP-synchronised. Nothing a setup does in a lab
        without the Internet can change that, and the lab must not touch the host's
        clock, so this finding alone does not fail the setup."""
        if not line.startswith("knockssh-rotator check"):
            return False
        problems = [p for p in said.splitlines() if p.strip()]
        if len(problems) != 1 or "not NTP-synchronised" not in problems[0]:
            return False
        show = ["timedatectl", "show", "-p", "NTPSynchronized", "--value"]
        return self.guest().run(show, check=False).stdout.strip() == "no"

    def stop(self) -> None:
        if os.path.isdir(self.lab.path("guest")):
            self.guest().stop()

    def cancel_pending_stops(self) -> None:
        main = "$(systemctl show -p MainPID --value knockd.service)"
        self.guest().shell(f"pkill -KILL -P {main} || true")


class ContainerHost(Host):
    """The knockd container (server/container/) under podman."""

    name = "container"

    def knockd_container(self) -> container.Container:
        lab = self.lab
        key = lab.path("client_key.pub")
        return container.Container(lab.name, lab.server_ns, lab.path("secret"), key)

    def start(self) -> None:
        image = container.build(checkout_with_wheel(self.lab))
        server = self.knockd_container()
        server.start(image)
        if not wait_for(lambda: "following the clock" in server.logs(), 30):
            raise RuntimeError(f"the knockd container did not start: {server.logs()[-800:]}")

    def stop(self) -> None:
        self.knockd_container().stop()


HOST_KINDS: dict[str, type[Host]] = {h.name: h for h in (NamespaceHost, SystemdHost, ContainerHost)}
