"""The pure state machine: apply(view, command, index) -> (mutations, result).

Pure means every replica computes the same thing from the same state and command: no
clock (time comes from command["ts"]), no randomness (ids come from sequences stored in
the meta db), no I/O, no logging. Handlers read through `view` and return mutations;
the store writes them. Apply never raises: PySyncObj would retry a raising apply forever.
"""

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from raftcore import schema
from raftcore.commands import ErrorCode, error, ok

Mutation = tuple  # ("put", db, key, value) | ("del", db, key)
Handler = Callable[["View", dict, dict, int], tuple[list[Mutation], dict]]

MAX_KV_KEY_BYTES = 511  # LMDB's key size limit
MAX_KV_VALUE_BYTES = 1 << 20
MAX_NAME_CHARS = 128
ADMIN_NAME = "oneadmin"
USERS_GROUP_NAME = "users"
# OpenNebula reserves group ids below 100 for system groups; user-created ones start here.
FIRST_USER_GROUP_ID = 100


class View(Protocol):
    def get(self, db: str, key: bytes) -> Any | None: ...

    def iter(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]: ...


class Reject(Exception):
    """Raised by handlers for a command that is invalid; becomes an error result."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _bad(message: str) -> Reject:
    return Reject(ErrorCode.BAD_REQUEST, message)


# --- argument checks (each names the field and what is wrong) -----------------------


def _check_args(args: dict, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    for name in required:
        if name not in args:
            raise _bad(f"missing argument {name!r}")
    unknown = sorted(str(k) for k in args if k not in required and k not in optional)
    if unknown:
        raise _bad(f"unknown argument(s): {', '.join(unknown)}")


def _arg_str(args: dict, name: str, max_chars: int = MAX_NAME_CHARS) -> str:
    value = args[name]
    if not isinstance(value, str):
        raise _bad(f"argument {name!r} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= max_chars:
        raise _bad(f"argument {name!r} must be 1..{max_chars} characters, got {len(value)}")
    return value


def _arg_int(args: dict, name: str, minimum: int = 0) -> int:
    value = args[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise _bad(f"argument {name!r} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise _bad(f"argument {name!r} must be >= {minimum}, got {value}")
    return value


def _arg_kv_key(args: dict) -> bytes:
    key = args["key"]
    if not isinstance(key, str):
        raise _bad(f"argument 'key' must be a string, got {type(key).__name__}")
    raw = key.encode("utf-8", errors="surrogatepass")
    if not 1 <= len(raw) <= MAX_KV_KEY_BYTES:
        raise _bad(f"argument 'key' must be 1..{MAX_KV_KEY_BYTES} bytes of UTF-8, got {len(raw)}")
    return raw


def _arg_token_hash(args: dict) -> str:
    value = args["token_hash"]
    if not isinstance(value, str):
        raise _bad(f"argument 'token_hash' must be a string, got {type(value).__name__}")
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise _bad("argument 'token_hash' must be 64 lowercase hex characters (sha256)")
    return value


def _endpoint(value: Any, field: str) -> str:
    """Validate "host:port" (IPv6 hosts in brackets), port 1..65535."""
    if not isinstance(value, str):
        raise _bad(f"{field} must be a string 'host:port', got {type(value).__name__}")
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise _bad(f"{field} {value!r} must be 'host:port'")
    if host.startswith("[") != host.endswith("]") or host in ("[]",):
        raise _bad(f"{field} {value!r} has a malformed IPv6 host (use [addr]:port)")
    if not host.startswith("[") and ":" in host:
        raise _bad(f"{field} {value!r}: an IPv6 host must be in brackets")
    if any(c.isspace() for c in host):
        raise _bad(f"{field} {value!r}: the host contains whitespace")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise _bad(f"{field} {value!r}: the port must be 1..65535")
    return value


def _server_spec(spec: Any, field: str) -> dict:
    if not isinstance(spec, dict):
        raise _bad(f"{field} must be a map with name, raft, grpc")
    for name in ("name", "raft", "grpc"):
        if name not in spec:
            raise _bad(f"{field} is missing {name!r}")
    unknown = sorted(str(k) for k in spec if k not in ("name", "raft", "grpc"))
    if unknown:
        raise _bad(f"{field} has unknown field(s): {', '.join(unknown)}")
    name = spec["name"]
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise _bad(f"{field}.name must be a string of 1..{MAX_NAME_CHARS} characters")
    return {
        "name": name,
        "raft": _endpoint(spec["raft"], f"{field}.raft"),
        "grpc": _endpoint(spec["grpc"], f"{field}.grpc"),
    }


# --- small state helpers -------------------------------------------------------------


def _next_id(view: View, seq: str, start: int = 0) -> tuple[int, Mutation]:
    """The next id of sequence `seq` and the mutation that advances it."""
    current = view.get(schema.META, schema.seq_key(seq))
    next_id = start if current is None else current
    return next_id, ("put", schema.META, schema.seq_key(seq), next_id + 1)


# --- handlers: one small function per op --------------------------------------------


def op_barrier(view: View, args: dict, cmd: dict, index: int) -> tuple[list[Mutation], dict]:
    # Proposed by a new leader / a linearizable read: committing it is the whole point.
    _check_args(args, ())
    return [], ok()


def op_kv_put(view: View, args: dict, cmd: dict, index: int) -> tuple[list[Mutation], dict]:
    _check_args(args, ("key", "value"))
    key = _arg_kv_key(args)
    value = args["value"]
    if not isinstance(value, bytes):
        raise _bad(f"argument 'value' must be bytes, got {type(value).__name__}")
    if len(value) > MAX_KV_VALUE_BYTES:
        raise _bad(f"argument 'value' of {len(value)} bytes exceeds {MAX_KV_VALUE_BYTES}")
    return [("put", schema.KV, key, {"value": value, "rev": index})], ok({"index": index})


def op_kv_delete(view: View, args: dict, cmd: dict, index: int) -> tuple[list[Mutation], dict]:
    _check_args(args, ("key",))
    key = _arg_kv_key(args)
    if view.get(schema.KV, key) is None:
        return [], ok({"deleted": False, "index": index})
    return [("del", schema.KV, key)], ok({"deleted": True, "index": index})


def op_user_bootstrap(view: View, args: dict, cmd: dict, index: int) -> tuple[list[Mutation], dict]:
    _check_args(args, ("password_hash",))
    password_hash = _arg_str(args, "password_hash", max_chars=1024)
    if view.get(schema.USERS, schema.id_key(0)) is not None:
        raise Reject(ErrorCode.ACTION, "zone already bootstrapped: user 0 exists")
    admin = {
        "id": 0,
        "name": ADMIN_NAME,
        "password": password_hash,
        "gid": 0,
        "groups": [0],
        "enabled": True,
        "auth_driver": "core",
        "created": cmd["ts"],
    }
    mutations: list[Mutation] = [
        ("put", schema.USERS, schema.id_key(0), admin),
        ("put", schema.USERS_BY_NAME, schema.str_key(ADMIN_NAME), 0),
        ("put", schema.GROUPS, schema.id_key(0), {"id": 0, "name": ADMIN_NAME}),
        ("put", schema.GROUPS, schema.id_key(1), {"id": 1, "name": USERS_GROUP_NAME}),
        # Users continue from 1; groups created later start at 100 (OpenNebula).
        ("put", schema.META, schema.seq_key("user"), 1),
        ("put", schema.META, schema.seq_key("group"), FIRST_USER_GROUP_ID),
    ]
    return mutations, ok({"id": 0})


def op_token_create(view: View, args: dict, cmd: dict, index: int) -> tuple[list[Mutation], dict]:
    _check_args(args, ("token_hash", "uid", "expires"))
    token_hash = _arg_token_hash(args)
    uid = _arg_int(args, "uid")
    expires = _arg_int(args, "expires")
    if expires <= cmd["ts"]:
        raise _bad(
            f"argument 'expires' ({expires}) must be later than the command ts ({cmd['ts']})"
        )
    user = view.get(schema.USERS, schema.id_key(uid))
    if user is None:
        raise Reject(ErrorCode.NO_EXISTS, f"user {uid} does not exist")
    if not user.get("enabled", False):
        raise Reject(ErrorCode.AUTHENTICATION, f"user {uid} is disabled")
    key = schema.str_key(token_hash)
    if view.get(schema.TOKENS, key) is not None:
        raise Reject(ErrorCode.ACTION, "a token with this hash already exists")
    record = {"uid": uid, "expires": expires, "created": cmd["ts"]}
    return [("put", schema.TOKENS, key, record)], ok()


def op_token_revoke(view: View, args: dict, cmd: dict, index: int) -> tuple[list[Mutation], dict]:
    _check_args(args, ("token_hash",))
    key = schema.str_key(_arg_token_hash(args))
    if view.get(schema.TOKENS, key) is None:
        raise Reject(ErrorCode.NO_EXISTS, "token does not exist")
    return [("del", schema.TOKENS, key)], ok()


def op_zone_bootstrap(view: View, args: dict, cmd: dict, index: int) -> tuple[list[Mutation], dict]:
    _check_args(args, ("name", "servers"))
    name = _arg_str(args, "name")
    servers = args["servers"]
    if not isinstance(servers, list) or not servers:
        raise _bad("argument 'servers' must be a non-empty list")
    specs = [_server_spec(s, f"servers[{i}]") for i, s in enumerate(servers)]
    _check_unique(specs, [])
    if view.get(schema.ZONE, schema.ZONE_KEY) is not None:
        raise Reject(ErrorCode.ACTION, "zone already bootstrapped")
    mutations: list[Mutation] = [
        ("put", schema.ZONE, schema.ZONE_KEY, {"id": 0, "name": name, "state": "ENABLED"})
    ]
    for server_id, spec in enumerate(specs):
        mutations.append(
            ("put", schema.SERVERS, schema.id_key(server_id), {"id": server_id, **spec})
        )
    mutations.append(("put", schema.META, schema.seq_key("server"), len(specs)))
    return mutations, ok({"id": 0})


def _check_unique(new: list[dict], existing: list[dict]) -> None:
    """Server names, raft and grpc endpoints must be unique across the zone."""
    for field in ("name", "raft", "grpc"):
        seen = {s[field]: "existing server " + str(s["id"]) for s in existing}
        for i, spec in enumerate(new):
            value = spec[field]
            if value in seen:
                raise _bad(f"duplicate server {field} {value!r} (already used by {seen[value]})")
            seen[value] = f"servers[{i}]" if len(new) > 1 else "this request"


def op_zone_server_add(
    view: View, args: dict, cmd: dict, index: int
) -> tuple[list[Mutation], dict]:
    _check_args(args, ("name", "raft", "grpc"))
    spec = _server_spec(args, "server")
    if view.get(schema.ZONE, schema.ZONE_KEY) is None:
        raise Reject(ErrorCode.ACTION, "zone not bootstrapped")
    existing = [record for _, record in view.iter(schema.SERVERS)]
    _check_unique([spec], existing)
    # Ids are never reused: the sequence only grows, even after server_del.
    server_id, seq_mutation = _next_id(view, "server")
    record = {"id": server_id, **spec}
    return [("put", schema.SERVERS, schema.id_key(server_id), record), seq_mutation], ok(
        {"id": server_id}
    )


def op_zone_server_del(
    view: View, args: dict, cmd: dict, index: int
) -> tuple[list[Mutation], dict]:
    _check_args(args, ("id",))
    server_id = _arg_int(args, "id")
    key = schema.id_key(server_id)
    if view.get(schema.SERVERS, key) is None:
        raise Reject(ErrorCode.NO_EXISTS, f"server {server_id} does not exist")
    return [("del", schema.SERVERS, key)], ok()


HANDLERS: dict[str, Handler] = {
    "barrier": op_barrier,
    "kv.put": op_kv_put,
    "kv.delete": op_kv_delete,
    "user.bootstrap": op_user_bootstrap,
    "token.create": op_token_create,
    "token.revoke": op_token_revoke,
    "zone.bootstrap": op_zone_bootstrap,
    "zone.server_add": op_zone_server_add,
    "zone.server_del": op_zone_server_del,
}


def apply(view: View, command: dict, index: int) -> tuple[list[Mutation], dict]:
    """Apply one (validated) command against `view`; never raises."""
    op = None
    try:
        op = command.get("op") if isinstance(command, dict) else None
        handler = HANDLERS.get(op) if isinstance(op, str) else None
        if handler is None:
            return [], error(ErrorCode.BAD_REQUEST, f"unknown op {op!r}")
        args = command.get("args")
        if not isinstance(args, dict):
            return [], error(ErrorCode.BAD_REQUEST, "command args must be a map")
        return handler(view, args, command, index)
    except Reject as r:
        return [], error(r.code, r.message)
    except Exception as e:  # a handler bug: record it, never crash the apply thread
        return [], error(ErrorCode.INTERNAL, f"apply of {op!r} failed: {type(e).__name__}: {e}")
