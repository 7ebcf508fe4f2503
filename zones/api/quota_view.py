"""A user's or group's quota as OpenNebula quota template text, for Info replies."""

from __future__ import annotations

from raftcore import quota, schema


def quota_text(view, kind: str, obj_id: int) -> str:
    return quota.format_quota(view.get(schema.QUOTAS, quota.record_key(kind, obj_id)))
