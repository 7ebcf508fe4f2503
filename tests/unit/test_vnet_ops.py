"""Virtual networks in the state machine: drivers, VLANs, address ranges, holds, leases for
VMs, reservations, update and delete. Every refusal is checked to leave the state as it
was (statekit.Zone.fails)."""

import pytest

from raftcore import schema
from raftcore.ops import vnets
from raftcore.ops.common import Overlay, Reject
from tests.netkit import ALICE, USERS_GID, booted, ip4, lease, net, quota_used, rec, release
from tests.netkit import rule as add_rule


@pytest.fixture
def z():
    return booted()


def tmpl(*lines: str) -> str:
    return "\n".join(lines) + "\n"


# --- allocate ------------------------------------------------------------------------------


def test_allocate_defaults(z):
    vid = net(z, "pub", ip4(), extra='GATEWAY = "10.0.0.254"\n')
    r = rec(z, "vnet", vid)
    assert (r["name"], r["vn_mad"], r["bridge"], r["vlan_id"], r["phydev"]) == (
        "pub",
        "bridge",
        "onebr0",
        None,
        "",
    )
    assert r["cids"] == [0] and r["secgroups"] == [0] and r["parent_network"] == -1
    assert r["used_leases"] == 0 and r["next_ar_id"] == 1 and r["vrouters"] == []
    assert r["ars"][0]["ip"] == "10.0.0.1" and r["ars"][0]["mac"] == "02:00:0a:00:00:01"
    # NAME and AR live in the record; the rest as OpenNebula writes it back.
    assert "NAME" not in r["template"] and "AR" not in r["template"]
    for line in ('VN_MAD = "bridge"', 'BRIDGE = "onebr0"', 'SECURITY_GROUPS = "0"'):
        assert line in r["template"]
    assert 'GATEWAY = "10.0.0.254"' in r["template"]
    assert rec(z, "cluster", 0)["vnets"] == [vid]
    assert rec(z, "secgroup", 0)["vnets"] == [vid]


def test_allocate_name_argument_other_cluster_and_secgroups(z):
    cid = z.ok("cluster.allocate", {"name": "edge"})["id"]
    sg = z.ok("secgroup.allocate", {"template": "NAME = web"})["id"]
    text = tmpl("VN_MAD = bridge", f'SECURITY_GROUPS = "{sg}, {sg}"')
    vid = z.ok("vnet.allocate", {"template": text, "name": "edge-net", "cluster": cid})["id"]
    r = rec(z, "vnet", vid)
    assert r["name"] == "edge-net" and r["cids"] == [cid] and r["secgroups"] == [0, sg]
    assert rec(z, "cluster", cid)["vnets"] == [vid] and rec(z, "cluster", 0)["vnets"] == []
    assert rec(z, "secgroup", sg)["vnets"] == [vid]


def test_bridge_names(z):
    v1 = net(z, "a", extra="")
    text = tmpl("NAME = b", "VN_MAD = 802.1Q", "PHYDEV = eth0", "VLAN_ID = 12")
    v2 = z.ok("vnet.allocate", {"template": text})["id"]
    text = tmpl("NAME = c", "VN_MAD = bridge", "BRIDGE = br-lan")
    v3 = z.ok("vnet.allocate", {"template": text})["id"]
    assert [rec(z, "vnet", v)["bridge"] for v in (v1, v2, v3)] == ["onebr0", "onebr.12", "br-lan"]


def test_automatic_vlan_ids(z):
    auto = tmpl("VN_MAD = 802.1Q", "PHYDEV = eth0", "AUTOMATIC_VLAN_ID = YES")
    v0 = z.ok("vnet.allocate", {"template": auto, "name": "a"})["id"]
    # OpenNebula's hint is START + id; an id already taken moves on to the next free one.
    z.state[schema.META][vnets.AUTO_VLANS_KEY] = [2, 3]
    v1 = z.ok("vnet.allocate", {"template": auto, "name": "b"})["id"]
    assert (rec(z, "vnet", v0)["vlan_id"], rec(z, "vnet", v1)["vlan_id"]) == (2, 4)
    assert (
        rec(z, "vnet", v1)["vlan_id_automatic"] and "VLAN_ID" not in rec(z, "vnet", v1)["template"]
    )
    assert rec(z, "vnet", v1)["bridge"] == f"onebr{v1}"
    z.ok("vnet.delete", {"id": v1})
    assert z.state[schema.META][vnets.AUTO_VLANS_KEY] == [2, 3]
    vx = tmpl("VN_MAD = vxlan", "PHYDEV = eth0", "AUTOMATIC_VLAN_ID = yes")
    v2 = z.ok("vnet.allocate", {"template": vx, "name": "x"})["id"]
    assert rec(z, "vnet", v2)["vlan_id"] == vnets.VXLAN_START + v2
    ovx = tmpl("VN_MAD = ovswitch_vxlan", "PHYDEV = eth0", "AUTOMATIC_OUTER_VLAN_ID = YES")
    v3 = z.ok("vnet.allocate", {"template": ovx, "name": "o"})["id"]
    r = rec(z, "vnet", v3)
    assert (r["vlan_id"], r["outer_vlan_id"]) == (None, vnets.VXLAN_START + v3)


def test_pick_8021q_wraps_and_skips_reserved():
    assert vnets._pick_8021q([], 0) == 2
    assert vnets._pick_8021q(list(range(5, 4095)), 10) == 2
    assert vnets._pick_8021q(list(range(2, 4095)), 0) is None


BAD_ALLOCATIONS = [
    (tmpl("VN_MAD = bridge"), "BAD_REQUEST", "the template has no NAME"),
    (tmpl("NAME = n"), "BAD_REQUEST", "the template has no VN_MAD"),
    (tmpl("NAME = n", "VN_MAD = ebtables2"), "BAD_REQUEST", "VN_MAD 'ebtables2' is not"),
    (tmpl("NAME = n", "VN_MAD = 802.1Q", "VLAN_ID = 3"), "BAD_REQUEST", "PHYDEV is required"),
    (
        tmpl("NAME = n", "VN_MAD = 802.1Q", "PHYDEV = eth0"),
        "BAD_REQUEST",
        "VLAN_ID (or AUTOMATIC_VLAN_ID = YES) is required by VN_MAD 802.1Q",
    ),
    (
        tmpl("NAME = n", "VN_MAD = 802.1Q", "PHYDEV = eth0", "VLAN_ID = 4096"),
        "BAD_REQUEST",
        "VLAN_ID must be a whole number 0..4095, got '4096'",
    ),
    (
        tmpl("NAME = n", "VN_MAD = vxlan", "PHYDEV = eth0", "VLAN_ID = 16777216"),
        "BAD_REQUEST",
        "0..16777215",
    ),
    (
        tmpl("NAME = n", "VN_MAD = 802.1Q", "PHYDEV = e", "AUTOMATIC_VLAN_ID = maybe"),
        "BAD_REQUEST",
        "AUTOMATIC_VLAN_ID must be YES or NO",
    ),
    (
        tmpl("NAME = n", "VN_MAD = bridge", "VLAN_ID = 3"),
        "BAD_REQUEST",
        "VLAN_ID is not used by VN_MAD bridge",
    ),
    (tmpl("NAME = n", "VN_MAD = dummy"), "BAD_REQUEST", "BRIDGE is required by VN_MAD dummy"),
    (
        tmpl("NAME = n", "VN_MAD = ovswitch_vxlan", "PHYDEV = e"),
        "BAD_REQUEST",
        "OUTER_VLAN_ID (or AUTOMATIC_OUTER_VLAN_ID = YES) is required",
    ),
    (
        tmpl("NAME = n", "VN_MAD = bridge", "BRIDGE = a-very-long-bridge"),
        "BAD_REQUEST",
        "is not an interface name",
    ),
    (
        tmpl("NAME = n", "VN_MAD = bridge", "SECURITY_GROUPS = 7"),
        "BAD_REQUEST",
        "SECURITY_GROUPS: security group 7 does not exist",
    ),
    (
        tmpl("NAME = n", "VN_MAD = bridge", "SECURITY_GROUPS = web"),
        "BAD_REQUEST",
        "SECURITY_GROUPS must be a comma-separated list of ids",
    ),
    (
        tmpl("NAME = n", "VN_MAD = bridge") + ip4("10.0.0.1", 9) + ip4("10.0.0.5", 10),
        "BAD_REQUEST",
        "AR 1 overlaps AR 0 (10.0.0.5..10.0.0.9)",
    ),
    (
        tmpl("NAME = n", "VN_MAD = bridge", "AR = [ TYPE = IP4, SIZE = 2 ]"),
        "BAD_REQUEST",
        "AR 0: IP is missing",
    ),
    (
        tmpl(
            "NAME = n",
            "VN_MAD = bridge",
            'AR = [ TYPE = IP4, IP = 10.0.0.1, SIZE = 1, SECURITY_GROUPS = "5" ]',
        ),
        "BAD_REQUEST",
        "AR 0: security group 5 does not exist",
    ),
    ("NAME = n\nVN_MAD = [ X = 1 ]\n", "BAD_REQUEST", "VN_MAD must be a single value"),
    ('NAME = "n\n', "BAD_REQUEST", "argument 'template': line 1"),
    ("NAME = n\nVN_MAD = bridge\nDESCRIPTION = " + "x" * (1 << 20), "BAD_REQUEST", "MiB"),
]


@pytest.mark.parametrize("text, code, message", BAD_ALLOCATIONS)
def test_allocate_refusals(z, text, code, message):
    z.fails("vnet.allocate", {"template": text}, 0, code, message)


def test_allocate_argument_refusals(z):
    good = tmpl("NAME = n", "VN_MAD = bridge")
    z.fails(
        "vnet.allocate",
        {"template": good, "cluster": 9},
        0,
        "BAD_REQUEST",
        "cluster 9 does not exist",
    )
    z.fails(
        "vnet.allocate", {"template": good, "cluster": -2}, 0, "BAD_REQUEST", "must be an id >= 0"
    )
    # -1 is OpenNebula's "the default cluster".
    assert rec(z, "vnet", z.ok("vnet.allocate", {"template": good, "cluster": -1})["id"])[
        "cids"
    ] == [0]
    z.fails("vnet.allocate", {"template": 3}, 0, "BAD_REQUEST", "must be template text")
    z.fails("vnet.allocate", {"template": good, "x": 1}, 0, "BAD_REQUEST", "unknown argument(s): x")
    z.fails("vnet.allocate", {}, 0, "BAD_REQUEST", "missing argument 'template'")
    z.fails("vnet.allocate", {"template": good, "name": 'a"b'}, 0, "BAD_REQUEST", "may not contain")


def test_names_are_unique_per_owner_and_creation_needs_rights(z):
    net(z, "lan")
    z.fails(
        "vnet.allocate", {"template": NET_LAN}, 0, "ACTION", "'lan' of user 0 is already taken by 0"
    )
    z.fails("vnet.allocate", {"template": NET_LAN}, ALICE, "AUTHORIZATION", "CREATE")
    add_rule(z, f"#{ALICE} NET/* CREATE")
    # OpenNebula also wants ADMIN on the cluster the network goes to.
    z.fails("vnet.allocate", {"template": NET_LAN}, ALICE, "AUTHORIZATION", "ADMIN")
    add_rule(z, f"#{ALICE} CLUSTER/#0 ADMIN")
    vid = z.ok("vnet.allocate", {"template": NET_LAN}, uid=ALICE)["id"]
    assert (rec(z, "vnet", vid)["uid"], rec(z, "vnet", vid)["gid"]) == (ALICE, USERS_GID)


NET_LAN = tmpl("NAME = lan", "VN_MAD = bridge")


# --- address ranges -------------------------------------------------------------------------


def test_add_update_and_remove_address_ranges(z):
    vid = net(z, ars=ip4("10.0.0.1", 9))
    assert z.ok("vnet.add_ar", {"id": vid, "template": ip4("10.0.1.1", 4)}) == {"ar_id": 1}
    z.fails(
        "vnet.add_ar",
        {"id": vid, "template": ip4("10.0.0.5", 10)},
        0,
        "BAD_REQUEST",
        "AR 2 overlaps AR 0 (10.0.0.5..10.0.0.9)",
    )
    two = ip4("10.0.2.1", 1) + ip4("10.0.3.1", 1)
    z.fails("vnet.add_ar", {"id": vid, "template": two}, 0, "BAD_REQUEST", "one AR vector, got 2")
    z.fails("vnet.add_ar", {"id": vid, "template": "X = 1"}, 0, "BAD_REQUEST", "only hold AR")
    z.fails("vnet.add_ar", {"id": vid, "template": ""}, 0, "BAD_REQUEST", "has no AR vector")
    z.fails("vnet.add_ar", {"id": 77, "template": ip4()}, 0, "NO_EXISTS", "virtual network 77")
    ether = 'AR = [ TYPE = "ETHER", SIZE = "4", DNS = "1.1.1.1" ]'
    assert z.ok("vnet.add_ar", {"id": vid, "template": ether}) == {"ar_id": 2}

    update = 'AR = [ AR_ID = "1", SIZE = "8", GATEWAY = "10.0.1.254" ]'
    z.ok("vnet.update_ar", {"id": vid, "template": update})
    ar1 = rec(z, "vnet", vid)["ars"][1]
    assert ar1["size"] == 8 and ar1["attrs"] == {"GATEWAY": "10.0.1.254"}
    bad_updates = [
        ('AR = [ SIZE = "8" ]', "needs AR_ID"),
        ('AR = [ AR_ID = "9", SIZE = "8" ]', "has no address range 9"),
        ('AR = [ AR_ID = "1", IP = "10.0.9.1" ]', "IP cannot be changed (it is 10.0.1.1)"),
        ('AR = [ AR_ID = "0", SIZE = "300" ]', "AR 0 overlaps AR 1 (10.0.1.1..10.0.1.8)"),
        ('AR = [ AR_ID = "0", SIZE = "0" ]', "SIZE must be 1.."),
    ]
    for text, message in bad_updates:
        z.fails("vnet.update_ar", {"id": vid, "template": text}, 0, "BAD_REQUEST", message)

    lease(z, vid, 5, {"IP": "10.0.1.3"})
    z.fails(
        "vnet.rm_ar",
        {"id": vid, "ar_id": 1},
        0,
        "ACTION",
        "AR 1 of virtual network 0 has 1 leases in use",
    )
    z.fails(
        "vnet.update_ar",
        {"id": vid, "template": 'AR = [ AR_ID = "1", SIZE = "2" ]'},
        0,
        "BAD_REQUEST",
        "would leave 1 used lease(s) outside the range (10.0.1.3 is leased to VM 5)",
    )
    z.fails("vnet.rm_ar", {"id": vid, "ar_id": 4}, 0, "BAD_REQUEST", "has no address range 4")
    z.fails("vnet.rm_ar", {"id": vid, "ar_id": "1"}, 0, "BAD_REQUEST", "must be an integer")
    z.ok("vnet.rm_ar", {"id": vid, "ar_id": 0})
    assert [a["ar_id"] for a in rec(z, "vnet", vid)["ars"]] == [1, 2]
    # AR ids are not reused.
    assert z.ok("vnet.add_ar", {"id": vid, "template": ip4()}) == {"ar_id": 3}


def test_ar_security_groups_are_tracked(z):
    sg = z.ok("secgroup.allocate", {"template": "NAME = web"})["id"]
    vid = net(z)
    z.ok(
        "vnet.add_ar",
        {"id": vid, "template": f'AR = [ TYPE = ETHER, SIZE = 2, SECURITY_GROUPS = "{sg}" ]'},
    )
    assert rec(z, "secgroup", sg)["vnets"] == [vid]
    z.fails("secgroup.delete", {"id": sg}, 0, "ACTION", f"used by virtual networks {vid}")
    z.ok("vnet.rm_ar", {"id": vid, "ar_id": 0})
    assert rec(z, "secgroup", sg)["vnets"] == []
    z.ok("secgroup.delete", {"id": sg})


def test_ar_rights(z):
    vid = net(z, ars=ip4())
    z.ok("obj.chmod", {"kind": "vnet", "id": vid, "perms": 0o666})  # other USE+MANAGE
    z.fails(
        "vnet.add_ar", {"id": vid, "template": ip4("10.1.0.1")}, ALICE, "AUTHORIZATION", "ADMIN"
    )
    z.fails("vnet.rm_ar", {"id": vid, "ar_id": 0}, ALICE, "AUTHORIZATION", "ADMIN")
    z.ok("vnet.update_ar", {"id": vid, "template": "AR = [ AR_ID = 0, SIZE = 20 ]"}, uid=ALICE)
    z.ok("vnet.hold", {"id": vid, "ip": "10.0.0.2"}, uid=ALICE)
    z.ok("obj.chmod", {"kind": "vnet", "id": vid, "perms": 0o604})
    z.fails("vnet.release", {"id": vid, "ip": "10.0.0.2"}, ALICE, "AUTHORIZATION", "MANAGE")


# --- holds ---------------------------------------------------------------------------------


def test_hold_and_release(z):
    vid = net(
        z, ars=ip4("10.0.0.1", 4) + 'AR = [ TYPE = ETHER, SIZE = 2, MAC = "02:00:00:00:01:00" ]\n'
    )
    z.ok("vnet.hold", {"id": vid, "ip": "10.0.0.2"})
    z.ok("vnet.hold", {"id": vid, "mac": "02:00:00:00:01:01", "ar_id": 1})
    r = rec(z, "vnet", vid)
    assert r["used_leases"] == 2
    assert r["ars"][0]["leases"] == [{"index": 1, "vm": -1}]
    z.fails(
        "vnet.hold",
        {"id": vid, "ip": "10.0.0.2"},
        0,
        "ACTION",
        "IP 10.0.0.2 of virtual network 0 is already on hold",
    )
    # The first free address skips holds.
    assert lease(z, vid, 3)["IP"] == "10.0.0.1"
    assert lease(z, vid, 4)["IP"] == "10.0.0.3"
    z.fails("vnet.hold", {"id": vid, "ip": "10.0.0.3"}, 0, "ACTION", "already leased to VM 4")
    z.fails(
        "vnet.release",
        {"id": vid, "ip": "10.0.0.3"},
        0,
        "ACTION",
        "is not on hold (it is leased to VM 4)",
    )
    z.fails(
        "vnet.release", {"id": vid, "ip": "10.0.0.4"}, 0, "ACTION", "is not on hold (it is free)"
    )
    z.ok("vnet.release", {"id": vid, "ip": "10.0.0.2"})
    assert rec(z, "vnet", vid)["used_leases"] == 3


@pytest.mark.parametrize(
    "args, message",
    [
        ({}, "give the address: argument 'ip', 'ip6' or 'mac'"),
        ({"ip": "10.0.0.1", "mac": "02:00:0a:00:00:01"}, "give only one of IP, IP6 and MAC"),
        ({"ip": "10.0.0.300"}, "argument 'ip': '10.0.0.300' is not an IPv4 address"),
        ({"ip": 5}, "argument 'ip' must be a string"),
        ({"mac": "zz"}, "argument 'mac': 'zz' is not a MAC"),
        ({"ip": "10.9.9.9"}, "IP 10.9.9.9 is not in any address range of virtual network 0"),
        ({"ip": "10.0.0.1", "ar_id": 1}, "has no address range 1"),
        ({"ip6": "2001:db8::1"}, "IP6 2001:db8::1 is not in any address range"),
        ({"ip": "10.0.0.1", "vm": 3}, "unknown argument(s): vm"),
    ],
)
def test_hold_refusals(z, args, message):
    vid = net(z, ars=ip4())
    z.fails("vnet.hold", {"id": vid, **args}, 0, "BAD_REQUEST", message)


# --- leases for VMs ------------------------------------------------------------------------


def test_lease_nic_attributes(z):
    sg = z.ok("secgroup.allocate", {"template": "NAME = web"})["id"]
    text = tmpl(
        "NAME = v",
        "VN_MAD = 802.1Q",
        "PHYDEV = eth1",
        "VLAN_ID = 7",
        f'AR = [ TYPE = IP4_6, IP = 10.0.0.1, SIZE = 4, GLOBAL_PREFIX = "2001:db8::",'
        f' SECURITY_GROUPS = "{sg}" ]',
    )
    vid = z.ok("vnet.allocate", {"template": text})["id"]
    nic = lease(z, vid, 9, {"MAC": "02:00:0a:00:00:03"})
    assert nic == {
        "NETWORK": "v",
        "NETWORK_ID": str(vid),
        "BRIDGE": "onebr.7",
        "VN_MAD": "802.1Q",
        "PHYDEV": "eth1",
        "VLAN_ID": "7",
        "CLUSTER_ID": "0",
        "AR_ID": "0",
        "MAC": "02:00:0a:00:00:03",
        "IP": "10.0.0.3",
        "IP6_LINK": "fe80::aff:fe00:3",
        "IP6_GLOBAL": "2001:db8::aff:fe00:3",
        "SECURITY_GROUPS": f"0,{sg}",
    }


def test_leases_quota_and_release(z):
    vid = net(z, ars=ip4("10.0.0.1", 3))
    nic = lease(z, vid, 1, {"IP": "10.0.0.2"}, owner=(ALICE, USERS_GID))
    assert quota_used(z, "user", ALICE, vid) == 1 and quota_used(z, "group", USERS_GID, vid) == 1
    with pytest.raises(Reject, match="IP 10.0.0.2 of virtual network 0 is already leased to VM 1"):
        lease(z, vid, 2, {"IP": "10.0.0.2"})
    with pytest.raises(Reject, match="only one of IP, IP6 and MAC"):
        lease(z, vid, 2, {"IP": "10.0.0.3", "MAC": "02:00:0a:00:00:03"})
    with pytest.raises(Reject, match="'NETWORK_ID': virtual network 8 does not exist"):
        lease(z, 8, 2)
    with pytest.raises(Reject, match="a VM id must be >= 0"):
        lease(z, vid, -1)
    lease(z, vid, 2)
    lease(z, vid, 3)
    with pytest.raises(Reject, match="no free address in virtual network 0") as e:
        lease(z, vid, 4)
    assert e.value.code == "ACTION"
    with pytest.raises(Reject, match=r"not leased to VM 7 \(it is leased to VM 1\)"):
        release(z, vid, 7, nic, owner=(ALICE, USERS_GID))
    release(z, vid, 1, nic, owner=(ALICE, USERS_GID))
    assert quota_used(z, "user", ALICE, vid) == 0
    assert rec(z, "vnet", vid)["used_leases"] == 2
    # Released: it can be leased again.
    assert lease(z, vid, 5)["IP"] == "10.0.0.2"


def test_lease_needs_use_and_respects_quota(z):
    vid = net(z, ars=ip4())
    with pytest.raises(Reject, match="USE") as e:
        lease(z, vid, 1, uid=ALICE)
    assert e.value.code == "AUTHORIZATION"
    z.ok("obj.chmod", {"kind": "vnet", "id": vid, "perms": 0o604})
    z.ok(
        "quota.set", {"kind": "user", "id": ALICE, "quota": {"NETWORK": [{"ID": vid, "LEASES": 1}]}}
    )
    lease(z, vid, 1, uid=ALICE)
    with pytest.raises(Reject, match="limit of 1 reached for LEASES quota in NETWORK") as e:
        lease(z, vid, 2, uid=ALICE)
    assert e.value.code == "ALLOCATE"


def test_several_leases_in_one_command_use_an_overlay(z):
    vid = net(z, ars=ip4("10.0.0.1", 4))
    ov = Overlay(z.view())
    cmd = {"uid": 0, "ts": 1}
    ips = []
    for vm in (1, 2):
        nic, mutations = vnets.lease_for_vm(ov, cmd, vid, vm, {})
        ov.add(mutations)
        ips.append(nic["IP"])
    assert ips == ["10.0.0.1", "10.0.0.2"]
    from tests.statekit import write

    z.state = write(z.state, ov.mutations)
    assert rec(z, "vnet", vid)["used_leases"] == 2 and quota_used(z, "user", 0, vid) == 2


# --- reservations --------------------------------------------------------------------------


def test_reservation_lifecycle(z):
    pid = net(z, "pub", ip4("10.0.0.1", 10), extra='GATEWAY = "10.0.0.254"\n')
    z.ok("obj.chmod", {"kind": "vnet", "id": pid, "perms": 0o604})  # others may USE it
    z.ok("vnet.hold", {"id": pid, "ip": "10.0.0.1"})
    rid = z.ok("vnet.reserve", {"id": pid, "size": 3, "name": "mine"}, uid=ALICE)["id"]
    child = rec(z, "vnet", rid)
    assert (child["uid"], child["parent_network"], child["bridge"]) == (ALICE, pid, "onebr0")
    assert child["ars"][0]["ip"] == "10.0.0.2" and child["ars"][0]["size"] == 3
    assert child["ars"][0]["parent_network_ar_id"] == 0
    assert 'GATEWAY = "10.0.0.254"' in child["template"]
    parent = rec(z, "vnet", pid)
    assert parent["used_leases"] == 4
    assert parent["ars"][0]["leases"][1:] == [{"index": i, "vnet": rid} for i in (1, 2, 3)]
    assert quota_used(z, "user", ALICE, pid) == 3
    assert rec(z, "cluster", 0)["vnets"] == [pid, rid]

    # More addresses into the same reservation, from a given address.
    args = {"id": pid, "size": 2, "network_id": rid, "ar_id": 0, "ip": "10.0.0.8"}
    assert z.ok("vnet.reserve", args, uid=ALICE) == {"id": rid}
    assert [a["ip"] for a in rec(z, "vnet", rid)["ars"]] == ["10.0.0.2", "10.0.0.8"]
    assert quota_used(z, "user", ALICE, pid) == 5

    # VMs lease from the reservation (charged on it), not from the parent's reserved ones.
    nic = lease(z, rid, 1, uid=ALICE)
    assert nic["IP"] == "10.0.0.2" and nic["PARENT_NETWORK_ID"] == str(pid)
    z.fails("vnet.delete", {"id": rid}, ALICE, "ACTION", "1 of its leases are in use")
    release(z, rid, 1, nic, owner=(ALICE, USERS_GID))

    # Giving an AR back frees its addresses in the parent and the quota.
    z.ok("vnet.rm_ar", {"id": rid, "ar_id": 1}, uid=ALICE)
    assert quota_used(z, "user", ALICE, pid) == 3 and rec(z, "vnet", pid)["used_leases"] == 4
    z.fails(
        "vnet.delete", {"id": pid}, 0, "ACTION", "cannot delete virtual network 0: 4 of its leases"
    )
    z.ok("vnet.delete", {"id": rid}, uid=ALICE)
    assert rec(z, "vnet", pid)["used_leases"] == 1 and quota_used(z, "user", ALICE, pid) == 0
    assert rec(z, "cluster", 0)["vnets"] == [pid]


def test_reservation_refusals(z):
    pid = net(z, "pub", ip4("10.0.0.1", 4))
    other = net(z, "other", ip4("10.1.0.1", 4))
    z.fails("vnet.reserve", {"id": pid, "size": 1, "name": "r"}, ALICE, "AUTHORIZATION", "USE")
    z.fails(
        "vnet.reserve", {"id": pid, "size": 0, "name": "r"}, 0, "BAD_REQUEST", "'size' must be >= 1"
    )
    z.fails("vnet.reserve", {"id": pid, "size": 1}, 0, "BAD_REQUEST", "argument 'name' is needed")
    z.fails(
        "vnet.reserve",
        {"id": pid, "size": 5, "name": "r"},
        0,
        "ACTION",
        "not enough free addresses",
    )
    z.fails(
        "vnet.reserve",
        {"id": pid, "size": 1, "name": "r", "ip": "10.0.0.2"},
        0,
        "BAD_REQUEST",
        "'ar_id' is needed",
    )
    z.fails(
        "vnet.reserve",
        {"id": pid, "size": 2, "name": "r", "ar_id": 0, "ip": "10.0.0.4"},
        0,
        "ACTION",
        "not enough free addresses in AR 0 of virtual network 0 (2 consecutive wanted from IP 10.0.0.4)",
    )
    z.fails("vnet.reserve", {"id": pid, "size": 1, "name": "pub"}, 0, "ACTION", "already taken")
    z.fails(
        "vnet.reserve",
        {"id": pid, "size": 1, "network_id": other},
        0,
        "ACTION",
        "is not a reservation of network 0",
    )
    z.fails(
        "vnet.reserve", {"id": pid, "size": 1, "network_id": pid}, 0, "BAD_REQUEST", "of itself"
    )
    z.fails(
        "vnet.reserve",
        {"id": pid, "size": 1, "network_id": 50},
        0,
        "BAD_REQUEST",
        "virtual network 50 does not exist",
    )
    z.fails(
        "vnet.reserve", {"id": 50, "size": 1, "name": "r"}, 0, "NO_EXISTS", "virtual network 50"
    )
    rid = z.ok("vnet.reserve", {"id": pid, "size": 1, "name": "r"})["id"]
    z.fails(
        "vnet.reserve",
        {"id": rid, "size": 1, "name": "r2"},
        0,
        "ACTION",
        "itself a reservation of network 0",
    )
    z.fails(
        "vnet.add_ar", {"id": rid, "template": ip4("10.5.0.1")}, 0, "ACTION", "is a reservation"
    )
    z.fails(
        "vnet.update_ar",
        {"id": rid, "template": "AR = [ AR_ID = 0, SIZE = 3 ]"},
        0,
        "BAD_REQUEST",
        "the SIZE of a reservation cannot be changed",
    )
    z.ok(
        "quota.set", {"kind": "user", "id": ALICE, "quota": {"NETWORK": [{"ID": pid, "LEASES": 1}]}}
    )
    z.ok("obj.chmod", {"kind": "vnet", "id": pid, "perms": 0o604})
    z.fails("vnet.reserve", {"id": pid, "size": 2, "name": "a"}, ALICE, "ALLOCATE", "LEASES quota")


# --- update and delete ---------------------------------------------------------------------


def test_update(z):
    sg = z.ok("secgroup.allocate", {"template": "NAME = web"})["id"]
    vid = net(z, ars=ip4())
    z.ok(
        "vnet.update",
        {
            "id": vid,
            "template": f'BRIDGE = "br9"\nSECURITY_GROUPS = "{sg}"\nDNS = "9.9.9.9"',
            "append": True,
        },
    )
    r = rec(z, "vnet", vid)
    assert (r["bridge"], r["secgroups"], r["vn_mad"]) == ("br9", [0, sg], "bridge")
    assert 'DNS = "9.9.9.9"' in r["template"] and len(r["ars"]) == 1
    assert rec(z, "secgroup", sg)["vnets"] == [vid]
    # Replacing: what is not given goes, VN_MAD and BRIDGE stay.
    z.ok("vnet.update", {"id": vid, "template": 'DESCRIPTION = "x"'})
    r = rec(z, "vnet", vid)
    assert (r["bridge"], r["secgroups"], "DNS" in r["template"]) == ("br9", [0], False)
    assert rec(z, "secgroup", sg)["vnets"] == []
    z.fails(
        "vnet.update", {"id": vid, "template": "NAME = x"}, 0, "BAD_REQUEST", "may not set NAME"
    )
    z.fails("vnet.update", {"id": vid, "template": ip4()}, 0, "BAD_REQUEST", "may not set AR")
    z.fails(
        "vnet.update",
        {"id": vid, "template": "VN_MAD = 802.1Q"},
        0,
        "BAD_REQUEST",
        "PHYDEV is required",
    )
    z.fails("vnet.update", {"id": vid, "template": "X = 1"}, ALICE, "AUTHORIZATION", "MANAGE")
    z.ok(
        "vnet.update",
        {"id": vid, "template": "VN_MAD = 802.1Q\nPHYDEV = eth0\nAUTOMATIC_VLAN_ID = YES"},
    )
    r = rec(z, "vnet", vid)
    assert r["vlan_id_automatic"] and r["vlan_id"] == 2
    z.fails(
        "vnet.update",
        {"id": vid, "template": "VLAN_ID = 9", "append": True},
        0,
        "BAD_REQUEST",
        "assigned automatically",
    )
    z.fails(
        "vnet.update",
        {"id": vid, "template": "VN_MAD = vxlan", "append": True},
        0,
        "BAD_REQUEST",
        "cannot change from 802.1Q to vxlan",
    )


def test_delete(z):
    vid = net(z, ars=ip4())
    z.fails("vnet.delete", {"id": vid}, ALICE, "AUTHORIZATION", "MANAGE")
    z.fails("vnet.delete", {"id": 9}, 0, "NO_EXISTS", "virtual network 9 does not exist")
    z.ok("vnet.hold", {"id": vid, "ip": "10.0.0.3"})
    z.fails("vnet.delete", {"id": vid}, 0, "ACTION", "1 of its leases are in use")
    z.ok("vnet.release", {"id": vid, "ip": "10.0.0.3"})
    z.ok("vnet.delete", {"id": vid})
    assert rec(z, "vnet", vid) is None
    assert rec(z, "cluster", 0)["vnets"] == [] and rec(z, "secgroup", 0)["vnets"] == []
    # Only the indexes of other objects are left.
    assert not any(k.startswith(b"vnet\0") for k in z.state["index"])
