"""VM ops in the state machine: allocate and its checks, images / leases / VM groups held
and released, quotas (with a property test), hot-plug, disk snapshots, resize, scheduled
actions, VM groups. Every refusal leaves the state unchanged (Zone.fails asserts it)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftcore import lifecycle, quota, schema, template
from raftcore.lifecycle import LcmState, VmState
from raftcore.ops import vmcore
from tests import vmkit
from tests.statekit import TS, Zone
from tests.vmkit import ALICE, H1, IMAGE, NET, rec


@pytest.fixture(scope="module")
def base() -> Zone:
    return vmkit.zone()


@pytest.fixture
def z(base) -> Zone:
    return Zone(copy.deepcopy(base.state))


def _quota(z: Zone, kind: str, oid: int) -> dict:
    """The VM section of the quota record of user ("u") or group ("g") `oid`."""
    key = quota.record_key(quota.USER if kind == "u" else quota.GROUP, oid)
    record = z.state.get(schema.QUOTAS, {}).get(key) or {}
    return record.get("VM", {})


def _limit(z: Zone, text: str, uid: int = ALICE) -> None:
    z.ok("quota.set", {"kind": "user", "id": uid, "quota": quota.parse_quota(text)})


def _running(z: Zone, v: int) -> None:
    vmkit.at(z, "vm.deploy", {"id": v, "host": H1}, TS)
    z.ok("vm.outcome", {"id": v, "event": "prolog_success"})
    z.ok("vm.outcome", {"id": v, "event": "boot_success"})


# --- allocate --------------------------------------------------------------------------


def test_allocate_record_and_text(z):
    text = (
        'NAME = "web"\nCPU = "0.5"\nVCPU = "2"\nMEMORY = "1024"\nCPU_COST = "0.2"\n'
        'DISK = [ IMAGE_ID = "0", TARGET = "vda" ]\nDISK = [ SIZE = "2048", TYPE = "swap" ]\n'
        'NIC = [ NETWORK = "net", NETWORK_UNAME = "oneadmin", IP = "10.0.0.5" ]\nDESCRIPTION = "front"'
    )
    v = z.ok("vm.allocate", {"template": text}, uid=ALICE)["id"]
    vm = rec(z, "vm", v)
    assert (vm["name"], vm["uid"], vm["gid"], vm["cpu"], vm["vcpu"], vm["memory"]) == (
        "web",
        ALICE,
        1,
        0.5,
        2,
        1024,
    )
    assert (vm["state"], vm["lcm_state"]) == (VmState.PENDING, LcmState.LCM_INIT)
    assert vm["disks"][0] == {
        "disk_id": 0,
        "image_id": IMAGE,
        "image": "os",
        "size": 200,
        "type": "OS",
        "persistent": False,
        "datastore_id": vmkit.IMAGE_DS,
        "target": "vda",
        "snapshots": [],
        "next_snapshot_id": 0,
    }
    assert vm["disks"][1] == {
        "disk_id": 1,
        "size": 2048,
        "type": "swap",
        "snapshots": [],
        "next_snapshot_id": 0,
    }
    (nic,) = vm["nics"]
    assert (nic["nic_id"], nic["network_id"], nic["ip"], nic["mac"]) == (
        0,
        NET,
        "10.0.0.5",
        "02:00:0a:00:00:05",
    )
    assert 'CPU_COST = "0.2"' in vm["template"] and "NAME" not in vm["template"]
    assert 'DISK_ID = "1"' in vm["template"] and 'IP = "10.0.0.5"' in vm["template"]
    # costs belong to the VM's TEMPLATE (what showback charges), not to its owner's part
    assert vm["user_template"] == 'DESCRIPTION = "front"\n'
    assert rec(z, "image", IMAGE)["vms"] == [v]
    assert rec(z, "vnet", NET)["used_leases"] == 1
    used = _quota(z, "u", ALICE)
    assert (used["VMS_USED"], used["CPU_USED"], used["MEMORY_USED"]) == (1, 50, 1024)
    assert used["SYSTEM_DISK_SIZE_USED"] == 2048 and used["RUNNING_VMS_USED"] == 1
    assert _quota(z, "g", 1)["VMS_USED"] == 1


def test_default_name_and_hold(z):
    v = z.ok("vm.allocate", {"template": 'CPU = "1"\nMEMORY = "64"', "hold": True})["id"]
    assert rec(z, "vm", v)["name"] == f"one-{v}" and vmkit.pair(z, v) == "HOLD"
    assert _quota(z, "u", 0).get("RUNNING_VMS_USED", 0) == 0  # HOLD does not count running


@pytest.mark.parametrize(
    ("text", "code", "message"),
    [
        ('MEMORY = "64"', "BAD_REQUEST", "must set CPU"),
        ('CPU = "1"', "BAD_REQUEST", "must set MEMORY"),
        ('CPU = "0"\nMEMORY = "64"', "BAD_REQUEST", "CPU must be > 0"),
        ('CPU = "-1"\nMEMORY = "64"', "BAD_REQUEST", "CPU must be a positive number"),
        ('CPU = "0.125"\nMEMORY = "64"', "BAD_REQUEST", "at most two decimals"),
        ('CPU = "1"\nVCPU = "0"\nMEMORY = "64"', "BAD_REQUEST", "VCPU must be 1..10000"),
        ('CPU = "1"\nVCPU = "1.5"\nMEMORY = "64"', "BAD_REQUEST", "VCPU must be a whole"),
        ('CPU = "1"\nMEMORY = "0"', "BAD_REQUEST", "MEMORY must be 1.."),
        ('CPU = "1"\nMEMORY = "lots"', "BAD_REQUEST", "MEMORY must be a whole number"),
        ('CPU = [ A = "1" ]\nMEMORY = "64"', "BAD_REQUEST", "CPU is a vector"),
        ('CPU = "1"\nMEMORY = "64"\nDISK = "0"', "BAD_REQUEST", "DISK 0 must be a vector"),
        ('CPU = "1"\nMEMORY = "64"\nDISK = [ TYPE = "fs" ]', "BAD_REQUEST", "needs IMAGE_ID"),
        ('CPU = "1"\nMEMORY = "64"\nDISK = [ SIZE = "0" ]', "BAD_REQUEST", "SIZE must be 1.."),
        (
            'CPU = "1"\nMEMORY = "64"\nDISK = [ SIZE = "1", TYPE = "ext9" ]',
            "BAD_REQUEST",
            "fs or swap",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nDISK = [ IMAGE_ID = "7" ]',
            "BAD_REQUEST",
            "image 7 does not exist",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nDISK = [ IMAGE = "nope" ]',
            "BAD_REQUEST",
            "no image named 'nope'",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nDISK = [ IMAGE_ID = "0", IMAGE = "os" ]',
            "BAD_REQUEST",
            "not both",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nDISK = [ IMAGE_ID = "0", SIZE = "10" ]',
            "BAD_REQUEST",
            "smaller than image",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nDISK = [ SIZE = "1", TARGET = "vda" ]\nDISK = [ SIZE = "1", TARGET = "vda" ]',
            "BAD_REQUEST",
            "TARGET vda used by more",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nDISK = [ SIZE = "1", TARGET = "c:" ]',
            "BAD_REQUEST",
            "TARGET must be",
        ),
        ('CPU = "1"\nMEMORY = "64"\nNIC = [ IP = "10.0.0.2" ]', "BAD_REQUEST", "needs NETWORK_ID"),
        (
            'CPU = "1"\nMEMORY = "64"\nNIC = [ NETWORK_ID = "5" ]',
            "BAD_REQUEST",
            "virtual network 5 does not exist",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nNIC = [ NETWORK_ID = "0", IP = "10.0.0.300" ]',
            "BAD_REQUEST",
            "IPv4",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nNIC = [ NETWORK_ID = "0", IP = "10.9.0.1" ]',
            "BAD_REQUEST",
            "10.9.0.1",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nNIC = [ NETWORK_ID = "0", MAC = "zz" ]',
            "BAD_REQUEST",
            "MAC must",
        ),
        (
            'CPU = "1"\nMEMORY = "64"\nVMGROUP = [ VMGROUP_ID = "3", ROLE = "x" ]',
            "BAD_REQUEST",
            "VM group 3 does not exist",
        ),
        ('CPU = "1"\nMEMORY = "64"\nVMGROUP = [ ROLE = "x" ]', "BAD_REQUEST", "VMGROUP needs"),
        (
            'CPU = "1"\nMEMORY = "64"\nSCHED_ACTION = [ ACTION = "fly", TIME = "1" ]',
            "BAD_REQUEST",
            "cannot be scheduled",
        ),
        ('CPU = "1"\nMEMORY = "64"\nNAME = "a\\"b"', "BAD_REQUEST", "may not contain"),
        ("CPU = 1\nMEMORY = 64\nA = [", "BAD_REQUEST", "line 3"),
    ],
)
def test_allocate_refuses_bad_templates(z, text, code, message):
    z.fails("vm.allocate", {"template": text}, ALICE, code, message)


def test_allocate_refuses_big_templates_and_bad_args(z):
    huge = 'CPU = "1"\nMEMORY = "64"\nX = "' + "a" * (1 << 20) + '"'
    z.fails("vm.allocate", {"template": huge}, 0, "BAD_REQUEST", "exceeds the 1 MiB limit")
    z.fails(
        "vm.allocate", {"template": 'CPU="1"\nMEMORY="1"', "hold": 1}, 0, "BAD_REQUEST", "boolean"
    )
    z.fails(
        "vm.allocate",
        {"template": 'CPU="1"\nMEMORY="1"', "x": 1},
        0,
        "BAD_REQUEST",
        "unknown argument",
    )
    z.fails("vm.allocate", {}, 0, "BAD_REQUEST", "missing argument 'template'")


def test_allocate_needs_create_and_use_rights(z):
    bob = z.ok("user.allocate", {"name": "bob", "password": "scrypt$y", "driver": "core"})["id"]
    z.ok("obj.chmod", {"kind": "image", "id": IMAGE, "perms": 0o600})
    text = 'CPU = "1"\nMEMORY = "64"\nDISK = [ IMAGE_ID = "0" ]'
    z.fails("vm.allocate", {"template": text}, bob, "AUTHORIZATION", "USE")
    # a persistent image in use by one VM refuses a second
    z.ok("obj.chmod", {"kind": "image", "id": IMAGE, "perms": 0o644})
    z.ok("image.persistent", {"id": IMAGE})
    z.ok("vm.allocate", {"template": text})
    z.fails("vm.allocate", {"template": text}, 0, "ACTION", "persistent")


def test_quota_exceeded_refuses_allocate(z):
    _limit(z, "VM = [ VMS = 1, MEMORY = 1000 ]")
    vmkit.vm(z, text='CPU = "1"\nMEMORY = "512"', uid=ALICE)
    message = z.fails("vm.allocate", {"template": 'CPU = "1"\nMEMORY = "64"'}, ALICE, "ALLOCATE")
    assert message == "User [1] : limit of 1 reached for VMS quota in VM."
    _limit(z, "VM = [ VMS = 5 ]")
    z.fails("vm.allocate", {"template": 'CPU="1"\nMEMORY="600"'}, ALICE, "ALLOCATE", "MEMORY")


def test_running_quota_refuses_release_and_resume_but_counts_outcomes(z):
    _limit(z, "VM = [ RUNNING_VMS = 1 ]")
    a = vmkit.vm(z, uid=ALICE)
    b = vmkit.vm(z, uid=ALICE, hold=True)
    z.fails("vm.release", {"id": b}, ALICE, "ALLOCATE", "RUNNING_VMS")
    _running(z, a)
    z.ok("vm.poweroff", {"id": a})
    z.ok("vm.outcome", {"id": a, "event": "shutdown_success"})
    assert _quota(z, "u", ALICE)["RUNNING_VMS_USED"] == 0
    z.ok("vm.release", {"id": b}, uid=ALICE)
    z.fails("vm.resume", {"id": a}, ALICE, "ALLOCATE", "RUNNING_VMS")
    # the hypervisor says it runs: counted even over the limit
    z.ok("vm.outcome", {"id": a, "event": "monitor_running"})
    assert _quota(z, "u", ALICE)["RUNNING_VMS_USED"] == 2


def test_the_running_set():
    running = {
        lifecycle.state_str(s, lcm)
        for s, lcm in lifecycle.VALID_PAIRS
        if vmcore.counts_running(s, lcm)
    }
    for name in ("PENDING", "PROLOG", "BOOT", "RUNNING", "UNKNOWN", "MIGRATE", "SHUTDOWN",
                 "SHUTDOWN_POWEROFF", "BOOT_POWEROFF", "HOTPLUG", "SAVE_SUSPEND",
                 "PROLOG_FAILURE", "BOOT_FAILURE", "CLEANUP_RESUBMIT", "SAVE_STOP"):  # fmt: skip
        assert name in running, name
    for name in ("HOLD", "POWEROFF", "SUSPENDED", "STOPPED", "UNDEPLOYED", "DONE", "CLONING",
                 "EPILOG", "EPILOG_STOP", "EPILOG_UNDEPLOY", "EPILOG_FAILURE", "CLEANUP_DELETE",
                 "HOTPLUG_PROLOG_POWEROFF", "DISK_SNAPSHOT_SUSPENDED", "PROLOG_MIGRATE_POWEROFF",
                 "HOTPLUG_SAVEAS_STOPPED", "DISK_RESIZE_UNDEPLOYED", "BACKUP_POWEROFF"):  # fmt: skip
        assert name not in running, name
    active = {lifecycle.state_str(VmState.ACTIVE, lcm) for lcm in LcmState if lcm.value}
    assert running == {"PENDING"} | (active - {m.name for m in vmcore.NOT_RUNNING_LCM})


def test_done_releases_everything(z):
    text = vmkit.VM_TEXT + '\nDISK = [ IMAGE_ID = "0" ]'
    v = vmkit.vm(z, text=text, uid=ALICE)
    _running(z, v)
    z.ok("vm.terminate-hard", {"id": v}, uid=ALICE)
    z.ok("vm.outcome", {"id": v, "event": "shutdown_success"})
    z.ok("vm.outcome", {"id": v, "event": "epilog_success"})
    assert vmkit.pair(z, v) == "DONE"
    assert rec(z, "image", IMAGE)["vms"] == [] and rec(z, "vnet", NET)["used_leases"] == 0
    assert rec(z, "host", H1)["vms"] == []
    used = _quota(z, "u", ALICE)
    assert all(v == 0 for k, v in used.items() if k.endswith("_USED")), used
    z.fails("vm.terminate", {"id": v}, ALICE, "ACTION", "not allowed in state DONE")


# --- the quota property ------------------------------------------------------------------


def _expected(z: Zone) -> dict[str, int]:
    out = dict.fromkeys(
        (
            "VMS",
            "CPU",
            "MEMORY",
            "SYSTEM_DISK_SIZE",
            "RUNNING_VMS",
            "RUNNING_CPU",
            "RUNNING_MEMORY",
        ),
        0,
    )
    for vm in (r for k, r in z.state["objects"].items() if k.startswith(b"vm\0")):
        if vm["uid"] != ALICE or vm["state"] == VmState.DONE:
            continue
        out["VMS"] += 1
        out["CPU"] += vmcore.cents(vm["cpu"])
        out["MEMORY"] += vm["memory"]
        out["SYSTEM_DISK_SIZE"] += vmcore.system_disk_mb(vm)
        if vmcore.counts_running(vm["state"], vm["lcm_state"]):
            out["RUNNING_VMS"] += 1
            out["RUNNING_CPU"] += vmcore.cents(vm["cpu"])
            out["RUNNING_MEMORY"] += vm["memory"]
    return out


_SIMPLE = ("terminate", "terminate-hard", "poweroff", "poweroff-hard", "undeploy", "stop",
           "suspend", "resume", "hold", "release", "reboot", "resched")  # fmt: skip
# (what, a, b): a picks the VM (modulo the VMs there are) and b the event among those the
# VM's state allows, so that most steps do something.
_OPS = st.tuples(
    st.sampled_from(
        ["alloc", "act", "deploy", "outcome", "outcome", "outcome", "recover", "resize", "attach"]
    ),
    st.integers(0, 50),
    st.integers(0, 50),
)


def _pick(options: list, b: int):
    return options[b % len(options)] if options else None


def _step(z: Zone, what: str, a: int, b: int) -> None:
    vms = sorted(r["id"] for k, r in z.state["objects"].items() if k.startswith(b"vm\0"))
    if what == "alloc" or not vms:
        text = f'CPU = "{(0.5, 1, 2)[a % 3]}"\nMEMORY = "{(64, 512)[b % 2]}"\nDISK = [ SIZE = "5" ]'
        z.do("vm.allocate", {"template": text, "hold": a % 4 == 0}, uid=ALICE)
        return
    v = vms[a % len(vms)]
    state = (rec(z, "vm", v)["state"], rec(z, "vm", v)["lcm_state"])
    if what == "act":
        allowed = [e for e in _SIMPLE if lifecycle.transition(*state, e).ok]
        if allowed:
            z.do(f"vm.{_pick(allowed, b)}", {"id": v}, uid=ALICE)
    elif what == "deploy":
        z.do("vm.deploy", {"id": v, "host": b % 2})
    elif what == "outcome":
        allowed = [e for e in lifecycle.OUTCOMES if lifecycle.transition(*state, e).ok]
        if allowed:
            z.do("vm.outcome", {"id": v, "event": _pick(allowed, b)}, uid=-1)
    elif what == "recover":
        op = ("success", "failure", "retry", "delete", "delete-recreate")[b % 5]
        z.do("vm.recover", {"id": v, "op": op})
    elif what == "resize":
        z.do(
            "vm.resize",
            {"id": v, "cpu": (0.5, 1.5)[b % 2], "memory": (128, 1024)[b % 2]},
            uid=ALICE,
        )
    else:
        z.do("vm.disk-attach", {"id": v, "template": f'DISK = [ SIZE = "{b + 1}" ]'}, uid=ALICE)


def _vms(z: Zone) -> list[dict]:
    return [r for k, r in z.state["objects"].items() if k.startswith(b"vm\0")]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(_OPS, min_size=15, max_size=60))
def test_quota_usage_is_the_sum_over_live_vms(base, ops):
    z = Zone(copy.deepcopy(base.state))
    _limit(z, "VM = [ VMS = 4, RUNNING_VMS = 3, MEMORY = 2048 ]")
    for op in ops:
        _step(z, *op)
        expected = _expected(z)
        for owner in (("u", ALICE), ("g", 1)):
            used = _quota(z, *owner)
            assert {m: used.get(f"{m}_USED", 0) for m in expected} == expected, (op, owner)
        # hosts hold exactly the VMs that hold them, with their capacity
        for hid in (H1, vmkit.H2):
            host = rec(z, "host", hid)
            held = [(r["id"], c) for r in _vms(z) for c in r["capacity"] if c["hid"] == hid]
            assert host["vms"] == sorted(i for i, _ in held)
            assert host["capacity"]["cpu_usage"] == sum(vmcore.cents(c["cpu"]) for _, c in held)
            assert host["capacity"]["mem_usage"] == sum(c["memory"] * 1024 for _, c in held)
        # an open history record exactly while the guest is up on a host
        for vm in _vms(z):
            if vm["state"] in vmcore.OFF_HOST or vm["state"] in vmcore.GUEST_DOWN:
                assert vmcore.open_record(vm) is None, vm


# --- hot-plug --------------------------------------------------------------------------


def test_disk_attach_success_and_failure(z):
    v = vmkit.vm(z, uid=ALICE)
    _running(z, v)
    out = z.ok("vm.disk-attach", {"id": v, "template": 'DISK = [ IMAGE_ID = "0" ]'}, uid=ALICE)
    assert out == {"disk_id": 1}
    vm = rec(z, "vm", v)
    assert vmkit.pair(z, v) == "HOTPLUG" and vm["intent"] == "attach_disk"
    assert vm["disks"][1]["attach"] is True and rec(z, "image", IMAGE)["vms"] == [v]
    z.ok("vm.outcome", {"id": v, "event": "hotplug_failure"})
    vm = rec(z, "vm", v)
    assert [d["disk_id"] for d in vm["disks"]] == [0] and rec(z, "image", IMAGE)["vms"] == []
    assert 'DISK_ID = "1"' not in vm["template"] and vm["pending_op"] is None
    z.ok("vm.disk-attach", {"id": v, "template": 'DISK = [ SIZE = "30", TARGET = "vdc" ]'})
    z.ok("vm.outcome", {"id": v, "event": "hotplug_success"})
    vm = rec(z, "vm", v)
    assert vm["disks"][1] == {
        "disk_id": 2,
        "size": 30,
        "type": "fs",
        "target": "vdc",
        "snapshots": [],
        "next_snapshot_id": 0,
    }
    assert _quota(z, "u", ALICE)["SYSTEM_DISK_SIZE_USED"] == 40
    z.fails(
        "vm.disk-attach",
        {"id": v, "template": 'DISK = [ SIZE = "1", TARGET = "vdc" ]'},
        0,
        "BAD_REQUEST",
        "already used",
    )
    z.fails(
        "vm.disk-attach",
        {"id": v, "template": 'NIC = [ NETWORK_ID = "0" ]'},
        0,
        "BAD_REQUEST",
        "only DISK",
    )
    z.fails(
        "vm.disk-attach",
        {"id": v, "template": 'DISK = [ SIZE = "1" ]\nDISK = [ SIZE = "1" ]'},
        0,
        "BAD_REQUEST",
        "exactly one DISK",
    )


def test_disk_detach_frees_on_success_only(z):
    v = vmkit.vm(z)
    _running(z, v)
    z.fails("vm.disk-detach", {"id": v, "disk_id": 5}, 0, "BAD_REQUEST", "has no disk 5")
    z.ok("vm.disk-detach", {"id": v, "disk_id": 0})
    assert rec(z, "vm", v)["disks"][0]["detach"] is True
    z.ok("vm.outcome", {"id": v, "event": "hotplug_failure"})
    assert "detach" not in rec(z, "vm", v)["disks"][0]
    z.ok("vm.disk-detach", {"id": v, "disk_id": 0})
    z.ok("vm.recover", {"id": v, "op": "success"})
    assert rec(z, "vm", v)["disks"] == [] and _quota(z, "u", 0)["SYSTEM_DISK_SIZE_USED"] == 0


def test_nic_attach_and_detach(z):
    v = vmkit.vm(z)
    _running(z, v)
    z.ok("vm.nic-attach", {"id": v, "template": 'NIC = [ NETWORK_ID = "0", IP = "10.0.0.9" ]'})
    assert vmkit.pair(z, v) == "HOTPLUG_NIC" and rec(z, "vnet", NET)["used_leases"] == 2
    z.ok("vm.outcome", {"id": v, "event": "hotplug_success"})
    nics = rec(z, "vm", v)["nics"]
    assert [(n["nic_id"], n.get("ip")) for n in nics] == [(0, "10.0.0.1"), (1, "10.0.0.9")]
    assert "attach" not in nics[1]
    z.ok("vm.nic-detach", {"id": v, "nic_id": 1})
    z.ok("vm.outcome", {"id": v, "event": "hotplug_success"})
    assert [n["nic_id"] for n in rec(z, "vm", v)["nics"]] == [0]
    assert rec(z, "vnet", NET)["used_leases"] == 1
    z.fails("vm.nic-detach", {"id": v, "nic_id": 1}, 0, "BAD_REQUEST", "has no NIC 1")
    z.fails(
        "vm.nic-attach",
        {"id": v, "template": 'NIC = [ NETWORK_ID = "0", IP = "10.0.0.1" ]'},
        0,
        "ACTION",
        "already",
    )


def test_disk_snapshots(z):
    v = vmkit.vm(z)
    _running(z, v)
    assert z.ok("vm.disk-snapshot-create", {"id": v, "disk_id": 0, "name": "before"}) == {
        "snapshot_id": 0
    }
    z.ok("vm.outcome", {"id": v, "event": "disk_snapshot_success"})
    z.ok("vm.disk-snapshot-create", {"id": v, "disk_id": 0, "name": "after"})
    z.ok("vm.outcome", {"id": v, "event": "disk_snapshot_success"})
    snaps = rec(z, "vm", v)["disks"][0]["snapshots"]
    assert [(s["id"], s["name"], s["active"]) for s in snaps] == [
        (0, "before", False),
        (1, "after", True),
    ]
    z.fails(
        "vm.disk-snapshot-revert",
        {"id": v, "disk_id": 0, "snapshot_id": 0},
        0,
        "ACTION",
        "not allowed in state ACTIVE/RUNNING",
    )
    z.fails(
        "vm.disk-snapshot-delete",
        {"id": v, "disk_id": 0, "snapshot_id": 1},
        0,
        "ACTION",
        "active one",
    )
    z.fails(
        "vm.disk-snapshot-delete",
        {"id": v, "disk_id": 0, "snapshot_id": 7},
        0,
        "BAD_REQUEST",
        "no snapshot 7",
    )
    z.ok("vm.poweroff", {"id": v})
    z.ok("vm.outcome", {"id": v, "event": "shutdown_success"})
    z.ok("vm.disk-snapshot-revert", {"id": v, "disk_id": 0, "snapshot_id": 0})
    assert vmkit.pair(z, v) == "DISK_SNAPSHOT_REVERT_POWEROFF"
    z.ok("vm.outcome", {"id": v, "event": "disk_snapshot_success"})
    z.ok("vm.disk-snapshot-delete", {"id": v, "disk_id": 0, "snapshot_id": 1})
    z.ok("vm.outcome", {"id": v, "event": "disk_snapshot_success"})
    snaps = rec(z, "vm", v)["disks"][0]["snapshots"]
    assert [(s["id"], s["active"]) for s in snaps] == [(0, True)] and vmkit.pair(z, v) == "POWEROFF"
    z.fails(
        "vm.disk-snapshot-create", {"id": v, "disk_id": 0, "name": ""}, 0, "BAD_REQUEST", "1..128"
    )


def test_resize_pending_and_live(z):
    _limit(z, "VM = [ CPU = 2 ]")
    v = vmkit.vm(z, uid=ALICE)
    z.ok("vm.resize", {"id": v, "cpu": 1.5, "vcpu": 4, "memory": 2048}, uid=ALICE)
    vm = rec(z, "vm", v)
    assert (vm["cpu"], vm["vcpu"], vm["memory"]) == (1.5, 4, 2048) and vmkit.pair(z, v) == "PENDING"
    assert 'CPU = "1.5"' in vm["template"] and 'MEMORY = "2048"' in vm["template"]
    assert (
        _quota(z, "u", ALICE)["CPU_USED"] == 150
        and _quota(z, "u", ALICE)["RUNNING_MEMORY_USED"] == 2048
    )
    z.fails("vm.resize", {"id": v, "cpu": 2.5}, ALICE, "ALLOCATE", "limit of 2 reached for CPU")
    z.fails("vm.resize", {"id": v}, ALICE, "BAD_REQUEST", "at least one")
    z.fails("vm.resize", {"id": v, "cpu": 0}, ALICE, "BAD_REQUEST", "must be > 0")
    z.fails("vm.resize", {"id": v, "vcpu": True}, ALICE, "BAD_REQUEST", "whole number")
    z.fails("vm.resize", {"id": v, "memory": -1}, ALICE, "BAD_REQUEST", "whole number")
    _running(z, v)
    z.ok("vm.resize", {"id": v, "cpu": 0.5, "memory": 512}, uid=ALICE)
    assert (
        vmkit.pair(z, v) == "HOTPLUG_RESIZE" and rec(z, "host", H1)["capacity"]["cpu_usage"] == 50
    )
    z.ok("vm.outcome", {"id": v, "event": "hotplug_failure"})  # undone
    vm = rec(z, "vm", v)
    assert (vm["cpu"], vm["memory"], vmkit.pair(z, v)) == (1.5, 2048, "RUNNING")
    assert rec(z, "host", H1)["capacity"]["cpu_usage"] == 150
    assert _quota(z, "u", ALICE)["CPU_USED"] == 150


# --- scheduled actions --------------------------------------------------------------------


def test_sched_add_update_delete(z):
    v = vmkit.vm(z, uid=ALICE)
    sched = 'SCHED_ACTION = [ ACTION = "poweroff", TIME = "+3600", REPEAT = "0", DAYS = "1,5", END_TYPE = "1", END_VALUE = "3" ]'
    assert z.ok("vm.sched-add", {"id": v, "template": sched}, uid=ALICE) == {"sched_id": 0}
    (s,) = rec(z, "vm", v)["sched_actions"]
    assert s == {
        "id": 0,
        "action": "poweroff",
        "time": TS + 3_600_000,
        "repeat": 0,
        "days": [1, 5],
        "end_type": 1,
        "end_value": 3,
        "args": "",
        "done": 0,
        "runs": 0,
        "message": "",
    }
    z.ok(
        "vm.sched-update",
        {
            "id": v,
            "sched_id": 0,
            "template": 'SCHED_ACTION = [ ACTION = "reboot", TIME = "1800000000000" ]',
        },
    )
    assert rec(z, "vm", v)["sched_actions"][0]["action"] == "reboot"
    z.fails(
        "vm.sched-update",
        {"id": v, "sched_id": 4, "template": sched},
        0,
        "BAD_REQUEST",
        "no scheduled action 4",
    )
    z.ok("vm.sched-delete", {"id": v, "sched_id": 0})
    assert rec(z, "vm", v)["sched_actions"] == []
    assert z.ok("vm.sched-add", {"id": v, "template": sched}) == {
        "sched_id": 1
    }  # ids are not reused


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        ('TIME = "1"', "ACTION is missing"),
        ('ACTION = "poweroff"', "TIME is missing"),
        ('ACTION = "migrate", TIME = "1"', "cannot be scheduled"),
        ('ACTION = "poweroff", TIME = "soon"', "TIME must be a whole number"),
        ('ACTION = "poweroff", TIME = "+-5"', "TIME (+seconds) must be a whole number"),
        ('ACTION = "poweroff", TIME = "1", REPEAT = "4", DAYS = "1"', "REPEAT must be 0..3"),
        ('ACTION = "poweroff", TIME = "1", REPEAT = "0"', "DAYS is missing"),
        (
            'ACTION = "poweroff", TIME = "1", REPEAT = "0", DAYS = "7"',
            "DAYS (for WEEKLY repeat) must be 0..6",
        ),
        ('ACTION = "poweroff", TIME = "1", REPEAT = "1", DAYS = "0"', "must be 1..31"),
        ('ACTION = "poweroff", TIME = "1", REPEAT = "2", DAYS = "366"', "must be 0..365"),
        ('ACTION = "poweroff", TIME = "1", REPEAT = "3", DAYS = "2,3"', "one number"),
        ('ACTION = "poweroff", TIME = "1", REPEAT = "3", DAYS = "169"', "must be 1..168"),
        ('ACTION = "poweroff", TIME = "1", REPEAT = "0", DAYS = "1,,2"', "comma-separated"),
        ('ACTION = "poweroff", TIME = "1", DAYS = "1"', "DAYS needs REPEAT"),
        (
            'ACTION = "poweroff", TIME = "1", REPEAT = "0", DAYS = "1", END_TYPE = "3"',
            "END_TYPE must be 0..2",
        ),
        (
            'ACTION = "poweroff", TIME = "1", REPEAT = "0", DAYS = "1", END_TYPE = "1"',
            "END_VALUE is missing",
        ),
        (
            'ACTION = "poweroff", TIME = "1", REPEAT = "0", DAYS = "1", END_TYPE = "1", END_VALUE = "0"',
            "must be 1..",
        ),
        (
            'ACTION = "poweroff", TIME = "5", REPEAT = "0", DAYS = "1", END_TYPE = "2", END_VALUE = "4"',
            "before TIME",
        ),
        (
            'ACTION = "poweroff", TIME = "1", REPEAT = "0", DAYS = "1", END_VALUE = "4"',
            "goes with END_TYPE",
        ),
        ('ACTION = "poweroff", TIME = "1", ARGS = "1"', "takes no ARGS"),
        ('ACTION = "disk-snapshot-create", TIME = "1"', "needs ARGS"),
        (
            'ACTION = "disk-snapshot-revert", TIME = "1", ARGS = "0,x"',
            "SNAPSHOT_ID must be a whole number",
        ),
        ('ACTION = "poweroff", TIME = "1", COLOR = "red"', "unknown attribute(s) COLOR"),
    ],
)
def test_sched_validation(z, vector, message):
    v = vmkit.vm(z)
    z.fails(
        "vm.sched-add",
        {"id": v, "template": f"SCHED_ACTION = [ {vector} ]"},
        0,
        "BAD_REQUEST",
        message,
    )


def test_sched_in_template_and_limits(z):
    text = 'CPU = "1"\nMEMORY = "64"\nSCHED_ACTION = [ ACTION = "terminate", TIME = "+60" ]'
    v = vmkit.vm(z, text=text)
    vm = rec(z, "vm", v)
    assert vm["sched_actions"][0]["time"] == TS + 60_000 and "SCHED_ACTION" not in vm["template"]
    z.fails(
        "vm.sched-add",
        {"id": v, "template": 'DISK = [ SIZE = "1" ]'},
        0,
        "BAD_REQUEST",
        "only SCHED_ACTION",
    )
    bob = z.ok("user.allocate", {"name": "bob", "password": "scrypt$y", "driver": "core"})["id"]
    z.fails("vm.sched-delete", {"id": v, "sched_id": 0}, bob, "AUTHORIZATION")
    z.ok("vm.terminate", {"id": v})
    z.fails("vm.sched-delete", {"id": v, "sched_id": 0}, 0, "ACTION", "is DONE")


# --- VM groups ----------------------------------------------------------------------------

GROUP = """NAME = "app"
ROLE = [ NAME = "web", POLICY = "ANTI_AFFINED", HOST_ANTI_AFFINED = "1" ]
ROLE = [ NAME = "db", POLICY = "AFFINED", HOST_AFFINED = "0" ]
ROLE = [ NAME = "cache" ]
AFFINED = "web, cache"
ANTI_AFFINED = "db, cache"
"""


def test_vmgroup_allocate_join_leave_delete(z):
    g = z.ok("vmgroup.allocate", {"template": GROUP}, uid=ALICE)["id"]
    group = rec(z, "vmgroup", g)
    assert group["name"] == "app" and "NAME" not in template.parse(group["template"])
    assert [
        (r["id"], r["name"], r["policy"], r["host_affined"], r["host_anti_affined"])
        for r in group["roles"]
    ] == [
        (0, "web", "ANTI_AFFINED", [], [1]),
        (1, "db", "AFFINED", [0], []),
        (2, "cache", "NONE", [], []),
    ]
    assert group["affined"] == [["cache", "web"]] and group["anti_affined"] == [["cache", "db"]]
    text = f'CPU = "1"\nMEMORY = "64"\nVMGROUP = [ VMGROUP_ID = "{g}", ROLE = "web" ]'
    v = vmkit.vm(z, text=text, uid=ALICE)
    assert rec(z, "vm", v)["vmgroup"] == {"id": g, "role": "web"}
    assert rec(z, "vmgroup", g)["roles"][0]["vms"] == [v]
    z.fails(
        "vm.allocate",
        {"template": text.replace("web", "nope")},
        ALICE,
        "BAD_REQUEST",
        "no role 'nope'",
    )
    bob = z.ok("user.allocate", {"name": "bob", "password": "scrypt$y", "driver": "core"})["id"]
    z.fails("vm.allocate", {"template": text}, bob, "AUTHORIZATION", "USE")
    z.fails("vmgroup.delete", {"id": g}, ALICE, "ACTION", "has VMs (web: 0)")
    z.ok("vm.terminate", {"id": v}, uid=ALICE)
    assert rec(z, "vmgroup", g)["roles"][0]["vms"] == []
    z.ok("vmgroup.delete", {"id": g}, uid=ALICE)
    assert rec(z, "vmgroup", g) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('NAME = "g"', "at least one ROLE"),
        ('NAME = "g"\nROLE = "web"', "must be a vector"),
        ('NAME = "g"\nROLE = [ POLICY = "NONE" ]', "NAME is missing"),
        ('NAME = "g"\nROLE = [ NAME = "a,b" ]', "without ','"),
        ('NAME = "g"\nROLE = [ NAME = "a", POLICY = "CLOSE" ]', "POLICY must be one of"),
        ('NAME = "g"\nROLE = [ NAME = "a", HOST_AFFINED = "7" ]', "host 7 does not exist"),
        ('NAME = "g"\nROLE = [ NAME = "a", HOST_AFFINED = "x" ]', "list of host ids"),
        (
            'NAME = "g"\nROLE = [ NAME = "a", HOST_AFFINED = "0", HOST_ANTI_AFFINED = "0" ]',
            "both HOST_AFFINED",
        ),
        ('NAME = "g"\nROLE = [ NAME = "a", COLOR = "red" ]', "unknown attribute(s) COLOR"),
        ('NAME = "g"\nROLE = [ NAME = "a" ]\nROLE = [ NAME = "a" ]', "used twice"),
        ('NAME = "g"\nROLE = [ NAME = "a" ]\nAFFINED = "a, b"', "no role named 'b'"),
        ('NAME = "g"\nROLE = [ NAME = "a" ]\nAFFINED = "a, a"', "at least two different"),
        (
            'NAME = "g"\nROLE = [ NAME = "a" ]\nROLE = [ NAME = "b" ]\nAFFINED = "a,b"\nANTI_AFFINED = "b,a"',
            "both AFFINED and ANTI_AFFINED",
        ),
        ('ROLE = [ NAME = "a" ]', "missing argument 'name'"),
    ],
)
def test_vmgroup_validation(z, text, message):
    z.fails("vmgroup.allocate", {"template": text}, ALICE, "BAD_REQUEST", message)


def test_vmgroup_names_unique_per_owner(z):
    z.ok("vmgroup.allocate", {"template": 'NAME = "g"\nROLE = [ NAME = "a" ]'}, uid=ALICE)
    z.fails(
        "vmgroup.allocate",
        {"template": 'NAME = "g"\nROLE = [ NAME = "a" ]'},
        ALICE,
        "ACTION",
        "already taken",
    )
    z.ok("vmgroup.allocate", {"template": 'NAME = "g"\nROLE = [ NAME = "a" ]'}, uid=0)
    z.fails("vmgroup.delete", {"id": 9}, 0, "NO_EXISTS", "VM group 9 does not exist")


def test_overlay_sees_its_own_writes_in_order():
    from tests.statekit import DictView

    base = DictView({"d": {b"a": 1, b"c": 3, b"e": 5}})
    ov = vmcore.Overlay(base)
    ov.add(
        [("put", "d", b"b", 2), ("del", "d", b"c"), ("put", "d", b"e", 50), ("put", "d", b"f", 6)]
    )
    assert list(ov.iter("d")) == [(b"a", 1), (b"b", 2), (b"e", 50), (b"f", 6)]
    assert list(ov.iter("d", b"e")) == [(b"e", 50)]
    assert ov.get("d", b"c") is None and ov.get("d", b"a") == 1 and ov.get("x", b"a") is None
    ov.add([("put", "d", b"c", 30)])
    assert [k for k, _ in ov.iter("d")] == [b"a", b"b", b"c", b"e", b"f"]
    assert len(ov.mutations) == 5 and base.state["d"] == {b"a": 1, b"c": 3, b"e": 5}
