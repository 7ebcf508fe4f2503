"""What the VM ops share: the VM record, template checks, creation, and `step`, the one
place where a VM moves through the life-cycle table (raftcore.lifecycle) with every
consequence in the store: history records, host capacity, quotas, devices, release.

The VM record (raftcore.objects' common fields plus; showback/accounting read it)::

    state, lcm_state, prev_state, prev_lcm_state   OpenNebula's numbers (lifecycle)
    cpu (float), vcpu (int), memory (int, MB)
    disks   [{"disk_id", "image_id"?, "image"?, "size" (MB), "type", "target"?,
              "persistent"?, "datastore_id"?, "snapshots": [{"id", "name", "date",
              "active"}], "next_snapshot_id", "attach"? / "detach"? (hot-plug in flight)}]
    nics    [{"nic_id", "network_id", "network", "ip"?, "mac"?, ...the lease's fields}]
    history [{"seq", "hid", "hostname", "cid", "ds_id", "stime", "etime" (0 while open),
              "pstime", "petime", "rstime", "retime", "estime", "eetime", "reason",
              "action", "uid", "gid", "req_id"}]
    stime, etime (0 until DONE), deploy_id ("one-<id>" while on a host)
    sched_actions [raftcore.schedule records], next_sched_id
    vmgroup {"id", "role"} | None, template_id (int | None)
    vrouter_id  the virtual router the VM serves (vrouter.instantiate), or None; it
              leaves the router's "vms" at DONE
    intent  the side effect the reconciler must drive now (lifecycle), or None
    resched the scheduler should move the VM (lifecycle.Transition.resched)
    user_template  the template's non-system attributes (text)
    capacity [{"hid", "cpu", "memory"}]: what the VM holds on hosts (two during a
              migration: the host it leaves, then the one it goes to)
    pending_op  the hot-plug / disk snapshot awaiting its outcome, or None
    error   the message of the last failure outcome
    quota_uid, quota_gid   whom the quotas were charged to (released from them)

`template` is the VM's complete template text (merged from its VM template, costs
included, DISK/NIC annotated with DISK_ID/NIC_ID and the leases).

History records follow OpenNebula: one record per stay of the guest on a host. It opens
at deploy (or at a migration, on the new host), or when a powered-off / suspended guest
starts again; it closes (etime) when the VM leaves the host, is migrated away, or its
guest is settled down (POWEROFF, SUSPENDED). `action` is the name of the event that
ended it (the user action, e.g. "poweroff", set when the action is taken), `reason` NONE
0 / ERROR 1 (a failure) / USER 2 (a user action).

Quotas: VMS, CPU, MEMORY, SYSTEM_DISK_SIZE (the volatile disks) are charged at creation
and released at DONE; RUNNING_VMS, RUNNING_CPU, RUNNING_MEMORY while `counts_running`:
PENDING, or ACTIVE in an LCM state where the guest runs or is being brought up
(everything but the epilogs, the cleanup of a deleted VM, and the operations on a
powered-off, suspended, stopped or undeployed VM: NOT_RUNNING_LCM). A client action
that makes a VM count as running is refused when the quota would be exceeded; an outcome
(what really happened on a host) is counted even then.
"""

from __future__ import annotations

import copy
import ipaddress
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from raftcore import lifecycle, objects, quota, schedule, schema, template
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode
from raftcore.lifecycle import LcmState as L
from raftcore.lifecycle import VmState as S
from raftcore.ops import hosts, images, vmgroups, vnets
from raftcore.ops.common import Mutation, Overlay, Reject, View, bad, next_id, require

KIND = "vm"
MAX_CPU = 10_000  # CPUs
MAX_VCPU = 10_000
MAX_MB = 2**32  # memory and disk sizes, MB
CPU_SCALE = 100  # CPU has at most two decimals (quota and host capacity count hundredths)

# History record reasons (OpenNebula's History::EndReason).
REASON_NONE, REASON_ERROR, REASON_USER = 0, 1, 2

# Attributes OpenNebula keeps in a VM's TEMPLATE; the rest is its USER_TEMPLATE.
SYSTEM_ATTRS = frozenset(
    "CPU VCPU MEMORY DISK NIC NIC_ALIAS NIC_DEFAULT OS FEATURES GRAPHICS INPUT CONTEXT RAW"
    " SCHED_ACTION VMGROUP TEMPLATE_ID VMID NAME CPU_MODEL NUMA_NODE TOPOLOGY PCI"
    " SPICE_OPTIONS VIDEO MEMORY_SLOTS HYPERVISOR AUTOMATIC_REQUIREMENTS VROUTER_ID"
    # What showback charges: set by the VM template, not by the VM's owner afterwards.
    " CPU_COST MEMORY_COST DISK_COST".split()
)

# --- an overlay view -----------------------------------------------------------------


# --- values ---------------------------------------------------------------------------

_DECIMAL = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,12})?")
_INT = re.compile(r"[0-9]{1,12}")
_TARGET = re.compile(r"(?:hd|sd|vd|xvd)[a-z]{1,2}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")


def cpu_value(value: Any, where: str) -> float:
    """CPU (a fraction of physical CPUs): > 0, at most two decimals, at most MAX_CPU."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise bad(f"{where} must be a number of CPUs, got {type(value).__name__}")
    text = value.strip() if isinstance(value, str) else repr(value)
    if not _DECIMAL.fullmatch(text):
        raise bad(f"{where} must be a positive number of CPUs, got {text[:40]!r}")
    number = Decimal(text)
    if (number * CPU_SCALE) != (number * CPU_SCALE).to_integral_value():
        raise bad(f"{where} must have at most two decimals, got {text}")
    if not 0 < number <= MAX_CPU:
        raise bad(f"{where} must be > 0 and at most {MAX_CPU}, got {text}")
    return float(number)


def int_value(value: Any, where: str, lo: int, hi: int, unit: str = "") -> int:
    """A whole number in [lo, hi] given as text (a template) or an int (an argument)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise bad(f"{where} must be a whole number, got {type(value).__name__}")
    text = value.strip() if isinstance(value, str) else str(value)
    if not _INT.fullmatch(text):
        raise bad(f"{where} must be a whole number{unit}, got {text[:40]!r}")
    number = int(text)
    if not lo <= number <= hi:
        raise bad(f"{where} must be {lo}..{hi}{unit}, got {number}")
    return number


def cents(cpu: float) -> int:
    return round(cpu * CPU_SCALE)


def cpu_text(cpu: float) -> str:
    """CPU as a template shows it: "1.5", "2"."""
    return format(Decimal(repr(cpu)).normalize(), "f")


# --- template checks ------------------------------------------------------------------


def _vector(value: template.Value, where: str, example: str) -> dict[str, str]:
    if isinstance(value, str):
        raise bad(f"{where} must be a vector ({example})")
    return dict(value)


def _ref_spec(vec: dict[str, str], where: str, key: str) -> dict:
    """IMAGE_ID / NETWORK_ID, or IMAGE / NETWORK by name (of IMAGE_UID / IMAGE_UNAME)."""
    id_key, uid_key, uname_key = f"{key}_ID", f"{key}_UID", f"{key}_UNAME"
    if id_key in vec and key in vec:
        raise bad(f"{where}: give {id_key} or {key} (a name), not both")
    spec: dict[str, Any] = {"id": None, "name": None, "uid": None, "uname": None}
    if id_key in vec:
        spec["id"] = int_value(vec[id_key], f"{where}: {id_key}", 0, 2**31 - 1)
    elif key in vec:
        name = vec[key].strip()
        if not name:
            raise bad(f"{where}: {key} is empty")
        spec["name"] = name
        if uid_key in vec:
            spec["uid"] = int_value(vec[uid_key], f"{where}: {uid_key}", 0, 2**31 - 1)
        elif uname_key in vec:
            spec["uname"] = vec[uname_key].strip()
    return spec


def check_disk(vec: dict[str, str], where: str) -> dict:
    """The shape of one DISK vector: an image disk (IMAGE_ID or IMAGE) or a volatile one
    (SIZE, TYPE fs|swap)."""
    spec = {"image": _ref_spec(vec, where, "IMAGE"), "size": None, "type": None, "target": None}
    image = spec["image"]["id"] is not None or spec["image"]["name"] is not None
    if "SIZE" in vec:
        spec["size"] = int_value(vec["SIZE"], f"{where}: SIZE", 1, MAX_MB, " MB")
    if not image:
        if spec["size"] is None:
            raise bad(f"{where}: needs IMAGE_ID (or IMAGE), or SIZE for a volatile disk")
        kind = vec.get("TYPE", "fs").strip().lower()
        if kind not in ("fs", "swap"):
            raise bad(f"{where}: TYPE of a volatile disk must be fs or swap, got {kind!r}")
        spec["type"] = kind
    if "TARGET" in vec:
        target = vec["TARGET"].strip()
        if not _TARGET.fullmatch(target):
            raise bad(f"{where}: TARGET must be a device such as vda, sdb, hdc, got {target!r}")
        spec["target"] = target
    return spec


def check_nic(vec: dict[str, str], where: str) -> dict:
    """The shape of one NIC vector: NETWORK_ID (or NETWORK), and IP / MAC if asked for."""
    spec = {"net": _ref_spec(vec, where, "NETWORK")}
    if spec["net"]["id"] is None and spec["net"]["name"] is None:
        raise bad(f"{where}: needs NETWORK_ID (or NETWORK, a network name)")
    if "IP" in vec:
        try:
            ipaddress.IPv4Address(vec["IP"].strip())
        except ValueError:
            raise bad(f"{where}: IP must be an IPv4 address, got {vec['IP'][:40]!r}") from None
    if "MAC" in vec and not _MAC.fullmatch(vec["MAC"].strip()):
        raise bad(f"{where}: MAC must look like 02:00:0a:00:00:05, got {vec['MAC'][:40]!r}")
    return spec


def check_capacity(t: template.Template, complete: bool) -> dict:
    """CPU > 0 (two decimals), VCPU >= 1, MEMORY > 0 MB; `complete`: CPU and MEMORY must
    be there (a VM), else only checked when given (a VM template)."""
    out: dict[str, Any] = {}
    for key in ("CPU", "VCPU", "MEMORY"):
        try:
            value = t.scalar(key)
        except template.TemplateError as e:
            raise bad(f"argument 'template': {e}") from None
        if value is None:
            if complete and key != "VCPU":
                raise bad(f"argument 'template' must set {key}")
            out[key.lower()] = None
            continue
        where = f"argument 'template': {key}"
        if key == "CPU":
            out["cpu"] = cpu_value(value, where)
        elif key == "VCPU":
            out["vcpu"] = int_value(value, where, 1, MAX_VCPU)
        else:
            out["memory"] = int_value(value, where, 1, MAX_MB, " MB")
    return out


def check_template(t: template.Template, complete: bool, now_ms: int) -> dict:
    """Every check of a VM template that needs no other object: capacity, DISK and NIC
    shapes, unique TARGETs, VMGROUP, SCHED_ACTION."""
    spec = check_capacity(t, complete)
    spec["disks"] = [
        check_disk(_vector(v, f"DISK {i}", "DISK = [ IMAGE_ID = 0 ]"), f"DISK {i}")
        for i, v in enumerate(t.get_all("DISK"))
    ]
    targets = [d["target"] for d in spec["disks"] if d["target"]]
    dup = sorted({x for x in targets if targets.count(x) > 1})
    if dup:
        raise bad(f"DISK TARGET {', '.join(dup)} used by more than one disk")
    spec["nics"] = [
        check_nic(_vector(v, f"NIC {i}", "NIC = [ NETWORK_ID = 0 ]"), f"NIC {i}")
        for i, v in enumerate(t.get_all("NIC"))
    ]
    groups = t.get_all("VMGROUP")
    if len(groups) > 1:
        raise bad("a VM joins at most one VMGROUP")
    spec["vmgroup"] = None
    if groups:
        vec = _vector(groups[0], "VMGROUP", 'VMGROUP = [ VMGROUP_ID = 0, ROLE = "web" ]')
        if "VMGROUP_ID" not in vec or not vec.get("ROLE", "").strip():
            raise bad("VMGROUP needs VMGROUP_ID and ROLE")
        gid = int_value(vec["VMGROUP_ID"], "VMGROUP: VMGROUP_ID", 0, 2**31 - 1)
        spec["vmgroup"] = (gid, vec["ROLE"].strip())
    scheds = t.get_all("SCHED_ACTION")
    if len(scheds) > schedule.MAX_SCHED_ACTIONS:
        raise bad(f"at most {schedule.MAX_SCHED_ACTIONS} SCHED_ACTION per VM")
    spec["sched"] = []
    for i, value in enumerate(scheds):
        vec = _vector(value, f"SCHED_ACTION {i}", 'SCHED_ACTION = [ ACTION = "poweroff", ... ]')
        try:
            spec["sched"].append(schedule.parse(vec, now_ms))
        except schedule.SchedError as e:
            raise bad(f"SCHED_ACTION {i}: {e}") from None
    return spec


def parse_text(text: str) -> template.Template:
    try:
        return template.parse(text)
    except template.TemplateError as e:  # stored texts are canonical; never expected
        raise bad(f"argument 'template': {e}") from None


def name_of(t: template.Template) -> str | None:
    try:
        return t.scalar("NAME")
    except template.TemplateError as e:
        raise bad(f"argument 'template': {e}") from None


def caller_gid(view: View, cmd: dict) -> int:
    return vmgroups.caller_gid(view, cmd)


def _uid_of(view: View, spec: dict, cmd: dict, where: str) -> int:
    if spec["uid"] is not None:
        return spec["uid"]
    if spec["uname"]:
        uid = view.get(schema.USERS_BY_NAME, schema.str_key(spec["uname"]))
        if uid is None:
            raise bad(f"{where}: no user named {spec['uname']!r}")
        return uid
    return max(cmd["uid"], 0)


def resolve(view: View, cmd: dict, kind: str, spec: dict, where: str, key: str) -> dict:
    """The object a DISK / NIC names (by id, or by name of an owner)."""
    if spec["id"] is not None:
        return objects.ref(view, kind, spec["id"], f"{where}: {key}_ID")
    uid = _uid_of(view, spec, cmd, where)
    oid = objects.by_name(view, kind, spec["name"], uid)
    if oid is None:
        label = objects.KINDS[kind].label
        raise bad(f"{where}: user {uid} has no {label} named {spec['name']!r}")
    return objects.get(view, kind, oid)


# --- quotas ---------------------------------------------------------------------------

NOT_RUNNING_LCM = frozenset(
    L[n]
    for n in (
        "EPILOG EPILOG_STOP EPILOG_UNDEPLOY EPILOG_FAILURE EPILOG_STOP_FAILURE"
        " EPILOG_UNDEPLOY_FAILURE CLEANUP_DELETE"
        " PROLOG_MIGRATE_POWEROFF PROLOG_MIGRATE_POWEROFF_FAILURE PROLOG_MIGRATE_SUSPEND"
        " PROLOG_MIGRATE_SUSPEND_FAILURE HOTPLUG_PROLOG_POWEROFF HOTPLUG_EPILOG_POWEROFF"
        " HOTPLUG_NIC_POWEROFF HOTPLUG_SAVEAS_POWEROFF HOTPLUG_SAVEAS_SUSPENDED"
        " HOTPLUG_SAVEAS_UNDEPLOYED HOTPLUG_SAVEAS_STOPPED DISK_SNAPSHOT_POWEROFF"
        " DISK_SNAPSHOT_REVERT_POWEROFF DISK_SNAPSHOT_DELETE_POWEROFF DISK_SNAPSHOT_SUSPENDED"
        " DISK_SNAPSHOT_DELETE_SUSPENDED DISK_RESIZE_POWEROFF DISK_RESIZE_UNDEPLOYED"
        " BACKUP_POWEROFF RESTORE"
    ).split()
)
# Of those, the ones where the guest is down but the VM still sits on its host and comes
# back to POWEROFF / SUSPENDED: no history record is opened for them.
GUEST_OFF_OPS = NOT_RUNNING_LCM - {
    L[n]
    for n in (
        "EPILOG EPILOG_STOP EPILOG_UNDEPLOY EPILOG_FAILURE EPILOG_STOP_FAILURE"
        " EPILOG_UNDEPLOY_FAILURE CLEANUP_DELETE PROLOG_MIGRATE_POWEROFF"
        " PROLOG_MIGRATE_POWEROFF_FAILURE PROLOG_MIGRATE_SUSPEND PROLOG_MIGRATE_SUSPEND_FAILURE"
    ).split()
}


def counts_running(state: int, lcm: int) -> bool:
    """Whether a VM in (state, lcm) counts in the RUNNING_* quotas."""
    return state == S.PENDING or (state == S.ACTIVE and lcm not in NOT_RUNNING_LCM)


def system_disk_mb(vm: dict) -> int:
    """SYSTEM_DISK_SIZE: the volatile disks (they live in the system datastore)."""
    return sum(d["size"] for d in vm["disks"] if "image_id" not in d)


def vm_usage(vm: dict) -> dict:
    return {
        "VMS": 1,
        "CPU": vm["cpu"],
        "MEMORY": vm["memory"],
        "SYSTEM_DISK_SIZE": system_disk_mb(vm),
    }


def running_usage(vm: dict) -> dict:
    return {"RUNNING_VMS": 1, "RUNNING_CPU": vm["cpu"], "RUNNING_MEMORY": vm["memory"]}


def quota_delta(ov: Overlay, vm: dict, delta: dict[str, float | int], check: bool) -> None:
    """Raise (check: against the limits) and lower the VM section counters of the VM's
    quota owner by `delta` (metric -> signed amount)."""
    uid, gid = vm["quota_uid"], vm["quota_gid"]
    up = {m: v for m, v in delta.items() if v > 0}
    down = {m: -v for m, v in delta.items() if v < 0}
    if down:
        ov.add(quota.release(ov, uid, gid, {"VM": down}))
    if up:
        ov.add(quota.charge(ov, uid, gid, {"VM": up}, check=check))


def cpu_delta(new: float, old: float) -> float:
    """new - old without float noise (two decimals)."""
    return (cents(new) - cents(old)) / CPU_SCALE


# --- devices (shared by creation, hot-plug and release) ----------------------------------


def disk_record(disk_id: int, spec: dict, image: dict | None) -> dict:
    disk: dict[str, Any] = {"disk_id": disk_id, "snapshots": [], "next_snapshot_id": 0}
    if image is None:
        disk.update(size=spec["size"], type=spec["type"])
    else:
        image_size = image.get("size_mb") or image.get("size") or 0
        size = spec["size"] or image_size
        if spec["size"] and image_size and spec["size"] < image_size:
            raise bad(
                f"DISK {disk_id}: SIZE {spec['size']} MB is smaller than image "
                f"{image['id']} ({image_size} MB)"
            )
        disk.update(
            image_id=image["id"],
            image=image["name"],
            size=size,
            type=str(image.get("type", "OS")),
            persistent=bool(image.get("persistent", False)),
        )
        if isinstance(image.get("ds_id"), int):
            disk["datastore_id"] = image["ds_id"]
    if spec["target"]:
        disk["target"] = spec["target"]
    return disk


def disk_vector(disk: dict, given: dict[str, str]) -> list[tuple[str, str]]:
    """The DISK vector the VM's template shows: what was asked, with DISK_ID, IMAGE_ID
    and SIZE as resolved."""
    out = {k: v for k, v in given.items() if k not in ("DISK_ID",)}
    out["DISK_ID"] = str(disk["disk_id"])
    if "image_id" in disk:
        out["IMAGE_ID"] = str(disk["image_id"])
        out.pop("IMAGE", None)
        out.pop("IMAGE_UID", None)
        out.pop("IMAGE_UNAME", None)
    out["SIZE"] = str(disk["size"])
    return list(out.items())


def nic_record(nic_id: int, net: dict, attrs: dict) -> dict:
    nic = {"nic_id": nic_id, "network_id": net["id"], "network": net["name"]}
    for key, value in attrs.items():
        k = str(key).lower()
        if k not in nic and isinstance(value, str | int | float | bool):
            nic[k] = value
    return nic


def nic_vector(nic: dict, given: dict[str, str]) -> list[tuple[str, str]]:
    out = {k: v for k, v in given.items() if k not in ("NIC_ID",)}
    for key in ("NETWORK", "NETWORK_UID", "NETWORK_UNAME"):
        out.pop(key, None)
    out["NIC_ID"] = str(nic["nic_id"])
    out["NETWORK_ID"] = str(nic["network_id"])
    for key, value in nic.items():
        shown = isinstance(value, str | int | float) and not isinstance(value, bool)
        if key not in ("nic_id", "network_id", "network") and shown:
            out[key.upper()] = str(value)
    return list(out.items())


def acquire_disk(
    ov: Overlay, cmd: dict, vm_id: int, disk_id: int, spec: dict, image: dict | None
) -> dict:
    """A new disk of VM `vm_id`: the image acquired for it (raftcore.ops.images)."""
    if image is None:
        return disk_record(disk_id, spec, None)
    acquired, mutations = images.acquire_for_vm(ov, cmd, image["id"], vm_id)
    ov.add(mutations)
    return disk_record(disk_id, spec, acquired or image)


def release_disk(ov: Overlay, vm: dict, disk: dict) -> None:
    if "image_id" in disk:
        ov.add(images.release_for_vm(ov, disk["image_id"], vm["id"]))


def lease_nic(
    ov: Overlay,
    cmd: dict,
    vm_id: int,
    nic_id: int,
    net: dict,
    given: dict,
    owner: tuple[int, int] | None = None,
) -> dict:
    """A new NIC of VM `vm_id`: a lease of `net` (raftcore.ops.vnets), whose NETWORK
    quota goes to `owner` (the VM's quota owner; default the caller)."""
    request = {
        k: v
        for k, v in given.items()
        if k not in ("NETWORK_ID", "NETWORK", "NETWORK_UID", "NETWORK_UNAME", "NIC_ID")
    }
    owner = (max(cmd["uid"], 0), caller_gid(ov, cmd)) if owner is None else owner
    attrs, mutations = vnets.lease_for_vm(ov, cmd, net["id"], vm_id, request, owner=owner)
    ov.add(mutations)
    return nic_record(nic_id, net, attrs or {})


def release_nic(ov: Overlay, vm: dict, nic: dict) -> None:
    # vnets reads the lease back in its own (template) spelling: MAC, AR_ID, ...
    lease = {k.upper(): str(v) for k, v in nic.items() if not isinstance(v, bool)}
    owner = (vm["quota_uid"], vm["quota_gid"])
    ov.add(vnets.release_for_vm(ov, nic["network_id"], vm["id"], lease, owner=owner))


def edit_vectors(
    text: str, key: str, keep: Callable[[dict[str, str]], bool], add: list | None = None
) -> str:
    """The template text with the `key` vectors `keep` refuses removed (and `add` appended)."""
    t = template.parse(text)
    items = [(k, v) for k, v in t.items() if k != key or isinstance(v, str) or keep(dict(v))]
    out = template.Template(items)
    for vector in add or []:
        out.append(key, vector)
    return template.render(out)


def set_scalars(text: str, values: dict[str, str]) -> str:
    t = template.parse(text)
    for key, value in values.items():
        t.set(key, value)
    return template.render(t)


def user_template(t: template.Template) -> str:
    return template.render(
        template.Template([(k, v) for k, v in t.items() if k not in SYSTEM_ATTRS])
    )


# --- creation -------------------------------------------------------------------------


def create(
    view: View,
    cmd: dict,
    text: str,
    *,
    hold: bool,
    name: str | None = None,
    template_id: int | None = None,
    vrouter_id: int | None = None,
    extra_auth: tuple[AuthRequest, ...] = (),
) -> tuple[dict, list[Mutation]]:
    """A new VM from complete template text (allocate, instantiate): checked, authorized
    (CREATE VM in the caller's group, USE on its images, networks and VM group, plus
    `extra_auth`), its images acquired, leases taken, VM group joined, quotas charged.
    `vrouter_id`: a virtual router's VM (the caller lists it in the router)."""
    t = parse_text(text)
    spec = check_template(t, complete=True, now_ms=cmd["ts"])
    ov = Overlay(view)
    vm_id, _ = next_id(ov, f"obj:{KIND}")
    gid = caller_gid(ov, cmd)
    # Resolve every object first and authorize everything at once, so a refusal for
    # rights comes before any other work (and names the first right missing).
    disk_vectors = [dict(v) for v in t.get_all("DISK")]
    nic_vectors = [dict(v) for v in t.get_all("NIC")]
    chosen = [
        resolve(ov, cmd, "image", d["image"], f"DISK {i}", "IMAGE")
        if d["image"]["id"] is not None or d["image"]["name"] is not None
        else None
        for i, d in enumerate(spec["disks"])
    ]
    nets = [
        resolve(ov, cmd, "vnet", n["net"], f"NIC {i}", "NETWORK")
        for i, n in enumerate(spec["nics"])
    ]
    requests = [objects.create_request(KIND, gid), *extra_auth]
    requests += [objects.auth("image", img, "USE") for img in chosen if img is not None]
    requests += [objects.auth("vnet", net, "USE") for net in nets]
    group_mutations: list[Mutation] = []
    vmgroup = None
    if spec["vmgroup"] is not None:
        group_id, role = spec["vmgroup"]
        request, group_mutations = vmgroups.join(ov, group_id, role, vm_id)
        requests.append(request)
        vmgroup = {"id": group_id, "role": role}
    require(ov, cmd, *requests)
    ov.add(group_mutations)

    disks = [acquire_disk(ov, cmd, vm_id, i, d, chosen[i]) for i, d in enumerate(spec["disks"])]
    nics = [lease_nic(ov, cmd, vm_id, i, nets[i], nic_vectors[i]) for i in range(len(nets))]
    sched = [
        {**s, "id": i, "done": 0, "runs": 0, "message": ""} for i, s in enumerate(spec["sched"])
    ]
    # The stored text: the one name is the record's; DISK/NIC show what they got.
    t.remove("NAME")
    t.remove("SCHED_ACTION")  # kept in the record (sched_actions), where they change
    t.set("CPU", cpu_text(spec["cpu"]))
    t.set("VCPU", str(spec["vcpu"] or 1))
    t.set("MEMORY", str(spec["memory"]))
    t.set("VMID", str(vm_id))
    if template_id is not None:
        t.set("TEMPLATE_ID", str(template_id))
    # VROUTER_ID tells what the VM is: only vrouter.instantiate may set it.
    t.remove("VROUTER_ID")
    if vrouter_id is not None:
        t.set("VROUTER_ID", str(vrouter_id))
    t.remove("DISK")  # check_template refused any DISK or NIC that is not a vector
    t.remove("NIC")
    for d in disks:
        t.append("DISK", disk_vector(d, disk_vectors[d["disk_id"]]))
    for n in nics:
        t.append("NIC", nic_vector(n, nic_vectors[n["nic_id"]]))
    stored = template.render(t)
    try:
        template.check_size(stored)
    except template.TemplateError as e:
        raise bad(f"the VM's template: {e}") from None
    state, lcm = lifecycle.initial_state(hold=hold)
    uid = max(cmd["uid"], 0)
    fields = {
        "state": int(state),
        "lcm_state": int(lcm),
        "prev_state": int(state),
        "prev_lcm_state": int(lcm),
        "cpu": spec["cpu"],
        "vcpu": spec["vcpu"] or 1,
        "memory": spec["memory"],
        "disks": disks,
        "nics": nics,
        "history": [],
        "stime": cmd["ts"],
        "etime": 0,
        "deploy_id": "",
        "sched_actions": sched,
        "next_sched_id": len(sched),
        "next_disk_id": len(disks),
        "next_nic_id": len(nics),
        "vmgroup": vmgroup,
        "template_id": template_id,
        "vrouter_id": vrouter_id,
        "intent": None,
        "resched": False,
        "user_template": user_template(t),
        "capacity": [],
        "pending_op": None,
        "error": "",
        "quota_uid": uid,
        "quota_gid": gid,
    }
    usage = {"VM": vm_usage(fields)}
    if counts_running(state, lcm):
        usage["VM"].update(running_usage(fields))
    ov.add(quota.charge(ov, uid, gid, usage))
    record, mutations = objects.new(ov, cmd, KIND, name or f"one-{vm_id}", stored, fields, gid=gid)
    assert record["id"] == vm_id
    ov.add(mutations)
    return record, ov.mutations


# --- history --------------------------------------------------------------------------

# The user actions that end the guest's stay where it is (set as the open record's action).
CLOSING_ACTIONS = frozenset(
    {
        "terminate",
        "terminate-hard",
        "undeploy",
        "undeploy-hard",
        "poweroff",
        "poweroff-hard",
        "stop",
        "suspend",
        "recover-delete",
        "recover-delete-recreate",
    }
)
OFF_HOST = frozenset(
    {S.PENDING, S.HOLD, S.STOPPED, S.UNDEPLOYED, S.DONE, S.CLONING, S.CLONING_FAILURE}
)
GUEST_DOWN = frozenset({S.POWEROFF, S.SUSPENDED})
GUEST_STARTS = frozenset(
    lcm
    for lcm in L
    if lcm is not L.LCM_INIT and lifecycle.pending_operation(S.ACTIVE, lcm) == "boot"
) | {L.RUNNING, L.MIGRATE, L.UNKNOWN}
EPILOGS = frozenset({L.EPILOG, L.EPILOG_STOP, L.EPILOG_UNDEPLOY})
MIGRATING = frozenset(
    L[n]
    for n in (
        "SAVE_MIGRATE PROLOG_MIGRATE PROLOG_MIGRATE_POWEROFF PROLOG_MIGRATE_SUSPEND"
        " PROLOG_MIGRATE_UNKNOWN PROLOG_MIGRATE_FAILURE PROLOG_MIGRATE_POWEROFF_FAILURE"
        " PROLOG_MIGRATE_SUSPEND_FAILURE PROLOG_MIGRATE_UNKNOWN_FAILURE MIGRATE"
    ).split()
)
FAILURES = frozenset(lcm for lcm in L if lcm.name.endswith("_FAILURE"))


def open_record(vm: dict) -> dict | None:
    """The history record of the guest's current stay (the last one, while open)."""
    if vm["history"] and vm["history"][-1]["etime"] == 0:
        return vm["history"][-1]
    return None


def new_record(
    view: View, vm: dict, cmd: dict, host: dict, ds_id: int, *, prolog: bool, running: bool
) -> dict:
    ts = cmd["ts"]
    record = {
        "seq": len(vm["history"]),
        "hid": host["id"],
        "hostname": host["name"],
        "cid": (host.get("cids") or [-1])[0],
        "ds_id": ds_id,
        "stime": ts,
        "etime": 0,
        "pstime": ts if prolog else 0,
        "petime": 0,
        "rstime": ts if running else 0,
        "retime": 0,
        "estime": 0,
        "eetime": 0,
        "reason": REASON_NONE,
        "action": "",
        "uid": cmd["uid"],
        "gid": caller_gid(view, cmd) if cmd["uid"] >= 0 else -1,
        "req_id": cmd["rid"],
    }
    vm["history"].append(record)
    return record


def _copy_record(view: View, vm: dict, cmd: dict) -> dict | None:
    # The guest is back on the host it is on (capacity's last entry): a new record there.
    hid = vm["capacity"][-1]["hid"]
    last = next((h for h in reversed(vm["history"]) if h["hid"] == hid), None)
    if last is None:
        return None
    host = {"id": hid, "name": last["hostname"], "cids": [last["cid"]]}
    return new_record(view, vm, cmd, host, last["ds_id"], prolog=False, running=False)


def close_record(record: dict, ts: int, action: str, reason: int | None = None) -> None:
    for start, end in (("pstime", "petime"), ("rstime", "retime"), ("estime", "eetime")):
        if record[start] and not record[end]:
            record[end] = ts
    record["etime"] = ts
    if not record["action"]:
        record["action"] = action
    if reason is not None:
        record["reason"] = reason


def _stamp_action(view: View, record: dict, cmd: dict, event: str) -> None:
    record.update(
        action=event,
        reason=REASON_USER,
        uid=cmd["uid"],
        gid=caller_gid(view, cmd) if cmd["uid"] >= 0 else -1,
        req_id=cmd["rid"],
    )


def _history(view: View, vm: dict, old: tuple[int, int], event: str, cmd: dict) -> None:
    ts, state, lcm = cmd["ts"], vm["state"], vm["lcm_state"]
    record = open_record(vm)
    if record is None and vm["capacity"] and state == S.ACTIVE and lcm not in GUEST_OFF_OPS:
        record = _copy_record(view, vm, cmd)
    if record is None:
        return
    if event in CLOSING_ACTIONS:
        _stamp_action(view, record, cmd, event)
    if lcm in FAILURES and state == S.ACTIVE:
        record["reason"] = REASON_ERROR
    if (
        lifecycle.pending_operation(*old) == "prolog"
        and lifecycle.pending_operation(state, lcm) != "prolog"
    ):
        if record["pstime"] and not record["petime"]:
            record["petime"] = ts
    if state == S.ACTIVE and lcm in GUEST_STARTS and not record["rstime"]:
        record["rstime"] = ts
    if state == S.ACTIVE and lcm in EPILOGS and not record["estime"]:
        record["estime"] = ts
        if record["rstime"] and not record["retime"]:
            record["retime"] = ts
    if state in OFF_HOST or state in GUEST_DOWN:
        close_record(record, ts, event)


# --- host capacity --------------------------------------------------------------------


def hold_host(ov: Overlay, vm: dict, host_id: int, *, manual: bool) -> None:
    """Place the VM's capacity on a host (raftcore.ops.hosts checks it fits)."""
    ov.add(hosts.allocate_capacity(ov, host_id, vm["cpu"], vm["memory"], vm["id"], manual=manual))
    vm["capacity"].append({"hid": host_id, "cpu": vm["cpu"], "memory": vm["memory"]})


def free_host(ov: Overlay, vm: dict, entry: dict) -> None:
    ov.add(hosts.free_capacity(ov, entry["hid"], entry["cpu"], entry["memory"], vm["id"]))
    vm["capacity"].remove(entry)


def _capacity(ov: Overlay, vm: dict) -> None:
    if vm["state"] in OFF_HOST:
        for entry in list(vm["capacity"]):
            free_host(ov, vm, entry)
        vm["deploy_id"] = ""
    elif vm["lcm_state"] not in MIGRATING:
        for entry in vm["capacity"][:-1]:  # a finished migration leaves the old host
            free_host(ov, vm, entry)


def _rollback_migrate(ov: Overlay, vm: dict, cmd: dict, event: str) -> None:
    # The migration is abandoned: the VM belongs to the host it was leaving again.
    record = open_record(vm)
    if record is not None:
        close_record(record, cmd["ts"], event, REASON_ERROR)
    if len(vm["capacity"]) > 1:
        free_host(ov, vm, vm["capacity"][-1])


# --- hot-plug outcomes ----------------------------------------------------------------

SUCCESS_EVENTS = frozenset({"hotplug_success", "disk_snapshot_success", "recover-success"})
FAILURE_EVENTS = frozenset({"hotplug_failure", "disk_snapshot_failure", "recover-failure"})
_PENDING_OPERATIONS = ("hotplug", "disk_snapshot")


def _drop_disk(ov: Overlay, vm: dict, disk_id: int) -> None:
    disk = next(d for d in vm["disks"] if d["disk_id"] == disk_id)
    vm["disks"] = [d for d in vm["disks"] if d["disk_id"] != disk_id]
    vm["template"] = edit_vectors(
        vm["template"], "DISK", lambda v: v.get("DISK_ID") != str(disk_id)
    )
    if "image_id" in disk:
        release_disk(ov, vm, disk)
    else:
        quota_delta(ov, vm, {"SYSTEM_DISK_SIZE": -disk["size"]}, check=False)


def _drop_nic(ov: Overlay, vm: dict, nic_id: int) -> None:
    nic = next(n for n in vm["nics"] if n["nic_id"] == nic_id)
    vm["nics"] = [n for n in vm["nics"] if n["nic_id"] != nic_id]
    vm["template"] = edit_vectors(vm["template"], "NIC", lambda v: v.get("NIC_ID") != str(nic_id))
    release_nic(ov, vm, nic)


def _flag(items: list[dict], key: str, oid: int, flag: str, on: bool) -> None:
    for item in items:
        if item[key] == oid:
            if on:
                item[flag] = True
            else:
                item.pop(flag, None)


def apply_resize(ov: Overlay, vm: dict, cpu: float, vcpu: int, memory: int, check: bool) -> None:
    """Change the VM's capacity: quotas (VM, and RUNNING_* while it counts running), the
    host it sits on, the template text."""
    delta = {"CPU": cpu_delta(cpu, vm["cpu"]), "MEMORY": memory - vm["memory"]}
    if counts_running(vm["state"], vm["lcm_state"]):
        delta.update(RUNNING_CPU=delta["CPU"], RUNNING_MEMORY=delta["MEMORY"])
    quota_delta(ov, vm, {k: v for k, v in delta.items() if v}, check)
    entries = list(vm["capacity"])
    for entry in entries:
        free_host(ov, vm, entry)
    vm.update(cpu=cpu, vcpu=vcpu, memory=memory)
    for entry in entries:
        hold_host(ov, vm, entry["hid"], manual=True)
    vm["template"] = set_scalars(
        vm["template"], {"CPU": cpu_text(cpu), "VCPU": str(vcpu), "MEMORY": str(memory)}
    )


def _finish_pending(ov: Overlay, vm: dict, success: bool, ts: int) -> None:
    op = vm["pending_op"]
    kind = op["op"]
    if kind == "disk-attach":
        if success:
            _flag(vm["disks"], "disk_id", op["disk_id"], "attach", False)
        else:
            _drop_disk(ov, vm, op["disk_id"])
    elif kind == "disk-detach":
        if success:
            _drop_disk(ov, vm, op["disk_id"])
        else:
            _flag(vm["disks"], "disk_id", op["disk_id"], "detach", False)
    elif kind == "nic-attach":
        if success:
            _flag(vm["nics"], "nic_id", op["nic_id"], "attach", False)
        else:
            _drop_nic(ov, vm, op["nic_id"])
    elif kind == "nic-detach":
        if success:
            _drop_nic(ov, vm, op["nic_id"])
        else:
            _flag(vm["nics"], "nic_id", op["nic_id"], "detach", False)
    elif kind == "resize":
        if not success:
            old = op["old"]
            apply_resize(ov, vm, old["cpu"], old["vcpu"], old["memory"], check=False)
    elif kind.startswith("disk-snapshot-") and success:
        _finish_snapshot(vm, op, ts)
    vm["pending_op"] = None


def _finish_snapshot(vm: dict, op: dict, ts: int) -> None:
    disk = next((d for d in vm["disks"] if d["disk_id"] == op["disk_id"]), None)
    if disk is None:
        return
    if op["op"] == "disk-snapshot-create":
        for snap in disk["snapshots"]:
            snap["active"] = False
        disk["snapshots"].append(
            {"id": op["snapshot_id"], "name": op["name"], "date": ts, "active": True}
        )
    elif op["op"] == "disk-snapshot-revert":
        for snap in disk["snapshots"]:
            snap["active"] = snap["id"] == op["snapshot_id"]
    else:
        disk["snapshots"] = [s for s in disk["snapshots"] if s["id"] != op["snapshot_id"]]


def _abandon_pending(vm: dict) -> None:
    # The VM left the operation's state without its outcome (e.g. recover --delete):
    # the device stays as it is in the record; only the in-flight marks go.
    for item in vm["disks"] + vm["nics"]:
        item.pop("attach", None)
        item.pop("detach", None)
    vm["pending_op"] = None


# --- release at DONE ------------------------------------------------------------------


def _release_all(ov: Overlay, vm: dict, ts: int) -> None:
    """Everything a VM holds goes back when it is DONE (it is kept for accounting)."""
    for disk in vm["disks"]:
        release_disk(ov, vm, disk)
    for nic in vm["nics"]:
        release_nic(ov, vm, nic)
    if vm.get("vmgroup"):
        ov.add(vmgroups.leave(ov, vm["vmgroup"]["id"], vm["vmgroup"]["role"], vm["id"]))
    _leave_vrouter(ov, vm)
    ov.add(quota.release(ov, vm["quota_uid"], vm["quota_gid"], {"VM": vm_usage(vm)}))
    vm.update(etime=ts, intent=None, resched=False, pending_op=None)


def _leave_vrouter(ov: Overlay, vm: dict) -> None:
    # OpenNebula's DispatchManager::done: a router's VM leaves the router's VMS (so the
    # router can be deleted once all its VMs are gone).
    rid = vm.get("vrouter_id")
    router = objects.find(ov, "vrouter", rid) if rid is not None else None
    if router is not None and vm["id"] in router["vms"]:
        ov.put("vrouter", {**router, "vms": [v for v in router["vms"] if v != vm["id"]]})


# --- the one way a VM moves -----------------------------------------------------------


def state_of(vm: dict) -> tuple[int, int]:
    return vm["state"], vm["lcm_state"]


def check_event(vm: dict, event: str) -> lifecycle.Transition:
    """The transition `event` makes, or the life-cycle's refusal (ACTION error)."""
    result = lifecycle.transition(vm["state"], vm["lcm_state"], event)
    if not result.ok:
        raise Reject(ErrorCode.ACTION, result.message)
    return result  # type: ignore[return-value]


def step(
    ov: Overlay,
    cmd: dict,
    vm: dict,
    event: str,
    *,
    outcome: bool = False,
    message: str | None = None,
    prepare: Callable[[dict], None] | None = None,
) -> dict:
    """Move `vm` by `event` and write every consequence into `ov`; returns the new
    record. `outcome`: what happened on a host (quotas are counted even over a limit);
    `prepare(new)` makes the action's own changes (a deploy's host, a migration's...)
    after the state changed and before the generic consequences."""
    t = check_event(vm, event)
    old = state_of(vm)
    new = copy.deepcopy(vm)
    new.update(
        prev_state=vm["state"],
        prev_lcm_state=vm["lcm_state"],
        state=int(t.state),
        lcm_state=int(t.lcm_state),
        intent=t.intent,
    )
    if t.resched is not None:
        new["resched"] = t.resched
    if outcome and event.endswith("_failure"):
        new["error"] = message or event
    if prepare is not None:
        prepare(new)
    if t.intent == "rollback_migrate":
        _rollback_migrate(ov, new, cmd, event)
    if new["pending_op"] is not None and lifecycle.pending_operation(*old) in _PENDING_OPERATIONS:
        if event in SUCCESS_EVENTS or event in FAILURE_EVENTS:
            _finish_pending(ov, new, event in SUCCESS_EVENTS, cmd["ts"])
    if (
        new["pending_op"] is not None
        and lifecycle.pending_operation(*state_of(new)) not in _PENDING_OPERATIONS
    ):
        _abandon_pending(new)
    _history(ov, new, old, event, cmd)
    _capacity(ov, new)
    was, now = counts_running(*old), counts_running(*state_of(new))
    if was and not now:
        ov.add(quota.release(ov, new["quota_uid"], new["quota_gid"], {"VM": running_usage(new)}))
    elif now and not was:
        quota_delta(ov, new, running_usage(new), check=not outcome)
    if new["state"] == S.DONE:
        _release_all(ov, new, cmd["ts"])
    ov.put(KIND, new)
    return new
