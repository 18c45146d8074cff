#!/usr/bin/env python3
"""cpu_of.py FILE CMD...: run CMD with our stdin/stdout, then append its CPU seconds
(user + system) to FILE. As a ProxyCommand it measures the proxy alone: it only
waits, while CMD carries the connection."""

import os
import signal
import sys

out, argv = sys.argv[1], sys.argv[2:]
pid = os.fork()
if pid == 0:
    os.execvp(argv[0], argv)


# ssh sends its ProxyCommand SIGHUP on exit: pass it on, and outlive CMD to report
def pass_on(*_: object) -> None:
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        pass  # CMD is already gone


signal.signal(signal.SIGHUP, pass_on)
_, status, usage = os.wait4(pid, 0)
with open(out, "a") as f:
    f.write(f"{usage.ru_utime + usage.ru_stime}\n")
sys.exit(os.waitstatus_to_exitcode(status))
