"""Accounting and showback from VM history records (OpenNebula's oneacct / oneshowback).

Pure: the caller passes `now` (ms) for records still open. A VM's history records say
when it sat on which host: {"seq", "hid", "hostname", "stime", "etime" (0: open), ...}.
Showback charges, per VM and calendar month (UTC), for the time its history records
overlap the month, from the costs in the VM's template (per hour, as OpenNebula):

    CPU_COST     per CPU                     x CPU
    MEMORY_COST  per MB of memory            x MEMORY
    DISK_COST    per MB of disk              x the sum of the disks' SIZE
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass

from raftcore import template

HOUR_MS = 3_600_000
COSTS = ("CPU_COST", "MEMORY_COST", "DISK_COST")


class ShowbackError(ValueError):
    """A bad month or range; the message says which."""


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """ "2026-11" (or "11/2026", OpenNebula's CLI form)."""
        try:
            if "/" in text:
                m, y = text.split("/")
            else:
                y, m = text.split("-")
            month = cls(int(y), int(m))
        except ValueError:
            raise ShowbackError(f"month {text!r} must be YYYY-MM (or MM/YYYY)") from None
        if not (1 <= month.month <= 12 and 1970 <= month.year <= 9999):
            raise ShowbackError(f"month {text!r} is out of range")
        return month

    def bounds(self) -> tuple[int, int]:
        """[start, end) of the month in ms since the epoch (UTC)."""
        start = calendar.timegm((self.year, self.month, 1, 0, 0, 0))
        days = calendar.monthrange(self.year, self.month)[1]
        return start * 1000, (start + days * 86400) * 1000

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def months(first: Month, last: Month) -> list[Month]:
    if (last.year, last.month) < (first.year, first.month):
        raise ShowbackError(f"the range ends ({last}) before it starts ({first})")
    out = [first]
    while (out[-1].year, out[-1].month) < (last.year, last.month):
        out.append(out[-1].next())
    if len(out) > 1200:
        raise ShowbackError("a range of at most 100 years")
    return out


def _number(tmpl: template.Template, key: str) -> float:
    value = tmpl.scalar(key)
    try:
        return float(value) if value not in (None, "") else 0.0
    except ValueError:
        return 0.0  # a malformed cost charges nothing rather than failing the report


def costs_of(vm: dict) -> dict[str, float]:
    tmpl = template.parse(vm.get("template", ""))
    return {k: _number(tmpl, k) for k in COSTS}


def _overlap_ms(records: Iterable[dict], start: int, end: int, now: int) -> int:
    total = 0
    for h in records:
        s = h.get("stime", 0)
        e = h.get("etime") or now
        total += max(0, min(e, end) - max(s, start))
    return total


def vm_showback(vm: dict, month: Month, now: int) -> dict | None:
    """The VM's showback row for `month`, or None if it did not run then."""
    start, end = month.bounds()
    ms = _overlap_ms(vm.get("history", ()), start, end, now)
    if ms == 0:
        return None
    hours = ms / HOUR_MS
    c = costs_of(vm)
    disk_mb = sum(d.get("size", 0) or 0 for d in vm.get("disks", ()))
    cpu = c["CPU_COST"] * float(vm.get("cpu", 0)) * hours
    memory = c["MEMORY_COST"] * float(vm.get("memory", 0)) * hours
    disk = c["DISK_COST"] * float(disk_mb) * hours
    return {
        "vmid": vm["id"],
        "vmname": vm["name"],
        "uid": vm["uid"],
        "gid": vm["gid"],
        "year": month.year,
        "month": month.month,
        # Unrounded: short runs cost fractions of a cent; rounding is for display.
        "hours": hours,
        "cpu_cost": cpu,
        "memory_cost": memory,
        "disk_cost": disk,
        "total_cost": cpu + memory + disk,
    }


def showback(vms: Iterable[dict], first: Month, last: Month, now: int) -> list[dict]:
    """Rows per VM and month in [first, last], ordered by month then VM id."""
    span = months(first, last)
    rows = []
    vms = list(vms)
    for month in span:
        for vm in sorted(vms, key=lambda v: v["id"]):
            row = vm_showback(vm, month, now)
            if row is not None:
                rows.append(row)
    return rows


def totals(rows: Iterable[dict], by: str) -> list[dict]:
    """Sum of rows per (`by` = "uid" | "gid", year, month)."""
    acc: dict[tuple[int, int, int], dict] = {}
    for r in rows:
        k = (r[by], r["year"], r["month"])
        t = acc.setdefault(
            k, {by: r[by], "year": r["year"], "month": r["month"], "vms": 0, "total_cost": 0.0}
        )
        t["vms"] += 1
        t["total_cost"] += r["total_cost"]
    return [acc[k] for k in sorted(acc)]


def accounting(vms: Iterable[dict], start: int, end: int, now: int) -> list[dict]:
    """Every history record overlapping [start, end) (ms), with its VM's owner and size,
    ordered by start time (OpenNebula's oneacct)."""
    out = []
    for vm in vms:
        for h in vm.get("history", ()):
            if h.get("stime", 0) < end and (h.get("etime") or now) > start:
                out.append(
                    {
                        **h,
                        "vmid": vm["id"],
                        "vmname": vm["name"],
                        "uid": vm["uid"],
                        "gid": vm["gid"],
                        "cpu": vm.get("cpu", 0),
                        "memory": vm.get("memory", 0),
                    }
                )
    return sorted(out, key=lambda r: (r.get("stime", 0), r["vmid"], r.get("seq", 0)))
