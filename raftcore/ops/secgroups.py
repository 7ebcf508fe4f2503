"""Security groups (onesecgroup): the firewall rules of the networks and VMs using them.

A secgroup record (raftcore.objects) adds::

    {"rules": [{"protocol": "TCP", "rule_type": "inbound", "range": "22,80:90"},
               {"protocol": "ICMP", "rule_type": "inbound", "icmp_type": 8,
                "ip": "10.0.0.0", "size": 256},
               {"protocol": "ALL", "rule_type": "outbound", "network_id": 3}],
     "vnets": [3, 5],    # networks using it (kept by raftcore.ops.vnets)
     "vms": [7]}         # VMs using it (kept by the VM operations: use_by_vm)

Rules are OpenNebula's (SecurityGroup::is_valid): PROTOCOL TCP, UDP, ICMP, ICMPV6, IPSEC
or ALL; RULE_TYPE inbound or outbound; RANGE ("22,80:90", ports 1..65535) only for TCP and
UDP; ICMP_TYPE only for ICMP, ICMPV6_TYPE only for ICMPV6; a target of IP + SIZE or
NETWORK_ID (an existing network), or none (any address). Duplicate rules are dropped,
as OpenNebula does. The template keeps the rules as RULE vectors, written canonically.

Security group 0 "default" (every network uses it; it lets all traffic in and out) is
created at bootstrap with permissions 744; the first 100 ids are OpenNebula's system ones,
so the groups users create start at 100. Pure: no clock, no I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from raftcore import objects, schema, template
from raftcore.commands import ErrorCode, ok
from raftcore.ops.common import (
    Mutation,
    Reject,
    Result,
    View,
    arg_bool,
    arg_int,
    bad,
    check_args,
    require,
)
from raftcore.ops.tenancy import arg_template, merge_template

KIND = "secgroup"
DEFAULT_ID = 0
FIRST_USER_ID = 100  # ids below are OpenNebula's system security groups
DEFAULT_PERMS = 0o744  # SecurityGroupPool: owner uma, group u, other u
DEFAULT_TEMPLATE = (
    'NAME = "default"\n'
    'DESCRIPTION = "The default security group is added to every network. Use it to add'
    " default filter rules for your networks. You may remove this security group from any"
    ' network by updating its properties."\n'
    'RULE = [ PROTOCOL = "ALL", RULE_TYPE = "outbound" ]\n'
    'RULE = [ PROTOCOL = "ALL", RULE_TYPE = "inbound" ]\n'
)
# The bootstrap's secgroup.allocate (zones/bootstrap.py DEFAULT_OBJECTS).
DEFAULT_ARGS: dict[str, Any] = {"template": DEFAULT_TEMPLATE}

PROTOCOLS = ("TCP", "UDP", "ICMP", "ICMPV6", "IPSEC", "ALL")
RULE_TYPES = ("inbound", "outbound")
# Rule attributes in the order the template shows them.
RULE_KEYS = ("PROTOCOL", "RULE_TYPE", "RANGE", "ICMP_TYPE", "ICMPV6_TYPE", "IP", "SIZE")
RULE_KEYS += ("NETWORK_ID",)
PORT_MAX = 65535
ICMP_TYPE_MAX = 255
_PORT_PROTOCOLS = ("TCP", "UDP")


def _whole(value: str, what: str, minimum: int, maximum: int) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit() or not minimum <= int(text) <= maximum:
        raise bad(f"{what} must be a whole number {minimum}..{maximum}, got {value!r}")
    return int(text)


def parse_range(value: str, where: str) -> str:
    """'22, 80:90' -> '22,80:90': ports and first:last port ranges, 1..65535."""
    parts = []
    for part in value.split(","):
        part = part.strip()
        bounds = part.split(":")
        if not part or len(bounds) > 2:
            raise bad(f"{where}: RANGE {value!r} must be ports or ranges like 22,80:90")
        numbers = [_whole(b, f"{where}: RANGE port", 1, PORT_MAX) for b in bounds]
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            raise bad(f"{where}: RANGE {part} starts after it ends")
        parts.append(":".join(str(n) for n in numbers))
    return ",".join(parts)


def _target(vector: Mapping[str, str], where: str, view: View) -> dict[str, Any]:
    """IP + SIZE, NETWORK_ID, or nothing (any address)."""
    ip, size, network = (vector.get(k, "").strip() for k in ("IP", "SIZE", "NETWORK_ID"))
    if network and (ip or size):
        raise bad(f"{where}: give IP and SIZE, or NETWORK_ID, not both")
    if network:
        vid = _whole(network, f"{where}: NETWORK_ID", 0, 2**31 - 1)
        if objects.find(view, "vnet", vid) is None:
            raise bad(f"{where}: NETWORK_ID {vid}: virtual network {vid} does not exist")
        return {"network_id": vid}
    if not ip and not size:
        return {}
    if not ip or not size:
        raise bad(f"{where}: IP and SIZE go together (the first address and how many)")
    try:
        first = ipaddress.ip_address(ip)
    except ValueError:
        raise bad(f"{where}: IP {ip!r} is not an IPv4 or IPv6 address") from None
    room = (1 << first.max_prefixlen) - int(first)
    count = _whole(size, f"{where}: SIZE", 1, room)
    return {"ip": str(first), "size": count}


def parse_rule(vector: Mapping[str, str], n: int, view: View) -> dict[str, Any]:
    """The rule record of RULE vector number `n` (from 0), or a refusal naming it."""
    where = f"RULE {n}"
    unknown = sorted(k for k in vector if k not in RULE_KEYS)
    if unknown:
        raise bad(
            f"{where}: unknown attribute(s) {', '.join(unknown)} (known: {', '.join(RULE_KEYS)})"
        )
    protocol = vector.get("PROTOCOL", "").strip().upper()
    if protocol not in PROTOCOLS:
        shown = vector.get("PROTOCOL", "")
        got = f"got {shown!r}" if shown else "it is missing"
        raise bad(f"{where}: PROTOCOL must be one of {', '.join(PROTOCOLS)}, {got}")
    rule_type = vector.get("RULE_TYPE", "").strip().lower()
    if rule_type not in RULE_TYPES:
        shown = vector.get("RULE_TYPE", "")
        got = f"got {shown!r}" if shown else "it is missing"
        raise bad(f"{where}: RULE_TYPE must be inbound or outbound, {got}")
    rule: dict[str, Any] = {"protocol": protocol, "rule_type": rule_type}
    if vector.get("RANGE", "").strip():
        if protocol not in _PORT_PROTOCOLS:
            raise bad(f"{where}: RANGE is only for TCP and UDP, not {protocol}")
        rule["range"] = parse_range(vector["RANGE"], where)
    for key, proto in (("ICMP_TYPE", "ICMP"), ("ICMPV6_TYPE", "ICMPV6")):
        if vector.get(key, "").strip():
            if protocol != proto:
                raise bad(f"{where}: {key} is only for {proto}, not {protocol}")
            rule[key.lower()] = _whole(vector[key], f"{where}: {key}", 0, ICMP_TYPE_MAX)
    rule.update(_target(vector, where, view))
    return rule


def rule_vector(rule: Mapping[str, Any]) -> list[tuple[str, str]]:
    """A rule record as RULE vector attributes, in canonical order."""
    return [(k, str(rule[k.lower()])) for k in RULE_KEYS if k.lower() in rule]


def _rules(view: View, tmpl: template.Template) -> tuple[list[dict], template.Template]:
    """The rules of a template (duplicates dropped) and the template with them written
    canonically in place of the RULE vectors it had."""
    if any(isinstance(v, str) for v in tmpl.get_all("RULE")):
        raise bad("RULE must be a vector (RULE = [ PROTOCOL = ..., RULE_TYPE = ... ])")
    rules: list[dict] = []
    for n, vector in enumerate(tmpl.vectors("RULE")):
        rule = parse_rule(vector, n, view)
        if rule not in rules:
            rules.append(rule)
    out = tmpl.copy()
    out.remove("NAME")
    out.remove("RULE")
    for rule in rules:
        out.append("RULE", rule_vector(rule))
    return rules, out


def _text(tmpl: template.Template) -> str:
    text = template.render(tmpl)
    try:
        template.check_size(text)
    except template.TemplateError as e:
        raise bad(f"the security group's template: {e}") from None
    return text


def op_secgroup_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("template",), ("name",))
    tmpl = template.parse(arg_template(args))
    if "name" in args:
        name = args["name"]
    else:
        name = tmpl.get("NAME")
        if not isinstance(name, str) or not name.strip():
            raise bad("the template has no NAME (or give argument 'name')")
        name = name.strip()
    rules, stored = _rules(view, tmpl)
    uid = max(cmd["uid"], 0)
    user = view.get(schema.USERS, schema.id_key(uid))
    require(view, cmd, objects.create_request(KIND, user["gid"] if user else 0))
    fields = {"rules": rules, "vnets": [], "vms": []}
    record, mutations = objects.new(view, cmd, KIND, name, _text(stored), fields)
    if record["id"] == DEFAULT_ID:
        # The default group: readable by all, and user groups start at 100 after it.
        mutations += objects.put(view, KIND, {**record, "perms": DEFAULT_PERMS}, record)
        mutations.append(("put", schema.META, schema.seq_key(f"obj:{KIND}"), FIRST_USER_ID))
    return mutations, ok({"id": record["id"]})


def op_secgroup_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    record = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    sid = record["id"]
    if sid == DEFAULT_ID:
        raise Reject(ErrorCode.ACTION, "the default security group (ID 0) cannot be deleted")
    for field, what in (("vms", "VMs"), ("vnets", "virtual networks")):
        if record[field]:
            users = ", ".join(str(i) for i in record[field])
            raise Reject(
                ErrorCode.ACTION,
                f"security group {sid} is used by {what} {users}: cannot delete it",
            )
    return objects.remove(KIND, record), ok()


def op_secgroup_update(view: View, args: dict, cmd: dict, index: int) -> Result:
    """Replace (or append to) the template; the rules are checked again."""
    check_args(args, ("id", "template"), ("append",))
    record = objects.get(view, KIND, arg_int(args, "id"))
    text = arg_template(args)
    append = arg_bool(args, "append") if "append" in args else False
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    if "NAME" in template.parse(text):
        raise bad("argument 'template' may not set NAME (use rename)")
    rules, stored = _rules(view, template.parse(merge_template(record["template"], text, append)))
    new = {**record, "rules": rules, "template": _text(stored)}
    return objects.put(view, KIND, new, record), ok()


def use_by_vm(view: View, sg_ids: list[int], vm_id: int, add: bool = True) -> list[Mutation]:
    """List (or unlist) VM `vm_id` in the "vms" of each security group of `sg_ids` (for the
    VM operations; a group a VM uses cannot be deleted). Unknown groups are skipped."""
    mutations: list[Mutation] = []
    for sg in sorted(set(sg_ids)):
        record = objects.find(view, KIND, sg)
        if record is None:
            continue
        vms = set(record["vms"])
        vms = vms | {vm_id} if add else vms - {vm_id}
        if sorted(vms) != record["vms"]:
            mutations += objects.put(view, KIND, {**record, "vms": sorted(vms)}, record)
    return mutations


HANDLERS = {
    "secgroup.allocate": op_secgroup_allocate,
    "secgroup.delete": op_secgroup_delete,
    "secgroup.update": op_secgroup_update,
}
