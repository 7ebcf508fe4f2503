"""The gRPC server of one front-end: the services, health, reflection, TLS."""

from __future__ import annotations

import asyncio
import logging
import threading
from concurrent import futures

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from zones.api import (
    accounting_service,
    acl_service,
    group_service,
    pool_service,
    quota_service,
    user_service,
)
from zones.api.auth_service import AuthService
from zones.api.core import Api
from zones.api.gen import (
    accounting_pb2,
    accounting_pb2_grpc,
    acl_pb2,
    acl_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    group_pb2,
    group_pb2_grpc,
    kv_pb2,
    kv_pb2_grpc,
    pool_pb2,
    pool_pb2_grpc,
    quota_pb2,
    quota_pb2_grpc,
    user_pb2,
    user_pb2_grpc,
    zone_pb2,
    zone_pb2_grpc,
)
from zones.api.kv_service import KVService
from zones.api.zone_service import ZoneService

log = logging.getLogger(__name__)

# Requests: room for a 1 MiB KV value or template plus envelope, so an oversized one gets
# our own clear INVALID_ARGUMENT instead of gRPC's generic RESOURCE_EXHAUSTED.
MAX_MESSAGE = 8 << 20
# Replies: a whole pool listing (vmpool.info of 100,000 VMs is ~40 MiB).
MAX_REPLY = 256 << 20

SERVICE_NAMES = tuple(
    module.DESCRIPTOR.services_by_name[name].full_name
    for module, name in (
        (auth_pb2, "AuthService"),
        (kv_pb2, "KVService"),
        (zone_pb2, "ZoneService"),
        (user_pb2, "UserService"),
        (group_pb2, "GroupService"),
        (acl_pb2, "AclService"),
        (quota_pb2, "QuotaService"),
        (pool_pb2, "PoolService"),
        (accounting_pb2, "AccountingService"),
    )
)


def server_credentials(tls) -> grpc.ServerCredentials:
    cert, key, client_ca, _ca = tls.read()
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def channel_credentials(tls) -> grpc.ChannelCredentials:
    """Credentials this front-end uses to call the others (its cert doubles as client cert)."""
    cert, key, _client_ca, ca = tls.read()
    return grpc.ssl_channel_credentials(
        root_certificates=ca, private_key=key, certificate_chain=cert
    )


class ApiServer:
    """A started gRPC server bound to exactly one address.

    grpc.aio on an event loop of its own thread: the hot calls (writes on the leader, local
    reads) run as coroutines with no thread per call (DESIGN.md: the GIL, shared with the
    raft thread, is the real limit); slow calls (forwarding, logins, zone status fan-out)
    run on a thread pool.
    """

    def __init__(
        self,
        api: Api,
        address: str,
        tls=None,
        workers: int = 64,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.api = api
        self.address = address
        self._pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="grpc")
        api.executor = self._pool
        self._loop = loop or start_loop()
        try:
            self.server, self.health, self.port = self._call(
                self._build(api, address, tls, workers)
            )
        except BaseException:
            self._shutdown_loop()
            raise
        if not self.port:
            self._shutdown_loop()
            raise OSError(f"cannot bind the gRPC server to {address}")

    def _call(self, coro, timeout: float | None = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def _build(self, api: Api, address: str, tls, workers: int):
        server = grpc.aio.server(
            migration_thread_pool=self._pool,
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE),
                ("grpc.max_send_message_length", MAX_REPLY),
                ("grpc.so_reuseport", 0),
            ],
            maximum_concurrent_rpcs=workers * 16,
        )
        auth_pb2_grpc.add_AuthServiceServicer_to_server(AuthService(api), server)
        kv_pb2_grpc.add_KVServiceServicer_to_server(KVService(api), server)
        zone_pb2_grpc.add_ZoneServiceServicer_to_server(ZoneService(api), server)
        user_pb2_grpc.add_UserServiceServicer_to_server(user_service.servicer(api), server)
        group_pb2_grpc.add_GroupServiceServicer_to_server(group_service.servicer(api), server)
        acl_pb2_grpc.add_AclServiceServicer_to_server(acl_service.servicer(api), server)
        quota_pb2_grpc.add_QuotaServiceServicer_to_server(quota_service.servicer(api), server)
        pool_pb2_grpc.add_PoolServiceServicer_to_server(pool_service.servicer(api), server)
        accounting_pb2_grpc.add_AccountingServiceServicer_to_server(
            accounting_service.servicer(api), server
        )
        health_servicer = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (*SERVICE_NAMES, health.SERVICE_NAME, reflection.SERVICE_NAME), server
        )
        try:
            if tls is not None:
                port = server.add_secure_port(address, server_credentials(tls))
            else:
                port = server.add_insecure_port(address)
        except RuntimeError:
            port = 0
        return server, health_servicer, port

    def start(self) -> None:
        self._call(self.server.start())
        for name in ("", *SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float = 2.0) -> None:
        self.health.enter_graceful_shutdown()
        try:
            self._call(self.server.stop(grace), timeout=grace + 2.0)
        finally:
            self._shutdown_loop()
            self._pool.shutdown(wait=False, cancel_futures=True)

    def _shutdown_loop(self) -> None:
        stop_loop(self._loop)


def start_loop() -> asyncio.AbstractEventLoop:
    """An event loop running in a daemon thread of its own."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="grpc-aio", daemon=True)
    thread.start()
    loop._runner_thread = thread  # for stop_loop
    return loop


def stop_loop(loop: asyncio.AbstractEventLoop) -> None:
    if loop.is_running():
        loop.call_soon_threadsafe(loop.stop)
        loop._runner_thread.join(5.0)
