"""onevrouter: virtual routers (OpenNebula's `onevrouter`).

    onevrouter list                       ID USER GROUP NAME
    onevrouter show <vrouter>             (its NICs and VMs)
    onevrouter create <FILE>              (prints its ID; floating IPs are leased now)
    onevrouter instantiate <vrouter> <template> [--multiple N] [--name NAME] [--hold]
                                          (the router's VMs; prints their IDs)
    onevrouter delete|update|rename|chown|chgrp|chmod <vrouter> ...

Routers and templates are named by id or by name. `instantiate` creates all N VMs or
none; --name may hold "%i" (the index, from 0; default "vr-<router>-%i").
Global options as onezone (--endpoint, --user, --password, --token, -j/--json, -y/--yaml).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zones.cli import netshow, pool
from zones.cli import tenancy as t
from zones.cli.common import Session, emit, table

PROG = "onevrouter"
KIND = "vrouter"
LIST_COLUMNS = ("ID", "USER", "GROUP", "NAME")
NIC_COLUMNS = ("ID", "NETWORK", "FLOATING", "MAC", "IP", "IP6")


def list_rows(records: list[dict], names: netshow.Names = ({}, {})) -> list[list[Any]]:
    return [[r["id"], *netshow.owner_cells(r, names), r["name"]] for r in records]


def nic_rows(record: dict) -> list[list[Any]]:
    return [
        [
            n["nic_id"],
            n["network_id"],
            "YES" if n["floating_ip"] else "NO",
            n.get("mac", "-"),
            n.get("ip", "-"),
            n.get("ip6") or n.get("ip6_global") or "-",
        ]
        for n in record["nics"]
    ]


def show_renderables(obj, record: dict) -> list[Any]:
    out = netshow.head("VIRTUAL ROUTER", obj)
    out += ["", t.section("VIRTUAL MACHINES"), table(("ID",), [[v] for v in record["vms"]])]
    out += ["", t.section("NICS"), table(NIC_COLUMNS, nic_rows(record), right=("ID", "NETWORK"))]
    out += netshow.template_section("TEMPLATE CONTENTS", obj.template)
    return out


cmd_list = netshow.list_command(
    KIND, lambda records, names: table(LIST_COLUMNS, list_rows(records, names), right=("ID",))
)
cmd_show = netshow.show_command(KIND, "vrouter", show_renderables)


def instantiate_args(template_id: int, multiple: int, name: str | None, hold: bool) -> dict:
    """The vrouter.instantiate arguments of the command line (defaults left out; the
    range of --multiple is the op's to check)."""
    call: dict[str, Any] = {"template_id": template_id}
    if multiple != 1:
        call["number"] = multiple
    if name is not None:
        call["name"] = name
    if hold:
        call["hold"] = True
    return call


def cmd_instantiate(args, session: Session) -> int:
    rid = pool.resolve(session, KIND, args.vrouter)
    tid = pool.resolve(session, "template", args.template)
    call = instantiate_args(tid, args.multiple, args.name, args.hold)
    ids = pool.action(session, KIND, rid, "instantiate", call)["ids"]
    emit(args, {"id": rid, "ids": ids}, lambda: [f"VM ID: {i}" for i in ids])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage virtual routers.")
    pool.add_list(sub, "list virtual routers (ID USER GROUP NAME)", cmd_list)
    pool.add_show(
        sub, "show a virtual router and its NICs", cmd_show, "vrouter", "virtual router id or name"
    )
    pool.add_create(
        sub, "create a virtual router from a template file", pool.create_from_file(KIND)
    )
    p = t.subparser(
        sub,
        "instantiate",
        "create the router's VMs from a template; prints their IDs",
        cmd_instantiate,
    )
    p.add_argument("vrouter", help="virtual router id or name")
    p.add_argument("template", help="VM template (VROUTER = YES) id or name")
    p.add_argument("-m", "--multiple", type=int, default=1, metavar="N", help="create N VMs")
    p.add_argument("--name", help='VM names, "%%i" the index (default vr-<router>-%%i)')
    p.add_argument("--hold", action="store_true", help="create the VMs on hold")
    t.finish(p)
    # update through vrouter.update, which keeps the NICs
    pool.add_common_commands(
        sub, KIND, "VIRTUAL ROUTER", pool.update_by_action(KIND, "VIRTUAL ROUTER")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
