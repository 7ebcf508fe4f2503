"""A small client of the gRPC API: one channel, a token, and stubs that send it.

    c = Client.login("127.0.0.1:2634", "oneadmin", password)
    c.kv.Put(kv_pb2.PutRequest(key="a", value=b"1"))
    c.zone.Info(zone_pb2.ZoneInfoRequest())
    c.close()

Used by the lab, the tests, the CLIs (zones/cli/common.py) and the benchmarks.
"""

from __future__ import annotations

import grpc

from zones.api.auth import AUTH_KEY, PEER_KEY, sign_peer
from zones.api.gen import (
    accounting_pb2_grpc,
    acl_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    group_pb2_grpc,
    kv_pb2_grpc,
    pool_pb2_grpc,
    quota_pb2_grpc,
    user_pb2_grpc,
    zone_pb2_grpc,
)

CHANNEL_OPTIONS = [
    ("grpc.enable_retries", 0),
    # Front-ends restart and fail over in well under a second: reconnect that fast too
    # (gRPC's default backoff starts at 1 s and grows to 120 s; with a 1 s cap a client
    # still waited ~0.5 s after a whole-zone restart, a quarter of the 2 s budget).
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 250),
    # A whole pool listing (OpenNebula's vmpool.info) of 100,000 VMs is ~40 MiB.
    ("grpc.max_receive_message_length", 256 << 20),
    ("grpc.max_send_message_length", 8 << 20),
]


class _MetadataInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Adds fixed metadata (the token) to every call that does not carry its own."""

    def __init__(self, metadata: list[tuple[str, str]]) -> None:
        self.metadata = metadata

    def intercept_unary_unary(self, continuation, details, request):
        if self.metadata:
            md = list(details.metadata or ())
            keys = {k for k, _ in md}
            md.extend(kv for kv in self.metadata if kv[0] not in keys)
            details = details._replace(metadata=md)
        return continuation(details, request)


def open_channel(endpoint: str, credentials: grpc.ChannelCredentials | None = None) -> grpc.Channel:
    if credentials is None:
        return grpc.insecure_channel(endpoint, options=CHANNEL_OPTIONS)
    return grpc.secure_channel(endpoint, credentials, options=CHANNEL_OPTIONS)


class Client:
    """Stubs over one channel to one front-end, sending `metadata` on every call."""

    def __init__(
        self,
        endpoint: str,
        token: str | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        metadata: list[tuple[str, str]] | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.raw_channel = open_channel(endpoint, credentials)
        self._interceptor = _MetadataInterceptor(list(metadata or ()))
        self.channel = grpc.intercept_channel(self.raw_channel, self._interceptor)
        self.auth = auth_pb2_grpc.AuthServiceStub(self.channel)
        self.kv = kv_pb2_grpc.KVServiceStub(self.channel)
        self.zone = zone_pb2_grpc.ZoneServiceStub(self.channel)
        self.user = user_pb2_grpc.UserServiceStub(self.channel)
        self.group = group_pb2_grpc.GroupServiceStub(self.channel)
        self.acl = acl_pb2_grpc.AclServiceStub(self.channel)
        self.quota = quota_pb2_grpc.QuotaServiceStub(self.channel)
        self.pool = pool_pb2_grpc.PoolServiceStub(self.channel)
        self.accounting = accounting_pb2_grpc.AccountingServiceStub(self.channel)
        self.token: str | None = None
        self.user_id: int | None = None
        if token:
            self.set_token(token)

    def set_token(self, token: str) -> None:
        self.token = token
        md = [kv for kv in self._interceptor.metadata if kv[0] != AUTH_KEY]
        md.append((AUTH_KEY, f"Bearer {token}"))
        self._interceptor.metadata = md

    @property
    def metadata(self) -> list[tuple[str, str]]:
        """The metadata sent on every call (pass it to raw stubs of your own)."""
        return list(self._interceptor.metadata)

    def login(
        self, user: str, password: str, ttl_seconds: int = 0, timeout: float = 10.0
    ) -> Client:
        resp = self.auth.Login(
            auth_pb2.LoginRequest(username=user, password=password, ttl_seconds=ttl_seconds),
            timeout=timeout,
        )
        self.user_id = resp.user_id
        self.set_token(resp.token)
        return self

    @classmethod
    def peer(cls, endpoint: str, secret: str, server_id: int = 0, **kw) -> Client:
        """A client authenticated as a front-end (x-one-peer): LocalStatus only."""
        return cls(endpoint, metadata=[(PEER_KEY, sign_peer(secret, server_id))], **kw)

    def close(self) -> None:
        self.raw_channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
