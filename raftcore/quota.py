"""OpenNebula usage quotas of users and groups: limits, usage counters, charge/release.

Sections and metrics are OpenNebula's (src/um/Quota*.cc), in its order:

    DATASTORE [ID] SIZE (MB), IMAGES
    NETWORK   [ID] LEASES
    VM             VMS, RUNNING_VMS, CPU, RUNNING_CPU, MEMORY (MB), RUNNING_MEMORY (MB),
                   SYSTEM_DISK_SIZE (MB)
    IMAGE     [ID] RVMS

A limit is a number >= 0, -1 (use the default quota) or -2 (unlimited). Every metric
but CPU and RUNNING_CPU is a whole number; CPU is a fraction of CPUs with at most two
decimals. Each limit has a usage counter `<METRIC>_USED` in the same record.

Three forms:

* text: OpenNebula quota template, ``VM = [ VMS = 10, CPU = "4.5" ]``,
  ``DATASTORE = [ ID = 1, SIZE = 1000 ]`` (`parse_quota`, `format_quota`);
* the structured form (`parse_quota` returns it, the `quota.set` op takes it; only str
  keys and lists so it packs as msgpack)::

      {"VM": {"VMS": 10, "CPU": 4.5}, "DATASTORE": [{"ID": 1, "SIZE": 1000}],
       "NETWORK": [{"ID": 0, "LEASES": 4}], "IMAGE": [{"ID": 3, "RVMS": 1}]}

  numbers are ints, or floats when they have a fraction (CPU only);
* the stored record (db QUOTAS, key ``u``/``g`` + 8-byte id, or ``default_u`` /
  ``default_g``)::

      {"VM": {"VMS": 10, "VMS_USED": 1, "CPU": 450, "CPU_USED": 50, ...},
       "DATASTORE": {"1": {"SIZE": 1000, "SIZE_USED": 0, "IMAGES": -1, ...}}, ...}

  CPU metrics are integer hundredths of a CPU there (450 = 4.5 CPUs; -1 and -2 are kept
  as they are), so sums of usage never drift. A vector holds every metric of its section
  (default records hold limits only, no counters); a vector whose limits are all
  implicit (-1; -2 in a default record) and whose counters are all 0 is dropped, and an
  empty record is deleted, so charge then release restores a record exactly.

`charge` checks and raises the counters of a user and of its group; `release` lowers
them. Everything here is pure: it reads through a view and returns mutations.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from raftcore import schema, template
from raftcore.commands import ErrorCode
from raftcore.ops.common import Mutation, Reject, View, bad

DEFAULT = -1  # use the default quota
UNLIMITED = -2
MAX_VALUE = 2**53  # larger limits or usages are refused as absurd
# CPU values travel as floats in the structured form: up to 10**12 with two decimals
# (at most 14 significant digits) a float holds them exactly.
MAX_CPU = 10**12
MAX_ID = 2**31 - 1  # OpenNebula ids are 32-bit ints
MAX_USED = 2**63 - 1  # a counter must still pack as a msgpack int64
CPU_SCALE = 100  # CPU metrics are stored in hundredths

USER = "user"
GROUP = "group"
KINDS = (USER, GROUP)


@dataclass(frozen=True, slots=True)
class Section:
    name: str
    per_id: bool  # one vector per datastore / vnet / image ID
    metrics: tuple[str, ...]  # OpenNebula's order: the order of checks and of printing
    what: str  # the object an ID names, for messages


SECTIONS: dict[str, Section] = {
    s.name: s
    for s in (
        Section("DATASTORE", True, ("SIZE", "IMAGES"), "datastore"),
        Section("NETWORK", True, ("LEASES",), "virtual network"),
        Section(
            "VM",
            False,
            (
                "VMS",
                "RUNNING_VMS",
                "CPU",
                "RUNNING_CPU",
                "MEMORY",
                "RUNNING_MEMORY",
                "SYSTEM_DISK_SIZE",
            ),
            "",
        ),
        Section("IMAGE", True, ("RVMS",), "image"),
    )
}
_CPU_METRICS = frozenset({"CPU", "RUNNING_CPU"})


@dataclass(frozen=True, slots=True)
class _Kind:
    prefix: bytes
    default_key: bytes
    title: str  # as OpenNebula names the owner in a refusal: "User [5] : ..."


_KINDS: dict[str, _Kind] = {
    USER: _Kind(b"u", b"default_u", "User"),
    GROUP: _Kind(b"g", b"default_g", "Group"),
}

# Usage deltas as handlers give them: {"VM": {"VMS": 1, "CPU": 0.5},
# "DATASTORE": {1: {"SIZE": 1024, "IMAGES": 1}}, "NETWORK": {0: {"LEASES": 1}}, ...}
Usage = Mapping[str, Any]
# Validated deltas in internal units, in canonical order: (section, id or None) -> deltas.
_Deltas = dict[tuple[str, int | None], dict[str, int]]


class QuotaError(ValueError):
    """A bad quota text, structured form or usage; the message names the section, the ID
    and the metric."""


# --- keys ---------------------------------------------------------------------------------


def record_key(kind: str, oid: int) -> bytes:
    """QUOTAS key of the record of user or group `oid`."""
    return _kind(kind).prefix + schema.id_key(oid)


def default_key(kind: str) -> bytes:
    """QUOTAS key of the default quota of users or of groups."""
    return _kind(kind).default_key


def _kind(kind: str) -> _Kind:
    try:
        return _KINDS[kind]
    except (KeyError, TypeError):
        raise QuotaError(f"quota kind must be 'user' or 'group', got {kind!r}") from None


# --- numbers ------------------------------------------------------------------------------

# Plain decimals only: no exponent, no '+', no nan/inf, no '_' (which int() would take).
_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_MAX_NUMBER_CHARS = 40


def _decimal(value: object, where: str) -> Decimal:
    """`value` (int, float or decimal text) as an exact Decimal."""
    if isinstance(value, bool):
        raise QuotaError(f"{where} must be a number, got a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuotaError(f"{where} must be a finite number, got {value!r}")
        # repr is the shortest text that reads back as this float: 0.1 is 0.1, not
        # 0.1000000000000000055...
        return Decimal(repr(value))
    if isinstance(value, str):
        text = value.strip()
        if len(text) > _MAX_NUMBER_CHARS or not _NUMBER.fullmatch(text):
            raise QuotaError(f"{where} must be a number, got {value[:_MAX_NUMBER_CHARS]!r}")
        return Decimal(text)
    raise QuotaError(f"{where} must be a number, got {type(value).__name__}")


def _scaled(number: Decimal, metric: str, where: str) -> int:
    """A non-negative amount of `metric` in internal units; refuses fractions the metric
    cannot hold and absurd sizes."""
    if metric in _CPU_METRICS:
        if number > MAX_CPU:
            raise QuotaError(f"{where} = {number} exceeds the maximum of {MAX_CPU}")
        hundredths = number * CPU_SCALE
        if hundredths != hundredths.to_integral_value():
            raise QuotaError(f"{where} = {number} has more than 2 decimals")
        return int(hundredths)
    if number > MAX_VALUE:
        raise QuotaError(f"{where} = {number} exceeds the maximum of 2**53")
    if number != number.to_integral_value():
        raise QuotaError(f"{where} must be a whole number, got {number}")
    return int(number)


def _limit(value: object, metric: str, where: str) -> int:
    number = _decimal(value, where)
    if number in (DEFAULT, UNLIMITED):
        return int(number)
    if number < 0:
        raise QuotaError(
            f"{where} = {number} is not a limit: use a number >= 0,"
            " -1 (the default quota) or -2 (unlimited)"
        )
    return _scaled(number, metric, where)


def _delta(value: object, metric: str, where: str) -> int:
    number = _decimal(value, where)
    if number < 0:
        raise QuotaError(f"{where} = {number}: a usage must be >= 0")
    return _scaled(number, metric, where)


def _quota_id(value: object, where: str) -> int:
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int):
        raise QuotaError(f"{where}: ID must be a non-negative integer, got {value!r}")
    if not 0 <= value <= MAX_ID:
        raise QuotaError(f"{where}: ID must be 0..{MAX_ID}, got {value}")
    return value


def _public(metric: str, internal: int) -> int | float:
    """A stored value in the structured form's units (CPUs, MB, counts)."""
    if metric not in _CPU_METRICS or internal < 0:
        return internal
    whole, rest = divmod(internal, CPU_SCALE)
    return whole if rest == 0 else internal / CPU_SCALE


def _show(metric: str, internal: int) -> str:
    """A stored value as text, exactly (4.5, 10, -1), as in messages and templates."""
    if metric not in _CPU_METRICS or internal < 0:
        return str(internal)
    whole, rest = divmod(internal, CPU_SCALE)
    return str(whole) if rest == 0 else f"{whole}.{rest:02d}".rstrip("0")


# --- parsing the text and the structured form ------------------------------------------


def _where(section: Section, qid: int | None) -> str:
    return section.name if qid is None else f"{section.name} ID {qid}"


def _section(name: object) -> Section:
    if not isinstance(name, str) or name.upper() not in SECTIONS:
        raise QuotaError(f"{name!r} is not a quota section (expected {', '.join(SECTIONS)})")
    return SECTIONS[name.upper()]


def _parse_vector(section: Section, raw: object) -> tuple[int | None, dict[str, int | float]]:
    """One vector of limits: (its ID or None, {METRIC: public value}). `<METRIC>_USED`
    attributes are skipped: usage is not settable (as in OpenNebula), and so the text
    `format_quota` prints can be edited and sent back."""
    if not isinstance(raw, Mapping):
        raise QuotaError(
            f"{section.name} must be a vector ({section.name} = [ ... ]), got {type(raw).__name__}"
        )
    attrs: dict[str, object] = {}
    for key, value in raw.items():
        if not isinstance(key, str):
            raise QuotaError(f"{section.name}: attribute names must be strings, got {key!r}")
        name = key.upper()
        if name in attrs:
            raise QuotaError(f"{section.name}: attribute {name} given twice")
        attrs[name] = value
    qid: int | None = None
    if section.per_id:
        if "ID" not in attrs:
            raise QuotaError(f"{section.name}: missing ID (the {section.what}'s id)")
        qid = _quota_id(attrs.pop("ID"), section.name)
    where = _where(section, qid)
    limits: dict[str, int | float] = {}
    for name, value in attrs.items():
        if name in section.metrics:
            limits[name] = _public(name, _limit(value, name, f"{where}: {name}"))
        elif name.endswith("_USED") and name[: -len("_USED")] in section.metrics:
            continue
        else:
            hint = " (VM quotas have no ID)" if name == "ID" else ""
            raise QuotaError(
                f"{where}: unknown attribute {name}{hint} (expected {', '.join(section.metrics)})"
            )
    return qid, limits


def parse_quota(source: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """Limits from OpenNebula quota template text or from the structured form, validated
    and returned in the structured form (sections in OpenNebula's order, vectors by ID).
    Raises QuotaError naming the section, the ID and the metric."""
    vectors: list[tuple[Section, object]] = []
    if isinstance(source, str | bytes):
        try:
            parsed = template.parse(source)
        except template.TemplateError as e:
            raise QuotaError(f"quota template: {e}") from None
        for name, value in parsed:
            section = _section(name)
            vectors.append((section, dict(value) if isinstance(value, list) else value))
    elif isinstance(source, Mapping):
        seen: set[str] = set()
        for name, value in source.items():
            section = _section(name)
            if section.name in seen:
                raise QuotaError(f"section {section.name} given twice")
            seen.add(section.name)
            if section.per_id and isinstance(value, list | tuple):
                vectors.extend((section, v) for v in value)
            else:
                vectors.append((section, value))
    else:
        raise QuotaError(f"a quota must be template text or a map, got {type(source).__name__}")

    by_section: dict[str, dict[int | None, dict[str, int | float]]] = {}
    for section, raw in vectors:
        qid, limits = _parse_vector(section, raw)
        entries = by_section.setdefault(section.name, {})
        if qid in entries:
            raise QuotaError(f"{_where(section, qid)} given twice")
        entries[qid] = limits

    out: dict[str, Any] = {}
    for name, section in SECTIONS.items():
        entries = by_section.get(name)
        if entries is None:
            continue
        if section.per_id:
            out[name] = [{"ID": qid, **entries[qid]} for qid in sorted(entries)]  # type: ignore[type-var]
        else:
            out[name] = entries[None]
    return out


# --- records ------------------------------------------------------------------------------


def _implicit(is_default: bool) -> int:
    # What an unset limit means: in a user/group record "use the default" (-1); in a
    # default record "unlimited" (-2). OpenNebula fills unset limits the same way.
    return UNLIMITED if is_default else DEFAULT


def _blank(section: Section, is_default: bool) -> dict[str, int]:
    entry: dict[str, int] = {}
    for metric in section.metrics:
        entry[metric] = _implicit(is_default)
        if not is_default:
            entry[metric + "_USED"] = 0
    return entry


def _entry(record: Mapping[str, Any] | None, section: Section, qid: int | None) -> Any:
    if not record:
        return None
    value = record.get(section.name)
    if value is None or qid is None:
        return value
    return value.get(str(qid))


def _entries(record: Mapping[str, Any] | None) -> dict[tuple[str, int | None], dict[str, int]]:
    """Every vector of `record` as a fresh mutable copy, keyed (section, id)."""
    out: dict[tuple[str, int | None], dict[str, int]] = {}
    for name, section in SECTIONS.items():
        value = (record or {}).get(name)
        if value is None:
            continue
        if section.per_id:
            for qid, entry in value.items():
                out[(name, int(qid))] = dict(entry)
        else:
            out[(name, None)] = dict(value)
    return out


def _build(
    entries: dict[tuple[str, int | None], dict[str, int]], is_default: bool
) -> dict[str, Any] | None:
    """The canonical record: sections in order, IDs ascending, metrics in order, blank
    vectors dropped; None when nothing is left (the key is then deleted)."""
    record: dict[str, Any] = {}
    for name, section in SECTIONS.items():
        keys = sorted(qid for (s, qid) in entries if s == name and qid is not None)
        blank = _blank(section, is_default)
        canonical: dict[str | None, dict[str, int]] = {}
        for qid in [None] if not section.per_id else keys:
            entry = entries.get((name, qid))
            if entry is None:
                continue
            ordered = {k: entry.get(k, v) for k, v in blank.items()}
            if ordered != blank:
                canonical[None if qid is None else str(qid)] = ordered
        if not canonical:
            continue
        record[name] = canonical if section.per_id else canonical[None]
    return record or None


def merge_limits(
    record: Mapping[str, Any] | None,
    quota: str | bytes | Mapping[str, Any],
    *,
    is_default: bool = False,
) -> dict[str, Any] | None:
    """`record` with the limits of `quota` (text or structured form) set; counters and
    limits not named are kept. A limit may go below the current usage (as OpenNebula): it
    only blocks further charges. A default quota takes no -1 (it is the default itself)."""
    parsed = parse_quota(quota)
    entries = _entries(record)
    for name, value in parsed.items():
        section = SECTIONS[name]
        for vector in value if section.per_id else [value]:
            qid = vector.get("ID") if section.per_id else None
            entry = entries.setdefault((name, qid), _blank(section, is_default))
            for metric, limit in vector.items():
                if metric == "ID":
                    continue
                internal = _limit(limit, metric, f"{_where(section, qid)}: {metric}")
                if is_default and internal == DEFAULT:
                    raise QuotaError(
                        f"{_where(section, qid)}: {metric} = -1 (use the default quota)"
                        " is meaningless in a default quota: use -2 for unlimited"
                    )
                entry[metric] = internal
    return _build(entries, is_default)


def to_public(record: Mapping[str, Any] | None) -> dict[str, Any]:
    """A stored record in the structured form, counters included (for the API)."""
    out: dict[str, Any] = {}
    for (name, qid), entry in _entries(record).items():
        values = {k: _public(k.removesuffix("_USED"), v) for k, v in entry.items()}
        if qid is None:
            out[name] = values
        else:
            out.setdefault(name, []).append({"ID": qid, **values})
    return out


def format_quota(record: Mapping[str, Any] | None) -> str:
    """A stored record (or None: no quota) as OpenNebula quota template text, limits and
    counters; `parse_quota` reads it back (ignoring the counters)."""
    tmpl = template.Template()
    for (name, qid), entry in _entries(record).items():
        pairs = [] if qid is None else [("ID", str(qid))]
        pairs += [(k, _show(k.removesuffix("_USED"), v)) for k, v in entry.items()]
        tmpl.append(name, pairs)
    return template.render(tmpl)


# --- usage --------------------------------------------------------------------------------


def check_usage(usage: Usage) -> _Deltas:
    """Validated usage deltas in internal units and canonical order; QuotaError names
    the section, the ID and the metric of a bad one."""
    if not isinstance(usage, Mapping):
        raise QuotaError(f"a usage must be a map, got {type(usage).__name__}")
    given: dict[tuple[str, int | None], Mapping[Any, Any]] = {}
    for name, value in usage.items():
        section = _section(name)
        if section.name != name:
            raise QuotaError(f"usage section {name!r} must be written {section.name}")
        if not isinstance(value, Mapping):
            raise QuotaError(f"usage of {name} must be a map, got {type(value).__name__}")
        if section.per_id:
            for qid, metrics in value.items():
                if isinstance(qid, bool) or not isinstance(qid, int) or not 0 <= qid <= MAX_ID:
                    raise QuotaError(f"usage of {name}: ID must be 0..{MAX_ID}, got {qid!r}")
                given[(name, qid)] = metrics
        else:
            given[(name, None)] = value
    deltas: _Deltas = {}
    for key in sorted(given, key=lambda k: (list(SECTIONS).index(k[0]), k[1] or 0)):
        section = SECTIONS[key[0]]
        where = _where(section, key[1])
        metrics = given[key]
        if not isinstance(metrics, Mapping):
            raise QuotaError(f"usage of {where} must be a map, got {type(metrics).__name__}")
        unknown = sorted(str(m) for m in metrics if m not in section.metrics)
        if unknown:
            raise QuotaError(
                f"usage of {where}: unknown metric(s) {', '.join(unknown)}"
                f" (expected {', '.join(section.metrics)})"
            )
        deltas[key] = {
            m: _delta(metrics[m], m, f"usage of {where}: {m}")
            for m in section.metrics
            if m in metrics
        }
    return deltas


def _usage_or_reject(usage: Usage) -> _Deltas:
    try:
        return check_usage(usage)
    except QuotaError as e:
        raise bad(str(e)) from None


def _owner_id(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad(f"quota owner {what} must be a non-negative integer, got {value!r}")
    return value


def _refusal(kind: str, oid: int, section: Section, qid: int | None, message: str) -> Reject:
    # OpenNebula: "user [5] limit of 10 reached for VMS quota in VM" inside
    # "[one.vm.allocate] User [5] : ...". Here: "User [5] : limit of 10 reached for VMS
    # quota in VM." and, per ID, "... in DATASTORE with ID: 1."
    with_id = "" if qid is None else f" with ID: {qid}"
    return Reject(
        ErrorCode.ALLOCATE,
        f"{_KINDS[kind].title} [{oid}] : {message} quota in {section.name}{with_id}.",
    )


def _check(
    kind: str,
    oid: int,
    record: Mapping[str, Any] | None,
    defaults: Mapping[str, Any] | None,
    deltas: _Deltas,
) -> None:
    """Refuse if a metric named in `deltas` would go over its effective limit. As in
    OpenNebula a named metric is checked even when its delta is 0, so an owner already
    over a lowered limit gets no new object counting in that metric."""
    for (name, qid), request in deltas.items():
        section = SECTIONS[name]
        entry = _entry(record, section, qid) or {}
        default_entry = _entry(defaults, section, qid) or {}
        for metric, delta in request.items():
            limit = entry.get(metric, DEFAULT)
            if limit == DEFAULT:
                limit = default_entry.get(metric, UNLIMITED)
            if limit < 0:  # unlimited (a -1 in a default record can only mean that too)
                continue
            if entry.get(metric + "_USED", 0) + delta > limit:
                shown = _show(metric, limit)
                raise _refusal(kind, oid, section, qid, f"limit of {shown} reached for {metric}")


def _counted(
    kind: str, oid: int, record: Mapping[str, Any] | None, deltas: _Deltas, sign: int
) -> dict[str, Any] | None:
    """`record` with the counters raised (sign 1) or lowered (sign -1, never below 0)."""
    entries = _entries(record)
    for (name, qid), request in deltas.items():
        section = SECTIONS[name]
        entry = entries.get((name, qid))
        if entry is None:
            if sign < 0:
                continue  # nothing counted there: nothing to lower
            entry = entries[(name, qid)] = _blank(section, False)
        for metric, delta in request.items():
            used = entry.get(metric + "_USED", 0) + sign * delta
            if used > MAX_USED:
                raise _refusal(kind, oid, section, qid, f"usage counter overflow for {metric}")
            entry[metric + "_USED"] = max(0, used)
    return _build(entries, False)


def record_mutations(key: bytes, old: Any, new: dict[str, Any] | None) -> list[Mutation]:
    """What turns the record at `key` from `old` into `new` (None: no record): nothing,
    a put, or a delete."""
    if new == old or (new is None and not old):
        return []
    return [("del", schema.QUOTAS, key)] if new is None else [("put", schema.QUOTAS, key, new)]


def charge(view: View, uid: int, gid: int, usage: Usage, check: bool = True) -> list[Mutation]:
    """Check `usage` against the quota of user `uid` and of group `gid` (each metric
    against its effective limit: the record's, else the default quota's, else
    unlimited) and return the mutations raising both records' counters. A refusal is
    Reject(ALLOCATE) naming the owner, the limit, the metric and the section; nothing is
    charged then. uid 0 and gid 0 (oneadmin) are never limited, but their usage is
    counted. `check=False` counts without checking: for what already happened (a VM's
    outcome on a host must be counted even if a limit was lowered meanwhile)."""
    uid, gid = _owner_id(uid, "uid"), _owner_id(gid, "gid")
    deltas = _usage_or_reject(usage)
    owners = ((USER, uid), (GROUP, gid))
    records = {kind: view.get(schema.QUOTAS, record_key(kind, oid)) for kind, oid in owners}
    # Every check before any counting: a refusal by the group charges the user nothing.
    for kind, oid in owners:
        if check and oid != 0:
            defaults = view.get(schema.QUOTAS, default_key(kind))
            _check(kind, oid, records[kind], defaults, deltas)
    mutations: list[Mutation] = []
    for kind, oid in owners:
        new = _counted(kind, oid, records[kind], deltas, 1)
        mutations += record_mutations(record_key(kind, oid), records[kind], new)
    return mutations


def release(view: View, uid: int, gid: int, usage: Usage) -> list[Mutation]:
    """The mutations lowering the counters of user `uid` and group `gid` by `usage`
    (never below 0); the inverse of `charge`."""
    uid, gid = _owner_id(uid, "uid"), _owner_id(gid, "gid")
    deltas = _usage_or_reject(usage)
    mutations: list[Mutation] = []
    for kind, oid in ((USER, uid), (GROUP, gid)):
        old = view.get(schema.QUOTAS, record_key(kind, oid))
        new = _counted(kind, oid, old, deltas, -1)
        mutations += record_mutations(record_key(kind, oid), old, new)
    return mutations
