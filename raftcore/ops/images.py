"""Images (oneimage): disks and files registered in an IMAGE_DS or FILE_DS datastore.

An image record (raftcore.objects) adds::

    {"type": "OS" | "CDROM" | "DATABLOCK" | "KERNEL" | "RAMDISK" | "CONTEXT",
     "state": int (STATES), "persistent": bool, "size_mb": int, "path": str,
     "source": str, "fs": str, "ds_id": int, "running_vms": int, "vms": [vm ids],
     "clones": [ids of images being cloned from it], "cloning_id": int (-1),
     "snapshots": [{"id", "name", "date", "parent", "active", "size"}],
     "target_snapshot": int (-1), "job": str | None, "error": str}

OpenNebula's life of an image, without the side effects (a later issue's driver does them
and reports back with `image.ready` / `image.error`, proposed by the front-ends only):

* allocate: PATH given -> LOCKED, job "cp" (copy into the datastore); no PATH nor SOURCE
  (an empty OS / DATABLOCK of SIZE MB) -> LOCKED, job "mkfs"; SOURCE given (already in
  the datastore, SIZE required) -> READY at once (ImageManager::register_image).
* clone -> the new image LOCKED, job "clone"; the source counts it in `clones` (READY ->
  USED, or CLONE when persistent) until the clone is ready, fails or is deleted.
* snapshot_delete / snapshot_revert / snapshot_flatten (READY only) -> LOCKED with the
  job and `target_snapshot`, back to READY when the driver reports.
* VMs acquire and release images (`acquire_for_vm`, `release_for_vm`): READY -> USED
  (USED_PERS when persistent: one VM at a time) and back to READY with no VM left.

TYPE, PERSISTENT, SIZE, PATH, SOURCE and FSTYPE move from the template to the record
(Image::insert); DEV_PREFIX defaults to "sd" ("hd" for a CDROM) for disk images. The
owner's DATASTORE quota (SIZE, IMAGES of `ds_id`) is charged at allocate and clone,
adjusted when the driver reports the real size, and released at delete.
"""

from __future__ import annotations

from collections.abc import Iterable

from raftcore import objects, quota, schema, template
from raftcore.commands import ErrorCode, ok
from raftcore.ops import datastores as dss
from raftcore.ops.common import (
    Mutation,
    Reject,
    Result,
    View,
    arg_int,
    arg_str,
    bad,
    check_args,
    require,
)

KIND = "image"

STATES = (
    "INIT",
    "READY",
    "USED",
    "DISABLED",
    "LOCKED",
    "ERROR",
    "CLONE",
    "DELETE",
    "USED_PERS",
    "LOCKED_USED",
    "LOCKED_USED_PERS",
)
(
    INIT,
    READY,
    USED,
    DISABLED,
    LOCKED,
    ERROR,
    CLONE,
    DELETE,
    USED_PERS,
    LOCKED_USED,
    LOCKED_USED_PERS,
) = range(len(STATES))

TYPES = ("OS", "CDROM", "DATABLOCK", "KERNEL", "RAMDISK", "CONTEXT")
DISK_TYPES = frozenset({"OS", "CDROM", "DATABLOCK"})  # what a VM DISK may use
FILE_TYPES = frozenset({"KERNEL", "RAMDISK", "CONTEXT"})  # files of a FILE_DS
SNAPSHOT_TYPES = frozenset({"OS", "DATABLOCK"})
# Which image types a datastore type holds (ImagePool::allocate).
DS_HOLDS = {dss.IMAGE_DS: DISK_TYPES, dss.FILE_DS: FILE_TYPES}
DEFAULT_TYPE = "OS"
DEFAULT_DEV_PREFIX = "sd"
DEFAULT_CDROM_DEV_PREFIX = "hd"
# Attributes that become record fields (taken out of the template, as Image::insert).
RECORD_ATTRS = ("TYPE", "PERSISTENT", "SIZE", "PATH", "SOURCE", "FSTYPE")

# Driver jobs (the datastore driver actions of OpenNebula) and what a finished one does.
CP, MKFS, CLONE_JOB = "cp", "mkfs", "clone"
SNAP_DELETE, SNAP_REVERT, SNAP_FLATTEN = "snap_delete", "snap_revert", "snap_flatten"
REGISTER_JOBS = frozenset({CP, MKFS, CLONE_JOB})  # they give the image its SOURCE
# A locked state and the state the image returns to when its job ends (set_state_unlock).
UNLOCKED = {LOCKED: READY, LOCKED_USED: USED, LOCKED_USED_PERS: USED_PERS}

MAX_SIZE_MB = 2**40  # an exabyte: larger sizes are refused as absurd
MAX_TEXT = 4096  # a SOURCE or an error message


def state_name(state: int) -> str:
    return STATES[state] if 0 <= state < len(STATES) else str(state)


def _state_error(image: dict, what: str) -> Reject:
    return Reject(
        ErrorCode.ACTION,
        f"image {image['id']} cannot {what} in state {state_name(image['state'])}",
    )


# --- template attributes ----------------------------------------------------------------


def _size(text: str | None, what: str = "SIZE") -> int | None:
    """A size in MB from the template (digits only), or None when absent."""
    if text is None:
        return None
    if not text.isascii() or not text.isdigit():
        raise bad(f"template: {what} must be a whole number of MB, got {text[:40]!r}")
    value = int(text)
    if value > MAX_SIZE_MB:
        raise bad(f"template: {what} must be at most {MAX_SIZE_MB} MB, got {value}")
    return value


def _yes_no(text: str | None, attr: str) -> bool | None:
    if text is None:
        return None
    value = text.upper()
    if value not in ("YES", "NO"):
        raise bad(f"template: {attr} must be YES or NO, got {text[:40]!r}")
    return value == "YES"


def _image_type(text: str | None, attr: str = "TYPE") -> str:
    value = (text or DEFAULT_TYPE).upper()
    if value not in TYPES:
        raise bad(f"{attr} {value[:40]!r} is not an image type ({', '.join(TYPES)})")
    return value


def _check_ds_holds(ds: dict, image_type: str) -> None:
    if ds["type"] == dss.SYSTEM_DS:
        raise bad(
            f"argument 'datastore': datastore {ds['id']} is a SYSTEM_DS: "
            "new images cannot be allocated in a system datastore"
        )
    if image_type not in DS_HOLDS[ds["type"]]:
        holds = ", ".join(t for t in TYPES if t in DS_HOLDS[ds["type"]])
        raise bad(
            f"argument 'datastore': datastore {ds['id']} is an {ds['type']}, which holds "
            f"{holds} images, not {image_type}"
        )


def _persistent_only(ds: dict) -> bool:
    value = template.parse(ds["template"]).get("PERSISTENT_ONLY")
    return isinstance(value, str) and value.strip().upper() == "YES"


class _Spec:
    """What an allocate's template says, checked (Image::insert, stat_image)."""

    def __init__(self, tmpl: template.Template, ds: dict) -> None:
        self.type = _image_type(dss.scalar(tmpl, "TYPE"), "template: TYPE")
        _check_ds_holds(ds, self.type)
        persistent = _yes_no(dss.scalar(tmpl, "PERSISTENT"), "PERSISTENT")
        if persistent and self.type in FILE_TYPES:
            raise bad(f"template: {self.type} images are always non-persistent")
        self.persistent = bool(persistent)
        if not self.persistent and _persistent_only(ds):
            raise Reject(
                ErrorCode.ACTION,
                f"datastore {ds['id']} only accepts persistent images (PERSISTENT = YES)",
            )
        self.path = dss.scalar(tmpl, "PATH") or ""
        self.source = dss.scalar(tmpl, "SOURCE") or ""
        for attr, value in (("PATH", self.path), ("SOURCE", self.source)):
            if len(value) > MAX_TEXT:
                raise bad(f"template: {attr} must be at most {MAX_TEXT} characters")
        if self.path and self.source:
            raise bad("template: PATH and SOURCE are mutually exclusive")
        size = _size(dss.scalar(tmpl, "SIZE"))
        self.job: str | None = None
        self.fs = ""
        if self.source:
            if size is None:
                raise bad("template: SIZE (MB) is required with SOURCE")
        elif self.path:
            self.job = CP  # the driver copies it and reports its size
        elif self.type in ("OS", "DATABLOCK"):
            if not size:
                raise bad(f"template: an empty {self.type} image needs SIZE (MB) > 0")
            self.job = MKFS
            self.fs = dss.scalar(tmpl, "FSTYPE") or _default_fs(tmpl, ds)
        else:
            raise bad(f"template: a {self.type} image needs PATH or SOURCE")
        self.size = size or 0
        for attr in RECORD_ATTRS:
            tmpl.remove(attr)
        if self.type in FILE_TYPES:
            tmpl.remove("DEV_PREFIX")
        elif dss.scalar(tmpl, "DEV_PREFIX") is None:
            prefix = DEFAULT_CDROM_DEV_PREFIX if self.type == "CDROM" else DEFAULT_DEV_PREFIX
            tmpl.set("DEV_PREFIX", prefix)


def _default_fs(tmpl: template.Template, ds: dict) -> str:
    # Image::insert: qcow2 when the image's DRIVER says so, or with no DRIVER on a qcow2
    # datastore; raw otherwise.
    driver = (dss.scalar(tmpl, "DRIVER") or "").lower()
    if driver == "qcow2" or (not driver and ds["tm_mad"] == "qcow2"):
        return "qcow2"
    return "raw"


# --- records and quotas -----------------------------------------------------------------


def _fields(spec: _Spec, ds_id: int) -> dict:
    return {
        "type": spec.type,
        "state": LOCKED if spec.job else READY,
        "persistent": spec.persistent,
        "size_mb": spec.size,
        "path": spec.path,
        "source": spec.source,
        "fs": spec.fs,
        "ds_id": ds_id,
        "running_vms": 0,
        "vms": [],
        "clones": [],
        "cloning_id": -1,
        "snapshots": [],
        "target_snapshot": -1,
        "job": spec.job,
        "error": "",
    }


def _usage(ds_id: int, size_mb: int, images: int) -> dict:
    return {"DATASTORE": {ds_id: {"SIZE": size_mb, "IMAGES": images}}}


def _snapshots_size(image: dict) -> int:
    return sum(s["size"] for s in image["snapshots"])


def held_quota(view: View, image: dict) -> dict:
    """What the image holds of its owner's quota (moved with it by obj.chown)."""
    return _usage(image["ds_id"], image["size_mb"] + _snapshots_size(image), 1)


def _caller_gid(view: View, cmd: dict) -> int:
    user = view.get(schema.USERS, schema.id_key(cmd["uid"])) if cmd["uid"] >= 0 else None
    return user["gid"] if user else 0


def _image_ds(view: View, args: dict, arg: str = "datastore") -> dict:
    return objects.ref(view, dss.KIND, args[arg], arg)


def op_image_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("template", "datastore"), ("name",))
    tmpl = dss.parse_template(args)
    name = dss.object_name(args, tmpl)
    ds = _image_ds(view, args)
    spec = _Spec(tmpl, ds)
    gid = _caller_gid(view, cmd)
    require(view, cmd, objects.create_request(KIND, gid), objects.auth(dss.KIND, ds, "USE"))
    dss.check_space(ds, spec.size)
    record, mutations = objects.new(
        view, cmd, KIND, name, dss.render(tmpl), _fields(spec, ds["id"])
    )
    mutations += quota.charge(view, record["uid"], record["gid"], _usage(ds["id"], spec.size, 1))
    mutations += dss.with_image(view, ds, record["id"])
    return mutations, ok({"id": record["id"]})


# --- delete -----------------------------------------------------------------------------


def _end_cloning(view: View, source_id: int, clone_id: int) -> list[Mutation]:
    """The source of a finished (or failed, or deleted) clone stops counting it
    (ImageManager::release_cloning_resource)."""
    source = objects.find(view, KIND, source_id)
    if source is None or clone_id not in source["clones"]:
        return []
    clones = [c for c in source["clones"] if c != clone_id]
    state = source["state"]
    if state in (USED, CLONE) and not clones and source["running_vms"] == 0:
        state = READY
    return objects.put(view, KIND, {**source, "clones": clones, "state": state}, source)


def _ids(values: Iterable[int]) -> str:
    return ", ".join(str(v) for v in values)


def op_image_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    image = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, image, "MANAGE"))
    if image["running_vms"]:
        raise Reject(
            ErrorCode.ACTION,
            f"image {image['id']} is used by VM(s) {_ids(image['vms'])}: it cannot be deleted",
        )
    if image["clones"]:
        raise Reject(
            ErrorCode.ACTION,
            f"image {image['id']} is being cloned to image(s) {_ids(image['clones'])}: "
            "it cannot be deleted until they are ready",
        )
    size = image["size_mb"] + _snapshots_size(image)
    mutations = objects.remove(KIND, image)
    mutations += quota.release(view, image["uid"], image["gid"], _usage(image["ds_id"], size, 1))
    mutations += dss.without_image(view, image["ds_id"], image["id"])
    if image["cloning_id"] >= 0:  # a clone still being copied: its source is freed
        mutations += _end_cloning(view, image["cloning_id"], image["id"])
    return mutations, ok()


# --- client actions ---------------------------------------------------------------------


def _managed(view: View, args: dict, cmd: dict, extra: tuple[str, ...] = ()) -> dict:
    check_args(args, ("id", *extra))
    image = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, image, "MANAGE"))
    return image


def _put(view: View, image: dict, **changes) -> list[Mutation]:
    return objects.put(view, KIND, {**image, **changes}, image)


def op_image_enable(view: View, args: dict, cmd: dict, index: int) -> Result:
    image = _managed(view, args, cmd)
    state = image["state"]
    if state == READY:
        return [], ok()
    if state == DISABLED:
        return _put(view, image, state=READY), ok()
    if state == ERROR:  # as set_state_unlock from ERROR
        if image["running_vms"] == 0:
            new = READY
        else:
            new = USED_PERS if image["persistent"] else USED
        return _put(view, image, state=new, error=""), ok()
    raise _state_error(image, "be enabled")


def op_image_disable(view: View, args: dict, cmd: dict, index: int) -> Result:
    image = _managed(view, args, cmd)
    if image["state"] == DISABLED:
        return [], ok()
    if image["state"] in (READY, ERROR):
        return _put(view, image, state=DISABLED), ok()
    raise _state_error(image, "be disabled")


# States in which the persistent flag may not change (Image::persistent).
_IN_USE = frozenset({USED, CLONE, USED_PERS, LOCKED_USED, LOCKED_USED_PERS})


def _set_persistent(view: View, args: dict, cmd: dict, persistent: bool) -> Result:
    image = _managed(view, args, cmd)
    if image["type"] in FILE_TYPES:
        raise Reject(
            ErrorCode.ACTION, f"image {image['id']} is a {image['type']}: always non-persistent"
        )
    if not persistent:
        ds = objects.find(view, dss.KIND, image["ds_id"])
        if ds is not None and _persistent_only(ds):
            raise Reject(
                ErrorCode.ACTION,
                f"datastore {ds['id']} only accepts persistent images",
            )
        if image["snapshots"]:
            raise Reject(
                ErrorCode.ACTION,
                f"image {image['id']} has snapshots: flatten or delete them first",
            )
    if image["state"] in _IN_USE:
        what = "be made persistent" if persistent else "be made non-persistent"
        raise _state_error(image, what)
    if image["persistent"] == persistent:
        return [], ok()
    return _put(view, image, persistent=persistent), ok()


def op_image_persistent(view: View, args: dict, cmd: dict, index: int) -> Result:
    return _set_persistent(view, args, cmd, True)


def op_image_nonpersistent(view: View, args: dict, cmd: dict, index: int) -> Result:
    return _set_persistent(view, args, cmd, False)


def op_image_chtype(view: View, args: dict, cmd: dict, index: int) -> Result:
    image = _managed(view, args, cmd, ("type",))
    if not isinstance(args["type"], str):
        raise bad(f"argument 'type' must be a string, got {type(args['type']).__name__}")
    new = _image_type(args["type"], "argument 'type':")
    group = FILE_TYPES if image["type"] in FILE_TYPES else DISK_TYPES
    if new not in group:
        raise Reject(
            ErrorCode.ACTION,
            f"image {image['id']} is a {image['type']}: it can only become "
            f"{', '.join(t for t in TYPES if t in group)} (its datastore's kinds), not {new}",
        )
    if image["snapshots"] and new not in SNAPSHOT_TYPES:
        raise Reject(
            ErrorCode.ACTION, f"image {image['id']} has snapshots: it can only be OS or DATABLOCK"
        )
    if new == image["type"]:
        return [], ok()
    return _put(view, image, type=new), ok()


def op_image_clone(view: View, args: dict, cmd: dict, index: int) -> Result:
    """A copy of the image, owned by the caller (ImageClone): returns {"id": new id}."""
    check_args(args, ("id", "name"), ("datastore",))
    source = objects.get(view, KIND, arg_int(args, "id"))
    name = objects.check_name(args["name"])
    if source["type"] in FILE_TYPES:
        raise Reject(
            ErrorCode.ACTION, f"image {source['id']} is a {source['type']}: it cannot be cloned"
        )
    if source["snapshots"]:
        raise Reject(ErrorCode.ACTION, f"image {source['id']} has snapshots: it cannot be cloned")
    if source["state"] not in (READY, USED, CLONE):
        raise _state_error(source, "be cloned")
    source_ds = objects.find(view, dss.KIND, source["ds_id"])
    if source_ds is None:
        raise Reject(
            ErrorCode.INTERNAL, f"datastore {source['ds_id']} of image {source['id']} is gone"
        )
    ds = _image_ds(view, args) if "datastore" in args else source_ds
    if ds["type"] != dss.IMAGE_DS:
        raise bad(
            f"argument 'datastore': datastore {ds['id']} is an {ds['type']}: clones go to an IMAGE_DS"
        )
    if ds["ds_mad"] != source_ds["ds_mad"]:
        raise bad(
            f"argument 'datastore': datastore {ds['id']} has DS_MAD {ds['ds_mad']}, image "
            f"{source['id']}'s has {source_ds['ds_mad']}: clones need the same DS_MAD"
        )
    gid = _caller_gid(view, cmd)
    requests = [
        objects.auth(KIND, source, "USE"),
        objects.create_request(KIND, gid),
        objects.auth(dss.KIND, ds, "USE"),
    ]
    if ds["id"] != source_ds["id"]:
        requests.append(objects.auth(dss.KIND, source_ds, "USE"))
    require(view, cmd, *requests)
    dss.check_space(ds, source["size_mb"])

    fields = {
        **source,
        "state": LOCKED,
        "path": source["source"],  # the driver copies the source image's SOURCE
        "source": "",
        "ds_id": ds["id"],
        "running_vms": 0,
        "vms": [],
        "clones": [],
        "cloning_id": source["id"],
        "snapshots": [],
        "target_snapshot": -1,
        "job": CLONE_JOB,
        "error": "",
    }
    for common in ("id", "name", "uid", "gid", "perms", "template", "regtime", "cids"):
        fields.pop(common, None)
    record, mutations = objects.new(view, cmd, KIND, name, source["template"], fields)
    usage = _usage(ds["id"], source["size_mb"], 1)
    mutations += quota.charge(view, record["uid"], record["gid"], usage)
    mutations += dss.with_image(view, ds, record["id"])
    # The source counts the clone (ImageManager::set_clone_state).
    state = source["state"]
    if state == READY:
        state = CLONE if source["persistent"] else USED
    mutations += _put(view, source, state=state, clones=[*source["clones"], record["id"]])
    return mutations, ok({"id": record["id"]})


# --- snapshots ---------------------------------------------------------------------------


def _snapshot(image: dict, sid: int) -> dict:
    for snap in image["snapshots"]:
        if snap["id"] == sid:
            return snap
    known = _ids(s["id"] for s in image["snapshots"]) or "none"
    raise bad(
        f"argument 'snapshot_id': image {image['id']} has no snapshot {sid} (it has: {known})"
    )


def _snapshot_job(view: View, args: dict, cmd: dict, job: str, what: str) -> Result:
    image = _managed(view, args, cmd, ("snapshot_id",))
    sid = arg_int(args, "snapshot_id")
    if image["type"] not in SNAPSHOT_TYPES:
        raise Reject(
            ErrorCode.ACTION, f"image {image['id']} is a {image['type']}: it has no snapshots"
        )
    if image["state"] != READY:
        raise _state_error(image, what)
    snap = _snapshot(image, sid)
    if job == SNAP_DELETE:
        if snap["active"]:
            raise Reject(
                ErrorCode.ACTION, f"snapshot {sid} of image {image['id']} is the active one"
            )
        children = [s["id"] for s in image["snapshots"] if s["parent"] == sid]
        if children:
            raise Reject(
                ErrorCode.ACTION,
                f"snapshot {sid} of image {image['id']} has children ({_ids(children)})",
            )
    return _put(view, image, state=LOCKED, job=job, target_snapshot=sid), ok()


def op_image_snapshot_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    return _snapshot_job(view, args, cmd, SNAP_DELETE, "delete a snapshot")


def op_image_snapshot_revert(view: View, args: dict, cmd: dict, index: int) -> Result:
    return _snapshot_job(view, args, cmd, SNAP_REVERT, "revert to a snapshot")


def op_image_snapshot_flatten(view: View, args: dict, cmd: dict, index: int) -> Result:
    return _snapshot_job(view, args, cmd, SNAP_FLATTEN, "flatten a snapshot")


# --- driver results (front-ends only) ---------------------------------------------------


def _busy(view: View, args: dict, cmd: dict, op: str, required: tuple, optional: tuple) -> dict:
    check_args(args, required, optional)
    dss.check_system_caller(cmd, op)
    image = objects.get(view, KIND, arg_int(args, "id"))
    if image["job"] is None or image["state"] not in UNLOCKED:
        raise Reject(
            ErrorCode.ACTION,
            f"image {image['id']} has no driver operation in progress "
            f"(state {state_name(image['state'])})",
        )
    return image


def _finish_snapshot_job(view: View, image: dict) -> tuple[list[dict], list[Mutation]]:
    """The snapshots once the image's snapshot job succeeded, and the quota it frees."""
    sid, job, snaps = image["target_snapshot"], image["job"], image["snapshots"]
    freed = 0
    if job == SNAP_DELETE:
        freed = sum(s["size"] for s in snaps if s["id"] == sid)
        snaps = [s for s in snaps if s["id"] != sid]
    elif job == SNAP_REVERT:
        snaps = [{**s, "active": s["id"] == sid} for s in snaps]
    else:  # SNAP_FLATTEN: the image is now the snapshot's content, with no history
        freed = _snapshots_size(image)
        snaps = []
    if not freed:
        return snaps, []
    usage = _usage(image["ds_id"], freed, 0)
    return snaps, quota.release(view, image["uid"], image["gid"], usage)


def op_image_ready(view: View, args: dict, cmd: dict, index: int) -> Result:
    """The driver finished the image's job: it is usable (with its SOURCE and real size
    after a cp, mkfs or clone)."""
    image = _busy(view, args, cmd, "image.ready", ("id",), ("size", "source"))
    job = image["job"]
    new = {
        **image,
        "state": UNLOCKED[image["state"]],
        "job": None,
        "target_snapshot": -1,
        "error": "",
    }
    mutations: list[Mutation] = []
    if job in REGISTER_JOBS:
        if "source" not in args:
            raise bad(f"image.ready after a {job} needs argument 'source' (where the image is)")
        new["source"] = arg_str(args, "source", MAX_TEXT)
        if job == CLONE_JOB:
            new["cloning_id"] = -1
            mutations += _end_cloning(view, image["cloning_id"], image["id"])
        if "size" in args:
            size = arg_int(args, "size")
            if size > MAX_SIZE_MB:
                raise bad(f"argument 'size' must be at most {MAX_SIZE_MB} MB, got {size}")
            new, counted = _resize(view, new, size)
            mutations += counted
    else:
        extra = sorted(a for a in ("size", "source") if a in args)
        if extra:
            raise bad(
                f"argument(s) {', '.join(extra)} only come with a cp, mkfs or clone, not a {job}"
            )
        new["snapshots"], mutations = _finish_snapshot_job(view, image)
    return [*objects.put(view, KIND, new, image), *mutations], ok()


def _resize(view: View, image: dict, size: int) -> tuple[dict, list[Mutation]]:
    """The image with the size the driver measured, and its quota usage adjusted; an
    owner over quota gets the image in ERROR (its usage stays what was charged)."""
    delta = size - image["size_mb"]
    uid, gid, ds_id = image["uid"], image["gid"], image["ds_id"]
    if delta < 0:
        return {**image, "size_mb": size}, quota.release(view, uid, gid, _usage(ds_id, -delta, 0))
    try:
        mutations = quota.charge(view, uid, gid, _usage(ds_id, delta, 0)) if delta else []
    except Reject as r:
        message = f"the image takes {size} MB: {r.message}"
        return {**image, "state": ERROR, "error": message}, []
    return {**image, "size_mb": size}, mutations


def op_image_error(view: View, args: dict, cmd: dict, index: int) -> Result:
    """The driver failed the image's job: a cp, mkfs or clone leaves it in ERROR; a
    snapshot job leaves it as it was (READY), with the message."""
    image = _busy(view, args, cmd, "image.error", ("id", "message"), ())
    message = arg_str(args, "message", MAX_TEXT)
    job = image["job"]
    mutations: list[Mutation] = []
    if job in REGISTER_JOBS:
        new = {**image, "state": ERROR, "job": None, "error": message}
        if job == CLONE_JOB:
            new["cloning_id"] = -1
            mutations = _end_cloning(view, image["cloning_id"], image["id"])
    else:
        state = UNLOCKED[image["state"]]
        new = {**image, "state": state, "job": None, "target_snapshot": -1, "error": message}
    return [*objects.put(view, KIND, new, image), *mutations], ok()


# --- the contract with VMs ------------------------------------------------------------------


def acquire_for_vm(view: View, cmd: dict, image_id: int, vm_id: int) -> tuple[dict, list[Mutation]]:
    """VM `vm_id` starts using image `image_id` as a disk (ImageManager::acquire_image):
    the caller (cmd's uid) needs USE on it; it must be READY, or USED when non-persistent
    (a persistent image serves one VM at a time: USED_PERS). A VM already using a
    non-persistent image (another disk of it) is counted once. Returns the updated image
    and the mutations writing it; Reject names the image and the reason otherwise."""
    image = objects.find(view, KIND, image_id)
    if image is None:
        raise bad(f"image {image_id} does not exist")
    require(view, cmd, objects.auth(KIND, image, "USE"))
    if image["type"] not in DISK_TYPES:
        raise bad(
            f"image {image_id} ({image['name']}) is a {image['type']}: it cannot be a VM disk"
        )
    state = image["state"]
    if state == USED and vm_id in image["vms"]:
        return image, []  # another disk of the same VM: counted once (Image::inc_running)
    if state == USED_PERS:
        raise Reject(
            ErrorCode.ACTION,
            f"image {image_id} is persistent and already used by VM {_ids(image['vms'])}",
        )
    if state == READY:
        state = USED_PERS if image["persistent"] else USED
    elif state != USED:
        raise _state_error(image, "be used by a VM")
    new = {
        **image,
        "state": state,
        "running_vms": image["running_vms"] + 1,
        "vms": sorted([*image["vms"], vm_id]),
    }
    return new, objects.put(view, KIND, new, image)


def release_for_vm(view: View, image_id: int, vm_id: int, failed: bool = False) -> list[Mutation]:
    """VM `vm_id` stops using image `image_id` (ImageManager::release_image): back to
    READY when no VM (and no clone) uses it; a persistent image goes to ERROR when the VM
    `failed` (its content is then uncertain). Nothing when the image is gone or the VM
    does not use it (a release is never refused: it is part of tearing a VM down)."""
    image = objects.find(view, KIND, image_id)
    if image is None or vm_id not in image["vms"]:
        return []
    vms = [v for v in image["vms"] if v != vm_id]
    state = image["state"]
    if state == USED_PERS:
        state = ERROR if failed else (READY if not vms else USED_PERS)
    elif state == LOCKED_USED_PERS:
        state = ERROR if failed else (LOCKED if not vms else state)
    elif state == USED:
        state = READY if not vms and not image["clones"] else USED
    elif state == LOCKED_USED:
        state = LOCKED if not vms and not image["clones"] else LOCKED_USED
    new = {**image, "state": state, "running_vms": len(vms), "vms": vms}
    return objects.put(view, KIND, new, image)


def set_snapshots(view: View, image_id: int, snapshots: list[dict]) -> list[Mutation]:
    """A persistent image takes the disk snapshots of the VM using it when the VM saves
    them back (ImageManager::set_image_snapshots): only OS / DATABLOCK images in
    USED_PERS; nothing otherwise. Each snapshot: {"id", "name", "date", "parent",
    "active", "size"} (the VM's quotas count their size)."""
    image = objects.find(view, KIND, image_id)
    if image is None or image["type"] not in SNAPSHOT_TYPES or image["state"] != USED_PERS:
        return []
    keys = ("id", "name", "date", "parent", "active", "size")
    snaps = [{k: s[k] for k in keys} for s in snapshots]
    return objects.put(view, KIND, {**image, "snapshots": snaps}, image)


HANDLERS = {
    "image.allocate": op_image_allocate,
    "image.delete": op_image_delete,
    "image.enable": op_image_enable,
    "image.disable": op_image_disable,
    "image.persistent": op_image_persistent,
    "image.nonpersistent": op_image_nonpersistent,
    "image.clone": op_image_clone,
    "image.chtype": op_image_chtype,
    "image.snapshot_delete": op_image_snapshot_delete,
    "image.snapshot_revert": op_image_snapshot_revert,
    "image.snapshot_flatten": op_image_snapshot_flatten,
    "image.ready": op_image_ready,
    "image.error": op_image_error,
}
