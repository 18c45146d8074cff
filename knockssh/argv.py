"""A small command-line parser: argparse costs more start-up time than the whole
ProxyCommand path, and our grammar is tiny."""

from __future__ import annotations

from .errors import UsageError


def parse(
    args: list[str], flags: dict[str, str], options: dict[str, str]
) -> tuple[dict[str, object], list[str]]:
    """Split ``args`` into options and positionals.

    ``flags`` and ``options`` map every spelling (``-v``, ``--verbose``) to a key;
    flags count their occurrences, options take a value (``--x V`` or ``--x=V``).
    ``--`` ends option parsing; a lone ``-`` is a positional.
    """
    found: dict[str, object] = {}
    positionals: list[str] = []
    it = iter(args)
    for arg in it:
        if arg == "--":
            positionals.extend(it)
            break
        if not arg.startswith("-") or arg == "-" or _is_number(arg):
            positionals.append(arg)
            continue
        name, eq, value = arg.partition("=")
        if name in flags and not eq:
            key = flags[name]
            found[key] = int(found.get(key, 0)) + 1  # type: ignore[call-overload]
        elif name in options:
            if not eq:
                value = next(it, None)  # type: ignore[assignment]
                if value is None:
                    raise UsageError(f"option {name} needs a value")
            found[options[name]] = value
        elif len(arg) > 2 and arg[1] != "-" and all("-" + c in flags for c in arg[1:]):
            for c in arg[1:]:  # bundled short flags: -vv
                key = flags["-" + c]
                found[key] = int(found.get(key, 0)) + 1  # type: ignore[call-overload]
        else:
            raise UsageError(f"unknown option {name}")
    return found, positionals


def _is_number(arg: str) -> bool:
    return arg[1:].isdigit()  # "-1" as in --offset -1


def integer(value: object, what: str) -> int:
    try:
        return int(str(value), 10)
    except ValueError:
        raise UsageError(f"{what} must be a whole number, not {value!r}") from None
