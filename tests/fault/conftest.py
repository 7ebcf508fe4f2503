"""Fault-harness tests: a per-test time limit (SIGALRM; no pytest-timeout here).

Mark a test ``@pytest.mark.fault_timeout(seconds)``; unmarked tests in this directory get
DEFAULT_TIMEOUT_S. On expiry the test gets a TimeoutError in the main thread, so the
runner's ``finally`` still stops the lab (by pid) and unmounts its tmpfs.
"""

from __future__ import annotations

import signal
import threading

import pytest

DEFAULT_TIMEOUT_S = 180


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "fault_timeout(seconds): fail the test with TimeoutError after that long"
    )


@pytest.fixture(autouse=True)
def _fault_timeout(request):
    marker = request.node.get_closest_marker("fault_timeout")
    seconds = int(marker.args[0]) if marker else DEFAULT_TIMEOUT_S
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def expired(_signum, _frame):
        raise TimeoutError(f"{request.node.nodeid} took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
