"""The one composition root of a front-end: store, replica, gRPC API, metrics, bootstrap.

fe = Frontend(config)          # or Frontend(config, replica=LocalReplica(store)) in tests
fe.start()
...
fe.stop()
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import time

from raftcore.store import Store
from zones.api.core import Api
from zones.api.forward import Channels, Forwarder
from zones.api.metrics import Metrics
from zones.api.server import ApiServer, channel_credentials
from zones.bootstrap import Bootstrapper
from zones.config import Config

log = logging.getLogger(__name__)


def make_replica(config: Config, store: Store, secret: str):
    """The replica the config asks for: RaftReplica, or LocalReplica (replica = "local")."""
    if config.raft.replica == "local":
        from raftcore.fake import LocalReplica

        log.warning("replica = 'local': single-server test mode, no raft log")
        return LocalReplica(store, server_id=config.server_id, raft_address=config.raft_address)
    from raftcore.consensus import RaftReplica, ReplicaConfig

    r = config.raft
    cfg = ReplicaConfig(
        server_id=config.server_id,
        raft_address=config.raft_address,
        peers=config.peers,
        data_dir=config.data_dir,
        secret=secret,
        election_timeout_min=r.election_timeout_min,
        election_timeout_max=r.election_timeout_max,
        heartbeat=r.heartbeat,
        leader_fallback_timeout=r.leader_fallback_timeout,
        snapshot_min_entries=r.snapshot_min_entries,
        fault_injection=r.fault_injection,
        min_free_bytes=r.min_free_bytes,
        batch_linger=r.batch_linger,
        joining=r.join,
    )
    return RaftReplica(cfg, store)


def _timed_apply(store: Store, histogram) -> None:
    """Measure Store.apply_entry (called by the replica for every committed entry)."""
    inner = store.apply_entry

    @functools.wraps(inner)
    def apply_entry(index, payload):
        start = time.perf_counter()
        try:
            return inner(index, payload)
        finally:
            histogram.observe(time.perf_counter() - start)

    store.apply_entry = apply_entry


def log_serving(cfg: Config) -> None:
    log.info(
        "front-end %s (id %d) serving gRPC on %s, raft on %s%s",
        cfg.name,
        cfg.server_id,
        cfg.grpc_address,
        cfg.raft_address,
        f", metrics on {cfg.metrics_address}" if cfg.metrics_address else "",
    )


def ipc_path(config: Config) -> str:
    """The Unix socket between the raft process and its API worker (in the 0700 data dir)."""
    return os.path.join(config.data_dir, "api.sock")


class Frontend:
    """One front-end. Pass `replica` (and its `store`) to run over a given replica."""

    def __init__(self, config: Config, replica=None, store: Store | None = None) -> None:
        self.config = config
        self.secret = config.read_secret()
        self.metrics = Metrics()
        self.store = store
        self.replica = replica
        self._owns_replica = replica is None
        self.server: ApiServer | None = None
        self.channels: Channels | None = None
        self.bootstrapper: Bootstrapper | None = None
        self.grpc_port = 0
        self.metrics_port = 0
        self.worker = None
        self.ipc = None
        self._started = False
        self._stopping = False

    def start(self) -> Frontend:
        try:
            self._start()
        except BaseException:
            self.stop(grace=0)
            raise
        self._started = True
        return self

    def _start(self) -> None:
        cfg = self.config
        if self._owns_replica:
            os.makedirs(cfg.data_dir, mode=0o700, exist_ok=True)
            self.store = Store(os.path.join(cfg.data_dir, "state"))
            _timed_apply(self.store, self.metrics.apply_seconds)
            self.replica = make_replica(cfg, self.store, self.secret)
        self.bootstrapper = Bootstrapper(self.replica, cfg)
        self.replica.subscribe_role(self._on_role)
        if self.replica.is_leader():  # leader before we subscribed
            self.bootstrapper.on_role("leader", 0)
        if cfg.api_process and self._owns_replica:
            self._start_worker()
        else:
            self._start_api()

    def _start_worker(self) -> None:
        """gRPC in a worker process; this one keeps raft, the store writer, the bootstrap."""
        from zones.apiworker import WorkerProcess
        from zones.replica_ipc import ReplicaServer

        cfg = self.config
        self.ipc = ReplicaServer(
            self.replica, self.store, ipc_path(cfg), self.metrics.apply_seconds
        )
        self.worker = WorkerProcess(cfg, on_exit=self._worker_exited)
        self.worker.start()

    def _worker_exited(self, code: int) -> None:
        if self._started and not self._stopping:
            log.error("the API worker exited (code %s); stopping this front-end", code)
            os.kill(os.getpid(), signal.SIGTERM)

    def _start_api(self) -> None:
        cfg = self.config
        self.metrics.add_raft(self.replica, cfg.server_id)
        creds = channel_credentials(cfg.tls) if cfg.tls is not None else None
        self.channels = Channels(creds)
        api = Api(
            self.replica,
            cfg,
            self.secret,
            Forwarder(self.replica, cfg, self.channels),
            self.metrics,
        )
        self.server = ApiServer(api, cfg.grpc_address, cfg.tls, cfg.grpc_workers)
        self.grpc_port = self.server.port
        self.server.start()
        if cfg.metrics_address:
            self.metrics_port = self.metrics.serve(cfg.metrics_address)
        log_serving(cfg)

    def _on_role(self, role: str, term: int) -> None:
        log.info("role: %s (term %d)", role, term)
        if self.bootstrapper is not None:
            self.bootstrapper.on_role(role, term)

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving, then close the replica and the store (each step at most once)."""
        self._stopping = True
        if self.bootstrapper is not None:
            self.bootstrapper.stop()
        if self.worker is not None:
            self.worker.stop(grace)
            self.worker = None
        if self.ipc is not None:
            self.ipc.close()
            self.ipc = None
        if self.server is not None:
            try:
                self.server.stop(grace)
            except Exception:
                log.exception("stopping the gRPC server")
            self.server = None
        self.metrics.close()
        if self.channels is not None:
            self.channels.close()
            self.channels = None
        if self._owns_replica:
            if self.replica is not None:
                try:
                    self.replica.close()
                except Exception:
                    log.exception("closing the replica")
                self.replica = None
            if self.store is not None:
                try:
                    self.store.close()
                except Exception:
                    log.exception("closing the store")
                self.store = None
