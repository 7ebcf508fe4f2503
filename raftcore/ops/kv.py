"""The generic replicated key/value space (tests and benchmarks use it) and the barrier."""

from raftcore import schema
from raftcore.commands import ok
from raftcore.ops.common import (
    Result,
    View,
    bad,
    check_args,
)

MAX_KV_KEY_BYTES = 511  # LMDB's key size limit
MAX_KV_VALUE_BYTES = 1 << 20


def arg_kv_key(args: dict) -> bytes:
    key = args["key"]
    if not isinstance(key, str):
        raise bad(f"argument 'key' must be a string, got {type(key).__name__}")
    raw = key.encode("utf-8", errors="surrogatepass")
    if not 1 <= len(raw) <= MAX_KV_KEY_BYTES:
        raise bad(f"argument 'key' must be 1..{MAX_KV_KEY_BYTES} bytes of UTF-8, got {len(raw)}")
    return raw


def op_barrier(view: View, args: dict, cmd: dict, index: int) -> Result:
    # Proposed by a new leader / a linearizable read: committing it is the whole point.
    check_args(args, ())
    return [], ok()


def op_kv_put(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("key", "value"))
    key = arg_kv_key(args)
    value = args["value"]
    if not isinstance(value, bytes):
        raise bad(f"argument 'value' must be bytes, got {type(value).__name__}")
    if len(value) > MAX_KV_VALUE_BYTES:
        raise bad(f"argument 'value' of {len(value)} bytes exceeds {MAX_KV_VALUE_BYTES}")
    return [("put", schema.KV, key, {"value": value, "rev": index})], ok({"index": index})


def op_kv_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("key",))
    key = arg_kv_key(args)
    if view.get(schema.KV, key) is None:
        return [], ok({"deleted": False, "index": index})
    return [("del", schema.KV, key)], ok({"deleted": True, "index": index})


HANDLERS = {"barrier": op_barrier, "kv.put": op_kv_put, "kv.delete": op_kv_delete}
