"""The replica across a process boundary: the raft process serves it to its API worker.

Python runs one thread at a time per process; on a front-end, gRPC request handling and
the raft loop each want most of a core. So oned runs raft and the store writer in its
main process and the gRPC API in a worker process (zones/apiworker.py). The worker
reads the LMDB store directly (read-only; LMDB's MVCC spans processes) and reaches the
replica through this channel: a Unix socket in the data directory (mode 0600, inside the
0700 data dir), length-prefixed msgpack frames, never pickle.

Frames, worker -> raft process:
    ["p", id, command]                 propose (answered when the entry is applied)
    ["c", id, method, args]            a call of the Replica interface (see _CALLS)
raft process -> worker:
    ["r", id, true, value]             result
    ["r", id, false, [kind, message, leader]]   error (kind: an exception class below)
    ["R", [[id, ok, value or error], ...]]      the results of one log entry, together
    ["e", {leader, is_leader, role, term}]      state change, pushed (and on connect)
    ["a", epoch]                       the store's auth_epoch, pushed when it changes
                                       (before the results of the entry that changed it)

Both sides cut frames out of one buffer per read and act on all of them: under load one
read carries many proposals, which the raft process queues with a single wake-up.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent import futures
from contextlib import contextmanager

from raftcore import codec
from raftcore.errors import Ambiguous, DiskFull, NotLeader, ReplicaError, Unavailable
from raftcore.replica import CONSISTENCY_LINEARIZABLE, RaftStatus, ReadView

log = logging.getLogger(__name__)

_LEN = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024
# How often the worker fails requests whose time is up (one sweep instead of a timer
# per request, which cost a measurable share of the event loop on the write path).
SWEEP_S = 0.05
# With more than GATHER_ABOVE requests outstanding, frames to the raft process are
# written every GATHER_S instead of at once (bench commit, 64 clients: +5% writes/s and
# -10% CPU per write; the leader gathers entries for 5 ms anyway). Fewer outstanding
# requests (a lone or lightly concurrent writer) are sent at once.
GATHER_ABOVE = 8
GATHER_S = 0.001
_ERRORS: dict[str, type[Exception]] = {
    "NotLeader": NotLeader,
    "DiskFull": DiskFull,
    "Unavailable": Unavailable,
    "Ambiguous": Ambiguous,
    "ValueError": ValueError,
}


def _frame(obj) -> bytes:
    data = codec.packb(obj)
    return _LEN.pack(len(data)) + data


def _encode_error(e: Exception) -> list:
    kind = type(e).__name__ if type(e).__name__ in _ERRORS else "Unavailable"
    return [kind, str(e), getattr(e, "leader", None)]


def _frames(buffer: bytearray) -> Iterator[tuple[int, list]]:
    """(size, message) of the complete frames at the start of `buffer`, which loses them.
    Raises ValueError for an oversized or undecodable frame."""
    pos, end = 0, len(buffer)
    try:
        while end - pos >= 4:
            (size,) = _LEN.unpack_from(buffer, pos)
            if size > MAX_FRAME:
                raise ValueError(f"a {size}-byte frame exceeds the limit of {MAX_FRAME}")
            if end - pos - 4 < size:
                break
            start, pos = pos + 4, pos + 4 + size
            yield size, codec.unpackb(bytes(buffer[start:pos]))
    finally:
        del buffer[:pos]


def _outcome(p) -> list:
    try:
        index, result = p.outcome()
        return [p.tag, True, [index, result]]
    except Exception as e:  # noqa: BLE001 - every outcome is sent back
        return [p.tag, False, _encode_error(e)]


def _decode_error(payload: list) -> Exception:
    kind, message, leader = payload
    if kind == "NotLeader":
        return NotLeader(leader, message)
    return _ERRORS.get(kind, Unavailable)(message)


# ---- the raft process side --------------------------------------------------------------


class _Connection:
    def __init__(self, server: ReplicaServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self._send_lock = threading.Lock()
        self.closed = False

    def send(self, frames: bytes) -> None:
        with self._send_lock:
            if self.closed:
                return
            try:
                self.sock.sendall(frames)
            except OSError:
                self.closed = True

    def deliver(self, pendings: list) -> None:
        """Sink for settled proposals (raft thread): one frame for the whole batch."""
        self.send(_frame(["R", [_outcome(p) for p in pendings]]))

    def serve(self) -> None:
        buffer = bytearray()
        try:
            while True:
                chunk = self.sock.recv(1 << 20)
                if not chunk:
                    return
                buffer += chunk
                proposals = []
                for size, message in _frames(buffer):
                    if message[0] == "p":
                        # The frame's size bounds the command's: no need to encode it again.
                        proposals.append((message[1], message[2], size))
                    else:
                        self.server.handle(self, message)
                if proposals:
                    self.server.propose(self, proposals)
        except (OSError, ValueError) as e:
            log.warning("API worker connection: %s", e)
        finally:
            self.closed = True
            self.sock.close()
            self.server.forget(self)


class ReplicaServer:
    """Serves a Replica (the raft process) to API workers on a Unix socket."""

    _CALLS = (
        "status",
        "confirm",
        "wait_applied",
        "add_server",
        "remove_server",
        "reset_server",
        "apply_stats",
    )

    def __init__(self, replica, store, path: str, apply_histogram=None) -> None:
        self.replica = replica
        self.store = store
        self._apply_histogram = apply_histogram
        self.path = path
        self._conns: set[_Connection] = set()
        self._lock = threading.Lock()
        self._pool = futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="ipc")
        self._state: dict = {}
        self._stopped = threading.Event()
        if os.path.exists(path):
            os.unlink(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            self._sock.bind(path)
        finally:
            os.umask(old)
        self._sock.listen(4)
        store.add_auth_listener(self._push_auth_epoch)
        threading.Thread(target=self._accept, name="ipc-accept", daemon=True).start()
        threading.Thread(target=self._watch, name="ipc-watch", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return
            conn = _Connection(self, sock)
            # Under the lock the pushes take, and read once the connection is listed: the
            # worker sees every later change, and never an epoch going back.
            with self._lock:
                self._conns.add(conn)
                state = _frame(["e", self._current_state()])
                conn.send(state + _frame(["a", self.store.auth_epoch]))
            threading.Thread(target=conn.serve, name="ipc-conn", daemon=True).start()

    def forget(self, conn: _Connection) -> None:
        with self._lock:
            self._conns.discard(conn)

    def _current_state(self) -> dict:
        role, term = self.replica.role()
        return {
            "leader": self.replica.leader(),
            "is_leader": self.replica.is_leader(),
            "role": role,
            "term": term,
        }

    def _watch(self) -> None:
        """Push leader changes: the worker routes every call by them."""
        while not self._stopped.wait(0.01):
            try:
                state = self._current_state()
            except Exception:  # noqa: BLE001 - closing
                continue
            if state != self._state:
                self._state = state
                frame = _frame(["e", state])
                with self._lock:
                    conns = list(self._conns)
                for conn in conns:
                    conn.send(frame)

    def propose(self, conn: _Connection, proposals: list[tuple[int, dict, int]]) -> None:
        try:
            refused = self.replica.propose_many(proposals, conn.deliver)
        except Exception as e:  # noqa: BLE001 - refused before proposing
            refused = [(ident, e) for ident, _command, _size in proposals]
        if refused:
            conn.send(_frame(["R", [[i, False, _encode_error(e)] for i, e in refused]]))

    def _push_auth_epoch(self, epoch: int) -> None:
        frame = _frame(["a", epoch])
        with self._lock:
            for conn in self._conns:
                conn.send(frame)

    def handle(self, conn: _Connection, message: list) -> None:
        kind, ident = message[0], message[1]
        if kind == "c" and message[2] in self._CALLS:
            self._pool.submit(self._call, conn, ident, message[2], message[3])
        else:
            conn.send(_frame(["r", ident, False, ["ValueError", f"unknown call {message}", None]]))

    def _call(self, conn: _Connection, ident: int, method: str, args: list) -> None:
        try:
            value = getattr(self, "_do_" + method)(*args)
            conn.send(_frame(["r", ident, True, value]))
        except Exception as e:  # noqa: BLE001 - sent back to the worker
            conn.send(_frame(["r", ident, False, _encode_error(e)]))

    def _do_status(self) -> dict:
        return vars(self.replica.status())

    def _do_confirm(self, timeout: float) -> int:
        with self.replica.read(CONSISTENCY_LINEARIZABLE, timeout=timeout) as view:
            return view.applied_index

    def _do_wait_applied(self, index: int, timeout: float) -> int:
        if not self.store.wait_applied(index, timeout):
            raise Unavailable(
                f"applied index {self.store.applied_index} has not reached {index} in time"
            )
        return self.store.applied_index

    def _do_add_server(self, address: str, timeout: float) -> None:
        self.replica.add_server(address, timeout)

    def _do_remove_server(self, address: str, timeout: float) -> None:
        self.replica.remove_server(address, timeout)

    def _do_reset_server(self, address: str) -> None:
        self.replica.reset_server(address)

    def _do_apply_stats(self) -> list:
        """The apply-latency histogram's samples, for the worker's /metrics."""
        if self._apply_histogram is None:
            return []
        return [
            [s.name, s.labels, s.value]
            for metric in self._apply_histogram.collect()
            for s in metric.samples
        ]

    def close(self) -> None:
        self._stopped.set()
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            conn.closed = True
            conn.sock.close()
        self._pool.shutdown(wait=False, cancel_futures=True)
        if os.path.exists(self.path):
            os.unlink(self.path)


# ---- the API worker side -----------------------------------------------------------------


class RemoteReplica:
    """The Replica interface in an API worker, over the raft process's ReplicaServer."""

    def __init__(self, path: str, reader, server_id: int, loop: asyncio.AbstractEventLoop) -> None:
        self.server_id = server_id
        self.reader = reader
        self._path = path
        self._loop = loop
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[asyncio.Future, float]] = {}  # id -> (future, deadline)
        self._state = {"leader": None, "is_leader": False, "role": "follower", "term": 0}
        self._role_subscribers: list[Callable[[str, int], None]] = []
        self._writer: asyncio.Transport | None = None
        self._outbox: list[bytes] = []
        self._ready = threading.Event()
        # The raft process's Store.auth_epoch (None until it is first pushed).
        self.auth_epoch: int | None = None
        self.on_lost: Callable[[], None] | None = None

    def connect(self, timeout: float = 30.0) -> None:
        """Connect from any thread but the loop's; waits for the first state frame."""
        asyncio.run_coroutine_threadsafe(self._connect(timeout), self._loop).result(timeout + 1)
        if not self._ready.wait(timeout):
            raise Unavailable("the raft process sent no state")

    async def _connect(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._writer, _ = await self._loop.create_unix_connection(
                    lambda: _WorkerProtocol(self), self._path
                )
                self._loop.call_later(SWEEP_S, self._sweep)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise Unavailable(f"cannot reach the raft process at {self._path}") from None
                await asyncio.sleep(0.05)

    def _on_message(self, message: list) -> None:
        kind = message[0]
        if kind == "e":
            self._on_state(message[1])
        elif kind == "a":
            self.auth_epoch = message[1]
        elif kind == "R":
            for ident, ok, value in message[1]:
                self._settle(ident, ok, value)
        else:
            self._settle(message[1], message[2], message[3])

    def _settle(self, ident: int, ok: bool, value) -> None:
        future = self._waiting.pop(ident, (None,))[0]
        if future is None or future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(_decode_error(value))

    def _lost(self, reason: object) -> None:
        log.error("lost the raft process: %s", reason)
        self._writer = None
        self.auth_epoch = None
        lost = Unavailable("the raft process of this front-end is gone")
        for future, _deadline in self._waiting.values():
            if not future.done():
                future.set_exception(lost)
        self._waiting.clear()
        self._state = {**self._state, "is_leader": False, "leader": None}
        if self.on_lost is not None:
            self.on_lost()

    def _on_state(self, state: dict) -> None:
        old, self._state = self._state, state
        self._ready.set()
        if (old["role"], old["term"]) != (state["role"], state["term"]):
            for callback in list(self._role_subscribers):
                try:
                    callback(state["role"], state["term"])
                except Exception:
                    log.exception("role subscriber failed")

    def _send(self, kind: str, body: list, timeout: float) -> asyncio.Future:
        """Queue a frame (on the loop thread); the future of its answer, failed with
        Ambiguous if none comes within `timeout` seconds."""
        if self._writer is None:
            raise Unavailable("not connected to the raft process")
        ident = next(self._ids)
        future = self._loop.create_future()
        self._waiting[ident] = (future, self._loop.time() + timeout)
        # Coalesce the frames of one loop iteration into one write (one syscall).
        self._outbox.append(_frame([kind, ident, *body]))
        if len(self._outbox) == 1:
            if len(self._waiting) > GATHER_ABOVE:
                # Busy: one write per millisecond instead of one per loop iteration; the
                # raft process wakes (and takes its interpreter lock) that much less.
                self._loop.call_later(GATHER_S, self._flush)
            else:
                self._loop.call_soon(self._flush)
        return future

    async def _request(self, kind: str, body: list, timeout: float):
        return await self._send(kind, body, timeout)

    def _sweep(self) -> None:
        now = self._loop.time()
        late = [ident for ident, (_f, deadline) in self._waiting.items() if deadline <= now]
        for ident in late:
            future = self._waiting.pop(ident)[0]
            if not future.done():
                future.set_exception(Ambiguous("no answer from the raft process in time"))
        if self._writer is not None:
            self._loop.call_later(SWEEP_S, self._sweep)

    def _flush(self) -> None:
        frames, self._outbox = self._outbox, []
        if frames and self._writer is not None:
            self._writer.write(b"".join(frames))

    def propose_async(self, command: dict, timeout: float = 5.0) -> Awaitable:
        """Awaitable (on the loop thread) of [index, result]: a bare future, so the hot
        write path makes no coroutine of its own here."""
        return self._send("p", [command], timeout)

    def _call(self, method: str, args: list, timeout: float):
        if getattr(self._loop, "_thread_id", None) == threading.get_ident():
            raise RuntimeError("blocking replica call on the event loop thread")
        coro = self._request("c", [method, args], timeout + 0.5)
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout + 1.0)

    def propose(self, command: dict, timeout: float = 5.0) -> tuple[int, dict]:
        coro = self._request("p", [command], timeout)
        index, result = asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout + 1.0)
        return index, result

    @contextmanager
    def read(
        self, consistency: str = "local", min_index: int = 0, timeout: float = 5.0
    ) -> Iterator[ReadView]:
        if consistency == CONSISTENCY_LINEARIZABLE:
            # The raft process answers once the read index is applied to the shared store.
            self._call("confirm", [timeout], timeout)
        elif min_index and self.reader.applied_index < min_index:
            self._call("wait_applied", [min_index, timeout], timeout)
        with self.reader.read() as view:
            yield view

    def status(self) -> RaftStatus:
        return RaftStatus(**self._call("status", [], 5.0))

    def role(self) -> tuple[str, int]:
        return self._state["role"], self._state["term"]

    def is_leader(self) -> bool:
        return self._state["is_leader"]

    def leader(self) -> str | None:
        return self._state["leader"]

    def add_server(self, raft_address: str, timeout: float = 10.0) -> None:
        self._call("add_server", [raft_address, timeout], timeout)

    def remove_server(self, raft_address: str, timeout: float = 10.0) -> None:
        self._call("remove_server", [raft_address, timeout], timeout)

    def reset_server(self, raft_address: str) -> None:
        self._call("reset_server", [raft_address], 5.0)

    def apply_stats(self) -> list:
        return self._call("apply_stats", [], 2.0)

    def subscribe_role(self, callback: Callable[[str, int], None]) -> None:
        self._role_subscribers.append(callback)

    def close(self) -> None:
        if self._writer is not None:
            self._loop.call_soon_threadsafe(self._writer.close)


class _WorkerProtocol(asyncio.Protocol):
    """The worker's end of the socket: frames in, dispatched as they complete."""

    def __init__(self, owner: RemoteReplica) -> None:
        self._owner = owner
        self._buffer = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            for _size, message in _frames(self._buffer):
                self._owner._on_message(message)
        except ValueError as e:
            log.error("the raft process sent a bad frame: %s", e)
            self._transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._lost(exc or "connection closed")


__all__ = ["RemoteReplica", "ReplicaServer", "ReplicaError"]
