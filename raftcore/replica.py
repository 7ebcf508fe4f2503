"""The Replica interface: what the API layer and leader services use of raftcore.

`raftcore.consensus.RaftReplica` is the real one (PySyncObj + LMDB);
`raftcore.fake.LocalReplica` is an in-process single-server fake for tests.
"""

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

# Raft roles as shown by `onezone show` (OpenNebula's names).
ROLE_LEADER = "leader"
ROLE_FOLLOWER = "follower"
ROLE_CANDIDATE = "candidate"
ROLE_SOLO = "solo"

CONSISTENCY_LOCAL = "local"
CONSISTENCY_LINEARIZABLE = "linearizable"


@dataclass
class RaftStatus:
    server_id: int
    raft_address: str
    role: str
    term: int
    log_index: int
    commit_index: int
    applied_index: int
    voted_for: str | None
    leader: str | None
    members: list[str] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)


class ReadView(Protocol):
    applied_index: int

    def get(self, db: str, key: bytes) -> Any | None: ...

    def iter(self, db: str, prefix: bytes = b"") -> Any: ...


class Replica(Protocol):
    server_id: int

    def propose(self, command: dict, timeout: float = 5.0) -> tuple[int, dict]: ...

    async def propose_async(self, command: dict, timeout: float = 5.0) -> tuple[int, dict]: ...

    def read(
        self, consistency: str = CONSISTENCY_LOCAL, min_index: int = 0, timeout: float = 5.0
    ) -> AbstractContextManager[ReadView]: ...

    def status(self) -> RaftStatus: ...

    def role(self) -> tuple[str, int]: ...

    def is_leader(self) -> bool: ...

    def leader(self) -> str | None: ...

    def add_server(self, raft_address: str, timeout: float = 10.0) -> None: ...

    def remove_server(self, raft_address: str, timeout: float = 10.0) -> None: ...

    def subscribe_role(self, callback: Callable[[str, int], None]) -> None: ...

    def close(self) -> None: ...
