"""onegroup: rendering of hand-built groups and the commands end to end against an
in-process front-end."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from zones.api.gen import group_pb2
from zones.cli import onegroup, oneuser
from zones.cli.common import render


def _group(gid=100, name="devs", users=(2, 3), admins=(2,), quota="", template=""):
    return group_pb2.Group(
        id=gid, name=name, users=list(users), admins=list(admins), quota=quota, template=template
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- rendering ---------------------------------------------------------------------------


def test_list_columns_and_cells():
    quota = 'VM = [ VMS = "20", VMS_USED = "3", MEMORY = "-2", MEMORY_USED = "3072", CPU = "8", CPU_USED = "1.5" ]'
    groups = [_group(gid=0, name="oneadmin", users=[0], admins=[]), _group(quota=quota)]
    lines = _lines(render([onegroup.list_table(groups)]))
    assert lines[0].split() == ["ID", "NAME", "USERS", "VMS", "MEMORY", "CPU"]
    assert lines[1].split() == ["0", "oneadmin", "1", "-", "-", "-"]
    assert lines[2].split() == "100 devs 2 3 / 20 3G / - 1.5 / 8.0".split()


def test_list_with_a_default_quota():
    rows = onegroup.list_rows([_group()], default_quota='VM = [ VMS = "5" ]')
    assert rows[0][3:] == ["  0 /   5", "     0M /       -", "0.0 /   -"]


def test_show_sections():
    group = _group(
        template='DESCRIPTION = "the devs"',
        quota='NETWORK = [ ID = "4", LEASES = "2", LEASES_USED = "1" ]',
    )
    lines = _lines(onegroup.render_show(group))
    sections = [
        "GROUP 100 INFORMATION",
        "GROUP TEMPLATE",
        "USERS",
        "ADMINS",
        "VMS USAGE & QUOTAS",
        "VMS USAGE & QUOTAS - RUNNING",
        "DATASTORE USAGE & QUOTAS",
        "NETWORK USAGE & QUOTAS",
        "IMAGE USAGE & QUOTAS",
    ]
    assert [line for line in lines if line in sections] == sections
    assert "ID              : 100" in lines and "NAME            : devs" in lines
    assert 'DESCRIPTION = "the devs"' in lines
    users = lines.index("USERS")
    assert [line.strip() for line in lines[users + 1 : users + 4]] == ["ID", "2", "3"]
    admins = lines.index("ADMINS")
    assert [line.strip() for line in lines[admins + 1 : admins + 3]] == ["ID", "2"]
    net = lines.index("NETWORK USAGE & QUOTAS")
    assert lines[net + 2].split() == "4 1 / 2".split()


# --- end to end ----------------------------------------------------------------------------


def test_group_life_cycle(cli_env, capsys, tmp_path):
    rc, out, _ = run_cli(onegroup, capsys, "create", "devs")
    assert rc == 0
    gid = int(out.split()[1])
    assert gid >= 100  # ids below 100 are for system objects
    rc, out, _ = run_cli(onegroup, capsys, "list")
    lines = _lines(out)
    assert lines[0].split() == ["ID", "NAME", "USERS", "VMS", "MEMORY", "CPU"]
    assert [line.split()[:3] for line in lines[1:]] == [
        ["0", "oneadmin", "1"],
        ["1", "users", "0"],
        [str(gid), "devs", "0"],
    ]
    assert [g["name"] for g in json.loads(run_cli(onegroup, capsys, "list", "-j")[1])] == [
        "oneadmin",
        "users",
        "devs",
    ]

    uid = int(run_cli(oneuser, capsys, "create", "alice", "pw", "--group", str(gid))[1].split()[1])
    run_cli(oneuser, capsys, "create", "bob", "pw-bob", "--group", "devs")
    rc, out, err = run_cli(onegroup, capsys, "addadmin", "devs", "alice", "-v")
    assert rc == 0 and out == f"GROUP {gid}: admin added\n", err
    data = json.loads(run_cli(onegroup, capsys, "show", "devs", "--json")[1])
    assert data["admins"] == [uid] and len(data["users"]) == 2

    tmpl = tmp_path / "g.tmpl"
    tmpl.write_text('DESCRIPTION = "developers"\n')
    assert run_cli(onegroup, capsys, "update", "devs", str(tmpl))[0] == 0
    quota = tmp_path / "quota"
    quota.write_text("VM = [ VMS = 10, MEMORY = 4096, CPU = 4 ]\n")
    rc, _, err = run_cli(onegroup, capsys, "quota", "devs", str(quota))
    assert rc == 0, err
    out = run_cli(onegroup, capsys, "show", str(gid))[1]
    lines = _lines(out)
    assert lines[0] == f"GROUP {gid} INFORMATION"
    assert 'DESCRIPTION = "developers"' in lines
    vms = lines.index("VMS USAGE & QUOTAS")
    assert lines[vms + 2].split()[:6] == "0 / 10 0M / 4G".split()
    row = [line for line in _lines(run_cli(onegroup, capsys, "list")[1]) if " devs " in line][0]
    assert row.split()[3:] == "0 / 10 0M / 4G 0.0 / 4.0".split()

    # alice, admin of devs, sees the users of devs; bob only himself
    token = run_cli(oneuser, capsys, "login", "alice", "--password", "pw")[1].strip()
    names = [
        u["name"] for u in json.loads(run_cli(oneuser, capsys, "list", "-j", "--token", token)[1])
    ]
    assert sorted(names) == ["alice", "bob"]
    rc, out, _ = run_cli(onegroup, capsys, "list", "--user", "bob", "--password", "pw-bob")
    assert [line.split()[1] for line in _lines(out)[1:]] == ["devs"]
    rc, _, err = run_cli(onegroup, capsys, "create", "x", "--user", "bob", "--password", "pw-bob")
    assert rc == 1 and "[PERMISSION_DENIED]" in err

    assert run_cli(onegroup, capsys, "deladmin", "devs", str(uid))[0] == 0
    assert json.loads(run_cli(onegroup, capsys, "show", "devs", "-j")[1])["admins"] == []

    rc, _, err = run_cli(onegroup, capsys, "delete", "devs")
    assert rc == 1 and err.startswith("onegroup: error: [")  # still has users
    run_cli(oneuser, capsys, "delete", "alice", "bob")
    assert run_cli(onegroup, capsys, "delete", "devs", "-v")[1] == f"GROUP {gid}: deleted\n"
    rc, _, err = run_cli(onegroup, capsys, "show", "devs")
    assert rc == 1 and "group 'devs' not found" in err


def test_defaultquota_and_errors(cli_env, capsys, tmp_path):
    quota = tmp_path / "quota"
    quota.write_text("VM = [ VMS = 3 ]\n")
    rc, _, err = run_cli(onegroup, capsys, "defaultquota", str(quota))
    assert rc == 0, err
    row = [line for line in _lines(run_cli(onegroup, capsys, "list")[1]) if " users " in line][0]
    assert row.split()[3:6] == ["0", "/", "3"]
    quota.write_text("VM = [ VMS = lots ]\n")
    rc, _, err = run_cli(onegroup, capsys, "quota", "users", str(quota))
    assert rc == 1 and "INVALID_ARGUMENT" in err
    rc, _, err = run_cli(onegroup, capsys, "show", "4242")
    assert rc == 1 and "[NOT_FOUND]" in err
    with pytest.raises(SystemExit) as e:
        onegroup.main(["addadmin", "devs"])
    assert e.value.code == 2
