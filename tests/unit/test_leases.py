"""Address ranges without a state: parsing, OpenNebula's address arithmetic (MAC from the
IPv4 address, EUI-64 SLAAC addresses), overlaps and the lease table."""

import pytest

from raftcore import leases
from raftcore.leases import LeaseError, parse_ar


def ar(ar_id=0, seed=0, **attrs):
    return parse_ar({k: str(v) for k, v in attrs.items()}, ar_id, seed)


# --- parsing -------------------------------------------------------------------------------


def test_ip4_mac_is_the_prefix_and_the_address():
    r = ar(TYPE="IP4", IP="10.0.0.1", SIZE=4, GATEWAY="10.0.0.254")
    assert r["mac"] == "02:00:0a:00:00:01"
    assert r["attrs"] == {"GATEWAY": "10.0.0.254"}
    assert leases.address(r, 3) == {"MAC": "02:00:0a:00:00:04", "IP": "10.0.0.4"}
    assert leases.first_last(r)["IP"] == ("10.0.0.1", "10.0.0.4")


def test_given_mac_wins_and_type_is_case_insensitive():
    r = ar(TYPE="ip4", IP="192.168.1.10", SIZE=2, MAC="AA:BB:CC:00:00:01")
    assert r["type"] == "IP4" and r["mac"] == "aa:bb:cc:00:00:01"


def test_ether_mac_comes_from_the_seed_with_the_prefix():
    r = ar(TYPE="ETHER", SIZE=10, seed=0x12345678)
    assert r["mac"] == "02:00:12:34:56:78"
    # Whatever the seed, the range fits in the low 32 bits.
    assert leases.spans(ar(TYPE="ETHER", SIZE=10, seed=2**32 - 1))["MAC"][1] <= 0x0200FFFFFFFF


def test_slaac_addresses_are_eui64_of_the_mac():
    r = ar(TYPE="IP6", SIZE=2, MAC="02:00:0a:00:00:01", GLOBAL_PREFIX="2001:db8::")
    a = leases.address(r, 1)
    # 02:00:0a:00:00:02 -> 0000:0aff:fe00:0002 (universal/local bit flipped)
    assert a["IP6_GLOBAL"] == "2001:db8::aff:fe00:2"
    assert a["IP6_LINK"] == "fe80::aff:fe00:2"
    assert "IP6_ULA" not in a


def test_dual_stack_and_static_ip6():
    r = ar(TYPE="IP4_6_STATIC", IP="10.0.0.1", IP6="2001:db8::100", PREFIX_LENGTH=64, SIZE=3)
    assert leases.address(r, 2) == {
        "MAC": "02:00:0a:00:00:03",
        "IP": "10.0.0.3",
        "IP6": "2001:db8::102",
    }
    assert leases.index_of(r, "IP6", leases.ip6_int("2001:db8::101")) == 1


def test_static_ip6_size_defaults_to_the_rest_of_the_prefix():
    r = ar(TYPE="IP6_STATIC", IP6="2001:db8::10", PREFIX_LENGTH=120)
    assert r["size"] == 256 - 16


@pytest.mark.parametrize(
    "attrs, message",
    [
        ({"SIZE": 1}, "AR 0: TYPE is missing"),
        ({"TYPE": "IP5", "SIZE": 1}, "unknown TYPE 'IP5'"),
        ({"TYPE": "IP4", "SIZE": 1}, "AR 0: IP is missing"),
        ({"TYPE": "IP4", "IP": "10.0.0.300", "SIZE": 1}, "IP '10.0.0.300' is not an IPv4"),
        ({"TYPE": "IP4", "IP": "10.0.0.1"}, "SIZE is missing"),
        ({"TYPE": "IP4", "IP": "10.0.0.1", "SIZE": 0}, "SIZE must be 1.."),
        ({"TYPE": "IP4", "IP": "10.0.0.1", "SIZE": "x"}, "SIZE must be a whole number"),
        ({"TYPE": "IP4", "IP": "255.255.255.250", "SIZE": 10}, "run past the last 32 bits"),
        ({"TYPE": "ETHER", "SIZE": 2, "IP": "10.0.0.1"}, "IP is not used by TYPE ETHER"),
        ({"TYPE": "ETHER", "SIZE": 2, "MAC": "02:00:00"}, "MAC '02:00:00' is not a MAC"),
        ({"TYPE": "ETHER", "SIZE": 2, "MAC": "02:00:ff:ff:ff:ff"}, "MAC range"),
        ({"TYPE": "IP6", "SIZE": 2, "GLOBAL_PREFIX": "2001:db8::1"}, "must be a /64 prefix"),
        ({"TYPE": "IP6", "SIZE": 2, "ULA_PREFIX": "nope"}, "is not an IPv6 prefix"),
        ({"TYPE": "IP6_STATIC", "IP6": "2001:db8::1", "SIZE": 2}, "PREFIX_LENGTH is missing"),
        (
            {"TYPE": "IP6_STATIC", "IP6": "2001:db8::1", "PREFIX_LENGTH": 129, "SIZE": 2},
            "PREFIX_LENGTH must be 1..128",
        ),
        ({"TYPE": "IP4", "IP": "10.0.0.1", "SIZE": 1, "IPAM_MAD": "x"}, "IPAM_MAD"),
        (
            {"TYPE": "IP4", "IP": "10.0.0.1", "SIZE": 1, "SECURITY_GROUPS": "1,a"},
            "SECURITY_GROUPS must be a comma-separated list",
        ),
    ],
)
def test_bad_ranges_are_refused_precisely(attrs, message):
    with pytest.raises(LeaseError, match=message.replace("(", r"\(").replace(".", r"\.")):
        ar(**attrs)


def test_computed_attributes_are_dropped_so_a_shown_ar_reads_back():
    r = ar(TYPE="IP4", IP="10.0.0.1", SIZE=4)
    shown = dict(leases.definition(r)) | {"USED_LEASES": "3", "IP_END": "10.0.0.4"}
    assert parse_ar(shown, 0) == r


# --- overlaps ------------------------------------------------------------------------------


def test_overlap_names_the_shared_addresses():
    a = ar(0, TYPE="IP4", IP="10.0.0.1", SIZE=9)
    b = ar(1, TYPE="IP4", IP="10.0.0.5", SIZE=10)
    assert leases.overlap(a, b) == "10.0.0.5..10.0.0.9"
    c = ar(2, TYPE="IP4", IP="10.0.0.10", SIZE=1)
    assert leases.overlap(a, c) is None
    assert leases.overlap(b, c) == "10.0.0.10"


def test_overlap_by_mac_between_ethernet_ranges():
    a = ar(0, TYPE="ETHER", SIZE=4, MAC="02:00:00:00:00:10")
    b = ar(1, TYPE="ETHER", SIZE=4, MAC="02:00:00:00:00:13")
    assert leases.overlap(a, b) == "02:00:00:00:00:13"


# --- the lease table -----------------------------------------------------------------------


def test_free_run_finds_gaps_and_exact_starts():
    r = ar(TYPE="IP4", IP="10.0.0.1", SIZE=8)
    r = leases.with_leases(r, [0, 1, 4], {"vm": 3})
    assert leases.free_run(r) == 2
    assert leases.free_run(r, 2) == 2
    assert leases.free_run(r, 3) == 5
    assert leases.free_run(r, 4) is None
    assert leases.free_run(r, 2, start=5) == 5
    assert leases.free_run(r, 2, start=3) is None
    assert leases.free_run(r, 2, start=7) is None


def test_leases_stay_sorted_and_inputs_unchanged():
    r = ar(TYPE="IP4", IP="10.0.0.1", SIZE=8)
    r1 = leases.with_leases(r, [5], {"vm": 1})
    r2 = leases.with_leases(r1, [2], {"vm": leases.HOLD})
    assert r["leases"] == [] and len(r1["leases"]) == 1
    assert [x["index"] for x in r2["leases"]] == [2, 5]
    assert leases.holder_text(leases.lease_at(r2, 2)) == "on hold"
    assert leases.holder_text(leases.lease_at(r2, 5)) == "leased to VM 1"
    assert leases.without_leases(r2, [5])["leases"] == [{"index": 2, "vm": -1}]


# --- update and reservations -------------------------------------------------------------


def test_update_ar_changes_size_but_not_addresses():
    r = leases.with_leases(ar(TYPE="IP4", IP="10.0.0.1", SIZE=8), [6], {"vm": 1})
    grown = leases.update_ar(r, {"SIZE": "20", "DNS": "1.1.1.1"})
    assert grown["size"] == 20 and grown["attrs"]["DNS"] == "1.1.1.1"
    assert grown["leases"] == r["leases"]
    with pytest.raises(LeaseError, match="IP cannot be changed"):
        leases.update_ar(r, {"IP": "10.0.0.2"})
    assert leases.update_ar(r, {"IP": "10.0.0.1", "TYPE": "ip4"})["size"] == 8
    with pytest.raises(
        LeaseError, match=r"leave 1 used lease\(s\) outside the range \(10\.0\.0\.7"
    ):
        leases.update_ar(r, {"SIZE": "5"})


def test_reservation_ar_starts_at_the_reserved_address():
    parent = ar(3, TYPE="IP4", IP="10.0.0.1", SIZE=8, GATEWAY="10.0.0.254")
    child = leases.reservation_ar(parent, 2, 4, 0)
    assert (child["ip"], child["mac"], child["size"], child["ar_id"]) == (
        "10.0.0.3",
        "02:00:0a:00:00:03",
        4,
        0,
    )
    assert child["parent_network_ar_id"] == 3 and child["attrs"] == {"GATEWAY": "10.0.0.254"}
    with pytest.raises(LeaseError, match="SIZE of a reservation cannot be changed"):
        leases.update_ar(child, {"SIZE": "5"})
