"""zones.lab: arguments, generated configs, directory safety, and a 1-front-end round trip."""

import json
import os
import stat
import subprocess
import sys

import pytest

from tests.conftest import wait_until
from zones import lab as labmod
from zones.api.gen import kv_pb2, zone_pb2
from zones.config import load
from zones.lab import Lab, LabError, _pid_alive


def test_frontends_must_be_one_three_or_five_on_the_command_line(capsys):
    with pytest.raises(SystemExit) as e:
        labmod.main(["up", "--frontends", "2", "--dir", "x"])
    assert e.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        labmod.main(["up", "--frontends", "3"])  # --dir is required
    with pytest.raises(ValueError):
        Lab("x", frontends=0)
    assert labmod.main(["up", "--frontends", "3", "--replica", "local", "--dir", "x"]) == 1
    assert "--frontends 1" in capsys.readouterr().err


def test_down_without_a_lab_is_a_clear_error(tmp_path, capsys):
    assert labmod.main(["down", "--dir", str(tmp_path)]) == 1
    assert "no lab in" in capsys.readouterr().err


def test_generated_configs_are_valid_and_private(tmp_path):
    lab = Lab(
        tmp_path / "z",
        frontends=3,
        fault_injection=True,
        raft_overrides={"snapshot_min_entries": 50},
    )
    lab._prepare()
    for path in (lab.secret_file, lab.auth_file):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert lab.auth_file.read_text().startswith("oneadmin:")
    ports = set()
    for fe in lab.fes:
        cfg = load(fe.config)
        assert cfg.server_id == fe.id
        assert cfg.grpc_address == fe.grpc and cfg.raft_address == fe.raft
        assert [s.raft for s in cfg.servers] == [f.raft for f in lab.fes]
        assert cfg.raft.fault_injection is True
        assert cfg.raft.snapshot_min_entries == 50
        ports |= {fe.grpc, fe.raft, fe.metrics}
    assert len(ports) == 9  # all distinct


def test_a_directory_that_is_not_a_lab_is_refused(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(LabError, match="is not a lab directory"):
        Lab(tmp_path, frontends=1).up(timeout=5)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_start_failure_raises_with_the_log_tail_and_leaves_nothing(tmp_path):
    lab = Lab(tmp_path / "z", frontends=1, raft_overrides={"heartbeat": 5.0})  # invalid
    with pytest.raises(LabError) as err:
        lab.up(timeout=20)
    message = str(err.value)
    assert "exited during start-up" in message
    assert "heartbeat" in message  # from oned's own error in the log
    assert all(fe.pid is None for fe in lab.fes)


@pytest.mark.cluster
def test_cli_up_and_down_of_a_single_local_frontend(tmp_path):
    """`up` prints one JSON object and leaves oned running; `down` stops it by pid."""
    d = tmp_path / "z"
    out = subprocess.run(
        [sys.executable, "-m", "zones.lab", "up", "--frontends", "1", "--replica", "local"]
        + ["--dir", str(d)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    [fe] = info["frontends"]
    assert info["ONE_ENDPOINT"] == fe["grpc"]
    assert info["ONE_AUTH"] == str(d / "one_auth")
    assert _pid_alive(fe["pid"])
    try:
        lab = Lab.load(d)
        assert lab.leader_index(timeout=5) == 0
        assert lab.client(0).kv.Put(kv_pb2.PutRequest(key="k", value=b"v")).index > 0
        lab.down()
    finally:
        down = subprocess.run(
            [sys.executable, "-m", "zones.lab", "down", "--dir", str(d)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert down.returncode == 0, down.stderr
    assert not _pid_alive(fe["pid"])


@pytest.mark.cluster
def test_lab_api_round_trip_with_raft(tmp_path):
    with Lab(tmp_path / "z", frontends=1) as lab:
        i = lab.leader_index(timeout=10)
        c = lab.client(i)
        idx = c.kv.Put(kv_pb2.PutRequest(key="a", value=b"1")).index
        lab.stop(i)
        assert not lab.running(i)
        lab.start(i)
        assert lab.leader_index(timeout=15) == i
        got = lab.client(i).kv.Get(
            kv_pb2.GetRequest(key="a", options={"min_index": idx}), timeout=10
        )
        assert got.value == b"1"
        pid = lab.frontend(i).pid
    assert not _pid_alive(pid)


@pytest.mark.cluster
def test_add_frontend_joins_and_catches_up(tmp_path):
    with Lab(tmp_path / "z", frontends=3) as lab:
        c = lab.client()
        last = 0
        for k in range(20):
            last = c.kv.Put(kv_pb2.PutRequest(key=f"k{k}", value=b"v")).index
        i = lab.add_frontend()
        assert (i, lab.n, lab.frontend(i).id) == (3, 4, 3)  # server ids are never reused
        got = lab.client(i).kv.Get(
            kv_pb2.GetRequest(key="k19", options={"min_index": last}), timeout=15
        )
        assert got.found
        seen: list = []

        def all_members_report() -> bool:
            # The new server may be slow to answer its first status call on a busy machine.
            status = c.zone.Info(zone_pb2.ZoneInfoRequest()).status
            seen[:] = [(st.id, st.state, st.error) for st in status]
            return sorted(st.state for st in status) == ["follower"] * 3 + ["leader"]

        try:
            wait_until(all_members_report, timeout=10, what="4 members reporting")
        except AssertionError as e:
            raise AssertionError(f"{e}; last status: {seen}") from None
