"""Every RPC, run by every kind of caller, with the exact allow/deny expected.

Callers: no credentials, a bad token, an expired token (always UNAUTHENTICATED, Login
aside); then, on objects of a fresh user T of group dev:
  plain    T itself (the owner; a plain member of dev)
  other    carol, a user of another group
  gadmin   alice, an admin of group dev
  oneadmin
Every denied call must leave every object database exactly as it was.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest

from tests.conftest import start_zone
from zones.api.auth import REQUIREMENTS
from zones.api.gen import (
    accounting_pb2,
    acl_pb2,
    auth_pb2,
    common_pb2,
    group_pb2,
    kv_pb2,
    pool_pb2,
    quota_pb2,
    user_pb2,
    zone_pb2,
)

OK = grpc.StatusCode.OK
DENIED = grpc.StatusCode.PERMISSION_DENIED
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
ROLES = ("plain", "other", "gadmin", "oneadmin")
# The databases holding objects: a denial must not change any of them.
OBJECT_DBS = (
    "users",
    "users_by_name",
    "groups",
    "groups_by_name",
    "group_users",
    "acls",
    "acls_by_user",
    "tokens",
    "tokens_by_user",
    "quotas",
    "kv",
    "servers",
    "zone",
)
_seq = itertools.count()
WORLD_DEV: list[int] = []  # the id of group dev, once the world exists


@dataclass
class World:
    zone: object
    dev: int
    alice: int
    carol: int

    def fresh_user(self, gid: int | None = None, groups=()) -> int:
        n = next(_seq)
        args = {"name": f"t{n}", "password": "scrypt$not-a-real-hash", "driver": "core"}
        args["gid"] = self.dev if gid is None else gid
        if groups:
            args["groups"] = list(groups)
        return self.ok("user.allocate", args)["id"]

    def ok(self, op: str, args: dict):
        _, result = self.zone.propose(op, args, uid=0)
        assert result["ok"], result
        return result["value"]

    def token(self, uid: int) -> str:
        return self.zone.token_for(uid)

    def snapshot(self) -> dict:
        with self.zone.store.read() as view:
            return {db: list(view.iter(db)) for db in OBJECT_DBS}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    zone = start_zone(tmp_path_factory.mktemp("matrix"))
    try:
        w = World(zone, 0, 0, 0)
        w.dev = w.ok("group.allocate", {"name": "dev"})["id"]
        WORLD_DEV[:] = [w.dev]
        w.alice = w.fresh_user()
        w.ok("group.addadmin", {"id": w.dev, "uid": w.alice})
        w.carol = w.fresh_user(gid=1)
        yield w
    finally:
        zone.frontend.stop(grace=0)
        zone.replica.close()
        zone.store.close()


# A row: how to make the call against a fresh target T, and the expected code per role.
Make = Callable[[World, int], Callable]  # (world, T) -> call(client)


def _rule_args(w: World, t: int) -> str:
    return f"#{t} VM/@{w.dev} USE #0"


def _acl_rule(w: World, t: int) -> int:
    from raftcore import acl

    r = acl.parse(_rule_args(w, t))
    args = {"user": r.user, "resource": r.resource, "rights": r.rights, "zone": r.zone}
    return w.ok("acl.add", args)["id"]


def _admin_target(w: World, t: int) -> int:
    u = w.fresh_user()
    w.ok("group.addadmin", {"id": w.dev, "uid": u})
    return u


def _in_users_too(w: World, t: int) -> int:
    w.ok("user.addgroup", {"id": t, "gid": 1})
    return t


def _owned_cluster(w: World, t: int) -> int:
    """A cluster (created by oneadmin: permissions 600) given to T."""
    cid = w.ok("cluster.allocate", {"name": f"c{next(_seq)}"})["id"]
    w.ok("obj.chown", {"kind": "cluster", "id": cid, "uid": t})
    return cid


def _on_owned_cluster(call):
    return lambda w, t: (lambda cid: lambda c: call(c, cid))(_owned_cluster(w, t))


ALL_OK = dict.fromkeys(ROLES, OK)
ADMIN_ONLY = {"plain": DENIED, "other": DENIED, "gadmin": DENIED, "oneadmin": OK}
OWNER_GADMIN = {"plain": OK, "other": DENIED, "gadmin": OK, "oneadmin": OK}
OWNER = {"plain": OK, "other": DENIED, "gadmin": DENIED, "oneadmin": OK}
GADMIN = {"plain": DENIED, "other": DENIED, "gadmin": OK, "oneadmin": OK}
MEMBER_GADMIN = OWNER_GADMIN

ROWS: dict[str, tuple[Make, dict]] = {
    "/one.v1.AuthService/Logout": (
        lambda w, t: lambda c: c.auth.Logout(auth_pb2.LogoutRequest()),
        ALL_OK,
    ),
    "/one.v1.KVService/Put": (
        lambda w, t: lambda c: c.kv.Put(kv_pb2.PutRequest(key="k", value=b"v")),
        ALL_OK,
    ),
    "/one.v1.KVService/Get": (lambda w, t: lambda c: c.kv.Get(kv_pb2.GetRequest(key="k")), ALL_OK),
    "/one.v1.KVService/Delete": (
        lambda w, t: lambda c: c.kv.Delete(kv_pb2.DeleteRequest(key="k")),
        ALL_OK,
    ),
    "/one.v1.ZoneService/Info": (
        lambda w, t: lambda c: c.zone.Info(zone_pb2.ZoneInfoRequest()),
        ALL_OK,
    ),
    "/one.v1.ZoneService/LocalStatus": (
        lambda w, t: lambda c: c.zone.LocalStatus(zone_pb2.LocalStatusRequest()),
        ALL_OK,
    ),
    # oneadmin passes authorization and reaches the handler's own checks.
    "/one.v1.ZoneService/ServerAdd": (
        lambda w, t: lambda c: c.zone.ServerAdd(zone_pb2.ServerAddRequest(name="")),
        {**ADMIN_ONLY, "oneadmin": grpc.StatusCode.INVALID_ARGUMENT},
    ),
    "/one.v1.ZoneService/ServerDel": (
        lambda w, t: lambda c: c.zone.ServerDel(zone_pb2.ServerDelRequest(id=99)),
        {**ADMIN_ONLY, "oneadmin": grpc.StatusCode.NOT_FOUND},
    ),
    "/one.v1.ZoneService/ServerReset": (
        lambda w, t: lambda c: c.zone.ServerReset(zone_pb2.ServerResetRequest(id=99)),
        {**ADMIN_ONLY, "oneadmin": grpc.StatusCode.NOT_FOUND},
    ),
    "/one.v1.UserService/Allocate": (
        lambda w, t: (
            lambda c: c.user.Allocate(
                user_pb2.UserAllocateRequest(name=f"n{next(_seq)}", password="pw", gid=w.dev)
            )
        ),
        GADMIN,
    ),
    "/one.v1.UserService/Delete": (
        lambda w, t: lambda c: c.user.Delete(common_pb2.ObjectRequest(id=t)),
        GADMIN,
    ),
    "/one.v1.UserService/Passwd": (
        lambda w, t: lambda c: c.user.Passwd(user_pb2.UserPasswdRequest(id=t, password="pw2")),
        OWNER_GADMIN,
    ),
    "/one.v1.UserService/Chauth": (
        lambda w, t: lambda c: c.user.Chauth(user_pb2.UserChauthRequest(id=t, driver="core")),
        GADMIN,
    ),
    # Needs MANAGE on the user and on group 1 (users): only oneadmin has both.
    "/one.v1.UserService/Chgrp": (
        lambda w, t: lambda c: c.user.Chgrp(common_pb2.PairRequest(id=t, other=1)),
        ADMIN_ONLY,
    ),
    "/one.v1.UserService/AddGroup": (
        lambda w, t: lambda c: c.user.AddGroup(common_pb2.PairRequest(id=t, other=1)),
        ADMIN_ONLY,
    ),
    "/one.v1.UserService/DelGroup": (
        lambda w, t: (lambda u: lambda c: c.user.DelGroup(common_pb2.PairRequest(id=u, other=1)))(
            _in_users_too(w, t)
        ),
        ADMIN_ONLY,
    ),
    "/one.v1.UserService/Enable": (
        lambda w, t: lambda c: c.user.Enable(user_pb2.UserEnableRequest(id=t, enabled=True)),
        GADMIN,
    ),
    "/one.v1.UserService/Update": (
        lambda w, t: lambda c: c.user.Update(common_pb2.UpdateRequest(id=t, template="A = 1")),
        OWNER_GADMIN,
    ),
    "/one.v1.UserService/Info": (
        lambda w, t: lambda c: c.user.Info(user_pb2.UserInfoRequest(id=t)),
        OWNER_GADMIN,
    ),
    "/one.v1.UserService/List": (
        lambda w, t: lambda c: c.user.List(user_pb2.UserListRequest()),
        ALL_OK,
    ),
    "/one.v1.GroupService/Allocate": (
        lambda w, t: (
            lambda c: c.group.Allocate(group_pb2.GroupAllocateRequest(name=f"g{next(_seq)}"))
        ),
        ADMIN_ONLY,
    ),
    "/one.v1.GroupService/Delete": (
        lambda w, t: (lambda g: lambda c: c.group.Delete(common_pb2.ObjectRequest(id=g)))(
            w.ok("group.allocate", {"name": f"g{next(_seq)}"})["id"]
        ),
        ADMIN_ONLY,
    ),
    "/one.v1.GroupService/AddAdmin": (
        lambda w, t: lambda c: c.group.AddAdmin(common_pb2.PairRequest(id=w.dev, other=t)),
        GADMIN,
    ),
    "/one.v1.GroupService/DelAdmin": (
        lambda w, t: (
            lambda u: lambda c: c.group.DelAdmin(common_pb2.PairRequest(id=w.dev, other=u))
        )(_admin_target(w, t)),
        GADMIN,
    ),
    "/one.v1.GroupService/Update": (
        lambda w, t: lambda c: c.group.Update(common_pb2.UpdateRequest(id=w.dev, template="B=2")),
        GADMIN,
    ),
    "/one.v1.GroupService/Info": (
        lambda w, t: lambda c: c.group.Info(group_pb2.GroupInfoRequest(id=w.dev)),
        MEMBER_GADMIN,
    ),
    "/one.v1.GroupService/List": (
        lambda w, t: lambda c: c.group.List(group_pb2.GroupListRequest()),
        ALL_OK,
    ),
    "/one.v1.AclService/Add": (
        lambda w, t: lambda c: c.acl.Add(acl_pb2.AclAddRequest(rule=_rule_args(w, t))),
        ADMIN_ONLY,
    ),
    "/one.v1.AclService/Delete": (
        lambda w, t: (lambda r: lambda c: c.acl.Delete(common_pb2.ObjectRequest(id=r)))(
            _acl_rule(w, t)
        ),
        ADMIN_ONLY,
    ),
    "/one.v1.AclService/List": (
        lambda w, t: lambda c: c.acl.List(acl_pb2.AclListRequest()),
        ADMIN_ONLY,
    ),
    "/one.v1.QuotaService/Set": (
        lambda w, t: (
            lambda c: c.quota.Set(
                quota_pb2.QuotaSetRequest(kind=quota_pb2.USER, id=t, quota="VM = [ VMS = 3 ]")
            )
        ),
        GADMIN,
    ),
    "/one.v1.QuotaService/SetDefault": (
        lambda w, t: (
            lambda c: c.quota.SetDefault(
                quota_pb2.QuotaDefaultSetRequest(kind=quota_pb2.USER, quota="VM = [ VMS = 50 ]")
            )
        ),
        ADMIN_ONLY,
    ),
    "/one.v1.QuotaService/Get": (
        lambda w, t: lambda c: c.quota.Get(quota_pb2.QuotaGetRequest(kind=quota_pb2.USER, id=t)),
        OWNER_GADMIN,
    ),
    # Clusters have no client actions (yet): every authenticated caller gets the
    # validation error, after authentication.
    "/one.v1.PoolService/Action": (
        _on_owned_cluster(
            lambda c, cid: c.pool.Action(
                pool_pb2.ActionRequest(kind="cluster", id=cid, action="explode")
            )
        ),
        dict.fromkeys(ROLES, grpc.StatusCode.INVALID_ARGUMENT),
    ),
    "/one.v1.PoolService/Allocate": (
        lambda w, t: (
            lambda c: c.pool.Allocate(
                pool_pb2.AllocateRequest(kind="cluster", name=f"c{next(_seq)}")
            )
        ),
        ADMIN_ONLY,
    ),
    # Owner T has USE+MANAGE (600), not ADMIN; group admins have no right on clusters.
    "/one.v1.PoolService/Delete": (
        _on_owned_cluster(
            lambda c, cid: c.pool.Delete(pool_pb2.PoolDeleteRequest(kind="cluster", id=cid))
        ),
        ADMIN_ONLY,
    ),
    "/one.v1.PoolService/Info": (
        _on_owned_cluster(
            lambda c, cid: c.pool.Info(pool_pb2.PoolInfoRequest(kind="cluster", id=cid))
        ),
        OWNER,
    ),
    "/one.v1.PoolService/List": (
        lambda w, t: lambda c: c.pool.List(pool_pb2.PoolListRequest(kind="cluster", filter=-2)),
        ALL_OK,
    ),
    "/one.v1.PoolService/Chown": (
        _on_owned_cluster(
            lambda c, cid: c.pool.Chown(
                pool_pb2.ChownRequest(kind="cluster", id=cid, uid=-1, gid=WORLD_DEV[0])
            )
        ),
        OWNER,
    ),
    "/one.v1.PoolService/Chmod": (
        _on_owned_cluster(
            lambda c, cid: c.pool.Chmod(pool_pb2.ChmodRequest(kind="cluster", id=cid, perms=0o640))
        ),
        OWNER,
    ),
    "/one.v1.PoolService/Rename": (
        _on_owned_cluster(
            lambda c, cid: c.pool.Rename(
                pool_pb2.RenameRequest(kind="cluster", id=cid, name=f"r{next(_seq)}")
            )
        ),
        OWNER,
    ),
    "/one.v1.PoolService/Update": (
        _on_owned_cluster(
            lambda c, cid: c.pool.Update(
                pool_pb2.PoolUpdateRequest(kind="cluster", id=cid, template="X = 1")
            )
        ),
        OWNER,
    ),
    # Reports cover only what the caller may see: everyone may ask.
    "/one.v1.AccountingService/Accounting": (
        lambda w, t: lambda c: c.accounting.Accounting(accounting_pb2.AccountingRequest(filter=-2)),
        ALL_OK,
    ),
    "/one.v1.AccountingService/Showback": (
        lambda w, t: (
            lambda c: c.accounting.Showback(
                accounting_pb2.ShowbackRequest(filter=-2, first_month="2026-11")
            )
        ),
        ALL_OK,
    ),
    "/one.v1.QuotaService/GetDefault": (
        lambda w, t: lambda c: c.quota.GetDefault(quota_pb2.QuotaGetRequest(kind=quota_pb2.USER)),
        ALL_OK,
    ),
}


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return OK, ""


def test_the_matrix_covers_every_rpc():
    assert set(ROWS) == set(REQUIREMENTS) - {"/one.v1.AuthService/Login"}


def _caller_uid(w: World, role: str, t: int) -> int:
    return {"plain": t, "other": w.carol, "gadmin": w.alice, "oneadmin": 0}[role]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("method", sorted(ROWS))
def test_rpc_by_role(world, method, role):
    make, expected = ROWS[method]
    t = world.fresh_user()
    call = make(world, t)
    token = world.token(_caller_uid(world, role, t))
    before = world.snapshot()
    with world.zone.client(token) as c:
        code, details = _code(lambda: call(c))
    assert code == expected[role], f"{method} as {role}: {code} {details}"
    if code == DENIED:
        assert "not authorized" in details or "requires oneadmin" in details, details
        assert world.snapshot() == before, f"{method} as {role} was denied but changed state"


@pytest.mark.parametrize("method", sorted(ROWS))
@pytest.mark.parametrize("credentials", ["none", "bad", "expired"])
def test_rpc_without_valid_credentials(world, method, credentials):
    make, _ = ROWS[method]
    t = world.fresh_user()
    call = make(world, t)
    if credentials == "none":
        token = None
    elif credentials == "bad":
        token = "not-a-token"
    else:
        past = int(time.time() * 1000) - 60_000
        token = world.zone.token_for(0, ttl_ms=1000, ts_ms=past)
    before = world.snapshot()
    with world.zone.client(token) as c:
        code, details = _code(lambda: call(c))
    assert code == UNAUTH, f"{method} with {credentials} credentials: {code} {details}"
    assert world.snapshot() == before
