"""The VM life-cycle table (raftcore.lifecycle), checked against a hand-written restatement.

EXPECTED below is written per state (the module's table is written per event), so a typo
on either side shows up as a difference. Every event in every valid (state, lcm) pair must
either move exactly as EXPECTED says or be refused with the exact message.
"""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore import lifecycle as lc
from raftcore.lifecycle import (
    ACTIONS,
    EVENTS,
    INITIAL_PAIRS,
    OUTCOMES,
    TABLE,
    VALID_PAIRS,
    LcmState,
    Refusal,
    Transition,
    VmState,
    pair_of,
    state_str,
    transition,
)

# Per state: "events -> TARGET [intent]"; "=" keeps the state. Names as `onevm show` prints
# them: the LCM state while ACTIVE, the STATE otherwise.
EXPECTED_TEXT = """
PENDING:
    deploy -> PROLOG prolog
    deploy-from-stopped -> PROLOG_RESUME prolog_resume
    deploy-from-undeployed -> PROLOG_UNDEPLOY prolog_resume
    hold -> HOLD
    terminate terminate-hard recover-delete -> DONE
    resize -> =
HOLD:
    deploy -> PROLOG prolog
    deploy-from-stopped -> PROLOG_RESUME prolog_resume
    deploy-from-undeployed -> PROLOG_UNDEPLOY prolog_resume
    release recover-delete-recreate -> PENDING
    terminate terminate-hard recover-delete -> DONE
    resize -> =
CLONING:
    clone_success -> PENDING
    clone_success_hold -> HOLD
    clone_failure -> CLONING_FAILURE
    terminate terminate-hard recover-delete -> DONE
    resize -> =
CLONING_FAILURE:
    clone_success -> PENDING
    clone_success_hold -> HOLD
    recover-success recover-failure -> CLONING check_clone
    terminate terminate-hard recover-delete -> DONE
    resize -> =
STOPPED:
    deploy deploy-from-stopped -> PROLOG_RESUME prolog_resume
    resume recover-delete-recreate -> PENDING
    terminate terminate-hard -> EPILOG epilog
    recover-delete -> CLEANUP_DELETE cleanup
    disk-saveas -> HOTPLUG_SAVEAS_STOPPED disk_saveas
UNDEPLOYED:
    deploy deploy-from-undeployed -> PROLOG_UNDEPLOY prolog_resume
    resume recover-delete-recreate -> PENDING
    terminate terminate-hard -> EPILOG epilog
    recover-delete -> CLEANUP_DELETE cleanup
    disk-resize -> DISK_RESIZE_UNDEPLOYED disk_resize
    disk-saveas -> HOTPLUG_SAVEAS_UNDEPLOYED disk_saveas
    resize -> =
SUSPENDED:
    resume -> BOOT_SUSPENDED restore_checkpoint
    stop -> EPILOG_STOP epilog_stop
    terminate terminate-hard -> EPILOG epilog
    migrate -> PROLOG_MIGRATE_SUSPEND prolog_migrate
    monitor_running -> RUNNING
    recover-delete -> CLEANUP_DELETE cleanup
    recover-delete-recreate -> CLEANUP_RESUBMIT cleanup
    disk-snapshot-create -> DISK_SNAPSHOT_SUSPENDED disk_snapshot_create
    disk-snapshot-delete -> DISK_SNAPSHOT_DELETE_SUSPENDED disk_snapshot_delete
    disk-saveas -> HOTPLUG_SAVEAS_SUSPENDED disk_saveas
POWEROFF:
    resume -> BOOT_POWEROFF boot
    terminate terminate-hard -> EPILOG epilog
    undeploy undeploy-hard -> EPILOG_UNDEPLOY epilog_stop
    migrate -> PROLOG_MIGRATE_POWEROFF prolog_migrate
    resched unresched resize -> =
    monitor_running -> RUNNING
    recover-delete -> CLEANUP_DELETE cleanup
    recover-delete-recreate -> CLEANUP_RESUBMIT cleanup
    disk-attach -> HOTPLUG_PROLOG_POWEROFF attach_disk
    disk-detach -> HOTPLUG_EPILOG_POWEROFF detach_disk
    nic-attach -> HOTPLUG_NIC_POWEROFF attach_nic
    nic-detach -> HOTPLUG_NIC_POWEROFF detach_nic
    disk-snapshot-create -> DISK_SNAPSHOT_POWEROFF disk_snapshot_create
    disk-snapshot-revert -> DISK_SNAPSHOT_REVERT_POWEROFF disk_snapshot_revert
    disk-snapshot-delete -> DISK_SNAPSHOT_DELETE_POWEROFF disk_snapshot_delete
    disk-resize -> DISK_RESIZE_POWEROFF disk_resize
    disk-saveas -> HOTPLUG_SAVEAS_POWEROFF disk_saveas
    backup -> BACKUP_POWEROFF backup
    restore -> RESTORE restore_backup
DONE:
RUNNING:
    terminate -> SHUTDOWN shutdown
    terminate-hard -> SHUTDOWN shutdown_hard
    poweroff -> SHUTDOWN_POWEROFF shutdown
    poweroff-hard -> SHUTDOWN_POWEROFF shutdown_hard
    undeploy -> SHUTDOWN_UNDEPLOY shutdown
    undeploy-hard -> SHUTDOWN_UNDEPLOY shutdown_hard
    reboot -> = reboot
    reboot-hard -> = reset
    resched unresched -> =
    suspend -> SAVE_SUSPEND save
    stop -> SAVE_STOP save
    migrate -> SAVE_MIGRATE save
    migrate-live -> MIGRATE migrate_live
    monitor_unknown -> UNKNOWN
    monitor_poweroff -> POWEROFF
    monitor_suspended -> SUSPENDED
    disk-attach -> HOTPLUG attach_disk
    disk-detach -> HOTPLUG detach_disk
    nic-attach -> HOTPLUG_NIC attach_nic
    nic-detach -> HOTPLUG_NIC detach_nic
    resize -> HOTPLUG_RESIZE resize
    snapshot-create -> HOTPLUG_SNAPSHOT snapshot_create
    snapshot-revert -> HOTPLUG_SNAPSHOT snapshot_revert
    snapshot-delete -> HOTPLUG_SNAPSHOT snapshot_delete
    disk-snapshot-create -> DISK_SNAPSHOT disk_snapshot_create
    disk-snapshot-delete -> DISK_SNAPSHOT_DELETE disk_snapshot_delete
    disk-resize -> DISK_RESIZE disk_resize
    disk-saveas -> HOTPLUG_SAVEAS disk_saveas
    backup -> BACKUP backup
UNKNOWN:
    terminate -> SHUTDOWN shutdown
    terminate-hard -> SHUTDOWN shutdown_hard
    poweroff -> SHUTDOWN_POWEROFF shutdown
    poweroff-hard -> SHUTDOWN_POWEROFF shutdown_hard
    undeploy -> SHUTDOWN_UNDEPLOY shutdown
    undeploy-hard -> SHUTDOWN_UNDEPLOY shutdown_hard
    resume -> BOOT_UNKNOWN boot
    migrate -> PROLOG_MIGRATE_UNKNOWN prolog_migrate
    resched unresched -> =
    monitor_running recover-success recover-failure -> RUNNING
    monitor_poweroff -> POWEROFF
    monitor_suspended -> SUSPENDED

PROLOG:
    prolog_success recover-success -> BOOT boot
    prolog_failure recover-failure -> PROLOG_FAILURE
    recover-retry -> = prolog
PROLOG_RESUME:
    prolog_success recover-success -> BOOT_STOPPED restore_checkpoint
    prolog_failure recover-failure -> PROLOG_RESUME_FAILURE
    recover-retry -> = prolog_resume
PROLOG_UNDEPLOY:
    prolog_success recover-success -> BOOT_UNDEPLOY boot
    prolog_failure recover-failure -> PROLOG_UNDEPLOY_FAILURE
    recover-retry -> = prolog_resume
PROLOG_MIGRATE:
    prolog_success recover-success -> BOOT_MIGRATE restore_checkpoint
    prolog_failure recover-failure -> PROLOG_MIGRATE_FAILURE
    recover-retry -> = prolog_migrate
PROLOG_MIGRATE_POWEROFF:
    prolog_success recover-success -> POWEROFF
    prolog_failure recover-failure -> PROLOG_MIGRATE_POWEROFF_FAILURE
    recover-retry -> = prolog_migrate
PROLOG_MIGRATE_SUSPEND:
    prolog_success recover-success -> SUSPENDED
    prolog_failure recover-failure -> PROLOG_MIGRATE_SUSPEND_FAILURE
    recover-retry -> = prolog_migrate
PROLOG_MIGRATE_UNKNOWN:
    prolog_success recover-success -> BOOT boot
    prolog_failure recover-failure -> PROLOG_MIGRATE_UNKNOWN_FAILURE
    recover-retry -> = prolog_migrate

BOOT:
    boot_success monitor_running recover-success -> RUNNING
    boot_failure recover-failure -> BOOT_FAILURE
    recover-retry -> = boot
BOOT_MIGRATE:
    boot_success monitor_running recover-success -> RUNNING
    boot_failure recover-failure -> BOOT_MIGRATE_FAILURE
    recover-retry -> = restore_checkpoint
BOOT_STOPPED:
    boot_success monitor_running recover-success -> RUNNING
    boot_failure recover-failure -> BOOT_STOPPED_FAILURE
    recover-retry -> = restore_checkpoint
BOOT_UNDEPLOY:
    boot_success monitor_running recover-success -> RUNNING
    boot_failure recover-failure -> BOOT_UNDEPLOY_FAILURE
    recover-retry -> = boot
BOOT_POWEROFF:
    boot_success monitor_running recover-success -> RUNNING
    boot_failure recover-failure -> POWEROFF
    recover-retry -> = boot
BOOT_SUSPENDED:
    boot_success monitor_running recover-success -> RUNNING
    boot_failure recover-failure -> SUSPENDED
    recover-retry -> = restore_checkpoint
BOOT_UNKNOWN:
    boot_success monitor_running recover-success -> RUNNING
    boot_failure recover-failure -> UNKNOWN
    recover-retry -> = boot

MIGRATE:
    migrate_success recover-success -> RUNNING
    migrate_failure recover-failure -> RUNNING rollback_migrate
    recover-retry -> = migrate_live
SAVE_SUSPEND:
    save_success recover-success -> SUSPENDED
    save_failure recover-failure -> RUNNING
    recover-retry -> = save
SAVE_STOP:
    save_success recover-success -> EPILOG_STOP epilog_stop
    save_failure recover-failure -> RUNNING
    recover-retry -> = save
SAVE_MIGRATE:
    save_success recover-success -> PROLOG_MIGRATE prolog_migrate
    save_failure recover-failure -> RUNNING rollback_migrate
    recover-retry -> = save
SHUTDOWN:
    shutdown_success recover-success monitor_poweroff -> EPILOG epilog
    shutdown_failure recover-failure -> RUNNING
    terminate-hard -> = shutdown_hard
    recover-retry -> = shutdown
SHUTDOWN_POWEROFF:
    shutdown_success recover-success monitor_poweroff -> POWEROFF
    shutdown_failure recover-failure -> RUNNING
    poweroff-hard -> = shutdown_hard
    recover-retry -> = shutdown
SHUTDOWN_UNDEPLOY:
    shutdown_success recover-success monitor_poweroff -> EPILOG_UNDEPLOY epilog_stop
    shutdown_failure recover-failure -> RUNNING
    undeploy-hard -> = shutdown_hard
    recover-retry -> = shutdown
EPILOG:
    epilog_success recover-success -> DONE
    epilog_failure recover-failure -> EPILOG_FAILURE
    recover-retry -> = epilog
EPILOG_STOP:
    epilog_success recover-success -> STOPPED
    epilog_failure recover-failure -> EPILOG_STOP_FAILURE
    recover-retry -> = epilog_stop
EPILOG_UNDEPLOY:
    epilog_success recover-success -> UNDEPLOYED
    epilog_failure recover-failure -> EPILOG_UNDEPLOY_FAILURE
    recover-retry -> = epilog_stop

HOTPLUG, HOTPLUG_NIC, HOTPLUG_RESIZE:
    hotplug_success hotplug_failure recover-success recover-failure -> RUNNING
HOTPLUG_PROLOG_POWEROFF, HOTPLUG_EPILOG_POWEROFF, HOTPLUG_NIC_POWEROFF:
    hotplug_success hotplug_failure recover-success recover-failure -> POWEROFF
HOTPLUG_SNAPSHOT:
    snapshot_success snapshot_failure recover-success recover-failure -> RUNNING
HOTPLUG_SAVEAS:
    saveas_success saveas_failure recover-success recover-failure -> RUNNING
HOTPLUG_SAVEAS_POWEROFF:
    saveas_success saveas_failure recover-success recover-failure -> POWEROFF
HOTPLUG_SAVEAS_SUSPENDED:
    saveas_success saveas_failure recover-success recover-failure -> SUSPENDED
HOTPLUG_SAVEAS_UNDEPLOYED:
    saveas_success saveas_failure recover-success recover-failure -> UNDEPLOYED
HOTPLUG_SAVEAS_STOPPED:
    saveas_success saveas_failure recover-success recover-failure -> STOPPED
DISK_SNAPSHOT, DISK_SNAPSHOT_DELETE:
    disk_snapshot_success disk_snapshot_failure recover-success recover-failure -> RUNNING
DISK_SNAPSHOT_POWEROFF, DISK_SNAPSHOT_REVERT_POWEROFF, DISK_SNAPSHOT_DELETE_POWEROFF:
    disk_snapshot_success disk_snapshot_failure recover-success recover-failure -> POWEROFF
DISK_SNAPSHOT_SUSPENDED, DISK_SNAPSHOT_DELETE_SUSPENDED:
    disk_snapshot_success disk_snapshot_failure recover-success recover-failure -> SUSPENDED
DISK_RESIZE:
    disk_resize_success disk_resize_failure recover-success recover-failure -> RUNNING
DISK_RESIZE_POWEROFF:
    disk_resize_success disk_resize_failure recover-success recover-failure -> POWEROFF
DISK_RESIZE_UNDEPLOYED:
    disk_resize_success disk_resize_failure recover-success recover-failure -> UNDEPLOYED
BACKUP:
    backup_success backup_failure recover-success recover-failure -> RUNNING
    backup-cancel -> = backup_cancel
BACKUP_POWEROFF:
    backup_success backup_failure recover-success recover-failure -> POWEROFF
    backup-cancel -> = backup_cancel
RESTORE:
    restore_success restore_failure recover-success recover-failure -> POWEROFF
CLEANUP_DELETE:
    cleanup_success cleanup_failure recover-success recover-failure recover-delete -> DONE
CLEANUP_RESUBMIT:
    cleanup_success cleanup_failure recover-success recover-failure -> PENDING
    recover-delete-recreate -> PENDING

BOOT_FAILURE:
    recover-success monitor_running -> RUNNING
    recover-retry -> BOOT boot
BOOT_MIGRATE_FAILURE:
    recover-success monitor_running -> RUNNING
    recover-retry -> BOOT_MIGRATE restore_checkpoint
BOOT_STOPPED_FAILURE:
    recover-success monitor_running -> RUNNING
    recover-retry -> BOOT_STOPPED restore_checkpoint
BOOT_UNDEPLOY_FAILURE:
    recover-success monitor_running -> RUNNING
    recover-retry -> BOOT_UNDEPLOY boot
PROLOG_FAILURE:
    recover-success -> BOOT boot
    recover-retry -> PROLOG prolog
PROLOG_RESUME_FAILURE:
    recover-success -> BOOT_STOPPED restore_checkpoint
    recover-retry -> PROLOG_RESUME prolog_resume
PROLOG_UNDEPLOY_FAILURE:
    recover-success -> BOOT_UNDEPLOY boot
    recover-retry -> PROLOG_UNDEPLOY prolog_resume
PROLOG_MIGRATE_FAILURE:
    recover-success -> BOOT_MIGRATE restore_checkpoint
    recover-failure -> BOOT_MIGRATE rollback_migrate
    recover-retry -> PROLOG_MIGRATE prolog_migrate
PROLOG_MIGRATE_POWEROFF_FAILURE:
    recover-success -> POWEROFF
    recover-failure -> POWEROFF rollback_migrate
    recover-retry -> PROLOG_MIGRATE_POWEROFF prolog_migrate
PROLOG_MIGRATE_SUSPEND_FAILURE:
    recover-success -> SUSPENDED
    recover-failure -> SUSPENDED rollback_migrate
    recover-retry -> PROLOG_MIGRATE_SUSPEND prolog_migrate
PROLOG_MIGRATE_UNKNOWN_FAILURE:
    recover-success -> BOOT boot
    recover-failure -> BOOT rollback_migrate
    recover-retry -> PROLOG_MIGRATE_UNKNOWN prolog_migrate
EPILOG_FAILURE:
    recover-success -> DONE
    recover-retry -> EPILOG epilog
EPILOG_STOP_FAILURE:
    recover-success -> STOPPED
    recover-retry -> EPILOG_STOP epilog_stop
EPILOG_UNDEPLOY_FAILURE:
    recover-success -> UNDEPLOYED
    recover-retry -> EPILOG_UNDEPLOY epilog_stop
"""

# Written out rather than derived: the 14 states where a failed operation waits for a human.
FAILURE_STATES = """
    BOOT_FAILURE BOOT_MIGRATE_FAILURE BOOT_STOPPED_FAILURE BOOT_UNDEPLOY_FAILURE
    PROLOG_FAILURE PROLOG_RESUME_FAILURE PROLOG_UNDEPLOY_FAILURE PROLOG_MIGRATE_FAILURE
    PROLOG_MIGRATE_POWEROFF_FAILURE PROLOG_MIGRATE_SUSPEND_FAILURE
    PROLOG_MIGRATE_UNKNOWN_FAILURE EPILOG_FAILURE EPILOG_STOP_FAILURE EPILOG_UNDEPLOY_FAILURE
""".split()


def parse_expected() -> dict[tuple[str, tuple[VmState, LcmState]], tuple]:
    expected: dict = {}
    sources: list = []

    def add(event, src, row):
        assert (event, src) not in expected, f"EXPECTED lists {event} twice in {src}"
        expected[(event, src)] = row

    for raw in EXPECTED_TEXT.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.endswith(":"):
            sources = [pair_of(name.strip()) for name in line[:-1].split(",")]
            continue
        lhs, rhs = (part.split() for part in line.split("->"))
        target, intent = rhs[0], (rhs[1] if len(rhs) > 1 else None)
        for src in sources:
            dst = src if target == "=" else pair_of(target)
            for event in lhs:
                add(event, src, (dst[0], dst[1], intent))
    # Rules that hold for whole families (written once instead of 60 times):
    for lcm in LcmState:
        if lcm is LcmState.LCM_INIT:
            continue
        src = (VmState.ACTIVE, lcm)
        if lcm is not LcmState.CLEANUP_DELETE:  # --delete works on any ACTIVE VM
            add("recover-delete", src, (VmState.ACTIVE, LcmState.CLEANUP_DELETE, "cleanup"))
        if lcm not in (LcmState.CLEANUP_DELETE, LcmState.CLEANUP_RESUBMIT):
            add(
                "recover-delete-recreate",
                src,
                (VmState.ACTIVE, LcmState.CLEANUP_RESUBMIT, "cleanup"),
            )
    for name in FAILURE_STATES:  # terminating a failed VM cleans it up
        for event in ("terminate", "terminate-hard"):
            add(event, pair_of(name), (VmState.ACTIVE, LcmState.CLEANUP_DELETE, "cleanup"))
    return expected


EXPECTED = parse_expected()
ALL_PAIRS = sorted(VALID_PAIRS)
PENDING = pair_of("PENDING")
DONE = pair_of("DONE")


# --------------------------------------------------------------------------------------
# Enumerations
# --------------------------------------------------------------------------------------


def test_numeric_values_match_opennebula():
    assert [(s.name, s.value) for s in VmState] == [
        ("INIT", 0), ("PENDING", 1), ("HOLD", 2), ("ACTIVE", 3), ("STOPPED", 4),
        ("SUSPENDED", 5), ("DONE", 6), ("POWEROFF", 8), ("UNDEPLOYED", 9), ("CLONING", 10),
        ("CLONING_FAILURE", 11),
    ]  # fmt: skip
    spot = {
        "LCM_INIT": 0, "PROLOG": 1, "BOOT": 2, "RUNNING": 3, "MIGRATE": 4, "SAVE_STOP": 5,
        "SAVE_SUSPEND": 6, "SAVE_MIGRATE": 7, "PROLOG_MIGRATE": 8, "PROLOG_RESUME": 9,
        "EPILOG_STOP": 10, "EPILOG": 11, "SHUTDOWN": 12, "CLEANUP_RESUBMIT": 15, "UNKNOWN": 16,
        "HOTPLUG": 17, "SHUTDOWN_POWEROFF": 18, "BOOT_UNKNOWN": 19, "BOOT_POWEROFF": 20,
        "BOOT_SUSPENDED": 21, "BOOT_STOPPED": 22, "CLEANUP_DELETE": 23, "HOTPLUG_SNAPSHOT": 24,
        "HOTPLUG_NIC": 25, "HOTPLUG_SAVEAS": 26, "SHUTDOWN_UNDEPLOY": 29,
        "EPILOG_UNDEPLOY": 30, "PROLOG_UNDEPLOY": 31, "BOOT_UNDEPLOY": 32, "BOOT_MIGRATE": 35,
        "BOOT_FAILURE": 36, "PROLOG_FAILURE": 39, "EPILOG_FAILURE": 40,
        "PROLOG_MIGRATE_POWEROFF": 43, "DISK_SNAPSHOT_POWEROFF": 51, "DISK_SNAPSHOT": 57,
        "DISK_SNAPSHOT_DELETE": 59, "PROLOG_MIGRATE_UNKNOWN_FAILURE": 61, "DISK_RESIZE": 62,
        "HOTPLUG_NIC_POWEROFF": 65, "HOTPLUG_RESIZE": 66, "HOTPLUG_SAVEAS_STOPPED": 68,
        "BACKUP": 69, "BACKUP_POWEROFF": 70, "RESTORE": 71,
    }  # fmt: skip
    assert {name: LcmState[name].value for name in spot} == spot
    # 0..71 without the four numbers OpenNebula retired (CANCEL, FAILURE, two reverts)
    assert sorted(v.value for v in LcmState) == [n for n in range(72) if n not in (13, 14, 55, 58)]


def test_valid_pairs():
    assert len(VALID_PAIRS) == 9 + (len(LcmState) - 1)
    assert all(lcm is LcmState.LCM_INIT for s, lcm in VALID_PAIRS if s is not VmState.ACTIVE)
    assert (VmState.ACTIVE, LcmState.LCM_INIT) not in VALID_PAIRS
    assert (VmState.INIT, LcmState.LCM_INIT) not in VALID_PAIRS
    for pair in VALID_PAIRS:
        assert pair_of(state_str(*pair)) == pair


def test_event_vocabulary():
    assert len(set(EVENTS)) == len(EVENTS)
    assert not set(ACTIONS) & set(OUTCOMES)
    vm_action = "terminate terminate-hard undeploy undeploy-hard poweroff poweroff-hard reboot"
    vm_action += " reboot-hard hold release stop suspend resume resched unresched"
    for name in vm_action.split():  # SEMANTICS.md, "API shape"
        assert name in ACTIONS
    assert {event for event, _ in TABLE} == set(EVENTS)  # no dead event names


# --------------------------------------------------------------------------------------
# The exhaustive check
# --------------------------------------------------------------------------------------


def test_table_is_exactly_the_expectation():
    missing = sorted((event, state_str(*src)) for event, src in EXPECTED.keys() - TABLE.keys())
    extra = sorted((event, state_str(*src)) for event, src in TABLE.keys() - EXPECTED.keys())
    assert not missing, f"rows EXPECTED has and the table lacks: {missing}"
    assert not extra, f"rows the table has and EXPECTED lacks: {extra}"
    wrong = [
        (event, state_str(*src), TABLE[(event, src)], row)
        for (event, src), row in EXPECTED.items()
        if TABLE[(event, src)] != row
    ]
    assert not wrong


@pytest.mark.parametrize("src", ALL_PAIRS, ids=lambda p: state_str(*p))
def test_every_event_in_every_state(src):
    state, lcm = src
    for event in EVENTS:
        result = transition(state, lcm, event)
        row = EXPECTED.get((event, src))
        if row is None:
            assert isinstance(result, Refusal)
            assert not result.ok
            assert result.message == f"action {event} not allowed in state {state.name}/{lcm.name}"
            assert (result.event, result.state, result.lcm_state) == (event, state, lcm)
        else:
            assert isinstance(result, Transition)
            assert result.ok
            assert (result.state, result.lcm_state, result.intent) == row
        # plain ints (as stored) give the same answer as the enums
        assert transition(int(state), int(lcm), event) == result


def test_refusal_message_examples():
    assert (
        transition(VmState.POWEROFF, LcmState.LCM_INIT, "suspend").message
        == "action suspend not allowed in state POWEROFF/LCM_INIT"
    )
    assert (
        transition(VmState.ACTIVE, LcmState.PROLOG, "terminate").message
        == "action terminate not allowed in state ACTIVE/PROLOG"
    )
    assert (
        transition(VmState.DONE, LcmState.LCM_INIT, "recover-delete").message
        == "action recover-delete not allowed in state DONE/LCM_INIT"
    )


def test_bad_inputs_raise():
    with pytest.raises(lc.UnknownEvent):
        transition(VmState.ACTIVE, LcmState.RUNNING, "shutdown")  # pre-5.0 name
    with pytest.raises(ValueError):
        transition(VmState.ACTIVE, LcmState.LCM_INIT, "terminate")
    with pytest.raises(ValueError):
        transition(VmState.POWEROFF, LcmState.RUNNING, "terminate")
    with pytest.raises(ValueError):
        transition(7, 0, "terminate")  # the retired FAILED state
    with pytest.raises(ValueError):
        transition(3, 13, "terminate")  # the retired CANCEL LCM state


# --------------------------------------------------------------------------------------
# Graph properties
# --------------------------------------------------------------------------------------


def successors(pair):
    return {(s, lcm) for (event, src), (s, lcm, _) in TABLE.items() if src == pair}


def reachable_from(starts):
    seen, todo = set(starts), deque(starts)
    while todo:
        for nxt in successors(todo.popleft()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_transition_leaves_the_valid_pairs():
    for (event, src), (state, lcm, intent) in TABLE.items():
        assert src in VALID_PAIRS
        assert (state, lcm) in VALID_PAIRS, (event, src)
        assert intent is None or (isinstance(intent, str) and intent)


def test_every_state_is_reachable():
    from_pending = reachable_from([PENDING])
    # everything but the two cloning states (they only exist before the first PENDING)
    assert VALID_PAIRS - from_pending == {pair_of("CLONING"), pair_of("CLONING_FAILURE")}
    assert reachable_from(INITIAL_PAIRS) == VALID_PAIRS


def test_done_is_reachable_from_every_state_and_final():
    for pair in VALID_PAIRS - {DONE}:
        assert DONE in reachable_from([pair]), state_str(*pair)
        assert not lc.is_final(*pair)
    assert successors(DONE) == set()
    assert lc.is_final(VmState.DONE)
    assert lc.allowed_actions(*DONE) == ()


def test_every_non_final_state_can_be_deleted_by_the_user():
    # an operator always has a way out that does not depend on a driver answering
    for pair in VALID_PAIRS - {DONE}:
        assert "recover-delete" in lc.allowed_actions(*pair), state_str(*pair)


# --------------------------------------------------------------------------------------
# Scenarios (SEMANTICS.md "VM life-cycle")
# --------------------------------------------------------------------------------------


def run(start: str, *steps: str) -> list[str]:
    """Apply events from `start`; every step must be allowed. Returns the states visited."""
    state, lcm = pair_of(start)
    visited = [start]
    for event in steps:
        result = transition(state, lcm, event)
        assert isinstance(result, Transition), result
        state, lcm = result.state, result.lcm_state
        visited.append(state_str(state, lcm))
    return visited


def test_deploy_prolog_boot_running():
    assert run("PENDING", "deploy", "prolog_success", "boot_success") == [
        "PENDING", "PROLOG", "BOOT", "RUNNING",
    ]  # fmt: skip
    assert transition(*pair_of("PENDING"), "deploy").intent == "prolog"
    assert transition(*pair_of("PROLOG"), "prolog_success").intent == "boot"
    # an admin may deploy a held VM; the scheduler only sees PENDING ones
    assert run("HOLD", "deploy")[-1] == "PROLOG"


def test_terminate_paths():
    assert run("RUNNING", "terminate", "shutdown_success", "epilog_success") == [
        "RUNNING", "SHUTDOWN", "EPILOG", "DONE",
    ]  # fmt: skip
    assert run("UNKNOWN", "terminate")[-1] == "SHUTDOWN"
    for settled in ("POWEROFF", "SUSPENDED", "STOPPED", "UNDEPLOYED"):
        assert run(settled, "terminate", "epilog_success") == [settled, "EPILOG", "DONE"]
    for waiting in ("PENDING", "HOLD"):
        assert run(waiting, "terminate") == [waiting, "DONE"]
    # soft then hard: the hard one overrides the hung shutdown
    t = transition(*pair_of("SHUTDOWN"), "terminate-hard")
    assert (state_str(t.state, t.lcm_state), t.intent) == ("SHUTDOWN", "shutdown_hard")
    assert not transition(*pair_of("SHUTDOWN"), "terminate").ok


def test_poweroff_and_resume():
    assert run("RUNNING", "poweroff", "shutdown_success", "resume", "boot_success") == [
        "RUNNING", "SHUTDOWN_POWEROFF", "POWEROFF", "BOOT_POWEROFF", "RUNNING",
    ]  # fmt: skip
    assert transition(*pair_of("RUNNING"), "poweroff-hard").intent == "shutdown_hard"


def test_suspend_and_resume():
    assert run("RUNNING", "suspend", "save_success", "resume", "boot_success") == [
        "RUNNING", "SAVE_SUSPEND", "SUSPENDED", "BOOT_SUSPENDED", "RUNNING",
    ]  # fmt: skip
    assert transition(*pair_of("SUSPENDED"), "resume").intent == "restore_checkpoint"


def test_stop_resume_redeploy():
    path = run(
        "RUNNING", "stop", "save_success", "epilog_success", "resume",
        lc.deploy_event("stop"), "prolog_success", "boot_success",
    )  # fmt: skip
    assert path == [
        "RUNNING", "SAVE_STOP", "EPILOG_STOP", "STOPPED", "PENDING", "PROLOG_RESUME",
        "BOOT_STOPPED", "RUNNING",
    ]  # fmt: skip
    assert run("SUSPENDED", "stop", "epilog_success") == ["SUSPENDED", "EPILOG_STOP", "STOPPED"]


def test_undeploy_resume_redeploy():
    path = run(
        "RUNNING", "undeploy", "shutdown_success", "epilog_success", "resume",
        lc.deploy_event("undeploy-hard"), "prolog_success", "boot_success",
    )  # fmt: skip
    assert path == [
        "RUNNING", "SHUTDOWN_UNDEPLOY", "EPILOG_UNDEPLOY", "UNDEPLOYED", "PENDING",
        "PROLOG_UNDEPLOY", "BOOT_UNDEPLOY", "RUNNING",
    ]  # fmt: skip
    assert run("POWEROFF", "undeploy", "epilog_success") == [
        "POWEROFF", "EPILOG_UNDEPLOY", "UNDEPLOYED",
    ]  # fmt: skip


def test_deploy_event_choice():
    assert lc.deploy_event(None) == "deploy"
    assert lc.deploy_event("delete-recreate") == "deploy"
    assert lc.deploy_event("stop") == "deploy-from-stopped"
    assert lc.deploy_event("undeploy") == "deploy-from-undeployed"


def test_live_and_cold_migration():
    assert run("RUNNING", "migrate-live", "migrate_success") == ["RUNNING", "MIGRATE", "RUNNING"]
    failed = transition(*pair_of("MIGRATE"), "migrate_failure")
    assert (state_str(failed.state, failed.lcm_state), failed.intent) == (
        "RUNNING",
        "rollback_migrate",
    )
    assert run("RUNNING", "migrate", "save_success", "prolog_success", "boot_success") == [
        "RUNNING", "SAVE_MIGRATE", "PROLOG_MIGRATE", "BOOT_MIGRATE", "RUNNING",
    ]  # fmt: skip
    assert run("POWEROFF", "migrate", "prolog_success") == [
        "POWEROFF", "PROLOG_MIGRATE_POWEROFF", "POWEROFF",
    ]  # fmt: skip


def test_hold_release():
    assert run("PENDING", "hold", "release") == ["PENDING", "HOLD", "PENDING"]
    assert not transition(*pair_of("RUNNING"), "hold").ok
    assert not transition(*pair_of("PENDING"), "release").ok


def test_resched_is_a_flag():
    for name in ("RUNNING", "UNKNOWN", "POWEROFF"):
        on = transition(*pair_of(name), "resched")
        off = transition(*pair_of(name), "unresched")
        assert (on.pair, on.resched, on.intent) == (pair_of(name), True, None)
        assert (off.pair, off.resched) == (pair_of(name), False)
    assert not transition(*pair_of("PENDING"), "resched").ok
    # leaving the states where the scheduler acts on it clears it; so does a reboot
    assert transition(*pair_of("RUNNING"), "suspend").resched is False
    assert transition(*pair_of("RUNNING"), "reboot").resched is False
    assert transition(*pair_of("RUNNING"), "monitor_unknown").resched is False
    assert transition(*pair_of("UNKNOWN"), "monitor_running").resched is None


def test_failure_and_recover():
    assert run("PROLOG", "prolog_failure", "recover-retry", "prolog_success") == [
        "PROLOG", "PROLOG_FAILURE", "PROLOG", "BOOT",
    ]  # fmt: skip
    assert run("BOOT", "boot_failure", "recover-success") == ["BOOT", "BOOT_FAILURE", "RUNNING"]
    assert run("EPILOG", "epilog_failure", "terminate", "cleanup_success") == [
        "EPILOG", "EPILOG_FAILURE", "CLEANUP_DELETE", "DONE",
    ]  # fmt: skip
    assert run("SAVE_STOP", "recover-delete", "cleanup_failure") == [
        "SAVE_STOP", "CLEANUP_DELETE", "DONE",
    ]  # fmt: skip
    assert run("RUNNING", "recover-delete-recreate", "cleanup_success", "deploy") == [
        "RUNNING", "CLEANUP_RESUBMIT", "PENDING", "PROLOG",
    ]  # fmt: skip
    # a hung cleanup can be forced
    assert run("CLEANUP_DELETE", "recover-delete") == ["CLEANUP_DELETE", "DONE"]
    # a failed disk move rolls back to the source host
    rb = transition(*pair_of("PROLOG_MIGRATE_FAILURE"), "recover-failure")
    assert (state_str(rb.state, rb.lcm_state), rb.intent) == ("BOOT_MIGRATE", "rollback_migrate")
    # --failure on a failed state that cannot roll back is refused, not a silent no-op
    assert not transition(*pair_of("PROLOG_FAILURE"), "recover-failure").ok
    assert not transition(*pair_of("RUNNING"), "recover-success").ok


def test_monitoring():
    assert run("RUNNING", "monitor_unknown", "resume", "boot_success") == [
        "RUNNING", "UNKNOWN", "BOOT_UNKNOWN", "RUNNING",
    ]  # fmt: skip
    assert run("RUNNING", "monitor_poweroff", "monitor_running") == [
        "RUNNING", "POWEROFF", "RUNNING",
    ]  # fmt: skip
    # a stale report (the VM moved on) is refused and changes nothing
    assert not transition(*pair_of("PROLOG"), "monitor_unknown").ok
    assert not transition(*pair_of("DONE"), "epilog_success").ok


def test_hotplug_and_storage_operations():
    assert run("RUNNING", "disk-attach", "hotplug_success") == ["RUNNING", "HOTPLUG", "RUNNING"]
    assert run("POWEROFF", "disk-detach", "hotplug_failure") == [
        "POWEROFF", "HOTPLUG_EPILOG_POWEROFF", "POWEROFF",
    ]  # fmt: skip
    assert run("RUNNING", "nic-attach", "hotplug_success")[-1] == "RUNNING"
    assert run("POWEROFF", "disk-snapshot-revert", "disk_snapshot_success")[-1] == "POWEROFF"
    assert not transition(*pair_of("RUNNING"), "disk-snapshot-revert").ok
    assert run("SUSPENDED", "disk-snapshot-create", "disk_snapshot_success")[-1] == "SUSPENDED"
    assert run("RUNNING", "resize", "hotplug_success") == ["RUNNING", "HOTPLUG_RESIZE", "RUNNING"]
    assert run("PENDING", "resize") == ["PENDING", "PENDING"]
    assert not transition(*pair_of("SUSPENDED"), "resize").ok
    assert run("POWEROFF", "backup", "backup-cancel", "backup_failure") == [
        "POWEROFF", "BACKUP_POWEROFF", "BACKUP_POWEROFF", "POWEROFF",
    ]  # fmt: skip
    assert run("POWEROFF", "restore", "restore_success") == ["POWEROFF", "RESTORE", "POWEROFF"]


def test_cloning():
    assert lc.initial_state() == PENDING
    assert lc.initial_state(hold=True) == pair_of("HOLD")
    assert lc.initial_state(cloning=True, hold=True) == pair_of("CLONING")
    assert run("CLONING", "clone_failure", "recover-success", "clone_success_hold") == [
        "CLONING", "CLONING_FAILURE", "CLONING", "HOLD",
    ]  # fmt: skip


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def test_short_state():
    cases = {
        "PENDING": "pend", "HOLD": "hold", "RUNNING": "runn", "POWEROFF": "poff",
        "UNDEPLOYED": "unde", "STOPPED": "stop", "SUSPENDED": "susp", "DONE": "done",
        "CLONING": "clon", "CLONING_FAILURE": "fail", "PROLOG": "prol", "PROLOG_RESUME": "prol",
        "PROLOG_UNDEPLOY": "prol", "BOOT": "boot", "BOOT_POWEROFF": "boot",
        "BOOT_MIGRATE": "boot", "SHUTDOWN": "shut", "SHUTDOWN_UNDEPLOY": "shut",
        "EPILOG": "epil", "EPILOG_STOP": "epil", "MIGRATE": "migr", "PROLOG_MIGRATE": "migr",
        "PROLOG_MIGRATE_POWEROFF": "migr", "SAVE_STOP": "save", "SAVE_MIGRATE": "save",
        "HOTPLUG": "hotp", "HOTPLUG_NIC": "hotp", "HOTPLUG_SAVEAS_STOPPED": "hotp",
        "HOTPLUG_RESIZE": "hotp", "UNKNOWN": "unkn", "CLEANUP_DELETE": "clea",
        "CLEANUP_RESUBMIT": "clea", "HOTPLUG_SNAPSHOT": "snap", "DISK_SNAPSHOT": "snap",
        "DISK_SNAPSHOT_REVERT_POWEROFF": "snap", "DISK_RESIZE_UNDEPLOYED": "drsz",
        "BOOT_FAILURE": "fail", "PROLOG_MIGRATE_UNKNOWN_FAILURE": "fail", "BACKUP": "back",
        "BACKUP_POWEROFF": "back", "RESTORE": "rest",
    }  # fmt: skip
    assert {name: lc.short_state(*pair_of(name)) for name in cases} == cases
    for pair in VALID_PAIRS:
        short = lc.short_state(*pair)
        assert len(short) == 4 and short.isalpha() and short.islower()


def test_allowed_actions_and_pending_operation():
    assert lc.allowed_actions(*pair_of("PENDING")) == (
        "terminate", "terminate-hard", "hold", "deploy", "deploy-from-stopped",
        "deploy-from-undeployed", "recover-delete", "resize",
    )  # fmt: skip
    assert "suspend" in lc.allowed_actions(VmState.ACTIVE, LcmState.RUNNING)
    assert "suspend" not in lc.allowed_actions(VmState.POWEROFF, LcmState.LCM_INIT)
    for pair in VALID_PAIRS:  # outcomes never show up as actions
        assert not set(lc.allowed_actions(*pair)) & set(OUTCOMES)
    assert lc.pending_operation(*pair_of("PROLOG_RESUME")) == "prolog"
    assert lc.pending_operation(*pair_of("BOOT_UNKNOWN")) == "boot"
    assert lc.pending_operation(*pair_of("CLONING")) == "clone"
    assert lc.pending_operation(*pair_of("RUNNING")) is None
    assert lc.pending_operation(*pair_of("PROLOG_FAILURE")) is None
    # every in-flight state accepts both outcomes of its operation
    for pair in VALID_PAIRS:
        op = lc.pending_operation(*pair)
        if op is not None and op != "clone":
            assert (f"{op}_success", pair) in TABLE and (f"{op}_failure", pair) in TABLE


# --------------------------------------------------------------------------------------
# Random event sequences
# --------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    start=st.sampled_from(sorted(INITIAL_PAIRS)),
    events=st.lists(st.sampled_from(EVENTS), max_size=60),
)
def test_random_events_never_raise_or_escape(start, events):
    state, lcm = start
    for event in events:
        result = transition(state, lcm, event)
        if result.ok:
            state, lcm = result.state, result.lcm_state
        else:
            assert (result.state, result.lcm_state) == (state, lcm)
        assert (state, lcm) in VALID_PAIRS
        if result.ok and (state, lcm) not in lc.RESCHED_PAIRS:
            assert result.resched is False


@settings(max_examples=200, deadline=None)
@given(data=st.data(), start=st.sampled_from(sorted(INITIAL_PAIRS)))
def test_random_allowed_walks_stay_valid(data, start):
    # Walk only through accepted events so that deep states are visited often.
    state, lcm = start
    for _ in range(40):
        accepted = sorted(event for event, src in TABLE if src == (state, lcm))
        if not accepted:
            assert (state, lcm) == DONE
            break
        event = data.draw(st.sampled_from(accepted))
        result = transition(state, lcm, event)
        assert isinstance(result, Transition)
        state, lcm = result.state, result.lcm_state
        assert (state, lcm) in VALID_PAIRS
