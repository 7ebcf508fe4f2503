"""onevdc: virtual data centers (OpenNebula's `onevdc`).

    onevdc list                                   ID NAME GROUPS CLUSTERS HOSTS VNETS DATASTORES
    onevdc show <vdc>
    onevdc create <name>                          (prints its ID)
    onevdc addgroup|delgroup <vdc> <group>
    onevdc addcluster|delcluster <vdc> <zone> <cluster|ALL>
    onevdc addhost|delhost <vdc> <zone> <host|ALL>
    onevdc adddatastore|deldatastore <vdc> <zone> <datastore|ALL>
    onevdc addvnet|delvnet <vdc> <zone> <vnet|ALL>
    onevdc delete|update|rename <vdc> ...

Adding a resource gives the VDC's groups access to it through ACL rules (`oneacl list`).
Global options as onezone (--endpoint, --user, --password, --token, -j, -y).
"""

from __future__ import annotations

import sys
from typing import Any

from zones.cli import pool
from zones.cli import tenancy as t
from zones.cli.common import CliError, Session, emit, table

PROG = "onevdc"
KIND = "vdc"
ALL = -10
LIST_COLUMNS = ("ID", "NAME", "GROUPS", "CLUSTERS", "HOSTS", "VNETS", "DATASTORES")
RESOURCES = (
    ("cluster", "clusters"),
    ("host", "hosts"),
    ("datastore", "datastores"),
    ("vnet", "vnets"),
)


def _count(entries: list[dict]) -> str:
    return "ALL" if any(e["id"] == ALL for e in entries) else str(len(entries))


# The list's resource columns, in OpenNebula's order.
_LISTED = ("clusters", "hosts", "vnets", "datastores")


def list_rows(records: list[dict]) -> list[list[Any]]:
    return [
        [r["id"], r["name"], len(r["groups"])] + [_count(r[plural]) for plural in _LISTED]
        for r in records
    ]


def _entries_table(entries: list[dict], what: str):
    rows = [[e["zone"], "ALL" if e["id"] == ALL else e["id"]] for e in entries]
    return table(("ZONE", what.upper()), rows)


def show_renderables(record: dict, template: str) -> list[Any]:
    out: list[Any] = [
        t.section(f"VDC {record['id']} INFORMATION"),
        t.attrs([("ID", record["id"]), ("NAME", record["name"])]),
        "",
        t.section("GROUPS"),
        table(("ID",), [[g] for g in record["groups"]]),
    ]
    for kind, plural in RESOURCES:
        out += ["", t.section(plural.upper()), _entries_table(record[plural], kind)]
    out += ["", t.section("VDC TEMPLATE")]
    if template.strip():
        out.append(t.template_text(template))
    return out


def cmd_list(args, session: Session) -> int:
    records = pool.list_records(session, KIND)
    emit(args, records, lambda: [table(LIST_COLUMNS, list_rows(records), right=("ID",))])
    return 0


def cmd_show(args, session: Session) -> int:
    obj, record = pool.info(session, KIND, pool.resolve(session, KIND, args.vdc))
    emit(args, record, lambda: show_renderables(record, obj.template))
    return 0


def cmd_create(args, session: Session) -> int:
    vid = pool.allocate(session, KIND, name=args.name)
    emit(args, {"id": vid}, lambda: [f"ID: {vid}"])
    return 0


def _group(verb: str):
    def cmd(args, session: Session) -> int:
        vid = pool.resolve(session, KIND, args.vdc)
        gid = t.resolve_group(session, args.group)
        pool.action(session, KIND, vid, f"{verb}group", {"group": gid})
        t.done(args, {"id": vid, "group": gid}, f"VDC {vid}: group {gid} {verb}ed")
        return 0

    return cmd


def _resource(verb: str, kind: str):
    def cmd(args, session: Session) -> int:
        vid = pool.resolve(session, KIND, args.vdc)
        if not args.zone.isdigit():
            raise CliError(f"zone must be a zone id, got {args.zone!r}")
        ref = args.resource
        rid = ALL if ref.upper() == "ALL" else pool.resolve(session, kind, ref)
        pool.action(session, KIND, vid, f"{verb}{kind}", {kind: rid, "zone": int(args.zone)})
        t.done(args, {"id": vid, kind: rid}, f"VDC {vid}: {kind} {ref} {verb}ed")
        return 0

    return cmd


def build_parser():

    parser, sub = t.new_parser(PROG, "Manage virtual data centers.")
    t.finish(t.subparser(sub, "list", "list VDCs", cmd_list))
    p = t.subparser(sub, "show", "show a VDC: groups and resources", cmd_show)
    p.add_argument("vdc")
    t.finish(p)
    p = t.subparser(sub, "create", "create a VDC; prints its ID", cmd_create)
    p.add_argument("name")
    t.finish(p)
    for verb in ("add", "del"):
        p = t.subparser(sub, f"{verb}group", f"{verb} a group", _group(verb))
        p.add_argument("vdc")
        p.add_argument("group")
        t.add_verbose(p)
        t.finish(p)
        for kind, _ in RESOURCES:
            p = t.subparser(
                sub, f"{verb}{kind}", f"{verb} a {kind} (or ALL)", _resource(verb, kind)
            )
            p.add_argument("vdc")
            p.add_argument("zone")
            p.add_argument("resource", metavar=kind)
            t.add_verbose(p)
            t.finish(p)
    pool.add_common_commands(sub, KIND, "VDC")
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
