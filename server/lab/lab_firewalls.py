"""The lab server's firewall: one class per backend. Its rules and knockd's
start/stop commands come from ``rotator.server_setup``, as init ships them."""

from __future__ import annotations

import re

from lab_base import CLIENT_IP, CLIENT_IP6, SSH_PORT, run

from rotator import server_setup

# -- firewalls: one class per backend ------------------------------------------


class Firewall:
    """The server's firewall as ``knockssh-rotator init`` sets it up (its rules and
    knockd's start/stop commands come from ``rotator.server_setup``), and what the
    tests observe of it: is an address admitted, close every door."""

    name = ""

    def __init__(self, ns: str) -> None:
        self.ns = ns

    def install(self) -> None:
        for command in server_setup.firewall_rules(SSH_PORT, self.name):
            run(["sh", "-c", command], ns=self.ns)

    def admits(self, address: str) -> bool:
        """Is a rule admitting ``address`` to sshd in place now?"""
        raise NotImplementedError

    def close(self) -> None:
        """Remove every knocked-in address."""
        raise NotImplementedError

    def closes_in(self, address: str) -> float | None:
        """Seconds until the kernel itself shuts ``address``'s door (None: it never
        will; only a stop_command removes it)."""
        return None


IPTABLES = {4: "/usr/sbin/iptables", 6: "/usr/sbin/ip6tables"}


class Iptables(Firewall):
    name = "iptables"
    TOOLS = IPTABLES

    def _rule(self, source: str) -> list[str]:
        return ["INPUT", "-s", source, "-p", "tcp", "--dport", str(SSH_PORT), "-m", "comment",
                "--comment", server_setup.DOOR_MARK, "-j", "ACCEPT"]  # fmt: skip

    def admits(self, address: str) -> bool:
        six = ":" in address
        out = run([self.TOOLS[6 if six else 4], "-S", "INPUT"], ns=self.ns).stdout
        return f"-s {address}/{128 if six else 32} " in out

    def close(self) -> None:
        for tool, source in ((self.TOOLS[4], CLIENT_IP), (self.TOOLS[6], CLIENT_IP6)):
            while run([tool, "-D", *self._rule(source)], ns=self.ns, check=False).returncode == 0:
                pass


class Nftables(Firewall):
    name = "nftables"
    TABLE = server_setup.NFT_TABLE

    def admits(self, address: str) -> bool:
        nft_set = "allowed6" if ":" in address else "allowed"
        out = run(["nft", "list", "set", "inet", self.TABLE, nft_set], ns=self.ns).stdout
        return address in out

    def close(self) -> None:
        for nft_set in ("allowed", "allowed6"):
            run(["nft", "flush", "set", "inet", self.TABLE, nft_set], ns=self.ns)

    def closes_in(self, address: str) -> float | None:
        """From the set element's ``expires``, as ``nft list set`` shows it."""
        nft_set = "allowed6" if ":" in address else "allowed"
        out = run(["nft", "list", "set", "inet", self.TABLE, nft_set], ns=self.ns).stdout
        found = re.search(re.escape(address) + r" [^,}]*?expires ((?:\d+(?:ms|[dhms]))+)", out)
        if found is None:
            return None
        units = {"d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
        parts = re.findall(r"(\d+)(ms|[dhms])", found.group(1))
        return sum(int(n) * units[unit] for n, unit in parts)


FIREWALLS: dict[str, type[Firewall]] = {f.name: f for f in (Iptables, Nftables)}
