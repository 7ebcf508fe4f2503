"""Scheduled actions of VMs (OpenNebula's SCHED_ACTION): validation and recurrence.

A scheduled action is written as an OpenNebula vector::

    SCHED_ACTION = [ ACTION = "poweroff", TIME = "+3600", REPEAT = "0", DAYS = "1,5",
                     END_TYPE = "1", END_VALUE = "10" ]

    ACTION     one of SCHED_ACTIONS (OpenNebula's names); ARGS for those that take some
    TIME       absolute, ms since the epoch ("1700000000000"), or "+N": N seconds after
               the command that adds it (OpenNebula counts epoch seconds; this project
               keeps every time in ms, as cmd["ts"])
    REPEAT     0 weekly, 1 monthly, 2 yearly, 3 hourly (absent: run once)
    DAYS       with REPEAT: weekly 0..6 (0 is Sunday), monthly 1..31, yearly 0..365 (0 is
               1 January), hourly one number of hours 1..168 (the period)
    END_TYPE   with REPEAT: 0 never, 1 after END_VALUE runs, 2 at the date END_VALUE (ms)

and stored in the VM record (str keys only) as::

    {"id", "action", "time", "repeat" (-1: once), "days": [int], "end_type" (-1: once),
     "end_value" (-1: none), "args": str, "done": ms of the last run (0: never),
     "runs": int, "message": str}

Everything here is pure: the caller passes the command's ts; recurrences are computed in
UTC. Running the actions is the leader's job (a later issue): `next_run` tells it when.
"""

from __future__ import annotations

import datetime as _dt
import re
from typing import Final

MAX_MS: Final = 253_402_300_799_999  # the end of year 9999 (UTC): later times are absurd
MAX_SCHED_ACTIONS: Final = 100  # per VM: keeps the record bounded

WEEKLY, MONTHLY, YEARLY, HOURLY = 0, 1, 2, 3
REPEATS: Final = {WEEKLY: "WEEKLY", MONTHLY: "MONTHLY", YEARLY: "YEARLY", HOURLY: "HOURLY"}
NEVER, TIMES, DATE = 0, 1, 2
END_TYPES: Final = {NEVER: "NEVER", TIMES: "TIMES", DATE: "DATE"}
NONE = -1

# Valid DAYS per REPEAT (inclusive ranges).
DAY_RANGES: Final = {WEEKLY: (0, 6), MONTHLY: (1, 31), YEARLY: (0, 365), HOURLY: (1, 168)}

# action -> the kinds of its ARGS ("int": an id, "name": a free text), OpenNebula's list
# restricted to the VM operations this project has.
SCHED_ACTIONS: Final[dict[str, tuple[str, ...]]] = {
    **{
        a: ()
        for a in (
            "terminate",
            "terminate-hard",
            "undeploy",
            "undeploy-hard",
            "hold",
            "release",
            "stop",
            "suspend",
            "resume",
            "reboot",
            "reboot-hard",
            "poweroff",
            "poweroff-hard",
        )
    },
    "disk-snapshot-create": ("int", "name"),  # DISK_ID, snapshot NAME
    "disk-snapshot-revert": ("int", "int"),  # DISK_ID, SNAPSHOT_ID
    "disk-snapshot-delete": ("int", "int"),
}
ARGS_HELP: Final = {
    "disk-snapshot-create": "DISK_ID,NAME",
    "disk-snapshot-revert": "DISK_ID,SNAPSHOT_ID",
    "disk-snapshot-delete": "DISK_ID,SNAPSHOT_ID",
}
KEYS: Final = ("ACTION", "TIME", "REPEAT", "DAYS", "END_TYPE", "END_VALUE", "ARGS")

_INT = re.compile(r"[0-9]{1,16}")
_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000


class SchedError(ValueError):
    """A bad scheduled action; the message names the attribute and what is wrong."""


def _int(text: str, key: str, lo: int, hi: int) -> int:
    text = text.strip()
    if not _INT.fullmatch(text):
        raise SchedError(f"{key} must be a whole number, got {text[:40]!r}")
    value = int(text)
    if not lo <= value <= hi:
        raise SchedError(f"{key} must be {lo}..{hi}, got {value}")
    return value


def parse_time(text: str, now_ms: int) -> int:
    """TIME: absolute ms, or "+N" seconds after `now_ms`."""
    text = text.strip()
    if text.startswith("+"):
        return now_ms + _int(text[1:], "TIME (+seconds)", 0, MAX_MS // 1000) * 1000
    return _int(text, "TIME", 0, MAX_MS)


def _days(text: str, repeat: int) -> list[int]:
    lo, hi = DAY_RANGES[repeat]
    parts = [p.strip() for p in text.split(",")]
    if not text.strip() or any(not p for p in parts):
        raise SchedError(f"DAYS must be a comma-separated list of numbers, got {text[:40]!r}")
    days = sorted({_int(p, f"DAYS (for {REPEATS[repeat]} repeat)", lo, hi) for p in parts})
    if repeat == HOURLY and len(days) != 1:
        raise SchedError("DAYS of an HOURLY repeat is one number: the period in hours")
    return days


def _args(action: str, text: str | None) -> str:
    kinds = SCHED_ACTIONS[action]
    if not kinds:
        if text is not None and text.strip():
            raise SchedError(f"ACTION {action} takes no ARGS")
        return ""
    if text is None:
        raise SchedError(f'ACTION {action} needs ARGS = "{ARGS_HELP[action]}"')
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != len(kinds) or any(not p for p in parts):
        raise SchedError(f'ARGS of {action} must be "{ARGS_HELP[action]}", got {text[:60]!r}')
    for part, kind, label in zip(parts, kinds, ARGS_HELP[action].split(","), strict=True):
        if kind == "int":
            _int(part, f"ARGS {label}", 0, 2**31 - 1)
    return ",".join(parts)


def parse(vector: dict[str, str], now_ms: int) -> dict:
    """A validated scheduled action (the stored form, without id/done/runs/message)."""
    unknown = sorted(k for k in vector if k not in KEYS)
    if unknown:
        raise SchedError(f"unknown attribute(s) {', '.join(unknown)} (known: {', '.join(KEYS)})")
    action = (vector.get("ACTION") or "").strip().lower()
    if not action:
        raise SchedError("ACTION is missing")
    if action not in SCHED_ACTIONS:
        raise SchedError(
            f"ACTION {action!r} cannot be scheduled (known: {', '.join(SCHED_ACTIONS)})"
        )
    if "TIME" not in vector:
        raise SchedError("TIME is missing")
    time = parse_time(vector["TIME"], now_ms)
    record = {
        "action": action,
        "time": time,
        "repeat": NONE,
        "days": [],
        "end_type": NONE,
        "end_value": NONE,
        "args": _args(action, vector.get("ARGS")),
    }
    if "REPEAT" not in vector:
        for key in ("DAYS", "END_TYPE", "END_VALUE"):
            if key in vector:
                raise SchedError(f"{key} needs REPEAT (the action runs only once without it)")
        return record
    repeat = _int(vector["REPEAT"], "REPEAT", WEEKLY, HOURLY)
    if "DAYS" not in vector:
        raise SchedError(f"DAYS is missing (REPEAT {REPEATS[repeat]} needs it)")
    record.update(repeat=repeat, days=_days(vector["DAYS"], repeat))
    end_type = _int(vector.get("END_TYPE", "0"), "END_TYPE", NEVER, DATE)
    record["end_type"] = end_type
    if end_type == NEVER:
        if "END_VALUE" in vector:
            raise SchedError("END_VALUE goes with END_TYPE 1 (times) or 2 (date), not 0 (never)")
        return record
    if "END_VALUE" not in vector:
        raise SchedError(f"END_VALUE is missing (END_TYPE {END_TYPES[end_type]} needs it)")
    if end_type == TIMES:
        record["end_value"] = _int(vector["END_VALUE"], "END_VALUE (times)", 1, 2**31 - 1)
    else:
        end = _int(vector["END_VALUE"], "END_VALUE (date, ms)", 0, MAX_MS)
        if end < time:
            raise SchedError(f"END_VALUE (date {end}) is before TIME ({time})")
        record["end_value"] = end
    return record


def to_vector(sched: dict) -> list[tuple[str, str]]:
    """A stored scheduled action as template pairs (for printing and templates)."""
    pairs = [("ID", str(sched["id"])), ("ACTION", sched["action"]), ("TIME", str(sched["time"]))]
    if sched["args"]:
        pairs.append(("ARGS", sched["args"]))
    if sched["repeat"] != NONE:
        pairs += [("REPEAT", str(sched["repeat"])), ("DAYS", ",".join(map(str, sched["days"])))]
        pairs.append(("END_TYPE", str(sched["end_type"])))
        if sched["end_value"] != NONE:
            pairs.append(("END_VALUE", str(sched["end_value"])))
    pairs += [("DONE", str(sched.get("done", 0))), ("MESSAGE", sched.get("message", ""))]
    return pairs


# --- recurrence -----------------------------------------------------------------------


def _utc(ms: int) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ms // 1000, _dt.UTC)


def _day_matches(day: _dt.date, repeat: int, days: list[int]) -> bool:
    if repeat == WEEKLY:
        return (day.isoweekday() % 7) in days  # Sunday is 0, as OpenNebula
    if repeat == MONTHLY:
        return day.day in days
    return day.timetuple().tm_yday - 1 in days  # YEARLY: 0 is 1 January


def next_run(sched: dict, after_ms: int) -> int | None:
    """When `sched` runs next strictly after `after_ms` (ms), or None if it never will
    again (a one-off that ran, or a repetition that reached its end)."""
    time, repeat = sched["time"], sched["repeat"]
    if repeat == NONE:
        return time if time > after_ms and not sched.get("done") else None
    if sched["end_type"] == TIMES and sched.get("runs", 0) >= sched["end_value"]:
        return None
    if time > after_ms:
        candidate: int | None = time
    elif repeat == HOURLY:
        period = sched["days"][0] * _HOUR_MS
        candidate = time + ((after_ms - time) // period + 1) * period
    else:
        candidate = _next_calendar(time, after_ms, repeat, sched["days"])
    if candidate is not None and sched["end_type"] == DATE and candidate > sched["end_value"]:
        return None
    return candidate


def _next_calendar(time: int, after_ms: int, repeat: int, days: list[int]) -> int | None:
    # Same time of day as TIME, on the first matching day after `after_ms`. Four years
    # and a day cover every pattern (a yearly day 365 exists only in leap years).
    time_of_day = time % _DAY_MS
    try:
        day = _utc(after_ms).date()
        for _ in range(4 * 366 + 1):
            start = int(_dt.datetime(day.year, day.month, day.day, tzinfo=_dt.UTC).timestamp())
            candidate = start * 1000 + time_of_day
            if candidate > after_ms and _day_matches(day, repeat, days):
                return candidate
            day += _dt.timedelta(days=1)
    except (OverflowError, ValueError):  # past the year 9999: never
        return None
    return None
