"""Authorization: may user `uid` do these things? (docs/tenancy.md, "The decision").

One pure function of the state (users, groups, ACL rules read through `view`) and the
requests, so the API worker (fail fast) and apply (authoritative) reach the same answer.
OpenNebula's order:

1. uid 0, or a member of group 0 (oneadmin): allowed.
2. The object's permission bits: owner bits if the caller owns it, group bits if the
   object's group is one of the caller's groups, other bits for everyone.
3. Group admin: an admin of group G (listed in G's `admins` and a member of G) holds
   the rights that OpenNebula's Group::add_admin_rules gives over G's objects
   (GROUP_ADMIN_RIGHTS), never over objects of oneadmin (uid 0) or of group 0.
4. ACL rules whose user selector is `#uid`, `@gid` of one of the caller's groups, or `*`;
   read from `acls_by_user` under those prefixes only, never the whole rule set.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from raftcore import acl, schema
from raftcore.perms import ALL_PERMS, to_string


class ReadView(Protocol):
    def get(self, db: str, key: bytes) -> Any | None: ...

    def iter(self, db: str, prefix: bytes = b"") -> Iterator[tuple[bytes, Any]]: ...


USE, MANAGE, ADMIN, CREATE = (acl.RIGHTS[r] for r in ("USE", "MANAGE", "ADMIN", "CREATE"))
ONEADMIN_UID = 0
ONEADMIN_GID = 0

# Weight of each right inside a permission triplet (CREATE has no bit: no object yet).
_PERM_WEIGHT: dict[str, int] = {"USE": 4, "MANAGE": 2, "ADMIN": 1}

# What a group admin holds, from the ACL rules OpenNebula adds with each admin
# (Group::add_admin_rules):
#   #uid USER/@gid USE+MANAGE+ADMIN+CREATE *
#   #uid VM+NET+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VROUTER+VMGROUP+BACKUPJOB/@gid USE+MANAGE *
#   #uid GROUP/#gid MANAGE *
#   #uid VROUTER/* CREATE *
# type -> (rights, which request field names the group: the object's gid, or its oid
# for the GROUP itself).
GROUP_ADMIN_RIGHTS: dict[str, tuple[int, str]] = {
    "USER": (USE | MANAGE | ADMIN | CREATE, "gid"),
    **{
        t: (USE | MANAGE, "gid")
        for t in (
            "VM",
            "NET",
            "IMAGE",
            "TEMPLATE",
            "DOCUMENT",
            "SECGROUP",
            "VROUTER",
            "VMGROUP",
            "BACKUPJOB",
        )
    },
    "GROUP": (MANAGE, "oid"),
}
# Types an admin of any group may create, in any group.
GROUP_ADMIN_CREATE_ANYWHERE: frozenset[str] = frozenset({"VROUTER"})

_SELECTOR_AND_ID = acl.SELECTOR_MASK | acl.ID_MASK
_ALL_KEY = acl.selector_key(acl.ALL)


def _is_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= acl.ID_MASK


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One thing to authorize: `right` on an object of `obj_type` (or creating one).

    For an existing object: its id, owner uid, group id, 9-bit permissions and cluster
    ids. For CREATE: no oid; `gid` is the group the new object goes to.
    """

    obj_type: str
    right: str
    oid: int | None = None
    owner: int | None = None
    gid: int | None = None
    perms: int | None = None
    cids: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        # Bad requests are programming errors, not denials: fail loudly.
        # Types outside acl.OBJECT_TYPES (e.g. QUOTA) are allowed: no rule can name them,
        # so only oneadmin (and permission bits, if given) grant rights on them.
        if not isinstance(self.obj_type, str) or not self.obj_type:
            raise ValueError(f"AuthRequest.obj_type must be a type name, got {self.obj_type!r}")
        if self.right not in acl.RIGHTS:
            raise ValueError(f"unknown right {self.right!r}; known: {', '.join(acl.RIGHTS)}")
        # Ids fit the 32-bit id half of a rule, so `flag | id` can never alias a selector.
        for name in ("oid", "owner", "gid"):
            value = getattr(self, name)
            if value is not None and not _is_id(value):
                raise ValueError(
                    f"AuthRequest.{name} must be None or an id 0..{acl.ID_MASK}, got {value!r}"
                )
        if self.perms is not None and not (
            isinstance(self.perms, int) and 0 <= self.perms <= ALL_PERMS
        ):
            raise ValueError(f"AuthRequest.perms must be None or 0..0o777, got {self.perms!r}")
        if not isinstance(self.cids, tuple) or not all(_is_id(c) for c in self.cids):
            raise ValueError(f"AuthRequest.cids must be a tuple of ids, got {self.cids!r}")


class Denied(Exception):
    """The user may not do a request; `message` says who, what and why."""

    def __init__(self, message: str, uid: int | None = None, request: AuthRequest | None = None):
        super().__init__(message)
        self.message = message
        self.uid = uid
        self.request = request


def describe(request: AuthRequest) -> str:
    """'MANAGE on VM 7 (owner 3, group 100, permissions um-------)' / 'CREATE VM in group 1'."""
    if request.oid is None:
        text = f"{request.right} {request.obj_type}"
        if request.gid is not None:
            text += f" in group {request.gid}"
        return text
    details = []
    if request.owner is not None:
        details.append(f"owner {request.owner}")
    if request.gid is not None:
        details.append(f"group {request.gid}")
    if request.perms is not None:
        details.append(f"permissions {to_string(request.perms)}")
    if request.cids:
        details.append(f"clusters {','.join(map(str, request.cids))}")
    text = f"{request.right} on {request.obj_type} {request.oid}"
    return f"{text} ({', '.join(details)})" if details else text


class _Rules:
    """The caller's candidate rules as (resource, rights, zone), read lazily and once.

    Lazy so that a grant by the first matching rule reads no further; cached so that
    several requests in one call read the prefixes once.
    """

    def __init__(self, view: ReadView, prefixes: list[bytes]) -> None:
        self._source = self._read(view, prefixes)
        self._seen: list[tuple[int, int, int]] = []
        self._done = False

    @staticmethod
    def _read(view: ReadView, prefixes: list[bytes]) -> Iterator[tuple[int, int, int]]:
        for prefix in prefixes:
            for _, rule in view.iter(schema.ACLS_BY_USER, prefix):
                yield rule["resource"], rule["rights"], rule["zone"]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        yield from self._seen
        if self._done:
            return
        for item in self._source:
            self._seen.append(item)
            yield item
        self._done = True

    def close(self) -> None:
        self._source.close()  # release the LMDB cursor now, not at garbage collection


class _Caller:
    """The caller's state for one authorize() call: groups, admin roles, rules."""

    def __init__(self, view: ReadView, uid: int, groups: list[int], zone_id: int) -> None:
        self.view = view
        self.uid = uid
        self.groups = groups
        self.group_set = frozenset(groups)
        self.zone_req = acl.INDIVIDUAL | zone_id
        self._admin_of: dict[int, bool] = {}
        self._rules: _Rules | None = None

    def close(self) -> None:
        if self._rules is not None:
            self._rules.close()

    def granted(self, req: AuthRequest) -> bool:
        right_bit = acl.RIGHTS[req.right]
        perms = req.perms
        if perms is not None and right_bit != CREATE:
            weight = _PERM_WEIGHT[req.right]
            if (
                perms & weight
                or (req.owner == self.uid and perms & (weight << 6))
                or (req.gid in self.group_set and perms & (weight << 3))
            ):
                return True
        return self._group_admin(req, right_bit) or self._acl(req, right_bit)

    def _is_admin(self, gid: int) -> bool:
        # Admins are members in OpenNebula (add_admin requires it): check membership first
        # and read the group only then.
        if gid == ONEADMIN_GID or gid not in self.group_set:
            return False
        known = self._admin_of.get(gid)
        if known is None:
            group = self.view.get(schema.GROUPS, schema.id_key(gid))
            known = group is not None and self.uid in group.get("admins", ())
            self._admin_of[gid] = known
        return known

    def _group_admin(self, req: AuthRequest, right_bit: int) -> bool:
        grant = GROUP_ADMIN_RIGHTS.get(req.obj_type)
        if grant is not None and grant[0] & right_bit:
            field = grant[1]
            if field == "oid":
                gid = req.oid  # the GROUP object itself; groups have no owner
            else:
                gid = req.gid
                if req.owner == ONEADMIN_UID:
                    return False
            if gid is not None and self._is_admin(gid):
                return True
        if right_bit == CREATE and req.obj_type in GROUP_ADMIN_CREATE_ANYWHERE:
            return any(self._is_admin(g) for g in self.groups)
        return False

    def _acl(self, req: AuthRequest, right_bit: int) -> bool:
        type_bit = acl.OBJECT_TYPES.get(req.obj_type, 0)
        if not type_bit:
            return False
        # The resource selectors (flag | id) that select this object.
        targets = {acl.ALL}
        if req.oid is not None:
            targets.add(acl.INDIVIDUAL | req.oid)
        if req.gid is not None:
            targets.add(acl.GROUP | req.gid)
        for cid in req.cids:
            targets.add(acl.CLUSTER | cid)
        if self._rules is None:
            prefixes = [acl.selector_key(acl.INDIVIDUAL, self.uid)]
            prefixes += [acl.selector_key(acl.GROUP, g) for g in self.groups]
            prefixes.append(_ALL_KEY)
            self._rules = _Rules(self.view, prefixes)
        zone_req = self.zone_req
        for resource, rights, zone in self._rules:
            if (
                rights & right_bit
                and resource & type_bit
                and (resource & _SELECTOR_AND_ID) in targets
                and (zone == zone_req or zone & acl.ALL)
            ):
                return True
        return False


def _groups_of(user: dict) -> list[int]:
    """Every group of the user, primary first, without repeats."""
    gid = user.get("gid")
    groups = [gid] if gid is not None else []
    groups += user.get("groups") or ()
    return list(dict.fromkeys(groups))


def authorize(view: ReadView, uid: int, requests: Sequence[AuthRequest], zone_id: int = 0) -> None:
    """Return if user `uid` may do every request in zone `zone_id`; else raise Denied
    for the first one it may not do (or if the user does not exist)."""
    if isinstance(requests, AuthRequest):
        requests = (requests,)
    if not isinstance(uid, int) or isinstance(uid, bool) or not 0 <= uid <= acl.MAX_ID:
        raise Denied(f"user {uid!r} does not exist", None)
    if uid == ONEADMIN_UID:
        return  # oneadmin, even before its record exists (bootstrap)
    user = view.get(schema.USERS, schema.id_key(uid))
    if user is None:
        raise Denied(f"user {uid} does not exist", uid)
    groups = _groups_of(user)
    if ONEADMIN_GID in groups:
        return
    caller = _Caller(view, uid, groups, zone_id)
    try:
        for req in requests:
            if not caller.granted(req):
                by = "group admin role or ACL rule"
                if req.perms is not None and req.right != "CREATE":
                    by = "permission bit, " + by
                raise Denied(
                    f"user {uid} is not authorized: {describe(req)}: no {by} grants it",
                    uid,
                    req,
                )
    finally:
        caller.close()


def rules_of(view: ReadView, uid: int) -> list[tuple[int, int, int]]:
    """The (resource, rights, zone) of every ACL rule whose user selector matches `uid`
    (for listings: which objects beyond its own may the user see?)."""
    user = view.get(schema.USERS, schema.id_key(uid))
    if user is None:
        return []
    prefixes = [acl.selector_key(acl.INDIVIDUAL, uid)]
    prefixes += [acl.selector_key(acl.GROUP, g) for g in _groups_of(user)]
    prefixes.append(_ALL_KEY)
    return list(_Rules._read(view, prefixes))


def is_admin(view: ReadView, uid: int) -> bool:
    """oneadmin, or a member of the oneadmin group: bypasses every check."""
    if uid == ONEADMIN_UID:
        return True
    user = view.get(schema.USERS, schema.id_key(uid))
    return user is not None and ONEADMIN_GID in _groups_of(user)


def allowed(view: ReadView, uid: int, request: AuthRequest, zone_id: int = 0) -> bool:
    """authorize() as a bool, for one request."""
    try:
        authorize(view, uid, (request,), zone_id)
    except Denied:
        return False
    return True
