"""Services built from tables of methods: most RPCs are "propose this op with these args
and reply with that", or "read these records and check the caller may see them".

    USERS = [write("UserService", "Delete", "user.delete", lambda r: {"id": r.id}), ...]
    servicer = build(user_pb2_grpc.UserServiceServicer, api, USERS)

Authorization of writes is done by the state machine (raftcore.authz, called from each
op's handler, against the state the write applies to): a write RPC here only needs an
authenticated caller. Reads check the caller's rights in their `run` function with the
same pure function, on the store they read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from raftcore import authz
from raftcore.replica import CONSISTENCY_LOCAL
from zones.api.auth import Caller
from zones.api.core import Api, Rpc, rid_accessors
from zones.api.errors import denied
from zones.api.gen import common_pb2

Run = Callable[[Api, Any, Any, Caller], Any]  # (api, request, context, caller) -> response


@dataclass(frozen=True)
class Method:
    rpc: Rpc
    run: Run

    @property
    def name(self) -> str:
        return self.rpc.path.rsplit("/", 1)[-1]


def ack(_value: Any) -> common_pb2.Ack:
    return common_pb2.Ack()


def new_id(value: dict) -> common_pb2.IdResponse:
    return common_pb2.IdResponse(id=value["id"])


def write(
    service: str,
    name: str,
    op: str,
    args: Callable[[Any], dict],
    reply: Callable[[Any], Any] = ack,
    response: type = common_pb2.Ack,
    validate: Callable[[Any], None] | None = None,
) -> Method:
    """An RPC proposing `op` with `args(request)`; the request has a `request_id`."""
    rpc = Rpc(
        f"/one.v1.{service}/{name}",
        response,
        leader_only=True,
        rid=rid_accessors(),
        validate=validate,
    )

    def run(api: Api, request, context, caller: Caller):
        return reply(api.propose(op, args(request), request.request_id, caller, context))

    return Method(rpc, run)


def read(
    service: str,
    name: str,
    response: type,
    run: Run,
    validate: Callable[[Any], None] | None = None,
) -> Method:
    """An RPC answered from this front-end's store (local consistency)."""
    return Method(Rpc(f"/one.v1.{service}/{name}", response, validate=validate), run)


def local_view(api: Api, context):
    return api.read(CONSISTENCY_LOCAL, 0, context)


def check(view, caller: Caller, request: authz.AuthRequest) -> None:
    """PERMISSION_DENIED with the authorization's own words unless `caller` may."""
    try:
        authz.authorize(view, caller.uid, [request])
    except authz.Denied as d:
        raise denied(d.message) from None


def may(view, caller: Caller, request: authz.AuthRequest) -> bool:
    try:
        authz.authorize(view, caller.uid, [request])
    except authz.Denied:
        return False
    return True


def build(base: type, api: Api, methods: Iterable[Method]) -> Any:
    """An instance of the generated servicer `base` whose methods run `methods`."""

    def bind(method: Method):
        runner = _runner(api, method)

        def handler(_self, request, context):
            return api.handle(method.rpc, request, context, runner)

        handler.__name__ = method.name
        return handler

    attrs = {m.name: bind(m) for m in methods}
    missing = [n for n in dir(base) if n[:1].isupper() and n not in attrs]
    if missing:
        raise TypeError(f"{base.__name__}: no method for {', '.join(missing)}")
    return type(base.__name__ + "Impl", (base,), attrs)()


def _runner(api: Api, method: Method):
    def run(request, context, caller: Caller):
        return method.run(api, request, context, caller)

    return run
