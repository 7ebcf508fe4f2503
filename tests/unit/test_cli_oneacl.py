"""oneacl: the letter masks of hand-built rules, and the commands end to end against an
in-process front-end."""

from __future__ import annotations

import json

import pytest

from raftcore import acl
from tests.conftest import run_cli
from zones.api.gen import acl_pb2
from zones.cli import oneacl, onegroup, oneuser

HEADER = "   ID     USER RES_VHNIUTGDCOZSvRMAPtB   RID OPE_UMAC  ZONE"


def _msg(rule_id: int, text: str) -> acl_pb2.AclRule:
    rule = acl.parse(text)
    return acl_pb2.AclRule(
        id=rule_id,
        text=acl.format(rule),
        user=rule.user,
        resource=rule.resource,
        rights=rule.rights,
        zone=rule.zone,
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- rendering ---------------------------------------------------------------------------


def test_list_header_and_masks_from_the_64_bit_values():
    # Encoded by hand from OpenNebula's constants (not through the parser): user #5,
    # IMAGE (0x80_0000_0000) + TEMPLATE (0x200_0000_0000) of group @103, USE+MANAGE, zone #0.
    rule = acl_pb2.AclRule(
        id=7,
        user=0x1_0000_0000 | 5,
        resource=0x80_0000_0000 | 0x200_0000_0000 | 0x2_0000_0000 | 103,
        rights=0x1 | 0x2,
        zone=0x1_0000_0000 | 0,
    )
    lines = oneacl.render_list([rule]).splitlines()
    assert lines[0] == HEADER
    assert lines[1].split() == ["7", "#5", "---I-T-------------", "@103", "um--", "#0"]


@pytest.mark.parametrize(
    ("text", "cells"),
    [
        (
            "@1 VM+IMAGE+TEMPLATE+DOCUMENT+SECGROUP+VMGROUP+BACKUPJOB/* CREATE *",
            ["@1", "V--I-T---O-S----P-B", "*", "---c", "*"],
        ),
        ("* ZONE/* USE *", ["*", "----------Z--------", "*", "u---", "*"]),
        ("* MARKETPLACE+MARKETPLACEAPP/* USE *", ["*", "--------------MA---", "*", "u---", "*"]),
        ("@100 HOST/%101 MANAGE #0", ["@100", "-H-----------------", "%101", "-m--", "#0"]),
        (
            "#3 VM+HOST+NET+IMAGE+USER+TEMPLATE+GROUP+DATASTORE+CLUSTER+DOCUMENT+ZONE+"
            "SECGROUP+VDC+VROUTER+MARKETPLACE+MARKETPLACEAPP+VMGROUP+VNTEMPLATE+BACKUPJOB/* "
            "USE+MANAGE+ADMIN+CREATE #0",
            ["#3", "VHNIUTGDCOZSvRMAPtB", "*", "umac", "#0"],
        ),
    ],
)
def test_masks(text, cells):
    line = oneacl.render_list([_msg(1, text)]).splitlines()[1]
    assert line.split() == ["1", *cells]
    assert oneacl.rule_dict(_msg(1, text))["masks"] == {"resource": cells[1], "rights": cells[3]}


def test_columns_are_right_aligned_fixed_width():
    line = oneacl.render_list([_msg(12, "#5 IMAGE/#3 USE #0")]).splitlines()[1]
    assert line == "   12       #5     ---I---------------    #3     u---    #0"


# --- end to end ----------------------------------------------------------------------------


def _rules(capsys) -> dict[int, dict]:
    rc, out, _ = run_cli(oneacl, capsys, "list", "--json")
    assert rc == 0
    return {r["id"]: r for r in json.loads(out)}


def test_bootstrap_rules_listed(cli_env, capsys):
    rc, out, _ = run_cli(oneacl, capsys, "list")
    lines = _lines(out)
    assert rc == 0 and lines[0] == HEADER
    assert lines[1].split() == ["0", "@1", "V--I-T---O-S----P-B", "*", "---c", "*"]
    assert lines[2].split() == ["1", "*", "----------Z--------", "*", "u---", "*"]
    assert lines[3].split() == ["2", "*", "--------------MA---", "*", "u---", "*"]


def test_create_list_back_and_delete(cli_env, capsys):
    run_cli(onegroup, capsys, "create", "devs")
    run_cli(oneuser, capsys, "create", "alice", "pw", "--group", "devs")
    gid = json.loads(run_cli(onegroup, capsys, "show", "devs", "-j")[1])["id"]
    uid = json.loads(run_cli(oneuser, capsys, "show", "alice", "-j")[1])["id"]

    rule = f"#{uid} IMAGE+TEMPLATE/@{gid} USE+MANAGE #0"
    rc, out, err = run_cli(oneacl, capsys, "create", rule)
    assert rc == 0, err
    rid = int(out.split()[1])
    listed = _rules(capsys)[rid]
    assert listed["text"] == rule  # the same string comes back
    assert listed["masks"] == {"resource": "---I-T-------------", "rights": "um--"}
    row = [
        line for line in _lines(run_cli(oneacl, capsys, "list")[1]) if line.split()[0] == str(rid)
    ]
    assert row[0].split() == [str(rid), f"#{uid}", "---I-T-------------", f"@{gid}", "um--", "#0"]

    # as separate components, without a zone (this zone, #0), lower-case names
    rc, out, err = run_cli(oneacl, capsys, "create", "@1", "vm+net/*", "use")
    assert rc == 0, err
    assert _rules(capsys)[int(out.split()[1])]["text"] == "@1 VM+NET/* USE #0"

    # names instead of ids, as OpenNebula's oneacl accepts
    rc, out, err = run_cli(oneacl, capsys, "create", "#alice USER/@devs ADMIN", "-j")
    assert rc == 0, err
    created = json.loads(out)
    assert created["rule"] == f"#{uid} USER/@{gid} ADMIN"
    assert _rules(capsys)[created["id"]]["text"] == f"#{uid} USER/@{gid} ADMIN #0"

    rc, out, _ = run_cli(oneacl, capsys, "delete", str(rid), "-v")
    assert rc == 0 and out == f"ACL {rid}: deleted\n"
    assert rid not in _rules(capsys)
    rc, _, err = run_cli(oneacl, capsys, "delete", str(rid))
    assert rc == 1 and err.startswith("oneacl: error: [")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["#5 BOGUS/* USE"], "unknown resource type 'BOGUS'"),
        (["#5 VM/* FLY"], "unknown right 'FLY'"),
        (["5 VM/* USE"], "user selector '5' must start with"),
        (["#5 VM USE"], "must be TYPE[+TYPE...]/SELECTOR"),
        (["@1 HOST/@100 USE"], "@gid cannot apply to HOST"),
    ],
)
def test_malformed_rule_is_a_clear_error(cli_env, capsys, argv, message):
    before = _rules(capsys)
    rc, out, err = run_cli(oneacl, capsys, "create", *argv)
    assert rc != 0 and out == ""
    assert err.startswith("oneacl: error: [INVALID_ARGUMENT] malformed ACL rule")
    assert message in err
    assert _rules(capsys) == before  # nothing was added


def test_client_side_errors(cli_env, capsys):
    rc, _, err = run_cli(oneacl, capsys, "create", "#5", "VM/*")
    assert rc == 1 and "3 or 4 components" in err
    rc, _, err = run_cli(oneacl, capsys, "create", "#5 VM/* USE #0 extra")
    assert rc == 1 and "got 5" in err
    rc, _, err = run_cli(oneacl, capsys, "create", "#nobody VM/* USE")
    assert rc == 1 and "user 'nobody' not found" in err
    rc, _, err = run_cli(oneacl, capsys, "create", "#1 VM/#myvm USE")
    assert rc == 1 and "give the id" in err
    rc, _, err = run_cli(oneacl, capsys, "delete", "x1")
    assert rc == 1 and "must be a number" in err
    with pytest.raises(SystemExit) as e:
        oneacl.main(["create"])
    assert e.value.code == 2


def test_only_oneadmin_manages_rules(cli_env, capsys):
    run_cli(oneuser, capsys, "create", "bob", "pw-bob")
    creds = ["--user", "bob", "--password", "pw-bob"]
    rc, _, err = run_cli(oneacl, capsys, "list", *creds)
    assert rc == 1 and "[PERMISSION_DENIED]" in err
    rc, _, err = run_cli(oneacl, capsys, "create", "* VM/* USE", *creds)
    assert rc == 1 and "[PERMISSION_DENIED]" in err
