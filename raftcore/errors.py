"""Exceptions raised at the replica boundary (the API maps them to gRPC status codes)."""


class ReplicaError(Exception):
    """Base class of the errors a Replica raises to its callers."""


class NotLeader(ReplicaError):
    """This front-end is not the leader; `leader` is the raft address of the known leader."""

    def __init__(self, leader: str | None, message: str = "") -> None:
        self.leader = leader
        super().__init__(message or f"not the leader (leader: {leader or 'unknown'})")


class Unavailable(ReplicaError):
    """The zone cannot take the request now (no leader, election in progress, disk full)."""


class Ambiguous(ReplicaError):
    """The outcome of a write is unknown (leader change, timeout): retry with the same rid."""


class DiskFull(Unavailable):
    """This front-end has too little free disk space to accept writes."""
