"""oneacct and oneshowback: the history records and the showback of VMs (OpenNebula's
commands of the same names).

    oneacct [--user U] [--group G] [--start YYYY-MM-DD] [--end YYYY-MM-DD]
        VID HOSTNAME ACTION REASON START_TIME END_TIME MEMORY CPU
    oneshowback list [--user U] [--group G] [--start YYYY-MM] [--end YYYY-MM]
        UID USER GID GROUP VM_ID VM_NAME MONTH YEAR HOURS COST

Only the VMs the caller may see are reported. Global options as onezone.
"""

from __future__ import annotations

import argparse
import calendar
import datetime
import sys
from typing import Any

from raftcore import codec
from zones.api.gen import accounting_pb2
from zones.cli import tenancy as t
from zones.cli.common import CliError, Session, add_global_args, emit, table

ACCT_COLUMNS = ("VID", "HOSTNAME", "ACTION", "REASON", "START_TIME", "END_TIME", "MEMORY", "CPU")
SHOWBACK_COLUMNS = (
    "UID", "USER", "GID", "GROUP", "VM_ID", "VM_NAME", "MONTH", "YEAR", "HOURS", "COST"
)  # fmt: skip
REASONS = {0: "none", 1: "erro", 2: "user"}


def _day_ms(text: str) -> int:
    try:
        day = datetime.date.fromisoformat(text)
    except ValueError:
        raise CliError(f"date {text!r} must be YYYY-MM-DD") from None
    return calendar.timegm(day.timetuple()) * 1000


def _time(ms: int) -> str:
    if not ms:
        return "-"
    return datetime.datetime.fromtimestamp(ms / 1000, datetime.UTC).strftime("%m/%d %H:%M:%S")


def acct_rows(records: list[dict]) -> list[list[Any]]:
    return [
        [
            r["vmid"],
            r.get("hostname", ""),
            r.get("action", "") or "none",
            REASONS.get(r.get("reason", 0), str(r.get("reason"))),
            _time(r.get("stime", 0)),
            _time(r.get("etime", 0)),
            f"{r.get('memory', 0)}M",
            r.get("cpu", 0),
        ]
        for r in records
    ]


def _owner_filter(args, session: Session) -> tuple[int, int | None]:
    """The pool filter (a user, or all visible) and a group to keep, from --user/--group."""
    uid = t.resolve_user(session, args.owner) if args.owner else -2
    gid = t.resolve_group(session, args.group) if args.group else None
    return uid, gid


def cmd_acct(args, session: Session) -> int:
    flt, gid = _owner_filter(args, session)
    request = accounting_pb2.AccountingRequest(
        filter=flt,
        start_unix_ms=_day_ms(args.start) if args.start else 0,
        end_unix_ms=_day_ms(args.end) if args.end else 0,
    )
    reply = session.call(lambda c: c.accounting.Accounting(request, timeout=session.timeout))
    records = [r for r in codec.unpackb(reply.records) if gid is None or r["gid"] == gid]
    emit(args, records, lambda: [table(ACCT_COLUMNS, acct_rows(records), right=("VID",))])
    return 0


def showback_rows(rows, users: dict[int, str], groups: dict[int, str]) -> list[list[Any]]:
    return [
        [
            r.uid,
            users.get(r.uid, ""),
            r.gid,
            groups.get(r.gid, ""),
            r.vm_id,
            r.vm_name,
            r.month,
            r.year,
            f"{r.hours:.2f}",
            f"{r.total_cost:.2f}",
        ]
        for r in rows
    ]


def cmd_showback(args, session: Session) -> int:
    flt, gid = _owner_filter(args, session)
    today = datetime.datetime.now(datetime.UTC)
    first = args.start or f"{today.year:04d}-{today.month:02d}"
    request = accounting_pb2.ShowbackRequest(
        filter=flt, first_month=first, last_month=args.end or first
    )
    reply = session.call(lambda c: c.accounting.Showback(request, timeout=session.timeout))
    rows = [r for r in reply.rows if gid is None or r.gid == gid]
    if args.json or args.yaml:
        from zones.cli.common import message_to_dict

        emit(args, [message_to_dict(r) for r in rows], lambda: [])
        return 0
    users = {u.id: u.name for u in t.list_users(session)}
    groups = {g.id: g.name for g in t.list_groups(session)}
    emit(args, None, lambda: [table(SHOWBACK_COLUMNS, showback_rows(rows, users, groups))])
    return 0


def _filters(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--owner", "-u", metavar="USER", help="only this user's VMs")
    p.add_argument("--group", "-g", help="only VMs of this group")
    p.add_argument("--start", "-s", help=f"first {what}")
    p.add_argument("--end", "-e", help=f"last {what}")


def acct_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oneacct", description="VM history records.")
    _filters(p, "day (YYYY-MM-DD)")
    add_global_args(p)
    p.set_defaults(fn=cmd_acct, needs_session=True)
    return p


def showback_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="oneshowback", description="VM showback (costs).")
    add_global_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = t.subparser(sub, "list", "showback per VM and month", cmd_showback)
    _filters(p, "month (YYYY-MM or MM/YYYY; default this month)")
    t.finish(p)
    return parser


def main_acct(argv: list[str] | None = None) -> int:
    return t.main_for("oneacct", acct_parser, argv)


def main_showback(argv: list[str] | None = None) -> int:
    return t.main_for("oneshowback", showback_parser, argv)


if __name__ == "__main__":
    sys.exit(main_acct())
