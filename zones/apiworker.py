"""The API worker: a front-end's gRPC server in a process of its own.

oned (the raft process) starts it with `python -m zones.apiworker --config PATH` and stops
it with SIGTERM; it dies with oned (PR_SET_PDEATHSIG), and oned stops when it dies. It
reads the store directly and reaches the replica over zones/replica_ipc.py.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable

from prometheus_client.core import HistogramMetricFamily

from zones.config import Config, ConfigError, load

log = logging.getLogger("apiworker")
_PR_SET_PDEATHSIG = 1


class WorkerProcess:
    """The raft process's handle on its API worker."""

    def __init__(self, config: Config, on_exit: Callable[[int], None]) -> None:
        self.config = config
        self._on_exit = on_exit
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "zones.apiworker", "--config", self.config.path],
            stdin=subprocess.DEVNULL,
        )
        threading.Thread(target=self._wait, name="apiworker-wait", daemon=True).start()

    def _wait(self) -> None:
        self._on_exit(self.proc.wait())

    def stop(self, grace: float) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(grace + 3.0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5.0)


class ApplyStatsCollector:
    """Re-exposes the raft process's apply-latency histogram on the worker's /metrics."""

    def __init__(self, replica) -> None:
        self._replica = replica

    def describe(self):
        return []

    def collect(self):
        try:
            samples = self._replica.apply_stats()
        except Exception as e:  # a scrape must never break the server
            log.debug("apply stats: %s", e)
            return
        buckets = [(s[1]["le"], s[2]) for s in samples if s[0].endswith("_bucket")]
        total = next((s[2] for s in samples if s[0].endswith("_sum")), 0.0)
        if buckets:
            yield HistogramMetricFamily(
                "one_apply_seconds",
                "Time to apply one committed log entry to the store",
                buckets=buckets,
                sum_value=total,
            )


class ApiWorker:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server = None
        self.metrics = None
        self.channels = None
        self.replica = None
        self.reader = None
        self.loop = None

    def start(self, on_lost: Callable[[], None]) -> None:
        from raftcore.store import StoreReader
        from zones.api.core import Api
        from zones.api.forward import Channels, Forwarder
        from zones.api.metrics import Metrics
        from zones.api.server import ApiServer, channel_credentials, start_loop
        from zones.frontend import ipc_path, log_serving
        from zones.replica_ipc import RemoteReplica

        cfg = self.config
        self.loop = start_loop()
        self.reader = StoreReader(os.path.join(cfg.data_dir, "state"))
        self.replica = RemoteReplica(ipc_path(cfg), self.reader, cfg.server_id, self.loop)
        self.replica.on_lost = on_lost
        self.replica.connect()
        self.metrics = Metrics()
        self.metrics.add_raft(self.replica, cfg.server_id)
        self.metrics.registry.unregister(self.metrics.apply_seconds)
        self.metrics.registry.register(ApplyStatsCollector(self.replica))
        creds = channel_credentials(cfg.tls) if cfg.tls is not None else None
        self.channels = Channels(creds)
        secret = cfg.read_secret()
        api = Api(
            self.replica, cfg, secret, Forwarder(self.replica, cfg, self.channels), self.metrics
        )
        self.server = ApiServer(api, cfg.grpc_address, cfg.tls, cfg.grpc_workers, loop=self.loop)
        self.server.start()
        if cfg.metrics_address:
            self.metrics.serve(cfg.metrics_address)
        log_serving(cfg)

    def stop(self, grace: float) -> None:
        for step in (
            lambda: self.server and self.server.stop(grace),
            lambda: self.metrics and self.metrics.close(),
            lambda: self.channels and self.channels.close(),
            lambda: self.replica and self.replica.close(),
            lambda: self.reader and self.reader.close(),
        ):
            try:
                step()
            except Exception:
                log.exception("stopping the API worker")


def _die_with_parent() -> None:
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        log.warning("cannot ask to die with oned; relying on the connection instead")
    if os.getppid() != parent:  # oned died before prctl took effect
        sys.exit(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="apiworker", description=__doc__)
    parser.add_argument("--config", "-c", required=True)
    args = parser.parse_args(argv)
    _die_with_parent()
    from zones.oned import SWITCH_INTERVAL

    # gRPC's completion-queue poller hands every event to the event loop thread: with the
    # default 5 ms interpreter switch interval each hand-off can wait that long.
    sys.setswitchinterval(SWITCH_INTERVAL)
    from zones.oned import setup_logging

    try:
        config = load(args.config)
    except ConfigError as e:
        print(f"apiworker: configuration error: {e}", file=sys.stderr)
        return 2
    setup_logging(config.log_level, config.log_file, f"{config.name}/api")
    stop = threading.Event()
    lost = threading.Event()

    def on_signal(_signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches oned, which stops us

    def on_lost() -> None:
        lost.set()
        stop.set()

    worker = ApiWorker(config)
    try:
        worker.start(on_lost)
    except Exception as e:
        log.error("cannot start the API of %s: %s", config.name, e)
        worker.stop(0)
        return 1
    while not stop.wait(1.0):
        pass
    worker.stop(grace=2.0)
    return 1 if lost.is_set() else 0


if __name__ == "__main__":
    sys.exit(main())
