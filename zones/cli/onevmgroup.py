"""onevmgroup: VM groups (OpenNebula's `onevmgroup`).

    onevmgroup list [-l COLUMNS]          ID USER GROUP NAME VMS
    onevmgroup show <group>               VM GROUP INFORMATION, PERMISSIONS, ROLES, RULES,
                                          TEMPLATE CONTENTS
    onevmgroup create <FILE>              (prints its ID)
    onevmgroup delete|update|rename|chown|chgrp|chmod ...

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
from zones.cli.common import render, table

PROG = "onevmgroup"
KIND = "vmgroup"
ATTR_WIDTH = 16


_name = pool.name_of


def vm_count(record: dict) -> int:
    return sum(len(r["vms"]) for r in record["roles"])


_CELLS: dict[str, Callable[[dict, pool.Names], Any]] = {
    "ID": lambda r, n: r["id"],
    "USER": lambda r, n: _name(n, "user", r["uid"]),
    "GROUP": lambda r, n: _name(n, "group", r["gid"]),
    "NAME": lambda r, n: r["name"],
    "VMS": lambda r, n: vm_count(r),
}
DEFAULT_COLUMNS = ("ID", "USER", "GROUP", "NAME", "VMS")


def list_columns(spec: str | None) -> tuple[str, ...]:
    return pool.parse_columns(spec, _CELLS, DEFAULT_COLUMNS)


def list_table(records: list[dict], names: pool.Names | None = None, columns=DEFAULT_COLUMNS):
    rows = [[_CELLS[c](r, names or {}) for c in columns] for r in records]
    return table(columns, rows, right=("ID", "VMS"))


def _ids(values: list[int]) -> str:
    return ",".join(map(str, values)) or "-"


def role_rows(record: dict) -> list[list]:
    """ROLES: ID NAME POLICY AFFINED_HOSTS ANTI_AFFINED_HOSTS VIRTUAL_MACHINES."""
    return [
        [
            r["id"],
            r["name"],
            r["policy"],
            _ids(r["host_affined"]),
            _ids(r["host_anti_affined"]),
            _ids(r["vms"]),
        ]
        for r in record["roles"]
    ]


def show_renderables(record: dict, names: pool.Names | None = None) -> list[Any]:
    names = names or {}
    info = [
        ("ID", record["id"]),
        ("NAME", record["name"]),
        ("USER", _name(names, "user", record["uid"])),
        ("GROUP", _name(names, "group", record["gid"])),
    ]
    cols = ("ID", "NAME", "POLICY", "AFFINED_HOSTS", "ANTI_AFFINED_HOSTS", "VIRTUAL_MACHINES")
    rules = [["AFFINED", ",".join(r)] for r in record["affined"]]
    rules += [["ANTI_AFFINED", ",".join(r)] for r in record["anti_affined"]]
    out: list[Any] = [
        t.section(f"VM GROUP {record['id']} INFORMATION"),
        Text("\n".join(f"{k.ljust(ATTR_WIDTH)}: {v}" for k, v in info)),
        "",
        t.section("PERMISSIONS"),
        Text("\n".join(f"{k.ljust(ATTR_WIDTH)}: {v}" for k, v in perms.to_rows(record["perms"]))),
        "",
        t.section("ROLES"),
        table(cols, role_rows(record), right=("ID",)),
        "",
        t.section("RULES"),
    ]
    if rules:
        out.append(table(("TYPE", "ROLES"), rules))
    out += ["", t.section("TEMPLATE CONTENTS")]
    if record["template"].strip():
        out.append(t.template_text(record["template"]))
    return out


def render_show(record: dict, names: pool.Names | None = None) -> str:
    return render(show_renderables(record, names), plain=True)


cmd_list = pool.list_command(
    KIND,
    lambda session, records, cols: list_table(records, pool.names_of(session), cols),
    list_columns,
)


cmd_show = pool.show_command(
    KIND, "group", lambda obj, record: show_renderables(record, pool.owner_names(obj, record))
)


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage VM groups.")

    pool.add_list(sub, "list VM groups (ID USER GROUP NAME VMS)", cmd_list, _CELLS)
    pool.add_show(sub, "show a VM group", cmd_show, "group", "VM group id or name")
    what = "create a VM group from a file; prints its ID"
    pool.add_create(sub, what, pool.create_from_file(KIND))

    pool.add_common_commands(sub, KIND, "VM group")
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
