"""One fault run: a lab zone, the recorder's clients, the nemesis schedule, the checkers.

    result = run(frontends=3, kinds=["kill", "pause"], seconds=30, seed=1, dir="/tmp/f")

Steps: start a `Lab(fault_injection=True)` (snapshots every `snapshot_entries` entries, so
that snapshots and their installs happen during the run); (disk nemesis: move every data
dir onto a tmpfs); start the recorder; execute the schedule, one thread per lane (inject,
wait the fault's duration, heal, then measure how long until the zone accepts a write
again: `recovery_s`); at the end heal everything, let the clients run one more second,
stop them, read every key on every front-end of the zone, check the history
(`fault.checks.summarize`, plus `fault.recorder.read_anomalies`) and save it.

A violation: a lost or duplicated write, divergent final states, a linearizability
violation, a read anomaly, or a front-end that could not be read at the end (the zone
did not recover). Then `dir` keeps the full history, a minimal one (the first offending
key) and the zone (data and logs); a run where a fault could not be injected or healed
keeps the zone too. The lab is always stopped (by pid) and every tmpfs unmounted.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
import threading
import time
from pathlib import Path

from fault.nemesis import DISK_MIN_FREE_BYTES, Nemesis, lanes_of, make_schedule
from fault.recorder import Recorder, read_anomalies, wait_writable
from zones.lab import Lab

log = logging.getLogger(__name__)

RECOVERY_TARGET_S = 2.0
RECOVERY_TIMEOUT_S = 20.0


def violation(summary: dict) -> bool:
    """True when the checkers found something wrong (an "unknown" verdict is not one)."""
    return bool(
        summary.get("lost")
        or summary.get("duplicate")
        or summary.get("divergent")
        or summary.get("linearizable") is False
    )


def _offending_keys(summary: dict, history) -> list[str]:
    """The keys a violation is about: the counterexample's first, then lost writes',
    divergent ones, and those of duplicated request ids."""
    keys: list[str] = []

    def add(k) -> None:
        if k is not None and k not in keys:
            keys.append(k)

    cex = summary.get("counterexample")
    if isinstance(cex, dict):
        add(cex.get("key"))
    details = summary.get("details") or {}
    for op in details.get("lost") or ():
        add(op.get("key") if isinstance(op, dict) else None)
    for k in details.get("divergent") or ():
        add(k)
    dup = set(details.get("duplicate") or ())
    for op in history.ops:
        if op.rid in dup:
            add(op.key)
    return keys


def _sleep_until(t: float) -> None:
    while True:
        left = t - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))


def run(
    frontends: int = 3,
    kinds: list[str] | tuple[str, ...] = ("kill",),
    seconds: float = 30.0,
    seed: int = 0,
    clients: int = 4,
    dir: str | Path | None = None,
    keys: int = 20,
    time_limit_s: float = 60.0,
    max_ops: int = 10000,
    think_s: float = 0.005,
    rate: float | None = None,
    snapshot_entries: int | None = 500,
    lanes: int = 1,
    keep_zone: bool = False,
) -> dict:
    """Run the zone under faults; returns the result dict (see bench/faults.py)."""
    kinds = list(kinds)
    base = Path(tempfile.mkdtemp(prefix="faults-")) if dir is None else Path(dir).resolve()
    base.mkdir(parents=True, exist_ok=True)
    overrides: dict = {}
    if "disk" in kinds:
        overrides["min_free_bytes"] = DISK_MIN_FREE_BYTES
    if snapshot_entries:
        # Snapshots (and their install on a lagging or new front-end) happen during the run.
        overrides["snapshot_min_entries"] = snapshot_entries
    lab = Lab(base / "zone", frontends=frontends, fault_injection=True, raft_overrides=overrides)
    t0 = time.monotonic()

    def now() -> float:
        return round(time.monotonic() - t0, 4)

    nemesis = Nemesis(lab, clock=now)
    schedule = make_schedule(seed, kinds, seconds, frontends, lanes=lanes)
    result: dict = {
        "frontends": frontends,
        "nemesis": kinds,
        "seconds": seconds,
        "seed": seed,
        "clients": clients,
        "lanes": lanes,
        "dir": str(base),
    }
    completed = False
    try:
        lab.up()
        nemesis.setup(kinds)
        rec = Recorder(
            lab,
            clients=clients,
            keys=keys,
            seed=seed,
            targets=nemesis.targets,
            max_ops=max_ops,
            max_seconds=seconds + 120,
            think_s=think_s,
            # Spread the operations budget over the whole run (a little to spare).
            rate=rate or 0.9 * max_ops / (seconds + 2.0),
        )
        t0 = time.monotonic()
        rec.start(t0)
        threads = [
            threading.Thread(
                target=_run_lane,
                args=(lab, nemesis, steps, t0, seconds),
                name=f"nemesis-{n}",
                daemon=True,
            )
            for n, steps in enumerate(lanes_of(schedule))
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        _sleep_until(t0 + seconds)
        nemesis.heal_all()
        healed = now()
        time.sleep(1.0)
        rec.stop()
        members = [m for m in nemesis.members() if lab.running(m)]
        final_start = time.monotonic()
        try:
            rec.collect_final(
                lab,
                frontends=members,
                timeout=60.0,
                probe=lambda: wait_writable(lab, RECOVERY_TIMEOUT_S, targets=nemesis.targets),
            )
        except TimeoutError as e:
            # Not writable after every fault healed: a liveness failure, reported as such.
            rec.final_errors.append(f"after healing: {e}")
        result["final_recovery_s"] = round(time.monotonic() - final_start, 3)
        result["healed_at"] = healed
        faults = [f.log_entry() for f in nemesis.log]
        history = rec.history(
            meta={"frontends": frontends, "nemesis": kinds, "seed": seed, "faults": faults}
        )
        rec.save_raw(str(base / "records.json"))
        for f in faults:
            f["write_outage_s"] = _write_outage(rec, f)
        recoveries = [f["recovery_s"] for f in faults if f["recovery_s"] is not None]
        result.update(
            {
                "faults": faults,
                "recovery_s_max": max(recoveries, default=None),
                "recovery_over_target": sum(1 for r in recoveries if r > RECOVERY_TARGET_S),
                "write_outage_s_max": max(
                    (f["write_outage_s"] for f in faults if f["write_outage_s"] is not None),
                    default=None,
                ),
                "fault_errors": [f["error"] for f in faults if f["error"]],
                "recorder": {
                    "puts": rec.stats.puts,
                    "gets": rec.stats.gets,
                    "ok": rec.stats.ok,
                    "fail": rec.stats.fail,
                    "unknown": rec.stats.unknown,
                    "retries": rec.stats.retries,
                    "errors": rec.stats.errors,
                    "final_frontends": rec.final_frontends,
                    "final_errors": rec.final_errors,
                },
            }
        )
        anomalies = read_anomalies(rec.records, limit=0)
        result.update(
            judge(history, base, time_limit_s, final_errors=rec.final_errors, anomalies=anomalies)
        )
        completed = True
    finally:
        with contextlib.suppress(Exception):
            nemesis.heal_all()
        lab.down()
        nemesis.cleanup()
        troubled = result.get("violation") or result.get("fault_errors")
        if completed and not troubled and not keep_zone:
            # A clean run: the zone's data and logs are of no interest, the histories stay
            # (a violation or a fault that went wrong keeps them, to be looked at).
            shutil.rmtree(base / "zone", ignore_errors=True)
    return result


def judge(history, base: Path, time_limit_s: float, final_errors=(), anomalies=()) -> dict:
    """Save the history, run the checkers; on a violation save a minimal history too.

    Returns the checker part of the result: operations, acknowledged, lost, duplicate,
    divergent, linearizable, history_full, violation, and on a violation history (the
    minimal one), offending_keys and the counterexample.
    """
    from fault import checks
    from fault import history as fh

    base = Path(base)
    full_path = base / "history.json"
    fh.save(history, str(full_path))
    summary = checks.summarize(history, time_limit_s)
    out = {
        "operations": summary.get("operations"),
        "acknowledged": summary.get("acknowledged"),
        "lost": summary.get("lost"),
        "duplicate": summary.get("duplicate"),
        "divergent": summary.get("divergent"),
        "linearizable": summary.get("linearizable"),
        "history_full": str(full_path),
        "read_anomalies": len(anomalies),
        "violation": violation(summary) or bool(final_errors) or bool(anomalies),
    }
    details = summary.get("details") or {}
    if details.get("unchecked_keys"):
        out["unchecked_keys"] = details["unchecked_keys"]
    if summary.get("counterexample") is not None:
        out["counterexample"] = summary["counterexample"]
    if out["violation"]:
        keys = _offending_keys(summary, history)
        for a in anomalies:
            if a["key"] not in keys:
                keys.append(a["key"])
        out["offending_keys"] = keys
        if anomalies:
            out["read_anomaly_examples"] = list(anomalies[:10])
        out["details"] = {k: details.get(k) for k in ("lost", "duplicate", "divergent")}
        if keys:
            path = base / "history-minimal.json"
            fh.save(fh.minimize(history, keys[0]), str(path))
            out["history"] = str(path)
        else:
            out["history"] = str(full_path)
    return out


def _write_outage(rec: Recorder, fault: dict) -> float | None:
    """Longest time without an acknowledged write, from the injection until the zone
    accepted writes again after the heal (None if it never did)."""
    if fault.get("injected_at") is None or fault.get("healed_at") is None:
        return None
    if fault.get("recovery_s") is None:
        return None
    a, b = fault["injected_at"], fault["healed_at"] + fault["recovery_s"]
    acks = sorted(
        r.complete
        for r in rec.records
        if r.kind == "put" and r.outcome == "ok" and r.complete is not None and a < r.complete < b
    )
    points = [a, *acks, b]
    return round(max(y - x for x, y in zip(points, points[1:], strict=False)), 3)


def _run_lane(lab, nemesis: Nemesis, steps, t0: float, seconds: float) -> None:
    """One lane of the schedule: inject, wait the duration, heal, measure the recovery.
    Steps that would start after the end of the run (a slow heal) are skipped."""
    for step in steps:
        if time.monotonic() > t0 + seconds:
            return
        _sleep_until(t0 + step.at)
        fault = nemesis.inject(step)
        _sleep_until(time.monotonic() + step.params["duration"])
        nemesis.heal(fault)
        fault.recovery_s = _recovery(lab, nemesis, fault)


def _recovery(lab, nemesis: Nemesis, fault) -> float | None:
    """Seconds from the heal until the zone acknowledges a write (None if it never did)."""
    start = time.monotonic()
    try:
        wait_writable(lab, RECOVERY_TIMEOUT_S, targets=nemesis.targets)
    except TimeoutError as e:
        fault.error = (fault.error + "; " if fault.error else "") + f"recovery: {e}"
        return None
    return round(time.monotonic() - start, 3)
