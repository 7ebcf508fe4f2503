"""Users and their login tokens: bootstrap, allocate, delete, password, authentication
driver, groups, enable/disable, template.

A user record: {"id", "name", "password", "gid", "groups", "enabled", "auth_driver",
"template", "created"}; `groups` lists every group of the user, the primary `gid` first.
`password` is what the user's authentication driver checks: an scrypt hash for "core"
(hashed before it is proposed: a clear password never enters the log), a public key for
"ssh", a certificate subject DN for "x509", the directory DN for "ldap".
"""

from raftcore import acl, schema
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode, ok
from raftcore.ops.acls import store_rule
from raftcore.ops.common import (
    Mutation,
    Reject,
    Result,
    View,
    arg_bool,
    arg_int,
    arg_str,
    bad,
    check_args,
    next_id,
    require,
)
from raftcore.ops.tenancy import (
    ADMIN_GID,
    ADMIN_NAME,
    ADMIN_UID,
    FIRST_USER_GROUP_ID,
    USERS_GID,
    USERS_GROUP_NAME,
    arg_name,
    get_group,
    get_user,
    group_object,
    join,
    leave,
    ref_group,
    unique_name,
    updated_template,
    user_object,
)

AUTH_DRIVERS = ("core", "ssh", "x509", "ldap")
MAX_SECRET_CHARS = 8192  # an RSA public key line or a long DN fit
# OpenNebula's bootstrap rules: users may create their own resources, and see the zone
# and the marketplaces.
BOOTSTRAP_ACLS = (
    "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *",
    "* ZONE/* USE *",
    "* MARKETPLACE+MARKETPLACEAPP/* USE *",
)


def _arg_driver(args: dict) -> str:
    driver = args["driver"]
    if driver not in AUTH_DRIVERS:
        raise bad(f"argument 'driver' must be one of {', '.join(AUTH_DRIVERS)}, got {driver!r}")
    return driver


def _arg_secret(args: dict) -> str:
    return arg_str(args, "password", max_chars=MAX_SECRET_CHARS)


def _revoke_tokens(view: View, uid: int) -> list[Mutation]:
    prefix = schema.id_key(uid)
    mutations: list[Mutation] = []
    for key, _ in view.iter(schema.TOKENS_BY_USER, prefix):
        mutations.append(("del", schema.TOKENS, key[len(prefix) :]))
        mutations.append(("del", schema.TOKENS_BY_USER, key))
    return mutations


def _drop_admin(view: View, uid: int, gid: int) -> list[Mutation]:
    """Leaving a group ends the user's admin role there."""
    group = get_group(view, gid)
    if uid not in group["admins"]:
        return []
    admins = [a for a in group["admins"] if a != uid]
    return [("put", schema.GROUPS, schema.id_key(gid), {**group, "admins": admins})]


def _put(user: dict) -> Mutation:
    return ("put", schema.USERS, schema.id_key(user["id"]), user)


# --- bootstrap and tokens -------------------------------------------------------------


def op_user_bootstrap(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("password_hash",))
    password_hash = arg_str(args, "password_hash", max_chars=1024)
    if view.get(schema.USERS, schema.id_key(ADMIN_UID)) is not None:
        raise Reject(ErrorCode.ACTION, "zone already bootstrapped: user 0 exists")
    admin = {
        "id": ADMIN_UID,
        "name": ADMIN_NAME,
        "password": password_hash,
        "gid": ADMIN_GID,
        "groups": [ADMIN_GID],
        "enabled": True,
        "auth_driver": "core",
        "template": "",
        "created": cmd["ts"],
    }
    mutations: list[Mutation] = [_put(admin), join(ADMIN_UID, ADMIN_GID)]
    mutations.append(("put", schema.USERS_BY_NAME, schema.str_key(ADMIN_NAME), ADMIN_UID))
    for gid, name in ((ADMIN_GID, ADMIN_NAME), (USERS_GID, USERS_GROUP_NAME)):
        group = {"id": gid, "name": name, "admins": [], "template": "", "created": cmd["ts"]}
        mutations.append(("put", schema.GROUPS, schema.id_key(gid), group))
        mutations.append(("put", schema.GROUPS_BY_NAME, schema.str_key(name), gid))
    for rule_id, text in enumerate(BOOTSTRAP_ACLS):
        mutations += store_rule(acl.parse(text), rule_id)
    # Users continue from 1; groups created later start at 100 (OpenNebula).
    mutations.append(("put", schema.META, schema.seq_key("user"), ADMIN_UID + 1))
    mutations.append(("put", schema.META, schema.seq_key("group"), FIRST_USER_GROUP_ID))
    mutations.append(("put", schema.META, schema.seq_key("acl"), len(BOOTSTRAP_ACLS)))
    return mutations, ok({"id": ADMIN_UID})


def _arg_token_hash(args: dict) -> str:
    value = args["token_hash"]
    if not isinstance(value, str):
        raise bad(f"argument 'token_hash' must be a string, got {type(value).__name__}")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise bad("argument 'token_hash' must be 64 lowercase hex characters (sha256)")
    return value


def op_token_create(view: View, args: dict, cmd: dict, index: int) -> Result:
    # Proposed by the API after the user's authentication driver accepted them.
    check_args(args, ("token_hash", "uid", "expires"))
    token_hash = _arg_token_hash(args)
    uid = arg_int(args, "uid")
    expires = arg_int(args, "expires")
    if expires <= cmd["ts"]:
        raise bad(f"argument 'expires' ({expires}) must be later than the command ts ({cmd['ts']})")
    user = get_user(view, uid)
    if not user.get("enabled", False):
        raise Reject(ErrorCode.AUTHENTICATION, f"user {uid} is disabled")
    key = schema.str_key(token_hash)
    if view.get(schema.TOKENS, key) is not None:
        raise Reject(ErrorCode.ACTION, "a token with this hash already exists")
    record = {"uid": uid, "expires": expires, "created": cmd["ts"]}
    return [
        ("put", schema.TOKENS, key, record),
        ("put", schema.TOKENS_BY_USER, schema.id_key(uid) + key, b""),
    ], ok()


def op_token_revoke(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("token_hash",))
    key = schema.str_key(_arg_token_hash(args))
    record = view.get(schema.TOKENS, key)
    if record is None:
        raise Reject(ErrorCode.NO_EXISTS, "token does not exist")
    return [
        ("del", schema.TOKENS, key),
        ("del", schema.TOKENS_BY_USER, schema.id_key(record["uid"]) + key),
    ], ok()


# --- users ----------------------------------------------------------------------------


def op_user_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("name", "password", "driver"), ("gid", "groups"))
    name = arg_name(args)
    driver = _arg_driver(args)
    secret = _arg_secret(args)
    gid = arg_int(args, "gid") if "gid" in args else USERS_GID
    extra = args.get("groups", [])
    if not isinstance(extra, list) or not all(isinstance(g, int) and g >= 0 for g in extra):
        raise bad("argument 'groups' must be a list of group ids")
    groups = list(dict.fromkeys([gid, *extra]))
    records = [ref_group(view, args, "gid" if g == gid else "groups", g) for g in groups]
    require(view, cmd, AuthRequest("USER", "CREATE", gid=gid))
    for group in records[1:]:
        require(view, cmd, group_object(group, "MANAGE"))
    unique_name(view, schema.USERS_BY_NAME, name, "user")
    uid, seq = next_id(view, "user", start=ADMIN_UID + 1)
    user = {
        "id": uid,
        "name": name,
        "password": secret,
        "gid": gid,
        "groups": groups,
        "enabled": True,
        "auth_driver": driver,
        "template": "",
        "created": cmd["ts"],
    }
    mutations = [_put(user), seq, ("put", schema.USERS_BY_NAME, schema.str_key(name), uid)]
    mutations += [join(uid, g) for g in groups]
    return mutations, ok({"id": uid})


def op_user_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    uid = arg_int(args, "id")
    user = get_user(view, uid)
    if uid == ADMIN_UID:
        raise Reject(ErrorCode.ACTION, "user 0 (oneadmin) cannot be deleted")
    require(view, cmd, user_object(user, "ADMIN"))
    mutations: list[Mutation] = [
        ("del", schema.USERS, schema.id_key(uid)),
        ("del", schema.USERS_BY_NAME, schema.str_key(user["name"])),
    ]
    for g in user["groups"]:
        mutations += [leave(uid, g), *_drop_admin(view, uid, g)]
    mutations += _revoke_tokens(view, uid)
    mutations.append(("del", schema.QUOTAS, b"u" + schema.id_key(uid)))
    return mutations, ok()


def op_user_passwd(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "password"))
    user = get_user(view, arg_int(args, "id"))
    secret = _arg_secret(args)
    require(view, cmd, user_object(user, "MANAGE"))
    return [_put({**user, "password": secret})], ok()


def op_user_chauth(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "driver"), ("password",))
    user = get_user(view, arg_int(args, "id"))
    driver = _arg_driver(args)
    secret = _arg_secret(args) if "password" in args else user["password"]
    require(view, cmd, user_object(user, "ADMIN"))
    return [_put({**user, "auth_driver": driver, "password": secret})], ok()


def op_user_chgrp(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "gid"))
    user = get_user(view, arg_int(args, "id"))
    group = ref_group(view, args, "gid")
    require(view, cmd, user_object(user, "MANAGE"), group_object(group, "MANAGE"))
    old, new = user["gid"], group["id"]
    if old == new:
        return [], ok()
    if user["id"] == ADMIN_UID and old == ADMIN_GID:
        raise Reject(ErrorCode.ACTION, "oneadmin's primary group cannot change")
    # The new group becomes primary; the old primary group is left (OpenNebula's chgrp),
    # and with it any admin role there.
    groups = [new] + [g for g in user["groups"] if g not in (old, new)]
    mutations = [_put({**user, "gid": new, "groups": groups}), leave(user["id"], old)]
    mutations += _drop_admin(view, user["id"], old)
    if new not in user["groups"]:
        mutations.append(join(user["id"], new))
    return mutations, ok()


def op_user_addgroup(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "gid"))
    user = get_user(view, arg_int(args, "id"))
    group = ref_group(view, args, "gid")
    require(view, cmd, user_object(user, "MANAGE"), group_object(group, "MANAGE"))
    if group["id"] in user["groups"]:
        raise Reject(ErrorCode.ACTION, f"user {user['id']} is already in group {group['id']}")
    groups = [*user["groups"], group["id"]]
    return [_put({**user, "groups": groups}), join(user["id"], group["id"])], ok()


def op_user_delgroup(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "gid"))
    user = get_user(view, arg_int(args, "id"))
    group = ref_group(view, args, "gid")
    require(view, cmd, user_object(user, "MANAGE"), group_object(group, "MANAGE"))
    gid = group["id"]
    if gid not in user["groups"]:
        raise Reject(ErrorCode.ACTION, f"user {user['id']} is not in group {gid}")
    if gid == user["gid"]:
        raise Reject(
            ErrorCode.ACTION, f"group {gid} is user {user['id']}'s primary group (use chgrp)"
        )
    mutations = [
        _put({**user, "groups": [g for g in user["groups"] if g != gid]}),
        leave(user["id"], gid),
        *_drop_admin(view, user["id"], gid),
    ]
    return mutations, ok()


def op_user_enable(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "enabled"))
    user = get_user(view, arg_int(args, "id"))
    enabled = arg_bool(args, "enabled")
    if user["id"] == ADMIN_UID and not enabled:
        raise Reject(ErrorCode.ACTION, "user 0 (oneadmin) cannot be disabled")
    require(view, cmd, user_object(user, "ADMIN"))
    mutations = [_put({**user, "enabled": enabled})]
    if not enabled:
        mutations += _revoke_tokens(view, user["id"])
    return mutations, ok()


def op_user_update(view: View, args: dict, cmd: dict, index: int) -> Result:
    user = get_user(view, arg_int(args, "id"))
    text = updated_template(args, user)
    require(view, cmd, user_object(user, "MANAGE"))
    return [_put({**user, "template": text})], ok()


HANDLERS = {
    "user.bootstrap": op_user_bootstrap,
    "token.create": op_token_create,
    "token.revoke": op_token_revoke,
    "user.allocate": op_user_allocate,
    "user.delete": op_user_delete,
    "user.passwd": op_user_passwd,
    "user.chauth": op_user_chauth,
    "user.chgrp": op_user_chgrp,
    "user.addgroup": op_user_addgroup,
    "user.delgroup": op_user_delgroup,
    "user.enable": op_user_enable,
    "user.update": op_user_update,
}
