"""onehost: hosts (OpenNebula's `onehost`).

    onehost list [-l COLUMNS]           ID NAME CLUSTER TVM ALLOCATED_CPU ALLOCATED_MEM STAT
    onehost show <host>                 HOST INFORMATION, HOST SHARES, MONITORING INFORMATION,
                                        HOST TEMPLATE, VIRTUAL MACHINES
    onehost create <name> --im-mad IM --vm-mad VM [--cluster C]   (prints its ID)
    onehost enable|disable|offline <host>...
    onehost delete <host>...
    onehost update <host> [FILE|-] [--append]
    onehost rename <host> <name>

Hosts and clusters are named by id or by name. CPU is in hundredths of a CPU (400 is 4
CPUs) and memory in KB, shown with units, as OpenNebula does. Global options as onezone
(--endpoint, --user, --password, --token, -j/--json, -y/--yaml).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

import grpc
from rich.text import Text

from raftcore import template as tmpl
from zones.api.gen import pool_pb2
from zones.api.pool_service import decode_list
from zones.cli import pool
from zones.cli import tenancy as t
from zones.cli.common import Session, emit, render, table

PROG = "onehost"
KIND = "host"
IM_MADS = ("kvm", "qemu", "lxc", "firecracker", "dummy")
VM_MADS = ("kvm", "lxc", "firecracker", "dummy")
ATTR_WIDTH = 22  # `onehost show` prints "%-22s: %s"

# OpenNebula's host states and the short names of `onehost list` (Host::SHORT_HOST_STATES).
STATE_NAMES = (
    "INIT",
    "MONITORING_MONITORED",
    "MONITORED",
    "ERROR",
    "DISABLED",
    "MONITORING_ERROR",
    "MONITORING_INIT",
    "MONITORING_DISABLED",
    "OFFLINE",
)
SHORT_STATES = {
    "INIT": "init",
    "MONITORING_MONITORED": "update",
    "MONITORED": "on",
    "ERROR": "err",
    "DISABLED": "dsbl",
    "MONITORING_ERROR": "retry",
    "MONITORING_INIT": "init",
    "MONITORING_DISABLED": "dsbl",
    "OFFLINE": "off",
}


def state_str(state: int) -> str:
    return STATE_NAMES[state] if 0 <= state < len(STATE_NAMES) else str(state)


def _mem(kb: int) -> str:
    return t.unit_to_str(kb, "K")


def _ratio(used: int, total: int, fmt: Callable[[int], str]) -> str:
    """`used / total (pct%)` as the ALLOCATED_* and REAL_* columns: '-' when there is
    neither, no percentage without a total."""
    if total == 0 and used == 0:
        return "-"
    if total == 0:
        return f"{fmt(used)} / -"
    return f"{fmt(used)} / {fmt(total)} ({used * 100 // total}%)"


def _cap(h: dict, name: str) -> int:
    return h["capacity"][name]


# Cell of each list column from (host record, cluster names).
_CELLS: dict[str, Callable[[dict, dict[int, str]], Any]] = {
    "ID": lambda h, c: h["id"],
    "NAME": lambda h, c: h["name"],
    "CLUSTER": lambda h, c: ",".join(c.get(i, str(i)) for i in h["cids"]) or "-",
    "TVM": lambda h, c: len(h["vms"]),
    "TCPU": lambda h, c: _cap(h, "max_cpu"),
    "FCPU": lambda h, c: _cap(h, "max_cpu") - _cap(h, "used_cpu"),
    "ACPU": lambda h, c: (_cap(h, "max_cpu") or 100) - _cap(h, "cpu_usage"),
    "TMEM": lambda h, c: _mem(_cap(h, "max_mem")),
    "FMEM": lambda h, c: _mem(_cap(h, "free_mem")),
    "AMEM": lambda h, c: _mem(_cap(h, "max_mem") - _cap(h, "mem_usage")),
    "REAL_CPU": lambda h, c: (
        _ratio(_cap(h, "used_cpu"), _cap(h, "max_cpu"), str) if _cap(h, "max_cpu") else "-"
    ),
    "ALLOCATED_CPU": lambda h, c: _ratio(_cap(h, "cpu_usage"), _cap(h, "max_cpu"), str),
    "REAL_MEM": lambda h, c: (
        _ratio(_cap(h, "used_mem"), _cap(h, "max_mem"), _mem) if _cap(h, "max_mem") else "-"
    ),
    "ALLOCATED_MEM": lambda h, c: _ratio(_cap(h, "mem_usage"), _cap(h, "max_mem"), _mem),
    "STAT": lambda h, c: SHORT_STATES.get(state_str(h["state"]), str(h["state"])),
}
DEFAULT_COLUMNS = ("ID", "NAME", "CLUSTER", "TVM", "ALLOCATED_CPU", "ALLOCATED_MEM", "STAT")
_RIGHT = ("ID", "TVM", "TCPU", "FCPU", "ACPU", "TMEM", "FMEM", "AMEM")


# --- rendering ----------------------------------------------------------------------------


def list_columns(spec: str | None) -> tuple[str, ...]:
    return pool.parse_columns(spec, _CELLS, DEFAULT_COLUMNS)


def list_rows(
    records: list[dict], clusters: dict[int, str], columns: tuple[str, ...] = DEFAULT_COLUMNS
) -> list[list[Any]]:
    return [[_CELLS[c](h, clusters) for c in columns] for h in records]


def list_table(
    records: list[dict], clusters: dict[int, str], columns: tuple[str, ...] = DEFAULT_COLUMNS
):
    return table(columns, list_rows(records, clusters, columns), right=_RIGHT)


time_str = t.time_str


def _attrs(pairs: list[tuple[str, Any]]) -> Text:
    return t.attrs(pairs, ATTR_WIDTH)


def show_renderables(
    record: dict, template: str, clusters: dict[int, str], vms: list[dict] | None = None
) -> list[Any]:
    """`onehost show`. `vms`: the records of the host's VMs the caller may see (their
    names); without them the VMs are listed by id."""
    cap = record["capacity"]
    info = [
        ("ID", record["id"]),
        ("NAME", record["name"]),
        ("CLUSTER", _CELLS["CLUSTER"](record, clusters)),
        ("STATE", state_str(record["state"])),
        ("IM_MAD", record["im_mad"]),
        ("VM_MAD", record["vm_mad"]),
        ("LAST MONITORING TIME", time_str(record["last_mon"])),
    ]
    memory = [
        ("  TOTAL", _mem(cap["total_mem"])),
        ("  TOTAL +/- RESERVED", _mem(cap["max_mem"])),
        ("  USED (REAL)", _mem(cap["used_mem"])),
        ("  USED (ALLOCATED)", _mem(cap["mem_usage"])),
    ]
    cpu = [
        ("  TOTAL", cap["total_cpu"]),
        ("  TOTAL +/- RESERVED", cap["max_cpu"]),
        ("  USED (REAL)", cap["used_cpu"]),
        ("  USED (ALLOCATED)", cap["cpu_usage"]),
    ]
    monitoring = [("FREE CPU", cap["free_cpu"]), ("FREE MEMORY", _mem(cap["free_mem"]))]
    if record.get("error"):
        monitoring.append(("ERROR", record["error"]))
    names = {v["id"]: v.get("name", "") for v in vms or []}
    out: list[Any] = [
        t.section(f"HOST {record['id']} INFORMATION"),
        _attrs(info),
        "",
        t.section("HOST SHARES"),
        _attrs([("RUNNING VMS", len(record["vms"]))]),
        t.section("MEMORY"),
        _attrs(memory),
        t.section("CPU"),
        _attrs(cpu),
        "",
        t.section("MONITORING INFORMATION"),
        _attrs(monitoring),
        "",
        t.section("HOST TEMPLATE"),
    ]
    if template.strip():
        out.append(t.template_text(template))
    out += ["", t.section("VIRTUAL MACHINES")]
    if record["vms"]:
        out.append(table(("ID", "NAME"), [[v, names.get(v, "")] for v in record["vms"]], ("ID",)))
    return out


def render_show(record: dict, template: str, clusters: dict[int, str]) -> str:
    return render(show_renderables(record, template, clusters), plain=True)


# --- commands -----------------------------------------------------------------------------


def cluster_names(session: Session) -> dict[int, str]:
    return {c["id"]: c["name"] for c in pool.list_records(session, "cluster")}


def _vm_records(session: Session, ids: list[int]) -> list[dict]:
    """The host's VMs the caller may see (one listing over their id range)."""
    if not ids:
        return []
    request = pool_pb2.PoolListRequest(kind="vm", filter=-2, start_id=min(ids), end_id=max(ids))
    try:
        reply = session.call(lambda c: c.pool.List(request, timeout=session.timeout))
    except grpc.RpcError:  # names are a nicety: the ids are shown regardless
        return []
    wanted = set(ids)
    return [r for r in decode_list(reply) if r["id"] in wanted]


def cmd_list(args, session: Session) -> int:
    columns = list_columns(args.list)
    records = pool.list_records(session, KIND)
    clusters = cluster_names(session)
    emit(args, records, lambda: [list_table(records, clusters, columns)])
    return 0


def cmd_show(args, session: Session) -> int:
    obj, record = pool.info(session, KIND, pool.resolve(session, KIND, args.host))
    clusters = cluster_names(session)
    vms = _vm_records(session, record["vms"])
    emit(args, record, lambda: show_renderables(record, obj.template, clusters, vms))
    return 0


def create_template(im_mad: str, vm_mad: str, extra: str = "") -> str:
    text = f"IM_MAD = {tmpl.quote(im_mad)}\nVM_MAD = {tmpl.quote(vm_mad)}\n"
    return text + extra


def cmd_create(args, session: Session) -> int:
    extra = t.read_input(args.file) if args.file else ""
    fields: dict[str, Any] = {
        "name": args.name,
        "template": create_template(args.im_mad, args.vm_mad, extra),
    }
    if args.cluster is not None:
        fields["cluster_id"] = pool.resolve(session, "cluster", args.cluster)
    hid = pool.allocate(session, KIND, **fields)
    emit(args, {"id": hid}, lambda: [f"ID: {hid}"])
    return 0


def _status(action: str, word: str):
    return pool.for_each(KIND, "HOST", action, word, lambda hid: {"id": hid, "status": action})


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage hosts.")

    pool.add_list(sub, "list hosts (" + " ".join(DEFAULT_COLUMNS) + ")", cmd_list, _CELLS)

    pool.add_show(
        sub, "show a host: capacity, monitoring, template, VMs", cmd_show, "host", "host id or name"
    )

    p = t.subparser(sub, "create", "register a host; prints its ID", cmd_create)
    p.add_argument("name", help="the host's name (its hostname)")
    p.add_argument("-i", "--im-mad", "--im", required=True, choices=IM_MADS, help="monitoring")
    p.add_argument("--vm-mad", "--vm", required=True, choices=VM_MADS, help="virtualization")
    p.add_argument("-c", "--cluster", help="cluster id or name (default: cluster 0, default)")
    p.add_argument("file", nargs="?", metavar="FILE", help="more template attributes ('-': stdin)")
    t.finish(p)

    pool.add_each_commands(
        sub,
        KIND,
        _status,
        (
            ("enable", "enabled", "enable hosts (the scheduler may use them again)"),
            ("disable", "disabled", "disable hosts (still monitored; no new VMs scheduled)"),
            ("offline", "offline", "set hosts offline (not monitored, no VMs placed)"),
        ),
    )

    pool.add_common_commands(sub, KIND, "HOST")
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
