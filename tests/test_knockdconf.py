"""knockd.conf parsing and exact rewriting (pure)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rotator import knockdconf
from rotator.knockdconf import ConfError
from rotator.rotation import Phase, extra_runs, next_change, next_regular_run, phase, rotate
from rotator.scheme import SchemeError, Settings, derive, knockd_form

S = Settings("0123456789abc", 10, tuple(range(2000, 65536)), 21600, 0, 3600)
AT = 1700000000
START = 1699984800


def seq(name, start=START):
    return knockd_form(derive(S, name, start))


SHAPES = {
    "lf": "[options]\n\tUseSyslog\n\n[ssh_ROTATOR]\n\tsequence = 1:tcp,2:tcp\n\ttcpflags = syn\n",
    "crlf": "[options]\r\n  logfile = /var/log/knockd.log\r\n[ssh_ROTATOR]\r\nSequence=1,2\r\n",
    "no final newline": "[ssh_ROTATOR]\n  SEQUENCE   =   7:udp  ",
    "comments and case": (
        "# hi\n  # [fake_ROTATOR]\n[ssh_ROTATOR]\n  # sequence = 9\n  SeQuEnCe\t=\t3:tcp\n"
    ),
    "static after rotator": "[a_ROTATOR]\nsequence = 1\n[static]\nsequence = 7000,8000:udp\n",
    "two rotators": "[a_ROTATOR]\nsequence=1\n\n[b_ROTATOR]\n  sequence = 2\n",
}


@pytest.mark.parametrize("name", SHAPES)
def test_rewrite_changes_only_rotator_values(name):
    text = SHAPES[name]
    result = rotate(text, S, AT)
    out = result.text
    assert result.sections and {c.section for c in result.changes} == set(result.sections)
    old_lines, new_lines = text.split("\n"), out.split("\n")
    assert len(old_lines) == len(new_lines)
    for old, new in zip(old_lines, new_lines):
        if old == new:
            continue
        section = [c for c in result.changes if c.new in new]
        assert len(section) == 1
        # what surrounds the value is byte-identical
        prefix = new[: new.index(section[0].new)]
        assert old.startswith(prefix) and new.endswith(old[len(old.rstrip(" \t\r")) :])
    assert "static" not in name or "sequence = 7000,8000:udp" in out
    # idempotent: a second run changes nothing
    again = rotate(out, S, AT)
    assert again.text == out and again.changes == ()


def test_rewrite_exact_bytes():
    text = (
        "[options]\r\n  UseSyslog\r\n[ssh_ROTATOR]\r\n  Sequence   =  1:tcp  \r\n[x]\r\nsequence=5"
    )
    out = rotate(text, S, AT).text
    assert out == text.replace("1:tcp", seq("ssh_ROTATOR"))


def test_static_section_after_rotator_untouched():
    text = SHAPES["static after rotator"]
    out = rotate(text, S, AT).text
    assert out.endswith("[static]\nsequence = 7000,8000:udp\n")


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("sequence = 1\n", 1, "belong to a section"),
        ("[]\n", 1, "bad section name"),
        ("[a_ROTATOR]\nsequence = 1\nbogus = 2\n", 3, "unknown directive"),
        ("[options]\nfrobnicate = 1\n", 2, "unknown option"),
        ("[a_ROTATOR]\nsequence 1\n", 2, "syntax error"),
        ("[a_ROTATOR]\ntcpflags=syn\n", 1, "no sequence"),
        ("[a]\nsequence = 70000\n", 2, "invalid"),
        ("[a_ROTATOR]\nsequence =\n", 2, "invalid"),
        ("[a]\nsequence = 1:icmp\n", 2, "unknown protocol"),
        ("[a]\nsequence = " + ",".join(["1"] * 33) + "\n", 2, "too many"),
        ("[a]\nsequence = 1\ntcpflags = syn,bogus\n", 3, "tcp flag"),
        ("[a_ROTATOR]\nsequence = 1\nsequence = 2\n", 1, "exactly one sequence"),
        ("[a_ROTATOR]\nsequence = 1\n[a_ROTATOR]\nsequence = 2\n", 3, "same sequence"),
    ],
)
def test_refusals_name_the_line(text, line, message):
    with pytest.raises(ConfError, match=message) as info:
        rotate(text, S, AT)
    assert info.value.line == line
    assert str(info.value).startswith(f"line {line}:")


def test_no_rotator_section():
    text = "[options]\nUseSyslog\n[static]\nsequence=1,2,3\n"
    result = rotate(text, S, AT)
    assert result.sections == () and result.text == text


def test_knockd_trims_like_c_isspace():
    # a non-breaking space is not whitespace to knockd: the key is unknown
    with pytest.raises(ConfError):
        knockdconf.parse("[a]\n\u00a0sequence = 1\n")
    assert knockdconf.parse("[a]\n\v sequence = 1 \f\n")[0].find("SEQUENCE")[0].value == "1"


def test_grace_twin_added_then_removed():
    text = (
        "[ssh_ROTATOR]\n  sequence = 1\n  tcpflags = syn\n  start_command = x %IP%\n"
        "\n[s]\nsequence=9\n"
    )
    in_grace = rotate(text, S, START + 60, grace=300)
    assert in_grace.grace_until == START + 300
    twin = [s for s in knockdconf.parse(in_grace.text) if s.name == "ssh_ROTATOR_GRACE"]
    assert twin and twin[0].find("SEQUENCE")[0].value == seq("ssh_ROTATOR", START - 21600)
    assert twin[0].find("START_COMMAND")[0].value == "x %IP%"
    # the twin is not itself a rotator section, and a later run takes it away
    after = rotate(in_grace.text, S, START + 301, grace=300)
    assert after.grace_until is None
    assert after.text == rotate(text, S, START + 301).text
    assert knockdconf.strip_grace(in_grace.text) == rotate(text, S, START + 60).text


def test_hand_edit_after_grace_block_is_refused():
    text = "[ssh_ROTATOR]\nsequence = 1\n"
    with_twin = rotate(text, S, START + 1, grace=300).text + "[new]\nsequence = 5\n"
    with pytest.raises(ConfError, match="after knockssh-rotator's grace"):
        rotate(with_twin, S, START + 2, grace=300)


def test_unknowable_period_writes_nothing():
    s = Settings("0123456789abc", 15, tuple(range(65530, 65537)), 60)
    with pytest.raises(SchemeError, match="--offset"):
        rotate("[ssh_ROTATOR]\nsequence=1\n", s, 0)


def test_extra_runs():
    s = S.replace(period=21600, server_interval=3600)
    assert extra_runs(START + 100, s) == []
    assert extra_runs(START + 21600 - 100, s) == [START + 21600]
    assert extra_runs(START + 21600 - 100, s, grace=600) == [START + 21600, START + 21600 + 600]
    assert extra_runs(START + 10, s, grace=600) == [START + 600]


def test_regular_runs_fall_on_the_interval_grid():
    s = S.replace(server_interval=3600)
    assert next_regular_run(7200, s) == 10800 and next_regular_run(10799.5, s) == 10800
    assert {next_regular_run(7200 + k * 97, s) for k in range(37)} == {10800}  # one unit


@given(st.lists(st.sampled_from(["\n", "\r\n", " ", "\t", "# c", "x", "[", "]", "="]), max_size=30))
def test_rewrite_never_touches_other_bytes(noise):
    tail = "".join(noise)
    text = "[ssh_ROTATOR]\nsequence = 1\n# " + tail.replace("\n", "\n# ")
    try:
        out = rotate(text, S, AT).text
    except ConfError:
        return
    assert out == text.replace("sequence = 1", "sequence = " + seq("ssh_ROTATOR"), 1)


def test_a_follower_changes_phase_at_each_boundary_and_grace_end():
    """What --follow waits for: the grace's end, then the boundary; nothing between."""
    assert phase(100, 60, 10) == Phase(60, False)
    assert phase(61, 60, 10) == Phase(60, True) and next_change(61, 60, 10) == 70
    assert phase(70, 60, 10) == Phase(60, False) and next_change(70, 60, 10) == 120
    assert next_change(119.99, 60, 10) == 120 and phase(120, 60, 10) == Phase(120, True)
    assert next_change(61, 60) == 120 and phase(61, 60) == Phase(60, False)


@given(st.floats(0, 2e9), st.integers(1, 10**6), st.integers(0, 10**6))
def test_the_phase_holds_until_next_change(at, period, grace):
    grace = grace % period
    change = next_change(at, period, grace)
    assert at < change <= at + period
    middle = at + (change - at) / 2
    assert middle >= change or phase(middle, period, grace) == phase(at, period, grace)
    assert phase(change, period, grace) != phase(at, period, grace)
