"""LocalReplica: an in-process, single-server Replica with no consensus (for tests).

Each propose() becomes its own log entry, applied at once to the store, so the API
layer sees the same results and dedupe behaviour as with the real adapter.
"""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from raftcore.commands import encode_entry
from raftcore.errors import Unavailable
from raftcore.replica import (
    CONSISTENCY_LINEARIZABLE,
    CONSISTENCY_LOCAL,
    ROLE_LEADER,
    RaftStatus,
)
from raftcore.store import Store, TxnView

TERM = 1


class LocalReplica:
    """Implements raftcore.replica.Replica over one Store, always the leader."""

    def __init__(self, store: Store, server_id: int = 0, raft_address: str = "local:0") -> None:
        self.server_id = server_id
        self.raft_address = raft_address
        self._store = store
        self._lock = threading.Lock()
        self._closed = False

    def propose(self, command: dict, timeout: float = 5.0) -> tuple[int, dict]:
        if self._closed:
            raise Unavailable("replica is closed")
        payload = encode_entry([command])
        # The lock makes index assignment and apply one step, like a real log's order.
        with self._lock:
            index = self._store.applied_index + 1
            results = self._store.apply_entry(index, payload)
        if results is None:  # only if someone else applied to the store behind our back
            raise Unavailable(f"index {index} was already applied")
        return index, results[0]

    async def propose_async(self, command: dict, timeout: float = 5.0) -> tuple[int, dict]:
        return self.propose(command, timeout)

    @contextmanager
    def read(
        self, consistency: str = CONSISTENCY_LOCAL, min_index: int = 0, timeout: float = 5.0
    ) -> Iterator[TxnView]:
        if consistency not in (CONSISTENCY_LOCAL, CONSISTENCY_LINEARIZABLE):
            raise ValueError(f"unknown consistency {consistency!r}")
        if self._closed:
            raise Unavailable("replica is closed")
        # Single server: every applied entry is committed, so local == linearizable.
        if not self._store.wait_applied(min_index, timeout):
            raise Unavailable(
                f"index {min_index} not applied within {timeout}s "
                f"(applied: {self._store.applied_index})"
            )
        with self._store.read() as view:
            yield view

    def role(self) -> tuple[str, int]:
        return ROLE_LEADER, TERM

    def status(self) -> RaftStatus:
        index = self._store.applied_index
        return RaftStatus(
            server_id=self.server_id,
            raft_address=self.raft_address,
            role=ROLE_LEADER,
            term=TERM,
            log_index=index,
            commit_index=index,
            applied_index=index,
            voted_for=self.raft_address,
            leader=self.raft_address,
            members=[self.raft_address],
            connected=[self.raft_address],
        )

    @property
    def auth_epoch(self) -> int:
        return self._store.auth_epoch

    def is_leader(self) -> bool:
        return True

    def leader(self) -> str | None:
        return self.raft_address

    def leader_id(self) -> str | None:
        # docs/interfaces.md names it leader_id(); the Replica protocol says leader().
        return self.leader()

    def add_server(self, raft_address: str, timeout: float = 10.0) -> None:
        raise Unavailable("membership changes are not supported by the local replica")

    def remove_server(self, raft_address: str, timeout: float = 10.0) -> None:
        raise Unavailable("membership changes are not supported by the local replica")

    def subscribe_role(self, callback: Callable[[str, int], None]) -> None:
        callback(ROLE_LEADER, TERM)

    def close(self) -> None:
        self._closed = True
