"""The nemesis: deterministic schedules, partition files, and faults that really happen."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from fault.nemesis import (
    KINDS,
    Nemesis,
    Step,
    fault_file,
    group_members,
    lanes_of,
    make_schedule,
    partition_groups,
    process_state,
)
from fault.recorder import wait_writable
from zones.lab import Lab

# --- schedules (no processes) -----------------------------------------------------------


def test_same_seed_gives_the_same_schedule():
    a = make_schedule(7, KINDS, 60, frontends=3)
    b = make_schedule(7, list(KINDS), 60, frontends=3)
    assert a == b
    assert [s.as_tuple() for s in a] == [s.as_tuple() for s in b]
    assert len(a) >= 5


def test_different_seeds_give_different_schedules():
    schedules = {repr([s.as_tuple() for s in make_schedule(seed, KINDS, 60)]) for seed in range(10)}
    assert len(schedules) == 10


def test_schedule_fits_the_run_and_faults_do_not_overlap():
    for seed in range(20):
        steps = make_schedule(seed, ["kill", "pause", "partition"], 30, frontends=5)
        end = 0.0
        for step in steps:
            assert step.kind in ("kill", "pause", "partition")
            assert step.at >= end, "a fault starts before the previous one is healed"
            end = step.at + step.params["duration"]
            assert end <= 30
        if steps:
            assert steps[0].at == 1.0


def test_every_kind_has_its_parameters():
    steps = make_schedule(3, KINDS, 600, frontends=3)
    kinds = {s.kind for s in steps}
    assert kinds == set(KINDS)
    for s in steps:
        if s.kind == "pause":
            # Longer than the maximum election timeout (0.5 s): another leader takes over.
            assert 1.0 <= s.params["duration"] <= 3.0
        if s.kind == "partition":
            assert s.params["pattern"] != "ring", "a ring of 3 front-ends is fully connected"
        if s.kind == "kill":
            assert s.params["mode"] in ("leader", "random", "majority")


def test_lanes_overlap_and_lane_zero_is_the_one_lane_schedule():
    one = make_schedule(5, KINDS, 60, frontends=5)
    two = make_schedule(5, KINDS, 60, frontends=5, lanes=2)
    assert two == make_schedule(5, KINDS, 60, frontends=5, lanes=2)
    lane0, lane1 = lanes_of(two)
    assert [(s.at, s.kind, {k: v for k, v in s.params.items() if k != "lane"}) for s in lane0] == [
        (s.at, s.kind, s.params) for s in one
    ]
    assert lane1 and all(s.params["lane"] == 1 for s in lane1)
    assert [s.at for s in two] == sorted(s.at for s in two)
    overlaps = [
        (a, b)
        for a in lane0
        for b in lane1
        if a.at < b.at + b.params["duration"] and b.at < a.at + a.params["duration"]
    ]
    assert overlaps, "two lanes should overlap somewhere in 60 s"


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown nemesis kind"):
        make_schedule(1, ["kill", "meteor"], 10)


# --- partitions (files only) ------------------------------------------------------------


def _blocked_sets(pattern, members, leader=None, pick=1):
    return {m: set(b) for m, b in partition_groups(pattern, members, leader, pick).items()}


def test_partition_patterns():
    assert _blocked_sets("isolate-leader", [0, 1, 2], leader=1) == {0: {1}, 1: {0, 2}, 2: {1}}
    for pick in range(10):
        mm = _blocked_sets("majority-minority", [0, 1, 2, 3, 4], pick=pick)
        minority = [m for m, b in mm.items() if len(b) == 3]
        majority = [m for m, b in mm.items() if len(b) == 2]
        assert len(minority) == 2 and len(majority) == 3
        bridge = _blocked_sets("bridge", [0, 1, 2], pick=pick)
        assert sorted(len(b) for b in bridge.values()) == [0, 1, 1]
        ring = _blocked_sets("ring", [0, 1, 2, 3, 4], pick=pick)
        assert all(len(b) == 2 for b in ring.values())
        for m, b in ring.items():  # symmetric
            assert all(m in ring[o] for o in b)


def test_partition_files_list_the_raft_addresses_to_drop(tmp_path):
    fes = [
        SimpleNamespace(data_dir=str(tmp_path / f"fe{i}" / "data"), raft=f"127.0.0.1:{7000 + i}")
        for i in range(3)
    ]
    lab = SimpleNamespace(fes=fes)
    nemesis = Nemesis(lab)
    nemesis.apply_partition(partition_groups("isolate-leader", [0, 1, 2], 2, 0))
    assert fault_file(lab, 2).read_text() == "127.0.0.1:7000\n127.0.0.1:7001\n"
    assert fault_file(lab, 0).read_text() == "127.0.0.1:7002\n"
    assert fault_file(lab, 1).read_text() == "127.0.0.1:7002\n"
    assert str(fault_file(lab, 0)) == os.path.join(fes[0].data_dir, "fault", "blocked")
    fault = nemesis.inject(Step(0.0, "partition", {"pattern": "bridge", "pick": 3, "duration": 1}))
    assert fault.error is None, fault.error
    assert sum(fault_file(lab, i).exists() for i in range(3)) == 2  # the middle drops nothing
    nemesis.heal(fault)
    assert not any(fault_file(lab, i).exists() for i in range(3))


# --- real front-ends --------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(tmp_path_factory.mktemp("nemesis") / "zone", frontends=3, fault_injection=True) as z:
        yield z


def _pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return process_state(pid) == "Z"


@pytest.mark.cluster
@pytest.mark.fault_timeout(90)
def test_kill_kills_the_leader_and_heal_brings_it_back(lab):
    nemesis = Nemesis(lab)
    leader = lab.leader_index()
    pid = lab.frontend(leader).pid
    fault = nemesis.inject(Step(0.0, "kill", {"mode": "leader", "pick": 0, "duration": 1}))
    assert fault.error is None, fault.error
    assert fault.targets == [leader]
    assert _pid_gone(pid)
    assert not lab.running(leader)
    assert lab.leader_index(exclude=(leader,)) != leader
    nemesis.heal(fault)
    assert lab.running(leader) and lab.frontend(leader).pid != pid
    lab.wait_serving(leader)
    assert wait_writable(lab, 20) > 0


@pytest.mark.cluster
@pytest.mark.fault_timeout(90)
def test_restart_kills_every_frontend_and_heal_restarts_them(lab):
    nemesis = Nemesis(lab)
    pids = [fe.pid for fe in lab.fes]
    fault = nemesis.inject(Step(0.0, "restart", {"pick": 0, "duration": 0.2}))
    assert fault.error is None, fault.error
    assert all(_pid_gone(p) for p in pids)
    nemesis.heal(fault)
    assert all(lab.running(i) for i in range(3))
    assert wait_writable(lab, 30) > 0


@pytest.mark.cluster
@pytest.mark.fault_timeout(90)
@pytest.mark.parametrize("scope", ["frontend", "raft"])
def test_pause_stops_the_frontend_and_heal_continues_it(lab, scope):
    nemesis = Nemesis(lab)
    leader = lab.leader_index()
    pid = lab.frontend(leader).pid
    group = group_members(pid)
    assert pid in group and len(group) >= 2, "oned and its API worker share a process group"
    step = Step(0.0, "pause", {"target": "leader", "scope": scope, "pick": 0, "duration": 1})
    fault = nemesis.inject(step)
    try:
        assert fault.targets == [leader]
        assert process_state(pid) == "T"
        others = [process_state(p) for p in group if p != pid]
        if scope == "frontend":
            assert others and all(s == "T" for s in others), others
        else:
            assert others and all(s != "T" for s in others), others
        # Another front-end takes over while it is stopped.
        assert lab.leader_index(timeout=10, exclude=(leader,)) != leader
    finally:
        nemesis.heal(fault)
    assert all(process_state(p) != "T" for p in group)
    assert wait_writable(lab, 20) > 0


@pytest.mark.cluster
@pytest.mark.fault_timeout(90)
def test_isolating_the_leader_elects_another_and_heal_removes_the_files(lab):
    nemesis = Nemesis(lab)
    leader = lab.leader_index()
    fault = nemesis.inject(
        Step(0.0, "partition", {"pattern": "isolate-leader", "pick": 0, "duration": 1})
    )
    try:
        assert fault.error is None, fault.error
        blocked = fault_file(lab, leader).read_text().split()
        assert sorted(blocked) == sorted(lab.frontend(i).raft for i in range(3) if i != leader)
        new = lab.leader_index(timeout=10, exclude=(leader,))
        assert new != leader
    finally:
        nemesis.heal(fault)
    assert not any(fault_file(lab, i).exists() for i in range(3))
    assert wait_writable(lab, 20) > 0


@pytest.mark.cluster
@pytest.mark.fault_timeout(120)
def test_membership_removes_a_follower_and_adds_a_new_server(lab):
    nemesis = Nemesis(lab)
    before = len(lab.fes)
    fault = nemesis.inject(
        Step(0.0, "membership", {"target": "follower", "pick": 0, "duration": 1})
    )
    assert fault.error is None, fault.error
    (victim,) = fault.targets
    assert victim in nemesis.removed and not lab.running(victim)
    nemesis.heal(fault)
    assert fault.error is None, fault.error
    assert len(lab.fes) == before + 1
    added = fault.params["added"]
    assert lab.frontend(added).id not in [lab.frontend(i).id for i in range(before)]
    assert victim not in nemesis.members() and added in nemesis.members()
    assert wait_writable(lab, 20) > 0
