"""The consensus adapter against real PySyncObj nodes in one process."""

import threading

import pytest

from raftcore.errors import Ambiguous, NotLeader, Unavailable
from tests.cluster.raftkit import Cluster, put, wait_for


@pytest.fixture
def cluster3(tmp_path):
    c = Cluster(str(tmp_path), 3)
    yield c
    c.close()


def kv(replica, key):
    with replica.read() as view:
        return view.get("kv", key.encode())


def test_writes_replicate_and_retried_request_id_applies_once(cluster3):
    leader = cluster3.replicas[cluster3.leader()]
    index1, result1 = leader.propose(put("a", b"1", rid="same"))
    index2, result2 = leader.propose(put("a", b"2", rid="same"))
    assert result1 == result2 and result1["ok"]
    assert index2 > index1
    for r in cluster3.replicas:
        wait_for(lambda r=r: r.store.applied_index >= index2, what="apply on every server")
        assert kv(r, "a")["value"] == b"1"


def test_no_acknowledgement_leaves_before_its_entries_are_synced(tmp_path):
    c = Cluster(str(tmp_path), 3)
    try:
        for r in c.replicas:
            r.trace_acks()
        leader = c.replicas[c.leader()]
        for i in range(60):
            leader.propose(put(f"k{i}"))
        traces = [r.ack_trace for r in c.replicas if r is not leader]
        assert sum(len(t) for t in traces) > 0
        for trace in traces:
            assert all(acked <= synced for acked, synced in trace), trace
    finally:
        c.close()


def test_the_ack_trace_catches_an_ack_sent_before_sync(tmp_path):
    """Proves the test above can fail: with the hold removed, acks overtake the fsync."""
    c = Cluster(str(tmp_path), 3)
    try:
        leader_i = c.leader()
        for i in range(3):
            if i != leader_i:
                c.stop(i)
                c.start(i, unsafe_no_hold=True).trace_acks()
        leader = c.replicas[c.leader()]
        for i in range(60):
            leader.propose(put(f"k{i}"))
        violations = [
            (a, s) for r in c.replicas if r is not leader for a, s in (r.ack_trace or []) if a > s
        ]
        assert violations
    finally:
        c.close()


def test_follower_never_truncates_entries_it_holds_when_leader_resends_a_prefix(cluster3):
    leader_i = cluster3.leader()
    leader = cluster3.replicas[leader_i]
    for i in range(50):
        leader.propose(put(f"k{i}"))
    follower_i = (leader_i + 1) % 3
    follower = cluster3.replicas[follower_i]
    wait_for(lambda: follower.store.applied_index >= leader.store.applied_index)
    truncations = []
    original = follower.journal.deleteEntriesFrom

    def spy(pos):
        truncations.append(pos)
        original(pos)

    follower.journal.deleteEntriesFrom = spy
    length_before = len(follower.journal)
    engine = leader._engine
    node = next(n for n in engine.otherNodes if n.address == cluster3.addrs[follower_i])

    def rewind():
        engine._SyncObj__raftNextIndex[node] = 5

    leader._actions.append(rewind)
    leader._wake()
    leader.propose(put("after-rewind"))
    wait_for(lambda: kv(follower, "after-rewind") is not None, what="follower catches up")
    assert truncations == []
    assert len(follower.journal) >= length_before


def test_linearizable_read_is_refused_by_a_deposed_leader(cluster3):
    old = cluster3.leader()
    rest = [i for i in range(3) if i != old]
    cluster3.partition([old], rest)
    wait_for(lambda: all(r.gate.blocked for r in cluster3.replicas), what="partition in force")
    new = cluster3.leader(among=rest)
    cluster3.replicas[new].propose(put("fresh", b"new"))
    with pytest.raises((Unavailable, NotLeader)):
        with cluster3.replicas[old].read("linearizable", timeout=2.0):
            pass
    with cluster3.replicas[new].read("linearizable") as view:
        assert view.get("kv", b"fresh")["value"] == b"new"
    cluster3.heal()


def test_no_success_for_a_write_lost_in_a_minority_partition_healed_by_snapshot(tmp_path):
    """DESIGN.md's scenario: old leader + follower cut off, write through them, the majority
    commits past a compaction, heal. PySyncObj as shipped reports SUCCESS for the write."""
    c = Cluster(str(tmp_path), 5, snapshot_min_entries=40)
    try:
        old = c.leader()
        buddy = (old + 1) % 5
        minority = [old, buddy]
        majority = [i for i in range(5) if i not in minority]
        c.replicas[old].propose(put("before"))
        applied_lost = []
        for i in minority:
            store = c.replicas[i].store
            original = store.apply_entry

            def spy(index, payload, original=original, i=i):
                results = original(index, payload)
                if results is not None and b"lost" in payload:
                    applied_lost.append((i, index))
                return results

            store.apply_entry = spy
        c.partition(minority, majority)
        wait_for(lambda: all(r.gate.blocked for r in c.replicas), what="partition in force")
        outcome = {}

        def write_through_old_leader():
            try:
                outcome["result"] = c.replicas[old].propose(put("lost", b"x"), timeout=20.0)
            except Exception as e:  # noqa: BLE001 - the outcome is what the test checks
                outcome["error"] = e

        t = threading.Thread(target=write_through_old_leader)
        t.start()
        wait_for(
            lambda: (
                len(c.replicas[buddy].journal)
                and any(b"lost" in e[0] for e in c.replicas[buddy].journal[-3:])
            ),
            what="buddy holds it",
        )
        new = c.leader(among=majority)
        for i in range(150):
            c.replicas[new].propose(put(f"m{i}"))
        wait_for(lambda: c.replicas[new].journal[0][1] > 10, what="majority compacts its log")
        c.heal()
        t.join(timeout=30)
        assert "result" not in outcome, f"client saw success for a lost write: {outcome}"
        assert applied_lost == [], "a server applied an entry the majority never committed"
        assert isinstance(outcome["error"], Ambiguous | Unavailable | NotLeader)
        final = c.replicas[new].store.applied_index
        for r in c.replicas:
            wait_for(lambda r=r: r.store.applied_index >= final, timeout=15, what="catch up")
            assert kv(r, "lost") is None
            assert kv(r, "m149") is not None
    finally:
        c.close()


def test_lagging_server_catches_up_by_snapshot_after_restart(tmp_path):
    c = Cluster(str(tmp_path), 3, snapshot_min_entries=30)
    try:
        leader_i = c.leader()
        lagging = (leader_i + 1) % 3
        c.stop(lagging)
        leader = c.replicas[leader_i]
        for i in range(120):
            leader.propose(put(f"k{i}"))
        wait_for(lambda: leader.journal[0][1] > 10, what="leader compacts")
        r = c.start(lagging)
        wait_for(lambda: kv(r, "k119") is not None, timeout=15, what="snapshot catch-up")
        assert r.store.applied_index >= leader.journal[0][1]
    finally:
        c.close()


def test_proposal_on_a_follower_names_the_leader(cluster3):
    leader_i = cluster3.leader()
    follower = cluster3.replicas[(leader_i + 1) % 3]
    wait_for(lambda: follower.leader() is not None, what="follower knows the leader")
    with pytest.raises(NotLeader) as err:
        follower.propose(put("x"))
    assert err.value.leader == cluster3.addrs[leader_i]


def test_a_joining_server_does_not_campaign_until_caught_up(tmp_path):
    c = Cluster(str(tmp_path), 3, snapshot_min_entries=300)
    try:
        leader = c.replicas[c.leader()]
        for i in range(400):
            leader.propose(put(f"k{i}"))
        new = c.add()
        joiner = c.replicas[new]
        roles = []
        joiner.subscribe_role(lambda role, _term: roles.append(role))
        assert joiner.catching_up
        # Even with its election timer expired, a joiner behind the zone stays a follower.
        joiner._actions.append(lambda: setattr(joiner._engine, "_SyncObj__raftElectionDeadline", 0))
        wait_for(lambda: not joiner.catching_up, timeout=15, what="the joiner catches up")
        assert "candidate" not in roles and "leader" not in roles
        assert kv(joiner, "k399") is not None
        leader.propose(put("after-join"))
        wait_for(lambda: kv(joiner, "after-join") is not None, what="the joiner follows")
    finally:
        c.close()


def test_concurrent_writers_share_entries_and_every_write_commits(tmp_path):
    # Long election timeouts: 32 writer threads share the interpreter with three servers.
    c = Cluster(
        str(tmp_path), 3, batch_linger=0.01, election_timeout_min=1.0, election_timeout_max=2.0
    )
    try:
        leader = c.replicas[c.leader()]
        start = leader.store.applied_index
        errors: list[Exception] = []
        done: dict[str, int] = {}

        def writer(w: int) -> None:
            for i in range(8):
                key = f"w{w}/{i}"
                try:
                    done[key] = leader.propose(put(key))[0]
                except Exception as e:  # noqa: BLE001 - collected for the assertion
                    errors.append(e)

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(32)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors and len(done) == 256
        # Concurrent writes are packed: far fewer log entries than writes (the linger
        # rule itself: tests/unit/test_group_commit.py).
        assert max(done.values()) - start < 256 // 4
        for r in c.replicas:
            wait_for(lambda r=r: r.store.applied_index >= max(done.values()), what="apply")
            assert all(kv(r, key) for key in done)
    finally:
        c.close()


def test_propose_many_refuses_only_the_commands_it_cannot_encode(cluster3):
    leader = cluster3.replicas[cluster3.leader()]
    settled = []
    got = threading.Event()

    def sink(pendings):
        settled.extend(pendings)
        got.set()

    bad = put("bad")
    bad["args"]["value"] = object()
    refused = leader.propose_many([("good", put("good"), None), ("bad", bad, None)], sink)
    assert [(tag, type(e)) for tag, e in refused] == [("bad", ValueError)]
    assert got.wait(10)
    assert [p.tag for p in settled] == ["good"]
    assert settled[0].outcome()[1]["ok"]
    follower = next(r for r in cluster3.replicas if r is not leader)
    with pytest.raises(NotLeader):
        follower.propose_many([("x", put("x"), None)], sink)
