"""onedatastore: datastores (OpenNebula's `onedatastore`).

    onedatastore list [-l COLUMNS]      ID NAME SIZE AVA CLUSTERS IMAGES TYPE DS TM STAT
    onedatastore show <datastore>       DATASTORE INFORMATION, DATASTORE CAPACITY,
                                        PERMISSIONS, DATASTORE TEMPLATE, IMAGES
    onedatastore create FILE [--cluster C]      (the template; prints the new ID)
    onedatastore enable|disable <datastore>...  (system datastores only)
    onedatastore delete <datastore>...          (it must hold no image)
    onedatastore update <datastore> [FILE|-] [--append]
    onedatastore rename <datastore> <name>
    onedatastore chown|chgrp|chmod ...

Datastores and clusters are named by id or by name. Sizes are in MB, shown with units as
OpenNebula does. Global options as onezone (--endpoint, --user, --password, --token,
-j/--json, -y/--yaml).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from rich.text import Text

from raftcore import perms
from raftcore import template as tmpl
from zones.cli import pool
from zones.cli import tenancy as t
from zones.cli.common import Session, emit, render, table

PROG = "onedatastore"
KIND = "datastore"
ATTR_WIDTH = 15  # `onedatastore show` prints "%-15s: %s"

# Datastore::SHORT_DATASTORE_TYPES / SHORT_DATASTORE_STATES of OpenNebula's CLI.
SHORT_TYPES = {"IMAGE_DS": "img", "SYSTEM_DS": "sys", "FILE_DS": "fil"}
STATES = ("READY", "DISABLED")
SHORT_STATES = {"READY": "on", "DISABLED": "off"}


def state_str(state: int) -> str:
    return STATES[state] if 0 <= state < len(STATES) else str(state)


def _shared(record: dict) -> bool:
    """Whether the datastore is one store for every host (SHARED, of system datastores);
    a non-shared one has no single size to show."""
    try:
        value = tmpl.parse(record.get("template", "")).get("SHARED")
    except tmpl.TemplateError:
        return True
    return not (isinstance(value, str) and value.strip().upper() == "NO")


def size_cell(record: dict) -> str:
    return t.unit_to_str(record["capacity"]["total_mb"]) if _shared(record) else "-"


def avail_cell(record: dict) -> str:
    total, free = record["capacity"]["total_mb"], record["capacity"]["free_mb"]
    if total == 0:
        return "-"
    return f"{int(free * 100 / total + 0.5)}%"  # Ruby's round: half up


def clusters_cell(record: dict) -> str:
    return ",".join(str(c) for c in record["cids"]) or "-"


_CELLS: dict[str, Callable[[dict], Any]] = {
    "ID": lambda d: d["id"],
    "NAME": lambda d: d["name"],
    "SIZE": size_cell,
    "AVA": avail_cell,
    "CLUSTERS": clusters_cell,
    "IMAGES": lambda d: len(d["images"]),
    "TYPE": lambda d: SHORT_TYPES.get(d["type"], d["type"]),
    "DS": lambda d: d["ds_mad"],
    "TM": lambda d: d["tm_mad"],
    "STAT": lambda d: SHORT_STATES.get(state_str(d["state"]), str(d["state"])),
}
DEFAULT_COLUMNS = tuple(_CELLS)
_RIGHT = ("ID", "SIZE", "IMAGES")


# --- rendering ------------------------------------------------------------------------------


def list_columns(spec: str | None) -> tuple[str, ...]:
    return pool.parse_columns(spec, _CELLS, DEFAULT_COLUMNS)


def list_rows(records: list[dict], columns: tuple[str, ...] = DEFAULT_COLUMNS) -> list[list]:
    return [[_CELLS[c](d) for c in columns] for d in records]


def list_table(records: list[dict], columns: tuple[str, ...] = DEFAULT_COLUMNS):
    return table(columns, list_rows(records, columns), right=_RIGHT)


def _attrs(pairs: list[tuple[str, Any]]) -> Text:
    return t.attrs(pairs, ATTR_WIDTH)


def _mb(value: int) -> str:
    return t.unit_to_str(value)


def show_renderables(record: dict, uname: str = "", gname: str = "") -> list[Any]:
    """`onedatastore show` of a record (and its owner's and group's names)."""
    cap = record["capacity"]
    info = [
        ("ID", record["id"]),
        ("NAME", record["name"]),
        ("USER", uname or record["uid"]),
        ("GROUP", gname or record["gid"]),
        ("CLUSTERS", clusters_cell(record)),
        ("TYPE", record["type"].removesuffix("_DS")),
        ("DS_MAD", record["ds_mad"]),
        ("TM_MAD", record["tm_mad"]),
        ("BASE PATH", record["base_path"]),
        ("STATE", state_str(record["state"])),
    ]
    capacity = [
        ("TOTAL:", _mb(cap["total_mb"])),
        ("FREE:", _mb(cap["free_mb"])),
        ("USED:", _mb(cap["used_mb"])),
        ("LIMIT:", "-"),
    ]
    out: list[Any] = [
        t.section(f"DATASTORE {record['id']} INFORMATION"),
        _attrs(info),
        "",
        t.section("DATASTORE CAPACITY"),
        _attrs(capacity),
        "",
        t.section("PERMISSIONS"),
        _attrs(perms.to_rows(record["perms"])),
        "",
        t.section("DATASTORE TEMPLATE"),
    ]
    if record["template"].strip():
        out.append(t.template_text(record["template"]))
    out += ["", t.section("IMAGES")]
    if record["images"]:
        out.append(Text("\n".join(str(i) for i in record["images"])))
    return out


def render_show(record: dict, uname: str = "", gname: str = "") -> str:
    return render(show_renderables(record, uname, gname), plain=True)


# --- commands ---------------------------------------------------------------------------------


cmd_list = pool.list_command(
    KIND, lambda session, records, cols: list_table(records, cols), list_columns
)
cmd_show = pool.show_command(
    KIND, "datastore", lambda obj, record: show_renderables(record, obj.uname, obj.gname)
)


def cmd_create(args, session: Session) -> int:
    fields: dict[str, Any] = {"template": t.read_input(args.file)}
    if args.cluster is not None:
        fields["cluster_id"] = pool.resolve(session, "cluster", args.cluster)
    oid = pool.allocate(session, KIND, **fields)
    emit(args, {"id": oid}, lambda: [f"ID: {oid}"])
    return 0


def _status(action: str, word: str):
    return pool.for_each(KIND, "DATASTORE", action, word, lambda oid: {"id": oid, "status": action})


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage datastores.")

    pool.add_list(sub, "list datastores (" + " ".join(DEFAULT_COLUMNS) + ")", cmd_list, _CELLS)

    pool.add_show(
        sub,
        "show a datastore: capacity, template, images",
        cmd_show,
        "datastore",
        "datastore id or name",
    )

    p = t.subparser(sub, "create", "create a datastore from a template; prints its ID", cmd_create)
    p.add_argument(
        "file", metavar="FILE", help="template (NAME, TYPE, DS_MAD, TM_MAD...); '-': stdin"
    )
    p.add_argument("-c", "--cluster", help="cluster id or name (default: cluster 0, default)")
    t.finish(p)

    pool.add_each_commands(
        sub,
        KIND,
        _status,
        (
            ("enable", "enabled", "enable system datastores (the scheduler may use them again)"),
            ("disable", "disabled", "disable system datastores (no new VMs placed there)"),
        ),
    )

    pool.add_common_commands(sub, KIND, "DATASTORE")
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
