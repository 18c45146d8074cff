"""``knockssh-rotator confirm``: keep what init's script set up, by stopping the
revert it armed. Run it from a new ssh session that a knock let in: that session is
the proof that the setup works."""

from __future__ import annotations

import argparse

from .. import server_setup
from ..arguments import Out, Parser
from ..systemd import systemctl


def confirm_parser() -> argparse.ArgumentParser:
    return Parser(
        prog="knockssh-rotator confirm",
        description="Keep the setup of 'knockssh-rotator init | sh': stop the revert it "
        "armed. Run it from a new ssh session through knockssh.",
    )


def main(argv: list[str]) -> int:
    import shutil

    confirm_parser().parse_args(argv)
    out = Out(False, False)
    if shutil.which("systemctl") is None:
        out.error(
            "systemctl not found: init arms its revert under systemd only; nothing to confirm"
        )
        return 1
    timer = f"{server_setup.REVERT_UNIT}.timer"
    active = systemctl("is-active", "--quiet", timer)
    if active.returncode != 0:
        out.error(f"no revert is pending ({timer} is not active): nothing to confirm")
        return 1
    stopped = systemctl("stop", timer)
    if stopped.returncode != 0:
        out.error(f"could not stop {timer}: {stopped.stderr.strip() or 'systemctl failed'}")
        return 1
    out.say("confirmed: the setup stays (the revert is disarmed)")
    return 0
