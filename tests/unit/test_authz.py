"""authorize(): oneadmin, permission bits, group admins, ACL rules, denial messages.

The same state and cases run against an in-memory view and a real LMDB Store.
"""

from bisect import bisect_left
from collections import defaultdict
from dataclasses import replace

import pytest

from bench.authz import group_record, rule_puts, seed_store, user_record
from raftcore import acl, schema
from raftcore.authz import AuthRequest, Denied, allowed, authorize, describe
from raftcore.codec import packb, unpackb
from raftcore.store import Store


class DictView:
    """get/iter over dicts, keys in byte order like LMDB; records every iter prefix."""

    def __init__(self, puts=()):
        self.dbs = defaultdict(dict)
        self.iterated = []
        for db, key, value in puts:
            self.dbs[db][key] = packb(value)  # stored as msgpack, like the store

    def get(self, db, key):
        raw = self.dbs[db].get(key)
        return None if raw is None else unpackb(raw)

    def iter(self, db, prefix=b""):
        self.iterated.append((db, prefix))
        keys = sorted(self.dbs[db])
        for key in keys[bisect_left(keys, prefix) :]:
            if not key.startswith(prefix):
                return
            yield key, unpackb(self.dbs[db][key])


# --- the state ------------------------------------------------------------------------

USERS = {
    # uid: groups, primary first
    0: [0],  # oneadmin
    1: [100, 101],  # alice: secondary group 101
    2: [100],  # bob
    3: [101],  # carol
    4: [1],  # dave, in "users"
    5: [102],
    6: [102, 0],  # a member of oneadmin's group through a secondary group
    7: [100],  # admin of group 100
    8: [101],  # listed as admin of 102 without being a member
}
GROUPS = {0: [], 1: [], 100: [7], 101: [], 102: [8]}
RULES = {
    0: "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *",
    1: "* ZONE/* USE *",
    2: "* MARKETPLACE+MARKETPLACEAPP/* USE *",
    10: "#4 VM/#50 MANAGE #0",
    11: "@101 IMAGE/@100 USE #0",
    12: "* TEMPLATE/* USE #0",
    13: "@100 HOST/%7 MANAGE #0",
    14: "#4 NET/* USE #1",
    15: "@100 IMAGE/@100 CREATE #0",
    16: "#3 DATASTORE/* ADMIN *",
}


def state_puts():
    for uid, groups in USERS.items():
        yield schema.USERS, schema.id_key(uid), user_record(uid, f"user{uid}", groups)
        for g in groups:
            yield schema.GROUP_USERS, schema.pair_key(g, uid), b""
    for gid, admins in GROUPS.items():
        yield schema.GROUPS, schema.id_key(gid), group_record(gid, f"group{gid}", admins)
    for rule_id, text in RULES.items():
        yield from rule_puts(replace(acl.parse(text), id=rule_id))


@pytest.fixture
def view():
    return DictView(state_puts())


def vm(oid=7, owner=3, gid=100, perms=0o600, right="MANAGE", **kw):
    return AuthRequest("VM", right, oid=oid, owner=owner, gid=gid, perms=perms, **kw)


# (name, uid, request, zone, allowed)
CASES = [
    # 1. oneadmin
    ("oneadmin ACL type", 0, AuthRequest("ACL", "MANAGE"), 0, True),
    ("oneadmin others' VM", 0, vm(perms=0), 0, True),
    ("group-0 member", 6, AuthRequest("HOST", "ADMIN", oid=1), 0, True),
    ("only oneadmin on ACLs", 1, AuthRequest("ACL", "MANAGE"), 0, False),
    ("oneadmin on a type no rule names", 0, AuthRequest("QUOTA", "ADMIN"), 0, True),
    ("only oneadmin on it", 5, AuthRequest("QUOTA", "ADMIN", gid=102), 0, False),
    ("but bits apply to it", 5, AuthRequest("QUOTA", "USE", 1, 5, 102, 0o400), 0, True),
    # 2. bits: owner / group (primary and secondary) / other
    ("owner bit", 3, vm(owner=3, perms=0o200), 0, True),
    ("owner bit not for group", 2, vm(owner=3, perms=0o200), 0, False),
    ("group bit, primary group", 2, vm(owner=3, gid=100, perms=0o020), 0, True),
    ("group bit, secondary group", 1, vm(owner=3, gid=101, perms=0o020), 0, True),
    ("group bit not for others", 5, vm(owner=3, gid=100, perms=0o020), 0, False),
    ("group bit not to owner outside", 3, vm(owner=3, gid=100, perms=0o020), 0, False),
    ("other bit", 5, vm(owner=3, gid=100, perms=0o002), 0, True),
    ("other bit for the owner too", 3, vm(owner=3, perms=0o002), 0, True),
    ("no bit for the right", 3, vm(owner=3, perms=0o555), 0, False),
    ("bits never grant CREATE", 3, AuthRequest("HOST", "CREATE", gid=101, perms=0o777), 0, False),
    # 3. group admin (uid 7 of group 100)
    ("gadmin ADMIN on a user", 7, AuthRequest("USER", "ADMIN", 2, 2, 100, 0), 0, True),
    ("gadmin MANAGE on a user", 7, AuthRequest("USER", "MANAGE", 2, 2, 100, 0), 0, True),
    ("gadmin CREATE user in group", 7, AuthRequest("USER", "CREATE", gid=100), 0, True),
    ("gadmin CREATE user elsewhere", 7, AuthRequest("USER", "CREATE", gid=101), 0, False),
    ("gadmin USE group VM", 7, vm(owner=2, perms=0, right="USE"), 0, True),
    ("gadmin MANAGE group VM", 7, vm(owner=2, perms=0), 0, True),
    ("gadmin no ADMIN on VMs", 7, vm(owner=2, perms=0, right="ADMIN"), 0, False),
    ("gadmin not on oneadmin's", 7, vm(owner=0, perms=0), 0, False),
    ("gadmin not on oneadmin user", 7, AuthRequest("USER", "MANAGE", 0, 0, 100, 0), 0, False),
    ("gadmin not in group 0", 7, vm(owner=2, gid=0, perms=0), 0, False),
    ("gadmin not other group", 7, vm(owner=3, gid=101, perms=0), 0, False),
    ("gadmin not hosts", 7, AuthRequest("HOST", "MANAGE", oid=1, gid=100), 0, False),
    ("gadmin MANAGE own group", 7, AuthRequest("GROUP", "MANAGE", oid=100), 0, True),
    ("gadmin no ADMIN own group", 7, AuthRequest("GROUP", "ADMIN", oid=100), 0, False),
    ("gadmin not other group obj", 7, AuthRequest("GROUP", "MANAGE", oid=101), 0, False),
    ("gadmin CREATE vrouter", 7, AuthRequest("VROUTER", "CREATE", gid=101), 0, True),
    ("member is not admin", 2, AuthRequest("USER", "MANAGE", 1, 1, 100, 0), 0, False),
    ("listed non-member", 8, vm(owner=5, gid=102, perms=0), 0, False),
    # 4. ACL rules: user selectors #, @ (secondary too), *; resource #, @, %, *
    ("#uid rule, #oid", 4, vm(oid=50, perms=0), 0, True),
    ("#oid other object", 4, vm(oid=51, perms=0), 0, False),
    ("#uid rule not for others", 1, vm(oid=50, perms=0), 0, False),
    ("rights are exact", 4, vm(oid=50, perms=0, right="USE"), 0, False),
    ("type must match", 4, AuthRequest("IMAGE", "MANAGE", oid=50, gid=100), 0, False),
    ("@gid rule, @gid res", 1, AuthRequest("IMAGE", "USE", 9, 2, 100, 0), 0, True),
    ("@gid rule primary", 3, AuthRequest("IMAGE", "USE", 9, 2, 100, 0), 0, True),
    ("@gid rule not member", 2, AuthRequest("IMAGE", "USE", 9, 5, 100, 0), 0, False),
    ("@gid res other group", 1, AuthRequest("IMAGE", "USE", 9, 5, 102, 0), 0, False),
    ("* rule", 5, AuthRequest("TEMPLATE", "USE", 3, 2, 100, 0), 0, True),
    ("* zone rule", 5, AuthRequest("ZONE", "USE", oid=0), 0, True),
    ("%cid", 2, AuthRequest("HOST", "MANAGE", oid=3, cids=(5, 7)), 0, True),
    ("%cid other cluster", 2, AuthRequest("HOST", "MANAGE", oid=3, cids=(5,)), 0, False),
    ("%cid no cluster", 2, AuthRequest("HOST", "MANAGE", oid=3), 0, False),
    # zones
    ("rule of zone 1 not in 0", 4, AuthRequest("NET", "USE", 1, 2, 100, 0), 0, False),
    ("rule of zone 1 in 1", 4, AuthRequest("NET", "USE", 1, 2, 100, 0), 1, True),
    ("rule of zone 0 not in 1", 5, AuthRequest("TEMPLATE", "USE", 3, 2, 100, 0), 1, False),
    ("zone * rule in 1", 5, AuthRequest("ZONE", "USE", oid=0), 1, True),
    ("zone * admin", 3, AuthRequest("DATASTORE", "ADMIN", oid=1), 7, True),
    # CREATE (no object)
    ("bootstrap CREATE VM", 4, AuthRequest("VM", "CREATE", gid=1), 0, True),
    ("bootstrap CREATE BACKUPJOB", 4, AuthRequest("BACKUPJOB", "CREATE", gid=1), 0, True),
    ("bootstrap no CREATE HOST", 4, AuthRequest("HOST", "CREATE", gid=1), 0, False),
    ("not in users: no CREATE", 1, AuthRequest("VM", "CREATE", gid=100), 0, False),
    ("CREATE via @gid res", 2, AuthRequest("IMAGE", "CREATE", gid=100), 0, True),
    ("CREATE via @gid res elsewhere", 2, AuthRequest("IMAGE", "CREATE", gid=101), 0, False),
]


@pytest.mark.parametrize("name, uid, request_, zone, expected", CASES, ids=[c[0] for c in CASES])
def test_decision(view, name, uid, request_, zone, expected):
    assert allowed(view, uid, request_, zone) is expected
    if expected:
        authorize(view, uid, [request_], zone)
    else:
        with pytest.raises(Denied):
            authorize(view, uid, [request_], zone)


def test_same_decisions_on_a_real_store(tmp_path):
    with Store(str(tmp_path / "state"), map_size=64 << 20) as store:
        seed_store(store, state_puts(), str(tmp_path))
        with store.read() as txn_view:
            assert txn_view.get(schema.ACLS, schema.id_key(11))["user"] == acl.GROUP | 101
            got = [allowed(txn_view, uid, req, zone) for _, uid, req, zone, _ in CASES]
    assert got == [expected for *_, expected in CASES]


# --- what is read -------------------------------------------------------------------------


def test_acl_lookup_reads_only_the_callers_prefixes(view):
    with pytest.raises(Denied):
        authorize(view, 1, [vm(owner=3, gid=102, perms=0)])
    assert view.iterated == [
        (schema.ACLS_BY_USER, acl.selector_key(acl.INDIVIDUAL, 1)),
        (schema.ACLS_BY_USER, acl.selector_key(acl.GROUP, 100)),
        (schema.ACLS_BY_USER, acl.selector_key(acl.GROUP, 101)),
        (schema.ACLS_BY_USER, acl.selector_key(acl.ALL)),
    ]


def test_rules_are_read_once_per_call(view):
    reqs = [AuthRequest("TEMPLATE", "USE", 3, 2, 100, 0)] * 3 + [AuthRequest("ZONE", "USE", 0)]
    authorize(view, 5, reqs)
    assert len(view.iterated) == len(set(view.iterated))


def test_bits_and_oneadmin_read_no_rules(view):
    authorize(view, 3, [vm(owner=3, perms=0o600)])
    authorize(view, 0, [vm(perms=0)])
    authorize(view, 6, [vm(perms=0)])
    assert view.iterated == []


def test_oneadmin_needs_no_record():
    authorize(DictView(), 0, [AuthRequest("ACL", "ADMIN")])


def test_user_without_a_groups_list_uses_its_gid():
    puts = [(schema.USERS, schema.id_key(9), {"id": 9, "name": "x", "gid": 0})]
    authorize(DictView(puts), 9, [AuthRequest("HOST", "ADMIN", oid=1)])


# --- denials ------------------------------------------------------------------------------


def denial(view, uid, reqs, zone=0):
    with pytest.raises(Denied) as info:
        authorize(view, uid, reqs, zone)
    return info.value


def test_denial_message_names_user_right_object_and_why(view):
    err = denial(view, 5, [vm(oid=7, owner=3, gid=100, perms=0o600)])
    assert err.message == (
        "user 5 is not authorized: MANAGE on VM 7 (owner 3, group 100, permissions "
        "um-------): no permission bit, group admin role or ACL rule grants it"
    )
    assert str(err) == err.message
    assert err.uid == 5
    assert err.request == vm(oid=7, owner=3, gid=100, perms=0o600)


def test_denial_message_for_create_and_objects_without_bits(view):
    err = denial(view, 4, [AuthRequest("HOST", "CREATE", gid=1)])
    assert err.message == (
        "user 4 is not authorized: CREATE HOST in group 1: "
        "no group admin role or ACL rule grants it"
    )
    err = denial(view, 2, [AuthRequest("HOST", "MANAGE", oid=3, cids=(5,))])
    assert err.message == (
        "user 2 is not authorized: MANAGE on HOST 3 (clusters 5): "
        "no group admin role or ACL rule grants it"
    )


def test_the_first_request_not_granted_is_named(view):
    ok = vm(owner=3, perms=0o600)
    bad = vm(oid=8, owner=2, perms=0o600)
    err = denial(view, 3, [ok, bad, vm(oid=9, owner=2, perms=0)])
    assert err.request == bad
    assert "MANAGE on VM 8" in err.message
    authorize(view, 3, [ok, ok])
    authorize(view, 3, [])


def test_a_single_request_is_accepted(view):
    authorize(view, 3, vm(owner=3))


@pytest.mark.parametrize("uid", [42, -1, True, "3", 2**40])
def test_unknown_users_are_denied(view, uid):
    err = denial(view, uid, [AuthRequest("ZONE", "USE", oid=0)])
    assert err.message in (f"user {uid} does not exist", f"user {uid!r} does not exist")
    assert err.request is None


def test_describe():
    assert describe(AuthRequest("VM", "CREATE")) == "CREATE VM"
    assert describe(AuthRequest("USER", "ADMIN", oid=3)) == "ADMIN on USER 3"
    assert describe(vm(cids=(1, 2))) == (
        "MANAGE on VM 7 (owner 3, group 100, permissions um-------, clusters 1,2)"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"obj_type": ""}, "AuthRequest.obj_type must be a type name, got ''"),
        ({"obj_type": None}, "AuthRequest.obj_type must be a type name, got None"),
        ({"right": "READ"}, "unknown right 'READ'"),
        ({"oid": -1}, "AuthRequest.oid must be None or an id 0..4294967295, got -1"),
        ({"gid": 2**33 + 5}, "AuthRequest.gid must be None or an id 0..4294967295"),
        ({"owner": "3"}, "AuthRequest.owner must be None or an id"),
        ({"gid": True}, "AuthRequest.gid must be None or an id"),
        ({"perms": 0o1000}, "AuthRequest.perms must be None or 0..0o777, got 512"),
        ({"cids": [1]}, "AuthRequest.cids must be a tuple of ids"),
        ({"cids": (-1,)}, "AuthRequest.cids must be a tuple of ids"),
        ({"cids": (2**32,)}, "AuthRequest.cids must be a tuple of ids"),
    ],
)
def test_bad_requests_are_programming_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AuthRequest(**{"obj_type": "VM", "right": "USE", **kwargs})
