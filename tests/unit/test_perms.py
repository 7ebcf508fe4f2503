"""Object permissions: octal, the CLI's `um-` strings, umask defaults (OpenNebula's)."""

import pytest

from raftcore import perms
from raftcore.perms import PermsError


def test_bit_table():
    assert perms.BITS == {
        ("OWNER", "USE"): 0o400,
        ("OWNER", "MANAGE"): 0o200,
        ("OWNER", "ADMIN"): 0o100,
        ("GROUP", "USE"): 0o040,
        ("GROUP", "MANAGE"): 0o020,
        ("GROUP", "ADMIN"): 0o010,
        ("OTHER", "USE"): 0o004,
        ("OTHER", "MANAGE"): 0o002,
        ("OTHER", "ADMIN"): 0o001,
    }
    assert sum(perms.BITS.values()) == perms.ALL_PERMS


@pytest.mark.parametrize(
    "text, value", [("640", 0o640), ("000", 0), ("777", 0o777), ("600", 0o600), ("007", 7)]
)
def test_parse_and_format_octal(text, value):
    assert perms.parse_octal(text) == value
    assert perms.format_octal(value) == text


@pytest.mark.parametrize("bad", ["", "64", "6400", "648", "-64", "6 4", "0o6", "abc", " 640"])
def test_parse_octal_names_the_bad_input(bad):
    with pytest.raises(PermsError, match=f"permissions {bad!r} must be exactly 3 octal digits"):
        perms.parse_octal(bad)


def test_parse_octal_rejects_non_strings_and_names_what():
    with pytest.raises(PermsError, match="must be a string of 3 octal digits, got int"):
        perms.parse_octal(640)  # type: ignore[arg-type]
    with pytest.raises(PermsError, match="umask '1777'"):
        perms.parse_octal("1777", what="umask")


@pytest.mark.parametrize("bad", [-1, 0o1000, True, "640", None])
def test_check_refuses_out_of_range(bad):
    with pytest.raises(PermsError, match="permissions must be"):
        perms.check(bad)
    with pytest.raises(PermsError):
        perms.format_octal(bad)


@pytest.mark.parametrize(
    "value, text",
    [
        (0o600, "um-------"),
        (0o640, "um-u-----"),
        (0o777, "umaumauma"),
        (0o000, "---------"),
        (0o124, "--a-m-u--"),
    ],
)
def test_to_string_is_the_cli_triplets(value, text):
    assert perms.to_string(value) == text


def test_to_rows_is_the_show_section():
    assert perms.to_rows(0o640) == [("OWNER", "um-"), ("GROUP", "u--"), ("OTHER", "---")]


@pytest.mark.parametrize(
    "umask, owner, gid, enable_other, expected",
    [
        (perms.DEFAULT_UMASK, 5, 100, True, 0o600),  # OpenNebula's default: um-------
        (perms.DEFAULT_UMASK, 0, 0, True, 0o600),
        (0o022, 5, 100, True, 0o644),  # users never get ADMIN bits from the umask
        (0o022, 0, 0, True, 0o755),  # oneadmin's objects start from 777
        (0o022, 5, 0, True, 0o755),  # ... and so do objects in group 0
        (0o000, 5, 100, False, 0o660),  # ENABLE_OTHER_PERMISSIONS = NO
        (0o777, 5, 100, True, 0o000),
    ],
)
def test_apply_umask_follows_set_umask(umask, owner, gid, enable_other, expected):
    assert perms.apply_umask(umask, owner, gid, enable_other) == expected


def test_default_umask_is_177():
    assert perms.DEFAULT_UMASK == 0o177
    assert perms.apply_umask() == 0o600


def test_apply_umask_checks_the_umask():
    with pytest.raises(PermsError, match="umask must be 0..0o777, got 512"):
        perms.apply_umask(0o1000)


def test_grants():
    assert perms.grants(0o640, "GROUP", "USE")
    assert not perms.grants(0o640, "GROUP", "MANAGE")
    assert perms.grants(0o640, "OWNER", "MANAGE")
    assert not perms.grants(0o640, "OTHER", "USE")
