"""Closed-loop load generator.

C concurrent clients for S seconds; each client issues its next request when the previous
one returns and every request's latency is recorded. The clients are grpc.aio coroutines,
either all in this process (``processes=1``) or split over a few worker processes (each
with its own event loop and channels) when one Python process would be the bottleneck.

A workload is a small picklable object (plain constructor arguments; channels are made in
``open``) with three coroutines::

    async def open(self) -> None            # make channels / stubs (in the worker)
    async def request(self, client, seq)    # one request; raise on error
    async def close(self) -> None

``client`` is a global client number (0..C-1, unique across worker processes) and ``seq``
the client's own request counter, so ``(client, seq)`` makes unique keys.

Only a measurement window is counted: requests that complete between ``warmup`` and
``warmup + seconds`` after the start. Totals are bounded by ``max_requests`` and every
request by ``timeout`` (the workload applies it to its RPCs).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import sys
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

ERROR_BACKOFF_S = 0.01


class Workload(Protocol):
    async def open(self) -> None: ...

    async def request(self, client: int, seq: int) -> None: ...

    async def close(self) -> None: ...


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of already-sorted data, linear interpolation between
    closest ranks (numpy's default). NaN for no data."""
    if not sorted_values:
        return math.nan
    if not 0 <= q <= 100:
        raise ValueError(f"percentile out of range: {q}")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    if lo == hi:
        return float(sorted_values[lo])
    frac = pos - lo
    return sorted_values[lo] * (1.0 - frac) + sorted_values[hi] * frac


@dataclass
class Result:
    """Merged outcome of one run. Latencies are in seconds."""

    clients: int
    seconds: float
    elapsed_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_kinds: Counter = field(default_factory=Counter)
    started: int = 0  # requests started (all phases, incl. warm-up and the tail)
    client_cpu_s: float = 0.0  # CPU used by the load generator process(es)
    run_s: float = 0.0  # wall time the clients ran (warm-up + window)

    @property
    def ops(self) -> int:
        return len(self.latencies)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        return {
            "ops": self.ops,
            "ops_per_s": round(self.ops_per_s, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 3) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1000, 3) if lat else None,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "clients": self.clients,
            "seconds": self.seconds,
            "elapsed_s": round(self.elapsed_s, 3),
            # cores busy in the load generator: near 1.0 per process means the client
            # may be the bottleneck.
            "client_cores": round(self.client_cpu_s / self.run_s, 2) if self.run_s else None,
        }


def _error_kind(exc: BaseException) -> str:
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return str(code())
        except Exception:  # noqa: BLE001 - only a label
            pass
    return type(exc).__name__


async def _run_clients(
    workload: Workload,
    client_ids: list[int],
    t_start: float,
    warmup: float,
    seconds: float,
    max_requests: int | None,
) -> dict[str, Any]:
    """Run the given clients against the workload; ``t_start`` is a time.time() instant
    shared by every worker process so the windows line up."""
    w0 = t_start + warmup
    w1 = w0 + seconds
    latencies: list[float] = []
    kinds: Counter = Counter()
    counters = {"errors": 0, "started": 0, "last_done": 0.0}
    budget = [max_requests if max_requests is not None else math.inf]

    async def one_client(client: int) -> None:
        seq = 0
        while True:
            now = time.time()
            if now >= w1 or budget[0] <= 0:
                return
            budget[0] -= 1
            counters["started"] += 1
            t0 = time.perf_counter()
            try:
                await workload.request(client, seq)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - counted, the loop goes on
                if w0 <= time.time() <= w1:
                    counters["errors"] += 1
                    kinds[_error_kind(exc)] += 1
                seq += 1
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            dt = time.perf_counter() - t0
            done = time.time()
            if w0 <= done <= w1:
                latencies.append(dt)
                counters["last_done"] = done
            seq += 1

    delay = t_start - time.time()
    if delay > 0:
        await asyncio.sleep(delay)
    cpu0 = time.process_time()
    await asyncio.gather(*(one_client(c) for c in client_ids))
    cpu = time.process_time() - cpu0
    return {
        "latencies": latencies,
        "errors": counters["errors"],
        "error_kinds": dict(kinds),
        "started": counters["started"],
        "last_done": counters["last_done"],
        "exhausted": budget[0] <= 0,
        "w0": w0,
        "cpu_s": cpu,
        "run_s": warmup + seconds,
    }


async def _run_in_loop(workload, client_ids, t_start, warmup, seconds, max_requests):
    await workload.open()
    try:
        return await _run_clients(workload, client_ids, t_start, warmup, seconds, max_requests)
    finally:
        await workload.close()


def _worker(conn, workload, client_ids, t_start, warmup, seconds, max_requests) -> None:
    try:
        out = asyncio.run(
            _run_in_loop(workload, client_ids, t_start, warmup, seconds, max_requests)
        )
        conn.send(("ok", out))
    except BaseException:  # noqa: BLE001 - reported to the parent
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def _split(items: list[int], parts: int) -> list[list[int]]:
    return [items[i::parts] for i in range(parts) if items[i::parts]]


def run(
    workload: Workload,
    clients: int,
    seconds: float,
    *,
    processes: int = 1,
    warmup: float = 0.5,
    max_requests: int | None = None,
    start_delay: float | None = None,
) -> Result:
    """Run the closed loop and return the merged :class:`Result`.

    ``processes`` > 1 starts that many worker processes (spawned, so no gRPC state is
    inherited), each with its share of the clients and of ``max_requests``.
    """
    if clients < 1 or seconds <= 0:
        raise ValueError("need clients >= 1 and seconds > 0")
    processes = max(1, min(processes, clients))
    result = Result(clients=clients, seconds=seconds, elapsed_s=seconds)
    ids = list(range(clients))
    if processes == 1:
        t_start = time.time() + (start_delay if start_delay is not None else 0.0)
        outs = [asyncio.run(_run_in_loop(workload, ids, t_start, warmup, seconds, max_requests))]
    else:
        # Spawned interpreters need a moment to import grpc before the shared start.
        t_start = time.time() + (start_delay if start_delay is not None else 2.0)
        ctx = multiprocessing.get_context("spawn")
        groups = _split(ids, processes)
        per_proc = None if max_requests is None else max(1, max_requests // len(groups))
        procs = []
        for group in groups:
            parent, child = ctx.Pipe(duplex=False)
            p = ctx.Process(
                target=_worker,
                args=(child, workload, group, t_start, warmup, seconds, per_proc),
                daemon=True,
            )
            p.start()
            child.close()
            procs.append((p, parent))
        outs = []
        deadline = t_start + warmup + seconds + 60
        try:
            for p, parent in procs:
                if not parent.poll(max(0.1, deadline - time.time())):
                    raise RuntimeError(f"load worker {p.pid} did not report in time")
                try:
                    status, out = parent.recv()
                except EOFError:
                    p.join(timeout=5)
                    raise RuntimeError(
                        f"load worker {p.pid} died without a report (exit {p.exitcode})"
                    ) from None
                if status != "ok":
                    raise RuntimeError(f"load worker {p.pid} failed:\n{out}")
                outs.append(out)
        finally:
            for p, _ in procs:
                p.join(timeout=5)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5)
    for out in outs:
        result.latencies.extend(out["latencies"])
        result.errors += out["errors"]
        result.error_kinds.update(out["error_kinds"])
        result.started += out["started"]
        result.client_cpu_s += out["cpu_s"]
        result.run_s = max(result.run_s, out["run_s"])
    if any(out["exhausted"] for out in outs):
        # The count bound ended the run before the time bound: rate over the part of
        # the window actually used.
        last = max(out["last_done"] for out in outs)
        used = last - outs[0]["w0"]
        if 0 < used < seconds:
            result.elapsed_s = used
    per_proc = result.client_cpu_s / result.run_s / len(outs) if result.run_s else 0.0
    if per_proc > 0.85:
        log(
            f"loadgen: warning: the load generator used {per_proc:.2f} core per process; "
            "it may be the bottleneck (try --processes 2)"
        )
    return result


def default_processes(clients: int) -> int:
    """Load worker processes to use by default: one.

    Measured here (2 cores, etcd at 64 clients): one grpc.aio process uses ~0.45 core
    and gives the same throughput as two (7,100 vs 7,130 puts/s); more processes only
    take CPU from the server. ``run`` warns when the generator gets near a full core.
    """
    return 1


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return out


def proc_cpu_s(pid: int) -> float | None:
    """CPU seconds (user + system, all threads) used so far by ``pid`` and its live
    descendants (a front-end is oned plus its API worker); None if ``pid`` is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    own = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return own + sum(proc_cpu_s(c) or 0.0 for c in _children(pid))


class CpuMeter:
    """Cores used by a set of processes between ``start()`` and ``stop()``."""

    def __init__(self, pids: list[int]):
        self.pids = list(pids)

    def start(self) -> CpuMeter:
        self.t0 = time.monotonic()
        self.c0 = [proc_cpu_s(p) for p in self.pids]
        return self

    def stop(self) -> list[float | None]:
        dt = time.monotonic() - self.t0
        out = []
        for pid, c0 in zip(self.pids, self.c0, strict=True):
            c1 = proc_cpu_s(pid)
            out.append(round((c1 - c0) / dt, 2) if c0 is not None and c1 is not None else None)
        return out


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
