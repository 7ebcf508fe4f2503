"""Virtual routers in the state machine: floating IPs leased to the router (and charged to
its owner), NICs listed in their networks, refusals that change nothing, delete; the
router's VMs (instantiate: all or nothing, a NIC per router network, DONE leaves the
router), through PoolService.Action and onevrouter too."""

import json

import grpc
import pytest

from raftcore import codec, quota
from raftcore import template as tmpl
from tests.conftest import run_cli, wait_until
from tests.netkit import ALICE, USERS_GID, booted, ip4, net, quota_used, rec, rule
from zones.api.gen import pool_pb2
from zones.api.pool_service import decode_list
from zones.cli import onevrouter


@pytest.fixture
def z():
    z = booted()
    net(z, "pub", ip4("10.0.0.1", 3))  # 0
    net(z, "priv", ip4("192.168.0.1", 10))  # 1
    return z


def router(name: str, *nics: str, extra: str = "") -> str:
    return f"NAME = {name}\n{extra}" + "".join(f"NIC = [ {n} ]\n" for n in nics)


def test_allocate_leases_floating_ips_only(z):
    text = router(
        "gw",
        "NETWORK_ID = 0, FLOATING_IP = YES, IP = 10.0.0.2",
        "NETWORK_ID = 1, FLOATING_IP = yes",
        "NETWORK_ID = 1, MODEL = virtio",
        extra="KEEPALIVED_ID = 7\n",
    )
    rid = z.ok("vrouter.allocate", {"template": text}, uid=0)["id"]
    r = rec(z, "vrouter", rid)
    assert r["nics"] == [
        {
            "nic_id": 0,
            "network_id": 0,
            "floating_ip": True,
            "ar_id": 0,
            "mac": "02:00:0a:00:00:02",
            "ip": "10.0.0.2",
        },
        {
            "nic_id": 1,
            "network_id": 1,
            "floating_ip": True,
            "ar_id": 0,
            "mac": "02:00:c0:a8:00:01",
            "ip": "192.168.0.1",
        },
        {"nic_id": 2, "network_id": 1, "floating_ip": False},
    ]
    assert r["vms"] == []
    assert 'NETWORK = "priv"' in r["template"] and 'MODEL = "virtio"' in r["template"]
    assert 'IP = "10.0.0.2"' in r["template"] and "NAME" not in r["template"]
    pub, priv = rec(z, "vnet", 0), rec(z, "vnet", 1)
    assert pub["ars"][0]["leases"] == [{"index": 1, "vrouter": rid}]
    assert priv["used_leases"] == 1
    assert pub["vrouters"] == [rid] and priv["vrouters"] == [rid]
    assert quota_used(z, "user", 0, 0) == 1 and quota_used(z, "user", 0, 1) == 1
    z.fails("vnet.delete", {"id": 1}, 0, "ACTION", "1 of its leases are in use")

    z.ok("vrouter.delete", {"id": rid})
    assert rec(z, "vrouter", rid) is None
    assert rec(z, "vnet", 0)["used_leases"] == 0 and rec(z, "vnet", 1)["vrouters"] == []
    assert quota_used(z, "user", 0, 0) == 0
    z.ok("vnet.delete", {"id": 1})


def test_non_floating_nics_block_network_deletion(z):
    rid = z.ok("vrouter.allocate", {"template": router("gw", "NETWORK_ID = 1")})["id"]
    assert rec(z, "vnet", 1)["used_leases"] == 0
    z.fails("vnet.delete", {"id": 1}, 0, "ACTION", f"virtual routers {rid} have NICs in it")


BAD = [
    (router("gw", "FLOATING_IP = YES"), "BAD_REQUEST", "NIC 0: NETWORK_ID is missing"),
    (router("gw", "NETWORK_ID = x"), "BAD_REQUEST", "NIC 0: NETWORK_ID must be a network id"),
    (
        router("gw", "NETWORK_ID = 0", "NETWORK_ID = 7"),
        "BAD_REQUEST",
        "'NIC 1: NETWORK_ID': virtual network 7 does not exist",
    ),
    (
        router("gw", "NETWORK_ID = 0, FLOATING_IP = maybe"),
        "BAD_REQUEST",
        "NIC 0: FLOATING_IP must be YES or NO",
    ),
    (
        router("gw", "NETWORK_ID = 0, IP = 10.0.0.1"),
        "BAD_REQUEST",
        "NIC 0: IP needs FLOATING_IP = YES",
    ),
    (
        router("gw", "NETWORK_ID = 0, NETWORK_MODE = auto"),
        "BAD_REQUEST",
        "cannot use NETWORK_MODE = auto",
    ),
    (
        router("gw", "NETWORK_ID = 0, FLOATING_IP = YES, IP = 10.9.0.1"),
        "BAD_REQUEST",
        "IP 10.9.0.1 is not in any address range of virtual network 0",
    ),
    (
        router(
            "gw",
            "NETWORK_ID = 0, FLOATING_IP = YES, IP = 10.0.0.1",
            "NETWORK_ID = 0, FLOATING_IP = YES, IP = 10.0.0.1",
        ),
        "ACTION",
        "IP 10.0.0.1 of virtual network 0 is already leased to virtual router 0",
    ),
    (
        router("gw", *["NETWORK_ID = 0, FLOATING_IP = YES"] * 4),
        "ACTION",
        "no free address in virtual network 0",
    ),
    (
        router("gw", "NETWORK_ID = 0", extra="KEEPALIVED_ID = 300\n"),
        "BAD_REQUEST",
        "KEEPALIVED_ID must be a whole number 0..255",
    ),
    ("NIC = [ NETWORK_ID = 0 ]\n", "BAD_REQUEST", "the template has no NAME"),
    ("NAME = gw\nNIC = 0\n", "BAD_REQUEST", "NIC must be a vector"),
]


@pytest.mark.parametrize("text, code, message", BAD)
def test_allocate_refusals(z, text, code, message):
    z.fails("vrouter.allocate", {"template": text}, 0, code, message)


def test_rights_quota_and_names(z):
    text = router("gw", "NETWORK_ID = 0, FLOATING_IP = YES")
    # Creating a router needs CREATE VROUTER and USE on each network.
    z.fails("vrouter.allocate", {"template": text}, ALICE, "AUTHORIZATION", "CREATE")
    rule(z, f"#{ALICE} VROUTER/* CREATE")
    z.fails("vrouter.allocate", {"template": text}, ALICE, "AUTHORIZATION", "USE on NET 0")
    z.ok("obj.chmod", {"kind": "vnet", "id": 0, "perms": 0o604})
    z.ok("quota.set", {"kind": "user", "id": ALICE, "quota": {"NETWORK": [{"ID": 0, "LEASES": 1}]}})
    rid = z.ok("vrouter.allocate", {"template": text}, uid=ALICE)["id"]
    assert quota_used(z, "user", ALICE, 0) == 1 and quota_used(z, "group", USERS_GID, 0) == 1
    text2 = router("gw2", "NETWORK_ID = 0, FLOATING_IP = YES")
    z.fails("vrouter.allocate", {"template": text2}, ALICE, "ALLOCATE", "LEASES quota")
    z.fails(
        "vrouter.allocate", {"template": text}, ALICE, "ACTION", "'gw' of user 1 is already taken"
    )
    z.fails("vrouter.delete", {"id": rid}, 2, "AUTHORIZATION", "MANAGE")
    z.ok("vrouter.delete", {"id": rid}, uid=ALICE)
    assert quota_used(z, "user", ALICE, 0) == 0


def test_update_keeps_nics_and_delete_waits_for_vms(z):
    rid = z.ok("vrouter.allocate", {"template": router("gw", "NETWORK_ID = 0, FLOATING_IP = YES")})[
        "id"
    ]
    z.ok("vrouter.update", {"id": rid, "template": 'DESCRIPTION = "edge"'})
    r = rec(z, "vrouter", rid)
    assert 'DESCRIPTION = "edge"' in r["template"] and 'IP = "10.0.0.1"' in r["template"]
    z.fails(
        "vrouter.update",
        {"id": rid, "template": "NIC = [ NETWORK_ID = 1 ]"},
        0,
        "BAD_REQUEST",
        "may not set NIC",
    )
    z.fails(
        "vrouter.update",
        {"id": rid, "template": "KEEPALIVED_ID = x"},
        0,
        "BAD_REQUEST",
        "KEEPALIVED_ID",
    )
    # The router's VMs (listed by the VM operations) must go first.
    from raftcore import objects
    from tests.statekit import write

    z.state = write(z.state, objects.put(z.view(), "vrouter", {**r, "vms": [8]}, r))
    z.fails("vrouter.delete", {"id": rid}, 0, "ACTION", "still has VMs 8")
    z.fails("vrouter.delete", {"id": 99}, 0, "NO_EXISTS", "virtual router 99 does not exist")


# --- instantiate: the router's VMs --------------------------------------------------------

VR_TEMPLATE = (
    'NAME = "vr-tpl"\nVROUTER = "YES"\nCPU = "1"\nMEMORY = "128"\n'
    'NIC = [ NETWORK_ID = "1", MODEL = "e1000" ]\nCONTEXT = [ NETWORK = "YES" ]\n'
)


@pytest.fixture
def zr(z):
    """z with router 0 (gw: a floating NIC on pub, a plain one on priv, KEEPALIVED_ID 9)
    and VM template 0 (VROUTER = YES), both usable by everyone."""
    text = router(
        "gw",
        "NETWORK_ID = 0, FLOATING_IP = YES, MODEL = virtio",
        "NETWORK_ID = 1",
        extra='KEEPALIVED_ID = 9\nKEEPALIVED_PASSWORD = "s3cret"\n',
    )
    assert z.ok("vrouter.allocate", {"template": text})["id"] == 0
    assert z.ok("template.allocate", {"template": VR_TEMPLATE})["id"] == 0
    for kind, oid in (("vnet", 0), ("vnet", 1), ("template", 0)):
        z.ok("obj.chmod", {"kind": kind, "id": oid, "perms": 0o644})
    return z


def _leases(z, vnet_id: int) -> list[dict]:
    return [lease for ar in rec(z, "vnet", vnet_id)["ars"] for lease in ar["leases"]]


def test_instantiate_two_vms_with_a_nic_on_every_router_network(zr):
    z = zr
    ids = z.ok("vrouter.instantiate", {"id": 0, "template_id": 0, "number": 2})["ids"]
    assert ids == [0, 1]
    assert rec(z, "vrouter", 0)["vms"] == [0, 1]
    for i, vm_id in enumerate(ids):
        vm = rec(z, "vm", vm_id)
        # OpenNebula's default name, the caller's VM, PENDING, tagged with its router
        assert (vm["name"], vm["uid"], vm["state"]) == (f"vr-gw-{i}", 0, 1)
        assert (vm["vrouter_id"], vm["template_id"]) == (0, 0)
        # the router's NICs replace the template's: one per router network, in order
        assert [(n["nic_id"], n["network_id"]) for n in vm["nics"]] == [(0, 0), (1, 1)]
        t = tmpl.parse(vm["template"])
        assert t.scalar("VROUTER_ID") == "0" and t.scalar("VROUTER_KEEPALIVED_ID") == "9"
        assert t.scalar("VROUTER_KEEPALIVED_PASSWORD") == "s3cret"
        pub, priv = t.vectors("NIC")
        # the floating IP is shared (VROUTER_IP), the VM's own address is leased apart
        assert pub["VROUTER_IP"] == "10.0.0.1" and pub["VROUTER_MAC"] == "02:00:0a:00:00:01"
        assert pub["IP"] == f"10.0.0.{2 + i}" and pub["MODEL"] == "virtio"
        assert pub["FLOATING_IP"] == "YES" and "MODEL" not in priv
        assert priv["IP"] == f"192.168.0.{1 + i}" and "VROUTER_IP" not in priv
    # the floating IP stays the router's (one lease), each VM holds one per network
    assert _leases(z, 0) == [
        {"index": 0, "vrouter": 0},
        {"index": 1, "vm": 0},
        {"index": 2, "vm": 1},
    ]
    assert _leases(z, 1) == [{"index": 0, "vm": 0}, {"index": 1, "vm": 1}]
    assert quota_used(z, "user", 0, 0) == 3 and quota_used(z, "user", 0, 1) == 2


def test_instantiate_names_hold_and_more_vms(zr):
    z = zr
    args = {"id": 0, "template_id": 0, "name": "edge-%i-x", "hold": True}
    (vm_id,) = z.ok("vrouter.instantiate", args)["ids"]
    assert (rec(z, "vm", vm_id)["name"], rec(z, "vm", vm_id)["state"]) == ("edge-0-x", 2)
    # more VMs may join a router that has some (OpenNebula >= 5.2)
    more = z.ok("vrouter.instantiate", {"id": 0, "template_id": 0, "name": "same"})["ids"]
    assert rec(z, "vrouter", 0)["vms"] == [vm_id, *more] and rec(z, "vm", more[0])["name"] == "same"
    # a VROUTER_ID written by hand in an ordinary VM does not make it a router's
    text = 'CPU = "1"\nMEMORY = "64"\nVROUTER_ID = "0"\n'
    plain = z.ok("vm.allocate", {"template": text})["id"]
    assert rec(z, "vm", plain)["vrouter_id"] is None
    assert "VROUTER_ID" not in rec(z, "vm", plain)["template"]
    assert rec(z, "vrouter", 0)["vms"] == [vm_id, *more]


INSTANTIATE_BAD = [
    ({"id": 7, "template_id": 0}, "NO_EXISTS", "virtual router 7 does not exist"),
    ({"id": 0, "template_id": 5}, "BAD_REQUEST", "'template_id': template 5 does not exist"),
    ({"id": 0}, "BAD_REQUEST", "missing argument 'template_id'"),
    ({"id": 0, "template_id": 0, "number": 0}, "BAD_REQUEST", "'number' must be 1..16, got 0"),
    ({"id": 0, "template_id": 0, "number": 17}, "BAD_REQUEST", "'number' must be 1..16"),
    ({"id": 0, "template_id": 0, "number": "2"}, "BAD_REQUEST", "'number' must be an integer"),
    ({"id": 0, "template_id": 0, "name": 3}, "BAD_REQUEST", "'name' must be a string"),
    ({"id": 0, "template_id": 0, "name": 'a"b'}, "BAD_REQUEST", "may not contain"),
    ({"id": 0, "template_id": 0, "hold": "yes"}, "BAD_REQUEST", "'hold' must be a boolean"),
    ({"id": 0, "template_id": 0, "cpu": 2}, "BAD_REQUEST", "unknown argument(s): cpu"),
]


@pytest.mark.parametrize("args, code, message", INSTANTIATE_BAD)
def test_instantiate_refusals(zr, args, code, message):
    zr.fails("vrouter.instantiate", args, 0, code, message)


def test_instantiate_needs_a_vrouter_template_and_the_rights(zr):
    z = zr
    plain = z.ok("template.allocate", {"template": 'NAME = "t"\nCPU = "1"\nMEMORY = "64"'})["id"]
    z.fails(
        "vrouter.instantiate",
        {"id": 0, "template_id": plain},
        0,
        "ACTION",
        f"template {plain} is not a virtual router template (VROUTER = YES)",
    )
    # alice may USE the template (644) but not MANAGE oneadmin's router
    z.fails("vrouter.instantiate", {"id": 0, "template_id": 0}, ALICE, "AUTHORIZATION", "MANAGE")
    rule(z, f"#{ALICE} VROUTER/* CREATE")
    text = router("mine", "NETWORK_ID = 1")
    rid = z.ok("vrouter.allocate", {"template": text}, uid=ALICE)["id"]
    z.ok("obj.chmod", {"kind": "template", "id": 0, "perms": 0o600})
    z.fails("vrouter.instantiate", {"id": rid, "template_id": 0}, ALICE, "AUTHORIZATION", "USE")
    z.ok("obj.chmod", {"kind": "template", "id": 0, "perms": 0o604})
    (vm_id,) = z.ok("vrouter.instantiate", {"id": rid, "template_id": 0}, uid=ALICE)["ids"]
    vm = rec(z, "vm", vm_id)
    assert (vm["uid"], vm["gid"], vm["name"]) == (ALICE, USERS_GID, "vr-mine-0")
    # KEEPALIVED_ID defaults to id % 255 + 1 (OpenNebula's)
    assert tmpl.parse(vm["template"]).scalar("VROUTER_KEEPALIVED_ID") == str(rid % 255 + 1)


def test_instantiate_is_all_or_nothing(zr):
    z = zr
    # pub has 3 addresses: the router's floating one and two more; 3 VMs cannot all lease
    z.fails(
        "vrouter.instantiate",
        {"id": 0, "template_id": 0, "number": 3},
        0,
        "ACTION",
        "no free address in virtual network 0",
    )
    # a quota of 1 VM refuses the second VM: neither is created
    rule(z, f"#{ALICE} VROUTER/* CREATE")
    rid = z.ok("vrouter.allocate", {"template": router("mine", "NETWORK_ID = 1")}, uid=ALICE)["id"]
    z.ok("quota.set", {"kind": "user", "id": ALICE, "quota": quota.parse_quota("VM = [ VMS = 1 ]")})
    z.fails(
        "vrouter.instantiate",
        {"id": rid, "template_id": 0, "number": 2},
        ALICE,
        "ALLOCATE",
        "VMS quota",
    )
    z.ok("vrouter.instantiate", {"id": rid, "template_id": 0}, uid=ALICE)


def test_floating_only_nics_are_refused(z):
    text = router("gw", "NETWORK_ID = 0, FLOATING_IP = YES, FLOATING_ONLY = YES")
    rid = z.ok("vrouter.allocate", {"template": text})["id"]
    tid = z.ok("template.allocate", {"template": VR_TEMPLATE})["id"]
    z.fails(
        "vrouter.instantiate",
        {"id": rid, "template_id": tid},
        0,
        "ACTION",
        "NIC 0 of virtual router 0 has FLOATING_ONLY = YES",
    )


def test_terminated_vms_leave_the_router_which_then_can_go(zr):
    z = zr
    ids = z.ok("vrouter.instantiate", {"id": 0, "template_id": 0, "number": 2})["ids"]
    z.fails("vrouter.delete", {"id": 0}, 0, "ACTION", "still has VMs 0, 1: terminate them first")
    z.ok("vm.terminate", {"id": ids[0]})
    assert rec(z, "vm", ids[0])["state"] == 6  # DONE
    assert rec(z, "vrouter", 0)["vms"] == [ids[1]]
    # its leases went back; the router's floating IP and the other VM's stay
    assert _leases(z, 0) == [{"index": 0, "vrouter": 0}, {"index": 2, "vm": 1}]
    z.fails("vrouter.delete", {"id": 0}, 0, "ACTION", "still has VMs 1")
    z.ok("vm.recover", {"id": ids[1], "op": "delete"})
    assert rec(z, "vrouter", 0)["vms"] == []
    z.ok("vrouter.delete", {"id": 0})
    assert _leases(z, 0) == [] and _leases(z, 1) == []
    assert quota_used(z, "user", 0, 0) == 0 and quota_used(z, "user", 0, 1) == 0


# --- through PoolService.Action and onevrouter ----------------------------------------------

API_NET = 'NAME = "pub"\nVN_MAD = "bridge"\nAR = [ TYPE = "IP4", IP = "10.0.0.1", SIZE = "8" ]\n'


def _api_setup(c) -> tuple[int, int, int]:
    """(network, router, template) allocated through PoolService as oneadmin."""

    def ready() -> bool:
        reply = c.pool.List(pool_pb2.PoolListRequest(kind="secgroup", filter=-2))
        return any(r["id"] == 0 for r in decode_list(reply))

    wait_until(ready, what="security group 0")
    vid = c.pool.Allocate(pool_pb2.AllocateRequest(kind="vnet", template=API_NET)).id
    text = f'NAME = "gw"\nNIC = [ NETWORK_ID = "{vid}", FLOATING_IP = "YES" ]\n'
    rid = c.pool.Allocate(pool_pb2.AllocateRequest(kind="vrouter", template=text)).id
    tid = c.pool.Allocate(pool_pb2.AllocateRequest(kind="template", template=VR_TEMPLATE)).id
    return vid, rid, tid


def test_instantiate_through_pool_service(zone):
    c = zone.admin()
    try:
        vid, rid, tid = _api_setup(c)

        def action(**args):
            request = pool_pb2.ActionRequest(
                kind="vrouter", id=rid, action="instantiate", args=codec.packb(args)
            )
            return codec.unpackb(c.pool.Action(request).value)

        def record(kind: str, oid: int) -> dict:
            reply = c.pool.Info(pool_pb2.PoolInfoRequest(kind=kind, id=oid))
            return codec.unpackb(reply.record)

        ids = action(template_id=tid, number=2)["ids"]
        assert record("vrouter", rid)["vms"] == ids and len(ids) == 2
        vms = [record("vm", i) for i in ids]
        assert [v["vrouter_id"] for v in vms] == [rid, rid]
        assert [v["nics"][0]["ip"] for v in vms] == ["10.0.0.2", "10.0.0.3"]
        assert record("vnet", vid)["used_leases"] == 3  # the floating IP once + 2 VMs
        with pytest.raises(grpc.RpcError) as e:
            action(template_id=tid, number=99)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "'number' must be 1..16, got 99" in e.value.details()
        assert record("vrouter", rid)["vms"] == ids
    finally:
        c.close()


def test_cli_instantiate_args():
    assert onevrouter.instantiate_args(4, 1, None, False) == {"template_id": 4}
    assert onevrouter.instantiate_args(4, 3, "r-%i", True) == {
        "template_id": 4,
        "number": 3,
        "name": "r-%i",
        "hold": True,
    }


def test_cli_instantiate_end_to_end(cli_env, capsys):
    c = cli_env.admin()
    try:
        _, rid, _ = _api_setup(c)
    finally:
        c.close()
    rc, out, err = run_cli(onevrouter, capsys, "instantiate", "gw", "vr-tpl", "-m", "2", "--hold")
    assert rc == 0, err
    assert out.split("\n")[:2] == ["VM ID: 0", "VM ID: 1"]
    rc, out, _ = run_cli(onevrouter, capsys, "show", "gw", "--json")
    assert rc == 0 and json.loads(out)["vms"] == [0, 1]
    rc, out, _ = run_cli(onevrouter, capsys, "instantiate", str(rid), "vr-tpl", "--json")
    assert rc == 0 and json.loads(out) == {"id": rid, "ids": [2]}
    rc, out, err = run_cli(onevrouter, capsys, "delete", "gw")
    assert rc == 1 and "still has VMs 0, 1, 2" in err
    rc, _, err = run_cli(onevrouter, capsys, "instantiate", "gw", "vr-tpl", "-m", "0")
    assert rc == 1 and "'number' must be 1..16, got 0" in err
