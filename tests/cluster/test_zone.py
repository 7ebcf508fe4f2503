"""Real oned processes on 127.0.0.1: failures, restarts, snapshots, membership, forwarding."""

import os
import signal

import grpc
import pytest

from tests.cluster.raftkit import wait_for
from tests.cluster.zonekit import all_present, get, put
from zones.api.gen import common_pb2, kv_pb2, zone_pb2
from zones.lab import Lab

pytestmark = pytest.mark.cluster


@pytest.fixture
def zone3(tmp_path):
    with Lab(tmp_path / "zone", frontends=3, raft_overrides={"snapshot_min_entries": 100}) as lab:
        yield lab


def test_leader_sigkill_loses_no_acknowledged_write_and_a_new_leader_serves(zone3):
    acked = {f"a{i}": put(zone3, f"a{i}") for i in range(30)}
    old = zone3.leader_index()
    zone3.kill(old, signal.SIGKILL)
    new = zone3.leader_index(exclude=(old,))
    assert new != old
    acked.update({f"b{i}": put(zone3, f"b{i}") for i in range(10)})
    zone3.start(old)
    all_present(zone3, acked)


def test_every_acknowledged_write_survives_killing_all_frontends_at_once(zone3):
    acked = {f"k{i}": put(zone3, f"k{i}", value=b"x" * 100) for i in range(150)}
    for i in range(3):
        zone3.kill(i, signal.SIGKILL)
    for i in range(3):
        zone3.start(i)
    zone3.leader_index(timeout=20)
    all_present(zone3, acked)
    for key in list(acked)[:5]:
        assert get(zone3, zone3.leader_index(), key, linearizable=True).found


def test_follower_restart_catches_up_by_snapshot(zone3):
    leader = zone3.leader_index()
    follower = (leader + 1) % 3
    zone3.kill(follower)
    acked = {f"s{i}": put(zone3, f"s{i}") for i in range(250)}
    zone3.start(follower)
    all_present(zone3, acked, servers=[follower])
    log = open(zone3.frontend(follower).log).read()
    assert "installed snapshot" in log


def test_write_on_a_follower_is_forwarded_to_the_leader(zone3):
    leader = zone3.leader_index()
    follower = (leader + 1) % 3
    index = put(zone3, "via-follower", b"fwd", prefer=follower)
    assert get(zone3, follower, "via-follower", min_index=index).value == b"fwd"
    assert get(zone3, follower, "via-follower", linearizable=True).value == b"fwd"


def test_retried_request_id_is_applied_once(zone3):
    first = put(zone3, "once", b"1", rid="fixed-request-id")
    again = put(zone3, "once", b"2", rid="fixed-request-id")
    assert again == first
    leader = zone3.leader_index()
    resp = get(zone3, leader, "once", linearizable=True)
    assert resp.value == b"1" and resp.revision == first


def test_no_leader_fails_fast_with_a_clear_error(zone3):
    leader = zone3.leader_index()
    others = [i for i in range(3) if i != leader]
    for i in others:
        zone3.kill(i)
    survivor = zone3.client(leader)
    wait_for(
        lambda: zone3.local_status(leader).state != "leader",
        timeout=10,
        what="the lone leader steps down",
    )
    # It must fail with a reason well before the 30 s deadline (not DEADLINE_EXCEEDED).
    with pytest.raises(grpc.RpcError) as err:
        survivor.kv.Put(kv_pb2.PutRequest(key="x", value=b"y"), timeout=30)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no leader" in err.value.details()


def test_server_del_and_add_change_the_zone(tmp_path):
    with Lab(tmp_path / "zone", frontends=3) as lab:
        admin = lab.client()
        leader = lab.leader_index()
        victim = (leader + 1) % 3
        admin.zone.ServerDel(zone_pb2.ServerDelRequest(id=victim), timeout=10)
        lab.kill(victim)
        info = admin.zone.Info(zone_pb2.ZoneInfoRequest(), timeout=10)
        assert victim not in [s.id for s in info.servers]
        # Two servers remain: both are needed, and writes still commit.
        put(lab, "after-del")
        added = admin.zone.ServerAdd(
            zone_pb2.ServerAddRequest(
                name="fe-new",
                raft_endpoint=lab.frontend(victim).raft,
                grpc_endpoint=lab.frontend(victim).grpc,
            ),
            timeout=10,
        )
        assert added.id == 3  # server ids are never reused
        info = admin.zone.Info(zone_pb2.ZoneInfoRequest(), timeout=10)
        assert 3 in [s.id for s in info.servers]
        with pytest.raises(grpc.RpcError) as err:
            admin.zone.ServerAdd(
                zone_pb2.ServerAddRequest(
                    name="fe-new", raft_endpoint="127.0.0.1:1", grpc_endpoint="127.0.0.1:2"
                ),
                timeout=10,
            )
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("frontends", [5])
def test_five_frontends_survive_two_failures(tmp_path, frontends):
    with Lab(tmp_path / "zone", frontends=frontends) as lab:
        acked = {f"f{i}": put(lab, f"f{i}") for i in range(20)}
        leader = lab.leader_index()
        second = (leader + 1) % frontends
        lab.kill(leader)
        lab.kill(second)
        acked.update({f"g{i}": put(lab, f"g{i}") for i in range(20)})
        lab.start(leader)
        lab.start(second)
        all_present(lab, acked)


def test_bad_requests_are_refused_and_change_nothing(zone3):
    c = zone3.client()
    for request, fragment in [
        (kv_pb2.PutRequest(key="", value=b"x"), "key"),
        (kv_pb2.PutRequest(key="k" * 600, value=b"x"), "key"),
        (kv_pb2.PutRequest(key="big", value=b"x" * (1024 * 1024 + 1)), "value"),
        (
            kv_pb2.PutRequest(
                key="r", value=b"x", options=common_pb2.WriteOptions(request_id="r" * 200)
            ),
            "request",
        ),
    ]:
        with pytest.raises(grpc.RpcError) as err:
            c.kv.Put(request, timeout=5)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert fragment in err.value.details().lower()
    assert not get(zone3, zone3.leader_index(), "big", linearizable=True).found


def _worker_pid(lab: Lab, i: int) -> int:
    children = open(f"/proc/{lab.frontend(i).pid}/task/{lab.frontend(i).pid}/children").read()
    [pid] = [int(p) for p in children.split()]
    return pid


def _state(lab: Lab, i: int) -> str:
    try:
        return lab.local_status(i).state
    except grpc.RpcError:
        return "unreachable"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_api_worker_and_raft_process_live_and_die_together(zone3):
    leader = zone3.leader_index()
    follower = (leader + 1) % 3
    worker = _worker_pid(zone3, follower)
    os.kill(worker, signal.SIGKILL)  # the worker dies: its oned stops too
    wait_for(lambda: not zone3.running(follower), timeout=10, what="oned exits")
    zone3.start(follower)
    wait_for(lambda: _state(zone3, follower) == "follower", 20, "the follower serves again")
    worker = _worker_pid(zone3, follower)
    zone3.kill(follower)  # oned dies: its worker goes with it
    wait_for(lambda: not _alive(worker), timeout=10, what="the worker exits")
    put(zone3, "still-serving")


def _journal(lab: Lab, i: int) -> str:
    return os.path.join(lab.frontend(i).data_dir, "raft", "journal", "log")


def test_torn_journal_tail_is_cut_on_restart_and_the_server_catches_up(zone3):
    leader = zone3.leader_index()
    follower = (leader + 1) % 3
    acked = {f"t{i}": put(zone3, f"t{i}") for i in range(30)}
    zone3.kill(follower)
    path = _journal(zone3, follower)
    os.truncate(path, os.path.getsize(path) - 7)  # a record half written at the crash
    acked.update({f"u{i}": put(zone3, f"u{i}") for i in range(10)})
    zone3.start(follower)
    all_present(zone3, acked, servers=[follower])
    assert "discarding a torn tail" in open(zone3.frontend(follower).log).read()


def test_corruption_inside_the_journal_refuses_to_start(zone3):
    leader = zone3.leader_index()
    follower = (leader + 1) % 3
    for i in range(30):
        put(zone3, f"c{i}")
    zone3.kill(follower)
    path = _journal(zone3, follower)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        f.write(b"\xde\xad\xbe\xef")
    zone3.start(follower)
    wait_for(lambda: not zone3.running(follower), timeout=15, what="oned refuses to start")
    log = open(zone3.frontend(follower).log).read()
    assert "refusing to start on a corrupt journal" in log
    put(zone3, "zone-still-serves")


def test_a_revoked_token_is_refused_by_every_front_end_that_checked_it(zone3):
    # The API workers remember token checks; the raft process pushes the store's
    # auth_epoch to them when tokens or users change, which must end the memory.
    from zones.api.client import Client
    from zones.api.gen import auth_pb2

    leader = zone3.leader_index()
    follower = (leader + 1) % 3
    index = put(zone3, "auth-cache")
    assert get(zone3, follower, "auth-cache", min_index=index).found  # the follower serves
    with Client(zone3.fes[follower].grpc) as reader, Client(zone3.fes[leader].grpc) as writer:
        reader.login("oneadmin", zone3.password)
        writer.set_token(reader.token)
        read = kv_pb2.GetRequest(key="auth-cache", options=common_pb2.ReadOptions(min_index=index))
        assert reader.kv.Get(read, timeout=5).found  # the follower's worker checked it
        assert writer.kv.Put(kv_pb2.PutRequest(key="k", value=b"v"), timeout=5).index
        writer.auth.Logout(auth_pb2.LogoutRequest(), timeout=5)

        def refused(client, call) -> bool:
            try:
                call(client)
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.UNAUTHENTICATED, e
                return True
            return False

        assert refused(writer, lambda c: c.kv.Put(kv_pb2.PutRequest(key="k"), timeout=5))
        wait_for(
            lambda: refused(reader, lambda c: c.kv.Get(read, timeout=5)),
            timeout=10,
            what="the follower to refuse the revoked token",
        )
