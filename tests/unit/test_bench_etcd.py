"""bench.etcd: a real 3-member etcd starts, takes a write and leaves nothing behind."""

import os

import pytest

from bench.etcd import ETCD_BIN, EtcdCluster

pytestmark = pytest.mark.skipif(not os.path.exists(ETCD_BIN), reason="etcd not installed")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_cluster_put_get_and_stop():
    with EtcdCluster(3) as c:
        pids = c.pids
        data_dir = c.dir
        assert len(pids) == 3 and all(_alive(p) for p in pids)
        resp = c.put(b"k", b"v" * 256, member=1)
        assert resp.header.revision >= 2
        assert c.get(b"k", member=2) == b"v" * 256
        assert c.leader_index() in (0, 1, 2)
    assert not any(_alive(p) for p in pids)
    assert not data_dir.exists()


def test_failed_start_reports_log(tmp_path, monkeypatch):
    fake = tmp_path / "etcd"
    fake.write_text("#!/bin/sh\necho 'no way' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr("bench.etcd.ETCD_BIN", str(fake))
    with pytest.raises(RuntimeError, match="no way"):
        with EtcdCluster(1, start_timeout=5, base_dir=tmp_path):
            pass
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("bench-etcd-")]
