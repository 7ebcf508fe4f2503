"""A throw-away etcd 3.4 cluster on 127.0.0.1, the benchmark peer.

``EtcdCluster(members=3)`` is a context manager: it starts Debian's /usr/bin/etcd once per
member (own --data-dir in a temp dir, free 127.0.0.1 ports), waits until a Put succeeds,
and on exit stops every member by PID (SIGTERM, then SIGKILL) and removes the temp dir.
If a member does not come up it raises with the tail of that member's log.

``EtcdPutWorkload`` is the loadgen workload: KV.Put of fixed-size values to unique keys.

Run ``python -m bench etcd --clients C --seconds S [--json]`` for the etcd figures alone.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import grpc

from bench import loadgen
from bench.loadgen import log

ETCD_BIN = os.environ.get("ETCD_BIN", "/usr/bin/etcd")
HOST = "127.0.0.1"


def _gen():
    """The generated etcd stubs (bench/gen); generated on the spot if missing."""
    try:
        from bench.gen import etcd_kv_pb2, etcd_kv_pb2_grpc
    except ImportError:
        from scripts import gen_proto

        if gen_proto.main() != 0:
            raise RuntimeError("could not generate bench/gen from bench/*.proto") from None
        from bench.gen import etcd_kv_pb2, etcd_kv_pb2_grpc
    return etcd_kv_pb2, etcd_kv_pb2_grpc


def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all held open until all are chosen)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child if the benchmark process dies (no orphans)."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"{HOST}:{self.client_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(no log: {exc})"


class EtcdCluster:
    def __init__(self, members: int = 3, start_timeout: float = 30.0, base_dir=None):
        if not Path(ETCD_BIN).exists():
            raise RuntimeError(f"{ETCD_BIN} not found: run `bash scripts/setup.sh`")
        self.n = members
        self.start_timeout = start_timeout
        self.base_dir = base_dir
        self.dir: Path | None = None
        self.members: list[Member] = []
        self.token = f"bench-{uuid.uuid4().hex[:8]}"

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> EtcdCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.members if m.pid is not None]

    def start(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="bench-etcd-", dir=self.base_dir))
        ports = free_ports(2 * self.n)
        for i in range(self.n):
            name = f"m{i}"
            self.members.append(
                Member(
                    name=name,
                    client_port=ports[2 * i],
                    peer_port=ports[2 * i + 1],
                    data_dir=self.dir / name,
                    log_path=self.dir / f"{name}.log",
                )
            )
        initial = ",".join(f"{m.name}=http://{HOST}:{m.peer_port}" for m in self.members)
        for m in self.members:
            self._spawn(m, initial)
        self.wait_healthy()

    def _spawn(self, m: Member, initial_cluster: str, state: str = "new") -> None:
        args = [
            ETCD_BIN,
            "--name", m.name,
            "--data-dir", str(m.data_dir),
            "--listen-peer-urls", f"http://{HOST}:{m.peer_port}",
            "--initial-advertise-peer-urls", f"http://{HOST}:{m.peer_port}",
            "--listen-client-urls", f"http://{HOST}:{m.client_port}",
            "--advertise-client-urls", f"http://{HOST}:{m.client_port}",
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with open(m.log_path, "ab") as logf:
            m.proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - single-threaded here
            )

    def wait_healthy(self, timeout: float | None = None) -> None:
        """Until a Put through every member succeeds; raises with the log tail."""
        pb, pb_grpc = _gen()
        deadline = time.monotonic() + (timeout or self.start_timeout)
        for m in self.members:
            with grpc.insecure_channel(m.endpoint) as ch:
                stub = pb_grpc.KVStub(ch)
                last = None
                while True:
                    if not m.alive():
                        raise RuntimeError(
                            f"etcd member {m.name} exited with {m.proc.returncode}; "
                            f"log tail:\n{m.log_tail()}"
                        )
                    try:
                        stub.Put(pb.PutRequest(key=b"__bench_health", value=b"1"), timeout=2)
                        break
                    except grpc.RpcError as exc:
                        last = exc
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"etcd member {m.name} ({m.endpoint}) not healthy: {last}; "
                            f"log tail:\n{m.log_tail()}"
                        )
                    time.sleep(0.1)

    def stop(self, grace: float = 1.0) -> None:
        """Stop every member by PID (SIGTERM, then SIGKILL after ``grace``) and remove
        the temp dir. The grace is short on purpose: a leader that gets SIGTERM first
        tries a leadership transfer, which waits ~7 s when its peers are stopping too,
        and the data is thrown away anyway."""
        for m in self.members:
            if m.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for m in self.members:
            if m.proc is None:
                continue
            try:
                m.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m.proc.pid, signal.SIGKILL)
                m.proc.wait(timeout=5)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- helpers used by tests and other benchmarks ----------------------------------
    def leader_index(self, timeout: float = 2.0) -> int | None:
        """Index (into ``members``) of the current leader, by Maintenance.Status."""
        pb, pb_grpc = _gen()
        ids: dict[int, int] = {}
        leader = None
        for i, m in enumerate(self.members):
            if not m.alive():
                continue
            try:
                with grpc.insecure_channel(m.endpoint) as ch:
                    st = pb_grpc.MaintenanceStub(ch).Status(pb.StatusRequest(), timeout=timeout)
            except grpc.RpcError:
                continue
            ids[st.header.member_id] = i
            leader = leader or st.leader or None
        return ids.get(leader) if leader else None

    def put(self, key: bytes, value: bytes, member: int = 0, timeout: float = 5.0):
        pb, pb_grpc = _gen()
        with grpc.insecure_channel(self.members[member].endpoint) as ch:
            return pb_grpc.KVStub(ch).Put(pb.PutRequest(key=key, value=value), timeout=timeout)

    def get(self, key: bytes, member: int = 0, timeout: float = 5.0) -> bytes | None:
        """A linearizable Range of one key; None if absent."""
        pb, pb_grpc = _gen()
        with grpc.insecure_channel(self.members[member].endpoint) as ch:
            resp = pb_grpc.KVStub(ch).Range(pb.RangeRequest(key=key), timeout=timeout)
        return resp.kvs[0].value if resp.kvs else None


class EtcdPutWorkload:
    """KV.Put of ``value_size``-byte values to unique keys, round-robin over a few
    channels (separate HTTP/2 connections) to ``endpoints``."""

    def __init__(
        self, endpoints: list[str], value_size: int = 256, channels: int = 4, timeout: float = 10.0
    ):
        self.endpoints = list(endpoints)
        self.value_size = value_size
        self.n_channels = channels
        self.timeout = timeout
        self.run_id = uuid.uuid4().hex[:8]

    async def open(self) -> None:
        pb, pb_grpc = _gen()
        self._pb = pb
        self._value = os.urandom(self.value_size)
        self._channels = [
            grpc.aio.insecure_channel(
                self.endpoints[i % len(self.endpoints)],
                options=[("grpc.use_local_subchannel_pool", 1)],
            )
            for i in range(self.n_channels)
        ]
        self._stubs = [pb_grpc.KVStub(ch) for ch in self._channels]

    async def request(self, client: int, seq: int) -> None:
        stub = self._stubs[client % len(self._stubs)]
        key = f"bench/{self.run_id}/{client}/{seq}".encode()
        await stub.Put(self._pb.PutRequest(key=key, value=self._value), timeout=self.timeout)

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()


def measure(
    cluster: EtcdCluster,
    clients: int,
    seconds: float,
    value_size: int = 256,
    processes: int | None = None,
    leader_only: bool = True,
) -> loadgen.Result:
    """The closed-loop Put workload against ``cluster``, sent to the leader's endpoint
    (as the zone benchmark does; spreading over all members costs etcd ~10% here
    because followers forward every proposal)."""
    endpoints = cluster.endpoints
    if leader_only:
        li = cluster.leader_index()
        if li is None:
            raise RuntimeError("etcd has no leader")
        endpoints = [endpoints[li]]
    wl = EtcdPutWorkload(endpoints, value_size=value_size, channels=max(1, min(clients, 4)))
    procs = processes if processes is not None else loadgen.default_processes(clients)
    return loadgen.run(wl, clients, seconds, processes=procs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench etcd", description="Closed-loop Put throughput of a 3-member etcd."
    )
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--processes", type=int, default=None, help="load worker processes (default 1)")
    ap.add_argument(
        "--all-members",
        action="store_true",
        help="spread clients over all members instead of the leader only",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with EtcdCluster(args.members) as cluster:
        log(f"etcd: {args.members} members up at {', '.join(cluster.endpoints)}")
        res = measure(
            cluster,
            args.clients,
            args.seconds,
            args.value_size,
            args.processes,
            leader_only=not args.all_members,
        )
    s = res.summary()
    out = {
        "bench": "etcd",
        "members": args.members,
        "value_size": args.value_size,
        "processes": args.processes or loadgen.default_processes(args.clients),
        **s,
    }
    log(
        f"etcd: {s['ops_per_s']} puts/s p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms "
        f"errors {s['errors']}"
    )
    if args.json:
        print(json.dumps(out))
    else:
        print(json.dumps(out, indent=2))
    return 0
