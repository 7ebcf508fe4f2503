"""oned: one front-end of a zone.  `oned --config /etc/one/oned.toml`

Logs to stderr (and to log_file when configured); SIGTERM / SIGINT stop it cleanly.
Exit codes: 0 after a clean stop, 2 for a bad config, 1 when it cannot start.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from zones.config import ConfigError, load

log = logging.getLogger("oned")


def setup_logging(level: str, log_file: str | None, name: str) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter(f"%(asctime)s {name} %(levelname)s [%(name)s] %(message)s")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file:
        handlers.append(logging.FileHandler(log_file))
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level.upper())
    # PySyncObj and gRPC are chatty at debug level.
    if level.lower() != "debug":
        logging.getLogger("pysyncobj").setLevel(logging.WARNING)


SWITCH_INTERVAL = 0.0005


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oned", description="Run one front-end of a zone.")
    parser.add_argument("--config", "-c", required=True, help="path to oned.toml")
    parser.add_argument("--log-level", help="override log_level from the config")
    args = parser.parse_args(argv)
    # The raft thread and the gRPC event loop share one GIL: with the default 5 ms switch
    # interval a commit can wait that long for the interpreter (DESIGN.md, "the GIL").
    sys.setswitchinterval(SWITCH_INTERVAL)

    try:
        config = load(args.config)
    except ConfigError as e:
        print(f"oned: configuration error: {e}", file=sys.stderr)
        return 2
    try:
        setup_logging(args.log_level or config.log_level, config.log_file, config.name)
    except (OSError, ValueError) as e:
        print(f"oned: cannot set up logging: {e}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    from zones.frontend import Frontend  # after logging: imports raftcore, grpc

    frontend = Frontend(config)
    try:
        frontend.start()
    except Exception as e:
        log.error("cannot start front-end %s: %s", config.name, e, exc_info=log.isEnabledFor(10))
        return 1
    try:
        while not stop.wait(1.0):
            pass
    finally:
        frontend.stop(grace=2.0)
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
