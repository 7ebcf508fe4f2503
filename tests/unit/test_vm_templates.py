"""VM templates in the state machine: allocate and its checks, clone, instantiate (merge,
names, rights), delete; scheduled actions' recurrence (raftcore.schedule)."""

from __future__ import annotations

import calendar
import copy

import pytest

from raftcore import schedule, template
from tests import vmkit
from tests.statekit import TS, Zone
from tests.vmkit import ALICE, rec

TEXT = """NAME = "small"
CPU = "0.5"
MEMORY = "256"
CPU_COST = "0.1"
DISK = [ IMAGE_ID = "0" ]
DISK = [ SIZE = "100", TYPE = "fs" ]
NIC = [ NETWORK_ID = "0" ]
"""


@pytest.fixture(scope="module")
def base() -> Zone:
    return vmkit.zone()


@pytest.fixture
def z(base) -> Zone:
    return Zone(copy.deepcopy(base.state))


def test_allocate_and_names(z):
    t = z.ok("template.allocate", {"template": TEXT}, uid=ALICE)["id"]
    record = rec(z, "template", t)
    assert (record["name"], record["uid"], record["gid"]) == ("small", ALICE, 1)
    assert "NAME" not in template.parse(record["template"])
    assert 'CPU_COST = "0.1"' in record["template"]
    z.fails("template.allocate", {"template": TEXT}, ALICE, "ACTION", "already taken")
    # names are unique per owner: another user may reuse it
    assert z.ok("template.allocate", {"template": TEXT})["id"] == t + 1
    z.ok("template.allocate", {"template": 'CPU = "1"', "name": "given"}, uid=ALICE)
    z.fails(
        "template.allocate",
        {"template": 'CPU = "1"'},
        ALICE,
        "BAD_REQUEST",
        "missing argument 'name'",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('NAME = "t"\nCPU = "0"', "CPU must be > 0"),
        ('NAME = "t"\nCPU = "1.005"', "at most two decimals"),
        ('NAME = "t"\nVCPU = "0"', "VCPU must be 1.."),
        ('NAME = "t"\nVCPU = "2.5"', "VCPU must be a whole number"),
        ('NAME = "t"\nMEMORY = "0"', "MEMORY must be 1.."),
        ('NAME = "t"\nMEMORY = "-5"', "MEMORY must be a whole number"),
        ('NAME = "t"\nDISK = "3"', "DISK 0 must be a vector"),
        ('NAME = "t"\nDISK = [ TARGET = "vda" ]', "DISK 0: needs IMAGE_ID"),
        ('NAME = "t"\nDISK = [ IMAGE_ID = "x" ]', "IMAGE_ID must be a whole number"),
        ('NAME = "t"\nNIC = "0"', "NIC 0 must be a vector"),
        ('NAME = "t"\nNIC = [ MODEL = "virtio" ]', "NIC 0: needs NETWORK_ID"),
        ('NAME = "t"\nSCHED_ACTION = [ ACTION = "stop" ]', "TIME is missing"),
        ('NAME = "t"\nCPU = "1"\nX = [', "line 3"),
    ],
)
def test_allocate_refuses(z, text, message):
    z.fails("template.allocate", {"template": text}, ALICE, "BAD_REQUEST", message)


def test_allocate_limits(z):
    huge = 'NAME = "t"\nX = "' + "x" * (1 << 20) + '"'
    z.fails("template.allocate", {"template": huge}, ALICE, "BAD_REQUEST", "1 MiB")
    z.fails(
        "template.allocate", {"template": TEXT, "x": 1}, ALICE, "BAD_REQUEST", "unknown argument"
    )
    z.fails("template.allocate", {"template": 5}, ALICE, "BAD_REQUEST", "template text")


def test_clone(z):
    t = z.ok("template.allocate", {"template": TEXT})["id"]
    z.ok("obj.chmod", {"kind": "template", "id": t, "perms": 0o644})
    c = z.ok("template.clone", {"id": t, "name": "mine"}, uid=ALICE)["id"]
    copy_ = rec(z, "template", c)
    assert (copy_["name"], copy_["uid"], copy_["template"]) == (
        "mine",
        ALICE,
        rec(z, "template", t)["template"],
    )
    z.fails("template.clone", {"id": t, "name": "mine"}, ALICE, "ACTION", "already taken")
    z.fails(
        "template.clone", {"id": t, "name": "x", "recursive": True}, 0, "ACTION", "not supported"
    )
    z.fails("template.clone", {"id": 99, "name": "x"}, 0, "NO_EXISTS", "template 99 does not exist")
    z.fails("template.clone", {"id": t}, 0, "BAD_REQUEST", "missing argument 'name'")
    z.ok("obj.chmod", {"kind": "template", "id": t, "perms": 0o600})
    z.fails("template.clone", {"id": t, "name": "y"}, ALICE, "AUTHORIZATION", "USE")


def test_instantiate(z):
    t = z.ok("template.allocate", {"template": TEXT}, uid=ALICE)["id"]
    v = z.ok("template.instantiate", {"id": t}, uid=ALICE)["id"]
    vm = rec(z, "vm", v)
    assert (vm["name"], vm["template_id"], vm["uid"], vm["cpu"], vm["memory"]) == (
        f"small-{v}",
        t,
        ALICE,
        0.5,
        256,
    )
    assert [d.get("image_id") for d in vm["disks"]] == [0, None] and len(vm["nics"]) == 1
    assert 'TEMPLATE_ID = "0"' in vm["template"] and 'CPU_COST = "0.1"' in vm["template"]
    # overrides replace attributes of the same name (one DISK replaces both)
    override = 'MEMORY = "1024"\nDISK = [ SIZE = "5" ]'
    args = {"id": t, "name": "big", "hold": True, "template": override}
    w = z.ok("template.instantiate", args, uid=ALICE)["id"]
    vm = rec(z, "vm", w)
    assert (vm["name"], vm["memory"], vmkit.pair(z, w)) == ("big", 1024, "HOLD")
    assert [d["size"] for d in vm["disks"]] == [5]
    assert rec(z, "template", t)["template"] == template.render(
        template.parse(TEXT.replace('NAME = "small"\n', ""))
    )


def test_instantiate_refusals(z):
    t = z.ok("template.allocate", {"template": TEXT})["id"]
    bob = z.ok("user.allocate", {"name": "bob", "password": "scrypt$y", "driver": "core"})["id"]
    z.fails("template.instantiate", {"id": t}, bob, "AUTHORIZATION", "USE")
    z.fails("template.instantiate", {"id": t, "persistent": True}, 0, "ACTION", "not supported")
    z.fails(
        "template.instantiate",
        {"id": t, "template": 'CPU = "0"'},
        0,
        "BAD_REQUEST",
        "CPU must be > 0",
    )
    z.fails("template.instantiate", {"id": t, "hold": "yes"}, 0, "BAD_REQUEST", "boolean")
    z.fails("template.instantiate", {"id": 42}, 0, "NO_EXISTS", "template 42")
    partial = z.ok("template.allocate", {"template": 'NAME = "p"\nCPU = "1"'})["id"]
    z.fails("template.instantiate", {"id": partial}, 0, "BAD_REQUEST", "must set MEMORY")


def test_delete(z):
    t = z.ok("template.allocate", {"template": TEXT}, uid=ALICE)["id"]
    z.fails("template.delete", {"id": t, "recursive": True}, ALICE, "ACTION", "not supported")
    bob = z.ok("user.allocate", {"name": "bob", "password": "scrypt$y", "driver": "core"})["id"]
    z.fails("template.delete", {"id": t}, bob, "AUTHORIZATION", "MANAGE")
    z.ok("template.delete", {"id": t}, uid=ALICE)
    assert rec(z, "template", t) is None
    z.fails("template.delete", {"id": t}, ALICE, "NO_EXISTS", f"template {t} does not exist")


# --- scheduled actions: recurrence -------------------------------------------------------------


def _ms(*ymdhm: int) -> int:
    return calendar.timegm((*ymdhm, 0)) * 1000 if len(ymdhm) == 5 else 0


def _sched(vector: dict, now: int = TS) -> dict:
    return {**schedule.parse(vector, now), "id": 0, "done": 0, "runs": 0, "message": ""}


def test_one_off_runs_once():
    s = _sched({"ACTION": "poweroff", "TIME": "+60"})
    assert schedule.next_run(s, TS) == TS + 60_000
    assert schedule.next_run(s, TS + 60_000) is None
    assert schedule.next_run({**s, "done": TS + 60_000}, TS) is None


def test_weekly_monthly_yearly_hourly():
    monday_9 = _ms(2026, 3, 2, 9, 0)  # a Monday
    weekly = _sched({"ACTION": "reboot", "TIME": str(monday_9), "REPEAT": "0", "DAYS": "0,3"})
    # Wednesday then Sunday, at 09:00 UTC
    assert schedule.next_run(weekly, monday_9) == _ms(2026, 3, 4, 9, 0)
    assert schedule.next_run(weekly, _ms(2026, 3, 4, 9, 0)) == _ms(2026, 3, 8, 9, 0)
    monthly = _sched({"ACTION": "reboot", "TIME": str(monday_9), "REPEAT": "1", "DAYS": "31"})
    assert schedule.next_run(monthly, monday_9) == _ms(2026, 3, 31, 9, 0)
    assert schedule.next_run(monthly, _ms(2026, 3, 31, 9, 0)) == _ms(2026, 5, 31, 9, 0)
    yearly = _sched({"ACTION": "reboot", "TIME": str(monday_9), "REPEAT": "2", "DAYS": "365"})
    assert schedule.next_run(yearly, monday_9) == _ms(2028, 12, 31, 9, 0)  # leap years only
    hourly = _sched({"ACTION": "reboot", "TIME": str(monday_9), "REPEAT": "3", "DAYS": "5"})
    assert schedule.next_run(hourly, monday_9) == monday_9 + 5 * 3_600_000
    assert schedule.next_run(hourly, monday_9 - 1) == monday_9


def test_ends_after_times_or_at_a_date():
    start = _ms(2026, 3, 2, 9, 0)
    times = _sched(
        {
            "ACTION": "reboot",
            "TIME": str(start),
            "REPEAT": "3",
            "DAYS": "1",
            "END_TYPE": "1",
            "END_VALUE": "2",
        }
    )
    assert schedule.next_run({**times, "runs": 1}, start) == start + 3_600_000
    assert schedule.next_run({**times, "runs": 2}, start) is None
    end = start + 2 * 3_600_000
    dated = _sched(
        {
            "ACTION": "reboot",
            "TIME": str(start),
            "REPEAT": "3",
            "DAYS": "1",
            "END_TYPE": "2",
            "END_VALUE": str(end),
        }
    )
    assert schedule.next_run(dated, start + 3_600_000) == end
    assert schedule.next_run(dated, end) is None


def test_to_vector_round_trips_through_parse():
    s = _sched(
        {
            "ACTION": "disk-snapshot-create",
            "TIME": "5",
            "ARGS": "0, nightly",
            "REPEAT": "1",
            "DAYS": "1,15",
        }
    )
    pairs = dict(schedule.to_vector(s))
    assert pairs["ARGS"] == "0,nightly" and pairs["DAYS"] == "1,15"
    again = schedule.parse({k: v for k, v in pairs.items() if k in schedule.KEYS}, TS)
    assert again == {k: s[k] for k in again}
