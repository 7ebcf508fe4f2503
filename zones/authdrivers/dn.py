"""Distinguished names (RFC 4514 strings) in one comparable form, for the ldap driver's
group mapping and the x509 driver's subject match. Pure Python: no LDAP library."""

from __future__ import annotations

_HEX = "0123456789abcdefABCDEF"
_SPECIAL = ',+="\\<>;#'
# Attribute type names and OIDs -> one canonical name, so "CN", "cn", "commonName" and
# "2.5.4.3" compare equal (cryptography prints unnamed types as dotted OIDs).
_ALIASES = {
    "cn": ("2.5.4.3", "commonname"),
    "sn": ("2.5.4.4", "surname"),
    "serialnumber": ("2.5.4.5",),
    "c": ("2.5.4.6", "countryname"),
    "l": ("2.5.4.7", "localityname"),
    "st": ("2.5.4.8", "stateorprovincename"),
    "street": ("2.5.4.9", "streetaddress"),
    "o": ("2.5.4.10", "organizationname"),
    "ou": ("2.5.4.11", "organizationalunitname"),
    "title": ("2.5.4.12",),
    "givenname": ("2.5.4.42",),
    "dc": ("0.9.2342.19200300.100.1.25", "domaincomponent"),
    "uid": ("0.9.2342.19200300.100.1.1", "userid"),
    "emailaddress": ("1.2.840.113549.1.9.1", "email"),
}
_CANONICAL = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}


def _split_unescaped(text: str, sep: str) -> list[str]:
    """Split on `sep` where it is not escaped by a backslash."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            current.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return parts


def _unescape(value: str) -> str:
    """Resolve ``\\c`` and ``\\XX`` (a UTF-8 byte in hex) escapes; raises ValueError."""
    out = bytearray()
    i = 0
    while i < len(value):
        c = value[i]
        if c != "\\":
            out += c.encode()
            i += 1
            continue
        pair = value[i + 1 : i + 3]
        if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
            out.append(int(pair, 16))
            i += 3
        elif i + 1 < len(value):
            out += value[i + 1].encode()
            i += 2
        else:
            raise ValueError("ends with a lone backslash")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("an escaped value is not UTF-8") from None


def _attribute(text: str) -> str:
    attr = text.strip().lower()
    if not attr or not (attr[0].isascii() and attr[0].isalnum()):
        raise ValueError(f"{text.strip()!r} is not an attribute name")
    if not all(ch.isascii() and (ch.isalnum() or ch in "-.") for ch in attr):
        raise ValueError(f"{text.strip()!r} is not an attribute name")
    return _CANONICAL.get(attr, attr)


def normalize_dn(dn: str) -> str:
    """The canonical form of an RFC 4514 DN: attribute types by one name, values
    unescaped, case-folded, with surrounding spaces dropped and inner runs collapsed
    (caseIgnoreMatch, the rule of cn, ou, o, dc, uid), the values of a multi-valued RDN
    sorted. Raises ValueError naming what is malformed."""
    if not isinstance(dn, str) or not dn.strip():
        raise ValueError("empty DN")
    rdns = []
    for rdn in _split_unescaped(dn, ","):
        avas = []
        for ava in _split_unescaped(rdn, "+"):
            attr, sep, raw = ava.partition("=")
            if not sep:
                raise ValueError(f"{ava.strip()!r} is not attribute=value")
            value = " ".join(_unescape(raw).split()).casefold()
            if not value:
                raise ValueError(f"{ava.strip()!r} has an empty value")
            escaped = "".join(f"\\{ord(ch):02x}" if ch in _SPECIAL else ch for ch in value)
            avas.append(f"{_attribute(attr)}={escaped}")
        rdns.append("+".join(sorted(avas)))
    return ",".join(rdns)


def same_dn(a: str, b: str) -> bool:
    """True iff both are DNs and name the same entry; False if either is malformed."""
    try:
        return normalize_dn(a) == normalize_dn(b)
    except ValueError:
        return False
