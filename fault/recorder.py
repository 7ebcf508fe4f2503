"""History recorder: concurrent clients issue KV puts and gets against a lab zone through
the public gRPC API and record what they saw (Jepsen / etcd robustness style).

    rec = Recorder(lab, clients=4, keys=20, seed=1)
    rec.start()                     # client threads run until stop() (or their budget)
    ...                             # inject faults meanwhile
    rec.stop()
    rec.collect_final(lab)          # heal first: waits for writes, reads every key everywhere
    history = rec.history()         # fault.history.History

Every client is one thread with one gRPC channel per front-end, talking to a random
front-end for each operation (followers forward writes and linearizable reads to the
leader). Puts write a value unique per key (``"<process>-<seq>"``) with their own request
id; gets are mostly LINEARIZABLE, some LOCAL with ``min_index`` = the highest index this
client has seen (read-your-writes). Most operations give up after ``op_timeout`` (1 s);
some (``long_fraction``) wait ``long_timeout`` (4 s), longer than any pause, so what a
paused front-end answers once it resumes is recorded and checked too. With ``rate`` the
clients are paced (operations per second over all of them), to spread a budget of
``max_ops`` over a run.

Outcomes of a put, conservatively:

- ``ok``: acknowledged, with the log index it was applied at;
- ``fail``: certainly not applied: refused by validation or authentication
  (INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED) or never sent (gRPC could not
  connect: "failed to connect to all addresses");
- ``unknown``: everything else (DEADLINE_EXCEEDED, UNAVAILABLE of any kind, a broken
  connection, RESOURCE_EXHAUSTED...). A follower forwards a write and retries it with the
  same request id on UNAVAILABLE, so even "no leader" or "discarded" may follow an attempt
  that reached a leader's log: only the codes above prove nothing was applied.

A put with an unknown outcome is retried with the SAME request id (that is what makes a
retry safe: the store returns the first result) and each attempt is recorded as its own
record with the same rid and value (``records``, ``save_raw``). After an unknown outcome
the client continues under a new process id (the old one may have an operation pending
forever). A retry that fails definitively proves nothing about the rid and is not
recorded. ``history()`` merges a rid's attempts into ONE operation by default: from the
first attempt's invoke to the acknowledging attempt's completion (unknown if none
acknowledged) -- the write is applied at most once, somewhere in there; as separate
operations a retry would look like a second write of the same value.

Reads that fail have no effect and are recorded as ``fail``.

``Op.index`` is the log index a put was applied at, and for a get the revision (index of
the write that produced the value; 0 when not found).

Applied request ids (``History.applied_rids``): the API has no server-side counter of how
many times a request id was applied, but it exposes where a value came from: a put
returns the index it was applied at (a retry returns the first index) and every read
returns the revision of the value. Values are unique per key, so each (key, value) names
one rid; ``applied_rids[rid]`` is the number of distinct indexes at which the rid's value
was seen applied (acknowledgements, reads during the run, final reads on every
front-end). More than one means the write was applied twice. A second application no
read happened to see goes unnoticed: this is a lower bound.

``read_anomalies(records)`` checks what reads say about the store that served them
against those indexes (the LOCAL reads included, which the linearizability checker does
not judge): see its docstring.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import grpc

from zones.api.client import CHANNEL_OPTIONS
from zones.api.gen import common_pb2, kv_pb2, kv_pb2_grpc

log = logging.getLogger(__name__)

# gRPC status codes that prove a write was not applied (checked before anything happens).
DEFINITE_FAILURES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
# The channel had no connection: the request never left this process.
_NOT_SENT = ("failed to connect to all addresses",)


def classify_put_error(code: grpc.StatusCode, details: str) -> str:
    """``fail`` when the write certainly was not applied, else ``unknown``."""
    if code in DEFINITE_FAILURES:
        return "fail"
    if code == grpc.StatusCode.UNAVAILABLE and any(s in (details or "") for s in _NOT_SENT):
        return "fail"
    return "unknown"


@dataclass
class Record:
    """One operation as the recorder saw it (more than fault.history.Op keeps)."""

    process: int
    kind: str  # "put" | "get"
    key: str
    value: str | None
    rid: str | None
    invoke: float  # seconds since the recorder's t0 (monotonic)
    complete: float | None
    outcome: str  # "ok" | "fail" | "unknown"
    result: str | None = None  # value read (get)
    index: int | None = None  # put: applied index; get: revision of the value read
    consistency: str | None = None  # gets: "linearizable" | "local"
    client: int = 0
    frontend: int = -1
    attempt: int = 0
    min_index: int = 0
    applied_index: int | None = None  # get: applied index of the store that served it
    error: str | None = None


@dataclass
class RecorderStats:
    puts: int = 0
    gets: int = 0
    ok: int = 0
    fail: int = 0
    unknown: int = 0
    retries: int = 0
    errors: dict[str, int] = field(default_factory=dict)


Target = tuple[int, str]  # (front-end index, gRPC endpoint)


class _Client(threading.Thread):
    def __init__(self, rec: Recorder, cid: int, seed: int) -> None:
        super().__init__(name=f"fault-client-{cid}", daemon=True)
        self.rec = rec
        self.cid = cid
        self.rng = random.Random(seed)
        self.process = rec._new_process()
        self.seq = 0
        self.seen_index = 0
        self.stubs: dict[str, tuple[grpc.Channel, kv_pb2_grpc.KVServiceStub]] = {}
        self.crashed: BaseException | None = None

    def stub(self, endpoint: str) -> kv_pb2_grpc.KVServiceStub:
        entry = self.stubs.get(endpoint)
        if entry is None:
            ch = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
            entry = self.stubs[endpoint] = (ch, kv_pb2_grpc.KVServiceStub(ch))
        return entry[1]

    def close(self) -> None:
        for ch, _ in self.stubs.values():
            ch.close()
        self.stubs.clear()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # noqa: BLE001 - reported by Recorder.stop
            log.exception("client %d crashed", self.cid)
            self.crashed = e
        finally:
            self.close()

    def _run(self) -> None:
        rec = self.rec
        interval = rec.n_clients / rec.rate if rec.rate else 0.0
        next_at = time.monotonic()
        while not rec._halt.is_set() and rec._take_budget():
            key = self.rng.choice(rec.keys)
            if self.rng.random() < rec.write_fraction:
                self.put(key)
            else:
                self.get(key)
            if interval:
                # Paced: about `rate` operations per second over all clients, no bursts
                # to catch up after a stall.
                next_at = max(next_at + interval * self.rng.uniform(0.5, 1.5), time.monotonic())
                rec._halt.wait(max(0.0, next_at - time.monotonic()))
            elif rec.think_s:
                rec._halt.wait(self.rng.uniform(0, 2 * rec.think_s))

    def timeout(self) -> float:
        """Most operations give up after op_timeout; some wait long_timeout, longer than a
        pause, so that what a paused front-end answers after it resumes is seen too."""
        rec = self.rec
        return rec.long_timeout if self.rng.random() < rec.long_fraction else rec.op_timeout

    def pick(self) -> Target | None:
        targets = self.rec.targets()
        return self.rng.choice(targets) if targets else None

    def put(self, key: str) -> None:
        rec = self.rec
        self.seq += 1
        value = f"{self.process}-{self.seq}"
        rid = f"{rec.run_id}-{self.cid}-{self.seq}"
        give_up = time.monotonic() + rec.retry_for_s
        attempt = 0  # attempts recorded so far
        while True:
            if attempt and (
                rec._halt.is_set() or attempt > rec.put_retries or time.monotonic() > give_up
            ):
                return  # the last recorded attempt stays unknown
            if not attempt and rec._halt.is_set():
                return
            target = self.pick()
            if target is None:
                time.sleep(0.05)
                continue
            i, endpoint = target
            request = kv_pb2.PutRequest(
                key=key, value=value.encode(), options=common_pb2.WriteOptions(request_id=rid)
            )
            invoke = rec.now()
            try:
                resp = self.stub(endpoint).Put(
                    request, timeout=self.timeout(), metadata=rec.metadata
                )
            except grpc.RpcError as e:
                complete = rec.now()
                code, details = e.code(), e.details() or ""
                outcome = classify_put_error(code, details)
                rec._count_error(code, details)
                if outcome == "fail" and attempt > 0:
                    # Proves nothing about the rid (an earlier attempt may have applied it).
                    time.sleep(rec.retry_pause_s)
                    continue
                rec._record(
                    Record(
                        process=self.process,
                        kind="put",
                        key=key,
                        value=value,
                        rid=rid,
                        invoke=invoke,
                        complete=complete,
                        outcome=outcome,
                        client=self.cid,
                        frontend=i,
                        attempt=attempt,
                        error=f"{code.name}: {details}",
                    )
                )
                if outcome == "fail":
                    time.sleep(rec.retry_pause_s)  # e.g. a dead front-end: do not spin
                    return
                # The old process may have a write pending forever: continue as a new one.
                self.process = rec._new_process()
                attempt += 1
                time.sleep(rec.retry_pause_s)
                continue
            complete = rec.now()
            self.seen_index = max(self.seen_index, resp.index)
            rec._record(
                Record(
                    process=self.process,
                    kind="put",
                    key=key,
                    value=value,
                    rid=rid,
                    invoke=invoke,
                    complete=complete,
                    outcome="ok",
                    index=resp.index,
                    client=self.cid,
                    frontend=i,
                    attempt=attempt,
                )
            )
            return

    def get(self, key: str) -> None:
        rec = self.rec
        target = self.pick()
        if target is None:
            time.sleep(0.05)
            return
        i, endpoint = target
        local = self.rng.random() < rec.local_fraction
        min_index = self.seen_index if local else 0
        request = kv_pb2.GetRequest(
            key=key,
            options=common_pb2.ReadOptions(
                consistency=common_pb2.LOCAL if local else common_pb2.LINEARIZABLE,
                min_index=min_index,
            ),
        )
        invoke = rec.now()
        base = dict(
            process=self.process,
            kind="get",
            key=key,
            value=None,
            rid=None,
            invoke=invoke,
            consistency="local" if local else "linearizable",
            client=self.cid,
            frontend=i,
            min_index=min_index,
        )
        try:
            resp = self.stub(endpoint).Get(request, timeout=self.timeout(), metadata=rec.metadata)
        except grpc.RpcError as e:
            code, details = e.code(), e.details() or ""
            rec._count_error(code, details)
            rec._record(
                Record(**base, complete=rec.now(), outcome="fail", error=f"{code.name}: {details}")
            )
            time.sleep(rec.retry_pause_s)
            return
        complete = rec.now()
        self.seen_index = max(self.seen_index, resp.revision, resp.applied_index if local else 0)
        rec._record(
            Record(
                **base,
                complete=complete,
                outcome="ok",
                result=resp.value.decode() if resp.found else None,
                index=resp.revision if resp.found else 0,
                applied_index=resp.applied_index,
            )
        )


class Recorder:
    """Concurrent KV clients against a lab zone; see the module docstring."""

    def __init__(
        self,
        lab,
        clients: int = 4,
        keys: int = 20,
        seed: int = 0,
        write_fraction: float = 0.5,
        local_fraction: float = 0.2,
        op_timeout: float = 1.0,
        long_timeout: float = 4.0,
        long_fraction: float = 0.15,
        put_retries: int = 10,
        retry_for_s: float = 3.0,
        retry_pause_s: float = 0.05,
        think_s: float = 0.005,
        rate: float | None = None,
        max_ops: int = 20000,
        max_seconds: float = 600.0,
        targets: Callable[[], list[Target]] | None = None,
    ) -> None:
        self.lab = lab
        self.n_clients = clients
        self.keys = [f"k{i:03d}" for i in range(keys)]
        self.seed = seed
        self.write_fraction = write_fraction
        self.local_fraction = local_fraction
        self.op_timeout = op_timeout
        self.long_timeout = long_timeout
        self.long_fraction = long_fraction
        self.put_retries = put_retries
        self.retry_for_s = retry_for_s
        self.retry_pause_s = retry_pause_s
        self.think_s = think_s
        self.rate = rate
        self.max_ops = max_ops
        self.max_seconds = max_seconds
        self.targets = targets or self._lab_targets
        self.run_id = uuid.UUID(int=random.Random(seed).getrandbits(128)).hex[:8]
        self.metadata: tuple = ()
        self.t0 = time.monotonic()
        self.records: list[Record] = []
        self.stats = RecorderStats()
        self.final_states: list[dict[str, str | None]] = []
        self.final_revisions: list[dict[str, int]] = []
        self.final_frontends: list[int] = []
        self.final_errors: list[str] = []
        self.final_index = 0
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._budget = max_ops
        self._deadline = float("inf")
        self._next_process = 0
        self._threads: list[_Client] = []

    # --- life cycle -----------------------------------------------------------------

    def now(self) -> float:
        return time.monotonic() - self.t0

    def start(self, t0: float | None = None) -> Recorder:
        if t0 is not None:
            self.t0 = t0
        self.metadata = (("authorization", f"Bearer {self.lab.token()}"),)
        self._deadline = time.monotonic() + self.max_seconds
        rng = random.Random(self.seed)
        self._threads = [_Client(self, c, rng.getrandbits(64)) for c in range(self.n_clients)]
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the clients (each finishes its current operation) and wait for them."""
        self._halt.set()
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = [t.name for t in self._threads if t.is_alive()]
        if stuck:
            raise RuntimeError(f"recorder clients did not stop: {stuck}")
        crashed = [t.crashed for t in self._threads if t.crashed is not None]
        if crashed:
            raise RuntimeError(f"a recorder client crashed: {crashed[0]!r}") from crashed[0]

    def _lab_targets(self) -> list[Target]:
        return [(i, fe.grpc) for i, fe in enumerate(self.lab.fes)]

    def _take_budget(self) -> bool:
        with self._lock:
            if self._budget <= 0 or time.monotonic() >= self._deadline:
                return False
            self._budget -= 1
            return True

    def _new_process(self) -> int:
        with self._lock:
            p = self._next_process
            self._next_process += 1
            return p

    def _record(self, r: Record) -> None:
        with self._lock:
            self.records.append(r)
            s = self.stats
            if r.kind == "put":
                s.puts += 1
                if r.attempt:
                    s.retries += 1
            else:
                s.gets += 1
            setattr(s, r.outcome, getattr(s, r.outcome) + 1)

    def _count_error(self, code: grpc.StatusCode, details: str) -> None:
        kind = f"{code.name}: {_error_kind(details)}"
        with self._lock:
            self.stats.errors[kind] = self.stats.errors.get(kind, 0) + 1

    # --- the end of a run -----------------------------------------------------------

    @property
    def max_acknowledged_index(self) -> int:
        return max(
            (r.index or 0 for r in self.records if r.kind == "put" and r.outcome == "ok"), default=0
        )

    def collect_final(
        self,
        lab,
        frontends: list[int] | None = None,
        timeout: float = 30.0,
        probe: Callable[[], int] | None = None,
    ) -> None:
        """Read every key on every listed front-end (the running ones by default).

        Heal the zone first. Waits until the zone accepts a write (`probe`, by default a
        put through any front-end; its index counts), then reads each key with a LOCAL
        read at min_index = the highest acknowledged index.
        """
        deadline = time.monotonic() + timeout
        index = self.max_acknowledged_index
        probe_index = (probe or (lambda: wait_writable(lab, deadline - time.monotonic())))()
        self.final_index = index = max(index, probe_index)
        if frontends is None:
            frontends = [i for i in range(len(lab.fes)) if lab.running(i)]
        md = (("authorization", f"Bearer {lab.token()}"),)
        self.final_frontends = list(frontends)
        for i in frontends:
            state: dict[str, str | None] = {}
            revs: dict[str, int] = {}
            ch = grpc.insecure_channel(lab.fes[i].grpc, options=CHANNEL_OPTIONS)
            stub = kv_pb2_grpc.KVServiceStub(ch)
            try:
                for key in self.keys:
                    resp = _get_retrying(stub, key, index, md, deadline)
                    if resp is None:
                        self.final_errors.append(f"fe{i}: {key} not readable at index {index}")
                        continue
                    state[key] = resp.value.decode() if resp.found else None
                    revs[key] = resp.revision if resp.found else 0
            finally:
                ch.close()
            self.final_states.append(state)
            self.final_revisions.append(revs)

    def applied_rids(self) -> dict[str, int]:
        """rid -> number of distinct log indexes its value was seen applied at."""
        rid_of: dict[tuple[str, str], str] = {}
        for r in self.records:
            if r.kind == "put" and r.rid is not None and r.value is not None:
                rid_of[(r.key, r.value)] = r.rid
        seen: dict[str, set[int]] = {}

        def saw(key: str, value: str | None, index: int | None) -> None:
            if value is None or not index:
                return
            rid = rid_of.get((key, value))
            if rid is not None:
                seen.setdefault(rid, set()).add(index)

        for r in self.records:
            if r.outcome != "ok":
                continue
            if r.kind == "put":
                saw(r.key, r.value, r.index)
            else:
                saw(r.key, r.result, r.index)
        for state, revs in zip(self.final_states, self.final_revisions, strict=True):
            for key, value in state.items():
                saw(key, value, revs.get(key))
        return {rid: len(indexes) for rid, indexes in seen.items()}

    def merged_records(self) -> list[Record]:
        """The records with every put's attempts (same rid) merged into one operation.

        A rid is one logical write, applied at most once: it may take effect from its
        first attempt's invoke on, and is acknowledged when an attempt says ok (a retry
        returns the first result). Kept as separate operations, a retry would be a second
        write of the same value, linearized only inside the retry's own interval: false
        violations (and values would no longer be unique per key).
        """
        groups: dict[str, list[Record]] = {}
        out: list[Record] = []
        for r in self.records:
            if r.kind == "put" and r.rid is not None:
                groups.setdefault(r.rid, []).append(r)
            else:
                out.append(r)
        for attempts in groups.values():
            attempts.sort(key=lambda r: r.invoke)
            first = attempts[0]
            ok = next((r for r in attempts if r.outcome == "ok"), None)
            final = ok or attempts[-1]
            merged = Record(**{**asdict(final), "process": first.process, "invoke": first.invoke})
            merged.attempt = len(attempts) - 1
            out.append(merged)
        out.sort(key=lambda r: r.invoke)
        return out

    def history(self, meta: dict | None = None, merge_retries: bool = True):
        """The fault.history.History of this run (call after collect_final).

        With `merge_retries` (the default) a put's attempts are one operation (see
        merged_records); without, every attempt is its own operation with the same rid.
        """
        from fault.history import History, Op

        records = (
            self.merged_records() if merge_retries else sorted(self.records, key=lambda r: r.invoke)
        )
        ops = [
            Op(
                process=r.process,
                kind=r.kind,
                key=r.key,
                value=r.value,
                rid=r.rid,
                invoke=r.invoke,
                complete=r.complete,
                outcome=r.outcome,
                result=r.result,
                index=r.index,
                consistency=r.consistency or "linearizable",
            )
            for r in records
        ]
        return History(
            ops=ops,
            final_states=list(self.final_states),
            applied_rids=self.applied_rids(),
            meta={
                "run_id": self.run_id,
                "final_frontends": self.final_frontends,
                "retries_merged": merge_retries,
                **(meta or {}),
            },
        )

    def save_raw(self, path: str) -> None:
        """Every record with the recorder's extra fields (front-end, errors), as JSON."""
        data = {
            "run_id": self.run_id,
            "records": [asdict(r) for r in self.records],
            "final_frontends": self.final_frontends,
            "final_states": self.final_states,
            "final_revisions": self.final_revisions,
            "final_errors": self.final_errors,
            "final_index": self.final_index,
            "stats": asdict(self.stats),
        }
        with open(path, "w") as f:
            json.dump(data, f)


def read_anomalies(records: list[Record], limit: int = 50) -> list[dict]:
    """What reads say about the store they were served from, checked against the log
    indexes every write is known at (acknowledgements, and revisions reads returned).

    Covers the LOCAL reads too (the linearizability checker does not judge them):

    - ``min_index``: a read answered at an applied index below the min_index it asked for;
    - ``future revision``: a value whose revision is above the applied index it came with;
    - ``unknown value``: a value no put of that key wrote;
    - ``missed write``: a put of the key is known applied at index j, and a read served at
      applied index A >= j returned an older revision (or "not found"): that store's view
      was not the state at its applied index;
    - ``applied index went back``: on one front-end, a LOCAL read that started after
      another ended was served at a lower applied index (indexes survive restarts: LMDB).

    Puts packed in one log entry share its index: a revision equal to the index of
    another put of the key is not a missed write.
    """
    import bisect

    written: dict[str, set[str]] = {}
    known: dict[str, dict[int, set[str]]] = {}  # key -> index -> values applied there
    for r in records:
        if r.kind == "put" and r.value is not None:
            written.setdefault(r.key, set()).add(r.value)
            if r.outcome == "ok" and r.index:
                known.setdefault(r.key, {}).setdefault(r.index, set()).add(r.value)
    gets = [r for r in records if r.kind == "get" and r.outcome == "ok"]
    for r in gets:
        if r.result is not None and r.index and r.result in written.get(r.key, ()):
            known.setdefault(r.key, {}).setdefault(r.index, set()).add(r.result)
    sorted_idx = {k: sorted(v) for k, v in known.items()}
    out: list[dict] = []

    def bad(kind: str, r: Record, **extra) -> None:
        out.append(
            {
                "anomaly": kind,
                "key": r.key,
                "frontend": r.frontend,
                "consistency": r.consistency,
                "invoke": r.invoke,
                "complete": r.complete,
                "result": r.result,
                "revision": r.index,
                "applied_index": r.applied_index,
                "min_index": r.min_index,
                **extra,
            }
        )

    for r in gets:
        applied = r.applied_index or 0
        revision = r.index or 0
        if r.min_index and applied < r.min_index:
            bad("min_index", r)
        if r.result is not None and revision > applied:
            bad("future revision", r)
        if r.result is not None and r.result not in written.get(r.key, ()):
            bad("unknown value", r)
        idx = sorted_idx.get(r.key, [])
        # The newest known write of the key at or below the applied index.
        pos = bisect.bisect_right(idx, applied) - 1
        if pos >= 0 and idx[pos] > revision:
            bad(
                "missed write",
                r,
                missed_index=idx[pos],
                missed_values=sorted(known[r.key][idx[pos]]),
            )
    by_fe: dict[int, list[Record]] = {}
    for r in gets:
        # Only LOCAL reads are served by the front-end asked (linearizable ones are
        # forwarded to the leader and carry its applied index).
        if r.consistency == "local" and r.applied_index is not None and r.complete is not None:
            by_fe.setdefault(r.frontend, []).append(r)
    for fe_reads in by_fe.values():
        fe_reads.sort(key=lambda r: r.complete)
        ends = [r.complete for r in fe_reads]
        best = []  # running max of applied index over reads by completion time
        m = -1
        for r in fe_reads:
            m = max(m, r.applied_index)
            best.append(m)
        for r in fe_reads:
            k = bisect.bisect_left(ends, r.invoke) - 1  # reads that ended before r began
            if k >= 0 and best[k] > r.applied_index:
                bad("applied index went back", r, earlier_applied=best[k])
    out.sort(key=lambda a: a["invoke"])
    return out[:limit] if limit else out


def _error_kind(details: str) -> str:
    """A short, stable label of an error message (for counting)."""
    d = (details or "").strip()
    for needle in (
        "failed to connect",
        "outcome unknown",
        "no leader",
        "not the leader",
        "discarded",
        "Deadline Exceeded",
        "disk full",
        "Socket closed",
        "Connection reset",
        "leadership",
        "timed out",
        "applied index",
    ):
        if needle.lower() in d.lower():
            return needle
    return d[:60]


def _get_retrying(stub, key: str, min_index: int, md, deadline: float):
    request = kv_pb2.GetRequest(
        key=key, options=common_pb2.ReadOptions(consistency=common_pb2.LOCAL, min_index=min_index)
    )
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return stub.Get(request, timeout=min(5.0, max(left, 0.05)), metadata=md)
        except grpc.RpcError as e:
            if time.monotonic() >= deadline:
                log.warning("final read of %s failed: %s", key, e.details())
                return None
            time.sleep(0.05)


def wait_writable(lab, timeout: float = 30.0, key: str = "fault-probe", targets=None) -> int:
    """Put through each running front-end in turn until one acknowledges; its index.

    Raises TimeoutError after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    rid_base = uuid.uuid4().hex[:12]
    n = 0
    last = "no front-end running"
    token = lab.token()
    md = (("authorization", f"Bearer {token}"),)
    while True:
        cands = targets() if targets else [(i, fe.grpc) for i, fe in enumerate(lab.fes)]
        for i in [i for i, _ep in cands if lab.running(i)]:
            n += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"the zone did not accept a write in {timeout:.1f} s ({last})")
            try:
                resp = lab.client(i).kv.Put(
                    kv_pb2.PutRequest(
                        key=key,
                        value=str(n).encode(),
                        options=common_pb2.WriteOptions(request_id=f"probe-{rid_base}-{n}"),
                    ),
                    timeout=min(0.5, max(left, 0.05)),
                    metadata=md,
                )
                return resp.index
            except grpc.RpcError as e:
                last = f"fe{i}: {e.code().name}: {e.details()}"
        if time.monotonic() >= deadline:
            raise TimeoutError(f"the zone did not accept a write in {timeout:.1f} s ({last})")
        time.sleep(0.02)
