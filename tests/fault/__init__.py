"""Helpers for the fault checkers' tests: terse op builders and a register simulator."""

from __future__ import annotations

import random

from fault.history import History, Op


def put(
    value: str,
    invoke: float,
    complete: float | None = None,
    outcome: str = "ok",
    key: str = "k",
    process: int = 0,
    rid: str | None = None,
    index: int | None = None,
) -> Op:
    if complete is None and outcome == "ok":
        complete = invoke + 1
    rid = rid if rid is not None else f"rid-{key}-{value}"
    return Op(process, "put", key, value, rid, invoke, complete, outcome, None, index)


def get(
    result: str | None,
    invoke: float,
    complete: float | None = None,
    outcome: str = "ok",
    key: str = "k",
    process: int = 0,
    consistency: str = "linearizable",
) -> Op:
    if complete is None and outcome == "ok":
        complete = invoke + 1
    return Op(
        process,
        "get",
        key,
        None,
        None,
        invoke,
        complete,
        outcome,
        result,
        None,
        consistency,
    )


def simulate(
    seed: int,
    n_ops: int = 10_000,
    n_keys: int = 100,
    n_procs: int = 20,
    p_unknown: float = 0.03,
    p_fail: float = 0.02,
) -> History:
    """A history of a real (atomic) register store under random concurrency: linearizable.

    Each process runs ops back to back; each op takes effect at a random instant inside its
    interval (an unknown put: half the time some while after its invoke, even after the
    client gave up; otherwise never). Values are unique per key, as the recorder makes them.
    """
    rng = random.Random(seed)
    clocks = [rng.random() * 0.01 for _ in range(n_procs)]
    ops: list[Op] = []
    effects: list[tuple[float, int]] = []  # (instant it takes effect, op position)
    for n in range(n_ops):
        p = min(range(n_procs), key=clocks.__getitem__)  # whoever is free first goes next
        t0 = clocks[p]
        dur = rng.expovariate(1 / 0.01)
        t1 = t0 + dur
        key = f"k{rng.randrange(n_keys)}"
        r = rng.random()
        if rng.random() < 0.5:
            op = Op(p, "put", key, f"v{n}", f"r{n}", t0, t1, "ok", index=n + 1)
            if r < p_fail:
                op.outcome, op.index = "fail", None
            elif r < p_fail + p_unknown:
                op.outcome, op.complete, op.index = "unknown", None, None
                if rng.random() < 0.5:
                    effects.append((rng.uniform(t0, t0 + 5 * dur), n))
            else:
                effects.append((rng.uniform(t0, t1), n))
        else:
            op = Op(p, "get", key, None, None, t0, t1, "ok")
            if r < p_unknown:
                op.outcome, op.complete = "unknown", None
            else:
                effects.append((rng.uniform(t0, t1), n))
        ops.append(op)
        clocks[p] = t1 + rng.expovariate(1 / 0.002)
    register: dict[str, str] = {}
    for _, n in sorted(effects):
        op = ops[n]
        if op.kind == "put":
            register[op.key] = op.value
        else:
            op.result = register.get(op.key)
    keys = {op.key for op in ops}
    finals = [{k: register.get(k) for k in keys} for _ in range(3)]
    return History(ops=ops, final_states=finals, applied_rids=None, meta={"seed": seed})
