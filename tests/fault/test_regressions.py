"""Regression tests for bugs the fault harness found, each named after what it was.

A bug in a layer the harness does not own is pinned here first as a failing test
(``xfail(strict=True)``) until it is fixed in that layer; then the mark goes.
"""

from __future__ import annotations

import grpc
import pytest

from fault.nemesis import DISK_MIN_FREE_BYTES, Nemesis, Step
from fault.recorder import wait_writable
from zones.api.gen import common_pb2, kv_pb2, zone_pb2
from zones.lab import Lab

pytestmark = pytest.mark.cluster


@pytest.mark.fault_timeout(120)
def test_lab_add_frontend_to_a_one_server_zone_keeps_it_writable(tmp_path):
    # Lab.add_frontend() sent ServerAdd before starting the new front-end: in a one-server
    # zone the change needs the new server's ack (2 of 2), ServerAdd timed out, the new
    # front-end never started and the zone had no leader for good (fixed in b65a89b).
    with Lab(tmp_path / "zone", frontends=1, fault_injection=True) as lab:
        assert wait_writable(lab, 10) > 0
        added = lab.add_frontend(timeout=15)
        assert lab.running(added)
        assert wait_writable(lab, 10) > 0


@pytest.mark.fault_timeout(120)
def test_server_del_refused_for_a_full_disk_leaves_the_server_in_the_zone(tmp_path):
    lab = Lab(
        tmp_path / "zone",
        frontends=3,
        fault_injection=True,
        raft_overrides={"min_free_bytes": DISK_MIN_FREE_BYTES},
    )
    nemesis = Nemesis(lab)
    try:
        lab.up()
        nemesis.setup(["disk"])  # every data dir on a small tmpfs
        leader = lab.leader_index()
        victim = (leader + 1) % 3
        full = nemesis.inject(Step(0.0, "disk", {"target": "leader", "pick": 0, "duration": 1}))
        assert full.targets == [leader], full.description
        try:
            lab.client(leader).zone.ServerDel(
                zone_pb2.ServerDelRequest(id=lab.frontend(victim).id, request_id="del-1"),
                timeout=10,
            )
            deleted = True
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e.details()
            deleted = False
        nemesis.heal(full)
        index = wait_writable(lab, 10)
        info = lab.client(leader).zone.Info(zone_pb2.ZoneInfoRequest(), timeout=5)
        listed = lab.frontend(victim).id in [s.id for s in info.servers]
        assert listed != deleted
        if listed:
            # Still in the zone: it must still get every entry.
            lab.client(victim).kv.Get(
                kv_pb2.GetRequest(
                    key="fault-probe", options=common_pb2.ReadOptions(min_index=index)
                ),
                timeout=5,
            )
    finally:
        lab.down()
        nemesis.cleanup()


@pytest.mark.fault_timeout(150)
def test_whole_zone_restart_after_two_membership_changes_elects_a_leader(tmp_path):
    with Lab(tmp_path / "zone", frontends=3, fault_injection=True) as lab:
        wait_writable(lab, 10)
        leader = lab.leader_index()
        # Replace both original followers, one at a time, with new servers.
        for victim in [i for i in range(3) if i != leader]:
            lab.client(leader).zone.ServerDel(
                zone_pb2.ServerDelRequest(id=lab.frontend(victim).id), timeout=10
            )
            lab.kill(victim)
            lab.add_frontend(timeout=20)
            wait_writable(lab, 10)
        members = [i for i in range(lab.n) if lab.running(i)]
        assert len(members) == 3
        nemesis = Nemesis(lab)
        restart = nemesis.inject(Step(0.0, "restart", {"pick": 0, "duration": 0.2}))
        assert sorted(restart.targets) == members
        nemesis.heal(restart)
        assert wait_writable(lab, 30) > 0
