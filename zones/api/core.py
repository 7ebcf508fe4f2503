"""The shared call path of every RPC: metrics, forwarding, authentication, error mapping.

Each service module declares its RPCs as `Rpc` specs and implements handlers of the form
`handler(request, context, caller) -> response`; `Api.handle` runs them:

1. a leader-only call (write, linearizable read) arriving at a follower is forwarded to
   the leader as is (request id fixed first), unless it already was forwarded;
2. the caller is authenticated per the table in zones.api.auth, then the request is
   validated (an anonymous caller learns nothing of what would be valid);
3. the handler runs; replica errors and error results map to gRPC status codes
   (zones.api.errors); a NotLeader from the replica (leadership lost meanwhile) makes
   the call forwarded after all.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import grpc

from raftcore.commands import MAX_RID_CHARS, BadCommand, make_command
from raftcore.errors import NotLeader, ReplicaError
from zones.api.auth import (
    FORWARDED_KEY,
    RELAYED_KEYS,
    Authenticator,
    Caller,
    UnknownToken,
    relay_cert,
)
from zones.api.errors import ApiError, check_result, from_replica_error, invalid
from zones.api.forward import DEFAULT_BUDGET, BecameLeader, Forwarder
from zones.api.metrics import Metrics
from zones.authdrivers.x509 import peer_cert_from_context

log = logging.getLogger(__name__)

# Upper bound of how long a call waits on the log when the client set no deadline.
MAX_WAIT = 10.0
# A request id is at most MAX_RID_CHARS characters and this many bytes of UTF-8.
MAX_RID_BYTES = 256


@dataclass(frozen=True)
class Rpc:
    """One RPC: its full method path, response type and how it is routed."""

    path: str
    response: type
    # True if the call must run on the leader (a write); or a function of the request
    # (e.g. a linearizable read).
    leader_only: bool | Callable[[Any], bool] = False
    # (get, set) of the request id field of a write request, if it has one.
    rid: tuple[Callable[[Any], str], Callable[[Any, str], None]] | None = None
    # Checks the request once the caller is authenticated; raises ApiError.
    validate: Callable[[Any], None] | None = None

    @property
    def short(self) -> str:
        return self.path.rsplit(".", 1)[-1]  # "KVService/Put"


def rid_accessors(container: str | None = None):
    """(get, set) of a request's `request_id`, or of `<container>.request_id`."""

    def holder(req):
        return getattr(req, container) if container else req

    def get(req) -> str:
        return holder(req).request_id

    def put(req, rid: str) -> None:
        holder(req).request_id = rid

    return get, put


def deadline_of(context: grpc.ServicerContext, cap: float = MAX_WAIT) -> float:
    """The call's deadline as a time.monotonic() value, at most `cap` seconds away."""
    remaining = context.time_remaining()
    if remaining is None or remaining > cap:
        remaining = cap
    return time.monotonic() + remaining


class Api:
    """Everything the services share: the replica, auth, forwarding and metrics."""

    def __init__(
        self,
        replica,
        config,
        secret: str,
        forwarder: Forwarder,
        metrics: Metrics | None = None,
    ) -> None:
        self.replica = replica
        self.config = config
        self.secret = secret
        self.auth = Authenticator(replica, secret)
        self.forwarder = forwarder
        self.metrics = metrics or Metrics()

    # Thread pool for the slow path of the asyncio server (set by ApiServer).
    executor = None

    # --- the call path ------------------------------------------------------------------

    async def handle_async(self, rpc: Rpc, request, context, handler, fast=None):
        """The asyncio entry point: `fast` (a coroutine handler) when the call can be served
        here without blocking; else `handle` (forwarding, waits) on the thread pool.

        `fast(request, context, caller)` returns the response, or None to take the slow path.
        """
        if fast is not None:
            start = time.perf_counter()
            code = "OK"
            try:
                caller = self._fast_caller(rpc, request, context)
                if caller is not None:
                    response = await fast(request, context, caller)
                    if response is not None:
                        return response
                code = None
            except NotLeader:
                code = None  # leadership moved meanwhile: the slow path forwards it
            except Exception as e:  # noqa: BLE001 - every failure becomes a status
                code = self._fail(rpc, context, e)
                return rpc.response()
            finally:
                if code is not None:
                    self.metrics.observe(rpc.short, code, time.perf_counter() - start)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self.executor, self.handle, rpc, request, context, handler
        )

    def _fast_caller(self, rpc: Rpc, request, context) -> Caller | None:
        """Validate and authenticate for the fast path; None when the slow path must run."""
        if rpc.rid is not None:
            self._fix_rid(rpc, request)
        leader_only = rpc.leader_only(request) if callable(rpc.leader_only) else rpc.leader_only
        if leader_only and not self.replica.is_leader():
            return None
        metadata = dict(context.invocation_metadata() or ())
        try:
            caller = self.auth.authenticate(rpc.path, metadata)
        except UnknownToken:
            return None
        self._check_request(rpc, request)
        return caller

    def handle(self, rpc: Rpc, request, context: grpc.ServicerContext, handler):
        start = time.perf_counter()
        code = "OK"
        try:
            return self._handle(rpc, request, context, handler)
        except Exception as e:  # noqa: BLE001 - every failure becomes a status
            code = self._fail(rpc, context, e)
            return rpc.response()
        finally:
            self.metrics.observe(rpc.short, code, time.perf_counter() - start)

    def _fail(self, rpc: Rpc, context, exc: Exception) -> str:
        """Set the call's status for `exc`; returns the status code's name."""
        if isinstance(exc, ReplicaError):
            exc = from_replica_error(exc, self._role())
        elif isinstance(exc, BadCommand):
            exc = invalid(str(exc))
        if isinstance(exc, ApiError):
            code, details = exc.code, exc.message
        else:
            log.exception("%s failed", rpc.path, exc_info=exc)
            code = grpc.StatusCode.INTERNAL
            details = f"internal error in {rpc.short} (see the front-end log)"
        context.set_code(code)
        context.set_details(details)
        return code.name

    def _handle(self, rpc: Rpc, request, context, handler):
        metadata = dict(context.invocation_metadata() or ())
        forwarded = metadata.get(FORWARDED_KEY) == "1"
        if rpc.rid is not None:
            # Before forwarding: the forwarder's own retries must carry the same id.
            self._fix_rid(rpc, request)
        leader_only = rpc.leader_only(request) if callable(rpc.leader_only) else rpc.leader_only
        if leader_only and not forwarded and not self.replica.is_leader():
            try:
                return self._forward(rpc, request, context, metadata)
            except BecameLeader:
                pass
        try:
            caller = self.auth.authenticate(rpc.path, metadata)
        except UnknownToken:
            # A token created a moment ago may not have reached this follower yet:
            # the leader has the final word (a front-end just started may need a moment
            # to learn who that is).
            if not forwarded and not self.replica.is_leader() and self._await_leader(context):
                try:
                    return self._forward(rpc, request, context, metadata)
                except BecameLeader:
                    pass
            raise
        self._check_request(rpc, request)
        try:
            return handler(request, context, caller)
        except NotLeader as e:
            if forwarded:
                raise from_replica_error(e, self._role()) from None
            # Leadership lost (or being handed over) meanwhile: send it to the next leader.
            return self._forward(rpc, request, context, metadata, allow_self=False)
        except ReplicaError as e:
            raise from_replica_error(e, self._role()) from None
        except BadCommand as e:
            raise invalid(str(e)) from None

    def _await_leader(self, context, limit: float = 2.0) -> bool:
        deadline = min(deadline_of(context), time.monotonic() + limit)
        while self.replica.leader() is None:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    def _check_request(self, rpc: Rpc, request) -> None:
        """After authentication (an anonymous caller learns nothing of what is valid)."""
        if rpc.validate is not None:
            rpc.validate(request)

    def _fix_rid(self, rpc: Rpc, request) -> None:
        get, put = rpc.rid
        rid = get(request)
        if not rid:
            put(request, uuid.uuid4().hex)
        elif len(rid) > MAX_RID_CHARS:
            raise invalid(f"request_id must be at most {MAX_RID_CHARS} characters, got {len(rid)}")
        elif len(rid.encode("utf-8", errors="surrogatepass")) > MAX_RID_BYTES:
            # The store keys its dedupe table by the rid: LMDB keys are at most 511 bytes.
            raise invalid(f"request_id must be at most {MAX_RID_BYTES} bytes of UTF-8")

    def _forward(self, rpc: Rpc, request, context, metadata, allow_self: bool = True):
        self.metrics.forwarded.labels(rpc.short).inc()
        metadata = {k: v for k, v in metadata.items() if k not in RELAYED_KEYS}
        pem = peer_cert_from_context(context)
        if pem is not None:
            # The leader sees our certificate, not the client's: vouch for the client's.
            metadata.update(relay_cert(self.secret, self.config.server_id, pem))
        deadline = deadline_of(context, DEFAULT_BUDGET)
        return self.forwarder.forward(
            rpc.path, request, rpc.response, metadata, deadline, allow_self=allow_self
        )

    def _role(self) -> str | None:
        try:
            return self.replica.status().role
        except Exception:
            return None

    # --- helpers for handlers -----------------------------------------------------------

    def propose(
        self, op: str, args: dict, rid: str, caller: Caller, context=None, uid: int | None = None
    ) -> Any:
        """Propose one command; its value, or ApiError for an error result."""
        command = make_command(
            op,
            args,
            rid=rid,
            uid=caller.uid if uid is None else uid,
            ts_ms=int(time.time() * 1000),
        )
        timeout = (deadline_of(context) - time.monotonic()) if context is not None else MAX_WAIT
        start = time.perf_counter()
        _index, result = self.replica.propose(command, timeout=max(timeout, 0.001))
        self.metrics.propose_seconds.observe(time.perf_counter() - start)
        return check_result(result)

    async def propose_async(self, op: str, args: dict, rid: str, caller: Caller, context) -> Any:
        """propose() for coroutine handlers."""
        command = make_command(op, args, rid=rid, uid=caller.uid, ts_ms=int(time.time() * 1000))
        timeout = deadline_of(context) - time.monotonic()
        start = time.perf_counter()
        _index, result = await self.replica.propose_async(command, timeout=max(timeout, 0.001))
        self.metrics.propose_seconds.observe(time.perf_counter() - start)
        return check_result(result)

    @contextmanager
    def read(self, consistency: str, min_index: int, context) -> Iterator:
        """A ReadView of this front-end's store at `consistency`, after `min_index`."""
        try:
            cm = self.replica.read(consistency, min_index=min_index, timeout=self.timeout(context))
            view = cm.__enter__()
        except TimeoutError:
            raise ApiError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"index {min_index} was not applied on this front-end in time",
            ) from None
        try:
            yield view
        except BaseException:
            if not cm.__exit__(*sys.exc_info()):
                raise
        else:
            cm.__exit__(None, None, None)

    def timeout(self, context) -> float:
        return max(deadline_of(context) - time.monotonic(), 0.001)
