"""onedatastore and oneimage: rendering of hand-built records (OpenNebula's columns and
sections), and the commands end to end against an in-process front-end."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_cli
from zones.cli import onedatastore, oneimage
from zones.cli.common import CliError, render


def _ds(oid=1, name="default", ds_type="IMAGE_DS", template="", **kw) -> dict:
    record = {
        "id": oid,
        "name": name,
        "uid": 0,
        "gid": 0,
        "perms": 0o640,
        "template": template,
        "regtime": 0,
        "type": ds_type,
        "ds_mad": "-" if ds_type == "SYSTEM_DS" else "fs",
        "tm_mad": "ssh",
        "cids": [0],
        "images": [],
        "state": 0,
        "capacity": {"total_mb": 0, "free_mb": 0, "used_mb": 0},
        "base_path": f"/var/lib/one/datastores/{oid}",
    }
    record.update(kw)
    return record


def _image(oid=4, name="ubuntu", **kw) -> dict:
    record = {
        "id": oid,
        "name": name,
        "uid": 5,
        "gid": 1,
        "perms": 0o600,
        "template": 'DEV_PREFIX = "sd"\n',
        "regtime": 0,
        "type": "OS",
        "state": 1,
        "persistent": False,
        "size_mb": 2252,
        "path": "/srv/ubuntu.qcow2",
        "source": "/var/lib/one/datastores/1/f00",
        "fs": "",
        "ds_id": 1,
        "running_vms": 0,
        "vms": [],
        "clones": [],
        "cloning_id": -1,
        "snapshots": [],
        "target_snapshot": -1,
        "job": None,
        "error": "",
    }
    record.update(kw)
    return record


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- onedatastore rendering ---------------------------------------------------------------


def test_datastore_list_columns_and_cells():
    records = [
        _ds(0, "system", "SYSTEM_DS", 'SHARED = "NO"\n', state=1),
        _ds(
            1,
            images=[3, 4],
            cids=[0, 100],
            capacity={"total_mb": 102400, "free_mb": 40960, "used_mb": 61440},
        ),
        _ds(2, "files", "FILE_DS", cids=[]),
    ]
    out = _lines(render([onedatastore.list_table(records)]))
    assert out[0].split() == [
        "ID",
        "NAME",
        "SIZE",
        "AVA",
        "CLUSTERS",
        "IMAGES",
        "TYPE",
        "DS",
        "TM",
        "STAT",
    ]
    assert out[1].split() == ["0", "system", "-", "-", "0", "0", "sys", "-", "ssh", "off"]
    assert out[2].split() == ["1", "default", "100G", "40%", "0,100", "2", "img", "fs", "ssh", "on"]
    assert out[3].split() == ["2", "files", "0M", "-", "-", "0", "fil", "fs", "ssh", "on"]
    assert onedatastore.list_columns("name,stat") == ("NAME", "STAT")
    with pytest.raises(CliError, match="unknown column"):
        onedatastore.list_columns("NAME,SPEED")


def test_datastore_show_sections():
    record = _ds(
        1,
        template='DS_MAD = "fs"\nTM_MAD = "ssh"\n',
        images=[3],
        capacity={"total_mb": 2048, "free_mb": 1024, "used_mb": 1024},
    )
    out = onedatastore.render_show(record, "oneadmin", "oneadmin")
    lines = _lines(out)
    assert lines[0] == "DATASTORE 1 INFORMATION"
    for expected in (
        "NAME           : default",
        "USER           : oneadmin",
        "CLUSTERS       : 0",
        "TYPE           : IMAGE",
        "BASE PATH      : /var/lib/one/datastores/1",
        "STATE          : READY",
        "TOTAL:         : 2G",
        "FREE:          : 1024M",
        "OWNER          : um-",
        "GROUP          : u--",
        'TM_MAD = "ssh"',
    ):
        assert expected in lines, expected
    titles = ["DATASTORE CAPACITY", "PERMISSIONS", "DATASTORE TEMPLATE", "IMAGES"]
    assert [line for line in lines if line in titles] == titles
    assert lines[-1] == "3"


# --- oneimage rendering -------------------------------------------------------------------


NAMES = {"user": {5: "alice"}, "group": {1: "users"}, "datastore": {1: "default"}}


def test_image_list_columns_and_cells():
    records = [
        _image(),
        _image(5, "data", type="DATABLOCK", persistent=True, state=8, running_vms=1, vms=[7]),
        _image(6, "vmlinuz", type="KERNEL", state=4, size_mb=0, ds_id=2),
    ]
    out = _lines(render([oneimage.list_table(records, NAMES)]))
    assert out[0].split() == list(oneimage.DEFAULT_COLUMNS)
    assert out[0].split() == [
        "ID",
        "USER",
        "GROUP",
        "NAME",
        "DATASTORE",
        "SIZE",
        "TYPE",
        "PER",
        "STAT",
        "RVMS",
    ]
    assert out[1].split() == [
        "4",
        "alice",
        "users",
        "ubuntu",
        "default",
        "2.2G",
        "OS",
        "No",
        "rdy",
        "0",
    ]
    assert out[2].split() == [
        "5",
        "alice",
        "users",
        "data",
        "default",
        "2.2G",
        "DB",
        "Yes",
        "used",
        "1",
    ]
    # A datastore the caller cannot see is shown by id.
    assert out[3].split() == ["6", "alice", "users", "vmlinuz", "2", "0M", "KL", "No", "lock", "0"]


def test_image_show_with_snapshots():
    snaps = [
        {"id": 0, "name": "before", "date": 0, "parent": -1, "active": False, "size": 512},
        {"id": 1, "name": "after", "date": 0, "parent": 0, "active": True, "size": 1024},
    ]
    record = _image(snapshots=snaps, vms=[7], running_vms=1, state=2, error="cp failed once")
    lines = _lines(oneimage.render_show(record, NAMES))
    assert lines[0] == "IMAGE 4 INFORMATION"
    for expected in (
        "USER           : alice",
        "DATASTORE      : default",
        "TYPE           : OS",
        "PERSISTENT     : No",
        "SOURCE         : /var/lib/one/datastores/1/f00",
        "SIZE           : 2.2G",
        "STATE          : used",
        "RUNNING_VMS    : 1",
        "ERROR          : cp failed once",
        "OWNER          : um-",
        'DEV_PREFIX = "sd"',
    ):
        assert expected in lines, expected
    at = lines.index("IMAGE SNAPSHOTS")
    assert lines[at + 1].split() == ["AC", "ID", "PARENT", "DATE", "SIZE", "NAME"]
    assert lines[at + 2].split() == ["0", "-1", "-", "512M", "before"]
    assert lines[at + 3].split() == ["=>", "1", "0", "-", "1024M", "after"]
    assert lines[lines.index("VIRTUAL MACHINES") + 2].strip() == "7"


# --- end to end ---------------------------------------------------------------------------


def _json(module, capsys, *argv):
    rc, out, err = run_cli(module, capsys, *argv, "--json")
    assert rc == 0, err
    return json.loads(out)


def test_onedatastore_and_oneimage_end_to_end(cli_env, capsys, tmp_path):
    assert len(_json(onedatastore, capsys, "list")) == 3, "the default datastores"
    rc, out, _ = run_cli(onedatastore, capsys, "list")
    assert rc == 0
    lines = _lines(out)
    assert lines[0].split()[:3] == ["ID", "NAME", "SIZE"]
    assert [line.split()[1] for line in lines[1:]] == ["system", "default", "files"]

    ds_file = tmp_path / "ds.txt"
    ds_file.write_text('NAME = "fast"\nDS_MAD = "fs"\nTM_MAD = "qcow2"\n')
    assert _json(onedatastore, capsys, "create", str(ds_file), "--cluster", "default") == {
        "id": 100
    }
    shown = _json(onedatastore, capsys, "show", "fast")
    assert (shown["tm_mad"], shown["cids"], shown["uname"]) == ("qcow2", [0], "oneadmin")
    rc, out, _ = run_cli(onedatastore, capsys, "show", "fast")
    assert "DATASTORE 100 INFORMATION" in out and "TM_MAD         : qcow2" in out
    rc, _, err = run_cli(onedatastore, capsys, "disable", "fast")
    assert rc == 1 and "only SYSTEM_DS" in err
    assert run_cli(onedatastore, capsys, "disable", "system")[0] == 0
    assert _json(onedatastore, capsys, "show", "0")["state"] == 1

    img_file = tmp_path / "img.txt"
    img_file.write_text('NAME = "data"\nTYPE = DATABLOCK\nSIZE = 1536\n')
    iid = _json(oneimage, capsys, "create", str(img_file), "--datastore", "fast")["id"]
    rc, out, _ = run_cli(oneimage, capsys, "list")
    row = _lines(out)[1].split()
    assert row == [
        str(iid),
        "oneadmin",
        "oneadmin",
        "data",
        "fast",
        "1.5G",
        "DB",
        "No",
        "lock",
        "0",
    ]
    cli_env.propose("image.ready", {"id": iid, "source": "/ds/100/x"}, uid=-1)
    assert run_cli(oneimage, capsys, "persistent", "data")[0] == 0
    assert run_cli(oneimage, capsys, "chtype", "data", "os")[0] == 0
    shown = _json(oneimage, capsys, "show", str(iid))
    assert (shown["state"], shown["persistent"], shown["type"]) == (1, True, "OS")
    clone = _json(oneimage, capsys, "clone", "data", "data-copy")["id"]
    rc, out, _ = run_cli(oneimage, capsys, "show", "data-copy")
    assert f"IMAGE {clone} INFORMATION" in out and "STATE          : lock" in out
    rc, out, _ = run_cli(oneimage, capsys, "list", "--yaml")
    assert [i["name"] for i in yaml.safe_load(out)] == ["data", "data-copy"]

    # Refusals are reported with their error class and change nothing.
    rc, _, err = run_cli(oneimage, capsys, "delete", "data")
    assert rc == 1 and "FAILED_PRECONDITION" in err and "being cloned" in err
    rc, _, err = run_cli(oneimage, capsys, "create", str(img_file), "--datastore", "system")
    assert rc == 1 and "system datastore" in err
    rc, _, err = run_cli(onedatastore, capsys, "delete", "fast")
    assert rc == 1 and "not empty" in err

    assert run_cli(oneimage, capsys, "delete", "data-copy", "data")[0] == 0
    assert run_cli(onedatastore, capsys, "delete", "fast")[0] == 0
    assert [d["name"] for d in _json(onedatastore, capsys, "list")] == [
        "system",
        "default",
        "files",
    ]
