"""The state machine without a store: a dict-backed view, and applying commands to it."""

from __future__ import annotations

import copy

from raftcore.apply import apply

TS = 1_700_000_000_000


class DictView:
    """A ReadView over {db: {key: value}} (values already decoded)."""

    def __init__(self, state: dict) -> None:
        self.state = state
        self.applied_index = 0

    def get(self, db, key):
        return self.state.get(db, {}).get(key)

    def iter(self, db, prefix=b""):
        for key in sorted(self.state.get(db, {})):
            if key.startswith(prefix):
                yield key, self.state[db][key]


def run(state, op, args, index=7, ts=TS, uid=0):
    """Apply and check purity: the view's state is never modified by apply itself."""
    before = copy.deepcopy(state)
    command = {"v": 1, "op": op, "args": args, "rid": "r", "uid": uid, "ts": ts}
    mutations, result = apply(DictView(state), command, index)
    assert state == before
    # Deterministic: the same input gives the same output.
    assert apply(DictView(state), command, index) == (mutations, result)
    return mutations, result


def write(state, mutations):
    new = copy.deepcopy(state)
    for m in mutations:
        if m[0] == "put":
            new.setdefault(m[1], {})[m[2]] = m[3]
        else:
            new.get(m[1], {}).pop(m[2], None)
    return new


class Zone:
    """A state advanced command by command, as the log would."""

    def __init__(self, state: dict | None = None) -> None:
        self.state = state or {}
        self.index = 0

    def do(self, op: str, args: dict, uid: int = 0, ts: int = TS) -> dict:
        """Apply; on success write the mutations. Returns the result; a failed command
        must leave the state exactly as it was (asserted)."""
        self.index += 1
        mutations, result = run(self.state, op, args, index=self.index, ts=ts, uid=uid)
        if result["ok"]:
            self.state = write(self.state, mutations)
        else:
            assert mutations == []
        return result

    def ok(self, op: str, args: dict, uid: int = 0):
        result = self.do(op, args, uid)
        assert result["ok"], result
        return result["value"]

    def fails(self, op: str, args: dict, uid: int, code: str, text: str = "") -> str:
        before = copy.deepcopy(self.state)
        result = self.do(op, args, uid)
        assert not result["ok"], result
        assert result["code"] == code, result
        assert text in result["message"], result
        assert self.state == before
        return result["message"]

    def view(self) -> DictView:
        return DictView(self.state)
