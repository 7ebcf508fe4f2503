"""Authentication and authorization of every RPC (in-process front-end, LocalReplica)."""

import time

import grpc
import pytest

from zones.api.auth import PEER_KEY, REQUIREMENTS, Need, sign_peer
from zones.api.client import Client
from zones.api.gen import auth_pb2, kv_pb2, zone_pb2

# Every RPC with a request that would succeed for oneadmin (ServerReset aside).
CALLS = {
    "/one.v1.AuthService/Logout": lambda c: c.auth.Logout(auth_pb2.LogoutRequest()),
    "/one.v1.KVService/Put": lambda c: c.kv.Put(kv_pb2.PutRequest(key="k", value=b"v")),
    "/one.v1.KVService/Get": lambda c: c.kv.Get(kv_pb2.GetRequest(key="k")),
    "/one.v1.KVService/Delete": lambda c: c.kv.Delete(kv_pb2.DeleteRequest(key="k")),
    "/one.v1.ZoneService/Info": lambda c: c.zone.Info(zone_pb2.ZoneInfoRequest()),
    "/one.v1.ZoneService/LocalStatus": lambda c: c.zone.LocalStatus(zone_pb2.LocalStatusRequest()),
    "/one.v1.ZoneService/ServerAdd": lambda c: c.zone.ServerAdd(
        zone_pb2.ServerAddRequest(
            name="x", raft_endpoint="127.0.0.1:1", grpc_endpoint="127.0.0.1:2"
        )
    ),
    "/one.v1.ZoneService/ServerDel": lambda c: c.zone.ServerDel(zone_pb2.ServerDelRequest(id=0)),
    "/one.v1.ZoneService/ServerReset": lambda c: c.zone.ServerReset(
        zone_pb2.ServerResetRequest(id=0)
    ),
}


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def test_every_served_rpc_is_in_the_requirements_table():
    from zones.api.gen import auth_pb2 as a
    from zones.api.gen import kv_pb2 as k
    from zones.api.gen import zone_pb2 as z
    from zones.api.server import SERVICE_NAMES

    served = set()
    for mod in (a, k, z):
        for svc in mod.DESCRIPTOR.services_by_name.values():
            assert svc.full_name in SERVICE_NAMES
            served |= {f"/{svc.full_name}/{m.name}" for m in svc.methods}
    assert served == set(REQUIREMENTS)
    assert set(CALLS) == served - {"/one.v1.AuthService/Login"}
    assert REQUIREMENTS["/one.v1.AuthService/Login"] is Need.NOTHING


@pytest.mark.parametrize("method", sorted(CALLS))
@pytest.mark.parametrize(
    "token,fragment",
    [
        (None, "authentication required"),
        ("not-a-real-token", "invalid token"),
    ],
    ids=["no-token", "bad-token"],
)
def test_rpc_without_a_valid_token_is_unauthenticated(zone, method, token, fragment):
    before = zone.store.applied_index
    with zone.client(token) as c:
        code, details = _code(lambda: CALLS[method](c))
    assert code == grpc.StatusCode.UNAUTHENTICATED, details
    assert fragment in details
    assert zone.store.applied_index == before  # nothing changed


@pytest.mark.parametrize("method", sorted(CALLS))
def test_expired_token_is_unauthenticated(zone, method):
    past = int(time.time() * 1000) - 60_000
    token = zone.token_for(0, ttl_ms=1000, ts_ms=past)  # expired 59 s ago
    before = zone.store.applied_index
    with zone.client(token) as c:
        code, details = _code(lambda: CALLS[method](c))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "expired" in details
    assert zone.store.applied_index == before


def test_malformed_authorization_metadata(zone):
    with Client(zone.endpoint, metadata=[("authorization", "Basic abc")]) as c:
        code, details = _code(lambda: c.zone.Info(zone_pb2.ZoneInfoRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer" in details


@pytest.mark.parametrize(
    "method",
    [
        "/one.v1.ZoneService/ServerAdd",
        "/one.v1.ZoneService/ServerDel",
        "/one.v1.ZoneService/ServerReset",
    ],
)
def test_non_admin_is_denied_membership_changes_and_nothing_changes(zone, method):
    zone.add_user(5, "alice")
    token = zone.token_for(5)
    servers, before = zone.servers(), zone.store.applied_index
    with zone.client(token) as c:
        code, details = _code(lambda: CALLS[method](c))
        assert code == grpc.StatusCode.PERMISSION_DENIED
        assert "oneadmin" in details
        # ... while the ordinary calls work for her
        assert c.kv.Put(kv_pb2.PutRequest(key="a", value=b"1")).index > 0
    assert zone.servers() == servers
    assert zone.store.applied_index == before + 1  # only her Put


def test_disabled_user_token_is_refused(zone):
    zone.add_user(6, "bob")
    token = zone.token_for(6)
    zone.add_user(6, "bob", enabled=False)
    with zone.client(token) as c:
        code, details = _code(lambda: c.kv.Get(kv_pb2.GetRequest(key="k")))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "disabled" in details


def test_login_and_logout(zone):
    c = zone.admin()
    assert c.user_id == 0 and c.token
    assert c.kv.Put(kv_pb2.PutRequest(key="k", value=b"v")).index > 0
    c.auth.Logout(auth_pb2.LogoutRequest())
    code, details = _code(lambda: c.kv.Get(kv_pb2.GetRequest(key="k")))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    c.close()


def test_login_ttl_sets_expiry(zone):
    with zone.client() as c:
        before = time.time() * 1000
        resp = c.auth.Login(
            auth_pb2.LoginRequest(username="oneadmin", password=zone.password, ttl_seconds=60)
        )
    assert before + 59_000 <= resp.expires_unix_ms <= time.time() * 1000 + 61_000


@pytest.mark.parametrize(
    "user,password,code",
    [
        ("oneadmin", "wrong", grpc.StatusCode.UNAUTHENTICATED),
        ("nobody", "x", grpc.StatusCode.UNAUTHENTICATED),
        ("", "x", grpc.StatusCode.INVALID_ARGUMENT),
        ("u" * 200, "x", grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_failed_login_changes_nothing(zone, user, password, code):
    before = zone.store.applied_index
    with zone.client() as c:
        got, details = _code(lambda: c.login(user, password))
    assert got == code
    if code == grpc.StatusCode.UNAUTHENTICATED:
        assert details == "invalid username or password"  # same for both causes
    assert zone.store.applied_index == before


def test_two_logins_give_two_working_tokens(zone):
    a, b = zone.admin(), zone.admin()
    assert a.token != b.token
    a.auth.Logout(auth_pb2.LogoutRequest())
    assert b.kv.Get(kv_pb2.GetRequest(key="k")).found is False
    a.close()
    b.close()


def test_local_status_accepts_peer_signature_only_there(zone):
    good = [(PEER_KEY, sign_peer(zone.frontend.secret, 1))]
    with Client(zone.endpoint, metadata=good) as c:
        st = c.zone.LocalStatus(zone_pb2.LocalStatusRequest())
        assert st.state == "leader" and st.name == "fe0"
        code, _ = _code(lambda: c.zone.Info(zone_pb2.ZoneInfoRequest()))
        assert code == grpc.StatusCode.UNAUTHENTICATED  # peer auth is for LocalStatus only
    for value, fragment in [
        (sign_peer("another-secret-of-some-length", 1), "bad peer signature"),
        (sign_peer(zone.frontend.secret, 1, now=time.time() - 600), "off this front-end's clock"),
        ("1:2", "malformed"),
    ]:
        with Client(zone.endpoint, metadata=[(PEER_KEY, value)]) as c:
            code, details = _code(lambda c=c: c.zone.LocalStatus(zone_pb2.LocalStatusRequest()))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert fragment in details


def test_admin_membership_calls_pass_authorization(zone):
    with zone.admin() as c:
        # LocalReplica has no reset: the call got past auth to the handler.
        code, _ = _code(lambda: CALLS["/one.v1.ZoneService/ServerReset"](c))
        assert code == grpc.StatusCode.UNIMPLEMENTED
        code, details = _code(lambda: c.zone.ServerDel(zone_pb2.ServerDelRequest(id=42)))
        assert code == grpc.StatusCode.NOT_FOUND and "42" in details
