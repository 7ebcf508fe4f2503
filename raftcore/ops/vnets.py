"""Virtual networks (onevnet): drivers and VLANs, address ranges, leases, holds and
reservations, all in the replicated state (nothing here touches a host).

A vnet record (raftcore.objects) adds::

    {"vn_mad": "802.1Q", "bridge": "onebr.12", "phydev": "eth0",
     "vlan_id": 12, "vlan_id_automatic": False,
     "outer_vlan_id": None, "outer_vlan_id_automatic": False,   # ovswitch_vxlan
     "cids": [0], "secgroups": [0, 100],
     "ars": [<AR record, raftcore.leases>], "next_ar_id": 1, "used_leases": 3,
     "parent_network": -1,            # the network a reservation takes addresses from
     "vrouters": [2]}                 # virtual routers with a NIC in this network

The template keeps every other attribute (GATEWAY, DNS, ...) plus VN_MAD, BRIDGE,
PHYDEV, VLAN_ID and SECURITY_GROUPS as OpenNebula shows them; NAME and the AR vectors
live in the record. Each security group lists the networks using it ("vnets") and each
cluster its networks ("vnets"), kept here.

Leases for other kinds (the VM engineer's contract)::

    nic, mutations = lease_for_vm(view, cmd, vnet_id, vm_id, {"IP": "10.0.0.5"})
    mutations = release_for_vm(view, vnet_id, vm_id, nic)

Several leases in one command must see each other: give them an `Overlay` of the view
(`lease_for_vm(ov, ...)`, then `ov.add(mutations)`), whose `mutations` is the list to
return. Everything here is pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from raftcore import leases, objects, quota, schema, template
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode, ok
from raftcore.ops import vdcs
from raftcore.ops.common import (
    Mutation,
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

KIND = "vnet"
SECGROUP = "secgroup"
CLUSTER = "cluster"
DEFAULT_CLUSTER = 0
DEFAULT_SECGROUP = 0  # every network uses it (OpenNebula adds it to SECURITY_GROUPS)
NO_PARENT = -1
# oned.conf VLAN_IDS: automatic 802.1Q ids from START, never the RESERVED ones; one
# network each, so the ids in use are kept (META, a sorted list).
AUTO_VLANS_KEY = b"vnet:auto_vlan_ids"
VLAN_START = 2
VLAN_MAX = 4095
VLAN_RESERVED = frozenset({0, 1, 4095})
# oned.conf VXLAN_IDS: an automatic VNI is START + the network id.
VXLAN_START = 2
VXLAN_MAX = (1 << 24) - 1
MAX_BRIDGE_CHARS = 15  # Linux interface names
MAC_SEED_TRIES = 16


# --- several steps of one command ---------------------------------------------------------


# --- drivers and VLANs --------------------------------------------------------------------


@dataclass(frozen=True)
class Driver:
    """What a VN_MAD needs (OpenNebula's VirtualNetwork::parse_phydev_vlans)."""

    name: str
    phydev: bool = False  # PHYDEV required
    bridge: bool = False  # BRIDGE required (no default name)
    vlan: str | None = None  # "required" (VLAN_ID or AUTOMATIC_VLAN_ID), "optional"
    pool: str = "8021q"  # where an automatic VLAN_ID comes from: "8021q" | "vxlan"
    outer: bool = False  # OUTER_VLAN_ID (or AUTOMATIC_OUTER_VLAN_ID) required


DRIVERS: dict[str, Driver] = {
    d.name: d
    for d in (
        Driver("bridge"),
        Driver("802.1Q", phydev=True, vlan="required"),
        Driver("vxlan", phydev=True, vlan="required", pool="vxlan"),
        Driver("ovswitch", vlan="optional"),
        Driver("ovswitch_vxlan", phydev=True, vlan="optional", outer=True),
        Driver("fw"),
        Driver("dummy", bridge=True),
    )
}
_VLAN_RANGE = {"8021q": VLAN_MAX, "vxlan": VXLAN_MAX}


def _scalar(tmpl: template.Template, key: str) -> str | None:
    try:
        value = tmpl.scalar(key)
    except template.TemplateError:
        raise bad(f"{key} must be a single value, not a vector") from None
    return None if value is None else value.strip()


def _yes_no(value: str, what: str) -> bool:
    upper = value.upper()
    if upper not in ("YES", "NO"):
        raise bad(f"{what} must be YES or NO, got {value!r}")
    return upper == "YES"


def _vlan_number(value: str, what: str, maximum: int) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > maximum:
        raise bad(f"{what} must be a whole number 0..{maximum}, got {value!r}")
    return int(value)


def _driver(tmpl: template.Template, old: dict | None) -> Driver:
    raw = _scalar(tmpl, "VN_MAD")
    if not raw:
        if old is not None:
            return DRIVERS[old["vn_mad"]]
        raise bad(f"the template has no VN_MAD (the network driver: {', '.join(DRIVERS)})")
    by_lower = {name.lower(): d for name, d in DRIVERS.items()}
    driver = by_lower.get(raw.lower())
    if driver is None:
        raise bad(f"VN_MAD {raw!r} is not a network driver (one of {', '.join(DRIVERS)})")
    return driver


def _vlan_setting(
    tmpl: template.Template,
    id_key: str,
    auto_key: str,
    maximum: int,
    old: tuple[int | None, bool],
) -> tuple[int | None, bool]:
    """(VLAN id, automatic) from VLAN_ID / AUTOMATIC_VLAN_ID (or the OUTER_ ones). An
    automatic id already assigned (`old`) stays: it cannot be changed by hand."""
    given = _scalar(tmpl, id_key) or None
    auto_text = _scalar(tmpl, auto_key)
    old_id, old_auto = old
    if old_auto:
        if given is not None and _vlan_number(given, id_key, maximum) != old_id:
            raise bad(f"{id_key} {old_id} was assigned automatically and cannot be changed")
        return old_id, True
    if given is not None:
        return _vlan_number(given, id_key, maximum), False
    auto = _yes_no(auto_text, auto_key) if auto_text else False
    return None, auto


def _config(tmpl: template.Template, old: dict | None = None) -> dict:
    """The network fields from a template (allocate, or update of `old`): VN_MAD (kept
    when absent on update), PHYDEV, BRIDGE (kept when absent on update), VLAN_ID /
    AUTOMATIC_VLAN_ID, OUTER_VLAN_ID / AUTOMATIC_OUTER_VLAN_ID, checked against what the
    driver needs. An automatic VLAN id is not assigned here (see _assign_vlans)."""
    driver = _driver(tmpl, old)
    if old is not None and old["vn_mad"] != driver.name:
        before = DRIVERS[old["vn_mad"]]
        if old["vlan_id_automatic"] and (driver.vlan is None or driver.pool != before.pool):
            raise bad(
                f"VN_MAD cannot change from {before.name} to {driver.name}: VLAN_ID"
                f" {old['vlan_id']} was assigned automatically by {before.name}"
            )
        if old["outer_vlan_id_automatic"] and not driver.outer:
            raise bad(
                f"VN_MAD cannot change from {before.name} to {driver.name}: "
                f"OUTER_VLAN_ID {old['outer_vlan_id']} was assigned automatically"
            )
    phydev = _scalar(tmpl, "PHYDEV") or ""
    bridge = _scalar(tmpl, "BRIDGE") or (old["bridge"] if old is not None else "")
    unused = [
        key
        for key, needed in (
            ("VLAN_ID", driver.vlan),
            ("AUTOMATIC_VLAN_ID", driver.vlan),
            ("OUTER_VLAN_ID", driver.outer),
            ("AUTOMATIC_OUTER_VLAN_ID", driver.outer),
        )
        if not needed and _scalar(tmpl, key)
    ]
    if unused:
        verb = "is" if len(unused) == 1 else "are"
        raise bad(f"{', '.join(unused)} {verb} not used by VN_MAD {driver.name}")
    if driver.phydev and not phydev:
        raise bad(f"PHYDEV is required by VN_MAD {driver.name}")
    if driver.bridge and not bridge:
        raise bad(f"BRIDGE is required by VN_MAD {driver.name}")
    if bridge and (len(bridge) > MAX_BRIDGE_CHARS or any(c.isspace() or c in "/:" for c in bridge)):
        raise bad(
            f"BRIDGE {bridge!r} is not an interface name (at most {MAX_BRIDGE_CHARS}"
            " characters, no blanks, '/' or ':')"
        )
    vlan_id, vlan_auto = None, False
    if driver.vlan:
        prior = (old["vlan_id"], old["vlan_id_automatic"]) if old else (None, False)
        vlan_id, vlan_auto = _vlan_setting(
            tmpl, "VLAN_ID", "AUTOMATIC_VLAN_ID", _VLAN_RANGE[driver.pool], prior
        )
        if driver.vlan == "required" and vlan_id is None and not vlan_auto:
            raise bad(f"VLAN_ID (or AUTOMATIC_VLAN_ID = YES) is required by VN_MAD {driver.name}")
    outer_id, outer_auto = None, False
    if driver.outer:
        prior = (old["outer_vlan_id"], old["outer_vlan_id_automatic"]) if old else (None, False)
        outer_id, outer_auto = _vlan_setting(
            tmpl, "OUTER_VLAN_ID", "AUTOMATIC_OUTER_VLAN_ID", VXLAN_MAX, prior
        )
        if outer_id is None and not outer_auto:
            raise bad(
                f"OUTER_VLAN_ID (or AUTOMATIC_OUTER_VLAN_ID = YES) is required by VN_MAD"
                f" {driver.name}"
            )
    return {
        "vn_mad": driver.name,
        "bridge": bridge,
        "phydev": phydev,
        "vlan_id": vlan_id,
        "vlan_id_automatic": vlan_auto,
        "outer_vlan_id": outer_id,
        "outer_vlan_id_automatic": outer_auto,
    }


def _pick_8021q(used: list[int], vid: int) -> int | None:
    """OpenNebula's choice: the first free id from START + vid % (4095 - START), then
    from START (VirtualNetworkPool::set_8021Q_id)."""
    taken = set(used) | VLAN_RESERVED
    hint = VLAN_START + vid % (VLAN_MAX - VLAN_START)
    for candidate in [*range(hint, VLAN_MAX), *range(VLAN_START, hint)]:
        if candidate not in taken:
            return candidate
    return None


def _assign_vlans(view: View, vid: int, cfg: dict) -> tuple[dict, list[Mutation]]:
    """Give automatic VLAN ids to a new network (VirtualNetworkPool::set_vlan_id)."""
    cfg = dict(cfg)
    mutations: list[Mutation] = []
    driver = DRIVERS[cfg["vn_mad"]]
    if cfg["vlan_id_automatic"] and cfg["vlan_id"] is None:
        if driver.pool == "vxlan":
            cfg["vlan_id"] = VXLAN_START + vid
        else:
            used = list(view.get(schema.META, AUTO_VLANS_KEY) or [])
            picked = _pick_8021q(used, vid)
            if picked is None:
                raise Reject(
                    ErrorCode.ACTION,
                    f"no automatic VLAN_ID left: {VLAN_START}..{VLAN_MAX - 1} are all assigned",
                )
            cfg["vlan_id"] = picked
            mutations.append(("put", schema.META, AUTO_VLANS_KEY, sorted([*used, picked])))
    if cfg["outer_vlan_id_automatic"] and cfg["outer_vlan_id"] is None:
        cfg["outer_vlan_id"] = VXLAN_START + vid
    return cfg, mutations


def _release_vlan(view: View, record: dict) -> list[Mutation]:
    if not record["vlan_id_automatic"] or DRIVERS[record["vn_mad"]].pool != "8021q":
        return []
    used = [v for v in view.get(schema.META, AUTO_VLANS_KEY) or [] if v != record["vlan_id"]]
    return [("put", schema.META, AUTO_VLANS_KEY, used)]


def _default_bridge(cfg: dict, vid: int) -> str:
    # VirtualNetwork::insert: onebr.<VLAN_ID> for a VLAN given by hand, else onebr<id>.
    if cfg["vlan_id"] is not None and not cfg["vlan_id_automatic"]:
        return f"onebr.{cfg['vlan_id']}"
    return f"onebr{vid}"


# --- security groups, clusters ----------------------------------------------------------


def _secgroups(view: View, text: str | None, what: str) -> tuple[list[int], list[AuthRequest]]:
    """The ids of a SECURITY_GROUPS list (each must exist) and the USE requests on them."""
    try:
        ids = leases.parse_id_list(text or "", what)
    except leases.LeaseError as e:
        raise bad(str(e)) from None
    requests = []
    for sg in ids:
        record = objects.find(view, SECGROUP, sg)
        if record is None:
            raise bad(f"{what}: security group {sg} does not exist")
        requests.append(objects.auth(SECGROUP, record, "USE"))
    return ids, requests


def all_secgroups(record: Mapping[str, Any]) -> list[int]:
    """Every security group a network uses: its own and its ARs'."""
    ids = set(record["secgroups"])
    for ar in record["ars"]:
        ids |= set(ar["secgroups"])
    return sorted(ids)


def _sync_secgroups(view: View, vid: int, old: list[int], new: list[int]) -> list[Mutation]:
    """Keep each security group's "vnets" list in step with the networks using it."""
    mutations: list[Mutation] = []
    for sg in sorted(set(old) ^ set(new)):
        record = objects.find(view, SECGROUP, sg)
        if record is None:
            continue  # only on removal: a group cannot go while a network uses it
        vnets = set(record["vnets"])
        vnets = vnets | {vid} if sg in new else vnets - {vid}
        mutations += objects.put(view, SECGROUP, {**record, "vnets": sorted(vnets)}, record)
    return mutations


def _cluster_members(view: View, cids: list[int], vid: int, add: bool) -> list[Mutation]:
    mutations: list[Mutation] = []
    for cid in cids:
        cluster = objects.find(view, CLUSTER, cid)
        if cluster is None:
            continue
        members = set(cluster["vnets"])
        members = members | {vid} if add else members - {vid}
        mutations += objects.put(view, CLUSTER, {**cluster, "vnets": sorted(members)}, cluster)
    return mutations


# --- templates and address ranges -------------------------------------------------------


def _template_text(tmpl: template.Template, cfg: dict, secgroups: list[int]) -> str:
    """The stored template: the user's attributes without NAME and AR, and the network's
    own ones as OpenNebula writes them back (an automatic VLAN id is not in it)."""
    out = tmpl.copy()
    for key in ("NAME", "AR", "AUTOMATIC_VLAN_ID", "AUTOMATIC_OUTER_VLAN_ID"):
        out.remove(key)
    values = {
        "VN_MAD": cfg["vn_mad"],
        "BRIDGE": cfg["bridge"],
        "PHYDEV": cfg["phydev"] or None,
        "VLAN_ID": None if cfg["vlan_id_automatic"] else cfg["vlan_id"],
        "OUTER_VLAN_ID": None if cfg["outer_vlan_id_automatic"] else cfg["outer_vlan_id"],
        "SECURITY_GROUPS": ",".join(str(s) for s in secgroups),
    }
    for key, value in values.items():
        if value is None:
            out.remove(key)
        else:
            out.set(key, str(value))
    text = template.render(out)
    try:
        template.check_size(text)
    except template.TemplateError as e:
        raise bad(f"the network's template: {e}") from None
    return text


def _mac_seed(vid: int, ar_id: int, attempt: int) -> int:
    # OpenNebula draws a random MAC for ranges without IPv4 or MAC; a replica may not, so
    # the MAC comes from the network and AR ids (another try on overlap).
    digest = hashlib.sha256(f"vnet {vid} ar {ar_id} try {attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def _check_overlap(existing: list[dict], ar: dict) -> None:
    for other in existing:
        span = leases.overlap(other, ar)
        if span is not None:
            raise bad(f"AR {ar['ar_id']} overlaps AR {other['ar_id']} ({span})")


def _new_ar(vector: Mapping[str, str], vid: int, ar_id: int, existing: list[dict]) -> dict:
    """An AR from its vector, checked against the network's other ARs. A derived MAC (no
    MAC nor IPv4 given) that collides with another AR's MACs moves on to the next try."""
    ar_type = leases.AR_TYPES.get(vector.get("TYPE", "").strip().upper())
    derived = not vector.get("MAC", "").strip() and ar_type is not None and not ar_type.ip4
    for attempt in range(MAC_SEED_TRIES if derived else 1):
        try:
            ar = leases.parse_ar(vector, ar_id, _mac_seed(vid, ar_id, attempt))
        except leases.LeaseError as e:
            raise bad(str(e)) from None
        macs = leases.spans(ar)["MAC"]
        if not any(_spans_meet(leases.spans(o)["MAC"], macs) for o in existing):
            break
    _check_overlap(existing, ar)
    return ar


def _spans_meet(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return max(a[0], b[0]) <= min(a[1], b[1])


def _ar_vectors(text: str, one: bool) -> list[dict[str, str]]:
    """The AR vectors of an argument's template (nothing else allowed in it)."""
    tmpl = template.parse(text)
    others = [k for k in tmpl.keys() if k != "AR"]
    if others:
        raise bad(f"argument 'template' may only hold AR vectors, got {', '.join(others)}")
    if any(isinstance(v, str) for v in tmpl.get_all("AR")):
        raise bad("argument 'template': AR must be a vector (AR = [ TYPE = ..., ... ])")
    vectors = tmpl.vectors("AR")
    if not vectors:
        raise bad("argument 'template' has no AR vector (AR = [ TYPE = ..., SIZE = ... ])")
    if one and len(vectors) > 1:
        raise bad(f"argument 'template' must hold one AR vector, got {len(vectors)}")
    return vectors


def _with_ars(record: dict, ars: list[dict]) -> dict:
    new = dict(record)
    new["ars"] = ars
    new["used_leases"] = sum(leases.used(ar) for ar in ars)
    return new


def _replace_ar(record: dict, ar: dict) -> dict:
    return _with_ars(record, [ar if a["ar_id"] == ar["ar_id"] else a for a in record["ars"]])


def _ar_of(record: dict, ar_id: int, arg: str = "ar_id") -> tuple[int, dict]:
    for pos, ar in enumerate(record["ars"]):
        if ar["ar_id"] == ar_id:
            return pos, ar
    raise bad(f"argument {arg!r}: virtual network {record['id']} has no address range {ar_id}")


# --- owners and quotas ------------------------------------------------------------------


def caller_owner(view: View, cmd: dict) -> tuple[int, int]:
    """(uid, gid) of the command's user: who new objects and quota charges belong to."""
    uid = max(cmd["uid"], 0)
    user = view.get(schema.USERS, schema.id_key(uid))
    return uid, user["gid"] if user else 0


def _leases_usage(vid: int, count: int) -> dict:
    return {"NETWORK": {vid: {"LEASES": count}}}


# --- leases -------------------------------------------------------------------------------


def _one_address(
    values: Mapping[str, Any], arg_names: Mapping[str, str]
) -> tuple[str, int, str] | None:
    """(attr, integer, text) of the one address named among IP / IP6 / MAC, or None."""
    given = [
        (attr, values[attr]) for attr in leases.ADDRESS_ATTRS if values.get(attr) not in (None, "")
    ]
    if len(given) > 1:
        names = " and ".join(repr(arg_names[a]) for a, _ in given)
        raise bad(f"give only one of IP, IP6 and MAC, got {names}")
    if not given:
        return None
    attr, raw = given[0]
    number = leases.parse_address(attr, raw)
    if number is None:
        raise bad(f"argument {arg_names[attr]!r}: {raw!r} is not {leases.describe(attr)}")
    return attr, number, raw.strip()


def _locate(
    record: dict, attr: str, number: int, text: str, ar_id: int | None = None
) -> tuple[dict, int]:
    ars = record["ars"] if ar_id is None else [_ar_of(record, ar_id)[1]]
    for ar in ars:
        index = leases.index_of(ar, attr, number)
        if index is not None:
            return ar, index
    where = "any address range" if ar_id is None else f"address range {ar_id}"
    raise bad(f"{attr} {text} is not in {where} of virtual network {record['id']}")


def _nic(record: dict, ar: dict, index: int) -> dict[str, str]:
    """The NIC attributes of a lease (VirtualNetwork::nic_attribute), as text values."""
    nic = {
        "NETWORK": record["name"],
        "NETWORK_ID": str(record["id"]),
        "BRIDGE": record["bridge"],
        "VN_MAD": record["vn_mad"],
    }
    if record["phydev"]:
        nic["PHYDEV"] = record["phydev"]
    if record["vlan_id"] is not None:
        nic["VLAN_ID"] = str(record["vlan_id"])
    if record["outer_vlan_id"] is not None:
        nic["OUTER_VLAN_ID"] = str(record["outer_vlan_id"])
    if record["parent_network"] != NO_PARENT:
        nic["PARENT_NETWORK_ID"] = str(record["parent_network"])
    nic["CLUSTER_ID"] = ",".join(str(c) for c in record["cids"])
    nic["AR_ID"] = str(ar["ar_id"])
    nic.update(leases.address(ar, index))
    sgs = sorted(set(record["secgroups"]) | set(ar["secgroups"]))
    nic["SECURITY_GROUPS"] = ",".join(str(s) for s in sgs)
    return nic


_HOLDER_LABEL = {"vm": "VM", "vrouter": "virtual router"}


def lease_address(
    view: View,
    cmd: dict,
    vnet_id: int,
    holder: tuple[str, int],
    request: Mapping[str, Any],
    *,
    owner: tuple[int, int] | None = None,
    arg: str = "NETWORK_ID",
) -> tuple[dict[str, str], list[Mutation]]:
    """Lease an address of network `vnet_id` to `holder` (("vm", id) or ("vrouter", id)):
    the one `request` names by "IP", "IP6" or "MAC", else the first free one. Needs USE
    on the network; charges one NETWORK lease to `owner` (uid, gid; default: the
    caller). Returns the NIC attributes and the mutations."""
    record = objects.ref(view, KIND, vnet_id, arg)
    require(view, cmd, objects.auth(KIND, record, "USE"))
    wanted = _one_address(request, {a: a for a in leases.ADDRESS_ATTRS})
    if wanted is not None:
        ar, index = _locate(record, *wanted)
        taken = leases.lease_at(ar, index)
        if taken is not None:
            raise Reject(
                ErrorCode.ACTION,
                f"{wanted[0]} {wanted[2]} of virtual network {vnet_id} is already"
                f" {leases.holder_text(taken)}",
            )
    else:
        found = next(
            ((ar, i) for ar in record["ars"] if (i := leases.free_run(ar)) is not None), None
        )
        if found is None:
            raise Reject(ErrorCode.ACTION, f"no free address in virtual network {vnet_id}")
        ar, index = found
    new_ar = leases.with_leases(ar, [index], {holder[0]: holder[1]})
    new = _replace_ar(record, new_ar)
    uid, gid = owner if owner is not None else caller_owner(view, cmd)
    mutations = objects.put(view, KIND, new, record)
    mutations += quota.charge(view, uid, gid, _leases_usage(vnet_id, 1))
    return _nic(new, new_ar, index), mutations


def release_address(
    view: View,
    vnet_id: int,
    holder: tuple[str, int],
    nic: Mapping[str, Any],
    owner: tuple[int, int],
) -> list[Mutation]:
    """Free the lease `nic` (its MAC, in its AR_ID if given) that `holder` has in network
    `vnet_id`, and release the NETWORK lease of `owner` (uid, gid)."""
    record = objects.get(view, KIND, vnet_id)
    mac_text = nic.get("MAC")
    mac = leases.mac_int(mac_text) if isinstance(mac_text, str) else None
    if mac is None:
        raise bad(f"the NIC has no valid MAC to release, got {mac_text!r}")
    ar_id = nic.get("AR_ID")
    ar_id = int(ar_id) if isinstance(ar_id, str) and ar_id.isdigit() else ar_id
    ar, index = _locate(record, "MAC", mac, mac_text, ar_id if isinstance(ar_id, int) else None)
    lease = leases.lease_at(ar, index)
    if lease is None or leases.holder(lease) != holder:
        label = _HOLDER_LABEL.get(holder[0], holder[0])
        state = "free" if lease is None else leases.holder_text(lease)
        raise Reject(
            ErrorCode.ACTION,
            f"MAC {mac_text} of virtual network {vnet_id} is not leased to {label}"
            f" {holder[1]} (it is {state})",
        )
    new = _replace_ar(record, leases.without_leases(ar, [index]))
    mutations = objects.put(view, KIND, new, record)
    mutations += quota.release(view, owner[0], owner[1], _leases_usage(vnet_id, 1))
    return mutations


def lease_for_vm(
    view: View,
    cmd: dict,
    vnet_id: int,
    vm_id: int,
    request: Mapping[str, Any],
    *,
    owner: tuple[int, int] | None = None,
) -> tuple[dict[str, str], list[Mutation]]:
    """Lease an address of `vnet_id` to VM `vm_id` (see lease_address; `owner` is the
    VM's (uid, gid), default the caller). The NIC attributes are text: NETWORK,
    NETWORK_ID, BRIDGE, VN_MAD, PHYDEV?, VLAN_ID?, OUTER_VLAN_ID?, PARENT_NETWORK_ID?,
    CLUSTER_ID, AR_ID, MAC, IP?, IP6?, IP6_GLOBAL?, IP6_ULA?, IP6_LINK?,
    SECURITY_GROUPS."""
    if isinstance(vm_id, bool) or not isinstance(vm_id, int) or vm_id < 0:
        raise bad(f"a VM id must be >= 0, got {vm_id!r}")
    return lease_address(view, cmd, vnet_id, ("vm", vm_id), request, owner=owner)


def release_for_vm(
    view: View,
    vnet_id: int,
    vm_id: int,
    nic: Mapping[str, Any],
    *,
    owner: tuple[int, int] | None = None,
) -> list[Mutation]:
    """Free the lease of VM `vm_id` described by `nic` (from lease_for_vm) and release its
    quota from `owner` (default: the VM record's uid and gid)."""
    if owner is None:
        vm = objects.find(view, "vm", vm_id)
        if vm is None:
            raise bad(f"VM {vm_id} does not exist: give the owner whose quota to release")
        owner = (vm["uid"], vm["gid"])
    return release_address(view, vnet_id, ("vm", vm_id), nic, owner)


def add_vrouter(view: View, vnet_id: int, vrouter_id: int, add: bool = True) -> list[Mutation]:
    """List (or unlist) a virtual router with a NIC in network `vnet_id`."""
    record = objects.get(view, KIND, vnet_id)
    ids = set(record["vrouters"])
    ids = ids | {vrouter_id} if add else ids - {vrouter_id}
    return objects.put(view, KIND, {**record, "vrouters": sorted(ids)}, record)


# --- allocate, delete, update -------------------------------------------------------------


def _name(args: dict, tmpl: template.Template) -> str:
    if "name" in args:
        return args["name"]
    name = _scalar(tmpl, "NAME")
    if not name:
        raise bad("the template has no NAME (or give argument 'name')")
    return name


def op_vnet_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("template",), ("name", "cluster"))
    text = arg_template(args)
    tmpl = template.parse(text)
    name = _name(args, tmpl)
    cid = args.get("cluster", DEFAULT_CLUSTER)
    cid = DEFAULT_CLUSTER if cid == -1 else cid  # -1: OpenNebula's "the default one"
    cluster = objects.ref(view, CLUSTER, cid, "cluster")
    uid, gid = caller_owner(view, cmd)
    cfg = _config(tmpl)
    sgs, sg_requests = _secgroups(
        view, f"{_scalar(tmpl, 'SECURITY_GROUPS') or ''},{DEFAULT_SECGROUP}", "SECURITY_GROUPS"
    )
    require(
        view,
        cmd,
        objects.create_request(KIND, gid, (cid,)),
        objects.auth(CLUSTER, cluster, "ADMIN"),
        *sg_requests,
    )
    vid, _ = next_id(view, f"obj:{KIND}")
    ars: list[dict] = []
    for vector in tmpl.vectors("AR"):
        ars.append(_new_ar(vector, vid, len(ars), ars))
    ar_sg_requests = []
    for ar in ars:
        _, requests = _secgroups(view, ",".join(map(str, ar["secgroups"])), f"AR {ar['ar_id']}")
        ar_sg_requests += requests
    require(view, cmd, *ar_sg_requests)
    cfg, vlan_mutations = _assign_vlans(view, vid, cfg)
    cfg["bridge"] = cfg["bridge"] or _default_bridge(cfg, vid)
    fields = {
        **cfg,
        "cids": [cid],
        "secgroups": sgs,
        "ars": ars,
        "next_ar_id": len(ars),
        "used_leases": 0,
        "parent_network": NO_PARENT,
        "vrouters": [],
    }
    record, mutations = objects.new(view, cmd, KIND, name, _template_text(tmpl, cfg, sgs), fields)
    assert record["id"] == vid
    mutations += vlan_mutations
    mutations += _cluster_members(view, [cid], vid, add=True)
    mutations += _sync_secgroups(view, vid, [], all_secgroups(record))
    return mutations, ok({"id": vid})


def held_quota(view: View, vnet: dict) -> dict | None:
    """What a reservation holds of its owner's quota (the parent's leases it took);
    None for a network that is not a reservation. Moved with it by obj.chown."""
    if vnet["parent_network"] == NO_PARENT:
        return None
    parent = objects.find(view, KIND, vnet["parent_network"])
    mine = ("vnet", vnet["id"])
    count = sum(
        1
        for ar in (parent or {}).get("ars", ())
        for lease in ar["leases"]
        if leases.holder(lease) == mine
    )
    return _leases_usage(vnet["parent_network"], count) if count else None


def _free_reserved(
    view: View, child: dict, only_ar: dict | None = None
) -> tuple[list[Mutation], int]:
    """Give a reservation's addresses (all, or those of one of its ARs) back to the
    parent network; returns the mutations and how many were freed."""
    parent = objects.find(view, KIND, child["parent_network"])
    if parent is None:
        return [], 0
    mine = ("vnet", child["id"])
    ars = []
    freed = 0
    for ar in parent["ars"]:
        indices = [lease["index"] for lease in ar["leases"] if leases.holder(lease) == mine]
        if only_ar is not None:
            if ar["ar_id"] != only_ar.get("parent_network_ar_id"):
                indices = []
            else:
                first = leases.index_of(ar, "MAC", leases.mac_int(only_ar["mac"]) or 0)
                span = range(first, first + only_ar["size"]) if first is not None else range(0)
                indices = [i for i in indices if i in span]
        freed += len(indices)
        ars.append(leases.without_leases(ar, indices) if indices else ar)
    if not freed:
        return [], 0
    return objects.put(view, KIND, _with_ars(parent, ars), parent), freed


def op_vnet_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    record = objects.get(view, KIND, arg_int(args, "id"))
    vid = record["id"]
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    if record["used_leases"]:
        raise Reject(
            ErrorCode.ACTION,
            f"cannot delete virtual network {vid}: {record['used_leases']} of its leases are"
            " in use (VMs, virtual routers, holds or reservations)",
        )
    if record["vrouters"]:
        routers = ", ".join(map(str, record["vrouters"]))
        raise Reject(
            ErrorCode.ACTION,
            f"cannot delete virtual network {vid}: virtual routers {routers} have NICs in it",
        )
    mutations = objects.remove(KIND, record)
    if record["parent_network"] != NO_PARENT:
        freed_mutations, freed = _free_reserved(view, record)
        mutations += freed_mutations
        if freed:
            usage = _leases_usage(record["parent_network"], freed)
            mutations += quota.release(view, record["uid"], record["gid"], usage)
    mutations += _release_vlan(view, record)
    mutations += _cluster_members(view, record["cids"], vid, add=False)
    mutations += _sync_secgroups(view, vid, all_secgroups(record), [])
    mutations += vdcs.forget(view, KIND, vid)
    return mutations, ok()


def op_vnet_update(view: View, args: dict, cmd: dict, index: int) -> Result:
    """OpenNebula's one.vn.update: replace (or append to) the template; VN_MAD, PHYDEV,
    BRIDGE, VLAN_ID and SECURITY_GROUPS are re-read and checked."""
    check_args(args, ("id", "template"), ("append",))
    record = objects.get(view, KIND, arg_int(args, "id"))
    text = arg_template(args)
    append = arg_bool(args, "append") if "append" in args else False
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    incoming = template.parse(text)
    for key, use in (("NAME", "rename"), ("AR", "add_ar / update_ar")):
        if key in incoming:
            raise bad(f"argument 'template' may not set {key} (use {use})")
    tmpl = template.parse(merge_template(record["template"], text, append))
    cfg, vlan_mutations = _assign_vlans(view, record["id"], _config(tmpl, record))
    sg_text = _scalar(tmpl, "SECURITY_GROUPS") or ""
    sgs, sg_requests = _secgroups(view, f"{sg_text},{DEFAULT_SECGROUP}", "SECURITY_GROUPS")
    require(view, cmd, *sg_requests)
    new = {**record, **cfg, "secgroups": sgs}
    new["template"] = _template_text(tmpl, cfg, sgs)
    mutations = objects.put(view, KIND, new, record) + vlan_mutations
    mutations += _sync_secgroups(view, record["id"], all_secgroups(record), all_secgroups(new))
    return mutations, ok()


# --- address ranges -----------------------------------------------------------------------


def op_vnet_add_ar(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "template"))
    record = objects.get(view, KIND, arg_int(args, "id"))
    vector = _ar_vectors(arg_template(args), one=True)[0]
    require(view, cmd, objects.auth(KIND, record, "ADMIN"))
    if record["parent_network"] != NO_PARENT:
        raise Reject(
            ErrorCode.ACTION,
            f"virtual network {record['id']} is a reservation: reserve more addresses from"
            f" network {record['parent_network']} instead",
        )
    ar_id = record["next_ar_id"]
    ar = _new_ar(vector, record["id"], ar_id, record["ars"])
    _, requests = _secgroups(view, ",".join(map(str, ar["secgroups"])), f"AR {ar_id}")
    require(view, cmd, *requests)
    new = {**_with_ars(record, [*record["ars"], ar]), "next_ar_id": ar_id + 1}
    mutations = objects.put(view, KIND, new, record)
    mutations += _sync_secgroups(view, record["id"], all_secgroups(record), all_secgroups(new))
    return mutations, ok({"ar_id": ar_id})


def op_vnet_rm_ar(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "ar_id"))
    record = objects.get(view, KIND, arg_int(args, "id"))
    _, ar = _ar_of(record, arg_int(args, "ar_id"))
    reservation = record["parent_network"] != NO_PARENT
    # Giving reserved addresses back is the reservation owner's (OpenNebula's free_ar).
    require(view, cmd, objects.auth(KIND, record, "MANAGE" if reservation else "ADMIN"))
    if leases.used(ar):
        raise Reject(
            ErrorCode.ACTION,
            f"AR {ar['ar_id']} of virtual network {record['id']} has {leases.used(ar)}"
            " leases in use",
        )
    new = _with_ars(record, [a for a in record["ars"] if a["ar_id"] != ar["ar_id"]])
    mutations = objects.put(view, KIND, new, record)
    if reservation:
        freed_mutations, freed = _free_reserved(view, record, only_ar=ar)
        mutations += freed_mutations
        if freed:
            usage = _leases_usage(record["parent_network"], freed)
            mutations += quota.release(view, record["uid"], record["gid"], usage)
    mutations += _sync_secgroups(view, record["id"], all_secgroups(record), all_secgroups(new))
    return mutations, ok()


def op_vnet_update_ar(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "template"))
    record = objects.get(view, KIND, arg_int(args, "id"))
    vector = _ar_vectors(arg_template(args), one=True)[0]
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    raw_id = vector.get("AR_ID", "").strip()
    if not raw_id.isascii() or not raw_id.isdigit():
        raise bad(f"the AR vector needs AR_ID (the range to update), got {raw_id!r}")
    _, old = _ar_of(record, int(raw_id), "template")
    try:
        ar = leases.update_ar(old, vector)
    except leases.LeaseError as e:
        raise bad(str(e)) from None
    _check_overlap([a for a in record["ars"] if a["ar_id"] != ar["ar_id"]], ar)
    _, requests = _secgroups(view, ",".join(map(str, ar["secgroups"])), f"AR {ar['ar_id']}")
    require(view, cmd, *requests)
    new = _replace_ar(record, ar)
    mutations = objects.put(view, KIND, new, record)
    mutations += _sync_secgroups(view, record["id"], all_secgroups(record), all_secgroups(new))
    return mutations, ok()


# --- holds --------------------------------------------------------------------------------

_HOLD_ARGS = {"IP": "ip", "IP6": "ip6", "MAC": "mac"}


def _held_address(args: dict, record: dict) -> tuple[dict, int, str]:
    values = {attr: args.get(arg) for attr, arg in _HOLD_ARGS.items()}
    for attr, value in values.items():
        if value is not None and not isinstance(value, str):
            raise bad(f"argument {_HOLD_ARGS[attr]!r} must be a string, got {type(value).__name__}")
    wanted = _one_address(values, _HOLD_ARGS)
    if wanted is None:
        raise bad("give the address: argument 'ip', 'ip6' or 'mac'")
    ar_id = arg_int(args, "ar_id") if "ar_id" in args else None
    ar, index = _locate(record, *wanted, ar_id=ar_id)
    return ar, index, f"{wanted[0]} {wanted[2]}"


def op_vnet_hold(view: View, args: dict, cmd: dict, index: int) -> Result:
    """Put an address on hold (lease it to VM -1) so nothing gets it."""
    check_args(args, ("id",), ("ip", "ip6", "mac", "ar_id"))
    record = objects.get(view, KIND, arg_int(args, "id"))
    ar, at, shown = _held_address(args, record)
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    taken = leases.lease_at(ar, at)
    if taken is not None:
        raise Reject(
            ErrorCode.ACTION,
            f"{shown} of virtual network {record['id']} is already {leases.holder_text(taken)}",
        )
    new = _replace_ar(record, leases.with_leases(ar, [at], {"vm": leases.HOLD}))
    return objects.put(view, KIND, new, record), ok()


def op_vnet_release(view: View, args: dict, cmd: dict, index: int) -> Result:
    """Release an address on hold."""
    check_args(args, ("id",), ("ip", "ip6", "mac", "ar_id"))
    record = objects.get(view, KIND, arg_int(args, "id"))
    ar, at, shown = _held_address(args, record)
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    lease = leases.lease_at(ar, at)
    if lease is None or leases.holder(lease) != ("vm", leases.HOLD):
        state = "free" if lease is None else leases.holder_text(lease)
        raise Reject(
            ErrorCode.ACTION,
            f"{shown} of virtual network {record['id']} is not on hold (it is {state})",
        )
    new = _replace_ar(record, leases.without_leases(ar, [at]))
    return objects.put(view, KIND, new, record), ok()


# --- reservations -------------------------------------------------------------------------


def _reserved_range(args: dict, parent: dict, size: int) -> tuple[dict, int]:
    """The parent AR and first index of `size` consecutive free addresses to reserve."""
    pid = parent["id"]
    if "ar_id" not in args:
        if any(k in args for k in ("ip", "ip6", "mac")):
            raise bad("argument 'ar_id' is needed to reserve from a given address")
        for ar in parent["ars"]:
            first = leases.free_run(ar, size)
            if first is not None:
                return ar, first
        raise Reject(
            ErrorCode.ACTION,
            f"not enough free addresses in an address range of virtual network {pid}"
            f" ({size} consecutive wanted)",
        )
    _, ar = _ar_of(parent, arg_int(args, "ar_id"))
    values = {attr: args.get(arg) for attr, arg in _HOLD_ARGS.items()}
    wanted = _one_address(values, _HOLD_ARGS)
    start = None
    if wanted is not None:
        _, start = _locate(parent, *wanted, ar_id=ar["ar_id"])
    first = leases.free_run(ar, size, start)
    if first is None:
        where = "" if wanted is None else f" from {wanted[0]} {wanted[2]}"
        raise Reject(
            ErrorCode.ACTION,
            f"not enough free addresses in AR {ar['ar_id']} of virtual network {pid}"
            f" ({size} consecutive wanted{where})",
        )
    return ar, first


def op_vnet_reserve(view: View, args: dict, cmd: dict, index: int) -> Result:
    """OpenNebula's one.vn.reserve: take `size` consecutive addresses of this network into
    a new network of the caller ("name"), or into one of its existing reservations
    ("network_id"), optionally from AR "ar_id" and its address "ip"/"ip6"/"mac"."""
    check_args(args, ("id", "size"), ("name", "ar_id", "ip", "ip6", "mac", "network_id"))
    parent = objects.get(view, KIND, arg_int(args, "id"))
    pid = parent["id"]
    size = arg_int(args, "size", minimum=1)
    existing = None
    if "network_id" in args:
        existing = objects.ref(view, KIND, args["network_id"], "network_id")
        if existing["id"] == pid:
            raise bad("argument 'network_id': a network cannot hold a reservation of itself")
        if existing["parent_network"] != pid:
            raise Reject(
                ErrorCode.ACTION,
                f"virtual network {existing['id']} is not a reservation of network {pid}",
            )
        if "name" in args:
            raise bad("give 'name' (a new reservation) or 'network_id' (an existing one)")
    elif "name" not in args:
        raise bad("argument 'name' is needed for a new reservation (or give 'network_id')")
    if parent["parent_network"] != NO_PARENT:
        raise Reject(
            ErrorCode.ACTION,
            f"cannot reserve addresses from virtual network {pid}: it is itself a reservation"
            f" of network {parent['parent_network']}",
        )
    requests = [objects.auth(KIND, parent, "USE")]
    if existing is not None:
        requests.append(objects.auth(KIND, existing, "MANAGE"))
    require(view, cmd, *requests)
    ar, first = _reserved_range(args, parent, size)

    ov = Overlay(view)
    if existing is None:
        rid, _ = next_id(view, f"obj:{KIND}")
        tmpl = template.parse(parent["template"])
        fields = {
            key: parent[key]
            for key in ("vn_mad", "bridge", "phydev", "vlan_id", "outer_vlan_id", "cids")
        }
        # The reservation uses the parent's VLANs; they stay the parent's to release.
        fields.update(vlan_id_automatic=False, outer_vlan_id_automatic=False)
        child_ar = leases.reservation_ar(ar, first, size, 0)
        fields.update(
            secgroups=list(parent["secgroups"]),
            ars=[child_ar],
            next_ar_id=1,
            used_leases=0,
            parent_network=pid,
            vrouters=[],
        )
        text = _template_text(tmpl, fields, parent["secgroups"])
        child, mutations = objects.new(view, cmd, KIND, args["name"], text, fields)
        assert child["id"] == rid
        ov.add(mutations)
        ov.add(_cluster_members(ov, child["cids"], rid, add=True))
        ov.add(_sync_secgroups(ov, rid, [], all_secgroups(child)))
    else:
        rid = existing["id"]
        child_ar = leases.reservation_ar(ar, first, size, existing["next_ar_id"])
        _check_overlap(existing["ars"], child_ar)
        new = {**_with_ars(existing, [*existing["ars"], child_ar])}
        new["next_ar_id"] = child_ar["ar_id"] + 1
        ov.add(objects.put(view, KIND, new, existing))
        ov.add(_sync_secgroups(ov, rid, all_secgroups(existing), all_secgroups(new)))
        child = new
    taken = leases.with_leases(ar, list(range(first, first + size)), {"vnet": rid})
    ov.add(objects.put(ov, KIND, _replace_ar(parent, taken), parent))
    # As OpenNebula: the reservation's owner is charged the leases of the parent network.
    ov.add(quota.charge(ov, child["uid"], child["gid"], _leases_usage(pid, size)))
    return ov.mutations, ok({"id": rid})


HANDLERS = {
    "vnet.allocate": op_vnet_allocate,
    "vnet.delete": op_vnet_delete,
    "vnet.update": op_vnet_update,
    "vnet.add_ar": op_vnet_add_ar,
    "vnet.rm_ar": op_vnet_rm_ar,
    "vnet.update_ar": op_vnet_update_ar,
    "vnet.hold": op_vnet_hold,
    "vnet.release": op_vnet_release,
    "vnet.reserve": op_vnet_reserve,
}
