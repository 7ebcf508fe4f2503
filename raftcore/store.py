"""The LMDB state store: one environment, named sub-databases, msgpack values.

Every committed log entry is applied in ONE write transaction that also records the
client-request dedupe records and the applied index, so replay after a crash is
exactly-once. Reads are LMDB read transactions (MVCC): they never block apply.

The environment is opened with sync=False/metasync=False: durability comes from the
raft journal, and the consensus adapter calls sync() before it compacts the journal.
"""

import logging
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import lmdb

from raftcore import codec, schema
from raftcore.apply import apply
from raftcore.codec import packb
from raftcore.commands import (
    BadCommand,
    BadEntry,
    ErrorCode,
    decode_entry,
    error,
    validate_command,
)

DEDUPE_RETENTION_MS = 15 * 60 * 1000
DEFAULT_MAP_SIZE = 8 << 30
DATA_FILE = "data.mdb"
LOCK_FILE = "lock.mdb"


class StoreError(Exception):
    """LMDB failed (map full, disk error, store closed/replaced); nothing was written."""


class _RWLock:
    """Many readers or one writer; a waiting writer blocks new readers (no starvation).

    A thread that already holds a read may take another one even while a writer waits,
    otherwise a nested `with store.read()` would deadlock against install().
    Shared holds are counted, not tied to a thread, so a Copier may release from another
    thread than the one that acquired.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0
        self._local = threading.local()

    def acquire_read(self) -> None:
        depth = getattr(self._local, "depth", 0)
        with self._cond:
            if depth == 0:
                self._cond.wait_for(lambda: not self._writer and not self._writers_waiting)
            else:
                self._cond.wait_for(lambda: not self._writer)
            self._readers += 1
        self._local.depth = depth + 1

    def release_read(self) -> None:
        self._local.depth = getattr(self._local, "depth", 1) - 1
        with self._cond:
            self._readers -= 1
            if self._readers == 0:
                self._cond.notify_all()

    @contextmanager
    def read(self) -> Iterator[None]:
        self.acquire_read()
        try:
            yield
        finally:
            self.release_read()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            finally:
                self._writers_waiting -= 1
            self._writer = True
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


class TxnView:
    """A ReadView over one LMDB transaction (read-only or the apply write txn)."""

    def __init__(self, txn: lmdb.Transaction, dbs: dict[str, Any], applied_index: int) -> None:
        self._txn = txn
        self._dbs = dbs
        self.applied_index = applied_index

    def get(self, db: str, key: bytes) -> Any | None:
        raw = self._txn.get(key, db=self._dbs[db])
        return None if raw is None else codec.unpackb(raw)

    def iter(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]:
        """(key, value) pairs in key order whose key starts with `prefix`."""
        with self._txn.cursor(db=self._dbs[db]) as cursor:
            if not cursor.set_range(prefix):
                return
            for key, raw in cursor:
                if not key.startswith(prefix):
                    return
                yield key, codec.unpackb(raw)

    def iter_raw(self, db: str, prefix: bytes = b"", start: bytes = b"") -> Iterator[bytes]:
        """The stored (msgpack) values under `prefix`, from key `start` on, undecoded."""
        with self._txn.cursor(db=self._dbs[db]) as cursor:
            if not cursor.set_range(max(prefix, start)):
                return
            for key, raw in cursor:
                if not key.startswith(prefix):
                    return
                yield bytes(raw)

    def get_raw(self, db: str, key: bytes) -> bytes | None:
        """The stored (msgpack) bytes, undecoded: for replies that pass records through."""
        raw = self._txn.get(key, db=self._dbs[db])
        return None if raw is None else bytes(raw)


class Copier:
    """A consistent snapshot source: a read txn opened at begin_copy() time.

    copy() may run on another thread (py-lmdb opens the env with MDB_NOTLS, so a read
    txn is not bound to the thread that began it).
    """

    def __init__(self, store: "Store", txn: lmdb.Transaction, index: int):
        self._store = store
        self._txn: lmdb.Transaction | None = txn
        self.applied_index = index

    def copy(self, dest_dir: str) -> int:
        """Write a compacted copy of the txn's state into dest_dir; return its index."""
        os.makedirs(dest_dir, exist_ok=True)
        with self._store._rw.read():
            if self._txn is None or self._store._closed:
                raise StoreError("snapshot source is gone (store or copier closed)")
            try:
                self._store._env.copy(dest_dir, compact=True, txn=self._txn)
            except lmdb.Error as e:
                raise StoreError(f"snapshot copy to {dest_dir} failed: {e}") from e
        return self.applied_index

    def close(self) -> None:
        txn, self._txn = self._txn, None
        if txn is None:
            return
        with self._store._rw.read():
            if not self._store._closed:
                txn.abort()

    def __enter__(self) -> "Copier":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_applied(txn: lmdb.Transaction, meta_db: Any) -> int:
    raw = txn.get(schema.APPLIED_KEY, db=meta_db)
    return 0 if raw is None else codec.unpackb(raw)


log = logging.getLogger(__name__)

# What a login token check reads (zones/api/auth.py): a committed change to any of these
# bumps Store.auth_epoch, so API-side caches of token checks know they are stale.
AUTH_DBS = frozenset({schema.TOKENS, schema.USERS})


class Store:
    """The replicated state of one front-end (see the module docstring)."""

    def __init__(self, path: str, map_size: int = DEFAULT_MAP_SIZE) -> None:
        self.path = path
        self._map_size = map_size
        self._rw = _RWLock()
        # Serializes apply_entry and install: the applied-index check and the write
        # transaction must be one step. (_rw only keeps close() away from reads.)
        self._apply_lock = threading.Lock()
        self._applied_cond = threading.Condition()
        self._closed = False
        # Counts committed changes to AUTH_DBS (in memory: a cache is as young as its process).
        self.auth_epoch = 0
        self._auth_touched = False
        self._auth_listeners: list[Callable[[int], None]] = []
        os.makedirs(path, exist_ok=True)
        self._open()

    # --- environment ------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._env = lmdb.open(
                self.path,
                map_size=self._map_size,
                max_dbs=len(schema.DBS) + 2,
                sync=False,
                metasync=False,
                readahead=False,
                subdir=True,
            )
            with self._env.begin(write=True) as txn:
                self._dbs = {name: self._env.open_db(name.encode(), txn=txn) for name in schema.DBS}
                self._applied = _read_applied(txn, self._dbs[schema.META])
        except lmdb.Error as e:
            raise StoreError(f"cannot open the store at {self.path}: {e}") from e

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("store is closed")

    @property
    def applied_index(self) -> int:
        return self._applied

    # --- apply --------------------------------------------------------------------------

    def apply_entry(self, index: int, payload: bytes) -> list[dict] | None:
        """Apply one committed log entry; None if `index` was already applied."""
        with self._apply_lock, self._rw.read():
            self._check_open()
            if index <= self._applied:
                return None
            try:
                results = self._write_entry(index, payload)
            except lmdb.Error as e:
                raise StoreError(f"apply of entry {index} failed: {e}") from e
            with self._applied_cond:
                self._applied = index
                self._applied_cond.notify_all()
            if self._auth_touched:
                self._auth_changed()
        return results

    def add_auth_listener(self, listener: Callable[[int], None]) -> None:
        """Call `listener(auth_epoch)` after every commit that changed AUTH_DBS (on the
        applying thread, before the entry's results reach anyone)."""
        self._auth_listeners.append(listener)

    def _auth_changed(self) -> None:
        self._auth_touched = False
        self.auth_epoch += 1
        for listener in self._auth_listeners:
            try:
                listener(self.auth_epoch)
            except Exception:  # a listener must not break apply
                log.exception("auth listener failed")

    def _write_entry(self, index: int, payload: bytes) -> list[dict]:
        self._auth_touched = False
        try:
            commands = decode_entry(payload)
        except BadEntry as e:
            commands, results = [], [error(ErrorCode.BAD_REQUEST, f"malformed entry: {e}")]
        else:
            results = []
        # `with` aborts on any exception, so nothing partial is ever committed.
        with self._env.begin(write=True) as txn:
            view = TxnView(txn, self._dbs, index)
            newest_ts = -1
            for command in commands:
                result, ts = self._apply_command(txn, view, command, index, len(payload))
                results.append(result)
                newest_ts = max(newest_ts, ts)
            if newest_ts >= 0:
                self._prune_dedupe(txn, newest_ts - DEDUPE_RETENTION_MS, 2 * len(commands) + 64)
            txn.put(schema.APPLIED_KEY, packb(index), db=self._dbs[schema.META])
        return results

    def _apply_command(
        self, txn: lmdb.Transaction, view: TxnView, command: Any, index: int, entry_size: int
    ) -> tuple[dict, int]:
        """Apply one command (of an entry of `entry_size` bytes) inside the entry's txn;
        returns (result, ts or -1)."""
        try:
            command = validate_command(command, decoded_from=entry_size)
        except BadCommand as e:
            return error(ErrorCode.BAD_REQUEST, f"invalid command: {e}"), -1
        rid, ts = command["rid"], command["ts"]
        rid_key = rid.encode("utf-8", errors="surrogatepass")
        seen = view.get(schema.DEDUPE, rid_key)
        if seen is not None:
            # A retry: never apply twice. A different command reusing the rid is refused
            # rather than handed someone else's result.
            if seen.get("uid") != command["uid"] or seen.get("op") != command["op"]:
                msg = f"request id {rid!r} was already used by a different command"
                return error(ErrorCode.BAD_REQUEST, msg), ts
            return seen["result"], ts
        mutations, result = apply(view, command, index)
        try:
            encoded = [self._encode_mutation(m) for m in mutations]
        except Exception as e:  # a handler bug: bad db name or unpackable value
            encoded = []
            result = error(ErrorCode.INTERNAL, f"bad mutation from {command['op']!r}: {e}")
        if not self._auth_touched:
            self._auth_touched = any(m[1] in AUTH_DBS for m in mutations)
        for kind, db, key, value in encoded:
            if kind == "put":
                txn.put(key, value, db=db)
            else:
                txn.delete(key, db=db)
        record = {
            "index": index,
            "result": result,
            "ts": ts,
            "uid": command["uid"],
            "op": command["op"],
        }
        txn.put(rid_key, packb(record), db=self._dbs[schema.DEDUPE])
        # Every stored value is msgpack, this one included, so generic readers never choke.
        txn.put(schema.dedupe_ts_key(ts, rid), packb(b""), db=self._dbs[schema.DEDUPE_TS])
        return result, ts

    def _encode_mutation(self, mutation: tuple) -> tuple[str, Any, bytes, bytes | None]:
        kind, db, key = mutation[0], mutation[1], mutation[2]
        if kind == "put" and len(mutation) == 4:
            value = packb(mutation[3])
        elif kind == "del" and len(mutation) == 3:
            value = None
        else:
            raise ValueError(f"malformed mutation {kind!r} of length {len(mutation)}")
        if not isinstance(key, bytes) or not key:
            raise ValueError(f"mutation key must be non-empty bytes, got {key!r}")
        return kind, self._dbs[db], key, value

    def _prune_dedupe(self, txn: lmdb.Transaction, cutoff_ms: int, limit: int) -> None:
        """Drop up to `limit` dedupe records with ts < cutoff_ms, oldest first.

        Bounded so one entry stays cheap; 2 per command + slack keeps up with inflow.
        """
        ts_db, dedupe_db = self._dbs[schema.DEDUPE_TS], self._dbs[schema.DEDUPE]
        doomed: list[bytes] = []
        with txn.cursor(db=ts_db) as cursor:
            for key in cursor.iternext(keys=True, values=False):
                if len(doomed) >= limit or schema.split_dedupe_ts_key(key)[0] >= cutoff_ms:
                    break
                doomed.append(key)
        for key in doomed:
            ts, rid = schema.split_dedupe_ts_key(key)
            txn.delete(key, db=ts_db)
            rid_key = rid.encode("utf-8", errors="surrogatepass")
            raw = txn.get(rid_key, db=dedupe_db)
            if raw is not None and codec.unpackb(raw).get("ts") == ts:
                txn.delete(rid_key, db=dedupe_db)

    # --- reads --------------------------------------------------------------------------

    @contextmanager
    def read(self) -> Iterator[TxnView]:
        """A consistent ReadView over one LMDB read txn (never blocks apply)."""
        with self._rw.read():
            self._check_open()
            try:
                txn = self._env.begin(write=False)
            except lmdb.Error as e:
                raise StoreError(f"cannot begin a read: {e}") from e
            try:
                yield TxnView(txn, self._dbs, _read_applied(txn, self._dbs[schema.META]))
            finally:
                txn.abort()

    def wait_applied(self, index: int, timeout: float) -> bool:
        """Block until applied_index >= index or timeout seconds pass."""
        with self._applied_cond:
            return self._applied_cond.wait_for(lambda: self._applied >= index, timeout)

    # --- snapshots ----------------------------------------------------------------------

    def begin_copy(self) -> Copier:
        """Pin the current state for a snapshot (call on the apply thread)."""
        with self._rw.read():
            self._check_open()
            txn = self._env.begin(write=False)
            return Copier(self, txn, _read_applied(txn, self._dbs[schema.META]))

    def install(self, src_dir: str) -> None:
        """Replace the whole state with the LMDB copy in src_dir (e.g. a snapshot).

        In place, in one write transaction: the data file stays the same, so readers in
        this and other processes (the API workers) carry on; reads begun before the
        install keep seeing the old state (MVCC), later ones the new.
        """
        index = _probe_copy(src_dir)  # refuse garbage before touching our state
        try:
            src_env = lmdb.open(src_dir, readonly=True, lock=False, max_dbs=len(schema.DBS) + 2)
        except lmdb.Error as e:
            raise StoreError(f"{src_dir} is not a store copy: {e}") from e
        try:
            with self._apply_lock, self._rw.read():
                self._check_open()
                self._copy_all(src_env)
                self._applied = index
                self._auth_changed()
        finally:
            src_env.close()
        with self._applied_cond:
            self._applied_cond.notify_all()

    def _copy_all(self, src_env: lmdb.Environment) -> None:
        try:
            with src_env.begin() as src, self._env.begin(write=True) as txn:
                for name, db in self._dbs.items():
                    txn.drop(db, delete=False)
                    try:
                        src_db = src_env.open_db(name.encode(), txn=src, create=False)
                    except lmdb.NotFoundError:
                        continue  # a copy from before this sub-database existed
                    with src.cursor(db=src_db) as cursor:
                        txn.cursor(db=db).putmulti(cursor.iternext(), append=True)
        except lmdb.Error as e:
            raise StoreError(f"installing the snapshot failed: {e}") from e

    # --- maintenance --------------------------------------------------------------------

    def sync(self) -> None:
        """Flush to disk (call before the raft journal is compacted)."""
        with self._rw.read():
            self._check_open()
            self._env.sync(True)

    def stats(self) -> dict:
        """Entries per sub-database and map usage, for metrics."""
        with self._rw.read():
            self._check_open()
            info, psize = self._env.info(), self._env.stat()["psize"]
            with self._env.begin(write=False) as txn:
                entries = {name: txn.stat(db)["entries"] for name, db in self._dbs.items()}
        return {
            "applied_index": self._applied,
            "entries": entries,
            "map_size": info["map_size"],
            "map_used": (info["last_pgno"] + 1) * psize,
        }

    def close(self) -> None:
        with self._apply_lock, self._rw.write():
            if not self._closed:
                self._closed = True
                self._env.close()
        with self._applied_cond:
            self._applied_cond.notify_all()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _probe_copy(src_dir: str) -> int:
    """Open an LMDB copy read-only and return its applied index (StoreError if bad)."""
    if not os.path.isfile(os.path.join(src_dir, DATA_FILE)):
        raise StoreError(f"no {DATA_FILE} in {src_dir}")
    try:
        env = lmdb.open(src_dir, readonly=True, lock=False, max_dbs=len(schema.DBS) + 2)
    except lmdb.Error as e:
        raise StoreError(f"{src_dir} is not an LMDB environment: {e}") from e
    try:
        with env.begin() as txn:
            meta = env.open_db(schema.META.encode(), txn=txn, create=False)
            return _read_applied(txn, meta)
    except lmdb.Error as e:
        raise StoreError(f"{src_dir} is not a store copy: {e}") from e
    finally:
        env.close()


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StoreReader:
    """Read-only access to a Store's environment from another process (an API worker).

    LMDB's MVCC spans processes: reads here never block the writer, and see each
    committed apply as soon as its transaction commits.
    """

    def __init__(self, path: str, map_size: int = DEFAULT_MAP_SIZE) -> None:
        self.path = path
        try:
            self._env = lmdb.open(
                path,
                readonly=True,
                map_size=map_size,
                max_dbs=len(schema.DBS) + 2,
                readahead=False,
                subdir=True,
            )
            # Handles opened in a read-only txn die with it: let py-lmdb open them.
            self._dbs = {
                name: self._env.open_db(name.encode(), create=False) for name in schema.DBS
            }
        except lmdb.Error as e:
            raise StoreError(f"cannot open the store at {path} for reading: {e}") from e

    @property
    def applied_index(self) -> int:
        with self._env.begin() as txn:
            return _read_applied(txn, self._dbs[schema.META])

    @contextmanager
    def read(self) -> Iterator[TxnView]:
        txn = self._env.begin()
        try:
            yield TxnView(txn, self._dbs, _read_applied(txn, self._dbs[schema.META]))
        finally:
            txn.abort()

    def close(self) -> None:
        self._env.close()
