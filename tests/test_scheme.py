"""The scheme against vectors computed independently from the specification."""

import hashlib
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotator import scheme
from rotator.scheme import SchemeError, Settings


def reference(secret, service, t, period=21600, offset=0, length=10, ports=None, mod=0):
    """Straight from the issue text, sharing no code with rotator.scheme."""
    ports = sorted(ports if ports is not None else range(2000, 65537))
    start = (t // period + offset) * period
    if not service.endswith("_ROTATOR"):
        service += "_ROTATOR"
    out = []
    for i in range(1, length + 1):
        digest = hashlib.sha256(f"{start}{service}{secret}{i}".encode()).hexdigest()
        port = ports[int(digest[:8], 16) % len(ports)]
        out.append(f"{port}:{'tcp' if mod == 0 or port % mod == 0 else 'udp'}")
    return " ".join(out)


def generate(secret, service, t, period=21600, offset=0, length=10, spec="2000-65536", mod=0):
    s = Settings(secret, length, scheme.parse_port_spec(spec), period, mod)
    scheme.validate(s)
    return scheme.client_form(scheme.derive(s, service, scheme.period_start(t, period, offset)))


KNOWN = [
    # (secret, service, t, period, offset, length, spec, mod, expected)
    (
        "0123456789abc",
        "ssh",
        1700000000,
        21600,
        0,
        10,
        "2000-65536",
        0,
        "4419:tcp 57793:tcp 29736:tcp 42429:tcp 55222:tcp 30034:tcp 32693:tcp 10941:tcp "
        "55402:tcp 7154:tcp",
    ),
    (
        'it\'s "quoted" secret',
        "ssh",
        0,
        60,
        0,
        32,
        "1-1024",
        2,
        "979:udp 17:udp 662:tcp 429:udp 297:udp 886:tcp 106:tcp 674:tcp 525:udp 949:udp 586:tcp "
        "254:tcp 189:udp 691:udp 23:udp 988:tcp 91:udp 119:udp 967:udp 632:tcp 737:udp 475:udp "
        "779:udp 944:tcp 213:udp 451:udp 917:udp 237:udp 729:udp 496:tcp 772:tcp 520:tcp",
    ),
]


# the suffix is appended only when missing: both spellings give the same sequence
KNOWN.append((KNOWN[0][0], "ssh_ROTATOR", *KNOWN[0][2:]))


@pytest.mark.parametrize("case", KNOWN)
def test_known_vectors(case):
    *args, spec, mod, expected = case
    secret, service, t, period, offset, length = args
    assert generate(secret, service, t, period, offset, length, spec, mod) == expected


@pytest.mark.parametrize(
    "secret,service,t,period,offset,length,ports,mod",
    [
        ("sécret ünïcode ✓", "web_ROTATOR", 1700000000, 3600, -1, 7, "3000-3099, 4000", 3),
        ("with spaces in it", "a b", 1763800000, 86400, 2, 12, " 2000-2100 ,5000 ", 7),
        ("0123456789", "ssh_rotator", 1763800123, 1, 0, 5, "1-65535", 1),
        ("x" * 200, "ssh", 2**40, 21600, -5, 32, "10000-10010,20000-20010", 0),
        ("\t\n quoted '\" $(x)", "svc", 1763784000, 21600, 1, 10, "2000-65536", 2),
    ],
)
def test_matches_reference(secret, service, t, period, offset, length, ports, mod):
    port_list = scheme.parse_port_spec(ports)
    try:
        got = generate(secret, service, t, period, offset, length, ports, mod)
    except SchemeError as exc:
        assert "65536" in str(exc)
        return
    assert got == reference(secret, service, t, period, offset, length, port_list, mod)


def test_suffix_is_case_sensitive():
    # "ssh_rotator" is not "..._ROTATOR": the suffix is appended
    assert scheme.rotator_name("ssh_rotator") == "ssh_rotator_ROTATOR"
    assert scheme.rotator_name("ssh_ROTATOR") == "ssh_ROTATOR"


def test_period_math():
    assert scheme.period_start(1700000000, 21600) == 1699984800
    assert scheme.period_start(1700000000, 21600, -1) == 1699984800 - 21600
    assert scheme.period_start(1699984800, 21600) == 1699984800  # a boundary starts a period
    assert scheme.period_start(1699984799.9, 21600) == 1699984800 - 21600
    assert scheme.next_boundary(1700000000, 21600) == 1699984800 + 21600


def test_port_spec_parsing():
    assert scheme.parse_port_spec("5000-5002, 4000 ,2000") == (2000, 4000, 5000, 5001, 5002)
    assert len(scheme.parse_port_spec("2000-65536")) == 63537  # legacy length kept
    assert scheme.parse_port_spec("5-6,1-2") == (1, 2, 5, 6)  # touching is not overlapping
    with pytest.raises(SchemeError, match="duplicate"):
        scheme.parse_port_spec("1-5,5-9")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 40)), min_size=1, max_size=6))
def test_port_list_acts_as_the_tuple_of_every_port(items):
    spec = ",".join(f"{lo}-{lo + width}" if width else str(lo) for lo, width in items)
    every = [p for lo, width in items for p in range(lo, lo + width + 1)]
    if len(set(every)) != len(every) or len(every) < 2:
        with pytest.raises(SchemeError):
            scheme.parse_port_spec(spec)
        return
    ports, expected = scheme.parse_port_spec(spec), tuple(sorted(every))
    assert ports == expected and expected == ports and tuple(ports) == expected
    assert len(ports) == len(expected)
    assert [ports[i] for i in range(-len(expected), len(expected))] == list(expected * 2)
    for outside in (len(expected), -len(expected) - 1):
        with pytest.raises(IndexError):
            ports[outside]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("2000-3000,2500", "duplicate"),
        ("2000-3000,2900-3100", "duplicate"),
        ("2000", "at least 2"),
        ("2000,x", "not a port"),
        ("3000-2000", "backwards"),
        ("0-10", "outside"),
        ("2000-70000", "outside"),
        ("2000,,3000", "empty"),
        ("-5", "not a port"),
        ("²,3", "not a port"),
    ],
)
def test_port_spec_errors(spec, message):
    with pytest.raises(SchemeError, match=message):
        scheme.parse_port_spec(spec)


def base(**kw):
    values = dict(secret="0123456789", length=10, ports=tuple(range(2000, 3000)), period=60)
    values.update(kw)
    return Settings(**values)


@pytest.mark.parametrize(
    "settings_,message",
    [
        (base(secret=""), "required"),
        (base(secret="123456789"), "at least 10"),
        (base(length=4), "below 5"),
        (base(length=33), "limit of 32"),
        (base(ports=(2000, 2001), length=32), "entropy"),
        (base(period=0), "from 1 to 1000000000 seconds"),
        (base(proto_modulo=-1), "must be from 0 to 65536"),
        (base(proto_modulo=65537), "must be from 0 to 65536"),
        (base(period=10**9 + 1), "from 1 to 1000000000 seconds"),
    ],
)
def test_validation_errors(settings_, message):
    with pytest.raises(SchemeError, match=message):
        scheme.validate(settings_)


def test_few_ports_warn_and_entropy_boundary():
    # 3 ports need length 26 for 40 bits (26 * log2(3) = 41.2)
    warnings = scheme.validate(base(ports=(2000, 2001, 2002), length=26))
    assert warnings and "3 ports" in warnings[0]
    with pytest.raises(SchemeError, match="entropy"):
        scheme.validate(base(ports=(2000, 2001, 2002), length=25))
    assert scheme.validate(base()) == []


def test_secret_never_in_repr():
    assert "0123456789" not in repr(base())


def test_65536_is_never_knocked():
    s = Settings("0123456789abc", 5, (65535, 65536), 60)
    for start in range(0, 6000, 60):
        try:
            knocks = scheme.derive(s, "x", start)
        except SchemeError as exc:
            assert str(start) in str(exc) and "--offset" in str(exc)
        else:
            assert all(k.port <= 65535 for k in knocks)


def test_env_settings_and_errors():
    env = {"KNOCKD_ROTATOR_SECRET": "0123456789", "KNOCKD_ROTATOR_LENGTH": " 12 "}
    s = scheme.settings_from_env(env)
    assert (s.length, s.period, s.proto_modulo, s.server_interval) == (12, 21600, 0, 3600)
    assert s.ports[0] == 2000 and s.ports[-1] == 65536
    with pytest.raises(SchemeError, match="KNOCKD_ROTATOR_PERIOD_MODULO"):
        scheme.settings_from_env({**env, "KNOCKD_ROTATOR_PERIOD_MODULO": "6h"})
    with pytest.raises(SchemeError, match="KNOCKD_ROTATOR_PORTS"):
        scheme.settings_from_env({**env, "KNOCKD_ROTATOR_PORTS": "1-x"})


def test_static_sequence_parsing():
    assert scheme.knockd_form(scheme.parse_sequence("7000,8000:udp,9000")) == (
        "7000:tcp,8000:udp,9000:tcp"
    )
    for bad in ("", "70000", "7000:icmp", ",".join(["1"] * 33)):
        with pytest.raises(SchemeError):
            scheme.parse_sequence(bad)


@settings(max_examples=200, deadline=None)
@given(
    secret=st.text(min_size=10, max_size=40),
    service=st.text(min_size=1, max_size=20),
    t=st.integers(min_value=0, max_value=2**40),
    period=st.integers(min_value=1, max_value=10**6),
    offset=st.integers(min_value=-3, max_value=3),
    length=st.integers(min_value=5, max_value=32),
    lo=st.integers(min_value=1, max_value=60000),
    width=st.integers(min_value=300, max_value=5000),
    mod=st.integers(min_value=0, max_value=5),
)
def test_properties(secret, service, t, period, offset, length, lo, width, mod):
    hi = min(lo + width, 65535)
    ports = tuple(range(lo, hi + 1))
    s = Settings(secret, length, ports, period, mod)
    if s.entropy_bits < 40:
        return
    start = scheme.period_start(t, period, offset)
    assert start % period == 0 and start - offset * period <= t < start - offset * period + period
    knocks = scheme.derive(s, service, start)
    assert len(knocks) == length
    assert all(lo <= k.port <= hi for k in knocks)
    assert all(k.proto == ("tcp" if mod == 0 or k.port % mod == 0 else "udp") for k in knocks)
    assert scheme.client_form(knocks) == reference(
        secret, service, t, period, offset, length, ports, mod
    )
    # the two text forms say the same thing
    assert scheme.knockd_form(knocks).split(",") == scheme.client_form(knocks).split(" ")
    assert scheme.parse_sequence(scheme.knockd_form(knocks)) == knocks
    assert math.isclose(s.entropy_bits, length * math.log2(len(ports)))


# -- edges the mutation run (bash .ci/mutation) found untested ----------------------


def test_settings_defaults_are_the_scheme_defaults():
    s = scheme.Settings("a secret of some length")
    assert s.length == int(scheme.DEFAULTS["LENGTH"])
    assert s.period == int(scheme.DEFAULTS["PERIOD_MODULO"])
    assert s.proto_modulo == int(scheme.DEFAULTS["PROTO_MODULO"])
    assert s.server_interval == int(scheme.DEFAULTS["SERVER_INTERVAL"])


def test_a_port_list_indexes_like_a_tuple():
    ports = scheme.parse_port_spec("2000-2002,3000")
    assert [ports[i] for i in range(4)] == [2000, 2001, 2002, 3000] and ports[-1] == 3000
    with pytest.raises(IndexError, match="port index out of range"):
        ports[4]


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("2000-2000,3000", [2000, 3000]), ("7-9", [7, 8, 9]), (" 5 , 6 ", [5, 6])],
)
def test_port_specs_that_hold(spec, expected):
    assert list(scheme.parse_port_spec(spec)) == expected


@pytest.mark.parametrize("spec", ["2000-3000-4000", "x-2000", "2000-x", "x", "2000-"])
def test_a_bad_port_spec_is_named_in_its_message(spec):
    with pytest.raises(scheme.SchemeError) as refused:
        scheme.parse_port_spec(spec + ",5000")
    assert repr(spec + ",5000") in str(refused.value)


def test_entropy_counts_bits_per_knock():
    assert scheme.entropy_bits(10, 1) == 0.0  # one port: nothing to guess
    assert scheme.entropy_bits(10, 2) == 10.0
    assert scheme.entropy_bits(4, 16) == 16.0


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("-5", -5),
        ("0", 0),
        ("999999999999", 999999999999),  # 12 digits: the most
        ("-99999999999", -99999999999),  # 12 characters with the sign
        ("9999999999999", None),
        ("--5", None),
        ("-", None),
        ("5-", None),
        ("٣", None),  # a digit, but not ASCII
    ],
)
def test_whole_numbers_are_checked_as_text(text, value):
    assert scheme.whole_number(text) == value


def test_utf8_names_what_it_checked():
    with pytest.raises(scheme.SchemeError, match=r"^the thing is not valid UTF-8 text$"):
        scheme.utf8("a\udcffb", "the thing")


def test_static_sequences_refused_with_a_reason():
    with pytest.raises(scheme.SchemeError, match="empty knock sequence"):
        scheme.parse_sequence(" , ")
    with pytest.raises(scheme.SchemeError, match="33 knocks is above knockd's limit of 32"):
        scheme.parse_sequence(",".join(["1000"] * 33))
    assert scheme.parse_sequence("1000:UDP,2000") == ((1000, "udp"), (2000, "tcp"))
