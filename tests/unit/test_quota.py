"""OpenNebula quotas: the template and structured forms, -1/-2 and default quotas, user
and group limits both enforced with OpenNebula's wording, exact usage counters, and the
quota.set / quota.default_set ops (called directly: no apply registration needed)."""

import copy
import math

import pytest

from raftcore import quota, schema
from raftcore.commands import ErrorCode
from raftcore.ops.common import Reject
from raftcore.ops.quotas import HANDLERS
from raftcore.quota import QuotaError, charge, format_quota, merge_limits, parse_quota, release
from tests.statekit import DictView, write

ALICE, BOB, CAROL = 5, 6, 7
DEV = 100
UKEY = quota.record_key("user", ALICE)
GKEY = quota.record_key("group", DEV)

VM1 = {"VM": {"VMS": 1, "CPU": 0.5, "MEMORY": 512, "SYSTEM_DISK_SIZE": 0}}


def base_state() -> dict:
    """oneadmin (0, group 0); alice (5) and bob (6) in dev (100), bob admin of dev; carol
    (7) in users (1)."""
    users = {
        0: {"id": 0, "name": "oneadmin", "gid": 0, "groups": [0]},
        ALICE: {"id": ALICE, "name": "alice", "gid": DEV, "groups": [DEV]},
        BOB: {"id": BOB, "name": "bob", "gid": DEV, "groups": [DEV]},
        CAROL: {"id": CAROL, "name": "carol", "gid": 1, "groups": [1]},
    }
    groups = {
        0: {"id": 0, "name": "oneadmin", "admins": []},
        1: {"id": 1, "name": "users", "admins": []},
        DEV: {"id": DEV, "name": "dev", "admins": [BOB]},
    }
    return {
        schema.USERS: {schema.id_key(k): v for k, v in users.items()},
        schema.GROUPS: {schema.id_key(k): v for k, v in groups.items()},
    }


def with_limits(state: dict, key: bytes, text: str, is_default: bool = False) -> dict:
    state = copy.deepcopy(state)
    old = state.get(schema.QUOTAS, {}).get(key)
    state.setdefault(schema.QUOTAS, {})[key] = merge_limits(old, text, is_default=is_default)
    return state


def charged(state: dict, uid: int, gid: int, usage: dict) -> dict:
    return write(state, charge(DictView(state), uid, gid, usage))


def refusal(state: dict, uid: int, gid: int, usage: dict) -> str:
    before = copy.deepcopy(state)
    with pytest.raises(Reject) as e:
        charge(DictView(state), uid, gid, usage)
    assert state == before
    assert e.value.code == ErrorCode.ALLOCATE
    return e.value.message


def quotas(state: dict) -> dict:
    return state.get(schema.QUOTAS, {})


# --- parse_quota ----------------------------------------------------------------------------

TEXT = """
VM = [ VMS = 10, CPU = "4.5", MEMORY = 2048 ]
DATASTORE = [ ID = 1, SIZE = 1000, IMAGES = 5 ]
NETWORK = [ ID = 0, LEASES = 4 ]
IMAGE = [ ID = 3, RVMS = 1 ]
IMAGE = [ ID = 2, RVMS = -2 ]
"""
STRUCTURED = {
    "DATASTORE": [{"ID": 1, "SIZE": 1000, "IMAGES": 5}],
    "NETWORK": [{"ID": 0, "LEASES": 4}],
    "VM": {"VMS": 10, "CPU": 4.5, "MEMORY": 2048},
    "IMAGE": [{"ID": 2, "RVMS": -2}, {"ID": 3, "RVMS": 1}],
}


def test_parse_text():
    assert parse_quota(TEXT) == STRUCTURED
    assert parse_quota(TEXT.encode()) == STRUCTURED


def test_parse_structured_form_is_a_fixed_point():
    assert parse_quota(STRUCTURED) == STRUCTURED
    assert parse_quota(parse_quota(STRUCTURED)) == STRUCTURED


def test_parse_names_are_case_insensitive_and_numbers_may_be_text():
    given = {"vm": {"vms": "10", "Cpu": "4.50", "memory": 2048.0}, "datastore": {"id": "1"}}
    assert parse_quota(given) == {"DATASTORE": [{"ID": 1}], "VM": STRUCTURED["VM"]}


def test_parse_skips_usage_counters():
    # What format_quota prints can be edited and sent back: *_USED is not settable.
    assert parse_quota("VM = [ VMS = 3, VMS_USED = 2 ]") == {"VM": {"VMS": 3}}


def test_parse_sentinels_and_bounds():
    got = parse_quota({"VM": {"VMS": -1, "CPU": -2, "MEMORY": 2**53, "RUNNING_CPU": 10**12}})
    assert got == {"VM": {"VMS": -1, "CPU": -2, "MEMORY": 2**53, "RUNNING_CPU": 10**12}}
    assert parse_quota('VM = [ CPU = "-1.0", VMS = "0" ]') == {"VM": {"CPU": -1, "VMS": 0}}


@pytest.mark.parametrize(
    "source, message",
    [
        ("VM = [ VMS = 1.5 ]", "VM: VMS must be a whole number, got 1.5"),
        (
            "VM = [ VMS = -3 ]",
            "VM: VMS = -3 is not a limit: use a number >= 0, -1 (the default quota)"
            " or -2 (unlimited)",
        ),
        ('VM = [ CPU = "0.125" ]', "VM: CPU = 0.125 has more than 2 decimals"),
        ("VM = [ MEMORY = nan ]", "VM: MEMORY must be a number, got 'nan'"),
        ("VM = [ MEMORY = inf ]", "VM: MEMORY must be a number, got 'inf'"),
        ("VM = [ MEMORY = 1e3 ]", "VM: MEMORY must be a number, got '1e3'"),
        ("VM = [ MEMORY = 1_000 ]", "VM: MEMORY must be a number, got '1_000'"),
        ("VM = [ MEMORY = +5 ]", "VM: MEMORY must be a number, got '+5'"),
        ("VM = [ MEMORY = ]", "VM: MEMORY must be a number, got ''"),
        (
            "VM = [ MEMORY = 9007199254740993 ]",
            "VM: MEMORY = 9007199254740993 exceeds the maximum of 2**53",
        ),
        ("VM = [ CPU = 1000000000000.5 ]", "exceeds the maximum of 1000000000000"),
        (
            "DATASTORE = [ ID = 1, SIZE = 10.5 ]",
            "DATASTORE ID 1: SIZE must be a whole number, got 10.5",
        ),
        ("DATASTORE = [ SIZE = 1 ]", "DATASTORE: missing ID (the datastore's id)"),
        ("NETWORK = [ LEASES = 1 ]", "NETWORK: missing ID (the virtual network's id)"),
        ("IMAGE = [ ID = x, RVMS = 1 ]", "IMAGE: ID must be a non-negative integer, got 'x'"),
        ("IMAGE = [ ID = -1, RVMS = 1 ]", "IMAGE: ID must be a non-negative integer, got '-1'"),
        ("IMAGE = [ ID = 2147483648, RVMS = 1 ]", "IMAGE: ID must be 0..2147483647"),
        (
            "NETWORK = [ ID = 0, SIZE = 1 ]",
            "NETWORK ID 0: unknown attribute SIZE (expected LEASES)",
        ),
        ("VM = [ ID = 1 ]", "VM: unknown attribute ID (VM quotas have no ID)"),
        ("VM = 10", "VM must be a vector (VM = [ ... ]), got str"),
        (
            "CLUSTER = [ ID = 1 ]",
            "'CLUSTER' is not a quota section (expected DATASTORE, NETWORK, VM, IMAGE)",
        ),
        ("VM = [ VMS = 1 ]\nVM = [ CPU = 1 ]", "VM given twice"),
        (
            "NETWORK = [ ID = 1, LEASES = 1 ]\nNETWORK = [ ID = 1, LEASES = 2 ]",
            "NETWORK ID 1 given twice",
        ),
        ("VM = [ VMS = 1", "quota template: line 1, column 6: unterminated vector VM"),
    ],
)
def test_parse_refuses_text(source, message):
    with pytest.raises(QuotaError) as e:
        parse_quota(source)
    assert message in str(e.value)


@pytest.mark.parametrize(
    "source, message",
    [
        ({"VM": {"VMS": math.nan}}, "VM: VMS must be a finite number, got nan"),
        ({"VM": {"CPU": math.inf}}, "VM: CPU must be a finite number, got inf"),
        ({"VM": {"VMS": True}}, "VM: VMS must be a number, got a boolean"),
        ({"VM": {"VMS": None}}, "VM: VMS must be a number, got NoneType"),
        ({"VM": {"VMS": 2**53 + 1}}, "VM: VMS = 9007199254740993 exceeds the maximum of 2**53"),
        ({"VM": {"VMS": 0.5}}, "VM: VMS must be a whole number, got 0.5"),
        ({"VM": {"CPU": 0.1 + 0.2}}, "VM: CPU = 0.30000000000000004 has more than 2 decimals"),
        ({"VM": {"MEMORY": -7}}, "VM: MEMORY = -7 is not a limit"),
        ({"VM": [{"VMS": 1}]}, "VM must be a vector (VM = [ ... ]), got list"),
        ({"DATASTORE": [{"ID": True, "SIZE": 1}]}, "DATASTORE: ID must be a non-negative"),
        ({"DATASTORE": [5]}, "DATASTORE must be a vector (DATASTORE = [ ... ]), got int"),
        ({"VM": {"VMS": 1, "vms": 2}}, "VM: attribute VMS given twice"),
        ({"VM": {1: 2}}, "VM: attribute names must be strings, got 1"),
        ({"VM": {}, "vm": {}}, "section VM given twice"),
        ({7: {}}, "7 is not a quota section"),
        (
            {"IMAGE": [{"ID": 3, "RVMS": 1}, {"ID": 3, "RVMS": 2}]},
            "IMAGE ID 3 given twice",
        ),
    ],
)
def test_parse_refuses_structured(source, message):
    with pytest.raises(QuotaError) as e:
        parse_quota(source)
    assert message in str(e.value)


def test_parse_refuses_other_types():
    with pytest.raises(QuotaError, match="a quota must be template text or a map, got list"):
        parse_quota([])  # type: ignore[arg-type]


# --- records and format_quota ------------------------------------------------------------


def test_merge_fills_implicit_limits_and_counters():
    record = merge_limits(None, "VM = [ VMS = 2, CPU = 1.5 ]\nNETWORK = [ ID = 4, LEASES = 3 ]")
    assert record == {
        "NETWORK": {"4": {"LEASES": 3, "LEASES_USED": 0}},
        "VM": {
            "VMS": 2,
            "VMS_USED": 0,
            "RUNNING_VMS": -1,
            "RUNNING_VMS_USED": 0,
            "CPU": 150,  # hundredths: exact sums
            "CPU_USED": 0,
            "RUNNING_CPU": -1,
            "RUNNING_CPU_USED": 0,
            "MEMORY": -1,
            "MEMORY_USED": 0,
            "RUNNING_MEMORY": -1,
            "RUNNING_MEMORY_USED": 0,
            "SYSTEM_DISK_SIZE": -1,
            "SYSTEM_DISK_SIZE_USED": 0,
        },
    }
    # A default record holds limits only, unset ones unlimited.
    assert merge_limits(None, "DATASTORE = [ ID = 0, SIZE = 10 ]", is_default=True) == {
        "DATASTORE": {"0": {"SIZE": 10, "IMAGES": -2}}
    }


def test_merge_keeps_unnamed_limits_and_counters():
    state = with_limits(base_state(), UKEY, "VM = [ VMS = 2, MEMORY = 1024 ]")
    state = charged(state, ALICE, DEV, VM1)
    record = merge_limits(quotas(state)[UKEY], {"VM": {"VMS": 5}})
    assert record["VM"]["VMS"] == 5
    assert record["VM"]["MEMORY"] == 1024
    assert record["VM"]["VMS_USED"] == 1 and record["VM"]["MEMORY_USED"] == 512


def test_merge_back_to_implicit_drops_the_vector():
    record = merge_limits(None, "NETWORK = [ ID = 1, LEASES = 3 ]")
    assert merge_limits(record, "NETWORK = [ ID = 1, LEASES = -1 ]") is None
    default = merge_limits(None, "NETWORK = [ ID = 1, LEASES = 3 ]", is_default=True)
    assert merge_limits(default, "NETWORK = [ ID = 1, LEASES = -2 ]", is_default=True) is None


def test_default_quota_takes_no_minus_one():
    with pytest.raises(QuotaError) as e:
        merge_limits(None, "DATASTORE = [ ID = 1, SIZE = -1 ]", is_default=True)
    assert str(e.value) == (
        "DATASTORE ID 1: SIZE = -1 (use the default quota) is meaningless in a default"
        " quota: use -2 for unlimited"
    )


def test_format_quota_text_and_round_trip():
    state = with_limits(base_state(), UKEY, "VM = [ CPU = 4.5 ]\nIMAGE = [ ID = 3, RVMS = 2 ]")
    state = charged(state, ALICE, DEV, {"VM": {"CPU": 0.25}, "IMAGE": {3: {"RVMS": 1}}})
    text = format_quota(quotas(state)[UKEY])
    assert text.startswith('VM = [\n  VMS = "-1",\n  VMS_USED = "0",\n')
    assert '  CPU = "4.5",\n  CPU_USED = "0.25",\n' in text
    assert text.endswith('IMAGE = [\n  ID = "3",\n  RVMS = "2",\n  RVMS_USED = "1" ]\n')
    limits = parse_quota(text)
    assert limits["VM"]["CPU"] == 4.5 and limits["IMAGE"] == [{"ID": 3, "RVMS": 2}]
    # The text sets exactly the limits it shows.
    assert merge_limits(quotas(state)[UKEY], text) == quotas(state)[UKEY]


def test_format_quota_of_nothing_and_of_defaults():
    assert format_quota(None) == ""
    default = merge_limits(None, "VM = [ VMS = 3 ]", is_default=True)
    assert "VMS_USED" not in format_quota(default)
    assert 'VMS = "3"' in format_quota(default)


def test_to_public_gives_units():
    state = charged(base_state(), ALICE, DEV, {"VM": {"CPU": 1.25}})
    assert quota.to_public(quotas(state)[UKEY])["VM"]["CPU_USED"] == 1.25


# --- limits: -1, -2, default quotas ------------------------------------------------------


def test_no_quota_at_all_is_unlimited_and_counted():
    state = base_state()
    for _ in range(3):
        state = charged(state, ALICE, DEV, VM1)
    assert quotas(state)[UKEY]["VM"]["VMS_USED"] == 3
    assert quotas(state)[GKEY]["VM"]["CPU_USED"] == 150


def test_minus_one_uses_the_default_quota():
    state = with_limits(base_state(), quota.default_key("user"), "VM = [ VMS = 1 ]", True)
    state = charged(state, ALICE, DEV, VM1)
    assert refusal(state, ALICE, DEV, VM1) == "User [5] : limit of 1 reached for VMS quota in VM."
    # An explicit limit wins over the default.
    state = with_limits(state, UKEY, "VM = [ VMS = 2 ]")
    state = charged(state, ALICE, DEV, VM1)
    # -2 is unlimited whatever the default says.
    state = with_limits(state, UKEY, "VM = [ VMS = -2 ]")
    state = charged(state, ALICE, DEV, VM1)
    # Back to -1: the default (1) applies again, already exceeded.
    state = with_limits(state, UKEY, "VM = [ VMS = -1 ]")
    assert "limit of 1 reached for VMS" in refusal(state, ALICE, DEV, VM1)


def test_default_unlimited_and_per_id_defaults():
    state = with_limits(
        base_state(), quota.default_key("group"), "DATASTORE = [ ID = 1, SIZE = 100 ]", True
    )
    usage = {"DATASTORE": {1: {"SIZE": 60, "IMAGES": 1}}}
    state = charged(state, ALICE, DEV, usage)
    assert refusal(state, ALICE, DEV, usage) == (
        "Group [100] : limit of 100 reached for SIZE quota in DATASTORE with ID: 1."
    )
    # Other datastores have no default: unlimited. IMAGES unset in the default: unlimited.
    state = charged(state, ALICE, DEV, {"DATASTORE": {2: {"SIZE": 10**6, "IMAGES": 99}}})
    state = charged(state, ALICE, DEV, {"DATASTORE": {1: {"SIZE": 40, "IMAGES": 50}}})


def test_user_defaults_do_not_limit_groups():
    state = with_limits(base_state(), quota.default_key("user"), "VM = [ VMS = 0 ]", True)
    assert "User [5]" in refusal(state, ALICE, DEV, VM1)
    charged(state, 0, DEV, VM1)  # oneadmin in group dev: the group has no limit


# --- charge: both owners, exact wording, nothing on refusal ----------------------------------


def test_user_limit_refuses_with_opennebula_wording():
    state = with_limits(base_state(), UKEY, "VM = [ VMS = 10, CPU = 1.2, MEMORY = 2048 ]")
    state = charged(state, ALICE, DEV, VM1)
    state = charged(state, ALICE, DEV, VM1)
    assert refusal(state, ALICE, DEV, VM1) == (
        "User [5] : limit of 1.2 reached for CPU quota in VM."
    )


def test_group_limit_refuses_and_charges_the_user_nothing():
    state = with_limits(base_state(), GKEY, "VM = [ MEMORY = 1000 ]")
    state = charged(state, ALICE, DEV, VM1)
    before = copy.deepcopy(quotas(state))
    # Bob is in the same group: the group's quota counts both.
    assert refusal(state, BOB, DEV, VM1) == (
        "Group [100] : limit of 1000 reached for MEMORY quota in VM."
    )
    assert quotas(state) == before
    assert quota.record_key("user", BOB) not in quotas(state)


def test_user_is_checked_before_group():
    state = with_limits(base_state(), UKEY, "VM = [ VMS = 0 ]")
    state = with_limits(state, GKEY, "VM = [ VMS = 0 ]")
    assert refusal(state, ALICE, DEV, VM1).startswith("User [5] : ")


def test_refusals_name_the_id_of_per_id_sections():
    state = with_limits(base_state(), UKEY, "NETWORK = [ ID = 4, LEASES = 1 ]")
    state = charged(state, ALICE, DEV, {"NETWORK": {4: {"LEASES": 1}}})
    assert refusal(state, ALICE, DEV, {"NETWORK": {4: {"LEASES": 1}}}) == (
        "User [5] : limit of 1 reached for LEASES quota in NETWORK with ID: 4."
    )
    state = with_limits(state, UKEY, "IMAGE = [ ID = 3, RVMS = 0 ]")
    assert refusal(state, ALICE, DEV, {"IMAGE": {3: {"RVMS": 1}}}) == (
        "User [5] : limit of 0 reached for RVMS quota in IMAGE with ID: 3."
    )


def test_a_refusal_in_one_section_charges_no_other():
    state = with_limits(base_state(), UKEY, "IMAGE = [ ID = 3, RVMS = 0 ]")
    usage = {**VM1, "NETWORK": {0: {"LEASES": 1}}, "IMAGE": {3: {"RVMS": 1}}}
    assert "RVMS" in refusal(state, ALICE, DEV, usage)


def test_limit_below_usage_blocks_further_charges_only():
    state = charged(base_state(), ALICE, DEV, VM1)
    state = charged(state, ALICE, DEV, VM1)
    state = with_limits(state, UKEY, "VM = [ VMS = 1 ]")
    assert quotas(state)[UKEY]["VM"]["VMS_USED"] == 2
    assert "limit of 1 reached for VMS" in refusal(state, ALICE, DEV, VM1)
    state = write(state, release(DictView(state), ALICE, DEV, VM1))
    assert "limit of 1 reached for VMS" in refusal(state, ALICE, DEV, VM1)
    state = write(state, release(DictView(state), ALICE, DEV, VM1))
    charged(state, ALICE, DEV, VM1)


def test_a_named_metric_is_checked_even_with_zero():
    # As OpenNebula: an owner over a lowered SYSTEM_DISK_SIZE gets no new VM, even one
    # without system disks, while usage naming other metrics only still passes.
    state = charged(base_state(), ALICE, DEV, {"VM": {"SYSTEM_DISK_SIZE": 100}})
    state = with_limits(state, UKEY, "VM = [ SYSTEM_DISK_SIZE = 50 ]")
    assert "SYSTEM_DISK_SIZE" in refusal(state, ALICE, DEV, VM1)
    charged(state, ALICE, DEV, {"VM": {"VMS": 1}})


def test_oneadmin_is_never_limited_but_counted():
    state = with_limits(base_state(), quota.default_key("user"), "VM = [ VMS = 0 ]", True)
    state = with_limits(state, quota.default_key("group"), "VM = [ VMS = 0 ]", True)
    state = charged(state, 0, 0, VM1)
    state = charged(state, 0, 0, VM1)
    assert quotas(state)[quota.record_key("user", 0)]["VM"]["VMS_USED"] == 2
    assert quotas(state)[quota.record_key("group", 0)]["VM"]["VMS_USED"] == 2
    # A plain user in group 0 is limited as a user, not as a group.
    assert "User [5]" in refusal(state, ALICE, 0, VM1)
    # Group 0 never limits, the user's own quota still does.
    state = with_limits(state, UKEY, "VM = [ VMS = 1 ]")
    state = charged(state, ALICE, 0, VM1)


def test_usage_stays_exact():
    state = with_limits(base_state(), UKEY, "NETWORK = [ ID = 9, LEASES = 5 ]")
    start = copy.deepcopy(state)
    usages = [
        {"VM": {"VMS": 1, "CPU": 0.1, "MEMORY": 1, "RUNNING_CPU": "0.1"}},
        {"VM": {"CPU": 0.2}, "DATASTORE": {1: {"SIZE": 3, "IMAGES": 1}}},
        {"NETWORK": {9: {"LEASES": 2}}, "IMAGE": {3: {"RVMS": 1}}},
        {"VM": {"CPU": 0.7, "RUNNING_CPU": 0.7}},
    ]
    for usage in usages:
        state = charged(state, ALICE, DEV, usage)
    assert quotas(state)[UKEY]["VM"]["CPU_USED"] == 100  # 0.1 + 0.2 + 0.7: exactly 1
    assert format_quota(quotas(state)[UKEY]).count('CPU_USED = "1"') == 1
    for usage in reversed(usages):
        state = write(state, release(DictView(state), ALICE, DEV, usage))
    # Byte for byte what it was: counters at 0 and the vectors charge created are gone.
    assert state == start
    assert GKEY not in quotas(state)


def test_release_never_goes_below_zero_nor_creates_records():
    state = charged(base_state(), ALICE, DEV, {"VM": {"VMS": 1, "MEMORY": 10}})
    state = write(state, release(DictView(state), ALICE, DEV, {"VM": {"VMS": 3, "MEMORY": 4}}))
    assert quotas(state)[UKEY]["VM"]["VMS_USED"] == 0
    assert quotas(state)[UKEY]["VM"]["MEMORY_USED"] == 6
    assert release(DictView(base_state()), BOB, 1, VM1) == []
    assert release(DictView(state), ALICE, DEV, {"NETWORK": {1: {"LEASES": 1}}}) == []


def test_empty_usage_changes_nothing():
    assert charge(DictView(base_state()), ALICE, DEV, {}) == []


@pytest.mark.parametrize(
    "usage, message",
    [
        ({"VM": {"VMS": -1}}, "usage of VM: VMS = -1: a usage must be >= 0"),
        ({"VM": {"CPU": 0.001}}, "usage of VM: CPU = 0.001 has more than 2 decimals"),
        ({"VM": {"MEMORY": 1.5}}, "usage of VM: MEMORY must be a whole number, got 1.5"),
        ({"VM": {"MEMORY": math.nan}}, "usage of VM: MEMORY must be a finite number, got nan"),
        ({"VM": {"VMS": True}}, "usage of VM: VMS must be a number, got a boolean"),
        ({"VM": {"VMS": 2**53 + 1}}, "usage of VM: VMS = 9007199254740993 exceeds"),
        ({"VM": {"LEASES": 1}}, "usage of VM: unknown metric(s) LEASES (expected VMS,"),
        ({"DATASTORE": {"1": {"SIZE": 1}}}, "usage of DATASTORE: ID must be 0..2147483647"),
        ({"DATASTORE": {-1: {"SIZE": 1}}}, "usage of DATASTORE: ID must be 0..2147483647"),
        ({"DATASTORE": {1: 5}}, "usage of DATASTORE ID 1 must be a map, got int"),
        ({"vm": {"VMS": 1}}, "usage section 'vm' must be written VM"),
        ({"HOST": {}}, "'HOST' is not a quota section"),
        ({"VM": [1]}, "usage of VM must be a map, got list"),
    ],
)
def test_bad_usage_is_a_bad_request(usage, message):
    for fn in (charge, release):
        with pytest.raises(Reject) as e:
            fn(DictView(base_state()), ALICE, DEV, usage)
        assert e.value.code == ErrorCode.BAD_REQUEST
        assert message in e.value.message


def test_bad_owner_ids():
    with pytest.raises(Reject, match="quota owner uid must be a non-negative integer"):
        charge(DictView(base_state()), -1, DEV, VM1)
    with pytest.raises(Reject, match="quota owner gid must be a non-negative integer"):
        release(DictView(base_state()), ALICE, None, VM1)  # type: ignore[arg-type]


def test_counter_overflow_is_refused():
    huge = {"VM": {"MEMORY": 2**53}}
    state = base_state()
    state[schema.QUOTAS] = {UKEY: merge_limits(None, "VM = [ VMS = 1 ]")}
    state[schema.QUOTAS][UKEY]["VM"]["MEMORY_USED"] = quota.MAX_USED - 2**52
    assert refusal(state, ALICE, DEV, huge) == (
        "User [5] : usage counter overflow for MEMORY quota in VM."
    )


# --- the ops -------------------------------------------------------------------------------


def do(state: dict, op: str, args: dict, uid: int = 0) -> tuple[dict, dict]:
    """Run handler `op` as apply would (a Reject becomes an error result) and write its
    mutations; a refused command must return none."""
    cmd = {"v": 1, "op": op, "args": args, "rid": "r", "uid": uid, "ts": 1}
    before = copy.deepcopy(state)
    try:
        mutations, result = HANDLERS[op](DictView(state), args, cmd, 1)
    except Reject as r:
        assert state == before
        return state, {"ok": False, "code": str(r.code), "message": r.message}
    assert state == before  # handlers never write
    return write(state, mutations), result


def fails(state: dict, op: str, args: dict, uid: int, code: str, text: str) -> None:
    _, result = do(state, op, args, uid)
    assert not result["ok"], result
    assert result["code"] == code, result
    assert text in result["message"], result


def test_op_names():
    assert set(HANDLERS) == {"quota.set", "quota.default_set"}


def test_quota_set_user_and_group():
    state, result = do(
        base_state(), "quota.set", {"kind": "user", "id": ALICE, "quota": STRUCTURED}
    )
    assert result == {"ok": True, "value": None}
    assert quotas(state)[UKEY] == merge_limits(None, TEXT)
    state, _ = do(state, "quota.set", {"kind": "group", "id": DEV, "quota": {"VM": {"VMS": 1}}})
    assert quotas(state)[GKEY]["VM"]["VMS"] == 1
    # The group limit now applies to alice's next VMs, the user limits too.
    state = charged(state, ALICE, DEV, VM1)
    assert (
        refusal(state, ALICE, DEV, VM1) == "Group [100] : limit of 1 reached for VMS quota in VM."
    )


def test_quota_set_merges_and_keeps_usage():
    state = charged(base_state(), ALICE, DEV, VM1)
    state, _ = do(state, "quota.set", {"kind": "user", "id": ALICE, "quota": {"VM": {"VMS": 4}}})
    state, _ = do(state, "quota.set", {"kind": "user", "id": ALICE, "quota": {"VM": {"CPU": 2}}})
    vm = quotas(state)[UKEY]["VM"]
    assert (vm["VMS"], vm["CPU"], vm["VMS_USED"], vm["CPU_USED"]) == (4, 200, 1, 50)
    # Below the current usage: allowed.
    state, result = do(
        state, "quota.set", {"kind": "user", "id": ALICE, "quota": {"VM": {"VMS": 0}}}
    )
    assert result["ok"] and quotas(state)[UKEY]["VM"]["VMS"] == 0


def test_quota_set_unchanged_writes_nothing():
    state, _ = do(
        base_state(), "quota.set", {"kind": "user", "id": ALICE, "quota": {"VM": {"VMS": 4}}}
    )
    cmd = {"v": 1, "op": "quota.set", "rid": "r", "uid": 0, "ts": 1}
    args = {"kind": "user", "id": ALICE, "quota": {"VM": {"VMS": 4}}}
    assert HANDLERS["quota.set"](DictView(state), args, {**cmd, "args": args}, 1)[0] == []


def test_quota_set_target_must_exist():
    fails(
        base_state(),
        "quota.set",
        {"kind": "user", "id": 42, "quota": {}},
        0,
        "NO_EXISTS",
        "user 42 does not exist",
    )
    fails(
        base_state(),
        "quota.set",
        {"kind": "group", "id": 42, "quota": {}},
        0,
        "NO_EXISTS",
        "group 42 does not exist",
    )


def test_quota_set_authorization():
    args = {"kind": "user", "id": ALICE, "quota": {"VM": {"VMS": 100}}}
    # A user cannot raise its own quota (USER perms 0o600: no ADMIN bit) ...
    fails(base_state(), "quota.set", args, ALICE, "AUTHORIZATION", "ADMIN on USER 5")
    # ... nor another group's member's.
    fails(base_state(), "quota.set", args, CAROL, "AUTHORIZATION", "ADMIN on USER 5")
    # The group's admin may (OpenNebula: a group manager distributes the group's quota) ...
    state, result = do(base_state(), "quota.set", args, BOB)
    assert result["ok"] and quotas(state)[UKEY]["VM"]["VMS"] == 100
    # ... but not the group's own quota: that is oneadmin's.
    group_args = {"kind": "group", "id": DEV, "quota": {"VM": {"VMS": 100}}}
    fails(base_state(), "quota.set", group_args, BOB, "AUTHORIZATION", "ADMIN on GROUP 100")


def test_quota_set_not_on_oneadmin():
    fails(
        base_state(),
        "quota.set",
        {"kind": "user", "id": 0, "quota": {}},
        0,
        "ACTION",
        "Cannot set quotas for oneadmin user",
    )
    fails(
        base_state(),
        "quota.set",
        {"kind": "group", "id": 0, "quota": {}},
        0,
        "ACTION",
        "Cannot set quotas for oneadmin group",
    )


@pytest.mark.parametrize(
    "args, message",
    [
        ({"kind": "user", "id": ALICE}, "missing argument 'quota'"),
        ({"kind": "user", "id": ALICE, "quota": {}, "x": 1}, "unknown argument(s): x"),
        (
            {"kind": "vm", "id": ALICE, "quota": {}},
            "argument 'kind' must be 'user' or 'group', got 'vm'",
        ),
        ({"kind": "user", "id": -1, "quota": {}}, "argument 'id' must be >= 0, got -1"),
        ({"kind": "user", "id": "5", "quota": {}}, "argument 'id' must be an integer, got str"),
        (
            {"kind": "user", "id": ALICE, "quota": "VM = [ VMS = 1 ]"},
            "argument 'quota' must be a map",
        ),
        (
            {"kind": "user", "id": ALICE, "quota": {"VM": {"VMS": -5}}},
            "argument 'quota': VM: VMS = -5 is not a limit",
        ),
        (
            {"kind": "user", "id": ALICE, "quota": {"DATASTORE": [{"SIZE": 1}]}},
            "argument 'quota': DATASTORE: missing ID",
        ),
    ],
)
def test_quota_set_bad_arguments(args, message):
    fails(base_state(), "quota.set", args, 0, "BAD_REQUEST", message)


def test_quota_default_set():
    args = {"kind": "user", "quota": {"VM": {"VMS": 1}, "DATASTORE": [{"ID": 1, "SIZE": 10}]}}
    state, result = do(base_state(), "quota.default_set", args)
    assert result["ok"]
    assert quotas(state)[quota.default_key("user")] == {
        "DATASTORE": {"1": {"SIZE": 10, "IMAGES": -2}},
        "VM": {m: (1 if m == "VMS" else -2) for m in quota.SECTIONS["VM"].metrics},
    }
    state = charged(state, ALICE, DEV, VM1)
    assert refusal(state, ALICE, DEV, VM1) == "User [5] : limit of 1 reached for VMS quota in VM."
    # Group defaults are separate.
    assert quota.default_key("group") not in quotas(state)
    fails(
        state,
        "quota.default_set",
        {"kind": "user", "quota": {"VM": {"VMS": -1}}},
        0,
        "BAD_REQUEST",
        "VM: VMS = -1 (use the default quota) is meaningless in a default quota",
    )
    # Back to unlimited: the record goes away.
    args = {"kind": "user", "quota": {"VM": {"VMS": -2}, "DATASTORE": [{"ID": 1, "SIZE": -2}]}}
    state, result = do(state, "quota.default_set", args)
    assert result["ok"] and quota.default_key("user") not in quotas(state)


def test_quota_default_set_only_oneadmin():
    args = {"kind": "group", "quota": {"VM": {"VMS": 1}}}
    fails(base_state(), "quota.default_set", args, BOB, "AUTHORIZATION", "ADMIN QUOTA")
    fails(base_state(), "quota.default_set", args, ALICE, "AUTHORIZATION", "ADMIN QUOTA")
    state = base_state()
    state[schema.USERS][schema.id_key(CAROL)]["groups"] = [1, 0]  # a member of oneadmin
    assert do(state, "quota.default_set", args, CAROL)[1]["ok"]


def test_quota_default_set_bad_arguments():
    fails(
        base_state(),
        "quota.default_set",
        {"kind": "x", "quota": {}},
        0,
        "BAD_REQUEST",
        "argument 'kind' must be 'user' or 'group', got 'x'",
    )
    fails(
        base_state(),
        "quota.default_set",
        {"kind": "user", "id": 1, "quota": {}},
        0,
        "BAD_REQUEST",
        "unknown argument(s): id",
    )
