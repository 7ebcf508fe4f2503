"""Virtual data centers (onevdc): groups given resources of zones, through ACL rules.

A VDC record (raftcore.objects) adds {"groups": [gid], "clusters", "hosts", "datastores",
"vnets": [{"zone", "id"}]}; an id of ALL (-10) stands for every resource of that type in
the zone. Each (group, resource) pair implies ACL rules, as OpenNebula's Vdc does:

    cluster c    @g HOST/%c MANAGE #z   and   @g NET+DATASTORE/%c USE #z
    host h       @g HOST/#h MANAGE #z
    datastore d  @g DATASTORE/#d USE #z
    vnet v       @g NET/#v USE #z
    (ALL: the selector is `*`)

The rules are created and removed in the same command that changes the VDC. Two VDCs
(or an administrator) may imply the same rule: it is stored once and removed only when
nothing implies it any more, so deleting one VDC never takes away what another grants.
"""

from raftcore import acl, objects, schema
from raftcore.commands import ErrorCode, ok
from raftcore.ops.acls import drop_rule, find_same, store_rule
from raftcore.ops.common import (
    Mutation,
    Overlay,
    Reject,
    Result,
    View,
    arg_int,
    bad,
    check_args,
    next_id,
    require,
)
from raftcore.ops.tenancy import arg_template, ref_group

KIND = "vdc"
ALL = -10
THIS_ZONE = 0
DEFAULT_VDC = 0
# resource list -> (member kind, [(resource types, rights)] implied for a group)
RESOURCES: dict[str, tuple[str, list[tuple[str, str]]]] = {
    "clusters": ("cluster", [("HOST", "MANAGE"), ("NET+DATASTORE", "USE")]),
    "hosts": ("host", [("HOST", "MANAGE")]),
    "datastores": ("datastore", [("DATASTORE", "USE")]),
    "vnets": ("vnet", [("NET", "USE")]),
}
# A cluster selects its members with %cid; the other resources are named by #id.
_SELECTOR = {"clusters": "%", "hosts": "#", "datastores": "#", "vnets": "#"}


def implied_rules(gid: int, resource: str, zone: int, rid: int) -> list[acl.Rule]:
    """The ACL rules a VDC implies for group `gid` and one resource entry."""
    _, grants = RESOURCES[resource]
    selector = "*" if rid == ALL else f"{_SELECTOR[resource]}{rid}"
    return [acl.parse(f"@{gid} {types}/{selector} {rights} #{zone}") for types, rights in grants]


def _implied_by(vdc: dict) -> list[tuple[int, int, int, int]]:
    out = []
    for gid in vdc["groups"]:
        for resource in RESOURCES:
            for entry in vdc[resource]:
                for r in implied_rules(gid, resource, entry["zone"], entry["id"]):
                    out.append((r.user, r.resource, r.rights, r.zone))
    return out


def _content(rule: acl.Rule) -> tuple[int, int, int, int]:
    return (rule.user, rule.resource, rule.rights, rule.zone)


def _sync_rules(view: View, old: dict | None, new: dict | None) -> list[Mutation]:
    """Mutations adding the rules `new` implies and `old` did not, and dropping those `old`
    implied that nothing else (another VDC) still implies."""
    before = set(_implied_by(old)) if old else set()
    after = set(_implied_by(new)) if new else set()
    others: set = set()
    my_id = (new or old)["id"]
    for vdc in objects.all_of(view, KIND):
        if vdc["id"] != my_id:
            others |= set(_implied_by(vdc))
    mutations: list[Mutation] = []
    new_rules = [acl.Rule(None, *c) for c in sorted(after - before - others)]
    # An administrator's rule may already grant it.
    new_rules = [r for r in new_rules if find_same(view, r) is None]
    if new_rules:
        # Consecutive ids and one sequence bump: next_id reads the stored sequence, which
        # the earlier rules of this same command have not advanced.
        first, _ = next_id(view, "acl")
        for offset, rule in enumerate(new_rules):
            mutations += store_rule(rule, first + offset)
        mutations.append(("put", schema.META, schema.seq_key("acl"), first + len(new_rules)))
    for content in sorted(before - after - others):
        rule_id = find_same(view, acl.Rule(None, *content))
        if rule_id is not None:
            mutations += drop_rule(view.get(schema.ACLS, schema.id_key(rule_id)))
    return mutations


def op_vdc_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, (), ("name", "template"))
    text = arg_template(args) if "template" in args else ""
    name = args.get("name") or _template_name(text)
    require(view, cmd, objects.create_request(KIND, gid=0))
    fields = {"groups": [], **{r: [] for r in RESOURCES}}
    record, mutations = objects.new(view, cmd, KIND, name, text, fields)
    return mutations, ok({"id": record["id"]})


def _template_name(text: str) -> str:
    from raftcore import template

    try:
        name = template.parse(text).scalar("NAME") if text else None
    except template.TemplateError as e:
        raise bad(f"argument 'template': {e}") from None
    if not name:
        raise bad("a VDC needs a name: argument 'name' or NAME in the template")
    return name


def op_vdc_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    vdc = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, vdc, "ADMIN"))
    return [*_sync_rules(view, vdc, None), *objects.remove(KIND, vdc)], ok()


def _change(view: View, cmd: dict, vdc: dict, new: dict) -> Result:
    require(view, cmd, objects.auth(KIND, vdc, "ADMIN"))
    return [*_sync_rules(view, vdc, new), *objects.put(view, KIND, new, vdc)], ok()


def _group_op(add: bool):
    def handler(view: View, args: dict, cmd: dict, index: int) -> Result:
        check_args(args, ("id", "group"))
        vdc = objects.get(view, KIND, arg_int(args, "id"))
        gid = ref_group(view, args, "group")["id"]
        groups = vdc["groups"]
        if add == (gid in groups):
            state = "already" if add else "not"
            raise Reject(ErrorCode.ACTION, f"group {gid} is {state} in VDC {vdc['id']}")
        new_groups = sorted([*groups, gid]) if add else [g for g in groups if g != gid]
        return _change(view, cmd, vdc, {**vdc, "groups": new_groups})

    return handler


def _resource_op(resource: str, add: bool):
    member_kind, _ = RESOURCES[resource]
    singular = member_kind

    def handler(view: View, args: dict, cmd: dict, index: int) -> Result:
        check_args(args, ("id", singular), ("zone",))
        vdc = objects.get(view, KIND, arg_int(args, "id"))
        zone = arg_int(args, "zone") if "zone" in args else THIS_ZONE
        rid = args[singular]
        if rid != ALL:
            rid = arg_int(args, singular)
            if add and zone == THIS_ZONE:
                objects.ref(view, member_kind, rid, singular)  # other zones' ids: not here
        entry = {"zone": zone, "id": rid}
        entries = vdc[resource]
        if add == (entry in entries):
            what = "all" if rid == ALL else f"{singular} {rid}"
            state = "already" if add else "not"
            raise Reject(ErrorCode.ACTION, f"{what} of zone {zone} is {state} in VDC {vdc['id']}")
        new_entries = [*entries, entry] if add else [e for e in entries if e != entry]
        return _change(view, cmd, vdc, {**vdc, resource: new_entries})

    return handler


def forget(view: View, member_kind: str, oid: int) -> list[Mutation]:
    """A cluster, host, datastore or vnet of this zone is deleted: take it out of every
    VDC (and the rules it implied), in the deleting command, so no VDC names a missing
    object and no rule outlives it."""
    resource = next(r for r, (k, _) in RESOURCES.items() if k == member_kind)
    gone = {"zone": THIS_ZONE, "id": oid}
    mutations: list[Mutation] = []
    ov = Overlay(view)
    for vdc in list(objects.all_of(view, KIND)):
        if gone in vdc[resource]:
            new = {**vdc, resource: [e for e in vdc[resource] if e != gone]}
            ov.add(_sync_rules(ov, vdc, new))
            ov.add(objects.put(ov, KIND, new, vdc))
    mutations += ov.mutations
    return mutations


HANDLERS = {
    "vdc.allocate": op_vdc_allocate,
    "vdc.delete": op_vdc_delete,
    "vdc.addgroup": _group_op(True),
    "vdc.delgroup": _group_op(False),
    **{
        f"vdc.{verb}{kind}": _resource_op(resource, verb == "add")
        for resource, (kind, _) in RESOURCES.items()
        for verb in ("add", "del")
    },
}
