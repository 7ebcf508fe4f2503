"""The pure state machine: apply(view, command, index) -> (mutations, result).

Pure means every replica computes the same thing from the same state and command: no
clock (time comes from command["ts"]), no randomness (ids come from sequences stored in
the meta db), no I/O, no logging. Handlers (raftcore.ops.*) read through `view` and
return mutations; the store writes them. Apply never raises: PySyncObj would retry a
raising apply forever.
"""

import importlib
import pkgutil

import raftcore.ops
from raftcore.commands import ErrorCode, error
from raftcore.ops.common import Handler, Mutation, Reject, View


def _collect() -> dict[str, Handler]:
    """Every raftcore.ops module's HANDLERS (a module per kind of object); an op defined
    twice is a bug caught at import."""
    handlers: dict[str, Handler] = {}
    for info in sorted(pkgutil.iter_modules(raftcore.ops.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"raftcore.ops.{info.name}")
        for op, handler in getattr(module, "HANDLERS", {}).items():
            if op in handlers:
                raise RuntimeError(f"op {op!r} defined twice (raftcore.ops.{info.name})")
            handlers[op] = handler
    return handlers


HANDLERS: dict[str, Handler] = _collect()


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
