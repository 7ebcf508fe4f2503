"""Hosts (onehost): the hypervisors VMs run on, their state and their capacity.

A host record (raftcore.objects) adds::

    {"state": int, "im_mad": str, "vm_mad": str, "cids": [cid], "vms": [vm ids],
     "capacity": {...}, "last_mon": ms, "error": str}

`capacity` is OpenNebula's HOST_SHARE, in its units (CPU in hundredths of a CPU, memory
in KB):

    total_cpu, total_mem      what the last good probe found
    used_cpu, used_mem        real usage the probe measured
    free_cpu, free_mem        real free capacity the probe measured
    max_cpu, max_mem          total -/+ the reservation (RESERVED_CPU / RESERVED_MEM of
                              the host template, else of its cluster's)
    cpu_usage, mem_usage      what the VMs placed on the host were allocated
    reserved_cpu, reserved_mem   total - max

A host is in exactly one cluster (`cids` has one id; the cluster lists it in "hosts").
This module changes only the state: nothing here touches a real hypervisor; the leader's
monitoring proposes `host.monitor` with what its probes find, and the VM life-cycle calls
`allocate_capacity` / `free_capacity` when a VM is placed on / leaves a host.
"""

from __future__ import annotations

import math
import re
from typing import Any

from raftcore import objects, template
from raftcore.commands import ErrorCode, ok
from raftcore.ops import vdcs
from raftcore.ops.common import (
    Mutation,
    Reject,
    Result,
    View,
    arg_int,
    bad,
    check_args,
    require,
)
from raftcore.ops.tenancy import arg_template

KIND = "host"
DEFAULT_CLUSTER = 0
NO_CLUSTER = -1  # OpenNebula's "no cluster given": the default one

# OpenNebula's host states (Host::HostState). 1, 5, 6 and 7 (MONITORING_*) are kept for
# their numbers and names only: OpenNebula 6+ no longer enters them, nor does this code.
STATES: dict[str, int] = {
    "INIT": 0,
    "MONITORING_MONITORED": 1,
    "MONITORED": 2,
    "ERROR": 3,
    "DISABLED": 4,
    "MONITORING_ERROR": 5,
    "MONITORING_INIT": 6,
    "MONITORING_DISABLED": 7,
    "OFFLINE": 8,
}
STATE_NAMES: dict[int, str] = {v: k for k, v in STATES.items()}
INIT, MONITORED, ERROR = STATES["INIT"], STATES["MONITORED"], STATES["ERROR"]
DISABLED, OFFLINE = STATES["DISABLED"], STATES["OFFLINE"]
ENABLED_STATES = frozenset({INIT, MONITORED, ERROR})

# Drivers a host may name: the information (probe) and the virtualization drivers.
IM_MADS = frozenset({"kvm", "qemu", "lxc", "firecracker", "dummy"})
VM_MADS = frozenset({"kvm", "lxc", "firecracker", "dummy"})

PROBE_FIELDS = ("total_cpu", "total_mem", "used_cpu", "used_mem", "free_cpu", "free_mem")
CAPACITY_FIELDS = (
    *PROBE_FIELDS,
    "max_cpu",
    "max_mem",
    "cpu_usage",
    "mem_usage",
    "reserved_cpu",
    "reserved_mem",
)
# Larger capacities are refused as absurd (2^53: exact in every client's floats).
MAX_CAPACITY = 2**53
MAX_ERROR_CHARS = 4096
CPU_SCALE = 100  # OpenNebula counts CPU in hundredths (CPU = 1.5 is 150)
KB_PER_MB = 1024

# "10" (absolute, in the metric's unit; negative over-commits) or "10%" (of the total).
_RESERVED = re.compile(r"\s*(-?[0-9]{1,18})(%?)\s*")


def state_name(state: int) -> str:
    return STATE_NAMES.get(state, str(state))


# --- capacity --------------------------------------------------------------------------


def _reservation(text: str | None) -> tuple[int, bool] | None:
    """(amount, is_percent) of a RESERVED_* value; None when unset or unreadable (then
    nothing is reserved, as OpenNebula does with a value it cannot read)."""
    if text is None or text.strip() == "":
        return None
    m = _RESERVED.fullmatch(text)
    if m is None:
        return None
    return int(m.group(1)), m.group(2) == "%"


def _max_of(total: int, reservation: tuple[int, bool] | None) -> int:
    if reservation is None:
        return total
    amount, percent = reservation
    return total * (100 - amount) // 100 if percent else total - amount


_RESERVED_KEYS = ("RESERVED_CPU", "RESERVED_MEM")


def _reservations_of(text: str) -> list[tuple[int, bool] | None]:
    """The (cpu, mem) RESERVED_* values of a template (one parse for both)."""
    try:
        t = template.parse(text)
    except template.TemplateError:
        return [None, None]
    return [_reservation(t.scalar(key)) for key in _RESERVED_KEYS]


def _reservations_in(host: dict, cluster: dict | None) -> tuple[tuple[int, bool] | None, ...]:
    """The (cpu, mem) reservations in force: the host template's, else its cluster's."""
    own = _reservations_of(host["template"])
    if cluster is None or None not in own:
        return tuple(own)
    inherited = _reservations_of(cluster["template"])
    return tuple(
        mine if mine is not None else theirs for mine, theirs in zip(own, inherited, strict=True)
    )


def _limited(cap: dict, rcpu: tuple[int, bool] | None, rmem: tuple[int, bool] | None) -> dict:
    cap = dict(cap)
    cap["max_cpu"] = _max_of(cap["total_cpu"], rcpu)
    cap["max_mem"] = _max_of(cap["total_mem"], rmem)
    cap["reserved_cpu"] = cap["total_cpu"] - cap["max_cpu"]
    cap["reserved_mem"] = cap["total_mem"] - cap["max_mem"]
    return cap


def with_limits(view: View, host: dict, cluster: dict | None = None) -> dict:
    """`host` with max_* and reserved_* recomputed from its totals and the reservations
    of its template and of its cluster (`cluster`, else the one it is in). Reservations
    are read when capacity is checked, so a template update applies at once."""
    if cluster is None and host.get("cids"):
        cluster = objects.find(view, "cluster", host["cids"][0])
    rcpu, rmem = _reservations_in(host, cluster)
    return {**host, "capacity": _limited(host["capacity"], rcpu, rmem)}


def empty_capacity() -> dict:
    return {f: 0 for f in CAPACITY_FIELDS}


def _label(host: dict) -> str:
    return f"host {host['id']} ({host['name']})"


def _arg_cpu(cpu: Any) -> int:
    """CPU as a fraction of CPUs (two decimals at most) -> hundredths."""
    if isinstance(cpu, bool) or not isinstance(cpu, int | float) or not math.isfinite(cpu):
        raise bad(f"cpu must be a number of CPUs, got {cpu!r}")
    units = round(cpu * CPU_SCALE)
    if abs(units - cpu * CPU_SCALE) > 1e-6:
        raise bad(f"cpu must have at most two decimals, got {cpu!r}")
    if not 0 < units <= MAX_CAPACITY:
        raise bad(f"cpu must be > 0 and at most {MAX_CAPACITY // CPU_SCALE}, got {cpu!r}")
    return units


def _arg_memory(memory_mb: Any) -> int:
    if isinstance(memory_mb, bool) or not isinstance(memory_mb, int):
        raise bad(f"memory must be a whole number of MB, got {memory_mb!r}")
    if not 0 < memory_mb * KB_PER_MB <= MAX_CAPACITY:
        raise bad(f"memory must be > 0 and at most {MAX_CAPACITY // KB_PER_MB} MB, got {memory_mb}")
    return memory_mb * KB_PER_MB


def _arg_vm(vm_id: Any) -> int:
    if isinstance(vm_id, bool) or not isinstance(vm_id, int) or vm_id < 0:
        raise bad(f"vm id must be an integer >= 0, got {vm_id!r}")
    return vm_id


def allocate_capacity(
    view: View,
    host_id: int,
    cpu: float,
    memory_mb: int,
    vm_id: int,
    manual: bool = False,
) -> list[Mutation]:
    """The mutations placing VM `vm_id` (cpu CPUs, memory_mb MB) on host `host_id`:
    cpu_usage += cpu*100, mem_usage += memory*1024, the VM added to `vms`.

    Refuses (Reject) an unknown host (BAD_REQUEST, naming argument 'host'), a host the
    VM may not go to (ACTION: only MONITORED hosts; DISABLED ones too when `manual`, an
    administrator's explicit deploy, as OpenNebula), a VM already there (ACTION), and a
    VM that does not fit in max - usage (ALLOCATE, naming the host and the resource).
    Call it once per host per command: it reads the host from `view`."""
    old = objects.ref(view, KIND, host_id, "host")
    cpu_units, mem_kb, vm = _arg_cpu(cpu), _arg_memory(memory_mb), _arg_vm(vm_id)
    host = with_limits(view, old)
    allowed = {MONITORED, DISABLED} if manual else {MONITORED}
    if host["state"] not in allowed:
        raise Reject(
            ErrorCode.ACTION,
            f"{_label(host)} is {state_name(host['state'])}: VMs cannot be placed on it",
        )
    if vm in host["vms"]:
        raise Reject(ErrorCode.ACTION, f"VM {vm} is already on {_label(host)}")
    cap = host["capacity"]
    free_cpu = cap["max_cpu"] - cap["cpu_usage"]
    if cpu_units > free_cpu:
        raise Reject(
            ErrorCode.ALLOCATE,
            f"{_label(host)}: not enough CPU: {cpu_units} requested, {max(free_cpu, 0)} of "
            f"{cap['max_cpu']} free (in hundredths of a CPU)",
        )
    free_mem = cap["max_mem"] - cap["mem_usage"]
    if mem_kb > free_mem:
        raise Reject(
            ErrorCode.ALLOCATE,
            f"{_label(host)}: not enough memory: {mem_kb} KB requested, {max(free_mem, 0)} KB "
            f"of {cap['max_mem']} KB free",
        )
    cap = {**cap, "cpu_usage": cap["cpu_usage"] + cpu_units, "mem_usage": cap["mem_usage"] + mem_kb}
    new = {**host, "capacity": cap, "vms": sorted({*host["vms"], vm})}
    return objects.put(view, KIND, new, old)


def free_capacity(
    view: View, host_id: int, cpu: float, memory_mb: int, vm_id: int
) -> list[Mutation]:
    """The mutations taking VM `vm_id` off host `host_id`, releasing what
    `allocate_capacity` allocated for it (give the same cpu and memory_mb). Works in any
    host state (a VM may leave an OFFLINE or ERROR host). Refuses a VM that is not on the
    host (ACTION) and a release larger than the usage (BAD_REQUEST)."""
    old = objects.ref(view, KIND, host_id, "host")
    cpu_units, mem_kb, vm = _arg_cpu(cpu), _arg_memory(memory_mb), _arg_vm(vm_id)
    if vm not in old["vms"]:
        raise Reject(ErrorCode.ACTION, f"VM {vm} is not on {_label(old)}")
    cap = old["capacity"]
    if cpu_units > cap["cpu_usage"]:
        raise bad(f"{_label(old)}: cannot free {cpu_units} CPU, only {cap['cpu_usage']} allocated")
    if mem_kb > cap["mem_usage"]:
        raise bad(f"{_label(old)}: cannot free {mem_kb} KB, only {cap['mem_usage']} KB allocated")
    cap = {**cap, "cpu_usage": cap["cpu_usage"] - cpu_units, "mem_usage": cap["mem_usage"] - mem_kb}
    new = {**old, "capacity": cap, "vms": [v for v in old["vms"] if v != vm]}
    return objects.put(view, KIND, new, old)


# --- cluster membership (shared with raftcore.ops.cluster_members) ----------------------


def listed(ids: list[int], oid: int, present: bool) -> list[int]:
    """`ids` (sorted) with `oid` in it or not."""
    return sorted({*ids, oid}) if present else [i for i in ids if i != oid]


def move_host(view: View, host: dict, cluster: dict) -> list[Mutation]:
    """Mutations moving `host` from its cluster into `cluster` (its reservation changes
    with the cluster's, as OpenNebula's update_reserved_capacity)."""
    mutations: list[Mutation] = []
    for cid in host.get("cids", []):
        old_cluster = objects.find(view, "cluster", cid)
        if old_cluster is not None and cid != cluster["id"]:
            updated = {**old_cluster, "hosts": listed(old_cluster["hosts"], host["id"], False)}
            mutations += objects.put(view, "cluster", updated, old_cluster)
    new_cluster = {**cluster, "hosts": listed(cluster["hosts"], host["id"], True)}
    mutations += objects.put(view, "cluster", new_cluster, cluster)
    moved = with_limits(view, {**host, "cids": [cluster["id"]]}, new_cluster)
    return mutations + objects.put(view, KIND, moved, host)


# --- ops -------------------------------------------------------------------------------


def _check_reservations(t: template.Template) -> None:
    for key in ("RESERVED_CPU", "RESERVED_MEM"):
        try:
            value = t.scalar(key)
        except template.TemplateError as e:
            raise bad(f"argument 'template': {e}") from None
        if value is not None and value.strip() and _reservation(value) is None:
            raise bad(
                f"argument 'template': {key} must be a whole number or a percentage "
                f'such as "10%", got {value!r}'
            )


def _driver(t: template.Template, key: str, known: frozenset[str]) -> str:
    try:
        value = t.scalar(key)
    except template.TemplateError as e:
        raise bad(f"argument 'template': {e}") from None
    if value is None or not value.strip():
        raise bad(f"argument 'template' must set {key} (one of {', '.join(sorted(known))})")
    value = value.strip()
    if value not in known:
        raise bad(
            f"argument 'template': unknown {key} {value!r} (known: {', '.join(sorted(known))})"
        )
    return value


def op_host_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, (), ("name", "template", "cluster"))
    if "template" not in args:
        raise bad("missing argument 'template' (it must set IM_MAD and VM_MAD)")
    text = arg_template(args)
    t = template.parse(text)
    im_mad = _driver(t, "IM_MAD", IM_MADS)
    vm_mad = _driver(t, "VM_MAD", VM_MADS)
    _check_reservations(t)
    name = args.get("name")
    if name is None:
        try:
            name = t.scalar("NAME")
        except template.TemplateError as e:
            raise bad(f"argument 'template': {e}") from None
        if name is None:
            raise bad("missing argument 'name' (or NAME in the template)")
    cid = arg_int(args, "cluster", minimum=NO_CLUSTER) if "cluster" in args else DEFAULT_CLUSTER
    cid = DEFAULT_CLUSTER if cid == NO_CLUSTER else cid
    cluster = objects.ref(view, "cluster", cid, "cluster")
    require(
        view,
        cmd,
        objects.create_request(KIND, gid=0, cids=(cid,)),
        objects.auth("cluster", cluster, "ADMIN"),
    )
    fields = {
        "state": INIT,
        "im_mad": im_mad,
        "vm_mad": vm_mad,
        "cids": [cid],
        "vms": [],
        "capacity": empty_capacity(),
        "last_mon": 0,
        "error": "",
    }
    record, mutations = objects.new(view, cmd, KIND, name, text, fields, gid=0)
    updated = {**cluster, "hosts": listed(cluster["hosts"], record["id"], True)}
    return mutations + objects.put(view, "cluster", updated, cluster), ok({"id": record["id"]})


def op_host_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    host = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, host, "ADMIN"))
    if host["vms"]:
        shown = ", ".join(str(v) for v in host["vms"][:20])
        more = ", ..." if len(host["vms"]) > 20 else ""
        raise Reject(
            ErrorCode.ACTION,
            f"host {host['id']} has {len(host['vms'])} VMs: {shown}{more}; "
            "move or terminate them first",
        )
    mutations: list[Mutation] = []
    for cid in host["cids"]:
        cluster = objects.find(view, "cluster", cid)
        if cluster is not None:
            updated = {**cluster, "hosts": listed(cluster["hosts"], host["id"], False)}
            mutations += objects.put(view, "cluster", updated, cluster)
    mutations += vdcs.forget(view, KIND, host["id"])
    return mutations + objects.remove(KIND, host), ok()


def _enabled_state(host: dict) -> int:
    """Where `enable` takes a host: a disabled host keeps being monitored, so what its
    last probe said applies at once; an offline one must be probed again (INIT)."""
    if host["state"] == DISABLED and host["last_mon"] > 0:
        return ERROR if host["error"] else MONITORED
    return INIT


def _offline(host: dict) -> dict:
    # OpenNebula's Host::offline: no more monitoring, so the measured capacity goes.
    cap = {**host["capacity"], **{f: 0 for f in PROBE_FIELDS}}
    cap.update(max_cpu=0, max_mem=0, reserved_cpu=0, reserved_mem=0)
    return {**host, "state": OFFLINE, "capacity": cap}


# action -> (states it applies to, the new record, what a refusal says of the host)
_STATUS: dict[str, tuple[frozenset[int], Any, str]] = {
    "enable": (
        frozenset({DISABLED, OFFLINE}),
        lambda h: {**h, "state": _enabled_state(h)},
        "already enabled",
    ),
    "disable": (
        frozenset({INIT, MONITORED, ERROR, OFFLINE}),
        lambda h: {**h, "state": DISABLED},
        "already disabled",
    ),
    "offline": (
        frozenset({INIT, MONITORED, ERROR, DISABLED}),
        _offline,
        "already offline",
    ),
}


def _status_op(action: str):
    states, change, already = _STATUS[action]

    def op(view: View, args: dict, cmd: dict, index: int) -> Result:
        check_args(args, ("id",))
        host = objects.get(view, KIND, arg_int(args, "id"))
        # OpenNebula's host.status needs ADMIN on the host.
        require(view, cmd, objects.auth(KIND, host, "ADMIN"))
        if host["state"] not in states:
            raise Reject(
                ErrorCode.ACTION,
                f"cannot {action} host {host['id']}: it is {already} "
                f"(state {state_name(host['state'])})",
            )
        return objects.put(view, KIND, change(host), host), ok()

    op.__name__ = f"op_host_{action}"
    op.__doc__ = f"host.{action} {{id}}: OpenNebula's host.status."
    return op


def _probe_int(capacity: dict, name: str, default: int | None = None) -> int:
    if name not in capacity:
        if default is None:
            raise bad(f"argument 'capacity' must have {name!r}")
        return default
    value = capacity[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"argument 'capacity': {name} must be an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_CAPACITY:
        raise bad(f"argument 'capacity': {name} must be 0..{MAX_CAPACITY}, got {value}")
    return value


def _arg_probe(args: dict) -> dict[str, int]:
    """The probe's totals and usage: total_cpu and total_mem required; used_* default to
    0 and free_* to total - used; neither may exceed the total."""
    capacity = args["capacity"]
    if not isinstance(capacity, dict):
        raise bad(f"argument 'capacity' must be a map, got {type(capacity).__name__}")
    unknown = sorted(str(k) for k in capacity if k not in PROBE_FIELDS)
    if unknown:
        raise bad(f"argument 'capacity': unknown field(s) {', '.join(unknown)}")
    out: dict[str, int] = {}
    for res in ("cpu", "mem"):
        total = _probe_int(capacity, f"total_{res}")
        used = _probe_int(capacity, f"used_{res}", 0)
        free = _probe_int(capacity, f"free_{res}", max(total - used, 0))
        for name, value in ((f"used_{res}", used), (f"free_{res}", free)):
            if value > total:
                raise bad(f"argument 'capacity': {name} ({value}) exceeds total_{res} ({total})")
        out.update({f"total_{res}": total, f"used_{res}": used, f"free_{res}": free})
    return out


def op_host_monitor(view: View, args: dict, cmd: dict, index: int) -> Result:
    """What a probe of the host found (proposed by the leader's monitoring, never by
    clients). A good probe updates the capacity and makes an INIT or ERROR host
    MONITORED; a failed one makes it ERROR and keeps the last capacity. DISABLED hosts
    keep their state (they are still monitored); OFFLINE hosts are not monitored."""
    check_args(args, ("id", "state"), ("capacity", "error"))
    host = objects.get(view, KIND, arg_int(args, "id"))
    # The system itself (uid -1) proposes it; otherwise only who administers the host.
    if cmd["uid"] != -1:
        require(view, cmd, objects.auth(KIND, host, "ADMIN"))
    result = args["state"]
    if result not in ("MONITORED", "ERROR"):
        raise bad(f"argument 'state' must be 'MONITORED' or 'ERROR', got {result!r}")
    if host["state"] == OFFLINE:
        raise Reject(ErrorCode.ACTION, f"host {host['id']} is OFFLINE: it is not monitored")
    new = {**host, "last_mon": cmd["ts"]}
    if result == "MONITORED":
        if "error" in args:
            raise bad("argument 'error' goes only with state 'ERROR'")
        if "capacity" not in args:
            raise bad("missing argument 'capacity' (a MONITORED probe gives the capacity)")
        new["capacity"] = {**host["capacity"], **_arg_probe(args)}
        new["error"] = ""
        if host["state"] != DISABLED:
            new["state"] = MONITORED
        new = with_limits(view, new)
    else:
        if "capacity" in args:
            raise bad("argument 'capacity' goes only with state 'MONITORED'")
        if "error" not in args:
            raise bad("missing argument 'error' (what went wrong with the probe)")
        message = args["error"]
        if not isinstance(message, str) or not 1 <= len(message) <= MAX_ERROR_CHARS:
            raise bad(f"argument 'error' must be a message of 1..{MAX_ERROR_CHARS} characters")
        new["error"] = message
        if host["state"] != DISABLED:
            new["state"] = ERROR
    return objects.put(view, KIND, new, host), ok()


HANDLERS = {
    "host.allocate": op_host_allocate,
    "host.delete": op_host_delete,
    "host.enable": _status_op("enable"),
    "host.disable": _status_op("disable"),
    "host.offline": _status_op("offline"),
    "host.monitor": op_host_monitor,
}
