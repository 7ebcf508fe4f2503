"""Tables of (state, command) -> (mutations, result) for every op and bad input."""

import pytest

from raftcore import schema
from raftcore.apply import HANDLERS, apply
from raftcore.commands import OPS, ErrorCode, ok
from tests.statekit import TS, DictView, run, write

HASH = "ab" * 32
K0, K1, K2 = schema.id_key(0), schema.id_key(1), schema.id_key(2)


ADMIN = {
    "id": 0,
    "name": "oneadmin",
    "password": "h",
    "gid": 0,
    "groups": [0],
    "enabled": True,
    "auth_driver": "core",
    "created": 1,
}
BOOTED = {"users": {K0: ADMIN}, "users_by_name": {b"oneadmin": 0}}
SRV = [{"name": "a", "raft": "10.0.0.1:2633", "grpc": "10.0.0.1:2634"}]
ZONED = {
    "zone": {b"zone": {"id": 0, "name": "z", "state": "ENABLED"}},
    "servers": {K0: {"id": 0, **SRV[0]}},
    "meta": {b"seq:server": 1},
}


def test_every_op_has_a_handler():
    assert set(HANDLERS) == set(OPS)


# --- successes -----------------------------------------------------------------------


def test_barrier():
    assert run({}, "barrier", {}) == ([], ok())


def test_kv_put():
    muts, res = run({}, "kv.put", {"key": "k", "value": b"v"}, index=9)
    assert muts == [("put", "kv", b"k", {"value": b"v", "rev": 9})]
    assert res == ok({"index": 9})


def test_kv_put_limits_inclusive():
    key = "é" * 255 + "a"  # 511 bytes of UTF-8: LMDB's largest key
    muts, res = run({}, "kv.put", {"key": key, "value": b"x" * (1 << 20)})
    assert res["ok"] and muts[0][2] == key.encode()
    _, res = run({}, "kv.put", {"key": "é" * 256, "value": b"x"})
    assert res["code"] == "BAD_REQUEST"
    assert run({}, "kv.put", {"key": "k", "value": b""})[1]["ok"]


def test_kv_delete_present_and_absent():
    state = {"kv": {b"k": {"value": b"v", "rev": 1}}}
    assert run(state, "kv.delete", {"key": "k"}, index=3) == (
        [("del", "kv", b"k")],
        ok({"deleted": True, "index": 3}),
    )
    assert run({}, "kv.delete", {"key": "k"}, index=3) == ([], ok({"deleted": False, "index": 3}))


def test_user_bootstrap():
    muts, res = run({}, "user.bootstrap", {"password_hash": "scrypt$x"}, uid=-1)
    assert res == ok({"id": 0})
    state = write({}, muts)
    assert state["users"][K0] == {
        "id": 0,
        "name": "oneadmin",
        "password": "scrypt$x",
        "gid": 0,
        "groups": [0],
        "enabled": True,
        "auth_driver": "core",
        "template": "",
        "created": TS,
    }
    assert state["users_by_name"] == {b"oneadmin": 0}
    group = {"admins": [], "template": "", "created": TS}
    assert state["groups"] == {
        K0: {"id": 0, "name": "oneadmin", **group},
        K1: {"id": 1, "name": "users", **group},
    }
    assert state["groups_by_name"] == {b"oneadmin": 0, b"users": 1}
    assert state["meta"][b"seq:user"] == 1
    assert state["meta"][b"seq:group"] == 100
    assert state["meta"][b"seq:acl"] == 3


def test_token_create_and_revoke():
    muts, res = run(BOOTED, "token.create", {"token_hash": HASH, "uid": 0, "expires": TS + 1})
    assert res == ok()
    by_user = K0 + HASH.encode()
    assert muts == [
        ("put", "tokens", HASH.encode(), {"uid": 0, "expires": TS + 1, "created": TS}),
        ("put", "tokens_by_user", by_user, b""),
    ]
    state = write(BOOTED, muts)
    assert run(state, "token.revoke", {"token_hash": HASH}) == (
        [("del", "tokens", HASH.encode()), ("del", "tokens_by_user", by_user)],
        ok(),
    )


def test_zone_bootstrap():
    servers = SRV + [{"name": "b", "raft": "[::1]:2633", "grpc": "host-b:65535"}]
    muts, res = run({}, "zone.bootstrap", {"name": "z", "servers": servers})
    assert res == ok({"id": 0})
    state = write({}, muts)
    assert state["zone"] == {b"zone": {"id": 0, "name": "z", "state": "ENABLED"}}
    assert state["servers"] == {K0: {"id": 0, **servers[0]}, K1: {"id": 1, **servers[1]}}
    assert state["meta"] == {b"seq:server": 2}


def test_zone_server_add_and_ids_never_reused():
    new = {"name": "b", "raft": "10.0.0.2:2633", "grpc": "10.0.0.2:2634"}
    muts, res = run(ZONED, "zone.server_add", new)
    assert res == ok({"id": 1})
    assert muts == [("put", "servers", K1, {"id": 1, **new}), ("put", "meta", b"seq:server", 2)]
    state = write(ZONED, muts)
    muts, res = run(state, "zone.server_del", {"id": 1})
    assert (muts, res) == ([("del", "servers", K1)], ok())
    state = write(state, muts)
    # Re-adding the same server after deletion gets a fresh id.
    muts, res = run(state, "zone.server_add", new)
    assert res == ok({"id": 2}) and muts[0][2] == K2


# --- rejections: exact code, precise message, no mutations ---------------------------

LONG_KEY = "k" * 513
REJECTS = [
    # (state, op, args, code, message fragment)
    ({}, "barrier", {"x": 1}, "BAD_REQUEST", "unknown argument(s): x"),
    ({}, "kv.put", {"value": b"v"}, "BAD_REQUEST", "missing argument 'key'"),
    ({}, "kv.put", {"key": "k"}, "BAD_REQUEST", "missing argument 'value'"),
    ({}, "kv.put", {"key": "", "value": b"v"}, "BAD_REQUEST", "'key' must be 1..511 bytes"),
    ({}, "kv.put", {"key": LONG_KEY, "value": b"v"}, "BAD_REQUEST", "got 513"),
    ({}, "kv.put", {"key": "é" * 257, "value": b"v"}, "BAD_REQUEST", "got 514"),
    ({}, "kv.put", {"key": b"k", "value": b"v"}, "BAD_REQUEST", "'key' must be a string"),
    ({}, "kv.put", {"key": "k", "value": "v"}, "BAD_REQUEST", "'value' must be bytes, got str"),
    ({}, "kv.put", {"key": "k", "value": b"x" * ((1 << 20) + 1)}, "BAD_REQUEST", "exceeds"),
    ({}, "kv.put", {"key": "k", "value": b"v", "z": 1}, "BAD_REQUEST", "unknown argument(s): z"),
    ({}, "kv.delete", {}, "BAD_REQUEST", "missing argument 'key'"),
    ({}, "kv.delete", {"key": 3}, "BAD_REQUEST", "'key' must be a string"),
    ({}, "user.bootstrap", {}, "BAD_REQUEST", "missing argument 'password_hash'"),
    ({}, "user.bootstrap", {"password_hash": ""}, "BAD_REQUEST", "'password_hash' must be 1.."),
    ({}, "user.bootstrap", {"password_hash": 5}, "BAD_REQUEST", "must be a string"),
    (
        BOOTED,
        "user.bootstrap",
        {"password_hash": "h"},
        "ACTION",
        "zone already bootstrapped: user 0 exists",
    ),
    (
        BOOTED,
        "token.create",
        {"uid": 0, "expires": TS + 1},
        "BAD_REQUEST",
        "missing argument 'token_hash'",
    ),
    (
        BOOTED,
        "token.create",
        {"token_hash": "AB" * 32, "uid": 0, "expires": TS + 1},
        "BAD_REQUEST",
        "64 lowercase hex",
    ),
    (
        BOOTED,
        "token.create",
        {"token_hash": "ab", "uid": 0, "expires": TS + 1},
        "BAD_REQUEST",
        "64 lowercase hex",
    ),
    (
        BOOTED,
        "token.create",
        {"token_hash": HASH, "uid": "0", "expires": TS + 1},
        "BAD_REQUEST",
        "'uid' must be an integer",
    ),
    (
        BOOTED,
        "token.create",
        {"token_hash": HASH, "uid": -1, "expires": TS + 1},
        "BAD_REQUEST",
        "'uid' must be >= 0",
    ),
    (
        BOOTED,
        "token.create",
        {"token_hash": HASH, "uid": 0, "expires": True},
        "BAD_REQUEST",
        "'expires' must be an integer",
    ),
    (
        BOOTED,
        "token.create",
        {"token_hash": HASH, "uid": 0, "expires": TS},
        "BAD_REQUEST",
        "'expires'",
    ),
    (
        BOOTED,
        "token.create",
        {"token_hash": HASH, "uid": 5, "expires": TS + 1},
        "NO_EXISTS",
        "user 5 does not exist",
    ),
    (
        {"users": {K0: {**ADMIN, "enabled": False}}},
        "token.create",
        {"token_hash": HASH, "uid": 0, "expires": TS + 1},
        "AUTHENTICATION",
        "user 0 is disabled",
    ),
    (
        {**BOOTED, "tokens": {HASH.encode(): {"uid": 0, "expires": TS + 5, "created": 1}}},
        "token.create",
        {"token_hash": HASH, "uid": 0, "expires": TS + 1},
        "ACTION",
        "already exists",
    ),
    ({}, "token.revoke", {"token_hash": HASH}, "NO_EXISTS", "token does not exist"),
    ({}, "token.revoke", {"token_hash": "zz"}, "BAD_REQUEST", "64 lowercase hex"),
    ({}, "zone.bootstrap", {"name": "z"}, "BAD_REQUEST", "missing argument 'servers'"),
    ({}, "zone.bootstrap", {"name": "", "servers": SRV}, "BAD_REQUEST", "'name' must be 1..128"),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": []},
        "BAD_REQUEST",
        "'servers' must be a non-empty list",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": ["a"]},
        "BAD_REQUEST",
        "servers[0] must be a map",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "a", "raft": "h:1"}]},
        "BAD_REQUEST",
        "servers[0] is missing 'grpc'",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "a", "raft": "h:1", "grpc": "h:2", "x": 1}]},
        "BAD_REQUEST",
        "servers[0] has unknown field(s): x",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "", "raft": "h:1", "grpc": "h:2"}]},
        "BAD_REQUEST",
        "servers[0].name",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "a", "raft": "h", "grpc": "h:2"}]},
        "BAD_REQUEST",
        "servers[0].raft 'h' must be 'host:port'",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "a", "raft": ":1", "grpc": "h:2"}]},
        "BAD_REQUEST",
        "must be 'host:port'",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "a", "raft": "h:0", "grpc": "h:2"}]},
        "BAD_REQUEST",
        "servers[0].raft 'h:0': the port must be 1..65535",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "a", "raft": "h:1", "grpc": "h:65536"}]},
        "BAD_REQUEST",
        "servers[0].grpc 'h:65536'",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "a", "raft": "h:x", "grpc": "h:2"}]},
        "BAD_REQUEST",
        "port must be",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "a", "raft": "::1:5", "grpc": "h:2"}]},
        "BAD_REQUEST",
        "in brackets",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [{"name": "a", "raft": 5, "grpc": "h:2"}]},
        "BAD_REQUEST",
        "servers[0].raft must be a string",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [SRV[0], {**SRV[0], "raft": "h:9", "grpc": "h:8"}]},
        "BAD_REQUEST",
        "duplicate server name 'a'",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [SRV[0], {**SRV[0], "name": "b", "grpc": "h:8"}]},
        "BAD_REQUEST",
        "duplicate server raft '10.0.0.1:2633'",
    ),
    (
        {},
        "zone.bootstrap",
        {"name": "z", "servers": [SRV[0], {**SRV[0], "name": "b", "raft": "h:8"}]},
        "BAD_REQUEST",
        "duplicate server grpc",
    ),
    (ZONED, "zone.bootstrap", {"name": "z", "servers": SRV}, "ACTION", "zone already bootstrapped"),
    (
        {},
        "zone.server_add",
        {"name": "b", "raft": "h:1", "grpc": "h:2"},
        "ACTION",
        "zone not bootstrapped",
    ),
    (
        ZONED,
        "zone.server_add",
        {"name": "b", "raft": "h:1"},
        "BAD_REQUEST",
        "missing argument 'grpc'",
    ),
    (
        ZONED,
        "zone.server_add",
        {"name": "b", "raft": "h:1", "grpc": "h"},
        "BAD_REQUEST",
        "server.grpc 'h' must be 'host:port'",
    ),
    (
        ZONED,
        "zone.server_add",
        {"name": "a", "raft": "h:1", "grpc": "h:2"},
        "BAD_REQUEST",
        "duplicate server name 'a' (already used by existing server 0)",
    ),
    (
        ZONED,
        "zone.server_add",
        {"name": "b", "raft": "10.0.0.1:2633", "grpc": "h:2"},
        "BAD_REQUEST",
        "duplicate server raft",
    ),
    (ZONED, "zone.server_del", {"id": 5}, "NO_EXISTS", "server 5 does not exist"),
    (ZONED, "zone.server_del", {"id": -1}, "BAD_REQUEST", "'id' must be >= 0"),
    (ZONED, "zone.server_del", {"id": "0"}, "BAD_REQUEST", "'id' must be an integer"),
    (ZONED, "zone.server_del", {}, "BAD_REQUEST", "missing argument 'id'"),
]


@pytest.mark.parametrize("state, op, args, code, fragment", REJECTS)
def test_rejections(state, op, args, code, fragment):
    mutations, result = run(state, op, args)
    assert mutations == []
    assert result["ok"] is False
    assert result["code"] == code
    assert fragment in result["message"]


# --- apply itself never raises -------------------------------------------------------


def test_unknown_op_is_bad_request():
    mutations, result = apply(DictView({}), {"op": "nope", "args": {}, "ts": 0}, 1)
    assert (
        mutations == []
        and result["code"] == ErrorCode.BAD_REQUEST
        and "'nope'" in result["message"]
    )


@pytest.mark.parametrize("command", [None, 5, {}, {"op": 3}, {"op": "kv.put", "args": None}])
def test_garbage_commands_give_bad_request(command):
    mutations, result = apply(DictView({}), command, 1)
    assert mutations == [] and result["code"] == "BAD_REQUEST"


def test_handler_exception_becomes_internal():
    class Broken(DictView):
        def get(self, db, key):
            raise RuntimeError("disk on fire")

    command = {"v": 1, "op": "kv.delete", "args": {"key": "k"}, "rid": "r", "uid": 0, "ts": 0}
    mutations, result = apply(Broken({}), command, 1)
    assert mutations == []
    assert result["code"] == "INTERNAL" and "disk on fire" in result["message"]
