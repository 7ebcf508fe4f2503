"""The API's own call statistics, as Prometheus sees them."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from zones.api.metrics import LatencyHistogram, Metrics


def test_latency_histogram_buckets_are_cumulative_and_inclusive():
    h = LatencyHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.01, 3.0):
        h.observe(seconds)
    buckets, total = h.snapshot()
    assert buckets == [("0.001", 2), ("0.01", 4), ("+Inf", 5)]
    assert total == pytest.approx(3.0135)


def test_calls_and_latencies_are_exposed_by_method_and_code():
    from prometheus_client import generate_latest

    m = Metrics()
    m.observe("KVService/Put", "OK", 0.002)
    m.observe("KVService/Put", "OK", 0.004)
    m.observe("KVService/Put", "UNAVAILABLE", 0.5)
    m.propose_seconds.observe(0.003)
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(m.registry).decode())
        for s in family.samples
    }
    put = (("method", "KVService/Put"),)
    assert samples[("one_grpc_requests_total", (("code", "OK"), *put))] == 2
    assert samples[("one_grpc_requests_total", (("code", "UNAVAILABLE"), *put))] == 1
    assert samples[("one_grpc_request_seconds_count", put)] == 3
    assert samples[("one_grpc_request_seconds_bucket", (("le", "0.005"), *put))] == 2
    assert samples[("one_propose_seconds_count", ())] == 1
