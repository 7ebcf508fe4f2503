"""Stateful test of quotas against a plain model: objects are charged and released for a
few users and groups while limits (theirs and the defaults) change in between.

Invariants: every usage counter equals the sum over the live objects of its owner; each
charge succeeds exactly when the model says every named metric stays within its
effective limit for the user and the group (uid 0 / gid 0 never limited); a successful
charge leaves no named metric over its limit; limits are what was last set."""

import copy

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from raftcore import quota, schema
from raftcore.ops.common import Reject
from raftcore.ops.quotas import HANDLERS
from tests.statekit import DictView, write

UIDS = (0, 1, 2, 3)
GIDS = (0, 1, 100)
IDS = {"DATASTORE": (0, 1), "NETWORK": (0,), "IMAGE": (3,)}
CPU = frozenset({"CPU", "RUNNING_CPU"})

Slot = tuple[str, int | None, str]  # (section, id, metric)


def slots_of(name: str) -> list[tuple[int | None, str]]:
    ids = IDS.get(name, (None,))
    return [(qid, m) for qid in ids for m in quota.SECTIONS[name].metrics]


ALL_SLOTS: list[Slot] = [(name, qid, m) for name in quota.SECTIONS for qid, m in slots_of(name)]


def amount(metric: str, high: int) -> st.SearchStrategy[int]:
    """Internal units: CPU in hundredths (0.37 CPUs = 37)."""
    return st.integers(0, high * 100 if metric in CPU else high)


def public(metric: str, internal: int) -> int | float | str:
    # CPU handed in as a float or as text, both must give the same exact hundredths.
    if metric in CPU and internal >= 0:
        return internal / 100 if internal % 2 else f"{internal // 100}.{internal % 100:02d}"
    return internal


@st.composite
def usages(draw) -> dict[Slot, int]:
    chosen = draw(st.lists(st.sampled_from(ALL_SLOTS), max_size=6, unique=True))
    return {slot: draw(amount(slot[2], 3)) for slot in chosen}


@st.composite
def limit_sets(draw, is_default: bool) -> dict[Slot, int]:
    chosen = draw(st.lists(st.sampled_from(ALL_SLOTS), min_size=1, max_size=5, unique=True))
    sentinels = [quota.UNLIMITED] if is_default else [quota.DEFAULT, quota.UNLIMITED]
    out = {}
    for slot in chosen:
        out[slot] = draw(st.one_of(st.sampled_from(sentinels), amount(slot[2], 8)))
    return out


def usage_arg(deltas: dict[Slot, int]) -> dict:
    out: dict = {}
    for (name, qid, metric), value in deltas.items():
        where = out.setdefault(name, {})
        if qid is not None:
            where = where.setdefault(qid, {})
        where[metric] = public(metric, value)
    return out


def quota_arg(limits: dict[Slot, int]) -> dict:
    out: dict = {}
    for (name, qid, metric), value in limits.items():
        if qid is None:
            out.setdefault(name, {})[metric] = public(metric, value)
        else:
            vectors = out.setdefault(name, [])
            vector = next((v for v in vectors if v["ID"] == qid), None)
            if vector is None:
                vector = {"ID": qid}
                vectors.append(vector)
            vector[metric] = public(metric, value)
    return out


def stored(record: dict | None, name: str, qid: int | None, key: str, missing: int) -> int:
    if not record or name not in record:
        return missing
    entry = record[name] if qid is None else record[name].get(str(qid))
    return missing if entry is None else entry.get(key, missing)


class QuotaModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        users = {
            uid: {"id": uid, "name": f"u{uid}", "gid": 0 if uid == 0 else 1, "groups": []}
            for uid in UIDS
        }
        groups = {gid: {"id": gid, "name": f"g{gid}", "admins": []} for gid in GIDS}
        self.state: dict = {
            schema.USERS: {schema.id_key(k): v for k, v in users.items()},
            schema.GROUPS: {schema.id_key(k): v for k, v in groups.items()},
        }
        self.live: list[tuple[int, int, dict[Slot, int]]] = []
        self.limits: dict[tuple[str, int], dict[Slot, int]] = {}  # (kind, id) -> slot -> limit
        self.defaults: dict[str, dict[Slot, int]] = {"user": {}, "group": {}}

    # --- the model ----------------------------------------------------------------------

    def used(self, kind: str, oid: int, slot: Slot) -> int:
        pos = 0 if kind == "user" else 1
        return sum(d.get(slot, 0) for o in self.live if o[pos] == oid for d in [o[2]])

    def effective(self, kind: str, oid: int, slot: Slot) -> int | None:
        limit = self.limits.get((kind, oid), {}).get(slot, quota.DEFAULT)
        if limit == quota.DEFAULT:
            limit = self.defaults[kind].get(slot, quota.UNLIMITED)
        return None if limit < 0 else limit

    def allowed(self, uid: int, gid: int, deltas: dict[Slot, int]) -> bool:
        for kind, oid in (("user", uid), ("group", gid)):
            if oid == 0:
                continue
            for slot, delta in deltas.items():
                limit = self.effective(kind, oid, slot)
                if limit is not None and self.used(kind, oid, slot) + delta > limit:
                    return False
        return True

    # --- rules --------------------------------------------------------------------------

    @rule(uid=st.sampled_from(UIDS), gid=st.sampled_from(GIDS), deltas=usages())
    def charge(self, uid: int, gid: int, deltas: dict[Slot, int]) -> None:
        expected = self.allowed(uid, gid, deltas)
        before = copy.deepcopy(self.state)
        try:
            mutations = quota.charge(DictView(self.state), uid, gid, usage_arg(deltas))
        except Reject as r:
            assert not expected, f"refused but within limits: {r.message}"
            assert r.code == "ALLOCATE"
            assert self.state == before
            return
        assert expected, "charged over a limit"
        self.state = write(self.state, mutations)
        self.live.append((uid, gid, deltas))
        # No named metric is over its limit after a successful charge.
        for kind, oid in (("user", uid), ("group", gid)):
            if oid == 0:
                continue
            record = self.state.get(schema.QUOTAS, {}).get(quota.record_key(kind, oid))
            for name, qid, metric in deltas:
                limit = self.effective(kind, oid, (name, qid, metric))
                used = stored(record, name, qid, metric + "_USED", 0)
                assert limit is None or used <= limit

    @precondition(lambda self: self.live)
    @rule(pick=st.integers(0, 10**6))
    def release(self, pick: int) -> None:
        uid, gid, deltas = self.live.pop(pick % len(self.live))
        mutations = quota.release(DictView(self.state), uid, gid, usage_arg(deltas))
        self.state = write(self.state, mutations)

    @rule(
        kind=st.sampled_from(["user", "group"]),
        pick=st.integers(0, 10),
        limits=limit_sets(is_default=False),
    )
    def set_limits(self, kind: str, pick: int, limits: dict[Slot, int]) -> None:
        ids = [i for i in (UIDS if kind == "user" else GIDS) if i != 0]
        oid = ids[pick % len(ids)]
        args = {"kind": kind, "id": oid, "quota": quota_arg(limits)}
        cmd = {"v": 1, "op": "quota.set", "args": args, "rid": "r", "uid": 0, "ts": 1}
        mutations, result = HANDLERS["quota.set"](DictView(self.state), args, cmd, 1)
        assert result["ok"], result
        self.state = write(self.state, mutations)
        self.limits.setdefault((kind, oid), {}).update(limits)

    @rule(kind=st.sampled_from(["user", "group"]), limits=limit_sets(is_default=True))
    def set_defaults(self, kind: str, limits: dict[Slot, int]) -> None:
        # Through merge_limits (the op's core): the op's authorization is tested in
        # tests/unit/test_quota.py.
        key = quota.default_key(kind)
        old = self.state.get(schema.QUOTAS, {}).get(key)
        new = quota.merge_limits(old, quota_arg(limits), is_default=True)
        self.state = write(
            self.state,
            [("put", schema.QUOTAS, key, new)] if new else [("del", schema.QUOTAS, key)],
        )
        self.defaults[kind].update(limits)

    # --- invariants ---------------------------------------------------------------------

    @invariant()
    def counters_are_the_sums_of_live_objects(self) -> None:
        records = self.state.get(schema.QUOTAS, {})
        for kind, ids in (("user", UIDS), ("group", GIDS)):
            for oid in ids:
                record = records.get(quota.record_key(kind, oid))
                for name, qid, metric in ALL_SLOTS:
                    got = stored(record, name, qid, metric + "_USED", 0)
                    assert got == self.used(kind, oid, (name, qid, metric)), (kind, oid, metric)
                    limit = self.limits.get((kind, oid), {}).get((name, qid, metric), -1)
                    assert stored(record, name, qid, metric, -1) == limit

    @invariant()
    def defaults_are_what_was_set(self) -> None:
        records = self.state.get(schema.QUOTAS, {})
        for kind in ("user", "group"):
            record = records.get(quota.default_key(kind))
            for slot in ALL_SLOTS:
                expected = self.defaults[kind].get(slot, quota.UNLIMITED)
                assert stored(record, slot[0], slot[1], slot[2], quota.UNLIMITED) == expected

    @invariant()
    def no_empty_records(self) -> None:
        # Blank vectors are dropped and empty records deleted: releasing everything
        # with no limits set leaves no trace.
        for record in self.state.get(schema.QUOTAS, {}).values():
            assert record
        if not self.live and not any(self.limits.values()):
            user_group_keys = [k for k in self.state.get(schema.QUOTAS, {}) if k[:1] in b"ug"]
            assert user_group_keys == []

    def teardown(self) -> None:
        # Release everything: every counter goes back to 0.
        while self.live:
            self.release(0)
        self.counters_are_the_sums_of_live_objects()


QuotaModel.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestQuotaModel = QuotaModel.TestCase
