"""The campaign's plan and totals: every kind with 3 and 5 front-ends, and recoveries
split into isolated ones (the 2 s target) and ones another fault overlapped."""

from bench.campaign import KIND_SETS, plan, totals


def test_plan_covers_every_kind_set_with_3_and_5_frontends_and_both_lane_counts():
    seen = {(p["nemesis"], p["frontends"], p["lanes"]) for p in map(plan, range(32))}
    assert seen == {(k, f, lanes) for k in KIND_SETS for f in (3, 5) for lanes in (1, 2)}


def _run(faults, **extra):
    return {
        "campaign": {"index": 0, "seed": 1, "frontends": 3},
        "operations": 10,
        "linearizable": True,
        "faults": faults,
        **extra,
    }


def test_isolated_and_overlapped_recoveries():
    alone = {"injected_at": 1.0, "healed_at": 2.0, "recovery_s": 0.5}
    # b heals at 6 but c (active 5.5..9) keeps the zone down: overlapped.
    b = {"injected_at": 5.0, "healed_at": 6.0, "recovery_s": 3.5}
    c = {"injected_at": 5.5, "healed_at": 9.0, "recovery_s": 0.4}
    t = totals([_run([alone, b, c]), _run([], lost=1, violation=True)])
    assert t["isolated_recoveries"] == 1 and t["isolated_recovery_s_max"] == 0.5
    assert t["overlapped_recoveries"] == 2 and t["overlapped_recovery_s_max"] == 3.5
    assert t["isolated_recovery_over_target"] == 0
    assert t["lost"] == 1 and t["violations"] == 1 and t["failing_seeds"] == [1]
