"""onevnet, onesecgroup and onevrouter: rendering of hand-built records (OpenNebula's columns
and sections), request building, and the commands end to end against an in-process zone."""

from __future__ import annotations

import argparse
import json

import pytest

from raftcore import leases
from raftcore import template as tmpl
from tests.conftest import run_cli
from zones.api.gen import pool_pb2
from zones.cli import onesecgroup, onevnet, onevrouter
from zones.cli.common import CliError, render


def _ar(**kw) -> dict:
    attrs = {k: str(v) for k, v in kw.items()}
    return leases.parse_ar(attrs, int(attrs.pop("AR_ID", "0")) if "AR_ID" in attrs else 0)


VNET = {
    "id": 3,
    "name": "pub",
    "uid": 0,
    "gid": 0,
    "perms": 0o604,
    "cids": [0, 100],
    "bridge": "onebr.7",
    "vn_mad": "802.1Q",
    "phydev": "eth0",
    "vlan_id": 7,
    "vlan_id_automatic": False,
    "outer_vlan_id": None,
    "used_leases": 3,
    "parent_network": -1,
    "vrouters": [2],
    "secgroups": [0],
    "ars": [
        leases.with_leases(
            leases.with_leases(
                leases.with_leases(_ar(TYPE="IP4", IP="10.0.0.1", SIZE=8), [0], {"vm": 5}),
                [1],
                {"vm": -1},
            ),
            [2],
            {"vnet": 9},
        )
    ],
}


def _obj(record: dict, template: str = 'VN_MAD = "802.1Q"\n') -> pool_pb2.PoolObject:
    return pool_pb2.PoolObject(
        kind="vnet",
        id=record["id"],
        name=record["name"],
        uid=0,
        uname="oneadmin",
        gid=0,
        gname="oneadmin",
        perms=record["perms"],
        template=template,
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- rendering -----------------------------------------------------------------------------


def test_vnet_list_columns():
    out = _lines(render([onevnet.list_table([VNET], ({0: "oneadmin"}, {0: "oneadmin"}))]))
    assert out[0].split() == ["ID", "USER", "GROUP", "NAME", "CLUSTERS", "BRIDGE", "LEASES"]
    assert out[1].split() == ["3", "oneadmin", "oneadmin", "pub", "0,100", "onebr.7", "3"]
    # Without names (a user who may not list users): the ids.
    assert onevnet.list_rows([VNET])[0][1:3] == ["0", "0"]


def test_vnet_show_sections():
    text = render(onevnet.show_renderables(_obj(VNET), VNET))
    for title in (
        "VIRTUAL NETWORK 3 INFORMATION",
        "PERMISSIONS",
        "VIRTUAL NETWORK TEMPLATE",
        "ADDRESS RANGE POOL",
        "LEASES",
        "VIRTUAL ROUTERS",
    ):
        assert title in text
    assert "VLAN ID                  : 7" in text and "USED LEASES              : 3" in text
    assert "OTHER                    : u--" in text
    lines = _lines(text)
    assert ["IP", "10.0.0.1", "10.0.0.8"] in [line.split() for line in lines]
    leases_at = lines.index("LEASES")
    assert lines[leases_at + 1].split() == ["AR", "OWNER", "MAC", "IP", "IP6"]
    assert [line.split()[1] for line in lines[leases_at + 2 : leases_at + 5]] == ["V:5", "H", "N:9"]


def test_address_kinds_and_ar_options():
    assert onevnet.address_arg("10.0.0.1") == {"ip": "10.0.0.1"}
    assert onevnet.address_arg("2001:db8::1") == {"ip6": "2001:db8::1"}
    assert onevnet.address_arg("02:00:0a:00:00:01") == {"mac": "02:00:0a:00:00:01"}
    with pytest.raises(CliError, match="not an IP, IPv6 or MAC"):
        onevnet.address_arg("nope")

    def opts(**kw):
        base = dict(
            size=4, type=None, ip=None, mac=None, ip6=None, prefix_length=None, gp=None, ula=None
        )
        return argparse.Namespace(**{**base, **kw})

    def vector(**kw) -> dict:
        return tmpl.parse(onevnet.ar_from_options(opts(**kw))).vectors("AR")[0]

    assert vector(ip="10.0.0.1") == {"TYPE": "IP4", "SIZE": "4", "IP": "10.0.0.1"}
    assert vector(ip="10.0.0.1", gp="2001:db8::")["TYPE"] == "IP4_6"
    assert vector(ip6="2001:db8::1", prefix_length=64)["TYPE"] == "IP6_STATIC"
    assert vector(ula="fd00::")["TYPE"] == "IP6"
    assert vector()["TYPE"] == "ETHER"
    with pytest.raises(CliError, match="--size"):
        onevnet.ar_from_options(opts(size=None))
    assert tmpl.parse(onevnet.ar_with_id("SIZE = 9", 2)).vectors("AR") == [
        {"SIZE": "9", "AR_ID": "2"}
    ]
    assert tmpl.parse(onevnet.ar_with_id("AR = [ SIZE = 9 ]", 2)).vectors("AR")[0]["AR_ID"] == "2"


def test_secgroup_and_vrouter_rendering():
    rules = [
        {"protocol": "TCP", "rule_type": "inbound", "range": "22,80:90"},
        {
            "protocol": "ICMP",
            "rule_type": "outbound",
            "icmp_type": 8,
            "ip": "10.0.0.0",
            "size": 256,
        },
        {"protocol": "ALL", "rule_type": "outbound", "network_id": 3},
    ]
    assert onesecgroup.rule_rows(rules) == [
        ["Inbound", "TCP", "Any", "Any", "", "22,80:90"],
        ["Outbound", "ICMP", "10.0.0.0 (256)", "Any", 8, "Any"],
        ["Outbound", "ALL", "Any", 3, "", "Any"],
    ]
    record = {
        "id": 100,
        "name": "web",
        "uid": 0,
        "gid": 0,
        "perms": 0o600,
        "rules": rules,
        "vnets": [3],
        "vms": [],
    }
    text = render(onesecgroup.show_renderables(_obj(record, ""), record))
    assert "SECURITY GROUP 100 INFORMATION" in text and "RULES" in text
    assert _lines(render([onesecgroup.list_rows([record])[0]]))  # rows render
    router = {
        "id": 2,
        "name": "gw",
        "uid": 0,
        "gid": 0,
        "perms": 0o600,
        "vms": [],
        "nics": [
            {
                "nic_id": 0,
                "network_id": 3,
                "floating_ip": True,
                "mac": "02:00:0a:00:00:02",
                "ip": "10.0.0.2",
                "ar_id": 0,
            },
            {"nic_id": 1, "network_id": 4, "floating_ip": False},
        ],
    }
    assert onevrouter.nic_rows(router) == [
        [0, 3, "YES", "02:00:0a:00:00:02", "10.0.0.2", "-"],
        [1, 4, "NO", "-", "-", "-"],
    ]
    assert "VIRTUAL ROUTER 2 INFORMATION" in render(
        onevrouter.show_renderables(_obj(router, ""), router)
    )


# --- end to end ----------------------------------------------------------------------------


def test_end_to_end(cli_env, capsys, tmp_path):
    def default_sg() -> bool:
        rc, out, _ = run_cli(onesecgroup, capsys, "list", "--json")
        return rc == 0 and any(r["id"] == 0 for r in json.loads(out))

    assert default_sg(), "security group 0"
    sg_file = tmp_path / "sg.txt"
    sg_file.write_text(
        'NAME = "web"\nRULE = [ PROTOCOL = TCP, RULE_TYPE = inbound, RANGE = "22" ]\n'
    )
    rc, out, err = run_cli(onesecgroup, capsys, "create", str(sg_file))
    assert rc == 0, err
    sid = int(out.split()[1])
    rc, out, _ = run_cli(onesecgroup, capsys, "show", "web")
    assert rc == 0 and "Inbound" in out and "22" in out

    net_file = tmp_path / "net.txt"
    net_file.write_text(f'NAME = "pub"\nVN_MAD = "bridge"\nSECURITY_GROUPS = "{sid}"\n')
    rc, out, err = run_cli(onevnet, capsys, "create", str(net_file), "--cluster", "default")
    assert rc == 0, err
    vid = int(out.split()[1])
    assert run_cli(onevnet, capsys, "addar", "pub", "--ip", "10.0.0.1", "--size", "8")[0] == 0
    assert run_cli(onevnet, capsys, "hold", "pub", "10.0.0.2")[0] == 0
    rc, out, err = run_cli(onevnet, capsys, "hold", "pub", "10.0.0.2")
    assert rc == 1 and "already on hold" in err
    rc, out, err = run_cli(onevnet, capsys, "reserve", "pub", "mine", "-s", "2")
    assert rc == 0, err
    rid = int(out.split()[-1])
    rc, out, _ = run_cli(onevnet, capsys, "list")
    rows = {line.split()[3]: line.split() for line in _lines(out)[1:]}
    assert rows["pub"][-1] == "3" and rows["mine"][-2] == f"onebr{vid}"
    rc, out, _ = run_cli(onevnet, capsys, "show", "pub")
    assert "N:" in out and " H " in f" {out} "
    rc, out, _ = run_cli(onevnet, capsys, "show", "pub", "--json")
    assert json.loads(out)["used_leases"] == 3 and json.loads(out)["uname"] == "oneadmin"
    update = tmp_path / "ar.txt"
    update.write_text('SIZE = "16"\n')
    assert run_cli(onevnet, capsys, "updatear", "pub", "0", str(update))[0] == 0
    nets = tmp_path / "upd.txt"
    nets.write_text('DNS = "9.9.9.9"\n')
    assert run_cli(onevnet, capsys, "update", "pub", str(nets), "--append")[0] == 0
    rc, _, err = run_cli(onesecgroup, capsys, "delete", "web")
    assert rc == 1 and "used by virtual networks" in err

    router = tmp_path / "vr.txt"
    router.write_text(f'NAME = "gw"\nNIC = [ NETWORK_ID = "{vid}", FLOATING_IP = "YES" ]\n')
    rc, out, err = run_cli(onevrouter, capsys, "create", str(router))
    assert rc == 0, err
    rc, out, _ = run_cli(onevrouter, capsys, "show", "gw")
    assert "10.0.0.1" in out and "NICS" in out
    assert run_cli(onevrouter, capsys, "delete", "gw")[0] == 0

    assert run_cli(onevnet, capsys, "delete", str(rid))[0] == 0
    assert run_cli(onevnet, capsys, "release", "pub", "10.0.0.2")[0] == 0
    assert run_cli(onevnet, capsys, "rmar", "pub", "0")[0] == 0
    assert run_cli(onevnet, capsys, "rename", "pub", "public")[0] == 0
    assert run_cli(onevnet, capsys, "delete", "public")[0] == 0
    assert run_cli(onesecgroup, capsys, "delete", "web")[0] == 0
    rc, out, _ = run_cli(onevrouter, capsys, "list", "--yaml")
    assert rc == 0 and out.strip() == "[]"
