"""Property tests of ACL rules: every valid rule prints canonically and parses back;
hand-written variants (case, whitespace, order, leading zeros, implicit zone) parse to
the same rule; arbitrary text or integers either give a valid rule or AclSyntaxError."""

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore import acl
from raftcore.acl import ALL, CLUSTER, GROUP, INDIVIDUAL, AclSyntaxError, Rule

FAST = settings(max_examples=300, deadline=None)

IDS = st.one_of(st.integers(0, 12), st.integers(0, acl.MAX_ID))
TYPE_NAMES = list(acl.RESOURCE_TYPES)
SELECTOR_CHAR = {flag: char for char, flag in acl.SELECTORS.items()}


def names_in(mask: int) -> list[str]:
    return [n for n, bit in acl.RESOURCE_TYPES.items() if mask & bit]


def type_mask(names) -> int:
    return sum(acl.RESOURCE_TYPES[n] for n in names)


@st.composite
def rules(draw) -> Rule:
    """Valid rules by construction: types drawn from those the selectors allow."""
    user = draw(
        st.one_of(
            st.just(ALL),
            IDS.map(lambda i: INDIVIDUAL | i),
            IDS.map(lambda i: GROUP | i),
        )
    )
    zone = draw(st.one_of(st.just(ALL), IDS.map(lambda i: INDIVIDUAL | i)))
    flag = draw(st.sampled_from([INDIVIDUAL, GROUP, ALL, CLUSTER]))
    pool = {
        CLUSTER: names_in(acl.CLUSTER_SELECTABLE),
        GROUP: names_in(acl.ALL_RESOURCE_BITS & ~acl.NOT_GROUP_SELECTABLE),
        INDIVIDUAL: names_in(acl.FEDERATED) if zone == ALL else TYPE_NAMES,
        ALL: TYPE_NAMES,
    }[flag]
    types = draw(st.sets(st.sampled_from(pool), min_size=1))
    ident = 0 if flag == ALL else draw(IDS)
    rights = draw(st.integers(1, acl.ALL_RIGHTS))
    rule_id = draw(st.one_of(st.none(), st.integers(0, 2**40)))
    return Rule(rule_id, user, type_mask(types) | flag | ident, rights, zone)


@FAST
@given(rules())
def test_format_then_parse_is_identity(rule):
    acl.validate(rule)
    text = acl.format(rule)
    assert acl.parse(text) == replace(rule, id=None)
    assert acl.format(acl.parse(text)) == text
    assert Rule.from_record(rule.to_record()) == rule


def _selector_variant(draw, value: int) -> str:
    flag = value & acl.SELECTOR_MASK
    if flag == ALL:
        return "*"
    zeros = "0" * draw(st.integers(0, 3))
    return f"{SELECTOR_CHAR[flag]}{zeros}{value & acl.ID_MASK}"


def _names_variant(draw, mask: int, table: dict[str, int]) -> str:
    names = [n for n, bit in table.items() if mask & bit]
    names = draw(st.permutations(names))
    cased = ["".join(c.lower() if draw(st.booleans()) else c for c in name) for name in names]
    return "+".join(cased)


@FAST
@given(rules(), st.data(), st.integers(0, 20))
def test_hand_written_variants_parse_to_the_same_rule(rule, data, default_zone):
    draw = data.draw
    space = st.text(alphabet=" \t\n", min_size=1, max_size=3)
    parts = [
        _selector_variant(draw, rule.user),
        _names_variant(draw, rule.resource, acl.RESOURCE_TYPES)
        + "/"
        + _selector_variant(draw, rule.resource),
        _names_variant(draw, rule.rights, acl.RIGHTS),
    ]
    if rule.zone != INDIVIDUAL | default_zone or draw(st.booleans()):
        parts.append(_selector_variant(draw, rule.zone))
    text = draw(space) if draw(st.booleans()) else ""
    for part in parts:
        text += part + draw(space)
    parsed = acl.parse(text, default_zone=default_zone)
    assert parsed == replace(rule, id=None)
    assert acl.format(parsed) == acl.format(rule)


TOKENS = st.sampled_from(
    ["#", "@", "*", "%", "/", "+", " ", "\t", "0", "7", "12", "4294967296", "-1", "x"]
    + TYPE_NAMES[:6]
    + ["vm", "ACL", "USE", "manage", "ADMIN", "CREATE", "FLY", "\u0662"]
)


@FAST
@given(st.one_of(st.lists(TOKENS, max_size=14).map("".join), st.text(max_size=40)))
def test_arbitrary_text_parses_or_fails_cleanly(text):
    try:
        rule = acl.parse(text)
    except AclSyntaxError as e:
        assert str(e)
        return
    acl.validate(rule)
    assert acl.parse(acl.format(rule)) == rule


U64 = st.one_of(st.integers(0, 2**64 - 1), st.integers(0, 2**40), st.integers(-3, 20))


@FAST
@given(U64, U64, U64, U64)
def test_arbitrary_integers_validate_or_fail_cleanly(user, resource, rights, zone):
    rule = Rule(None, user, resource, rights, zone)
    try:
        acl.validate(rule)
    except AclSyntaxError as e:
        assert str(e)
        return
    assert acl.parse(acl.format(rule)) == rule


@FAST
@given(rules())
def test_list_row_shows_each_type_and_right_once(rule):
    row = acl.list_row(rule)
    mask = row[acl.RESOURCE_COLUMN]
    assert len(mask) == len(acl.RESOURCE_TYPES)
    assert sum(c != "-" for c in mask) == len(names_in(rule.resource))
    assert sum(c != "-" for c in row[acl.RIGHTS_COLUMN]) == bin(rule.rights).count("1")
    assert row["USER"] + " " in acl.format(rule) + " "
