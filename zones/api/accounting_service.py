"""AccountingService: history records and showback of the VMs a caller may see (the
pure computation is raftcore.showback; "now" for open records is this front-end's
clock, read here, never in the state machine)."""

from __future__ import annotations

import time

from raftcore import codec, showback
from zones.api.auth import Caller
from zones.api.core import Api
from zones.api.errors import invalid
from zones.api.gen import accounting_pb2, accounting_pb2_grpc
from zones.api.methods import build, local_view, read
from zones.api.pool_service import visible_records

_S = "AccountingService"


def _check_filter(request) -> None:
    if request.filter < -4:
        raise invalid(f"filter must be -4, -3, -2, -1 or a user id, got {request.filter}")


def _check_accounting(request: accounting_pb2.AccountingRequest) -> None:
    _check_filter(request)
    if request.start_unix_ms < 0 or request.end_unix_ms < 0:
        raise invalid("start_unix_ms and end_unix_ms must be >= 0")
    if request.end_unix_ms and request.end_unix_ms <= request.start_unix_ms:
        raise invalid("end_unix_ms must be after start_unix_ms")


def _months(request: accounting_pb2.ShowbackRequest) -> tuple[showback.Month, showback.Month]:
    try:
        first = showback.Month.parse(request.first_month)
        last = showback.Month.parse(request.last_month) if request.last_month else first
        showback.months(first, last)
    except showback.ShowbackError as e:
        raise invalid(str(e)) from None
    return first, last


def _check_showback(request: accounting_pb2.ShowbackRequest) -> None:
    _check_filter(request)
    _months(request)


def _accounting(api: Api, request, context, caller: Caller) -> accounting_pb2.AccountingReply:
    now = int(time.time() * 1000)
    end = request.end_unix_ms or now
    with local_view(api, context) as view:
        vms = list(visible_records(view, caller, "vm", request.filter))
    records = showback.accounting(vms, request.start_unix_ms, end, now)
    return accounting_pb2.AccountingReply(records=codec.packb(records), count=len(records))


def _showback(api: Api, request, context, caller: Caller) -> accounting_pb2.ShowbackReply:
    first, last = _months(request)
    now = int(time.time() * 1000)
    with local_view(api, context) as view:
        vms = list(visible_records(view, caller, "vm", request.filter))
    rows = showback.showback(vms, first, last, now)
    return accounting_pb2.ShowbackReply(
        rows=[
            accounting_pb2.ShowbackRow(
                vm_id=r["vmid"],
                vm_name=r["vmname"],
                uid=r["uid"],
                gid=r["gid"],
                year=r["year"],
                month=r["month"],
                hours=r["hours"],
                cpu_cost=r["cpu_cost"],
                memory_cost=r["memory_cost"],
                disk_cost=r["disk_cost"],
                total_cost=r["total_cost"],
            )
            for r in rows
        ]
    )


METHODS = [
    read(_S, "Accounting", accounting_pb2.AccountingReply, _accounting, _check_accounting),
    read(_S, "Showback", accounting_pb2.ShowbackReply, _showback, _check_showback),
]


def servicer(api: Api) -> accounting_pb2_grpc.AccountingServiceServicer:
    return build(accounting_pb2_grpc.AccountingServiceServicer, api, METHODS)
