"""Networks, security groups and virtual routers through the generic PoolService:
Allocate, Action (add_ar, hold, reserve, update ...), Info, List, Delete, and how
refusals come back as gRPC status codes."""

import grpc
import pytest

from raftcore import codec
from zones.api.gen import pool_pb2
from zones.api.pool_service import decode_list

NET = 'NAME = "pub"\nVN_MAD = "bridge"\nAR = [ TYPE = "IP4", IP = "10.0.0.1", SIZE = "8" ]\n'


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def _ids(c, kind: str) -> list[int]:
    reply = c.pool.List(pool_pb2.PoolListRequest(kind=kind, filter=-2))
    return [r["id"] for r in decode_list(reply)]


def _record(c, kind: str, oid: int) -> dict:
    return codec.unpackb(c.pool.Info(pool_pb2.PoolInfoRequest(kind=kind, id=oid)).record)


def _action(c, kind: str, oid: int, action: str, **args):
    request = pool_pb2.ActionRequest(kind=kind, id=oid, action=action, args=codec.packb(args))
    return codec.unpackb(c.pool.Action(request).value)


@pytest.fixture
def admin(zone):
    c = zone.admin()
    # The bootstrap creates cluster 0 and security group 0.
    assert 0 in _ids(c, "secgroup") and 0 in _ids(c, "cluster"), "defaults"
    yield c
    c.close()


def test_default_security_group(admin):
    info = admin.pool.Info(pool_pb2.PoolInfoRequest(kind="secgroup", id=0))
    assert (info.name, info.permissions) == ("default", "umau--u--")
    rules = codec.unpackb(info.record)["rules"]
    assert {r["rule_type"] for r in rules} == {"inbound", "outbound"}


def test_network_life_through_pool_service(admin):
    vid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vnet", template=NET, cluster_id=0)).id
    assert vid in _ids(admin, "vnet")
    assert _action(
        admin, "vnet", vid, "add_ar", template='AR = [ TYPE = "ETHER", SIZE = "4" ]'
    ) == {"ar_id": 1}
    assert _action(admin, "vnet", vid, "hold", ip="10.0.0.3") is None
    rid = _action(admin, "vnet", vid, "reserve", size=2, name="mine")["id"]
    record = _record(admin, "vnet", vid)
    assert record["used_leases"] == 3 and record["bridge"] == f"onebr{vid}"
    assert _record(admin, "vnet", rid)["parent_network"] == vid

    code, details = _code(lambda: _action(admin, "vnet", vid, "hold", ip="10.0.0.3"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already on hold" in details
    code, details = _code(lambda: _action(admin, "vnet", vid, "hold", ip="10.9.0.1"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not in any address range" in details
    code, details = _code(lambda: _action(admin, "vnet", vid, "lease", ip="10.0.0.5"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "has no action 'lease'" in details
    code, details = _code(
        lambda: admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="vnet", id=vid))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "leases are in use" in details
    code, _ = _code(lambda: admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="vnet", id=999)))
    assert code == grpc.StatusCode.NOT_FOUND

    _action(admin, "vnet", vid, "update", template='DNS = "9.9.9.9"', append=True)
    assert 'DNS = "9.9.9.9"' in _record(admin, "vnet", vid)["template"]
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="vnet", id=rid))
    _action(admin, "vnet", vid, "release", ip="10.0.0.3")
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="vnet", id=vid))
    assert vid not in _ids(admin, "vnet")


def test_refusals_through_allocate(admin):
    bad = 'NAME = "x"\nVN_MAD = "802.1Q"\n'
    code, details = _code(
        lambda: admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vnet", template=bad))
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "PHYDEV is required" in details
    code, details = _code(
        lambda: admin.pool.Allocate(
            pool_pb2.AllocateRequest(kind="vnet", template=NET, cluster_id=42)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "cluster 42 does not exist" in details


def test_secgroup_and_vrouter(admin):
    rules = 'NAME = "web"\nRULE = [ PROTOCOL = "TCP", RULE_TYPE = "inbound", RANGE = "80" ]\n'
    sid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="secgroup", template=rules)).id
    assert sid >= 100
    _action(
        admin,
        "secgroup",
        sid,
        "update",
        template='RULE = [ PROTOCOL = "UDP", RULE_TYPE = "outbound" ]',
    )
    assert _record(admin, "secgroup", sid)["rules"] == [
        {"protocol": "UDP", "rule_type": "outbound"}
    ]
    vid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vnet", template=NET)).id
    text = f'NAME = "gw"\nNIC = [ NETWORK_ID = "{vid}", FLOATING_IP = "YES" ]\n'
    rid = admin.pool.Allocate(pool_pb2.AllocateRequest(kind="vrouter", template=text)).id
    assert _record(admin, "vrouter", rid)["nics"][0]["ip"] == "10.0.0.1"
    assert _record(admin, "vnet", vid)["vrouters"] == [rid]
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="vrouter", id=rid))
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="vnet", id=vid))
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="secgroup", id=sid))
