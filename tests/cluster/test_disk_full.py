"""A full disk on a front-end: writes fail with a clear error, nothing is corrupted, and
everything is back to normal once space returns."""

import contextlib
import os
import shutil
import subprocess

import grpc
import pytest

from tests.cluster.raftkit import wait_for
from tests.cluster.zonekit import all_present, get, put
from zones.api.gen import kv_pb2
from zones.lab import Lab

pytestmark = pytest.mark.cluster


@contextlib.contextmanager
def data_on_tmpfs(lab: Lab, i: int, size: str = "48m"):
    """Stop front-end i, move its data dir onto a small tmpfs, start it again."""
    data = lab.frontend(i).data_dir
    lab.stop(i)
    keep = data + ".keep"
    shutil.move(data, keep)
    os.makedirs(data)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", data], check=True
    )
    try:
        for name in os.listdir(keep):
            src = os.path.join(keep, name)
            (shutil.copytree if os.path.isdir(src) else shutil.copy2)(src, os.path.join(data, name))
        lab.start(i)
        yield data
    finally:
        with contextlib.suppress(Exception):
            lab.stop(i)
        subprocess.run(["umount", "-l", data], check=False)


def fill(path: str) -> str:
    ballast = os.path.join(path, "ballast")
    with open(ballast, "wb") as f:
        chunk = b"\0" * (1 << 20)
        with contextlib.suppress(OSError):
            while True:
                f.write(chunk)
                f.flush()
    return ballast


def test_full_disk_on_the_leader_refuses_writes_clearly_and_recovers(tmp_path):
    with Lab(tmp_path / "zone", frontends=1, raft_overrides={"min_free_bytes": 4 << 20}) as lab:
        put(lab, "before")
        with data_on_tmpfs(lab, 0) as data:
            put(lab, "on-tmpfs")
            ballast = fill(data)
            client = lab.client(0)
            with pytest.raises(grpc.RpcError) as err:
                client.kv.Put(kv_pb2.PutRequest(key="refused", value=b"x"), timeout=10)
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "disk full" in err.value.details()
            os.unlink(ballast)
            wait_for(lambda: _accepts(lab), timeout=10, what="writes accepted again")
            all_present(lab, {"before": 0, "on-tmpfs": 0, "after": put(lab, "after")})
            assert not get(lab, 0, "refused", linearizable=True).found


def _accepts(lab: Lab) -> bool:
    try:
        lab.client(0).kv.Put(kv_pb2.PutRequest(key="probe", value=b"x"), timeout=5)
        return True
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
        return False


def test_full_disk_on_a_follower_does_not_stop_the_zone_and_it_catches_up(tmp_path):
    with Lab(tmp_path / "zone", frontends=3, raft_overrides={"min_free_bytes": 4 << 20}) as lab:
        leader = lab.leader_index()
        follower = (leader + 1) % 3
        with data_on_tmpfs(lab, follower) as data:
            acked = {f"a{i}": put(lab, f"a{i}") for i in range(20)}
            ballast = fill(data)
            acked.update({f"b{i}": put(lab, f"b{i}", value=b"y" * 2000) for i in range(200)})
            assert lab.running(follower)
            log = lab.frontend(follower).log
            wait_for(
                lambda: "cannot append to the journal" in open(log).read(),
                what="the follower hit ENOSPC",
            )
            os.unlink(ballast)
            all_present(lab, acked, servers=[follower])
