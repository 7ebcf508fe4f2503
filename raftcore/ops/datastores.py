"""Datastores (onedatastore): where images live (IMAGE_DS, FILE_DS) and where running VMs'
disks go (SYSTEM_DS).

A datastore record (raftcore.objects) adds::

    {"type": "IMAGE_DS" | "SYSTEM_DS" | "FILE_DS", "ds_mad": str ("-" for SYSTEM_DS),
     "tm_mad": str, "cids": [cluster ids], "images": [image ids], "state": 0 READY | 1 DISABLED,
     "capacity": {"total_mb", "free_mb", "used_mb"}, "base_path": str}

As OpenNebula: TYPE, DS_MAD and TM_MAD stay in the template as given (NAME is taken out
of it, BASE_PATH is the zone's and set here); a SYSTEM_DS gets SHARED = YES/NO from its
TM_MAD; the group of a new datastore may USE it (Datastore's constructor sets group_u).
Ids 0..99 are reserved for the datastores every zone starts with (0 system, 1 default,
2 files, created by the bootstrap); the others start at 100 (SEMANTICS, Federation).
A new datastore is in one cluster ("cluster", default 0); onecluster adddatastore /
deldatastore (raftcore.ops.cluster_members) put it in more, or in none. Only a SYSTEM_DS
can be disabled (the scheduler then places no VM there). Capacity comes from monitoring
(`datastore.monitor`, proposed by the front-ends, not by clients).
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from typing import Any

from raftcore import objects, schema, template
from raftcore.commands import ErrorCode, ok
from raftcore.ops import vdcs
from raftcore.ops.cluster_members import cluster_updates
from raftcore.ops.common import (
    Mutation,
    Reject,
    Result,
    View,
    arg_int,
    bad,
    check_args,
    require,
)

KIND = "datastore"
CLUSTER = "cluster"
DEFAULT_CLUSTER = 0

IMAGE_DS, SYSTEM_DS, FILE_DS = "IMAGE_DS", "SYSTEM_DS", "FILE_DS"
TYPES = (IMAGE_DS, SYSTEM_DS, FILE_DS)  # OpenNebula's order: TYPE 0, 1, 2
READY, DISABLED = 0, 1
STATES = ("READY", "DISABLED")

# The drivers a stock oned.conf defines (DS_MAD_CONF / TM_MAD_CONF); any other name is
# refused as OpenNebula does ("... is not defined in oned.conf"). For a TM_MAD: whether a
# system datastore using it is shared between hosts (its SHARED attribute).
DS_MADS = ("fs", "ceph", "lvm", "dev", "iscsi_libvirt", "vcenter", "dummy")
TM_MADS: dict[str, bool] = {
    "shared": True,
    "ssh": False,
    "qcow2": True,
    "ceph": True,
    "fs_lvm": True,
    "fs_lvm_ssh": False,
    "lvm": True,
    "dev": True,
    "iscsi_libvirt": True,
    "vcenter": True,
    "local": False,
    "dummy": True,
}
DATASTORE_LOCATION = "/var/lib/one/datastores"
# Ids below this are the zone's own datastores (the bootstrap's); users' start here.
FIRST_USER_ID = 100
GROUP_USE = 0o040
MAX_MB = 2**53  # larger capacities are refused as absurd
SYSTEM_UIDS = (-1, 0)  # who proposes front-end-only ops: the front-end itself, oneadmin


# --- helpers shared with images ---------------------------------------------------------


def parse_template(args: dict, name: str = "template") -> template.Template:
    """Argument `name` as a parsed OpenNebula template (texts over 1 MiB refused)."""
    value = args[name]
    if not isinstance(value, str):
        raise bad(f"argument {name!r} must be template text, got {type(value).__name__}")
    try:
        return template.parse(value)
    except template.TemplateError as e:
        raise bad(f"argument {name!r}: {e}") from None


def scalar(tmpl: template.Template, key: str) -> str | None:
    """A single-valued attribute, None when absent or empty; a vector is bad input."""
    try:
        value = tmpl.scalar(key)
    except template.TemplateError:
        raise bad(f"template attribute {key} must be a single value, not a vector") from None
    if value is None or not value.strip():
        return None
    return value.strip()


def render(tmpl: template.Template) -> str:
    text = template.render(tmpl)
    try:
        template.check_size(text)
    except template.TemplateError as e:
        raise bad(f"the template: {e}") from None
    return text


def object_name(args: dict, tmpl: template.Template) -> str:
    """The new object's name: argument 'name', else the template's NAME (taken out of
    the template, as OpenNebula does)."""
    from_template = scalar(tmpl, "NAME")
    tmpl.remove("NAME")
    name = args.get("name", from_template)
    if name is None:
        raise bad("no name: give argument 'name' or NAME in the template")
    return objects.check_name(name)


def check_system_caller(cmd: dict, op: str) -> None:
    """Ops only the front-ends propose (monitoring, driver results) are not clients'."""
    if cmd["uid"] not in SYSTEM_UIDS:
        raise Reject(
            ErrorCode.AUTHORIZATION,
            f"{op} is proposed by the front-ends only, not by user {cmd['uid']}",
        )


def with_image(view: View, ds: dict, image_id: int) -> list[Mutation]:
    """The mutations listing image `image_id` in datastore `ds`."""
    new = {**ds, "images": sorted({*ds["images"], image_id})}
    return objects.put(view, KIND, new, ds)


def without_image(view: View, ds_id: int, image_id: int) -> list[Mutation]:
    """The mutations dropping image `image_id` from datastore `ds_id` (if still there)."""
    ds = objects.find(view, KIND, ds_id)
    if ds is None or image_id not in ds["images"]:
        return []
    new = {**ds, "images": [i for i in ds["images"] if i != image_id]}
    return objects.put(view, KIND, new, ds)


def free_mb(ds: dict) -> int | None:
    """What a new image may take from `ds`, or None when unknown (never monitored)."""
    capacity = ds["capacity"]
    return capacity["free_mb"] if capacity["total_mb"] > 0 else None


def check_space(ds: dict, size_mb: int) -> None:
    free = free_mb(ds)
    if free is not None and size_mb > free:
        raise Reject(
            ErrorCode.ACTION,
            f"not enough space in datastore {ds['id']}: {size_mb} MB needed, {free} MB free",
        )


# --- allocate -------------------------------------------------------------------------


def _choice(value: str, allowed: Collection[str], attr: str) -> str:
    if value not in allowed:
        raise bad(f"template: {attr} {value!r} is not one of {', '.join(allowed)}")
    return value


def _drivers(tmpl: template.Template) -> tuple[str, str, str]:
    """(TYPE, DS_MAD, TM_MAD) from the template, checked as Datastore::insert does."""
    ds_type = (scalar(tmpl, "TYPE") or IMAGE_DS).upper()
    if ds_type == "BACKUP_DS":
        raise bad("template: TYPE BACKUP_DS is not supported (IMAGE_DS, SYSTEM_DS, FILE_DS)")
    _choice(ds_type, TYPES, "TYPE")
    ds_mad = scalar(tmpl, "DS_MAD")
    if ds_type == SYSTEM_DS:
        if ds_mad is not None:
            raise bad("template: a SYSTEM_DS datastore cannot have a DS_MAD")
        ds_mad = "-"
    elif ds_mad is None:
        raise bad(f"template: no DS_MAD (a {ds_type} needs one of {', '.join(DS_MADS)})")
    else:
        _choice(ds_mad, DS_MADS, "DS_MAD")
    tm_mad = scalar(tmpl, "TM_MAD")
    if tm_mad is None:
        raise bad(f"template: no TM_MAD (one of {', '.join(TM_MADS)})")
    _choice(tm_mad, TM_MADS, "TM_MAD")
    return ds_type, ds_mad, tm_mad


class _SeqAt:
    """`view` in which the datastore id sequence reads `oid`, so that objects.new gives
    the new datastore that id (ids are not plain 0, 1, 2, ... for datastores)."""

    def __init__(self, view: View, oid: int) -> None:
        self._view = view
        self._key = schema.seq_key(f"obj:{KIND}")
        self._oid = oid

    def get(self, db: str, key: bytes) -> Any | None:
        if db == schema.META and key == self._key:
            return self._oid
        return self._view.get(db, key)

    def iter(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]:
        return self._view.iter(db, prefix)


def _new_id(view: View, args: dict, cmd: dict) -> tuple[int, Mutation]:
    """The id of a new datastore and the mutation advancing the sequence: a reserved id
    (argument 'id', oneadmin only: the bootstrap's default datastores) or the next free
    one from FIRST_USER_ID."""
    seq_key = schema.seq_key(f"obj:{KIND}")
    current = view.get(schema.META, seq_key) or 0
    if "id" not in args:
        oid = max(current, FIRST_USER_ID)
        return oid, ("put", schema.META, seq_key, oid + 1)
    oid = arg_int(args, "id")
    if oid >= FIRST_USER_ID:
        raise bad(f"argument 'id' must be a reserved id 0..{FIRST_USER_ID - 1}, got {oid}")
    if cmd["uid"] != 0:
        raise Reject(
            ErrorCode.AUTHORIZATION, "only oneadmin may create a datastore with a reserved id"
        )
    if objects.find(view, KIND, oid) is not None:
        raise Reject(ErrorCode.ACTION, f"datastore {oid} already exists")
    # The sequence never goes back: ids at or above it stay for users.
    return oid, ("put", schema.META, seq_key, max(current, oid + 1))


def op_datastore_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("template",), ("name", "cluster", "id"))
    tmpl = parse_template(args)
    name = object_name(args, tmpl)
    ds_type, ds_mad, tm_mad = _drivers(tmpl)
    cid = args.get("cluster", DEFAULT_CLUSTER)
    cluster = objects.ref(view, CLUSTER, cid, "cluster")
    oid, seq = _new_id(view, args, cmd)

    user = view.get(schema.USERS, schema.id_key(cmd["uid"])) if cmd["uid"] >= 0 else None
    gid = user["gid"] if user else 0
    require(
        view,
        cmd,
        objects.create_request(KIND, gid, (cid,)),
        objects.auth(CLUSTER, cluster, "ADMIN"),
    )

    tmpl.remove("BASE_PATH")
    if ds_type == SYSTEM_DS:
        tmpl.set("SHARED", "YES" if TM_MADS[tm_mad] else "NO")
    else:
        tmpl.remove("SHARED")
    fields = {
        "type": ds_type,
        "ds_mad": ds_mad,
        "tm_mad": tm_mad,
        "cids": [cid],
        "images": [],
        "state": READY,
        "capacity": {"total_mb": 0, "free_mb": 0, "used_mb": 0},
        "base_path": f"{DATASTORE_LOCATION}/{oid}",
    }
    record, _ = objects.new(_SeqAt(view, oid), cmd, KIND, name, render(tmpl), fields)
    # objects.new saw the overlaid sequence: its mutations are replaced by ours, with the
    # group's USE right a new datastore has in OpenNebula.
    record = {**record, "perms": record["perms"] | GROUP_USE}
    mutations = [seq, *objects.put(view, KIND, record)]
    mutations += cluster_updates(view, KIND, oid, add=(cid,))
    return mutations, ok({"id": oid})


# --- delete, enable / disable, monitor -------------------------------------------------


def op_datastore_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    ds = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, ds, "ADMIN"))
    if ds["images"]:
        held = ", ".join(str(i) for i in ds["images"])
        raise Reject(
            ErrorCode.ACTION,
            f"datastore {ds['id']} is not empty: it holds image(s) {held}; delete them first",
        )
    mutations = objects.remove(KIND, ds)
    mutations += cluster_updates(view, KIND, ds["id"], remove=tuple(ds["cids"]))
    mutations += vdcs.forget(view, KIND, ds["id"])
    return mutations, ok()


def _set_state(view: View, args: dict, cmd: dict, state: int) -> Result:
    check_args(args, ("id",))
    ds = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, ds, "MANAGE"))
    if ds["type"] != SYSTEM_DS:
        raise Reject(
            ErrorCode.ACTION,
            f"only SYSTEM_DS datastores can be enabled or disabled; "
            f"datastore {ds['id']} is an {ds['type']}",
        )
    if ds["state"] == state:
        return [], ok()
    return objects.put(view, KIND, {**ds, "state": state}, ds), ok()


def op_datastore_enable(view: View, args: dict, cmd: dict, index: int) -> Result:
    return _set_state(view, args, cmd, READY)


def op_datastore_disable(view: View, args: dict, cmd: dict, index: int) -> Result:
    return _set_state(view, args, cmd, DISABLED)


def _arg_mb(args: dict, name: str) -> int:
    value = arg_int(args, name)
    if value > MAX_MB:
        raise bad(f"argument {name!r} must be at most {MAX_MB}, got {value}")
    return value


def op_datastore_monitor(view: View, args: dict, cmd: dict, index: int) -> Result:
    """Capacity as the front-end's monitoring measured it (MB)."""
    check_args(args, ("id", "total_mb", "free_mb", "used_mb"))
    check_system_caller(cmd, "datastore.monitor")
    ds = objects.get(view, KIND, arg_int(args, "id"))
    total, free, used = (_arg_mb(args, n) for n in ("total_mb", "free_mb", "used_mb"))
    for name, value in (("free_mb", free), ("used_mb", used)):
        if value > total:
            raise bad(f"argument {name!r} ({value}) exceeds 'total_mb' ({total})")
    capacity = {"total_mb": total, "free_mb": free, "used_mb": used}
    if capacity == ds["capacity"]:
        return [], ok()
    return objects.put(view, KIND, {**ds, "capacity": capacity}, ds), ok()


HANDLERS = {
    "datastore.allocate": op_datastore_allocate,
    "datastore.delete": op_datastore_delete,
    "datastore.enable": op_datastore_enable,
    "datastore.disable": op_datastore_disable,
    "datastore.monitor": op_datastore_monitor,
}
