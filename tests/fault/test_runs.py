"""Short fault runs against a 3-front-end zone: each nemesis kind must come out clean.

Each run records a history for about 9 s while its nemesis acts, heals, reads every key
on every front-end and checks the history: no acknowledged write lost, no request applied
twice, no divergence, linearizable. Recovery time after each heal is measured (a benchmark
figure in the result) but not asserted: the machine's load decides it.
Longer runs: ``python -m bench faults`` (fault/runner.py).
"""

from __future__ import annotations

import json

import pytest

from fault.history import History, Op, load
from fault.recorder import Record, Recorder, read_anomalies
from fault.runner import judge, run

pytestmark = pytest.mark.cluster

SECONDS = 9

# kind -> seed whose schedule covers that kind's variants within SECONDS
# (python -m bench faults --nemesis KIND --seconds 9 --seed N --schedule)
CASES = {
    "kill": 19,  # a random front-end, the leader, a majority
    "pause": 5,  # the leader (whole front-end), the leader (raft process only)
    "partition": 6,  # majority/minority, bridge, isolated leader
    "restart": 1,  # the whole zone, three times
    "membership": 1,  # server-del of a follower + a new server, twice
    "disk": 2,  # full disk on the leader, then on a follower
}


def _clean(result: dict) -> None:
    summary = {k: v for k, v in result.items() if k not in ("faults", "counterexample")}
    text = json.dumps(summary, indent=1)
    assert result["lost"] == 0, text
    assert result["duplicate"] == 0, text
    assert result["divergent"] == 0, text
    assert result["linearizable"] is True, text
    assert result["violation"] is False, text
    assert result["recorder"]["final_errors"] == [], text


@pytest.mark.fault_timeout(150)
@pytest.mark.parametrize("kind", list(CASES))
def test_short_run_is_clean(kind, tmp_path):
    result = run(frontends=3, kinds=[kind], seconds=SECONDS, seed=CASES[kind], dir=tmp_path)
    _clean(result)
    faults = result["faults"]
    assert faults and all(f["kind"] == kind for f in faults)
    assert result["fault_errors"] == [], result["fault_errors"]
    assert all(f["healed_at"] is not None for f in faults)
    # Measured, not asserted as timing: the zone did accept writes again after each heal.
    assert all(f["recovery_s"] is not None for f in faults), faults
    assert result["acknowledged"] > 50
    history = load(result["history_full"])
    assert len(history.final_states) == 3
    assert not (tmp_path / "zone").exists(), "a clean run keeps only its histories"


def test_a_violation_is_reported_with_a_minimal_history(tmp_path):
    # An acknowledged write that no front-end holds at the end, and a read of it that
    # comes after a read of the old value: lost, and not linearizable.
    ops = [
        Op(0, "put", "a", "0-1", "r1", 0.0, 1.0, "ok", index=5),
        Op(1, "get", "a", None, None, 2.0, 3.0, "ok", result="0-1", index=5),
        Op(1, "get", "a", None, None, 4.0, 5.0, "ok", result=None, index=0),
        Op(0, "put", "b", "0-2", "r2", 0.0, 1.0, "ok", index=6),
    ]
    history = History(ops=ops, final_states=[{"a": None, "b": "0-2"}], applied_rids=None)
    out = judge(history, tmp_path, time_limit_s=5)
    assert out["violation"] is True
    assert out["lost"] == 1
    assert out["linearizable"] is False
    assert out["offending_keys"][0] == "a"
    minimal = load(out["history"])
    assert {op.key for op in minimal.ops} == {"a"}
    assert len(load(out["history_full"]).ops) == 4


def _get(key, result, revision, applied, t, fe=0, consistency="local", min_index=0):
    return Record(
        process=9,
        kind="get",
        key=key,
        value=None,
        rid=None,
        invoke=t,
        complete=t + 0.1,
        outcome="ok",
        result=result,
        index=revision,
        consistency=consistency,
        frontend=fe,
        min_index=min_index,
        applied_index=applied,
    )


def _put(key, value, index, t, outcome="ok"):
    return Record(
        process=1,
        kind="put",
        key=key,
        value=value,
        rid=f"r-{value}",
        invoke=t,
        complete=t + 0.1,
        outcome=outcome,
        index=index if outcome == "ok" else None,
    )


def test_read_anomalies_judge_local_reads_by_their_indexes():
    records = [
        _put("a", "1-1", 10, 0.0),
        _put("a", "1-2", 12, 1.0),
        _put("a", "1-3", 12, 1.0),  # packed in the same entry as 1-2
        _put("a", "1-4", None, 1.5, outcome="unknown"),
        _get("a", "1-4", 15, 16, 3.0),  # the unknown put was applied at 15
        _get("a", "1-2", 12, 14, 2.0),  # fine: 1-2 and 1-3 share index 12
        _get("a", "1-1", 10, 13, 2.0, fe=1),  # missed the write at 12
        _get("a", None, 0, 11, 2.5, fe=2),  # missed the write at 10
        _get("a", "1-4", 15, 14, 4.0, fe=3),  # revision above its applied index
        _get("a", "9-9", 15, 16, 4.0, fe=4),  # a value nobody wrote
        _get("a", "1-4", 15, 16, 5.0, fe=5, min_index=18),  # min_index not honoured
        _get("a", "1-4", 15, 20, 6.0, fe=6),
        _get("a", "1-4", 15, 17, 7.0, fe=6),  # applied index went back on fe6
        _get("a", "1-4", 15, 30, 8.0, fe=7, consistency="linearizable"),
        _get("a", "1-4", 15, 17, 9.0, fe=7, consistency="linearizable"),  # forwarded: fine
    ]
    found = sorted((a["frontend"], a["anomaly"]) for a in read_anomalies(records))
    assert found == [
        (1, "missed write"),
        (2, "missed write"),
        (3, "future revision"),
        (4, "unknown value"),
        (5, "min_index"),
        (6, "applied index went back"),
    ]


def test_retried_puts_become_one_operation():
    rec = Recorder(lab=None, seed=1)
    first = _put("a", "1-1", None, 0.0, outcome="unknown")
    retry = _put("a", "1-1", 7, 2.0)
    retry.process, retry.attempt = 2, 1
    rec.records = [first, retry, _get("a", "1-1", 7, 7, 3.0)]
    (op,) = [o for o in rec.history().ops if o.kind == "put"]
    assert (op.process, op.invoke, op.complete, op.outcome, op.index) == (1, 0.0, 2.1, "ok", 7)
    assert rec.applied_rids() == {"r-1-1": 1}
    unmerged = rec.history(merge_retries=False)
    assert sum(1 for o in unmerged.ops if o.kind == "put") == 2
