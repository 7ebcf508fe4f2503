"""PoolService: Info, List, Chown, Chmod, Rename, Update for every kind of pool object.

Listings read the `index` db (raftcore.objects), never the objects of other kinds nor,
for a user other than oneadmin, objects it cannot see: the candidates are the caller's
own objects, its groups' objects, objects shared with everyone (other USE bit), and what
its ACL rules name (`#id`, `@gid`, `%cid`; a `*` rule for the kind means every object
of the kind); each candidate is then checked with raftcore.authz (USE).
"""

from __future__ import annotations

from google.protobuf import json_format, struct_pb2

from raftcore import acl, authz, codec, objects, perms, schema, template
from zones.api.auth import Caller
from zones.api.core import Api, Rpc, rid_accessors
from zones.api.errors import invalid, not_found
from zones.api.gen import common_pb2, pool_pb2, pool_pb2_grpc
from zones.api.methods import Method, ack, build, check, local_view, new_id, read, write

_S = "PoolService"
MINE_AND_GROUPS, ALL, MINE, PRIMARY_GROUP = -1, -2, -3, -4
MAX_LIMIT = 1_000_000


def _check_kind(request) -> None:
    if request.kind not in objects.KINDS:
        raise invalid(f"unknown object kind {request.kind!r} (known: {', '.join(objects.KINDS)})")


def _check_list(request: pool_pb2.PoolListRequest) -> None:
    _check_kind(request)
    if request.filter < PRIMARY_GROUP:
        raise invalid(f"filter must be -4, -3, -2, -1 or a user id, got {request.filter}")
    if request.start_id < 0:
        raise invalid(f"start_id must be >= 0, got {request.start_id}")


def _check_chmod(request: pool_pb2.ChmodRequest) -> None:
    _check_kind(request)
    if request.perms > perms.ALL_PERMS:
        raise invalid(f"perms must be 0..0o777, got {oct(request.perms)}")


def _names(view, record: dict) -> tuple[str, str]:
    user = view.get(schema.USERS, schema.id_key(record["uid"])) or {}
    group = view.get(schema.GROUPS, schema.id_key(record["gid"])) or {}
    return user.get("name", ""), group.get("name", "")


def object_message(view, kind: str, record: dict, raw: bytes) -> pool_pb2.PoolObject:
    uname, gname = _names(view, record)
    return pool_pb2.PoolObject(
        kind=kind,
        id=record["id"],
        name=record["name"],
        uid=record["uid"],
        uname=uname,
        gid=record["gid"],
        gname=gname,
        perms=record["perms"],
        permissions=perms.to_string(record["perms"]),
        template=record.get("template", ""),
        regtime_unix_ms=record.get("regtime", 0),
        record=raw,
        template_map=_template_map(record.get("template", "")),
    )


def _template_map(text: str) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    try:
        out.update(template.parse(text).to_dict())
    except template.TemplateError:
        pass  # stored templates are canonical; an unparsable one shows as text only
    return out


def _info(api: Api, request, context, caller: Caller) -> pool_pb2.PoolObject:
    with local_view(api, context) as view:
        raw = view.get_raw(schema.OBJECTS, objects.key(request.kind, request.id))
        if raw is None:
            label = objects.KINDS[request.kind].label
            raise not_found(f"{label} {request.id} does not exist")
        record = codec.unpackb(raw)
        check(view, caller, objects.auth(request.kind, record, "USE"))
        return object_message(view, request.kind, record, raw)


def _candidates(view, caller: Caller, kind: str, flt: int) -> set[int] | None:
    """Ids that may be listed for `flt`; None: every object of the kind."""
    uid = caller.uid
    user = view.get(schema.USERS, schema.id_key(uid)) or {"gid": -1, "groups": []}

    def index(name: str, value) -> set[int]:
        return set(objects.ids_by_index(view, kind, name, value))

    if flt >= 0:
        return index("owner", flt)
    if flt == MINE:
        return index("owner", uid)
    if flt == PRIMARY_GROUP:
        return index("group", user["gid"])
    if flt == ALL and authz.is_admin(view, uid):
        return None  # before reading any index: oneadmin may own every object
    ids = index("owner", uid)
    for gid in user["groups"]:
        ids |= index("group", gid)
    if flt == MINE_AND_GROUPS:
        return ids
    ids |= index("shared", 1)
    type_bit = acl.OBJECT_TYPES[objects.KINDS[kind].auth_type]
    for resource, rights, _zone in authz.rules_of(view, uid):
        if not (resource & type_bit and rights & acl.RIGHTS["USE"]):
            continue
        selector, oid = resource & acl.SELECTOR_MASK, resource & acl.ID_MASK
        if selector == acl.ALL:
            return None
        if selector == acl.INDIVIDUAL:
            ids.add(oid)
        elif selector == acl.GROUP:
            ids |= index("group", oid)
        elif selector == acl.CLUSTER:
            ids |= index("cluster", oid)
    return ids


def visible_records(view, caller: Caller, kind: str, flt: int):
    """The decoded objects of `kind` the caller may see under pool filter `flt`, by id."""
    ids = _candidates(view, caller, kind, flt)
    if ids is None:
        records = objects.all_of(view, kind)
    else:
        records = (objects.find(view, kind, i) for i in sorted(ids))
    admin = authz.is_admin(view, caller.uid)
    for record in records:
        if record is not None and (
            admin or authz.allowed(view, caller.uid, objects.auth(kind, record, "USE"))
        ):
            yield record


def _list(api: Api, request, context, caller: Caller) -> pool_pb2.PoolList:
    kind = request.kind
    start = request.start_id
    end = request.end_id if request.HasField("end_id") else None
    limit = request.limit or MAX_LIMIT
    with local_view(api, context) as view:
        admin = authz.is_admin(view, caller.uid)
        ids = _candidates(view, caller, kind, request.filter)
        if request.HasField("state"):
            in_state = set(objects.ids_by_index(view, kind, "state", request.state))
            ids = in_state if ids is None else ids & in_state
        if ids is None:
            raws = view.iter_raw(
                schema.OBJECTS, objects.kind_prefix(kind), objects.key(kind, start)
            )
        else:
            wanted = sorted(i for i in ids if i >= start and (end is None or i <= end))
            raws = (view.get_raw(schema.OBJECTS, objects.key(kind, i)) for i in wanted)
        out: list[bytes] = []
        next_id = -1
        for raw in raws:
            if raw is None:
                continue
            if end is not None or not admin:
                record = codec.unpackb(raw)
                if end is not None and record["id"] > end:
                    break
                if not admin and not authz.allowed(
                    view, caller.uid, objects.auth(kind, record, "USE")
                ):
                    continue
            if len(out) == limit:
                next_id = codec.unpackb(raw)["id"]
                break
            out.append(raw)
    records = _array_header(len(out)) + b"".join(out)
    return pool_pb2.PoolList(records=records, count=len(out), next_id=next_id)


def _array_header(n: int) -> bytes:
    """msgpack's array header for n items (the items are already-packed records)."""
    if n < 16:
        return bytes([0x90 | n])
    if n < 1 << 16:
        return b"\xdc" + n.to_bytes(2, "big")
    return b"\xdd" + n.to_bytes(4, "big")


def _integral(value):
    # Struct numbers are doubles: 2 arrives as 2.0, which a template must print as "2".
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def template_of(request) -> str:
    """The request's template text: `template`, or `template_map` rendered as text."""
    if not request.HasField("template_map"):
        return request.template
    if request.template:
        raise invalid("give the template as text or as template_map, not both")
    data = _integral(json_format.MessageToDict(request.template_map))
    try:
        return template.render(template.Template.from_dict(data))
    except template.TemplateError as e:
        raise invalid(f"template_map: {e}") from None


def _allocate_args(r: pool_pb2.AllocateRequest) -> dict:
    args: dict = {}
    if r.name:
        args["name"] = r.name
    text = template_of(r)
    if text:
        args["template"] = text
    if r.HasField("cluster_id"):
        args["cluster"] = r.cluster_id
    if r.HasField("datastore_id"):
        args["datastore"] = r.datastore_id
    if r.hold:
        args["hold"] = True
    return args


MAX_ARGS_BYTES = 2 << 20


def _action_args(r: pool_pb2.ActionRequest) -> dict:
    if not r.args:
        return {"id": r.id}
    if len(r.args) > MAX_ARGS_BYTES:
        raise invalid(f"args of {len(r.args)} bytes exceed {MAX_ARGS_BYTES}")
    try:
        args = codec.unpackb(r.args)
    except ValueError as e:
        raise invalid(f"args must be a msgpack map: {e}") from None
    if not isinstance(args, dict):
        raise invalid(f"args must be a msgpack map, got {type(args).__name__}")
    if "id" in args:
        raise invalid("args may not carry 'id': the request's id names the object")
    return {**args, "id": r.id}


def _check_action(r: pool_pb2.ActionRequest) -> None:
    _check_kind(r)
    actions = objects.KINDS[r.kind].actions
    if r.action not in actions:
        known = ", ".join(sorted(actions)) or "none"
        raise invalid(f"{r.kind} has no action {r.action!r} (its actions: {known})")
    _action_args(r)


def _update(api: Api, request, context, caller: Caller) -> common_pb2.Ack:
    args = {"id": request.id, "template": template_of(request), "append": request.append}
    if "update" in objects.KINDS[request.kind].actions:
        op = f"{request.kind}.update"
    else:
        op, args = "obj.update", {**args, "kind": request.kind}
    api.propose(op, args, request.request_id, caller, context)
    return common_pb2.Ack()


def _kind_id(r) -> dict:
    return {"kind": r.kind, "id": r.id}


def _kind_write(name: str, action, args, reply=ack, response=common_pb2.Ack, validate=_check_kind):
    """A write whose op is "<kind>.<action>"; `action` is a name or a function of the
    request."""
    rpc = Rpc(
        f"/one.v1.{_S}/{name}",
        response,
        leader_only=True,
        rid=rid_accessors(),
        validate=validate,
    )

    def run(api: Api, request, context, caller: Caller):
        op = f"{request.kind}.{action(request) if callable(action) else action}"
        value = api.propose(op, args(request), request.request_id, caller, context)
        return reply(value)

    return Method(rpc, run)


METHODS = [
    _kind_write(
        "Action",
        lambda r: r.action,
        _action_args,
        lambda value: pool_pb2.ActionResponse(value=codec.packb(value)),
        pool_pb2.ActionResponse,
        _check_action,
    ),
    _kind_write("Allocate", "allocate", _allocate_args, new_id, common_pb2.IdResponse),
    _kind_write("Delete", "delete", lambda r: {"id": r.id}),
    read(_S, "Info", pool_pb2.PoolObject, _info, validate=_check_kind),
    read(_S, "List", pool_pb2.PoolList, _list, validate=_check_list),
    write(
        _S,
        "Chown",
        "obj.chown",
        lambda r: {**_kind_id(r), "uid": r.uid, "gid": r.gid},
        validate=_check_kind,
    ),
    write(
        _S,
        "Chmod",
        "obj.chmod",
        lambda r: {**_kind_id(r), "perms": r.perms},
        validate=_check_chmod,
    ),
    write(
        _S, "Rename", "obj.rename", lambda r: {**_kind_id(r), "name": r.name}, validate=_check_kind
    ),
    # Kinds that check their own templates have an "update" action; the others share
    # obj.update.
    Method(
        Rpc(
            f"/one.v1.{_S}/Update",
            common_pb2.Ack,
            leader_only=True,
            rid=rid_accessors(),
            validate=_check_kind,
        ),
        _update,
    ),
]


def servicer(api: Api) -> pool_pb2_grpc.PoolServiceServicer:
    return build(pool_pb2_grpc.PoolServiceServicer, api, METHODS)


def decode_list(reply: pool_pb2.PoolList) -> list[dict]:
    """The records of a PoolList reply (for clients)."""
    return codec.unpackb(reply.records)
