"""onetemplate: VM templates (OpenNebula's `onetemplate`).

    onetemplate list [-l COLUMNS]         ID USER GROUP NAME REGTIME
    onetemplate show <template>           TEMPLATE INFORMATION, PERMISSIONS, TEMPLATE CONTENTS
    onetemplate create <FILE>             (prints its ID)
    onetemplate clone <template> <name> [--recursive]
    onetemplate instantiate <template> [FILE] [--name N] [--hold] [--multiple N]
                                          (FILE: attributes replacing the template's)
    onetemplate delete|update|rename|chown|chgrp|chmod ...

Templates are named by id or by name. With --multiple, --name may hold "%i" (the index,
from 0); without it the index is appended ("web-0", "web-1"), as OpenNebula does.
Global options as onezone (--endpoint, --user, --password, --token, -j/--json, -y/--yaml).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from rich.text import Text

from raftcore import perms
from zones.cli import pool
from zones.cli import tenancy as t
from zones.cli.common import CliError, Session, emit, render, table

PROG = "onetemplate"
KIND = "template"
ATTR_WIDTH = 16


_name = pool.name_of


_CELLS: dict[str, Callable[[dict, pool.Names], Any]] = {
    "ID": lambda r, n: r["id"],
    "USER": lambda r, n: _name(n, "user", r["uid"]),
    "GROUP": lambda r, n: _name(n, "group", r["gid"]),
    "NAME": lambda r, n: r["name"],
    "REGTIME": lambda r, n: t.time_str(r["regtime"]),
}
DEFAULT_COLUMNS = ("ID", "USER", "GROUP", "NAME", "REGTIME")


def list_columns(spec: str | None) -> tuple[str, ...]:
    return pool.parse_columns(spec, _CELLS, DEFAULT_COLUMNS)


def list_rows(
    records: list[dict], names: pool.Names | None = None, columns=DEFAULT_COLUMNS
) -> list:
    return [[_CELLS[c](r, names or {}) for c in columns] for r in records]


def list_table(records: list[dict], names: pool.Names | None = None, columns=DEFAULT_COLUMNS):
    return table(columns, list_rows(records, names, columns), right=("ID",))


def _attrs(pairs: list[tuple[str, Any]]) -> Text:
    return t.attrs(pairs, ATTR_WIDTH)


def show_renderables(record: dict, names: pool.Names | None = None) -> list[Any]:
    names = names or {}
    info = [
        ("ID", record["id"]),
        ("NAME", record["name"]),
        ("USER", _name(names, "user", record["uid"])),
        ("GROUP", _name(names, "group", record["gid"])),
        ("REGISTER TIME", t.time_str(record["regtime"])),
    ]
    out: list[Any] = [
        t.section(f"TEMPLATE {record['id']} INFORMATION"),
        _attrs(info),
        "",
        t.section("PERMISSIONS"),
        _attrs(perms.to_rows(record["perms"])),
        "",
        t.section("TEMPLATE CONTENTS"),
    ]
    if record["template"].strip():
        out.append(t.template_text(record["template"]))
    return out


def render_show(record: dict, names: pool.Names | None = None) -> str:
    return render(show_renderables(record, names), plain=True)


def vm_names(name: str | None, count: int) -> list[str | None]:
    """The names of `count` instantiated VMs: "%i" replaced by the index, else the index
    appended when there are several; None: the default (<template>-<vmid>)."""
    if name is None:
        return [None] * count
    if "%i" in name:
        return [name.replace("%i", str(i)) for i in range(count)]
    return [name] if count == 1 else [f"{name}-{i}" for i in range(count)]


# --- commands -------------------------------------------------------------------------


cmd_list = pool.list_command(
    KIND,
    lambda session, records, cols: list_table(records, pool.names_of(session), cols),
    list_columns,
)


cmd_show = pool.show_command(
    KIND, "template", lambda obj, record: show_renderables(record, pool.owner_names(obj, record))
)


def cmd_clone(args, session: Session) -> int:
    oid = pool.resolve(session, KIND, args.template)
    call: dict[str, Any] = {"name": args.name}
    if args.recursive:
        call["recursive"] = True
    new = pool.action(session, KIND, oid, "clone", call)["id"]
    emit(args, {"id": new}, lambda: [f"ID: {new}"])
    return 0


def cmd_instantiate(args, session: Session) -> int:
    if args.multiple < 1:
        raise CliError(f"--multiple must be at least 1, got {args.multiple}")
    oid = pool.resolve(session, KIND, args.template)
    extra = t.read_input(args.file) if args.file else None
    ids = []
    for name in vm_names(args.name, args.multiple):
        call: dict[str, Any] = {}
        if name is not None:
            call["name"] = name
        if args.hold:
            call["hold"] = True
        if extra:
            call["template"] = extra
        ids.append(pool.action(session, KIND, oid, "instantiate", call)["id"])
    data = {"ids": ids} if len(ids) > 1 else {"id": ids[0]}
    emit(args, data, lambda: [f"VM ID: {i}" for i in ids])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage VM templates.")

    pool.add_list(sub, "list templates (ID USER GROUP NAME REGTIME)", cmd_list, _CELLS)
    pool.add_show(sub, "show a template", cmd_show, "template", "template id or name")
    what = "create a template from a file; prints its ID"
    pool.add_create(sub, what, pool.create_from_file(KIND))

    p = t.subparser(sub, "clone", "copy a template; prints the copy's ID", cmd_clone)
    p.add_argument("template")
    p.add_argument("name")
    p.add_argument("--recursive", action="store_true", help="clone its images too")
    t.finish(p)

    p = t.subparser(
        sub, "instantiate", "create VMs from a template; prints their IDs", cmd_instantiate
    )
    p.add_argument("template")
    p.add_argument("file", nargs="?", metavar="FILE", help="attributes replacing the template's")
    p.add_argument("--name", help="VM name (%%i: the index with --multiple)")
    p.add_argument("--hold", action="store_true", help="create the VMs on hold")
    p.add_argument("-m", "--multiple", type=int, default=1, metavar="N", help="create N VMs")
    t.finish(p)

    pool.add_common_commands(sub, KIND, "TEMPLATE")
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
