"""What the user, group and ACL handlers share: how a user or a group is an object for
authorization, name and template checks, and group membership mutations."""

from raftcore import schema, template
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode
from raftcore.ops.common import (
    MAX_NAME_CHARS,
    Mutation,
    Reject,
    View,
    arg_bool,
    arg_int,
    bad,
    check_args,
    get_record,
)

ADMIN_UID = 0
ADMIN_GID = 0
USERS_GID = 1
ADMIN_NAME = "oneadmin"
USERS_GROUP_NAME = "users"
# OpenNebula reserves group ids below 100 for system groups; user-created ones start here.
FIRST_USER_GROUP_ID = 100
# A user is the owner of itself (USE: see it; MANAGE: password, template); its group's
# admins get the rest through their role.
USER_PERMS = 0o600
# A group is owned by oneadmin; its members may USE it (see it).
GROUP_PERMS = 0o040
# `user:password` is the auth file format, so a name may not contain ':' nor blanks.
_NAME_FORBIDDEN = set(" :\t\n\r\v\f")


def user_object(user: dict, right: str) -> AuthRequest:
    return AuthRequest(
        "USER", right, oid=user["id"], owner=user["id"], gid=user["gid"], perms=USER_PERMS
    )


def group_object(group: dict, right: str) -> AuthRequest:
    return AuthRequest(
        "GROUP", right, oid=group["id"], owner=ADMIN_UID, gid=group["id"], perms=GROUP_PERMS
    )


def arg_name(args: dict, name: str = "name") -> str:
    value = args[name]
    if not isinstance(value, str):
        raise bad(f"argument {name!r} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= MAX_NAME_CHARS:
        raise bad(f"argument {name!r} must be 1..{MAX_NAME_CHARS} characters, got {len(value)}")
    bad_chars = sorted({c for c in value if c in _NAME_FORBIDDEN or not c.isprintable()})
    if bad_chars:
        raise bad(f"argument {name!r} may not contain {', '.join(repr(c) for c in bad_chars)}")
    return value


def arg_template(args: dict, name: str = "template") -> str:
    """A template given as OpenNebula text; stored in canonical form."""
    value = args[name]
    if not isinstance(value, str):
        raise bad(f"argument {name!r} must be template text, got {type(value).__name__}")
    try:
        return template.render(template.parse(value))
    except template.TemplateError as e:
        raise bad(f"argument {name!r}: {e}") from None


def merge_template(old: str, new: str, append: bool) -> str:
    """OpenNebula's update: replace the whole template, or (append) replace only the
    attributes named in `new` and keep the others."""
    if not append:
        return new
    merged = template.parse(old)
    incoming = template.parse(new)
    for key in dict.fromkeys(incoming.keys()):
        merged.remove(key)
    for key, value in incoming:
        merged.append(key, value)
    text = template.render(merged)
    try:
        template.check_size(text)
    except template.TemplateError as e:
        raise bad(f"the merged template: {e}") from None
    return text


def updated_template(args: dict, record: dict) -> str:
    """The template an update op's args make of `record`'s ({"id", "template", "append"?}:
    OpenNebula's replace or merge)."""
    check_args(args, ("id", "template"), ("append",))
    text = arg_template(args)
    append = arg_bool(args, "append") if "append" in args else False
    return merge_template(record["template"], text, append)


def get_user(view: View, uid: int) -> dict:
    return get_record(view, schema.USERS, uid, "user")


def get_group(view: View, gid: int) -> dict:
    return get_record(view, schema.GROUPS, gid, "group")


def _referenced(view: View, db: str, obj_id: int, what: str, arg: str) -> dict:
    # An unknown object named in an argument is bad input (INVALID_ARGUMENT), unlike the
    # object a call addresses (NOT_FOUND).
    record = view.get(db, schema.id_key(obj_id))
    if record is None:
        raise bad(f"argument {arg!r}: {what} {obj_id} does not exist")
    return record


def ref_user(view: View, args: dict, arg: str) -> dict:
    return _referenced(view, schema.USERS, arg_int(args, arg), "user", arg)


def ref_group(view: View, args: dict, arg: str, gid: int | None = None) -> dict:
    """The group named by argument `arg` (or `gid`, one of its entries)."""
    gid = arg_int(args, arg) if gid is None else gid
    return _referenced(view, schema.GROUPS, gid, "group", arg)


def unique_name(view: View, db: str, name: str, what: str) -> None:
    existing = view.get(db, schema.str_key(name))
    if existing is not None:
        raise Reject(
            ErrorCode.ACTION, f"{what} name {name!r} is already taken by {what} {existing}"
        )


def join(uid: int, gid: int) -> Mutation:
    return ("put", schema.GROUP_USERS, schema.pair_key(gid, uid), b"")


def leave(uid: int, gid: int) -> Mutation:
    return ("del", schema.GROUP_USERS, schema.pair_key(gid, uid))


def has_members(view: View, gid: int) -> bool:
    return next(iter(view.iter(schema.GROUP_USERS, schema.id_key(gid))), None) is not None
