"""onegroup: manage groups (OpenNebula's `onegroup`).

    onegroup list                               ID NAME USERS VMS MEMORY CPU
    onegroup show <group>
    onegroup create <name>                      (prints its ID)
    onegroup delete <group>...
    onegroup addadmin <group> <user>            (the user must be in the group)
    onegroup deladmin <group> <user>
    onegroup update <group> [FILE|-] [--append] (the group template; no FILE: $EDITOR)
    onegroup quota <group> [FILE|-]             (quota template; no FILE: $EDITOR)
    onegroup defaultquota [FILE|-]

Groups and users are named by id or by name. Global options as onezone: --endpoint,
--user, --password, --token, -j/--json, -y/--yaml ($ONE_ENDPOINT, $ONE_AUTH, $ONE_TOKEN).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zones.api.gen import common_pb2, group_pb2, quota_pb2
from zones.cli import tenancy as t
from zones.cli.common import Session, emit, message_to_dict, render, table

PROG = "onegroup"
LIST_COLUMNS = ("ID", "NAME", "USERS", "VMS", "MEMORY", "CPU")
_RIGHT = ("ID", "USERS", "VMS", "MEMORY", "CPU")


# --- rendering ----------------------------------------------------------------------


def list_rows(groups: list[group_pb2.Group], default_quota: str | None = None) -> list[list]:
    rows = []
    for g in groups:
        vms, memory, cpu = t.list_quota_cells(g.quota, default_quota, g.id)
        rows.append([g.id, g.name, len(g.users), vms, memory, cpu])
    return rows


def list_table(groups: list[group_pb2.Group], default_quota: str | None = None):
    return table(LIST_COLUMNS, list_rows(groups, default_quota), right=_RIGHT)


def group_dict(group: group_pb2.Group) -> dict:
    data = message_to_dict(group)
    data["quotas"] = t.quota_dict(group.quota)
    return data


def _ids(title: str, ids) -> list[Any]:
    out: list[Any] = [t.section(title)]
    out.append(table(("ID",), [[i] for i in ids]))
    return out


def show_renderables(group: group_pb2.Group, default_quota: str | None = None) -> list[Any]:
    out: list[Any] = [
        t.section(f"GROUP {group.id} INFORMATION"),
        t.attrs([("ID", group.id), ("NAME", group.name)]),
        "",
        t.section("GROUP TEMPLATE"),
    ]
    if group.template.strip():
        out.append(t.template_text(group.template))
    out += [""] + _ids("USERS", group.users)
    out += [""] + _ids("ADMINS", group.admins)
    out += t.quota_renderables(group.quota, default_quota, group.id)
    return out


def render_show(group: group_pb2.Group, default_quota: str | None = None) -> str:
    return render(show_renderables(group, default_quota), plain=True)


# --- commands -----------------------------------------------------------------------


def _info(session: Session, gid: int) -> group_pb2.Group:
    request = group_pb2.GroupInfoRequest(id=gid)
    return session.call(lambda c: t.groups(c).Info(request, timeout=session.timeout))


def _write(session: Session, method: str, request) -> Any:
    return session.call(lambda c: getattr(t.groups(c), method)(request, timeout=session.timeout))


def cmd_list(args, session: Session) -> int:
    groups = t.list_groups(session)
    if args.json or args.yaml:
        emit(args, [group_dict(g) for g in groups], lambda: [])
        return 0
    defaults = t.default_quota(session, quota_pb2.GROUP)
    emit(args, None, lambda: [list_table(groups, defaults)])
    return 0


def cmd_show(args, session: Session) -> int:
    group = _info(session, t.resolve_group(session, args.group))
    if args.json or args.yaml:
        emit(args, group_dict(group), lambda: [])
        return 0
    defaults = t.default_quota(session, quota_pb2.GROUP)
    emit(args, None, lambda: show_renderables(group, defaults))
    return 0


def cmd_create(args, session: Session) -> int:
    request = group_pb2.GroupAllocateRequest(name=args.name, request_id=t.request_id())
    reply = _write(session, "Allocate", request)
    emit(args, {"id": reply.id}, lambda: [f"ID: {reply.id}"])
    return 0


def cmd_delete(args, session: Session) -> int:
    for ref in args.groups:
        gid = t.resolve_group(session, ref)
        _write(session, "Delete", common_pb2.ObjectRequest(id=gid, request_id=t.request_id()))
        t.done(args, {"id": gid, "deleted": True}, f"GROUP {gid}: deleted")
    return 0


def _admin(args, session: Session, method: str, verb: str) -> int:
    gid = t.resolve_group(session, args.group)
    uid = t.resolve_user(session, args.target_user)
    _write(session, method, common_pb2.PairRequest(id=gid, other=uid, request_id=t.request_id()))
    t.done(args, {"id": gid, "user": uid, method.lower(): True}, f"GROUP {gid}: {verb}")
    return 0


def cmd_addadmin(args, session: Session) -> int:
    return _admin(args, session, "AddAdmin", "admin added")


def cmd_deladmin(args, session: Session) -> int:
    return _admin(args, session, "DelAdmin", "admin deleted")


def cmd_update(args, session: Session) -> int:
    gid = t.resolve_group(session, args.group)
    text = t.template_input(args.file, lambda: _info(session, gid).template, "group template")
    request = common_pb2.UpdateRequest(
        id=gid, template=text, append=args.append, request_id=t.request_id()
    )
    _write(session, "Update", request)
    t.done(args, {"id": gid, "updated": True}, f"GROUP {gid}: template updated")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage groups.")

    t.finish(t.subparser(sub, "list", "list groups (ID NAME USERS VMS MEMORY CPU)", cmd_list))

    p = t.subparser(sub, "show", "show a group, its users, admins and quotas", cmd_show)
    p.add_argument("group", help="group id or name")
    t.finish(p)

    p = t.subparser(sub, "create", "create a group; prints its ID", cmd_create)
    p.add_argument("name")
    t.finish(p)

    p = t.subparser(sub, "delete", "delete groups (they must have no users)", cmd_delete)
    p.add_argument("groups", nargs="+", metavar="group")
    t.add_verbose(p)
    t.finish(p)

    for name, fn, what in (
        ("addadmin", cmd_addadmin, "make a member of the group one of its admins"),
        ("deladmin", cmd_deladmin, "remove an admin of the group"),
    ):
        p = t.subparser(sub, name, what, fn)
        p.add_argument("group")
        p.add_argument("target_user", metavar="user")
        t.add_verbose(p)
        t.finish(p)

    what = "replace (or --append to) a group's template"
    t.add_update(sub, cmd_update, what, "group", t.EDIT_FILE_HELP, t.EDIT_APPEND_HELP)
    t.add_quota_commands(
        sub, quota_pb2.GROUP, "group", "group", t.resolve_group, lambda s, gid: _info(s, gid).quota
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
