"""Virtual routers (onevrouter): NICs in virtual networks, floating IPs leased to the router.

A vrouter record (raftcore.objects) adds::

    {"nics": [{"nic_id": 0, "network_id": 3, "floating_ip": True,
               "mac": "02:00:0a:00:00:05", "ip": "10.0.0.5", "ar_id": 0},
              {"nic_id": 1, "network_id": 4, "floating_ip": False}],
     "vms": [7, 8]}   # the router's VMs (vrouter.instantiate), until each is DONE

As OpenNebula's VirtualRouter: a NIC with FLOATING_IP = YES gets its address (IP, IP6
or MAC if given, else the first free one) leased to the router itself, charged to the
owner's NETWORK quota, and kept until the router is deleted; the other NICs only name
their network (each router VM leases its own address there when it is instantiated).
Every network with a NIC of the router lists it in "vrouters". The template keeps the NIC
vectors with what was leased (NIC_ID, NETWORK, AR_ID, MAC, IP, ...).

`vrouter.instantiate` creates the router's VMs as OpenNebula's one.vrouter.instantiate:
from a VM template with VROUTER = YES, whose NICs are replaced by one NIC per router NIC
(VirtualRouter::get_vm_template). A floating NIC's addresses become VROUTER_MAC,
VROUTER_IP, ... (the address the VMs share, still the router's lease) and each VM leases
an address of its own on every network; the VMs carry VROUTER_ID and
VROUTER_KEEPALIVED_ID (KEEPALIVED_ID, else id % 255 + 1). Pure: no I/O.
"""

from __future__ import annotations

from raftcore import objects, template
from raftcore.commands import ErrorCode, ok
from raftcore.leases import ADDRESS_ATTRS
from raftcore.ops import vmcore, vnets
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
TEMPLATE = "template"
KEEPALIVED_ID_MAX = 255
MAX_VMS = 16  # VMs per instantiate (an HA router needs a few, not a fleet)
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


# --- the router's VMs ----------------------------------------------------------------

# What a router NIC holds that a VM's NIC must not copy: its id and network name (the VM
# gets its own) and the router's lease (AR_ID); its addresses move to VROUTER_<attr>.
_ROUTER_ONLY = ("NIC_ID", "NETWORK", "AR_ID")
_SHARED = ("MAC", "IP", "IP6", "IP6_GLOBAL", "IP6_ULA", "IP6_LINK")


def vm_nic(vector: dict[str, str], floating: bool) -> dict[str, str]:
    """The NIC each router VM gets for one router NIC (OpenNebula's prepare_nic_vm): the
    network and the NIC's own attributes; a floating NIC's addresses as VROUTER_<attr>,
    so that the VM leases an address of its own beside the shared one. (OpenNebula leaves
    a static IP6 unprefixed, which makes the VM ask for the router's own address; here it
    is prefixed like the others.)"""
    nic = {k: v for k, v in vector.items() if k not in _ROUTER_ONLY}
    if floating:
        for attr in _SHARED:
            if attr in nic:
                nic[f"VROUTER_{attr}"] = nic.pop(attr)
    return nic


def vm_attributes(record: dict) -> str:
    """What the router puts in its VMs' template (VirtualRouter::get_vm_template): its
    NICs, VROUTER_KEEPALIVED_ID and VROUTER_KEEPALIVED_PASSWORD (VROUTER_ID is set by
    vmcore.create)."""
    stored = template.parse(record["template"])
    out = template.Template()
    # The template's NIC vectors and the record's nics are in the same order (allocate
    # writes both; update keeps them).
    for nic, vector in zip(record["nics"], stored.vectors("NIC"), strict=True):
        if _is_yes(vector.get("FLOATING_ONLY")):
            # OpenNebula (6.8.2+) gives the VMs no address of their own there; a VM NIC
            # without a lease is not something the VM operations model.
            raise Reject(
                ErrorCode.ACTION,
                f"NIC {nic['nic_id']} of virtual router {record['id']} has FLOATING_ONLY ="
                " YES: VMs without an address of their own are not supported",
            )
        out.append("NIC", vm_nic(vector, nic["floating_ip"]))
    keepalived = stored.get("KEEPALIVED_ID")  # checked at allocate / update
    if not isinstance(keepalived, str):
        keepalived = str(record["id"] % KEEPALIVED_ID_MAX + 1)
    out.set("VROUTER_KEEPALIVED_ID", keepalived.strip())
    password = stored.get("KEEPALIVED_PASSWORD")
    if isinstance(password, str) and password:
        out.set("VROUTER_KEEPALIVED_PASSWORD", password)
    return template.render(out)


def _is_yes(value: object) -> bool:
    return isinstance(value, str) and value.strip().upper() == "YES"


def _vm_names(args: dict, router: dict, number: int) -> list[str]:
    """OpenNebula's names: the pattern (default "vr-<router>-%i") with %i the index."""
    pattern = args["name"] if "name" in args else f"vr-{router['name']}-%i"
    if not isinstance(pattern, str):
        raise bad(f"argument 'name' must be a string, got {type(pattern).__name__}")
    return [objects.check_name(pattern.replace("%i", str(i))) for i in range(number)]


def op_vrouter_instantiate(view: View, args: dict, cmd: dict, index: int) -> Result:
    """`number` VMs (default 1) of the router from VM template `template_id`, created in
    one command through vmcore.create (rights, quotas, images, leases as any VM: the
    caller owns them); one refusal and none is created. MANAGE on the router, USE on the
    template. Returns {"ids": [vm ids]}."""
    check_args(args, ("id", "template_id"), ("number", "name", "hold"))
    router = objects.get(view, KIND, arg_int(args, "id"))
    source = objects.ref(view, TEMPLATE, args["template_id"], "template_id")
    number = arg_int(args, "number") if "number" in args else 1
    if not 1 <= number <= MAX_VMS:
        raise bad(f"argument 'number' must be 1..{MAX_VMS}, got {number}")
    names = _vm_names(args, router, number)
    hold = arg_bool(args, "hold") if "hold" in args else False
    require(
        view,
        cmd,
        objects.auth(KIND, router, "MANAGE"),
        objects.auth(TEMPLATE, source, "USE"),
    )
    if not _is_yes(template.parse(source["template"]).get("VROUTER")):
        raise Reject(
            ErrorCode.ACTION,
            f"template {source['id']} is not a virtual router template (VROUTER = YES)",
        )
    # Template::merge: the router's NICs replace all of the template's.
    text = merge_template(source["template"], vm_attributes(router), append=True)
    ov = Overlay(view)
    ids = []
    for name in names:
        vm, mutations = vmcore.create(
            ov, cmd, text, hold=hold, name=name, template_id=source["id"], vrouter_id=router["id"]
        )
        ov.add(mutations)
        ids.append(vm["id"])
    ov.put(KIND, {**router, "vms": sorted({*router["vms"], *ids})})
    return ov.mutations, ok({"ids": ids})


HANDLERS = {
    "vrouter.allocate": op_vrouter_allocate,
    "vrouter.delete": op_vrouter_delete,
    "vrouter.update": op_vrouter_update,
    "vrouter.instantiate": op_vrouter_instantiate,
}
