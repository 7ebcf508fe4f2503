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
def test_lab_add_frontend_to_a_one_server_zone_keeps_it_writable(tmp_path):
    with Lab(tmp_path / "zone", frontends=1, fault_injection=True) as lab:
        assert wait_writable(lab, 10) > 0
        added = lab.add_frontend(timeout=15)
        assert lab.running(added)
        assert wait_writable(lab, 10) > 0
