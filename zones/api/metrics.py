"""Prometheus metrics of one front-end (its own registry, served on metrics_address)."""

from __future__ import annotations

import bisect
import logging
import threading

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from zones.config import split_address

log = logging.getLogger(__name__)

_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
)  # fmt: skip


class RaftCollector:
    """Raft gauges read from replica.status() at scrape time."""

    def __init__(self, replica, server_id: int) -> None:
        self._replica = replica
        self._server_id = str(server_id)

    def describe(self):
        return []

    def collect(self):
        try:
            st = self._replica.status()
        except Exception as e:  # a scrape must never break the server
            log.debug("raft status for metrics failed: %s", e)
            return
        labels = ["server_id"]
        for name, doc, value in (
            ("one_raft_term", "Current raft term", st.term),
            ("one_raft_log_index", "Last raft log index", st.log_index),
            ("one_raft_commit_index", "Raft commit index", st.commit_index),
            ("one_raft_applied_index", "Index applied to the state store", st.applied_index),
            ("one_raft_is_leader", "1 if this front-end is the leader", st.role == "leader"),
            ("one_raft_members", "Servers in the raft configuration", len(st.members)),
        ):
            g = GaugeMetricFamily(name, doc, labels=labels)
            g.add_metric([self._server_id], float(value))
            yield g


class LatencyHistogram:
    """A latency histogram for the per-call path: one lock and a bisect per observation
    (prometheus_client's Histogram takes a lock per bucket and per sum, and walks the
    buckets in Python: a measurable share of a write's time in the API worker's loop)."""

    def __init__(self, bounds: tuple[float, ...] = _LATENCY_BUCKETS) -> None:
        self._bounds = bounds
        self._counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, seconds: float) -> None:
        i = bisect.bisect_left(self._bounds, seconds)
        with self._lock:
            self._counts[i] += 1
            self._sum += seconds

    def snapshot(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative (le, count) buckets and the sum, for a HistogramMetricFamily."""
        with self._lock:
            counts, total = list(self._counts), self._sum
        buckets, running = [], 0
        for bound, count in zip((*map(str, self._bounds), "+Inf"), counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets, total


class CallCollector:
    """Exposes the per-call statistics of Metrics at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def describe(self):
        return []

    def collect(self):
        m = self._metrics
        with m._lock:
            calls = dict(m._calls)
            latency = dict(m._latency)
        requests = CounterMetricFamily(
            "one_grpc_requests",
            "gRPC calls served, by method and status code",
            labels=["method", "code"],
        )
        for (method, code), n in sorted(calls.items()):
            requests.add_metric([method, code], n)
        yield requests
        seconds = HistogramMetricFamily(
            "one_grpc_request_seconds", "gRPC call latency, by method", labels=["method"]
        )
        for method, histogram in sorted(latency.items()):
            buckets, total = histogram.snapshot()
            seconds.add_metric([method], buckets, total)
        yield seconds
        buckets, total = m.propose_seconds.snapshot()
        yield HistogramMetricFamily(
            "one_propose_seconds",
            "Time from propose to the applied result on this front-end (leader)",
            buckets=buckets,
            sum_value=total,
        )


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._calls: dict[tuple[str, str], int] = {}
        self._latency: dict[str, LatencyHistogram] = {}
        self.propose_seconds = LatencyHistogram()
        self.registry.register(CallCollector(self))
        self.forwarded = Counter(
            "one_grpc_forwarded",
            "Calls forwarded to the leader, by method",
            ["method"],
            registry=self.registry,
        )
        self.apply_seconds = Histogram(
            "one_apply_seconds",
            "Time to apply one committed log entry to the state store",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._http = None

    def add_raft(self, replica, server_id: int) -> None:
        self.registry.register(RaftCollector(replica, server_id))

    def observe(self, method: str, code: str, seconds: float) -> None:
        histogram = self._latency.get(method)
        if histogram is None:
            with self._lock:
                histogram = self._latency.setdefault(method, LatencyHistogram())
        key = (method, code)
        with self._lock:
            self._calls[key] = self._calls.get(key, 0) + 1
        histogram.observe(seconds)

    def serve(self, address: str) -> int:
        """Serve /metrics on host:port (port 0: any); returns the bound port."""
        host, port = split_address(address)
        host = host.strip("[]")
        self._http, _thread = start_http_server(port, addr=host, registry=self.registry)
        return self._http.server_port

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
