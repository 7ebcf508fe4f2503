"""Write throughput and latency of the zone, against a 3-member etcd on the same machine.

    python -m bench commit --frontends 3 --clients 64 --seconds 10 [--json]

1. Starts a zone with ``zones.lab.Lab`` (N ``oned`` processes on 127.0.0.1), logs in as
   oneadmin (password from DIR/one_auth) and runs the closed-loop workload through the
   public write path: ``one.v1.KVService/Put`` of 256-byte values to unique keys, each
   call with its own request id and ``authorization: Bearer <token>``, sent to the
   leader's endpoint. Then stops the zone.
2. Starts a 3-member etcd and runs the same workload (same clients, seconds, value size)
   through ``etcdserverpb.KV/Put`` to its leader.

The last stdout line (``--json``) holds ops_per_s, p50_ms, p99_ms (the zone),
etcd_ops_per_s, etcd_p50_ms, etcd_p99_ms and vs_etcd = ops_per_s / etcd_ops_per_s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import grpc

from bench import loadgen
from bench.loadgen import log

ADMIN = "oneadmin"


# -- the zone ---------------------------------------------------------------------------
def read_password(lab_dir: str | os.PathLike) -> str:
    """The oneadmin password from DIR/one_auth (``oneadmin:<pw>``)."""
    text = (Path(lab_dir) / "one_auth").read_text().strip()
    user, _, password = text.partition(":")
    if user != ADMIN or not password:
        raise RuntimeError(f"{lab_dir}/one_auth: expected '{ADMIN}:<password>'")
    return password


def login(endpoint: str, password: str, timeout: float = 10.0) -> str:
    """A token for oneadmin from AuthService.Login at ``endpoint``."""
    from zones.api.gen import auth_pb2, auth_pb2_grpc

    with grpc.insecure_channel(endpoint) as ch:
        resp = auth_pb2_grpc.AuthServiceStub(ch).Login(
            auth_pb2.LoginRequest(
                username=ADMIN,
                password=password,
                ttl_seconds=3600,
                request_id=f"bench-login-{uuid.uuid4().hex}",
            ),
            timeout=timeout,
        )
    return resp.token


def lab_endpoints(lab) -> list[str]:
    """The gRPC endpoints of the lab's front-ends, by index."""
    return list(lab.endpoints)


def lab_leader(lab, timeout: float = 30.0, exclude: tuple[int, ...] = ()) -> int:
    """Index of the zone's leader (waits for one)."""
    return lab.leader_index(timeout=timeout, exclude=exclude)


@contextlib.contextmanager
def zone(frontends: int, base_dir: str | None = None, keep: bool = False, api_process: bool = True):
    """A running zone: yields (lab, lab_dir). Stops every front-end and removes the dir
    (unless ``keep`` or the dir was given)."""
    from zones.lab import Lab

    own = base_dir is None
    lab_dir = tempfile.mkdtemp(prefix="bench-zone-") if own else base_dir
    lab = Lab(lab_dir, frontends=frontends, api_process=api_process)
    try:
        lab.up()
        yield lab, lab_dir
    finally:
        try:
            lab.down()
        finally:
            if own and not keep:
                shutil.rmtree(lab_dir, ignore_errors=True)


class ZonePutWorkload:
    """KVService.Put of ``value_size``-byte values to unique keys, one request id per
    call, with the token; over a few channels (HTTP/2 connections) to ``endpoint``."""

    def __init__(
        self,
        endpoint: str,
        token: str,
        value_size: int = 256,
        channels: int = 4,
        timeout: float = 10.0,
    ):
        self.endpoint = endpoint
        self.token = token
        self.value_size = value_size
        self.n_channels = channels
        self.timeout = timeout
        self.run_id = uuid.uuid4().hex[:8]

    async def open(self) -> None:
        from zones.api.gen import common_pb2, kv_pb2, kv_pb2_grpc

        self._kv_pb2 = kv_pb2
        self._common_pb2 = common_pb2
        self._value = os.urandom(self.value_size)
        self._metadata = (("authorization", f"Bearer {self.token}"),)
        self._channels = [
            grpc.aio.insecure_channel(
                self.endpoint, options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(self.n_channels)
        ]
        self._stubs = [kv_pb2_grpc.KVServiceStub(ch) for ch in self._channels]

    async def request(self, client: int, seq: int) -> None:
        stub = self._stubs[client % len(self._stubs)]
        name = f"{self.run_id}/{client}/{seq}"
        req = self._kv_pb2.PutRequest(
            key=f"bench/{name}",
            value=self._value,
            options=self._common_pb2.WriteOptions(request_id=f"bench-{name}"),
        )
        await stub.Put(req, timeout=self.timeout, metadata=self._metadata)

    async def close(self) -> None:
        for ch in self._channels:
            await ch.close()


def measure_zone(
    lab, lab_dir, clients: int, seconds: float, value_size: int = 256, processes: int | None = None
) -> tuple[loadgen.Result, dict]:
    leader = lab_leader(lab)
    endpoint = lab_endpoints(lab)[leader]
    token = login(endpoint, read_password(lab_dir))
    log(f"commit: zone leader is front-end {leader} at {endpoint}")
    wl = ZonePutWorkload(endpoint, token, value_size=value_size, channels=max(1, min(clients, 4)))
    procs = processes if processes is not None else loadgen.default_processes(clients)
    meter = loadgen.CpuMeter([fe.pid for fe in lab.fes]).start()
    res = loadgen.run(wl, clients, seconds, processes=procs)
    return res, {"leader": leader, "endpoint": endpoint, "server_cores": meter.stop()}


# -- the command ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench commit",
        description="Closed-loop KV.Put throughput/latency of the zone vs a 3-member etcd.",
    )
    ap.add_argument("--frontends", type=int, default=3)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--value-size", type=int, default=256)
    ap.add_argument("--processes", type=int, default=None, help="load worker processes")
    ap.add_argument("--dir", default=None, help="zone directory (default: a temp dir)")
    ap.add_argument("--no-etcd", action="store_true", help="skip the etcd comparison")
    ap.add_argument(
        "--single-process",
        action="store_true",
        help="front-ends serve gRPC from the raft process (api_process = false)",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    out: dict = {
        "bench": "commit",
        "frontends": args.frontends,
        "clients": args.clients,
        "seconds": args.seconds,
        "value_size": args.value_size,
    }
    t0 = time.monotonic()
    with zone(args.frontends, args.dir, api_process=not args.single_process) as (lab, lab_dir):
        log(f"commit: zone of {args.frontends} up in {time.monotonic() - t0:.1f} s")
        res, info = measure_zone(
            lab, lab_dir, args.clients, args.seconds, args.value_size, args.processes
        )
    s = res.summary()
    log(
        f"commit: zone {s['ops_per_s']} ops/s p50 {s['p50_ms']} ms p99 {s['p99_ms']} ms "
        f"errors {s['errors']} {s['error_kinds'] or ''}; cores used by front-ends "
        f"{info['server_cores']} (leader {info['leader']}), by the client {s['client_cores']}"
    )
    out.update(
        ops=s["ops"],
        ops_per_s=s["ops_per_s"],
        p50_ms=s["p50_ms"],
        p99_ms=s["p99_ms"],
        errors=s["errors"],
        error_kinds=s["error_kinds"],
        client_cores=s["client_cores"],
        leader=info["leader"],
        server_cores=info["server_cores"],
    )

    if not args.no_etcd:
        from bench import etcd

        with etcd.EtcdCluster(3) as cluster:
            log(f"commit: etcd up at {', '.join(cluster.endpoints)}")
            meter = loadgen.CpuMeter(cluster.pids).start()
            eres = etcd.measure(
                cluster, args.clients, args.seconds, args.value_size, args.processes
            )
            etcd_cores = meter.stop()
        e = eres.summary()
        log(
            f"commit: etcd {e['ops_per_s']} ops/s p50 {e['p50_ms']} ms p99 {e['p99_ms']} ms "
            f"errors {e['errors']}"
        )
        out.update(
            etcd_ops_per_s=e["ops_per_s"],
            etcd_p50_ms=e["p50_ms"],
            etcd_p99_ms=e["p99_ms"],
            etcd_errors=e["errors"],
            etcd_server_cores=etcd_cores,
            vs_etcd=round(s["ops_per_s"] / e["ops_per_s"], 3) if e["ops_per_s"] else None,
        )
    print(json.dumps(out) if args.json else json.dumps(out, indent=2))
    return 0
