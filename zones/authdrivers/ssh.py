"""The ``ssh`` driver: log in by signing with an SSH private key.

The user record's password field holds the user's OpenSSH public key line
(``ssh-ed25519 AAAA... comment``; ed25519, ECDSA and RSA keys). To log in, the client
signs the bytes ``one-login:<username>:<unix_ts>`` with the matching private key and
sends the secret ``"<unix_ts>:<base64 signature>"`` (`sign_login` makes it):

- ed25519: the plain ed25519 signature;
- ECDSA: DER-encoded, over SHA-256 (whatever the curve);
- RSA: PKCS#1 v1.5 with SHA-256.

The timestamp must be within ``MAX_SKEW`` (300 s) of the server's clock either way. A
signed secret can be replayed within that window, as OpenNebula's own ssh tokens can be
within their validity: send it over TLS only.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from zones.authdrivers import BAD_LOGIN, AuthFailed, Credentials, Identity, check_user

MAX_SKEW = 300  # seconds either way
MAX_SECRET_CHARS = 4096  # a 16384-bit RSA signature is 2732 base64 characters
_TS = re.compile(r"[1-9][0-9]{0,11}")
_FORMAT = "expected '<unix_ts>:<base64 signature>'"

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey


def login_message(username: str, unix_ts: int) -> bytes:
    """The bytes a login signature covers."""
    return f"one-login:{username}:{unix_ts}".encode()


def _sign(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.sign(data, ec.ECDSA(hashes.SHA256()))
    if isinstance(key, rsa.RSAPrivateKey):
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    raise ValueError(f"unsupported key type {type(key).__name__} (use ed25519, ECDSA or RSA)")


def _verify(key: PublicKey, signature: bytes, data: bytes) -> bool:
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def load_private_key(data: bytes, passphrase: str | bytes | None = None) -> PrivateKey:
    """An OpenSSH (``BEGIN OPENSSH PRIVATE KEY``) or PEM private key; raises ValueError."""
    password = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
            key = serialization.load_ssh_private_key(data, password)
        else:
            key = serialization.load_pem_private_key(data, password)
    except TypeError as e:  # a passphrase missing, or given for an unencrypted key
        raise ValueError(f"cannot load the private key: {e}") from None
    except UnsupportedAlgorithm as e:
        raise ValueError(f"cannot load the private key: {e}") from None
    except ValueError as e:
        raise ValueError(f"cannot load the private key (wrong passphrase?): {e}") from None
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    ):
        raise ValueError(f"unsupported key type {type(key).__name__} (use ed25519, ECDSA or RSA)")
    return key


def sign_login(
    private_key_path_or_bytes: str | os.PathLike | bytes,
    username: str,
    now: float | None = None,
    passphrase: str | bytes | None = None,
) -> str:
    """The login secret ``"<unix_ts>:<base64 signature>"`` for `username` (for CLIs)."""
    if isinstance(private_key_path_or_bytes, bytes):
        data = private_key_path_or_bytes
    else:
        data = Path(private_key_path_or_bytes).expanduser().read_bytes()
    key = load_private_key(data, passphrase)
    ts = int(time.time() if now is None else now)
    signature = _sign(key, login_message(username, ts))
    return f"{ts}:{base64.b64encode(signature).decode()}"


def parse_public_key(line: str) -> PublicKey:
    """An OpenSSH public key line (``type base64 [comment]``); raises ValueError."""
    try:
        key = serialization.load_ssh_public_key(line.strip().encode())
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ValueError(f"not an OpenSSH public key line: {e}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey | rsa.RSAPublicKey):
        raise ValueError(f"unsupported key type {type(key).__name__} (use ed25519, ECDSA or RSA)")
    return key


def parse_secret(secret: str, now: float | None = None) -> tuple[int, bytes]:
    """(unix_ts, signature) of a login secret; AuthFailed if malformed or out of time."""
    if not isinstance(secret, str) or len(secret) > MAX_SECRET_CHARS:
        raise AuthFailed(f"malformed ssh login secret ({_FORMAT})")
    ts_text, sep, sig_text = secret.partition(":")
    if not sep or not _TS.fullmatch(ts_text) or not sig_text:
        raise AuthFailed(f"malformed ssh login secret ({_FORMAT})")
    try:
        signature = base64.b64decode(sig_text, validate=True)
    except (binascii.Error, ValueError):
        raise AuthFailed(
            f"malformed ssh login secret: the signature is not base64 ({_FORMAT})"
        ) from None
    ts = int(ts_text)
    skew = ts - (time.time() if now is None else now)
    if abs(skew) > MAX_SKEW:
        where = "ahead of" if skew > 0 else "behind"
        raise AuthFailed(
            f"ssh login timestamp is {abs(skew):.0f} s {where} the server clock "
            f"(at most {MAX_SKEW} s allowed): sign a fresh login, check the clocks"
        )
    return ts, signature


class SSHDriver:
    name = "ssh"

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock

    def authenticate(self, creds: Credentials, user: dict | None) -> Identity:
        # Format and time first: they do not depend on the user, so their messages tell
        # nothing about which users exist.
        ts, signature = parse_secret(creds.secret, self._clock())
        record = check_user(user, self.name)
        stored = record.get("password")
        try:
            key = parse_public_key(stored if isinstance(stored, str) else "")
        except ValueError:
            raise AuthFailed(
                "the stored ssh public key of this user is not valid (ask an administrator)"
            ) from None
        if not _verify(key, signature, login_message(record["name"], ts)):
            raise AuthFailed(BAD_LOGIN)
        return Identity(username=record["name"], driver=self.name, stored_secret=stored)
