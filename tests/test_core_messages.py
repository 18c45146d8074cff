"""Every refusal of the pure core, word for word, and every limit at its edge.

A user reads these messages in a terminal or a journal: each one names the file,
line, setting or item at fault. Tested exactly, so that a change to one is a
decision (the mutation run, ``bash .ci/mutation``, found them loosely tested)."""

import pytest

from rotator import knockdconf, scheme
from rotator.knockdconf import ConfError
from rotator.scheme import SchemeError, Settings

SECRET = "0123456789abc"
PORTS = scheme.parse_port_spec("2000-65535")
NAMED = scheme.ENV_NAMES


def refusal(settings, named=NAMED):
    with pytest.raises(SchemeError) as caught:
        scheme.validate(settings, named)
    return str(caught.value)


# -- scheme.validate ------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"secret": ""}, "KNOCKD_ROTATOR_SECRET: the shared secret is required"),
        ({"secret": "123456789"},
         "KNOCKD_ROTATOR_SECRET: the secret must be at least 10 characters long"),
        ({"secret": "Change-me-please"},
         "KNOCKD_ROTATOR_SECRET: this is the example's placeholder, not a secret: "
         "make one with `openssl rand -hex 64`"),
        ({"length": 4}, "KNOCKD_ROTATOR_LENGTH: sequence length 4 is below 5"),
        ({"length": 33}, "KNOCKD_ROTATOR_LENGTH: sequence length 33 is above knockd's limit of 32"),
        ({"ports": (2000,)}, "KNOCKD_ROTATOR_PORTS: the port list must hold at least 2 ports"),
        ({"period": 0}, "KNOCKD_ROTATOR_PERIOD_MODULO: period 0 must be from 1 to 1000000000 seconds"),
        ({"period": 10**9 + 1},
         "KNOCKD_ROTATOR_PERIOD_MODULO: period 1000000001 must be from 1 to 1000000000 seconds"),
        ({"proto_modulo": -1}, "KNOCKD_ROTATOR_PROTO_MODULO: proto_modulo -1 must be from 0 to 65536"),
        ({"proto_modulo": 65537},
         "KNOCKD_ROTATOR_PROTO_MODULO: proto_modulo 65537 must be from 0 to 65536"),
        ({"server_interval": 0}, "KNOCKD_ROTATOR_SERVER_INTERVAL: server interval 0 must be positive"),
        ({"server_interval": 10**9 + 1},
         "KNOCKD_ROTATOR_SERVER_INTERVAL: server interval 1000000001 must be positive"),
        ({"length": 5, "ports": tuple(range(1, 256))},
         "insufficient entropy: 39.97 bits < 40 (raise the length or add ports)"),
    ],
)  # fmt: skip
def test_validate_names_the_setting_and_says_why(changes, message):
    settings = Settings(SECRET, ports=PORTS).replace(**changes)
    assert refusal(settings) == message
    if ":" in message.split(" ")[0]:  # without names, the message alone
        assert refusal(settings, None) == message.split(": ", 1)[1]


@pytest.mark.parametrize(
    "changes",
    [
        {"length": 5, "ports": tuple(range(1, 257))},  # 40 bits exactly: enough
        {"period": 10**9},
        {"period": 1},
        {"proto_modulo": 65536},
        {"proto_modulo": 0},
        {"server_interval": 1},
        {"server_interval": 10**9},
        {"length": 32},
        {"secret": "0123456789"},
    ],
)
def test_validate_accepts_every_limit_itself(changes):
    assert scheme.validate(Settings(SECRET, ports=PORTS).replace(**changes)) == []


def test_few_ports_are_a_warning_not_an_error():
    few = Settings(SECRET, length=32, ports=(1, 2, 3))
    assert scheme.validate(few) == ["only 3 ports to choose from: this weakens the sequence"]
    assert scheme.validate(Settings(SECRET, length=32, ports=(1, 2, 3, 4))) == []


# -- scheme: numbers, text, environment, sequences --------------------------------


@pytest.mark.parametrize(
    "env, message",
    [
        ({"KNOCKD_ROTATOR_LENGTH": "ten"},
         "KNOCKD_ROTATOR_LENGTH='ten' is not a whole number (at most 12 digits)"),
        ({"KNOCKD_ROTATOR_PERIOD_MODULO": "1" * 24 + "x"},
         "KNOCKD_ROTATOR_PERIOD_MODULO='11111111111111111111...' is not a whole number "
         "(at most 12 digits)"),
        ({"KNOCKD_ROTATOR_PROTO_MODULO": "1" * 23 + "x"},
         f"KNOCKD_ROTATOR_PROTO_MODULO={'1' * 23 + 'x'!r} is not a whole number (at most 12 digits)"),
        ({"KNOCKD_ROTATOR_PORTS": "1-"},
         "KNOCKD_ROTATOR_PORTS: '' is not a port number in port list '1-'"),
        ({"KNOCKD_ROTATOR_SECRET": "a\udcff"},
         "KNOCKD_ROTATOR_SECRET is not valid UTF-8 text"),
    ],
)  # fmt: skip
def test_settings_from_env_names_the_variable(env, message):
    with pytest.raises(SchemeError) as caught:
        scheme.settings_from_env({"KNOCKD_ROTATOR_SECRET": SECRET, **env})
    assert str(caught.value) == message


def test_settings_from_env_takes_overrides_and_only_those_given():
    env = {"KNOCKD_ROTATOR_SECRET": SECRET, "KNOCKD_ROTATOR_PORTS": "bad"}
    got = scheme.settings_from_env(env, ports=(5, 6), length=None, period=60)
    assert (got.ports, got.length, got.period) == ((5, 6), 10, 60)
    env["KNOCKD_ROTATOR_LENGTH"] = "bad"
    assert scheme.settings_from_env(env, ports=(5, 6), length=7).length == 7


def test_period_start_floors_and_shifts():
    assert scheme.period_start(1999.9, 1000) == 1000
    assert scheme.period_start(-0.5, 1000) == -1000  # floor, not truncation
    assert scheme.period_start(10**15 + 0.5, 3) == (10**15 // 3) * 3
    assert scheme.period_start(2500, 1000, -2) == 0


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "empty knock sequence"),
        (" , ", "empty knock sequence"),
        (",".join(["1"] * 33), "33 knocks is above knockd's limit of 32"),
        ("1,0", "'0': port must be a number from 1 to 65535"),
        ("65536", "'65536': port must be a number from 1 to 65535"),
        ("x:tcp", "'x:tcp': port must be a number from 1 to 65535"),
        ("7:sctp", "'7:sctp': protocol must be tcp or udp"),
    ],
)
def test_parse_sequence_refusals(text, message):
    with pytest.raises(SchemeError) as caught:
        scheme.parse_sequence(text)
    assert str(caught.value) == message


def test_parse_sequence_edges_and_case():
    knocks = scheme.parse_sequence("1,65535:UDP 7:Tcp")
    assert scheme.knockd_form(knocks) == "1:tcp,65535:udp,7:tcp"
    assert len(scheme.parse_sequence(",".join(["1"] * 32))) == 32


def test_a_port_list_range_splits_at_its_first_dash():
    with pytest.raises(SchemeError) as caught:
        scheme.parse_port_spec("1-2-3")
    assert str(caught.value) == "'2-3' is not a port number in port list '1-2-3'"


def test_entropy_bits_of_one_port_is_none():
    assert scheme.entropy_bits(10, 1) == 0.0 and scheme.entropy_bits(10, 2) == 10.0


def test_port_list_index_error_says_so():
    with pytest.raises(IndexError, match=r"^port index out of range$"):
        scheme.parse_port_spec("1-3")[3]


def test_derive_refuses_port_65536_and_names_the_period():
    ports = scheme.parse_port_spec("65535-65536")
    settings = Settings(SECRET, length=32, ports=ports)
    with pytest.raises(SchemeError) as caught:
        for start in range(0, 21600 * 50, 21600):
            scheme.derive(settings, "ssh", start)
    assert str(caught.value).startswith("the sequence of ssh_ROTATOR for the period starting at ")
    assert str(caught.value).endswith(
        "would knock port 65536, which does not exist; use --offset to take another period"
    )
    top = Settings(SECRET, length=32, ports=scheme.parse_port_spec("65534-65535"))
    assert {k.port for k in scheme.derive(top, "ssh", 0)} <= {65534, 65535}  # 65535 is fine


# -- knockdconf.parse -------------------------------------------------------------


def conf_refusal(text, call=knockdconf.parse):
    with pytest.raises(ConfError) as caught:
        call(text)
    return str(caught.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("[]\n", "line 1: bad section name"),
        ("# c\n  sequence = 1\n", "line 2: all directives must belong to a section"),
        ("[options]\n  frob\n", "line 2: syntax error: the line is not KEY = VALUE (not shown)"),
        ("[options]\n  " + "ab12" * 16 + "=\n", "line 2: syntax error: unknown option (not shown: it could be a secret)"),
        ("[a]\n  sequence = 1\n  " + "a" * 21 + " = 1\n", "line 3: syntax error: unknown directive (not shown: it could be a secret)"),
        ("[options]\n  Frob = 1\n", "line 2: syntax error: unknown option 'frob'"),
        ("[a]\n  sequence = 1\n  Frob = 1\n", "line 3: syntax error: unknown directive 'frob'"),
        ("[a]\n  sequence = 0\n", "line 2: section a: port '0' is invalid"),
        ("[a]\n  sequence = 65536\n", "line 2: section a: port '65536' is invalid"),
        ("[a]\n  sequence = 1:sctp\n", "line 2: section a: unknown protocol 'sctp' in knock sequence"),
        ("[a]\n  sequence = 1: sctp \n", "line 2: section a: unknown protocol 'sctp' in knock sequence"),
        ("[a]\n  sequence = " + ",".join(["1"] * 33) + "\n",
         "line 2: section a: too many ports in knock sequence (33 > 32)"),
        ("[a]\n  sequence = 1,\udcff\n", "line 2: section a: the sequence is not valid UTF-8 text"),
        ("[a]\n  sequence = 1\n  tcpflags = syn,!ack,fun\n", "line 3: unrecognized tcp flag 'FUN'"),
        ("[options]\n  UseSyslog\n\n[a]\n  seq_timeout = 5\n", "line 4: section a has no sequence"),
        ("[a\n", "line 1: all directives must belong to a section"),
        ("a]\n", "line 1: all directives must belong to a section"),
    ],
)  # fmt: skip
def test_parse_refusals_name_the_line(text, message):
    assert conf_refusal(text) == message


def test_parse_keeps_lines_sections_and_values():
    text = "\n# c\n[options]\n\tUseSyslog\n[a]\n  Sequence =\t1:udp , 2 \v\n  tcpflags = syn,!ack\n"
    options, a = knockdconf.parse(text)
    assert (options.name, options.line, options.end) == ("options", 2, 4)
    assert (a.name, a.line, a.end) == ("a", 4, 8)
    assert a.directives[0] == knockdconf.Directive(5, "SEQUENCE", "1:udp , 2")
    assert knockdconf.parse("[a]\n one_time_sequences = /x")[0].end == 2
    assert knockdconf.check_sequence("1, 2 ,\t3:udp") is None
    assert knockdconf.check_sequence("1,65535") is None


# -- knockdconf.rotator_sections ------------------------------------------------


@pytest.mark.parametrize(
    "text, message",
    [
        ("[x]\n sequence = 1\n\n[_ROTATOR]\n sequence = 1\n",
         "line 4: section _ROTATOR: no service name before _ROTATOR"),
        ("[x]\n sequence = 1\n[\udcff_ROTATOR]\n sequence = 1\n",
         "line 3: the section name is not valid UTF-8 text"),
        ("[x]\n sequence = 1\n[s_ROTATOR]\n sequence = 1\n sequence = 2\n",
         "line 3: rotator section s_ROTATOR needs exactly one sequence"),
        ("[x]\n sequence = 1\n[s_ROTATOR]\n sequence = 1\n one_time_sequences = /x\n",
         "line 3: rotator section s_ROTATOR cannot also use one_time_sequences"),
    ],
)  # fmt: skip
def test_rotator_section_refusals_name_the_section_line(text, message):
    assert conf_refusal(text, lambda t: knockdconf.rotator_sections(knockdconf.parse(t))) == message


def test_a_non_ascii_utf8_section_name_is_fine():
    sections = knockdconf.parse("[é_ROTATOR]\n sequence = 1\n")
    assert [s.name for s in knockdconf.rotator_sections(sections)] == ["é_ROTATOR"]


# -- rewriting a value ----------------------------------------------------------


@pytest.mark.parametrize(
    "line, written",
    [
        ("  sequence = 1,2", "  sequence = 7:tcp"),
        ("  sequence=1,2", "  sequence=7:tcp"),
        ("  sequence =\t1,2\t", "  sequence =\t7:tcp\t"),
        ("sequence = 1 = 2", None),
    ],
)
def test_rewrite_replaces_only_the_value(line, written):
    text = f"[s_ROTATOR]\n{line}\n"
    if written is None:  # knockd takes the value after the first '=': not a sequence
        assert conf_refusal(text) == "line 2: section s_ROTATOR: port '1 = 2' is invalid"
        return
    assert knockdconf.rewrite(text, {"s_ROTATOR": "7:tcp"}) == f"[s_ROTATOR]\n{written}\n"


# -- grace blocks -----------------------------------------------------------------

BASE = "[s_ROTATOR]\n  sequence = 1,2\n  cmd_timeout = 5\n"


def test_strip_grace_of_text_without_blocks_is_the_text():
    for text in ("", "\n", BASE, "#\n" + BASE):
        assert knockdconf.strip_grace(text) == text


@pytest.mark.parametrize("base", [BASE, BASE.rstrip("\n"), "\n" + BASE, BASE.replace("\n", "\r\n")])
def test_add_then_strip_gives_the_text_back(base):
    with_grace = knockdconf.add_grace(base, {"s_ROTATOR": "3:tcp,4:tcp"}, 99)
    assert with_grace != base and "[s_ROTATOR_GRACE]" in with_grace
    assert knockdconf.strip_grace(with_grace) == base


def test_two_sections_two_blocks_stripped_together():
    base = BASE + "[t_ROTATOR]\n  sequence = 5\n"
    twins = {"s_ROTATOR": "3:tcp", "t_ROTATOR": "4:udp"}
    with_grace = knockdconf.add_grace(base, twins, 7)
    assert with_grace.count(knockdconf.GRACE_BEGIN) == 2
    assert knockdconf.strip_grace(with_grace) == base


def test_a_grace_block_at_the_very_start_is_stripped():
    block = knockdconf.add_grace(BASE, {"s_ROTATOR": "3:tcp"}, 7)[len(BASE) :]
    assert knockdconf.strip_grace(block) == ""


@pytest.mark.parametrize(
    "text, message",
    [
        ("a\nx " + knockdconf.GRACE_BEGIN + "\n", "line 2: grace marker inside a line"),
        (BASE + knockdconf.GRACE_BEGIN + " s until 1\n[s_GRACE]\n sequence = 1\n"
         + knockdconf.GRACE_END + "\n# mine\n",
         "line 8: text after knockssh-rotator's grace blocks: move it above them"),
        ("\n" + knockdconf.GRACE_BEGIN + "\n" + knockdconf.GRACE_END + "\nafter\n",
         "line 4: text after knockssh-rotator's grace blocks: move it above them"),
    ],
)  # fmt: skip
def test_strip_grace_refusals_name_the_line(text, message):
    assert conf_refusal(text, knockdconf.strip_grace) == message


def test_add_grace_without_matching_sections_changes_nothing():
    assert knockdconf.add_grace(BASE, {"other_ROTATOR": "1"}, 5) == BASE
    assert knockdconf.add_grace(BASE, {}, 5) == BASE


# -- grace blocks, byte for byte ------------------------------------------------

TWO = "[s_ROTATOR]\n  sequence = 1,2\n  cmd_timeout = 5\n\n# next\n[t]\n  sequence = 9\n"
BLOCK = (
    "# knockssh-rotator grace twin, removed automatically: begin s_ROTATOR until 7{joined}\n"
    "[s_ROTATOR_GRACE]\n  sequence = 3:tcp\n  cmd_timeout = 5\n\n# next\n"
    "# knockssh-rotator grace twin: end\n"
)


@pytest.mark.parametrize(
    "base, added",
    [
        (TWO, BLOCK.format(joined="")),
        (TWO.rstrip("\n"), "\n" + BLOCK.format(joined=" (file had no final newline)")),
        (TWO.replace("\n", "\r\n"), BLOCK.format(joined="").replace("\n", "\r\n")),
        (TWO.replace("\n", "\r\n").rstrip("\r\n"),
         "\r\n" + BLOCK.format(joined=" (file had no final newline)").replace("\n", "\r\n")),
        # the first line decides the file's newline
        ("# c\r\n" + TWO, BLOCK.format(joined="").replace("\n", "\r\n")),
        (TWO + "\n\n", BLOCK.format(joined="")),
    ],
)  # fmt: skip
def test_add_grace_writes_its_block_exactly_and_strip_takes_it_back(base, added):
    with_grace = knockdconf.add_grace(base, {"s_ROTATOR": "3:tcp"}, 7)
    assert with_grace == base + added
    assert knockdconf.strip_grace(with_grace) == base


def test_a_section_comment_like_the_join_marker_is_not_one():
    base = "[s_ROTATOR]\n  sequence = 1,2\n  # (file had no final newline)\n"
    assert knockdconf.strip_grace(knockdconf.add_grace(base, {"s_ROTATOR": "3"}, 7)) == base


def test_a_twin_skips_sections_not_named_and_keeps_going():
    base = "[a_ROTATOR]\n  sequence = 1\n[b_ROTATOR]\n  sequence = 2\n"
    with_grace = knockdconf.add_grace(base, {"b_ROTATOR": "3"}, 7)
    assert (
        "[b_ROTATOR_GRACE]\n  sequence = 3\n" in with_grace and "a_ROTATOR_GRACE" not in with_grace
    )


def test_a_leading_newline_before_a_grace_block_is_kept():
    block = BLOCK.format(joined="")
    assert knockdconf.strip_grace("\n" + block) == "\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("a\nb\nx " + knockdconf.GRACE_BEGIN + "\n", "line 3: grace marker inside a line"),
        ("\nx " + knockdconf.GRACE_BEGIN + "\n", "line 2: grace marker inside a line"),
        ("a\n\x1c" + knockdconf.GRACE_BEGIN + "\n", "line 2: grace marker inside a line"),
        (knockdconf.GRACE_BEGIN + "\n" + knockdconf.GRACE_END + "\n\x85\n",
         "line 3: text after knockssh-rotator's grace blocks: move it above them"),
    ],
)  # fmt: skip
def test_knockd_blanks_are_c_isspace_only(text, message):
    """knockd trims " \\t\\n\\v\\f\\r" (C isspace): Python's wider whitespace
    (\\x1c, \\x85, \\xa0) is text to it, and so to us."""
    assert conf_refusal(text, knockdconf.strip_grace) == message


@pytest.mark.parametrize(
    "text, message",
    [
        ("[a]\n  sequence = 1,2\xa0\n", "line 2: section a: port '2\\xa0' is invalid"),
        ("[a]\n  sequence = 1:udp\x85\n", "line 2: section a: unknown protocol 'udp\\x85' in knock sequence"),
        ("[a]\n  sequence = 1:\x1cudp\n", "line 2: section a: unknown protocol '\\x1cudp' in knock sequence"),
        ("[a]\n  sequence = \xa01\n", "line 2: section a: port '\\xa01' is invalid"),
        ("[a]\n  sequence = 1,é\n", "line 2: section a: port 'é' is invalid"),
        ("[a]\n  sequence = 1\n  tcpflags = xack\n", "line 3: unrecognized tcp flag 'XACK'"),
    ],
)  # fmt: skip
def test_sequence_values_are_trimmed_as_knockd_trims(text, message):
    assert conf_refusal(text) == message


def test_a_sequence_of_32_knocks_is_knockds_limit_and_fine():
    assert knockdconf.check_sequence(",".join(["1"] * 32)) is None


def test_a_value_keeps_python_only_whitespace_when_rewritten():
    text = "[s_ROTATOR]\n  sequence = 1\n"
    rewritten = knockdconf.rewrite(text, {"s_ROTATOR": "7"})
    assert rewritten == "[s_ROTATOR]\n  sequence = 7\n"


def test_log_file_is_the_last_of_the_options():
    sections = knockdconf.parse(
        "[a]\n  sequence = 1\n[options]\n  LogFile = /x\n  logfile = /y\n  LOGFILE = /var/log/k\n"
    )
    assert knockdconf.log_file(sections) == "/var/log/k"
    assert knockdconf.log_file(knockdconf.parse("[options]\n  UseSyslog\n")) is None
    assert knockdconf.log_file(knockdconf.parse("[a]\n  sequence = 1\n")) is None


# -- the scheme's small pieces --------------------------------------------------


def test_settings_compare_by_every_value_and_show_no_secret():
    one = Settings(SECRET, ports=(1, 2))
    assert one == Settings(SECRET, ports=(1, 2)) and one != "settings"
    for change in ({"secret": "x" * 12}, {"length": 11}, {"ports": (1, 3)}, {"period": 5},
                   {"proto_modulo": 2}, {"server_interval": 9}):  # fmt: skip
        assert one.replace(**change) != one, change
    assert repr(one) == (
        "Settings(secret=<hidden>, length=10, ports=<2 ports>, period=21600, proto_modulo=0, "
        "server_interval=3600)"
    )


def test_reprs_of_knocks_and_port_lists():
    assert repr(scheme.Knock(7, "udp")) == "Knock(port=7, proto='udp')"
    assert repr(scheme.parse_port_spec("5,1-3,9-10")) == "PortList('1-3,5,9-10')"


def test_entropy_of_no_ports_is_none_not_an_error():
    assert scheme.entropy_bits(10, 0) == 0.0


def test_a_twin_keeps_trailing_blanks_and_letters_of_its_lines():
    base = "[s_ROTATOR]\n  sequence = 1,2 \n  cmd_timeout = 5\t\n  # see X\n"
    with_grace = knockdconf.add_grace(base, {"s_ROTATOR": "3"}, 7)
    assert "[s_ROTATOR_GRACE]\n  sequence = 3 \n  cmd_timeout = 5\t\n  # see X\n" in with_grace
    assert knockdconf.strip_grace(with_grace) == base


@pytest.mark.parametrize(
    "key, shown",
    [
        ("a", "'a'"),
        ("z", "'z'"),
        ("a_z", "'a_z'"),
        ("x" * 20, repr("x" * 20)),
        ("x" * 21, "(not shown: it could be a secret)"),
        ("`", "(not shown: it could be a secret)"),
        ("{", "(not shown: it could be a secret)"),
        ("", "(not shown: it could be a secret)"),
    ],
)
def test_an_unknown_key_is_shown_only_when_it_is_a_short_word(key, shown):
    assert (
        conf_refusal(f"[options]\n  {key} = 1\n") == f"line 2: syntax error: unknown option {shown}"
    )
