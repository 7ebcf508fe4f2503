"""Password hashing and API tokens. Never log a password, a token or a hash of either."""

import base64
import binascii
import hashlib
import hmac
import secrets

SCRYPT_LOG_N = 14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# Bounds on the parameters verify accepts, so a forged hash cannot make us burn memory.
_MAX_LOG_N, _MAX_R, _MAX_P = 20, 32, 16
_MAXMEM = 256 << 20


def _scrypt(pw: str, salt: bytes, log_n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        pw.encode("utf-8"), salt=salt, n=1 << log_n, r=r, p=p, maxmem=_MAXMEM, dklen=dklen
    )


def hash_password(pw: str) -> str:
    """Self-describing scrypt hash: "scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>"."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(pw, salt, SCRYPT_LOG_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    b64 = base64.b64encode
    return (
        f"scrypt${SCRYPT_LOG_N}${SCRYPT_R}${SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"
    )


def verify_password(pw: str, encoded: str) -> bool:
    """True iff `pw` matches `encoded`; False (never an exception) if it is malformed."""
    try:
        scheme, log_n_s, r_s, p_s, salt_b64, hash_b64 = encoded.split("$")
        if scheme != "scrypt":
            return False
        log_n, r, p = int(log_n_s), int(r_s), int(p_s)
        if not (1 <= log_n <= _MAX_LOG_N and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(hash_b64, validate=True)
        if not salt or not 16 <= len(expected) <= 64:
            return False
        actual = _scrypt(pw, salt, log_n, r, p, len(expected))
    except (AttributeError, ValueError, TypeError, binascii.Error, MemoryError):
        return False
    return hmac.compare_digest(actual, expected)


def new_token() -> str:
    """A fresh bearer token (256 bits, URL-safe). Only its hash is ever stored."""
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    """The stored form of a token: sha256 hex (tokens are random, so no salt is needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
