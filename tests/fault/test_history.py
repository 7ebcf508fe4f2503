"""The history format: validation, JSON-lines round trip, per-key minimization."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from fault.history import History, Op, from_lines, load, minimize, save, to_lines
from tests.fault import get, put, simulate


def sample() -> History:
    ops = [
        put("a", 0, 1, key="x", process=1, index=7),
        put("b", 0.5, math.inf, outcome="unknown", key="x", process=2),
        put("c", 0.7, 0.9, outcome="fail", key="y", process=3),
        get("a", 2, 3, key="x", process=1),
        get(None, 2, 3, key="y", consistency="local"),
        get(None, 4, None, outcome="unknown", key="y"),
    ]
    return History(
        ops=ops,
        final_states=[{"x": "a", "y": None}, {"x": "a"}],
        applied_rids={"rid-x-a": 1, "rid-x-b": 0, "rid-y-c": 0},
        meta={"seed": 3, "faults": [{"t": 1.5, "kind": "kill", "target": "s1"}]},
    )


def test_round_trip(tmp_path: Path) -> None:
    h = sample()
    path = save(h, tmp_path / "h.jsonl")
    back = load(path)
    assert back.final_states == h.final_states
    assert back.applied_rids == h.applied_rids
    assert back.meta == h.meta
    assert len(back.ops) == len(h.ops)
    for a, b in zip(back.ops, h.ops, strict=True):
        if b.complete is not None and math.isinf(b.complete):
            assert a.complete is None  # unbounded is written as null: same meaning
            a.complete = b.complete
        assert a == b
    assert not list(tmp_path.glob("*.tmp"))


def test_file_is_strict_json_lines(tmp_path: Path) -> None:
    path = save(sample(), tmp_path / "h.jsonl")
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 6 + 2
    records = [json.loads(line) for line in lines]  # every line parses on its own
    assert records[0]["type"] == "header" and records[0]["version"] == 1
    assert "Infinity" not in path.read_text()


def test_round_trip_of_a_large_simulated_history(tmp_path: Path) -> None:
    h = simulate(seed=1, n_ops=2000)
    back = load(save(h, tmp_path / "big.jsonl"))
    assert back.ops == h.ops and back.final_states == h.final_states


def test_minimize_keeps_one_key() -> None:
    m = minimize(sample(), "x")
    assert [op.key for op in m.ops] == ["x", "x", "x"]
    assert m.final_states == [{"x": "a"}, {"x": "a"}]
    assert m.applied_rids == {"rid-x-a": 1, "rid-x-b": 0}
    assert m.meta["minimized_key"] == "x" and m.meta["seed"] == 3
    # A key a front-end couldn't read stays unread rather than becoming "not found".
    assert minimize(sample(), "y").final_states == [{"y": None}, {}]


def test_minimize_then_save_and_load(tmp_path: Path) -> None:
    m = minimize(sample(), "y")
    back = load(save(m, tmp_path / "y.jsonl"))
    assert back.ops == m.ops and back.final_states == m.final_states


def test_minimize_without_final_states_or_rids() -> None:
    m = minimize(History(ops=[put("a", 0)]), "k")
    assert m.final_states is None and m.applied_rids is None and len(m.ops) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "delete"},
        {"outcome": "maybe"},
        {"consistency": "eventual"},
        {"value": None},  # a put must write something
        {"complete": -1.0},  # completes before it was invoked
        {"outcome": "ok", "complete": None},  # acknowledged but no completion time
        {"outcome": "ok", "complete": math.inf},
        {"invoke": math.nan},
    ],
)
def test_invalid_ops_are_refused(kwargs: dict) -> None:
    base = dict(process=0, kind="put", key="k", value="v", rid="r", invoke=0.0, complete=1.0)
    base["outcome"] = "ok"
    with pytest.raises(ValueError):
        Op(**{**base, **kwargs})


def test_unknown_fields_and_records_are_refused() -> None:
    header = '{"type":"header","version":1,"meta":{}}'
    op = put("a", 0).to_dict()
    with pytest.raises(ValueError, match="unknown op fields"):
        from_lines([header, json.dumps({"type": "op", **op, "colour": "red"})])
    with pytest.raises(ValueError, match="record type"):
        from_lines([header, '{"type":"weird"}'])
    with pytest.raises(ValueError, match="no header"):
        from_lines([json.dumps({"type": "op", **op})])
    with pytest.raises(ValueError, match="version"):
        from_lines(['{"type":"header","version":99}'])


def test_lines_round_trip_in_memory() -> None:
    h = sample()
    assert from_lines(to_lines(h)).ops[0] == h.ops[0]


def test_deadline_and_describe() -> None:
    assert put("a", 0, 2).deadline == 2
    assert put("a", 0, 2, outcome="unknown").deadline == math.inf
    assert "get('k')->'a'" in get("a", 0).describe()
