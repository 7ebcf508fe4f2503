"""Datastores and images through PoolService against an in-process front-end: the
bootstrap's default datastores, Allocate / Action / Delete / List, driver results
proposed by the front-end, and what a user may see and do."""

import grpc
import pytest

from raftcore import codec
from raftcore.ops import images as im
from zones.api.gen import acl_pb2, group_pb2, pool_pb2, user_pb2
from zones.api.pool_service import decode_list


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def _list(c, kind: str, **kw) -> list[dict]:
    return decode_list(c.pool.List(pool_pb2.PoolListRequest(kind=kind, filter=-2, **kw)))


def _info(c, kind: str, oid: int) -> dict:
    return codec.unpackb(c.pool.Info(pool_pb2.PoolInfoRequest(kind=kind, id=oid)).record)


def _action(c, kind: str, oid: int, action: str, **args):
    request = pool_pb2.ActionRequest(kind=kind, id=oid, action=action, args=codec.packb(args))
    return codec.unpackb(c.pool.Action(request).value)


@pytest.fixture
def admin(zone):
    c = zone.admin()
    assert len(_list(c, "datastore")) == 3, "the default datastores"
    yield c
    c.close()


def test_default_datastores_and_allocate(zone, admin):
    assert [(d["id"], d["name"], d["type"]) for d in _list(admin, "datastore")] == [
        (0, "system", "SYSTEM_DS"),
        (1, "default", "IMAGE_DS"),
        (2, "files", "FILE_DS"),
    ]
    info = admin.pool.Info(pool_pb2.PoolInfoRequest(kind="datastore", id=1))
    assert (info.uname, info.gname, info.permissions) == ("oneadmin", "oneadmin", "um-u-----")
    tmpl = 'NAME = "ceph"\nDS_MAD = "ceph"\nTM_MAD = "ceph"\nPOOL_NAME = "one"'
    oid = admin.pool.Allocate(
        pool_pb2.AllocateRequest(kind="datastore", template=tmpl, cluster_id=0)
    ).id
    assert oid == 100 and _info(admin, "cluster", 0)["datastores"] == [0, 1, 2, 100]
    code, details = _code(
        lambda: admin.pool.Allocate(pool_pb2.AllocateRequest(kind="datastore", template=tmpl))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "already taken by 100" in details
    code, details = _code(
        lambda: admin.pool.Allocate(
            pool_pb2.AllocateRequest(kind="datastore", template="NAME = x\nDS_MAD = fs")
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "no TM_MAD" in details
    # Only system datastores are disabled; monitoring is not a client action.
    _action(admin, "datastore", 0, "disable")
    assert [d["id"] for d in _list(admin, "datastore", state=1)] == [0]
    code, details = _code(lambda: _action(admin, "datastore", 100, "disable"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "only SYSTEM_DS" in details
    code, details = _code(lambda: _action(admin, "datastore", 1, "monitor", total_mb=1))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "has no action 'monitor'" in details
    admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="datastore", id=100))
    assert [d["id"] for d in _list(admin, "datastore")] == [0, 1, 2]


def test_image_life(zone, admin):
    tmpl = 'NAME = "ubuntu"\nPATH = "/srv/ubuntu.qcow2"\nDESCRIPTION = "base"'
    iid = admin.pool.Allocate(
        pool_pb2.AllocateRequest(kind="image", template=tmpl, datastore_id=1)
    ).id
    record = _info(admin, "image", iid)
    assert (record["state"], record["job"], record["ds_id"]) == (im.LOCKED, "cp", 1)
    assert _info(admin, "datastore", 1)["images"] == [iid]
    # The driver's result comes through the log, from the front-end (uid -1).
    _, result = zone.propose("image.ready", {"id": iid, "source": "/ds/1/abc", "size": 700}, uid=-1)
    assert result["ok"], result
    assert [i["id"] for i in _list(admin, "image", state=im.READY)] == [iid]
    code, details = _code(lambda: _action(admin, "image", iid, "ready", source="/x"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "has no action 'ready'" in details

    _action(admin, "image", iid, "persistent")
    assert _info(admin, "image", iid)["persistent"] is True
    clone = _action(admin, "image", iid, "clone", name="ubuntu-copy")["id"]
    assert _info(admin, "image", iid)["state"] == im.CLONE
    assert _info(admin, "image", clone)["cloning_id"] == iid
    code, details = _code(
        lambda: admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="image", id=iid))
    )
    assert code == grpc.StatusCode.FAILED_PRECONDITION and f"cloned to image(s) {clone}" in details
    _, result = zone.propose("image.error", {"id": clone, "message": "no space"}, uid=-1)
    assert result["ok"], result
    assert _info(admin, "image", clone)["state"] == im.ERROR
    assert _info(admin, "image", iid)["state"] == im.READY

    code, details = _code(lambda: _action(admin, "image", iid, "chtype", type="KERNEL"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "can only become" in details
    code, details = _code(lambda: _action(admin, "image", iid, "snapshot_delete", snapshot_id=0))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "has no snapshot 0" in details
    for oid in (clone, iid):
        admin.pool.Delete(pool_pb2.PoolDeleteRequest(kind="image", id=oid))
    assert _list(admin, "image") == [] and _info(admin, "datastore", 1)["images"] == []


def test_image_bad_input(admin):
    cases = [
        (
            pool_pb2.AllocateRequest(kind="image", template="NAME = a\nSIZE = 10", datastore_id=0),
            grpc.StatusCode.INVALID_ARGUMENT,
            "system datastore",
        ),
        (
            pool_pb2.AllocateRequest(kind="image", template="NAME = a\nSIZE = 10", datastore_id=9),
            grpc.StatusCode.INVALID_ARGUMENT,
            "datastore 9 does not exist",
        ),
        (
            pool_pb2.AllocateRequest(kind="image", template="NAME = a\nSIZE = 10"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "missing argument 'datastore'",
        ),
        (
            pool_pb2.AllocateRequest(kind="image", template="NAME = a\nSIZE = x", datastore_id=1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "whole number",
        ),
    ]
    for request, code, text in cases:
        got, details = _code(lambda r=request: admin.pool.Allocate(r))
        assert got == code and text in details, (got, details)
    assert _list(admin, "image") == []
    code, _ = _code(lambda: _action(admin, "image", 42, "enable"))
    assert code == grpc.StatusCode.NOT_FOUND


def test_users_images(zone, admin):
    gid = admin.group.Allocate(group_pb2.GroupAllocateRequest(name="dev")).id
    uid = admin.user.Allocate(user_pb2.UserAllocateRequest(name="u", password="u-pw", gid=gid)).id
    admin.acl.Add(acl_pb2.AclAddRequest(rule=f"@{gid} IMAGE/* CREATE"))
    tmpl = 'NAME = "data"\nTYPE = DATABLOCK\nSIZE = 64'
    request = pool_pb2.AllocateRequest(kind="image", template=tmpl, datastore_id=1)
    with zone.client().login("u", "u-pw") as u:
        # The group may create images, but not in a datastore it cannot use.
        code, details = _code(lambda: u.pool.Allocate(request))
        assert code == grpc.StatusCode.PERMISSION_DENIED and "DATASTORE" in details
        admin.acl.Add(acl_pb2.AclAddRequest(rule=f"@{gid} DATASTORE/#1 USE"))
        iid = u.pool.Allocate(request).id
        mine = decode_list(u.pool.List(pool_pb2.PoolListRequest(kind="image", filter=-3)))
        assert [(i["id"], i["uid"], i["gid"], i["size_mb"]) for i in mine] == [(iid, uid, gid, 64)]
        ds_tmpl = "NAME = d\nDS_MAD = fs\nTM_MAD = ssh"
        code, _ = _code(
            lambda: u.pool.Allocate(pool_pb2.AllocateRequest(kind="datastore", template=ds_tmpl))
        )
        assert code == grpc.StatusCode.PERMISSION_DENIED
