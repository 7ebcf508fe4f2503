"""Groups: allocate, delete, group admins, template.

A group record: {"id", "name", "admins", "template", "created"}; its members are the
`group_users` entries under its id (every user lists its groups too).
"""

from raftcore import schema
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode, ok
from raftcore.ops.common import (
    Reject,
    Result,
    View,
    arg_int,
    check_args,
    next_id,
    require,
)
from raftcore.ops.tenancy import (
    FIRST_USER_GROUP_ID,
    arg_name,
    get_group,
    group_object,
    has_members,
    ref_user,
    unique_name,
    updated_template,
)


def _put(group: dict):
    return ("put", schema.GROUPS, schema.id_key(group["id"]), group)


def op_group_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("name",))
    name = arg_name(args)
    require(view, cmd, AuthRequest("GROUP", "CREATE"))
    unique_name(view, schema.GROUPS_BY_NAME, name, "group")
    gid, seq = next_id(view, "group", start=FIRST_USER_GROUP_ID)
    group = {"id": gid, "name": name, "admins": [], "template": "", "created": cmd["ts"]}
    return [
        _put(group),
        seq,
        ("put", schema.GROUPS_BY_NAME, schema.str_key(name), gid),
    ], ok({"id": gid})


def op_group_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    group = get_group(view, arg_int(args, "id"))
    gid = group["id"]
    if gid < FIRST_USER_GROUP_ID:
        raise Reject(ErrorCode.ACTION, f"group {gid} ({group['name']}) is a system group")
    require(view, cmd, group_object(group, "ADMIN"))
    if has_members(view, gid):
        raise Reject(ErrorCode.ACTION, f"group {gid} still has users (move or delete them first)")
    return [
        ("del", schema.GROUPS, schema.id_key(gid)),
        ("del", schema.GROUPS_BY_NAME, schema.str_key(group["name"])),
        ("del", schema.QUOTAS, b"g" + schema.id_key(gid)),
    ], ok()


def _admin_change(view: View, args: dict, cmd: dict, add: bool) -> Result:
    check_args(args, ("id", "uid"))
    group = get_group(view, arg_int(args, "id"))
    user = ref_user(view, args, "uid")
    require(view, cmd, group_object(group, "MANAGE"))
    admins = group["admins"]
    gid, uid = group["id"], user["id"]
    if add:
        if gid not in user["groups"]:
            raise Reject(ErrorCode.ACTION, f"user {uid} is not in group {gid}")
        if uid in admins:
            raise Reject(ErrorCode.ACTION, f"user {uid} is already an admin of group {gid}")
        admins = sorted([*admins, uid])
    else:
        if uid not in admins:
            raise Reject(ErrorCode.ACTION, f"user {uid} is not an admin of group {gid}")
        admins = [a for a in admins if a != uid]
    return [_put({**group, "admins": admins})], ok()


def op_group_addadmin(view: View, args: dict, cmd: dict, index: int) -> Result:
    return _admin_change(view, args, cmd, add=True)


def op_group_deladmin(view: View, args: dict, cmd: dict, index: int) -> Result:
    return _admin_change(view, args, cmd, add=False)


def op_group_update(view: View, args: dict, cmd: dict, index: int) -> Result:
    group = get_group(view, arg_int(args, "id"))
    text = updated_template(args, group)
    require(view, cmd, group_object(group, "MANAGE"))
    return [_put({**group, "template": text})], ok()


HANDLERS = {
    "group.allocate": op_group_allocate,
    "group.delete": op_group_delete,
    "group.addadmin": op_group_addadmin,
    "group.deladmin": op_group_deladmin,
    "group.update": op_group_update,
}
