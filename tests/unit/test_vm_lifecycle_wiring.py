"""The VM ops are wired to the life-cycle table: every client action and every outcome, in
every state, either moves the VM exactly as raftcore.lifecycle says (state, LCM state,
intent) or is refused with the table's message and changes nothing (Zone.fails asserts
it). Then the consequences of moving: history records, host capacity, deploy events."""

from __future__ import annotations

import copy

import pytest

from raftcore import lifecycle
from raftcore.lifecycle import VmState
from tests import vmkit
from tests.statekit import TS, Zone
from tests.vmkit import H1, H2, place, rec

# (client action, its args) -> the life-cycle event it is
ACTION_CASES: list[tuple[str, dict, str]] = [
    *((a, {}, a) for a in (
        "terminate", "terminate-hard", "undeploy", "undeploy-hard", "poweroff",
        "poweroff-hard", "reboot", "reboot-hard", "hold", "release", "stop", "suspend",
        "resume", "resched", "unresched",
    )),
    ("deploy", {"host": H2}, "deploy"),
    ("migrate", {"host": H2}, "migrate"),
    ("migrate", {"host": H2, "live": True}, "migrate-live"),
    *(("recover", {"op": op}, f"recover-{op}") for op in (
        "success", "failure", "retry", "delete", "delete-recreate")),
    ("disk-attach", {"template": 'DISK = [ SIZE = "10" ]'}, "disk-attach"),
    ("disk-detach", {"disk_id": 0}, "disk-detach"),
    ("nic-attach", {"template": 'NIC = [ NETWORK_ID = "0" ]'}, "nic-attach"),
    ("nic-detach", {"nic_id": 0}, "nic-detach"),
    ("disk-snapshot-create", {"disk_id": 0, "name": "s"}, "disk-snapshot-create"),
    ("disk-snapshot-revert", {"disk_id": 0, "snapshot_id": 0}, "disk-snapshot-revert"),
    ("disk-snapshot-delete", {"disk_id": 0, "snapshot_id": 0}, "disk-snapshot-delete"),
    ("resize", {"cpu": 0.5}, "resize"),
]  # fmt: skip

PAIRS = sorted(lifecycle.VALID_PAIRS)
_BASE: dict = {}


def _base() -> Zone:
    """One VM (id 0) with a volatile disk (two snapshots, 1 active) and a NIC, cached."""
    if not _BASE:
        z = vmkit.zone()
        vm_id = vmkit.vm(z)
        record = copy.deepcopy(rec(z, "vm", vm_id))
        record["disks"][0]["snapshots"] = [
            {"id": 0, "name": "a", "date": TS, "active": False},
            {"id": 1, "name": "b", "date": TS, "active": True},
        ]
        record["disks"][0]["next_snapshot_id"] = 2
        from raftcore.ops import vmcore
        from tests.statekit import DictView, write

        ov = vmcore.Overlay(DictView(z.state))
        ov.put("vm", record)
        _BASE["state"] = write(z.state, ov.mutations)
        _BASE["vm"] = vm_id
    return Zone(copy.deepcopy(_BASE["state"]))


def _positioned(pair: tuple[VmState, lifecycle.LcmState]) -> Zone:
    z = _base()
    place(z, _BASE["vm"], lifecycle.state_str(*pair))
    return z


def _check(z: Zone, op: str, args: dict, event: str, pair, outcome: bool = False) -> None:
    vm_id = _BASE["vm"]
    expected = lifecycle.transition(*pair, event)
    if expected.ok:
        result = z.do(op, {"id": vm_id, **args})
        assert result["ok"], (lifecycle.state_str(*pair), event, result)
        record = rec(z, "vm", vm_id)
        assert (record["state"], record["lcm_state"]) == expected.pair, (pair, event)
        assert record["intent"] == (None if record["state"] == VmState.DONE else expected.intent)
        assert (record["prev_state"], record["prev_lcm_state"]) == pair
    else:
        message = z.fails(op, {"id": vm_id, **args}, 0, "ACTION", expected.message)
        assert message == expected.message


@pytest.mark.parametrize(
    ("action", "args", "event"), ACTION_CASES, ids=[c[2] for c in ACTION_CASES]
)
def test_every_action_in_every_state(action, args, event):
    for pair in PAIRS:
        _check(_positioned(pair), f"vm.{action}", args, event, pair)


@pytest.mark.parametrize("event", lifecycle.OUTCOMES)
def test_every_outcome_in_every_state(event):
    for pair in PAIRS:
        _check(_positioned(pair), "vm.outcome", {"event": event}, event, pair, outcome=True)


def test_the_cases_cover_every_client_action():
    from raftcore import objects

    events = {c[2] for c in ACTION_CASES}
    # every life-cycle action this project exposes is in the table test
    exposed = set(lifecycle.ACTIONS) - {
        "deploy-from-stopped", "deploy-from-undeployed", "disk-resize", "disk-saveas",
        "snapshot-create", "snapshot-revert", "snapshot-delete", "backup",
        "backup-cancel", "restore",
    }  # fmt: skip
    assert exposed == events
    # the others do not move the life-cycle: scheduled actions, the user template
    actions = {c[0] for c in ACTION_CASES} | {"sched-add", "sched-update", "sched-delete"}
    actions |= {"update"}
    assert objects.KINDS["vm"].actions == actions
    assert "outcome" not in objects.KINDS["vm"].actions


def test_allowed_actions_agree_with_the_ops():
    # lifecycle.allowed_actions is what the CLI offers: each one succeeds through the op.
    by_event = {c[2]: c for c in ACTION_CASES}
    for pair in [lifecycle.pair_of(n) for n in ("RUNNING", "POWEROFF", "PENDING", "UNKNOWN")]:
        for event in lifecycle.allowed_actions(*pair):
            if event in by_event:
                action, args, _ = by_event[event]
                _check(_positioned(pair), f"vm.{action}", args, event, pair)


# --- history, capacity, deploy events ------------------------------------------------------


def _host(z: Zone, hid: int) -> dict:
    return rec(z, "host", hid)


def _run(z: Zone, vm_id: int, ts: int) -> None:
    vmkit.at(z, "vm.deploy", {"id": vm_id, "host": H1}, ts)
    vmkit.at(z, "vm.outcome", {"id": vm_id, "event": "prolog_success"}, ts + 10)
    vmkit.at(z, "vm.outcome", {"id": vm_id, "event": "boot_success"}, ts + 20)


def test_deploy_boot_terminate_history_and_capacity():
    z = vmkit.zone()
    v = vmkit.vm(z)
    vmkit.at(z, "vm.deploy", {"id": v, "host": H1}, 1000)
    record = rec(z, "vm", v)
    assert record["intent"] == "prolog" and record["deploy_id"] == f"one-{v}"
    assert _host(z, H1)["vms"] == [v] and _host(z, H1)["capacity"]["cpu_usage"] == 100
    assert _host(z, H1)["capacity"]["mem_usage"] == 512 * 1024
    vmkit.at(z, "vm.outcome", {"id": v, "event": "prolog_success"}, 1010)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "boot_success"}, 1020)
    vmkit.at(z, "vm.terminate", {"id": v}, 5000)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "shutdown_success"}, 5010)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "epilog_success"}, 5020)
    record = rec(z, "vm", v)
    assert vmkit.pair(z, v) == "DONE" and record["etime"] == 5020
    (h,) = record["history"]
    assert {k: h[k] for k in ("seq", "hid", "hostname", "cid", "ds_id")} == {
        "seq": 0,
        "hid": H1,
        "hostname": "h1",
        "cid": 0,
        "ds_id": vmkit.SYSTEM_DS,
    }
    times = ("stime", "pstime", "petime", "rstime", "retime", "estime", "eetime", "etime")
    assert [h[k] for k in times] == [1000, 1000, 1010, 1010, 5010, 5010, 5020, 5020]
    assert (h["action"], h["reason"], h["uid"], h["gid"]) == ("terminate", 2, 0, 0)
    assert _host(z, H1)["vms"] == [] and _host(z, H1)["capacity"]["cpu_usage"] == 0
    assert record["capacity"] == [] and record["deploy_id"] == ""


def test_poweroff_closes_the_record_and_resume_opens_a_new_one():
    z = vmkit.zone()
    v = vmkit.vm(z)
    _run(z, v, 1000)
    vmkit.at(z, "vm.poweroff", {"id": v}, 2000)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "shutdown_success"}, 2010)
    first = rec(z, "vm", v)["history"][0]
    assert (first["action"], first["etime"], first["retime"]) == ("poweroff", 2010, 2010)
    assert _host(z, H1)["vms"] == [v]  # a powered-off VM keeps its host
    vmkit.at(z, "vm.resume", {"id": v}, 3000)
    assert vmkit.pair(z, v) == "BOOT_POWEROFF"
    second = rec(z, "vm", v)["history"][1]
    assert (second["seq"], second["hid"], second["stime"], second["rstime"]) == (1, H1, 3000, 3000)
    assert second["etime"] == 0 and second["pstime"] == 0
    # a guest that goes down by itself closes the record with the event's name
    vmkit.at(z, "vm.outcome", {"id": v, "event": "boot_success"}, 3010)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "monitor_poweroff"}, 4000)
    assert rec(z, "vm", v)["history"][1]["action"] == "monitor_poweroff"


def test_cold_migration_moves_capacity_when_it_succeeds():
    z = vmkit.zone()
    v = vmkit.vm(z)
    _run(z, v, 1000)
    vmkit.at(z, "vm.migrate", {"id": v, "host": H2}, 2000)
    assert vmkit.pair(z, v) == "SAVE_MIGRATE"
    assert _host(z, H1)["vms"] == [v] and _host(z, H2)["vms"] == [v]
    old, new = rec(z, "vm", v)["history"]
    assert (old["action"], old["reason"], old["etime"]) == ("migrate", 2, 2000)
    assert (new["hid"], new["stime"], new["pstime"], new["etime"]) == (H2, 2000, 2000, 0)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "save_success"}, 2100)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "prolog_success"}, 2200)
    assert vmkit.pair(z, v) == "BOOT_MIGRATE"
    assert _host(z, H1)["vms"] == [] and _host(z, H2)["vms"] == [v]
    assert rec(z, "vm", v)["capacity"] == [{"hid": H2, "cpu": 1.0, "memory": 512}]
    assert rec(z, "vm", v)["history"][-1]["rstime"] == 2200


def test_live_migration_failure_rolls_back_to_the_old_host():
    z = vmkit.zone()
    v = vmkit.vm(z)
    _run(z, v, 1000)
    vmkit.at(z, "vm.migrate", {"id": v, "host": H2, "live": True}, 2000)
    assert vmkit.pair(z, v) == "MIGRATE" and rec(z, "vm", v)["intent"] == "migrate_live"
    vmkit.at(z, "vm.outcome", {"id": v, "event": "migrate_failure"}, 2100)
    assert vmkit.pair(z, v) == "RUNNING"
    assert _host(z, H1)["vms"] == [v] and _host(z, H2)["vms"] == []
    history = rec(z, "vm", v)["history"]
    assert [(h["hid"], h["reason"], h["etime"]) for h in history] == [
        (H1, 2, 2000),
        (H2, 1, 2100),
        (H1, 0, 0),
    ]
    assert history[2]["rstime"] == 2100 and history[1]["action"] == "migrate_failure"


def test_migrate_to_the_same_host_is_refused():
    z = vmkit.zone()
    v = vmkit.vm(z)
    _run(z, v, 1000)
    z.fails("vm.migrate", {"id": v, "host": H1}, 0, "ACTION", "already on host 0")
    z.fails("vm.migrate", {"id": v, "host": 9}, 0, "BAD_REQUEST", "host 9 does not exist")


def test_undeploy_frees_the_host_and_deploy_resumes_from_the_files():
    z = vmkit.zone()
    v = vmkit.vm(z)
    _run(z, v, 1000)
    vmkit.at(z, "vm.undeploy", {"id": v}, 2000)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "shutdown_success"}, 2010)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "epilog_success"}, 2020)
    assert vmkit.pair(z, v) == "UNDEPLOYED" and _host(z, H1)["vms"] == []
    assert rec(z, "vm", v)["history"][0]["action"] == "undeploy"
    vmkit.at(z, "vm.resume", {"id": v}, 3000)
    assert vmkit.pair(z, v) == "PENDING"
    vmkit.at(z, "vm.deploy", {"id": v, "host": H2}, 3100)
    # the last record says "undeploy": the disks come back from the front-end
    assert vmkit.pair(z, v) == "PROLOG_UNDEPLOY" and rec(z, "vm", v)["intent"] == "prolog_resume"


def test_stop_then_deploy_is_deploy_from_stopped():
    z = vmkit.zone()
    v = vmkit.vm(z)
    _run(z, v, 1000)
    vmkit.at(z, "vm.stop", {"id": v}, 2000)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "save_success"}, 2010)
    vmkit.at(z, "vm.outcome", {"id": v, "event": "epilog_success"}, 2020)
    assert vmkit.pair(z, v) == "STOPPED"
    vmkit.at(z, "vm.resume", {"id": v}, 3000)
    vmkit.at(z, "vm.deploy", {"id": v, "host": H1}, 3100)
    assert vmkit.pair(z, v) == "PROLOG_RESUME"


def test_deploy_needs_a_host_that_fits_and_is_monitored():
    z = vmkit.zone()
    v = vmkit.vm(z, text='CPU = "9"\nMEMORY = "512"')
    z.fails("vm.deploy", {"id": v, "host": H1}, 0, "ALLOCATE", "not enough CPU")
    w = vmkit.vm(z)
    z.ok("host.offline", {"id": H1})
    z.fails("vm.deploy", {"id": w, "host": H1}, 0, "ACTION", "OFFLINE")
    z.fails(
        "vm.deploy", {"id": w, "host": H2, "ds": vmkit.IMAGE_DS}, 0, "BAD_REQUEST", "not a system"
    )
    z.fails("vm.deploy", {"id": w, "host": H2, "ds": 999}, 0, "BAD_REQUEST", "999 does not exist")


def test_failure_outcomes_record_the_error_and_recover_retries():
    z = vmkit.zone()
    v = vmkit.vm(z)
    vmkit.at(z, "vm.deploy", {"id": v, "host": H1}, 1000)
    at_args = {"id": v, "event": "prolog_failure", "message": "scp: no route to host"}
    vmkit.at(z, "vm.outcome", at_args, 1100)
    record = rec(z, "vm", v)
    assert vmkit.pair(z, v) == "PROLOG_FAILURE" and record["error"] == "scp: no route to host"
    assert record["history"][0]["reason"] == 1 and record["intent"] is None
    vmkit.at(z, "vm.recover", {"id": v, "op": "retry"}, 1200)
    assert vmkit.pair(z, v) == "PROLOG" and rec(z, "vm", v)["intent"] == "prolog"
    # terminate of a failed VM cleans it up; the cleanup's outcome ends it
    vmkit.at(z, "vm.outcome", {"id": v, "event": "prolog_failure"}, 1300)
    vmkit.at(z, "vm.terminate", {"id": v}, 1400)
    assert vmkit.pair(z, v) == "CLEANUP_DELETE" and rec(z, "vm", v)["intent"] == "cleanup"
    vmkit.at(z, "vm.outcome", {"id": v, "event": "cleanup_success"}, 1500)
    assert vmkit.pair(z, v) == "DONE" and _host(z, H1)["vms"] == []
    assert rec(z, "vm", v)["history"][0]["action"] == "terminate"


def test_resched_flag():
    z = vmkit.zone()
    v = vmkit.vm(z)
    _run(z, v, 1000)
    z.ok("vm.resched", {"id": v})
    assert rec(z, "vm", v)["resched"] is True
    z.ok("vm.reboot", {"id": v})  # a reboot cancels rescheduling
    assert rec(z, "vm", v)["resched"] is False


def test_stale_outcome_is_refused_and_bad_outcomes_are_bad_requests():
    z = vmkit.zone()
    v = vmkit.vm(z)
    z.fails("vm.outcome", {"id": v, "event": "boot_success"}, 0, "ACTION", "not allowed")
    z.fails("vm.outcome", {"id": v, "event": "terminate"}, 0, "BAD_REQUEST", "outcome")
    z.fails("vm.outcome", {"id": v, "event": "x", "y": 1}, 0, "BAD_REQUEST", "unknown argument")
    z.fails("vm.outcome", {"id": 99, "event": "boot_success"}, 0, "NO_EXISTS", "VM 99")
    # the reconciler proposes as the system (-1); users may not fake outcomes
    w = vmkit.vm(z, uid=vmkit.ALICE)
    z.ok("vm.deploy", {"id": w, "host": H1})
    z.fails("vm.outcome", {"id": w, "event": "prolog_success"}, vmkit.ALICE, "AUTHORIZATION")
    assert z.do("vm.outcome", {"id": w, "event": "prolog_success"}, uid=-1)["ok"]


def test_authorization_levels_follow_oned_conf():
    z = vmkit.zone()
    v = vmkit.vm(z, uid=vmkit.ALICE)
    # the owner manages its VM ...
    assert z.do("vm.hold", {"id": v}, uid=vmkit.ALICE)["ok"]
    assert z.do("vm.release", {"id": v}, uid=vmkit.ALICE)["ok"]
    # ... but deploy, migrate, recover, resched need ADMIN (owner bits are 600: um-)
    for op, args in (
        ("vm.deploy", {"host": H1}),
        ("vm.recover", {"op": "delete"}),
        ("vm.resched", {}),
    ):
        z.fails(op, {"id": v, **args}, vmkit.ALICE, "AUTHORIZATION", "ADMIN")
    # another user may do nothing with it
    bob = z.ok("user.allocate", {"name": "bob", "password": "scrypt$y", "driver": "core"})["id"]
    z.fails("vm.terminate", {"id": v}, bob, "AUTHORIZATION", "MANAGE")
