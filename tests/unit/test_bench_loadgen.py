"""bench.loadgen: percentiles on known data and a tiny closed loop."""

import asyncio
import math

import pytest

from bench import loadgen
from bench.loadgen import percentile


def test_percentile_known_data():
    data = [float(x) for x in range(1, 101)]  # 1..100
    assert percentile(data, 0) == 1.0
    assert percentile(data, 100) == 100.0
    assert percentile(data, 50) == pytest.approx(50.5)
    assert percentile(data, 99) == pytest.approx(99.01)
    assert percentile([1.0, 2.0, 3.0, 4.0], 25) == pytest.approx(1.75)
    assert percentile([7.0], 99) == 7.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(data, 101)


def test_summary_in_ms():
    r = loadgen.Result(clients=2, seconds=2.0, elapsed_s=2.0)
    r.latencies = [0.001] * 98 + [0.010, 0.020]
    s = r.summary()
    assert s["ops"] == 100
    assert s["ops_per_s"] == 50.0
    assert s["p50_ms"] == pytest.approx(1.0)
    assert s["p99_ms"] == pytest.approx(10.1)


class SleepWorkload:
    """Each request takes ~5 ms; every 10th fails."""

    async def open(self):
        self.seen = set()

    async def request(self, client, seq):
        assert (client, seq) not in self.seen
        self.seen.add((client, seq))
        await asyncio.sleep(0.005)
        if seq % 10 == 9:
            raise RuntimeError("boom")

    async def close(self):
        pass


def test_closed_loop_rate_and_errors():
    r = loadgen.run(SleepWorkload(), clients=4, seconds=0.5, warmup=0.1)
    s = r.summary()
    # 4 clients x ~5 ms per request (+ backoff after errors): well under 800/s.
    assert 200 < s["ops_per_s"] <= 800
    assert 3 <= s["p50_ms"] < 50
    assert s["errors"] > 0 and s["error_kinds"] == {"RuntimeError": s["errors"]}


def test_count_bound():
    r = loadgen.run(SleepWorkload(), clients=2, seconds=5, warmup=0, max_requests=20)
    assert r.started == 20
    assert r.elapsed_s < 1.0
