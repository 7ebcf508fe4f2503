"""LocalReplica: the in-process Replica used by API tests."""

import threading

import pytest

from raftcore.commands import make_command, ok
from raftcore.errors import Unavailable
from raftcore.fake import LocalReplica
from raftcore.replica import ROLE_LEADER
from raftcore.store import Store


@pytest.fixture
def replica(tmp_path):
    store = Store(str(tmp_path / "state"), map_size=64 << 20)
    yield LocalReplica(store, server_id=3)
    store.close()


def put(key, rid):
    return make_command("kv.put", {"key": key, "value": b"v"}, rid=rid, uid=0, ts_ms=1)


def test_propose_assigns_increasing_indexes(replica):
    assert replica.propose(put("a", "r1")) == (1, ok({"index": 1}))
    assert replica.propose(put("b", "r2")) == (2, ok({"index": 2}))
    # A retried rid is a new log entry but returns the first result.
    assert replica.propose(put("a", "r1")) == (3, ok({"index": 1}))
    with replica.read() as view:
        assert view.applied_index == 3
        assert view.get("kv", b"a")["rev"] == 1


def test_propose_invalid_command_gives_error_result(replica):
    index, result = replica.propose({"op": "kv.put"})
    assert index == 1 and result["code"] == "BAD_REQUEST"


def test_concurrent_proposals_get_distinct_indexes(replica):
    out = []
    lock = threading.Lock()

    def worker(n):
        for i in range(20):
            res = replica.propose(put(f"k{n}-{i}", f"r{n}-{i}"))
            with lock:
                out.append(res[0])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == list(range(1, 81))


def test_read_min_index(replica):
    replica.propose(put("a", "r1"))
    with replica.read("linearizable", min_index=1) as view:
        assert view.get("kv", b"a") is not None
    with pytest.raises(Unavailable, match="not applied"), replica.read(min_index=5, timeout=0.01):
        pass
    with pytest.raises(ValueError), replica.read("eventual"):
        pass


def test_status_and_roles(replica):
    replica.propose(put("a", "r1"))
    st = replica.status()
    assert st.role == ROLE_LEADER and st.server_id == 3
    assert st.applied_index == st.commit_index == st.log_index == 1
    assert replica.is_leader()
    assert replica.leader() == st.leader == replica.leader_id()
    calls = []
    replica.subscribe_role(lambda role, term: calls.append((role, term)))
    assert calls == [("leader", 1)]


def test_membership_unsupported(replica):
    with pytest.raises(Unavailable):
        replica.add_server("h:1")
    with pytest.raises(Unavailable):
        replica.remove_server("h:1")


def test_closed(replica):
    replica.close()
    with pytest.raises(Unavailable):
        replica.propose(put("a", "r1"))
