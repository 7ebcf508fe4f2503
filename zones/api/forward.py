"""Forwarding calls from a follower to the leader, over cached gRPC channels.

The leader's gRPC endpoint is looked up in the replicated "servers" table (raft endpoint
-> grpc endpoint), falling back to the config's [[servers]]. The forwarded call carries
the caller's metadata (token, ...) plus `x-one-forwarded: 1`, so the leader never
forwards it again. Writes carry a request id fixed before the first attempt, so
re-sending after a leader change or an ambiguous failure is safe (the log dedupes it).
"""

from __future__ import annotations

import logging
import threading
import time

import grpc

from raftcore import schema
from raftcore.replica import CONSISTENCY_LOCAL
from zones.api.auth import FORWARDED_KEY
from zones.api.errors import ApiError, no_leader_message, unavailable

log = logging.getLogger(__name__)

# Metadata never copied onto a forwarded call (set by gRPC itself).
_SKIP_KEYS = ("user-agent", "grpc-", ":", "x-one-forwarded")
# Longest a forwarded call may take when the client set no deadline.
DEFAULT_BUDGET = 10.0
_RETRY_PAUSE = 0.02

CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 0),
    # Front-ends restart and fail over in well under a second: reconnect that fast too
    # (gRPC's default backoff starts at 1 s and grows to 120 s; with a 1 s cap a client
    # still waited ~0.5 s after a whole-zone restart, a quarter of the 2 s budget).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
    ("grpc.keepalive_time_ms", 30000),
    ("grpc.max_receive_message_length", 8 << 20),
    ("grpc.max_send_message_length", 8 << 20),
]


class Channels:
    """One cached channel per peer endpoint (plaintext, or TLS when configured)."""

    def __init__(self, credentials: grpc.ChannelCredentials | None = None) -> None:
        self._credentials = credentials
        self._by_endpoint: dict[str, grpc.Channel] = {}
        self._callables: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def get(self, endpoint: str) -> grpc.Channel:
        ch = self._by_endpoint.get(endpoint)
        if ch is None:
            with self._lock:
                ch = self._by_endpoint.get(endpoint)
                if ch is None:
                    if self._credentials is None:
                        ch = grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
                    else:
                        ch = grpc.secure_channel(endpoint, self._credentials, CHANNEL_OPTIONS)
                    self._by_endpoint[endpoint] = ch
        return ch

    def unary(self, endpoint: str, path: str, response_cls):
        key = (endpoint, path)
        fn = self._callables.get(key)
        if fn is None:
            fn = self.get(endpoint).unary_unary(
                path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_cls.FromString,
            )
            self._callables[key] = fn
        return fn

    def close(self) -> None:
        with self._lock:
            channels, self._by_endpoint = self._by_endpoint, {}
            self._callables = {}
        for ch in channels.values():
            ch.close()


class Forwarder:
    def __init__(self, replica, config, channels: Channels) -> None:
        self._replica = replica
        self._config = config
        self.channels = channels
        # How long to look for a reachable leader: about two election rounds.
        self.leaderless_wait = max(1.0, 2 * config.raft.election_timeout_max)

    def grpc_endpoint(self, raft_address: str) -> str | None:
        """The gRPC endpoint of the server whose raft endpoint is `raft_address`."""
        try:
            with self._replica.read(CONSISTENCY_LOCAL) as view:
                for _key, server in view.iter(schema.SERVERS):
                    if server.get("raft") == raft_address and server.get("grpc"):
                        return server["grpc"]
        except Exception as e:  # fall back to the config below
            log.debug("servers table lookup failed: %s", e)
        for spec in self._config.servers:
            if spec.raft == raft_address:
                return spec.grpc
        return None

    def leader_endpoint(self) -> str | None:
        leader = self._replica.leader()
        if leader is None or leader == self._config.raft_address:
            return None
        return self.grpc_endpoint(leader)

    def _role(self) -> str | None:
        try:
            return self._replica.status().role
        except Exception:
            return None

    def forward(
        self,
        path: str,
        request,
        response_cls,
        metadata: dict[str, str],
        deadline: float,
        allow_self: bool = True,
    ):
        """Send the call to the leader until it answers or `deadline` (monotonic) passes.

        Returns the leader's response; raises ApiError with the leader's status otherwise,
        or BecameLeader (if `allow_self`) when this front-end is the leader meanwhile.
        """
        md = [(k, v) for k, v in metadata.items() if not k.startswith(_SKIP_KEYS)]
        md.append((FORWARDED_KEY, "1"))
        last: ApiError | None = None
        # No new attempt after this: without a reachable leader, fail fast (like
        # OpenNebula's "oned cluster in election mode") rather than hang until the deadline.
        retry_until = time.monotonic() + self.leaderless_wait
        while True:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0.001 or (last is not None and now >= retry_until):
                break
            endpoint = self.leader_endpoint()
            if endpoint is None:
                if allow_self and self._replica.is_leader():
                    # We became leader meanwhile: the caller serves it itself.
                    raise BecameLeader()
                last = unavailable(no_leader_message(self._role()))
                time.sleep(min(_RETRY_PAUSE, max(remaining, 0)))
                continue
            try:
                fn = self.channels.unary(endpoint, path, response_cls)
                return fn(request, timeout=remaining, metadata=md)
            except grpc.RpcError as e:
                code, details = e.code(), e.details() or ""
                if code == grpc.StatusCode.UNAVAILABLE:
                    # Leader gone, changing, or the outcome is unknown: the request id
                    # makes the retry safe, so try again while the budget lasts.
                    last = unavailable(details or f"leader {endpoint} unreachable")
                    log.debug("forward of %s to %s: %s", path, endpoint, details)
                    time.sleep(min(_RETRY_PAUSE, max(deadline - time.monotonic(), 0)))
                    continue
                if code == grpc.StatusCode.DEADLINE_EXCEEDED and last is not None:
                    break
                raise ApiError(code, details) from None
        raise last or ApiError(grpc.StatusCode.DEADLINE_EXCEEDED, "deadline exceeded")


class BecameLeader(Exception):
    """Raised by Forwarder.forward when this front-end became the leader meanwhile."""
