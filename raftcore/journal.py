"""The durable raft journal: an append-only file of CRC-checked records plus a term/vote file.

PySyncObj's own FileJournal never fsyncs. This one is written to with plain `write` and made
durable in groups by `sync()` (one fdatasync for everything appended since the last one);
the consensus adapter holds every acknowledgement until `sync()` has covered the entries it
acknowledges (see raftcore/consensus.py). Term and vote are written with fsync at once.

Record layout: `<u32 length><u32 crc32(body)>` then the body `<u64 index><u64 term><command>`.
On open, a torn last record (short, or failing its CRC, at the end of the file) is cut off
and reported; damage followed by more data is corruption and refuses to open.
"""

import errno
import logging
import os
import struct
import zlib
from collections.abc import Callable

from raftcore import codec

log = logging.getLogger(__name__)

MAGIC = b"ONEJRNL1"
_HEAD = struct.Struct("<II")
_BODY = struct.Struct("<QQ")
MAX_RECORD = 64 * 1024 * 1024

Entry = tuple[bytes, int, int]


class JournalCorrupt(Exception):
    """The journal holds damaged records that are not a torn tail; it cannot be trusted."""


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _encode(entry: Entry) -> bytes:
    command, idx, term = entry
    body = _BODY.pack(idx, term) + command
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


def write_file_durably(path: str, data: bytes) -> None:
    """Replace `path` with `data`: write a temporary file, fsync it, rename, fsync the dir."""
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(os.path.dirname(path) or ".")


class DurableJournal:
    """The journal interface PySyncObj calls (see DESIGN.md, 'Seams'), durable on `sync()`."""

    def __init__(self, directory: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self._dir = directory
        self._log_path = os.path.join(directory, "log")
        self._meta_path = os.path.join(directory, "meta")
        self._entries: list[Entry] = []
        self._offsets: list[int] = []
        self._dirty = False
        self._synced_index = 0
        self.recovered_tail_bytes = 0
        self.sync_listeners: list[Callable[[int], None]] = []
        self._term, self._voted_for, self._commit = self._load_meta()
        self._fd = self._open_log()

    # ---- opening -------------------------------------------------------------------------

    def _load_meta(self) -> tuple[int, str | None, int]:
        try:
            with open(self._meta_path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return 0, None, 0
        if len(raw) < 4 or zlib.crc32(raw[4:]) != struct.unpack("<I", raw[:4])[0]:
            raise JournalCorrupt(f"{self._meta_path}: term/vote record fails its checksum")
        meta = codec.unpackb(raw[4:])
        return int(meta["term"]), meta["vote"], int(meta.get("commit", 0))

    def _open_log(self) -> int:
        fd = os.open(self._log_path, os.O_RDWR | os.O_CREAT, 0o600)
        data = b""
        size = os.fstat(fd).st_size
        if size:
            data = os.pread(fd, size, 0)
        if not data:
            os.pwrite(fd, MAGIC, 0)
            os.fsync(fd)
            _fsync_dir(self._dir)
            self._size = len(MAGIC)
            return fd
        if not data.startswith(MAGIC):
            os.close(fd)
            raise JournalCorrupt(f"{self._log_path}: not a journal (bad magic)")
        pos = len(MAGIC)
        while pos < len(data):
            problem = self._record_problem(data, pos)
            if problem:
                if self._more_records_after(data, pos):
                    os.close(fd)
                    raise JournalCorrupt(
                        f"{self._log_path}: damaged record at offset {pos} ({problem}) "
                        "followed by more records; refusing to start on a corrupt journal"
                    )
                self.recovered_tail_bytes = len(data) - pos
                log.warning(
                    "journal %s: discarding a torn tail of %d bytes at offset %d (%s)",
                    self._log_path,
                    self.recovered_tail_bytes,
                    pos,
                    problem,
                )
                os.ftruncate(fd, pos)
                os.fsync(fd)
                break
            length, _ = _HEAD.unpack_from(data, pos)
            body = data[pos + _HEAD.size : pos + _HEAD.size + length]
            idx, term = _BODY.unpack_from(body)
            self._entries.append((bytes(body[_BODY.size :]), idx, term))
            self._offsets.append(pos)
            pos += _HEAD.size + length
        self._size = pos
        self._synced_index = self._entries[-1][1] if self._entries else 0
        return fd

    @staticmethod
    def _record_problem(data: bytes, pos: int) -> str:
        if pos + _HEAD.size > len(data):
            return "truncated header"
        length, crc = _HEAD.unpack_from(data, pos)
        if length < _BODY.size or length > MAX_RECORD:
            return f"impossible length {length}"
        end = pos + _HEAD.size + length
        if end > len(data):
            return "truncated record"
        if zlib.crc32(data[pos + _HEAD.size : end]) != crc:
            return "checksum mismatch"
        return ""

    def _more_records_after(self, data: bytes, pos: int) -> bool:
        """True when a valid record starts somewhere after the damage at `pos`."""
        for start in range(pos + 1, len(data) - _HEAD.size):
            if not self._record_problem(data, start):
                return True
        return False

    # ---- durability ----------------------------------------------------------------------

    @property
    def dirty(self) -> bool:
        return self._dirty

    @property
    def synced_index(self) -> int:
        """Highest raft index known to be on disk."""
        return self._synced_index

    def sync(self) -> None:
        """Make everything written so far durable (one fdatasync for the whole group)."""
        if not self._dirty:
            return
        os.fdatasync(self._fd)
        self._dirty = False
        self._synced_index = self._entries[-1][1] if self._entries else 0
        for listener in self.sync_listeners:
            listener(self._synced_index)

    def _write_meta(self) -> None:
        body = codec.packb({"term": self._term, "vote": self._voted_for, "commit": self._commit})
        write_file_durably(self._meta_path, struct.pack("<I", zlib.crc32(body)) + body)

    # ---- the interface PySyncObj uses ----------------------------------------------------

    def add(self, command: bytes, idx: int, term: int) -> None:
        entry = (bytes(command), int(idx), int(term))
        record = _encode(entry)
        try:
            written = os.pwrite(self._fd, record, self._size)
            if written != len(record):
                # A short write to a regular file means the filesystem is full.
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._log_path)
        except OSError:
            # Leave file and memory as they were (ENOSPC, EIO): the record never happened.
            os.ftruncate(self._fd, self._size)
            raise
        self._offsets.append(self._size)
        self._entries.append(entry)
        self._size += len(record)
        self._dirty = True

    def clear(self) -> None:
        self._truncate_file(len(MAGIC))
        self._entries.clear()
        self._offsets.clear()

    def deleteEntriesFrom(self, entryFrom: int) -> None:  # noqa: N802 (PySyncObj's name)
        if entryFrom >= len(self._entries):
            return
        self._truncate_file(self._offsets[entryFrom])
        del self._entries[entryFrom:]
        del self._offsets[entryFrom:]
        if self._synced_index > (self._entries[-1][1] if self._entries else 0):
            self._synced_index = self._entries[-1][1] if self._entries else 0

    def deleteEntriesTo(self, entryTo: int) -> None:  # noqa: N802
        """Drop the prefix (log compaction): rewrite the file with what remains, durably."""
        if entryTo <= 0:
            return
        self.sync()
        remaining = self._entries[entryTo:]
        records = [_encode(e) for e in remaining]
        write_file_durably(self._log_path, MAGIC + b"".join(records))
        os.close(self._fd)
        self._fd = os.open(self._log_path, os.O_RDWR)
        self._entries = remaining
        self._offsets = []
        pos = len(MAGIC)
        for record in records:
            self._offsets.append(pos)
            pos += len(record)
        self._size = pos

    def _truncate_file(self, size: int) -> None:
        os.ftruncate(self._fd, size)
        self._size = size
        self._dirty = True

    def __getitem__(self, item):  # int or slice, as PySyncObj asks
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:  # noqa: N802
        # Not needed for safety (recomputed from the leader); kept in memory only.
        self._commit = raftCommitIndex

    def getRaftCommitIndex(self) -> int:  # noqa: N802
        return self._commit if self._commit else 1

    def setCurrentTerm(self, term: int, votedForNodeId) -> None:  # noqa: N802
        # Written with fsync before PySyncObj can send the vote or request that follows it.
        self._term, self._voted_for = int(term), votedForNodeId
        self._write_meta()

    def getCurrentTerm(self) -> int:  # noqa: N802
        return self._term

    def getVotedForNodeId(self):  # noqa: N802
        return self._voted_for

    def onOneSecondTimer(self) -> None:  # noqa: N802
        pass

    def _destroy(self) -> None:
        try:
            self.sync()
        finally:
            os.close(self._fd)
