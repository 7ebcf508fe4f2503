"""Security groups in the state machine: the default group, rule validation (each field,
with a precise refusal that changes nothing), update, delete while in use."""

import pytest

from raftcore.ops import secgroups
from tests.netkit import ALICE, booted, net, rec, rule


@pytest.fixture
def z():
    return booted()


def sg(z, rules: str, name: str = "web", uid: int = 0) -> int:
    return z.ok("secgroup.allocate", {"template": f"NAME = {name}\n{rules}"}, uid=uid)["id"]


def test_default_group_allows_everything_and_is_readable_by_all(z):
    r = rec(z, "secgroup", 0)
    assert r["name"] == "default" and r["perms"] == 0o744
    assert r["rules"] == [
        {"protocol": "ALL", "rule_type": "outbound"},
        {"protocol": "ALL", "rule_type": "inbound"},
    ]
    assert 'DESCRIPTION = "The default security group' in r["template"]
    assert "NAME" not in r["template"]
    z.fails(
        "secgroup.delete",
        {"id": 0},
        0,
        "ACTION",
        "the default security group (ID 0) cannot be deleted",
    )


def test_user_groups_start_at_100_with_canonical_rules(z):
    text = "\n".join(
        [
            'RULE = [ PROTOCOL = tcp, RULE_TYPE = INBOUND, RANGE = "22, 80:90" ]',
            'RULE = [ PROTOCOL = TCP, RULE_TYPE = inbound, RANGE = "22,80:90" ]',
            "RULE = [ PROTOCOL = ICMP, RULE_TYPE = inbound, ICMP_TYPE = 8, IP = 10.0.0.0, SIZE = 256 ]",
            "RULE = [ PROTOCOL = icmpv6, RULE_TYPE = outbound, ICMPV6_TYPE = 128, IP = 2001:db8::, SIZE = 16 ]",
            "RULE = [ PROTOCOL = ALL, RULE_TYPE = outbound, NETWORK_ID = 0 ]",
            "RULE = [ PROTOCOL = IPSEC, RULE_TYPE = inbound ]",
        ]
    )
    net(z)
    sid = sg(z, text)
    assert sid == secgroups.FIRST_USER_ID
    r = rec(z, "secgroup", sid)
    assert r["rules"] == [
        {"protocol": "TCP", "rule_type": "inbound", "range": "22,80:90"},  # the duplicate went
        {"protocol": "ICMP", "rule_type": "inbound", "icmp_type": 8, "ip": "10.0.0.0", "size": 256},
        {
            "protocol": "ICMPV6",
            "rule_type": "outbound",
            "icmpv6_type": 128,
            "ip": "2001:db8::",
            "size": 16,
        },
        {"protocol": "ALL", "rule_type": "outbound", "network_id": 0},
        {"protocol": "IPSEC", "rule_type": "inbound"},
    ]
    assert r["template"].count("RULE = [") == 5
    assert 'RANGE = "22,80:90"' in r["template"]
    assert (r["vnets"], r["vms"]) == ([], [])
    assert sg(z, "", name="other") == 101


BAD_RULES = [
    (
        "RULE = [ RULE_TYPE = inbound ]",
        "RULE 0: PROTOCOL must be one of TCP, UDP, ICMP, ICMPV6, IPSEC, ALL, it is missing",
    ),
    (
        "RULE = [ PROTOCOL = SCTP, RULE_TYPE = inbound ]",
        "PROTOCOL must be one of TCP, UDP, ICMP, ICMPV6, IPSEC, ALL, got 'SCTP'",
    ),
    ("RULE = [ PROTOCOL = TCP ]", "RULE 0: RULE_TYPE must be inbound or outbound, it is missing"),
    (
        "RULE = [ PROTOCOL = TCP, RULE_TYPE = sideways ]",
        "RULE_TYPE must be inbound or outbound, got 'sideways'",
    ),
    (
        "RULE = [ PROTOCOL = ICMP, RULE_TYPE = inbound, RANGE = 22 ]",
        "RANGE is only for TCP and UDP, not ICMP",
    ),
    (
        'RULE = [ PROTOCOL = TCP, RULE_TYPE = inbound, RANGE = "22,,80" ]',
        "RANGE '22,,80' must be ports or ranges",
    ),
    ('RULE = [ PROTOCOL = TCP, RULE_TYPE = inbound, RANGE = "1:2:3" ]', "must be ports or ranges"),
    (
        "RULE = [ PROTOCOL = UDP, RULE_TYPE = inbound, RANGE = 0 ]",
        "RANGE port must be a whole number 1..65535, got '0'",
    ),
    ("RULE = [ PROTOCOL = UDP, RULE_TYPE = inbound, RANGE = 65536 ]", "1..65535, got '65536'"),
    (
        'RULE = [ PROTOCOL = UDP, RULE_TYPE = inbound, RANGE = "90:80" ]',
        "RANGE 90:80 starts after it ends",
    ),
    (
        "RULE = [ PROTOCOL = TCP, RULE_TYPE = inbound, ICMP_TYPE = 8 ]",
        "ICMP_TYPE is only for ICMP, not TCP",
    ),
    (
        "RULE = [ PROTOCOL = ICMP, RULE_TYPE = inbound, ICMP_TYPE = 256 ]",
        "ICMP_TYPE must be a whole number 0..255",
    ),
    (
        "RULE = [ PROTOCOL = ICMP, RULE_TYPE = inbound, ICMPV6_TYPE = 1 ]",
        "ICMPV6_TYPE is only for ICMPV6, not ICMP",
    ),
    ("RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound, IP = 10.0.0.1 ]", "IP and SIZE go together"),
    ("RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound, SIZE = 4 ]", "IP and SIZE go together"),
    (
        "RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound, IP = 10.0.0.256, SIZE = 1 ]",
        "IP '10.0.0.256' is not an IPv4 or IPv6 address",
    ),
    (
        "RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound, IP = 255.255.255.0, SIZE = 257 ]",
        "SIZE must be a whole number 1..256",
    ),
    (
        "RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound, IP = 10.0.0.1, SIZE = 0 ]",
        "SIZE must be a whole number 1..",
    ),
    (
        "RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound, NETWORK_ID = 4 ]",
        "RULE 0: NETWORK_ID 4: virtual network 4 does not exist",
    ),
    (
        "RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound, NETWORK_ID = x ]",
        "NETWORK_ID must be a whole number",
    ),
    (
        "RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound, NETWORK_ID = 0, IP = 10.0.0.1, SIZE = 1 ]",
        "not both",
    ),
    (
        "RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound, PORT = 22 ]",
        "RULE 0: unknown attribute(s) PORT",
    ),
    (
        "RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound ]\nRULE = [ PROTOCOL = TCP ]",
        "RULE 1: RULE_TYPE",
    ),
    ("RULE = ALL", "RULE must be a vector"),
]


@pytest.mark.parametrize("rules, message", BAD_RULES)
def test_bad_rules_are_refused(z, rules, message):
    net(z)  # vnet 0 exists
    z.fails("secgroup.allocate", {"template": f"NAME = web\n{rules}"}, 0, "BAD_REQUEST", message)


def test_allocate_refusals(z):
    z.fails(
        "secgroup.allocate",
        {"template": "RULE = [ PROTOCOL = ALL, RULE_TYPE = inbound ]"},
        0,
        "BAD_REQUEST",
        "no NAME",
    )
    sg(z, "")
    z.fails(
        "secgroup.allocate",
        {"template": "NAME = web"},
        0,
        "ACTION",
        "'web' of user 0 is already taken",
    )
    big = "NAME = big\nDESCRIPTION = " + "x" * (1 << 20)
    z.fails("secgroup.allocate", {"template": big}, 0, "BAD_REQUEST", "MiB")
    z.fails(
        "secgroup.allocate",
        {"template": "NAME = web", "extra": 1},
        0,
        "BAD_REQUEST",
        "unknown argument(s): extra",
    )
    # Users may create security groups only with a CREATE rule (OpenNebula's @1 rule
    # gives it to the users group; this state has no such rule for alice's own id).
    z.ok("acl.delete", {"id": 0})
    z.fails("secgroup.allocate", {"template": "NAME = mine"}, ALICE, "AUTHORIZATION", "CREATE")
    rule(z, f"#{ALICE} SECGROUP/* CREATE")
    sid = z.ok("secgroup.allocate", {"template": "NAME = web"}, uid=ALICE)["id"]
    assert rec(z, "secgroup", sid)["uid"] == ALICE


def test_update_checks_rules_and_keeps_the_name(z):
    sid = sg(z, "RULE = [ PROTOCOL = TCP, RULE_TYPE = inbound, RANGE = 22 ]")
    z.ok(
        "secgroup.update",
        {"id": sid, "template": "RULE = [ PROTOCOL = UDP, RULE_TYPE = outbound ]", "append": True},
    )
    assert [r["protocol"] for r in rec(z, "secgroup", sid)["rules"]] == ["UDP"]
    z.ok("secgroup.update", {"id": sid, "template": 'DESCRIPTION = "none"'})
    r = rec(z, "secgroup", sid)
    assert r["rules"] == [] and r["name"] == "web" and 'DESCRIPTION = "none"' in r["template"]
    z.fails(
        "secgroup.update",
        {"id": sid, "template": "RULE = [ PROTOCOL = X, RULE_TYPE = inbound ]"},
        0,
        "BAD_REQUEST",
        "PROTOCOL must be one of",
    )
    z.fails(
        "secgroup.update", {"id": sid, "template": "NAME = other"}, 0, "BAD_REQUEST", "use rename"
    )
    z.fails("secgroup.update", {"id": sid, "template": ""}, ALICE, "AUTHORIZATION", "MANAGE")
    z.fails(
        "secgroup.update",
        {"id": 555, "template": ""},
        0,
        "NO_EXISTS",
        "security group 555 does not exist",
    )


def test_delete_refused_while_used(z):
    sid = sg(z, "")
    vid = net(z, extra=f'SECURITY_GROUPS = "{sid}"\n')
    z.fails(
        "secgroup.delete",
        {"id": sid},
        0,
        "ACTION",
        f"security group {sid} is used by virtual networks {vid}",
    )
    z.ok("vnet.update", {"id": vid, "template": 'SECURITY_GROUPS = "0"', "append": True})
    z.state = _with_vm(z, sid)
    z.fails("secgroup.delete", {"id": sid}, 0, "ACTION", "is used by VMs 42")
    mutations = secgroups.use_by_vm(z.view(), [sid], 42, add=False)
    from tests.statekit import write

    z.state = write(z.state, mutations)
    z.fails("secgroup.delete", {"id": sid}, ALICE, "AUTHORIZATION", "MANAGE")
    z.ok("secgroup.delete", {"id": sid})
    assert rec(z, "secgroup", sid) is None


def _with_vm(z, sid: int) -> dict:
    from tests.statekit import write

    return write(z.state, secgroups.use_by_vm(z.view(), [sid, 999], 42))
