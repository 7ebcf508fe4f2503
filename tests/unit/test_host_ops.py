"""Hosts in the state machine: allocate, delete, enable/disable/offline, monitoring
results, reservations, and the capacity helpers the VM life-cycle uses. Every refusal
is checked to change nothing (statekit.Zone.fails asserts it)."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore import acl, objects, schema
from raftcore.commands import OPS
from raftcore.ops import hosts
from raftcore.ops.common import Reject
from tests.statekit import Zone, write

KVM = 'IM_MAD = "kvm"\nVM_MAD = "kvm"\n'
GIB_KB = 1 << 20
ALICE = 1


def booted() -> Zone:
    z = Zone()
    z.ok("user.bootstrap", {"password_hash": "scrypt$h"}, uid=-1)
    z.ok("cluster.allocate", {"name": "default"})
    return z


def host(z: Zone, hid: int) -> dict:
    return objects.get(z.view(), "host", hid)


def cluster(z: Zone, cid: int) -> dict:
    return objects.get(z.view(), "cluster", cid)


def add_host(z: Zone, name: str = "node1", tmpl: str = KVM, **args) -> int:
    return z.ok("host.allocate", {"name": name, "template": tmpl, **args})["id"]


def probe(z: Zone, hid: int, cpu: int = 800, mem: int = 16 * GIB_KB, **more) -> None:
    capacity = {"total_cpu": cpu, "total_mem": mem, **more}
    z.ok("host.monitor", {"id": hid, "state": "MONITORED", "capacity": capacity}, uid=-1)


def user(z: Zone, name: str = "alice") -> int:
    args = {"name": name, "password": "scrypt$x", "driver": "core"}
    return z.ok("user.allocate", args)["id"]


def rule(z: Zone, text: str) -> None:
    r = acl.parse(text)
    z.ok("acl.add", {"user": r.user, "resource": r.resource, "rights": r.rights, "zone": r.zone})


def apply_mutations(z: Zone, mutations: list) -> None:
    z.state = write(z.state, mutations)


@pytest.fixture
def z() -> Zone:
    return booted()


# --- allocate ----------------------------------------------------------------------------


def test_ops_are_registered():
    for op in hosts.HANDLERS:
        assert op in OPS
    assert objects.KINDS["host"].actions == {"enable", "disable", "offline"}
    assert "monitor" not in objects.KINDS["host"].actions  # only the front-ends propose it


def test_allocate_record_and_cluster(z):
    hid = add_host(z, "node1")
    assert hid == 0
    h = host(z, hid)
    assert h["state"] == hosts.INIT == 0
    assert (h["im_mad"], h["vm_mad"], h["cids"], h["vms"]) == ("kvm", "kvm", [0], [])
    assert (h["uid"], h["gid"], h["last_mon"], h["error"]) == (0, 0, 0, "")
    assert h["capacity"] == {f: 0 for f in hosts.CAPACITY_FIELDS}
    assert h["template"] == KVM
    assert cluster(z, 0)["hosts"] == [0]
    # indexed by state and by (global) name
    assert list(objects.ids_by_index(z.view(), "host", "state", hosts.INIT)) == [0]
    assert objects.by_name(z.view(), "host", "node1") == 0


def test_allocate_in_a_cluster_and_name_from_template(z):
    cid = z.ok("cluster.allocate", {"name": "prod"})["id"]
    hid = z.ok("host.allocate", {"template": KVM + 'NAME = "n2"\n', "cluster": cid})["id"]
    assert host(z, hid)["name"] == "n2" and host(z, hid)["cids"] == [cid]
    assert cluster(z, cid)["hosts"] == [hid] and cluster(z, 0)["hosts"] == []
    # -1 is OpenNebula's "no cluster": the default one
    other = add_host(z, "n3", "IM_MAD = lxc\nVM_MAD = lxc", cluster=-1)
    assert host(z, other)["cids"] == [0] and host(z, other)["vm_mad"] == "lxc"


@pytest.mark.parametrize(
    "args, code, text",
    [
        ({"name": "n"}, "BAD_REQUEST", "missing argument 'template'"),
        ({"name": "n", "template": "VM_MAD = kvm"}, "BAD_REQUEST", "must set IM_MAD"),
        ({"name": "n", "template": "IM_MAD = kvm"}, "BAD_REQUEST", "must set VM_MAD"),
        (
            {"name": "n", "template": "IM_MAD = kvm\nVM_MAD = xen"},
            "BAD_REQUEST",
            "unknown VM_MAD 'xen'",
        ),
        (
            {"name": "n", "template": "IM_MAD = [ A = 1 ]\nVM_MAD = kvm"},
            "BAD_REQUEST",
            "IM_MAD is a vector",
        ),
        (
            {"name": "n", "template": KVM + "RESERVED_CPU = lots"},
            "BAD_REQUEST",
            "RESERVED_CPU must be a whole number or a percentage",
        ),
        ({"name": "n", "template": "IM_MAD = kvm\nVM_MAD = "}, "BAD_REQUEST", "VM_MAD"),
        ({"name": "n", "template": 'IM_MAD = "kvm'}, "BAD_REQUEST", "line 1"),
        ({"name": "n", "template": 7}, "BAD_REQUEST", "must be template text"),
        (
            {"name": "n", "template": KVM + "X = " + "x" * (1 << 20)},
            "BAD_REQUEST",
            "1 MiB",
        ),
        ({"template": KVM}, "BAD_REQUEST", "missing argument 'name'"),
        ({"name": "", "template": KVM}, "BAD_REQUEST", "1..128"),
        ({"name": "a\nb", "template": KVM}, "BAD_REQUEST", "may not contain"),
        ({"name": "n", "template": KVM, "cluster": 9}, "BAD_REQUEST", "cluster 9 does not"),
        ({"name": "n", "template": KVM, "cluster": -2}, "BAD_REQUEST", "must be >= -1"),
        ({"name": "n", "template": KVM, "cluster": "0"}, "BAD_REQUEST", "must be an integer"),
        ({"name": "n", "template": KVM, "hold": True}, "BAD_REQUEST", "unknown argument"),
        ({"name": "node1", "template": KVM}, "ACTION", "already taken by 0"),
    ],
)
def test_allocate_refusals(z, args, code, text):
    add_host(z, "node1")
    z.fails("host.allocate", args, 0, code, text)


def test_template_size_limit_message(z):
    msg = z.fails(
        "host.allocate", {"name": "n", "template": "X = " + "x" * (1 << 20)}, 0, "BAD_REQUEST"
    )
    assert "template" in msg


def test_allocate_needs_create_host_and_admin_on_the_cluster(z):
    uid = user(z)
    z.fails("host.allocate", {"name": "n", "template": KVM}, uid, "AUTHORIZATION", "CREATE")
    rule(z, f"#{uid} HOST/* CREATE")
    z.fails("host.allocate", {"name": "n", "template": KVM}, uid, "AUTHORIZATION", "ADMIN")
    rule(z, f"#{uid} CLUSTER/#0 ADMIN")
    hid = z.ok("host.allocate", {"name": "n", "template": KVM}, uid=uid)["id"]
    # the creator owns it, in group oneadmin (0), as OpenNebula's hosts
    assert (host(z, hid)["uid"], host(z, hid)["gid"]) == (uid, 0)


# --- delete ------------------------------------------------------------------------------


def test_delete_removes_from_cluster(z):
    hid = add_host(z)
    z.ok("host.delete", {"id": hid})
    assert objects.find(z.view(), "host", hid) is None
    assert cluster(z, 0)["hosts"] == []
    # no index entry is left behind
    assert not [k for k in z.state.get(schema.INDEX, {}) if k.startswith(b"host\0")]
    z.fails("host.delete", {"id": hid}, 0, "NO_EXISTS", "host 0 does not exist")


def test_delete_refused_while_the_host_has_vms(z):
    hid = add_host(z)
    probe(z, hid)
    apply_mutations(z, hosts.allocate_capacity(z.view(), hid, 1, 512, 7))
    apply_mutations(z, hosts.allocate_capacity(z.view(), hid, 1, 512, 9))
    z.fails("host.delete", {"id": hid}, 0, "ACTION", "host 0 has 2 VMs: 7, 9")
    apply_mutations(z, hosts.free_capacity(z.view(), hid, 1, 512, 7))
    apply_mutations(z, hosts.free_capacity(z.view(), hid, 1, 512, 9))
    z.ok("host.delete", {"id": hid})


def test_delete_needs_admin(z):
    hid = add_host(z)
    uid = user(z)
    rule(z, f"#{uid} HOST/* USE+MANAGE")
    z.fails("host.delete", {"id": hid}, uid, "AUTHORIZATION", "ADMIN")
    z.fails("host.delete", {"id": "0"}, 0, "BAD_REQUEST", "must be an integer")
    z.fails("host.delete", {"id": hid, "x": 1}, 0, "BAD_REQUEST", "unknown argument")


# --- status: enable, disable, offline ------------------------------------------------------


def test_status_transitions(z):
    hid = add_host(z)
    z.ok("host.disable", {"id": hid})
    assert host(z, hid)["state"] == hosts.DISABLED == 4
    # never monitored: enable goes back to INIT (the next probe makes it MONITORED)
    z.ok("host.enable", {"id": hid})
    assert host(z, hid)["state"] == hosts.INIT
    probe(z, hid)
    z.ok("host.disable", {"id": hid})
    probe(z, hid, cpu=400)  # a disabled host is still monitored and stays disabled
    assert host(z, hid)["state"] == hosts.DISABLED
    assert host(z, hid)["capacity"]["total_cpu"] == 400
    z.ok("host.enable", {"id": hid})
    assert host(z, hid)["state"] == hosts.MONITORED
    z.ok("host.offline", {"id": hid})
    h = host(z, hid)
    assert h["state"] == hosts.OFFLINE == 8
    assert h["capacity"]["total_cpu"] == 0 and h["capacity"]["max_mem"] == 0
    z.ok("host.enable", {"id": hid})
    assert host(z, hid)["state"] == hosts.INIT  # must be probed again
    assert list(objects.ids_by_index(z.view(), "host", "state", hosts.INIT)) == [hid]
    assert list(objects.ids_by_index(z.view(), "host", "state", hosts.OFFLINE)) == []


def test_enable_a_disabled_host_whose_last_probe_failed(z):
    hid = add_host(z)
    z.ok("host.disable", {"id": hid})
    z.ok("host.monitor", {"id": hid, "state": "ERROR", "error": "ssh: timeout"}, uid=-1)
    assert host(z, hid)["state"] == hosts.DISABLED
    z.ok("host.enable", {"id": hid})
    assert host(z, hid)["state"] == hosts.ERROR


@pytest.mark.parametrize(
    "setup, action, text",
    [
        ([], "enable", "cannot enable host 0: it is already enabled (state INIT)"),
        (["probe"], "enable", "already enabled (state MONITORED)"),
        (["host.disable"], "disable", "cannot disable host 0: it is already disabled"),
        (["host.offline"], "offline", "cannot offline host 0: it is already offline"),
    ],
)
def test_status_in_the_wrong_state(z, setup, action, text):
    hid = add_host(z)
    for step in setup:
        if step == "probe":
            probe(z, hid)
        else:
            z.ok(step, {"id": hid})
    z.fails(f"host.{action}", {"id": hid}, 0, "ACTION", text)


def test_status_needs_admin_not_manage(z):
    hid = add_host(z)
    uid = user(z)
    # what the default VDC gives group users: MANAGE on hosts
    rule(z, f"#{uid} HOST/* MANAGE")
    for action in ("disable", "offline"):
        z.fails(f"host.{action}", {"id": hid}, uid, "AUTHORIZATION", "ADMIN")
    rule(z, f"#{uid} HOST/#{hid} ADMIN")
    z.ok("host.disable", {"id": hid}, uid=uid)
    z.fails("host.enable", {"id": 5}, 0, "NO_EXISTS", "host 5 does not exist")
    z.fails("host.enable", {}, 0, "BAD_REQUEST", "missing argument 'id'")


# --- monitoring ------------------------------------------------------------------------------


def test_monitor_states(z):
    hid = add_host(z)
    probe(z, hid, cpu=800, mem=16 * GIB_KB, used_cpu=120, used_mem=GIB_KB)
    h = host(z, hid)
    assert h["state"] == hosts.MONITORED and h["last_mon"] > 0
    cap = h["capacity"]
    assert (cap["total_cpu"], cap["used_cpu"], cap["free_cpu"], cap["max_cpu"]) == (
        800,
        120,
        680,
        800,
    )
    assert cap["free_mem"] == 15 * GIB_KB
    z.ok("host.monitor", {"id": hid, "state": "ERROR", "error": "probe failed"}, uid=-1)
    h = host(z, hid)
    assert (h["state"], h["error"]) == (hosts.ERROR, "probe failed")
    assert h["capacity"]["total_cpu"] == 800  # the last good capacity is kept
    probe(z, hid, cpu=400)
    h = host(z, hid)
    assert (h["state"], h["error"], h["capacity"]["total_cpu"]) == (hosts.MONITORED, "", 400)
    z.ok("host.offline", {"id": hid})
    z.fails(
        "host.monitor",
        {"id": hid, "state": "MONITORED", "capacity": {"total_cpu": 1, "total_mem": 1}},
        -1,
        "ACTION",
        "host 0 is OFFLINE: it is not monitored",
    )


@pytest.mark.parametrize(
    "args, text",
    [
        ({"state": "ON"}, "argument 'state' must be 'MONITORED' or 'ERROR'"),
        ({"state": "MONITORED"}, "missing argument 'capacity'"),
        ({"state": "ERROR"}, "missing argument 'error'"),
        ({"state": "ERROR", "error": ""}, "1..4096"),
        ({"state": "ERROR", "error": 5}, "argument 'error' must be a message"),
        (
            {"state": "ERROR", "error": "x", "capacity": {}},
            "'capacity' goes only with state 'MONITORED'",
        ),
        (
            {"state": "MONITORED", "error": "x", "capacity": {"total_cpu": 1, "total_mem": 1}},
            "'error' goes only with state 'ERROR'",
        ),
        ({"state": "MONITORED", "capacity": []}, "'capacity' must be a map"),
        ({"state": "MONITORED", "capacity": {"total_mem": 1}}, "must have 'total_cpu'"),
        (
            {"state": "MONITORED", "capacity": {"total_cpu": 1, "total_mem": 1, "foo": 1}},
            "unknown field(s) foo",
        ),
        (
            {"state": "MONITORED", "capacity": {"total_cpu": -1, "total_mem": 1}},
            "total_cpu must be 0..",
        ),
        (
            {"state": "MONITORED", "capacity": {"total_cpu": True, "total_mem": 1}},
            "total_cpu must be an integer",
        ),
        (
            {"state": "MONITORED", "capacity": {"total_cpu": 100, "total_mem": 1, "used_cpu": 101}},
            "used_cpu (101) exceeds total_cpu (100)",
        ),
        (
            {"state": "MONITORED", "capacity": {"total_cpu": 2**60, "total_mem": 1}},
            "total_cpu must be 0..",
        ),
        ({"capacity": {}}, "missing argument 'state'"),
    ],
)
def test_monitor_bad_input(z, args, text):
    hid = add_host(z)
    z.fails("host.monitor", {"id": hid, **args}, -1, "BAD_REQUEST", text)


def test_monitor_is_not_for_users(z):
    hid = add_host(z)
    uid = user(z)
    rule(z, f"#{uid} HOST/* USE+MANAGE")
    args = {"id": hid, "state": "ERROR", "error": "fake"}
    z.fails("host.monitor", args, uid, "AUTHORIZATION", "ADMIN")
    z.ok("host.monitor", args, uid=0)


# --- reservations -----------------------------------------------------------------------------


def test_reservations_host_then_cluster(z):
    cid = z.ok(
        "cluster.allocate", {"name": "c", "template": 'RESERVED_CPU = "100"\nRESERVED_MEM = "25%"'}
    )["id"]
    a = add_host(z, "a", cluster=cid)
    b = add_host(z, "b", KVM + 'RESERVED_CPU = "-200"', cluster=cid)
    probe(z, a, cpu=800, mem=16 * GIB_KB)
    probe(z, b, cpu=800, mem=16 * GIB_KB)
    ca, cb = host(z, a)["capacity"], host(z, b)["capacity"]
    assert (ca["max_cpu"], ca["reserved_cpu"], ca["max_mem"]) == (700, 100, 12 * GIB_KB)
    # the host's own value wins over the cluster's; negative over-commits
    assert (cb["max_cpu"], cb["reserved_cpu"], cb["max_mem"]) == (1000, -200, 12 * GIB_KB)


def test_a_template_update_applies_to_the_next_placement(z):
    hid = add_host(z)
    probe(z, hid, cpu=200)
    z.ok("obj.update", {"kind": "host", "id": hid, "template": KVM + "RESERVED_CPU = 150"})
    with pytest.raises(Reject) as e:
        hosts.allocate_capacity(z.view(), hid, 1, 1, 1)
    assert e.value.code == "ALLOCATE" and "50 of 50 free" in e.value.message


# --- capacity helpers --------------------------------------------------------------------------


def test_allocate_and_free_capacity(z):
    hid = add_host(z)
    probe(z, hid, cpu=400, mem=4 * GIB_KB)
    before = copy.deepcopy(z.state)
    mutations = hosts.allocate_capacity(z.view(), hid, 1.5, 1024, 42)
    assert z.state == before  # pure
    apply_mutations(z, mutations)
    cap = host(z, hid)["capacity"]
    assert (cap["cpu_usage"], cap["mem_usage"]) == (150, 1024 * 1024)
    assert host(z, hid)["vms"] == [42]
    apply_mutations(z, hosts.allocate_capacity(z.view(), hid, 2.5, 3072, 7))
    assert host(z, hid)["vms"] == [7, 42]
    cap = host(z, hid)["capacity"]
    assert (cap["cpu_usage"], cap["mem_usage"]) == (400, 4 * GIB_KB)
    apply_mutations(z, hosts.free_capacity(z.view(), hid, 1.5, 1024, 42))
    apply_mutations(z, hosts.free_capacity(z.view(), hid, 2.5, 3072, 7))
    h = host(z, hid)
    assert (h["capacity"]["cpu_usage"], h["capacity"]["mem_usage"], h["vms"]) == (0, 0, [])


def _refused(view, fn, *args, code: str, text: str, **kw) -> None:
    with pytest.raises(Reject) as e:
        fn(view, *args, **kw)
    assert e.value.code == code, e.value.message
    assert text in e.value.message, e.value.message


def test_capacity_refusals(z):
    hid = add_host(z)
    view = z.view()
    _refused(
        view,
        hosts.allocate_capacity,
        hid,
        1,
        1,
        1,
        code="ACTION",
        text="host 0 (node1) is INIT: VMs cannot be placed on it",
    )
    probe(z, hid, cpu=200, mem=GIB_KB)
    view = z.view()
    _refused(
        view,
        hosts.allocate_capacity,
        hid,
        2.5,
        1,
        1,
        code="ALLOCATE",
        text="host 0 (node1): not enough CPU: 250 requested, 200 of 200 free",
    )
    _refused(
        view,
        hosts.allocate_capacity,
        hid,
        1,
        2048,
        1,
        code="ALLOCATE",
        text="host 0 (node1): not enough memory: 2097152 KB requested",
    )
    _refused(view, hosts.allocate_capacity, 9, 1, 1, 1, code="BAD_REQUEST", text="host 9 does")
    _refused(view, hosts.allocate_capacity, hid, 0.001, 1, 1, code="BAD_REQUEST", text="two dec")
    _refused(view, hosts.allocate_capacity, hid, -1, 1, 1, code="BAD_REQUEST", text="cpu must be")
    _refused(view, hosts.allocate_capacity, hid, True, 1, 1, code="BAD_REQUEST", text="cpu must")
    _refused(view, hosts.allocate_capacity, hid, 1, 0, 1, code="BAD_REQUEST", text="memory must")
    _refused(view, hosts.allocate_capacity, hid, 1, 1.5, 1, code="BAD_REQUEST", text="memory")
    _refused(view, hosts.allocate_capacity, hid, 1, 1, -3, code="BAD_REQUEST", text="vm id")
    _refused(view, hosts.free_capacity, hid, 1, 1, 3, code="ACTION", text="VM 3 is not on host 0")
    apply_mutations(z, hosts.allocate_capacity(view, hid, 1, 512, 3))
    view = z.view()
    _refused(view, hosts.allocate_capacity, hid, 1, 1, 3, code="ACTION", text="VM 3 is already on")
    _refused(view, hosts.free_capacity, hid, 2, 512, 3, code="BAD_REQUEST", text="cannot free 200")
    _refused(view, hosts.free_capacity, hid, 1, 1024, 3, code="BAD_REQUEST", text="cannot free")


def test_disabled_hosts_take_only_manual_placements(z):
    hid = add_host(z)
    probe(z, hid)
    z.ok("host.disable", {"id": hid})
    _refused(z.view(), hosts.allocate_capacity, hid, 1, 1, 1, code="ACTION", text="is DISABLED")
    apply_mutations(z, hosts.allocate_capacity(z.view(), hid, 1, 1, 1, manual=True))
    z.ok("host.offline", {"id": hid})
    _refused(
        z.view(),
        hosts.allocate_capacity,
        hid,
        1,
        1,
        2,
        manual=True,
        code="ACTION",
        text="is OFFLINE",
    )
    # a VM may always leave, whatever the host's state
    apply_mutations(z, hosts.free_capacity(z.view(), hid, 1, 1, 1))
    assert host(z, hid)["vms"] == []


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.booleans(), st.integers(0, 5), st.integers(1, 300), st.integers(1, 4096)),
        max_size=25,
    )
)
def test_usage_is_the_sum_of_what_is_placed(steps):
    """Whatever is placed and freed, usage equals the sum over the VMs on the host and
    never exceeds max; refused steps change nothing."""
    z = booted()
    hid = add_host(z)
    probe(z, hid, cpu=800, mem=8 * GIB_KB)
    placed: dict[int, tuple[int, int]] = {}
    for place, vm, cpu_units, mem_mb in steps:
        cpu = cpu_units / 100
        try:
            if place:
                mutations = hosts.allocate_capacity(z.view(), hid, cpu, mem_mb, vm)
                placed[vm] = (cpu_units, mem_mb)
            else:
                held = placed.get(vm, (cpu_units, mem_mb))
                mutations = hosts.free_capacity(z.view(), hid, held[0] / 100, held[1], vm)
                placed.pop(vm, None)
        except Reject:
            continue
        apply_mutations(z, mutations)
        cap = host(z, hid)["capacity"]
        assert cap["cpu_usage"] == sum(c for c, _ in placed.values()) <= cap["max_cpu"]
        assert cap["mem_usage"] == sum(m * 1024 for _, m in placed.values()) <= cap["max_mem"]
        assert host(z, hid)["vms"] == sorted(placed)
