"""A zone for VM tests (statekit): hosts, a network, datastores, an image, a user; helpers
to read records and to put a VM in any life-cycle state."""

from __future__ import annotations

import copy

from raftcore import lifecycle, objects
from raftcore.ops import hosts, vmcore
from raftcore.ops.common import Overlay
from tests.statekit import TS, DictView, Zone, write

ALICE = 1  # a user of group users (1)
H1, H2 = 0, 1  # two MONITORED hosts of 8 CPUs and 16 GiB
NET = 0  # a network of 10 addresses from 10.0.0.1
IMAGE_DS, SYSTEM_DS = 100, 101
IMAGE = 0  # a READY non-persistent OS image of 200 MB
VM_TEXT = (
    'NAME = "vm"\nCPU = "1"\nMEMORY = "512"\nDISK = [ SIZE = "10" ]\nNIC = [ NETWORK_ID = "0" ]'
)


def zone() -> Zone:
    z = Zone()
    z.ok("user.bootstrap", {"password_hash": "scrypt$h"}, uid=-1)
    z.ok("cluster.allocate", {"name": "default"})
    args = {"name": "alice", "password": "scrypt$x", "driver": "core"}
    assert z.ok("user.allocate", args)["id"] == ALICE
    for name in ("h1", "h2"):
        hid = z.ok("host.allocate", {"name": name, "template": 'IM_MAD="kvm"\nVM_MAD="kvm"'})["id"]
        capacity = {"total_cpu": 800, "total_mem": 16 << 20}
        z.ok("host.monitor", {"id": hid, "state": "MONITORED", "capacity": capacity})
    ds = 'TYPE="IMAGE_DS"\nDS_MAD="fs"\nTM_MAD="shared"'
    assert z.ok("datastore.allocate", {"name": "images", "template": ds})["id"] == IMAGE_DS
    ds = 'TYPE="SYSTEM_DS"\nTM_MAD="shared"'
    assert z.ok("datastore.allocate", {"name": "system", "template": ds})["id"] == SYSTEM_DS
    image = 'NAME="os"\nSOURCE="/var/os"\nSIZE="200"\nTYPE="OS"'
    assert z.ok("image.allocate", {"datastore": IMAGE_DS, "template": image})["id"] == IMAGE
    z.ok("obj.chmod", {"kind": "image", "id": IMAGE, "perms": 0o644})
    z.ok("secgroup.allocate", {"template": 'NAME="default"'})
    net = 'NAME="net"\nVN_MAD="bridge"\nBRIDGE="br0"\nAR=[TYPE="IP4",IP="10.0.0.1",SIZE="10"]'
    assert z.ok("vnet.allocate", {"template": net})["id"] == NET
    z.ok("obj.chmod", {"kind": "vnet", "id": NET, "perms": 0o644})
    return z


def rec(z: Zone, kind: str, oid: int) -> dict:
    return objects.find(z.view(), kind, oid)


def vm(z: Zone, text: str = VM_TEXT, uid: int = 0, hold: bool = False) -> int:
    args = {"template": text, **({"hold": True} if hold else {})}
    return z.ok("vm.allocate", args, uid=uid)["id"]


def at(z: Zone, op: str, args: dict, ts: int, uid: int = 0):
    """Apply at time `ts` (ms); the command must succeed."""
    result = z.do(op, args, uid=uid, ts=ts)
    assert result["ok"], result
    return result["value"]


def pair(z: Zone, vm_id: int) -> tuple[str, int | None]:
    record = rec(z, "vm", vm_id)
    return lifecycle.state_str(record["state"], record["lcm_state"])


def place(z: Zone, vm_id: int, name: str, host: int = H1) -> None:
    """Put VM `vm_id` (fresh: PENDING or HOLD, never deployed) in the state `name`
    ("RUNNING", "POWEROFF", ...), holding capacity on `host` with an open history record
    when the state is on a host, as a real run would have left it."""
    state, lcm = lifecycle.pair_of(name)
    vm_rec = copy.deepcopy(rec(z, "vm", vm_id))
    mutations = []
    view = DictView(z.state)
    if state not in vmcore.OFF_HOST:
        mutations += hosts.allocate_capacity(view, host, vm_rec["cpu"], vm_rec["memory"], vm_id)
        vm_rec["capacity"] = [{"hid": host, "cpu": vm_rec["cpu"], "memory": vm_rec["memory"]}]
        host_rec = objects.find(view, "host", host)
        cmd = {"uid": 0, "ts": TS, "rid": "place"}
        vmcore.new_record(view, vm_rec, cmd, host_rec, SYSTEM_DS, prolog=True, running=True)
        if state in vmcore.GUEST_DOWN:
            vmcore.close_record(vm_rec["history"][-1], TS, "poweroff")
        vm_rec["deploy_id"] = f"one-{vm_id}"
    was = vmcore.counts_running(vm_rec["state"], vm_rec["lcm_state"])
    vm_rec.update(state=int(state), lcm_state=int(lcm))
    z.state = write(z.state, mutations)
    # the RUNNING_* quotas as a VM in that state has them
    ov = Overlay(DictView(z.state))
    now = vmcore.counts_running(state, lcm)
    if was != now:
        running = vmcore.running_usage(vm_rec)
        vmcore.quota_delta(ov, vm_rec, {k: v if now else -v for k, v in running.items()}, False)
    ov.put("vm", vm_rec)
    z.state = write(z.state, ov.mutations)
