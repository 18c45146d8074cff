"""knockd.conf, parsed as knockd 0.8 parses it and rewritten byte for byte (pure).

Only the value of each rotator section's ``sequence`` directive changes; every
other byte (comments, blank lines, key spelling, spacing, CRLF, a missing final
newline) stays. Grace twins (the previous period's sequence kept for a while) are
blocks that this module adds and removes between marker comments.
"""

from __future__ import annotations

from typing import NamedTuple

from .scheme import MAX_LENGTH, MAX_PORT, SUFFIX

WS = " \t\n\v\f\r"  # C isspace(): what knockd's trim() removes
OPTIONS_KEYS = {"LOGFILE", "PIDFILE", "INTERFACE"}
DOOR_KEYS = {
    "TARGET",
    "SEQUENCE",
    "ONE_TIME_SEQUENCES",
    "SEQ_TIMEOUT",
    "TIMEOUT",
    "START_COMMAND",
    "COMMAND",
    "START_COMMAND_6",
    "CMD_TIMEOUT",
    "STOP_COMMAND",
    "STOP_COMMAND_6",
    "TCPFLAGS",
}
TCP_FLAGS = {"FIN", "SYN", "RST", "PSH", "ACK", "URG"}
GRACE_BEGIN = "# knockssh-rotator grace twin, removed automatically: begin"
GRACE_END = "# knockssh-rotator grace twin: end"
GRACE_SUFFIX = "_GRACE"
JOINED = "(file had no final newline)"


class ConfError(ValueError):
    def __init__(self, line: int, message: str) -> None:
        super().__init__(f"line {line}: {message}")
        self.line = line


class Directive(NamedTuple):
    line: int  # 0-based index into the line list
    key: str  # upper-case, as knockd compares it
    value: str


class Section(NamedTuple):
    name: str
    line: int  # 0-based
    directives: tuple[Directive, ...]
    end: int  # 0-based index one past the section's last line

    @property
    def is_rotator(self) -> bool:
        return self.name.endswith(SUFFIX)

    def find(self, key: str) -> list[Directive]:
        return [d for d in self.directives if d.key == key]


def split_lines(text: str) -> list[str]:
    """Lines without their ``\\n``; ``"\\n".join`` gives the text back exactly."""
    return text.split("\n")


def parse(text: str) -> list[Section]:
    """Sections of a knockd.conf; ConfError (1-based line) where knockd would refuse it."""
    lines = split_lines(text)
    sections: list[Section] = []
    name: str | None = None
    start = 0
    directives: list[Directive] = []

    def close(end: int) -> None:
        if name is not None:
            sections.append(Section(name, start, tuple(directives), end))

    for i, raw in enumerate(lines):
        line = raw.strip(WS)
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]") and len(line) >= 2:
            close(i)
            name, start, directives = line[1:-1], i, []
            if not name:
                raise ConfError(i + 1, "bad section name")
            continue
        if name is None:
            raise ConfError(i + 1, "all directives must belong to a section")
        key, eq, value = line.partition("=")
        key = key.strip(WS).upper()
        value = value.strip(WS)
        if not eq:
            if key != "USESYSLOG":  # not shown: a secret pasted here would reach the journal
                raise ConfError(i + 1, "syntax error: the line is not KEY = VALUE (not shown)")
        elif name == "options":
            if key not in OPTIONS_KEYS:
                raise ConfError(i + 1, f"syntax error: unknown option {_shown_key(key)}")
        elif key not in DOOR_KEYS:
            raise ConfError(i + 1, f"syntax error: unknown directive {_shown_key(key)}")
        elif key == "SEQUENCE":
            problem = check_sequence(value)
            if problem:
                raise ConfError(i + 1, f"section {name}: {problem}")
        elif key == "TCPFLAGS":
            for flag in value.upper().split(","):
                if flag.lstrip("!") not in TCP_FLAGS:
                    raise ConfError(i + 1, f"unrecognized tcp flag {flag!r}")
        directives.append(Directive(i, key, value))
    close(len(lines))
    for section in sections:
        if section.name != "options" and not (
            section.find("SEQUENCE") or section.find("ONE_TIME_SEQUENCES")
        ):
            raise ConfError(section.line + 1, f"section {section.name} has no sequence")
    return sections


def _shown_key(key: str) -> str:
    """An unknown key as a message may show it: a word (a misspelt directive), else
    not at all (it could be part of a secret pasted into the file)."""
    word = key.lower()
    if 0 < len(word) <= 20 and all("a" <= c <= "z" or c == "_" for c in word):
        return repr(word)
    return "(not shown: it could be a secret)"


def _is_utf8(text: str) -> bool:
    """False for text read with surrogateescape from bytes that are not UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def log_file(sections: list[Section]) -> str | None:
    """The LogFile of a parsed knockd.conf's options, if it names one."""
    for section in sections:
        if section.name == "options":
            found = section.find("LOGFILE")
            if found:
                return found[-1].value
    return None


def interface_of(sections: list[Section]) -> str:
    """The interface a parsed knockd.conf makes knockd listen on (knockd's default:
    eth0)."""
    for section in sections:
        if section.name == "options" and section.find("INTERFACE"):
            return section.find("INTERFACE")[-1].value
    return "eth0"


KNOCKD_VALUED_LETTERS = "cigp"  # knockd 0.8's options that take a value (-c FILE…)


def interface_on_command_line(argv: list[str]) -> str | None:
    """The interface knockd's own command line names, read as getopt does (``-i IF``,
    ``-iIF``, ``-di IF``, ``--interface IF``, ``--interface=IF``; the last one wins),
    which overrides knockd.conf's; None if it names none."""
    found, i = None, 0
    while i < len(argv):
        word, following = argv[i], argv[i + 1] if i + 1 < len(argv) else None
        i += 1
        if word == "--":
            break
        if word.startswith("--"):
            name, eq, value = word[2:].partition("=")
            if name in ("config", "interface", "pidfile", "logfile") and not eq:
                value, i = following or "", i + 1
            if name == "interface":
                found = value or found
        elif word.startswith("-") and len(word) > 1:
            for at, letter in enumerate(word[1:], 2):
                if letter in KNOCKD_VALUED_LETTERS:
                    value = word[at:] or following or ""
                    i += 0 if word[at:] else 1
                    found = value if letter == "i" and value else found
                    break
    return found


def check_sequence(value: str) -> str | None:
    if not value.isascii() and not _is_utf8(value):
        return "the sequence is not valid UTF-8 text"
    items = value.split(",")
    if len(items) > MAX_LENGTH:
        return f"too many ports in knock sequence ({len(items)} > {MAX_LENGTH})"
    for item in items:
        port, _, proto = item.partition(":")
        port = port.strip(WS)
        if not port.isdigit() or not port.isascii() or not 0 < int(port) <= MAX_PORT:
            return f"port {port!r} is invalid"
        if proto and proto.strip(WS).upper() not in ("TCP", "UDP"):
            return f"unknown protocol {proto.strip(WS)!r} in knock sequence"
    return None


def rotator_sections(sections: list[Section]) -> list[Section]:
    """Rotator sections, checked: exactly one sequence each, no one-time sequences."""
    found = []
    for section in sections:
        if not section.is_rotator:
            continue
        if section.name == SUFFIX:
            raise ConfError(section.line + 1, f"section {SUFFIX}: no service name before {SUFFIX}")
        if not section.name.isascii() and not _is_utf8(section.name):
            raise ConfError(section.line + 1, "the section name is not valid UTF-8 text")
        if len(section.find("SEQUENCE")) != 1:
            raise ConfError(
                section.line + 1, f"rotator section {section.name} needs exactly one sequence"
            )
        if section.find("ONE_TIME_SEQUENCES"):
            raise ConfError(
                section.line + 1,
                f"rotator section {section.name} cannot also use one_time_sequences",
            )
        found.append(section)
    return found


def _replace_value(line: str, value: str) -> str:
    """The line with its value (never empty: parse() refused an empty sequence)
    replaced, the space around it kept."""
    eq = line.index("=")
    rest = line[eq + 1 :]
    body = rest.strip(WS)
    lead = len(rest) - len(rest.lstrip(WS))
    start = eq + 1 + lead
    return line[:start] + value + line[start + len(body) :]


def rewrite(text: str, sequences: dict[str, str]) -> str:
    """Set the sequence of each rotator section named in ``sequences`` (knockd form)."""
    lines = split_lines(text)
    for section in rotator_sections(parse(text)):
        if section.name in sequences:
            (directive,) = section.find("SEQUENCE")
            lines[directive.line] = _replace_value(lines[directive.line], sequences[section.name])
    return "\n".join(lines)


def strip_grace(text: str) -> str:
    """Remove the grace blocks that add_grace appended, restoring the text exactly."""
    at = text.find(GRACE_BEGIN)
    if at < 0:
        return text
    line_start = text.rfind("\n", 0, at) + 1
    if text[line_start:at].strip(WS):
        raise ConfError(text.count("\n", 0, at) + 1, "grace marker inside a line")
    inside = False
    for offset, line in enumerate(split_lines(text[line_start:])):
        bare = line.strip(WS)
        if bare.startswith(GRACE_BEGIN) and not inside:
            inside = True
        elif bare == GRACE_END and inside:
            inside = False
        elif not inside and bare:
            raise ConfError(
                text.count("\n", 0, line_start) + offset + 1,
                "text after knockssh-rotator's grace blocks: move it above them",
            )
    head = text[:line_start]
    if JOINED in text[at : text.find("\n", at) + 1 or len(text)]:
        head = head[:-2] if head.endswith("\r\n") else head[:-1]
    return head


def add_grace(text: str, twins: dict[str, str], until: int) -> str:
    """Append, for each rotator section in ``twins``, a copy named NAME_GRACE that
    carries the given (previous) sequence; ``until`` is when a later run removes it."""
    lines = split_lines(text)
    newline = "\r\n" if lines and lines[0].endswith("\r") else "\n"
    blocks = []
    for section in rotator_sections(parse(text)):
        if section.name not in twins:
            continue
        body = [line.rstrip("\r") for line in lines[section.line + 1 : section.end]]
        (directive,) = section.find("SEQUENCE")
        body[directive.line - section.line - 1] = _replace_value(
            lines[directive.line].rstrip("\r"), twins[section.name]
        )
        while body and not body[-1].strip(WS):
            body.pop()
        blocks.append(
            [
                f"{GRACE_BEGIN} {section.name} until {until}",
                f"[{section.name}{GRACE_SUFFIX}]",
                *body,
                GRACE_END,
            ]
        )
    if not blocks:
        return text
    tail = "" if text.endswith("\n") or not text else newline
    if tail:
        blocks[0][0] += " " + JOINED
    added = newline.join(newline.join(b) for b in blocks)
    return text + tail + added + newline


def _section_named(sections: list[Section], name: str) -> Section | None:
    return next((s for s in sections if s.name.lower() == name.lower()), None)


def with_client(text: str, service: str, clients: frozenset[str] = frozenset()) -> str:
    """``text`` (without grace blocks) with a door for ``service``: a ``[SERVICE_ROTATOR]``
    section at the end, a copy of the first rotator section that is not a client's
    own (its commands, timeouts and flags; the sequence is set by the rotation).
    ConfError if there is no rotator section to copy, or one of that name exists."""
    base = strip_grace(text)
    sections = parse(base)
    rotators = rotator_sections(sections)
    name = service + SUFFIX
    for taken in (service, name, name + GRACE_SUFFIX):
        clash = _section_named(sections, taken)
        if clash is not None:
            raise ConfError(clash.line + 1, f"section {clash.name} exists already")
    hosts = [s for s in rotators if s.name[: -len(SUFFIX)] not in clients] or rotators
    if not hosts:
        raise ConfError(1, f"no *{SUFFIX} section to model a client's door on (run init first)")
    template = hosts[0]
    lines = split_lines(base)
    newline = "\r\n" if lines and lines[0].endswith("\r") else "\n"
    last = max(d.line for d in template.directives)
    body = [line.rstrip("\r") for line in lines[template.line + 1 : last + 1]]
    joined = newline.join(["", f"[{name}]", *body]) + newline
    if base and not base.endswith("\n"):
        joined = newline + joined
    return base + joined


def without_client(text: str, service: str) -> str | None:
    """``text`` (without grace blocks) without the ``[SERVICE_ROTATOR]`` section: its
    header, its directives and the lines between them, and one blank line before it;
    None if there is no such section."""
    base = strip_grace(text)
    found = _section_named(rotator_sections(parse(base)), service + SUFFIX)
    if found is None:
        return None
    lines = split_lines(base)
    start, last = found.line, max(d.line for d in found.directives)
    if start > 0 and not lines[start - 1].strip(WS):
        start -= 1
    del lines[start : last + 1]
    return "\n".join(lines)
