"""A model of how knockd 0.8 matches knocks from one source address, written from
shared/notes/knockd-matching.md, to check the plan's clearing packets against.

Only what the plan relies on: one attempt per (source, door); each captured
packet first drops completed and failed attempts; then a packet that is an
attempt's next step advances it, any other captured packet fails it; with no
attempt, a door's first step starts one. Packets to ports in no door's sequence
are not captured at all (knockd's pcap filter).
"""


class Knockd:
    def __init__(self, doors):
        self.doors = [tuple(d) for d in doors]
        self.attempts = []  # [door index, stage]; stage -1 = failed
        self.opened = []

    def captured(self, packet):
        return any(packet in door for door in self.doors)

    def packet(self, packet):
        if not self.captured(packet):
            return
        self.attempts = [a for a in self.attempts if 0 <= a[1] < len(self.doors[a[0]])]
        if self.attempts:
            for a in self.attempts:
                door = self.doors[a[0]]
                if door[a[1]] == packet:
                    a[1] += 1
                    if a[1] == len(door):
                        self.opened.append(a[0])
                else:
                    a[1] = -1
            return
        for i, door in enumerate(self.doors):
            if door[0] == packet:
                self.attempts.append([i, 1])
                if len(door) == 1:
                    self.opened.append(i)

    def send(self, packets):
        for p in packets:
            self.packet(p)
        return self
