"""onevm, onetemplate, onevmgroup: rendering of hand-built records (columns, show
sections) and the commands end to end against an in-process front-end."""

from __future__ import annotations

import json

import pytest
import yaml

from raftcore import lifecycle
from tests.conftest import run_cli
from zones.cli import onetemplate, onevm, onevmgroup

H = 3_600_000
T0 = 1_700_000_000_000
NAMES = {"user": {5: "alice"}, "group": {100: "devs"}}


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _vm(**kw) -> dict:
    state, lcm = lifecycle.pair_of(kw.pop("state", "RUNNING"))
    vm = {
        "id": 7,
        "name": "web",
        "uid": 5,
        "gid": 100,
        "perms": 0o640,
        "template": 'CPU = "1.5"\nMEMORY = "2048"\nCPU_COST = "0.1"\n',
        "regtime": T0,
        "state": int(state),
        "lcm_state": int(lcm),
        "cpu": 1.5,
        "vcpu": 2,
        "memory": 2048,
        "disks": [
            {
                "disk_id": 0,
                "image_id": 3,
                "image": "ubuntu",
                "size": 10240,
                "type": "OS",
                "persistent": False,
                "datastore_id": 1,
                "target": "vda",
                "snapshots": [],
                "next_snapshot_id": 0,
            },
            {"disk_id": 1, "size": 512, "type": "swap", "snapshots": [], "next_snapshot_id": 0},
        ],  # fmt: skip
        "nics": [
            {
                "nic_id": 0,
                "network_id": 2,
                "network": "public",
                "bridge": "br0",
                "ip": "10.0.0.5",
                "mac": "02:00:0a:00:00:05",
            },
        ],  # fmt: skip
        "history": [
            {
                "seq": 0,
                "hid": 4,
                "hostname": "node1",
                "cid": 0,
                "ds_id": 0,
                "stime": T0,
                "etime": 0,
                "pstime": T0,
                "petime": T0 + 60_000,
                "rstime": T0 + 60_000,
                "retime": 0,
                "estime": 0,
                "eetime": 0,
                "reason": 0,
                "action": "",
                "uid": 0,
                "gid": 0,
                "req_id": "abcdef0123",
            },
        ],  # fmt: skip
        "stime": T0,
        "etime": 0,
        "deploy_id": "one-7",
        "sched_actions": [
            {
                "id": 0,
                "action": "poweroff",
                "time": T0 + H,
                "repeat": 0,
                "days": [1, 5],
                "end_type": 1,
                "end_value": 3,
                "args": "",
                "done": 0,
                "runs": 0,
                "message": "",
            },
        ],  # fmt: skip
        "vmgroup": None,
        "template_id": 2,
        "intent": None,
        "resched": False,
        "user_template": 'CPU_COST = "0.1"\nDESCRIPTION = "front [end]"\n',
        "capacity": [{"hid": 4, "cpu": 1.5, "memory": 2048}],
        "pending_op": None,
        "error": "",
    }
    vm.update(kw)
    return vm


# --- rendering ------------------------------------------------------------------------


def test_onevm_list_columns():
    vms = [_vm(), _vm(id=8, name="db", state="PENDING", capacity=[], history=[])]
    out = _lines(onevm.render([onevm.list_table(vms, NAMES, now_ms=T0 + 26 * H + 5 * 60_000)]))
    assert out[0].split() == ["ID", "USER", "GROUP", "NAME", "STAT", "CPU", "MEM", "HOST", "TIME"]
    assert out[1].split() == [
        "7",
        "alice",
        "devs",
        "web",
        "runn",
        "1.5",
        "2G",
        "node1",
        "1d",
        "02h05",
    ]
    assert out[2].split() == ["8", "alice", "devs", "db", "pend", "1.5", "2G", "1d", "02h05"]
    assert onevm.list_columns("id,state,vcpu") == ("ID", "STATE", "VCPU")
    assert onevm.list_rows([_vm()], columns=("ID", "STATE", "VCPU"))[0] == [7, "RUNNING", 2]
    with pytest.raises(onevm.CliError, match="unknown column"):
        onevm.list_columns("id,color")


def test_onevm_short_states_follow_the_lifecycle():
    for name, short in (("POWEROFF", "poff"), ("BOOT_FAILURE", "fail"), ("PROLOG", "prol"),
                        ("DONE", "done"), ("HOLD", "hold")):  # fmt: skip
        assert onevm.short_state(_vm(state=name)) == short


def test_onevm_show_sections():
    out = onevm.render_show(_vm(), NAMES, now_ms=T0 + 2 * H)
    lines = _lines(out)
    sections = [
        "VIRTUAL MACHINE 7 INFORMATION",
        "VIRTUAL MACHINE CAPACITY",
        "PERMISSIONS",
        "VM DISKS",
        "VM NICS",
        "VIRTUAL MACHINE HISTORY",
        "SCHEDULED ACTIONS",
        "USER TEMPLATE",
        "VIRTUAL MACHINE TEMPLATE",
    ]
    assert [line for line in lines if line in sections] == sections
    for expected in ("STATE           : ACTIVE", "LCM_STATE       : RUNNING", "HOST            : node1",
                     "DEPLOY ID       : one-7", "USER            : alice", "MEMORY          : 2G",
                     "OWNER           : um-", "GROUP           : u--"):  # fmt: skip
        assert expected in lines, expected
    disks = lines.index("VM DISKS")
    assert lines[disks + 1].split() == [
        "ID",
        "DATASTORE",
        "TARGET",
        "IMAGE",
        "SIZE",
        "TYPE",
        "SAVE",
    ]
    assert lines[disks + 2].split() == ["0", "1", "vda", "ubuntu", "10G", "OS", "NO"]
    assert lines[disks + 3].split() == ["1", "-", "-", "swap", "(volatile)", "512M", "fs", "NO"]
    nics = lines.index("VM NICS")
    assert lines[nics + 2].split() == ["0", "public", "br0", "10.0.0.5", "02:00:0a:00:00:05"]
    history = lines.index("VIRTUAL MACHINE HISTORY")
    assert lines[history + 1].split() == [
        "SEQ",
        "UID",
        "REQ",
        "HOST",
        "ACTION",
        "DS",
        "START",
        "TIME",
        "PROLOG",
    ]
    row = lines[history + 2].split()
    assert row[:6] == ["0", "0", "abcdef01", "node1", "none", "0"]
    assert row[-4:] == ["0d", "02h00", "0d", "00h01"]
    sched = lines.index("SCHEDULED ACTIONS")
    assert lines[sched + 2].split()[:2] == ["0", "poweroff"]
    assert "Weekly 1,5" in lines[sched + 2] and "After 3 times" in lines[sched + 2]
    assert 'DESCRIPTION = "front [end]"' in out  # brackets are not rich markup


def test_onevm_show_of_a_vm_on_no_host():
    lines = _lines(
        onevm.render_show(
            _vm(state="PENDING", capacity=[], history=[], disks=[], nics=[], sched_actions=[])
        )
    )
    assert "HOST            :" in lines
    assert lines[lines.index("VM DISKS") + 1] == "VM NICS"


def test_onetemplate_and_onevmgroup_rendering():
    record = {"id": 2, "name": "small", "uid": 5, "gid": 100, "perms": 0o600, "regtime": T0,
              "template": 'CPU = "1"\nDISK = [ IMAGE_ID = "0" ]\n'}  # fmt: skip
    out = _lines(onetemplate.render([onetemplate.list_table([record], NAMES)]))
    assert out[0].split() == ["ID", "USER", "GROUP", "NAME", "REGTIME"]
    assert out[1].split()[:4] == ["2", "alice", "devs", "small"]
    lines = _lines(onetemplate.render_show(record, NAMES))
    assert lines[0] == "TEMPLATE 2 INFORMATION" and "TEMPLATE CONTENTS" in lines
    assert onetemplate.vm_names("web-%i", 2) == ["web-0", "web-1"]
    assert onetemplate.vm_names("web", 2) == ["web-0", "web-1"]
    assert onetemplate.vm_names("web", 1) == ["web"] and onetemplate.vm_names(None, 2) == [
        None,
        None,
    ]

    group = {"id": 0, "name": "app", "uid": 5, "gid": 100, "perms": 0o600, "regtime": T0,
             "template": "", "affined": [["cache", "web"]], "anti_affined": [],
             "roles": [{"id": 0, "name": "web", "policy": "ANTI_AFFINED", "host_affined": [],
                        "host_anti_affined": [1, 2], "vms": [7, 8]}]}  # fmt: skip
    out = _lines(onevmgroup.render([onevmgroup.list_table([group], NAMES)]))
    assert out[0].split() == ["ID", "USER", "GROUP", "NAME", "VMS"]
    assert out[1].split() == ["0", "alice", "devs", "app", "2"]
    lines = _lines(onevmgroup.render_show(group, NAMES))
    roles = lines.index("ROLES")
    assert lines[roles + 2].split() == ["0", "web", "ANTI_AFFINED", "-", "1,2", "7,8"]
    assert lines[lines.index("RULES") + 2].split() == ["AFFINED", "cache,web"]


# --- end to end -------------------------------------------------------------------------


def test_end_to_end(cli_env, capsys, tmp_path):
    from zones.cli import pool
    from zones.cli.common import Session

    session = Session([cli_env.endpoint], "oneadmin", cli_env.password, 10)
    try:
        assert pool.list_records(session, "cluster"), "cluster 0"
    finally:
        session.close()

    tfile = tmp_path / "small.tmpl"
    tfile.write_text('NAME = "small"\nCPU = "1"\nMEMORY = "256"\nCPU_COST = "0.5"\n')
    rc, out, err = run_cli(onetemplate, capsys, "create", str(tfile))
    assert rc == 0 and out.strip() == "ID: 0", err
    rc, out, err = run_cli(
        onetemplate, capsys, "instantiate", "small", "--name", "web-%i", "--multiple", "2", "--hold"
    )
    assert rc == 0 and out.split() == ["VM", "ID:", "0", "VM", "ID:", "1"], err
    rc, out, _ = run_cli(onetemplate, capsys, "list")
    assert _lines(out)[1].split()[:4] == ["0", "oneadmin", "oneadmin", "small"]

    rc, out, _ = run_cli(onevm, capsys, "list")
    rows = [line.split() for line in _lines(out)[1:]]
    assert [(r[0], r[3], r[4]) for r in rows] == [("0", "web-0", "hold"), ("1", "web-1", "hold")]
    rc, _, err = run_cli(onevm, capsys, "release", "web-0", "web-1", "-v")
    assert rc == 0, err
    rc, out, _ = run_cli(onevm, capsys, "list", "-j")
    assert [lifecycle.state_str(v["state"], v["lcm_state"]) for v in json.loads(out)] == [
        "PENDING",
        "PENDING",
    ]

    rc, _, err = run_cli(onevm, capsys, "resize", "0", "--cpu", "2", "--memory", "512")
    assert rc == 0, err
    sched = tmp_path / "sched"
    sched.write_text('ACTION = "terminate"\nTIME = "+600"\n')
    rc, out, err = run_cli(onevm, capsys, "sched-add", "0", str(sched))
    assert rc == 0 and "SCHED_ID: 0" in out, err
    rc, out, _ = run_cli(onevm, capsys, "show", "0")
    lines = _lines(out)
    assert lines[0] == "VIRTUAL MACHINE 0 INFORMATION" and "CPU             : 2" in lines
    assert "terminate" in lines[lines.index("SCHEDULED ACTIONS") + 2]
    rc, out, _ = run_cli(onevm, capsys, "show", "web-1", "--yaml")
    assert yaml.safe_load(out)["template_id"] == 0

    # wrong state: the table's refusal; bad input: the argument named
    rc, _, err = run_cli(onevm, capsys, "poweroff", "0")
    assert rc == 1 and "[FAILED_PRECONDITION] action poweroff not allowed in state PENDING" in err
    rc, _, err = run_cli(onevm, capsys, "deploy", "0", "99")
    assert rc == 1 and "[INVALID_ARGUMENT]" in err and "host 99 does not exist" in err
    rc, _, err = run_cli(onevm, capsys, "recover", "1", "--delete")
    assert rc == 0, err
    rc, _, err = run_cli(onevm, capsys, "terminate", "--hard", "0")
    assert rc == 0, err
    rc, out, _ = run_cli(onevm, capsys, "list")
    assert [line.split()[4] for line in _lines(out)[1:]] == ["done", "done"]

    gfile = tmp_path / "group"
    gfile.write_text('NAME = "app"\nROLE = [ NAME = "web" ]\n')
    rc, out, err = run_cli(onevmgroup, capsys, "create", str(gfile))
    assert rc == 0 and out.strip() == "ID: 0", err
    rc, out, _ = run_cli(onevmgroup, capsys, "show", "app")
    assert _lines(out)[0] == "VM GROUP 0 INFORMATION"
    rc, _, err = run_cli(onevmgroup, capsys, "delete", "app")
    assert rc == 0, err
    rc, _, err = run_cli(onetemplate, capsys, "delete", "small")
    assert rc == 0, err
