"""Virtual routers (onevrouter): NICs in virtual networks, floating IPs leased to the router.

A vrouter record (raftcore.objects) adds::

    {"nics": [{"nic_id": 0, "network_id": 3, "floating_ip": True,
               "mac": "02:00:0a:00:00:05", "ip": "10.0.0.5", "ar_id": 0},
              {"nic_id": 1, "network_id": 4, "floating_ip": False}],
     "vms": []}       # the router's VMs (instantiating them is the VM operations' work)

As OpenNebula's VirtualRouter: a NIC with FLOATING_IP = YES gets its address (IP, IP6
or MAC if given, else the first free one) leased to the router itself, charged to the
owner's NETWORK quota, and kept until the router is deleted; the other NICs only name
their network (each router VM leases its own address there when it is instantiated).
Every network with a NIC of the router lists it in "vrouters". The template keeps the NIC
vectors with what was leased (NIC_ID, NETWORK, AR_ID, MAC, IP, ...). Pure: no I/O.
"""

from __future__ import annotations

from raftcore import objects, template
from raftcore.commands import ErrorCode, ok
from raftcore.leases import ADDRESS_ATTRS
from raftcore.ops import vnets
from raftcore.ops.common import (
    Overlay,
    Reject,
    Result,
    View,
    arg_bool,
    arg_int,
    bad,
    check_args,
    next_id,
    require,
)
from raftcore.ops.tenancy import arg_template, merge_template

KIND = "vrouter"
KEEPALIVED_ID_MAX = 255
# NIC attributes a lease fills in, stored lower-case in the record.
_LEASED = ("AR_ID", "MAC", "IP", "IP6", "IP6_GLOBAL", "IP6_ULA", "IP6_LINK")


def _yes_no(value: str, what: str) -> bool:
    if value.strip().upper() not in ("YES", "NO"):
        raise bad(f"{what} must be YES or NO, got {value!r}")
    return value.strip().upper() == "YES"


def _parse_nic(vector: dict[str, str], n: int) -> tuple[int, bool, dict[str, str]]:
    """(network id, floating, address request) of NIC vector number `n`."""
    where = f"NIC {n}"
    network = vector.get("NETWORK_ID", "").strip()
    if not network:
        raise bad(f"{where}: NETWORK_ID is missing (the virtual network's id)")
    if not network.isascii() or not network.isdigit():
        raise bad(f"{where}: NETWORK_ID must be a network id, got {network!r}")
    if vector.get("NETWORK_MODE", "").strip().lower() == "auto":
        raise bad(f"{where}: a virtual router cannot use NETWORK_MODE = auto")
    floating = _yes_no(vector.get("FLOATING_IP", "NO"), f"{where}: FLOATING_IP")
    request = {a: vector[a] for a in ADDRESS_ATTRS if vector.get(a, "").strip()}
    if request and not floating:
        raise bad(
            f"{where}: {', '.join(request)} needs FLOATING_IP = YES (the router's own"
            " address); the router's VMs get theirs when instantiated"
        )
    return int(network), floating, request


def _check_keepalived(tmpl: template.Template) -> None:
    value = tmpl.get("KEEPALIVED_ID")
    if value is None:
        return
    text = value.strip() if isinstance(value, str) else ""
    if not text.isascii() or not text.isdigit() or not 0 <= int(text) <= KEEPALIVED_ID_MAX:
        raise bad(f"KEEPALIVED_ID must be a whole number 0..{KEEPALIVED_ID_MAX}, got {value!r}")


def op_vrouter_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("template",), ("name",))
    tmpl = template.parse(arg_template(args))
    if "name" in args:
        name = args["name"]
    else:
        name = tmpl.get("NAME")
        if not isinstance(name, str) or not name.strip():
            raise bad("the template has no NAME (or give argument 'name')")
        name = name.strip()
    if any(isinstance(v, str) for v in tmpl.get_all("NIC")):
        raise bad("NIC must be a vector (NIC = [ NETWORK_ID = ..., FLOATING_IP = YES ])")
    _check_keepalived(tmpl)
    vectors = tmpl.vectors("NIC")
    parsed = [_parse_nic(v, n) for n, v in enumerate(vectors)]
    networks = {
        vid: objects.ref(view, vnets.KIND, vid, f"NIC {n}: NETWORK_ID")
        for n, (vid, _, _) in enumerate(parsed)
    }
    uid, gid = vnets.caller_owner(view, cmd)
    objects.check_unique(view, KIND, objects.check_name(name), uid)  # before any lease
    require(
        view,
        cmd,
        objects.create_request(KIND, gid),
        *(objects.auth(vnets.KIND, r, "USE") for r in networks.values()),
    )
    rid, _ = next_id(view, f"obj:{KIND}")
    ov = Overlay(view)
    nics = []
    stored = tmpl.copy()
    stored.remove("NAME")
    stored.remove("NIC")
    for n, (vector, (vid, floating, request)) in enumerate(zip(vectors, parsed, strict=True)):
        nic = {"nic_id": n, "network_id": vid, "floating_ip": floating}
        shown = {**vector, "NIC_ID": str(n), "NETWORK": networks[vid]["name"]}
        if floating:
            attrs, mutations = vnets.lease_address(
                ov, cmd, vid, (KIND, rid), request, owner=(uid, gid), arg=f"NIC {n}: NETWORK_ID"
            )
            ov.add(mutations)
            nic.update({k.lower(): attrs[k] for k in _LEASED if k in attrs})
            nic["ar_id"] = int(attrs["AR_ID"])
            shown.update({k: attrs[k] for k in _LEASED if k in attrs})
        nics.append(nic)
        stored.append("NIC", shown)
    for vid in sorted(networks):
        ov.add(vnets.add_vrouter(ov, vid, rid))
    text = template.render(stored)
    record, mutations = objects.new(ov, cmd, KIND, name, text, {"nics": nics, "vms": []})
    assert record["id"] == rid
    ov.add(mutations)
    return ov.mutations, ok({"id": rid})


def op_vrouter_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    record = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    if record["vms"]:
        vms = ", ".join(str(v) for v in record["vms"])
        raise Reject(
            ErrorCode.ACTION,
            f"virtual router {record['id']} still has VMs {vms}: terminate them first",
        )
    ov = Overlay(view)
    owner = (record["uid"], record["gid"])
    for nic in record["nics"]:
        if nic["floating_ip"] and "mac" in nic:
            lease = {"MAC": nic["mac"], "AR_ID": str(nic["ar_id"])}
            holder = (KIND, record["id"])
            ov.add(vnets.release_address(ov, nic["network_id"], holder, lease, owner))
    for vid in sorted({nic["network_id"] for nic in record["nics"]}):
        if objects.find(ov, vnets.KIND, vid) is not None:
            ov.add(vnets.add_vrouter(ov, vid, record["id"], add=False))
    ov.add(objects.remove(KIND, record))
    return ov.mutations, ok()


def op_vrouter_update(view: View, args: dict, cmd: dict, index: int) -> Result:
    """Replace (or append to) the template; the NICs stay as they are (OpenNebula's
    VirtualRouter::replace_template)."""
    check_args(args, ("id", "template"), ("append",))
    record = objects.get(view, KIND, arg_int(args, "id"))
    text = arg_template(args)
    append = arg_bool(args, "append") if "append" in args else False
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    incoming = template.parse(text)
    for key, use in (("NAME", "rename"), ("NIC", "a new router")):
        if key in incoming:
            raise bad(f"argument 'template' may not set {key} (use {use})")
    _check_keepalived(incoming)
    merged = template.parse(merge_template(record["template"], text, append))
    merged.remove("NIC")
    for nic in template.parse(record["template"]).get_all("NIC"):
        merged.append("NIC", nic)
    new_text = template.render(merged)
    try:
        template.check_size(new_text)
    except template.TemplateError as e:
        raise bad(f"the virtual router's template: {e}") from None
    return objects.put(view, KIND, {**record, "template": new_text}, record), ok()


HANDLERS = {
    "vrouter.allocate": op_vrouter_allocate,
    "vrouter.delete": op_vrouter_delete,
    "vrouter.update": op_vrouter_update,
}
