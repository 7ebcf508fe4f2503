"""Setting quota limits: of a user or a group (`quota.set`) and the default quotas
(`quota.default_set`). Charging and releasing usage is `raftcore.quota`, called by the
handlers that create and delete the objects that count."""

from typing import Any

from raftcore import quota, schema
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode, ok
from raftcore.ops.common import Mutation, Reject, Result, View, arg_int, bad, check_args, require
from raftcore.ops.tenancy import (
    ADMIN_GID,
    ADMIN_UID,
    get_group,
    get_user,
    group_object,
    user_object,
)


def _arg_kind(args: dict) -> str:
    kind = args["kind"]
    if kind not in quota.KINDS:
        raise bad(f"argument 'kind' must be 'user' or 'group', got {kind!r}")
    return kind


def _arg_quota(args: dict) -> dict[str, Any]:
    """The limits, in the structured form `quota.parse_quota` returns (the API parses the
    text before proposing, so a bad template never reaches the log)."""
    value = args["quota"]
    if not isinstance(value, dict):
        raise bad(
            "argument 'quota' must be a map (the structured form of quota.parse_quota),"
            f" got {type(value).__name__}"
        )
    try:
        return quota.parse_quota(value)
    except quota.QuotaError as e:
        raise bad(f"argument 'quota': {e}") from None


def _merged(view: View, key: bytes, limits: dict[str, Any], is_default: bool) -> list[Mutation]:
    old = view.get(schema.QUOTAS, key)
    try:
        new = quota.merge_limits(old, limits, is_default=is_default)
    except quota.QuotaError as e:
        raise bad(f"argument 'quota': {e}") from None
    return quota.record_mutations(key, old, new)


def op_quota_set(view: View, args: dict, cmd: dict, index: int) -> Result:
    """Set limits of user or group `id`; limits not named and usage counters are kept."""
    check_args(args, ("kind", "id", "quota"))
    kind = _arg_kind(args)
    oid = arg_int(args, "id")
    limits = _arg_quota(args)
    if kind == quota.USER:
        require(view, cmd, user_object(get_user(view, oid), "ADMIN"))
        admin = oid == ADMIN_UID
    else:
        require(view, cmd, group_object(get_group(view, oid), "ADMIN"))
        admin = oid == ADMIN_GID
    if admin:
        # oneadmin is never limited, so a limit there would be a lie (OpenNebula's words).
        raise Reject(ErrorCode.ACTION, f"Cannot set quotas for oneadmin {kind}")
    return _merged(view, quota.record_key(kind, oid), limits, is_default=False), ok()


def op_quota_default_set(view: View, args: dict, cmd: dict, index: int) -> Result:
    """Set limits of the default quota of users or of groups (what -1 means)."""
    check_args(args, ("kind", "quota"))
    kind = _arg_kind(args)
    limits = _arg_quota(args)
    # QUOTA has no ACL bit: only oneadmin (uid 0 or a member of group 0) passes.
    require(view, cmd, AuthRequest("QUOTA", "ADMIN"))
    return _merged(view, quota.default_key(kind), limits, is_default=True), ok()


HANDLERS = {"quota.set": op_quota_set, "quota.default_set": op_quota_default_set}
