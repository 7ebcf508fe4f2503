"""The command vocabulary: the envelope every log entry carries, and result maps.

A command is `{"v": 1, "op": str, "args": dict, "rid": str, "uid": int, "ts": int}`.
A log entry packs one or more of them: `{"v": 1, "cmds": [...]}`. Both are msgpack
(raftcore.codec); nothing here may depend on the clock, so every replica decodes and
validates an entry the same way.
"""

from enum import StrEnum
from typing import Any

from raftcore import codec
from raftcore.codec import packb

VERSION = 1
ENTRY_VERSION = 1

# The whole command, packed, may not exceed this (kv values are capped at 1 MiB, so
# this leaves room for the envelope and keeps one log entry bounded).
MAX_COMMAND_BYTES = 2 << 20
# An entry may pack many commands; bound the decode so a corrupt length cannot explode.
MAX_ENTRY_BYTES = 64 << 20
MAX_RID_CHARS = 128
MAX_RID_BYTES = 256

# Every op apply knows. Adding one is fine; renaming or removing one breaks replay of
# old logs, so never do that.
OPS = frozenset(
    {
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
        "user.delete",
        "user.passwd",
        "user.chauth",
        "user.chgrp",
        "user.addgroup",
        "user.delgroup",
        "user.enable",
        "user.update",
        "group.allocate",
        "group.delete",
        "group.addadmin",
        "group.deladmin",
        "group.update",
        "acl.add",
        "acl.delete",
        "quota.set",
        "quota.default_set",
        "obj.chown",
        "obj.chmod",
        "obj.rename",
        "obj.update",
        "cluster.allocate",
        "cluster.delete",
        "vm.update",
        "template.allocate",
        "template.delete",
        "template.clone",
        "template.instantiate",
        "vm.allocate",
        "vm.terminate",
        "vm.terminate-hard",
        "vm.undeploy",
        "vm.undeploy-hard",
        "vm.poweroff",
        "vm.poweroff-hard",
        "vm.reboot",
        "vm.reboot-hard",
        "vm.hold",
        "vm.release",
        "vm.stop",
        "vm.suspend",
        "vm.resume",
        "vm.resched",
        "vm.unresched",
        "vm.deploy",
        "vm.migrate",
        "vm.recover",
        "vm.delete",
        "vm.outcome",
        "vm.disk-attach",
        "vm.disk-detach",
        "vm.nic-attach",
        "vm.nic-detach",
        "vm.disk-snapshot-create",
        "vm.disk-snapshot-revert",
        "vm.disk-snapshot-delete",
        "vm.resize",
        "vm.sched-add",
        "vm.sched-update",
        "vm.sched-delete",
        "vmgroup.allocate",
        "vmgroup.delete",
        "vnet.allocate",
        "vnet.delete",
        "vnet.update",
        "vnet.add_ar",
        "vnet.rm_ar",
        "vnet.update_ar",
        "vnet.hold",
        "vnet.release",
        "vnet.reserve",
        "secgroup.allocate",
        "secgroup.delete",
        "secgroup.update",
        "vrouter.allocate",
        "vrouter.delete",
        "vrouter.update",
        "vrouter.instantiate",
        "datastore.allocate",
        "datastore.delete",
        "datastore.enable",
        "datastore.disable",
        "datastore.monitor",
        "image.allocate",
        "image.delete",
        "image.enable",
        "image.disable",
        "image.persistent",
        "image.nonpersistent",
        "image.clone",
        "image.chtype",
        "image.snapshot_delete",
        "image.snapshot_revert",
        "image.snapshot_flatten",
        "image.ready",
        "image.error",
        "cluster.addhost",
        "cluster.delhost",
        "cluster.adddatastore",
        "cluster.deldatastore",
        "cluster.addvnet",
        "cluster.delvnet",
        "host.allocate",
        "host.delete",
        "host.enable",
        "host.disable",
        "host.offline",
        "host.monitor",
        "vdc.allocate",
        "vdc.delete",
        "vdc.addgroup",
        "vdc.delgroup",
        "vdc.addcluster",
        "vdc.delcluster",
        "vdc.addhost",
        "vdc.delhost",
        "vdc.adddatastore",
        "vdc.deldatastore",
        "vdc.addvnet",
        "vdc.delvnet",
    }
)

_FIELDS: dict[str, type] = {"v": int, "op": str, "args": dict, "rid": str, "uid": int, "ts": int}


class BadCommand(ValueError):
    """A command envelope is malformed; the message says which field and why."""


class BadEntry(ValueError):
    """A log entry payload cannot be decoded into a list of commands."""


class ErrorCode(StrEnum):
    """Error classes of results (OpenNebula's error classes, plus REPLICATION)."""

    AUTHENTICATION = "AUTHENTICATION"
    AUTHORIZATION = "AUTHORIZATION"
    NO_EXISTS = "NO_EXISTS"
    ACTION = "ACTION"
    BAD_REQUEST = "BAD_REQUEST"
    INTERNAL = "INTERNAL"
    ALLOCATE = "ALLOCATE"
    LOCKED = "LOCKED"
    REPLICATION = "REPLICATION"


def ok(value: Any = None) -> dict:
    return {"ok": True, "value": value}


def error(code: ErrorCode | str, message: str) -> dict:
    # str() so the stored/packed result holds a plain string, not the enum.
    return {"ok": False, "code": str(ErrorCode(code)), "message": message}


def _type_name(value: Any) -> str:
    return type(value).__name__


def validate_command(obj: Any, decoded_from: int | None = None) -> dict:
    """Return `obj` if it is a well-formed command envelope, else raise BadCommand.

    `decoded_from`: the size of the msgpack the command was decoded from (e.g. a log
    entry), if known. A command out of at most MAX_COMMAND_BYTES is encodable and within
    the limit, so it is not packed again to measure it.
    """
    if not isinstance(obj, dict):
        raise BadCommand(f"command must be a map, got {_type_name(obj)}")
    for name, kind in _FIELDS.items():
        if name not in obj:
            raise BadCommand(f"command is missing field {name!r}")
        value = obj[name]
        # bool is an int subclass in Python; a bool uid or ts is a caller bug.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadCommand(
                f"command field {name!r} must be {kind.__name__}, got {_type_name(value)}"
            )
    if len(obj) > len(_FIELDS):
        extra = sorted(str(k) for k in obj if k not in _FIELDS)
        raise BadCommand(f"command has unknown field(s): {', '.join(extra)}")
    if obj["v"] != VERSION:
        raise BadCommand(f"unknown command version {obj['v']} (this build knows {VERSION})")
    if obj["op"] not in OPS:
        raise BadCommand(f"unknown op {obj['op']!r}")
    if not 1 <= len(obj["rid"]) <= MAX_RID_CHARS:
        raise BadCommand(f"rid must be 1..{MAX_RID_CHARS} characters, got {len(obj['rid'])}")
    if len(obj["rid"].encode("utf-8")) > MAX_RID_BYTES:
        # The rid is part of an LMDB key (at most 511 bytes); bound its encoded size.
        raise BadCommand(f"rid must be at most {MAX_RID_BYTES} bytes in UTF-8")
    if obj["uid"] < -1:
        raise BadCommand(f"uid must be >= -1, got {obj['uid']}")
    if obj["ts"] < 0:
        raise BadCommand(f"ts must be >= 0 (ms since the epoch), got {obj['ts']}")
    if any(not isinstance(k, str) for k in obj["args"]):
        raise BadCommand("command args keys must be strings")
    if decoded_from is not None and decoded_from <= MAX_COMMAND_BYTES:
        return obj
    try:
        size = len(packb(obj))
    except (TypeError, ValueError, OverflowError) as e:
        raise BadCommand(f"command is not msgpack-encodable: {e}") from e
    if size > MAX_COMMAND_BYTES:
        raise BadCommand(f"command of {size} bytes exceeds the limit of {MAX_COMMAND_BYTES}")
    return obj


def make_command(op: str, args: dict, *, rid: str, uid: int, ts_ms: int) -> dict:
    """Build and validate a command envelope (raises BadCommand)."""
    return validate_command(
        {"v": VERSION, "op": op, "args": args, "rid": rid, "uid": uid, "ts": ts_ms}
    )


def encode_entry(commands: list[dict]) -> bytes:
    """Pack commands into one log entry payload. The commands are not re-validated here:
    the store validates each one on apply, so every replica rejects the same ones."""
    return packb({"v": ENTRY_VERSION, "cmds": list(commands)})


def decode_entry(data: bytes) -> list[dict]:
    """Unpack a log entry payload into its command list (each still to be validated)."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BadEntry(f"entry payload must be bytes, got {_type_name(data)}")
    try:
        obj = codec.unpackb(bytes(data), max_size=MAX_ENTRY_BYTES)
    except ValueError as e:
        raise BadEntry(str(e)) from e
    if not isinstance(obj, dict):
        raise BadEntry(f"entry must be a map, got {_type_name(obj)}")
    if "v" not in obj:
        raise BadEntry("entry is missing field 'v'")
    if obj["v"] != ENTRY_VERSION or isinstance(obj["v"], bool):
        raise BadEntry(f"unknown entry version {obj['v']!r} (this build knows {ENTRY_VERSION})")
    if "cmds" not in obj:
        raise BadEntry("entry is missing field 'cmds'")
    if not isinstance(obj["cmds"], list):
        raise BadEntry(f"entry field 'cmds' must be a list, got {_type_name(obj['cmds'])}")
    return obj["cmds"]
