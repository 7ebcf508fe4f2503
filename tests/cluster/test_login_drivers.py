"""Login through each authentication driver, end to end through the gRPC API: ssh keys,
x509 client certificates (mutual TLS), and LDAP against a real slapd (users created at
their first login, in the groups the directory maps them to)."""

from __future__ import annotations

import grpc
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.conftest import start_zone
from tests.ldapkit import GROUPS, SUFFIX, group_dn, user_dn
from zones.api.auth import relay_cert, verify_relayed_cert
from zones.api.client import Client
from zones.api.gen import user_pb2
from zones.authdrivers.ssh import sign_login
from zones.pki import make_cert


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def _stop(z) -> None:
    z.frontend.stop(grace=0)
    z.replica.close()
    z.store.close()


def _ssh_key() -> tuple[bytes, str]:
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return private, public.decode()


def test_ssh_key_login(tmp_path):
    z = start_zone(tmp_path, auth={"drivers": ["ssh"]})
    try:
        private, public = _ssh_key()
        with z.admin() as admin:
            uid = admin.user.Allocate(
                user_pb2.UserAllocateRequest(name="sshuser", password=public, driver="ssh")
            ).id
        with z.client().login("sshuser", sign_login(private, "sshuser")) as c:
            assert c.user_id == uid
            assert c.user.Info(user_pb2.UserInfoRequest(id=-1)).auth_driver == "ssh"
        other, _ = _ssh_key()
        code, details = _code(lambda: z.client().login("sshuser", sign_login(other, "sshuser")))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        # The signature is bound to the name: it does not log in anyone else.
        code, _ = _code(lambda: z.client().login("oneadmin", sign_login(private, "sshuser")))
        assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        _stop(z)


def test_x509_login_with_the_client_certificate(tmp_path):
    ca, ca_pem, _, ca_key = make_cert("test-ca", ca=True)
    _, srv_pem, srv_key, _ = make_cert("server", ca_key, ca.subject)
    alice_cert, alice_pem, alice_key, _ = make_cert("alice", ca_key, ca.subject)
    _, mallory_pem, mallory_key, _ = make_cert("mallory", ca_key, ca.subject)
    for name, data in [("ca.crt", ca_pem), ("server.crt", srv_pem), ("server.key", srv_key)]:
        (tmp_path / name).write_bytes(data)
    tls = {
        "cert": str(tmp_path / "server.crt"),
        "key": str(tmp_path / "server.key"),
        "client_ca": str(tmp_path / "ca.crt"),
    }
    z = start_zone(tmp_path, tls=tls, auth={"drivers": ["x509"]})

    def client(pem, key) -> Client:
        creds = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=key, certificate_chain=pem
        )
        return Client(z.endpoint, credentials=creds)

    try:
        with client(alice_pem, alice_key).login("oneadmin", z.password) as admin:
            dn = alice_cert.subject.rfc4514_string()
            admin.user.Allocate(
                user_pb2.UserAllocateRequest(name="alice", password=dn, driver="x509")
            )
        with client(alice_pem, alice_key).login("alice", "") as c:
            assert c.user.Info(user_pb2.UserInfoRequest(id=-1)).name == "alice"
        # Another valid certificate of the same CA is not alice's.
        with client(mallory_pem, mallory_key) as c:
            code, _ = _code(lambda: c.login("alice", ""))
            assert code == grpc.StatusCode.UNAUTHENTICATED
    finally:
        _stop(z)


def test_relayed_certificate_must_be_signed_recently_with_the_cluster_secret():
    secret = "s" * 32
    pem = b"-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n"
    md = dict(relay_cert(secret, 2, pem, now=1000))
    assert verify_relayed_cert(secret, md, now=1010) == pem
    assert verify_relayed_cert("t" * 32, md, now=1010) is None  # another secret
    assert verify_relayed_cert(secret, md, now=2000) is None  # too old
    forged = dict(md)
    forged["x-one-client-cert"] = dict(relay_cert(secret, 2, b"other", now=1000))[
        "x-one-client-cert"
    ]
    assert verify_relayed_cert(secret, forged, now=1010) is None
    assert verify_relayed_cert(secret, {}, now=1010) is None


@pytest.fixture
def ldap_zone(tmp_path, slapd):
    auth = {
        "drivers": ["ldap"],
        "ldap": {
            "uri": slapd.uri,
            "base_dn": SUFFIX,
            "group_base_dn": GROUPS,
            "timeout": 2,
            "groups": {group_dn("devs"): 100, group_dn("admins"): 101},
        },
    }
    z = start_zone(tmp_path, auth=auth)
    try:
        with z.admin() as admin:
            from zones.api.gen import group_pb2

            for name in ("devs", "admins"):
                admin.group.Allocate(group_pb2.GroupAllocateRequest(name=name))
        yield z
    finally:
        _stop(z)


def test_ldap_first_login_creates_the_user_in_its_mapped_groups(ldap_zone):
    z = ldap_zone
    with z.client().login("alice", "alice-pw-1") as c:
        me = c.user.Info(user_pb2.UserInfoRequest(id=-1))
    assert (me.name, me.auth_driver, me.gid, list(me.groups)) == ("alice", "ldap", 100, [100, 101])
    with z.store.read() as view:
        record = view.get("users", (me.id).to_bytes(8, "big"))
    assert record["password"] == user_dn("alice")  # the DN, never the password
    # A second login finds the same user.
    with z.client().login("alice", "alice-pw-1") as c:
        assert c.user_id == me.id
    code, details = _code(lambda: z.client().login("alice", "wrong"))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "wrong" not in details


def test_ldap_cannot_take_over_a_core_user(ldap_zone):
    """A directory account named like a zone user of another driver does not log in as it."""
    z = ldap_zone
    code, _ = _code(lambda: z.client().login("oneadmin", "alice-pw-1"))
    assert code == grpc.StatusCode.UNAUTHENTICATED
