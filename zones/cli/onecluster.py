"""onecluster: clusters of hosts, datastores and virtual networks (OpenNebula's
`onecluster`).

    onecluster list                      ID NAME HOSTS VNETS DATASTORES
    onecluster show <cluster>            CLUSTER INFORMATION, CLUSTER RESOURCES, CLUSTER
                                         TEMPLATE, HOSTS, VNETS, DATASTORES
    onecluster create <name>             (prints its ID)
    onecluster addhost|delhost <cluster> <host>
    onecluster adddatastore|deldatastore <cluster> <datastore>
    onecluster addvnet|delvnet <cluster> <vnet>
    onecluster delete <cluster>...
    onecluster update <cluster> [FILE|-] [--append]
    onecluster rename <cluster> <name>

A host is in exactly one cluster: addhost moves it, delhost moves it back to the default
cluster (0). Datastores and virtual networks may be in several clusters. Objects are
named by id or by name. Global options as onezone (--endpoint, --user, --password,
--token, -j/--json, -y/--yaml).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zones.cli import pool
from zones.cli import tenancy as t
from zones.cli.common import Session, emit, render, table

PROG = "onecluster"
KIND = "cluster"
LIST_COLUMNS = ("ID", "NAME", "HOSTS", "VNETS", "DATASTORES")
MEMBER_KINDS = ("host", "vnet", "datastore")
GIB_KB = 1 << 20


def list_rows(records: list[dict]) -> list[list[Any]]:
    return [
        [r["id"], r["name"], len(r["hosts"]), len(r["vnets"]), len(r["datastores"])]
        for r in records
    ]


def list_table(records: list[dict]):
    return table(LIST_COLUMNS, list_rows(records), right=("ID", "HOSTS", "VNETS", "DATASTORES"))


def resources(hosts: list[dict]) -> list[tuple[str, int]]:
    """CLUSTER RESOURCES, as OpenNebula adds up its hosts: whole CPUs and GB of RAM."""
    total_cpu = sum(h["capacity"]["total_cpu"] // 100 for h in hosts)
    used_cpu = sum(h["capacity"]["cpu_usage"] // 100 for h in hosts)
    total_ram = sum(h["capacity"]["total_mem"] // GIB_KB for h in hosts)
    used_ram = sum(h["capacity"]["mem_usage"] // GIB_KB for h in hosts)
    return [
        ("TOTAL CPUs", total_cpu),
        ("OCCUPIED CPUs", used_cpu),
        ("AVAILABLE CPUs", total_cpu - used_cpu),
        ("TOTAL RAM", total_ram),
        ("OCCUPIED RAM", used_ram),
        ("AVAILABLE RAM", total_ram - used_ram),
    ]


def show_renderables(record: dict, template: str, hosts: list[dict]) -> list[Any]:
    """`onecluster show`; `hosts`: the records of its hosts (for CLUSTER RESOURCES)."""
    out: list[Any] = [
        t.section(f"CLUSTER {record['id']} INFORMATION"),
        t.attrs([("ID", record["id"]), ("NAME", record["name"])]),
        "",
        t.section("CLUSTER RESOURCES"),
    ]
    if record["hosts"]:
        out.append("\n".join(f"{k}: {v}" for k, v in resources(hosts)))
    out += ["", t.section("CLUSTER TEMPLATE")]
    if template.strip():
        out.append(t.template_text(template))
    for field in ("hosts", "vnets", "datastores"):
        out += ["", table((field.upper(),), [[i] for i in record[field]])]
    return out


def render_show(record: dict, template: str, hosts: list[dict]) -> str:
    return render(show_renderables(record, template, hosts), plain=True)


# --- commands -----------------------------------------------------------------------------


def cmd_list(args, session: Session) -> int:
    records = pool.list_records(session, KIND)
    emit(args, records, lambda: [list_table(records)])
    return 0


def cmd_show(args, session: Session) -> int:
    obj, record = pool.info(session, KIND, pool.resolve(session, KIND, args.cluster))
    members = set(record["hosts"])
    hosts = [h for h in pool.list_records(session, "host") if h["id"] in members]
    emit(args, record, lambda: show_renderables(record, obj.template, hosts))
    return 0


def cmd_create(args, session: Session) -> int:
    cid = pool.allocate(session, KIND, name=args.name)
    emit(args, {"id": cid}, lambda: [f"ID: {cid}"])
    return 0


def _membership(verb: str, kind: str):
    def cmd(args, session: Session) -> int:
        cid = pool.resolve(session, KIND, args.cluster)
        oid = pool.resolve(session, kind, args.object)
        pool.action(session, KIND, cid, f"{verb}{kind}", {"object": oid})
        where = "to" if verb == "add" else "from"
        word = "added" if verb == "add" else "removed"
        t.done(
            args,
            {"id": cid, kind: oid, verb: True},
            f"CLUSTER {cid}: {kind} {oid} {word} {where} the cluster",
        )
        return 0

    return cmd


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage clusters.")
    t.finish(t.subparser(sub, "list", "list clusters (" + " ".join(LIST_COLUMNS) + ")", cmd_list))
    p = t.subparser(sub, "show", "show a cluster: resources, template, members", cmd_show)
    p.add_argument("cluster", help="cluster id or name")
    t.finish(p)
    p = t.subparser(sub, "create", "create a cluster; prints its ID", cmd_create)
    p.add_argument("name")
    t.finish(p)
    for kind in MEMBER_KINDS:
        for verb, what in (("add", f"add a {kind} to"), ("del", f"remove a {kind} from")):
            help_ = f"{what} a cluster"
            if kind == "host" and verb == "del":
                help_ += " (it goes back to the default cluster 0)"
            p = t.subparser(sub, f"{verb}{kind}", help_, _membership(verb, kind))
            p.add_argument("cluster", help="cluster id or name")
            p.add_argument("object", metavar=kind, help=f"{kind} id or name")
            t.add_verbose(p)
            t.finish(p)
    pool.add_common_commands(sub, KIND, "CLUSTER")
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
