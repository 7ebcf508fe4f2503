"""oneimage: images (OpenNebula's `oneimage`).

    oneimage list [-l COLUMNS]          ID USER GROUP NAME DATASTORE SIZE TYPE PER STAT RVMS
    oneimage show <image>               IMAGE INFORMATION, PERMISSIONS, IMAGE TEMPLATE,
                                        VIRTUAL MACHINES, IMAGE SNAPSHOTS
    oneimage create FILE --datastore DS        (the template; prints the new ID)
    oneimage clone <image> <name> [--datastore DS]   (prints the new ID)
    oneimage enable|disable|persistent|nonpersistent <image>...
    oneimage chtype <image> <type>             (OS, CDROM, DATABLOCK, KERNEL, RAMDISK, CONTEXT)
    oneimage snapshot-delete|snapshot-revert|snapshot-flatten <image> <snapshot id>
    oneimage delete <image>...                 (no VM may be using it)
    oneimage update <image> [FILE|-] [--append]
    oneimage rename|chown|chgrp|chmod ...

Images, datastores, users and groups are named by id or by name. Sizes are in MB, shown
with units as OpenNebula does. Global options as onezone (--endpoint, --user,
--password, --token, -j/--json, -y/--yaml).
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
from zones.cli.common import Session, emit, render, table

PROG = "oneimage"
KIND = "image"
ATTR_WIDTH = 15  # `oneimage show` prints "%-15s: %s"
TYPES = ("OS", "CDROM", "DATABLOCK", "KERNEL", "RAMDISK", "CONTEXT")

# Image::IMAGE_STATES, SHORT_IMAGE_STATES and SHORT_IMAGE_TYPES of OpenNebula's CLI.
STATES = (
    "INIT",
    "READY",
    "USED",
    "DISABLED",
    "LOCKED",
    "ERROR",
    "CLONE",
    "DELETE",
    "USED_PERS",
    "LOCKED_USED",
    "LOCKED_USED_PERS",
)
SHORT_STATES = {
    "INIT": "init",
    "READY": "rdy",
    "USED": "used",
    "DISABLED": "disa",
    "LOCKED": "lock",
    "ERROR": "err",
    "CLONE": "clon",
    "DELETE": "dele",
    "USED_PERS": "used",
    "LOCKED_USED": "lock",
    "LOCKED_USED_PERS": "lock",
}
SHORT_TYPES = {
    "OS": "OS",
    "CDROM": "CD",
    "DATABLOCK": "DB",
    "KERNEL": "KL",
    "RAMDISK": "RD",
    "CONTEXT": "CX",
}


def state_str(state: int) -> str:
    return STATES[state] if 0 <= state < len(STATES) else str(state)


def short_state(state: int) -> str:
    return SHORT_STATES.get(state_str(state), str(state))


time_str = t.time_str


Names = pool.Names
_name = pool.name_of


_CELLS: dict[str, Callable[[dict, Names], Any]] = {
    "ID": lambda i, n: i["id"],
    "USER": lambda i, n: _name(n, "user", i["uid"]),
    "GROUP": lambda i, n: _name(n, "group", i["gid"]),
    "NAME": lambda i, n: i["name"],
    "DATASTORE": lambda i, n: _name(n, "datastore", i["ds_id"]),
    "SIZE": lambda i, n: t.unit_to_str(i["size_mb"]),
    "TYPE": lambda i, n: SHORT_TYPES.get(i["type"], i["type"]),
    "PER": lambda i, n: t.yes_no(i["persistent"]),
    "STAT": lambda i, n: short_state(i["state"]),
    "RVMS": lambda i, n: i["running_vms"],
    "REGTIME": lambda i, n: time_str(i["regtime"]),
}
DEFAULT_COLUMNS = (
    "ID",
    "USER",
    "GROUP",
    "NAME",
    "DATASTORE",
    "SIZE",
    "TYPE",
    "PER",
    "STAT",
    "RVMS",
)
_RIGHT = ("ID", "SIZE", "RVMS")


# --- rendering ------------------------------------------------------------------------------


def list_columns(spec: str | None) -> tuple[str, ...]:
    return pool.parse_columns(spec, _CELLS, DEFAULT_COLUMNS)


def list_rows(
    records: list[dict], names: Names | None = None, columns: tuple[str, ...] = DEFAULT_COLUMNS
) -> list[list]:
    return [[_CELLS[c](i, names or {}) for c in columns] for i in records]


def list_table(
    records: list[dict], names: Names | None = None, columns: tuple[str, ...] = DEFAULT_COLUMNS
):
    return table(columns, list_rows(records, names, columns), right=_RIGHT)


def _attrs(pairs: list[tuple[str, Any]]) -> Text:
    return t.attrs(pairs, ATTR_WIDTH)


def snapshot_rows(record: dict) -> list[list]:
    """IMAGE SNAPSHOTS: AC ('=>' marks the active one) ID PARENT DATE SIZE NAME."""
    return [
        [
            "=>" if s["active"] else "",
            s["id"],
            s["parent"],
            time_str(s["date"] * 1000),  # snapshot dates are in seconds, as OpenNebula's
            t.unit_to_str(s["size"]),
            s["name"],
        ]
        for s in record["snapshots"]
    ]


def show_renderables(record: dict, names: Names | None = None) -> list[Any]:
    """`oneimage show` of a record (names: of its user, group and datastore)."""
    names = names or {}
    info = [
        ("ID", record["id"]),
        ("NAME", record["name"]),
        ("USER", _name(names, "user", record["uid"])),
        ("GROUP", _name(names, "group", record["gid"])),
        ("DATASTORE", _name(names, "datastore", record["ds_id"])),
        ("TYPE", record["type"]),
        ("REGISTER TIME", time_str(record["regtime"])),
        ("PERSISTENT", t.yes_no(record["persistent"])),
        ("SOURCE", record["source"]),
        ("PATH", record["path"]),
    ]
    if record["fs"]:
        info.append(("FSTYPE", record["fs"]))
    info += [
        ("SIZE", t.unit_to_str(record["size_mb"])),
        ("STATE", short_state(record["state"])),
        ("RUNNING_VMS", record["running_vms"]),
    ]
    if record["error"]:
        info.append(("ERROR", record["error"]))
    out: list[Any] = [
        t.section(f"IMAGE {record['id']} INFORMATION"),
        _attrs(info),
        "",
        t.section("PERMISSIONS"),
        _attrs(perms.to_rows(record["perms"])),
        "",
        t.section("IMAGE TEMPLATE"),
    ]
    if record["template"].strip():
        out.append(t.template_text(record["template"]))
    out += ["", t.section("VIRTUAL MACHINES")]
    if record["vms"]:
        out.append(table(("ID",), [[v] for v in record["vms"]], right=("ID",)))
    if record["snapshots"]:
        cols = ("AC", "ID", "PARENT", "DATE", "SIZE", "NAME")
        out += ["", t.section("IMAGE SNAPSHOTS")]
        out.append(table(cols, snapshot_rows(record), right=("ID", "PARENT", "SIZE")))
    return out


def render_show(record: dict, names: Names | None = None) -> str:
    return render(show_renderables(record, names), plain=True)


# --- commands ---------------------------------------------------------------------------------


def names_of(session: Session) -> Names:
    """Names of users, groups and datastores the caller may see (ids otherwise)."""
    return pool.names_of(session, "datastore")


cmd_list = pool.list_command(
    KIND, lambda session, records, cols: list_table(records, names_of(session), cols), list_columns
)


def cmd_show(args, session: Session) -> int:
    obj, record = pool.info(session, KIND, pool.resolve(session, KIND, args.image))
    data = pool.show_data(obj, record)
    if args.json or args.yaml:
        emit(args, data, lambda: [])
        return 0
    names = pool.owner_names(obj, record)
    names["datastore"] = names_of(session)["datastore"]
    emit(args, None, lambda: show_renderables(record, names))
    return 0


def cmd_create(args, session: Session) -> int:
    ds = pool.resolve(session, "datastore", args.datastore)
    oid = pool.allocate(session, KIND, template=t.read_input(args.file), datastore_id=ds)
    emit(args, {"id": oid}, lambda: [f"ID: {oid}"])
    return 0


def cmd_clone(args, session: Session) -> int:
    oid = pool.resolve(session, KIND, args.image)
    call: dict[str, Any] = {"name": args.name}
    if args.datastore is not None:
        call["datastore"] = pool.resolve(session, "datastore", args.datastore)
    new = pool.action(session, KIND, oid, "clone", call)["id"]
    emit(args, {"id": new}, lambda: [f"ID: {new}"])
    return 0


def cmd_chtype(args, session: Session) -> int:
    oid = pool.resolve(session, KIND, args.image)
    pool.action(session, KIND, oid, "chtype", {"type": args.type.upper()})
    t.done(args, {"id": oid, "type": args.type.upper()}, f"IMAGE {oid}: type changed")
    return 0


def _each(action: str, word: str):
    return pool.for_each(KIND, "IMAGE", action, word, lambda oid: {"id": oid, action: True})


def _snapshot(action: str, word: str):
    def cmd(args, session: Session) -> int:
        oid = pool.resolve(session, KIND, args.image)
        pool.action(session, KIND, oid, action, {"snapshot_id": args.snapshot_id})
        data = {"id": oid, "snapshot_id": args.snapshot_id, action: True}
        t.done(args, data, f"IMAGE {oid}: snapshot {args.snapshot_id} {word}")
        return 0

    return cmd


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage images.")

    pool.add_list(sub, "list images (" + " ".join(DEFAULT_COLUMNS) + ")", cmd_list, _CELLS)

    pool.add_show(
        sub, "show an image: state, template, VMs, snapshots", cmd_show, "image", "image id or name"
    )

    p = t.subparser(sub, "create", "register an image from a template; prints its ID", cmd_create)
    p.add_argument(
        "file", metavar="FILE", help="template (NAME, PATH or SIZE, TYPE...); '-': stdin"
    )
    p.add_argument("-d", "--datastore", required=True, help="datastore id or name")
    t.finish(p)

    p = t.subparser(sub, "clone", "copy an image (owned by you); prints the new ID", cmd_clone)
    p.add_argument("image", help="image id or name")
    p.add_argument("name", help="name of the copy")
    p.add_argument("-d", "--datastore", help="datastore of the copy (default: the image's)")
    t.finish(p)

    pool.add_each_commands(
        sub,
        KIND,
        _each,
        (
            ("enable", "enabled", "enable images (VMs may use them again)"),
            ("disable", "disabled", "disable images (no VM may use them)"),
            ("persistent", "now persistent", "make images persistent (one VM at a time, kept)"),
            ("nonpersistent", "now non-persistent", "make images non-persistent (VMs get copies)"),
        ),
    )

    p = t.subparser(sub, "chtype", "change an image's type", cmd_chtype)
    p.add_argument("image", help="image id or name")
    p.add_argument("type", type=str.upper, choices=TYPES)
    t.add_verbose(p)
    t.finish(p)

    for action, word, what in (
        ("snapshot_delete", "deleted", "delete a snapshot of an image"),
        ("snapshot_revert", "reverted to", "make a snapshot the image's active content"),
        ("snapshot_flatten", "flattened", "flatten an image to a snapshot, dropping the others"),
    ):
        p = t.subparser(sub, action.replace("_", "-"), what, _snapshot(action, word))
        p.add_argument("image", help="image id or name")
        p.add_argument("snapshot_id", type=int, metavar="snapshot")
        t.add_verbose(p)
        t.finish(p)

    pool.add_common_commands(sub, KIND, "IMAGE")
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
