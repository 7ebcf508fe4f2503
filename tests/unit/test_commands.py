"""The command envelope, entry codec and result helpers."""

import msgpack
import pytest

from raftcore.codec import packb
from raftcore.commands import (
    MAX_COMMAND_BYTES,
    OPS,
    BadCommand,
    BadEntry,
    ErrorCode,
    decode_entry,
    encode_entry,
    error,
    make_command,
    ok,
    validate_command,
)


def cmd(**overrides):
    base = {
        "v": 1,
        "op": "kv.put",
        "args": {"key": "k", "value": b"v"},
        "rid": "r1",
        "uid": 0,
        "ts": 5,
    }
    base.update(overrides)
    return base


def test_make_command_builds_the_envelope():
    c = make_command("kv.put", {"key": "k", "value": b"v"}, rid="r1", uid=0, ts_ms=5)
    assert c == cmd()


def test_no_op_of_older_logs_is_ever_removed():
    # Logs written by earlier versions must replay: ops may be added, never removed.
    assert OPS >= {
        "barrier",
        "kv.put",
        "kv.delete",
        "user.bootstrap",
        "token.create",
        "token.revoke",
        "zone.bootstrap",
        "zone.server_add",
        "zone.server_del",
        "user.allocate",
        "group.allocate",
        "acl.add",
    }


@pytest.mark.parametrize(
    "obj, fragment",
    [
        ([1, 2], "must be a map, got list"),
        ({k: v for k, v in cmd().items() if k != "rid"}, "missing field 'rid'"),
        ({k: v for k, v in cmd().items() if k != "args"}, "missing field 'args'"),
        (cmd(v="1"), "'v' must be int, got str"),
        (cmd(v=2), "unknown command version 2"),
        (cmd(op=7), "'op' must be str"),
        (cmd(op="vm.explode"), "unknown op 'vm.explode'"),
        (cmd(args=[]), "'args' must be dict"),
        (cmd(rid=""), "rid must be 1..128 characters, got 0"),
        (cmd(rid="x" * 129), "rid must be 1..128 characters, got 129"),
        (cmd(rid=5), "'rid' must be str"),
        (cmd(uid=True), "'uid' must be int, got bool"),
        (cmd(uid=-2), "uid must be >= -1"),
        (cmd(ts=-1), "ts must be >= 0"),
        (cmd(ts=1.5), "'ts' must be int, got float"),
        (cmd(extra=1), "unknown field(s): extra"),
        (cmd(args={"value": b"x" * MAX_COMMAND_BYTES}), "exceeds the limit"),
    ],
)
def test_validate_command_rejects_precisely(obj, fragment):
    with pytest.raises(BadCommand) as exc:
        validate_command(obj)
    assert fragment in str(exc.value)


def test_validate_accepts_boundaries():
    assert validate_command(cmd(rid="x" * 128, uid=-1, ts=0))["rid"] == "x" * 128
    validate_command(cmd(args={"value": b"x" * (1 << 20)}))


def test_make_command_validates():
    with pytest.raises(BadCommand, match="unknown op"):
        make_command("nope", {}, rid="r", uid=0, ts_ms=0)


def test_entry_round_trip():
    cmds = [cmd(), cmd(rid="r2", op="barrier", args={})]
    data = encode_entry(cmds)
    assert msgpack.unpackb(data, raw=False) == {"v": 1, "cmds": cmds}
    assert decode_entry(data) == cmds


@pytest.mark.parametrize(
    "data, fragment",
    [
        (b"\xc1", "malformed msgpack"),
        (b"\x92\x01", "malformed msgpack"),  # truncated array
        (packb({"v": 1, "cmds": []}) + b"\x00", "malformed msgpack"),  # trailing bytes
        (packb([1]), "entry must be a map"),
        (packb({"cmds": []}), "missing field 'v'"),
        (packb({"v": 2, "cmds": []}), "unknown entry version 2"),
        (packb({"v": 1}), "missing field 'cmds'"),
        (packb({"v": 1, "cmds": {}}), "'cmds' must be a list"),
        ("text", "must be bytes"),
    ],
)
def test_decode_entry_rejects(data, fragment):
    with pytest.raises(BadEntry) as exc:
        decode_entry(data)
    assert fragment in str(exc.value)


def test_results():
    assert ok() == {"ok": True, "value": None}
    assert ok({"a": 1}) == {"ok": True, "value": {"a": 1}}
    e = error(ErrorCode.NO_EXISTS, "gone")
    assert e == {"ok": False, "code": "NO_EXISTS", "message": "gone"}
    assert type(e["code"]) is str  # packs as a plain string
    assert error("LOCKED", "x")["code"] == "LOCKED"
    with pytest.raises(ValueError):
        error("NOT_A_CODE", "x")


def test_error_codes():
    assert [c.value for c in ErrorCode] == [
        "AUTHENTICATION",
        "AUTHORIZATION",
        "NO_EXISTS",
        "ACTION",
        "BAD_REQUEST",
        "INTERNAL",
        "ALLOCATE",
        "LOCKED",
        "REPLICATION",
    ]


def test_rid_is_bounded_in_bytes_as_well_as_characters():
    import pytest

    from raftcore.commands import BadCommand, make_command

    with pytest.raises(BadCommand, match="bytes"):
        make_command("barrier", {}, rid="€" * 128, uid=0, ts_ms=1)
    assert make_command("barrier", {}, rid="€" * 80, uid=0, ts_ms=1)["rid"]
