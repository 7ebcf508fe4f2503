"""QuotaService: user and group quotas, and the default quotas (oneuser/onegroup quota,
defaultquota). Quotas travel as OpenNebula quota template text; the API parses it
(raftcore.quota) and the state machine checks and merges it (raftcore.ops.quotas)."""

from __future__ import annotations

from raftcore import quota, schema
from raftcore.ops.tenancy import group_object, user_object
from zones.api.auth import Caller
from zones.api.core import Api
from zones.api.errors import invalid, not_found
from zones.api.gen import quota_pb2, quota_pb2_grpc
from zones.api.methods import build, check, local_view, read, write

_S = "QuotaService"
_KINDS = {quota_pb2.USER: "user", quota_pb2.GROUP: "group"}


def _kind(request) -> str:
    kind = _KINDS.get(request.kind)
    if kind is None:
        raise invalid(f"unknown quota kind {request.kind} (USER or GROUP)")
    return kind


def _parsed(text: str) -> dict:
    try:
        return quota.parse_quota(text)
    except quota.QuotaError as e:
        raise invalid(f"invalid quota: {e}") from None


def _check_set(request) -> None:
    _kind(request)
    _parsed(request.quota)


def _get(api: Api, request, context, caller: Caller) -> quota_pb2.Quota:
    kind = _kind(request)
    db, of = (schema.USERS, user_object) if kind == "user" else (schema.GROUPS, group_object)
    with local_view(api, context) as view:
        record = view.get(db, schema.id_key(request.id))
        if record is None:
            raise not_found(f"{kind} {request.id} does not exist")
        check(view, caller, of(record, "USE"))
        return quota_pb2.Quota(
            quota=quota.format_quota(view.get(schema.QUOTAS, quota.record_key(kind, request.id)))
        )


def _get_default(api: Api, request, context, caller: Caller) -> quota_pb2.Quota:
    kind = _kind(request)
    with local_view(api, context) as view:
        return quota_pb2.Quota(
            quota=quota.format_quota(view.get(schema.QUOTAS, quota.default_key(kind)))
        )


METHODS = [
    write(
        _S,
        "Set",
        "quota.set",
        lambda r: {"kind": _kind(r), "id": r.id, "quota": _parsed(r.quota)},
        validate=_check_set,
    ),
    write(
        _S,
        "SetDefault",
        "quota.default_set",
        lambda r: {"kind": _kind(r), "quota": _parsed(r.quota)},
        validate=_check_set,
    ),
    read(_S, "Get", quota_pb2.Quota, _get),
    read(_S, "GetDefault", quota_pb2.Quota, _get_default),
]


def servicer(api: Api) -> quota_pb2_grpc.QuotaServiceServicer:
    return build(quota_pb2_grpc.QuotaServiceServicer, api, METHODS)
