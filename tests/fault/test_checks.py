"""Lost writes, duplicates, divergent final states and the summary."""

from __future__ import annotations

import json

from fault.checks import divergent_final_states, duplicates, lost_writes, summarize
from fault.history import History, Op
from tests.fault import get, put, simulate


def hist(ops: list[Op], *finals: dict[str, str | None], applied: dict | None = None) -> History:
    return History(ops=ops, final_states=list(finals) or None, applied_rids=applied)


def values(ops: list[Op]) -> list[str | None]:
    return [op.value for op in ops]


# --- lost writes ---------------------------------------------------------------------------


def test_no_lost_write_when_the_last_value_survives() -> None:
    ops = [put("a", 0), put("b", 2)]
    assert lost_writes(hist(ops, {"k": "b"}, {"k": "b"})) == []


def test_write_lost_when_the_key_is_gone() -> None:
    assert values(lost_writes(hist([put("a", 0)], {"k": None}))) == ["a"]


def test_write_lost_when_the_final_value_was_never_written() -> None:
    assert values(lost_writes(hist([put("a", 0)], {"k": "zzz"}))) == ["a"]


def test_write_lost_when_an_older_acknowledged_value_came_back() -> None:
    # b was invoked after a was acknowledged, so b overwrote a: ending on a loses b.
    ops = [put("a", 0, 1), put("b", 2, 3)]
    assert values(lost_writes(hist(ops, {"k": "a"}))) == ["b"]


def test_concurrent_writes_may_end_either_way() -> None:
    ops = [put("a", 0, 5), put("b", 1, 6)]
    assert lost_writes(hist(ops, {"k": "a"})) == []
    assert lost_writes(hist(ops, {"k": "b"})) == []


def test_unknown_put_may_win_even_if_invoked_first() -> None:
    # An unknown-outcome put may take effect any time after its invoke, even after b.
    ops = [put("u", 0, outcome="unknown"), put("b", 2, 3)]
    assert lost_writes(hist(ops, {"k": "u"})) == []


def test_final_value_of_a_failed_put_loses_the_write() -> None:
    ops = [put("a", 0, 1), put("f", 2, 3, outcome="fail")]
    assert values(lost_writes(hist(ops, {"k": "f"}))) == ["a"]


def test_unacknowledged_writes_are_never_lost() -> None:
    ops = [put("u", 0, outcome="unknown"), put("f", 0, 1, outcome="fail")]
    assert lost_writes(hist(ops, {"k": None})) == []


def test_lost_on_one_front_end_only_and_divergence_reported() -> None:
    ops = [put("a", 0, 1), put("b", 2, 3), put("a2", 0, 1, key="other")]
    h = hist(ops, {"k": "b", "other": "a2"}, {"k": "a", "other": "a2"}, {"k": "b"})
    assert values(lost_writes(h)) == ["b"]  # reported once although one front-end lost it
    assert divergent_final_states(h) == ["k"]


def test_unread_key_is_not_judged_on_that_front_end() -> None:
    # The second front-end could not be read for k (absent, not None).
    h = hist([put("a", 0)], {"k": "a"}, {})
    assert lost_writes(h) == [] and divergent_final_states(h) == []


def test_no_final_states_means_nothing_to_judge() -> None:
    h = hist([put("a", 0)])
    assert lost_writes(h) == [] and divergent_final_states(h) == []


def test_divergence_between_value_and_not_found() -> None:
    h = hist([put("a", 0, outcome="unknown")], {"k": "a"}, {"k": None})
    assert lost_writes(h) == []  # nothing acknowledged...
    assert divergent_final_states(h) == ["k"]  # ...but replicas disagree


# --- duplicates ----------------------------------------------------------------------------


def test_rid_applied_twice() -> None:
    h = hist([put("a", 0, rid="r1")], applied={"r1": 2, "r2": 1, "r3": 0})
    assert duplicates(h) == ["r1"]


def test_same_rid_acknowledged_at_two_indexes() -> None:
    ops = [put("a", 0, 1, rid="r1", index=5), put("a", 2, 3, rid="r1", index=9)]
    assert duplicates(hist(ops)) == ["r1"]


def test_retried_rid_answered_from_dedupe_is_no_duplicate() -> None:
    # A retry the server answered from its dedupe record returns the first index.
    ops = [put("a", 0, 1, rid="r1", index=5), put("a", 2, 3, rid="r1", index=5)]
    ops.append(put("b", 4, 5, rid="r2", index=None))
    assert duplicates(hist(ops, applied={"r1": 1, "r2": 1})) == []


def test_unacknowledged_indexes_are_ignored_and_sources_merge() -> None:
    ops = [put("a", 0, 1, rid="r1", index=5), put("a", 2, 3, rid="r1", outcome="fail", index=6)]
    ops += [put("b", 0, 1, rid="r2", index=7), put("b", 2, 3, rid="r2", index=8)]
    assert duplicates(hist(ops, applied={"r3": 3})) == ["r2", "r3"]


# --- summary -------------------------------------------------------------------------------


def test_summary_of_a_clean_history() -> None:
    h = simulate(seed=5, n_ops=3000, n_keys=30)
    s = summarize(h, time_limit_s=10)
    assert s["operations"] == 3000
    assert s["acknowledged"] == sum(op.kind == "put" and op.outcome == "ok" for op in h.ops)
    assert (s["lost"], s["duplicate"], s["divergent"]) == (0, 0, 0)
    assert s["linearizable"] is True and s["counterexample"] is None
    assert s["details"]["unchecked_keys"] == []
    json.dumps(s, allow_nan=False)


def test_summary_of_a_broken_history() -> None:
    ops = [put("a", 0, 1, rid="r1", index=1), put("b", 2, 3, rid="r2", index=2), get("a", 4, 5)]
    ops.append(put("c", 0, 1, key="lonely"))
    h = hist(ops, {"k": "a"}, {"k": "b"}, applied={"r1": 1, "r2": 2})
    s = summarize(h, time_limit_s=5)
    assert s["operations"] == 4 and s["acknowledged"] == 3
    assert (s["lost"], s["duplicate"], s["divergent"]) == (1, 1, 1)
    assert s["details"]["lost"][0]["value"] == "b"
    assert s["details"]["duplicate"] == ["r2"] and s["details"]["divergent"] == ["k"]
    assert s["details"]["unchecked_keys"] == ["lonely"]
    assert s["linearizable"] is False
    cx = s["counterexample"]
    assert cx["key"] == "k" and cx["explanation"]
    assert all(isinstance(op, dict) for op in cx["ops"])
    json.dumps(s, allow_nan=False)  # the runner prints it as JSON
