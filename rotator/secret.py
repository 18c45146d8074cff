"""The one rule for reading a shared secret, at both ends (pure).

Wherever a secret comes from (a file, standard input, a variable, a systemd
credential, a command's first line), it is read the same way, so that the
client and the server derive the same sequences from what a user pasted:

- UTF-8 text (the scheme hashes its UTF-8 bytes); a leading byte-order mark is
  dropped (Windows editors write one);
- surrounding whitespace is dropped: the line end (LF or CRLF), blank lines
  after it, and spaces or tabs around it (systemd's EnvironmentFile= drops them
  from a value too, so the server never saw them);
- what is left is one line of printable characters: a second line, a NUL, a tab
  or another control character inside is refused, never silently kept or cut.
"""

from __future__ import annotations

from .scheme import ENV_NAMES, SchemeError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

BOM = "\ufeff"
AROUND = " \t\r\n"
LIMIT = 64 * 1024  # bytes read at most for a secret, wherever from: /dev/zero is not one


def environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with ``KNOCKD_ROTATOR_SECRET``, when set, read by the rule above (the
    rotator and ``knockssh generate`` take their settings from it)."""
    values = dict(env)
    name = ENV_NAMES["secret"]
    if values.get(name):
        values[name] = read_secret(values[name], name)
    return values


def read_secret(data: bytes | str, source: str) -> str:
    """The secret in ``data``, read by the rule above; SchemeError naming ``source``."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise SchemeError(f"{source}: the secret is not valid UTF-8 text") from None
    else:
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes from the environment
            raise SchemeError(f"{source}: the secret is not valid UTF-8 text") from None
        text = data
    text = text.removeprefix(BOM).strip(AROUND)
    if not text:
        raise SchemeError(f"{source}: the secret is empty or blank")
    if "\n" in text or "\r" in text:
        raise SchemeError(f"{source}: the secret must be one line")
    if not text.isprintable():
        raise SchemeError(f"{source}: the secret holds a control character (a NUL, a tab...)")
    return text
