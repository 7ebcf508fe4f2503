"""AclService: OpenNebula's ACL rules (oneacl). Rules travel as text and are stored
integer-encoded (raftcore.acl); only oneadmin may read or change them."""

from __future__ import annotations

from raftcore import acl, schema
from raftcore.authz import AuthRequest
from zones.api.auth import Caller
from zones.api.core import Api
from zones.api.errors import invalid
from zones.api.gen import acl_pb2, acl_pb2_grpc, common_pb2
from zones.api.methods import build, check, local_view, new_id, read, write

_S = "AclService"
ZONE_ID = 0  # this zone's id; federation (a later issue) gives zones other ids
MAX_RULE_CHARS = 4096


def _parse(request: acl_pb2.AclAddRequest) -> acl.Rule:
    if len(request.rule) > MAX_RULE_CHARS:
        raise invalid(f"ACL rule of {len(request.rule)} characters exceeds {MAX_RULE_CHARS}")
    try:
        return acl.parse(request.rule, default_zone=ZONE_ID)
    except acl.AclSyntaxError as e:
        raise invalid(f"malformed ACL rule {request.rule!r}: {e}") from None


def _add_args(request: acl_pb2.AclAddRequest) -> dict:
    rule = _parse(request)
    return {"user": rule.user, "resource": rule.resource, "rights": rule.rights, "zone": rule.zone}


def _list(api: Api, request, context, caller: Caller) -> acl_pb2.AclList:
    with local_view(api, context) as view:
        check(view, caller, AuthRequest("ACL", "USE"))
        rules = [acl.Rule.from_record(r) for _, r in view.iter(schema.ACLS)]
    return acl_pb2.AclList(
        rules=[
            acl_pb2.AclRule(
                id=r.id,
                text=acl.format(r),
                user=r.user,
                resource=r.resource,
                rights=r.rights,
                zone=r.zone,
            )
            for r in rules
        ]
    )


METHODS = [
    write(_S, "Add", "acl.add", _add_args, new_id, common_pb2.IdResponse, _parse),
    write(_S, "Delete", "acl.delete", lambda r: {"id": r.id}),
    read(_S, "List", acl_pb2.AclList, _list),
]


def servicer(api: Api) -> acl_pb2_grpc.AclServiceServicer:
    return build(acl_pb2_grpc.AclServiceServicer, api, METHODS)
