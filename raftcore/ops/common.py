"""What every op handler shares: the view it reads, how it refuses, argument checks.

Handlers are pure: they read through `view` and return (mutations, result); they never
write, and raise `Reject` for an invalid command (apply turns it into an error result).
"""

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from raftcore import schema
from raftcore.authz import AuthRequest, Denied, authorize
from raftcore.commands import ErrorCode

Mutation = tuple  # ("put", db, key, value) | ("del", db, key)
Result = tuple[list[Mutation], dict]
Handler = Callable[["View", dict, dict, int], Result]

MAX_NAME_CHARS = 128


class View(Protocol):
    def get(self, db: str, key: bytes) -> Any | None: ...

    def iter(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]: ...


class Reject(Exception):
    """Raised by handlers for a command that is invalid; becomes an error result."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def bad(message: str) -> Reject:
    return Reject(ErrorCode.BAD_REQUEST, message)


# --- argument checks (each names the field and what is wrong) -----------------------


def check_args(args: dict, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    for name in required:
        if name not in args:
            raise bad(f"missing argument {name!r}")
    unknown = sorted(str(k) for k in args if k not in required and k not in optional)
    if unknown:
        raise bad(f"unknown argument(s): {', '.join(unknown)}")


def arg_str(args: dict, name: str, max_chars: int = MAX_NAME_CHARS) -> str:
    value = args[name]
    if not isinstance(value, str):
        raise bad(f"argument {name!r} must be a string, got {type(value).__name__}")
    if not 1 <= len(value) <= max_chars:
        raise bad(f"argument {name!r} must be 1..{max_chars} characters, got {len(value)}")
    return value


def arg_int(args: dict, name: str, minimum: int = 0) -> int:
    value = args[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise bad(f"argument {name!r} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise bad(f"argument {name!r} must be >= {minimum}, got {value}")
    return value


# --- small state helpers -------------------------------------------------------------


def next_id(view: View, seq: str, start: int = 0) -> tuple[int, Mutation]:
    """The next id of sequence `seq` and the mutation that advances it."""
    current = view.get(schema.META, schema.seq_key(seq))
    next_id = start if current is None else current
    return next_id, ("put", schema.META, schema.seq_key(seq), next_id + 1)


def require(view: View, cmd: dict, *requests: AuthRequest) -> None:
    """Authorize the command's uid for `requests` against the state it applies to; a
    denial becomes an AUTHORIZATION error result (and the command changes nothing)."""
    try:
        authorize(view, cmd["uid"], requests)
    except Denied as d:
        raise Reject(ErrorCode.AUTHORIZATION, d.message) from None


def arg_bool(args: dict, name: str) -> bool:
    value = args[name]
    if not isinstance(value, bool):
        raise bad(f"argument {name!r} must be a boolean, got {type(value).__name__}")
    return value


def get_record(view: View, db: str, obj_id: int, what: str) -> dict:
    """The record `obj_id` of `db`, or a NO_EXISTS refusal naming it ("user 7")."""
    record = view.get(db, schema.id_key(obj_id))
    if record is None:
        raise Reject(ErrorCode.NO_EXISTS, f"{what} {obj_id} does not exist")
    return record


_GONE = object()  # a key the command deleted


class Overlay:
    """A view that sees the mutations made so far by the command: several helpers (quota,
    images, hosts, the VM itself) may change the same record in one command, and each
    must read what the previous one wrote. The store applies `mutations` in order, so
    the last write of a key wins, which is what this view shows."""

    def __init__(self, base: View) -> None:
        self.base = base
        self._pending: dict[tuple[str, bytes], Any] = {}
        self.mutations: list[Mutation] = []

    def get(self, db: str, key: bytes) -> Any | None:
        value = self._pending.get((db, key), None)
        if (db, key) in self._pending:
            return None if value is _GONE else value
        return self.base.get(db, key)

    def iter(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]:
        mine = sorted(k for (d, k) in self._pending if d == db and k.startswith(prefix))
        i = 0
        for key, value in self.base.iter(db, prefix):
            while i < len(mine) and mine[i] < key:
                yield from self._pending_item(db, mine[i])
                i += 1
            if i < len(mine) and mine[i] == key:
                yield from self._pending_item(db, key)
                i += 1
            else:
                yield key, value
        for key in mine[i:]:
            yield from self._pending_item(db, key)

    def _pending_item(self, db: str, key: bytes) -> Iterator[tuple[bytes, Any]]:
        value = self._pending[(db, key)]
        if value is not _GONE:
            yield key, value

    def add(self, mutations: list[Mutation]) -> None:
        for m in mutations:
            self._pending[(m[1], m[2])] = m[3] if m[0] == "put" else _GONE
            self.mutations.append(m)

    def put(self, kind: str, record: dict) -> None:
        """Write `record` over the version this view holds (indexes kept exact)."""
        from raftcore import objects  # objects builds on this module

        self.add(objects.put(self, kind, record, objects.find(self, kind, record["id"])))
