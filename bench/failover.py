"""Leader failover time, and no acknowledged write lost across leader kills.

    python -m bench failover --frontends 3 --kills 5 [--json]

A writer thread writes continuously through ``one.v1.KVService/Put``: sequential unique
keys, each with its own request id; on an error or timeout it retries the SAME key with
the SAME request id against each front-end in turn until one acknowledges it, and
records every acknowledged key (with the log index it was applied at).

K times: find the leader, SIGKILL it (``lab.kill``), and measure the time from the kill
until the next write is acknowledged (``failover_s``); then restart the killed front-end
(``lab.start``) and wait until it is a follower whose applied index has reached the
leader's commit index before the next kill.

At the end every acknowledged key is read back with a LINEARIZABLE read, and with a
LOCAL read on every front-end after waiting for ``min_index`` = the highest acknowledged
index; ``acked_lost`` counts acknowledged keys missing (or with another value) in any of
these reads and must be 0.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

import grpc

from bench.commit import login, read_password
from bench.loadgen import log

CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 0),
    # Reconnect quickly to a restarted front-end (the default backoff grows to minutes).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
]
# A write acknowledged within this long of the kill, by an attempt sent before the kill,
# may have been committed by the old leader: it does not end the failover window.
IN_FLIGHT_S = 0.05


@dataclass
class Ack:
    n: int
    key: str
    value: bytes
    index: int
    sent: float  # monotonic time the successful attempt was sent
    acked: float  # monotonic time it was acknowledged
    attempts: int


@dataclass
class WriterStats:
    acks: list[Ack] = field(default_factory=list)
    failed_attempts: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)


class Writer(threading.Thread):
    """The continuous writer (sync gRPC, one request at a time)."""

    def __init__(
        self,
        endpoints: list[str],
        token: str,
        start_at: int = 0,
        attempt_timeout: float = 2.0,
        value_size: int = 64,
    ):
        super().__init__(name="bench-writer", daemon=True)
        from zones.api.gen import common_pb2, kv_pb2, kv_pb2_grpc

        self._kv_pb2 = kv_pb2
        self._common_pb2 = common_pb2
        self.endpoints = list(endpoints)
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.target = start_at
        self.attempt_timeout = attempt_timeout
        self.value_size = value_size
        self.run_id = uuid.uuid4().hex[:8]
        self.channels = [grpc.insecure_channel(e, options=CHANNEL_OPTIONS) for e in endpoints]
        self.stubs = [kv_pb2_grpc.KVServiceStub(ch) for ch in self.channels]
        self.stats = WriterStats()
        self.cond = threading.Condition()
        self._halt = threading.Event()
        self.crashed: BaseException | None = None

    def value_of(self, n: int) -> bytes:
        return f"{self.run_id}:{n}:".encode().ljust(self.value_size, b".")

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.crashed = exc
            with self.cond:
                self.cond.notify_all()

    def _run(self) -> None:
        n = 0
        while not self._halt.is_set():
            key = f"failover/{self.run_id}/{n:08d}"
            value = self.value_of(n)
            req = self._kv_pb2.PutRequest(
                key=key,
                value=value,
                options=self._common_pb2.WriteOptions(request_id=f"fo-{self.run_id}-{n}"),
            )
            attempts = 0
            while not self._halt.is_set():
                attempts += 1
                sent = time.monotonic()
                try:
                    resp = self.stubs[self.target].Put(
                        req, timeout=self.attempt_timeout, metadata=self.metadata
                    )
                except grpc.RpcError as exc:
                    kind = f"{exc.code().name}"
                    with self.cond:
                        self.stats.failed_attempts += 1
                        self.stats.error_kinds[kind] = self.stats.error_kinds.get(kind, 0) + 1
                    self.target = (self.target + 1) % len(self.stubs)
                    if attempts % len(self.stubs) == 0:
                        self._halt.wait(0.01)  # a full round failed: do not spin
                    continue
                ack = Ack(n, key, value, resp.index, sent, time.monotonic(), attempts)
                with self.cond:
                    self.stats.acks.append(ack)
                    self.cond.notify_all()
                break
            n += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=self.attempt_timeout + 5)
        for ch in self.channels:
            ch.close()

    # -- used by the main thread -----------------------------------------------------
    def acked(self) -> int:
        with self.cond:
            return len(self.stats.acks)

    def wait_acks(self, count: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.stats.acks) < count:
                if self.crashed or time.monotonic() >= deadline:
                    return False
                self.cond.wait(max(0.0, deadline - time.monotonic()))
            return True

    def wait_ack_after(self, t_kill: float, timeout: float) -> Ack | None:
        """The first write acknowledged after the kill that cannot have been committed by
        the killed leader (its attempt was sent after the kill, or it came back later
        than IN_FLIGHT_S after it)."""
        deadline = time.monotonic() + timeout
        start = 0
        with self.cond:
            while True:
                acks = self.stats.acks
                for a in acks[start:]:
                    if a.acked > t_kill and (a.sent >= t_kill or a.acked - t_kill > IN_FLIGHT_S):
                        return a
                start = len(acks)
                if self.crashed or time.monotonic() >= deadline:
                    return None
                self.cond.wait(max(0.0, min(0.5, deadline - time.monotonic())))


def wait_caught_up(lab, i: int, timeout: float = 60.0) -> float:
    """Until front-end i is a follower whose applied index reached the leader's commit
    index (read after i was restarted); returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + timeout
    target = None
    last = "no answer"
    while time.monotonic() < deadline:
        sts = lab.statuses(timeout=1.0)
        if target is None:
            leaders = [
                s for j, s in sts.items() if s is not None and j != i and s.state == "leader"
            ]
            if leaders:
                target = max(leaders, key=lambda s: s.term).commit
        st = sts.get(i)
        if st is not None:
            last = f"{st.state} applied {st.applied} (target {target})"
            if target is not None and st.state == "follower" and st.applied >= target:
                return time.monotonic() - t0
        time.sleep(0.05)
    raise RuntimeError(f"front-end {i} did not catch up in {timeout:.0f} s: {last}")


# -- the final check ----------------------------------------------------------------------
async def _read_all(
    endpoint: str,
    token: str,
    acks: list[Ack],
    consistency: int,
    min_index: int,
    concurrency: int = 32,
    timeout: float = 10.0,
):
    """Read every acked key at ``endpoint``; returns (lost keys, read errors)."""
    from zones.api.gen import common_pb2, kv_pb2, kv_pb2_grpc

    md = (("authorization", f"Bearer {token}"),)
    lost: list[str] = []
    errors: list[str] = []
    sem = asyncio.Semaphore(concurrency)
    async with grpc.aio.insecure_channel(endpoint, options=CHANNEL_OPTIONS) as ch:
        stub = kv_pb2_grpc.KVServiceStub(ch)
        opts = common_pb2.ReadOptions(consistency=consistency, min_index=min_index)

        async def one(a: Ack) -> None:
            async with sem:
                for attempt in range(3):
                    try:
                        r = await stub.Get(
                            kv_pb2.GetRequest(key=a.key, options=opts), timeout=timeout, metadata=md
                        )
                        break
                    except grpc.aio.AioRpcError as exc:
                        if attempt == 2:
                            errors.append(f"{a.key}: {exc.code().name}: {exc.details()}")
                            return
                        await asyncio.sleep(0.2)
                if not r.found or r.value != a.value:
                    lost.append(a.key)

        await asyncio.gather(*(one(a) for a in acks))
    return lost, errors


def check_acked(lab, token: str, acks: list[Ack]) -> dict:
    """LINEARIZABLE read of every acked key at the leader, then LOCAL reads (min_index =
    highest acked index) on every front-end."""
    from zones.api.gen import common_pb2

    max_index = max((a.index for a in acks), default=0)
    leader = lab.leader_index(timeout=30)
    lost: set[str] = set()
    read_errors: list[str] = []
    per_read: dict[str, int] = {}
    t0 = time.monotonic()
    lin_lost, errs = asyncio.run(
        _read_all(lab.endpoints[leader], token, acks, common_pb2.LINEARIZABLE, 0)
    )
    per_read["linearizable"] = len(lin_lost)
    lost.update(lin_lost)
    read_errors += errs
    for i, ep in enumerate(lab.endpoints):
        loc_lost, errs = asyncio.run(_read_all(ep, token, acks, common_pb2.LOCAL, max_index))
        per_read[f"local_fe{i}"] = len(loc_lost)
        lost.update(loc_lost)
        read_errors += errs
    log(
        f"failover: read back {len(acks)} keys x {1 + len(lab.endpoints)} in "
        f"{time.monotonic() - t0:.1f} s; missing per read: {per_read}"
    )
    return {
        "acked_lost": len(lost),
        "lost_by_read": per_read,
        "read_errors": len(read_errors),
        "read_error_sample": read_errors[:5],
        "lost_sample": sorted(lost)[:5],
        "max_acked_index": max_index,
    }


# -- the command ------------------------------------------------------------------------
def run(frontends: int, kills: int, dwell: float, lab_dir: str) -> dict:
    from zones.lab import Lab

    lab = Lab(lab_dir, frontends=frontends)
    writer = None
    try:
        t0 = time.monotonic()
        lab.up()
        log(f"failover: zone of {frontends} up in {time.monotonic() - t0:.1f} s")
        leader = lab.leader_index(timeout=30)
        token = login(lab.endpoints[leader], read_password(lab_dir))
        writer = Writer(lab.endpoints, token, start_at=leader)
        writer.start()
        if not writer.wait_acks(50, timeout=30):
            raise RuntimeError(f"the writer made no progress ({writer.crashed or 'timeout'})")
        failover_s: list[float] = []
        catchup_s: list[float] = []
        leaders: list[int] = []
        for k in range(kills):
            time.sleep(dwell)
            leader = lab.leader_index(timeout=30)
            leaders.append(leader)
            t_kill = time.monotonic()
            lab.kill(leader)
            ack = writer.wait_ack_after(t_kill, timeout=60)
            if ack is None:
                raise RuntimeError(
                    f"kill {k + 1}: no write acknowledged within 60 s of killing "
                    f"front-end {leader} ({writer.crashed or writer.stats.error_kinds})"
                )
            dt = ack.acked - t_kill
            failover_s.append(dt)
            new_leader = lab.leader_index(timeout=30, exclude=(leader,))
            log(
                f"failover: kill {k + 1}/{kills}: front-end {leader} -> next ack after "
                f"{dt:.3f} s (new leader {new_leader}, {ack.attempts} attempts)"
            )
            lab.start(leader)
            catchup_s.append(wait_caught_up(lab, leader))
            log(f"failover: front-end {leader} restarted, caught up in {catchup_s[-1]:.2f} s")
        time.sleep(min(dwell, 0.5))
        writer.stop()
        if writer.crashed:
            raise RuntimeError(f"the writer crashed: {writer.crashed!r}")
        acks = list(writer.stats.acks)
        result = {
            "bench": "failover",
            "frontends": frontends,
            "kills": kills,
            "failover_s": [round(x, 3) for x in failover_s],
            "failover_s_median": round(statistics.median(failover_s), 3) if failover_s else None,
            "failover_s_max": round(max(failover_s), 3) if failover_s else None,
            "catchup_s": [round(x, 2) for x in catchup_s],
            "killed": leaders,
            "writes_acked": len(acks),
            "failed_attempts": writer.stats.failed_attempts,
            "error_kinds": writer.stats.error_kinds,
        }
        result.update(check_acked(lab, token, acks))
        return result
    finally:
        try:
            if writer is not None and writer.is_alive():
                writer.stop()
        finally:
            lab.down()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench failover",
        description="Leader SIGKILL -> next acknowledged write; no acknowledged write lost.",
    )
    ap.add_argument("--frontends", type=int, default=3)
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument(
        "--dwell", type=float, default=1.0, help="seconds of normal writing before each kill"
    )
    ap.add_argument("--dir", default=None, help="zone directory (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.frontends < 3:
        ap.error("failover needs at least 3 front-ends")
    own = args.dir is None
    lab_dir = tempfile.mkdtemp(prefix="bench-failover-") if own else args.dir
    try:
        out = run(args.frontends, args.kills, args.dwell, lab_dir)
    finally:
        if own:
            shutil.rmtree(lab_dir, ignore_errors=True)
    log(
        f"failover: median {out['failover_s_median']} s, max {out['failover_s_max']} s, "
        f"{out['writes_acked']} writes acked, acked_lost {out['acked_lost']}"
    )
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0 if out["acked_lost"] == 0 and out["read_errors"] == 0 else 1
