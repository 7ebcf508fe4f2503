"""onevdc end to end: the default VDC, and a VDC giving a group a cluster (the ACL rules
appear in oneacl list and go with the VDC)."""

import json

from tests.conftest import run_cli
from zones.cli import oneacl, onevdc


def _acl_texts(capsys) -> list[str]:
    rc, out, _ = run_cli(oneacl, capsys, "list", "--json")
    assert rc == 0
    return [r["text"] for r in json.loads(out)]


def test_list_rows():
    records = [
        {
            "id": 0,
            "name": "default",
            "groups": [1],
            "clusters": [{"zone": 0, "id": -10}],
            "hosts": [],
            "datastores": [],
            "vnets": [{"zone": 0, "id": 3}, {"zone": 0, "id": 4}],
        }
    ]
    assert onevdc.list_rows(records) == [[0, "default", 1, "ALL", "0", "2", "0"]]


def test_default_vdc_and_a_new_one(cli_env, capsys):
    def default_ready() -> bool:
        rc, out, _ = run_cli(onevdc, capsys, "show", "default", "--json")
        return rc == 0 and json.loads(out)["groups"] == [1] and json.loads(out)["clusters"]

    assert default_ready(), "the default VDC"
    # OpenNebula's rules 3 and 4 of a fresh zone.
    assert {"@1 HOST/* MANAGE #0", "@1 NET+DATASTORE/* USE #0"} <= set(_acl_texts(capsys))
    from zones.cli import onegroup

    rc, out, _ = run_cli(onegroup, capsys, "create", "devs")
    gid = int(out.split()[1])
    rc, out, _ = run_cli(onevdc, capsys, "create", "lab")
    assert rc == 0
    assert run_cli(onevdc, capsys, "addgroup", "lab", "devs")[0] == 0
    assert run_cli(onevdc, capsys, "addcluster", "lab", "0", "default")[0] == 0
    assert f"@{gid} HOST/%0 MANAGE #0" in _acl_texts(capsys)
    rc, out, _ = run_cli(onevdc, capsys, "list")
    assert "lab" in out and "default" in out
    assert run_cli(onevdc, capsys, "delete", "lab")[0] == 0
    assert not any(f"@{gid}" in r for r in _acl_texts(capsys))
    rc, _, err = run_cli(onevdc, capsys, "addgroup", "default", "nosuchgroup")
    assert rc == 1 and "nosuchgroup" in err
