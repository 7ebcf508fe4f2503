"""Datastores in the state machine: the zone's defaults, allocate into a cluster, delete,
enable/disable (system datastores only), monitoring; every refusal leaves the state
unchanged (statekit.Zone.fails asserts it)."""

import pytest

from raftcore import acl, objects, template
from raftcore.ops import datastores as dss
from tests.statekit import Zone
from zones.bootstrap import DEFAULT_OBJECTS

ALICE = 1
IMG_TMPL = 'NAME = "nfs"\nDS_MAD = "fs"\nTM_MAD = "shared"\n'


def booted() -> Zone:
    """oneadmin, cluster 0 and the default datastores as the bootstrap proposes them."""
    z = Zone()
    z.ok("user.bootstrap", {"password_hash": "scrypt$h"}, uid=-1)
    z.ok("cluster.allocate", {"name": "default"})
    for kind, oid, op, args in DEFAULT_OBJECTS:
        if kind == "datastore":
            assert z.ok(op, args)["id"] == oid
    return z


@pytest.fixture
def z() -> Zone:
    z = booted()
    args = {"name": "alice", "password": "scrypt$x", "driver": "core"}
    assert z.ok("user.allocate", args)["id"] == ALICE
    return z


def ds(z: Zone, oid: int) -> dict:
    return objects.find(z.view(), "datastore", oid)


def cluster(z: Zone, cid: int = 0) -> dict:
    return objects.find(z.view(), "cluster", cid)


def rule(text: str) -> dict:
    r = acl.parse(text)
    return {"user": r.user, "resource": r.resource, "rights": r.rights, "zone": r.zone}


# --- defaults ---------------------------------------------------------------------------


def test_default_datastores_are_opennebulas(z):
    system, default, files = ds(z, 0), ds(z, 1), ds(z, 2)
    assert [(d["name"], d["type"], d["ds_mad"], d["tm_mad"]) for d in (system, default, files)] == [
        ("system", "SYSTEM_DS", "-", "ssh"),
        ("default", "IMAGE_DS", "fs", "ssh"),
        ("files", "FILE_DS", "fs", "ssh"),
    ]
    for d in (system, default, files):
        assert d["cids"] == [0] and d["images"] == [] and d["state"] == dss.READY
        assert (d["uid"], d["gid"], d["perms"]) == (0, 0, 0o640)  # group USE as OpenNebula
        assert d["base_path"] == f"/var/lib/one/datastores/{d['id']}"
        assert d["capacity"] == {"total_mb": 0, "free_mb": 0, "used_mb": 0}
    # A system datastore says whether hosts share it (ssh: no); NAME left the template.
    t = template.parse(system["template"])
    assert t.scalar("SHARED") == "NO" and "NAME" not in t
    assert "SHARED" not in template.parse(default["template"])
    assert cluster(z)["datastores"] == [0, 1, 2]
    # Indexed by name (unique zone-wide) and by cluster (%cid ACL rules).
    assert objects.by_name(z.view(), "datastore", "files") == 2
    assert list(objects.ids_by_index(z.view(), "datastore", "cluster", 0)) == [0, 1, 2]


def test_user_datastores_start_at_100(z):
    assert z.ok("datastore.allocate", {"template": IMG_TMPL})["id"] == 100
    second = {"template": 'TYPE = "system_ds"\nTM_MAD = "shared"', "name": "sys2"}
    assert z.ok("datastore.allocate", second)["id"] == 101
    assert ds(z, 101)["type"] == "SYSTEM_DS"
    assert template.parse(ds(z, 101)["template"]).scalar("SHARED") == "YES"
    z.ok("datastore.delete", {"id": 101})
    # Ids are never reused.
    third = {"template": IMG_TMPL.replace("nfs", "nfs2")}
    assert z.ok("datastore.allocate", third)["id"] == 102
    assert cluster(z)["datastores"] == [0, 1, 2, 100, 102]


def test_allocate_into_another_cluster(z):
    cid = z.ok("cluster.allocate", {"name": "prod"})["id"]
    oid = z.ok("datastore.allocate", {"template": IMG_TMPL, "cluster": cid})["id"]
    assert ds(z, oid)["cids"] == [cid]
    assert cluster(z, cid)["datastores"] == [oid]
    assert oid not in cluster(z)["datastores"]
    # A cluster holding a datastore cannot be deleted; once it is gone it can.
    z.fails("cluster.delete", {"id": cid}, 0, "ACTION", "not empty")
    z.ok("datastore.delete", {"id": oid})
    assert cluster(z, cid)["datastores"] == []
    z.ok("cluster.delete", {"id": cid})


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, code, text",
    [
        ({}, "BAD_REQUEST", "missing argument 'template'"),
        ({"template": 7}, "BAD_REQUEST", "must be template text"),
        ({"template": "NAME = [ A = 1"}, "BAD_REQUEST", "line 1"),
        ({"template": 'DS_MAD = "fs"\nTM_MAD = "ssh"'}, "BAD_REQUEST", "no name"),
        ({"template": IMG_TMPL, "name": ""}, "BAD_REQUEST", "'name' must be 1..128"),
        ({"template": IMG_TMPL + "TYPE = BLOCK_DS"}, "BAD_REQUEST", "TYPE 'BLOCK_DS' is not"),
        ({"template": IMG_TMPL + "TYPE = BACKUP_DS"}, "BAD_REQUEST", "not supported"),
        ({"template": IMG_TMPL + "TYPE = [ A = 1 ]"}, "BAD_REQUEST", "TYPE must be a single"),
        ({"template": IMG_TMPL + "TYPE = SYSTEM_DS"}, "BAD_REQUEST", "cannot have a DS_MAD"),
        ({"template": 'NAME = x\nTM_MAD = "ssh"'}, "BAD_REQUEST", "no DS_MAD"),
        ({"template": 'NAME = x\nDS_MAD = nfs\nTM_MAD = "ssh"'}, "BAD_REQUEST", "DS_MAD 'nfs'"),
        ({"template": 'NAME = x\nDS_MAD = "fs"'}, "BAD_REQUEST", "no TM_MAD"),
        ({"template": "NAME = x\nDS_MAD = fs\nTM_MAD = scp"}, "BAD_REQUEST", "TM_MAD 'scp'"),
        ({"template": IMG_TMPL, "cluster": 9}, "BAD_REQUEST", "argument 'cluster': cluster 9"),
        ({"template": IMG_TMPL, "cluster": "0"}, "BAD_REQUEST", "'cluster' must be an id"),
        ({"template": IMG_TMPL, "datastore": 1}, "BAD_REQUEST", "unknown argument(s): datastore"),
        ({"template": IMG_TMPL.replace("nfs", "default")}, "ACTION", "already taken by 1"),
        ({"template": IMG_TMPL, "id": 100}, "BAD_REQUEST", "reserved id 0..99"),
        ({"template": IMG_TMPL, "id": 1}, "ACTION", "datastore 1 already exists"),
        ({"template": IMG_TMPL, "id": -1}, "BAD_REQUEST", "'id' must be >= 0"),
    ],
)
def test_allocate_bad_input(z, args, code, text):
    z.fails("datastore.allocate", args, 0, code, text)


def test_allocate_template_over_1_mib(z):
    big = IMG_TMPL + f'NOTE = "{"x" * (1 << 20)}"'
    z.fails("datastore.allocate", {"template": big}, 0, "BAD_REQUEST", "1 MiB")


def test_reserved_ids_are_oneadmins(z):
    z.fails("datastore.allocate", {"template": IMG_TMPL, "id": 50}, ALICE, "AUTHORIZATION")


def test_allocate_needs_create_and_cluster_admin(z):
    z.fails("datastore.allocate", {"template": IMG_TMPL}, ALICE, "AUTHORIZATION", "CREATE")
    z.ok("acl.add", rule("#1 DATASTORE/* CREATE"))
    z.fails("datastore.allocate", {"template": IMG_TMPL}, ALICE, "AUTHORIZATION", "ADMIN")
    z.ok("acl.add", rule("#1 CLUSTER/#0 ADMIN"))
    oid = z.ok("datastore.allocate", {"template": IMG_TMPL}, uid=ALICE)["id"]
    record = ds(z, oid)
    assert (record["uid"], record["gid"], record["perms"]) == (ALICE, 1, 0o640)


# --- delete ---------------------------------------------------------------------------------


def test_delete_refused_while_it_holds_images(z):
    tmpl = 'NAME = "blank"\nTYPE = DATABLOCK\nSIZE = 10'
    iid = z.ok("image.allocate", {"template": tmpl, "datastore": 1})["id"]
    z.fails("datastore.delete", {"id": 1}, 0, "ACTION", f"holds image(s) {iid}")
    z.ok("image.delete", {"id": iid})
    z.ok("datastore.delete", {"id": 1})
    assert ds(z, 1) is None and cluster(z)["datastores"] == [0, 2]


def test_delete_bad_input(z):
    z.fails("datastore.delete", {"id": 77}, 0, "NO_EXISTS", "datastore 77 does not exist")
    z.fails("datastore.delete", {"id": "1"}, 0, "BAD_REQUEST", "must be an integer")
    z.fails("datastore.delete", {}, 0, "BAD_REQUEST", "missing argument 'id'")
    z.fails("datastore.delete", {"id": 1}, ALICE, "AUTHORIZATION", "ADMIN")


# --- enable / disable -----------------------------------------------------------------------


def test_only_system_datastores_are_disabled(z):
    z.ok("datastore.disable", {"id": 0})
    assert ds(z, 0)["state"] == dss.DISABLED
    assert list(objects.ids_by_index(z.view(), "datastore", "state", dss.DISABLED)) == [0]
    z.ok("datastore.disable", {"id": 0})  # already: nothing to do
    z.ok("datastore.enable", {"id": 0})
    assert ds(z, 0)["state"] == dss.READY
    z.fails("datastore.disable", {"id": 1}, 0, "ACTION", "only SYSTEM_DS")
    z.fails("datastore.enable", {"id": 2}, 0, "ACTION", "FILE_DS")
    z.fails("datastore.disable", {"id": 0}, ALICE, "AUTHORIZATION", "MANAGE")
    z.fails("datastore.disable", {"id": 9}, 0, "NO_EXISTS")
    z.fails("datastore.disable", {"id": 0, "now": True}, 0, "BAD_REQUEST", "unknown argument")


# --- monitoring --------------------------------------------------------------------------


def test_monitor_sets_capacity(z):
    z.ok("datastore.monitor", {"id": 1, "total_mb": 1000, "free_mb": 600, "used_mb": 400}, uid=-1)
    assert ds(z, 1)["capacity"] == {"total_mb": 1000, "free_mb": 600, "used_mb": 400}


@pytest.mark.parametrize(
    "args, uid, code, text",
    [
        ({"total_mb": 10, "free_mb": 5, "used_mb": 5}, ALICE, "AUTHORIZATION", "front-ends"),
        ({"total_mb": 10, "free_mb": 11, "used_mb": 0}, 0, "BAD_REQUEST", "'free_mb' (11)"),
        ({"total_mb": 10, "free_mb": 0, "used_mb": 20}, 0, "BAD_REQUEST", "'used_mb' (20)"),
        ({"total_mb": -1, "free_mb": 0, "used_mb": 0}, 0, "BAD_REQUEST", "'total_mb' must be"),
        ({"total_mb": 2**60, "free_mb": 0, "used_mb": 0}, 0, "BAD_REQUEST", "at most"),
        ({"total_mb": 1.5, "free_mb": 0, "used_mb": 0}, 0, "BAD_REQUEST", "integer"),
        ({"total_mb": 10, "free_mb": 5}, 0, "BAD_REQUEST", "missing argument 'used_mb'"),
    ],
)
def test_monitor_bad_input(z, args, uid, code, text):
    z.fails("datastore.monitor", {"id": 1, **args}, uid, code, text)


def test_monitor_is_not_a_client_action():
    assert "monitor" not in objects.KINDS["datastore"].actions
    assert objects.KINDS["datastore"].actions == {"enable", "disable"}
