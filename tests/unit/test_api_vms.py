"""VMs, VM templates and VM groups through PoolService (Allocate, Action, Info, List):
the generic service reaches the kinds' ops; errors keep their classes."""

from __future__ import annotations

import grpc
import pytest

from raftcore import codec, lifecycle
from zones.api.gen import pool_pb2
from zones.api.pool_service import decode_list

TEMPLATE = 'NAME = "small"\nCPU = "1"\nMEMORY = "128"\nCPU_COST = "0.5"'


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def _action(c, kind: str, oid: int, action: str, **args):
    request = pool_pb2.ActionRequest(
        kind=kind, id=oid, action=action, args=codec.packb(args) if args else b""
    )
    return codec.unpackb(c.pool.Action(request).value)


def _vm(c, oid: int) -> dict:
    return codec.unpackb(c.pool.Info(pool_pb2.PoolInfoRequest(kind="vm", id=oid)).record)


@pytest.fixture
def admin(zone):
    c = zone.admin()
    assert decode_list(c.pool.List(pool_pb2.PoolListRequest(kind="cluster", filter=-2))), (
        "cluster 0"
    )
    yield c
    c.close()


def test_vm_allocate_actions_info_list(admin):
    vid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vm", template=TEMPLATE)).id
    info = admin.pool.Info(pool_pb2.PoolInfoRequest(kind="vm", id=vid))
    assert info.name == "small" and 'CPU_COST = "0.5"' in info.template
    record = codec.unpackb(info.record)
    assert lifecycle.state_str(record["state"], record["lcm_state"]) == "PENDING"
    held = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vm", template=TEMPLATE, hold=True)).id
    assert _vm(admin, held)["state"] == lifecycle.VmState.HOLD

    pending = admin.pool.List(pool_pb2.PoolListRequest(kind="vm", filter=-2, state=1))
    assert [r["id"] for r in decode_list(pending)] == [vid]

    assert _action(admin, "vm", held, "release") is None
    _action(admin, "vm", vid, "resize", cpu=2.0, memory=256)
    assert (_vm(admin, vid)["cpu"], _vm(admin, vid)["memory"]) == (2.0, 256)
    sched = 'SCHED_ACTION = [ ACTION = "terminate", TIME = "+3600" ]'
    assert _action(admin, "vm", vid, "sched-add", template=sched) == {"sched_id": 0}

    # a state the action does not take: FAILED_PRECONDITION with the table's words
    code, details = _code(lambda: _action(admin, "vm", vid, "poweroff"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert details == "action poweroff not allowed in state PENDING/LCM_INIT"
    # bad input names the argument; unknown objects named in arguments are bad input
    code, details = _code(lambda: _action(admin, "vm", vid, "deploy", host=77))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "host 77 does not exist" in details
    code, details = _code(lambda: _action(admin, "vm", vid, "recover", op="maybe"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "argument 'op'" in details
    # outcomes are the reconciler's, not a client action
    code, details = _code(lambda: _action(admin, "vm", vid, "outcome", event="boot_success"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "has no action 'outcome'" in details
    code, _ = _code(lambda: _action(admin, "vm", 999, "terminate"))
    assert code == grpc.StatusCode.NOT_FOUND

    _action(admin, "vm", vid, "terminate")
    assert _vm(admin, vid)["state"] == lifecycle.VmState.DONE
    done = admin.pool.List(pool_pb2.PoolListRequest(kind="vm", filter=-2, state=6))
    assert [r["id"] for r in decode_list(done)] == [vid]


def test_vm_allocate_errors(admin):
    code, details = _code(
        lambda: admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vm", template='CPU = "1"'))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "must set MEMORY" in details
    code, details = _code(
        lambda: admin.pool.Allocate(
            pool_pb2.AllocateRequest(kind="vm", template=TEMPLATE + '\nDISK = [ IMAGE_ID = "9" ]')
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "image 9 does not exist" in details


def test_template_instantiate_and_vmgroup(admin):
    tid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="template", template=TEMPLATE)).id
    assert _action(admin, "template", tid, "instantiate", name="web-1", hold=True) == {"id": 0}
    vm = _vm(admin, 0)
    assert (vm["name"], vm["template_id"], vm["state"]) == ("web-1", tid, 2)
    clone = _action(admin, "template", tid, "clone", name="copy")["id"]
    names = decode_list(admin.pool.List(pool_pb2.PoolListRequest(kind="template", filter=-2)))
    assert [(t["id"], t["name"]) for t in names] == [(tid, "small"), (clone, "copy")]
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="template", id=clone))

    group = 'NAME = "g"\nROLE = [ NAME = "web", POLICY = "ANTI_AFFINED" ]'
    gid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vmgroup", template=group)).id
    text = TEMPLATE + f'\nVMGROUP = [ VMGROUP_ID = "{gid}", ROLE = "web" ]'
    vid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vm", template=text)).id
    code, details = _code(
        lambda: admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="vmgroup", id=gid))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "has VMs" in details
    _action(admin, "vm", vid, "terminate")
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="vmgroup", id=gid))


def test_templates_as_structured_maps(admin):
    from google.protobuf import struct_pb2

    def struct(data: dict) -> struct_pb2.Struct:
        s = struct_pb2.Struct()
        s.update(data)
        return s

    data = {"NAME": "mapped", "CPU": 1, "MEMORY": 128, "LABELS": ["a", "b"]}
    vid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vm", template_map=struct(data))).id
    info = admin.pool.Info(pool_pb2.PoolInfoRequest(kind="vm", id=vid))
    assert info.name == "mapped" and 'CPU = "1"' in info.template
    assert dict(info.template_map)["CPU"] == "1"
    both = pool_pb2.AllocateRequest(kind="vm", template=TEMPLATE, template_map=struct(data))
    code, details = _code(lambda: admin.pool.Allocate(both))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not both" in details
    nested = struct({"DISK": {"IMAGE": {"deep": 1}}})
    code, details = _code(
        lambda: admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vm", template_map=nested))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "template_map" in details
