"""The zone record and its servers (the raft membership as the zone shows it)."""

from typing import Any

from raftcore import schema
from raftcore.commands import ErrorCode, ok
from raftcore.ops.common import (
    MAX_NAME_CHARS,
    Mutation,
    Reject,
    Result,
    View,
    arg_int,
    arg_str,
    bad,
    check_args,
    next_id,
)


def endpoint(value: Any, field: str) -> str:
    """Validate "host:port" (IPv6 hosts in brackets), port 1..65535."""
    if not isinstance(value, str):
        raise bad(f"{field} must be a string 'host:port', got {type(value).__name__}")
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise bad(f"{field} {value!r} must be 'host:port'")
    if host.startswith("[") != host.endswith("]") or host in ("[]",):
        raise bad(f"{field} {value!r} has a malformed IPv6 host (use [addr]:port)")
    if not host.startswith("[") and ":" in host:
        raise bad(f"{field} {value!r}: an IPv6 host must be in brackets")
    if any(c.isspace() for c in host):
        raise bad(f"{field} {value!r}: the host contains whitespace")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise bad(f"{field} {value!r}: the port must be 1..65535")
    return value


def server_spec(spec: Any, field: str) -> dict:
    if not isinstance(spec, dict):
        raise bad(f"{field} must be a map with name, raft, grpc")
    for name in ("name", "raft", "grpc"):
        if name not in spec:
            raise bad(f"{field} is missing {name!r}")
    unknown = sorted(str(k) for k in spec if k not in ("name", "raft", "grpc"))
    if unknown:
        raise bad(f"{field} has unknown field(s): {', '.join(unknown)}")
    name = spec["name"]
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_CHARS:
        raise bad(f"{field}.name must be a string of 1..{MAX_NAME_CHARS} characters")
    return {
        "name": name,
        "raft": endpoint(spec["raft"], f"{field}.raft"),
        "grpc": endpoint(spec["grpc"], f"{field}.grpc"),
    }


def op_zone_bootstrap(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("name", "servers"))
    name = arg_str(args, "name")
    servers = args["servers"]
    if not isinstance(servers, list) or not servers:
        raise bad("argument 'servers' must be a non-empty list")
    specs = [server_spec(s, f"servers[{i}]") for i, s in enumerate(servers)]
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
                raise bad(f"duplicate server {field} {value!r} (already used by {seen[value]})")
            seen[value] = f"servers[{i}]" if len(new) > 1 else "this request"


def op_zone_server_add(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("name", "raft", "grpc"))
    spec = server_spec(args, "server")
    if view.get(schema.ZONE, schema.ZONE_KEY) is None:
        raise Reject(ErrorCode.ACTION, "zone not bootstrapped")
    existing = [record for _, record in view.iter(schema.SERVERS)]
    _check_unique([spec], existing)
    # Ids are never reused: the sequence only grows, even after server_del.
    server_id, seq_mutation = next_id(view, "server")
    record = {"id": server_id, **spec}
    return [("put", schema.SERVERS, schema.id_key(server_id), record), seq_mutation], ok(
        {"id": server_id}
    )


def op_zone_server_del(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    server_id = arg_int(args, "id")
    key = schema.id_key(server_id)
    if view.get(schema.SERVERS, key) is None:
        raise Reject(ErrorCode.NO_EXISTS, f"server {server_id} does not exist")
    return [("del", schema.SERVERS, key)], ok()


HANDLERS = {
    "zone.bootstrap": op_zone_bootstrap,
    "zone.server_add": op_zone_server_add,
    "zone.server_del": op_zone_server_del,
}
