"""PoolService on clusters (the first pool kind): allocate, info, list filters and
pagination, chown, chmod, rename, update, delete; listings show only what a user may see."""

import grpc
import pytest

from tests.conftest import wait_until
from zones.api.gen import common_pb2, group_pb2, pool_pb2, user_pb2
from zones.api.pool_service import decode_list


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def _ids(c, **kw) -> list[int]:
    reply = c.pool.List(pool_pb2.PoolListRequest(kind="cluster", filter=-2, **kw))
    records = decode_list(reply)
    assert reply.count == len(records)
    return [r["id"] for r in records]


@pytest.fixture
def admin(zone):
    c = zone.admin()
    # The default cluster is created by the bootstrap.
    wait_until(lambda: 0 in _ids(c), what="cluster 0")
    yield c
    c.close()


def test_default_cluster_and_allocate(zone, admin):
    info = admin.pool.Info(pool_pb2.PoolInfoRequest(kind="cluster", id=0))
    assert (info.name, info.uid, info.uname, info.gid, info.gname) == (
        "default",
        0,
        "oneadmin",
        0,
        "oneadmin",
    )
    cid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="cluster", name="prod")).id
    assert cid == 1
    assert _ids(admin) == [0, 1]
    code, details = _code(
        lambda: admin.pool.Allocate(pool_pb2.AllocateRequest(kind="cluster", name="prod"))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already taken" in details
    admin.pool.Rename(pool_pb2.RenameRequest(kind="cluster", id=cid, name="production"))
    admin.pool.Update(
        pool_pb2.PoolUpdateRequest(kind="cluster", id=cid, template="RESERVED_CPU = 10")
    )
    info = admin.pool.Info(pool_pb2.PoolInfoRequest(kind="cluster", id=cid))
    assert info.name == "production" and 'RESERVED_CPU = "10"' in info.template
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="cluster", id=cid))
    assert _ids(admin) == [0]
    code, details = _code(
        lambda: admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="cluster", id=0))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "cannot be deleted" in details


def test_pagination(admin):
    for n in range(5):
        admin.pool.Allocate(pool_pb2.AllocateRequest(kind="cluster", name=f"c{n}"))
    first = admin.pool.List(pool_pb2.PoolListRequest(kind="cluster", filter=-2, limit=4))
    assert [r["id"] for r in decode_list(first)] == [0, 1, 2, 3] and first.next_id == 4
    rest = admin.pool.List(
        pool_pb2.PoolListRequest(kind="cluster", filter=-2, start_id=first.next_id, limit=4)
    )
    assert [r["id"] for r in decode_list(rest)] == [4, 5] and rest.next_id == -1
    assert _ids(admin, start_id=2, end_id=3) == [2, 3]


def test_users_see_only_what_they_may(zone, admin):
    uid = admin.user.Allocate(user_pb2.UserAllocateRequest(name="u", password="u-pw")).id
    mine = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="cluster", name="mine")).id
    admin.pool.Allocate(pool_pb2.AllocateRequest(kind="cluster", name="theirs"))
    with zone.client().login("u", "u-pw") as u:
        assert _ids(u) == []
        code, _ = _code(lambda: u.pool.Info(pool_pb2.PoolInfoRequest(kind="cluster", id=mine)))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        code, _ = _code(lambda: u.pool.Allocate(pool_pb2.AllocateRequest(kind="cluster", name="x")))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        admin.pool.Chown(pool_pb2.ChownRequest(kind="cluster", id=mine, uid=uid, gid=-1))
        assert _ids(u) == [mine]
        assert [
            r["id"]
            for r in decode_list(u.pool.List(pool_pb2.PoolListRequest(kind="cluster", filter=-3)))
        ] == [mine]
        # The owner may rename (MANAGE) but not give everyone ADMIN (needs ADMIN).
        u.pool.Rename(pool_pb2.RenameRequest(kind="cluster", id=mine, name="ours"))
        code, details = _code(
            lambda: u.pool.Chmod(pool_pb2.ChmodRequest(kind="cluster", id=mine, perms=0o777))
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED and "ADMIN" in details
        # Shared with everyone: listed for another user too.
        u.pool.Chmod(pool_pb2.ChmodRequest(kind="cluster", id=mine, perms=0o604))
    admin.user.Allocate(user_pb2.UserAllocateRequest(name="v", password="v-pw"))
    with zone.client().login("v", "v-pw") as v:
        assert _ids(v) == [mine]


def test_acl_rule_makes_objects_visible(zone, admin):
    from zones.api.gen import acl_pb2

    gid = admin.group.Allocate(group_pb2.GroupAllocateRequest(name="ops")).id
    admin.user.Allocate(user_pb2.UserAllocateRequest(name="op", password="op-pw", gid=gid))
    cid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="cluster", name="k")).id
    with zone.client().login("op", "op-pw") as c:
        assert _ids(c) == []
        rule = admin.acl.Add(acl_pb2.AclAddRequest(rule=f"@{gid} CLUSTER/#{cid} USE")).id
        assert _ids(c) == [cid]
        admin.acl.Delete(common_pb2.ObjectRequest(id=rule))
        admin.acl.Add(acl_pb2.AclAddRequest(rule=f"@{gid} CLUSTER/* USE"))
        assert _ids(c) == [0, cid]


@pytest.mark.parametrize(
    "call, code, fragment",
    [
        (
            lambda c: c.pool.Info(pool_pb2.PoolInfoRequest(kind="nope", id=0)),
            "INVALID_ARGUMENT",
            "unknown object kind 'nope'",
        ),
        (
            lambda c: c.pool.Info(pool_pb2.PoolInfoRequest(kind="cluster", id=77)),
            "NOT_FOUND",
            "cluster 77 does not exist",
        ),
        (
            lambda c: c.pool.List(pool_pb2.PoolListRequest(kind="cluster", filter=-9)),
            "INVALID_ARGUMENT",
            "filter",
        ),
        (
            lambda c: c.pool.Chmod(pool_pb2.ChmodRequest(kind="cluster", id=0, perms=0o1000)),
            "INVALID_ARGUMENT",
            "0..0o777",
        ),
        (
            lambda c: c.pool.Chown(pool_pb2.ChownRequest(kind="cluster", id=0, uid=99, gid=-1)),
            "INVALID_ARGUMENT",
            "user 99 does not exist",
        ),
        (
            lambda c: c.pool.Chown(pool_pb2.ChownRequest(kind="cluster", id=0, uid=-1, gid=-1)),
            "INVALID_ARGUMENT",
            "needs a new owner",
        ),
        (
            lambda c: c.pool.Rename(pool_pb2.RenameRequest(kind="cluster", id=0, name="")),
            "INVALID_ARGUMENT",
            "1..128",
        ),
        (
            lambda c: c.pool.Allocate(pool_pb2.AllocateRequest(kind="cluster", name="a\\nb")),
            "INVALID_ARGUMENT",
            "may not contain",
        ),
    ],
)
def test_bad_input(zone, admin, call, code, fragment):
    before = zone.store.applied_index
    got, details = _code(lambda: call(admin))
    assert got.name == code, details
    assert fragment in details
    with zone.store.read() as view:
        assert view.get("objects", b"cluster\x00" + (0).to_bytes(8, "big"))["name"] == "default"
    assert zone.store.applied_index - before <= 1  # at most the refused command's entry
