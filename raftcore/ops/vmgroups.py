"""VM groups (onevmgroup): roles of VMs and the placement rules between them.

A VM group record (raftcore.objects) adds::

    {"roles": [{"id", "name", "policy", "host_affined": [hid], "host_anti_affined": [hid],
                "vms": [vm ids]}],
     "affined": [[role names]], "anti_affined": [[role names]]}

from its template (OpenNebula's syntax)::

    NAME = "app"
    ROLE = [ NAME = "web", POLICY = "ANTI_AFFINED", HOST_ANTI_AFFINED = "3" ]
    ROLE = [ NAME = "db", POLICY = "AFFINED", HOST_AFFINED = "1,2" ]
    AFFINED = "web, db"          # roles whose VMs go to the same hosts
    ANTI_AFFINED = "db, cache"   # roles whose VMs never share a host

POLICY rules VMs inside one role (AFFINED: same host, ANTI_AFFINED: different hosts,
NONE); HOST_[ANTI_]AFFINED pins a role to (away from) hosts. A VM joins a role with
``VMGROUP = [ VMGROUP_ID = 0, ROLE = "web" ]`` in its template (`join`), leaves it when
it is DONE (`leave`); the scheduler enforces the rules. A group with VMs cannot be
deleted.
"""

from __future__ import annotations

from raftcore import objects, schema, template
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode, ok
from raftcore.ops.common import (
    MAX_NAME_CHARS,
    Mutation,
    Reject,
    Result,
    View,
    arg_int,
    bad,
    check_args,
    require,
)
from raftcore.ops.tenancy import arg_template

KIND = "vmgroup"
POLICIES = ("NONE", "AFFINED", "ANTI_AFFINED")
ROLE_KEYS = ("NAME", "POLICY", "HOST_AFFINED", "HOST_ANTI_AFFINED")
MAX_ROLES = 64


def _where(i: int, name: str | None = None) -> str:
    return f"ROLE {i}" + (f" ({name!r})" if name else "")


def _hosts(view: View, text: str, where: str, key: str) -> list[int]:
    ids: list[int] = []
    for part in (p.strip() for p in text.split(",")):
        if not part.isascii() or not part.isdigit() or len(part) > 10:
            raise bad(f"{where}: {key} must be a comma-separated list of host ids, got {text!r}")
        hid = int(part)
        if objects.find(view, "host", hid) is None:
            raise bad(f"{where}: {key}: host {hid} does not exist")
        ids.append(hid)
    return sorted(set(ids))


def _role(view: View, i: int, vector: dict[str, str]) -> dict:
    unknown = sorted(k for k in vector if k not in ROLE_KEYS)
    if unknown:
        raise bad(f"{_where(i)}: unknown attribute(s) {', '.join(unknown)}")
    name = (vector.get("NAME") or "").strip()
    if not name:
        raise bad(f"{_where(i)}: NAME is missing")
    if len(name) > MAX_NAME_CHARS or "," in name or not name.isprintable():
        raise bad(f"{_where(i)}: NAME must be 1..{MAX_NAME_CHARS} printable characters without ','")
    where = _where(i, name)
    policy = (vector.get("POLICY") or "NONE").strip().upper()
    if policy not in POLICIES:
        raise bad(f"{where}: POLICY must be one of {', '.join(POLICIES)}, got {policy!r}")
    affined = (
        _hosts(view, vector["HOST_AFFINED"], where, "HOST_AFFINED")
        if "HOST_AFFINED" in vector
        else []
    )
    anti = (
        _hosts(view, vector["HOST_ANTI_AFFINED"], where, "HOST_ANTI_AFFINED")
        if "HOST_ANTI_AFFINED" in vector
        else []
    )
    both = sorted(set(affined) & set(anti))
    if both:
        raise bad(
            f"{where}: host(s) {', '.join(map(str, both))} both HOST_AFFINED and HOST_ANTI_AFFINED"
        )
    return {
        "id": i,
        "name": name,
        "policy": policy,
        "host_affined": affined,
        "host_anti_affined": anti,
        "vms": [],
    }


def _rules(t: template.Template, key: str, names: set[str]) -> list[list[str]]:
    rules = []
    for value in t.get_all(key):
        if not isinstance(value, str):
            raise bad(f'{key} must be a list of role names (AFFINED = "web, db"), not a vector')
        roles = [r.strip() for r in value.split(",") if r.strip()]
        unknown = [r for r in roles if r not in names]
        if unknown:
            raise bad(f"{key} = {value!r}: no role named {', '.join(map(repr, unknown))}")
        if len(set(roles)) < 2:
            raise bad(f"{key} = {value!r} must name at least two different roles")
        rules.append(sorted(set(roles)))
    return rules


def parse_group(view: View, t: template.Template) -> dict:
    """The roles and rules of a VM group template, validated."""
    vectors = t.get_all("ROLE")
    if not vectors:
        raise bad("a VM group needs at least one ROLE = [ NAME = ... ]")
    if len(vectors) > MAX_ROLES:
        raise bad(f"a VM group has at most {MAX_ROLES} roles, got {len(vectors)}")
    roles = []
    for i, value in enumerate(vectors):
        if isinstance(value, str):
            raise bad(f"{_where(i)} must be a vector (ROLE = [ NAME = ... ])")
        roles.append(_role(view, i, dict(value)))
    names = [r["name"] for r in roles]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise bad(f"role name(s) {', '.join(map(repr, dup))} used twice")
    affined = _rules(t, "AFFINED", set(names))
    anti = _rules(t, "ANTI_AFFINED", set(names))
    # A pair of roles cannot be kept together and apart at once.
    pairs = {(a, b) for rule in affined for a in rule for b in rule if a < b}
    for rule in anti:
        clash = sorted((a, b) for a in rule for b in rule if a < b and (a, b) in pairs)
        if clash:
            a, b = clash[0]
            raise bad(f"roles {a!r} and {b!r} are both AFFINED and ANTI_AFFINED")
    return {"roles": roles, "affined": affined, "anti_affined": anti}


def op_vmgroup_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("template",), ("name",))
    t = template.parse(arg_template(args))
    name = args.get("name")
    if name is None:
        try:
            name = t.scalar("NAME")
        except template.TemplateError as e:
            raise bad(f"argument 'template': {e}") from None
        if name is None:
            raise bad("missing argument 'name' (or NAME in the template)")
    fields = parse_group(view, t)
    t.remove("NAME")  # the record's name is the one name (rename keeps it right)
    require(view, cmd, objects.create_request(KIND, gid=caller_gid(view, cmd)))
    record, mutations = objects.new(view, cmd, KIND, name, template.render(t), fields)
    return mutations, ok({"id": record["id"]})


def caller_gid(view: View, cmd: dict) -> int:
    """The primary group of the command's user: where its new objects go."""
    user = view.get(schema.USERS, schema.id_key(cmd["uid"])) if cmd["uid"] >= 0 else None
    return user["gid"] if user else 0


def op_vmgroup_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    group = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, group, "MANAGE"))
    used = [f"{r['name']}: {', '.join(map(str, r['vms']))}" for r in group["roles"] if r["vms"]]
    if used:
        raise Reject(
            ErrorCode.ACTION,
            f"VM group {group['id']} has VMs ({'; '.join(used)}): terminate them first",
        )
    return objects.remove(KIND, group), ok()


# --- membership (used by the VM ops) ----------------------------------------------------


def join(view: View, group_id: int, role: str, vm_id: int) -> tuple[AuthRequest, list[Mutation]]:
    """VM `vm_id` joins `role` of group `group_id`: the USE request it needs and the
    mutations. Unknown groups and roles are bad input (they come from the VM template)."""
    group = objects.ref(view, KIND, group_id, "VMGROUP_ID")
    roles = [dict(r) for r in group["roles"]]
    match = next((r for r in roles if r["name"] == role), None)
    if match is None:
        known = ", ".join(r["name"] for r in roles)
        raise bad(f"VMGROUP: VM group {group_id} has no role {role!r} (roles: {known})")
    match["vms"] = sorted({*match["vms"], vm_id})
    new = {**group, "roles": roles}
    return objects.auth(KIND, group, "USE"), objects.put(view, KIND, new, group)


def leave(view: View, group_id: int, role: str, vm_id: int) -> list[Mutation]:
    """VM `vm_id` leaves its role (nothing to do if the group or role is gone)."""
    group = objects.find(view, KIND, group_id)
    if group is None:
        return []
    roles = [
        {**r, "vms": [v for v in r["vms"] if v != vm_id]} if r["name"] == role else r
        for r in group["roles"]
    ]
    if roles == group["roles"]:
        return []
    return objects.put(view, KIND, {**group, "roles": roles}, group)


HANDLERS = {"vmgroup.allocate": op_vmgroup_allocate, "vmgroup.delete": op_vmgroup_delete}
