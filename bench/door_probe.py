"""Knock, then try to connect every millisecond: when does the door open, counted
from the first knock and from the last? Run in the lab's client namespace:

    door_probe.py SERVER_IP "P1:tcp P2:tcp ..." DELAY_MS   -> "since_first since_last"
"""

from __future__ import annotations

import select
import sys
import time
from _socket import SO_ERROR, SOL_SOCKET, socket

from knockssh.knock import send_knocks
from rotator.scheme import parse_sequence

PORT = 22
LIMIT = 3.0  # seconds after the last knock
MAX_PENDING = 50


def main(argv: list[str]) -> int:
    address = (argv[0], PORT)
    first_knock = time.monotonic()
    send_knocks(2, address, parse_sequence(argv[1]), float(argv[2]) / 1000)
    last_knock = time.monotonic()
    pending: dict[int, socket] = {}
    poller = select.poll()
    while time.monotonic() - last_knock < LIMIT:
        s = socket(2, 1)
        s.setblocking(False)
        s.connect_ex(address)
        pending[s.fileno()] = s
        poller.register(s, select.POLLOUT)
        if len(pending) > MAX_PENDING:
            oldest = next(iter(pending))
            poller.unregister(oldest)
            pending.pop(oldest).close()
        for fd, _ in poller.poll(1):
            if pending[fd].getsockopt(SOL_SOCKET, SO_ERROR) == 0:
                now = time.monotonic()
                print(now - first_knock, now - last_knock)
                return 0
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
