"""The firewall, as the rotator touches it: closing the iptables doors a dead knockd
left open (its stop_commands died with it). nftables doors need nothing: the
kernel times them out."""

from __future__ import annotations

import shutil
import subprocess

from .server_setup import door_rules


def close_doors() -> list[str]:
    """Delete every door rule (marked knockssh-door) of iptables and ip6tables; what
    was deleted, as ``TOOL RULE`` lines."""
    closed = []
    for tool in ("iptables", "ip6tables"):
        if shutil.which(tool) is None:
            continue
        listing = subprocess.run(
            [tool, "-S", "INPUT"], capture_output=True, text=True, timeout=30, check=False
        )
        for rule in door_rules(listing.stdout if listing.returncode == 0 else ""):
            done = subprocess.run([tool, "-D", *rule], capture_output=True, timeout=30, check=False)
            if done.returncode == 0:
                closed.append(f"{tool} {' '.join(rule)}")
    return closed
