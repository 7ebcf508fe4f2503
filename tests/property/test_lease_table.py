"""Stateful test of a network's lease table against a plain model: address ranges are added
and removed, addresses leased to VMs (given or first free), put on hold and released, in
any order.

Invariants: no address is ever leased twice (MACs and IPs of live leases are distinct);
every operation succeeds exactly when the model says it may (a released address can be
leased again); the record's leases are the model's; used_leases is the number of leases;
the owner's NETWORK LEASES usage equals its live VM leases."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftcore import leases, objects, schema
from raftcore.ops import vnets
from raftcore.ops.common import Reject
from tests.netkit import ALICE, USERS_GID, booted
from tests.statekit import TS, write

BASE = leases.ip4_int("10.0.0.0")
SLOTS = 24  # addresses 10.0.0.0 .. 10.0.0.23: ranges often overlap
VMS = range(1, 6)
HOLD = ("vm", leases.HOLD)


def ip(n: int) -> str:
    return leases.ip4_text(BASE + n)


class LeaseTable(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.z = booted()
        self.vid = self.z.ok("vnet.allocate", {"template": 'NAME = "n"\nVN_MAD = "bridge"\n'})["id"]
        self.ars: list[tuple[int, int, int]] = []  # (ar_id, first slot, size), in order
        self.next_ar = 0
        self.held: dict[int, tuple[str, int]] = {}  # slot -> holder

    # - the model -

    def ar_of(self, slot: int) -> tuple[int, int, int] | None:
        return next((a for a in self.ars if a[1] <= slot < a[1] + a[2]), None)

    def first_free(self) -> int | None:
        for _, first, size in self.ars:
            for slot in range(first, first + size):
                if slot not in self.held:
                    return slot
        return None

    def vm_slots(self) -> list[int]:
        return sorted(s for s, h in self.held.items() if h != HOLD)

    # - the system -

    def record(self) -> dict:
        return objects.find(self.z.view(), "vnet", self.vid)

    def command(self) -> dict:
        return {"v": 1, "op": "t", "args": {}, "rid": "r", "uid": 0, "ts": TS}

    def apply(self, mutations: list) -> None:
        self.z.state = write(self.z.state, mutations)

    # - rules -

    @rule(first=st.integers(0, SLOTS - 1), size=st.integers(1, 6))
    def add_ar(self, first: int, size: int) -> None:
        size = min(size, SLOTS - first)
        text = f'AR = [ TYPE = "IP4", IP = "{ip(first)}", SIZE = "{size}" ]'
        clash = any(f < first + size and first < f + s for _, f, s in self.ars)
        result = self.z.do("vnet.add_ar", {"id": self.vid, "template": text})
        assert result["ok"] == (not clash), result
        if clash:
            assert "overlaps" in result["message"]
        else:
            assert result["value"] == {"ar_id": self.next_ar}
            self.ars.append((self.next_ar, first, size))
            self.next_ar += 1

    @precondition(lambda self: self.ars)
    @rule(data=st.data())
    def rm_ar(self, data) -> None:
        ar_id, first, size = data.draw(st.sampled_from(self.ars))
        in_use = any(first <= s < first + size for s in self.held)
        result = self.z.do("vnet.rm_ar", {"id": self.vid, "ar_id": ar_id})
        assert result["ok"] == (not in_use), result
        if not in_use:
            self.ars.remove((ar_id, first, size))

    @rule(vm=st.sampled_from(VMS), slot=st.one_of(st.none(), st.integers(0, SLOTS - 1)))
    def lease(self, vm: int, slot: int | None) -> None:
        before = copy.deepcopy(self.z.state)
        request = {} if slot is None else {"IP": ip(slot)}
        expected = self.first_free() if slot is None else slot
        possible = expected is not None and self.ar_of(expected) and expected not in self.held
        try:
            nic, mutations = vnets.lease_for_vm(
                self.z.view(), self.command(), self.vid, vm, request, owner=(ALICE, USERS_GID)
            )
        except Reject as e:
            assert not possible, e.message
            assert self.z.state == before
            return
        assert possible, nic
        assert nic["IP"] == ip(expected)
        self.apply(mutations)
        self.held[expected] = ("vm", vm)

    @rule(slot=st.integers(0, SLOTS - 1))
    def hold(self, slot: int) -> None:
        possible = self.ar_of(slot) is not None and slot not in self.held
        result = self.z.do("vnet.hold", {"id": self.vid, "ip": ip(slot)})
        assert result["ok"] == possible, result
        if possible:
            self.held[slot] = HOLD

    @rule(slot=st.integers(0, SLOTS - 1))
    def release_hold(self, slot: int) -> None:
        possible = self.held.get(slot) == HOLD
        result = self.z.do("vnet.release", {"id": self.vid, "ip": ip(slot)})
        assert result["ok"] == possible, result
        if possible:
            del self.held[slot]

    @precondition(lambda self: self.vm_slots())
    @rule(data=st.data(), wrong_vm=st.booleans())
    def release_vm(self, data, wrong_vm: bool) -> None:
        slot = data.draw(st.sampled_from(self.vm_slots()))
        vm = self.held[slot][1]
        nic = {"MAC": leases.mac_text((leases.MAC_PREFIX << 32) | (BASE + slot))}
        if wrong_vm:
            try:
                vnets.release_for_vm(self.z.view(), self.vid, vm + 100, nic, owner=(ALICE, 1))
            except Reject as e:
                assert e.code == "ACTION"
                return
            raise AssertionError("released another VM's lease")
        mutations = vnets.release_for_vm(self.z.view(), self.vid, vm, nic, owner=(ALICE, USERS_GID))
        self.apply(mutations)
        del self.held[slot]

    # - invariants -

    @invariant()
    def table_matches_the_model(self) -> None:
        r = self.record()
        seen: dict[int, tuple[str, int]] = {}
        macs, ips = set(), set()
        for ar in r["ars"]:
            for lease in ar["leases"]:
                address = leases.address(ar, lease["index"])
                assert address["MAC"] not in macs and address["IP"] not in ips, address
                macs.add(address["MAC"])
                ips.add(address["IP"])
                seen[leases.ip4_int(address["IP"]) - BASE] = leases.holder(lease)
        assert seen == self.held
        assert r["used_leases"] == len(self.held)
        assert [(a["ar_id"], leases.ip4_int(a["ip"]) - BASE, a["size"]) for a in r["ars"]] == (
            self.ars
        )

    @invariant()
    def quota_counts_live_vm_leases(self) -> None:
        n = len(self.vm_slots())
        for prefix, oid in ((b"u", ALICE), (b"g", USERS_GID)):
            record = self.z.state.get(schema.QUOTAS, {}).get(prefix + schema.id_key(oid)) or {}
            used = record.get("NETWORK", {}).get(str(self.vid), {}).get("LEASES_USED", 0)
            assert used == n


TestLeaseTable = LeaseTable.TestCase
TestLeaseTable.settings = settings(
    max_examples=200,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
