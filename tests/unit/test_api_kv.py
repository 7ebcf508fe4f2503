"""KVService through the real gRPC API over a LocalReplica."""

import threading

import grpc
import pytest

from zones.api.gen import common_pb2, kv_pb2


@pytest.fixture
def admin(zone):
    c = zone.admin()
    yield c
    c.close()


def _put(c, key, value=b"v", rid=""):
    return c.kv.Put(
        kv_pb2.PutRequest(key=key, value=value, options=common_pb2.WriteOptions(request_id=rid)),
        timeout=5,
    )


def test_put_get_delete(admin):
    idx = _put(admin, "a", b"1").index
    got = admin.kv.Get(kv_pb2.GetRequest(key="a"))
    assert (got.found, got.value, got.revision) == (True, b"1", idx)
    assert got.applied_index >= idx
    d = admin.kv.Delete(kv_pb2.DeleteRequest(key="a"))
    assert d.deleted and d.index > idx
    assert not admin.kv.Get(kv_pb2.GetRequest(key="a")).found
    assert not admin.kv.Delete(kv_pb2.DeleteRequest(key="a")).deleted


def test_utf8_keys_and_binary_values(admin):
    value = bytes(range(256))
    _put(admin, "clé/ü/日本", value)
    assert admin.kv.Get(kv_pb2.GetRequest(key="clé/ü/日本")).value == value
    _put(admin, "k" * 511, b"")  # exactly the limit (LMDB's largest key)
    _put(admin, "big", b"x" * (1 << 20))  # exactly 1 MiB
    assert len(admin.kv.Get(kv_pb2.GetRequest(key="big")).value) == 1 << 20


BAD = [
    (lambda c: _put(c, ""), "key must not be empty"),
    (lambda c: _put(c, "k" * 512), "key of 512 bytes exceeds"),
    (lambda c: _put(c, "é" * 256), "key of 512 bytes exceeds"),
    (lambda c: _put(c, "v", b"x" * ((1 << 20) + 1)), "value of 1048577 bytes exceeds"),
    (lambda c: _put(c, "r", rid="r" * 129), "request_id must be at most 128"),
    (lambda c: _put(c, "r", rid="\U0001f600" * 128), "request_id must be at most 256 bytes"),
    (lambda c: c.kv.Get(kv_pb2.GetRequest(key="")), "key must not be empty"),
    (lambda c: c.kv.Delete(kv_pb2.DeleteRequest(key="x" * 600)), "key of 600 bytes"),
    (
        lambda c: c.kv.Delete(
            kv_pb2.DeleteRequest(key="x", options=common_pb2.WriteOptions(request_id="d" * 200))
        ),
        "request_id",
    ),
]


@pytest.mark.parametrize("call,message", BAD, ids=[m for _, m in BAD])
def test_bad_input_is_invalid_argument_and_changes_nothing(zone, admin, call, message):
    before = zone.store.applied_index
    with pytest.raises(grpc.RpcError) as err:
        call(admin)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.value.details()
    assert zone.store.applied_index == before


def test_retried_request_id_returns_the_first_result(admin):
    first = _put(admin, "once", b"1", rid="req-1").index
    again = _put(admin, "once", b"2", rid="req-1").index
    assert again == first
    assert admin.kv.Get(kv_pb2.GetRequest(key="once")).value == b"1"
    d1 = admin.kv.Delete(
        kv_pb2.DeleteRequest(key="once", options=common_pb2.WriteOptions(request_id="del-1"))
    )
    d2 = admin.kv.Delete(
        kv_pb2.DeleteRequest(key="once", options=common_pb2.WriteOptions(request_id="del-1"))
    )
    assert d1 == d2 and d1.deleted


def test_request_id_reused_by_another_command_is_refused(admin):
    _put(admin, "x", rid="shared")
    with pytest.raises(grpc.RpcError) as err:
        admin.kv.Delete(
            kv_pb2.DeleteRequest(key="x", options=common_pb2.WriteOptions(request_id="shared"))
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "already used" in err.value.details()


def test_missing_request_id_gets_a_fresh_one(admin):
    a = _put(admin, "k", b"1").index
    b = _put(admin, "k", b"2").index
    assert b > a
    assert admin.kv.Get(kv_pb2.GetRequest(key="k")).value == b"2"


def test_local_read_waits_for_min_index(zone, admin):
    idx = _put(admin, "k", b"1").index
    want = idx + 1
    result = {}

    def reader():
        result["resp"] = admin.kv.Get(
            kv_pb2.GetRequest(key="k", options=common_pb2.ReadOptions(min_index=want)), timeout=10
        )

    t = threading.Thread(target=reader)
    t.start()
    # The reader cannot finish before index `want` exists.
    t.join(0.05)
    assert "resp" not in result
    assert _put(admin, "k", b"2").index == want
    t.join(10)
    assert result["resp"].value == b"2"
    assert result["resp"].applied_index >= want


def test_local_read_of_a_future_index_times_out(zone, admin):
    with pytest.raises(grpc.RpcError) as err:
        admin.kv.Get(
            kv_pb2.GetRequest(
                key="k", options=common_pb2.ReadOptions(min_index=zone.store.applied_index + 100)
            ),
            timeout=0.3,
        )
    assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def test_linearizable_read_on_the_leader(admin):
    idx = _put(admin, "lin", b"x").index
    got = admin.kv.Get(
        kv_pb2.GetRequest(
            key="lin", options=common_pb2.ReadOptions(consistency=common_pb2.LINEARIZABLE)
        )
    )
    assert got.found and got.revision == idx


def test_metrics_count_calls(zone, admin):
    _put(admin, "m")
    text = _scrape(zone)
    assert 'one_grpc_requests_total{code="OK",method="KVService/Put"}' in text
    assert "one_raft_applied_index" in text
    assert "one_propose_seconds_count" in text


def _scrape(zone) -> str:
    from prometheus_client import generate_latest

    return generate_latest(zone.frontend.metrics.registry).decode()
