"""The gRPC API over TLS, with and without client certificates."""

import grpc
import pytest

from tests.conftest import start_zone
from zones.api.client import Client
from zones.api.gen import zone_pb2
from zones.pki import make_cert


@pytest.fixture
def pki(tmp_path):
    ca, ca_pem, _, ca_key = make_cert("test-ca", ca=True)
    _, srv_pem, srv_key, _ = make_cert("server", ca_key, ca.subject)
    _, cli_pem, cli_key, _ = make_cert("client", ca_key, ca.subject)
    files = {}
    for name, data in [("ca.crt", ca_pem), ("server.crt", srv_pem), ("server.key", srv_key)]:
        (tmp_path / name).write_bytes(data)
        files[name] = str(tmp_path / name)
    return files, ca_pem, cli_pem, cli_key


def _zone(tmp_path, tls):
    return start_zone(tmp_path, tls=tls)


def test_tls_server_refuses_plaintext_and_serves_tls(tmp_path, pki):
    files, ca_pem, _, _ = pki
    z = _zone(tmp_path, {"cert": files["server.crt"], "key": files["server.key"]})
    try:
        with Client(z.endpoint) as plain:
            with pytest.raises(grpc.RpcError) as err:
                plain.login("oneadmin", z.password, timeout=2)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        creds = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        with Client(z.endpoint, credentials=creds) as c:
            c.login("oneadmin", z.password)
            assert c.zone.Info(zone_pb2.ZoneInfoRequest()).name == "OpenNebula"
    finally:
        z.frontend.stop(grace=0)
        z.store.close()


def test_client_ca_requires_a_client_certificate(tmp_path, pki):
    files, ca_pem, cli_pem, cli_key = pki
    tls = {"cert": files["server.crt"], "key": files["server.key"], "client_ca": files["ca.crt"]}
    z = _zone(tmp_path, tls)
    try:
        no_cert = grpc.ssl_channel_credentials(root_certificates=ca_pem)
        with Client(z.endpoint, credentials=no_cert) as c:
            with pytest.raises(grpc.RpcError) as err:
                c.login("oneadmin", z.password, timeout=2)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        mutual = grpc.ssl_channel_credentials(
            root_certificates=ca_pem, private_key=cli_key, certificate_chain=cli_pem
        )
        with Client(z.endpoint, credentials=mutual) as c:
            c.login("oneadmin", z.password)
            assert c.zone.LocalStatus(zone_pb2.LocalStatusRequest()).state == "leader"
    finally:
        z.frontend.stop(grace=0)
        z.store.close()
