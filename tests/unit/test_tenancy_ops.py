"""Users, groups, tokens and ACL rules in the state machine: who may do what, and that a
refused command changes nothing (statekit.Zone.fails asserts it every time)."""

import pytest

from raftcore import acl, schema
from tests.statekit import TS, Zone

HASH = "ab" * 32
ALICE, BOB, CAROL = 1, 2, 3
DEV = 100


def booted() -> Zone:
    z = Zone()
    z.ok("user.bootstrap", {"password_hash": "scrypt$h"}, uid=-1)
    return z


def user(z: Zone, name: str, gid: int | None = None, uid: int = 0, **extra) -> int:
    args = {"name": name, "password": "scrypt$x", "driver": "core", **extra}
    if gid is not None:
        args["gid"] = gid
    return z.ok("user.allocate", args, uid=uid)["id"]


@pytest.fixture
def z() -> Zone:
    """oneadmin; group dev (100); alice (1) in dev, bob (2) in users."""
    z = booted()
    assert z.ok("group.allocate", {"name": "dev"})["id"] == DEV
    assert user(z, "alice", DEV) == ALICE
    assert user(z, "bob") == BOB
    return z


def rec(z: Zone, db: str, obj_id: int) -> dict:
    return z.state[db][schema.id_key(obj_id)]


def members(z: Zone, gid: int) -> list[int]:
    prefix = schema.id_key(gid)
    return [schema.key_id(k[8:]) for k, _ in z.view().iter(schema.GROUP_USERS, prefix)]


# --- bootstrap --------------------------------------------------------------------------


def test_bootstrap_objects_and_rules():
    z = booted()
    assert rec(z, "users", 0)["name"] == "oneadmin"
    assert {g["name"] for g in z.state["groups"].values()} == {"oneadmin", "users"}
    texts = [acl.format(acl.Rule.from_record(r)) for r in z.state["acls"].values()]
    assert texts == [
        "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *",
        "* ZONE/* USE *",
        "* MARKETPLACE+MARKETPLACEAPP/* USE *",
    ]
    # Indexed under their user selector too.
    assert len(z.state["acls_by_user"]) == 3
    assert members(z, 0) == [0]


def test_bootstrap_only_once():
    z = booted()
    z.fails("user.bootstrap", {"password_hash": "x"}, -1, "ACTION", "already bootstrapped")


# --- allocate -----------------------------------------------------------------------


def test_allocate_sets_membership_and_indexes(z):
    assert rec(z, "users", ALICE)["groups"] == [DEV]
    assert members(z, DEV) == [ALICE]
    assert members(z, 1) == [BOB]
    assert z.state["users_by_name"][b"bob"] == BOB
    cid = user(z, "carol", DEV, groups=[1])
    assert rec(z, "users", cid)["groups"] == [DEV, 1]
    assert cid in members(z, 1) and cid in members(z, DEV)


@pytest.mark.parametrize(
    "args, text",
    [
        ({"name": "a b", "password": "p", "driver": "core"}, "may not contain ' '"),
        ({"name": "a:b", "password": "p", "driver": "core"}, "may not contain ':'"),
        ({"name": "", "password": "p", "driver": "core"}, "1..128 characters"),
        ({"name": "x" * 129, "password": "p", "driver": "core"}, "1..128 characters"),
        ({"name": "n", "password": "p", "driver": "kerberos"}, "'driver' must be one of"),
        ({"name": "n", "password": "", "driver": "core"}, "'password' must be 1.."),
        ({"name": "n", "password": "p", "driver": "core", "gid": -1}, "'gid' must be >= 0"),
        ({"name": "n", "password": "p", "driver": "core", "groups": "1"}, "list of group ids"),
        ({"name": "n", "password": "p"}, "missing argument 'driver'"),
        ({"name": "n", "password": "p", "driver": "core", "uid": 4}, "unknown argument"),
    ],
)
def test_allocate_bad_input(z, args, text):
    z.fails("user.allocate", args, 0, "BAD_REQUEST", text)


def test_allocate_refusals(z):
    args = {"name": "alice", "password": "p", "driver": "core"}
    z.fails("user.allocate", args, 0, "ACTION", "'alice' is already taken by user 1")
    args = {"name": "zed", "password": "p", "driver": "core", "gid": 555}
    z.fails("user.allocate", args, 0, "BAD_REQUEST", "argument 'gid': group 555 does not exist")
    args = {"name": "zed", "password": "p", "driver": "core", "groups": [1, 556]}
    z.fails("user.allocate", args, 0, "BAD_REQUEST", "argument 'groups': group 556 does not")


@pytest.mark.parametrize(
    "op, args, text",
    [
        ("user.chgrp", {"id": BOB, "gid": 404}, "argument 'gid': group 404 does not exist"),
        ("user.addgroup", {"id": BOB, "gid": 404}, "argument 'gid': group 404 does not exist"),
        ("user.delgroup", {"id": BOB, "gid": 404}, "argument 'gid': group 404 does not exist"),
        ("group.addadmin", {"id": DEV, "uid": 404}, "argument 'uid': user 404 does not exist"),
    ],
)
def test_unknown_referenced_user_or_group_is_bad_input(z, op, args, text):
    z.fails(op, args, 0, "BAD_REQUEST", text)


def test_unknown_addressed_object_is_no_exists(z):
    z.fails("user.passwd", {"id": 404, "password": "x"}, 0, "NO_EXISTS", "user 404 does not")
    z.fails("group.update", {"id": 404, "template": ""}, 0, "NO_EXISTS", "group 404 does not")


def test_plain_user_cannot_create_users_or_groups(z):
    args = {"name": "mallory", "password": "p", "driver": "core"}
    z.fails("user.allocate", args, BOB, "AUTHORIZATION", "CREATE")
    z.fails("group.allocate", {"name": "evil"}, BOB, "AUTHORIZATION", "CREATE")


# --- group admins -------------------------------------------------------------------


def test_group_admin_manages_own_group_only(z):
    z.fails("group.addadmin", {"id": DEV, "uid": ALICE}, ALICE, "AUTHORIZATION")
    z.ok("group.addadmin", {"id": DEV, "uid": ALICE})
    assert rec(z, "groups", DEV)["admins"] == [ALICE]
    # Alice may create users in dev, not in users.
    assert user(z, "carol", DEV, uid=ALICE) == CAROL
    args = {"name": "dan", "password": "p", "driver": "core", "gid": 1}
    z.fails("user.allocate", args, ALICE, "AUTHORIZATION")
    # ...manage dev's users, not others, never oneadmin.
    z.ok("user.passwd", {"id": CAROL, "password": "scrypt$new"}, uid=ALICE)
    assert rec(z, "users", CAROL)["password"] == "scrypt$new"
    z.fails("user.passwd", {"id": BOB, "password": "x"}, ALICE, "AUTHORIZATION", "MANAGE")
    z.fails("user.passwd", {"id": 0, "password": "x"}, ALICE, "AUTHORIZATION")
    z.ok("user.enable", {"id": CAROL, "enabled": False}, uid=ALICE)
    z.ok("user.delete", {"id": CAROL}, uid=ALICE)
    z.fails("user.delete", {"id": BOB}, ALICE, "AUTHORIZATION", "ADMIN")


def test_addadmin_requires_membership(z):
    z.fails("group.addadmin", {"id": DEV, "uid": BOB}, 0, "ACTION", "not in group 100")
    z.ok("group.addadmin", {"id": DEV, "uid": ALICE})
    z.fails("group.addadmin", {"id": DEV, "uid": ALICE}, 0, "ACTION", "already an admin")
    z.ok("group.deladmin", {"id": DEV, "uid": ALICE})
    z.fails("group.deladmin", {"id": DEV, "uid": ALICE}, 0, "ACTION", "not an admin")


# --- self service ---------------------------------------------------------------------


def test_users_manage_themselves_not_others(z):
    z.ok("user.passwd", {"id": BOB, "password": "scrypt$b2"}, uid=BOB)
    z.fails("user.passwd", {"id": ALICE, "password": "x"}, BOB, "AUTHORIZATION")
    z.ok("user.update", {"id": BOB, "template": "EMAIL = b@x"}, uid=BOB)
    # Enabling/disabling and deleting need ADMIN: not even on oneself.
    z.fails("user.enable", {"id": BOB, "enabled": False}, BOB, "AUTHORIZATION", "ADMIN")
    z.fails("user.delete", {"id": BOB}, BOB, "AUTHORIZATION", "ADMIN")
    z.fails("user.chauth", {"id": BOB, "driver": "ssh"}, BOB, "AUTHORIZATION")


def test_update_replace_and_append(z):
    z.ok("user.update", {"id": BOB, "template": "A = 1\nB = [ X = 2 ]"})
    z.ok("user.update", {"id": BOB, "template": "A = 3\nC = 4", "append": True})
    text = rec(z, "users", BOB)["template"]
    assert "A = " in text and '"3"' in text and "C = " in text and "X = " in text
    assert '"1"' not in text
    z.ok("user.update", {"id": BOB, "template": "D = 5"})
    assert "A =" not in rec(z, "users", BOB)["template"]
    z.fails("user.update", {"id": BOB, "template": "A = [ "}, 0, "BAD_REQUEST", "line 1")
    z.fails("user.update", {"id": BOB, "template": "X" * (1 << 20)}, 0, "BAD_REQUEST")


# --- groups of a user -----------------------------------------------------------------


def test_chgrp_addgroup_delgroup(z):
    z.ok("group.addadmin", {"id": DEV, "uid": ALICE})
    z.ok("user.addgroup", {"id": ALICE, "gid": 1})
    assert rec(z, "users", ALICE)["groups"] == [DEV, 1]
    z.fails("user.addgroup", {"id": ALICE, "gid": 1}, 0, "ACTION", "already in group 1")
    z.fails("user.delgroup", {"id": ALICE, "gid": DEV}, 0, "ACTION", "primary group")
    # chgrp: the new group becomes primary, the old one (and the admin role there) is left.
    z.ok("user.chgrp", {"id": ALICE, "gid": 1})
    assert rec(z, "users", ALICE)["gid"] == 1
    assert rec(z, "users", ALICE)["groups"] == [1]
    assert ALICE not in members(z, DEV)
    assert rec(z, "groups", DEV)["admins"] == []
    z.fails("user.delgroup", {"id": ALICE, "gid": DEV}, 0, "ACTION", "not in group 100")
    z.fails("user.chgrp", {"id": 0, "gid": 1}, 0, "ACTION", "oneadmin's primary group")
    z.fails("user.chgrp", {"id": BOB, "gid": DEV}, BOB, "AUTHORIZATION")


def test_group_delete_rules(z):
    z.fails("group.delete", {"id": 1}, 0, "ACTION", "system group")
    z.fails("group.delete", {"id": DEV}, 0, "ACTION", "still has users")
    z.ok("user.delete", {"id": ALICE})
    z.fails("group.delete", {"id": DEV}, BOB, "AUTHORIZATION")
    z.ok("group.delete", {"id": DEV})
    assert b"dev" not in z.state["groups_by_name"]
    # Group ids are never reused.
    assert z.ok("group.allocate", {"name": "dev"})["id"] == DEV + 1


# --- tokens -----------------------------------------------------------------------------


def _token(z: Zone, uid: int, h: str = HASH) -> None:
    z.ok("token.create", {"token_hash": h, "uid": uid, "expires": TS + 1000}, uid=uid)


def test_disable_and_delete_revoke_tokens(z):
    _token(z, BOB, "cd" * 32)
    _token(z, BOB, "ef" * 32)
    _token(z, ALICE)
    z.ok("user.enable", {"id": BOB, "enabled": False})
    assert set(z.state["tokens"]) == {HASH.encode()}
    assert len(z.state["tokens_by_user"]) == 1
    z.fails(
        "token.create",
        {"token_hash": "cd" * 32, "uid": BOB, "expires": TS + 5},
        BOB,
        "AUTHENTICATION",
    )
    z.ok("user.delete", {"id": ALICE})
    assert z.state["tokens"] == {} and z.state["tokens_by_user"] == {}
    assert ALICE not in members(z, DEV)
    assert b"alice" not in z.state["users_by_name"]


def test_oneadmin_cannot_be_deleted_or_disabled(z):
    z.fails("user.delete", {"id": 0}, 0, "ACTION", "cannot be deleted")
    z.fails("user.enable", {"id": 0, "enabled": False}, 0, "ACTION", "cannot be disabled")


# --- ACL rules --------------------------------------------------------------------------


def _rule(text: str) -> dict:
    r = acl.parse(text)
    return {"user": r.user, "resource": r.resource, "rights": r.rights, "zone": r.zone}


def test_acl_rule_grants_and_its_deletion_revokes(z):
    z.fails("user.passwd", {"id": ALICE, "password": "x"}, BOB, "AUTHORIZATION")
    rid = z.ok("acl.add", {**_rule("#2 USER/@100 MANAGE")})["id"]
    assert rid == 3  # after the three bootstrap rules
    z.ok("user.passwd", {"id": ALICE, "password": "scrypt$y"}, uid=BOB)
    z.fails("acl.add", _rule("#2 USER/@100 MANAGE"), 0, "ACTION", "exists already: ACL 3")
    z.ok("acl.delete", {"id": rid})
    assert schema.id_key(rid) not in z.state["acls"]
    assert len(z.state["acls_by_user"]) == 3
    z.fails("user.passwd", {"id": ALICE, "password": "x"}, BOB, "AUTHORIZATION")


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("#404 VM/* USE", "user selector names user 404"),
        ("@404 VM/* USE", "user selector names group 404"),
        ("* VM/@404 USE", "resource selector names group 404"),
    ],
)
def test_acl_rule_naming_unknown_users_or_groups_is_bad_input(z, text, fragment):
    z.fails("acl.add", _rule(text), 0, "BAD_REQUEST", fragment)


def test_acl_changes_need_oneadmin(z):
    z.fails("acl.add", _rule("* USER/* MANAGE"), BOB, "AUTHORIZATION")
    z.fails("acl.delete", {"id": 0}, BOB, "AUTHORIZATION")
    z.fails("acl.delete", {"id": 99}, 0, "NO_EXISTS", "ACL rule 99 does not exist")


@pytest.mark.parametrize(
    "args, text",
    [
        ({"user": 1, "resource": 0, "rights": 1, "zone": 0}, "invalid ACL rule"),
        ({"user": "#1", "resource": 0, "rights": 1, "zone": 0}, "'user' must be an integer"),
        ({"user": 1}, "missing argument"),
    ],
)
def test_acl_add_bad_input(z, args, text):
    z.fails("acl.add", args, 0, "BAD_REQUEST", text)
