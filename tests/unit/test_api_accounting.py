"""Accounting and showback end to end: a VM deployed on a host (the scheduler's deploy and
the reconciler's outcomes proposed as they will be) shows in oneacct / oneshowback, with
costs from its template, and only to those who may see it; a VM's owner cannot rewrite
its costs."""

from __future__ import annotations

import datetime

import grpc
import pytest

from raftcore import codec
from zones.api.gen import accounting_pb2, pool_pb2, user_pb2
from zones.api.pool_service import decode_list

TEMPLATE = 'NAME = "web"\nCPU = "2"\nMEMORY = "1024"\nCPU_COST = "0.5"\nMEMORY_COST = "0.001"'


def _action(c, kind: str, oid: int, action: str, **args):
    request = pool_pb2.ActionRequest(kind=kind, id=oid, action=action, args=codec.packb(args))
    return codec.unpackb(c.pool.Action(request).value)


@pytest.fixture
def running(zone):
    """oneadmin's client, a user bob, and bob's VM running on host h1."""
    admin = zone.admin()
    assert decode_list(admin.pool.List(pool_pb2.PoolListRequest(kind="cluster", filter=-2))), (
        "cluster 0"
    )
    hid = admin.pool.Allocate(
        pool_pb2.AllocateRequest(kind="host", name="h1", template='IM_MAD="dummy"\nVM_MAD="dummy"')
    ).id
    capacity = {"total_cpu": 800, "total_mem": 16 << 20}
    _, result = zone.propose(
        "host.monitor", {"id": hid, "state": "MONITORED", "capacity": capacity}, uid=-1
    )
    assert result["ok"], result
    bob = admin.user.Allocate(user_pb2.UserAllocateRequest(name="bob", password="bob-pw")).id
    with zone.client().login("bob", "bob-pw") as c:
        vid = c.pool.Allocate(pool_pb2.AllocateRequest(kind="vm", template=TEMPLATE)).id
    _action(admin, "vm", vid, "deploy", host=hid)
    for event in ("prolog_success", "boot_success"):
        _, result = zone.propose("vm.outcome", {"id": vid, "event": event}, uid=-1)
        assert result["ok"], result
    yield admin, bob, vid
    admin.close()


def _this_month() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return f"{now.year:04d}-{now.month:02d}"


def test_accounting_and_showback_of_a_running_vm(zone, running):
    admin, bob, vid = running
    reply = admin.accounting.Accounting(accounting_pb2.AccountingRequest(filter=-2))
    records = codec.unpackb(reply.records)
    assert [(r["vmid"], r["hostname"], r["uid"]) for r in records] == [(vid, "h1", bob)]
    assert records[0]["stime"] > 0 and records[0]["etime"] == 0
    rows = admin.accounting.Showback(
        accounting_pb2.ShowbackRequest(filter=-2, first_month=_this_month())
    ).rows
    assert [(r.vm_id, r.uid) for r in rows] == [(vid, bob)]
    row = rows[0]
    assert row.hours > 0
    assert row.cpu_cost == pytest.approx(0.5 * 2 * row.hours, rel=1e-3)
    assert row.memory_cost == pytest.approx(0.001 * 1024 * row.hours, rel=1e-3)
    # Another user sees none of it; bob sees his own.
    admin.user.Allocate(user_pb2.UserAllocateRequest(name="eve", password="eve-pw"))
    with zone.client().login("eve", "eve-pw") as c:
        req = accounting_pb2.ShowbackRequest(filter=-2, first_month=_this_month())
        assert list(c.accounting.Showback(req).rows) == []
    with zone.client().login("bob", "bob-pw") as c:
        req = accounting_pb2.ShowbackRequest(filter=-3, first_month=_this_month())
        assert [r.vm_id for r in c.accounting.Showback(req).rows] == [vid]


def test_owner_updates_the_user_template_not_the_costs(zone, running):
    admin, bob, vid = running
    with zone.client().login("bob", "bob-pw") as c:
        c.pool.Update(pool_pb2.PoolUpdateRequest(kind="vm", id=vid, template='EMAIL = "b@x"'))
        with pytest.raises(grpc.RpcError) as err:
            c.pool.Update(pool_pb2.PoolUpdateRequest(kind="vm", id=vid, template="CPU_COST = 0"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "CPU_COST" in err.value.details()
    record = codec.unpackb(admin.pool.Info(pool_pb2.PoolInfoRequest(kind="vm", id=vid)).record)
    assert 'EMAIL = "b@x"' in record["user_template"]
    assert 'CPU_COST = "0.5"' in record["template"]


def test_bad_report_arguments(zone, running):
    admin = running[0]
    for request, fragment in (
        (accounting_pb2.ShowbackRequest(filter=-2, first_month="2026-13"), "out of range"),
        (accounting_pb2.ShowbackRequest(filter=-9, first_month="2026-01"), "filter"),
        (accounting_pb2.AccountingRequest(filter=-2, start_unix_ms=5, end_unix_ms=3), "after"),
    ):
        call = (
            admin.accounting.Showback
            if isinstance(request, accounting_pb2.ShowbackRequest)
            else admin.accounting.Accounting
        )
        with pytest.raises(grpc.RpcError) as err:
            call(request)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in err.value.details()
