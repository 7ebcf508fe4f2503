"""Bootstrapping a new zone: done by whichever front-end first becomes leader.

The zone record (from the config's [[servers]]) and the oneadmin user (password from
auth_file, `oneadmin:<password>`; generated and written with mode 0600 if the file does
not exist) go through the log with fixed request ids, so concurrent or repeated
attempts by several leaders are idempotent.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time

from raftcore import objects, schema
from raftcore.auth import hash_password
from raftcore.commands import make_command
from raftcore.errors import ReplicaError
from raftcore.ops.secgroups import DEFAULT_ARGS as DEFAULT_SECGROUP_ARGS
from raftcore.replica import CONSISTENCY_LINEARIZABLE, ROLE_LEADER, ROLE_SOLO
from zones.config import Config, read_auth_file

log = logging.getLogger(__name__)

RID_ZONE = "bootstrap-zone"
RID_USER = "bootstrap-user"
ADMIN_NAME = "oneadmin"
SYSTEM_UID = -1
# What follows the creation of a default object: the default VDC gives group users (1)
# every cluster of this zone, hence OpenNebula's rules `@1 HOST/* MANAGE #0` and
# `@1 NET+DATASTORE/* USE #0`.
DEFAULT_SETUP: dict[tuple[str, int], list[tuple[str, dict]]] = {
    ("vdc", 0): [
        ("vdc.addgroup", {"id": 0, "group": 1}),
        ("vdc.addcluster", {"id": 0, "cluster": -10}),
    ],
}
# (kind, id, op, args) of the objects every zone starts with, created in this order (ids
# come from each kind's sequence, so the first of a kind gets id 0).
DEFAULT_OBJECTS: list[tuple[str, int, str, dict]] = [
    ("cluster", 0, "cluster.allocate", {"name": "default"}),
    # OpenNebula's three datastores, in cluster 0, at their reserved ids.
    (
        "datastore",
        0,
        "datastore.allocate",
        {"id": 0, "template": 'NAME = "system"\nTYPE = "SYSTEM_DS"\nTM_MAD = "ssh"\n'},
    ),
    (
        "datastore",
        1,
        "datastore.allocate",
        {
            "id": 1,
            "template": 'NAME = "default"\nTYPE = "IMAGE_DS"\nDS_MAD = "fs"\nTM_MAD = "ssh"\n',
        },
    ),
    (
        "datastore",
        2,
        "datastore.allocate",
        {
            "id": 2,
            "template": 'NAME = "files"\nTYPE = "FILE_DS"\nDS_MAD = "fs"\nTM_MAD = "ssh"\n',
        },
    ),
    ("vdc", 0, "vdc.allocate", {"name": "default"}),
    # Security group 0 "default" (every network uses it), before any user one (>= 100).
    ("secgroup", 0, "secgroup.allocate", DEFAULT_SECGROUP_ARGS),
]


def ensure_auth_file(path: str) -> str:
    """The oneadmin password from `path`; creates the file (0600) with a new one if absent."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        password = secrets.token_urlsafe(24)
        with os.fdopen(fd, "w") as f:
            f.write(f"{ADMIN_NAME}:{password}\n")
            f.flush()
            os.fsync(f.fileno())
        log.info("generated the oneadmin password into %s", path)
        return password
    user, password = read_auth_file(path)
    if user != ADMIN_NAME:
        raise ValueError(f"{path}: expected '{ADMIN_NAME}:<password>', found user {user!r}")
    return password


class Bootstrapper:
    """Subscribed to role changes; on becoming leader, bootstraps the zone if needed."""

    def __init__(self, replica, config: Config) -> None:
        self._replica = replica
        self._config = config
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.done = threading.Event()

    def on_role(self, role: str, term: int) -> None:
        if role not in (ROLE_LEADER, ROLE_SOLO) or self._stop.is_set():
            return
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            # Never block the caller (it may be the raft thread).
            self._thread = threading.Thread(target=self._run, name="bootstrap", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set() and self._replica.is_leader():
            try:
                self._bootstrap_once()
                self.done.set()
                return
            except ReplicaError as e:
                log.info("bootstrap: %s; retrying", e)
            except Exception:
                log.exception("bootstrap failed")
                return
            self._stop.wait(0.1)

    def _bootstrap_once(self) -> None:
        with self._replica.read(CONSISTENCY_LINEARIZABLE, timeout=5.0) as view:
            zone = view.get(schema.ZONE, schema.ZONE_KEY)
            admin = view.get(schema.USERS, schema.id_key(0))
            defaults = [o for o in DEFAULT_OBJECTS if objects.find(view, o[0], o[1]) is None]
        if zone is None:
            servers = sorted(self._config.servers, key=lambda s: s.id)
            if [s.id for s in servers] != list(range(len(servers))):
                raise ValueError(
                    "cannot bootstrap the zone: the initial [[servers]] ids must be "
                    f"0..{len(servers) - 1}, got {[s.id for s in servers]}"
                )
            args = {
                "name": self._config.zone_name,
                "servers": [{"name": s.name, "raft": s.raft, "grpc": s.grpc} for s in servers],
            }
            self._propose("zone.bootstrap", args, RID_ZONE)
            log.info("bootstrapped zone %r with %d servers", self._config.zone_name, len(servers))
        if admin is None:
            password = ensure_auth_file(self._config.auth_file)
            self._propose("user.bootstrap", {"password_hash": hash_password(password)}, RID_USER)
            log.info("bootstrapped user %s (uid 0)", ADMIN_NAME)
        for kind, oid, op, args in defaults:
            # As oneadmin: the objects OpenNebula has from its first start.
            self._propose(op, args, f"bootstrap-{kind}-{oid}", uid=0)
            for n, (then_op, then_args) in enumerate(DEFAULT_SETUP.get((kind, oid), ())):
                self._propose(then_op, then_args, f"bootstrap-{kind}-{oid}-{n}", uid=0)

    def _propose(self, op: str, args: dict, rid: str, uid: int = SYSTEM_UID) -> None:
        command = make_command(op, args, rid=rid, uid=uid, ts_ms=int(time.time() * 1000))
        _index, result = self._replica.propose(command, timeout=5.0)
        if not result.get("ok") and result.get("code") != "ACTION":  # ACTION: done before
            raise ValueError(f"{op} failed: {result.get('code')}: {result.get('message')}")
