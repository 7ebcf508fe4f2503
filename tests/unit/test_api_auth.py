"""Authentication: tokens, logins, peer signatures (in-process front-end, LocalReplica).
Every RPC run by every kind of caller: test_api_authz_matrix.py."""

import time

import grpc
import pytest

from zones.api.auth import PEER_KEY, REQUIREMENTS, Need, sign_peer
from zones.api.client import Client
from zones.api.gen import auth_pb2, kv_pb2, zone_pb2


def _code(fn) -> tuple[grpc.StatusCode, str]:
    try:
        fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
    return grpc.StatusCode.OK, ""


def test_every_served_rpc_is_in_the_requirements_table():
    import importlib
    import pkgutil

    import zones.api.gen as gen
    from zones.api.server import SERVICE_NAMES

    served = set()
    for info in pkgutil.iter_modules(gen.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"zones.api.gen.{info.name}")
        for svc in module.DESCRIPTOR.services_by_name.values():
            assert svc.full_name in SERVICE_NAMES, f"{svc.full_name} is not served"
            served |= {f"/{svc.full_name}/{m.name}" for m in svc.methods}
    assert served == set(REQUIREMENTS)
    assert REQUIREMENTS["/one.v1.AuthService/Login"] is Need.NOTHING


def test_malformed_authorization_metadata(zone):
    with Client(zone.endpoint, metadata=[("authorization", "Basic abc")]) as c:
        code, details = _code(lambda: c.zone.Info(zone_pb2.ZoneInfoRequest()))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer" in details


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


class _CountingReplica:
    """A LocalReplica that counts the reads made through it."""

    def __init__(self, replica) -> None:
        self._replica = replica
        self.reads = 0

    @property
    def auth_epoch(self) -> int:
        return self._replica.auth_epoch

    def read(self, *args, **kwargs):
        self.reads += 1
        return self._replica.read(*args, **kwargs)


def test_token_checks_are_remembered_until_tokens_or_users_change_or_it_expires(zone):
    from raftcore.auth import token_hash
    from zones.api.auth import Authenticator, UnknownToken
    from zones.api.errors import ApiError

    now = int(time.time() * 1000)
    token = zone.token_for(0, ttl_ms=60_000, ts_ms=now)
    replica = _CountingReplica(zone.replica)
    auth = Authenticator(replica, "s" * 32)
    assert auth.check_token(token, now_ms=now).uid == 0
    assert auth.check_token(token, now_ms=now + 1).uid == 0
    assert replica.reads == 1  # the second check was remembered
    # Past its expiry the remembered check is not used: the token is read and refused.
    with pytest.raises(ApiError, match="expired"):
        auth.check_token(token, now_ms=now + 60_000)
    assert replica.reads == 2
    # Any committed change to tokens or users ends what was remembered.
    other = zone.token_for(0)
    assert auth.check_token(token, now_ms=now).uid == 0 and replica.reads == 3
    _, result = zone.propose("token.revoke", {"token_hash": token_hash(token)})
    assert result["ok"], result
    with pytest.raises(UnknownToken):
        auth.check_token(token, now_ms=now)
    assert auth.check_token(other).uid == 0


def test_token_checks_are_not_remembered_without_an_auth_epoch(zone):
    from zones.api.auth import Authenticator

    class NoEpoch:
        reads = 0

        def read(self, *args, **kwargs):
            self.reads += 1
            return zone.replica.read(*args, **kwargs)

    replica = NoEpoch()
    auth = Authenticator(replica, "s" * 32)
    token = zone.token_for(0)
    auth.check_token(token)
    auth.check_token(token)
    assert replica.reads == 2
