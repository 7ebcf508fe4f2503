"""Linearizability checker for a key/value store modelled as one register per key.

Model: each key is a register, initially None; put(v) sets it, get returns it. Linearizability
is compositional (Herlihy & Wing), so each key is checked on its own.

Per key this is the Wing & Gong search with Lowe's memoization ("just-in-time" linearization):
depth-first, extend a linearized prefix one operation at a time, only with an operation that
is minimal in real time among those not yet linearized (none of them completed before it was
invoked), and never revisit a (linearized set, register value) configuration.

What each outcome means here:
  * ok op: must be linearized between its invoke and its complete;
  * unknown put: may take effect any time after its invoke, or never (optional, unbounded);
  * failed put: never took effect, dropped (a read of its value is reported up front);
  * ok get: must return the register's value at its linearization point;
  * unknown/failed get, and local gets: constrain nothing, dropped.
Real-time order is strict: a precedes b only if a.complete < b.invoke (equal times overlap).

Reductions that keep the search small, each safe (never turns a violation into a pass nor the
reverse; the argument is given where they are applied):
  * an unknown put whose value no checked get returned is dropped;
  * with unique values per key, a put whose value some get returned must precede that get, so
    its deadline is that get's completion and, if its outcome was unknown, it is required;
  * a get that can be linearized now with the current value is linearized at once (greedy);
  * when no pending get reads the current value, a required put whose value nobody read is
    linearized at once;
  * a put may not overwrite a value that a pending get still has to read unless another
    pending put writes that value again.

On a violation the key's history is shrunk (by deleting operations while it stays
non-linearizable) to a small counterexample with an explanation.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from fault.history import History, Op

Verdict = bool | Literal["unknown"]
UNKNOWN: Literal["unknown"] = "unknown"

DEFAULT_MAX_STATES = 1_000_000  # per key: bounds memory (a state is a big int + a small int)
SHRINK_SECONDS = 2.0  # extra time allowed to shrink a counterexample, after the search
_CLOCK_EVERY = 256  # look at the clock once per this many states

_NONE = 0  # register value code of the initial None
_UNREAD = -1  # value code shared by every value no checked get returned (they are equivalent)


@dataclass
class Result:
    """Verdict for a whole history; False wins over "unknown", which wins over True."""

    linearizable: Verdict
    per_key: dict[str, Verdict]
    counterexample: dict[str, Any] | None = None  # {key, ops, indices, explanation}
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class _KeyResult:
    verdict: Verdict
    states: int = 0
    explanation: str = ""
    blame: list[int] = field(default_factory=list)  # positions of ops the explanation names
    reason: str = ""  # why "unknown": "time limit" or "state limit"


class _OutOfBudget(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def check(
    history: History | Iterable[Op],
    time_limit_s: float = 10.0,
    max_states: int = DEFAULT_MAX_STATES,
    shrink: bool = True,
) -> Result:
    """Check `history` for linearizability, key by key, within `time_limit_s` of search.

    max_states bounds the configurations explored per key. A key whose search hits a limit
    is "unknown" (and so is the history unless another key is a violation). When a violation
    is found and `shrink` is set, up to SHRINK_SECONDS more are spent shrinking it.
    """
    ops = history.ops if isinstance(history, History) else list(history)
    started = time.monotonic()
    deadline = started + time_limit_s
    by_key: dict[str, list[tuple[int, Op]]] = defaultdict(list)
    for pos, op in enumerate(ops):
        by_key[op.key].append((pos, op))

    per_key: dict[str, Verdict] = {}
    reasons: dict[str, str] = {}
    states = 0
    first_bad: tuple[str, _KeyResult] | None = None
    # Small keys first: a pathological key then costs only its own verdict, not the others'.
    for key in sorted(by_key, key=lambda k: (len(by_key[k]), k)):
        res = _check_key(key, by_key[key], deadline, max_states)
        per_key[key] = res.verdict
        states += res.states
        if res.verdict == UNKNOWN:
            reasons[key] = res.reason
        elif res.verdict is False and first_bad is None:
            first_bad = (key, res)

    counterexample = None
    if first_bad is not None:
        key, res = first_bad
        counterexample = _counterexample(key, by_key[key], res, max_states, shrink)

    verdicts = set(per_key.values())
    overall: Verdict = False if False in verdicts else UNKNOWN if UNKNOWN in verdicts else True
    stats = {
        "keys": len(by_key),
        "operations": len(ops),
        "states": states,
        "elapsed_s": round(time.monotonic() - started, 4),
        "unknown_keys": reasons,
        "violating_keys": sorted(k for k, v in per_key.items() if v is False),
    }
    return Result(overall, dict(sorted(per_key.items())), counterexample, stats)


# --- one key -------------------------------------------------------------------------------


def _check_key(
    key: str, entries: list[tuple[int, Op]], deadline: float, max_states: int
) -> _KeyResult:
    checked = _checked_ops(entries)
    bad = _precheck(key, entries, checked)
    if bad is not None:
        return bad
    if time.monotonic() >= deadline:
        return _KeyResult(UNKNOWN, reason="time limit")
    search = _Search(key, checked)
    try:
        return search.run(deadline, max_states)
    except _OutOfBudget as out:
        return _KeyResult(UNKNOWN, states=len(search.seen), reason=out.reason)


def _checked_ops(entries: list[tuple[int, Op]]) -> list[tuple[int, Op]]:
    """The ops that constrain the register: non-failed puts and acknowledged linearizable gets."""
    out = []
    for pos, op in entries:
        if op.kind == "put" and op.outcome != "fail":
            out.append((pos, op))
        elif op.kind == "get" and op.outcome == "ok" and op.consistency == "linearizable":
            out.append((pos, op))
    return out


def _precheck(
    key: str, entries: list[tuple[int, Op]], checked: list[tuple[int, Op]]
) -> _KeyResult | None:
    """Violations visible from one read alone, reported plainly rather than via the search."""
    writers: dict[str, list[tuple[int, Op]]] = defaultdict(list)
    for pos, op in checked:
        if op.kind == "put":
            writers[op.value].append((pos, op))
    failed: dict[str, list[int]] = defaultdict(list)
    for pos, op in entries:
        if op.kind == "put" and op.outcome == "fail":
            failed[op.value].append(pos)
    for pos, op in checked:
        if op.kind != "get" or op.result is None:
            continue
        if op.result not in writers:
            if op.result in failed:
                why = "which only a failed put (definitely not applied) wrote"
                return _bad(key, [pos, *failed[op.result]], op, why)
            return _bad(key, [pos], op, "which no put ever wrote")
        ws = writers[op.result]
        if all(w.invoke > op.complete for _, w in ws):
            why = "before any put of that value was even invoked"
            return _bad(key, [pos, *(p for p, _ in ws)], op, why)
    return None


def _bad(key: str, blame: list[int], get: Op, why: str) -> _KeyResult:
    text = f"key {key!r}: {get.describe()} returned {get.result!r}, {why}"
    return _KeyResult(False, explanation=text, blame=sorted(blame))


class _Search:
    """The memoized depth-first search for one key (see the module docstring)."""

    def __init__(self, key: str, checked: list[tuple[int, Op]]) -> None:
        self.key = key
        read_by: dict[str, float] = {}  # value -> earliest completion of a get returning it
        for _, op in checked:
            if op.kind == "get" and op.result is not None:
                read_by[op.result] = min(read_by.get(op.result, math.inf), op.complete)
        put_values = [op.value for _, op in checked if op.kind == "put"]
        unique = len(put_values) == len(set(put_values))

        rows = []  # (invoke, deadline, pos, op, required)
        for pos, op in checked:
            if op.kind == "get":
                rows.append((op.invoke, op.complete, pos, op, True))
                continue
            read = op.value in read_by
            if op.outcome == "unknown" and not read:
                # Nobody saw it: any linearization with it stays valid without it (only the
                # gets between it and the next put could notice, and none returned its value).
                continue
            end = op.deadline
            required = op.outcome == "ok"
            if unique and read:
                # Its value is only in the register after it, so it precedes every get that
                # returned the value: it must take effect before that get completed.
                end = min(end, read_by[op.value])
                required = True
            rows.append((op.invoke, end, pos, op, required))
        rows.sort(key=lambda r: (r[0], r[1], r[2]))

        codes: dict[str | None, int] = {None: _NONE}
        for value in sorted(read_by):
            codes[value] = len(codes)
        self.values: dict[int, str | None] = {c: v for v, c in codes.items()}
        self.n = len(rows)
        self.inv = [r[0] for r in rows]
        self.end = [r[1] for r in rows]
        self.pos = [r[2] for r in rows]
        self.ops = [r[3] for r in rows]
        self.is_put = [r[3].kind == "put" for r in rows]
        self.bit = [1 << i for i in range(self.n)]
        self.all = (1 << self.n) - 1
        self.code = []
        self.required = 0
        self.gets_of: dict[int, int] = defaultdict(int)  # value code -> mask of gets reading it
        self.puts_of: dict[int, int] = defaultdict(int)  # value code -> mask of puts writing it
        for i, (_, _, _, op, required) in enumerate(rows):
            if op.kind == "put":
                c = codes.get(op.value, _UNREAD)
                if c != _UNREAD:
                    self.puts_of[c] |= self.bit[i]
            else:
                c = codes[op.result]
                self.gets_of[c] |= self.bit[i]
            self.code.append(c)
            if required:
                self.required |= self.bit[i]
        self.seen: set[tuple[int, int]] = set()
        self.best = -1
        self.best_state = (0, _NONE)
        self.best_path: list[int] = []

    # The frontier: ops that may be linearized next given the linearized set `mask`.
    def window(self, mask: int) -> list[int]:
        # x may go next iff x.invoke <= min deadline of all unlinearized ops. Scanning in
        # invoke order, a later op can't lower that minimum below an earlier op's invoke.
        # Walk the set bits of the complement so that a long-pending op at the front does
        # not make every call step over all the ops linearized since.
        left = self.all & ~mask
        bound = math.inf
        out = []
        inv, end = self.inv, self.end
        while left:
            low = left & -left
            i = low.bit_length() - 1
            if inv[i] > bound:
                break
            out.append(i)
            if end[i] < bound:
                bound = end[i]
            left ^= low
        return out

    def closure(self, mask: int, cur: int, path: list[int]) -> tuple[int, int, list[int]]:
        """Apply the forced moves; return the new state and the puts to branch on."""
        while True:
            window = self.window(mask)
            changed = False
            # A get matching the register now: linearizing it first only removes a constraint
            # and leaves the register as is, so any completion still works after it.
            for i in window:
                if not self.is_put[i] and self.code[i] == cur:
                    mask |= self.bit[i]
                    path.append(i)
                    changed = True
            # No pending get reads the current value: a put nobody read can go first, since
            # no get can sit between here and it, nor between it and the next put.
            if not self.gets_of[cur] & ~mask:
                for i in window:
                    if self.is_put[i] and self.code[i] == _UNREAD and not mask & self.bit[i]:
                        mask |= self.bit[i]
                        path.append(i)
                        cur = _UNREAD
                        changed = True
            if not changed:
                puts = [i for i in window if self.is_put[i] and not mask & self.bit[i]]
                return mask, cur, puts

    def may_overwrite(self, mask: int, cur: int, i: int) -> bool:
        # Overwriting a value a pending get must still read is a dead end unless another
        # pending put writes that value again (impossible when values are unique).
        if self.code[i] == cur or not self.gets_of[cur] & ~mask:
            return True
        return bool(self.puts_of[cur] & ~mask & ~self.bit[i])

    def run(self, deadline: float, max_states: int) -> _KeyResult:
        path: list[int] = []
        # Frames: [mask, register code, candidate puts, next candidate, path length].
        frames: list[list[Any]] = []
        if self.enter(0, _NONE, path, frames):
            return _KeyResult(True, states=len(self.seen))
        ticks = 0
        while frames:
            frame = frames[-1]
            mask, cur, cands, nxt, base = frame
            if nxt >= len(cands):
                frames.pop()
                continue
            frame[3] = nxt + 1
            i = cands[nxt]
            del path[base:]
            path.append(i)
            if self.enter(mask | self.bit[i], self.code[i], path, frames):
                return _KeyResult(True, states=len(self.seen))
            ticks += 1
            if ticks % _CLOCK_EVERY == 0:
                if time.monotonic() >= deadline:
                    raise _OutOfBudget("time limit")
                if len(self.seen) >= max_states:
                    raise _OutOfBudget("state limit")
        text, blame = self.explain()
        return _KeyResult(False, states=len(self.seen), explanation=text, blame=blame)

    def enter(self, mask: int, cur: int, path: list[int], frames: list[list[Any]]) -> bool:
        """Visit a state; push a frame if it has untried moves. True when all are linearized."""
        state = (mask, cur)
        if state in self.seen:
            return False
        self.seen.add(state)
        mask, cur, puts = self.closure(mask, cur, path)
        if mask & self.required == self.required:
            return True
        if (mask, cur) != state:
            # The forced moves are deterministic, so their end state is memoized too.
            if (mask, cur) in self.seen:
                return False
            self.seen.add((mask, cur))
        progress = (mask & self.required).bit_count()
        if progress > self.best:
            self.best, self.best_state, self.best_path = progress, (mask, cur), list(path)
        # Earliest deadline first: the true order of a valid history tends to follow it.
        cands = sorted(
            (i for i in puts if self.may_overwrite(mask, cur, i)), key=self.end.__getitem__
        )
        if cands:
            frames.append([mask, cur, cands, 0, len(path)])
        return False

    def explain(self) -> tuple[str, list[int]]:
        """Why the deepest prefix found can't be extended: the ops that must come next."""
        mask, cur = self.best_state
        total = self.required.bit_count()
        pending = [i for i in self.window(mask)]
        urgent = min(
            (i for i in range(self.n) if self.required & self.bit[i] and not mask & self.bit[i]),
            key=self.end.__getitem__,
        )
        holds = self._value_text(cur)
        by = f"{self.end[urgent]:.6f}"
        if self.end[urgent] < self.ops[urgent].deadline:
            by += " (when a get that returned its value completed)"
        lines = [
            f"key {self.key!r}: no order of the operations fits their real-time order "
            f"and the register. At best {self.best} of {total} required operations linearize; "
            f"then the register holds {holds}, and {self.ops[urgent].describe()} must take "
            f"effect by {by}, but none of the ops that may come next fits:"
        ]
        readers = [i for i in range(self.n) if self.gets_of[cur] & ~mask & self.bit[i]]
        for i in pending:
            op = self.ops[i]
            if not self.is_put[i]:
                why = f"returned {op.result!r}, not {holds}"
            elif not self.may_overwrite(mask, cur, i):
                why = f"would overwrite {holds}, which {self.ops[readers[0]].describe()} returns"
            else:
                why = "every continuation after it fails"
            lines.append(f"  - {op.describe()}: {why}")
        tail = self.best_path[-8:]
        if tail:
            lines.append("last linearized: " + "; ".join(self.ops[i].describe() for i in tail))
        blame = sorted({self.pos[i] for i in [*pending, urgent, *tail, *readers[:1]]})
        return "\n".join(lines), blame

    def _value_text(self, code: int) -> str:
        if code == _UNREAD:
            return "a value no get returned"
        return repr(self.values[code])


# --- counterexamples -----------------------------------------------------------------------


def _counterexample(
    key: str,
    entries: list[tuple[int, Op]],
    res: _KeyResult,
    max_states: int,
    shrink: bool,
) -> dict[str, Any]:
    positions = res.blame
    explanation = res.explanation
    if shrink and res.states:  # found by the search, not by a one-read precheck
        positions, explanation = _shrink(key, _checked_ops(entries), res, max_states)
    ops_by_pos = dict(entries)
    return {
        "key": key,
        "ops": [ops_by_pos[p] for p in positions],
        "indices": positions,
        "explanation": explanation,
    }


def _shrink(
    key: str, checked: list[tuple[int, Op]], res: _KeyResult, max_states: int
) -> tuple[list[int], str]:
    """Delete ops while the key's history stays non-linearizable (delta-debugging style).

    Sound because a sub-history of a linearizable history is linearizable as long as no get
    outlives the put it read from: deleting a get never breaks an order, and deleting a put
    nobody read only changes the register where nobody looks. So gets are dropped with the
    puts they read from, and whatever is still a violation is a genuine one.
    """
    stop = time.monotonic() + SHRINK_SECONDS
    current = list(checked)
    last = res
    chunk = max(1, len(current) // 2)
    while time.monotonic() < stop:
        i = 0
        while i < len(current) and time.monotonic() < stop:
            trial = _without(current, current[i : i + chunk])
            attempt = (
                _check_key(key, trial, stop, max_states) if len(trial) < len(current) else None
            )
            if attempt is not None and attempt.verdict is False:
                current, last = trial, attempt
            else:
                i += chunk
        if chunk == 1:
            break
        chunk = max(1, chunk // 2)
    return [p for p, _ in current], last.explanation


def _without(current: list[tuple[int, Op]], drop: list[tuple[int, Op]]) -> list[tuple[int, Op]]:
    gone = {p for p, _ in drop}
    values = {op.value for _, op in drop if op.kind == "put"}
    return [
        (p, op)
        for p, op in current
        if p not in gone and not (op.kind == "get" and op.result in values)
    ]
