"""The register linearizability checker on hand-built, random and pathological histories."""

from __future__ import annotations

import functools
import itertools
import math
import random
import time

import pytest

from fault.history import History, Op
from fault.linearizability import check
from tests.fault import get, put, simulate


def verdict(*ops: Op, **kw: object) -> object:
    return check(list(ops), **kw).linearizable


# --- sequential ----------------------------------------------------------------------------


def test_empty_history_is_linearizable() -> None:
    res = check(History())
    assert res.linearizable is True and res.per_key == {} and res.counterexample is None


def test_sequential_valid() -> None:
    assert verdict(get(None, 0), put("a", 2), get("a", 4), put("b", 6), get("b", 8)) is True


def test_sequential_stale_read_after_completed_write() -> None:
    res = check([put("a", 0), put("b", 2), get("a", 4)])
    assert res.linearizable is False
    assert res.counterexample is not None and res.counterexample["key"] == "k"
    assert "'a'" in res.counterexample["explanation"]


def test_read_of_a_value_never_written() -> None:
    res = check([put("a", 0), get("zzz", 2)])
    assert res.linearizable is False
    assert "no put ever wrote" in res.counterexample["explanation"]


def test_read_from_the_future() -> None:
    # The get completed before the put of the value it returned was invoked.
    res = check([get("a", 0, 1), put("a", 2, 3)])
    assert res.linearizable is False
    assert "before any put" in res.counterexample["explanation"]


def test_read_your_write_violation() -> None:
    # One process writes, is acknowledged, then reads the old (initial) value.
    assert verdict(put("a", 0, 1, process=1), get(None, 2, 3, process=1)) is False
    assert verdict(put("a", 0, 1, process=1), get("a", 2, 3, process=1)) is True


def test_initial_none_then_nothing_but_none_before_writes() -> None:
    assert verdict(get(None, 0), get(None, 1), put("a", 3), get("a", 5)) is True
    # After "a" is visible, None can't come back: there is no delete.
    assert verdict(put("a", 0, 10), get("a", 1, 2), get(None, 3, 4)) is False


# --- concurrency ---------------------------------------------------------------------------


def test_concurrent_put_and_get_either_value() -> None:
    # A get overlapping a put may see the old or the new value.
    assert verdict(put("a", 0), put("b", 2, 6), get("a", 3, 4)) is True
    assert verdict(put("a", 0), put("b", 2, 6), get("b", 3, 4)) is True


def test_concurrent_overlap_where_only_one_order_works() -> None:
    # a and b overlap; the reads pin b before a (b, then a is seen last), which is fine...
    ok = [put("a", 0, 10, process=1), put("b", 0, 10, process=2), get("b", 1, 2), get("a", 11)]
    assert verdict(*ok) is True
    # ...but then reading b again after a was seen needs b written twice: impossible.
    assert verdict(*ok, get("b", 13)) is False


def test_two_readers_disagree_on_order_of_concurrent_writes() -> None:
    # Readers overlap with both writes; r1 sees a then b, r2 sees b then a: not linearizable.
    w = [put("a", 0, 10, process=1), put("b", 0, 10, process=2)]
    r1 = [get("a", 1, 2, process=3), get("b", 3, 4, process=3)]
    r2 = [get("b", 1, 2, process=4), get("a", 3, 4, process=4)]
    assert verdict(*w, *r1) is True
    assert verdict(*w, *r2) is True
    assert verdict(*w, *r1, *r2) is False


def test_equal_timestamps_overlap() -> None:
    # put completes at 1, get is invoked at 1: they overlap, so the get may miss the write.
    assert verdict(put("a", 0, 1), get(None, 1, 2)) is True
    assert verdict(put("a", 0, 1), get(None, 1.0001, 2)) is False


# --- unknown and failed outcomes -----------------------------------------------------------


def test_unknown_put_that_took_effect_later() -> None:
    # The client timed out; much later a read sees the value: it took effect in between.
    ops = [put("a", 0), put("b", 2, outcome="unknown"), get("a", 5), get("b", 50)]
    assert verdict(*ops) is True


def test_unknown_put_that_never_took_effect() -> None:
    ops = [put("a", 0), put("b", 2, outcome="unknown"), get("a", 5), get("a", 50)]
    assert verdict(*ops) is True


def test_unknown_put_seen_then_unseen() -> None:
    ops = [put("a", 0), put("b", 2, outcome="unknown"), get("b", 5), get("a", 8)]
    res = check(ops)
    assert res.linearizable is False
    assert res.per_key == {"k": False}


def test_unknown_put_cannot_take_effect_before_its_invoke() -> None:
    assert verdict(put("a", 0), get("b", 2), put("b", 5, outcome="unknown")) is False


def test_failed_put_seen_by_a_read() -> None:
    res = check([put("a", 0), put("b", 2, outcome="fail"), get("b", 5)])
    assert res.linearizable is False
    cx = res.counterexample
    assert cx is not None and "failed put" in cx["explanation"]
    assert {op.kind for op in cx["ops"]} == {"get", "put"}  # names the read and the put
    assert cx["indices"] == [1, 2]


def test_counterexample_without_shrinking_names_the_stuck_ops() -> None:
    ops = [put("x", -5, -4), put("a", 0, 10), put("b", 0, 10), get("b", 1, 2), get("a", 11)]
    ops.append(get("b", 13))
    res = check(ops, shrink=False)
    cx = res.counterexample
    assert res.linearizable is False and cx is not None
    # Stuck after x, b, get b: a can't overwrite b, which the last get still has to return.
    assert cx["indices"] == [0, 1, 2, 3, 5]
    assert "register holds 'b'" in cx["explanation"]
    assert [ops[i] for i in cx["indices"]] == cx["ops"]


def test_failed_put_dropped() -> None:
    assert verdict(put("a", 0), put("b", 2, outcome="fail"), get("a", 5)) is True


def test_unknown_and_failed_gets_constrain_nothing() -> None:
    ops = [put("a", 0), get("zzz", 2, outcome="unknown"), get("zzz", 4, 5, outcome="fail")]
    assert verdict(*ops) is True


def test_local_reads_are_not_checked() -> None:
    ops = [put("a", 0), put("b", 2), get("a", 4, consistency="local")]
    assert verdict(*ops) is True
    assert verdict(*ops[:2], get("a", 4)) is False


def test_many_unknown_puts_one_seen() -> None:
    ops = [put(f"u{i}", 0, outcome="unknown", process=i) for i in range(40)]
    ops += [get("u17", 5), get("u17", 7)]
    assert verdict(*ops) is True
    assert verdict(*ops, get("u3", 9), get("u17", 11)) is False


# --- per key -------------------------------------------------------------------------------


def test_keys_are_independent() -> None:
    # Across keys these reads would contradict one register, but each key alone is fine.
    ops = [put("a", 0, key="x"), put("b", 0, key="y"), get("a", 2, key="x"), get("b", 2, key="y")]
    res = check(ops)
    assert res.linearizable is True and res.per_key == {"x": True, "y": True}


def test_violation_on_one_key_only() -> None:
    ops = [put("a", 0, key="x"), get("a", 2, key="x")]
    ops += [put("a", 0, key="y"), put("b", 2, key="y"), get("a", 4, key="y")]
    res = check(ops)
    assert res.linearizable is False
    assert res.per_key == {"x": True, "y": False}
    assert res.counterexample["key"] == "y"
    assert res.stats["violating_keys"] == ["y"]


def test_counterexample_is_shrunk_to_the_violation() -> None:
    # A long valid prefix, then one stale read: the counterexample keeps only what matters.
    ops = []
    for i in range(30):
        ops += [put(f"v{i}", 10 * i, 10 * i + 2), get(f"v{i}", 10 * i + 3, 10 * i + 4)]
    ops.append(get("v3", 1000))
    res = check(ops)
    assert res.linearizable is False
    cx = res.counterexample
    assert cx is not None and len(cx["ops"]) <= 4
    assert any(op.kind == "get" and op.result == "v3" and op.invoke == 1000 for op in cx["ops"])
    assert cx["indices"] == sorted(cx["indices"])
    assert [ops[i] for i in cx["indices"]] == cx["ops"]
    # The shrunk counterexample is itself a violation.
    assert check(cx["ops"]).linearizable is False


# --- limits --------------------------------------------------------------------------------


def pathological(n: int) -> list[Op]:
    """n concurrent unknown puts, each read once, and two final reads that can't both be
    last: refuting it means trying every subset of the other puts (exponential)."""
    ops = []
    for i in range(n):
        ops.append(put(f"v{i}", 0, outcome="unknown", process=i))
        ops.append(get(f"v{i}", 0, 100, process=100 + i))
    return ops + [get("v0", 200, 201), get("v1", 202, 203)]


def test_time_limit_yields_unknown() -> None:
    started = time.monotonic()
    res = check(pathological(40), time_limit_s=0.3)
    assert time.monotonic() - started < 3
    assert res.linearizable == "unknown"
    assert res.per_key == {"k": "unknown"}
    assert res.stats["unknown_keys"] == {"k": "time limit"}
    assert res.counterexample is None


def test_state_limit_yields_unknown() -> None:
    res = check(pathological(40), max_states=2000)
    assert res.linearizable == "unknown"
    assert res.stats["unknown_keys"] == {"k": "state limit"}


def test_small_pathological_case_is_decided() -> None:
    assert check(pathological(6), time_limit_s=10).linearizable is False


def test_violation_elsewhere_beats_unknown() -> None:
    ops = pathological(40) + [put("a", 0, key="z"), put("b", 2, key="z"), get("a", 4, key="z")]
    res = check(ops, time_limit_s=0.3)
    assert res.linearizable is False
    assert res.per_key["z"] is False and res.per_key["k"] == "unknown"


# --- random histories ----------------------------------------------------------------------


def stale_read(history: History) -> int:
    """Make one get return a value that was overwritten before it began; return its index."""
    ops = history.ops
    acked = [op for op in ops if op.kind == "put" and op.outcome == "ok"]
    by_key: dict[str, list[Op]] = {}
    for op in sorted(acked, key=lambda o: o.invoke):
        by_key.setdefault(op.key, []).append(op)
    for n, g in enumerate(ops):
        if g.kind != "get" or g.outcome != "ok":
            continue
        puts = by_key.get(g.key, [])
        for q1, q2 in itertools.combinations(puts, 2):
            # q1 done before q2 started, q2 done before g started: q1's value is gone for good.
            if q1.complete < q2.invoke and q2.complete < g.invoke and g.result != q1.value:
                g.result = q1.value
                return n
    raise AssertionError("no candidate for a stale read")


def test_random_10k_history_is_linearizable_fast() -> None:
    h = simulate(seed=7, n_ops=10_000, n_keys=100, n_procs=20)
    started = time.monotonic()
    res = check(h, time_limit_s=10)
    assert res.linearizable is True, res.counterexample
    assert time.monotonic() - started < 5
    assert len(res.per_key) == 100 and set(res.per_key.values()) == {True}


def test_random_10k_history_with_one_stale_read() -> None:
    h = simulate(seed=8, n_ops=10_000, n_keys=100, n_procs=20)
    n = stale_read(h)
    res = check(h, time_limit_s=10)
    assert res.linearizable is False
    key = h.ops[n].key
    assert [k for k, v in res.per_key.items() if v is not True] == [key]
    assert res.counterexample is not None and n in res.counterexample["indices"]


def test_random_hot_key_history() -> None:
    # Everything on two keys with 40 clients: heavy overlap, many unknown outcomes.
    h = simulate(seed=9, n_ops=4000, n_keys=2, n_procs=40, p_unknown=0.2)
    assert check(h, time_limit_s=10).linearizable is True
    stale_read(h)
    assert check(h, time_limit_s=10).linearizable is False


# --- against a brute-force oracle ----------------------------------------------------------


def oracle(ops: list[Op]) -> bool:
    """Linearizable iff some order of the required ops plus a subset of the unknown puts
    respects real time and the register: tried exhaustively, no cleverness."""
    puts = [o for o in ops if o.kind == "put" and o.outcome != "fail"]
    required = [o for o in puts if o.outcome == "ok"]
    required += [o for o in ops if o.kind == "get" and o.outcome == "ok"]
    optional = [o for o in puts if o.outcome == "unknown"]

    def end(o: Op) -> float:
        return o.complete if o.outcome == "ok" else math.inf

    def legal(order: tuple[Op, ...]) -> bool:
        for i, a in enumerate(order):
            if any(end(b) < a.invoke for b in order[i + 1 :]):
                return False
        reg = None
        for o in order:
            if o.kind == "put":
                reg = o.value
            elif o.result != reg:
                return False
        return True

    for k in range(len(optional) + 1):
        for subset in itertools.combinations(optional, k):
            if any(legal(p) for p in itertools.permutations(required + list(subset))):
                return True
    return False


def small_random(rng: random.Random, n: int, values: list[str] | None) -> list[Op]:
    """Tiny histories on a coarse clock (many ties and overlaps) with random outcomes."""
    ops: list[Op] = []
    for i in range(n):
        t0 = float(rng.randrange(8))
        t1 = t0 + rng.randrange(4)
        if rng.random() < 0.5:
            outcome = rng.choice(["ok", "ok", "ok", "unknown", "fail"])
            value = rng.choice(values) if values else f"v{i}"
            ops.append(put(value, t0, t1, outcome=outcome))
        else:
            ops.append(get(None, t0, t1, outcome=rng.choice(["ok"] * 6 + ["unknown"])))
    pool = [None, "nope", *(op.value for op in ops if op.kind == "put")]
    for op in ops:
        if op.kind == "get":
            op.result = rng.choice(pool)
    return ops


@pytest.mark.parametrize("values", [None, ["a", "b", "c"]], ids=["unique", "repeated"])
def test_agrees_with_brute_force(values: list[str] | None) -> None:
    rng = random.Random(1234)
    outcomes = {True: 0, False: 0}
    for _ in range(1500):
        ops = small_random(rng, rng.randrange(1, 8), values)
        expected = oracle(ops)
        outcomes[expected] += 1
        res = check(ops)
        assert res.linearizable is expected, "\n".join(op.describe() for op in ops)
        if expected is False:
            # The shrunk counterexample is a violation on its own.
            assert oracle(res.counterexample["ops"]) is False
    assert min(outcomes.values()) > 300  # both verdicts well exercised


def naive(ops: list[Op]) -> bool:
    """Plain memoized Wing-Gong search with none of the checker's reductions."""
    puts = [o for o in ops if o.kind == "put" and o.outcome != "fail"]
    gets = [o for o in ops if o.kind == "get" and o.outcome == "ok"]
    items = puts + gets
    end = [o.complete if o.outcome == "ok" else math.inf for o in items]
    must = sum(1 << i for i, o in enumerate(items) if o.outcome == "ok")

    @functools.cache
    def ok(done: int, reg: str | None) -> bool:
        if done & must == must:
            return True
        left = [i for i in range(len(items)) if not done >> i & 1]
        bound = min(end[i] for i in left)
        for i in left:
            o = items[i]
            if o.invoke > bound or (o.kind == "get" and o.result != reg):
                continue
            if ok(done | 1 << i, o.value if o.kind == "put" else reg):
                return True
        return False

    return ok(0, None)


def test_agrees_with_naive_search_on_mutated_simulations() -> None:
    # Medium histories from a real register, with some reads corrupted at random.
    rng = random.Random(99)
    outcomes = {True: 0, False: 0}
    for seed in range(120):
        h = simulate(seed, n_ops=22, n_keys=1, n_procs=5, p_unknown=0.2)
        gets = [op for op in h.ops if op.kind == "get" and op.outcome == "ok"]
        values = [None, *(op.value for op in h.ops if op.kind == "put")]
        for g in rng.sample(gets, min(len(gets), rng.randrange(3))):
            g.result = rng.choice(values)
        expected = naive(h.ops)
        outcomes[expected] += 1
        assert check(h).linearizable is expected, "\n".join(op.describe() for op in h.ops)
    assert min(outcomes.values()) > 20
