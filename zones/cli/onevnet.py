"""onevnet: virtual networks (OpenNebula's `onevnet`).

    onevnet list                                 ID USER GROUP NAME CLUSTERS BRIDGE LEASES
    onevnet show <vnet>                          (address ranges and leases)
    onevnet create <FILE> [--cluster CLUSTER]    (prints its ID)
    onevnet addar <vnet> [FILE] [--ip IP] [--size N] [--mac MAC] [--ip6 IP6]
                  [--prefix-length N] [--gp PREFIX] [--ula PREFIX] [--type TYPE]
    onevnet rmar <vnet> <ar_id>
    onevnet updatear <vnet> <ar_id> [FILE|-]     (no FILE: edit the AR in $EDITOR)
    onevnet hold|release <vnet> <address> [-a AR_ID]   (an IP, IPv6 or MAC address)
    onevnet reserve <vnet> [name] -s SIZE [-n VNET] [-a AR_ID] [-i ADDRESS]
    onevnet delete|update|rename|chown|chgrp|chmod <vnet> ...

Networks are named by id or name. Global options as onezone (--endpoint, --user,
--password, --token, -j/--json, -y/--yaml).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from raftcore import leases
from raftcore import template as tmpl
from zones.cli import netshow, pool
from zones.cli import tenancy as t
from zones.cli.common import CliError, Session, emit, table

PROG = "onevnet"
KIND = "vnet"
LIST_COLUMNS = ("ID", "USER", "GROUP", "NAME", "CLUSTERS", "BRIDGE", "LEASES")
_RIGHT = ("ID", "LEASES")
SHOW_WIDTH = 25  # `onevnet show` prints "%-25s: %s"
# Lease owners as OpenNebula's CLI writes them.
_OWNER = {"vm": "V:{}", "vrouter": "R:{}", "vnet": "N:{}"}
# The address families of the RANGE table, in OpenNebula's order.
_FAMILIES = ("MAC", "IP", "IP6", "IP6_GLOBAL", "IP6_ULA")


# --- rendering -----------------------------------------------------------------------------


def list_rows(records: list[dict], names: netshow.Names = ({}, {})) -> list[list[Any]]:
    rows = []
    for r in records:
        user, group = netshow.owner_cells(r, names)
        clusters = ",".join(str(c) for c in r["cids"]) or "-"
        rows.append([r["id"], user, group, r["name"], clusters, r["bridge"], r["used_leases"]])
    return rows


def list_table(records: list[dict], names: netshow.Names = ({}, {})):
    return table(LIST_COLUMNS, list_rows(records, names), right=_RIGHT)


def owner_text(lease: dict) -> str:
    key, oid = leases.holder(lease)
    if key == "vm" and oid == leases.HOLD:
        return "H"
    return _OWNER[key].format(oid)


def lease_rows(record: dict) -> list[list[Any]]:
    rows = []
    for ar in record["ars"]:
        for lease in ar["leases"]:
            a = leases.address(ar, lease["index"])
            ip6 = a.get("IP6") or a.get("IP6_GLOBAL") or a.get("IP6_ULA") or "-"
            rows.append([ar["ar_id"], owner_text(lease), a["MAC"], a.get("IP", "-"), ip6])
    return rows


def _ar_renderables(ar: dict) -> list[Any]:
    pairs: list[tuple[str, Any]] = [("TYPE", ar["type"]), ("SIZE", ar["size"])]
    pairs.append(("LEASES", leases.used(ar)))
    if "parent_network_ar_id" in ar:
        pairs.append(("PARENT AR", ar["parent_network_ar_id"]))
    pairs += [(k, v) for k, v in sorted(ar["attrs"].items())]
    if ar["secgroups"]:
        pairs.append(("SECURITY_GROUPS", ",".join(map(str, ar["secgroups"]))))
    ends = leases.first_last(ar)
    rows = [[f, *ends[f]] for f in _FAMILIES if f in ends]
    return [
        f"AR {ar['ar_id']}",
        t.attrs(pairs, SHOW_WIDTH),
        "",
        table(("RANGE", "FIRST", "LAST"), rows),
        "",
    ]


def show_renderables(obj, record: dict) -> list[Any]:
    vlan = "" if record["vlan_id"] is None else record["vlan_id"]
    more: list[tuple[str, Any]] = [
        ("CLUSTERS", ",".join(str(c) for c in record["cids"])),
        ("BRIDGE", record["bridge"]),
        ("VN_MAD", record["vn_mad"]),
        ("PHYSICAL DEVICE", record["phydev"]),
        ("VLAN ID", vlan),
        ("AUTOMATIC VLAN ID", "YES" if record["vlan_id_automatic"] else "NO"),
    ]
    if record["outer_vlan_id"] is not None:
        more.append(("OUTER VLAN ID", record["outer_vlan_id"]))
    more.append(("USED LEASES", record["used_leases"]))
    if record["parent_network"] != -1:
        more.append(("PARENT NETWORK", record["parent_network"]))
    out = netshow.head("VIRTUAL NETWORK", obj, *more, width=SHOW_WIDTH)
    out += netshow.template_section("VIRTUAL NETWORK TEMPLATE", obj.template)
    out += ["", t.section("ADDRESS RANGE POOL")]
    for ar in record["ars"]:
        out += _ar_renderables(ar)
    out += [t.section("LEASES"), table(("AR", "OWNER", "MAC", "IP", "IP6"), lease_rows(record))]
    out += ["", t.section("VIRTUAL ROUTERS"), table(("ID",), [[v] for v in record["vrouters"]])]
    return out


# --- building requests -------------------------------------------------------------------


def address_arg(text: str) -> dict[str, str]:
    """{"ip": ...}, {"ip6": ...} or {"mac": ...}: which one `text` is."""
    text = text.strip()
    if leases.mac_int(text) is not None:
        return {"mac": text}
    if leases.ip4_int(text) is not None:
        return {"ip": text}
    if leases.ip6_int(text) is not None:
        return {"ip6": text}
    raise CliError(f"{text!r} is not an IP, IPv6 or MAC address")


def ar_from_options(args: argparse.Namespace) -> str:
    """An AR vector from addar's options; the TYPE follows them as OpenNebula's CLI does
    (IP4 with --ip, IP4_6 with a prefix too, IP6_STATIC with --ip6, IP6 with a prefix
    alone, else ETHER) unless --type says."""
    if args.size is None:
        raise CliError("give the AR as a FILE, or at least --size")
    prefix = args.gp or args.ula
    if args.type:
        kind = args.type.upper()
    elif args.ip:
        kind = "IP4_6_STATIC" if args.ip6 else "IP4_6" if prefix else "IP4"
    elif args.ip6:
        kind = "IP6_STATIC"
    else:
        kind = "IP6" if prefix else "ETHER"
    pairs = [("TYPE", kind), ("SIZE", str(args.size))]
    for value, key in (
        (args.ip, "IP"),
        (args.mac, "MAC"),
        (args.ip6, "IP6"),
        (args.prefix_length, "PREFIX_LENGTH"),
        (args.gp, "GLOBAL_PREFIX"),
        (args.ula, "ULA_PREFIX"),
    ):
        if value is not None:
            pairs.append((key, str(value)))
    return tmpl.render(tmpl.Template([("AR", pairs)]))


def ar_with_id(text: str, ar_id: int) -> str:
    """An AR vector text (or bare AR attributes) with AR_ID set to `ar_id`."""
    try:
        parsed = tmpl.parse(text)
    except tmpl.TemplateError as e:
        raise CliError(f"the AR template: {e}") from None
    vectors = parsed.vectors("AR")
    if not vectors:
        # Bare attributes: SIZE = 10 ... as the AR's.
        vectors = [{k: v for k, v in parsed.items() if isinstance(v, str)}]
    if len(vectors) != 1:
        raise CliError(f"the AR template must hold one AR vector, got {len(vectors)}")
    vector = {**vectors[0], "AR_ID": str(ar_id)}
    return tmpl.render(tmpl.Template([("AR", list(vector.items()))]))


# --- commands -----------------------------------------------------------------------------


cmd_list = netshow.list_command(KIND, lambda records, names: list_table(records, names))
cmd_show = netshow.show_command(KIND, "vnet", show_renderables)


def cmd_create(args, session: Session) -> int:
    text = t.read_input(args.file)
    fields: dict[str, Any] = {"template": text}
    if args.cluster is not None:
        fields["cluster_id"] = pool.resolve(session, "cluster", args.cluster)
    vid = pool.allocate(session, KIND, **fields)
    emit(args, {"id": vid}, lambda: [f"ID: {vid}"])
    return 0


def cmd_addar(args, session: Session) -> int:
    vid = pool.resolve(session, KIND, args.vnet)
    text = t.read_input(args.file) if args.file else ar_from_options(args)
    value = pool.action(session, KIND, vid, "add_ar", {"template": text})
    t.done(args, {"id": vid, **(value or {})}, f"VNET {vid}: address range added")
    return 0


def _ar_id(text: str) -> int:
    if not text.isdigit():
        raise CliError(f"AR id must be a number, got {text!r}")
    return int(text)


def cmd_rmar(args, session: Session) -> int:
    vid = pool.resolve(session, KIND, args.vnet)
    ar_id = _ar_id(args.ar_id)
    pool.action(session, KIND, vid, "rm_ar", {"ar_id": ar_id})
    t.done(args, {"id": vid, "ar_id": ar_id}, f"VNET {vid}: address range {ar_id} removed")
    return 0


def cmd_updatear(args, session: Session) -> int:
    vid = pool.resolve(session, KIND, args.vnet)
    ar_id = _ar_id(args.ar_id)

    def current() -> str:
        record = pool.info(session, KIND, vid)[1]
        ar = next((a for a in record["ars"] if a["ar_id"] == ar_id), None)
        if ar is None:
            raise CliError(f"virtual network {vid} has no address range {ar_id}")
        return tmpl.render(tmpl.Template([("AR", leases.definition(ar))]))

    text = ar_with_id(t.template_input(args.file, current, "address range"), ar_id)
    pool.action(session, KIND, vid, "update_ar", {"template": text})
    t.done(args, {"id": vid, "ar_id": ar_id}, f"VNET {vid}: address range {ar_id} updated")
    return 0


def _lease_cmd(action: str):
    def cmd(args, session: Session) -> int:
        vid = pool.resolve(session, KIND, args.vnet)
        request = address_arg(args.address)
        if args.ar_id is not None:
            request["ar_id"] = _ar_id(args.ar_id)
        pool.action(session, KIND, vid, action, request)
        t.done(args, {"id": vid, **request}, f"VNET {vid}: {args.address} {action}d")
        return 0

    return cmd


def cmd_reserve(args, session: Session) -> int:
    vid = pool.resolve(session, KIND, args.vnet)
    request: dict[str, Any] = {"size": args.size}
    if args.netid is not None:
        request["network_id"] = pool.resolve(session, KIND, args.netid)
    elif args.name:
        request["name"] = args.name
    else:
        raise CliError("give a name for the new reservation, or -n VNET to add to one")
    if args.address_range is not None:
        request["ar_id"] = _ar_id(args.address_range)
    if args.addr is not None:
        request.update(address_arg(args.addr))
    rid = pool.action(session, KIND, vid, "reserve", request)["id"]
    emit(args, {"id": rid}, lambda: [f"Reservation VNET ID: {rid}"])
    return 0


def cmd_update(args, session: Session) -> int:
    """update through vnet.update, which checks VN_MAD, VLAN_ID, SECURITY_GROUPS..."""
    vid = pool.resolve(session, KIND, args.object)
    text = t.template_input(
        args.file, lambda: pool.info(session, KIND, vid)[0].template, "template"
    )
    pool.action(session, KIND, vid, "update", {"template": text, "append": args.append})
    t.done(args, {"id": vid, "updated": True}, f"VNET {vid}: template updated")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage virtual networks.")
    t.finish(t.subparser(sub, "list", "list networks (" + " ".join(LIST_COLUMNS) + ")", cmd_list))

    p = t.subparser(sub, "show", "show a network, its address ranges and leases", cmd_show)
    p.add_argument("vnet", help="network id or name")
    t.finish(p)

    p = t.subparser(
        sub, "create", "create a network from a template file; prints its ID", cmd_create
    )
    p.add_argument("file", metavar="FILE", help="template file, '-' for stdin")
    p.add_argument("--cluster", help="cluster id or name (default 0)")
    t.finish(p)

    p = t.subparser(sub, "addar", "add an address range (FILE or options)", cmd_addar)
    p.add_argument("vnet")
    p.add_argument("file", nargs="?", metavar="FILE", help="AR template file, '-' for stdin")
    p.add_argument("--type", help="ETHER, IP4, IP6, IP6_STATIC, IP4_6, IP4_6_STATIC")
    p.add_argument("--ip", help="first IPv4 address")
    p.add_argument("--size", type=int, help="number of addresses")
    p.add_argument("--mac", help="first MAC address")
    p.add_argument("--ip6", help="first IPv6 address (static ranges)")
    p.add_argument("--prefix-length", type=int, help="IPv6 prefix length (static ranges)")
    p.add_argument("--gp", help="IPv6 global prefix (SLAAC)")
    p.add_argument("--ula", help="IPv6 unique local prefix (SLAAC)")
    t.add_verbose(p)
    t.finish(p)

    p = t.subparser(sub, "rmar", "remove an address range (no leases in use)", cmd_rmar)
    p.add_argument("vnet")
    p.add_argument("ar_id")
    t.add_verbose(p)
    t.finish(p)

    p = t.subparser(sub, "updatear", "update an address range", cmd_updatear)
    p.add_argument("vnet")
    p.add_argument("ar_id")
    p.add_argument("file", nargs="?", metavar="FILE", help="AR template, '-' for stdin")
    t.add_verbose(p)
    t.finish(p)

    for action, what in (("hold", "put an address on hold"), ("release", "release a held address")):
        p = t.subparser(sub, action, what, _lease_cmd(action))
        p.add_argument("vnet")
        p.add_argument("address", help="IP, IPv6 or MAC address")
        p.add_argument("-a", "--address-range", dest="ar_id", metavar="AR_ID")
        t.add_verbose(p)
        t.finish(p)

    p = t.subparser(
        sub, "reserve", "reserve addresses into a new (or existing) network", cmd_reserve
    )
    p.add_argument("vnet")
    p.add_argument("name", nargs="?", help="name of the new reservation")
    p.add_argument("-s", "--size", type=int, required=True, help="number of addresses")
    p.add_argument("-n", "--netid", metavar="VNET", help="add to this reservation")
    p.add_argument("-a", "--address-range", dest="address_range", metavar="AR_ID")
    p.add_argument("-i", "--addr", metavar="ADDRESS", help="first address (with -a)")
    t.finish(p)

    pool.add_common_commands(sub, KIND, "VNET")
    sub.choices["update"].set_defaults(fn=cmd_update)
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
