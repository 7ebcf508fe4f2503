"""Images in the state machine: allocate (cp / mkfs / source), driver results, enable,
persistent, chtype, clone, snapshots, delete, quotas, and the contract with VMs
(acquire_for_vm / release_for_vm). Every refusal leaves the state unchanged
(statekit.Zone.fails asserts it)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore import objects, quota, schema, template
from raftcore.commands import ErrorCode
from raftcore.ops import images as im
from raftcore.ops.common import Reject
from tests.statekit import TS, Zone, write
from tests.unit.test_datastore_ops import booted, rule

ALICE, BOB = 1, 2
SYSTEM = -1  # the front-ends propose driver results
OS_PATH = 'NAME = "ubuntu"\nPATH = "/srv/ubuntu.qcow2"'
BLANK = 'NAME = "blank"\nTYPE = "DATABLOCK"\nSIZE = "100"'
READY_SRC = 'NAME = "ready"\nSOURCE = "/var/lib/one/datastores/1/abc"\nSIZE = "50"'


def _user(z: Zone, name: str) -> int:
    return z.ok("user.allocate", {"name": name, "password": "scrypt$x", "driver": "core"})["id"]


@pytest.fixture
def z() -> Zone:
    """The zone's defaults; alice and bob in group users (1), which may USE every
    datastore (as the default VDC's rule) and CREATE images (a bootstrap rule)."""
    z = booted()
    assert _user(z, "alice") == ALICE and _user(z, "bob") == BOB
    z.ok("acl.add", rule("@1 DATASTORE/* USE"))
    return z


def img(z: Zone, oid: int) -> dict:
    return objects.find(z.view(), "image", oid)


def ds(z: Zone, oid: int) -> dict:
    return objects.find(z.view(), "datastore", oid)


def alloc(z: Zone, tmpl: str, datastore: int = 1, uid: int = 0, **extra) -> int:
    return z.ok("image.allocate", {"template": tmpl, "datastore": datastore, **extra}, uid=uid)[
        "id"
    ]


def ready(z: Zone, oid: int, **args) -> None:
    z.ok("image.ready", {"id": oid, **args}, uid=SYSTEM)


def usage(z: Zone, uid: int, ds_id: int = 1) -> tuple[int, int]:
    """(SIZE_USED, IMAGES_USED) of user `uid` on datastore `ds_id`."""
    record = z.state.get(schema.QUOTAS, {}).get(quota.record_key(quota.USER, uid)) or {}
    entry = record.get("DATASTORE", {}).get(str(ds_id), {})
    return entry.get("SIZE_USED", 0), entry.get("IMAGES_USED", 0)


def apply_mutations(z: Zone, mutations) -> None:
    z.state = write(z.state, mutations)


def cmd(uid: int = 0) -> dict:
    return {"v": 1, "op": "vm.allocate", "args": {}, "rid": "r", "uid": uid, "ts": TS}


# --- allocate -----------------------------------------------------------------------------


def test_allocate_from_path_is_locked_until_copied(z):
    oid = alloc(z, OS_PATH + '\nDESCRIPTION = "base"', uid=ALICE)
    record = img(z, oid)
    assert (record["state"], record["job"], record["type"]) == (im.LOCKED, "cp", "OS")
    assert (record["path"], record["source"], record["size_mb"]) == ("/srv/ubuntu.qcow2", "", 0)
    assert (record["uid"], record["gid"], record["ds_id"], record["persistent"]) == (1, 1, 1, False)
    assert (record["running_vms"], record["vms"], record["clones"], record["cloning_id"]) == (
        0,
        [],
        [],
        -1,
    )
    # TYPE, PATH... moved to the record; DEV_PREFIX defaulted; the rest kept.
    t = template.parse(record["template"])
    assert t.keys() == ["DESCRIPTION", "DEV_PREFIX"] and t.scalar("DEV_PREFIX") == "sd"
    assert ds(z, 1)["images"] == [oid]
    assert usage(z, ALICE) == (0, 1)
    assert list(objects.ids_by_index(z.view(), "image", "state", im.LOCKED)) == [oid]


def test_allocate_with_source_is_ready_at_once(z):
    oid = alloc(z, READY_SRC + "\nPERSISTENT = yes")
    record = img(z, oid)
    assert (record["state"], record["job"], record["size_mb"]) == (im.READY, None, 50)
    assert record["source"] == "/var/lib/one/datastores/1/abc" and record["persistent"]


def test_allocate_empty_datablock_is_made_by_mkfs(z):
    oid = alloc(z, BLANK, uid=ALICE)
    record = img(z, oid)
    assert (record["state"], record["job"], record["fs"], record["size_mb"]) == (
        im.LOCKED,
        "mkfs",
        "raw",
        100,
    )
    assert usage(z, ALICE) == (100, 1)
    qcow = alloc(z, BLANK.replace("blank", "q") + '\nDRIVER = "qcow2"')
    assert img(z, qcow)["fs"] == "qcow2"
    fs = alloc(z, BLANK.replace("blank", "x") + '\nFSTYPE = "ext4"')
    assert img(z, fs)["fs"] == "ext4"


def test_allocate_cdrom_and_files(z):
    cd = alloc(z, 'NAME = cd\nTYPE = cdrom\nPATH = "/srv/x.iso"')
    assert template.parse(img(z, cd)["template"]).scalar("DEV_PREFIX") == "hd"
    kernel = alloc(z, "NAME = vmlinuz\nTYPE = KERNEL\nPATH = /boot/vmlinuz\nDEV_PREFIX = vd", 2)
    record = img(z, kernel)
    assert record["type"] == "KERNEL" and not record["persistent"]
    assert "DEV_PREFIX" not in template.parse(record["template"])
    assert ds(z, 2)["images"] == [kernel]


def test_names_are_unique_per_owner(z):
    alloc(z, OS_PATH, uid=ALICE)
    alloc(z, OS_PATH, uid=BOB)
    z.fails(
        "image.allocate",
        {"template": OS_PATH, "datastore": 1},
        ALICE,
        "ACTION",
        "'ubuntu' of user 1 is already taken",
    )
    # The name argument wins over the template's NAME.
    oid = alloc(z, OS_PATH, uid=ALICE, name="ubuntu-2")
    assert img(z, oid)["name"] == "ubuntu-2"


@pytest.mark.parametrize(
    "args, code, text",
    [
        ({"template": OS_PATH}, "BAD_REQUEST", "missing argument 'datastore'"),
        ({"template": OS_PATH, "datastore": 9}, "BAD_REQUEST", "datastore 9 does not exist"),
        ({"template": OS_PATH, "datastore": "1"}, "BAD_REQUEST", "must be an id"),
        ({"template": OS_PATH, "datastore": 0}, "BAD_REQUEST", "system datastore"),
        ({"template": OS_PATH, "datastore": 2}, "BAD_REQUEST", "FILE_DS, which holds KERNEL"),
        ({"template": OS_PATH + "\nTYPE = KERNEL", "datastore": 1}, "BAD_REQUEST", "not KERNEL"),
        ({"template": OS_PATH + "\nTYPE = ISO", "datastore": 1}, "BAD_REQUEST", "TYPE 'ISO'"),
        (
            {"template": OS_PATH + "\nPERSISTENT = maybe", "datastore": 1},
            "BAD_REQUEST",
            "YES or NO",
        ),
        (
            {"template": OS_PATH + "\nSOURCE = /a\nSIZE = 1", "datastore": 1},
            "BAD_REQUEST",
            "exclusive",
        ),
        (
            {"template": 'NAME = a\nSOURCE = "/a"', "datastore": 1},
            "BAD_REQUEST",
            "SIZE (MB) is required",
        ),
        ({"template": "NAME = a\nTYPE = DATABLOCK", "datastore": 1}, "BAD_REQUEST", "needs SIZE"),
        ({"template": "NAME = a\nSIZE = 0", "datastore": 1}, "BAD_REQUEST", "SIZE (MB) > 0"),
        ({"template": 'NAME = a\nSIZE = "1.5"', "datastore": 1}, "BAD_REQUEST", "whole number"),
        ({"template": 'NAME = a\nSIZE = "-4"', "datastore": 1}, "BAD_REQUEST", "whole number"),
        ({"template": f"NAME = a\nSIZE = {2**41}", "datastore": 1}, "BAD_REQUEST", "at most"),
        (
            {"template": "NAME = a\nTYPE = CDROM", "datastore": 1},
            "BAD_REQUEST",
            "needs PATH or SOURCE",
        ),
        (
            {"template": "NAME = k\nTYPE = KERNEL\nPATH = /k\nPERSISTENT = YES", "datastore": 2},
            "BAD_REQUEST",
            "always non-persistent",
        ),
        ({"template": 'PATH = "/a"', "datastore": 1}, "BAD_REQUEST", "no name"),
        (
            {"template": OS_PATH, "datastore": 1, "cluster": 0},
            "BAD_REQUEST",
            "unknown argument(s): cluster",
        ),
        ({"template": "NAME = [", "datastore": 1}, "BAD_REQUEST", "argument 'template': line 1"),
        (
            {"template": OS_PATH + f'\nX = "{"x" * (1 << 20)}"', "datastore": 1},
            "BAD_REQUEST",
            "1 MiB",
        ),
    ],
)
def test_allocate_bad_input(z, args, code, text):
    z.fails("image.allocate", args, ALICE, code, text)


def test_allocate_needs_create_image_and_use_datastore(z):
    z.ok("group.allocate", {"name": "dev"})
    carol = z.ok("user.allocate", {"name": "carol", "password": "p", "driver": "core", "gid": 100})[
        "id"
    ]
    args = {"template": OS_PATH, "datastore": 1}
    z.fails("image.allocate", args, carol, "AUTHORIZATION", "CREATE")
    z.ok("acl.add", rule("@100 IMAGE/* CREATE"))
    z.fails("image.allocate", args, carol, "AUTHORIZATION", "DATASTORE")
    z.ok("acl.add", rule("@100 DATASTORE/#1 USE"))
    assert img(z, alloc(z, OS_PATH, uid=carol))["gid"] == 100


def test_persistent_only_datastore(z):
    z.ok(
        "obj.update",
        {"kind": "datastore", "id": 1, "template": "PERSISTENT_ONLY = YES", "append": True},
    )
    z.fails(
        "image.allocate",
        {"template": OS_PATH, "datastore": 1},
        ALICE,
        "ACTION",
        "only accepts persistent",
    )
    oid = alloc(z, OS_PATH + "\nPERSISTENT = YES", uid=ALICE)
    ready(z, oid, source="/s", size=1)
    z.fails("image.nonpersistent", {"id": oid}, ALICE, "ACTION", "only accepts persistent")


def test_allocate_checks_datastore_space(z):
    z.ok(
        "datastore.monitor", {"id": 1, "total_mb": 1000, "free_mb": 80, "used_mb": 920}, uid=SYSTEM
    )
    z.fails(
        "image.allocate",
        {"template": BLANK, "datastore": 1},
        ALICE,
        "ACTION",
        "100 MB needed, 80 MB free",
    )
    z.ok(
        "datastore.monitor", {"id": 1, "total_mb": 1000, "free_mb": 800, "used_mb": 200}, uid=SYSTEM
    )
    alloc(z, BLANK, uid=ALICE)


def test_allocate_charges_datastore_quota(z):
    z.ok(
        "quota.set",
        {
            "kind": "user",
            "id": ALICE,
            "quota": {"DATASTORE": [{"ID": 1, "SIZE": 150, "IMAGES": 2}]},
        },
    )
    first = alloc(z, BLANK, uid=ALICE)
    assert usage(z, ALICE) == (100, 1)
    z.fails(
        "image.allocate",
        {"template": BLANK.replace("blank", "b2"), "datastore": 1},
        ALICE,
        "ALLOCATE",
        "limit of 150 reached for SIZE quota in DATASTORE with ID: 1",
    )
    alloc(z, OS_PATH, uid=ALICE)  # size unknown until copied: 0 MB for now
    z.fails(
        "image.allocate",
        {"template": READY_SRC.replace("50", "1"), "datastore": 1},
        ALICE,
        "ALLOCATE",
        "IMAGES",
    )
    z.ok("image.delete", {"id": first}, uid=ALICE)
    assert usage(z, ALICE) == (0, 1)


# --- driver results -----------------------------------------------------------------------


def test_ready_after_copy_sets_source_and_size(z):
    oid = alloc(z, OS_PATH, uid=ALICE)
    ready(z, oid, source="/var/lib/one/datastores/1/f00", size=2048)
    record = img(z, oid)
    assert (record["state"], record["job"], record["source"], record["size_mb"]) == (
        im.READY,
        None,
        "/var/lib/one/datastores/1/f00",
        2048,
    )
    assert usage(z, ALICE) == (2048, 1)
    z.fails("image.ready", {"id": oid, "source": "/x"}, SYSTEM, "ACTION", "no driver operation")


def test_ready_over_quota_puts_the_image_in_error(z):
    z.ok(
        "quota.set",
        {"kind": "user", "id": ALICE, "quota": {"DATASTORE": [{"ID": 1, "SIZE": 1000}]}},
    )
    oid = alloc(z, OS_PATH, uid=ALICE)
    ready(z, oid, source="/s", size=5000)
    record = img(z, oid)
    assert record["state"] == im.ERROR and "5000 MB" in record["error"]
    assert record["size_mb"] == 0 and usage(z, ALICE) == (0, 1)


def test_ready_with_a_smaller_size_releases_quota(z):
    oid = alloc(z, BLANK, uid=ALICE)
    ready(z, oid, source="/s", size=60)
    assert img(z, oid)["size_mb"] == 60 and usage(z, ALICE) == (60, 1)


@pytest.mark.parametrize(
    "args, uid, code, text",
    [
        ({}, SYSTEM, "BAD_REQUEST", "needs argument 'source'"),
        ({"source": "/s"}, ALICE, "AUTHORIZATION", "front-ends only"),
        ({"source": ""}, SYSTEM, "BAD_REQUEST", "'source' must be 1..4096"),
        ({"source": "/s", "size": -1}, SYSTEM, "BAD_REQUEST", "'size' must be >= 0"),
        ({"source": "/s", "size": 2**50}, SYSTEM, "BAD_REQUEST", "at most"),
        ({"source": "/s", "format": "raw"}, SYSTEM, "BAD_REQUEST", "unknown argument(s): format"),
    ],
)
def test_ready_bad_input(z, args, uid, code, text):
    oid = alloc(z, OS_PATH)
    z.fails("image.ready", {"id": oid, **args}, uid, code, text)


def test_error_then_enable(z):
    oid = alloc(z, OS_PATH, uid=ALICE)
    z.ok("image.error", {"id": oid, "message": "cp: /srv/ubuntu.qcow2: no such file"}, uid=SYSTEM)
    record = img(z, oid)
    assert (record["state"], record["job"]) == (im.ERROR, None)
    assert record["error"] == "cp: /srv/ubuntu.qcow2: no such file"
    z.fails("image.error", {"id": oid, "message": "x"}, SYSTEM, "ACTION", "no driver operation")
    z.ok("image.enable", {"id": oid}, uid=ALICE)
    assert (img(z, oid)["state"], img(z, oid)["error"]) == (im.READY, "")
    z.fails("image.error", {"id": 99, "message": "x"}, SYSTEM, "NO_EXISTS")
    z.fails("image.error", {"id": oid}, SYSTEM, "BAD_REQUEST", "missing argument 'message'")


# --- enable, disable, persistent, chtype ------------------------------------------------------


def test_enable_disable(z):
    oid = alloc(z, READY_SRC, uid=ALICE)
    z.ok("image.disable", {"id": oid}, uid=ALICE)
    assert img(z, oid)["state"] == im.DISABLED
    z.ok("image.disable", {"id": oid}, uid=ALICE)
    z.ok("image.enable", {"id": oid}, uid=ALICE)
    assert img(z, oid)["state"] == im.READY
    z.fails("image.disable", {"id": oid}, BOB, "AUTHORIZATION", "MANAGE")
    locked = alloc(z, OS_PATH, uid=ALICE)
    z.fails("image.disable", {"id": locked}, ALICE, "ACTION", "cannot be disabled in state LOCKED")
    z.fails("image.enable", {"id": locked}, ALICE, "ACTION", "cannot be enabled in state LOCKED")
    z.fails("image.enable", {"id": 404}, ALICE, "NO_EXISTS", "image 404 does not exist")


def test_persistent_flags(z):
    oid = alloc(z, READY_SRC, uid=ALICE)
    z.ok("image.persistent", {"id": oid}, uid=ALICE)
    assert img(z, oid)["persistent"] is True
    z.ok("image.nonpersistent", {"id": oid}, uid=ALICE)
    assert img(z, oid)["persistent"] is False
    kernel = alloc(z, "NAME = k\nTYPE = KERNEL\nSOURCE = /k\nSIZE = 1", 2, uid=ALICE)
    z.fails("image.persistent", {"id": kernel}, ALICE, "ACTION", "always non-persistent")
    _, mutations = im.acquire_for_vm(z.view(), cmd(ALICE), oid, 7)
    apply_mutations(z, mutations)
    z.fails("image.persistent", {"id": oid}, ALICE, "ACTION", "in state USED")


def test_chtype(z):
    oid = alloc(z, READY_SRC, uid=ALICE)
    z.ok("image.chtype", {"id": oid, "type": "datablock"}, uid=ALICE)
    assert img(z, oid)["type"] == "DATABLOCK"
    z.fails(
        "image.chtype",
        {"id": oid, "type": "KERNEL"},
        ALICE,
        "ACTION",
        "can only become OS, CDROM, DATABLOCK",
    )
    z.fails(
        "image.chtype",
        {"id": oid, "type": "DISK"},
        ALICE,
        "BAD_REQUEST",
        "'DISK' is not an image type",
    )
    z.fails("image.chtype", {"id": oid, "type": 3}, ALICE, "BAD_REQUEST", "must be a string")
    z.fails("image.chtype", {"id": oid}, ALICE, "BAD_REQUEST", "missing argument 'type'")
    z.fails("image.chtype", {"id": oid, "type": "OS"}, BOB, "AUTHORIZATION")


# --- clone ---------------------------------------------------------------------------------


def test_clone_copies_the_source_and_holds_it(z):
    src = alloc(z, READY_SRC + "\nDESCRIPTION = gold", uid=ALICE)
    z.ok("obj.chmod", {"kind": "image", "id": src, "perms": 0o604}, uid=ALICE)  # shared
    new = z.ok("image.clone", {"id": src, "name": "mine"}, uid=BOB)["id"]
    clone = img(z, new)
    assert (clone["uid"], clone["state"], clone["job"], clone["cloning_id"]) == (
        BOB,
        im.LOCKED,
        "clone",
        src,
    )
    assert (clone["path"], clone["size_mb"], clone["ds_id"]) == (
        "/var/lib/one/datastores/1/abc",
        50,
        1,
    )
    assert template.parse(clone["template"]).scalar("DESCRIPTION") == "gold"
    assert usage(z, BOB) == (50, 1) and usage(z, ALICE) == (50, 1)
    source = img(z, src)
    assert (source["state"], source["clones"]) == (im.USED, [new])
    z.fails("image.delete", {"id": src}, ALICE, "ACTION", f"being cloned to image(s) {new}")
    z.fails("image.persistent", {"id": src}, ALICE, "ACTION", "state USED")
    ready(z, new, source="/var/lib/one/datastores/1/new")
    assert (img(z, new)["state"], img(z, new)["cloning_id"]) == (im.READY, -1)
    assert (img(z, src)["state"], img(z, src)["clones"]) == (im.READY, [])


def test_clone_of_persistent_image_is_in_clone_state(z):
    src = alloc(z, READY_SRC + "\nPERSISTENT = YES")
    new = z.ok("image.clone", {"id": src, "name": "copy"})["id"]
    assert img(z, src)["state"] == im.CLONE and img(z, new)["persistent"]
    # A VM cannot take it meanwhile; a failed clone frees it.
    with pytest.raises(Reject, match="in state CLONE"):
        im.acquire_for_vm(z.view(), cmd(), src, 7)
    z.ok("image.error", {"id": new, "message": "clone failed"}, uid=SYSTEM)
    assert img(z, new)["state"] == im.ERROR and img(z, src)["state"] == im.READY


def test_deleting_a_clone_in_progress_frees_its_source(z):
    src = alloc(z, READY_SRC)
    new = z.ok("image.clone", {"id": src, "name": "copy"})["id"]
    z.ok("image.delete", {"id": new})
    assert img(z, src)["state"] == im.READY and img(z, src)["clones"] == []
    assert ds(z, 1)["images"] == [src]


def test_clone_refusals(z):
    src = alloc(z, READY_SRC, uid=ALICE)
    nfs = z.ok("datastore.allocate", {"template": "NAME = ceph\nDS_MAD = ceph\nTM_MAD = ceph"})[
        "id"
    ]
    kernel = alloc(z, "NAME = k\nTYPE = KERNEL\nSOURCE = /k\nSIZE = 1", 2, uid=ALICE)
    locked = alloc(z, OS_PATH, uid=ALICE)
    cases = [
        ({"id": src}, "BAD_REQUEST", "missing argument 'name'"),
        ({"id": src, "name": "ready"}, "ACTION", "already taken"),
        ({"id": src, "name": "c", "datastore": 2}, "BAD_REQUEST", "clones go to an IMAGE_DS"),
        ({"id": src, "name": "c", "datastore": 0}, "BAD_REQUEST", "SYSTEM_DS"),
        ({"id": src, "name": "c", "datastore": 55}, "BAD_REQUEST", "datastore 55 does not exist"),
        ({"id": src, "name": "c", "datastore": nfs}, "BAD_REQUEST", "same DS_MAD"),
        ({"id": kernel, "name": "c"}, "ACTION", "cannot be cloned"),
        ({"id": locked, "name": "c"}, "ACTION", "cannot be cloned in state LOCKED"),
        ({"id": 404, "name": "c"}, "NO_EXISTS", "image 404"),
        ({"id": src, "name": "c\n"}, "BAD_REQUEST", "may not contain"),
    ]
    for args, code, text in cases:
        z.fails("image.clone", args, ALICE, code, text)
    z.fails("image.clone", {"id": src, "name": "c"}, BOB, "AUTHORIZATION", "USE")


# --- snapshots ------------------------------------------------------------------------------

SNAPS = [
    {"id": 0, "name": "base", "date": 1, "parent": -1, "active": False, "size": 10},
    {"id": 1, "name": "mid", "date": 2, "parent": 0, "active": False, "size": 20},
    {"id": 2, "name": "top", "date": 3, "parent": 1, "active": True, "size": 30},
]


def with_snapshots(z: Zone, uid: int = ALICE) -> int:
    """A persistent image whose VM saved disk snapshots back to it."""
    oid = alloc(z, READY_SRC + "\nPERSISTENT = YES", uid=uid)
    _, mutations = im.acquire_for_vm(z.view(), cmd(uid), oid, 7)
    apply_mutations(z, mutations)
    apply_mutations(z, im.set_snapshots(z.view(), oid, SNAPS))
    apply_mutations(z, im.release_for_vm(z.view(), oid, 7))
    assert img(z, oid)["state"] == im.READY and len(img(z, oid)["snapshots"]) == 3
    return oid


def test_snapshot_delete(z):
    oid = with_snapshots(z)
    z.fails("image.snapshot_delete", {"id": oid, "snapshot_id": 2}, ALICE, "ACTION", "active one")
    z.fails(
        "image.snapshot_delete", {"id": oid, "snapshot_id": 0}, ALICE, "ACTION", "has children (1)"
    )
    z.fails(
        "image.snapshot_delete",
        {"id": oid, "snapshot_id": 9},
        ALICE,
        "BAD_REQUEST",
        "no snapshot 9 (it has: 0, 1, 2)",
    )
    z.fails(
        "image.snapshot_delete", {"id": oid}, ALICE, "BAD_REQUEST", "missing argument 'snapshot_id'"
    )
    # Revert to 0 first so that 2 (a leaf, no longer active) may go.
    z.ok("image.snapshot_revert", {"id": oid, "snapshot_id": 0}, uid=ALICE)
    record = img(z, oid)
    assert (record["state"], record["job"], record["target_snapshot"]) == (
        im.LOCKED,
        "snap_revert",
        0,
    )
    z.fails(
        "image.snapshot_delete", {"id": oid, "snapshot_id": 2}, ALICE, "ACTION", "in state LOCKED"
    )
    ready(z, oid)
    assert [s["active"] for s in img(z, oid)["snapshots"]] == [True, False, False]
    z.ok("image.snapshot_delete", {"id": oid, "snapshot_id": 2}, uid=ALICE)
    z.fails(
        "image.ready", {"id": oid, "source": "/x"}, SYSTEM, "BAD_REQUEST", "only come with a cp"
    )
    ready(z, oid)
    assert [s["id"] for s in img(z, oid)["snapshots"]] == [0, 1]
    assert (img(z, oid)["state"], img(z, oid)["target_snapshot"]) == (im.READY, -1)


def test_snapshot_flatten_and_failures(z):
    z.ok(
        "quota.set",
        {"kind": "user", "id": ALICE, "quota": {"DATASTORE": [{"ID": 1, "SIZE": 1000}]}},
    )
    oid = with_snapshots(z)
    # The VM's disk snapshots were counted on the owner's datastore quota.
    apply_mutations(z, quota.charge(z.view(), ALICE, 1, {"DATASTORE": {1: {"SIZE": 60}}}))
    assert usage(z, ALICE) == (110, 1)
    z.ok("image.snapshot_flatten", {"id": oid, "snapshot_id": 1}, uid=ALICE)
    z.ok("image.error", {"id": oid, "message": "qemu-img failed"}, uid=SYSTEM)
    record = img(z, oid)
    assert (record["state"], len(record["snapshots"]), record["error"]) == (
        im.READY,
        3,
        "qemu-img failed",
    )
    z.ok("image.snapshot_flatten", {"id": oid, "snapshot_id": 1}, uid=ALICE)
    ready(z, oid)
    assert img(z, oid)["snapshots"] == [] and usage(z, ALICE) == (50, 1)
    # Without snapshots it may be made non-persistent again.
    z.ok("image.nonpersistent", {"id": oid}, uid=ALICE)


def test_snapshots_only_for_disks_with_history(z):
    cd = alloc(z, "NAME = cd\nTYPE = CDROM\nSOURCE = /x.iso\nSIZE = 1", uid=ALICE)
    z.fails(
        "image.snapshot_revert", {"id": cd, "snapshot_id": 0}, ALICE, "ACTION", "has no snapshots"
    )
    oid = with_snapshots(z)
    z.fails("image.nonpersistent", {"id": oid}, ALICE, "ACTION", "has snapshots")
    z.fails(
        "image.chtype", {"id": oid, "type": "CDROM"}, ALICE, "ACTION", "only be OS or DATABLOCK"
    )
    z.fails("image.clone", {"id": oid, "name": "c"}, ALICE, "ACTION", "has snapshots")


# --- the contract with VMs --------------------------------------------------------------


def acquire(z: Zone, oid: int, vm: int, uid: int = ALICE) -> dict:
    record, mutations = im.acquire_for_vm(z.view(), cmd(uid), oid, vm)
    apply_mutations(z, mutations)
    assert img(z, oid) == record
    return record


def release(z: Zone, oid: int, vm: int, failed: bool = False) -> None:
    apply_mutations(z, im.release_for_vm(z.view(), oid, vm, failed))


def test_non_persistent_image_serves_many_vms(z):
    oid = alloc(z, READY_SRC, uid=ALICE)
    assert acquire(z, oid, 7)["state"] == im.USED
    record = acquire(z, oid, 8)
    assert (record["state"], record["running_vms"], record["vms"]) == (im.USED, 2, [7, 8])
    assert list(objects.ids_by_index(z.view(), "image", "state", im.USED)) == [oid]
    z.fails("image.delete", {"id": oid}, ALICE, "ACTION", "used by VM(s) 7, 8")
    release(z, oid, 7)
    assert (img(z, oid)["state"], img(z, oid)["running_vms"]) == (im.USED, 1)
    release(z, oid, 8)
    assert (img(z, oid)["state"], img(z, oid)["running_vms"], img(z, oid)["vms"]) == (
        im.READY,
        0,
        [],
    )
    z.ok("image.delete", {"id": oid}, uid=ALICE)


def test_persistent_image_serves_one_vm(z):
    oid = alloc(z, READY_SRC + "\nPERSISTENT = YES", uid=ALICE)
    assert acquire(z, oid, 7)["state"] == im.USED_PERS
    with pytest.raises(Reject) as e:
        im.acquire_for_vm(z.view(), cmd(ALICE), oid, 8)
    assert e.value.code == ErrorCode.ACTION
    assert e.value.message == f"image {oid} is persistent and already used by VM 7"
    release(z, oid, 7)
    assert img(z, oid)["state"] == im.READY
    assert acquire(z, oid, 8)["vms"] == [8]
    release(z, oid, 8, failed=True)  # the VM failed: its disk may be damaged
    assert img(z, oid)["state"] == im.ERROR


@pytest.mark.parametrize(
    "setup, code, text",
    [
        (
            lambda z: alloc(z, OS_PATH, uid=ALICE),
            "ACTION",
            "cannot be used by a VM in state LOCKED",
        ),
        (lambda z: 99, "BAD_REQUEST", "image 99 does not exist"),
        (
            lambda z: alloc(z, "NAME = k\nTYPE = KERNEL\nSOURCE = /k\nSIZE = 1", 2, uid=ALICE),
            "BAD_REQUEST",
            "cannot be a VM disk",
        ),
        (lambda z: alloc(z, READY_SRC, uid=BOB), "AUTHORIZATION", "USE"),
    ],
)
def test_acquire_refusals(z, setup, code, text):
    oid = setup(z)
    with pytest.raises(Reject) as e:
        im.acquire_for_vm(z.view(), cmd(ALICE), oid, 7)
    assert e.value.code == code and text in e.value.message


def test_acquire_disabled_and_twice(z):
    oid = alloc(z, READY_SRC, uid=ALICE)
    acquire(z, oid, 7)
    # Another disk of the same VM: counted once, as OpenNebula's VM collection.
    record, mutations = im.acquire_for_vm(z.view(), cmd(ALICE), oid, 7)
    assert mutations == [] and (record["running_vms"], record["vms"]) == (1, [7])
    release(z, oid, 7)
    z.ok("image.disable", {"id": oid}, uid=ALICE)
    with pytest.raises(Reject, match="in state DISABLED"):
        im.acquire_for_vm(z.view(), cmd(ALICE), oid, 7)


def test_release_is_never_refused(z):
    oid = alloc(z, READY_SRC, uid=ALICE)
    assert im.release_for_vm(z.view(), oid, 7) == []  # not used by VM 7
    assert im.release_for_vm(z.view(), 404, 7) == []  # gone


def test_release_keeps_an_image_being_cloned_used(z):
    src = alloc(z, READY_SRC)
    acquire(z, src, 7, uid=0)
    z.ok("image.clone", {"id": src, "name": "c"})
    release(z, src, 7)
    assert img(z, src)["state"] == im.USED  # the clone still reads it


@settings(max_examples=40, deadline=None)
@given(
    persistent=st.booleans(),
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 4)), max_size=20),
)
def test_acquire_release_invariants(persistent, steps):
    z = booted()
    _user(z, "alice")
    z.ok("acl.add", rule("@1 DATASTORE/* USE"))
    tmpl = READY_SRC + ("\nPERSISTENT = YES" if persistent else "")
    oid = alloc(z, tmpl, uid=ALICE)
    for take, vm in steps:
        if take:
            try:
                acquire(z, oid, vm)
            except Reject as e:
                assert e.code == ErrorCode.ACTION
        else:
            release(z, oid, vm)
        record = img(z, oid)
        assert record["running_vms"] == len(record["vms"]) == len(set(record["vms"]))
        if persistent:
            assert len(record["vms"]) <= 1
            assert record["state"] == (im.USED_PERS if record["vms"] else im.READY)
        else:
            assert record["state"] == (im.USED if record["vms"] else im.READY)
