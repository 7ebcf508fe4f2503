"""`python -m bench authz` on a small state: runs, checks every outcome, one JSON line."""

import json

from bench import authz


def test_bench_authz_small(capsys):
    argv = ["--users", "60", "--groups", "6", "--rules", "80", "--calls", "300"]
    assert authz.main([*argv, "--warmup", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"p50_ms", "p99_ms", "calls", "rules", "users"} <= out.keys()
    assert (out["calls"], out["rules"], out["users"], out["mismatches"]) == (300, 80, 60, 0)
    assert set(out["by_kind"]) == {"bits", "acl", "denied"}
    assert 0 < out["p50_ms"] <= out["p99_ms"]
