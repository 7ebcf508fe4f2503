"""The VM life-cycle: OpenNebula's STATE / LCM_STATE pair and the one table that moves it.

A VM's position is a pair ``(VmState, LcmState)``; the LCM state only means something while
the VM is ACTIVE (every other state carries ``LCM_INIT``). Everything that may move a VM is
an *event*, of two kinds:

* **actions**, proposed through the log by the API (OpenNebula's ``vm.action`` names and the
  other VM calls: migrate, recover, attach/detach, snapshots, resize, backup) or by the
  leader's scheduler (``deploy``);
* **outcomes**, proposed through the log by the leader's lifecycle reconciler after it drove a
  driver (``prolog_success``, ``boot_failure``, ...) or noticed something while monitoring
  (``monitor_unknown``: the domain vanished, ...).

``TABLE`` maps ``(event, (state, lcm))`` to ``(new state, new lcm, intent)``. The *intent*
names the side effect the reconciler must now drive (``None``: nothing to do on a host).
Because the store changes only by applying committed commands, the intent is always acted on
after the state that justifies it is committed, and its result comes back as an outcome
event. A pair/event combination missing from the table is refused with OpenNebula's "action
not allowed in this state" error; a refused *outcome* is a stale report (the VM moved on,
e.g. the user terminated it meanwhile) and leaves the state unchanged.

Intents (what the reconciler does; the VM record says on which host / with which files):

=====================  ====================================================================
prolog                 transfer the VM's images to the host's system datastore
prolog_resume          bring the disks (and the checkpoint, after ``stop``) back from the
                       front-end's system datastore (after ``stop`` / ``undeploy``)
prolog_migrate         move the disks from the previous host to the new one
boot                   create the domain (``one-<vmid>``) and start it
restore_checkpoint     start the domain from its saved memory checkpoint
migrate_live           live-migrate the running domain to the new host
save                   save the domain's memory to a checkpoint and stop it
shutdown               ACPI shutdown (retries: hard if the recorded action was ``-hard``)
shutdown_hard          destroy the domain (cancelling an in-flight soft shutdown)
reboot / reset         guest reboot / hard reset, the VM stays RUNNING
epilog                 delete the VM's files (on the host, or on the front-end if the VM was
                       stopped/undeployed), saving persistent disks back to their images
epilog_stop            move disks (and checkpoint) to the front-end's system datastore
attach_disk, ...       hot-plug (RUNNING) or datastore-only (POWEROFF) disk / NIC change
snapshot_*             VM (memory) snapshot create / revert / delete on the hypervisor
disk_snapshot_*        disk snapshot create / revert / delete
disk_resize, disk_saveas, resize, backup, backup_cancel, restore_backup
cleanup                cancel whatever driver action is in flight and remove every trace of
                       the VM from its host (``recover --delete[-recreate]``, terminate of a
                       failed VM); the outcome is ``cleanup_success`` / ``cleanup_failure``
check_clone            re-check the images a CLONING VM waits for
rollback_migrate       the migration is abandoned: the VM belongs to the host it was leaving
                       again (the apply layer reopens that host's history record); any work
                       the new state needs there (e.g. BOOT_MIGRATE: restore) follows
=====================  ====================================================================

Where the table deliberately differs from OpenNebula it says so next to the rows.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final


class VmState(enum.IntEnum):
    """OpenNebula's STATE (value 7, the old FAILED, was removed upstream and is not used)."""

    INIT = 0
    PENDING = 1
    HOLD = 2
    ACTIVE = 3
    STOPPED = 4
    SUSPENDED = 5
    DONE = 6
    POWEROFF = 8
    UNDEPLOYED = 9
    CLONING = 10
    CLONING_FAILURE = 11


class LcmState(enum.IntEnum):
    """OpenNebula's LCM_STATE with its numeric values (the values are part of the API).

    Upstream retired CANCEL 13, FAILURE 14, DISK_SNAPSHOT_REVERT_SUSPENDED 55 and
    DISK_SNAPSHOT_REVERT 58 (reverting a disk snapshot needs a powered-off VM); their numbers
    stay unused here so that every other value matches OpenNebula 6.x/7.x.
    """

    LCM_INIT = 0
    PROLOG = 1
    BOOT = 2
    RUNNING = 3
    MIGRATE = 4
    SAVE_STOP = 5
    SAVE_SUSPEND = 6
    SAVE_MIGRATE = 7
    PROLOG_MIGRATE = 8
    PROLOG_RESUME = 9
    EPILOG_STOP = 10
    EPILOG = 11
    SHUTDOWN = 12
    CLEANUP_RESUBMIT = 15
    UNKNOWN = 16
    HOTPLUG = 17
    SHUTDOWN_POWEROFF = 18
    BOOT_UNKNOWN = 19
    BOOT_POWEROFF = 20
    BOOT_SUSPENDED = 21
    BOOT_STOPPED = 22
    CLEANUP_DELETE = 23
    HOTPLUG_SNAPSHOT = 24
    HOTPLUG_NIC = 25
    HOTPLUG_SAVEAS = 26
    HOTPLUG_SAVEAS_POWEROFF = 27
    HOTPLUG_SAVEAS_SUSPENDED = 28
    SHUTDOWN_UNDEPLOY = 29
    EPILOG_UNDEPLOY = 30
    PROLOG_UNDEPLOY = 31
    BOOT_UNDEPLOY = 32
    HOTPLUG_PROLOG_POWEROFF = 33
    HOTPLUG_EPILOG_POWEROFF = 34
    BOOT_MIGRATE = 35
    BOOT_FAILURE = 36
    BOOT_MIGRATE_FAILURE = 37
    PROLOG_MIGRATE_FAILURE = 38
    PROLOG_FAILURE = 39
    EPILOG_FAILURE = 40
    EPILOG_STOP_FAILURE = 41
    EPILOG_UNDEPLOY_FAILURE = 42
    PROLOG_MIGRATE_POWEROFF = 43
    PROLOG_MIGRATE_POWEROFF_FAILURE = 44
    PROLOG_MIGRATE_SUSPEND = 45
    PROLOG_MIGRATE_SUSPEND_FAILURE = 46
    BOOT_UNDEPLOY_FAILURE = 47
    BOOT_STOPPED_FAILURE = 48
    PROLOG_RESUME_FAILURE = 49
    PROLOG_UNDEPLOY_FAILURE = 50
    DISK_SNAPSHOT_POWEROFF = 51
    DISK_SNAPSHOT_REVERT_POWEROFF = 52
    DISK_SNAPSHOT_DELETE_POWEROFF = 53
    DISK_SNAPSHOT_SUSPENDED = 54
    DISK_SNAPSHOT_DELETE_SUSPENDED = 56
    DISK_SNAPSHOT = 57
    DISK_SNAPSHOT_DELETE = 59
    PROLOG_MIGRATE_UNKNOWN = 60
    PROLOG_MIGRATE_UNKNOWN_FAILURE = 61
    DISK_RESIZE = 62
    DISK_RESIZE_POWEROFF = 63
    DISK_RESIZE_UNDEPLOYED = 64
    HOTPLUG_NIC_POWEROFF = 65
    HOTPLUG_RESIZE = 66
    HOTPLUG_SAVEAS_UNDEPLOYED = 67
    HOTPLUG_SAVEAS_STOPPED = 68
    BACKUP = 69
    BACKUP_POWEROFF = 70
    RESTORE = 71


Pair = tuple[VmState, LcmState]
Row = tuple[VmState, LcmState, str | None]

# ---------------------------------------------------------------------------------------
# Pairs and their names
# ---------------------------------------------------------------------------------------

# VmState and LcmState share no member names, so one name identifies a pair the way
# OpenNebula's state_str() prints it: the LCM name while ACTIVE, the STATE name otherwise.
_A: Final = VmState.ACTIVE

# INIT is left out on purpose: OpenNebula never stores a VM in INIT (allocate writes PENDING,
# HOLD or CLONING), and neither does this project (see initial_state()).
VALID_PAIRS: Final[frozenset[Pair]] = frozenset(
    [(s, LcmState.LCM_INIT) for s in VmState if s not in (VmState.INIT, VmState.ACTIVE)]
    + [(_A, lcm) for lcm in LcmState if lcm is not LcmState.LCM_INIT]
)

#: Where a new VM starts (allocate / instantiate; CLONING while persistent images are copied).
INITIAL_PAIRS: Final[frozenset[Pair]] = frozenset(
    (s, LcmState.LCM_INIT) for s in (VmState.PENDING, VmState.HOLD, VmState.CLONING)
)


def state_str(state: VmState | int, lcm: LcmState | int) -> str:
    """OpenNebula's one-word state name: the LCM state while ACTIVE, the STATE otherwise."""
    state, lcm = VmState(state), LcmState(lcm)
    return lcm.name if state is _A else state.name


def pair_of(name: str) -> Pair:
    """Inverse of state_str(): 'RUNNING' -> (ACTIVE, RUNNING), 'POWEROFF' -> (POWEROFF, LCM_INIT)."""
    if name in VmState.__members__ and name != "ACTIVE":
        return VmState[name], LcmState.LCM_INIT
    if name in LcmState.__members__ and name != "LCM_INIT":
        return _A, LcmState[name]
    raise ValueError(f"no VM state named {name!r}")


def initial_state(*, hold: bool = False, cloning: bool = False) -> Pair:
    """Where allocate / instantiate puts a VM (on hold if asked; CLONING first if it waits)."""
    if cloning:
        return VmState.CLONING, LcmState.LCM_INIT
    return (VmState.HOLD if hold else VmState.PENDING), LcmState.LCM_INIT


# ---------------------------------------------------------------------------------------
# Events
# ---------------------------------------------------------------------------------------

#: Actions: the API's and the scheduler's commands (OpenNebula names, hyphenated).
ACTIONS: Final[tuple[str, ...]] = (
    # vm.action
    "terminate", "terminate-hard", "undeploy", "undeploy-hard", "poweroff", "poweroff-hard",
    "reboot", "reboot-hard", "hold", "release", "stop", "suspend", "resume",
    "resched", "unresched",
    # scheduler placement / vm.deploy. A PENDING VM that was stopped or undeployed before
    # must resume from the front-end's copy instead of a fresh prolog; OpenNebula finds
    # that in the history record, here the caller picks the event (see deploy_event()).
    "deploy", "deploy-from-stopped", "deploy-from-undeployed",
    # vm.migrate (cold / live)
    "migrate", "migrate-live",
    # vm.recover
    "recover-success", "recover-failure", "recover-retry", "recover-delete",
    "recover-delete-recreate",
    # hot-plug and storage operations
    "disk-attach", "disk-detach", "nic-attach", "nic-detach",
    "disk-snapshot-create", "disk-snapshot-revert", "disk-snapshot-delete",
    "disk-resize", "disk-saveas",
    "snapshot-create", "snapshot-revert", "snapshot-delete",
    "resize", "backup", "backup-cancel", "restore",
)  # fmt: skip

#: Outcomes: what the lifecycle reconciler proposes after driving a driver or monitoring.
OUTCOMES: Final[tuple[str, ...]] = (
    "prolog_success", "prolog_failure", "boot_success", "boot_failure",
    "migrate_success", "migrate_failure", "save_success", "save_failure",
    "shutdown_success", "shutdown_failure", "epilog_success", "epilog_failure",
    "hotplug_success", "hotplug_failure", "snapshot_success", "snapshot_failure",
    "disk_snapshot_success", "disk_snapshot_failure",
    "disk_resize_success", "disk_resize_failure", "saveas_success", "saveas_failure",
    "backup_success", "backup_failure", "restore_success", "restore_failure",
    "cleanup_success", "cleanup_failure",
    "clone_success", "clone_success_hold", "clone_failure",
    "monitor_unknown", "monitor_running", "monitor_poweroff", "monitor_suspended",
)  # fmt: skip

EVENTS: Final[tuple[str, ...]] = ACTIONS + OUTCOMES
_EVENT_SET: Final = frozenset(EVENTS)


def deploy_event(previous_action: str | None) -> str:
    """The deploy event for a VM whose last history record ended with `previous_action`."""
    if previous_action == "stop":
        return "deploy-from-stopped"
    if previous_action in ("undeploy", "undeploy-hard"):
        return "deploy-from-undeployed"
    return "deploy"


# ---------------------------------------------------------------------------------------
# Groups of LCM states, by the driver operation in flight
# ---------------------------------------------------------------------------------------

_L = LcmState

#: Operation in flight -> the LCM states that wait for its outcome, reported by the
#: reconciler as "<operation>_success" / "<operation>_failure".
_OPERATION_STATES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "prolog": "PROLOG PROLOG_RESUME PROLOG_UNDEPLOY PROLOG_MIGRATE PROLOG_MIGRATE_POWEROFF"
        " PROLOG_MIGRATE_SUSPEND PROLOG_MIGRATE_UNKNOWN",
        "boot": "BOOT BOOT_UNKNOWN BOOT_POWEROFF BOOT_SUSPENDED BOOT_STOPPED BOOT_UNDEPLOY"
        " BOOT_MIGRATE",
        "migrate": "MIGRATE",
        "save": "SAVE_STOP SAVE_SUSPEND SAVE_MIGRATE",
        "shutdown": "SHUTDOWN SHUTDOWN_POWEROFF SHUTDOWN_UNDEPLOY",
        "epilog": "EPILOG EPILOG_STOP EPILOG_UNDEPLOY",
        "hotplug": "HOTPLUG HOTPLUG_PROLOG_POWEROFF HOTPLUG_EPILOG_POWEROFF HOTPLUG_NIC"
        " HOTPLUG_NIC_POWEROFF HOTPLUG_RESIZE",
        "snapshot": "HOTPLUG_SNAPSHOT",
        "saveas": "HOTPLUG_SAVEAS HOTPLUG_SAVEAS_POWEROFF HOTPLUG_SAVEAS_SUSPENDED"
        " HOTPLUG_SAVEAS_UNDEPLOYED HOTPLUG_SAVEAS_STOPPED",
        "disk_snapshot": "DISK_SNAPSHOT DISK_SNAPSHOT_DELETE DISK_SNAPSHOT_POWEROFF"
        " DISK_SNAPSHOT_REVERT_POWEROFF DISK_SNAPSHOT_DELETE_POWEROFF"
        " DISK_SNAPSHOT_SUSPENDED DISK_SNAPSHOT_DELETE_SUSPENDED",
        "disk_resize": "DISK_RESIZE DISK_RESIZE_POWEROFF DISK_RESIZE_UNDEPLOYED",
        "backup": "BACKUP BACKUP_POWEROFF",
        "restore": "RESTORE",
        "cleanup": "CLEANUP_DELETE CLEANUP_RESUBMIT",
    }
)
_OPERATION: Final[Mapping[LcmState, str]] = MappingProxyType(  # the inverse
    {LcmState[name]: op for op, names in _OPERATION_STATES.items() for name in names.split()}
)

#: The driver intent that keeps an in-flight state going; recover-retry re-issues it. Only
#: the states OpenNebula can retry (prolog, boot, migrate, save, shutdown, epilog) are here.
_RETRY_INTENT: Final[Mapping[LcmState, str]] = MappingProxyType(
    {
        _L.PROLOG: "prolog",
        _L.PROLOG_RESUME: "prolog_resume",
        _L.PROLOG_UNDEPLOY: "prolog_resume",
        _L.PROLOG_MIGRATE: "prolog_migrate",
        _L.PROLOG_MIGRATE_POWEROFF: "prolog_migrate",
        _L.PROLOG_MIGRATE_SUSPEND: "prolog_migrate",
        _L.PROLOG_MIGRATE_UNKNOWN: "prolog_migrate",
        _L.BOOT: "boot",
        _L.BOOT_UNKNOWN: "boot",
        _L.BOOT_POWEROFF: "boot",
        _L.BOOT_UNDEPLOY: "boot",
        _L.BOOT_SUSPENDED: "restore_checkpoint",
        _L.BOOT_STOPPED: "restore_checkpoint",
        _L.BOOT_MIGRATE: "restore_checkpoint",
        _L.MIGRATE: "migrate_live",
        _L.SAVE_STOP: "save",
        _L.SAVE_SUSPEND: "save",
        _L.SAVE_MIGRATE: "save",
        _L.SHUTDOWN: "shutdown",
        _L.SHUTDOWN_POWEROFF: "shutdown",
        _L.SHUTDOWN_UNDEPLOY: "shutdown",
        _L.EPILOG: "epilog",
        _L.EPILOG_STOP: "epilog_stop",
        _L.EPILOG_UNDEPLOY: "epilog_stop",
    }
)

#: The *_FAILURE states (the VM waits for a human) -> the state whose operation failed.
_FAILED: Final[Mapping[LcmState, LcmState]] = MappingProxyType(
    {
        _L.BOOT_FAILURE: _L.BOOT,
        _L.BOOT_MIGRATE_FAILURE: _L.BOOT_MIGRATE,
        _L.BOOT_UNDEPLOY_FAILURE: _L.BOOT_UNDEPLOY,
        _L.BOOT_STOPPED_FAILURE: _L.BOOT_STOPPED,
        _L.PROLOG_FAILURE: _L.PROLOG,
        _L.PROLOG_MIGRATE_FAILURE: _L.PROLOG_MIGRATE,
        _L.PROLOG_MIGRATE_POWEROFF_FAILURE: _L.PROLOG_MIGRATE_POWEROFF,
        _L.PROLOG_MIGRATE_SUSPEND_FAILURE: _L.PROLOG_MIGRATE_SUSPEND,
        _L.PROLOG_MIGRATE_UNKNOWN_FAILURE: _L.PROLOG_MIGRATE_UNKNOWN,
        _L.PROLOG_RESUME_FAILURE: _L.PROLOG_RESUME,
        _L.PROLOG_UNDEPLOY_FAILURE: _L.PROLOG_UNDEPLOY,
        _L.EPILOG_FAILURE: _L.EPILOG,
        _L.EPILOG_STOP_FAILURE: _L.EPILOG_STOP,
        _L.EPILOG_UNDEPLOY_FAILURE: _L.EPILOG_UNDEPLOY,
    }
)

#: Where the scheduler may honour the resched flag (OpenNebula: RUNNING, UNKNOWN, POWEROFF).
RESCHED_PAIRS: Final[frozenset[Pair]] = frozenset(map(pair_of, ("RUNNING", "UNKNOWN", "POWEROFF")))

# ---------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------

_ALL_ACTIVE: Final = tuple(lcm.name for lcm in LcmState if lcm is not _L.LCM_INIT)
_FAILURES: Final = tuple(lcm.name for lcm in _FAILED)

# Rows: (events, from-states, to-state, intent). "=" as the to-state keeps the pair
# (self-loops: reboot, resched, re-issued hard shutdowns, capacity resize while not running).
# Read "RUNNING" as ACTIVE/RUNNING and "POWEROFF" as POWEROFF/LCM_INIT (see pair_of()).
_ROWS: Final[tuple[tuple[tuple[str, ...], tuple[str, ...], str, str | None], ...]] = (
    # --- placement and start: PENDING -> PROLOG -> BOOT -> RUNNING ------------------------
    # deploy also takes HOLD, STOPPED, UNDEPLOYED: OpenNebula's vm.deploy (admin) accepts
    # them; the scheduler only places PENDING VMs.
    (("deploy",), ("PENDING", "HOLD"), "PROLOG", "prolog"),
    (("deploy", "deploy-from-stopped"), ("STOPPED",), "PROLOG_RESUME", "prolog_resume"),
    (("deploy", "deploy-from-undeployed"), ("UNDEPLOYED",), "PROLOG_UNDEPLOY", "prolog_resume"),
    (("deploy-from-stopped",), ("PENDING", "HOLD"), "PROLOG_RESUME", "prolog_resume"),
    (("deploy-from-undeployed",), ("PENDING", "HOLD"), "PROLOG_UNDEPLOY", "prolog_resume"),
    (("hold",), ("PENDING",), "HOLD", None),
    (("release",), ("HOLD",), "PENDING", None),
    (("prolog_success",), ("PROLOG", "PROLOG_MIGRATE_UNKNOWN"), "BOOT", "boot"),
    (("prolog_success",), ("PROLOG_RESUME",), "BOOT_STOPPED", "restore_checkpoint"),
    (("prolog_success",), ("PROLOG_UNDEPLOY",), "BOOT_UNDEPLOY", "boot"),
    (("prolog_success",), ("PROLOG_MIGRATE",), "BOOT_MIGRATE", "restore_checkpoint"),
    (("prolog_success",), ("PROLOG_MIGRATE_POWEROFF",), "POWEROFF", None),
    (("prolog_success",), ("PROLOG_MIGRATE_SUSPEND",), "SUSPENDED", None),
    *(
        (("prolog_failure",), (running.name,), failed.name, None)
        for failed, running in _FAILED.items()
        if _OPERATION[running] == "prolog"
    ),
    (("boot_success", "monitor_running"), tuple(
        lcm.name for lcm, op in _OPERATION.items() if op == "boot"), "RUNNING", None),
    (("boot_failure",), ("BOOT",), "BOOT_FAILURE", None),
    (("boot_failure",), ("BOOT_MIGRATE",), "BOOT_MIGRATE_FAILURE", None),
    (("boot_failure",), ("BOOT_STOPPED",), "BOOT_STOPPED_FAILURE", None),
    (("boot_failure",), ("BOOT_UNDEPLOY",), "BOOT_UNDEPLOY_FAILURE", None),
    # resuming a powered-off / suspended / vanished VM that fails to boot falls back to
    # where it was: nothing was copied, so there is nothing to repair.
    (("boot_failure",), ("BOOT_POWEROFF",), "POWEROFF", None),
    (("boot_failure",), ("BOOT_SUSPENDED",), "SUSPENDED", None),
    (("boot_failure",), ("BOOT_UNKNOWN",), "UNKNOWN", None),
    # --- terminate: RUNNING/UNKNOWN -> SHUTDOWN -> EPILOG -> DONE ------------------------
    (("terminate", "terminate-hard"), ("PENDING", "HOLD", "CLONING", "CLONING_FAILURE"),
     "DONE", None),
    (("terminate", "terminate-hard"), ("POWEROFF", "SUSPENDED", "STOPPED", "UNDEPLOYED"),
     "EPILOG", "epilog"),
    # a failed VM has nothing consistent to shut down: terminate cleans it up (OpenNebula
    # runs the same path as recover --delete).
    (("terminate", "terminate-hard"), _FAILURES, "CLEANUP_DELETE", "cleanup"),
    (("terminate",), ("RUNNING", "UNKNOWN"), "SHUTDOWN", "shutdown"),
    # -hard also overrides a soft shutdown that hangs (the guest ignores ACPI).
    (("terminate-hard",), ("RUNNING", "UNKNOWN", "SHUTDOWN"), "SHUTDOWN", "shutdown_hard"),
    (("shutdown_success",), ("SHUTDOWN",), "EPILOG", "epilog"),
    (("shutdown_success",), ("SHUTDOWN_POWEROFF",), "POWEROFF", None),
    (("shutdown_success",), ("SHUTDOWN_UNDEPLOY",), "EPILOG_UNDEPLOY", "epilog_stop"),
    # a shutdown that did not finish leaves the guest running (monitoring corrects it).
    (("shutdown_failure",), ("SHUTDOWN", "SHUTDOWN_POWEROFF", "SHUTDOWN_UNDEPLOY"),
     "RUNNING", None),
    (("epilog_success",), ("EPILOG",), "DONE", None),
    (("epilog_success",), ("EPILOG_STOP",), "STOPPED", None),
    (("epilog_success",), ("EPILOG_UNDEPLOY",), "UNDEPLOYED", None),
    *(
        (("epilog_failure",), (running.name,), failed.name, None)
        for failed, running in _FAILED.items()
        if _OPERATION[running] == "epilog"
    ),
    # --- poweroff / undeploy / suspend / stop ---------------------------------------------
    (("poweroff",), ("RUNNING", "UNKNOWN"), "SHUTDOWN_POWEROFF", "shutdown"),
    (("poweroff-hard",), ("RUNNING", "UNKNOWN", "SHUTDOWN_POWEROFF"), "SHUTDOWN_POWEROFF",
     "shutdown_hard"),
    (("undeploy",), ("RUNNING", "UNKNOWN"), "SHUTDOWN_UNDEPLOY", "shutdown"),
    (("undeploy-hard",), ("RUNNING", "UNKNOWN", "SHUTDOWN_UNDEPLOY"), "SHUTDOWN_UNDEPLOY",
     "shutdown_hard"),
    (("undeploy", "undeploy-hard"), ("POWEROFF",), "EPILOG_UNDEPLOY", "epilog_stop"),
    (("suspend",), ("RUNNING",), "SAVE_SUSPEND", "save"),
    (("stop",), ("RUNNING",), "SAVE_STOP", "save"),
    (("stop",), ("SUSPENDED",), "EPILOG_STOP", "epilog_stop"),
    (("save_success",), ("SAVE_SUSPEND",), "SUSPENDED", None),
    (("save_success",), ("SAVE_STOP",), "EPILOG_STOP", "epilog_stop"),
    (("save_success",), ("SAVE_MIGRATE",), "PROLOG_MIGRATE", "prolog_migrate"),
    (("save_failure",), ("SAVE_SUSPEND", "SAVE_STOP"), "RUNNING", None),
    (("save_failure",), ("SAVE_MIGRATE",), "RUNNING", "rollback_migrate"),
    # --- resume, reboot, resched -----------------------------------------------------------
    # STOPPED/UNDEPLOYED go back to the scheduler; the others restart where they are.
    (("resume",), ("STOPPED", "UNDEPLOYED"), "PENDING", None),
    (("resume",), ("SUSPENDED",), "BOOT_SUSPENDED", "restore_checkpoint"),
    (("resume",), ("POWEROFF",), "BOOT_POWEROFF", "boot"),
    (("resume",), ("UNKNOWN",), "BOOT_UNKNOWN", "boot"),
    (("reboot",), ("RUNNING",), "=", "reboot"),
    (("reboot-hard",), ("RUNNING",), "=", "reset"),
    # a flag for the scheduler, not a state change (Transition.resched carries it).
    (("resched", "unresched"), ("RUNNING", "UNKNOWN", "POWEROFF"), "=", None),
    # --- migration -------------------------------------------------------------------------
    # cold: save the memory, move the disks, restore. Powered-off / suspended / vanished VMs
    # have no memory to save and go straight to moving the disks.
    (("migrate",), ("RUNNING",), "SAVE_MIGRATE", "save"),
    (("migrate",), ("POWEROFF",), "PROLOG_MIGRATE_POWEROFF", "prolog_migrate"),
    (("migrate",), ("SUSPENDED",), "PROLOG_MIGRATE_SUSPEND", "prolog_migrate"),
    (("migrate",), ("UNKNOWN",), "PROLOG_MIGRATE_UNKNOWN", "prolog_migrate"),
    (("migrate-live",), ("RUNNING",), "MIGRATE", "migrate_live"),
    (("migrate_success",), ("MIGRATE",), "RUNNING", None),
    (("migrate_failure",), ("MIGRATE",), "RUNNING", "rollback_migrate"),
    # --- hot-plug: disks, NICs, capacity ----------------------------------------------------
    # A powered-off VM's disk change is a datastore operation (TM only). OpenNebula changes a
    # powered-off KVM VM's NICs without a driver call and stays POWEROFF; here the change
    # always goes through HOTPLUG_NIC_POWEROFF so the driver decides (a no-op for KVM).
    (("disk-attach",), ("RUNNING",), "HOTPLUG", "attach_disk"),
    (("disk-attach",), ("POWEROFF",), "HOTPLUG_PROLOG_POWEROFF", "attach_disk"),
    (("disk-detach",), ("RUNNING",), "HOTPLUG", "detach_disk"),
    (("disk-detach",), ("POWEROFF",), "HOTPLUG_EPILOG_POWEROFF", "detach_disk"),
    (("nic-attach",), ("RUNNING",), "HOTPLUG_NIC", "attach_nic"),
    (("nic-attach",), ("POWEROFF",), "HOTPLUG_NIC_POWEROFF", "attach_nic"),
    (("nic-detach",), ("RUNNING",), "HOTPLUG_NIC", "detach_nic"),
    (("nic-detach",), ("POWEROFF",), "HOTPLUG_NIC_POWEROFF", "detach_nic"),
    # capacity of a VM that is not running is only a record change (host capacity and quota
    # checks are the apply layer's); a RUNNING VM is resized live.
    (("resize",), ("PENDING", "HOLD", "POWEROFF", "UNDEPLOYED", "CLONING", "CLONING_FAILURE"),
     "=", None),
    (("resize",), ("RUNNING",), "HOTPLUG_RESIZE", "resize"),
    (("hotplug_success", "hotplug_failure"), ("HOTPLUG", "HOTPLUG_NIC", "HOTPLUG_RESIZE"),
     "RUNNING", None),
    (("hotplug_success", "hotplug_failure"),
     ("HOTPLUG_PROLOG_POWEROFF", "HOTPLUG_EPILOG_POWEROFF", "HOTPLUG_NIC_POWEROFF"),
     "POWEROFF", None),
    # --- snapshots, disk operations, backups -------------------------------------------------
    (("snapshot-create",), ("RUNNING",), "HOTPLUG_SNAPSHOT", "snapshot_create"),
    (("snapshot-revert",), ("RUNNING",), "HOTPLUG_SNAPSHOT", "snapshot_revert"),
    (("snapshot-delete",), ("RUNNING",), "HOTPLUG_SNAPSHOT", "snapshot_delete"),
    (("snapshot_success", "snapshot_failure"), ("HOTPLUG_SNAPSHOT",), "RUNNING", None),
    (("disk-snapshot-create",), ("RUNNING",), "DISK_SNAPSHOT", "disk_snapshot_create"),
    (("disk-snapshot-create",), ("POWEROFF",), "DISK_SNAPSHOT_POWEROFF",
     "disk_snapshot_create"),
    (("disk-snapshot-create",), ("SUSPENDED",), "DISK_SNAPSHOT_SUSPENDED",
     "disk_snapshot_create"),
    # reverting a disk needs the VM powered off (OpenNebula retired the other revert states).
    (("disk-snapshot-revert",), ("POWEROFF",), "DISK_SNAPSHOT_REVERT_POWEROFF",
     "disk_snapshot_revert"),
    (("disk-snapshot-delete",), ("RUNNING",), "DISK_SNAPSHOT_DELETE", "disk_snapshot_delete"),
    (("disk-snapshot-delete",), ("POWEROFF",), "DISK_SNAPSHOT_DELETE_POWEROFF",
     "disk_snapshot_delete"),
    (("disk-snapshot-delete",), ("SUSPENDED",), "DISK_SNAPSHOT_DELETE_SUSPENDED",
     "disk_snapshot_delete"),
    (("disk_snapshot_success", "disk_snapshot_failure"),
     ("DISK_SNAPSHOT", "DISK_SNAPSHOT_DELETE"), "RUNNING", None),
    (("disk_snapshot_success", "disk_snapshot_failure"),
     ("DISK_SNAPSHOT_POWEROFF", "DISK_SNAPSHOT_REVERT_POWEROFF",
      "DISK_SNAPSHOT_DELETE_POWEROFF"), "POWEROFF", None),
    (("disk_snapshot_success", "disk_snapshot_failure"),
     ("DISK_SNAPSHOT_SUSPENDED", "DISK_SNAPSHOT_DELETE_SUSPENDED"), "SUSPENDED", None),
    (("disk-resize",), ("RUNNING",), "DISK_RESIZE", "disk_resize"),
    (("disk-resize",), ("POWEROFF",), "DISK_RESIZE_POWEROFF", "disk_resize"),
    (("disk-resize",), ("UNDEPLOYED",), "DISK_RESIZE_UNDEPLOYED", "disk_resize"),
    (("disk_resize_success", "disk_resize_failure"), ("DISK_RESIZE",), "RUNNING", None),
    (("disk_resize_success", "disk_resize_failure"), ("DISK_RESIZE_POWEROFF",), "POWEROFF",
     None),
    (("disk_resize_success", "disk_resize_failure"), ("DISK_RESIZE_UNDEPLOYED",),
     "UNDEPLOYED", None),
    (("disk-saveas",), ("RUNNING",), "HOTPLUG_SAVEAS", "disk_saveas"),
    (("disk-saveas",), ("POWEROFF",), "HOTPLUG_SAVEAS_POWEROFF", "disk_saveas"),
    (("disk-saveas",), ("SUSPENDED",), "HOTPLUG_SAVEAS_SUSPENDED", "disk_saveas"),
    (("disk-saveas",), ("UNDEPLOYED",), "HOTPLUG_SAVEAS_UNDEPLOYED", "disk_saveas"),
    (("disk-saveas",), ("STOPPED",), "HOTPLUG_SAVEAS_STOPPED", "disk_saveas"),
    (("saveas_success", "saveas_failure"), ("HOTPLUG_SAVEAS",), "RUNNING", None),
    (("saveas_success", "saveas_failure"), ("HOTPLUG_SAVEAS_POWEROFF",), "POWEROFF", None),
    (("saveas_success", "saveas_failure"), ("HOTPLUG_SAVEAS_SUSPENDED",), "SUSPENDED", None),
    (("saveas_success", "saveas_failure"), ("HOTPLUG_SAVEAS_UNDEPLOYED",), "UNDEPLOYED",
     None),
    (("saveas_success", "saveas_failure"), ("HOTPLUG_SAVEAS_STOPPED",), "STOPPED", None),
    (("backup",), ("RUNNING",), "BACKUP", "backup"),
    (("backup",), ("POWEROFF",), "BACKUP_POWEROFF", "backup"),
    # cancelling asks the driver to stop; its report arrives as backup_failure.
    (("backup-cancel",), ("BACKUP", "BACKUP_POWEROFF"), "=", "backup_cancel"),
    (("backup_success", "backup_failure"), ("BACKUP",), "RUNNING", None),
    (("backup_success", "backup_failure"), ("BACKUP_POWEROFF",), "POWEROFF", None),
    (("restore",), ("POWEROFF",), "RESTORE", "restore_backup"),
    (("restore_success", "restore_failure"), ("RESTORE",), "POWEROFF", None),
    # --- monitoring ------------------------------------------------------------------------
    # what the hypervisor reports wins over what we believed, but only in settled states:
    # during an operation the operation's own outcome decides.
    (("monitor_unknown",), ("RUNNING",), "UNKNOWN", None),
    (("monitor_running",), ("UNKNOWN", "POWEROFF", "SUSPENDED"), "RUNNING", None),
    (("monitor_running",), tuple(f.name for f, r in _FAILED.items()
                                 if _OPERATION[r] == "boot"), "RUNNING", None),
    (("monitor_poweroff",), ("RUNNING", "UNKNOWN", "SHUTDOWN_POWEROFF"), "POWEROFF", None),
    # the guest went down by itself while we were shutting it down: same as success.
    (("monitor_poweroff",), ("SHUTDOWN",), "EPILOG", "epilog"),
    (("monitor_poweroff",), ("SHUTDOWN_UNDEPLOY",), "EPILOG_UNDEPLOY", "epilog_stop"),
    (("monitor_suspended",), ("RUNNING", "UNKNOWN"), "SUSPENDED", None),
    # --- cloning (a new VM waits for copies of persistent images) --------------------------
    (("clone_success",), ("CLONING", "CLONING_FAILURE"), "PENDING", None),
    (("clone_success_hold",), ("CLONING", "CLONING_FAILURE"), "HOLD", None),
    (("clone_failure",), ("CLONING",), "CLONING_FAILURE", None),
    # --- cleanup after recover --delete / --delete-recreate ----------------------------------
    # best effort, as in OpenNebula: a cleanup that fails still ends the VM (or requeues it);
    # the failure is logged and what is left on the host is for the operator.
    (("cleanup_success", "cleanup_failure"), ("CLEANUP_DELETE",), "DONE", None),
    (("cleanup_success", "cleanup_failure"), ("CLEANUP_RESUBMIT",), "PENDING", None),
    # --- recover ---------------------------------------------------------------------------
    # (recover success/failure/retry of operations in flight and of *_FAILURE states are
    # derived below from the outcome rows, as OpenNebula re-fires the driver's outcome.)
    # UNKNOWN: the operator vouches that the VM runs; OpenNebula does this for both flags.
    (("recover-success", "recover-failure"), ("UNKNOWN",), "RUNNING", None),
    (("recover-success", "recover-failure"), ("CLONING_FAILURE",), "CLONING", "check_clone"),
    # a failed disk move gives the VM back to the host it was leaving, in the state it had.
    (("recover-failure",), ("PROLOG_MIGRATE_FAILURE",), "BOOT_MIGRATE", "rollback_migrate"),
    (("recover-failure",), ("PROLOG_MIGRATE_POWEROFF_FAILURE",), "POWEROFF",
     "rollback_migrate"),
    (("recover-failure",), ("PROLOG_MIGRATE_SUSPEND_FAILURE",), "SUSPENDED",
     "rollback_migrate"),
    (("recover-failure",), ("PROLOG_MIGRATE_UNKNOWN_FAILURE",), "BOOT", "rollback_migrate"),
    # --delete works everywhere but DONE. OpenNebula jumps to DONE at once and cleans up in
    # the background; here the VM waits in CLEANUP_DELETE so that the cleanup is committed
    # intent a new leader resumes. A second --delete forces DONE (a hung cleanup).
    (("recover-delete",), tuple(n for n in _ALL_ACTIVE if n != "CLEANUP_DELETE")
     + ("POWEROFF", "SUSPENDED", "STOPPED", "UNDEPLOYED"), "CLEANUP_DELETE", "cleanup"),
    (("recover-delete",), ("CLEANUP_DELETE", "PENDING", "HOLD", "CLONING", "CLONING_FAILURE"),
     "DONE", None),
    # --delete-recreate: clean up and queue the VM again as new (fresh prolog). OpenNebula
    # silently ignores it for POWEROFF/SUSPENDED VMs; here they are cleaned up like ACTIVE.
    (("recover-delete-recreate",), tuple(
        n for n in _ALL_ACTIVE if n not in ("CLEANUP_DELETE", "CLEANUP_RESUBMIT"))
     + ("POWEROFF", "SUSPENDED"), "CLEANUP_RESUBMIT", "cleanup"),
    (("recover-delete-recreate",), ("CLEANUP_RESUBMIT", "HOLD", "STOPPED", "UNDEPLOYED"),
     "PENDING", None),
)  # fmt: skip


def _build_table() -> dict[tuple[str, Pair], Row]:
    """Expand _ROWS (plus the derived recover rows) into the table, refusing duplicates."""
    table: dict[tuple[str, Pair], Row] = {}

    def put(event: str, src: Pair, row: Row) -> None:
        key = (event, src)
        if key in table:  # two rows for one key would make the table order-dependent
            raise AssertionError(f"duplicate life-cycle row for {event} in {state_str(*src)}")
        table[key] = row

    for events, sources, target, intent in _ROWS:
        for name in sources:
            src = pair_of(name)
            dst = src if target == "=" else pair_of(target)
            for event in events:
                put(event, src, (dst[0], dst[1], intent))

    # recover --success / --failure of an operation in flight: the outcome it would have had.
    for lcm, op in _OPERATION.items():
        src = (_A, lcm)
        put("recover-success", src, table[(f"{op}_success", src)])
        put("recover-failure", src, table[(f"{op}_failure", src)])
    # recover --retry re-issues the driver action of an operation in flight...
    for lcm, intent in _RETRY_INTENT.items():
        put("recover-retry", (_A, lcm), (_A, lcm, intent))
    # ...or of the one a *_FAILURE state records; --success there means "it did work after
    # all" (the outcome the retried operation would have had). --failure keeps a failed
    # state failed, so it is refused except for the migration rollbacks in _ROWS.
    for failed, running in _FAILED.items():
        put("recover-retry", (_A, failed), (_A, running, _RETRY_INTENT[running]))
        put(
            "recover-success",
            (_A, failed),
            table[(f"{_OPERATION[running]}_success", (_A, running))],
        )

    for (event, src), (state, lcm, _) in table.items():
        if event not in _EVENT_SET or src not in VALID_PAIRS or (state, lcm) not in VALID_PAIRS:
            raise AssertionError(f"bad life-cycle row {event} {src} -> {state}/{lcm}")
    return table


#: THE transition table: (event, (state, lcm)) -> (state', lcm', intent or None).
TABLE: Final[Mapping[tuple[str, Pair], Row]] = MappingProxyType(_build_table())

# ---------------------------------------------------------------------------------------
# Results and the entry point
# ---------------------------------------------------------------------------------------

# Events after which the resched flag is cleared even though the VM stays where the
# scheduler may act on it (OpenNebula: a reboot cancels rescheduling; a VM that just
# vanished or powered off by itself must not be moved automatically).
_CLEARS_RESCHED: Final = frozenset({"reboot", "reboot-hard", "monitor_unknown", "monitor_poweroff"})


@dataclass(frozen=True, slots=True)
class Transition:
    """An allowed move. `resched`: True set / False clear the flag, None leave it as it is."""

    state: VmState
    lcm_state: LcmState
    intent: str | None
    resched: bool | None = None

    ok = True

    @property
    def pair(self) -> Pair:
        return self.state, self.lcm_state


@dataclass(frozen=True, slots=True)
class Refusal:
    """A refused event: the VM stays as it is; `message` is the API's error text."""

    event: str
    state: VmState
    lcm_state: LcmState
    message: str

    ok = False


class UnknownEvent(ValueError):
    """An event name outside EVENTS (a bad request, not a state problem)."""


def _valid_pair(state: VmState | int, lcm: LcmState | int) -> Pair:
    pair = (VmState(state), LcmState(lcm))
    if pair not in VALID_PAIRS:
        raise ValueError(f"not a VM state: {pair[0].name}/{pair[1].name}")
    return pair


def transition(state: VmState | int, lcm_state: LcmState | int, event: str) -> Transition | Refusal:
    """Look `event` up for a VM in (state, lcm_state); pure, never touches anything.

    Raises UnknownEvent for a name outside EVENTS and ValueError for a pair outside
    VALID_PAIRS (corrupt data); everything else is a Transition or a Refusal.
    """
    if event not in _EVENT_SET:
        raise UnknownEvent(f"unknown VM action {event!r}")
    src = _valid_pair(state, lcm_state)
    row = TABLE.get((event, src))
    if row is None:
        return Refusal(
            event,
            src[0],
            src[1],
            f"action {event} not allowed in state {src[0].name}/{src[1].name}",
        )
    new_state, new_lcm, intent = row
    resched: bool | None = None
    if event == "resched":
        resched = True
    elif (
        event == "unresched"
        or event in _CLEARS_RESCHED
        or (new_state, new_lcm) not in RESCHED_PAIRS
    ):
        resched = False
    return Transition(new_state, new_lcm, intent, resched)


# ---------------------------------------------------------------------------------------
# Helpers for the API, the CLI and the reconciler
# ---------------------------------------------------------------------------------------

_SHORT_STATE: Final[Mapping[VmState, str]] = MappingProxyType(
    {
        VmState.INIT: "init",
        VmState.PENDING: "pend",
        VmState.HOLD: "hold",
        VmState.ACTIVE: "actv",
        VmState.STOPPED: "stop",
        VmState.SUSPENDED: "susp",
        VmState.DONE: "done",
        VmState.POWEROFF: "poff",
        VmState.UNDEPLOYED: "unde",
        VmState.CLONING: "clon",
        VmState.CLONING_FAILURE: "fail",
    }
)


def _short_lcm(lcm: LcmState) -> str:
    # The abbreviations `onevm list` prints in STAT (OpenNebula's CLI groups LCM states by
    # what the user would call them: every *_FAILURE is "fail", every boot is "boot", ...).
    name = lcm.name
    if name.endswith("_FAILURE"):
        return "fail"
    fixed = {
        "RUNNING": "runn",
        "MIGRATE": "migr",
        "UNKNOWN": "unkn",
        "BACKUP": "back",
        "BACKUP_POWEROFF": "back",
        "RESTORE": "rest",
        "HOTPLUG_SNAPSHOT": "snap",
        "LCM_INIT": "actv",
    }
    if name in fixed:
        return fixed[name]
    for prefix, short in (
        ("PROLOG_MIGRATE", "migr"),
        ("PROLOG", "prol"),
        ("BOOT", "boot"),
        ("SAVE_", "save"),
        ("EPILOG", "epil"),
        ("SHUTDOWN", "shut"),
        ("CLEANUP", "clea"),
        ("HOTPLUG", "hotp"),
        ("DISK_SNAPSHOT", "snap"),
        ("DISK_RESIZE", "drsz"),
    ):
        if name.startswith(prefix):
            return short
    raise AssertionError(f"no short name for {name}")  # every member is covered above


def short_state(state: VmState | int, lcm_state: LcmState | int) -> str:
    """The four-letter STAT column of `onevm list` (runn, poff, prol, fail, ...)."""
    state, lcm = VmState(state), LcmState(lcm_state)
    return _short_lcm(lcm) if state is _A else _SHORT_STATE[state]


def is_final(state: VmState | int, lcm_state: LcmState | int = LcmState.LCM_INIT) -> bool:
    """DONE is the only state nothing leaves (the VM is kept for accounting only)."""
    return VmState(state) is VmState.DONE


def allowed_actions(state: VmState | int, lcm_state: LcmState | int) -> tuple[str, ...]:
    """The actions (not outcomes) a VM in this state accepts, in ACTIONS order."""
    src = _valid_pair(state, lcm_state)
    return tuple(a for a in ACTIONS if (a, src) in TABLE)


def pending_operation(state: VmState | int, lcm_state: LcmState | int) -> str | None:
    """The operation whose outcome the VM waits for ("prolog", "boot", ..., "clone").

    The reconciler reports it as "<operation>_success" / "<operation>_failure" (cloning:
    clone_success[_hold] / clone_failure). None: the VM is settled or waits for a human.
    """
    src = _valid_pair(state, lcm_state)
    if src[0] is VmState.CLONING:
        return "clone"
    return _OPERATION.get(src[1]) if src[0] is _A else None
