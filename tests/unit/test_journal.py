"""The durable journal: what survives a reopen, torn tails, corruption, term/vote."""

import errno
import os

import pytest

from raftcore import journal as journal_mod
from raftcore.journal import DurableJournal, JournalCorrupt


def fill(j: DurableJournal, n: int, term: int = 1, start: int = 1) -> None:
    for i in range(start, start + n):
        j.add(f"cmd{i}".encode(), i, term)


def test_entries_term_and_vote_survive_reopen(tmp_path):
    j = DurableJournal(str(tmp_path))
    fill(j, 5)
    j.setCurrentTerm(3, "127.0.0.1:7000")
    j.sync()
    j._destroy()
    j2 = DurableJournal(str(tmp_path))
    assert [e[1] for e in j2] == [1, 2, 3, 4, 5]
    assert j2[-1] == (b"cmd5", 5, 1)
    assert j2.getCurrentTerm() == 3 and j2.getVotedForNodeId() == "127.0.0.1:7000"
    assert j2.synced_index == 5


def test_sync_is_what_makes_entries_durable_and_clears_dirty(tmp_path):
    j = DurableJournal(str(tmp_path))
    seen = []
    j.sync_listeners.append(seen.append)
    fill(j, 3)
    assert j.dirty and j.synced_index == 0
    j.sync()
    assert not j.dirty and j.synced_index == 3 and seen == [3]


@pytest.mark.parametrize("cut", [1, 5, 11])
def test_torn_tail_is_detected_and_cut_never_loaded(tmp_path, cut):
    j = DurableJournal(str(tmp_path))
    fill(j, 4)
    j._destroy()
    path = tmp_path / "log"
    size = path.stat().st_size
    os.truncate(path, size - cut)
    j2 = DurableJournal(str(tmp_path))
    assert [e[1] for e in j2] == [1, 2, 3]
    assert j2.recovered_tail_bytes > 0
    j2.add(b"next", 4, 2)
    j2._destroy()
    assert [e[1] for e in DurableJournal(str(tmp_path))] == [1, 2, 3, 4]


def test_corrupted_last_record_is_treated_as_torn_tail(tmp_path):
    j = DurableJournal(str(tmp_path))
    fill(j, 3)
    j._destroy()
    path = tmp_path / "log"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    assert [e[1] for e in DurableJournal(str(tmp_path))] == [1, 2]


def test_corruption_followed_by_valid_records_refuses_to_open(tmp_path):
    j = DurableJournal(str(tmp_path))
    fill(j, 5)
    offset = j._offsets[1]
    j._destroy()
    path = tmp_path / "log"
    data = bytearray(path.read_bytes())
    data[offset + 12] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt, match="damaged record"):
        DurableJournal(str(tmp_path))


def test_not_a_journal_and_bad_meta_are_refused(tmp_path):
    (tmp_path / "log").write_bytes(b"something else entirely")
    with pytest.raises(JournalCorrupt, match="bad magic"):
        DurableJournal(str(tmp_path))
    other = tmp_path / "b"
    j = DurableJournal(str(other))
    j.setCurrentTerm(2, None)
    j._destroy()
    meta = other / "meta"
    raw = bytearray(meta.read_bytes())
    raw[-1] ^= 0xFF
    meta.write_bytes(bytes(raw))
    with pytest.raises(JournalCorrupt, match="checksum"):
        DurableJournal(str(other))


def test_delete_from_and_to_keep_file_and_memory_in_step(tmp_path):
    j = DurableJournal(str(tmp_path))
    fill(j, 10)
    j.deleteEntriesFrom(7)  # list positions, as PySyncObj passes them
    assert [e[1] for e in j] == list(range(1, 8))
    j.add(b"x", 8, 2)
    j.deleteEntriesTo(3)
    assert [e[1] for e in j] == [4, 5, 6, 7, 8]
    j._destroy()
    assert [(e[1], e[2]) for e in DurableJournal(str(tmp_path))] == [
        (4, 1),
        (5, 1),
        (6, 1),
        (7, 1),
        (8, 2),
    ]


def test_failed_write_leaves_the_journal_unchanged(tmp_path, monkeypatch):
    j = DurableJournal(str(tmp_path))
    fill(j, 2)

    def no_space(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_mod.os, "pwrite", no_space)
    with pytest.raises(OSError):
        j.add(b"x", 3, 1)
    monkeypatch.undo()
    assert len(j) == 2
    j.add(b"y", 3, 1)
    j._destroy()
    assert [e[0] for e in DurableJournal(str(tmp_path))] == [b"cmd1", b"cmd2", b"y"]
