"""The API worker's end of the raft-process socket (zones/replica_ipc.RemoteReplica),
against a scripted raft process on a Unix socket."""

import asyncio
import socket
import threading

import pytest

from raftcore.errors import Ambiguous, Unavailable
from zones.api.server import start_loop, stop_loop
from zones.replica_ipc import MAX_FRAME, RemoteReplica, _frame, _frames


class ScriptedRaftProcess:
    """Answers proposals in one "R" frame per read, except keys named "silent"."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(1)
        self.conn: socket.socket | None = None
        self.connected = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        try:
            self._answer()
        except OSError:  # closed by the test
            pass

    def _answer(self) -> None:
        self.conn, _ = self.sock.accept()
        state = {"leader": "a:1", "is_leader": True, "role": "leader", "term": 2}
        self.conn.sendall(_frame(["e", state]) + _frame(["a", 3]))
        self.connected.set()
        buffer = bytearray()
        while chunk := self.conn.recv(1 << 16):
            buffer += chunk
            answers = [
                [message[1], True, [7, {"ok": True, "key": message[2]["args"]["key"]}]]
                for _size, message in _frames(buffer)
                if message[2]["args"]["key"] != "silent"
            ]
            if answers:
                self.conn.sendall(_frame(["R", answers]))

    def push(self, message: list) -> None:
        self.conn.sendall(_frame(message))

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.sock.close()


@pytest.fixture
def remote(tmp_path):
    path = str(tmp_path / "raft.sock")
    raft = ScriptedRaftProcess(path)
    loop = start_loop()
    replica = RemoteReplica(path, reader=None, server_id=0, loop=loop)
    replica.connect(timeout=5)
    assert raft.connected.wait(5)
    yield replica, raft, loop
    replica.close()
    raft.close()
    stop_loop(loop)


def _run(loop, coro, timeout=5.0):
    return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout)


def _put(key: str) -> dict:
    return {"v": 1, "op": "kv.put", "args": {"key": key}, "rid": key, "uid": 0, "ts": 1}


def test_results_of_one_frame_settle_each_waiting_proposal(remote):
    replica, _raft, loop = remote
    assert replica.is_leader() and replica.role() == ("leader", 2) and replica.auth_epoch == 3

    async def many():
        return await asyncio.gather(*(replica.propose_async(_put(f"k{i}")) for i in range(20)))

    results = _run(loop, many())
    assert [r[1]["key"] for r in results] == [f"k{i}" for i in range(20)]
    assert replica.propose(_put("sync"), timeout=5) == (7, {"ok": True, "key": "sync"})


def test_a_proposal_without_an_answer_fails_as_ambiguous_after_its_timeout(remote):
    replica, _raft, loop = remote

    async def silent():
        return await replica.propose_async(_put("silent"), timeout=0.1)

    with pytest.raises(Ambiguous, match="no answer"):
        _run(loop, silent())
    assert replica._waiting == {}


def test_pushed_auth_epoch_and_a_lost_process(remote):
    replica, raft, loop = remote
    raft.push(["a", 4])

    async def epoch_then_wait():
        deadline = loop.time() + 5
        while replica.auth_epoch != 4:
            assert loop.time() < deadline, "the pushed auth epoch never arrived"
            await asyncio.sleep(0.01)
        pending = replica.propose_async(_put("silent"), timeout=30)
        raft.close()
        return await pending

    with pytest.raises(Unavailable, match="gone"):
        _run(loop, epoch_then_wait())
    assert replica.auth_epoch is None and not replica.is_leader()


def test_frames_refuse_an_oversized_frame():
    buffer = bytearray((MAX_FRAME + 1).to_bytes(4, "big") + b"x")
    with pytest.raises(ValueError, match="exceeds the limit"):
        list(_frames(buffer))


def test_proposals_gathered_while_busy_are_still_sent(remote):
    from zones.replica_ipc import GATHER_ABOVE

    replica, _raft, loop = remote

    async def busy():
        waiting = [replica.propose_async(_put("silent"), timeout=30) for _ in range(GATHER_ABOVE)]
        await asyncio.sleep(0)  # those go out at once; with them outstanding the worker is busy
        assert len(replica._waiting) == GATHER_ABOVE
        answered = await asyncio.gather(*(replica.propose_async(_put(f"b{i}")) for i in range(5)))
        for future in waiting:
            future.cancel()
        return answered

    assert [r[1]["key"] for r in _run(loop, busy())] == [f"b{i}" for i in range(5)]
