"""Regression tests for bugs the fault harness found, each named after what it was.

A bug in a layer the harness does not own is pinned here first as a failing test
(``xfail(strict=True)``) until it is fixed in that layer; then the mark goes.
"""

from __future__ import annotations

import pytest

from fault.recorder import wait_writable
from zones.lab import Lab

pytestmark = pytest.mark.cluster


@pytest.mark.fault_timeout(120)
@pytest.mark.xfail(
    strict=True,
    reason=(
        "zones/lab.py Lab.add_frontend() sends ServerAdd before it starts the new "
        "front-end: in a one-server zone the membership change needs the new server's "
        "ack (2 of 2), so ServerAdd times out (UNAVAILABLE 'outcome unknown') after 10 s, "
        "the new front-end is never started, and the old server steps down for good: "
        "no leader. Found by the membership nemesis with overlapping lanes."
    ),
)
def test_lab_add_frontend_to_a_one_server_zone_keeps_it_writable(tmp_path):
    with Lab(tmp_path / "zone", frontends=1, fault_injection=True) as lab:
        assert wait_writable(lab, 10) > 0
        added = lab.add_frontend(timeout=15)
        assert lab.running(added)
        assert wait_writable(lab, 10) > 0
