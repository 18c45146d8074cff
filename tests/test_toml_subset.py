"""The mapping file's TOML fast path: same result as tomllib, or None (tomllib decides)."""

import sys
from pathlib import Path

import pytest
from helpers import ROOT
from hypothesis import given, settings
from hypothesis import strategies as st

from knockssh.toml_subset import loads

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def typed(value):
    """repr tells 1 from 1.0 and True from 1, which == does not."""
    return repr(value)


def agrees(doc: str) -> object:
    quick = loads(doc)
    try:
        expected = tomllib.loads(doc)
    except tomllib.TOMLDecodeError:
        assert quick is None, f"accepted what tomllib refuses: {doc!r}"
        return None
    assert quick is None or typed(quick) == typed(expected), doc
    return quick


def test_the_example_and_lab_files_take_the_fast_path():
    for text in (
        Path(ROOT, "examples", "hosts.toml").read_text(),
        '[defaults]\nperiod = 21600\nconnect_timeout = 6\n\n[[host]]\nmatch = ["198.18.0.1", '
        '"knocked.lab", "!open.lab"]\nservice = "ssh"\nsecret_file = "/run/x/secret"\n',
    ):
        quick = agrees(text)
        assert quick is not None and quick == tomllib.loads(text)


@pytest.mark.parametrize(
    "doc",
    [
        'a = "x\\ty"',  # escapes
        'a = """x"""',
        "a = '''x'''",
        "a.b = 1",
        '"a" = 1',
        "a = 1_000",
        "a = 0x10",
        "a = 1e3",
        "a = inf",
        "a = 1979-05-27",
        "a = [\n 1,\n]",
        "a = [[1]]",
        "a = {b = 1}",
        "[ t ]",
        "[a.b]",
        "a = 1\na = 2",
        "[t]\n[t]",
        "[[t]]\n[t]",
        "t = 1\n[t]",
        "a = 01",
        "a = 1.",
        "a = .5",
        "a = 1 b = 2",
        "a = \x01",
        'a = "x\x7f"',
        "a = 1\r",
        "a = 1\rb = 2",
    ],
)
def test_outside_the_subset_is_left_to_tomllib(doc):
    assert loads(doc) is None
    agrees(doc)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        ("a = -0\nb = +1.50\nc = true\nd = []", {"a": 0, "b": 1.5, "c": True, "d": []}),
        ("a = ['x#y', \"q'r\", 3,]  # note", {"a": ["x#y", "q'r", 3]}),
        ("[[h]]\nk = 1\r\n[[h]]\r\nk = 2\n", {"h": [{"k": 1}, {"k": 2}]}),
        ("\tkey-1_A = 'c:\\\\path'\t# tab", {"key-1_A": "c:\\\\path"}),
        ('s = "caf\u00e9 \u00a0"', {"s": "caf\u00e9 \u00a0"}),
    ],
)
def test_inside_the_subset(doc, expected):
    assert loads(doc) == expected
    agrees(doc)


KEYS = st.sampled_from(["a", "b", "match", "x-y_1", "0", "a.b", '"q"', "", "a b"])
TEXT = st.text(alphabet=st.sampled_from(list("ab #'\"\\=,[]\t\x00\x7f\u00e9\u2028")), max_size=6)
SCALARS = st.one_of(
    TEXT.map(lambda t: f'"{t}"'),
    TEXT.map(lambda t: f"'{t}'"),
    st.from_regex(r"\A[+-]?[0-9_]{0,4}(\.[0-9]{0,3})?([eE][0-9])?\Z", fullmatch=True),
    st.sampled_from(["true", "false", "True", "nan", "inf", "0x1F", "1979-05-27", ""]),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
    st.lists(SCALARS, max_size=3).map(lambda xs: "[" + ",".join(xs) + ",]"),
    st.lists(SCALARS, max_size=2).map(lambda xs: "[\n" + ",\n".join(xs) + "\n]"),
)
LINES = st.one_of(
    st.tuples(
        KEYS, st.sampled_from([" = ", "=", " =\t", " "]), VALUES, st.sampled_from(["", " # c", "x"])
    ).map("".join),
    st.sampled_from(
        ["[defaults]", "[[host]]", "[host]", "[ t ]", "[[host]", "[a]]", "# c", "", "  "]
    ),
    TEXT,
)


@settings(max_examples=400, deadline=None)
@given(st.lists(LINES, max_size=8), st.sampled_from(["\n", "\r\n", "\r"]))
def test_never_disagrees_with_tomllib(lines, newline):
    agrees(newline.join(lines))


PLAIN_SCALARS = st.one_of(
    st.text(
        alphabet=st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters='"\\')
    ).map(lambda t: f'"{t}"'),
    st.integers(-(10**6), 10**6).map(str),
    st.floats(0, 1000, allow_nan=False).map(lambda f: f"{f:.3f}"),
    st.booleans().map(lambda b: str(b).lower()),
)
PLAIN_LINES = st.one_of(
    st.tuples(
        st.sampled_from(["period", "match", "service", "k1"]),
        st.one_of(
            PLAIN_SCALARS, st.lists(PLAIN_SCALARS, max_size=3).map(", ".join).map("[{}]".format)
        ),
    ).map(" = ".join),
    st.sampled_from(["[defaults]", "[[host]]", "# comment", ""]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(PLAIN_LINES, max_size=10))
def test_plain_documents_take_the_fast_path(lines):
    doc = "\n".join(lines)
    try:
        expected = tomllib.loads(doc)
    except tomllib.TOMLDecodeError:
        assert loads(doc) is None
        return
    assert typed(loads(doc)) == typed(expected)  # valid and plain: never left to tomllib
