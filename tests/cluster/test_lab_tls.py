"""A 3-front-end lab zone serving gRPC over mutual TLS: plaintext and certificate-less
clients are refused, forwarding between front-ends runs over TLS, the CLIs connect with
ONE_CA/ONE_CERT/ONE_KEY, and an x509 login through a follower sees the client's
certificate (relayed and signed by the follower), not the follower's own."""

from __future__ import annotations

import json

import grpc
import pytest
from cryptography import x509

from zones.api.client import Client
from zones.api.gen import kv_pb2, user_pb2, zone_pb2
from zones.cli import onezone
from zones.lab import Lab


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    with Lab(
        tmp_path_factory.mktemp("tlslab"), frontends=3, tls="mutual", auth_drivers=("x509",)
    ) as lab:
        yield lab


def _code(fn) -> grpc.StatusCode:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code()
    return grpc.StatusCode.OK


def _follower(lab: Lab) -> int:
    leader = lab.leader_index()
    return next(i for i in range(lab.n) if i != leader)


def test_plaintext_and_certificateless_clients_are_refused(lab):
    endpoint = lab.fes[0].grpc
    with Client(endpoint) as plain:
        assert _code(lambda: plain.login("oneadmin", lab.password, timeout=2)) == (
            grpc.StatusCode.UNAVAILABLE
        )
    ca = (lab.pki_dir / "ca.crt").read_bytes()
    with Client(endpoint, credentials=grpc.ssl_channel_credentials(root_certificates=ca)) as c:
        assert _code(lambda: c.login("oneadmin", lab.password, timeout=2)) == (
            grpc.StatusCode.UNAVAILABLE
        )


def test_writes_through_a_follower_are_forwarded_over_tls(lab):
    c = lab.client(_follower(lab))
    assert c.kv.Put(kv_pb2.PutRequest(key="tls", value=b"1")).index > 0
    got = c.kv.Get(kv_pb2.GetRequest(key="tls", options={"consistency": 1}))
    assert got.found and got.value == b"1"


def test_cli_connects_with_the_lab_ca_and_client_certificate(lab, monkeypatch, capsys):
    for key, value in lab.describe().items():
        if key.startswith("ONE_"):
            monkeypatch.setenv(key, value)
    assert onezone.main(["show", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert len(info["servers"]) == 3
    monkeypatch.delenv("ONE_CA")
    assert onezone.main(["show"]) == 1
    assert "need --ca" in capsys.readouterr().err


def test_x509_login_through_a_follower_uses_the_clients_certificate(lab):
    dn = x509.load_pem_x509_certificate((lab.pki_dir / "client.crt").read_bytes()).subject
    admin = lab.client()
    admin.user.Allocate(
        user_pb2.UserAllocateRequest(name="certuser", password=dn.rfc4514_string(), driver="x509")
    )
    # A user whose DN is the follower's: its own certificate must not log that user in.
    i = _follower(lab)
    own = lab.pki_dir / f"{lab.fes[i].name}.crt"
    fe_dn = x509.load_pem_x509_certificate(own.read_bytes()).subject
    admin.user.Allocate(
        user_pb2.UserAllocateRequest(name="feuser", password=fe_dn.rfc4514_string(), driver="x509")
    )
    with Client(lab.fes[i].grpc, credentials=lab.credentials()) as c:
        c.login("certuser", "")
        assert c.user.Info(user_pb2.UserInfoRequest(id=-1)).name == "certuser"
        assert c.zone.Info(zone_pb2.ZoneInfoRequest()).name
    with Client(lab.fes[i].grpc, credentials=lab.credentials()) as c:
        assert _code(lambda: c.login("feuser", "")) == grpc.StatusCode.UNAUTHENTICATED
