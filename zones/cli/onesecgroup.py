"""onesecgroup: security groups (OpenNebula's `onesecgroup`).

    onesecgroup list                      ID USER GROUP NAME
    onesecgroup show <secgroup>           (its rules, networks and VMs)
    onesecgroup create <FILE>             (prints its ID)
    onesecgroup delete|update|rename|chown|chgrp|chmod <secgroup> ...

Security groups are named by id or name. Global options as onezone (--endpoint, --user,
--password, --token, -j/--json, -y/--yaml).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from zones.cli import netshow, pool
from zones.cli import tenancy as t
from zones.cli.common import Session, add_global_args, emit, table

PROG = "onesecgroup"
KIND = "secgroup"
LIST_COLUMNS = ("ID", "USER", "GROUP", "NAME")
RULE_COLUMNS = ("TYPE", "PROTOCOL", "ADDRESS_RANGE", "NETWORK", "ICMP_TYPE", "PORT_RANGE")


def list_rows(records: list[dict], names: netshow.Names = ({}, {})) -> list[list[Any]]:
    return [[r["id"], *netshow.owner_cells(r, names), r["name"]] for r in records]


def rule_rows(rules: list[dict]) -> list[list[Any]]:
    """The RULES table, as OpenNebula's: Any where a rule does not narrow it down."""
    rows = []
    for r in rules:
        addresses = f"{r['ip']} ({r['size']})" if "ip" in r else "Any"
        network = r.get("network_id", "Any")
        icmp = r.get("icmp_type", r.get("icmpv6_type", ""))
        rows.append(
            [
                r["rule_type"].capitalize(),
                r["protocol"],
                addresses,
                network,
                icmp,
                r.get("range", "Any"),
            ]
        )
    return rows


def show_renderables(obj, record: dict) -> list[Any]:
    out = netshow.head("SECURITY GROUP", obj)
    out += ["", t.section("VIRTUAL NETWORKS"), table(("ID",), [[v] for v in record["vnets"]])]
    out += ["", t.section("VIRTUAL MACHINES"), table(("ID",), [[v] for v in record["vms"]])]
    out += ["", t.section("RULES"), table(RULE_COLUMNS, rule_rows(record["rules"]))]
    out += netshow.template_section("TEMPLATE CONTENTS", obj.template)
    return out


def cmd_list(args, session: Session) -> int:
    records = pool.list_records(session, KIND)
    if args.json or args.yaml:
        emit(args, records, lambda: [])
        return 0
    names = netshow.owner_names(session)
    emit(args, None, lambda: [table(LIST_COLUMNS, list_rows(records, names), right=("ID",))])
    return 0


def cmd_show(args, session: Session) -> int:
    obj, record = pool.info(session, KIND, pool.resolve(session, KIND, args.secgroup))
    emit(args, netshow.as_data(obj, record), lambda: show_renderables(obj, record))
    return 0


def cmd_create(args, session: Session) -> int:
    sid = pool.allocate(session, KIND, template=t.read_input(args.file))
    emit(args, {"id": sid}, lambda: [f"ID: {sid}"])
    return 0


def cmd_update(args, session: Session) -> int:
    """update through secgroup.update, which checks the rules."""
    sid = pool.resolve(session, KIND, args.object)
    text = t.template_input(
        args.file, lambda: pool.info(session, KIND, sid)[0].template, "template"
    )
    pool.action(session, KIND, sid, "update", {"template": text, "append": args.append})
    t.done(args, {"id": sid, "updated": True}, f"SECURITY GROUP {sid}: template updated")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Manage security groups.")
    add_global_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    t.finish(t.subparser(sub, "list", "list security groups (ID USER GROUP NAME)", cmd_list))
    p = t.subparser(sub, "show", "show a security group and its rules", cmd_show)
    p.add_argument("secgroup", help="security group id or name")
    t.finish(p)
    p = t.subparser(sub, "create", "create a security group from a template file", cmd_create)
    p.add_argument("file", metavar="FILE", help="template file, '-' for stdin")
    t.finish(p)
    pool.add_common_commands(sub, KIND, "SECURITY GROUP")
    sub.choices["update"].set_defaults(fn=cmd_update)
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
