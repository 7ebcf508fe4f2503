"""The leader's group commit rule (RaftReplica._lingering), on a bare state and a clock."""

from types import SimpleNamespace

import pytest

from raftcore import consensus
from raftcore.consensus import LINGER_ENOUGH, LINGER_MIN_BATCH, RaftReplica

LINGER = 0.005


@pytest.fixture
def clock(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(consensus.time, "monotonic", lambda: now[0])
    return now


def leader(**state):
    base = {
        "cfg": SimpleNamespace(batch_linger=LINGER),
        "_last_batch": LINGER_MIN_BATCH,  # the last entry carried concurrent writes
        "_queue": [object()],
        "_inflight": 1,
        "_inflight_since": 100.0,
        "_linger_until": 0.0,
    }
    base.update(state)
    return SimpleNamespace(**base)


def lingering(r) -> bool:
    return RaftReplica._lingering(r)


def test_under_concurrent_writes_the_next_entry_waits_for_the_linger(clock):
    r = leader()
    assert lingering(r) and r._linger_until == pytest.approx(100.0 + LINGER)
    clock[0] += LINGER * 0.9
    assert lingering(r)
    clock[0] += LINGER * 0.2
    assert not lingering(r) and r._linger_until == 0.0


def test_enough_queued_proposals_end_the_wait(clock):
    r = leader()
    assert lingering(r)
    r._queue = [object()] * LINGER_ENOUGH
    assert not lingering(r) and r._linger_until == 0.0


@pytest.mark.parametrize(
    "state",
    [
        {"_last_batch": 1},  # a lone writer
        {"_last_batch": LINGER_MIN_BATCH - 1},  # light concurrency
        {"cfg": SimpleNamespace(batch_linger=0.0)},  # switched off
        {"_inflight": 0, "_inflight_since": 100.0 - 2 * LINGER},  # after a quiet spell
    ],
)
def test_no_wait_without_concurrent_writes(clock, state):
    assert not lingering(leader(**state))


def test_an_entry_just_settled_with_nothing_in_flight_still_gathers(clock):
    assert lingering(leader(_inflight=0, _inflight_since=100.0 - LINGER / 2))


def test_the_leader_proposes_nothing_while_gathering_then_one_entry(clock):
    from collections import deque

    from raftcore.commands import decode_entry

    proposed = []
    r = leader(_inflight=0, _inflight_since=clock[0])  # an entry has just settled
    r._queue = deque(SimpleNamespace(command={"n": i}, size=10) for i in range(5))
    r._engine = SimpleNamespace(
        _isLeader=lambda: True,
        _applyCommand=lambda payload, callback, kind: proposed.append(decode_entry(payload)),
    )
    r._lingering = lambda: RaftReplica._lingering(r)
    r._check_disk = lambda: None
    r._make_callback = lambda batch: None

    RaftReplica._flush_proposals(r)
    assert proposed == [] and len(r._queue) == 5
    clock[0] += LINGER
    RaftReplica._flush_proposals(r)
    assert proposed == [[{"n": i} for i in range(5)]] and not r._queue
    assert r._last_batch == 5 and r._inflight == 1
