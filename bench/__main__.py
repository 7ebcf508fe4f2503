"""``python -m bench <name> [args]``: run one benchmark.

Each benchmark module has ``main(argv) -> int``; with ``--json`` it prints one JSON object
as the last line of stdout (progress goes to stderr).
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "commit": "bench.commit",  # write throughput/latency of the zone vs a 3-member etcd
    "failover": "bench.failover",  # leader SIGKILL -> next commit; no acked write lost
    "etcd": "bench.etcd",  # the etcd figures alone
    "faults": "bench.faults",  # history under kill/pause/partition/...: lost, dup, linearizable
    "campaign": "bench.campaign",  # many fault runs in a rotation of kinds, and their totals
    "pool": "bench.pool",  # VM info, full VM pool listing, mixed load, memory at scale
    "authz": "bench.authz",  # authorize() latency: 10k users, 10k ACL rules in LMDB
}


def usage() -> str:
    names = "\n".join(f"  {n}" for n in BENCHMARKS)
    return f"usage: python -m bench <name> [args] [--json]\nbenchmarks:\n{names}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in BENCHMARKS:
        print(f"unknown benchmark {name!r}\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(BENCHMARKS[name])
    return module.main(rest)


if __name__ == "__main__":
    sys.exit(main())
