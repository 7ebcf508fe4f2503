"""Latency of raftcore.authz.authorize against a real LMDB store of zone scale.

    python -m bench authz [--users 10000] [--groups 500] [--rules 10000] [--calls 30000]
                          [--seed 1] [--json]

Builds a Store in a temp dir with oneadmin, `--users` users (each in 1-3 of `--groups`
groups, 1-2 admins per group) and `--rules` ACL rules (OpenNebula's 3 bootstrap rules,
then a mix of #uid / @gid / * user selectors and #oid / @gid / %cid / * resource
selectors over zones #0, #1 and *), then times authorize() calls, one read txn per
1,000 calls, over an even mix of three kinds:

- `bits`:   allowed by the object's permission bits (owner or group);
- `acl`:    allowed only by one of the caller's ACL rules (bits 600, not its group);
- `denied`: ADMIN on another user's VM that nothing grants (every candidate rule read).

Each call's outcome is checked against its kind (`mismatches` must be 0). Progress goes
to stderr; the last stdout line is one JSON object with p50_ms, p99_ms, calls, rules,
users and the same figures per kind.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from typing import Any

import lmdb

from raftcore import acl, schema
from raftcore.authz import AuthRequest, Denied, allowed, authorize
from raftcore.codec import packb
from raftcore.store import Store

FIRST_GID = 100
N_CLUSTERS = 50
N_OBJECTS = 20_000  # object ids the rules and requests refer to
BATCH = 1_000  # calls per read transaction
KINDS = ("bits", "acl", "denied")
BOOTSTRAP_RULES = (
    "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *",
    "* ZONE/* USE *",
    "* MARKETPLACE+MARKETPLACEAPP/* USE *",
)
# Rule shapes: (types, weight). Types from one family, as VDC and admin rules are.
RULE_TYPES = (
    (("VM",), 6),
    (("IMAGE", "TEMPLATE"), 4),
    (("NET",), 3),
    (("HOST",), 2),
    (("DATASTORE",), 2),
    (("VM", "NET", "IMAGE", "TEMPLATE", "DOCUMENT", "SECGROUP"), 2),
    (("USER",), 1),
    (("MARKETPLACEAPP",), 1),
)
RIGHT_SETS = (("USE",), ("USE", "MANAGE"), ("MANAGE",), ("CREATE",), ("USE", "MANAGE", "ADMIN"))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- building the state -----------------------------------------------------------------


def seed_store(store: Store, puts: Iterable[tuple[str, bytes, Any]], work_dir: str) -> None:
    """Make `puts` ((db, key, value) triples) the whole state of `store`.

    Written to a scratch LMDB copy and installed with Store.install (the snapshot path),
    so the store is filled through its public interface and not through apply: this is
    a fixture for benchmarks and tests of readers.
    """
    src = tempfile.mkdtemp(prefix="seed-", dir=work_dir)
    try:
        env = lmdb.open(src, map_size=1 << 30, max_dbs=len(schema.DBS) + 2, subdir=True)
        try:
            with env.begin(write=True) as txn:
                dbs = {name: env.open_db(name.encode(), txn=txn) for name in schema.DBS}
                for db, key, value in puts:
                    txn.put(key, packb(value), db=dbs[db])
        finally:
            env.close()
        store.install(src)
    finally:
        shutil.rmtree(src, ignore_errors=True)


def user_record(uid: int, name: str, groups: list[int]) -> dict:
    """A users record as docs/tenancy.md describes it (primary group first)."""
    return {
        "id": uid,
        "name": name,
        "password": "",
        "gid": groups[0],
        "groups": [groups[0], *sorted(set(groups[1:]) - {groups[0]})],
        "enabled": True,
        "auth_driver": "core",
        "template": {},
        "umask": 0o177,
        "created": 0,
    }


def group_record(gid: int, name: str, admins: list[int]) -> dict:
    return {"id": gid, "name": name, "admins": sorted(admins), "template": {}, "created": 0}


def rule_puts(rule: acl.Rule) -> list[tuple[str, bytes, Any]]:
    """The two records of a stored rule: by id, and under its user selector."""
    record = rule.to_record()
    return [
        (schema.ACLS, schema.id_key(rule.id), record),
        (schema.ACLS_BY_USER, acl.by_user_key(rule), record),
    ]


class World:
    """The generated users, groups and rules, and indexes to build requests from."""

    def __init__(self, n_users: int, n_groups: int, n_rules: int, rng: random.Random):
        self.rng = rng
        self.gids = list(range(FIRST_GID, FIRST_GID + n_groups))
        self.groups_of: dict[int, list[int]] = {}
        members: dict[int, list[int]] = {g: [] for g in self.gids}
        for uid in range(1, n_users + 1):
            groups = rng.sample(self.gids, rng.choice((1, 1, 2, 3)))
            self.groups_of[uid] = groups
            for g in groups:
                members[g].append(uid)
        self.admins = {
            g: rng.sample(m, min(len(m), rng.choice((1, 2)))) for g, m in members.items()
        }
        self.rules: list[acl.Rule] = []
        for text in BOOTSTRAP_RULES:
            self._add(acl.parse(text))
        while len(self.rules) < n_rules:
            try:
                self._add(acl.parse(self._random_rule(n_users)))
            except acl.AclSyntaxError:
                continue  # a shape OpenNebula refuses (e.g. HOST/@gid): draw again
        # Rules by encoded user selector, to find a caller's candidate rules.
        self.by_user: dict[int, list[acl.Rule]] = {}
        for rule in self.rules:
            self.by_user.setdefault(rule.user, []).append(rule)

    def _add(self, rule: acl.Rule) -> None:
        self.rules.append(
            acl.Rule(len(self.rules), rule.user, rule.resource, rule.rights, rule.zone)
        )

    def _random_rule(self, n_users: int) -> str:
        rng = self.rng
        roll = rng.random()
        if roll < 0.002:
            user = "*"
        elif roll < 0.5:
            user = f"#{rng.randint(1, n_users)}"
        else:
            user = f"@{rng.choice(self.gids)}"
        types = rng.choices([t for t, _ in RULE_TYPES], [w for _, w in RULE_TYPES])[0]
        if set(types) <= {"HOST", "NET", "DATASTORE"} and rng.random() < 0.5:
            selector = f"%{rng.randrange(N_CLUSTERS)}"
        else:
            selector = rng.choice(
                (f"#{rng.randrange(N_OBJECTS)}", f"@{rng.choice(self.gids)}", "*", "*")
            )
        rights = "+".join(rng.choice(RIGHT_SETS))
        zone = rng.choices(("#0", "#1", "*"), (8, 1, 1))[0]
        return f"{user} {'+'.join(types)}/{selector} {rights} {zone}"

    def puts(self) -> Iterable[tuple[str, bytes, Any]]:
        yield schema.USERS, schema.id_key(0), user_record(0, "oneadmin", [0])
        yield schema.USERS_BY_NAME, schema.str_key("oneadmin"), 0
        yield schema.GROUP_USERS, schema.pair_key(0, 0), b""
        for gid, name in ((0, "oneadmin"), (1, "users")):
            yield schema.GROUPS, schema.id_key(gid), group_record(gid, name, [])
            yield schema.GROUPS_BY_NAME, schema.str_key(name), gid
        for gid in self.gids:
            name = f"group{gid}"
            yield schema.GROUPS, schema.id_key(gid), group_record(gid, name, self.admins[gid])
            yield schema.GROUPS_BY_NAME, schema.str_key(name), gid
        for uid, groups in self.groups_of.items():
            name = f"user{uid}"
            yield schema.USERS, schema.id_key(uid), user_record(uid, name, groups)
            yield schema.USERS_BY_NAME, schema.str_key(name), uid
            for g in groups:
                yield schema.GROUP_USERS, schema.pair_key(g, uid), b""
        for rule in self.rules:
            yield from rule_puts(rule)

    # --- requests ---------------------------------------------------------------------

    def candidate_rules(self, uid: int) -> list[acl.Rule]:
        keys = [acl.INDIVIDUAL | uid, acl.ALL] + [acl.GROUP | g for g in self.groups_of[uid]]
        return [r for k in keys for r in self.by_user.get(k, ())]

    def stranger_gid(self, uid: int) -> int:
        """A group the user is not in."""
        while True:
            g = self.rng.choice(self.gids)
            if g not in self.groups_of[uid]:
                return g

    def bits_request(self, uid: int) -> AuthRequest:
        rng = self.rng
        if rng.random() < 0.5:  # own object, owner bits
            return AuthRequest(
                "VM",
                rng.choice(("USE", "MANAGE")),
                oid=rng.randrange(N_OBJECTS),
                owner=uid,
                gid=self.groups_of[uid][0],
                perms=0o600,
            )
        other = rng.randint(1, len(self.groups_of))
        return AuthRequest(  # a group-mate's object shared with the group
            "IMAGE",
            "USE",
            oid=rng.randrange(N_OBJECTS),
            owner=other if other != uid else uid + 1,
            gid=rng.choice(self.groups_of[uid]),
            perms=0o640,
        )

    def acl_request(self, uid: int) -> AuthRequest | None:
        """A request that only one of the caller's rules can grant, or None."""
        rng = self.rng
        rules = [
            r for r in self.candidate_rules(uid) if r.zone & acl.ALL or r.zone == acl.INDIVIDUAL
        ]
        rules = [r for r in rules if r.rights & (acl.RIGHTS["USE"] | acl.RIGHTS["MANAGE"])]
        if not rules:
            return None
        rule = rng.choice(rules)
        types = [t for t, bit in acl.RESOURCE_TYPES.items() if rule.resource & bit]
        rights = [r for r in ("USE", "MANAGE") if rule.rights & acl.RIGHTS[r]]
        flag, ident = rule.resource & acl.SELECTOR_MASK, rule.resource & acl.ID_MASK
        oid = ident if flag == acl.INDIVIDUAL else rng.randrange(N_OBJECTS)
        gid = ident if flag == acl.GROUP else self.stranger_gid(uid)
        cids = (ident,) if flag == acl.CLUSTER else ()
        return AuthRequest(
            rng.choice(types),
            rng.choice(rights),
            oid=oid,
            owner=self._other(uid),
            gid=gid,
            perms=0o600,
            cids=cids,
        )

    def _other(self, uid: int) -> int:
        other = self.rng.randint(1, len(self.groups_of))
        return other if other != uid else (uid % len(self.groups_of)) + 1

    def denied_request(self, uid: int) -> AuthRequest:
        return AuthRequest(
            "VM",
            "ADMIN",
            oid=self.rng.randrange(N_OBJECTS),
            owner=self._other(uid),
            gid=self.stranger_gid(uid),
            perms=0o600,
        )


def build_calls(world: World, view: Any, n_calls: int) -> list[tuple[str, int, AuthRequest]]:
    """n_calls (kind, uid, request) whose outcome, checked here, matches the kind."""
    rng, n_users = world.rng, len(world.groups_of)
    calls: list[tuple[str, int, AuthRequest]] = []
    makers = {"bits": world.bits_request, "acl": world.acl_request, "denied": world.denied_request}
    attempts = 0
    while len(calls) < n_calls:
        attempts += 1
        if attempts > 100 * n_calls + 1000:
            raise RuntimeError(f"could not draw {n_calls} requests of each kind from this state")
        kind = KINDS[len(calls) % len(KINDS)]
        uid = rng.randint(1, n_users)
        req = makers[kind](uid)
        if req is None:
            continue
        if kind == "acl":
            # Must be granted, and not by bits or a group admin role.
            if world.admins.get(req.gid) and uid in world.admins[req.gid]:
                continue
        if allowed(view, uid, req) != (kind != "denied"):
            continue  # e.g. a random denied request that some rule happens to grant
        calls.append((kind, uid, req))
    rng.shuffle(calls)
    return calls


# --- timing -----------------------------------------------------------------------------


def _ms(values_ns: list[int], q: float) -> float:
    ordered = sorted(values_ns)
    idx = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[idx] / 1e6, 4)


def time_calls(store: Store, calls: list[tuple[str, int, AuthRequest]]) -> dict:
    by_kind: dict[str, list[int]] = {k: [] for k in KINDS}
    every: list[int] = []
    mismatches = 0
    clock = time.perf_counter_ns
    for start in range(0, len(calls), BATCH):
        with store.read() as view:
            for kind, uid, req in calls[start : start + BATCH]:
                reqs = (req,)
                t0 = clock()
                try:
                    authorize(view, uid, reqs)
                    ok = True
                except Denied:
                    ok = False
                dt = clock() - t0
                mismatches += ok != (kind != "denied")
                by_kind[kind].append(dt)
                every.append(dt)
    return {
        "p50_ms": _ms(every, 0.50),
        "p99_ms": _ms(every, 0.99),
        "mean_ms": round(statistics.fmean(every) / 1e6, 4),
        "calls": len(every),
        "mismatches": mismatches,
        "by_kind": {
            k: {"p50_ms": _ms(v, 0.50), "p99_ms": _ms(v, 0.99), "calls": len(v)}
            for k, v in by_kind.items()
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench authz",
        description="authorize() latency with many users and ACL rules in LMDB.",
    )
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--rules", type=int, default=10_000)
    ap.add_argument("--calls", type=int, default=30_000)
    ap.add_argument("--warmup", type=int, default=2_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.users < 2 or args.groups < 2 or args.rules < len(BOOTSTRAP_RULES):
        ap.error("need at least 2 users, 2 groups and 3 rules")

    work = tempfile.mkdtemp(prefix="bench-authz-", dir=args.dir)
    try:
        t0 = time.monotonic()
        world = World(args.users, args.groups, args.rules, random.Random(args.seed))
        with Store(os.path.join(work, "state"), map_size=1 << 30) as store:
            seed_store(store, world.puts(), work)
            build_s = time.monotonic() - t0
            entries = store.stats()["entries"]
            log(
                f"authz: store of {entries[schema.USERS]} users, {entries[schema.GROUPS]} "
                f"groups, {entries[schema.ACLS]} rules built in {build_s:.1f} s"
            )
            with store.read() as view:
                calls = build_calls(world, view, args.warmup + args.calls)
            log(f"authz: {len(calls)} requests drawn; warming up with {args.warmup}")
            time_calls(store, calls[: args.warmup])
            res = time_calls(store, calls[args.warmup :])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    kinds = ", ".join(
        f"{k} p50 {v['p50_ms']} ms p99 {v['p99_ms']} ms" for k, v in res["by_kind"].items()
    )
    log(
        f"authz: {res['calls']} calls p50 {res['p50_ms']} ms p99 {res['p99_ms']} ms "
        f"({kinds}); mismatches {res['mismatches']}"
    )
    out = {
        "bench": "authz",
        "users": args.users,
        "groups": args.groups,
        "rules": args.rules,
        # What a denial reads: the rules under #uid, each @gid of the caller, and *.
        "candidate_rules_mean": round(
            statistics.fmean(len(world.candidate_rules(u)) for u in world.groups_of), 1
        ),
        "build_s": round(build_s, 2),
        **res,
    }
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 1 if res["mismatches"] else 0
