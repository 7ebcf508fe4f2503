"""Pools at OpenNebula's scale: VM info, a full VM pool listing, a mixed load, memory.

    python -m bench pool --vms 20000 --hosts 1250 [--frontends 3] [--json]

1. Starts a lab zone (3 front-ends), creates `--hosts` hosts and `--vms` VMs through
   PoolService.Allocate (as oneadmin, 64 concurrent writers).
2. `vm_info_p99_ms`: PoolService.Info of random VMs, one client, `--info-calls` calls,
   on the leader.
3. `vmpool_ms`: a full PoolService.List of every VM (oneadmin, filter -2), median of
   `--pool-calls` calls, as received by the client (`vmpool_decode_ms`: decoding the
   records on top).
4. `mixed_rps`, `mixed_p99_ms`: 32 closed-loop clients for `--seconds`: 80% VM infos,
   10% listings of a 100-VM page, 10% writes (a VM template update) on the leader.
5. `rss_mb`: resident memory of the leader's processes (oned + its API worker), and
   `rss_mb_max` over every front-end.

Targets (issue 5): vm_info_p99_ms <= 5, vmpool_ms <= 100 (20,000 VMs), mixed_rps >= 1000
with mixed_p99_ms <= 50; rss_mb <= 1024 with 100,000 VMs and 10,000 hosts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time

import grpc

from bench import loadgen
from bench.commit import lab_leader, login, read_password, zone
from bench.loadgen import log

HOST_TEMPLATE = 'IM_MAD = "dummy"\nVM_MAD = "dummy"\n'
VM_TEMPLATE = 'NAME = "vm-{n}"\nCPU = "0.5"\nVCPU = "1"\nMEMORY = "512"\n'


def _rss_mb(pid: int) -> float:
    """VmRSS of `pid` and of its children (the API worker), in MiB."""
    total = 0
    pids = [pid]
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            pids += [int(p) for p in f.read().split()]
    except OSError:
        pass
    for p in pids:
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return round(total / 1024, 1)


async def _populate(endpoint: str, token: str, kind: str, n: int, text, writers: int = 64):
    from zones.api.gen import pool_pb2, pool_pb2_grpc

    md = (("authorization", f"Bearer {token}"),)
    channels = [grpc.aio.insecure_channel(endpoint) for _ in range(4)]
    stubs = [pool_pb2_grpc.PoolServiceStub(c) for c in channels]
    todo = iter(range(n))
    errors: list[str] = []

    async def writer(w: int) -> None:
        stub = stubs[w % len(stubs)]
        for i in todo:
            req = pool_pb2.AllocateRequest(
                kind=kind,
                name=f"{kind}-{i}" if kind == "host" else "",
                template=text(i),
                request_id=f"bench-{kind}-{i}",
            )
            for _attempt in range(5):
                try:
                    await stub.Allocate(req, timeout=30, metadata=md)
                    break
                except grpc.aio.AioRpcError as e:
                    if e.code() != grpc.StatusCode.UNAVAILABLE:
                        errors.append(f"{kind} {i}: {e.code().name}: {e.details()}")
                        break
                    await asyncio.sleep(0.1)
            else:
                errors.append(f"{kind} {i}: still UNAVAILABLE after 5 attempts")

    t0 = time.perf_counter()
    await asyncio.gather(*(writer(w) for w in range(writers)))
    for c in channels:
        await c.close()
    if errors:
        raise RuntimeError(f"{len(errors)} allocations failed, first: {errors[0]}")
    return time.perf_counter() - t0


def _info_latencies(client, vms: int, calls: int) -> list[float]:
    from zones.api.gen import pool_pb2

    rng = random.Random(1)
    out = []
    for _ in range(calls):
        req = pool_pb2.PoolInfoRequest(kind="vm", id=rng.randrange(vms))
        t0 = time.perf_counter()
        client.pool.Info(req, timeout=10)
        out.append(time.perf_counter() - t0)
    return out


def _pool_times(client, calls: int) -> tuple[list[float], list[float], int]:
    from zones.api.gen import pool_pb2
    from zones.api.pool_service import decode_list

    rpc, decode = [], []
    count = 0
    for _ in range(calls):
        t0 = time.perf_counter()
        reply = client.pool.List(pool_pb2.PoolListRequest(kind="vm", filter=-2), timeout=60)
        t1 = time.perf_counter()
        count = len(decode_list(reply))
        decode.append(time.perf_counter() - t1)
        rpc.append(t1 - t0)
    return rpc, decode, count


class MixedWorkload:
    """80% VM info, 10% a 100-VM page, 10% a VM template update (a write)."""

    def __init__(self, endpoint: str, token: str, vms: int) -> None:
        self.endpoint = endpoint
        self.token = token
        self.vms = vms

    async def open(self) -> None:
        from zones.api.gen import pool_pb2, pool_pb2_grpc

        self._pb = pool_pb2
        self._md = (("authorization", f"Bearer {self.token}"),)
        self._channels = [grpc.aio.insecure_channel(self.endpoint) for _ in range(4)]
        self._stubs = [pool_pb2_grpc.PoolServiceStub(c) for c in self._channels]
        self._rng = random.Random()

    async def request(self, client: int, seq: int) -> None:
        pb, stub = self._pb, self._stubs[client % len(self._stubs)]
        vm = self._rng.randrange(self.vms)
        roll = self._rng.random()
        if roll < 0.8:
            await stub.Info(pb.PoolInfoRequest(kind="vm", id=vm), timeout=10, metadata=self._md)
        elif roll < 0.9:
            req = pb.PoolListRequest(kind="vm", filter=-2, start_id=vm, limit=100)
            await stub.List(req, timeout=10, metadata=self._md)
        else:
            req = pb.PoolUpdateRequest(
                kind="vm", id=vm, template=f'BENCH = "{client}-{seq}"', append=True
            )
            await stub.Update(req, timeout=10, metadata=self._md)

    async def close(self) -> None:
        for c in self._channels:
            await c.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench pool", description=__doc__.split("\n")[0])
    ap.add_argument("--vms", type=int, default=20000)
    ap.add_argument("--hosts", type=int, default=1250)
    ap.add_argument("--frontends", type=int, default=3, choices=(1, 3, 5))
    ap.add_argument("--info-calls", type=int, default=2000)
    ap.add_argument("--pool-calls", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--dir", default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    with zone(args.frontends, args.dir) as (lab, lab_dir):
        leader = lab_leader(lab)
        endpoint = lab.endpoints[leader]
        token = login(endpoint, read_password(lab_dir))
        log(f"pool: creating {args.hosts} hosts and {args.vms} VMs on {endpoint}")
        hosts_s = asyncio.run(
            _populate(endpoint, token, "host", args.hosts, lambda i: HOST_TEMPLATE)
        )
        vms_s = asyncio.run(
            _populate(endpoint, token, "vm", args.vms, lambda i: VM_TEMPLATE.format(n=i))
        )
        log(f"pool: populated in {hosts_s:.1f} s + {vms_s:.1f} s")
        client = lab.client(leader)
        info = sorted(_info_latencies(client, args.vms, args.info_calls))
        rpc, decode, listed = _pool_times(client, args.pool_calls)
        log(f"pool: listed {listed} VMs; mixed load for {args.seconds:g} s")
        mixed = loadgen.run(
            MixedWorkload(endpoint, token, args.vms),
            args.clients,
            args.seconds,
            processes=loadgen.default_processes(args.clients),
        ).summary()
        rss = {i: _rss_mb(fe.pid) for i, fe in enumerate(lab.fes) if fe.pid}
        result = {
            "vms": args.vms,
            "hosts": args.hosts,
            "frontends": args.frontends,
            "populate_writes_per_s": round((args.vms + args.hosts) / (hosts_s + vms_s), 1),
            "vm_info_p50_ms": round(loadgen.percentile(info, 50) * 1000, 3),
            "vm_info_p99_ms": round(loadgen.percentile(info, 99) * 1000, 3),
            "vmpool_ms": round(statistics.median(rpc) * 1000, 1),
            "vmpool_decode_ms": round(statistics.median(decode) * 1000, 1),
            "vmpool_count": listed,
            "mixed_rps": mixed["ops_per_s"],
            "mixed_p50_ms": mixed["p50_ms"],
            "mixed_p99_ms": mixed["p99_ms"],
            "mixed_errors": mixed["errors"],
            "rss_mb": rss.get(leader),
            "rss_mb_max": max(rss.values()) if rss else None,
        }
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 0
