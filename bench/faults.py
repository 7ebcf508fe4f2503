"""The zone under faults: record a history, inject faults, check it (fault/runner.py).

    python -m bench faults --frontends 3|5 --nemesis kill,pause,partition,restart,membership[,disk]
        --seconds S --seed N [--clients C] [--dir D] [--lanes L] [--json]

Prints ONE JSON object last: ``operations``, ``acknowledged``, ``lost``, ``duplicate``,
``divergent``, ``read_anomalies``, ``linearizable`` (true, false or "unknown"),
``faults`` (each fault: kind, params, description, targets, injected_at / healed_at in
seconds since the clients started, ``recovery_s`` = heal -> next acknowledged write,
``write_outage_s`` = the longest time the clients saw no acknowledged write from the
injection until that recovery), ``recovery_s_max``, ``fault_errors``, ``recorder``
(outcome counts, errors by kind), ``history_full``; on a violation ``violation: true``,
``history`` = a saved minimal history (the offending key) and ``offending_keys``.
The same seed gives the same fault schedule (``--schedule`` prints it). ``--lanes 2``
lets faults overlap. Exit code 1 on a violation, 2 when the run itself failed (then the
JSON object has ``error``).
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys

from fault.nemesis import KINDS, make_schedule


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench faults", description=__doc__.split("\n")[0])
    ap.add_argument("--frontends", type=int, default=3, choices=(3, 5))
    ap.add_argument(
        "--nemesis",
        default="kill,pause,partition,restart,membership",
        help=f"comma-separated fault kinds: {','.join(KINDS)}",
    )
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--keys", type=int, default=20)
    ap.add_argument("--max-ops", type=int, default=10000, help="operations budget of the run")
    ap.add_argument(
        "--snapshot-entries",
        type=int,
        default=500,
        help="raft snapshot_min_entries of the zone (small: snapshots during the run)",
    )
    ap.add_argument("--time-limit", type=float, default=60.0, help="checker time limit (s)")
    ap.add_argument("--dir", default=None, help="where the zone and histories go (default: tmp)")
    ap.add_argument(
        "--lanes",
        type=int,
        default=1,
        help="independent fault timelines; 2+ lets faults overlap (default 1: one at a time)",
    )
    ap.add_argument("--schedule", action="store_true", help="print the schedule and exit")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    kinds = [k.strip() for k in args.nemesis.split(",") if k.strip()]
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        ap.error(f"unknown nemesis {bad} (known: {', '.join(KINDS)})")
    if args.schedule:
        steps = make_schedule(args.seed, kinds, args.seconds, args.frontends, lanes=args.lanes)
        print(json.dumps([s.as_tuple() for s in steps]))
        return 0
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(message)s",
    )
    from fault.runner import run

    def stop(signum, _frame):
        # The runner's `finally` stops the lab (by pid) and unmounts its tmpfs.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)

    print(
        f"faults: {args.frontends} front-ends, nemesis {','.join(kinds)}, "
        f"{args.seconds:g} s, seed {args.seed}",
        file=sys.stderr,
        flush=True,
    )
    try:
        result = run(
            frontends=args.frontends,
            kinds=kinds,
            seconds=args.seconds,
            seed=args.seed,
            clients=args.clients,
            dir=args.dir,
            keys=args.keys,
            time_limit_s=args.time_limit,
            max_ops=args.max_ops,
            snapshot_entries=args.snapshot_entries,
            lanes=args.lanes,
        )
    except Exception as e:  # the run itself failed (e.g. the zone did not start)
        logging.getLogger("bench.faults").exception("the run failed")
        result = {"error": f"{type(e).__name__}: {e}", "violation": None}
        print(json.dumps(result))
        return 2
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))
    return 1 if result.get("violation") else 0


if __name__ == "__main__":
    sys.exit(main())
