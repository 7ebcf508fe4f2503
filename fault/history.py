"""The history format shared by the recorder (fault/recorder.py) and the checkers.

A history is what concurrent clients saw: one `Op` per request, with the times it was invoked
and completed and what came back, plus what every front-end holds at the end after healing
(`final_states`) and how many times the servers applied each request id (`applied_rids`).

On disk it is JSON lines: a header line, one line per op, then the final states and the
applied rid counts. Strict JSON (no NaN/Infinity): an unbounded completion is written as null.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

FORMAT_VERSION = 1

Kind = Literal["put", "get"]
Outcome = Literal["ok", "fail", "unknown"]
Consistency = Literal["linearizable", "local"]

KINDS = ("put", "get")
OUTCOMES = ("ok", "fail", "unknown")
CONSISTENCIES = ("linearizable", "local")


@dataclass(slots=True)
class Op:
    """One client request and what the client saw.

    put: writes `value` to `key`; `rid` is its request id, `index` the raft index returned
    when it was acknowledged. get: reads `key`; `result` is the value read (None = not found).
    outcome: "ok" acknowledged, "fail" definitely not applied, "unknown" may or may not have
    taken effect (then `complete` is None/inf or merely when the client gave up: a checker
    treats it as unbounded). Times are seconds on one monotonic clock.
    """

    process: int
    kind: Kind
    key: str
    value: str | None
    rid: str | None
    invoke: float
    complete: float | None = None
    outcome: Outcome = "unknown"
    result: str | None = None
    index: int | None = None
    # Local reads are recorded but not checked for linearizability (they may be stale).
    consistency: Consistency = "linearizable"

    def __post_init__(self) -> None:
        # Fail at construction rather than deep inside a checker with a confusing verdict.
        if self.kind not in KINDS:
            raise ValueError(f"op kind must be one of {KINDS}, not {self.kind!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"op outcome must be one of {OUTCOMES}, not {self.outcome!r}")
        if self.consistency not in CONSISTENCIES:
            raise ValueError(f"op consistency must be one of {CONSISTENCIES}")
        if not math.isfinite(self.invoke):
            raise ValueError(f"op invoke time must be finite, not {self.invoke!r}")
        if self.kind == "put" and self.value is None:
            raise ValueError("a put must write a value (None means 'not found')")
        if self.complete is not None:
            if math.isnan(self.complete) or self.complete < self.invoke:
                raise ValueError(f"op completes ({self.complete}) before invoke ({self.invoke})")
        if self.outcome == "ok" and (self.complete is None or math.isinf(self.complete)):
            raise ValueError("an acknowledged op needs a finite completion time")

    @property
    def deadline(self) -> float:
        """Latest time the op can take effect: completion if acknowledged, else unbounded."""
        return self.complete if self.outcome == "ok" and self.complete is not None else math.inf

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["complete"] is not None and math.isinf(d["complete"]):
            d["complete"] = None  # strict JSON has no Infinity; None means the same here
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Op:
        unknown = set(d) - _OP_FIELDS
        if unknown:
            # Strict on purpose: a field the checkers ignore would be a silent contract break.
            raise ValueError(f"unknown op fields {sorted(unknown)}")
        return cls(**d)

    def describe(self) -> str:
        """Short human form for explanations, e.g. `get('k')->'v' p3 [1.200, 1.350] ok`."""
        end = "inf" if self.complete is None else f"{self.complete:.6f}"
        span = f"p{self.process} [{self.invoke:.6f}, {end}] {self.outcome}"
        if self.kind == "put":
            return f"put({self.key!r}, {self.value!r}) {span}"
        return f"get({self.key!r})->{self.result!r} {span}"


_OP_FIELDS = {f.name for f in fields(Op)}


@dataclass
class History:
    """Ops in any order, plus what each front-end holds at the end (one dict per front-end).

    final_states: per front-end, key -> value read after healing (None = not found); a key
    missing from a front-end's dict means that front-end could not be read, not "not found".
    applied_rids: rid -> how many times it was applied (None when the recorder can't tell).
    meta: free-form (seed, faults, ...), saved with the history.
    """

    ops: list[Op] = field(default_factory=list)
    final_states: list[dict[str, str | None]] | None = None
    applied_rids: dict[str, int] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def keys(self) -> list[str]:
        return sorted({op.key for op in self.ops})


def to_lines(history: History) -> Iterator[str]:
    """The JSON lines of a history (header, ops, final states, applied rids)."""
    yield _dumps({"type": "header", "version": FORMAT_VERSION, "meta": history.meta})
    for op in history.ops:
        yield _dumps({"type": "op", **op.to_dict()})
    yield _dumps({"type": "final_states", "final_states": history.final_states})
    yield _dumps({"type": "applied_rids", "applied_rids": history.applied_rids})


def from_lines(lines: Iterable[str]) -> History:
    """Parse what `to_lines` wrote (blank lines ignored; records in any order after header)."""
    history = History()
    seen_header = False
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        rec = json.loads(line)
        kind = rec.pop("type", None)
        if kind == "header":
            if rec.get("version") != FORMAT_VERSION:
                raise ValueError(f"line {n}: unsupported history version {rec.get('version')}")
            history.meta = dict(rec.get("meta") or {})
            seen_header = True
        elif kind == "op":
            history.ops.append(Op.from_dict(rec))
        elif kind == "final_states":
            history.final_states = rec["final_states"]
        elif kind == "applied_rids":
            history.applied_rids = rec["applied_rids"]
        else:
            raise ValueError(f"line {n}: unknown record type {kind!r}")
    if not seen_header:
        raise ValueError("not a history file: no header line")
    return history


def save(history: History, path: str | os.PathLike[str]) -> Path:
    """Write `history` as JSON lines, atomically (a crash leaves the old file or none)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for line in to_lines(history):
            f.write(line + "\n")
    os.replace(tmp, path)
    return path


def load(path: str | os.PathLike[str]) -> History:
    with open(path, encoding="utf-8") as f:
        return from_lines(f)


def minimize(history: History, key: str) -> History:
    """The sub-history of one key: its ops, its final values, the rids of its ops.

    Linearizability is compositional per key, so a violation on `key` is still a violation
    in this sub-history: it is what gets saved for a failing run.
    """
    ops = [op for op in history.ops if op.key == key]
    finals = None
    if history.final_states is not None:
        finals = [{key: fs[key]} if key in fs else {} for fs in history.final_states]
    applied = None
    if history.applied_rids is not None:
        rids = {op.rid for op in ops if op.rid is not None}
        applied = {rid: n for rid, n in history.applied_rids.items() if rid in rids}
    meta = {**history.meta, "minimized_key": key}
    return History(ops=ops, final_states=finals, applied_rids=applied, meta=meta)


def _dumps(obj: dict[str, Any]) -> str:
    # allow_nan=False: the file must stay readable by strict JSON parsers (jq, other tools).
    return json.dumps(obj, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
