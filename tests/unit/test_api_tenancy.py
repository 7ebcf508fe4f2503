"""Users, groups and ACL rules through the gRPC API of an in-process front-end."""

import grpc
import pytest

from raftcore.auth import verify_password
from zones.api.gen import acl_pb2, common_pb2, group_pb2, kv_pb2, quota_pb2, user_pb2


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


@pytest.fixture
def tenants(zone):
    """oneadmin's client; group dev; alice (dev, its admin) and bob (users)."""
    admin = zone.admin()
    dev = admin.group.Allocate(group_pb2.GroupAllocateRequest(name="dev")).id
    alice = admin.user.Allocate(
        user_pb2.UserAllocateRequest(name="alice", password="alice-pw", gid=dev)
    ).id
    bob = admin.user.Allocate(user_pb2.UserAllocateRequest(name="bob", password="bob-pw")).id
    admin.group.AddAdmin(common_pb2.PairRequest(id=dev, other=alice))
    yield admin, dev, alice, bob
    admin.close()


def test_created_user_logs_in_and_sees_itself(zone, tenants):
    admin, dev, alice, bob = tenants
    with zone.client().login("bob", "bob-pw") as c:
        me = c.user.Info(user_pb2.UserInfoRequest(id=-1))
        assert (me.id, me.name, me.gid, me.gname, list(me.groups)) == (bob, "bob", 1, "users", [1])
        assert me.auth_driver == "core" and me.enabled
        assert [u.id for u in c.user.List(user_pb2.UserListRequest()).users] == [bob]
        code, details = _code(lambda: c.user.Info(user_pb2.UserInfoRequest(id=alice)))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert f"user {bob} is not authorized: USE on USER {alice}" in details


def test_passwords_are_stored_hashed_never_in_clear(zone, tenants):
    with zone.store.read() as view:
        users = {u["name"]: u["password"] for _, u in view.iter("users")}
    for name in ("alice", "bob"):
        assert users[name].startswith("scrypt$")
        assert f"{name}-pw" not in users[name]
        assert verify_password(f"{name}-pw", users[name])


def test_group_admin_sees_and_manages_its_group(zone, tenants):
    admin, dev, alice, bob = tenants
    with zone.client().login("alice", "alice-pw") as c:
        carol = c.user.Allocate(
            user_pb2.UserAllocateRequest(name="carol", password="carol-pw", gid=dev)
        ).id
        listed = sorted(u.id for u in c.user.List(user_pb2.UserListRequest()).users)
        assert listed == sorted([alice, carol])
        assert list(c.user.Info(user_pb2.UserInfoRequest(id=alice)).admin_of) == [dev]
        c.user.Passwd(user_pb2.UserPasswdRequest(id=carol, password="new-carol-pw"))
        code, _ = _code(lambda: c.user.Passwd(user_pb2.UserPasswdRequest(id=bob, password="x")))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        group = c.group.Info(group_pb2.GroupInfoRequest(id=dev))
        assert sorted(group.users) == sorted([alice, carol]) and list(group.admins) == [alice]
    with zone.client().login("carol", "new-carol-pw") as c:
        assert c.user.Info(user_pb2.UserInfoRequest(id=-1)).id == carol


def test_disable_ends_sessions(zone, tenants):
    admin, dev, alice, bob = tenants
    c = zone.client().login("bob", "bob-pw")
    admin.user.Enable(user_pb2.UserEnableRequest(id=bob, enabled=False))
    code, details = _code(lambda: c.kv.Get(kv_pb2.GetRequest(key="k")))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    code, details = _code(lambda: zone.client().login("bob", "bob-pw"))
    assert code == grpc.StatusCode.UNAUTHENTICATED and "disabled" in details
    c.close()


def test_acl_rule_round_trip_and_effect(zone, tenants):
    admin, dev, alice, bob = tenants
    text = f"#{bob} USER/@{dev} USE+MANAGE #0"
    rid = admin.acl.Add(acl_pb2.AclAddRequest(rule=text)).id
    rules = {r.id: r for r in admin.acl.List(acl_pb2.AclListRequest()).rules}
    assert rules[rid].text == text
    assert rules[0].text.startswith("@1 VM+IMAGE+TEMPLATE")
    with zone.client().login("bob", "bob-pw") as c:
        assert c.user.Info(user_pb2.UserInfoRequest(id=alice)).name == "alice"
        code, _ = _code(lambda: c.acl.List(acl_pb2.AclListRequest()))
        assert code == grpc.StatusCode.PERMISSION_DENIED
    admin.acl.Delete(common_pb2.ObjectRequest(id=rid))
    with zone.client().login("bob", "bob-pw") as c:
        code, _ = _code(lambda: c.user.Info(user_pb2.UserInfoRequest(id=alice)))
        assert code == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize(
    "rule, fragment",
    [
        ("", "malformed ACL rule"),
        ("#5 VM", "malformed ACL rule"),
        ("#x VM/* USE", "malformed ACL rule"),
        ("#5 FOO/* USE", "FOO"),
        ("#5 VM/* FLY", "FLY"),
        ("%5 VM/* USE", "malformed ACL rule"),
    ],
)
def test_malformed_acl_is_invalid_and_stores_nothing(zone, tenants, rule, fragment):
    admin = tenants[0]
    before = zone.store.applied_index
    code, details = _code(lambda: admin.acl.Add(acl_pb2.AclAddRequest(rule=rule)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in details
    assert zone.store.applied_index == before


@pytest.mark.parametrize(
    "call, code, fragment",
    [
        (
            lambda c: c.user.Allocate(user_pb2.UserAllocateRequest(name="", password="x")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "name must not be empty",
        ),
        (
            lambda c: c.user.Allocate(user_pb2.UserAllocateRequest(name="a b", password="x")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "may not contain ' '",
        ),
        (
            lambda c: c.user.Allocate(
                user_pb2.UserAllocateRequest(name="n", password="x", driver="kerberos")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown authentication driver 'kerberos'",
        ),
        (
            lambda c: c.user.Allocate(user_pb2.UserAllocateRequest(name="n", password="x", gid=77)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "argument 'gid': group 77 does not exist",
        ),
        (
            lambda c: c.user.Allocate(user_pb2.UserAllocateRequest(name="bob", password="x")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "already taken",
        ),
        (
            lambda c: c.user.Info(user_pb2.UserInfoRequest(id=999)),
            grpc.StatusCode.NOT_FOUND,
            "user 999 does not exist",
        ),
        (
            lambda c: c.user.Update(common_pb2.UpdateRequest(id=0, template="A = [")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "line 1",
        ),
        (
            lambda c: c.user.Update(
                common_pb2.UpdateRequest(id=0, template="A = " + "x" * (1 << 20))
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "1 MiB",
        ),
        (
            lambda c: c.quota.Set(
                quota_pb2.QuotaSetRequest(kind=quota_pb2.USER, id=2, quota="VM = [ VMS = -5 ]")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VMS",
        ),
        (
            lambda c: c.quota.Set(
                quota_pb2.QuotaSetRequest(
                    kind=quota_pb2.USER, id=2, quota="VM = [ MEMORY = 99999999999999999999 ]"
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "MEMORY",
        ),
        (
            lambda c: c.quota.Set(
                quota_pb2.QuotaSetRequest(kind=quota_pb2.USER, id=2, quota="VM = [ BOGUS = 1 ]")
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "BOGUS",
        ),
        (
            lambda c: c.quota.Set(
                quota_pb2.QuotaSetRequest(kind=quota_pb2.GROUP, id=404, quota="VM = [ VMS = 1 ]")
            ),
            grpc.StatusCode.NOT_FOUND,
            "group 404 does not exist",
        ),
        (
            lambda c: c.group.Delete(common_pb2.ObjectRequest(id=1)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "system group",
        ),
    ],
)
def test_bad_input_is_refused_precisely_and_changes_nothing(zone, tenants, call, code, fragment):
    admin = tenants[0]
    with zone.store.read() as view:
        before = {
            db: list(view.iter(db)) for db in ("users", "groups", "acls", "group_users", "quotas")
        }
    got, details = _code(lambda: call(admin))
    assert got == code, details
    assert fragment in details
    with zone.store.read() as view:
        assert before == {db: list(view.iter(db)) for db in before}


def test_quota_set_and_shown(zone, tenants):
    admin, dev, alice, bob = tenants
    admin.quota.Set(
        quota_pb2.QuotaSetRequest(kind=quota_pb2.USER, id=bob, quota="VM = [ VMS = 4, CPU = 2.5 ]")
    )
    text = admin.quota.Get(quota_pb2.QuotaGetRequest(kind=quota_pb2.USER, id=bob)).quota
    assert "VMS" in text and "CPU" in text and "2.5" in text
    assert admin.user.Info(user_pb2.UserInfoRequest(id=bob)).quota == text
    admin.quota.SetDefault(
        quota_pb2.QuotaDefaultSetRequest(kind=quota_pb2.GROUP, quota="VM = [ VMS = 100 ]")
    )
    with zone.client().login("bob", "bob-pw") as c:
        default = c.quota.GetDefault(quota_pb2.QuotaGetRequest(kind=quota_pb2.GROUP)).quota
        assert "100" in default


def test_failed_logins_are_throttled_per_user(zone, tenants):
    with zone.client() as c:
        for _ in range(5):
            code, _ = _code(lambda: c.login("bob", "wrong"))
            assert code == grpc.StatusCode.UNAUTHENTICATED
        # The next attempt must wait, even with the right password...
        code, details = _code(lambda: c.login("bob", "bob-pw"))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "too many failed logins for 'bob'" in details
    # ...while other users log in as usual.
    with zone.client().login("alice", "alice-pw") as c:
        assert c.user_id == tenants[2]
