"""The consensus adapter: the one module that drives PySyncObj (0.3.17), hardened.

What PySyncObj gives: elections, log replication, membership entries, snapshot transfer.
What this adapter adds or corrects (DESIGN.md, "PySyncObj facts"):

- Durable journal (`raftcore.journal`) injected through `pysyncobj.syncobj.createJournal`;
  one fdatasync per tick covers everything appended; no acknowledgement or vote leaves
  before the data it vouches for is on disk (`raftcore.transport.DurabilityGate`), and the
  leader counts itself for commit only after its own sync (the sync runs at the start of
  every tick, before PySyncObj computes the commit index).
- One permanent entry format: a type byte plus our msgpack entry (`raftcore.commands`);
  PySyncObj's pickled `@replicated` calls are not used, membership entries are msgpack too.
- Exactly-once apply: the store skips indexes it has applied (replay, re-appends).
- A follower never advances its commit index over entries it has not verified against
  the leader: snapshot chunks do not move it (the lost-write scenario in DESIGN.md), and
  an append whose entries are all present never truncates the follower's longer log.
- Leader-side packing: concurrent proposals become one log entry (one LMDB transaction).
- Linearizable reads (ReadIndex): every append_entries carries a read sequence number that
  followers echo; a read waits for a majority echo of a number issued after it began,
  then for the apply of the commit index seen when it began.
- Snapshots are LMDB compact copies made off the raft thread under one read transaction.
"""

import asyncio
import logging
import os
import struct
import tempfile
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pysyncobj.syncobj as _syncobj
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.config import FAIL_REASON, SERIALIZER_STATE
from pysyncobj.node import TCPNode

from raftcore import codec, commands
from raftcore.errors import Ambiguous, DiskFull, NotLeader, Unavailable
from raftcore.journal import DurableJournal
from raftcore.replica import (
    CONSISTENCY_LINEARIZABLE,
    ROLE_CANDIDATE,
    ROLE_FOLLOWER,
    ROLE_LEADER,
    ROLE_SOLO,
    RaftStatus,
    ReadView,
)
from raftcore.store import Store
from raftcore.transport import DurabilityGate, PeerCipher, PeerTransport

log = logging.getLogger(__name__)

_REGULAR = _syncobj._COMMAND_TYPE.REGULAR
_NO_OP = _syncobj._COMMAND_TYPE.NO_OP
_MEMBERSHIP = _syncobj._COMMAND_TYPE.MEMBERSHIP
_ROLES = {0: ROLE_FOLLOWER, 1: ROLE_CANDIDATE, 2: ROLE_LEADER}

# Packing limits for one log entry (PySyncObj's chunked send must never be used: see
# appendEntriesBatchSizeBytes below, which stays far above this).
MAX_ENTRY_BYTES = 4 * 1024 * 1024
MAX_ENTRY_COMMANDS = 4096
# Entries proposed but not yet applied, beyond which new proposals wait to be packed.
MAX_INFLIGHT_ENTRIES = 2
# Group commit (RaftReplica._lingering): from how many commands in the last entry the
# next one waits for more, and how many queued proposals end the wait early.
LINGER_MIN_BATCH = 8
LINGER_ENOUGH = 256

SNAP_MAGIC = b"ONESNAP1"
_TIMED_OUT = "timed out waiting for the write to commit; retry with the same id"
_journal_lock = threading.Lock()


@dataclass(frozen=True)
class ReplicaConfig:
    server_id: int
    raft_address: str
    peers: list[str]
    data_dir: str
    secret: str
    election_timeout_min: float = 0.2
    election_timeout_max: float = 0.5
    heartbeat: float = 0.05
    leader_fallback_timeout: float = 1.0
    snapshot_min_entries: int = 10000
    fault_injection: bool = False
    min_free_bytes: int = 64 * 1024 * 1024
    # Group commit: while writes are concurrent (the last entry carried several
    # commands), the leader waits up to this long for more proposals before it packs
    # the next entry (RaftReplica._lingering). A lone writer never waits.
    batch_linger: float = 0.005
    # A server added to a running zone: it does not stand for election until caught up.
    # (It still votes: PySyncObj counts it in every majority from the moment it is
    # added, so a joiner refusing votes could leave a zone of two without a leader.)
    joining: bool = False
    extra: dict = field(default_factory=dict)

    def validate(self) -> None:
        if len(self.secret) < 16:
            raise ValueError("cluster secret must be at least 16 characters")
        if self.raft_address not in self.peers:
            raise ValueError(f"raft_address {self.raft_address} is not among the peers")
        if not self.election_timeout_min > 3 * self.heartbeat:
            raise ValueError("election_timeout_min must exceed 3 x heartbeat")
        if not self.election_timeout_max > self.election_timeout_min:
            raise ValueError("election_timeout_max must exceed election_timeout_min")
        if not 0 <= self.batch_linger < self.heartbeat:
            raise ValueError("batch_linger must be at least 0 and less than the heartbeat")


_TRAILER = struct.Struct("<QI")
_CHUNK = 1 << 20


def _write_snapshot(path: str, meta: dict, data_path: str) -> int:
    """Snapshot file: magic, header length, msgpack header, LMDB data, (size, crc32) trailer."""
    header = codec.packb(meta)
    tmp = path + ".building"
    crc, size = 0, 0
    with open(tmp, "wb") as out, open(data_path, "rb") as src:
        out.write(SNAP_MAGIC + struct.pack("<I", len(header)) + header)
        while chunk := src.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
            out.write(chunk)
        out.write(_TRAILER.pack(size, crc))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(os.path.dirname(path), os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return size


def read_snapshot_meta(path: str) -> dict:
    with open(path, "rb") as f:
        if f.read(len(SNAP_MAGIC)) != SNAP_MAGIC:
            raise ValueError(f"{path}: not a snapshot")
        (hlen,) = struct.unpack("<I", f.read(4))
        meta = codec.unpackb(f.read(hlen))
        meta["_data_offset"] = len(SNAP_MAGIC) + 4 + hlen
        return meta


def extract_snapshot_data(path: str, dest: str) -> None:
    """Copy the LMDB data out of a snapshot file, checking its size and checksum."""
    meta = read_snapshot_meta(path)
    total = os.path.getsize(path)
    start, end = meta["_data_offset"], total - _TRAILER.size
    with open(path, "rb") as f:
        f.seek(end)
        size, crc = _TRAILER.unpack(f.read(_TRAILER.size))
        if size != end - start:
            raise ValueError(f"{path}: snapshot is truncated")
        f.seek(start)
        got, left = 0, size
        with open(dest, "wb") as out:
            while left:
                chunk = f.read(min(_CHUNK, left))
                if not chunk:
                    raise ValueError(f"{path}: snapshot is truncated")
                got = zlib.crc32(chunk, got)
                left -= len(chunk)
                out.write(chunk)
        if got != crc:
            raise ValueError(f"{path}: snapshot data fails its checksum")


class _Pending:
    """One proposal waiting for its outcome: a thread (event) or a coroutine (future)."""

    __slots__ = ("command", "event", "future", "sink", "tag", "index", "result", "error", "size")

    def __init__(
        self,
        command: dict,
        size: int,
        future: asyncio.Future | None = None,
        sink: Callable[[list["_Pending"]], None] | None = None,
        tag: object = None,
    ) -> None:
        self.command = command
        self.size = size
        self.future = future
        self.sink = sink
        self.tag = tag
        self.event = threading.Event() if future is None and sink is None else None
        self.index = 0
        self.result: dict | None = None
        self.error: Exception | None = None

    def outcome(self) -> tuple[int, dict]:
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.index, self.result


def _resolve_futures(pendings: list[_Pending]) -> None:
    for p in pendings:
        if not p.future.done():
            if p.error is not None:
                p.future.set_exception(p.error)
            else:
                p.future.set_result((p.index, p.result))


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(Ambiguous(_TIMED_OUT))


def _settle(pendings: list[_Pending]) -> None:
    """Wake the waiters; one loop wake-up per event loop for the coroutines."""
    by_loop: dict = {}
    by_sink: dict = {}
    for p in pendings:
        if p.event is not None:
            p.event.set()
        elif p.sink is not None:
            by_sink.setdefault(p.sink, []).append(p)
        else:
            by_loop.setdefault(p.future.get_loop(), []).append(p)
    for sink, items in by_sink.items():
        try:
            sink(items)
        except Exception:
            log.exception("proposal sink failed")
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve_futures, items)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


class _Engine(SyncObj):
    """PySyncObj with its private hooks routed to the adapter (see the module docstring)."""

    def __init__(self, adapter: "RaftReplica", self_node: str, others: list[str], conf) -> None:
        self._adapter = adapter
        adapter._engine = self  # the tick thread may call back before __init__ returns
        super().__init__(self_node, others, conf=conf, transportClass=PeerTransport)

    def _onTick(self, timeToWait: float = 0.0) -> None:  # noqa: N802, N803
        adapter = self._adapter
        adapter._tick_start()
        if adapter._linger_until:
            # Wake up when the proposals being gathered are due.
            timeToWait = max(0.0, min(timeToWait, adapter._linger_until - time.monotonic()))
        super()._onTick(timeToWait)

    def _SyncObj__doApplyCommand(self, command: bytes):  # noqa: N802
        return self._adapter._apply(command)

    def _SyncObj__parseChangeClusterRequest(self, command: bytes):  # noqa: N802
        if command[:1] != bytes([_MEMBERSHIP]):
            return None
        try:
            request = codec.unpackb(command[1:])
        except ValueError:
            return None
        if (
            isinstance(request, list)
            and len(request) == 3
            and request[0] in ("add", "rem")
            and all(isinstance(x, str) for x in request[1:])
        ):
            return request
        return None

    def _SyncObj__onMessageReceived(self, node, message) -> None:  # noqa: N802
        self._adapter._on_message(node, message)

    def original_on_message(self, node, message) -> None:
        SyncObj._SyncObj__onMessageReceived(self, node, message)


class RaftReplica:
    """The Replica (raftcore.replica) of one front-end: PySyncObj + durable journal + store."""

    def __init__(self, cfg: ReplicaConfig, store: Store) -> None:
        cfg.validate()
        self.cfg = cfg
        self.server_id = cfg.server_id
        self.store = store
        raft_dir = os.path.join(cfg.data_dir, "raft")
        os.makedirs(raft_dir, exist_ok=True)
        self._snap_path = os.path.join(raft_dir, "snapshot")
        self._fault_path = os.path.join(cfg.data_dir, "fault", "blocked")
        self._fault_mtime = 0.0
        self._fault_checked = 0.0
        self.journal = DurableJournal(os.path.join(raft_dir, "journal"))
        self._lock = threading.Lock()
        self._queue: deque[_Pending] = deque()
        self._actions: deque[Callable[[], None]] = deque()
        self._cond = threading.Condition()
        self._read_seq = 0
        self._acked_rs: dict = {}
        self._echo: tuple | None = None
        self._progress = False
        self._role_subscribers: list[Callable[[str, int], None]] = []
        self._role_events: deque[tuple[str, int]] = deque()
        self._role_cond = threading.Condition()
        self._membership_lock = threading.Lock()
        self._snap_state = SERIALIZER_STATE.NOT_SERIALIZING
        self._closed = False
        self._last_warning = 0.0
        self._inflight = 0
        self._inflight_since = 0.0
        self._last_batch = 0  # commands in the last entry proposed
        self._linger_until = 0.0  # set while gathering proposals for the next entry
        # Only a fresh server waits: one that has state already caught up once.
        self.catching_up = cfg.joining and store.applied_index == 0
        self.ack_trace: list[tuple[int, int]] | None = None  # (acked index, synced index)
        self.gate = DurabilityGate(lambda: self.journal.dirty, self.is_leader)
        self.gate.decorate = self._decorate
        if cfg.extra.get("unsafe_no_hold"):
            self.gate.unsafe_no_hold = True
        conf = SyncObjConf(
            password=cfg.secret,
            bindAddress=cfg.raft_address,
            autoTick=True,
            autoTickPeriod=0.05,
            appendEntriesUseBatch=False,
            appendEntriesPeriod=cfg.heartbeat,
            raftMinTimeout=cfg.election_timeout_min,
            raftMaxTimeout=cfg.election_timeout_max,
            leaderFallbackTimeout=cfg.leader_fallback_timeout,
            connectionTimeout=max(3.5, cfg.election_timeout_max * 2),
            connectionRetryTime=0.2,
            appendEntriesBatchSizeBytes=16 * 1024 * 1024,
            sendBufferSize=1 << 20,
            recvBufferSize=1 << 20,
            logCompactionMinEntries=cfg.snapshot_min_entries,
            logCompactionMinTime=3600 * 24 * 365,
            dynamicMembershipChange=True,
            commandsQueueSize=200000,
            fullDumpFile=self._snap_path,
            serializer=self._serialize,
            deserializer=self._deserialize,
            serializeChecker=self._serialize_checker,
            onStateChanged=self._on_state_changed,
            tcp_keepalive=(2, 1, 3),
        )
        others = sorted(self._members_at_start() - {cfg.raft_address})
        with _journal_lock:
            # createJournal is a process-wide seam (DESIGN.md); hold it only while building.
            saved = _syncobj.createJournal, _syncobj.getEncryptor
            _syncobj.createJournal = lambda _path: self.journal
            _syncobj.getEncryptor = PeerCipher
            PeerTransport.gate = self.gate
            try:
                _Engine(self, cfg.raft_address, others, conf)
            finally:
                _syncobj.createJournal, _syncobj.getEncryptor = saved
                PeerTransport.gate = None
        self._engine.addOnTickCallback(self._tick_end)
        self._role_thread = threading.Thread(target=self._dispatch_roles, daemon=True)
        self._role_thread.start()

    # ---- raft thread hooks ---------------------------------------------------------------

    def _sync_and_release(self) -> None:
        if self.journal.dirty:
            self.journal.sync()
        self.gate.release()

    def _tick_start(self) -> None:
        self._sync_and_release()
        while self._actions:
            try:
                self._actions.popleft()()
            except Exception:
                log.exception("raft-thread action failed")
        if self.cfg.fault_injection:
            self._poll_fault_file()
        if self.catching_up:
            # Behind the zone, this server would only disrupt it by standing for election.
            self._engine._SyncObj__raftElectionDeadline = time.monotonic() + 3600
        self._flush_proposals()

    def _tick_end(self) -> None:
        # Entries applied this tick may have made room for the proposals that piled up.
        self._flush_proposals()
        self._sync_and_release()
        if self._progress:
            self._progress = False
            with self._cond:
                self._cond.notify_all()

    def _wake(self) -> None:
        notifier = getattr(self._engine, "_SyncObj__pipeNotifier", None)
        if notifier is not None:
            notifier.notify()

    def _flush_proposals(self) -> None:
        if not self._queue:
            return
        if self._inflight >= MAX_INFLIGHT_ENTRIES:
            # Let proposals pile up while earlier entries replicate: the next entry then
            # carries them all (per-entry costs dominate on 2 cores). A lost callback
            # (leader change, failed append) must not stall us: give up waiting after 1 s.
            if time.monotonic() - self._inflight_since < 1.0:
                return
            self._inflight = 0
        if self._lingering():
            return
        engine = self._engine
        if not engine._isLeader():
            self._fail_queue(NotLeader(self.leader()))
            return
        try:
            self._check_disk()
        except DiskFull as e:
            self._fail_queue(e)
            return
        while self._queue:
            batch: list[_Pending] = []
            size = 0
            while self._queue and len(batch) < MAX_ENTRY_COMMANDS:
                if batch and size + self._queue[0].size > MAX_ENTRY_BYTES:
                    break
                p = self._queue.popleft()
                batch.append(p)
                size += p.size
            self._last_batch = len(batch)
            payload = commands.encode_entry([p.command for p in batch])
            if not self._inflight:
                self._inflight_since = time.monotonic()
            self._inflight += 1
            engine._applyCommand(payload, self._make_callback(batch), _REGULAR)
            if self._inflight >= MAX_INFLIGHT_ENTRIES:
                break

    def _lingering(self) -> bool:
        """Group commit: True while the next entry should wait for more proposals.

        Under concurrent writes (the last entry carried LINGER_MIN_BATCH commands or more)
        the next entry waits up to batch_linger, or until LINGER_ENOUGH proposals are
        queued: per-entry costs (a journal sync and a message round on every front-end)
        then spread over many writes. A lone or lightly concurrent writer never waits, nor
        does the first writer after a quiet spell (nothing in flight for batch_linger).
        """
        now = time.monotonic()
        if (
            self._last_batch < LINGER_MIN_BATCH
            or len(self._queue) >= LINGER_ENOUGH
            or not self.cfg.batch_linger
            or (not self._inflight and now - self._inflight_since > self.cfg.batch_linger)
        ):
            self._linger_until = 0.0
            return False
        if not self._linger_until:
            self._linger_until = now + self.cfg.batch_linger
            return True
        if now < self._linger_until:
            return True
        self._linger_until = 0.0
        return False

    def _fail_queue(self, error: Exception) -> None:
        failed = []
        while self._queue:
            p = self._queue.popleft()
            p.error = error
            failed.append(p)
        _settle(failed)

    def _make_callback(self, batch: list[_Pending]) -> Callable:
        def done(res, err) -> None:
            self._inflight = max(0, self._inflight - 1)
            self._inflight_since = time.monotonic()
            if err == FAIL_REASON.SUCCESS and res is not None and res[1] is not None:
                index, results = res
                for p, result in zip(batch, results, strict=True):
                    p.index, p.result = index, result
            else:
                error = self._failure(err)
                for p in batch:
                    p.error = error
            _settle(batch)

        return done

    @staticmethod
    def _failure(err: int) -> Exception:
        if err in (FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER, FAIL_REASON.QUEUE_FULL):
            return Unavailable("no leader: election in progress")
        if err == FAIL_REASON.DISCARDED:
            return Unavailable("the write was discarded by a leader change and not applied")
        return Ambiguous("leader changed before the write was confirmed; retry with the same id")

    def _apply(self, command: bytes):
        kind = command[0]
        if kind == _REGULAR:
            index = self._engine.raftLastApplied + 1
            self._progress = True
            return index, self.store.apply_entry(index, bytes(command[1:]))
        if kind == _MEMBERSHIP:
            return SyncObj._SyncObj__doApplyCommand(self._engine, command)
        return None  # NO_OP, and PySyncObj's (pickled) VERSION entries, which we never write

    # ---- messages ------------------------------------------------------------------------

    def _decorate(self, node, message: dict) -> None:
        kind = message.get("type")
        if kind == "append_entries":
            message["rs"] = self._read_seq
        elif kind == "next_node_idx":
            echo = self._echo
            if echo is not None and echo[0] == node and echo[1] is not None:
                message["rs"] = echo[1]

    def trace_acks(self) -> list[tuple[int, int]]:
        """Record (acknowledged index, synced index) as each success ack leaves (tests)."""
        self.ack_trace = []

        def on_send(_node, message) -> None:
            if isinstance(message, dict) and message.get("type") == "next_node_idx":
                if message.get("success"):
                    synced = self.journal.synced_index
                    self.ack_trace.append((message["next_node_idx"] - 1, synced))

        self.gate.on_send = on_send
        return self.ack_trace

    def _on_message(self, node, message) -> None:
        if not isinstance(message, dict) or getattr(node, "address", None) in self.gate.blocked:
            return
        engine = self._engine
        kind = message.get("type")
        if self.catching_up and kind == "append_entries":
            self._check_caught_up(message)
        if kind == "append_entries":
            if "transmission" in message:
                log.error("dropping a chunked append_entries (entry above the batch size)")
                return
            if "serialized" in message:
                self._receive_snapshot_chunk(node, message)
                return
            if "prevLogIdx" in message and message.get("term", -1) >= engine.raftCurrentTerm:
                message = self._trim_present(node, message)
                if message is None:
                    return
            self._echo = (node, message.get("rs"))
            try:
                engine.original_on_message(node, message)
            except OSError as e:
                # Journal write failed (disk full, I/O error): no ack leaves, the leader
                # resends, and we catch up once the disk recovers.
                self._warn_rate_limited(f"cannot append to the journal: {e}")
            finally:
                self._echo = None
            return
        if kind == "next_node_idx" and "rs" in message and engine._isLeader():
            if message["rs"] > self._acked_rs.get(node, 0):
                self._acked_rs[node] = message["rs"]
                self._progress = True
        engine.original_on_message(node, message)

    def _check_caught_up(self, message: dict) -> None:
        commit = message.get("commit_index", 0)
        if commit > 1 and self._engine.raftLastApplied >= commit:
            self.catching_up = False
            engine = self._engine
            engine._SyncObj__raftElectionDeadline = (
                time.monotonic() + engine._SyncObj__generateRaftTimeout()
            )
            log.info("caught up with the zone at index %d; may stand for election now", commit)

    def _warn_rate_limited(self, text: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= 5.0:
            self._last_warning = now
            log.error("%s", text)

    def _receive_snapshot_chunk(self, node, message: dict) -> None:
        engine = self._engine
        # A snapshot chunk says nothing about our log: never let it move the commit index.
        message["commit_index"] = min(message.get("commit_index", 0), engine.raftCommitIndex)
        applied_before = engine.raftLastApplied
        self._echo = (node, message.get("rs"))
        try:
            engine.original_on_message(node, message)
        finally:
            self._echo = None
        if engine.raftLastApplied != applied_before:
            # Installed: writes this server was waiting on at or below the snapshot are
            # either inside it or lost; which one cannot be told here.
            waiting = engine._SyncObj__commandsWaitingCommit
            for idx in [i for i in waiting if i <= engine.raftLastApplied]:
                for _term, callback in waiting.pop(idx):
                    callback(None, FAIL_REASON.UNKNOWN_OUTCOME)

    def _trim_present(self, node, message: dict) -> dict | None:
        """Drop the entries we already hold; never truncate a longer log without a conflict.

        PySyncObj truncates everything after prevLogIdx on every append. If a rewound
        leader resends a prefix, that would delete entries this follower acknowledged
        (and the leader may already count as committed). Raft only truncates on conflict.
        """
        journal = self.journal
        if not len(journal):
            return message
        prev, prev_term = message.get("prevLogIdx"), message.get("prevLogTerm")
        first, last = journal[0][1], journal[-1][1]
        if prev is None or prev < first or prev > last or journal[prev - first][2] != prev_term:
            return message
        entries = message.get("entries") or []
        k = 0
        while k < len(entries):
            idx, term = entries[k][1], entries[k][2]
            if idx > last or journal[idx - first][2] != term:
                break
            k += 1
        if k:
            prev, prev_term = entries[k - 1][1], entries[k - 1][2]
            message["entries"] = entries[k:]
            message["prevLogIdx"], message["prevLogTerm"] = prev, prev_term
        if k < len(entries) or prev == last:
            return message
        # Everything sent is already here and our log goes further: acknowledge up to the
        # verified point without truncating; commit may only reach the verified point.
        heartbeat = {
            "type": "append_entries",
            "term": message["term"],
            "commit_index": min(message.get("commit_index", 0), prev),
        }
        self._engine.original_on_message(node, heartbeat)
        ack = {"type": "next_node_idx", "next_node_idx": prev + 1, "reset": False, "success": True}
        self._echo = (node, message.get("rs"))
        try:
            self.gate.transport.send(node, ack)
        finally:
            self._echo = None
        return None

    # ---- snapshots -----------------------------------------------------------------------

    def _serialize(self, _tmp_path: str, raft_data) -> None:
        """Called on the raft thread: pin the state now, copy it in the background.

        Nothing is written at `_tmp_path`, so PySyncObj's rename fails harmlessly and keeps
        the previous snapshot until ours is complete; `_serialize_checker` reports progress.
        """
        last, prev, cluster = raft_data
        meta = {
            "last": list(last),
            "prev": list(prev),
            "cluster": sorted(getattr(n, "address", str(n)) for n in cluster),
        }
        copier = self.store.begin_copy()
        self._snap_state = SERIALIZER_STATE.SERIALIZING
        threading.Thread(target=self._build_snapshot, args=(copier, meta), daemon=True).start()

    def _build_snapshot(self, copier, meta: dict) -> None:
        started = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(dir=os.path.dirname(self._snap_path)) as tmp:
                copier.copy(tmp)
                size = _write_snapshot(self._snap_path, meta, os.path.join(tmp, "data.mdb"))
            self._snap_state = SERIALIZER_STATE.SUCCESS
            log.info(
                "snapshot at index %d: %d bytes in %.3f s",
                meta["last"][1],
                size,
                time.monotonic() - started,
            )
        except Exception:
            log.exception("snapshot failed")
            self._snap_state = SERIALIZER_STATE.FAILED
        finally:
            copier.close()

    def _serialize_checker(self) -> int:
        state = self._snap_state
        if state in (SERIALIZER_STATE.SUCCESS, SERIALIZER_STATE.FAILED):
            self._snap_state = SERIALIZER_STATE.NOT_SERIALIZING
        return state

    def _members_at_start(self, snapshot: dict | None = None) -> set[str]:
        """The zone's members as of the end of our log (Raft: the latest configuration in
        the log is in force, committed or not). PySyncObj starts from the configured
        peers, or the snapshot's, and replays the log's membership entries only once a
        leader says they are committed: after a whole-zone restart that follows
        membership changes, no server would then know the real zone and none could be
        elected."""
        if snapshot is None and os.path.exists(self._snap_path):
            try:
                snapshot = read_snapshot_meta(self._snap_path)
            except (OSError, ValueError):
                snapshot = None
        members = set(snapshot["cluster"]) if snapshot else set(self.cfg.peers)
        after = int(snapshot["last"][1]) if snapshot else 0
        for command, idx, _term in list(self.journal):
            if idx <= after or command[:1] != bytes([_MEMBERSHIP]):
                continue
            request = _Engine._SyncObj__parseChangeClusterRequest(None, command)
            if request is not None:
                kind, address = request[0], request[1]
                (members.add if kind == "add" else members.discard)(address)
        return members

    def _deserialize(self, path: str):
        """Load a snapshot file (ours at start-up, or one received from the leader)."""
        meta = read_snapshot_meta(path)
        last = (bytes(meta["last"][0]), int(meta["last"][1]), int(meta["last"][2]))
        prev = (bytes(meta["prev"][0]), int(meta["prev"][1]), int(meta["prev"][2]))
        if last[1] > self.store.applied_index:
            with tempfile.TemporaryDirectory(dir=os.path.dirname(self._snap_path)) as tmp:
                extract_snapshot_data(path, os.path.join(tmp, "data.mdb"))
                self.store.install(tmp)
            log.info("installed snapshot at index %d", last[1])
        cluster = meta["cluster"]
        if self._engine._SyncObj__needLoadDumpFile:
            # Our own snapshot, loaded at start-up: the log after it still counts.
            cluster = sorted(self._members_at_start(meta) | {self.cfg.raft_address})
        return last, prev, [TCPNode(a) for a in cluster]

    # ---- role changes --------------------------------------------------------------------

    def _on_state_changed(self, _old: int, new: int) -> None:
        self._inflight = 0
        self._last_batch, self._linger_until = 0, 0.0
        with self._role_cond:
            self._role_events.append((_ROLES.get(new, ROLE_FOLLOWER), self._engine.raftCurrentTerm))
            self._role_cond.notify_all()

    def _dispatch_roles(self) -> None:
        while True:
            with self._role_cond:
                while not self._role_events and not self._closed:
                    self._role_cond.wait()
                if self._closed:
                    return
                role, term = self._role_events.popleft()
                subscribers = list(self._role_subscribers)
            for callback in subscribers:
                try:
                    callback(role, term)
                except Exception:
                    log.exception("role subscriber failed")

    def subscribe_role(self, callback: Callable[[str, int], None]) -> None:
        with self._role_cond:
            self._role_subscribers.append(callback)

    # ---- fault injection (tests) ---------------------------------------------------------

    def _poll_fault_file(self) -> None:
        now = time.monotonic()
        if now - self._fault_checked < 0.05:
            return
        self._fault_checked = now
        try:
            mtime = os.stat(self._fault_path).st_mtime
        except FileNotFoundError:
            if self.gate.blocked:
                self.gate.blocked = frozenset()
                log.warning("fault injection: partition healed")
            self._fault_mtime = 0.0
            return
        if mtime != self._fault_mtime:
            self._fault_mtime = mtime
            with open(self._fault_path) as f:
                self.gate.blocked = frozenset(line.strip() for line in f if line.strip())
            log.warning("fault injection: blocked peers %s", sorted(self.gate.blocked))

    # ---- the Replica interface -----------------------------------------------------------

    def _check_disk(self) -> None:
        # statvfs costs a microsecond or two: ask every time rather than trust a stale answer.
        st = os.statvfs(self.cfg.data_dir)
        free = st.f_bavail * st.f_frsize
        if free < self.cfg.min_free_bytes:
            raise DiskFull(
                f"disk full on server {self.server_id}: {free // 1024} KiB free, "
                f"{self.cfg.min_free_bytes // 1024} KiB required to accept writes"
            )

    def _admit(self) -> None:
        """Refuse at once what could not be proposed (raises)."""
        if self._closed:
            raise Unavailable("server is shutting down")
        if not self._engine._isLeader():
            raise NotLeader(self.leader(), self._no_leader_reason())
        self._check_disk()

    @staticmethod
    def _pending(command: dict, future=None, sink=None, tag=None, size=None) -> _Pending:
        if size is None:
            try:
                size = len(codec.packb(command))
            except (TypeError, ValueError) as e:
                raise ValueError(f"command cannot be encoded: {e}") from e
        return _Pending(command, size, future, sink, tag)

    def _queued(self) -> None:
        if self._inflight < MAX_INFLIGHT_ENTRIES and (
            not self._linger_until or len(self._queue) >= LINGER_ENOUGH
        ):
            # Otherwise the raft thread flushes when an entry completes, or when the
            # proposals it gathers are due: waking it for each one would only run idle ticks.
            self._wake()

    def _enqueue(self, command: dict, future: asyncio.Future | None = None) -> _Pending:
        self._admit()
        pending = self._pending(command, future)
        self._queue.append(pending)
        self._queued()
        return pending

    def propose(self, command: dict, timeout: float = 5.0) -> tuple[int, dict]:
        pending = self._enqueue(command)
        if not pending.event.wait(timeout):
            raise Ambiguous(_TIMED_OUT)
        return pending.outcome()

    def propose_many(
        self, proposals: list[tuple[object, dict, int | None]], sink: Callable[[list], None]
    ) -> list[tuple[object, Exception]]:
        """Propose (tag, command, encoded size or None) triples without waiting:
        `sink(pendings)` is called on the raft thread with settled proposals (each has
        .tag, and .outcome() returns or raises). Raises at once for what propose() would
        refuse before proposing (not leader, disk full); returns the (tag, error) of
        commands that cannot be encoded."""
        self._admit()
        refused = []
        for tag, command, size in proposals:
            try:
                self._queue.append(self._pending(command, sink=sink, tag=tag, size=size))
            except ValueError as e:
                refused.append((tag, e))
        self._queued()
        return refused

    async def propose_async(self, command: dict, timeout: float = 5.0) -> tuple[int, dict]:
        """propose() for coroutines: no thread waits, the raft thread wakes the loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._enqueue(command, future)
        # A timer rather than asyncio.wait_for, which costs a task per call.
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()

    def _no_leader_reason(self) -> str:
        leader = self.leader()
        if leader:
            return f"not the leader (leader: {leader})"
        if self._engine._SyncObj__raftState == 1:
            return "no leader: election in progress"
        return "no leader found"

    def _confirm_leadership(self, deadline: float) -> int:
        """ReadIndex: the commit index at the start, once a majority has confirmed us."""
        engine = self._engine
        if not engine._isLeader():
            raise NotLeader(self.leader(), self._no_leader_reason())
        term = engine.raftCurrentTerm
        with self._lock:
            self._read_seq += 1
            seq = self._read_seq
        read_index = max(engine.raftCommitIndex, engine._SyncObj__noopIDx or 0)
        self._actions.append(self._heartbeat_now)
        self._wake()
        members = list(engine.otherNodes)
        needed = (len(members) + 1) // 2 + 1

        def confirmed() -> bool:
            acks = 1 + sum(1 for n in members if self._acked_rs.get(n, 0) >= seq)
            return acks >= needed

        with self._cond:
            while not confirmed():
                left = deadline - time.monotonic()
                if left <= 0 or not engine._isLeader() or engine.raftCurrentTerm != term:
                    raise Unavailable("could not confirm leadership with a majority")
                self._cond.wait(min(left, 0.05))
            while engine.raftLastApplied < read_index:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise Unavailable("timed out applying up to the read index")
                self._cond.wait(min(left, 0.05))
        if not engine._isLeader() or engine.raftCurrentTerm != term:
            raise Unavailable("leadership changed during the read")
        return read_index

    def _heartbeat_now(self) -> None:
        self._engine._SyncObj__newAppendEntriesTime = 0

    @contextmanager
    def read(
        self, consistency: str = "local", min_index: int = 0, timeout: float = 5.0
    ) -> Iterator[ReadView]:
        deadline = time.monotonic() + timeout
        if consistency == CONSISTENCY_LINEARIZABLE:
            self._confirm_leadership(deadline)
        if min_index and not self.store.wait_applied(
            min_index, max(0.0, deadline - time.monotonic())
        ):
            raise Unavailable(
                f"applied index {self.store.applied_index} has not reached {min_index} in time"
            )
        with self.store.read() as view:
            yield view

    @property
    def auth_epoch(self) -> int:
        """The store's count of committed changes to tokens and users (Authenticator)."""
        return self.store.auth_epoch

    def is_leader(self) -> bool:
        return self._engine._isLeader()

    def leader(self) -> str | None:
        node = self._engine._getLeader()
        return getattr(node, "address", None)

    def role(self) -> tuple[str, int]:
        """(role, term): what status() says of them, without building the whole record."""
        engine = self._engine
        role = _ROLES.get(engine._SyncObj__raftState, ROLE_FOLLOWER)
        if role == ROLE_LEADER and not engine.otherNodes:
            role = ROLE_SOLO
        return role, engine.raftCurrentTerm

    def status(self) -> RaftStatus:
        engine = self._engine
        members = sorted([self.cfg.raft_address] + [n.address for n in engine.otherNodes])
        role, term = self.role()
        return RaftStatus(
            server_id=self.server_id,
            raft_address=self.cfg.raft_address,
            role=role,
            term=term,
            log_index=self._last_log_index(),
            commit_index=engine.raftCommitIndex,
            applied_index=engine.raftLastApplied,
            voted_for=engine._SyncObj__votedForNodeId,
            leader=self.leader(),
            members=members,
            connected=sorted(n.address for n in engine.otherNodes if engine.isNodeConnected(n)),
        )

    def _last_log_index(self) -> int:
        try:
            return self.journal[-1][1]
        except IndexError:  # the raft thread may be replacing the log right now
            return 0

    def _change_membership(self, kind: str, address: str, timeout: float) -> None:
        with self._membership_lock:  # PySyncObj does not stop two concurrent changes
            if not self._engine._isLeader():
                raise NotLeader(self.leader(), self._no_leader_reason())
            done = threading.Event()
            outcome: list[int] = []

            def callback(_res, err) -> None:
                outcome.append(err)
                done.set()

            payload = codec.packb([kind, address, address])
            self._actions.append(lambda: self._engine._applyCommand(payload, callback, _MEMBERSHIP))
            self._wake()
            if not done.wait(timeout):
                raise Ambiguous(f"membership change ({kind} {address}) not confirmed in time")
            if outcome[0] == FAIL_REASON.REQUEST_DENIED:
                raise Unavailable(
                    f"membership change ({kind} {address}) refused: another change is "
                    "in progress, the server is already in that state, or the leader is new"
                )
            if outcome[0] != FAIL_REASON.SUCCESS:
                raise self._failure(outcome[0])

    def add_server(self, raft_address: str, timeout: float = 10.0) -> None:
        self._change_membership("add", raft_address, timeout)

    def remove_server(self, raft_address: str, timeout: float = 10.0) -> None:
        if raft_address == self.cfg.raft_address:
            # The leader cannot remove itself: hand leadership over, the caller retries there.
            self._actions.append(lambda: self._engine.transferLeadership())
            self._wake()
            raise NotLeader(None, "leadership is being transferred; retry on the new leader")
        self._change_membership("rem", raft_address, timeout)

    def reset_server(self, raft_address: str) -> None:
        """Make the leader resend the log to a follower from its last matched index."""
        if not self._engine._isLeader():
            raise NotLeader(self.leader(), self._no_leader_reason())

        def reset() -> None:
            engine = self._engine
            for node in engine.otherNodes:
                if node.address == raft_address:
                    match = engine._SyncObj__raftMatchIndex.get(node, 0)
                    engine._SyncObj__raftNextIndex[node] = max(match + 1, 1)

        self._actions.append(reset)
        self._wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._role_cond:
            self._role_cond.notify_all()
        self._engine.destroy_synchronous()
        self._fail_queue(Unavailable("server is shutting down"))
