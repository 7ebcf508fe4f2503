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
from collections.abc import Callable
from typing import Any

import grpc

from raftcore import codec, perms
from zones.api.gen import pool_pb2
from zones.api.pool_service import decode_list
from zones.cli import tenancy as t
from zones.cli.common import CliError, Session, emit


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


# --- building blocks of the kinds' CLIs ---------------------------------------------------

# Names of users, groups, ... by id, for the cells (ids when not visible).
Names = dict[str, dict[int, str]]


def name_of(names: Names, what: str, oid: int) -> str | int:
    return names.get(what, {}).get(oid, oid)


def _id_name(obj) -> tuple[int, str]:
    """(id, name) of a listed record (a dict) or of a UserService / GroupService message."""
    return (obj["id"], obj["name"]) if isinstance(obj, dict) else (obj.id, obj.name)


def names_of(session: Session, *extra: str) -> Names:
    """Names of users and groups (and of `extra` pool kinds) the caller may see."""

    def known(lister) -> dict[int, str]:
        try:
            return dict(_id_name(o) for o in lister())
        except grpc.RpcError:  # names are a nicety: ids are shown without them
            return {}

    out = {
        "user": known(lambda: t.list_users(session)),
        "group": known(lambda: t.list_groups(session)),
    }
    for kind in extra:
        out[kind] = known(lambda kind=kind: list_records(session, kind))
    return out


def owner_names(obj: pool_pb2.PoolObject, record: dict) -> Names:
    """The names of an object's owner and group, from its Info reply."""
    return {"user": {record["uid"]: obj.uname}, "group": {record["gid"]: obj.gname}}


def show_data(obj: pool_pb2.PoolObject, record: dict) -> dict:
    """--json / --yaml of `show`: the record with its owner's names."""
    return {**record, "uname": obj.uname, "gname": obj.gname}


def parse_columns(spec: str | None, cells: dict, default: tuple[str, ...]) -> tuple[str, ...]:
    """The columns of `list -l A,B,C` (`default` without -l)."""
    if not spec:
        return default
    cols = tuple(c.strip().upper() for c in spec.split(",") if c.strip())
    unknown = [c for c in cols if c not in cells]
    if unknown or not cols:
        raise CliError(
            f"unknown column(s) {', '.join(unknown) or '(none)'}; known: {', '.join(cells)}"
        )
    return cols


def add_list(sub, help: str, fn, cells: dict | None = None) -> argparse.ArgumentParser:
    """`list` (with `-l COLUMNS` when the kind has `cells`)."""
    if cells is None:
        return t.command(sub, "list", help, fn)
    columns = t.arg(
        "-l", "--list", metavar="COLUMNS", help=f"comma-separated columns (of {','.join(cells)})"
    )
    return t.command(sub, "list", help, fn, columns)


def add_show(sub, help: str, fn, dest: str, arg_help: str) -> argparse.ArgumentParser:
    """`show <dest>`."""
    return t.command(sub, "show", help, fn, t.arg(dest, help=arg_help))


def list_command(kind: str, render, columns=None):
    """`list [-l COLUMNS]`: the records as JSON/YAML, else the table `render(session,
    records, columns)` (what it looks up, only for the table). `columns(spec)`: the
    columns of -l, checked before any call."""

    def cmd(args, session: Session) -> int:
        cols = columns(args.list) if columns else None
        records = list_records(session, kind)
        emit(args, records, lambda: [render(session, records, cols)])
        return 0

    return cmd


def show_command(kind: str, dest: str, renderables):
    """`show <dest>`: `show_data` as JSON/YAML, else `renderables(obj, record)`."""

    def cmd(args, session: Session) -> int:
        obj, record = info(session, kind, resolve(session, kind, getattr(args, dest)))
        emit(args, show_data(obj, record), lambda: renderables(obj, record))
        return 0

    return cmd


def create_from_file(kind: str):
    """A `create FILE` command: allocates an object of `kind`, prints its ID."""

    def cmd(args, session: Session) -> int:
        oid = allocate(session, kind, template=t.read_input(args.file))
        emit(args, {"id": oid}, lambda: [f"ID: {oid}"])
        return 0

    return cmd


def add_create(sub, help: str, fn, *arguments) -> argparse.ArgumentParser:
    """`create FILE ...`."""
    file = t.arg("file", metavar="FILE", help="template file, '-' for stdin")
    return t.command(sub, "create", help, fn, file, *arguments)


def update_by_action(kind: str, label: str):
    """An `update` command going through the kind's own "update" action (which checks
    or keeps what the plain PoolService.Update would not)."""

    def cmd(args, session: Session) -> int:
        oid = resolve(session, kind, args.object)
        text = t.template_input(args.file, lambda: info(session, kind, oid)[0].template, "template")
        action(session, kind, oid, "update", {"template": text, "append": args.append})
        t.done(args, {"id": oid, "updated": True}, f"{label} {oid}: template updated")
        return 0

    return cmd


def for_each(kind: str, label: str, name: str, word: str, data: Callable[[int], dict]):
    """A command applying action `name` to each object in args.<kind>s."""

    def cmd(args, session: Session) -> int:
        for ref in getattr(args, f"{kind}s"):
            oid = resolve(session, kind, ref)
            action(session, kind, oid, name)
            t.done(args, data(oid), f"{label} {oid}: {word}")
        return 0

    return cmd


def add_each_commands(sub, kind: str, make, rows) -> None:
    """One `<name> <kind>... [-v]` subcommand per (name, word, help) row, its function
    `make(name, word)`."""
    for name, word, what in rows:
        t.command(
            sub,
            name,
            what,
            make(name, word),
            t.arg(f"{kind}s", nargs="+", metavar=kind),
            verbose=True,
        )


# --- the subcommands every kind has ------------------------------------------------------


def add_common_commands(sub, kind: str, label: str, update=None) -> None:
    """delete, update, rename, chown, chmod for objects of `kind` (`update`: the update
    command's function, when not PoolService.Update)."""

    obj = t.arg("object", metavar=kind, help=f"{label} id or name")

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

    objects = t.arg("objects", nargs="+", metavar=kind)
    t.command(sub, "delete", f"delete {label}s", cmd_delete, objects, verbose=True)
    what = f"replace (or --append to) a {label}'s template"
    t.add_update(
        sub, update or cmd_update, what, "object", metavar=kind, help=f"{label} id or name"
    )
    t.command(sub, "rename", f"rename a {label}", cmd_rename, obj, "name", verbose=True)
    owner = t.arg("owner", metavar="user")
    group = t.arg("group", nargs="?")
    what = f"change a {label}'s owner (and group)"
    t.command(sub, "chown", what, cmd_chown, obj, owner, group, verbose=True)
    t.command(sub, "chgrp", f"change a {label}'s group", cmd_chgrp, obj, "group", verbose=True)
    what = f"change a {label}'s permissions (octal, e.g. 640)"
    t.command(sub, "chmod", what, cmd_chmod, obj, "octet", verbose=True)
