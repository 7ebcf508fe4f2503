"""ZoneService, forwarding from a follower, health and reflection (in-process)."""

import time
from contextlib import contextmanager

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from raftcore.errors import NotLeader
from raftcore.replica import CONSISTENCY_LINEARIZABLE, ROLE_CANDIDATE, ROLE_FOLLOWER
from tests.conftest import start_zone
from zones.api.auth import FORWARDED_KEY
from zones.api.client import Client
from zones.api.gen import common_pb2, kv_pb2, zone_pb2
from zones.config import free_port, from_dict
from zones.frontend import Frontend


@pytest.fixture
def zone2(tmp_path):
    """A zone whose config lists a second server that is not running."""
    z = start_zone(tmp_path, n=2)
    yield z
    z.frontend.stop(grace=0)
    z.replica.close()
    z.store.close()


def test_info_shows_zone_servers_and_status(zone):
    with zone.admin() as c:
        info = c.zone.Info(zone_pb2.ZoneInfoRequest())
    assert (info.id, info.name, info.state) == (0, "OpenNebula", "ENABLED")
    assert [(s.id, s.name, s.grpc_endpoint) for s in info.servers] == [(0, "fe0", zone.endpoint)]
    assert info.endpoint == zone.endpoint
    [st] = info.status
    assert (st.id, st.name, st.state, st.vote, st.fed_index) == (0, "fe0", "leader", 0, -1)
    assert st.commit == st.applied == zone.store.applied_index
    assert 'NAME="OpenNebula"' in info.template


def test_info_marks_an_unreachable_server_as_error(zone2):
    with zone2.admin() as c:
        # The peer deadline (0.5 s) bounds the fan-out well inside this call's own.
        info = c.zone.Info(zone_pb2.ZoneInfoRequest(), timeout=5)
    rows = {st.id: st for st in info.status}
    assert rows[0].state == "leader"
    assert rows[1].state == "error" and rows[1].name == "fe1"
    # Refused at once, or (from the asyncio server's worker threads) still connecting
    # when the 0.5 s peer deadline passes: either way the row says why.
    assert rows[1].error.split(":")[0] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_server_add_validates_input(zone):
    with zone.admin() as c:
        before = zone.store.applied_index
        for req, fragment in [
            (zone_pb2.ServerAddRequest(raft_endpoint="127.0.0.1:1", grpc_endpoint="h:2"), "name"),
            (
                zone_pb2.ServerAddRequest(name="n", raft_endpoint="nope", grpc_endpoint="h:2"),
                "raft",
            ),
            (zone_pb2.ServerAddRequest(name="n", raft_endpoint="h:1"), "grpc_endpoint is required"),
        ]:
            with pytest.raises(grpc.RpcError) as err:
                c.zone.ServerAdd(req)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert fragment in err.value.details()
    assert zone.store.applied_index == before


def test_server_add_on_the_local_replica_reports_unavailable(zone):
    with zone.admin() as c:
        with pytest.raises(grpc.RpcError) as err:
            c.zone.ServerAdd(
                zone_pb2.ServerAddRequest(
                    name="fe9", raft_endpoint="127.0.0.1:7", grpc_endpoint="127.0.0.1:8"
                )
            )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "membership" in err.value.details()


def test_health_and_reflection(zone):
    with Client(zone.endpoint) as c:
        health = health_pb2_grpc.HealthStub(c.channel)
        for service in ("", "one.v1.KVService", "one.v1.ZoneService", "one.v1.AuthService"):
            resp = health.Check(health_pb2.HealthCheckRequest(service=service))
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

        stub = reflection_pb2_grpc.ServerReflectionStub(c.channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"one.v1.KVService", "one.v1.ZoneService", "grpc.health.v1.Health"} <= names


# --- forwarding -----------------------------------------------------------------------


class FollowerReplica:
    """A follower's view of the leader's store: writes raise NotLeader(leader)."""

    def __init__(self, leader_replica, raft_address: str, leader: str | None) -> None:
        self._leader_replica = leader_replica
        self.raft_address = raft_address
        self.server_id = 1
        self.leader_address = leader
        self.role = ROLE_FOLLOWER

    def propose(self, command, timeout=5.0):
        raise NotLeader(self.leader_address)

    @contextmanager
    def read(self, consistency="local", min_index=0, timeout=5.0):
        if consistency == CONSISTENCY_LINEARIZABLE:
            raise NotLeader(self.leader_address)
        with self._leader_replica.read("local", min_index, timeout) as view:
            yield view

    def status(self):
        st = self._leader_replica.status()
        st.server_id, st.raft_address, st.role = 1, self.raft_address, self.role
        return st

    def is_leader(self):
        return False

    def leader(self):
        return self.leader_address

    def subscribe_role(self, callback):
        pass

    def close(self):
        pass


@pytest.fixture
def pair(tmp_path):
    """(leader zone, follower Frontend) sharing the leader's store."""
    z = start_zone(tmp_path, n=2)
    data = {
        "server_id": 1,
        "name": "fe1",
        "data_dir": str(tmp_path / "data1"),
        "raft_address": z.config.servers[1].raft,
        "grpc_address": z.config.servers[1].grpc,
        "secret_file": z.config.secret_file,
        "auth_file": z.config.auth_file,
        "servers": [vars(s) for s in z.config.servers],
        "raft": {"election_timeout_min": 0.2, "election_timeout_max": 0.5},
    }
    cfg = from_dict(data, base=tmp_path)
    replica = FollowerReplica(z.replica, cfg.raft_address, z.config.raft_address)
    fe = Frontend(cfg, replica=replica, store=z.store).start()
    yield z, fe, replica
    fe.stop(grace=0)
    z.frontend.stop(grace=0)
    z.replica.close()
    z.store.close()


def _forwarded(fe) -> float:
    from prometheus_client import generate_latest

    for line in generate_latest(fe.metrics.registry).decode().splitlines():
        if line.startswith('one_grpc_forwarded_total{method="KVService/Put"}'):
            return float(line.split()[-1])
    return 0.0


def test_follower_forwards_writes_and_linearizable_reads(pair):
    z, fe, _ = pair
    with Client(fe.config.grpc_address) as c:
        c.login("oneadmin", z.password)  # Login itself is a write: forwarded
        idx = c.kv.Put(kv_pb2.PutRequest(key="f", value=b"1")).index
        assert _forwarded(fe) == 1
        lin = c.kv.Get(
            kv_pb2.GetRequest(
                key="f", options=common_pb2.ReadOptions(consistency=common_pb2.LINEARIZABLE)
            )
        )
        assert lin.value == b"1" and lin.revision == idx
        local = c.kv.Get(kv_pb2.GetRequest(key="f", options=common_pb2.ReadOptions(min_index=idx)))
        assert local.value == b"1"
        info = c.zone.Info(zone_pb2.ZoneInfoRequest())  # served by the follower
        states = {st.id: st.state for st in info.status}
        assert states == {0: "leader", 1: "follower"}


def test_forwarded_request_keeps_its_request_id(pair):
    z, fe, _ = pair
    with Client(fe.config.grpc_address) as c:
        c.login("oneadmin", z.password)
        req = kv_pb2.PutRequest(
            key="r", value=b"1", options=common_pb2.WriteOptions(request_id="fwd-rid")
        )
        first = c.kv.Put(req).index
        with z.admin() as direct:  # the same id straight to the leader: same result
            assert direct.kv.Put(req).index == first


def test_already_forwarded_call_is_not_forwarded_again(pair):
    z, fe, _ = pair
    token = z.admin().token
    with Client(fe.config.grpc_address, token=token, metadata=[(FORWARDED_KEY, "1")]) as c:
        with pytest.raises(grpc.RpcError) as err:
            c.kv.Put(kv_pb2.PutRequest(key="x", value=b"1"))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "not the leader" in err.value.details()


@pytest.mark.parametrize(
    "role,message",
    [(ROLE_CANDIDATE, "no leader: election in progress"), (ROLE_FOLLOWER, "no leader found")],
)
def test_no_leader_fails_fast_with_the_state(pair, role, message):
    z, fe, replica = pair
    token = z.admin().token
    replica.leader_address, replica.role = None, role
    with Client(fe.config.grpc_address, token=token) as c:
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as err:
            c.kv.Put(kv_pb2.PutRequest(key="x", value=b"1"), timeout=10)
        elapsed = time.monotonic() - started
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert err.value.details() == message
    assert elapsed < 2.0


def test_unreachable_leader_gives_unavailable(pair):
    z, fe, replica = pair
    token = z.admin().token
    replica.leader_address = f"127.0.0.1:{free_port()}"  # not in any table
    with Client(fe.config.grpc_address, token=token) as c:
        with pytest.raises(grpc.RpcError) as err:
            c.kv.Put(kv_pb2.PutRequest(key="x", value=b"1"), timeout=5)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
