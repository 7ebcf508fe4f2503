"""zones.authdrivers: core, ssh and x509 logins, the registry, DN normalization.

The ldap driver is tested against a real slapd in tests/cluster/test_ldap_auth.py.
"""

from __future__ import annotations

import base64
import datetime
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from raftcore.auth import hash_password
from zones.authdrivers import (
    BAD_LOGIN,
    AuthDriver,
    AuthFailed,
    Credentials,
    Identity,
    authenticate,
    drivers_from_config,
)
from zones.authdrivers.core import CoreDriver
from zones.authdrivers.dn import normalize_dn, same_dn
from zones.authdrivers.ssh import MAX_SKEW, SSHDriver, login_message, sign_login
from zones.authdrivers.x509 import PEM_CERT_KEY, X509Driver, peer_cert_from_context, subject_of
from zones.config import AuthConfig

NOW = 1_750_000_000


def _user(name: str, driver: str, password: str) -> dict:
    return {"id": 5, "name": name, "password": password, "auth_driver": driver, "gid": 1}


def _refused(driver: AuthDriver, creds: Credentials, user: dict | None) -> str:
    """The AuthFailed message; it must never contain the secret."""
    with pytest.raises(AuthFailed) as err:
        driver.authenticate(creds, user)
    message = str(err.value)
    if len(creds.secret) >= 4:
        assert creds.secret not in message
    return message


# --- the interface ----------------------------------------------------------------------


def test_credentials_repr_hides_the_secret():
    creds = Credentials("alice", "hunter2-secret")
    assert "hunter2-secret" not in repr(creds) and "alice" in repr(creds)


def test_registry_core_always_present():
    assert set(drivers_from_config(None)) == {"core"}
    assert set(drivers_from_config(AuthConfig())) == {"core"}
    drivers = drivers_from_config(AuthConfig(drivers=("core", "ssh", "x509")))
    assert set(drivers) == {"core", "ssh", "x509"}
    for name, driver in drivers.items():
        assert isinstance(driver, AuthDriver) and driver.name == name
    with pytest.raises(ValueError, match=r"\[auth.ldap\] is missing"):
        drivers_from_config(AuthConfig(drivers=("core", "ldap")))


def test_dispatch_by_the_users_driver():
    drivers = drivers_from_config(AuthConfig(drivers=("core", "ssh")))
    user = _user("alice", "core", hash_password("pw-alice-1"))
    ident = authenticate(drivers, Credentials("alice", "pw-alice-1"), user)
    assert ident == Identity("alice", "core", user["password"])
    # A user of a driver that is not enabled, and an unknown user without ldap.
    with pytest.raises(AuthFailed, match=BAD_LOGIN):
        authenticate(drivers, Credentials("bob", ""), _user("bob", "x509", "CN=bob"))
    with pytest.raises(AuthFailed, match=BAD_LOGIN):
        authenticate(drivers, Credentials("nobody", "pw"), None)


# --- core -------------------------------------------------------------------------------


def test_core_password():
    driver = CoreDriver()
    user = _user("alice", "core", hash_password("correct horse"))
    ident = driver.authenticate(Credentials("alice", "correct horse"), user)
    assert ident == Identity("alice", "core", user["password"], ())
    assert _refused(driver, Credentials("alice", "wrong horse"), user) == BAD_LOGIN
    assert _refused(driver, Credentials("alice", ""), user) == BAD_LOGIN
    assert _refused(driver, Credentials("alice", "correct horse"), None) == BAD_LOGIN
    # A record of another driver is refused even when the secret matches its field.
    other = _user("alice", "ldap", user["password"])
    assert _refused(driver, Credentials("alice", "correct horse"), other) == BAD_LOGIN
    # A record without auth_driver is a core user (records older than the drivers).
    legacy = {"id": 7, "name": "old", "password": hash_password("pw-old-1")}
    assert driver.authenticate(Credentials("old", "pw-old-1"), legacy).driver == "core"
    broken = _user("alice", "core", "not-a-hash")
    assert _refused(driver, Credentials("alice", "not-a-hash"), broken) == BAD_LOGIN


# --- ssh --------------------------------------------------------------------------------


def _key(kind: str):
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "ecdsa-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise AssertionError(kind)


def _openssh(key, passphrase: bytes | None = None) -> bytes:
    enc = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, enc)


def _public_line(key, comment: str = "alice@laptop") -> str:
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return f"{line.decode()} {comment}"


@pytest.fixture(scope="module", params=["ed25519", "ecdsa-p256", "ecdsa-p384", "rsa"])
def ssh_key(request):
    return request.param, _key(request.param)


def test_ssh_login_with_each_key_type(ssh_key, tmp_path):
    kind, key = ssh_key
    user = _user("alice", "ssh", _public_line(key))
    driver = SSHDriver(clock=lambda: NOW)
    key_file = tmp_path / "id_key"
    key_file.write_bytes(_openssh(key))
    for source in (key_file, str(key_file), _openssh(key)):
        secret = sign_login(source, "alice", now=NOW)
        ts, _, sig = secret.partition(":")
        assert ts == str(NOW) and base64.b64decode(sig, validate=True)
        ident = driver.authenticate(Credentials("alice", secret), user)
        assert ident == Identity("alice", "ssh", user["password"], ())
    # The stored line may come without a comment, and with surrounding space.
    bare = _user("alice", "ssh", " " + _public_line(key).rsplit(" ", 1)[0] + "\n")
    assert driver.authenticate(Credentials("alice", sign_login(key_file, "alice", now=NOW)), bare)


def test_ssh_signatures_are_the_documented_ones(ssh_key):
    """What a client in another language must produce: ed25519 plain, ECDSA DER over
    SHA-256, RSA PKCS#1 v1.5 SHA-256, all over one-login:<user>:<ts>."""
    from cryptography.hazmat.primitives.asymmetric import padding

    kind, key = ssh_key
    message = login_message("alice", NOW)
    assert message == f"one-login:alice:{NOW}".encode()
    if kind == "ed25519":
        sig = key.sign(message)
    elif kind.startswith("ecdsa"):
        sig = key.sign(message, ec.ECDSA(hashes.SHA256()))
    else:
        sig = key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    secret = f"{NOW}:{base64.b64encode(sig).decode()}"
    user = _user("alice", "ssh", _public_line(key))
    assert SSHDriver(clock=lambda: NOW).authenticate(Credentials("alice", secret), user)


def test_ssh_timestamp_window():
    key = _key("ed25519")
    user = _user("alice", "ssh", _public_line(key))
    driver = SSHDriver(clock=lambda: NOW)
    pem = _openssh(key)
    for skew in (-MAX_SKEW, -1, 0, 1, MAX_SKEW):
        secret = sign_login(pem, "alice", now=NOW + skew)
        assert driver.authenticate(Credentials("alice", secret), user).driver == "ssh"
    expired = sign_login(pem, "alice", now=NOW - MAX_SKEW - 1)
    message = _refused(driver, Credentials("alice", expired), user)
    assert "301 s behind the server clock" in message
    future = sign_login(pem, "alice", now=NOW + 3600)
    assert "3600 s ahead of the server clock" in _refused(
        driver, Credentials("alice", future), user
    )
    # The real clock by default: a fresh signature passes, a day-old one does not.
    assert SSHDriver().authenticate(Credentials("alice", sign_login(pem, "alice")), user)
    assert "behind" in _refused(SSHDriver(), Credentials("alice", expired), user)


def test_ssh_wrong_key_other_user_and_tampering():
    key, other = _key("ed25519"), _key("ecdsa-p256")
    user = _user("alice", "ssh", _public_line(key))
    driver = SSHDriver(clock=lambda: NOW)
    by_other_key = sign_login(_openssh(other), "alice", now=NOW)
    assert _refused(driver, Credentials("alice", by_other_key), user) == BAD_LOGIN
    for_bob = sign_login(_openssh(key), "bob", now=NOW)  # replayed for another user
    assert _refused(driver, Credentials("alice", for_bob), user) == BAD_LOGIN
    good = sign_login(_openssh(key), "alice", now=NOW)
    ts, _, sig = good.partition(":")
    moved = f"{NOW - 1}:{sig}"  # the timestamp is covered by the signature
    assert _refused(driver, Credentials("alice", moved), user) == BAD_LOGIN
    raw = bytearray(base64.b64decode(sig))
    raw[0] ^= 1
    flipped = f"{ts}:{base64.b64encode(bytes(raw)).decode()}"
    assert _refused(driver, Credentials("alice", flipped), user) == BAD_LOGIN
    # A user of another driver, or no user, never passes.
    assert _refused(driver, Credentials("alice", good), None) == BAD_LOGIN
    core_user = _user("alice", "core", _public_line(key))
    assert _refused(driver, Credentials("alice", good), core_user) == BAD_LOGIN


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "abc",
        str(NOW),
        f"{NOW}:",
        ":c2lnbmF0dXJl",
        f"-{NOW}:c2lnbmF0dXJl",
        f"0{NOW}:c2lnbmF0dXJl",
        f"{NOW}.5:c2lnbmF0dXJl",
        f" {NOW}:c2lnbmF0dXJl",
        "1e9:c2lnbmF0dXJl",
        f"{NOW}:not base64!",
        f"{NOW}:c2lnbmF0dXJ",  # bad padding
        f"{NOW}:" + "A" * 5000,
        "12345678901234567890:c2lnbmF0dXJl",
    ],
)
def test_ssh_malformed_secrets(secret):
    user = _user("alice", "ssh", _public_line(_key("ed25519")))
    message = _refused(SSHDriver(clock=lambda: NOW), Credentials("alice", secret), user)
    assert "malformed ssh login secret" in message or "server clock" in message


def test_ssh_invalid_stored_key():
    key = _key("ed25519")
    driver = SSHDriver(clock=lambda: NOW)
    secret = sign_login(_openssh(key), "alice", now=NOW)
    for stored in ("", "ssh-foo AAAA", "not a key", hash_password("x")):
        message = _refused(driver, Credentials("alice", secret), _user("alice", "ssh", stored))
        assert "stored ssh public key of this user is not valid" in message


def test_sign_login_passphrases(tmp_path):
    key = _key("ed25519")
    encrypted = _openssh(key, b"open sesame")  # bcrypt-pbkdf: needs the bcrypt package
    user = _user("alice", "ssh", _public_line(key))
    driver = SSHDriver(clock=lambda: NOW)
    for passphrase in ("open sesame", b"open sesame"):
        secret = sign_login(encrypted, "alice", now=NOW, passphrase=passphrase)
        assert driver.authenticate(Credentials("alice", secret), user)
    with pytest.raises(ValueError, match="cannot load the private key"):
        sign_login(encrypted, "alice", now=NOW)
    with pytest.raises(ValueError, match="wrong passphrase"):
        sign_login(encrypted, "alice", now=NOW, passphrase="nope")
    # PEM (PKCS#8) keys too, encrypted or not, e.g. an RSA key from an older ssh-keygen.
    rsa_key = _key("rsa")
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    secret = sign_login(pem, "alice", now=NOW, passphrase="pw")
    rsa_user = _user("alice", "ssh", _public_line(rsa_key))
    assert driver.authenticate(Credentials("alice", secret), rsa_user)
    with pytest.raises(ValueError, match="cannot load the private key"):
        sign_login(b"garbage", "alice")
    with pytest.raises(FileNotFoundError):
        sign_login(tmp_path / "missing", "alice")


# --- x509 -------------------------------------------------------------------------------


def _name(**attrs) -> x509.Name:
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME}
    return x509.Name([x509.NameAttribute(oids[k], v) for k, v in attrs.items()])


def _cert(subject: x509.Name, issuer_key=None, issuer: x509.Name | None = None, **opts):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(opts.get("not_before", now - datetime.timedelta(minutes=5)))
        .not_valid_after(opts.get("not_after", now + datetime.timedelta(days=1)))
        .add_extension(x509.BasicConstraints(ca=opts.get("ca", False), path_length=None), True)
    )
    if "san" in opts:
        builder = builder.add_extension(x509.SubjectAlternativeName(opts["san"]), False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return cert, cert.public_bytes(serialization.Encoding.PEM), key


def test_x509_subject_match():
    driver = X509Driver()
    _, pem, _ = _cert(_name(C="ES", O="Example, Inc", CN="alice"))
    stored = subject_of(pem)
    assert stored == r"CN=alice,O=Example\, Inc,C=ES"
    user = _user("alice", "x509", stored)
    ident = driver.authenticate(Credentials("alice", "", pem), user)
    assert ident == Identity("alice", "x509", stored, ())
    # The stored DN may be written another way: case, spaces, type names, escapes.
    for variant in (
        r"cn=ALICE, o=example\, inc, c=es",
        r"commonName=alice,2.5.4.10=Example\2C Inc,countryName=ES",
        r"CN = alice , O=Example\,  Inc,C=ES",
    ):
        assert driver.authenticate(Credentials("alice", "", pem), _user("alice", "x509", variant))


def test_x509_mismatch_missing_and_invalid():
    driver = X509Driver()
    _, pem, _ = _cert(_name(O="Example", CN="alice"))
    _, mallory, _ = _cert(_name(O="Example", CN="mallory"))
    user = _user("alice", "x509", "CN=alice,O=Example")
    assert _refused(driver, Credentials("alice", "", mallory), user) == BAD_LOGIN
    # Same attributes in another order is another DN.
    _, swapped, _ = _cert(x509.Name(list(reversed(list(_name(O="Example", CN="alice"))))))
    assert _refused(driver, Credentials("alice", "", swapped), user) == BAD_LOGIN
    # A subject with one more RDN is another DN.
    _, longer, _ = _cert(_name(C="ES", O="Example", CN="alice"))
    assert _refused(driver, Credentials("alice", "", longer), user) == BAD_LOGIN
    assert "mutual TLS" in _refused(driver, Credentials("alice", ""), user)
    assert "mutual TLS" in _refused(driver, Credentials("alice", "", b""), user)
    message = _refused(driver, Credentials("alice", "", b"-----BEGIN CERTIFICATE-----\nxx"), user)
    assert "not a valid PEM certificate" in message
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)
    _, expired, _ = _cert(
        _name(O="Example", CN="alice"),
        not_before=past,
        not_after=past + datetime.timedelta(days=1),
    )
    assert "not valid at this time" in _refused(driver, Credentials("alice", "", expired), user)
    for stored in ("", "alice", "CN=alice,=x", None):
        message = _refused(driver, Credentials("alice", "", pem), _user("alice", "x509", stored))
        assert "stored certificate subject" in message
    assert _refused(driver, Credentials("alice", "", pem), None) == BAD_LOGIN
    core_user = _user("alice", "core", "CN=alice,O=Example")
    assert _refused(driver, Credentials("alice", "", pem), core_user) == BAD_LOGIN


def test_grpc_auth_context_carries_the_client_pem():
    """The fact the API relies on: with mutual TLS, grpc python's
    context.auth_context()["x509_pem_cert"] holds the client's certificate (PEM)."""
    import ipaddress

    ca_name = _name(CN="test-ca")
    ca, ca_pem, ca_key = _cert(ca_name, ca=True)
    san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    _, srv_pem, srv_key = _cert(_name(CN="server"), ca_key, ca.subject, san=san)
    _, cli_pem, cli_key = _cert(_name(O="Example", CN="alice"), ca_key, ca.subject)

    def pem(key) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    seen: dict = {}

    def handler(request: bytes, context) -> bytes:
        seen["keys"] = set(context.auth_context())
        seen["pem"] = peer_cert_from_context(context)
        seen["type"] = context.auth_context().get("transport_security_type")
        return b"ok"

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Call": grpc.unary_unary_rpc_method_handler(handler)}
            ),
        )
    )
    creds = grpc.ssl_server_credentials(
        [(pem(srv_key), srv_pem)], root_certificates=ca_pem, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        channel_creds = grpc.ssl_channel_credentials(ca_pem, pem(cli_key), cli_pem)
        with grpc.secure_channel(f"127.0.0.1:{port}", channel_creds) as channel:
            call = channel.unary_unary("/test.Echo/Call")
            assert call(b"hi", timeout=10) == b"ok"
    finally:
        server.stop(grace=None)
    assert PEM_CERT_KEY in seen["keys"] and "x509_common_name" in seen["keys"]
    assert seen["type"] == [b"ssl"]
    assert x509.load_pem_x509_certificate(seen["pem"]) == x509.load_pem_x509_certificate(cli_pem)
    user = _user("alice", "x509", "CN=alice,O=Example")
    ident = X509Driver().authenticate(Credentials("alice", "", seen["pem"]), user)
    assert ident.stored_secret == "CN=alice,O=Example"


def test_peer_cert_from_context_without_tls():
    class Plain:
        def auth_context(self) -> dict:
            return {}

    assert peer_cert_from_context(Plain()) is None
    assert peer_cert_from_context(object()) is None


# --- DNs --------------------------------------------------------------------------------


def test_normalize_dn():
    assert normalize_dn("CN=Admins, OU=Groups,DC=Example,DC=org") == (
        "cn=admins,ou=groups,dc=example,dc=org"
    )
    assert same_dn("uid=a+cn=b,dc=x", "CN=B+UID=A,DC=X")  # multi-valued RDN, any order
    assert same_dn(r"cn=a\,b,dc=x", r"cn=a\2Cb,dc=x")
    assert same_dn(r"cn=caf\C3\A9,dc=x", "cn=CAFÉ,dc=x")
    assert same_dn(r"cn=x\ ,dc=y", "cn=x,dc=y")  # surrounding spaces are insignificant
    assert not same_dn(r"cn=a\,b,dc=x", "cn=a,cn=b,dc=x")
    assert not same_dn("cn=a,dc=x", "cn=a,dc=y")
    for bad in ("", "  ", "admins", "cn=", "=x", "cn=a,", "cn=a\\", "c n=a", r"cn=\ff"):
        with pytest.raises(ValueError):
            normalize_dn(bad)
        assert not same_dn(bad, bad)
