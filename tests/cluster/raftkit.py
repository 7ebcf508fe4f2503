"""In-process raft clusters of RaftReplica (real PySyncObj, real sockets on 127.0.0.1)."""

import itertools
import os
import time
from collections.abc import Callable

from raftcore.commands import make_command
from raftcore.consensus import RaftReplica, ReplicaConfig
from raftcore.store import Store
from zones.config import free_port, free_ports

_rid = itertools.count()


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def put(key: str, value: bytes = b"v", rid: str | None = None) -> dict:
    return make_command(
        "kv.put",
        {"key": key, "value": value},
        rid=rid or f"t{next(_rid)}",
        uid=0,
        ts_ms=1_700_000_000_000,
    )


class Cluster:
    def __init__(self, base: str, n: int, **overrides) -> None:
        self.base = base
        self.addrs = [f"127.0.0.1:{p}" for p in free_ports(n)]
        self.overrides = overrides
        self.replicas: list[RaftReplica | None] = [None] * n
        for i in range(n):
            self.start(i)

    def config(self, i: int, joining: bool = False, **extra) -> ReplicaConfig:
        d = os.path.join(self.base, f"fe{i}")
        os.makedirs(d, exist_ok=True)
        kw = {"snapshot_min_entries": 10000, "fault_injection": True, **self.overrides}
        return ReplicaConfig(
            server_id=i,
            raft_address=self.addrs[i],
            peers=self.addrs,
            data_dir=d,
            secret="s" * 32,
            joining=joining,
            extra=extra,
            **kw,
        )

    def start(self, i: int, joining: bool = False, **extra) -> RaftReplica:
        cfg = self.config(i, joining, **extra)
        store = Store(os.path.join(cfg.data_dir, "state"), map_size=1 << 28)
        self.replicas[i] = RaftReplica(cfg, store)
        return self.replicas[i]

    def stop(self, i: int) -> None:
        r = self.replicas[i]
        if r is not None:
            r.close()
            r.store.close()
            self.replicas[i] = None

    def leader(self, among: list[int] | None = None, timeout: float = 10.0) -> int:
        ids = among if among is not None else range(len(self.addrs))

        def find():
            for i in ids:
                r = self.replicas[i]
                if r is not None and r.is_leader():
                    return i + 1
            return 0

        return wait_for(find, timeout, "a leader") - 1

    def add(self) -> int:
        """Add a server to the zone through the leader and start it as a joiner."""
        address = f"127.0.0.1:{free_port()}"
        self.replicas[self.leader()].add_server(address)
        self.addrs.append(address)
        self.replicas.append(None)
        self.start(len(self.addrs) - 1, joining=True)
        return len(self.addrs) - 1

    def partition(self, side_a: list[int], side_b: list[int]) -> None:
        for group, other in ((side_a, side_b), (side_b, side_a)):
            for i in group:
                path = os.path.join(self.base, f"fe{i}", "fault", "blocked")
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w") as f:
                    f.write("\n".join(self.addrs[j] for j in other))

    def heal(self) -> None:
        for i in range(len(self.addrs)):
            path = os.path.join(self.base, f"fe{i}", "fault", "blocked")
            if os.path.exists(path):
                os.unlink(path)

    def close(self) -> None:
        for i in range(len(self.addrs)):
            self.stop(i)
