"""KVService: a small replicated key/value store (tests and benchmarks)."""

from __future__ import annotations

from raftcore import schema
from raftcore.replica import CONSISTENCY_LINEARIZABLE, CONSISTENCY_LOCAL
from zones.api.core import Api, Rpc, rid_accessors
from zones.api.errors import invalid
from zones.api.gen import common_pb2, kv_pb2, kv_pb2_grpc

# LMDB's largest key is 511 bytes (env.max_key_size()); a longer one cannot be stored.
MAX_KEY_BYTES = 511
MAX_VALUE_BYTES = 1 << 20
_SERVICE = "/one.v1.KVService/"


def _check_key(key: str) -> None:
    if not key:
        raise invalid("key must not be empty")
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        raise invalid(f"key of {size} bytes exceeds the limit of {MAX_KEY_BYTES} bytes")


def _check_put(request: kv_pb2.PutRequest) -> None:
    _check_key(request.key)
    if len(request.value) > MAX_VALUE_BYTES:
        raise invalid(
            f"value of {len(request.value)} bytes exceeds the limit of {MAX_VALUE_BYTES} bytes"
        )


def _check_get(request: kv_pb2.GetRequest) -> None:
    _check_key(request.key)
    if request.options.consistency not in (common_pb2.LOCAL, common_pb2.LINEARIZABLE):
        raise invalid(f"unknown consistency {request.options.consistency}")


def _check_delete(request: kv_pb2.DeleteRequest) -> None:
    _check_key(request.key)


PUT = Rpc(
    _SERVICE + "Put",
    kv_pb2.PutResponse,
    leader_only=True,
    rid=rid_accessors("options"),
    validate=_check_put,
)
GET = Rpc(
    _SERVICE + "Get",
    kv_pb2.GetResponse,
    leader_only=lambda req: req.options.consistency == common_pb2.LINEARIZABLE,
    validate=_check_get,
)
DELETE = Rpc(
    _SERVICE + "Delete",
    kv_pb2.DeleteResponse,
    leader_only=True,
    rid=rid_accessors("options"),
    validate=_check_delete,
)


def _put_command(request) -> tuple[str, dict, str]:
    args = {"key": request.key, "value": request.value}
    return "kv.put", args, request.options.request_id


def _put_reply(value: dict) -> kv_pb2.PutResponse:
    return kv_pb2.PutResponse(index=value["index"])


def _delete_command(request) -> tuple[str, dict, str]:
    return "kv.delete", {"key": request.key}, request.options.request_id


def _delete_reply(value: dict) -> kv_pb2.DeleteResponse:
    return kv_pb2.DeleteResponse(deleted=value["deleted"], index=value["index"])


class KVService(kv_pb2_grpc.KVServiceServicer):
    def __init__(self, api: Api) -> None:
        self.api = api

    async def Put(self, request, context):
        return await self.api.handle_async(PUT, request, context, self._put, self._put_fast)

    async def Get(self, request, context):
        return await self.api.handle_async(GET, request, context, self._get, self._get_fast)

    async def Delete(self, request, context):
        return await self.api.handle_async(
            DELETE, request, context, self._delete, self._delete_fast
        )

    # Writes: the command and the reply are the same on the coroutine (leader) path and
    # the thread-pool path (a call that had to wait or be retried locally).
    async def _put_fast(self, request, context, caller):
        return _put_reply(await self.api.propose_async(*_put_command(request), caller, context))

    async def _delete_fast(self, request, context, caller):
        return _delete_reply(
            await self.api.propose_async(*_delete_command(request), caller, context)
        )

    async def _get_fast(self, request, context, caller):
        opts = request.options
        if opts.consistency != common_pb2.LOCAL or opts.min_index:
            return None  # may wait: served on the thread pool
        return self._get(request, context, caller)

    def _put(self, request, context, caller):
        return _put_reply(self.api.propose(*_put_command(request), caller, context))

    def _delete(self, request, context, caller):
        return _delete_reply(self.api.propose(*_delete_command(request), caller, context))

    def _get(self, request, context, caller):
        opts = request.options
        consistency = (
            CONSISTENCY_LINEARIZABLE
            if opts.consistency == common_pb2.LINEARIZABLE
            else CONSISTENCY_LOCAL
        )
        with self.api.read(consistency, opts.min_index, context) as view:
            record = view.get(schema.KV, schema.str_key(request.key))
            applied = view.applied_index
        if record is None:
            return kv_pb2.GetResponse(found=False, applied_index=applied)
        return kv_pb2.GetResponse(
            found=True, value=record["value"], revision=record["rev"], applied_index=applied
        )
