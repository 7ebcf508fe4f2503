"""obj.chown moves the quota usage an object holds from the old owner and group to the
new ones (as OpenNebula), refusing a move that would push them over their quota."""

from raftcore import quota, schema
from tests.statekit import Zone

IMAGE_TEXT = 'NAME = "disk"\nSOURCE = "/var/disk"\nSIZE = "100"\nTYPE = "OS"'


def _zone() -> tuple[Zone, int, int, int]:
    z = Zone()
    z.ok("user.bootstrap", {"password_hash": "scrypt$h"}, uid=-1)
    z.ok("cluster.allocate", {"name": "default"})
    ds_text = 'NAME = "images"\nTYPE = "IMAGE_DS"\nDS_MAD = "fs"\nTM_MAD = "shared"'
    ds = z.ok("datastore.allocate", {"template": ds_text})["id"]
    z.ok("obj.chmod", {"kind": "datastore", "id": ds, "perms": 0o644})
    a = z.ok("user.allocate", {"name": "a", "password": "x", "driver": "core"})["id"]
    b = z.ok("user.allocate", {"name": "b", "password": "x", "driver": "core"})["id"]
    return z, ds, a, b


def _used(z: Zone, uid: int, ds: int) -> tuple[int, int]:
    record = quota.to_public(z.state.get(schema.QUOTAS, {}).get(quota.record_key("user", uid)))
    entry = next((d for d in record.get("DATASTORE", []) if d["ID"] == ds), {})
    return entry.get("SIZE_USED", 0), entry.get("IMAGES_USED", 0)


def test_image_usage_follows_its_owner():
    z, ds, a, b = _zone()
    image = z.ok("image.allocate", {"datastore": ds, "template": IMAGE_TEXT}, uid=a)["id"]
    assert _used(z, a, ds) == (100, 1) and _used(z, b, ds) == (0, 0)
    z.ok("obj.chown", {"kind": "image", "id": image, "uid": b})
    assert _used(z, a, ds) == (0, 0) and _used(z, b, ds) == (100, 1)
    # The new owner's delete releases what the new owner holds: no drift.
    z.ok("image.delete", {"id": image})
    assert _used(z, b, ds) == (0, 0)


def test_chown_that_would_exceed_the_new_owners_quota_is_refused():
    z, ds, a, b = _zone()
    image = z.ok("image.allocate", {"datastore": ds, "template": IMAGE_TEXT}, uid=a)["id"]
    z.ok("quota.set", {"kind": "user", "id": b, "quota": {"DATASTORE": [{"ID": ds, "SIZE": 50}]}})
    z.fails("obj.chown", {"kind": "image", "id": image, "uid": b}, 0, "ALLOCATE", "SIZE")
    assert _used(z, a, ds) == (100, 1)
