"""Checks beyond linearizability: lost acknowledged writes, duplicates, divergent replicas.

All conservative: they report only what no legal execution could explain.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from fault import linearizability
from fault.history import History, Op


def lost_writes(history: History) -> list[Op]:
    """Acknowledged puts that some front-end's final state no longer reflects.

    Values are unique per key, so after an acknowledged put P the key's final value must be
    P's or that of a put that could have taken effect after P. P is lost on a front-end when
    that front-end's final value for the key is None, or a value no (non-failed) put wrote, or
    the value of a put that was acknowledged before P was even invoked. Keys a front-end could
    not read (absent from its dict) are not judged on that front-end.
    """
    if not history.final_states:
        return []
    writers = _writers(history)
    lost: list[Op] = []
    for op in history.ops:
        if op.kind != "put" or op.outcome != "ok":
            continue
        for final in history.final_states:
            if op.key in final and _lost_on(op, final[op.key], writers[op.key]):
                lost.append(op)
                break
    return lost


def _writers(history: History) -> dict[str, dict[str, list[Op]]]:
    """key -> value -> the puts that may have written it (failed puts never did)."""
    out: dict[str, dict[str, list[Op]]] = defaultdict(lambda: defaultdict(list))
    for op in history.ops:
        if op.kind == "put" and op.outcome != "fail":
            out[op.key][op.value].append(op)
    return out


def _lost_on(put: Op, final: str | None, writers: dict[str, list[Op]]) -> bool:
    if final == put.value:
        return False
    if final is None or final not in writers:
        return True
    # Surviving value must come from a put that could be ordered after P; one acknowledged
    # before P was invoked was necessarily overwritten by P. An unknown-outcome put may have
    # taken effect at any time after its invoke, so it always could.
    return all(w.outcome == "ok" and w.complete < put.invoke for w in writers[final])


def divergent_final_states(history: History) -> list[str]:
    """Keys on which the front-ends that could be read disagree after healing."""
    if not history.final_states:
        return []
    seen: dict[str, set[str | None]] = defaultdict(set)
    for final in history.final_states:
        for key, value in final.items():
            seen[key].add(value)
    return sorted(key for key, values in seen.items() if len(values) > 1)


def duplicates(history: History) -> list[str]:
    """Request ids applied more than once.

    Either the servers' own count says so (applied_rids), or two acknowledgements of the same
    rid came back with different raft indexes (the request was proposed and applied twice).
    """
    dup: set[str] = set()
    if history.applied_rids:
        dup.update(rid for rid, n in history.applied_rids.items() if n > 1)
    indexes: dict[str, set[int]] = defaultdict(set)
    for op in history.ops:
        if op.kind == "put" and op.outcome == "ok" and op.rid is not None and op.index is not None:
            indexes[op.rid].add(op.index)
    dup.update(rid for rid, seen in indexes.items() if len(seen) > 1)
    return sorted(dup)


def summarize(history: History, time_limit_s: float = 10.0) -> dict[str, Any]:
    """Everything the runner reports, JSON-ready.

    operations: all ops; acknowledged: acknowledged puts; lost/duplicate/divergent: counts
    (the lists are under "details"); linearizable: True, False or "unknown"; counterexample:
    {key, ops (as dicts), indices, explanation} or None.
    """
    lost = lost_writes(history)
    dup = duplicates(history)
    div = divergent_final_states(history)
    result = linearizability.check(history, time_limit_s=time_limit_s)
    cx = result.counterexample
    if cx is not None:
        cx = {**cx, "ops": [op.to_dict() for op in cx["ops"]]}
    return {
        "operations": len(history.ops),
        "acknowledged": sum(1 for op in history.ops if op.kind == "put" and op.outcome == "ok"),
        "lost": len(lost),
        "duplicate": len(dup),
        "divergent": len(div),
        "linearizable": result.linearizable,
        "counterexample": cx,
        "details": {
            "lost": [op.to_dict() for op in lost],
            "duplicate": dup,
            "divergent": div,
            "final_states_checked": len(history.final_states or []),
            "unchecked_keys": _unchecked_keys(history),
            "linearizability": result.stats,
        },
    }


def _unchecked_keys(history: History) -> list[str]:
    """Keys with acknowledged puts that no front-end's final state covers (lost unjudged)."""
    covered = set().union(*(f.keys() for f in history.final_states or []))
    acked = {op.key for op in history.ops if op.kind == "put" and op.outcome == "ok"}
    return sorted(acked - covered)
