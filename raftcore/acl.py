"""OpenNebula ACL rules: the 64-bit encoding, the string form, and `oneacl list` columns.

A rule is four 64-bit integers, exactly as OpenNebula stores them (AclRule.h):

    user     = selector flag | id                 (#uid, @gid, *)
    resource = type bits | selector flag | id     (VM+IMAGE/#oid, /@gid, /%cid, /*)
    rights   = USE 0x1 | MANAGE 0x2 | ADMIN 0x4 | CREATE 0x8
    zone     = selector flag | id                 (#zid, *)

and its text is `USER RESOURCES/SELECTOR RIGHTS [ZONE]`, e.g.
`#5 IMAGE+TEMPLATE/@103 USE+MANAGE #0`. `parse` and `format` convert between the two
(`parse(format(r)) == r`); `validate` checks integers that arrive in commands. The
semantic checks are OpenNebula's `AclRule::malformed`, so a rule accepted here is one
oned would accept. Pure: no I/O.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Iterable
from dataclasses import dataclass

# --- the encoding -------------------------------------------------------------------

INDIVIDUAL = 0x1_0000_0000  # '#'
GROUP = 0x2_0000_0000  # '@'
ALL = 0x4_0000_0000  # '*'
CLUSTER = 0x8_0000_0000  # '%'

ID_MASK = 0xFFFF_FFFF
SELECTOR_MASK = 0xF_0000_0000
TYPE_MASK = 0xFFFF_FFF0_0000_0000
# OpenNebula reads the id half as a C int, so ids past 2**31 - 1 come back negative and
# oned refuses them ("ID cannot be negative"): the same bound here.
MAX_ID = 2**31 - 1

# The resource types a rule may name, in OpenNebula's printing order
# (PoolObjectSQL::ObjectType, AclRule::pool_objects).
RESOURCE_TYPES: dict[str, int] = {
    "VM": 0x0000_0010_0000_0000,
    "HOST": 0x0000_0020_0000_0000,
    "NET": 0x0000_0040_0000_0000,
    "IMAGE": 0x0000_0080_0000_0000,
    "USER": 0x0000_0100_0000_0000,
    "TEMPLATE": 0x0000_0200_0000_0000,
    "GROUP": 0x0000_0400_0000_0000,
    "DATASTORE": 0x0000_1000_0000_0000,
    "CLUSTER": 0x0000_2000_0000_0000,
    "DOCUMENT": 0x0000_4000_0000_0000,
    "ZONE": 0x0000_8000_0000_0000,
    "SECGROUP": 0x0001_0000_0000_0000,
    "VDC": 0x0002_0000_0000_0000,
    "VROUTER": 0x0004_0000_0000_0000,
    "MARKETPLACE": 0x0008_0000_0000_0000,
    "MARKETPLACEAPP": 0x0010_0000_0000_0000,
    "VMGROUP": 0x0020_0000_0000_0000,
    "VNTEMPLATE": 0x0040_0000_0000_0000,
    "BACKUPJOB": 0x0100_0000_0000_0000,
}
# Object types that exist for authorization but that no rule can name (OpenNebula leaves
# them out of pool_objects): only oneadmin ever holds rights on them.
UNNAMEABLE_TYPES: dict[str, int] = {
    "ACL": 0x0000_0800_0000_0000,
    "HOOK": 0x0080_0000_0000_0000,
}
OBJECT_TYPES: dict[str, int] = {**RESOURCE_TYPES, **UNNAMEABLE_TYPES}
ALL_RESOURCE_BITS = sum(RESOURCE_TYPES.values())

RIGHTS: dict[str, int] = {"USE": 0x1, "MANAGE": 0x2, "ADMIN": 0x4, "CREATE": 0x8}
ALL_RIGHTS = sum(RIGHTS.values())

SELECTORS: dict[str, int] = {"#": INDIVIDUAL, "@": GROUP, "*": ALL, "%": CLUSTER}
_SELECTOR_CHAR = {flag: char for char, flag in SELECTORS.items()}
_SELECTOR_NAME = {INDIVIDUAL: "#id", GROUP: "@gid", ALL: "*", CLUSTER: "%cid"}

# Which selectors each component accepts (AclRule::malformed).
COMPONENT_SELECTORS: dict[str, tuple[int, ...]] = {
    "user": (INDIVIDUAL, GROUP, ALL),
    "resource": (INDIVIDUAL, GROUP, ALL, CLUSTER),
    "zone": (INDIVIDUAL, ALL),
}


def _mask(*names: str) -> int:
    return sum(RESOURCE_TYPES[n] for n in names)


# Only objects that live in clusters can be selected by cluster (OpenNebula names these
# three in its error message).
CLUSTER_SELECTABLE = _mask("HOST", "NET", "DATASTORE")
# Objects without an owning group cannot be selected by group.
NOT_GROUP_SELECTABLE = _mask("HOST", "GROUP", "CLUSTER", "ZONE", "VDC")
# Object ids are per zone except for these: only they may take '#id' in a rule for all
# zones.
FEDERATED = _mask("USER", "GROUP", "ZONE", "VDC")


class AclSyntaxError(ValueError):
    """A rule string or encoded rule that OpenNebula would refuse; the message says why."""


@dataclass(frozen=True)
class Rule:
    """One ACL rule, integer-encoded; `id` is None until the rule is stored."""

    id: int | None
    user: int
    resource: int
    rights: int
    zone: int

    def to_record(self) -> dict:
        return {
            "id": self.id,
            "user": self.user,
            "resource": self.resource,
            "rights": self.rights,
            "zone": self.zone,
        }

    @classmethod
    def from_record(cls, record: dict) -> Rule:
        """The rule of a stored record (validated: records also come from commands)."""
        if not isinstance(record, dict):
            raise AclSyntaxError(f"an ACL record must be a map, got {type(record).__name__}")
        missing = [k for k in _RECORD_KEYS if k not in record]
        if missing:
            raise AclSyntaxError(f"ACL record lacks {', '.join(missing)}")
        extra = sorted(str(k) for k in record if k not in _RECORD_KEYS)
        if extra:
            raise AclSyntaxError(f"ACL record has unknown field(s) {', '.join(extra)}")
        rule = cls(**{k: record[k] for k in _RECORD_KEYS})
        validate(rule)
        return rule


_RECORD_KEYS = ("id", "user", "resource", "rights", "zone")

# --- validation of the integers -------------------------------------------------------


def _names(mask: int, table: dict[str, int]) -> list[str]:
    return [name for name, bit in table.items() if mask & bit]


def _check_int(field: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise AclSyntaxError(f"ACL field {field!r} must be an integer, got {type(value).__name__}")
    if not 0 <= value < 2**64:
        raise AclSyntaxError(f"ACL field {field!r} must be an unsigned 64-bit integer, got {value}")
    return value


def _check_selector(field: str, value: int, extra_bits: int = 0) -> tuple[int, int]:
    """(flag, id) of an encoded selector; `extra_bits` are bits the caller checks itself."""
    allowed = COMPONENT_SELECTORS[field]
    stray = value & ~(SELECTOR_MASK | ID_MASK | extra_bits)
    if stray:
        raise AclSyntaxError(f"ACL field {field!r} = {value:#x} has unknown bits {stray:#x}")
    flag, ident = value & SELECTOR_MASK, value & ID_MASK
    if flag not in allowed:
        shown = ", ".join(f"{_SELECTOR_NAME[f]} ({f:#x})" for f in allowed)
        raise AclSyntaxError(
            f"ACL field {field!r} = {value:#x} needs exactly one selector flag of {shown}, "
            f"got {flag:#x}"
        )
    if flag == ALL and ident != 0:
        raise AclSyntaxError(f"ACL field {field!r} = {value:#x}: the * selector takes id 0")
    if ident > MAX_ID:
        raise AclSyntaxError(f"ACL field {field!r} = {value:#x}: id {ident} exceeds {MAX_ID}")
    return flag, ident


def validate(rule: Rule) -> None:
    """Raise AclSyntaxError naming the bad field if `rule` is not a rule oned would accept."""
    if rule.id is not None:
        if not isinstance(rule.id, int) or isinstance(rule.id, bool) or rule.id < 0:
            raise AclSyntaxError(f"ACL field 'id' must be None or an id >= 0, got {rule.id!r}")
    user = _check_int("user", rule.user)
    resource = _check_int("resource", rule.resource)
    rights = _check_int("rights", rule.rights)
    zone = _check_int("zone", rule.zone)
    _check_selector("user", user)
    types = resource & TYPE_MASK
    unknown = types & ~ALL_RESOURCE_BITS
    if unknown:
        raise AclSyntaxError(
            f"ACL field 'resource' = {resource:#x} has unknown resource type bits {unknown:#x}"
        )
    if not types:
        raise AclSyntaxError(f"ACL field 'resource' = {resource:#x} names no resource type")
    res_flag, _ = _check_selector("resource", resource, extra_bits=TYPE_MASK)
    if not 0 < rights <= ALL_RIGHTS:
        raise AclSyntaxError(
            f"ACL field 'rights' = {rights:#x} must be a non-empty combination of "
            f"USE 0x1, MANAGE 0x2, ADMIN 0x4, CREATE 0x8"
        )
    zone_flag, _ = _check_selector("zone", zone)
    _check_semantics(types, res_flag, zone_flag)


def _check_semantics(types: int, res_flag: int, zone_flag: int) -> None:
    """OpenNebula's rules on which selectors suit which types (AclRule::malformed)."""
    if res_flag == CLUSTER and types & ~CLUSTER_SELECTABLE:
        bad = "+".join(_names(types & ~CLUSTER_SELECTABLE, RESOURCE_TYPES))
        raise AclSyntaxError(
            f"resource selector %cid applies only to HOST, NET and DATASTORE, not to {bad}"
        )
    if res_flag == GROUP and types & NOT_GROUP_SELECTABLE:
        bad = "+".join(_names(types & NOT_GROUP_SELECTABLE, RESOURCE_TYPES))
        raise AclSyntaxError(
            f"resource selector @gid cannot apply to HOST, GROUP, CLUSTER, ZONE or VDC "
            f"(they have no group), got {bad}"
        )
    if res_flag == INDIVIDUAL and zone_flag == ALL and types & ~FEDERATED:
        bad = "+".join(_names(types & ~FEDERATED, RESOURCE_TYPES))
        raise AclSyntaxError(
            f"resource selector #id with zone * applies only to USER, GROUP, ZONE and VDC "
            f"(other ids are per zone), not to {bad}; give the zone as #zid"
        )


# --- the string form --------------------------------------------------------------------

_DIGITS = re.compile(r"[0-9]+")
GRAMMAR = "USER RESOURCES/SELECTOR RIGHTS [ZONE]"


def _parse_selector(component: str, token: str) -> int:
    """'#5' -> INDIVIDUAL | 5, etc.; errors say which component and what it accepts."""
    allowed = COMPONENT_SELECTORS[component]
    accepts = ", ".join(_SELECTOR_NAME[f] for f in allowed)
    if not token:
        raise AclSyntaxError(f"{component} selector is empty; expected one of {accepts}")
    flag = SELECTORS.get(token[0])
    if flag is None:
        raise AclSyntaxError(
            f"{component} selector {token!r} must start with one of "
            f"{' '.join(_SELECTOR_CHAR[f] for f in allowed)} ({accepts})"
        )
    if flag not in allowed:
        why = " (the cluster selector only selects resources)" if flag == CLUSTER else ""
        raise AclSyntaxError(
            f"{component} selector {token!r} is not allowed{why}; expected one of {accepts}"
        )
    digits = token[1:]
    if flag == ALL:
        if digits:
            raise AclSyntaxError(f"{component} selector {token!r}: '*' takes no id")
        return ALL
    if not _DIGITS.fullmatch(digits):
        what = "is missing" if not digits else f"{digits!r} is not a non-negative integer"
        raise AclSyntaxError(f"{component} selector {token!r}: the id {what}")
    ident = int(digits)
    if ident > MAX_ID:
        raise AclSyntaxError(f"{component} selector {token!r}: id {ident} exceeds {MAX_ID}")
    return flag | ident


def _parse_names(component: str, text: str, table: dict[str, int], where: str) -> int:
    """'VM+image' -> the OR of the bits; names are case-insensitive as in OpenNebula."""
    if not text:
        raise AclSyntaxError(f"no {component} in {where}; allowed: {', '.join(table)}")
    mask = 0
    for name in text.split("+"):
        if not name:
            raise AclSyntaxError(f"empty {component} name in {where} (stray '+')")
        bit = table.get(name.upper())
        if bit is None:
            hint = ""
            if name.upper() in UNNAMEABLE_TYPES:
                hint = f" ({name.upper()} cannot be named in a rule: only oneadmin has it)"
            raise AclSyntaxError(
                f"unknown {component} {name!r} in {where}{hint}; allowed: {', '.join(table)}"
            )
        if mask & bit:
            raise AclSyntaxError(f"{component} {name.upper()} repeated in {where}")
        mask |= bit
    return mask


def parse(text: str, default_zone: int = 0) -> Rule:
    """A rule from `USER RESOURCES/SELECTOR RIGHTS [ZONE]` (id None).

    Components are separated by any run of whitespace; type and right names are
    case-insensitive; a missing ZONE means `#default_zone` (the current zone).
    """
    if not isinstance(text, str):
        raise AclSyntaxError(f"an ACL rule must be a string, got {type(text).__name__}")
    if not isinstance(default_zone, int) or not 0 <= default_zone <= MAX_ID:
        raise AclSyntaxError(f"default zone must be an id 0..{MAX_ID}, got {default_zone!r}")
    parts = text.split()
    if not parts:
        raise AclSyntaxError(f"empty ACL rule; expected {GRAMMAR}")
    if len(parts) not in (3, 4):
        raise AclSyntaxError(
            f"an ACL rule has 3 or 4 components ({GRAMMAR}), got {len(parts)} in {text!r}"
        )
    user = _parse_selector("user", parts[0])
    resources = parts[1]
    if resources.count("/") != 1:
        raise AclSyntaxError(
            f"resource component {resources!r} must be TYPE[+TYPE...]/SELECTOR with one "
            f"'/', e.g. VM+IMAGE/@100 (write /* for all objects)"
        )
    type_text, selector = resources.split("/")
    types = _parse_names("resource type", type_text, RESOURCE_TYPES, f"resources {resources!r}")
    res_selector = _parse_selector("resource", selector)
    rights = _parse_names("right", parts[2], RIGHTS, f"rights {parts[2]!r}")
    zone = _parse_selector("zone", parts[3]) if len(parts) == 4 else INDIVIDUAL | default_zone
    _check_semantics(types, res_selector & SELECTOR_MASK, zone & SELECTOR_MASK)
    return Rule(None, user, types | res_selector, rights, zone)


def _selector_str(value: int) -> str:
    flag = value & SELECTOR_MASK
    return "*" if flag == ALL else f"{_SELECTOR_CHAR[flag]}{value & ID_MASK}"


def format(rule: Rule) -> str:  # shadows the builtin on purpose: call it as acl.format
    """The canonical string (types and rights in OpenNebula's order, zone always shown)."""
    validate(rule)
    types = "+".join(_names(rule.resource, RESOURCE_TYPES))
    rights = "+".join(_names(rule.rights, RIGHTS))
    return (
        f"{_selector_str(rule.user)} {types}/{_selector_str(rule.resource)} "
        f"{rights} {_selector_str(rule.zone)}"
    )


# --- storage keys -----------------------------------------------------------------------

_U64 = struct.Struct(">Q")


def selector_key(flag: int, ident: int = 0) -> bytes:
    """8-byte big-endian encoded user selector: the acls_by_user prefix of its rules."""
    return _U64.pack(flag | ident)


def user_key(rule: Rule) -> bytes:
    """The acls_by_user prefix of `rule` (its encoded user selector)."""
    return _U64.pack(rule.user)


def by_user_key(rule: Rule) -> bytes:
    """The full acls_by_user key: user selector + rule id (as schema.pair_key)."""
    if rule.id is None:
        raise AclSyntaxError("a rule needs an id before it is stored")
    return _U64.pack(rule.user) + _U64.pack(rule.id)


# --- `oneacl list` ----------------------------------------------------------------------

# One letter per resource type, in RESOURCE_TYPES order (OneAclHelper.resource_mask).
RESOURCE_LETTERS: dict[str, str] = {
    "VM": "V",
    "HOST": "H",
    "NET": "N",
    "IMAGE": "I",
    "USER": "U",
    "TEMPLATE": "T",
    "GROUP": "G",
    "DATASTORE": "D",
    "CLUSTER": "C",
    "DOCUMENT": "O",
    "ZONE": "Z",
    "SECGROUP": "S",
    "VDC": "v",
    "VROUTER": "R",
    "MARKETPLACE": "M",
    "MARKETPLACEAPP": "A",
    "VMGROUP": "P",
    "VNTEMPLATE": "t",
    "BACKUPJOB": "B",
}
RIGHT_LETTERS: dict[str, str] = {"USE": "u", "MANAGE": "m", "ADMIN": "a", "CREATE": "c"}

RESOURCE_COLUMN = "RES_" + "".join(RESOURCE_LETTERS.values())  # RES_VHNIUTGDCOZSvRMAPtB
RIGHTS_COLUMN = "OPE_" + "".join(RIGHT_LETTERS[r].upper() for r in RIGHTS)  # OPE_UMAC
# (name, width) of the default columns; oneacl right-aligns and truncates every cell to
# its width (CLIHelper "%W.Ws") and joins cells with one space.
LIST_COLUMNS: tuple[tuple[str, int], ...] = (
    ("ID", 5),
    ("USER", 8),
    (RESOURCE_COLUMN, 23),
    ("RID", 5),
    (RIGHTS_COLUMN, 8),
    ("ZONE", 5),
)


def resource_mask(rule: Rule) -> str:
    """'V--I-T---O-S----P-B': a letter for each type the rule names, '-' otherwise."""
    return "".join(
        RESOURCE_LETTERS[name] if rule.resource & bit else "-"
        for name, bit in RESOURCE_TYPES.items()
    )


def rights_mask(rule: Rule) -> str:
    """'um--': a letter for each right the rule grants."""
    return "".join(RIGHT_LETTERS[n] if rule.rights & bit else "-" for n, bit in RIGHTS.items())


def list_row(rule: Rule) -> dict[str, str]:
    """The cells of `rule` under each LIST_COLUMNS name, unpadded."""
    return {
        "ID": "" if rule.id is None else str(rule.id),
        "USER": _selector_str(rule.user),
        RESOURCE_COLUMN: resource_mask(rule),
        "RID": _selector_str(rule.resource),
        RIGHTS_COLUMN: rights_mask(rule),
        "ZONE": _selector_str(rule.zone),
    }


def _line(cells: Iterable[str]) -> str:
    return " ".join(
        f"{cell:>{width}.{width}}" for cell, (_, width) in zip(cells, LIST_COLUMNS, strict=True)
    ).rstrip()


def format_list(rules: Iterable[Rule]) -> str:
    """The `oneacl list` table: a header line and one line per rule."""
    lines = [_line(name for name, _ in LIST_COLUMNS)]
    for rule in rules:
        row = list_row(rule)
        lines.append(_line(row[name] for name, _ in LIST_COLUMNS))
    return "\n".join(lines)
