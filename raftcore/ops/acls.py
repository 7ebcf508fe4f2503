"""ACL rules: add and delete. Rules arrive integer-encoded (raftcore.acl parses the text
form in the API), are checked again here, and are stored by id and under their user
selector (docs/tenancy.md)."""

from raftcore import acl, schema
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode, ok
from raftcore.ops.common import (
    Mutation,
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


# --- rules as other ops store them (bootstrap, VDCs) ------------------------------------


def find_same(view: View, rule: acl.Rule) -> int | None:
    """The id of a stored rule equal to `rule` (ids aside), if any."""
    same = (rule.user, rule.resource, rule.rights, rule.zone)
    for _, existing in view.iter(schema.ACLS_BY_USER, acl.user_key(rule)):
        if tuple(existing[f] for f in ("user", "resource", "rights", "zone")) == same:
            return existing["id"]
    return None


def store_rule(rule: acl.Rule, rule_id: int) -> list[Mutation]:
    """The mutations storing `rule` as `rule_id`: by id and under its user selector."""
    record = {**rule.to_record(), "id": rule_id}
    return [
        ("put", schema.ACLS, schema.id_key(rule_id), record),
        ("put", schema.ACLS_BY_USER, acl.user_key(rule) + schema.id_key(rule_id), record),
    ]


def drop_rule(record: dict) -> list[Mutation]:
    rule = acl.Rule.from_record(record)
    return [
        ("del", schema.ACLS, schema.id_key(record["id"])),
        ("del", schema.ACLS_BY_USER, acl.user_key(rule) + schema.id_key(record["id"])),
    ]


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
    existing = find_same(view, rule)
    if existing is not None:
        raise Reject(ErrorCode.ACTION, f"the same rule exists already: ACL {existing}")
    rule_id, seq = next_id(view, "acl")
    return [*store_rule(rule, rule_id), seq], ok({"id": rule_id})


def op_acl_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    record = get_record(view, schema.ACLS, arg_int(args, "id"), "ACL rule")
    require(view, cmd, _MANAGE_ACLS)
    return drop_rule(record), ok()


HANDLERS = {"acl.add": op_acl_add, "acl.delete": op_acl_delete}
