"""Virtual routers in the state machine: floating IPs leased to the router (and charged to
its owner), NICs listed in their networks, refusals that change nothing, delete."""

import pytest

from tests.netkit import ALICE, USERS_GID, booted, ip4, net, quota_used, rec


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
    from tests.netkit import rule

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
