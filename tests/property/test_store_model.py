"""Stateful test: the store against a plain-dict model of kv + dedupe + applied index."""

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftcore.commands import encode_entry, error, ok
from raftcore.store import Store

KEYS = st.sampled_from(["a", "b", "c", "é"])
VALUES = st.binary(max_size=8)
MAP_SIZE = 32 << 20


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="store-model-")
        self.store = Store(self.dir, map_size=MAP_SIZE)
        self.kv: dict[str, bytes] = {}
        self.first: dict[str, dict] = {}  # rid -> first result
        self.sent: list[dict] = []  # every valid command sent, for retries
        self.index = 0
        self.counter = 0

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # --- the model ----------------------------------------------------------------------

    def _command(self, kind: str, key: str, value: bytes = b"") -> dict:
        self.counter += 1
        args = {"key": key, "value": value} if kind == "put" else {"key": key}
        # ts stays far inside the dedupe retention window: nothing is pruned here.
        cmd = {
            "v": 1,
            "op": f"kv.{kind}",
            "args": args,
            "rid": f"r{self.counter}",
            "uid": 0,
            "ts": self.index,
        }
        self.sent.append(cmd)
        return cmd

    def _model_apply(self, cmd: dict, index: int) -> dict:
        if cmd["rid"] in self.first:
            return self.first[cmd["rid"]]
        key = cmd["args"]["key"]
        if cmd["op"] == "kv.put":
            self.kv[key] = cmd["args"]["value"]
            result = ok({"index": index})
        else:
            result = ok({"deleted": self.kv.pop(key, None) is not None, "index": index})
        self.first[cmd["rid"]] = result
        return result

    def _entry(self, cmds: list[dict]) -> None:
        self.index += 1
        got = self.store.apply_entry(self.index, encode_entry(cmds))
        expected = [self._model_apply(c, self.index) for c in cmds]
        assert got == expected

    # --- rules --------------------------------------------------------------------------

    @rule(key=KEYS, value=VALUES)
    def put(self, key: str, value: bytes) -> None:
        self._entry([self._command("put", key, value)])

    @rule(key=KEYS)
    def delete(self, key: str) -> None:
        self._entry([self._command("delete", key)])

    @rule(
        ops=st.lists(
            st.tuples(st.sampled_from(["put", "delete", "retry"]), KEYS, VALUES),
            min_size=1,
            max_size=5,
        ),
        data=st.data(),
    )
    def batch(self, ops: list, data: st.DataObject) -> None:
        cmds = []
        for kind, key, value in ops:
            if kind == "retry":
                pool = self.sent + cmds
                if not pool:
                    continue
                cmds.append(data.draw(st.sampled_from(pool)))
            else:
                cmds.append(self._command(kind, key, value))
        self._entry(cmds)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def retry(self, data: st.DataObject) -> None:
        # A client retry: the exact same command in a later entry returns the first result.
        cmd = data.draw(st.sampled_from(self.sent))
        self._entry([cmd])

    @precondition(lambda self: self.index > 0)
    @rule(data=st.data(), key=KEYS, value=VALUES)
    def replay_old_index(self, data: st.DataObject, key: str, value: bytes) -> None:
        # Raft may re-deliver an applied index (with whatever payload): a no-op.
        old = data.draw(st.integers(min_value=0, max_value=self.index))
        self.counter += 1
        cmd = {
            "v": 1,
            "op": "kv.put",
            "args": {"key": key, "value": value},
            "rid": f"x{self.counter}",
            "uid": 0,
            "ts": 0,
        }
        assert self.store.apply_entry(old, encode_entry([cmd])) is None

    @rule(garbage=st.binary(max_size=16))
    def malformed(self, garbage: bytes) -> None:
        self.index += 1
        got = self.store.apply_entry(self.index, b"\xc1" + garbage)
        assert got is not None and len(got) == 1
        assert got[0]["code"] == error("BAD_REQUEST", "")["code"]

    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = Store(self.dir, map_size=MAP_SIZE)

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def state_matches_model(self) -> None:
        assert self.store.applied_index == self.index
        with self.store.read() as view:
            assert view.applied_index == self.index
            assert {k.decode(): v["value"] for k, v in view.iter("kv")} == self.kv
            dedupe = {k.decode(): v["result"] for k, v in view.iter("dedupe")}
            assert dedupe == self.first
            assert len(list(view.iter("dedupe_ts"))) == len(self.first)


StoreModel.TestCase.settings = settings(max_examples=100, stateful_step_count=25, deadline=None)
TestStoreModel = StoreModel.TestCase
