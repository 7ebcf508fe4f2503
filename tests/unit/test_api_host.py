"""Hosts and cluster membership through PoolService (Allocate, Info, List with the state
filter, Action, Delete) against an in-process front-end; refusals map to their gRPC
codes and leave the state as it was."""

from __future__ import annotations

import grpc
import pytest

from raftcore import codec, objects
from raftcore.ops import hosts
from zones.api.gen import pool_pb2, user_pb2
from zones.api.pool_service import decode_list

KVM = "IM_MAD = kvm\nVM_MAD = kvm"


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def _list(c, kind: str = "host", **kw) -> list[dict]:
    return decode_list(c.pool.List(pool_pb2.PoolListRequest(kind=kind, filter=-2, **kw)))


def _record(c, kind: str, oid: int) -> dict:
    return codec.unpackb(c.pool.Info(pool_pb2.PoolInfoRequest(kind=kind, id=oid)).record)


def _action(c, kind: str, oid: int, action: str, **args):
    request = pool_pb2.ActionRequest(
        kind=kind, id=oid, action=action, args=codec.packb(args) if args else b""
    )
    return c.pool.Action(request)


@pytest.fixture
def admin(zone):
    c = zone.admin()
    assert [r["id"] for r in _list(c, "cluster")] == [0], "cluster 0"
    yield c
    c.close()


def test_host_life_cycle(zone, admin):
    hid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="host", name="n1", template=KVM)).id
    cid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="cluster", name="prod")).id
    other = admin.pool.Allocate(
        pool_pb2.AllocateRequest(kind="host", name="n2", template=KVM, cluster_id=cid)
    ).id
    info = admin.pool.Info(pool_pb2.PoolInfoRequest(kind="host", id=hid))
    assert (info.name, info.uname, info.gname) == ("n1", "oneadmin", "oneadmin")
    record = codec.unpackb(info.record)
    assert (record["state"], record["cids"], record["im_mad"]) == (hosts.INIT, [0], "kvm")
    assert _record(admin, "cluster", cid)["hosts"] == [other]

    # monitoring is proposed by the front-end itself, never through the API
    code, details = _code(lambda: _action(admin, "host", hid, "monitor", state="ERROR"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "no action 'monitor'" in details
    capacity = {"total_cpu": 400, "total_mem": 8 << 20}
    _, result = zone.propose(
        "host.monitor", {"id": hid, "state": "MONITORED", "capacity": capacity}, uid=-1
    )
    assert result["ok"], result
    assert _record(admin, "host", hid)["capacity"]["max_cpu"] == 400

    # the state filter reads the state index
    assert [r["id"] for r in _list(admin, state=hosts.MONITORED)] == [hid]
    assert [r["id"] for r in _list(admin, state=hosts.INIT)] == [other]
    _action(admin, "host", hid, "disable")
    _action(admin, "host", other, "offline")
    assert [r["id"] for r in _list(admin, state=hosts.DISABLED)] == [hid]
    code, details = _code(lambda: _action(admin, "host", hid, "disable"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already disabled" in details
    _action(admin, "host", hid, "enable")
    assert _record(admin, "host", hid)["state"] == hosts.MONITORED

    # cluster membership through cluster actions
    _action(admin, "cluster", cid, "addhost", object=hid)
    assert _record(admin, "host", hid)["cids"] == [cid]
    assert _record(admin, "cluster", cid)["hosts"] == [hid, other]
    _action(admin, "cluster", cid, "delhost", object=hid)
    assert _record(admin, "cluster", 0)["hosts"] == [hid]

    admin.pool.Rename(pool_pb2.RenameRequest(kind="host", id=hid, name="n1b"))
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="host", id=hid))
    assert [r["id"] for r in _list(admin)] == [other]
    assert _record(admin, "cluster", 0)["hosts"] == []


@pytest.mark.parametrize(
    "call, code, fragment",
    [
        (
            lambda c: c.pool.Allocate(pool_pb2.AllocateRequest(kind="host", name="x")),
            "INVALID_ARGUMENT",
            "missing argument 'template'",
        ),
        (
            lambda c: c.pool.Allocate(
                pool_pb2.AllocateRequest(kind="host", name="x", template="IM_MAD = kvm")
            ),
            "INVALID_ARGUMENT",
            "must set VM_MAD",
        ),
        (
            lambda c: c.pool.Allocate(
                pool_pb2.AllocateRequest(kind="host", name="x", template=KVM, cluster_id=7)
            ),
            "INVALID_ARGUMENT",
            "argument 'cluster': cluster 7 does not exist",
        ),
        (
            lambda c: c.pool.Allocate(
                pool_pb2.AllocateRequest(kind="host", name="h0", template=KVM)
            ),
            "FAILED_PRECONDITION",
            "already taken",
        ),
        (
            lambda c: c.pool.Allocate(
                pool_pb2.AllocateRequest(kind="host", name="x", template="A = " + "x" * (1 << 20))
            ),
            "INVALID_ARGUMENT",
            "template",
        ),
        (
            lambda c: _action(c, "host", 99, "enable"),
            "NOT_FOUND",
            "host 99 does not exist",
        ),
        (
            lambda c: _action(c, "host", 0, "enable"),
            "FAILED_PRECONDITION",
            "already enabled",
        ),
        (
            lambda c: _action(c, "cluster", 0, "addhost", object=0),
            "FAILED_PRECONDITION",
            "already in cluster 0",
        ),
        (
            lambda c: _action(c, "cluster", 0, "addhost", object=8),
            "INVALID_ARGUMENT",
            "argument 'object': host 8 does not exist",
        ),
        (
            lambda c: _action(c, "cluster", 0, "adddatastore", object="a"),
            "INVALID_ARGUMENT",
            "must be an id",
        ),
        (
            lambda c: c.pool.Delete(pool_pb2.PoolDeleteRequest(kind="cluster", id=0)),
            "FAILED_PRECONDITION",
            "cannot be deleted",
        ),
    ],
)
def test_bad_input(zone, admin, call, code, fragment):
    admin.pool.Allocate(pool_pb2.AllocateRequest(kind="host", name="h0", template=KVM))
    with zone.store.read() as view:
        before = (objects.get(view, "host", 0), objects.get(view, "cluster", 0))
    got, details = _code(lambda: call(admin))
    assert got.name == code, details
    assert fragment in details
    with zone.store.read() as view:
        assert (objects.get(view, "host", 0), objects.get(view, "cluster", 0)) == before


def test_group_users_cannot_administer_hosts(zone, admin):
    """The default VDC gives group users MANAGE on every host (OpenNebula's rule
    `@1 HOST/* MANAGE`); status changes and new hosts need more."""
    hid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="host", name="n", template=KVM)).id
    admin.user.Allocate(user_pb2.UserAllocateRequest(name="u", password="u-pw"))
    with zone.client().login("u", "u-pw") as u:
        code, details = _code(lambda: _action(u, "host", hid, "disable"))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "ADMIN" in details
        code, _ = _code(
            lambda: u.pool.Allocate(pool_pb2.AllocateRequest(kind="host", name="m", template=KVM))
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
