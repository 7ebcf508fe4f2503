"""A state with what networks need (statekit): oneadmin, cluster 0, security group 0, two
users, and helpers to apply the lease functions (which are not ops) to it."""

from __future__ import annotations

import copy

from raftcore import acl, objects, schema
from raftcore.ops import secgroups, vnets
from tests.statekit import TS, Zone, write

ALICE, BOB = 1, 2
USERS_GID = 1
NET = 'NAME = "{name}"\nVN_MAD = "bridge"\n'
IP4_AR = 'AR = [ TYPE = "IP4", IP = "{ip}", SIZE = "{size}" ]\n'


def booted() -> Zone:
    z = Zone()
    z.ok("user.bootstrap", {"password_hash": "scrypt$h"}, uid=-1)
    z.ok("cluster.allocate", {"name": "default"})
    assert z.ok("secgroup.allocate", secgroups.DEFAULT_ARGS)["id"] == 0
    for name in ("alice", "bob"):
        z.ok("user.allocate", {"name": name, "password": "scrypt$x", "driver": "core"})
    return z


def rule(z: Zone, text: str) -> int:
    r = acl.parse(text)
    args = {"user": r.user, "resource": r.resource, "rights": r.rights, "zone": r.zone}
    return z.ok("acl.add", args)["id"]


def net(z: Zone, name: str = "net", ars: str = "", uid: int = 0, extra: str = "") -> int:
    """A bridge network with the given AR text; returns its id."""
    text = NET.format(name=name) + extra + ars
    return z.ok("vnet.allocate", {"template": text}, uid=uid)["id"]


def ip4(ip: str = "10.0.0.1", size: int = 10) -> str:
    return IP4_AR.format(ip=ip, size=size)


def rec(z: Zone, kind: str, oid: int) -> dict:
    return objects.find(z.view(), kind, oid)


def quota_used(z: Zone, kind: str, oid: int, vnet_id: int) -> int:
    prefix = b"u" if kind == "user" else b"g"
    record = z.state.get(schema.QUOTAS, {}).get(prefix + schema.id_key(oid)) or {}
    return record.get("NETWORK", {}).get(str(vnet_id), {}).get("LEASES_USED", 0)


def _command(uid: int) -> dict:
    return {"v": 1, "op": "test", "args": {}, "rid": "r", "uid": uid, "ts": TS}


def lease(z: Zone, vnet_id: int, vm_id: int, request: dict | None = None, uid: int = 0, **kw):
    """lease_for_vm applied to the state (purity checked); returns the NIC."""
    before = copy.deepcopy(z.state)
    nic, mutations = vnets.lease_for_vm(
        z.view(), _command(uid), vnet_id, vm_id, request or {}, **kw
    )
    assert z.state == before
    z.state = write(z.state, mutations)
    return nic


def release(z: Zone, vnet_id: int, vm_id: int, nic: dict, owner=(0, 0)) -> None:
    before = copy.deepcopy(z.state)
    mutations = vnets.release_for_vm(z.view(), vnet_id, vm_id, nic, owner=owner)
    assert z.state == before
    z.state = write(z.state, mutations)
