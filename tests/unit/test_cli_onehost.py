"""onehost and onecluster: rendering of hand-built records, and the commands end to end
against an in-process front-end."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli
from zones.cli import onecluster, onehost
from zones.cli.common import CliError, render

GIB_KB = 1 << 20


def _host(hid=0, name="node1", state=2, vms=(), cids=(0,), **cap) -> dict:
    capacity = {
        "total_cpu": 800,
        "total_mem": 16 * GIB_KB,
        "used_cpu": 120,
        "used_mem": 2 * GIB_KB,
        "free_cpu": 680,
        "free_mem": 14 * GIB_KB,
        "max_cpu": 800,
        "max_mem": 16 * GIB_KB,
        "cpu_usage": 200,
        "mem_usage": 4 * GIB_KB,
        "reserved_cpu": 0,
        "reserved_mem": 0,
    }
    capacity.update(cap)
    return {
        "id": hid,
        "name": name,
        "state": state,
        "im_mad": "kvm",
        "vm_mad": "kvm",
        "cids": list(cids),
        "vms": list(vms),
        "capacity": capacity,
        "last_mon": 0,
        "error": "",
    }


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- rendering -------------------------------------------------------------------------------


def test_host_list_columns_and_cells():
    zero = {f: 0 for f in ("total_cpu", "total_mem", "max_cpu", "max_mem", "cpu_usage")}
    hosts = [
        _host(vms=[3, 4]),
        _host(1, "node2", state=0, cids=[100], **zero, mem_usage=0),
        _host(2, "node3", state=8),
    ]
    lines = _lines(render([onehost.list_table(hosts, {0: "default", 100: "prod"})]))
    assert lines[0].split() == list(onehost.DEFAULT_COLUMNS)
    assert lines[1].split() == "0 node1 default 2 200 / 800 (25%) 4G / 16G (25%) on".split()
    assert lines[2].split() == "1 node2 prod 0 - - init".split()
    assert lines[3].split()[-1] == "off"


@pytest.mark.parametrize(
    "state, short", [(0, "init"), (2, "on"), (3, "err"), (4, "dsbl"), (8, "off"), (5, "retry")]
)
def test_short_states(state, short):
    assert onehost.list_rows([_host(state=state)], {}, ("STAT",)) == [[short]]


def test_extra_columns_and_unknown_ones():
    cols = onehost.list_columns("id,tcpu,fcpu,acpu,amem,real_cpu,real_mem")
    row = onehost.list_rows([_host()], {}, cols)[0]
    assert row == [0, 800, 680, 600, "12G", "120 / 800 (15%)", "2G / 16G (12%)"]
    with pytest.raises(CliError, match="unknown column"):
        onehost.list_columns("ID,NOPE")


def test_host_show_sections():
    record = {**_host(vms=[7]), "error": "ssh: timeout", "last_mon": 1_700_000_000_000}
    lines = _lines(
        render(
            onehost.show_renderables(
                record,
                'IM_MAD = "kvm"\nVM_MAD = "kvm"\n',
                {0: "default"},
                [{"id": 7, "name": "web"}],
            )
        )
    )
    sections = [
        "HOST 0 INFORMATION",
        "HOST SHARES",
        "MEMORY",
        "CPU",
        "MONITORING INFORMATION",
        "HOST TEMPLATE",
        "VIRTUAL MACHINES",
    ]
    assert [line for line in lines if line in sections] == sections
    assert "CLUSTER               : default" in lines
    assert "STATE                 : MONITORED" in lines
    assert "  TOTAL +/- RESERVED  : 16G" in lines
    assert "  USED (ALLOCATED)    : 200" in lines
    assert "ERROR                 : ssh: timeout" in lines
    assert 'VM_MAD = "kvm"' in lines
    assert lines[-1].split() == ["7", "web"]


def test_cluster_rendering():
    records = [
        {"id": 0, "name": "default", "hosts": [0, 1], "vnets": [], "datastores": [0, 1, 2]},
        {"id": 100, "name": "prod", "hosts": [], "vnets": [5], "datastores": []},
    ]
    lines = _lines(render([onecluster.list_table(records)]))
    assert lines[0].split() == ["ID", "NAME", "HOSTS", "VNETS", "DATASTORES"]
    assert lines[1].split() == ["0", "default", "2", "0", "3"]
    assert lines[2].split() == ["100", "prod", "0", "1", "0"]
    lines = _lines(
        onecluster.render_show(records[0], 'RESERVED_CPU = "100"\n', [_host(), _host(1, "b")])
    )
    sections = [
        "CLUSTER 0 INFORMATION",
        "CLUSTER RESOURCES",
        "CLUSTER TEMPLATE",
        "HOSTS",
        "VNETS",
        "DATASTORES",
    ]
    assert [line.strip() for line in lines if line.strip() in sections] == sections
    assert "TOTAL CPUs: 16" in lines and "OCCUPIED CPUs: 4" in lines
    assert "AVAILABLE RAM: 24" in lines
    hosts_at = [line.strip() for line in lines].index("HOSTS")
    assert [line.strip() for line in lines[hosts_at + 1 : hosts_at + 3]] == ["0", "1"]


# --- end to end ------------------------------------------------------------------------------


def test_hosts_and_clusters_end_to_end(cli_env, capsys, tmp_path):
    zone = cli_env

    def default_cluster() -> bool:
        rc, out, _ = run_cli(onecluster, capsys, "list", "--json")
        return rc == 0 and [c["name"] for c in json.loads(out)] == ["default"]

    assert default_cluster(), "cluster 0"
    rc, out, err = run_cli(onecluster, capsys, "create", "prod")
    assert rc == 0, err
    cid = int(out.split()[1])
    rc, out, err = run_cli(onehost, capsys, "create", "node1", "--im-mad", "kvm", "--vm-mad", "kvm")
    assert rc == 0 and out == "ID: 0\n", err
    rc, out, err = run_cli(
        onehost, capsys, "create", "node2", "--im", "lxc", "--vm", "lxc", "--cluster", "prod"
    )
    assert rc == 0, err
    capacity = {"total_cpu": 400, "total_mem": 8 * GIB_KB}
    _, result = zone.propose(
        "host.monitor", {"id": 0, "state": "MONITORED", "capacity": capacity}, uid=-1
    )
    assert result["ok"], result

    lines = _lines(run_cli(onehost, capsys, "list")[1])
    assert lines[0].split() == list(onehost.DEFAULT_COLUMNS)
    assert lines[1].split() == "0 node1 default 0 0 / 400 (0%) 0K / 8G (0%) on".split()
    assert lines[2].split() == "1 node2 prod 0 - - init".split()

    assert run_cli(onehost, capsys, "disable", "node1")[0] == 0
    data = json.loads(run_cli(onehost, capsys, "show", "node1", "-j")[1])
    assert data["state"] == 4 and data["capacity"]["total_cpu"] == 400
    rc, out, _ = run_cli(onehost, capsys, "enable", "node1", "-v")
    assert out == "HOST 0: enabled\n"
    rc, _, err = run_cli(onehost, capsys, "enable", "node1")
    assert rc == 1 and "[FAILED_PRECONDITION]" in err and "already enabled" in err
    assert run_cli(onehost, capsys, "offline", "1")[0] == 0

    out = run_cli(onehost, capsys, "show", "0")[1]
    assert "STATE                 : MONITORED" in out and "HOST TEMPLATE" in out

    # membership: addhost moves, delhost goes back to default
    assert run_cli(onecluster, capsys, "addhost", "prod", "node1")[0] == 0
    rows = {c["name"]: c for c in json.loads(run_cli(onecluster, capsys, "list", "-j")[1])}
    assert rows["prod"]["hosts"] == [0, 1] and rows["default"]["hosts"] == []
    out = run_cli(onecluster, capsys, "show", "prod")[1]
    assert "TOTAL CPUs: 4" in out
    rc, _, err = run_cli(onecluster, capsys, "delete", "prod")
    assert rc == 1 and "not empty" in err
    assert run_cli(onecluster, capsys, "delhost", "prod", "node1")[0] == 0
    assert run_cli(onecluster, capsys, "delhost", "prod", "node2")[0] == 0
    rc, _, err = run_cli(onecluster, capsys, "delhost", "default", "node2")
    assert rc == 1 and "always in one cluster" in err

    tmpl = tmp_path / "h.tmpl"
    tmpl.write_text('RESERVED_CPU = "100"\n')
    assert run_cli(onehost, capsys, "update", "node1", str(tmpl), "--append")[0] == 0
    assert run_cli(onehost, capsys, "rename", "node1", "n1")[0] == 0
    assert run_cli(onehost, capsys, "delete", "n1", "node2")[0] == 0
    assert json.loads(run_cli(onehost, capsys, "list", "-j")[1]) == []
    assert run_cli(onecluster, capsys, "delete", "prod", "-v")[1] == f"CLUSTER {cid}: deleted\n"
    rc, _, err = run_cli(onehost, capsys, "show", "nohost")
    assert rc == 1 and "no host named 'nohost'" in err
    with pytest.raises(SystemExit) as e:
        onehost.main(["create", "x", "--im-mad", "xen", "--vm-mad", "kvm"])
    assert e.value.code == 2
