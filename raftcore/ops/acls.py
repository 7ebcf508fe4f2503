"""ACL rules: add and delete. Rules arrive integer-encoded (raftcore.acl parses the text
form in the API), are checked again here, and are stored by id and under their user
selector (docs/tenancy.md)."""

from raftcore import acl, schema
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode, ok
from raftcore.ops.common import (
    Reject,
    Result,
    View,
    arg_int,
    bad,
    check_args,
    get_record,
    next_id,
    require,
)

# Only oneadmin (or an ACL rule... there is no ACL resource type: nobody else) may
# change the rules.
_MANAGE_ACLS = AuthRequest("ACL", "MANAGE")


# (field, selector flag) -> the db and name of the object the selector names.
_REFERENCES = {
    ("user", acl.INDIVIDUAL): (schema.USERS, "user"),
    ("user", acl.GROUP): (schema.GROUPS, "group"),
    ("resource", acl.GROUP): (schema.GROUPS, "group"),
}


def _check_references(view: View, rule: acl.Rule) -> None:
    """The users and groups a rule names must exist (objects of other types named by
    `#id` may be created later, as in OpenNebula)."""
    for field in ("user", "resource"):
        value = getattr(rule, field)
        ref = _REFERENCES.get((field, value & acl.SELECTOR_MASK))
        if ref is None:
            continue
        db, what = ref
        obj_id = value & acl.ID_MASK
        if view.get(db, schema.id_key(obj_id)) is None:
            raise bad(
                f"invalid ACL rule: the {field} selector names {what} {obj_id}, which does not exist"
            )


def op_acl_add(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("user", "resource", "rights", "zone"))
    fields = {name: arg_int(args, name) for name in ("user", "resource", "rights", "zone")}
    rule = acl.Rule(id=None, **fields)
    try:
        acl.validate(rule)
    except acl.AclSyntaxError as e:
        raise bad(f"invalid ACL rule: {e}") from None
    require(view, cmd, _MANAGE_ACLS)
    _check_references(view, rule)
    by_user = acl.user_key(rule)
    same = (rule.user, rule.resource, rule.rights, rule.zone)
    for _, existing in view.iter(schema.ACLS_BY_USER, by_user):
        if tuple(existing[f] for f in ("user", "resource", "rights", "zone")) == same:
            raise Reject(ErrorCode.ACTION, f"the same rule exists already: ACL {existing['id']}")
    rule_id, seq = next_id(view, "acl")
    record = {**rule.to_record(), "id": rule_id}
    return [
        ("put", schema.ACLS, schema.id_key(rule_id), record),
        ("put", schema.ACLS_BY_USER, by_user + schema.id_key(rule_id), record),
        seq,
    ], ok({"id": rule_id})


def op_acl_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    record = get_record(view, schema.ACLS, arg_int(args, "id"), "ACL rule")
    require(view, cmd, _MANAGE_ACLS)
    rule = acl.Rule.from_record(record)
    return [
        ("del", schema.ACLS, schema.id_key(record["id"])),
        ("del", schema.ACLS_BY_USER, acl.user_key(rule) + schema.id_key(record["id"])),
    ], ok()


HANDLERS = {"acl.add": op_acl_add, "acl.delete": op_acl_delete}
