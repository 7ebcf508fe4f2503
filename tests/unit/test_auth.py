"""Password hashing and tokens."""

import base64
import hashlib

import pytest

from raftcore.auth import hash_password, new_token, token_hash, verify_password


def test_hash_format_and_verify():
    encoded = hash_password("s3cret")
    scheme, log_n, r, p, salt, digest = encoded.split("$")
    assert (scheme, log_n, r, p) == ("scrypt", "14", "8", "1")
    assert len(base64.b64decode(salt)) == 16
    expected = hashlib.scrypt(b"s3cret", salt=base64.b64decode(salt), n=2**14, r=8, p=1, dklen=32)
    assert base64.b64decode(digest) == expected
    assert verify_password("s3cret", encoded)
    assert not verify_password("s3creT", encoded)
    assert not verify_password("", encoded)


def test_salted():
    assert hash_password("pw") != hash_password("pw")


def test_unicode_password():
    encoded = hash_password("pässwörd ✓")
    assert verify_password("pässwörd ✓", encoded)


def test_low_cost_params_still_verify():
    # Self-describing: a hash made with other parameters verifies with those parameters.
    salt = b"0123456789abcdef"
    digest = hashlib.scrypt(b"pw", salt=salt, n=2**4, r=1, p=1, dklen=32)
    enc = f"scrypt$4$1$1${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"
    assert verify_password("pw", enc)
    assert not verify_password("px", enc)


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "junk",
        None,
        42,
        "bcrypt$14$8$1$AAAA$AAAA",
        "scrypt$14$8$1$AAAA",
        "scrypt$x$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,
        "scrypt$40$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,  # absurd cost: refused
        "scrypt$14$8$1$!!!!$" + "A" * 44,
        "scrypt$14$8$1$$" + "A" * 44,
        "scrypt$14$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",  # digest too short
    ],
)
def test_malformed_hashes_are_false(encoded):
    assert verify_password("pw", encoded) is False


def test_tokens():
    t1, t2 = new_token(), new_token()
    assert t1 != t2 and len(t1) >= 43
    assert set(t1) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    h = token_hash(t1)
    assert h == hashlib.sha256(t1.encode()).hexdigest()
    assert len(h) == 64 and h == h.lower()
