"""How failures become gRPC statuses: one table for result codes, one for replica errors."""

from __future__ import annotations

import grpc

from raftcore.errors import Ambiguous, DiskFull, NotLeader, ReplicaError, Unavailable

MSG_ELECTION = "no leader: election in progress"
MSG_NO_LEADER = "no leader found"
MSG_AMBIGUOUS = "outcome unknown, retry with the same request id"

# Result error classes (raftcore.commands.ErrorCode) -> gRPC status codes.
RESULT_CODES: dict[str, grpc.StatusCode] = {
    "AUTHENTICATION": grpc.StatusCode.UNAUTHENTICATED,
    "AUTHORIZATION": grpc.StatusCode.PERMISSION_DENIED,
    "NO_EXISTS": grpc.StatusCode.NOT_FOUND,
    "ACTION": grpc.StatusCode.FAILED_PRECONDITION,
    "BAD_REQUEST": grpc.StatusCode.INVALID_ARGUMENT,
    "INTERNAL": grpc.StatusCode.INTERNAL,
    "ALLOCATE": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "LOCKED": grpc.StatusCode.ABORTED,
    "REPLICATION": grpc.StatusCode.UNAVAILABLE,
}


class ApiError(Exception):
    """Ends a call with `code` and a message meant for the person at the client."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def unauthenticated(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.UNAUTHENTICATED, message)


def denied(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.PERMISSION_DENIED, message)


def invalid(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.NOT_FOUND, message)


def unavailable(message: str) -> ApiError:
    return ApiError(grpc.StatusCode.UNAVAILABLE, message)


def check_result(result: dict) -> object:
    """The value of an ok result; an ApiError carrying the mapped code otherwise."""
    if result.get("ok"):
        return result.get("value")
    code = str(result.get("code", "INTERNAL"))
    message = str(result.get("message") or code.lower())
    raise ApiError(RESULT_CODES.get(code, grpc.StatusCode.INTERNAL), message)


def no_leader_message(role: str | None) -> str:
    return MSG_ELECTION if role == "candidate" else MSG_NO_LEADER


def from_replica_error(e: ReplicaError, role: str | None = None) -> ApiError:
    """Map a replica exception (NotLeader only when it cannot be forwarded)."""
    if isinstance(e, DiskFull):
        return ApiError(grpc.StatusCode.RESOURCE_EXHAUSTED, f"disk full: {e}")
    if isinstance(e, Ambiguous):
        return unavailable(f"{MSG_AMBIGUOUS} ({e})" if str(e) else MSG_AMBIGUOUS)
    if isinstance(e, NotLeader):
        if e.leader is None:
            return unavailable(no_leader_message(role))
        return unavailable(f"not the leader (leader: {e.leader}); retry")
    if isinstance(e, Unavailable):
        return unavailable(str(e) or no_leader_message(role))
    return ApiError(grpc.StatusCode.INTERNAL, f"replica error: {e}")
