"""OpenNebula object permissions: 9 bits, owner/group/other x USE/MANAGE/ADMIN.

Written in octal like chmod (`640` = owner USE+MANAGE, group USE) and shown by
OpenNebula's CLI as one `uma` triplet per class (`um-` / `u--` / `---`). A new object
gets `base & ~umask` (PoolObjectSQL::set_umask), where base is 777 for objects of
oneadmin (uid 0 or group 0), else 666, or 660 when oned's ENABLE_OTHER_PERMISSIONS is
off; the default umask 177 leaves `600` (um-------). Pure: no I/O.
"""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("OWNER", "GROUP", "OTHER")
RIGHTS: tuple[str, ...] = ("USE", "MANAGE", "ADMIN")

# Octal digit weight of each right and bit offset of each class.
RIGHT_BITS: dict[str, int] = {"USE": 4, "MANAGE": 2, "ADMIN": 1}
CLASS_SHIFT: dict[str, int] = {"OWNER": 6, "GROUP": 3, "OTHER": 0}
# (class, right) -> bit, e.g. ("GROUP", "USE") -> 0o040.
BITS: dict[tuple[str, str], int] = {
    (cls, right): RIGHT_BITS[right] << CLASS_SHIFT[cls] for cls in CLASSES for right in RIGHTS
}
LETTERS: dict[str, str] = {"USE": "u", "MANAGE": "m", "ADMIN": "a"}

ALL_PERMS = 0o777
DEFAULT_UMASK = 0o177
# Base permissions before the umask (PoolObjectSQL::set_umask).
ONEADMIN_BASE = 0o777
USER_BASE = 0o666
USER_BASE_NO_OTHER = 0o660


class PermsError(ValueError):
    """Permissions or a umask that is not 3 octal digits / 0..0o777."""


def check(perms: object, what: str = "permissions") -> int:
    """`perms` if it is an int in 0..0o777, else PermsError naming it."""
    if not isinstance(perms, int) or isinstance(perms, bool):
        raise PermsError(f"{what} must be an integer 0..0o777, got {type(perms).__name__}")
    if not 0 <= perms <= ALL_PERMS:
        raise PermsError(f"{what} must be 0..0o777, got {perms!r}")
    return perms


def parse_octal(text: str, what: str = "permissions") -> int:
    """'640' -> 0o640: exactly three digits 0-7 (owner, group, other)."""
    if not isinstance(text, str):
        raise PermsError(f"{what} must be a string of 3 octal digits, got {type(text).__name__}")
    if len(text) != 3 or any(c not in "01234567" for c in text):
        raise PermsError(f"{what} {text!r} must be exactly 3 octal digits 0-7, e.g. '640'")
    return int(text, 8)


def format_octal(perms: int) -> str:
    """0o640 -> '640'."""
    return f"{check(perms):03o}"


def class_string(perms: int, cls: str) -> str:
    """The `uma` triplet of one class as the CLI's PERMISSIONS section shows it."""
    check(perms)
    return "".join(LETTERS[right] if perms & BITS[(cls, right)] else "-" for right in RIGHTS)


def to_string(perms: int) -> str:
    """0o640 -> 'um-u-----' (owner, group, other triplets)."""
    return "".join(class_string(perms, cls) for cls in CLASSES)


def to_rows(perms: int) -> list[tuple[str, str]]:
    """[('OWNER', 'um-'), ('GROUP', 'u--'), ('OTHER', '---')], the `show` section."""
    return [(cls, class_string(perms, cls)) for cls in CLASSES]


def apply_umask(
    umask: int = DEFAULT_UMASK, owner: int = 1, gid: int = 1, enable_other: bool = True
) -> int:
    """Permissions of a new object of user `owner` in group `gid` under `umask`."""
    check(umask, "umask")
    if owner == 0 or gid == 0:
        base = ONEADMIN_BASE
    else:
        base = USER_BASE if enable_other else USER_BASE_NO_OTHER
    return base & ~umask & ALL_PERMS


def grants(perms: int, cls: str, right: str) -> bool:
    """Whether `perms` give `right` (USE/MANAGE/ADMIN) to class `cls`."""
    return bool(perms & BITS[(cls, right)])
