"""Address ranges (ARs) of virtual networks and their lease tables: OpenNebula's address
arithmetic, pure (no state, no clock, no randomness).

An AR is a record (str keys only, so it packs as msgpack)::

    {"ar_id": 0, "type": "IP4", "size": 10, "mac": "02:00:0a:00:00:01",
     "ip": "10.0.0.1",                      # IP4, IP4_6, IP4_6_STATIC
     "ip6": "2001:db8::10", "prefix_length": 64,      # IP6_STATIC, IP4_6_STATIC
     "global_prefix": "2001:db8::", "ula_prefix": "fd00::",   # IP6, IP4_6 (optional)
     "secgroups": [100],                    # the AR's own SECURITY_GROUPS
     "attrs": {"GATEWAY": "10.0.0.254"},   # any other attribute, kept as given
     "parent_network_ar_id": 2,             # only in a reservation's AR
     "leases": [{"index": 3, "vm": 7}, {"index": 4, "vm": -1},
                {"index": 5, "vrouter": 2}, {"index": 6, "vnet": 9}]}

Address `index` (0 <= index < size) of an AR is its first MAC + index and, by type, its
first IPv4 + index, its first static IPv6 + index, and SLAAC IPv6 addresses made of a /64
prefix and the EUI-64 of that MAC (OpenNebula's AddressRange). Types, as OpenNebula's:

    ETHER         MACs only                IP6           MAC + SLAAC (GLOBAL/ULA_PREFIX)
    IP4           MAC + IPv4               IP6_STATIC    MAC + IP6 (+ PREFIX_LENGTH)
    IP4_6         MAC + IPv4 + SLAAC       IP4_6_STATIC  MAC + IPv4 + IP6

MACs: MAC_PREFIX 02:00 (oned.conf's default) followed by the IPv4 address for ranges
with one, else the AR's MAC if given, else a MAC the caller derives (OpenNebula draws a
random one; the state machine may not, so vnets derive it from the network and AR ids).
As in OpenNebula an index moves only the low 32 bits of a MAC and of a static IPv6, so a
range may not run past them.

A lease is owned by exactly one of: a VM ("vm", -1 for an address on hold), a virtual
router ("vrouter", floating IPs) or a reservation ("vnet", the reserving network), and
`leases` is kept sorted by index. Every function here returns new records; none changes
its arguments.
"""

from __future__ import annotations

import bisect
import copy
import heapq
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

MAC_PREFIX = 0x0200  # oned.conf MAC_PREFIX = "02:00"
LOW32 = 1 << 32
MAX_SIZE = LOW32  # an index moves the low 32 bits only
HOLD = -1  # the "vm" of an address on hold
HOLDERS = ("vm", "vrouter", "vnet")


class LeaseError(ValueError):
    """Bad address-range input; the message names the AR, the attribute and the value."""


@dataclass(frozen=True)
class ArType:
    name: str
    ip4: bool  # an IPv4 range (IP)
    slaac: bool  # IPv6 from GLOBAL_PREFIX / ULA_PREFIX and the MAC (EUI-64)
    ip6_static: bool  # an IPv6 range (IP6, PREFIX_LENGTH)


AR_TYPES: dict[str, ArType] = {
    t.name: t
    for t in (
        ArType("ETHER", False, False, False),
        ArType("IP4", True, False, False),
        ArType("IP6", False, True, False),
        ArType("IP6_STATIC", False, False, True),
        ArType("IP4_6", True, True, False),
        ArType("IP4_6_STATIC", True, False, True),
    )
}

# Attributes with a meaning of their own (the rest is kept in "attrs").
_OWN = frozenset(
    {"AR_ID", "TYPE", "SIZE", "MAC", "IP", "IP6", "PREFIX_LENGTH", "GLOBAL_PREFIX"}
    | {"ULA_PREFIX", "SECURITY_GROUPS"}
)
# What OpenNebula computes or keeps itself: shown by `onevnet show`, dropped on input so
# a shown AR can be edited and sent back.
_COMPUTED = frozenset(
    {"ALLOCATED", "USED_LEASES", "LEASES", "PARENT_NETWORK_AR_ID", "PARENT_NETWORK"}
    | {"MAC_END", "IP_END", "IP6_END", "IP6_ULA", "IP6_ULA_END", "IP6_GLOBAL"}
    | {"IP6_GLOBAL_END"}
)
_UNSUPPORTED = {"IPAM_MAD": "external IPAM drivers (IPAM_MAD) are not supported"}
_MAC_RE = re.compile(r"[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}")


# --- address text <-> integers ----------------------------------------------------------


def ip4_int(text: str) -> int | None:
    try:
        return int(ipaddress.IPv4Address(text))
    except (ipaddress.AddressValueError, ValueError):
        return None


def ip4_text(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def ip6_int(text: str) -> int | None:
    try:
        return int(ipaddress.IPv6Address(text))
    except (ipaddress.AddressValueError, ValueError):
        return None


def ip6_text(value: int) -> str:
    return str(ipaddress.IPv6Address(value))


def mac_int(text: str) -> int | None:
    if not isinstance(text, str) or not _MAC_RE.fullmatch(text):
        return None
    return int(text.replace(":", ""), 16)


def mac_text(value: int) -> str:
    raw = f"{value:012x}"
    return ":".join(raw[i : i + 2] for i in range(0, 12, 2))


def eui64(prefix: int, mac: int) -> int:
    """The IPv6 address of `mac` in the /64 `prefix` (RFC 4291 modified EUI-64: the MAC's
    universal/local bit flipped, ff:fe in the middle)."""
    flipped = mac ^ (0x02 << 40)
    iid = ((flipped >> 24) << 40) | (0xFFFE << 24) | (flipped & 0xFFFFFF)
    return (prefix & ~((1 << 64) - 1)) | iid


LINK_LOCAL = int(ipaddress.IPv6Address("fe80::"))
ADDRESS_ATTRS = ("IP", "IP6", "MAC")  # how a client names one address


def parse_address(attr: str, text: Any) -> int | None:
    """The integer of an address given as IP, IP6 or MAC text; None if malformed."""
    if not isinstance(text, str):
        return None
    parse = {"IP": ip4_int, "IP6": ip6_int, "MAC": mac_int}[attr]
    return parse(text.strip())


def describe(attr: str) -> str:
    return {"IP": "an IPv4 address", "IP6": "an IPv6 address", "MAC": "a MAC (xx:xx:xx:xx:xx:xx)"}[
        attr
    ]


# --- parsing an AR vector --------------------------------------------------------------


def _whole(value: str, what: str, minimum: int, maximum: int) -> int:
    text = value.strip()
    if not text.isascii() or not text.isdigit():
        raise LeaseError(f"{what} must be a whole number {minimum}..{maximum}, got {value!r}")
    number = int(text)
    if not minimum <= number <= maximum:
        raise LeaseError(f"{what} must be {minimum}..{maximum}, got {number}")
    return number


def parse_id_list(value: str, what: str) -> list[int]:
    """'0, 100,100' -> [0, 100] (sorted, unique), as OpenNebula's split_unique."""
    ids: set[int] = set()
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isascii() or not part.isdigit():
            raise LeaseError(f"{what} must be a comma-separated list of ids, got {value!r}")
        ids.add(int(part))
    return sorted(ids)


def _prefix64(value: str, what: str) -> str:
    number = ip6_int(value.strip())
    if number is None:
        raise LeaseError(f"{what} {value!r} is not an IPv6 prefix (e.g. 2001:db8::)")
    if number & ((1 << 64) - 1):
        raise LeaseError(f"{what} {value!r} must be a /64 prefix: its last 64 bits must be 0")
    return ip6_text(number)


def _check_fits(low: int, size: int, what: str, first: str) -> None:
    if low + size > LOW32:
        raise LeaseError(
            f"{what} from {first} with SIZE {size} would run past the last 32 bits of the"
            f" address (at most {LOW32 - low} addresses from there)"
        )


def _default_static_size(ip6: int, prefix_length: int) -> int:
    """OpenNebula's SIZE of an IP6_STATIC range without one: the rest of the prefix from
    IP6; capped to what the low 32 bits can index."""
    span = 1 << min(128 - prefix_length, 64)
    first = ip6 & (span - 1)
    return max(1, min(span - first, LOW32 - (ip6 & (LOW32 - 1))))


def parse_ar(vector: Mapping[str, str], ar_id: int, mac_seed: int = 0) -> dict:
    """An AR record from an AR vector (upper-case names, text values). `mac_seed` gives the
    low 32 bits of the first MAC when the vector has neither MAC nor an IPv4 range."""
    where = f"AR {ar_id}"
    attrs = {k: v for k, v in vector.items() if k not in _COMPUTED}
    for name, reason in _UNSUPPORTED.items():
        if name in attrs:
            raise LeaseError(f"{where}: {reason}")
    raw_type = attrs.get("TYPE", "").strip().upper()
    if not raw_type:
        raise LeaseError(f"{where}: TYPE is missing (one of {', '.join(AR_TYPES)})")
    ar_type = AR_TYPES.get(raw_type)
    if ar_type is None:
        raise LeaseError(f"{where}: unknown TYPE {attrs['TYPE']!r} (one of {', '.join(AR_TYPES)})")
    for name, used in (
        ("IP", ar_type.ip4),
        ("IP6", ar_type.ip6_static),
        ("PREFIX_LENGTH", ar_type.ip6_static),
        ("GLOBAL_PREFIX", ar_type.slaac),
        ("ULA_PREFIX", ar_type.slaac),
    ):
        if name in attrs and not used:
            raise LeaseError(f"{where}: {name} is not used by TYPE {ar_type.name}")
    record: dict[str, Any] = {"ar_id": ar_id, "type": ar_type.name}

    size_text = attrs.get("SIZE", "").strip()
    size = _whole(size_text, f"{where}: SIZE", 1, MAX_SIZE) if size_text else None
    if ar_type.ip6_static:
        ip6 = _required(attrs, "IP6", where)
        ip6_value = ip6_int(ip6)
        if ip6_value is None:
            raise LeaseError(f"{where}: IP6 {ip6!r} is not an IPv6 address")
        pl = _whole(_required(attrs, "PREFIX_LENGTH", where), f"{where}: PREFIX_LENGTH", 1, 128)
        if size is None:
            size = _default_static_size(ip6_value, pl)
        _check_fits(ip6_value & (LOW32 - 1), size, f"{where}: IP6 range", ip6_text(ip6_value))
        record.update(ip6=ip6_text(ip6_value), prefix_length=pl)
    if size is None:
        raise LeaseError(f"{where}: SIZE is missing (the number of addresses, >= 1)")
    record["size"] = size
    ip_value = None
    if ar_type.ip4:
        ip = _required(attrs, "IP", where)
        ip_value = ip4_int(ip)
        if ip_value is None:
            raise LeaseError(f"{where}: IP {ip!r} is not an IPv4 address")
        _check_fits(ip_value, size, f"{where}: IP range", ip4_text(ip_value))
        record["ip"] = ip4_text(ip_value)
    if ar_type.slaac:
        for name in ("GLOBAL_PREFIX", "ULA_PREFIX"):
            if attrs.get(name, "").strip():
                record[name.lower()] = _prefix64(attrs[name], f"{where}: {name}")
    record["mac"] = mac_text(_first_mac(attrs, where, ip_value, size, mac_seed))
    record["secgroups"] = parse_id_list(
        attrs.get("SECURITY_GROUPS", ""), f"{where}: SECURITY_GROUPS"
    )
    record["attrs"] = {k: v for k, v in attrs.items() if k not in _OWN}
    record["leases"] = []
    return record


def _required(attrs: Mapping[str, str], name: str, where: str) -> str:
    value = attrs.get(name, "").strip()
    if not value:
        raise LeaseError(f"{where}: {name} is missing")
    return value


def _first_mac(
    attrs: Mapping[str, str], where: str, ip_value: int | None, size: int, seed: int
) -> int:
    given = attrs.get("MAC", "").strip()
    if given:
        mac = mac_int(given)
        if mac is None:
            raise LeaseError(f"{where}: MAC {given!r} is not a MAC (xx:xx:xx:xx:xx:xx)")
        _check_fits(mac & (LOW32 - 1), size, f"{where}: MAC range", mac_text(mac))
        return mac
    if ip_value is not None:
        return (MAC_PREFIX << 32) | ip_value
    # Any seed gives a range that fits in the low 32 bits.
    return (MAC_PREFIX << 32) | (seed % (LOW32 - size + 1))


# --- addresses -------------------------------------------------------------------------


def _int(ar: Mapping[str, Any], field: str) -> int:
    value = ar[field]
    parse = {"ip": ip4_int, "ip6": ip6_int, "mac": mac_int}[field]
    number = parse(value)
    assert number is not None, f"AR {ar['ar_id']}: bad stored {field} {value!r}"
    return number


def address(ar: Mapping[str, Any], index: int) -> dict[str, str]:
    """The NIC attributes of address `index`: MAC, and by type IP, IP6, IP6_GLOBAL,
    IP6_ULA, IP6_LINK (as OpenNebula's AddressRange::allocate_by_index)."""
    ar_type = AR_TYPES[ar["type"]]
    mac = _int(ar, "mac") + index
    out = {"MAC": mac_text(mac)}
    if ar_type.ip4:
        out["IP"] = ip4_text(_int(ar, "ip") + index)
    if ar_type.slaac:
        out["IP6_LINK"] = ip6_text(eui64(LINK_LOCAL, mac))
        if "ula_prefix" in ar:
            out["IP6_ULA"] = ip6_text(eui64(ip6_int(ar["ula_prefix"]) or 0, mac))
        if "global_prefix" in ar:
            out["IP6_GLOBAL"] = ip6_text(eui64(ip6_int(ar["global_prefix"]) or 0, mac))
    if ar_type.ip6_static:
        out["IP6"] = ip6_text(_int(ar, "ip6") + index)
    return out


def index_of(ar: Mapping[str, Any], attr: str, value: int) -> int | None:
    """The index of the address whose `attr` (IP, IP6 or MAC) is `value` in this AR, or
    None if it is not one of its addresses."""
    ar_type = AR_TYPES[ar["type"]]
    if attr == "IP":
        if not ar_type.ip4:
            return None
        first = _int(ar, "ip")
    elif attr == "IP6":
        if not ar_type.ip6_static:
            return None
        first = _int(ar, "ip6")
    else:
        first = _int(ar, "mac")
    index = value - first
    return index if 0 <= index < ar["size"] else None


def spans(ar: Mapping[str, Any]) -> dict[str, tuple[int, int]]:
    """The inclusive integer span of each address family of the AR."""
    ar_type = AR_TYPES[ar["type"]]
    last = ar["size"] - 1
    out = {"MAC": (_int(ar, "mac"), _int(ar, "mac") + last)}
    if ar_type.ip4:
        out["IP"] = (_int(ar, "ip"), _int(ar, "ip") + last)
    if ar_type.ip6_static:
        out["IP6"] = (_int(ar, "ip6"), _int(ar, "ip6") + last)
    return out


_FORMAT = {"IP": ip4_text, "IP6": ip6_text, "MAC": mac_text}


def overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> str | None:
    """'10.0.0.5..10.0.0.9': the addresses `a` and `b` share (IPv4 first, then IPv6, then
    MAC), or None. SLAAC addresses derive from the MAC, so distinct MACs keep them
    distinct."""
    sa, sb = spans(a), spans(b)
    for family in ("IP", "IP6", "MAC"):
        if family in sa and family in sb:
            lo = max(sa[family][0], sb[family][0])
            hi = min(sa[family][1], sb[family][1])
            if lo <= hi:
                fmt = _FORMAT[family]
                return fmt(lo) if lo == hi else f"{fmt(lo)}..{fmt(hi)}"
    return None


def first_last(ar: Mapping[str, Any]) -> dict[str, tuple[str, str]]:
    """Printable first and last addresses of each family (for `onevnet show`)."""
    first, last = address(ar, 0), address(ar, ar["size"] - 1)
    return {k: (first[k], last[k]) for k in first}


# --- the lease table -------------------------------------------------------------------


_INDEX = itemgetter("index")


def _indices(ar: Mapping[str, Any]) -> list[int]:
    return [lease["index"] for lease in ar["leases"]]


def _copy(ar: Mapping[str, Any], leases: list[dict]) -> dict:
    """A copy of `ar` holding `leases` (the lease table is copied lease by lease: its
    values are plain numbers, and deep-copying it costs as much as the whole op)."""
    new = copy.deepcopy({k: v for k, v in ar.items() if k != "leases"})
    new["leases"] = leases
    return new


def holder(lease: Mapping[str, Any]) -> tuple[str, int]:
    """("vm", 7), ("vm", -1) for a hold, ("vrouter", 2) or ("vnet", 9)."""
    for key in HOLDERS:
        if key in lease:
            return key, lease[key]
    raise AssertionError(f"lease without a holder: {lease!r}")


def holder_text(lease: Mapping[str, Any]) -> str:
    key, oid = holder(lease)
    if key == "vm":
        return "on hold" if oid == HOLD else f"leased to VM {oid}"
    if key == "vrouter":
        return f"leased to virtual router {oid}"
    return f"reserved by virtual network {oid}"


def lease_at(ar: Mapping[str, Any], index: int) -> dict | None:
    leases = ar["leases"]
    at = bisect.bisect_left(leases, index, key=_INDEX)
    if at < len(leases) and leases[at]["index"] == index:
        return leases[at]
    return None


def free_run(ar: Mapping[str, Any], count: int = 1, start: int | None = None) -> int | None:
    """The first index of `count` consecutive free addresses (from `start` exactly, if
    given), or None."""
    size = ar["size"]
    if count < 1 or count > size:
        return None
    used = _indices(ar)
    if start is not None:
        if start < 0 or start + count > size:
            return None
        at = bisect.bisect_left(used, start)
        return start if at == len(used) or used[at] >= start + count else None
    candidate = 0
    for index in used:
        if index - candidate >= count:
            return candidate
        candidate = max(candidate, index + 1)
    return candidate if size - candidate >= count else None


def with_leases(ar: Mapping[str, Any], indices: list[int], owner: Mapping[str, int]) -> dict:
    """A copy of `ar` with `indices` (all free) leased to `owner` ({"vm": 7}, ...).
    One merge of two sorted lists: a reservation of many addresses stays linear."""
    fresh = sorted(indices)
    taken = set(_indices(ar))
    for i, index in enumerate(fresh):
        assert 0 <= index < ar["size"] and index not in taken, index
        assert i == 0 or fresh[i - 1] != index, index
    added = ({"index": index, **owner} for index in fresh)
    kept = (dict(lease) for lease in ar["leases"])
    return _copy(ar, list(heapq.merge(kept, added, key=_INDEX)))


def without_leases(ar: Mapping[str, Any], indices: list[int]) -> dict:
    """A copy of `ar` with the leases of `indices` removed."""
    gone = set(indices)
    return _copy(ar, [dict(lease) for lease in ar["leases"] if lease["index"] not in gone])


def used(ar: Mapping[str, Any]) -> int:
    return len(ar["leases"])


# --- editing and deriving ARs ----------------------------------------------------------

# What update_ar may not change, with the record field that holds it.
_FIXED = (("TYPE", "type"), ("MAC", "mac"), ("IP", "ip"), ("IP6", "ip6"))


def _same(name: str, given: str, stored: Any) -> bool:
    if name == "TYPE":
        return given.strip().upper() == stored
    parse = {"MAC": mac_int, "IP": ip4_int, "IP6": ip6_int}[name]
    return parse(given.strip()) == parse(stored)


def update_ar(old: Mapping[str, Any], vector: Mapping[str, str]) -> dict:
    """`old` with the attributes of `vector` applied (OpenNebula's update_ar): SIZE,
    PREFIX_LENGTH, GLOBAL_PREFIX, ULA_PREFIX, SECURITY_GROUPS and free attributes may
    change; TYPE, MAC, IP and IP6 may not; leases must stay inside the range, and a
    reservation keeps its SIZE. Attributes not named keep their values."""
    where = f"AR {old['ar_id']}"
    for name, field in _FIXED:
        if name in vector and not (field in old and _same(name, vector[name], old[field])):
            shown = old.get(field, "not set")
            raise LeaseError(f"{where}: {name} cannot be changed (it is {shown})")
    merged = dict(definition(old))
    merged.update({k: v for k, v in vector.items() if k not in _COMPUTED})
    new = parse_ar(merged, old["ar_id"])
    new["mac"] = old["mac"]  # kept as it is, however it was derived
    if "parent_network_ar_id" in old:
        if new["size"] != old["size"]:
            raise LeaseError(f"{where}: the SIZE of a reservation cannot be changed")
        new["parent_network_ar_id"] = old["parent_network_ar_id"]
    outside = [lease for lease in old["leases"] if lease["index"] >= new["size"]]
    if outside:
        first = address(old, outside[0]["index"])
        shown = first.get("IP") or first.get("IP6") or first["MAC"]
        raise LeaseError(
            f"{where}: SIZE {new['size']} would leave {len(outside)} used lease(s) outside"
            f" the range ({shown} is {holder_text(outside[0])})"
        )
    new["leases"] = copy.deepcopy(old["leases"])
    return new


def definition(ar: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The AR as vector attributes (what parse_ar reads back), in OpenNebula's order."""
    pairs: list[tuple[str, str]] = [("AR_ID", str(ar["ar_id"])), ("TYPE", ar["type"])]
    for field in ("ip", "ip6", "prefix_length", "global_prefix", "ula_prefix"):
        if field in ar:
            pairs.append((field.upper(), str(ar[field])))
    pairs += [("MAC", ar["mac"]), ("SIZE", str(ar["size"]))]
    if ar["secgroups"]:
        pairs.append(("SECURITY_GROUPS", ",".join(str(s) for s in ar["secgroups"])))
    if "parent_network_ar_id" in ar:
        pairs.append(("PARENT_NETWORK_AR_ID", str(ar["parent_network_ar_id"])))
    pairs += sorted(ar["attrs"].items())
    return pairs


def reservation_ar(parent: Mapping[str, Any], first: int, size: int, ar_id: int) -> dict:
    """The AR of a reservation of `size` addresses of `parent` from index `first`: same
    type and attributes, starting at that address (AddressRange::reserve_addr)."""
    start = address(parent, first)
    new = _copy(parent, [])
    new.update(ar_id=ar_id, size=size, mac=start["MAC"])
    if "ip" in parent:
        new["ip"] = start["IP"]
    if "ip6" in parent:
        new["ip6"] = start["IP6"]
    new["parent_network_ar_id"] = parent["ar_id"]
    return new
