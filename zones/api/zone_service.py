"""ZoneService: the zone, its servers, their raft status, and membership changes."""

from __future__ import annotations

import logging
import threading
import uuid

import grpc

from raftcore import schema
from raftcore.replica import CONSISTENCY_LOCAL, RaftStatus
from zones.api.auth import PEER_KEY, Caller, sign_peer
from zones.api.core import Api, Rpc, rid_accessors
from zones.api.errors import ApiError, invalid, not_found
from zones.api.gen import zone_pb2, zone_pb2_grpc
from zones.config import check_address

log = logging.getLogger(__name__)

_SERVICE = "/one.v1.ZoneService/"
PEER_STATUS_TIMEOUT = 0.5
MAX_NAME = 128


def _check_add(req: zone_pb2.ServerAddRequest) -> None:
    if not req.name:
        raise invalid("name must not be empty")
    if len(req.name) > MAX_NAME:
        raise invalid(f"name must be at most {MAX_NAME} characters")
    for field, value in (
        ("raft_endpoint", req.raft_endpoint),
        ("grpc_endpoint", req.grpc_endpoint),
    ):
        if not value:
            raise invalid(f"{field} is required ('host:port' of the new server)")
        try:
            check_address(value)
        except ValueError as e:
            raise invalid(f"{field}: {e}") from None


def _check_id(req) -> None:
    if req.id < 0:
        raise invalid(f"server id must be >= 0, got {req.id}")


INFO = Rpc(_SERVICE + "Info", zone_pb2.ZoneInfo)
LOCAL_STATUS = Rpc(_SERVICE + "LocalStatus", zone_pb2.ServerStatus)
SERVER_ADD = Rpc(
    _SERVICE + "ServerAdd",
    zone_pb2.ServerAddResponse,
    leader_only=True,
    rid=rid_accessors(),
    validate=_check_add,
)
SERVER_DEL = Rpc(
    _SERVICE + "ServerDel",
    zone_pb2.ServerDelResponse,
    leader_only=True,
    rid=rid_accessors(),
    validate=_check_id,
)
SERVER_RESET = Rpc(
    _SERVICE + "ServerReset", zone_pb2.ServerResetResponse, leader_only=True, validate=_check_id
)


def status_message(st: RaftStatus, servers: list[dict]) -> zone_pb2.ServerStatus:
    """A RaftStatus as the ServerStatus row of `onezone show`."""
    by_raft = {s["raft"]: s for s in servers}
    vote = by_raft.get(st.voted_for) if st.voted_for else None
    me = by_raft.get(st.raft_address)
    return zone_pb2.ServerStatus(
        id=st.server_id,
        name=me["name"] if me else "",
        state=st.role,
        term=st.term,
        index=st.log_index,
        commit=st.commit_index,
        applied=st.applied_index,
        vote=vote["id"] if vote else -1,
        fed_index=-1,
    )


class ZoneService(zone_pb2_grpc.ZoneServiceServicer):
    def __init__(self, api: Api) -> None:
        self.api = api
        # One membership change at a time (raft single-server changes).
        self._membership = threading.Lock()

    def Info(self, request, context):
        return self.api.handle(INFO, request, context, self._info)

    def LocalStatus(self, request, context):
        return self.api.handle(LOCAL_STATUS, request, context, self._local_status)

    def ServerAdd(self, request, context):
        return self.api.handle(SERVER_ADD, request, context, self._server_add)

    def ServerDel(self, request, context):
        return self.api.handle(SERVER_DEL, request, context, self._server_del)

    def ServerReset(self, request, context):
        return self.api.handle(SERVER_RESET, request, context, self._server_reset)

    # --- reads --------------------------------------------------------------------------

    def _servers(self) -> tuple[dict | None, list[dict]]:
        with self.api.replica.read(CONSISTENCY_LOCAL) as view:
            zone = view.get(schema.ZONE, schema.ZONE_KEY)
            servers = [record for _key, record in view.iter(schema.SERVERS)]
        if not servers:  # not bootstrapped yet: the configured initial zone
            servers = [
                {"id": s.id, "name": s.name, "raft": s.raft, "grpc": s.grpc}
                for s in self.api.config.servers
            ]
        return zone, servers

    def _local_status(self, request, context, caller: Caller):
        _zone, servers = self._servers()
        return status_message(self.api.replica.status(), servers)

    def _info(self, request, context, caller: Caller):
        zone, servers = self._servers()
        me = self.api.config.server_id
        own = status_message(self.api.replica.status(), servers)
        md = [(PEER_KEY, sign_peer(self.api.secret, me))]
        futures = {}
        for s in servers:
            if s["id"] == me or s["raft"] == self.api.config.raft_address:
                continue
            if not s.get("grpc"):
                continue
            stub = self.api.forwarder.channels.unary(
                s["grpc"], LOCAL_STATUS.path, zone_pb2.ServerStatus
            )
            futures[s["id"]] = stub.future(
                zone_pb2.LocalStatusRequest(),
                timeout=PEER_STATUS_TIMEOUT,
                metadata=md,
                wait_for_ready=True,
            )
        rows = []
        for s in servers:
            if s["id"] == me or s["raft"] == self.api.config.raft_address:
                own.id, own.name = s["id"], s["name"]
                rows.append(own)
                continue
            fut = futures.get(s["id"])
            if fut is None:
                rows.append(self._error_row(s, "no gRPC endpoint known"))
                continue
            try:
                row = fut.result()
                row.id, row.name = s["id"], s["name"]
                rows.append(row)
            except grpc.RpcError as e:
                rows.append(self._error_row(s, f"{e.code().name}: {e.details()}"))
        zone = zone or {"id": 0, "name": "", "state": "BOOTSTRAPPING"}
        return zone_pb2.ZoneInfo(
            id=zone.get("id", 0),
            name=zone.get("name", ""),
            state=zone.get("state", ""),
            endpoint=",".join(s["grpc"] for s in servers if s.get("grpc")),
            servers=[
                zone_pb2.ZoneServer(
                    id=s["id"], name=s["name"], raft_endpoint=s["raft"], grpc_endpoint=s["grpc"]
                )
                for s in servers
            ],
            status=rows,
            template=_template(zone),
        )

    @staticmethod
    def _error_row(server: dict, message: str) -> zone_pb2.ServerStatus:
        return zone_pb2.ServerStatus(
            id=server["id"],
            name=server["name"],
            state="error",
            vote=-1,
            fed_index=-1,
            error=message,
        )

    # --- membership ---------------------------------------------------------------------

    def _find(self, server_id: int) -> dict:
        with self.api.replica.read(CONSISTENCY_LOCAL) as view:
            server = view.get(schema.SERVERS, schema.id_key(server_id))
        if server is None:
            raise not_found(f"server {server_id} does not exist in this zone")
        return server

    def _server_add(self, request, context, caller: Caller):
        args = {"name": request.name, "raft": request.raft_endpoint, "grpc": request.grpc_endpoint}
        with self._membership:
            existing = self._by_raft(request.raft_endpoint)
            if existing is not None and all(existing[k] == v for k, v in args.items()):
                # A retry after the record was written but the raft change failed.
                server_id = existing["id"]
            else:
                value = self.api.propose(
                    "zone.server_add", args, request.request_id, caller, context
                )
                server_id = value["id"]
            members = self._members()
            if members is None or request.raft_endpoint not in members:
                self.api.replica.add_server(
                    request.raft_endpoint, timeout=self.api.timeout(context)
                )
        log.info("server %s (%s) added as id %s", request.name, request.raft_endpoint, server_id)
        return zone_pb2.ServerAddResponse(id=server_id)

    def _by_raft(self, raft: str) -> dict | None:
        with self.api.replica.read(CONSISTENCY_LOCAL) as view:
            for _key, server in view.iter(schema.SERVERS):
                if server.get("raft") == raft:
                    return server
        return None

    def _server_del(self, request, context, caller: Caller):
        with self._membership:
            server = self._find(request.id)
            members = self._members()
            if members is None or server["raft"] in members:
                # Two steps (raft membership, then the zone record): make sure this leader
                # can write at all (disk, leadership) before taking the first one.
                self.api.propose("barrier", {}, uuid.uuid4().hex, caller, context)
                # On the leader removing itself, this hands leadership over and raises
                # NotLeader: the call then goes to the new leader, which does the rest.
                self.api.replica.remove_server(server["raft"], timeout=self.api.timeout(context))
            self.api.propose(
                "zone.server_del", {"id": request.id}, request.request_id, caller, context
            )
        log.info("server %s (%s) removed", request.id, server["raft"])
        return zone_pb2.ServerDelResponse()

    def _members(self) -> list[str] | None:
        try:
            members = self.api.replica.status().members
        except Exception:
            return None
        return list(members) if members else None

    def _server_reset(self, request, context, caller: Caller):
        server = self._find(request.id)
        reset = getattr(self.api.replica, "reset_server", None)
        if reset is None:
            raise ApiError(grpc.StatusCode.UNIMPLEMENTED, "this replica cannot reset servers")
        reset(server["raft"])
        return zone_pb2.ServerResetResponse()


def _template(zone: dict) -> str:
    lines = [f'NAME="{zone.get("name", "")}"']
    for key, value in sorted(zone.items()):
        if key not in ("id", "name", "state") and isinstance(value, str | int):
            lines.append(f'{key.upper()}="{value}"')
    return "\n".join(lines)
