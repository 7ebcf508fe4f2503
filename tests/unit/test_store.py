"""The LMDB store: exactly-once apply, dedupe, pruning, MVCC reads, snapshots."""

import os
import threading

import lmdb
import pytest

from raftcore import schema
from raftcore.codec import packb
from raftcore.commands import encode_entry, ok
from raftcore.store import DEDUPE_RETENTION_MS, Store, StoreError

MINUTE = 60_000


def put(key, value, rid, ts=1_000, uid=0):
    return {
        "v": 1,
        "op": "kv.put",
        "args": {"key": key, "value": value},
        "rid": rid,
        "uid": uid,
        "ts": ts,
    }


def delete(key, rid, ts=1_000):
    return {"v": 1, "op": "kv.delete", "args": {"key": key}, "rid": rid, "uid": 0, "ts": ts}


def dump(store):
    with store.read() as view:
        return {db: list(view.iter(db)) for db in schema.DBS}


def kv(store):
    with store.read() as view:
        return {k.decode(): v["value"] for k, v in view.iter("kv")}


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state"), map_size=64 << 20)
    yield s
    s.close()


def test_fresh_store(store):
    assert store.applied_index == 0
    assert dump(store) == {db: [] for db in schema.DBS}


def test_apply_and_read(store):
    assert store.apply_entry(1, encode_entry([put("a", b"1", "r1")])) == [ok({"index": 1})]
    assert store.applied_index == 1
    with store.read() as view:
        assert view.applied_index == 1
        assert view.get("kv", b"a") == {"value": b"1", "rev": 1}
        assert view.get("kv", b"zz") is None
        assert view.get("meta", schema.APPLIED_KEY) == 1


def test_exactly_once_replay(store):
    store.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
    before = dump(store)
    assert store.apply_entry(1, encode_entry([put("a", b"2", "r2")])) is None
    assert store.apply_entry(0, encode_entry([put("b", b"2", "r3")])) is None
    assert dump(store) == before
    assert store.applied_index == 1


def test_applied_index_survives_reopen(tmp_path):
    path = str(tmp_path / "s")
    with Store(path, map_size=64 << 20) as s:
        s.apply_entry(5, encode_entry([put("a", b"1", "r1")]))
        s.sync()
    with Store(path, map_size=64 << 20) as s:
        assert s.applied_index == 5
        assert s.apply_entry(5, encode_entry([put("a", b"2", "r2")])) is None
        assert kv(s) == {"a": b"1"}


def test_dedupe_returns_first_result_without_reapplying(store):
    first = store.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
    store.apply_entry(2, encode_entry([put("a", b"2", "r2")]))
    # Retrying r1 later must not overwrite a=2 and must return the index-1 result.
    again = store.apply_entry(3, encode_entry([put("a", b"1", "r1")]))
    assert again == first == [ok({"index": 1})]
    assert kv(store) == {"a": b"2"}
    assert store.applied_index == 3
    with store.read() as view:
        assert view.get("dedupe", b"r1") == {
            "index": 1,
            "result": ok({"index": 1}),
            "ts": 1_000,
            "uid": 0,
            "op": "kv.put",
        }
        assert view.get("dedupe_ts", schema.dedupe_ts_key(1_000, "r1")) == b""


def test_dedupe_records_error_results_too(store):
    bad = put("", b"1", "r1")
    first = store.apply_entry(1, encode_entry([bad]))
    assert first[0]["code"] == "BAD_REQUEST"
    # Even with a now-valid command the rid answers with its first result.
    assert store.apply_entry(2, encode_entry([put("a", b"1", "r1")])) == first
    assert kv(store) == {}


def test_rid_reused_by_another_command_is_refused(store):
    store.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
    res = store.apply_entry(2, encode_entry([delete("a", "r1")]))
    assert res[0]["code"] == "BAD_REQUEST" and "already used" in res[0]["message"]
    res = store.apply_entry(3, encode_entry([put("a", b"1", "r1", uid=7)]))
    assert res[0]["code"] == "BAD_REQUEST"
    assert kv(store) == {"a": b"1"}


def test_several_commands_in_one_entry_see_each_other(store):
    cmds = [
        put("a", b"1", "r1"),
        delete("a", "r2"),  # sees the put above
        delete("a", "r3"),  # sees the delete above
        put("a", b"1", "r1"),  # same rid in the same entry: deduped
        {
            "v": 1,
            "op": "zone.bootstrap",
            "args": {"name": "z", "servers": [{"name": "s0", "raft": "h:1", "grpc": "h:2"}]},
            "rid": "r4",
            "uid": -1,
            "ts": 1,
        },
        {
            "v": 1,
            "op": "zone.server_add",
            "args": {"name": "s1", "raft": "h:3", "grpc": "h:4"},
            "rid": "r5",
            "uid": -1,
            "ts": 1,
        },
    ]
    res = store.apply_entry(1, encode_entry(cmds))
    assert res == [
        ok({"index": 1}),
        ok({"deleted": True, "index": 1}),
        ok({"deleted": False, "index": 1}),
        ok({"index": 1}),
        ok({"id": 0}),
        ok({"id": 1}),
    ]
    assert kv(store) == {}


def test_malformed_entry_advances_the_index(store):
    res = store.apply_entry(1, b"\xc1garbage")
    assert (
        len(res) == 1 and res[0]["code"] == "BAD_REQUEST" and "malformed entry" in res[0]["message"]
    )
    assert store.applied_index == 1
    assert store.apply_entry(2, packb({"v": 9, "cmds": []}))[0]["code"] == "BAD_REQUEST"
    assert store.applied_index == 2
    assert store.apply_entry(3, encode_entry([])) == []
    assert store.applied_index == 3
    assert kv(store) == {}


def test_invalid_command_in_entry_fails_alone(store):
    cmds = [put("a", b"1", "r1"), {"v": 1, "op": "kv.put"}, "junk", put("b", b"2", "r2")]
    res = store.apply_entry(1, encode_entry(cmds))
    assert res[0] == ok({"index": 1}) and res[3] == ok({"index": 1})
    assert res[1]["code"] == "BAD_REQUEST" and "missing field 'args'" in res[1]["message"]
    assert res[2]["code"] == "BAD_REQUEST" and "must be a map" in res[2]["message"]
    assert kv(store) == {"a": b"1", "b": b"2"}
    with store.read() as view:  # no dedupe record for commands that were never valid
        assert len(list(view.iter("dedupe"))) == 2


def test_pruning_drops_old_dedupe_records(store):
    store.apply_entry(1, encode_entry([put("a", b"1", "old", ts=0)]))
    store.apply_entry(2, encode_entry([put("b", b"1", "mid", ts=10 * MINUTE)]))
    # 15 minutes after "old" (exactly at the retention boundary): still kept.
    store.apply_entry(3, encode_entry([put("c", b"1", "r3", ts=DEDUPE_RETENTION_MS)]))
    with store.read() as view:
        assert view.get("dedupe", b"old") is not None
    store.apply_entry(4, encode_entry([put("c", b"1", "r4", ts=DEDUPE_RETENTION_MS + 1)]))
    with store.read() as view:
        assert view.get("dedupe", b"old") is None
        assert view.get("dedupe_ts", schema.dedupe_ts_key(0, "old")) is None
        assert view.get("dedupe", b"mid") is not None
    # Pruned: a retry of "old" is a new command now (applied again at index 5).
    assert store.apply_entry(
        5, encode_entry([put("a", b"2", "old", ts=DEDUPE_RETENTION_MS + 2)])
    ) == [ok({"index": 5})]
    assert kv(store)["a"] == b"2"


def test_pruning_is_bounded_per_entry(store):
    old = [put(f"k{i}", b"", f"old{i}", ts=i) for i in range(150)]
    store.apply_entry(1, encode_entry(old))
    late = DEDUPE_RETENTION_MS * 10
    store.apply_entry(2, encode_entry([put("x", b"", "n1", ts=late)]))  # prunes 2*1+64 = 66

    def count():
        with store.read() as view:
            return len(list(view.iter("dedupe"))), len(list(view.iter("dedupe_ts")))

    assert count() == (150 - 66 + 1, 150 - 66 + 1)
    with store.read() as view:  # oldest first
        assert view.get("dedupe", b"old65") is None and view.get("dedupe", b"old66") is not None
    store.apply_entry(3, encode_entry([put("x", b"", "n2", ts=late)]))
    assert count() == (150 - 132 + 2, 150 - 132 + 2)
    store.apply_entry(4, encode_entry([put("x", b"", "n3", ts=late)]))
    assert count() == (3, 3)


def test_read_views_are_isolated_from_later_writes(store):
    store.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
    with store.read() as view:
        store.apply_entry(2, encode_entry([put("a", b"2", "r2"), put("b", b"2", "r3")]))
        assert view.applied_index == 1
        assert view.get("kv", b"a")["value"] == b"1"
        assert [k for k, _ in view.iter("kv")] == [b"a"]
    assert kv(store) == {"a": b"2", "b": b"2"}


def test_iter_prefix_and_order(store):
    cmds = [put(k, b"", f"r{k}") for k in ("ab", "b", "aa", "a", "abc")]
    store.apply_entry(1, encode_entry(cmds))
    with store.read() as view:
        assert [k for k, _ in view.iter("kv")] == [b"a", b"aa", b"ab", b"abc", b"b"]
        assert [k for k, _ in view.iter("kv", b"ab")] == [b"ab", b"abc"]
        assert list(view.iter("kv", b"zz")) == []


def test_map_full_raises_store_error_and_writes_nothing(tmp_path):
    with Store(str(tmp_path / "s"), map_size=1 << 20) as s:
        s.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
        before = dump(s)
        big = [put(f"k{i}", b"x" * 200_000, f"b{i}") for i in range(8)]
        with pytest.raises(StoreError, match="entry 2"):
            s.apply_entry(2, encode_entry(big))
        assert s.applied_index == 1
        assert dump(s) == before
        # The caller retries; a smaller entry at the same index then goes through.
        assert s.apply_entry(2, encode_entry([put("b", b"2", "r2")])) == [ok({"index": 2})]


def test_wait_applied(store):
    assert store.wait_applied(0, timeout=0)
    assert not store.wait_applied(1, timeout=0.01)
    started = threading.Event()
    got = []

    def waiter():
        started.set()
        got.append(store.wait_applied(2, timeout=10))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait()
    store.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
    store.apply_entry(2, encode_entry([put("a", b"1", "r2")]))
    t.join(timeout=10)
    assert got == [True]


def test_copy_from_another_thread_and_install(tmp_path, store):
    store.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
    store.apply_entry(2, encode_entry([put("b", b"2", "r2")]))
    copier = store.begin_copy()
    assert copier.applied_index == 2
    at_copy = dump(store)
    store.apply_entry(3, encode_entry([put("c", b"3", "r3"), delete("a", "r4")]))
    out = []
    # The read txn was begun on this thread; py-lmdb's MDB_NOTLS lets another use it.
    t = threading.Thread(target=lambda: out.append(copier.copy(str(tmp_path / "snap"))))
    t.start()
    t.join(timeout=10)
    copier.close()
    assert out == [2]
    assert os.listdir(tmp_path / "snap") == ["data.mdb"]

    with Store(str(tmp_path / "other"), map_size=64 << 20) as other:
        other.apply_entry(1, encode_entry([put("zzz", b"9", "x1")]))
        other.install(str(tmp_path / "snap"))
        assert other.applied_index == 2
        assert dump(other) == at_copy  # whole state replaced, including dedupe records
        assert other.apply_entry(2, encode_entry([put("q", b"", "q")])) is None
        assert other.apply_entry(3, encode_entry([put("c", b"3", "r3"), delete("a", "r4")]))
        assert dump(other) == dump(store)


def test_copier_keeps_its_state_across_an_install(tmp_path, store):
    store.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
    with Store(str(tmp_path / "src"), map_size=64 << 20) as src:
        src.apply_entry(7, encode_entry([put("a", b"new", "n1")]))
        with src.begin_copy() as c:
            c.copy(str(tmp_path / "snap"))
    copier = store.begin_copy()
    store.install(str(tmp_path / "snap"))
    assert copier.copy(str(tmp_path / "snap2")) == 1
    copier.close()
    with Store(str(tmp_path / "snap2"), map_size=64 << 20) as old:
        assert kv(old) == {"a": b"1"}


def test_install_is_in_place_and_readers_keep_their_view(tmp_path, store):
    store.apply_entry(1, encode_entry([put("a", b"old", "r1"), put("gone", b"x", "r2")]))
    with Store(str(tmp_path / "src"), map_size=64 << 20) as src:
        src.apply_entry(7, encode_entry([put("a", b"new", "n1")]))
        with src.begin_copy() as c:
            c.copy(str(tmp_path / "snap"))
    data = os.path.join(store.path, "data.mdb")
    inode = os.stat(data).st_ino
    with store.read() as view:
        store.install(str(tmp_path / "snap"))  # does not wait for the open read
        assert view.get("kv", b"a")["value"] == b"old"
        assert view.applied_index == 1
    assert os.stat(data).st_ino == inode  # other processes' environments stay valid
    assert store.applied_index == 7
    assert kv(store) == {"a": b"new"}
    assert store.apply_entry(7, encode_entry([put("z", b"1", "z1")])) is None
    assert store.apply_entry(8, encode_entry([put("z", b"1", "z1")]))


def test_install_notifies_waiters(tmp_path, store):
    with Store(str(tmp_path / "src"), map_size=64 << 20) as src:
        src.apply_entry(5, encode_entry([put("a", b"1", "r1")]))
        with src.begin_copy() as c:
            c.copy(str(tmp_path / "snap"))
    got = []
    started = threading.Event()

    def waiter():
        started.set()
        got.append(store.wait_applied(5, timeout=10))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait()
    store.install(str(tmp_path / "snap"))
    t.join(timeout=10)
    assert got == [True]


def test_install_rejects_garbage(tmp_path, store):
    store.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
    with pytest.raises(StoreError, match="no data.mdb"):
        store.install(str(tmp_path / "empty"))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "data.mdb").write_bytes(b"not lmdb" * 1000)
    with pytest.raises(StoreError):
        store.install(str(bad))
    assert kv(store) == {"a": b"1"} and store.applied_index == 1


def test_stats(store):
    store.apply_entry(1, encode_entry([put("a", b"1", "r1"), put("b", b"1", "r2")]))
    st = store.stats()
    assert st["entries"]["kv"] == 2 and st["entries"]["dedupe"] == 2
    assert st["entries"]["meta"] == 1
    assert st["applied_index"] == 1
    assert 0 < st["map_used"] <= st["map_size"] == 64 << 20


def test_closed_store_refuses(tmp_path):
    s = Store(str(tmp_path / "s"), map_size=64 << 20)
    s.close()
    s.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        s.apply_entry(1, encode_entry([]))
    with pytest.raises(StoreError, match="closed"), s.read():
        pass


def test_env_flags(store):
    flags = store._env.flags()
    assert flags["sync"] is False and flags["metasync"] is False and flags["readahead"] is False
    assert isinstance(store._env, lmdb.Environment)


def _internal(op, args, rid, uid=-1, ts=1_000):
    return {"v": 1, "op": op, "args": args, "rid": rid, "uid": uid, "ts": ts}


def test_auth_epoch_counts_committed_changes_to_tokens_and_users(store, tmp_path):
    seen = []
    store.add_auth_listener(lambda epoch: seen.append((epoch, store.applied_index)))
    store.apply_entry(1, encode_entry([put("a", b"1", "r1")]))
    assert store.auth_epoch == 0 and seen == []
    bootstrap = _internal("user.bootstrap", {"password_hash": "x"}, "r2")
    assert store.apply_entry(2, encode_entry([bootstrap]))[0]["ok"]
    # The listeners hear of it once the entry is applied, before apply_entry returns.
    assert store.auth_epoch == 1 and seen == [(1, 2)]
    token = _internal(
        "token.create", {"token_hash": "ab" * 32, "uid": 0, "expires": 9_000}, "r3", uid=0
    )
    results = store.apply_entry(3, encode_entry([token, put("b", b"2", "r4")]))
    assert all(r["ok"] for r in results), results
    assert store.auth_epoch == 2  # once per entry
    refused = _internal("token.create", {"token_hash": "cd" * 32, "uid": 99, "expires": 1}, "r5")
    assert not store.apply_entry(4, encode_entry([refused]))[0]["ok"]
    assert store.auth_epoch == 2  # nothing changed
    with store.begin_copy() as copier:
        copier.copy(str(tmp_path / "copy"))
    store.install(str(tmp_path / "copy"))  # a snapshot may change anything
    assert store.auth_epoch == 3 and seen[-1] == (3, 4)
