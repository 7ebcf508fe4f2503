"""What the CLIs of pool objects (onevdc, onehost, onevm, ...) share: calls to
PoolService by kind, names resolved to ids, and the common subcommands (delete, update,
rename, chown, chmod) every kind has.

    records = pool.list_records(session, "vdc")
    vid = pool.resolve(session, "vdc", "default")
    pool.action(session, "vdc", vid, "addgroup", {"group": 100})
    pool.add_common_commands(sub, "vdc", "VDC")   # delete, update, rename, chown, chmod
"""

from __future__ import annotations

import argparse
from typing import Any

from raftcore import codec, perms
from zones.api.gen import pool_pb2
from zones.api.pool_service import decode_list
from zones.cli import tenancy as t
from zones.cli.common import CliError, Session


def list_records(session: Session, kind: str, flt: int = -2) -> list[dict]:
    request = pool_pb2.PoolListRequest(kind=kind, filter=flt)
    reply = session.call(lambda c: c.pool.List(request, timeout=session.timeout))
    return decode_list(reply)


def info(session: Session, kind: str, oid: int) -> tuple[pool_pb2.PoolObject, dict]:
    request = pool_pb2.PoolInfoRequest(kind=kind, id=oid)
    reply = session.call(lambda c: c.pool.Info(request, timeout=session.timeout))
    return reply, codec.unpackb(reply.record)


def resolve(session: Session, kind: str, ref: str) -> int:
    """An id given as digits, else the id of the object named `ref` (unique among those
    the caller sees)."""
    if ref.isdigit():
        return int(ref)
    matches = [r["id"] for r in list_records(session, kind) if r["name"] == ref]
    if not matches:
        raise CliError(f"no {kind} named {ref!r}")
    if len(matches) > 1:
        raise CliError(f"{len(matches)} {kind}s are named {ref!r}: use an id ({matches})")
    return matches[0]


def allocate(session: Session, kind: str, **fields: Any) -> int:
    request = pool_pb2.AllocateRequest(kind=kind, request_id=t.request_id(), **fields)
    return session.call(lambda c: c.pool.Allocate(request, timeout=session.timeout)).id


def action(session: Session, kind: str, oid: int, name: str, args: dict | None = None) -> Any:
    request = pool_pb2.ActionRequest(
        kind=kind,
        id=oid,
        action=name,
        args=codec.packb(args or {}),
        request_id=t.request_id(),
    )
    reply = session.call(lambda c: c.pool.Action(request, timeout=session.timeout))
    return codec.unpackb(reply.value)


def _call(session: Session, method: str, request) -> Any:
    return session.call(lambda c: getattr(c.pool, method)(request, timeout=session.timeout))


# --- the subcommands every kind has ------------------------------------------------------


def add_common_commands(sub, kind: str, label: str) -> None:
    """delete, update, rename, chown, chmod for objects of `kind`."""

    def one(name: str, help: str, fn) -> argparse.ArgumentParser:
        p = t.subparser(sub, name, help, fn)
        p.add_argument("object", metavar=kind, help=f"{label} id or name")
        return p

    def cmd_delete(args, session: Session) -> int:
        for ref in args.objects:
            oid = resolve(session, kind, ref)
            rid = t.request_id()
            _call(session, "Delete", pool_pb2.PoolDeleteRequest(kind=kind, id=oid, request_id=rid))
            t.done(args, {"id": oid, "deleted": True}, f"{label} {oid}: deleted")
        return 0

    def cmd_update(args, session: Session) -> int:
        oid = resolve(session, kind, args.object)
        text = t.template_input(
            args.file, lambda: info(session, kind, oid)[0].template, f"{label} template"
        )
        request = pool_pb2.PoolUpdateRequest(
            kind=kind, id=oid, template=text, append=args.append, request_id=t.request_id()
        )
        _call(session, "Update", request)
        t.done(args, {"id": oid, "updated": True}, f"{label} {oid}: template updated")
        return 0

    def cmd_rename(args, session: Session) -> int:
        oid = resolve(session, kind, args.object)
        request = pool_pb2.RenameRequest(
            kind=kind, id=oid, name=args.name, request_id=t.request_id()
        )
        _call(session, "Rename", request)
        t.done(args, {"id": oid, "name": args.name}, f"{label} {oid}: renamed")
        return 0

    def cmd_chown(args, session: Session) -> int:
        oid = resolve(session, kind, args.object)
        uid = t.resolve_user(session, args.owner)
        gid = t.resolve_group(session, args.group) if args.group else -1
        request = pool_pb2.ChownRequest(
            kind=kind, id=oid, uid=uid, gid=gid, request_id=t.request_id()
        )
        _call(session, "Chown", request)
        t.done(args, {"id": oid, "uid": uid, "gid": gid}, f"{label} {oid}: owner changed")
        return 0

    def cmd_chgrp(args, session: Session) -> int:
        oid = resolve(session, kind, args.object)
        gid = t.resolve_group(session, args.group)
        request = pool_pb2.ChownRequest(
            kind=kind, id=oid, uid=-1, gid=gid, request_id=t.request_id()
        )
        _call(session, "Chown", request)
        t.done(args, {"id": oid, "gid": gid}, f"{label} {oid}: group changed")
        return 0

    def cmd_chmod(args, session: Session) -> int:
        oid = resolve(session, kind, args.object)
        try:
            bits = perms.parse_octal(args.octet)
        except ValueError as e:
            raise CliError(str(e)) from None
        request = pool_pb2.ChmodRequest(kind=kind, id=oid, perms=bits, request_id=t.request_id())
        _call(session, "Chmod", request)
        t.done(args, {"id": oid, "perms": args.octet}, f"{label} {oid}: permissions changed")
        return 0

    p = t.subparser(sub, "delete", f"delete {label}s", cmd_delete)
    p.add_argument("objects", nargs="+", metavar=kind)
    t.add_verbose(p)
    t.finish(p)

    p = one("update", f"replace (or --append to) a {label}'s template", cmd_update)
    p.add_argument("file", nargs="?", metavar="FILE", help="template file, '-' for stdin")
    p.add_argument("-a", "--append", action="store_true", help="merge instead of replacing")
    t.add_verbose(p)
    t.finish(p)

    p = one("rename", f"rename a {label}", cmd_rename)
    p.add_argument("name")
    t.add_verbose(p)
    t.finish(p)

    p = one("chown", f"change a {label}'s owner (and group)", cmd_chown)
    p.add_argument("owner", metavar="user")
    p.add_argument("group", nargs="?")
    t.add_verbose(p)
    t.finish(p)

    p = one("chgrp", f"change a {label}'s group", cmd_chgrp)
    p.add_argument("group")
    t.add_verbose(p)
    t.finish(p)

    p = one("chmod", f"change a {label}'s permissions (octal, e.g. 640)", cmd_chmod)
    p.add_argument("octet")
    t.add_verbose(p)
    t.finish(p)
