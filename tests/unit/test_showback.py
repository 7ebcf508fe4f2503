"""Showback and accounting from VM history records (pure)."""

import pytest

from raftcore.showback import (
    Month,
    ShowbackError,
    accounting,
    months,
    showback,
    totals,
    vm_showback,
)

H = 3_600_000
NOV_1 = Month(2026, 11).bounds()[0]
DEC_1 = Month(2026, 12).bounds()[0]


def vm(vid=1, uid=5, gid=100, history=(), cpu=2.0, memory=1024, disks=(10, 20), costs=""):
    return {
        "id": vid,
        "name": f"vm{vid}",
        "uid": uid,
        "gid": gid,
        "cpu": cpu,
        "memory": memory,
        "disks": [{"disk_id": i, "size": s} for i, s in enumerate(disks)],
        "history": list(history),
        "template": costs or "CPU_COST = 0.5\nMEMORY_COST = 0.001\nDISK_COST = 0.01",
    }


def test_month_bounds_and_parse():
    assert Month.parse("2026-11") == Month.parse("11/2026") == Month(2026, 11)
    start, end = Month(2026, 2).bounds()
    assert (end - start) == 28 * 24 * H
    assert str(Month(2026, 12).next()) == "2027-01"
    for bad in ("2026", "2026-13", "x-y", "1960-01"):
        with pytest.raises(ShowbackError):
            Month.parse(bad)
    with pytest.raises(ShowbackError, match="ends"):
        months(Month(2026, 5), Month(2026, 4))


def test_costs_per_hour():
    # 10 hours in November on one host.
    v = vm(history=[{"seq": 0, "stime": NOV_1 + H, "etime": NOV_1 + 11 * H}])
    row = vm_showback(v, Month(2026, 11), now=DEC_1)
    assert row["hours"] == 10
    assert row["cpu_cost"] == pytest.approx(0.5 * 2 * 10)
    assert row["memory_cost"] == pytest.approx(0.001 * 1024 * 10)
    assert row["disk_cost"] == pytest.approx(0.01 * 30 * 10)
    assert row["total_cost"] == pytest.approx(10 + 10.24 + 3)
    assert vm_showback(v, Month(2026, 10), now=DEC_1) is None


def test_a_record_across_months_is_split_and_open_records_run_until_now():
    v = vm(history=[{"seq": 0, "stime": DEC_1 - 2 * H, "etime": 0}])
    rows = showback([v], Month(2026, 11), Month(2026, 12), now=DEC_1 + 3 * H)
    assert [(r["month"], r["hours"]) for r in rows] == [(11, 2), (12, 3)]


def test_no_costs_no_charge_and_totals_per_user():
    a = vm(1, uid=5, history=[{"stime": NOV_1, "etime": NOV_1 + H}])
    b = vm(2, uid=5, history=[{"stime": NOV_1, "etime": NOV_1 + 2 * H}])
    c = vm(3, uid=6, history=[{"stime": NOV_1, "etime": NOV_1 + H}], costs="NAME = x")
    rows = showback([c, b, a], Month(2026, 11), Month(2026, 11), now=DEC_1)
    assert [r["vmid"] for r in rows] == [1, 2, 3]
    assert rows[2]["total_cost"] == 0
    per_user = totals(rows, "uid")
    assert [(t["uid"], t["vms"]) for t in per_user] == [(5, 2), (6, 1)]
    assert per_user[0]["total_cost"] == pytest.approx(rows[0]["total_cost"] + rows[1]["total_cost"])


def test_accounting_lists_overlapping_records():
    a = vm(
        1,
        history=[
            {"seq": 0, "stime": NOV_1, "etime": NOV_1 + H},
            {"seq": 1, "stime": NOV_1 + 5 * H, "etime": 0},
        ],
    )
    recs = accounting([a], NOV_1 + 2 * H, NOV_1 + 6 * H, now=NOV_1 + 7 * H)
    assert [(r["vmid"], r["seq"]) for r in recs] == [(1, 1)]
    assert len(accounting([a], NOV_1, DEC_1, now=DEC_1)) == 2
