"""VDCs: groups given clusters, hosts, datastores and vnets through the ACL rules they
imply, created and removed with the VDC's changes; shared rules outlive one VDC."""

import pytest

from raftcore import acl, authz, schema
from raftcore.authz import AuthRequest
from tests.statekit import Zone

DEV = 100


@pytest.fixture
def z() -> Zone:
    z = Zone()
    z.ok("user.bootstrap", {"password_hash": "scrypt$h"}, uid=-1)
    z.ok("cluster.allocate", {"name": "default"})
    z.ok("cluster.allocate", {"name": "prod"})
    assert z.ok("group.allocate", {"name": "dev"})["id"] == DEV
    z.ok("user.allocate", {"name": "alice", "password": "x", "driver": "core", "gid": DEV})
    return z


def rules(z: Zone) -> set[str]:
    return {acl.format(acl.Rule.from_record(r)) for r in z.state["acls"].values()}


def host_in(cluster: int, right: str = "MANAGE") -> AuthRequest:
    return AuthRequest("HOST", right, oid=7, owner=0, gid=0, perms=0, cids=(cluster,))


def test_cluster_for_a_group(z):
    vid = z.ok("vdc.allocate", {"name": "v"})["id"]
    z.ok("vdc.addgroup", {"id": vid, "group": DEV})
    assert not authz.allowed(z.view(), 1, host_in(1))
    z.ok("vdc.addcluster", {"id": vid, "cluster": 1})
    assert {f"@{DEV} HOST/%1 MANAGE #0", f"@{DEV} NET+DATASTORE/%1 USE #0"} <= rules(z)
    assert authz.allowed(z.view(), 1, host_in(1))
    assert not authz.allowed(z.view(), 1, host_in(0))
    z.ok("vdc.delcluster", {"id": vid, "cluster": 1})
    assert not authz.allowed(z.view(), 1, host_in(1))
    assert not any(f"@{DEV}" in r for r in rules(z))


def test_all_resources_and_each_kind(z):
    vid = z.ok("vdc.allocate", {"name": "v"})["id"]
    z.ok("vdc.addcluster", {"id": vid, "cluster": -10})
    z.ok("vdc.addgroup", {"id": vid, "group": DEV})
    assert f"@{DEV} HOST/* MANAGE #0" in rules(z)
    # Other zones' resources are not checked here (they live in those zones).
    z.ok("vdc.addhost", {"id": vid, "host": 42, "zone": 3})
    z.ok("vdc.adddatastore", {"id": vid, "datastore": 5, "zone": 3})
    z.ok("vdc.addvnet", {"id": vid, "vnet": 6, "zone": 3})
    assert {
        f"@{DEV} HOST/#42 MANAGE #3",
        f"@{DEV} DATASTORE/#5 USE #3",
        f"@{DEV} NET/#6 USE #3",
    } <= rules(z)
    # Removing the group removes every rule it had.
    z.ok("vdc.delgroup", {"id": vid, "group": DEV})
    assert not any(f"@{DEV}" in r for r in rules(z))


def test_a_rule_two_vdcs_imply_survives_one_of_them(z):
    a = z.ok("vdc.allocate", {"name": "a"})["id"]
    b = z.ok("vdc.allocate", {"name": "b"})["id"]
    for vid in (a, b):
        z.ok("vdc.addgroup", {"id": vid, "group": DEV})
        z.ok("vdc.addcluster", {"id": vid, "cluster": 1})
    assert len([r for r in rules(z) if f"@{DEV}" in r]) == 2  # stored once
    z.ok("vdc.delete", {"id": a})
    assert authz.allowed(z.view(), 1, host_in(1))
    z.ok("vdc.delete", {"id": b})
    assert not authz.allowed(z.view(), 1, host_in(1))
    # The by-user index holds exactly the remaining rules.
    assert len(z.state["acls_by_user"]) == len(z.state["acls"])


def test_rule_ids_are_consecutive_and_the_sequence_moves(z):
    vid = z.ok("vdc.allocate", {"name": "v"})["id"]
    z.ok("vdc.addcluster", {"id": vid, "cluster": 1})
    z.ok("vdc.addgroup", {"id": vid, "group": DEV})
    assert sorted(schema.key_id(k) for k in z.state["acls"]) == [0, 1, 2, 3, 4]
    assert z.state["meta"][b"seq:acl"] == 5


def test_refusals(z):
    vid = z.ok("vdc.allocate", {"name": "v"})["id"]
    z.fails("vdc.allocate", {"name": "v"}, 0, "ACTION", "already taken")
    z.fails("vdc.allocate", {}, 0, "BAD_REQUEST", "needs a name")
    z.fails("vdc.allocate", {"template": "NAME = [ A = 1 ]"}, 0, "BAD_REQUEST", "NAME")
    z.fails("vdc.addgroup", {"id": vid, "group": 404}, 0, "BAD_REQUEST", "group 404 does not")
    z.fails("vdc.addcluster", {"id": vid, "cluster": 9}, 0, "BAD_REQUEST", "cluster 9 does not")
    z.ok("vdc.addgroup", {"id": vid, "group": DEV})
    z.fails("vdc.addgroup", {"id": vid, "group": DEV}, 0, "ACTION", "already in VDC")
    z.fails("vdc.delcluster", {"id": vid, "cluster": 1}, 0, "ACTION", "not in VDC")
    z.fails("vdc.addcluster", {"id": vid, "cluster": 1}, 1, "AUTHORIZATION")
    z.fails("vdc.allocate", {"name": "w"}, 1, "AUTHORIZATION")
    z.fails("vdc.delete", {"id": 77}, 0, "NO_EXISTS", "VDC 77 does not exist")


def test_deleting_a_resource_takes_it_out_of_every_vdc(z):
    vid = z.ok("vdc.allocate", {"name": "v"})["id"]
    z.ok("vdc.addgroup", {"id": vid, "group": DEV})
    z.ok("vdc.addcluster", {"id": vid, "cluster": 1})
    assert authz.allowed(z.view(), 1, host_in(1))
    z.ok("cluster.delete", {"id": 1})
    vdcs = [r for k, r in z.state["objects"].items() if k.startswith(b"vdc\0")]
    assert [v["clusters"] for v in vdcs] == [[]]
    assert not any(f"@{DEV}" in r for r in rules(z))
    assert not authz.allowed(z.view(), 1, host_in(1))
