"""Cluster membership in the state machine: addhost/delhost move a host between
clusters (a host is in exactly one), adddatastore/deldatastore/addvnet/delvnet keep both
sides (the cluster's list and the member's `cids`) in step; refusals change nothing."""

from __future__ import annotations

import pytest

from raftcore import acl, objects, schema
from raftcore.commands import OPS
from raftcore.ops import cluster_members, hosts
from tests.statekit import TS, Zone, write

KVM = "IM_MAD = kvm\nVM_MAD = kvm"
GIB_KB = 1 << 20


def booted() -> Zone:
    z = Zone()
    z.ok("user.bootstrap", {"password_hash": "scrypt$h"}, uid=-1)
    z.ok("cluster.allocate", {"name": "default"})
    return z


def get(z: Zone, kind: str, oid: int) -> dict:
    return objects.get(z.view(), kind, oid)


def member(z: Zone, kind: str, name: str) -> int:
    """A datastore or vnet record as their kinds write them (placed in no cluster), put
    straight into the state so these tests depend only on the membership contract."""
    cmd = {"uid": 0, "ts": TS}
    record, mutations = objects.new(z.view(), cmd, kind, name, "", {"cids": [], "state": 0})
    z.state = write(z.state, mutations)
    return record["id"]


def rule(z: Zone, text: str) -> None:
    r = acl.parse(text)
    z.ok("acl.add", {"user": r.user, "resource": r.resource, "rights": r.rights, "zone": r.zone})


@pytest.fixture
def z() -> Zone:
    z = booted()
    assert z.ok("cluster.allocate", {"name": "prod"})["id"] == 1
    assert z.ok("cluster.allocate", {"name": "test"})["id"] == 2
    assert z.ok("host.allocate", {"name": "node1", "template": KVM})["id"] == 0
    return z


def test_ops_are_registered():
    for op in cluster_members.HANDLERS:
        assert op in OPS
    assert objects.KINDS["cluster"].actions == {
        "addhost",
        "delhost",
        "adddatastore",
        "deldatastore",
        "addvnet",
        "delvnet",
    }


# --- hosts ------------------------------------------------------------------------------------


def test_addhost_moves_the_host(z):
    z.ok("cluster.addhost", {"id": 1, "object": 0})
    assert get(z, "host", 0)["cids"] == [1]
    assert (get(z, "cluster", 0)["hosts"], get(z, "cluster", 1)["hosts"]) == ([], [0])
    z.ok("cluster.addhost", {"id": 2, "object": 0})
    assert get(z, "host", 0)["cids"] == [2]
    assert (get(z, "cluster", 1)["hosts"], get(z, "cluster", 2)["hosts"]) == ([], [0])
    # the `cluster` index follows, so %cid ACL rules and listings see the move
    assert list(objects.ids_by_index(z.view(), "host", "cluster", 2)) == [0]
    assert list(objects.ids_by_index(z.view(), "host", "cluster", 0)) == []


def test_delhost_goes_back_to_the_default_cluster(z):
    z.ok("cluster.addhost", {"id": 1, "object": 0})
    z.fails("cluster.delhost", {"id": 2, "object": 0}, 0, "ACTION", "not in cluster 2 (it is in")
    z.ok("cluster.delhost", {"id": 1, "object": 0})
    assert get(z, "host", 0)["cids"] == [0]
    assert (get(z, "cluster", 0)["hosts"], get(z, "cluster", 1)["hosts"]) == ([0], [])
    z.fails("cluster.delhost", {"id": 0, "object": 0}, 0, "ACTION", "always in one cluster")


def test_moving_a_host_applies_the_new_clusters_reservation(z):
    z.ok("obj.update", {"kind": "cluster", "id": 1, "template": "RESERVED_CPU = 200"})
    z.ok(
        "host.monitor",
        {"id": 0, "state": "MONITORED", "capacity": {"total_cpu": 800, "total_mem": GIB_KB}},
        uid=-1,
    )
    assert get(z, "host", 0)["capacity"]["max_cpu"] == 800
    z.ok("cluster.addhost", {"id": 1, "object": 0})
    assert get(z, "host", 0)["capacity"]["max_cpu"] == 600
    z.ok("cluster.delhost", {"id": 1, "object": 0})
    assert get(z, "host", 0)["capacity"]["max_cpu"] == 800


def test_a_cluster_with_hosts_cannot_be_deleted(z):
    z.ok("cluster.addhost", {"id": 1, "object": 0})
    z.fails("cluster.delete", {"id": 1}, 0, "ACTION", "not empty (1 hosts)")
    z.ok("cluster.delhost", {"id": 1, "object": 0})
    z.ok("cluster.delete", {"id": 1})


@pytest.mark.parametrize(
    "op, args, code, text",
    [
        ("cluster.addhost", {"id": 0, "object": 0}, "ACTION", "host 0 is already in cluster 0"),
        ("cluster.addhost", {"id": 9, "object": 0}, "NO_EXISTS", "cluster 9 does not exist"),
        ("cluster.addhost", {"id": 1, "object": 5}, "BAD_REQUEST", "'object': host 5 does not"),
        ("cluster.addhost", {"id": 1, "object": "0"}, "BAD_REQUEST", "must be an id >= 0"),
        ("cluster.addhost", {"id": 1, "object": -1}, "BAD_REQUEST", "must be an id >= 0"),
        ("cluster.addhost", {"id": 1}, "BAD_REQUEST", "missing argument 'object'"),
        ("cluster.addhost", {"id": 1, "object": 0, "x": 1}, "BAD_REQUEST", "unknown argument"),
        ("cluster.delhost", {"id": 1, "object": 0}, "ACTION", "not in cluster 1"),
        ("cluster.delhost", {"id": "1", "object": 0}, "BAD_REQUEST", "must be an integer"),
    ],
)
def test_host_membership_refusals(z, op, args, code, text):
    z.fails(op, args, 0, code, text)


def test_host_membership_needs_admin_on_both(z):
    uid = z.ok("user.allocate", {"name": "u", "password": "scrypt$x", "driver": "core"})["id"]
    rule(z, f"#{uid} CLUSTER/#1 ADMIN")
    z.fails("cluster.addhost", {"id": 1, "object": 0}, uid, "AUTHORIZATION", "HOST")
    rule(z, f"#{uid} HOST/#0 MANAGE")
    z.fails("cluster.addhost", {"id": 1, "object": 0}, uid, "AUTHORIZATION", "ADMIN")
    rule(z, f"#{uid} HOST/#0 ADMIN")
    z.ok("cluster.addhost", {"id": 1, "object": 0}, uid=uid)
    # delhost also needs ADMIN on the default cluster, where the host goes
    z.fails("cluster.delhost", {"id": 1, "object": 0}, uid, "AUTHORIZATION", "CLUSTER")
    rule(z, f"#{uid} CLUSTER/#0 ADMIN")
    z.ok("cluster.delhost", {"id": 1, "object": 0}, uid=uid)


# --- datastores and vnets -----------------------------------------------------------------------


@pytest.mark.parametrize("kind, field", [("datastore", "datastores"), ("vnet", "vnets")])
def test_datastores_and_vnets_in_several_clusters(z, kind, field):
    oid = member(z, kind, "m")
    z.ok(f"cluster.add{kind}", {"id": 1, "object": oid})
    z.ok(f"cluster.add{kind}", {"id": 0, "object": oid})
    assert get(z, kind, oid)["cids"] == [0, 1]
    assert get(z, "cluster", 0)[field] == [oid] and get(z, "cluster", 1)[field] == [oid]
    assert list(objects.ids_by_index(z.view(), kind, "cluster", 1)) == [oid]
    label = objects.KINDS[kind].label
    z.fails(f"cluster.add{kind}", {"id": 1, "object": oid}, 0, "ACTION", "is already in cluster 1")
    z.ok(f"cluster.del{kind}", {"id": 1, "object": oid})
    assert get(z, kind, oid)["cids"] == [0] and get(z, "cluster", 1)[field] == []
    assert list(objects.ids_by_index(z.view(), kind, "cluster", 1)) == []
    z.fails(f"cluster.del{kind}", {"id": 1, "object": oid}, 0, "ACTION", f"{label} {oid} is not in")
    z.ok(f"cluster.del{kind}", {"id": 0, "object": oid})  # in no cluster at all is fine
    assert get(z, kind, oid)["cids"] == []
    z.fails(f"cluster.add{kind}", {"id": 1, "object": 42}, 0, "BAD_REQUEST", "42 does not exist")
    z.fails(f"cluster.add{kind}", {"id": 42, "object": oid}, 0, "NO_EXISTS", "cluster 42")


def test_datastore_membership_needs_admin_on_both(z):
    ds = member(z, "datastore", "ds")
    uid = z.ok("user.allocate", {"name": "u", "password": "scrypt$x", "driver": "core"})["id"]
    rule(z, f"#{uid} DATASTORE/#{ds} ADMIN")
    z.fails("cluster.adddatastore", {"id": 1, "object": ds}, uid, "AUTHORIZATION", "CLUSTER")
    rule(z, f"#{uid} CLUSTER/#1 ADMIN")
    z.ok("cluster.adddatastore", {"id": 1, "object": ds}, uid=uid)


def test_cluster_updates_helper(z):
    """What the datastore and vnet kinds call when they place or delete an object."""
    ds = member(z, "datastore", "ds")
    mutations = cluster_members.cluster_updates(z.view(), "datastore", ds, add=(1, 2, 77))
    z.state = write(z.state, mutations)
    assert get(z, "cluster", 1)["datastores"] == [ds] == get(z, "cluster", 2)["datastores"]
    mutations = cluster_members.cluster_updates(z.view(), "datastore", ds, remove=(1, 2))
    z.state = write(z.state, mutations)
    assert get(z, "cluster", 1)["datastores"] == [] == get(z, "cluster", 2)["datastores"]


def test_every_host_is_listed_by_exactly_its_cluster(z):
    """After a series of moves, each host is in one cluster and that cluster lists it."""
    for n in range(1, 4):
        z.ok("host.allocate", {"name": f"n{n}", "template": KVM, "cluster": n % 3})
    moves = [(1, 0), (2, 1), (1, 2), (1, 3), (2, 0)]
    for cid, hid in moves:
        z.ok("cluster.addhost", {"id": cid, "object": hid})
    listed = {c["id"]: c["hosts"] for c in objects.all_of(z.view(), "cluster")}
    for h in objects.all_of(z.view(), "host"):
        (cid,) = h["cids"]
        assert [c for c, ids in listed.items() if h["id"] in ids] == [cid]
    index = [k for k in z.state[schema.INDEX] if k.startswith(b"host\0cluster\0")]
    assert len(index) == 4
    assert hosts.DEFAULT_CLUSTER == 0
