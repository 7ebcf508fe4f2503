"""Replay equivalence: applying a whole log == installing a copy taken at k + the tail."""

import os
import tempfile
import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore import schema
from raftcore.commands import encode_entry
from raftcore.store import DEDUPE_RETENTION_MS, Store

MAP_SIZE = 32 << 20
KEYS = st.sampled_from(["a", "b", "c"])
# A small rid pool makes retries (and rid reuse by a different command) common.
RIDS = st.sampled_from([f"r{i}" for i in range(8)])


def kv_command(draw, ts: int) -> dict:
    op = draw(st.sampled_from(["kv.put", "kv.delete", "barrier", "zone.server_add"]))
    if op == "kv.put":
        args = {"key": draw(KEYS), "value": draw(st.binary(max_size=4))}
    elif op == "kv.delete":
        args = {"key": draw(KEYS)}
    elif op == "zone.server_add":
        n = draw(st.integers(0, 3))
        args = {"name": f"s{n}", "raft": f"h:{1000 + n}", "grpc": f"h:{2000 + n}"}
    else:
        args = {}
    return {
        "v": 1,
        "op": op,
        "args": args,
        "rid": draw(RIDS),
        "uid": draw(st.sampled_from([0, 1])),
        "ts": ts,
    }


@st.composite
def logs(draw) -> list[bytes]:
    """Entry payloads; ts sometimes jumps past the retention so dedupe pruning runs."""
    ts = 0
    bootstrap = {
        "v": 1,
        "op": "zone.bootstrap",
        "args": {"name": "z", "servers": [{"name": "s0", "raft": "h:1000", "grpc": "h:2000"}]},
        "rid": "boot",
        "uid": -1,
        "ts": 0,
    }
    entries = [encode_entry([bootstrap])]
    for _ in range(draw(st.integers(0, 12))):
        if draw(st.integers(0, 9)) == 0:
            entries.append(b"\xc1not an entry")
            continue
        ts += draw(st.sampled_from([0, 1, 1000, DEDUPE_RETENTION_MS // 2, DEDUPE_RETENTION_MS + 1]))
        n = draw(st.integers(1, 4))
        entries.append(encode_entry([kv_command(draw, ts) for _ in range(n)]))
    return entries


def dump(store: Store) -> dict:
    with store.read() as view:
        return {db: list(view.iter(db)) for db in schema.DBS}


@settings(max_examples=60, deadline=None)
@given(log=logs(), data=st.data())
def test_copy_at_k_plus_tail_equals_full_replay(log, data):
    k = data.draw(st.integers(0, len(log)), label="k")
    with tempfile.TemporaryDirectory() as tmp:
        full = Store(os.path.join(tmp, "full"), map_size=MAP_SIZE)
        source = Store(os.path.join(tmp, "source"), map_size=MAP_SIZE)
        fresh = Store(os.path.join(tmp, "fresh"), map_size=MAP_SIZE)
        try:
            full_results = [full.apply_entry(i, p) for i, p in enumerate(log, start=1)]

            for i, payload in enumerate(log[:k], start=1):
                source.apply_entry(i, payload)
            copier = source.begin_copy()
            # Later applies on the source must not leak into the copy taken at k.
            for i, payload in enumerate(log[k:], start=k + 1):
                source.apply_entry(i, payload)
            out: list[int] = []
            snap = os.path.join(tmp, "snap")
            t = threading.Thread(target=lambda: out.append(copier.copy(snap)))
            t.start()
            t.join()
            copier.close()
            assert out == [k]

            fresh.install(snap)
            assert fresh.applied_index == k
            # Re-delivery of already-covered entries is a no-op after the install.
            for i, payload in enumerate(log[:k], start=1):
                assert fresh.apply_entry(i, payload) is None
            tail = [fresh.apply_entry(i, p) for i, p in enumerate(log[k:], start=k + 1)]
            assert tail == full_results[k:]
            assert dump(fresh) == dump(full) == dump(source)
            assert fresh.applied_index == full.applied_index == len(log)
        finally:
            full.close()
            source.close()
            fresh.close()
