"""VMs (onevm): allocate, the life-cycle actions, deploy, migrate, recover, and the
outcomes the leader's reconciler reports.

Every move goes through raftcore.lifecycle's table (vmcore.step): an action the table
does not have for the VM's state is refused with its message ("action X not allowed in
state S/L") and changes nothing. Authorization as OpenNebula's oned.conf defaults
(VM_ADMIN_OPERATIONS = migrate, delete, recover, retry, deploy, resched; every other
action needs MANAGE): `RIGHTS`.

Ops (args besides "id"):

    vm.allocate        {"template", "hold"?, "name"?}
    vm.<action>        {} for terminate[-hard], undeploy[-hard], poweroff[-hard],
                       reboot[-hard], hold, release, stop, suspend, resume, resched,
                       unresched
    vm.deploy          {"host", "ds"?}                 the scheduler's or an admin's
    vm.migrate         {"host", "ds"?, "live"?, "enforce"?}
    vm.recover         {"op": success|failure|retry|delete|delete-recreate}
    vm.delete          {}  PoolService.Delete: recover --delete (ADMIN)
    vm.outcome         {"event", "message"?}  internal: proposed by the reconciler only
"""

from __future__ import annotations

from typing import Any

from raftcore import lifecycle, objects, template
from raftcore.commands import ErrorCode, ok
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
from raftcore.ops.tenancy import arg_template, updated_template
from raftcore.ops.vmcore import KIND, REASON_USER

SYSTEM_UID = -1  # the front-ends themselves (scheduler, reconciler)
MAX_MESSAGE_CHARS = 4096

# Actions that only move the life-cycle (no arguments): one handler shape for all.
SIMPLE_ACTIONS = (
    "terminate",
    "terminate-hard",
    "undeploy",
    "undeploy-hard",
    "poweroff",
    "poweroff-hard",
    "reboot",
    "reboot-hard",
    "hold",
    "release",
    "stop",
    "suspend",
    "resume",
    "resched",
    "unresched",
)
# The right each client action needs on the VM (oned.conf's VM_*_OPERATIONS defaults;
# "resched" covers unresched, "disk-attach" the detach, "nic-attach" the NIC detach,
# "disk-snapshot" create/revert/delete, as OpenNebula groups them).
_ADMIN_ACTIONS = ("resched", "unresched", "deploy", "migrate", "recover")
_DEVICE_ACTIONS = (
    "disk-attach",
    "disk-detach",
    "nic-attach",
    "nic-detach",
    "disk-snapshot-create",
    "disk-snapshot-revert",
    "disk-snapshot-delete",
    "resize",
    "sched-add",
    "sched-update",
    "sched-delete",
)
RIGHTS: dict[str, str] = {
    **dict.fromkeys(SIMPLE_ACTIONS + _DEVICE_ACTIONS, "MANAGE"),
    **dict.fromkeys(_ADMIN_ACTIONS, "ADMIN"),
}
RECOVER_OPS = ("success", "failure", "retry", "delete", "delete-recreate")


def target(view: View, args: dict, cmd: dict, action: str) -> dict:
    """The VM an action addresses, authorized for the action's right (the system's own
    proposals, uid -1, need none)."""
    vm = objects.get(view, KIND, arg_int(args, "id"))
    if cmd["uid"] != SYSTEM_UID:
        require(view, cmd, objects.auth(KIND, vm, RIGHTS[action]))
    return vm


# --- allocate -------------------------------------------------------------------------


def op_vm_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("template",), ("hold", "name"))
    text = arg_template(args)
    hold = arg_bool(args, "hold") if "hold" in args else False
    name = objects.check_name(args["name"]) if "name" in args else None
    if name is None:
        name = vmcore.name_of(vmcore.parse_text(text))
        if name is not None:
            objects.check_name(name, "template NAME")
    record, mutations = vmcore.create(view, cmd, text, hold=hold, name=name)
    return mutations, ok({"id": record["id"]})


# --- plain life-cycle actions -----------------------------------------------------------


def _simple(action: str):
    def op(view: View, args: dict, cmd: dict, index: int) -> Result:
        check_args(args, ("id",))
        vm = target(view, args, cmd, action)
        ov = Overlay(view)
        vmcore.step(ov, cmd, vm, action)
        return ov.mutations, ok()

    op.__name__ = f"op_vm_{action.replace('-', '_')}"
    op.__doc__ = f"vm.{action} {{id}}: the life-cycle event {action!r}."
    return op


# --- placement ------------------------------------------------------------------------


def _host(view: View, args: dict, cmd: dict) -> tuple[dict, list]:
    host = objects.ref(view, "host", args["host"], "host")
    return host, [objects.auth("host", host, "MANAGE")]


def _is_system_ds(ds: dict) -> bool | None:
    """Whether a datastore record is a system datastore (None: the record does not say)."""
    kind = ds.get("type", ds.get("ds_type"))
    if kind is None:
        return None
    return str(kind).upper() in ("SYSTEM", "SYSTEM_DS", "1")


def _datastore(view: View, args: dict, host: dict, default: int) -> tuple[int, list]:
    """The system datastore for the VM on `host`: the one asked for (checked: USE, a
    system datastore, in the host's cluster), else `default`, else the first system
    datastore of the host's cluster (-1 when none is known)."""
    if "ds" not in args:
        if default >= 0:
            return default, []
        for cid in host.get("cids", []):
            for ds_id in objects.ids_by_index(view, "datastore", "cluster", cid):
                ds = objects.find(view, "datastore", ds_id)
                if ds is not None and _is_system_ds(ds) and ds.get("state", 0) == 0:
                    return ds_id, []
        return -1, []
    ds = objects.ref(view, "datastore", args["ds"], "ds")
    if _is_system_ds(ds) is False:
        raise bad(f"argument 'ds': datastore {ds['id']} is not a system datastore")
    if ds.get("state", 0) != 0:
        raise Reject(ErrorCode.ACTION, f"datastore {ds['id']} is disabled: no VM goes there")
    if ds.get("cids") and host.get("cids") and not set(ds["cids"]) & set(host["cids"]):
        raise bad(f"argument 'ds': datastore {ds['id']} is not in the cluster of host {host['id']}")
    return ds["id"], [objects.auth("datastore", ds, "USE")]


def op_vm_deploy(view: View, args: dict, cmd: dict, index: int) -> Result:
    """Place a VM on a host (OpenNebula's vm.deploy; the leader's scheduler proposes it
    as uid -1). The event is deploy, or deploy-from-stopped / -undeployed when the last
    history record says the VM was stopped or undeployed (it resumes from its files)."""
    check_args(args, ("id", "host"), ("ds",))
    vm = target(view, args, cmd, "deploy")
    last = vm["history"][-1]["action"] if vm["history"] else None
    event = lifecycle.deploy_event(last)
    vmcore.check_event(vm, event)
    ov = Overlay(view)
    host, requests = _host(ov, args, cmd)
    ds_id, more = _datastore(ov, args, host, -1)
    if cmd["uid"] != SYSTEM_UID:
        require(ov, cmd, *requests, *more)

    def prepare(new: dict) -> None:
        vmcore.hold_host(ov, new, host["id"], manual=cmd["uid"] != SYSTEM_UID)
        vmcore.new_record(ov, new, cmd, host, ds_id, prolog=True, running=False)
        new["deploy_id"] = f"one-{new['id']}"

    vmcore.step(ov, cmd, vm, event, prepare=prepare)
    return ov.mutations, ok()


def op_vm_migrate(view: View, args: dict, cmd: dict, index: int) -> Result:
    """Move a VM to another host: cold (save, move the disks, restore) or live. The
    record of the host it leaves is closed (action migrate / migrate-live) and one on the
    new host opened; the new host's capacity is taken now, the old one's freed when the
    migration succeeds (or the new one's if it is abandoned)."""
    check_args(args, ("id", "host"), ("ds", "live", "enforce"))
    vm = target(view, args, cmd, "migrate")
    live = arg_bool(args, "live") if "live" in args else False
    if "enforce" in args:
        arg_bool(args, "enforce")  # the host's capacity is always checked here
    event = "migrate-live" if live else "migrate"
    vmcore.check_event(vm, event)
    ov = Overlay(view)
    host, requests = _host(ov, args, cmd)
    if vm["capacity"] and vm["capacity"][-1]["hid"] == host["id"]:
        raise Reject(ErrorCode.ACTION, f"VM {vm['id']} is already on host {host['id']}")
    current = vm["history"][-1]["ds_id"] if vm["history"] else -1
    ds_id, more = _datastore(ov, args, host, current)
    require(ov, cmd, *requests, *more)

    def prepare(new: dict) -> None:
        record = vmcore.open_record(new)
        if record is not None:
            vmcore.close_record(record, cmd["ts"], event, REASON_USER)
        vmcore.hold_host(ov, new, host["id"], manual=True)
        vmcore.new_record(ov, new, cmd, host, ds_id, prolog=not live, running=live)

    vmcore.step(ov, cmd, vm, event, prepare=prepare)
    return ov.mutations, ok()


def op_vm_recover(view: View, args: dict, cmd: dict, index: int) -> Result:
    """OpenNebula's vm.recover: success / failure (the operation in flight did / did not
    work), retry (drive it again), delete (clean up and end the VM), delete-recreate
    (clean up and queue it again)."""
    check_args(args, ("id", "op"))
    op = args["op"]
    if op not in RECOVER_OPS:
        raise bad(f"argument 'op' must be one of {', '.join(RECOVER_OPS)}, got {op!r}")
    vm = target(view, args, cmd, "recover")
    ov = Overlay(view)
    vmcore.step(ov, cmd, vm, f"recover-{op}")
    return ov.mutations, ok()


def op_vm_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    """PoolService.Delete of a VM: OpenNebula's old vm.delete, today `recover --delete`
    (an ADMIN operation): clean the VM up wherever it is and end it."""
    check_args(args, ("id",))
    vm = target(view, args, cmd, "recover")
    ov = Overlay(view)
    vmcore.step(ov, cmd, vm, "recover-delete")
    return ov.mutations, ok()


# --- outcomes -------------------------------------------------------------------------


def op_vm_outcome(view: View, args: dict, cmd: dict, index: int) -> Result:
    """What the reconciler found after driving a host (or monitoring saw): the outcome
    event moves the VM as the life-cycle table says. A refusal is a stale report (the VM
    moved on meanwhile) and changes nothing. Proposed by the front-ends (uid -1); an
    administrator of the VM may propose it too (tests, manual repair)."""
    check_args(args, ("id", "event"), ("message",))
    event: Any = args["event"]
    if event not in lifecycle.OUTCOMES:
        raise bad(f"argument 'event' must be an outcome ({', '.join(lifecycle.OUTCOMES)})")
    message = args.get("message")
    if message is not None and (
        not isinstance(message, str) or not 1 <= len(message) <= MAX_MESSAGE_CHARS
    ):
        raise bad(f"argument 'message' must be 1..{MAX_MESSAGE_CHARS} characters")
    vm = objects.get(view, KIND, arg_int(args, "id"))
    if cmd["uid"] != SYSTEM_UID:
        require(view, cmd, objects.auth(KIND, vm, "ADMIN"))
    ov = Overlay(view)
    vmcore.step(ov, cmd, vm, event, outcome=True, message=message)
    return ov.mutations, ok()


def op_vm_update(view: View, args: dict, cmd: dict, index: int) -> Result:
    """OpenNebula's `onevm update`: the VM's USER_TEMPLATE. What the VM is (capacity,
    disks, costs: its TEMPLATE) changes only through its actions."""
    vm = objects.get(view, KIND, arg_int(args, "id"))
    text = updated_template(args, {"template": vm["user_template"]})
    system = sorted({k for k, _ in template.parse(text)} & vmcore.SYSTEM_ATTRS)
    if system:
        raise bad(
            f"{', '.join(system)}: part of the VM's TEMPLATE, which update does not change "
            "(update edits the USER_TEMPLATE)"
        )
    require(view, cmd, objects.auth(KIND, vm, "MANAGE"))
    return objects.put(view, KIND, {**vm, "user_template": text}, vm), ok()


HANDLERS = {
    "vm.allocate": op_vm_allocate,
    "vm.update": op_vm_update,
    **{f"vm.{a}": _simple(a) for a in SIMPLE_ACTIONS},
    "vm.deploy": op_vm_deploy,
    "vm.migrate": op_vm_migrate,
    "vm.recover": op_vm_recover,
    "vm.delete": op_vm_delete,
    "vm.outcome": op_vm_outcome,
}
