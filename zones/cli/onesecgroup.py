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
from zones.cli.common import table

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


cmd_list = netshow.list_command(
    KIND, lambda records, names: table(LIST_COLUMNS, list_rows(records, names), right=("ID",))
)
cmd_show = netshow.show_command(KIND, "secgroup", show_renderables)


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage security groups.")
    pool.add_list(sub, "list security groups (ID USER GROUP NAME)", cmd_list)
    pool.add_show(
        sub,
        "show a security group and its rules",
        cmd_show,
        "secgroup",
        "security group id or name",
    )
    pool.add_create(
        sub, "create a security group from a template file", pool.create_from_file(KIND)
    )
    # update through secgroup.update, which checks the rules
    pool.add_common_commands(
        sub, KIND, "SECURITY GROUP", pool.update_by_action(KIND, "SECURITY GROUP")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
