"""onezone: show the zone and manage its HA servers (OpenNebula's `onezone`).

    onezone list
    onezone show [zone]
    onezone server-add <zone> --name NAME --rpc RAFT_ENDPOINT --grpc GRPC_ENDPOINT
    onezone server-del <zone> <server_id>
    onezone server-reset <zone> <server_id>

Global options: --endpoint, --user, --password, -j/--json, -y/--yaml (zones.cli.common).
"""

from __future__ import annotations

import argparse
import sys
import uuid
from typing import Any

from rich.text import Text

from zones.api.gen import zone_pb2
from zones.cli.common import (
    CliError,
    Session,
    add_global_args,
    emit,
    message_to_dict,
    render,
    run,
    table,
)

PROG = "onezone"
LIST_COLUMNS = ("C", "ID", "NAME", "ENDPOINT", "FED_INDEX", "STAT")
SERVER_COLUMNS = ("ID", "NAME", "ENDPOINT", "RAFT")
STATUS_COLUMNS = ("ID", "NAME", "STATE", "TERM", "INDEX", "COMMIT", "VOTE", "FED_INDEX")
_STAT = {"ENABLED": "ON", "DISABLED": "OFF"}


# --- rendering (also used by `python -m zones.lab run`) --------------------------------


def _section(title: str) -> Text:
    return Text(title, style="bold")


def _attrs(pairs: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in pairs)
    return "\n".join(f"{k.ljust(width + 8)}: {v}" for k, v in pairs)


def status_rows(info: zone_pb2.ZoneInfo) -> list[list[Any]]:
    rows = []
    for st in info.status:
        if st.state == "error":
            rows.append([st.id, st.name, "error", "-", "-", "-", "-", "-"])
        else:
            rows.append(
                [st.id, st.name, st.state, st.term, st.index, st.commit, st.vote, st.fed_index]
            )
    return rows


def show_renderables(info: zone_pb2.ZoneInfo) -> list[Any]:
    out: list[Any] = [
        _section(f"ZONE {info.id} INFORMATION"),
        _attrs([("ID", info.id), ("NAME", info.name), ("STATE", info.state)]),
        "",
        _section("ZONE SERVERS"),
        table(
            SERVER_COLUMNS,
            [[s.id, s.name, s.grpc_endpoint, s.raft_endpoint] for s in info.servers],
            right=("ID",),
        ),
        "",
        _section("HA & FEDERATION SYNC STATUS"),
        table(
            STATUS_COLUMNS,
            status_rows(info),
            right=("ID", "TERM", "INDEX", "COMMIT", "VOTE", "FED_INDEX"),
        ),
    ]
    errors = [f"server {st.id} ({st.name}): {st.error}" for st in info.status if st.error]
    if errors:
        out.append("\n".join(errors))
    out += ["", _section("ZONE TEMPLATE"), _template(info)]
    return out


def _template(info: zone_pb2.ZoneInfo) -> str:
    lines = [f'ENDPOINT="{info.endpoint}"']
    lines += [line for line in info.template.splitlines() if line.strip()]
    return "\n".join(lines)


def render_show(info: zone_pb2.ZoneInfo, plain: bool = True) -> str:
    """`onezone show` as text."""
    return render(show_renderables(info), plain=plain)


def list_rows(info: zone_pb2.ZoneInfo) -> list[list[Any]]:
    return [["*", info.id, info.name, info.endpoint, -1, _STAT.get(info.state, info.state)]]


# --- commands -------------------------------------------------------------------------


def _info(session: Session) -> zone_pb2.ZoneInfo:
    return session.call(lambda c: c.zone.Info(zone_pb2.ZoneInfoRequest(), timeout=session.timeout))


def _check_zone(info: zone_pb2.ZoneInfo, zone: str | None) -> None:
    """The zone argument must name this zone (by id or name)."""
    if zone is None or zone in (str(info.id), info.name):
        return
    raise CliError(f"zone {zone!r} not found (this is zone {info.id} {info.name!r})")


def cmd_list(args, session: Session) -> int:
    info = _info(session)
    data = [
        {
            "current": True,
            "id": info.id,
            "name": info.name,
            "endpoint": info.endpoint,
            "fed_index": -1,
            "state": info.state,
        }
    ]
    emit(args, data, lambda: [table(LIST_COLUMNS, list_rows(info), right=("ID", "FED_INDEX"))])
    return 0


def cmd_show(args, session: Session) -> int:
    info = _info(session)
    _check_zone(info, args.zone)
    emit(args, message_to_dict(info), lambda: show_renderables(info))
    return 0


def _server_id(value: str) -> int:
    try:
        server_id = int(value)
    except ValueError:
        raise CliError(f"server id must be a number, got {value!r}") from None
    if server_id < 0:
        raise CliError(f"server id must be >= 0, got {server_id}")
    return server_id


def cmd_server_add(args, session: Session) -> int:
    info = _info(session)
    _check_zone(info, args.zone)
    request = zone_pb2.ServerAddRequest(
        name=args.name,
        raft_endpoint=args.rpc,
        grpc_endpoint=args.grpc,
        request_id=uuid.uuid4().hex,  # the same id on every retry
    )
    resp = session.call(lambda c: c.zone.ServerAdd(request, timeout=session.timeout))
    emit(args, {"id": resp.id}, lambda: [f"ID: {resp.id}"])
    return 0


def cmd_server_del(args, session: Session) -> int:
    server_id = _server_id(args.server_id)
    info = _info(session)
    _check_zone(info, args.zone)
    request = zone_pb2.ServerDelRequest(id=server_id, request_id=uuid.uuid4().hex)
    session.call(lambda c: c.zone.ServerDel(request, timeout=session.timeout))
    emit(args, {"id": server_id, "deleted": True}, lambda: [f"server {server_id} removed"])
    return 0


def cmd_server_reset(args, session: Session) -> int:
    server_id = _server_id(args.server_id)
    info = _info(session)
    _check_zone(info, args.zone)
    request = zone_pb2.ServerResetRequest(id=server_id)
    session.call(lambda c: c.zone.ServerReset(request, timeout=session.timeout))
    emit(args, {"id": server_id, "reset": True}, lambda: [f"server {server_id} reset"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Show the zone and manage its HA front-ends."
    )
    add_global_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="list zones (C ID NAME ENDPOINT FED_INDEX STAT)")
    add_global_args(p, sub=True)
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("show", help="show the zone, its servers and their raft status")
    p.add_argument("zone", nargs="?", help="zone id or name (default: this zone)")
    add_global_args(p, sub=True)
    p.set_defaults(fn=cmd_show)

    p = sub.add_parser("server-add", help="add a front-end to the zone")
    p.add_argument("zone", help="zone id or name")
    p.add_argument("--name", required=True, help="name of the new server")
    p.add_argument("--rpc", required=True, metavar="ENDPOINT", help="its raft endpoint host:port")
    p.add_argument(
        "--grpc",
        required=True,
        metavar="ENDPOINT",
        help="its gRPC (client API) endpoint host:port",
    )
    add_global_args(p, sub=True)
    p.set_defaults(fn=cmd_server_add)

    p = sub.add_parser("server-del", help="remove a front-end from the zone")
    p.add_argument("zone", help="zone id or name")
    p.add_argument("server_id", help="id of the server to remove")
    add_global_args(p, sub=True)
    p.set_defaults(fn=cmd_server_del)

    p = sub.add_parser("server-reset", help="make the leader resend its log to a follower")
    p.add_argument("zone", help="zone id or name")
    p.add_argument("server_id", help="id of the server to reset")
    add_global_args(p, sub=True)
    p.set_defaults(fn=cmd_server_reset)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.json and args.yaml:
        parser.error("-j/--json and -y/--yaml are mutually exclusive")

    def body() -> int:
        session = Session.from_args(args)
        try:
            return args.fn(args, session)
        finally:
            session.close()

    return run(PROG, body)


if __name__ == "__main__":
    sys.exit(main())
