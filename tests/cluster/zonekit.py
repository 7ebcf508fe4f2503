"""Helpers for tests that drive a lab zone of real oned processes through gRPC."""

import time
import uuid

import grpc

from zones.api.gen import common_pb2, kv_pb2
from zones.lab import Lab

RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


def put(
    lab: Lab,
    key: str,
    value: bytes = b"v",
    rid: str | None = None,
    timeout: float = 20.0,
    prefer: int | None = None,
) -> int:
    """Write through any front-end, retrying the same request id until it is acknowledged."""
    rid = rid or uuid.uuid4().hex
    deadline = time.monotonic() + timeout
    order = list(range(lab.n))
    if prefer is not None:
        order.remove(prefer)
        order.insert(0, prefer)
    last = None
    while time.monotonic() < deadline:
        for i in order:
            if not lab.running(i):
                continue
            try:
                resp = lab.client(i).kv.Put(
                    kv_pb2.PutRequest(
                        key=key, value=value, options=common_pb2.WriteOptions(request_id=rid)
                    ),
                    timeout=2.0,
                )
                return resp.index
            except grpc.RpcError as e:
                if e.code() not in RETRYABLE:
                    raise
                last = e
        time.sleep(0.05)
    raise AssertionError(f"write {key} not acknowledged in {timeout} s: {last}")


def get(
    lab: Lab,
    i: int,
    key: str,
    linearizable: bool = False,
    min_index: int = 0,
    timeout: float = 20.0,
):
    """Read from front-end i, retrying while it is (re)starting or electing."""
    consistency = common_pb2.LINEARIZABLE if linearizable else common_pb2.LOCAL
    request = kv_pb2.GetRequest(
        key=key, options=common_pb2.ReadOptions(consistency=consistency, min_index=min_index)
    )
    deadline = time.monotonic() + timeout
    while True:
        try:
            return lab.client(i).kv.Get(request, timeout=5.0)
        except grpc.RpcError as e:
            if e.code() not in RETRYABLE or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def all_present(lab: Lab, keys: dict[str, int], servers: list[int] | None = None) -> None:
    """Every key is on every listed server (LOCAL reads after waiting for its index)."""
    for i in servers if servers is not None else range(lab.n):
        for key, index in keys.items():
            resp = get(lab, i, key, min_index=index)
            assert resp.found, f"acknowledged key {key} (index {index}) missing on fe{i}"
