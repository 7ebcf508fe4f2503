"""VM devices and capacity: disk and NIC hot-plug, disk snapshots, resize, and the
scheduled actions of a VM (OpenNebula's onevm disk-attach, nic-attach,
disk-snapshot-*, resize, sched-*).

Hot-plug and snapshots are life-cycle events (RUNNING -> HOTPLUG, POWEROFF ->
HOTPLUG_PROLOG_POWEROFF, ...): the change is recorded with the event (`pending_op`), the
reconciler drives the hypervisor, and its outcome (hotplug_success / _failure,
disk_snapshot_*) settles it (vmcore.step): an attach that failed is undone (image and
lease released), a detach that succeeded frees the device.

Ops (args besides "id"):

    vm.disk-attach            {"template": "DISK = [ IMAGE_ID = 3 ]"}  (or SIZE, TYPE)
    vm.disk-detach            {"disk_id"}
    vm.nic-attach             {"template": "NIC = [ NETWORK_ID = 0 ]"}
    vm.nic-detach             {"nic_id"}
    vm.disk-snapshot-create   {"disk_id", "name"}
    vm.disk-snapshot-revert   {"disk_id", "snapshot_id"}
    vm.disk-snapshot-delete   {"disk_id", "snapshot_id"}
    vm.resize                 {"cpu"?, "vcpu"?, "memory"?, "enforce"?}
    vm.sched-add              {"template": "SCHED_ACTION = [ ACTION = ..., TIME = ... ]"}
    vm.sched-update           {"sched_id", "template"}
    vm.sched-delete           {"sched_id"}
"""

from __future__ import annotations

from raftcore import objects, schedule, template
from raftcore.commands import ErrorCode, ok
from raftcore.lifecycle import VmState
from raftcore.ops import vmcore
from raftcore.ops.common import (
    Overlay,
    Reject,
    Result,
    View,
    arg_bool,
    arg_int,
    bad,
    check_args,
    require,
)
from raftcore.ops.tenancy import arg_template
from raftcore.ops.vmcore import KIND
from raftcore.ops.vms import target

MAX_SNAPSHOT_NAME = 128


def _one_vector(args: dict, key: str, example: str) -> dict[str, str]:
    """The single `key` vector of argument 'template'."""
    t = template.parse(arg_template(args))
    others = sorted({k for k, _ in t.items() if k != key})
    if others:
        raise bad(f"argument 'template' may hold only {key}, got {', '.join(others)}")
    values = t.get_all(key)
    if len(values) != 1:
        raise bad(f"argument 'template' must hold exactly one {key} ({example}), got {len(values)}")
    if isinstance(values[0], str):
        raise bad(f"argument 'template': {key} must be a vector ({example})")
    return dict(values[0])


def _disk(vm: dict, args: dict) -> dict:
    disk_id = arg_int(args, "disk_id")
    disk = next((d for d in vm["disks"] if d["disk_id"] == disk_id), None)
    if disk is None:
        raise bad(f"argument 'disk_id': VM {vm['id']} has no disk {disk_id}")
    return disk


def _nic(vm: dict, args: dict) -> dict:
    nic_id = arg_int(args, "nic_id")
    nic = next((n for n in vm["nics"] if n["nic_id"] == nic_id), None)
    if nic is None:
        raise bad(f"argument 'nic_id': VM {vm['id']} has no NIC {nic_id}")
    return nic


def _snapshot(disk: dict, args: dict) -> dict:
    snap_id = arg_int(args, "snapshot_id")
    snap = next((s for s in disk["snapshots"] if s["id"] == snap_id), None)
    if snap is None:
        raise bad(f"argument 'snapshot_id': disk {disk['disk_id']} has no snapshot {snap_id}")
    return snap


# --- disks ----------------------------------------------------------------------------


def op_disk_attach(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "template"))
    vm = target(view, args, cmd, "disk-attach")
    given = _one_vector(args, "DISK", "DISK = [ IMAGE_ID = 3 ]")
    spec = vmcore.check_disk(given, "DISK")
    vmcore.check_event(vm, "disk-attach")
    if spec["target"] and any(d.get("target") == spec["target"] for d in vm["disks"]):
        raise bad(f"DISK: TARGET {spec['target']} is already used by another disk of the VM")
    ov = Overlay(view)
    image = None
    if spec["image"]["id"] is not None or spec["image"]["name"] is not None:
        image = vmcore.resolve(ov, cmd, "image", spec["image"], "DISK", "IMAGE")
        require(ov, cmd, objects.auth("image", image, "USE"))

    def prepare(new: dict) -> None:
        disk_id = new["next_disk_id"]
        disk = vmcore.acquire_disk(ov, cmd, new["id"], disk_id, spec, image)
        if image is None:  # a volatile disk lives in the system datastore
            vmcore.quota_delta(ov, new, {"SYSTEM_DISK_SIZE": disk["size"]}, check=True)
        new["disks"].append({**disk, "attach": True})
        new["next_disk_id"] = disk_id + 1
        new["template"] = vmcore.edit_vectors(
            new["template"], "DISK", lambda v: True, [vmcore.disk_vector(disk, given)]
        )
        new["pending_op"] = {"op": "disk-attach", "disk_id": disk_id}

    new = vmcore.step(ov, cmd, vm, "disk-attach", prepare=prepare)
    return ov.mutations, ok({"disk_id": new["next_disk_id"] - 1})


def op_disk_detach(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "disk_id"))
    vm = target(view, args, cmd, "disk-detach")
    vmcore.check_event(vm, "disk-detach")
    disk_id = _disk(vm, args)["disk_id"]
    ov = Overlay(view)

    def prepare(new: dict) -> None:
        for disk in new["disks"]:
            if disk["disk_id"] == disk_id:
                disk["detach"] = True
        new["pending_op"] = {"op": "disk-detach", "disk_id": disk_id}

    vmcore.step(ov, cmd, vm, "disk-detach", prepare=prepare)
    return ov.mutations, ok()


# --- NICs -----------------------------------------------------------------------------


def op_nic_attach(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "template"))
    vm = target(view, args, cmd, "nic-attach")
    given = _one_vector(args, "NIC", "NIC = [ NETWORK_ID = 0 ]")
    spec = vmcore.check_nic(given, "NIC")
    vmcore.check_event(vm, "nic-attach")
    ov = Overlay(view)
    net = vmcore.resolve(ov, cmd, "vnet", spec["net"], "NIC", "NETWORK")
    require(ov, cmd, objects.auth("vnet", net, "USE"))

    def prepare(new: dict) -> None:
        nic_id = new["next_nic_id"]
        owner = (new["quota_uid"], new["quota_gid"])
        nic = vmcore.lease_nic(ov, cmd, new["id"], nic_id, net, given, owner)
        new["nics"].append({**nic, "attach": True})
        new["next_nic_id"] = nic_id + 1
        new["template"] = vmcore.edit_vectors(
            new["template"], "NIC", lambda v: True, [vmcore.nic_vector(nic, given)]
        )
        new["pending_op"] = {"op": "nic-attach", "nic_id": nic_id}

    new = vmcore.step(ov, cmd, vm, "nic-attach", prepare=prepare)
    return ov.mutations, ok({"nic_id": new["next_nic_id"] - 1})


def op_nic_detach(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "nic_id"))
    vm = target(view, args, cmd, "nic-detach")
    vmcore.check_event(vm, "nic-detach")
    nic_id = _nic(vm, args)["nic_id"]
    ov = Overlay(view)

    def prepare(new: dict) -> None:
        for nic in new["nics"]:
            if nic["nic_id"] == nic_id:
                nic["detach"] = True
        new["pending_op"] = {"op": "nic-detach", "nic_id": nic_id}

    vmcore.step(ov, cmd, vm, "nic-detach", prepare=prepare)
    return ov.mutations, ok()


# --- disk snapshots -------------------------------------------------------------------


def op_disk_snapshot_create(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "disk_id", "name"))
    vm = target(view, args, cmd, "disk-snapshot-create")
    name = objects.check_name(args["name"])
    vmcore.check_event(vm, "disk-snapshot-create")
    disk = _disk(vm, args)
    snap_id = disk["next_snapshot_id"]
    ov = Overlay(view)

    def prepare(new: dict) -> None:
        for d in new["disks"]:
            if d["disk_id"] == disk["disk_id"]:
                d["next_snapshot_id"] = snap_id + 1
        new["pending_op"] = {
            "op": "disk-snapshot-create",
            "disk_id": disk["disk_id"],
            "snapshot_id": snap_id,
            "name": name,
        }

    vmcore.step(ov, cmd, vm, "disk-snapshot-create", prepare=prepare)
    return ov.mutations, ok({"snapshot_id": snap_id})


def _snapshot_op(action: str):
    def op(view: View, args: dict, cmd: dict, index: int) -> Result:
        check_args(args, ("id", "disk_id", "snapshot_id"))
        vm = target(view, args, cmd, action)
        vmcore.check_event(vm, action)
        disk = _disk(vm, args)
        snap = _snapshot(disk, args)
        if action == "disk-snapshot-delete" and snap.get("active"):
            raise Reject(
                ErrorCode.ACTION,
                f"snapshot {snap['id']} of disk {disk['disk_id']} is the active one: "
                "revert to another before deleting it",
            )
        ov = Overlay(view)

        def prepare(new: dict) -> None:
            new["pending_op"] = {
                "op": action,
                "disk_id": disk["disk_id"],
                "snapshot_id": snap["id"],
            }

        vmcore.step(ov, cmd, vm, action, prepare=prepare)
        return ov.mutations, ok()

    op.__name__ = f"op_{action.replace('-', '_')}"
    return op


# --- capacity -------------------------------------------------------------------------


def op_resize(view: View, args: dict, cmd: dict, index: int) -> Result:
    """New CPU / VCPU / MEMORY. Quotas (and the host the VM sits on) are charged with the
    change at once; a live resize that fails (hotplug_failure) is undone."""
    check_args(args, ("id",), ("cpu", "vcpu", "memory", "enforce"))
    vm = target(view, args, cmd, "resize")
    if not {"cpu", "vcpu", "memory"} & set(args):
        raise bad("resize needs at least one of 'cpu', 'vcpu', 'memory'")
    cpu = vmcore.cpu_value(args["cpu"], "argument 'cpu'") if "cpu" in args else vm["cpu"]
    vcpu = (
        vmcore.int_value(args["vcpu"], "argument 'vcpu'", 1, vmcore.MAX_VCPU)
        if "vcpu" in args
        else vm["vcpu"]
    )
    memory = (
        vmcore.int_value(args["memory"], "argument 'memory'", 1, vmcore.MAX_MB, " MB")
        if "memory" in args
        else vm["memory"]
    )
    if "enforce" in args:
        arg_bool(args, "enforce")  # the host's capacity is always checked here
    vmcore.check_event(vm, "resize")
    ov = Overlay(view)

    def prepare(new: dict) -> None:
        old = {"cpu": new["cpu"], "vcpu": new["vcpu"], "memory": new["memory"]}
        # Quotas are counted in the state the VM is leaving (a live resize stays running).
        vmcore.apply_resize(ov, new, cpu, vcpu, memory, check=True)
        if new["state"] == VmState.ACTIVE:
            new["pending_op"] = {"op": "resize", "old": old}

    vmcore.step(ov, cmd, vm, "resize", prepare=prepare)
    return ov.mutations, ok()


# --- scheduled actions ----------------------------------------------------------------


def _sched_target(view: View, args: dict, cmd: dict, action: str) -> dict:
    vm = target(view, args, cmd, action)
    if vm["state"] == VmState.DONE:
        raise Reject(ErrorCode.ACTION, f"VM {vm['id']} is DONE: it runs no more actions")
    return vm


def _sched_vector(args: dict, cmd: dict) -> dict:
    vector = _one_vector(
        args, "SCHED_ACTION", 'SCHED_ACTION = [ ACTION = "poweroff", TIME = "+60" ]'
    )
    try:
        return schedule.parse(vector, cmd["ts"])
    except schedule.SchedError as e:
        raise bad(f"SCHED_ACTION: {e}") from None


def _sched(vm: dict, args: dict) -> dict:
    sched_id = arg_int(args, "sched_id")
    sched = next((s for s in vm["sched_actions"] if s["id"] == sched_id), None)
    if sched is None:
        raise bad(f"argument 'sched_id': VM {vm['id']} has no scheduled action {sched_id}")
    return sched


def _write(view: View, vm: dict, sched_actions: list[dict], **extra) -> list:
    ov = Overlay(view)
    ov.put(KIND, {**vm, "sched_actions": sched_actions, **extra})
    return ov.mutations


def op_sched_add(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "template"))
    vm = _sched_target(view, args, cmd, "sched-add")
    parsed = _sched_vector(args, cmd)
    if len(vm["sched_actions"]) >= schedule.MAX_SCHED_ACTIONS:
        raise Reject(
            ErrorCode.ACTION,
            f"VM {vm['id']} already has {schedule.MAX_SCHED_ACTIONS} scheduled actions",
        )
    sched_id = vm["next_sched_id"]
    sched = {**parsed, "id": sched_id, "done": 0, "runs": 0, "message": ""}
    mutations = _write(view, vm, [*vm["sched_actions"], sched], next_sched_id=sched_id + 1)
    return mutations, ok({"sched_id": sched_id})


def op_sched_update(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "sched_id", "template"))
    vm = _sched_target(view, args, cmd, "sched-update")
    old = _sched(vm, args)
    parsed = _sched_vector(args, cmd)
    # A changed action starts afresh: it has not run in its new form.
    updated = {**parsed, "id": old["id"], "done": 0, "runs": 0, "message": ""}
    actions = [updated if s["id"] == old["id"] else s for s in vm["sched_actions"]]
    return _write(view, vm, actions), ok()


def op_sched_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id", "sched_id"))
    vm = _sched_target(view, args, cmd, "sched-delete")
    old = _sched(vm, args)
    actions = [s for s in vm["sched_actions"] if s["id"] != old["id"]]
    return _write(view, vm, actions), ok()


HANDLERS = {
    "vm.disk-attach": op_disk_attach,
    "vm.disk-detach": op_disk_detach,
    "vm.nic-attach": op_nic_attach,
    "vm.nic-detach": op_nic_detach,
    "vm.disk-snapshot-create": op_disk_snapshot_create,
    "vm.disk-snapshot-revert": _snapshot_op("disk-snapshot-revert"),
    "vm.disk-snapshot-delete": _snapshot_op("disk-snapshot-delete"),
    "vm.resize": op_resize,
    "vm.sched-add": op_sched_add,
    "vm.sched-update": op_sched_update,
    "vm.sched-delete": op_sched_delete,
}
