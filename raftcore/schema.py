"""The one list of LMDB sub-databases and their key encodings.

Integer ids are 8-byte big-endian so LMDB's byte order is numeric order (iteration
returns objects by id). Names and hashes are UTF-8.
"""

import struct

META = "meta"  # b"applied" -> int; b"seq:<name>" -> next id
DEDUPE = "dedupe"  # rid (utf-8) -> {"index", "result", "ts", "uid", "op"}
DEDUPE_TS = "dedupe_ts"  # ts (8B BE) + rid -> b"" (prune order)
KV = "kv"  # key (utf-8) -> {"value": bytes, "rev": index}
USERS = "users"  # id -> user record
USERS_BY_NAME = "users_by_name"  # name -> id
GROUPS = "groups"  # id -> group record
GROUPS_BY_NAME = "groups_by_name"  # name -> id
GROUP_USERS = "group_users"  # gid + uid -> b"" (primary and secondary membership)
ACLS = "acls"  # id -> {"id", "user", "resource", "rights", "zone"}
ACLS_BY_USER = "acls_by_user"  # user selector (8B BE) + id -> the rule
TOKENS = "tokens"  # sha256 hex of the token -> {"uid", "expires", "created"}
TOKENS_BY_USER = "tokens_by_user"  # uid + sha256 hex -> b""
OBJECTS = "objects"  # kind + id -> pool object (raftcore.objects)
INDEX = "index"  # kind + index + value + id -> b"" (raftcore.objects)
QUOTAS = "quotas"  # b"u"/b"g" + id, or b"default_u"/b"default_g" -> quota record
ZONE = "zone"  # ZONE_KEY -> zone record
SERVERS = "servers"  # id -> {"id", "name", "raft", "grpc"}

DBS: tuple[str, ...] = (
    META,
    DEDUPE,
    DEDUPE_TS,
    KV,
    USERS,
    USERS_BY_NAME,
    GROUPS,
    GROUPS_BY_NAME,
    GROUP_USERS,
    ACLS,
    ACLS_BY_USER,
    TOKENS,
    TOKENS_BY_USER,
    QUOTAS,
    ZONE,
    SERVERS,
    OBJECTS,
    INDEX,
)

APPLIED_KEY = b"applied"
ZONE_KEY = b"zone"

_U64 = struct.Struct(">Q")


def id_key(obj_id: int) -> bytes:
    """8-byte big-endian key for a non-negative id."""
    return _U64.pack(obj_id)


def key_id(key: bytes) -> int:
    return _U64.unpack(key)[0]


def pair_key(a: int, b: int) -> bytes:
    """Two ids in one key (e.g. gid + uid): iterating the prefix id_key(a) gives a's bs."""
    return _U64.pack(a) + _U64.pack(b)


def seq_key(name: str) -> bytes:
    """meta key of the id sequence `name` (the value is the next id to hand out)."""
    return b"seq:" + name.encode()


def str_key(name: str) -> bytes:
    return name.encode("utf-8")


def dedupe_ts_key(ts_ms: int, rid: str) -> bytes:
    """Prune-order key: oldest first, ties broken by rid."""
    return _U64.pack(ts_ms) + rid.encode("utf-8")


def split_dedupe_ts_key(key: bytes) -> tuple[int, str]:
    return _U64.unpack(key[:8])[0], key[8:].decode("utf-8")
