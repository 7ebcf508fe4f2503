"""Pool objects: what every cloud object (cluster, host, datastore, image, vnet, secgroup,
vrouter, template, vm, vmgroup, vdc) has in common, and how it is stored and indexed.

Every object is a map in the `objects` db under ``key(kind, id)``:

    {"id", "name", "uid", "gid", "perms", "template", "regtime", ...kind's own fields}

`uid`/`gid` are the owner and group, `perms` the 9 permission bits (raftcore.perms),
`template` OpenNebula template text (canonical), `regtime` the command's ts (ms).
Objects placed in clusters carry `cids` (cluster ids), used by `%cid` ACL rules.

Secondary indexes live in the `index` db: ``index_key(kind, name, value, id) -> b""``:

    owner  uid     every object, by owner    (pool filter "mine")
    group  gid     every object, by group    (pool filter "my groups")
    shared 1       objects whose permissions let anyone USE them
    cluster cid    objects in clusters, by cluster (`%cid` ACL rules)
    state  state   objects with a `state`    (e.g. VMs by state)
    name   name    kinds whose names are unique (`Kind.unique`), name -> the id
    ...            any other index a kind declares (`Kind.indexes`)

so a listing reads only the objects it returns (no scan of unrelated ones), and every
mutation of an object goes through `put`/`remove`, which keep the indexes exact.
Everything here is pure: no clock, no I/O.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from raftcore import perms, schema
from raftcore.authz import AuthRequest
from raftcore.commands import ErrorCode
from raftcore.ops.common import MAX_NAME_CHARS, Mutation, Reject, View, bad

_U64 = struct.Struct(">Q")
OTHER_USE = 0o004


@dataclass(frozen=True)
class Kind:
    """One kind of pool object."""

    name: str  # "vm"
    auth_type: str  # the authorization / ACL resource type: "VM"
    label: str  # how messages name it: "VM"
    # Name uniqueness: "global" (hosts, clusters, ...), "owner" (per owner: images,
    # templates, vnets ...), or None (VMs).
    unique: str | None = "owner"
    # Extra indexes: index name -> a function of the record giving the indexed values.
    indexes: dict[str, Callable[[dict], list[int | str]]] = field(default_factory=dict)
    # The kind's own ops a client may call through PoolService.Action ("<kind>.<action>");
    # ops proposed only by the front-ends themselves (monitoring, the life-cycle
    # reconciler) are left out, so no client can fake them.
    actions: frozenset[str] = frozenset()


KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "cluster",
            "CLUSTER",
            "cluster",
            unique="global",
            actions=frozenset(
                {"addhost", "delhost", "adddatastore", "deldatastore", "addvnet", "delvnet"}
            ),
        ),
        Kind(
            "host",
            "HOST",
            "host",
            unique="global",
            indexes={"state": lambda r: [r["state"]]},
            actions=frozenset({"enable", "disable", "offline"}),
        ),
        Kind(
            "datastore",
            "DATASTORE",
            "datastore",
            unique="global",
            indexes={"state": lambda r: [r["state"]]},
            actions=frozenset({"enable", "disable"}),
        ),
        Kind(
            "image",
            "IMAGE",
            "image",
            indexes={"state": lambda r: [r["state"]]},
            actions=frozenset(
                {
                    "enable",
                    "disable",
                    "persistent",
                    "nonpersistent",
                    "clone",
                    "chtype",
                    "snapshot_delete",
                    "snapshot_revert",
                    "snapshot_flatten",
                }
            ),
        ),
        Kind(
            "vnet",
            "NET",
            "virtual network",
            actions=frozenset(
                {"add_ar", "rm_ar", "update_ar", "hold", "release", "reserve", "update"}
            ),
        ),
        Kind("secgroup", "SECGROUP", "security group", actions=frozenset({"update"})),
        Kind("vrouter", "VROUTER", "virtual router", actions=frozenset({"update", "instantiate"})),
        Kind("template", "TEMPLATE", "template", actions=frozenset({"clone", "instantiate"})),
        Kind(
            "vm",
            "VM",
            "VM",
            unique=None,
            indexes={"state": lambda r: [r["state"]]},
            # every client action of raftcore.ops.vms / vm_devices; vm.outcome (the
            # reconciler's) is not one of them.
            actions=frozenset(
                "terminate terminate-hard undeploy undeploy-hard poweroff poweroff-hard"
                " reboot reboot-hard hold release stop suspend resume resched unresched"
                " deploy migrate recover disk-attach disk-detach nic-attach nic-detach"
                " disk-snapshot-create disk-snapshot-revert disk-snapshot-delete resize"
                " sched-add sched-update sched-delete update".split()
            ),
        ),
        Kind("vmgroup", "VMGROUP", "VM group"),
        Kind(
            "vdc",
            "VDC",
            "VDC",
            unique="global",
            actions=frozenset(
                {
                    "addcluster",
                    "adddatastore",
                    "addgroup",
                    "addhost",
                    "addvnet",
                    "delcluster",
                    "deldatastore",
                    "delgroup",
                    "delhost",
                    "delvnet",
                }
            ),
        ),
    )
}


def kind_of(name: str) -> Kind:
    kind = KINDS.get(name)
    if kind is None:
        raise bad(f"unknown object kind {name!r} (known: {', '.join(KINDS)})")
    return kind


# --- keys -----------------------------------------------------------------------------


def key(kind: str, oid: int) -> bytes:
    return kind.encode() + b"\0" + _U64.pack(oid)


def kind_prefix(kind: str) -> bytes:
    return kind.encode() + b"\0"


def _value_bytes(value: int | str) -> bytes:
    # Integers sort numerically (8-byte big-endian); strings are prefixed so that an
    # index never mixes the two.
    if isinstance(value, int):
        return b"i" + _U64.pack(value)
    return b"s" + value.encode("utf-8") + b"\0"


def index_prefix(kind: str, index: str, value: int | str | None = None) -> bytes:
    prefix = kind.encode() + b"\0" + index.encode() + b"\0"
    return prefix if value is None else prefix + _value_bytes(value)


def index_key(kind: str, index: str, value: int | str, oid: int) -> bytes:
    return index_prefix(kind, index, value) + _U64.pack(oid)


def id_of_index_key(k: bytes) -> int:
    return _U64.unpack(k[-8:])[0]


# --- reading --------------------------------------------------------------------------


def find(view: View, kind: str, oid: int) -> dict | None:
    return view.get(schema.OBJECTS, key(kind, oid))


def get(view: View, kind: str, oid: int) -> dict:
    """The object, or a NO_EXISTS refusal naming it ("host 7 does not exist")."""
    record = find(view, kind, oid)
    if record is None:
        raise Reject(ErrorCode.NO_EXISTS, f"{KINDS[kind].label} {oid} does not exist")
    return record


def ref(view: View, kind: str, oid: Any, arg: str) -> dict:
    """An object named in argument `arg`: unknown ids are bad input (INVALID_ARGUMENT)."""
    if not isinstance(oid, int) or isinstance(oid, bool) or oid < 0:
        raise bad(f"argument {arg!r} must be an id >= 0, got {oid!r}")
    record = find(view, kind, oid)
    if record is None:
        raise bad(f"argument {arg!r}: {KINDS[kind].label} {oid} does not exist")
    return record


def ids_by_index(view: View, kind: str, index: str, value: int | str) -> Iterator[int]:
    for k, _ in view.iter(schema.INDEX, index_prefix(kind, index, value)):
        yield id_of_index_key(k)


def all_of(view: View, kind: str) -> Iterator[dict]:
    for _, record in view.iter(schema.OBJECTS, kind_prefix(kind)):
        yield record


def by_name(view: View, kind: str, name: str, uid: int | None = None) -> int | None:
    """The id of the object named `name` (of owner `uid` for per-owner names)."""
    value = name if KINDS[kind].unique == "global" else f"{uid}:{name}"
    return next(ids_by_index(view, kind, "name", value), None)


# --- authorization --------------------------------------------------------------------


def auth(kind: str, record: dict, right: str) -> AuthRequest:
    """The authorization request for `right` on this object."""
    return AuthRequest(
        KINDS[kind].auth_type,
        right,
        oid=record["id"],
        owner=record["uid"],
        gid=record["gid"],
        perms=record["perms"],
        cids=tuple(record.get("cids", ())),
    )


def create_request(kind: str, gid: int, cids: tuple[int, ...] = ()) -> AuthRequest:
    return AuthRequest(KINDS[kind].auth_type, "CREATE", gid=gid, cids=cids)


# --- writing --------------------------------------------------------------------------


def check_name(name: Any, what: str = "name") -> str:
    if not isinstance(name, str):
        raise bad(f"argument {what!r} must be a string, got {type(name).__name__}")
    if not 1 <= len(name) <= MAX_NAME_CHARS:
        raise bad(f"argument {what!r} must be 1..{MAX_NAME_CHARS} characters, got {len(name)}")
    bad_chars = sorted({c for c in name if not c.isprintable() or c in '"\\'})
    if bad_chars:
        raise bad(f"argument {what!r} may not contain {', '.join(repr(c) for c in bad_chars)}")
    return name


def _index_entries(kind: Kind, record: dict) -> list[bytes]:
    oid = record["id"]
    entries = [
        index_key(kind.name, "owner", record["uid"], oid),
        index_key(kind.name, "group", record["gid"], oid),
    ]
    if record["perms"] & OTHER_USE:
        entries.append(index_key(kind.name, "shared", 1, oid))
    entries += [index_key(kind.name, "cluster", cid, oid) for cid in record.get("cids", ())]
    if kind.unique == "global":
        entries.append(index_key(kind.name, "name", record["name"], oid))
    elif kind.unique == "owner":
        entries.append(index_key(kind.name, "name", f"{record['uid']}:{record['name']}", oid))
    for name, values in kind.indexes.items():
        entries += [index_key(kind.name, name, v, oid) for v in values(record)]
    return entries


def check_unique(view: View, kind: str, name: str, uid: int, oid: int | None = None) -> None:
    """Refuse a name another object of this kind (of this owner, for per-owner names)
    already has."""
    k = KINDS[kind]
    if k.unique is None:
        return
    other = by_name(view, kind, name, uid)
    if other is not None and other != oid:
        scope = "" if k.unique == "global" else f" of user {uid}"
        raise Reject(
            ErrorCode.ACTION, f"{k.label} name {name!r}{scope} is already taken by {other}"
        )


def put(view: View, kind: str, record: dict, old: dict | None = None) -> list[Mutation]:
    """Write `record` (new, or replacing `old`) and keep its indexes exact."""
    k = KINDS[kind]
    new_entries = set(_index_entries(k, record))
    old_entries = set(_index_entries(k, old)) if old is not None else set()
    mutations: list[Mutation] = [("put", schema.OBJECTS, key(kind, record["id"]), record)]
    mutations += [("del", schema.INDEX, e) for e in sorted(old_entries - new_entries)]
    mutations += [("put", schema.INDEX, e, b"") for e in sorted(new_entries - old_entries)]
    return mutations


def remove(kind: str, record: dict) -> list[Mutation]:
    mutations: list[Mutation] = [("del", schema.OBJECTS, key(kind, record["id"]))]
    mutations += [("del", schema.INDEX, e) for e in _index_entries(KINDS[kind], record)]
    return mutations


def new(
    view: View,
    cmd: dict,
    kind: str,
    name: str,
    template_text: str,
    fields: dict | None = None,
    gid: int | None = None,
) -> tuple[dict, list[Mutation]]:
    """A new object owned by the command's user, in its primary group (or `gid`), with
    the user's umask applied; its id from the kind's sequence. Checks the name and its
    uniqueness; authorization is the caller's (it knows which CREATE applies)."""
    from raftcore.ops.common import next_id

    uid = cmd["uid"]
    user = view.get(schema.USERS, schema.id_key(uid)) if uid >= 0 else None
    owner_gid = gid if gid is not None else (user["gid"] if user else 0)
    check_name(name)
    check_unique(view, kind, name, max(uid, 0))
    umask = perms.DEFAULT_UMASK if user is None else user.get("umask", perms.DEFAULT_UMASK)
    oid, seq = next_id(view, f"obj:{kind}")
    record = {
        "id": oid,
        "name": name,
        "uid": max(uid, 0),
        "gid": owner_gid,
        "perms": perms.apply_umask(umask, owner=max(uid, 0), gid=owner_gid),
        "template": template_text,
        "regtime": cmd["ts"],
        **(fields or {}),
    }
    return record, [seq, *put(view, kind, record)]
