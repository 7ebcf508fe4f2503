"""What onevnet, onesecgroup and onevrouter share: owner names for the USER and GROUP
columns, and the INFORMATION / PERMISSIONS / TEMPLATE sections of `show`."""

from __future__ import annotations

from typing import Any

import grpc

from raftcore import perms
from zones.api.gen import pool_pb2
from zones.cli import pool
from zones.cli import tenancy as t
from zones.cli.common import Session, emit

Names = tuple[dict[int, str], dict[int, str]]


def owner_names(session: Session) -> Names:
    """{uid: name}, {gid: name} of what the caller may see (ids are shown otherwise)."""

    def safe(lister) -> dict[int, str]:
        try:
            return {o.id: o.name for o in lister(session)}
        except grpc.RpcError:
            return {}

    return safe(t.list_users), safe(t.list_groups)


def owner_cells(record: dict, names: Names) -> tuple[str, str]:
    users, groups = names
    return (
        users.get(record["uid"], str(record["uid"])),
        groups.get(record["gid"], str(record["gid"])),
    )


def head(
    title: str, obj: pool_pb2.PoolObject, *more: tuple[str, Any], width: int = t.ATTR_WIDTH
) -> list[Any]:
    """`<TITLE> <id> INFORMATION` with ID, NAME, USER, GROUP and `more`, then PERMISSIONS."""
    pairs = [("ID", obj.id), ("NAME", obj.name), ("USER", obj.uname), ("GROUP", obj.gname)]
    return [
        t.section(f"{title} {obj.id} INFORMATION"),
        t.attrs([*pairs, *more], width),
        "",
        t.section("PERMISSIONS"),
        t.attrs(perms.to_rows(obj.perms), width),
    ]


def template_section(title: str, text: str) -> list[Any]:
    out: list[Any] = ["", t.section(title)]
    if text.strip():
        out.append(t.template_text(text))
    return out


def as_data(obj: pool_pb2.PoolObject, record: dict) -> dict:
    """--json / --yaml of `show`: the record with the owner's names and the permissions."""
    return {**record, "uname": obj.uname, "gname": obj.gname, "permissions": obj.permissions}


def list_command(kind: str, render):
    """`list`: the records as JSON/YAML, else the table `render(records, owner_names)`
    (the names are looked up only for the table)."""

    def cmd(args, session: Session) -> int:
        records = pool.list_records(session, kind)
        emit(args, records, lambda: [render(records, owner_names(session))])
        return 0

    return cmd


def show_command(kind: str, dest: str, renderables):
    """`show <dest>`: `as_data` as JSON/YAML, else `renderables(obj, record)`."""

    def cmd(args, session: Session) -> int:
        obj, record = pool.info(session, kind, pool.resolve(session, kind, getattr(args, dest)))
        emit(args, as_data(obj, record), lambda: renderables(obj, record))
        return 0

    return cmd
