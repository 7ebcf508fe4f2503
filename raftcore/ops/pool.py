"""Operations every pool object has (OpenNebula's chown, chmod, rename, update), for any
kind in raftcore.objects.KINDS. Kind-specific operations (allocate, delete, actions)
live in their kind's module."""

from raftcore import objects, perms, quota, schema
from raftcore.commands import ok
from raftcore.ops import images, vnets
from raftcore.ops.common import (
    Mutation,
    Overlay,
    Result,
    View,
    arg_int,
    bad,
    check_args,
    require,
)
from raftcore.ops.tenancy import group_object, updated_template, user_object

KEEP = -1  # chown: leave the owner / the group as it is


def _target(view: View, args: dict) -> tuple[str, dict]:
    kind = args["kind"]
    if not isinstance(kind, str):
        raise bad(f"argument 'kind' must be a string, got {type(kind).__name__}")
    objects.kind_of(kind)
    return kind, objects.get(view, kind, arg_int(args, "id"))


def _arg_id_or_keep(args: dict, name: str) -> int:
    value = args.get(name, KEEP)
    if value == KEEP:
        return KEEP
    return arg_int(args, name)


def op_chown(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("kind", "id"), ("uid", "gid"))
    kind, record = _target(view, args)
    uid, gid = _arg_id_or_keep(args, "uid"), _arg_id_or_keep(args, "gid")
    if uid == KEEP and gid == KEEP:
        raise bad("chown needs a new owner ('uid') or a new group ('gid'), or both")
    requests = [objects.auth(kind, record, "MANAGE")]
    new = dict(record)
    if uid != KEEP:
        owner = view.get(schema.USERS, schema.id_key(uid))
        if owner is None:
            raise bad(f"argument 'uid': user {uid} does not exist")
        requests.append(user_object(owner, "MANAGE"))
        new["uid"] = uid
    if gid != KEEP:
        group = view.get(schema.GROUPS, schema.id_key(gid))
        if group is None:
            raise bad(f"argument 'gid': group {gid} does not exist")
        requests.append(group_object(group, "USE"))
        new["gid"] = gid
    require(view, cmd, *requests)
    objects.check_unique(view, kind, new["name"], new["uid"], new["id"])
    return [*_move_quota(view, kind, record, new), *objects.put(view, kind, new, record)], ok()


# Kinds whose objects hold quota usage that follows their owner (OpenNebula's chown moves
# it). A VM records whom it charged (quota_uid/gid) and releases from them at the end.
_HELD_QUOTA = {"image": images.held_quota, "vnet": vnets.held_quota}


def _move_quota(view: View, kind: str, old: dict, new: dict) -> list[Mutation]:
    """Release the object's usage from its old owner and group and charge the new ones
    (checked against their limits: a chown cannot push anyone over quota)."""
    held = _HELD_QUOTA.get(kind)
    usage = held(view, old) if held else None
    if not usage or (old["uid"], old["gid"]) == (new["uid"], new["gid"]):
        return []
    ov = Overlay(view)
    ov.add(quota.release(ov, old["uid"], old["gid"], usage))
    ov.add(quota.charge(ov, new["uid"], new["gid"], usage))
    return ov.mutations


def op_chmod(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("kind", "id", "perms"))
    kind, record = _target(view, args)
    try:
        new_perms = perms.check(args["perms"])
    except ValueError as e:
        raise bad(f"argument 'perms': {e}") from None
    requests = [objects.auth(kind, record, "MANAGE")]
    # Changing who holds ADMIN needs ADMIN (OpenNebula).
    admin_bits = 0o111
    if (new_perms ^ record["perms"]) & admin_bits:
        requests.append(objects.auth(kind, record, "ADMIN"))
    require(view, cmd, *requests)
    return objects.put(view, kind, {**record, "perms": new_perms}, record), ok()


def op_rename(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("kind", "id", "name"))
    kind, record = _target(view, args)
    name = objects.check_name(args["name"])
    require(view, cmd, objects.auth(kind, record, "MANAGE"))
    objects.check_unique(view, kind, name, record["uid"], record["id"])
    return objects.put(view, kind, {**record, "name": name}, record), ok()


def op_update(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("kind", "id", "template"), ("append",))
    kind, record = _target(view, args)
    if "update" in objects.KINDS[kind].actions:
        # The kind checks its template itself (a vnet's ARs, a secgroup's rules, ...).
        raise bad(f"a {objects.KINDS[kind].label}'s template is updated by {kind}.update")
    text = updated_template({k: v for k, v in args.items() if k != "kind"}, record)
    require(view, cmd, objects.auth(kind, record, "MANAGE"))
    return objects.put(view, kind, {**record, "template": text}, record), ok()


HANDLERS = {
    "obj.chown": op_chown,
    "obj.chmod": op_chmod,
    "obj.rename": op_rename,
    "obj.update": op_update,
}
