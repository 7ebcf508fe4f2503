"""oneuser: rendering of hand-built users (columns, quota cells, show sections) and the
commands end to end against an in-process front-end."""

from __future__ import annotations

import io
import json

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.conftest import run_cli, start_zone
from zones.api.gen import user_pb2
from zones.cli import onegroup, oneuser
from zones.cli import tenancy as t
from zones.cli.common import CliError, render

QUOTA = """VM = [ VMS = "10", VMS_USED = "2", MEMORY = "2048", MEMORY_USED = "512",
  CPU = "4", CPU_USED = "0.5", RUNNING_VMS = "-2", RUNNING_VMS_USED = "1",
  RUNNING_MEMORY = "-1", RUNNING_MEMORY_USED = "256", RUNNING_CPU = "-2",
  RUNNING_CPU_USED = "0.25", SYSTEM_DISK_SIZE = "-1", SYSTEM_DISK_SIZE_USED = "0" ]
DATASTORE = [ ID = "1", SIZE = "1536", SIZE_USED = "100", IMAGES = "-2", IMAGES_USED = "3" ]
NETWORK = [ ID = "0", LEASES = "4", LEASES_USED = "1" ]
IMAGE = [ ID = "7", RVMS = "-1", RVMS_USED = "2" ]
"""


def _user(uid=5, name="alice", gname="devs", quota="", template="", **kw) -> user_pb2.User:
    return user_pb2.User(
        id=uid,
        name=name,
        gid=kw.pop("gid", 100),
        gname=gname,
        groups=kw.pop("groups", [100]),
        enabled=kw.pop("enabled", True),
        auth_driver=kw.pop("auth_driver", "core"),
        quota=quota,
        template=template,
        **kw,
    )


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


# --- rendering ---------------------------------------------------------------------------


def test_list_header_is_opennebulas():
    out = _lines(render([oneuser.list_table([_user()])]))
    assert out[0].split() == ["ID", "NAME", "GROUP", "AUTH", "VMS", "MEMORY", "CPU"]
    assert out[1].split()[:4] == ["5", "alice", "devs", "core"]


def test_list_quota_cells_usage_over_limit():
    assert t.list_quota_cells(QUOTA, None, 5) == ("  2 /  10", "   512M /      2G", "0.5 / 4.0")
    row = oneuser.list_rows([_user(quota=QUOTA)])[0]
    assert row[-3:] == ["  2 /  10", "   512M /      2G", "0.5 / 4.0"]


def test_list_quota_cells_without_quota_are_dashes():
    assert oneuser.list_rows([_user(quota="")])[0][-3:] == ["-", "-", "-"]
    assert oneuser.list_rows([_user(uid=0, name="oneadmin", quota="")])[0][-3:] == ["-"] * 3


def test_list_quota_limits_default_and_unlimited():
    # -1 takes the default quota's limit; -2 (or a default that does not set it) is "-".
    quota = 'VM = [ VMS = "-1", VMS_USED = "1", MEMORY = "-2", MEMORY_USED = "0", CPU = "-1", CPU_USED = "1" ]'
    default = 'VM = [ VMS = "3", MEMORY = "-2", CPU = "-2" ]'
    assert t.list_quota_cells(quota, default, 5) == ("  1 /   3", "     0M /       -", "1.0 /   -")
    assert t.list_quota_cells(quota, None, 5) == ("  1 /   -", "     0M /       -", "1.0 /   -")


def test_list_without_own_quota_shows_the_default_one():
    default = 'VM = [ VMS = "3", MEMORY = "1024", CPU = "2.5" ]'
    assert t.list_quota_cells("", default, 5) == ("  0 /   3", "     0M /   1024M", "0.0 / 2.5")
    assert t.list_quota_cells("", default, 0) == ("-", "-", "-")  # oneadmin: never


def test_extra_columns_and_unknown_ones():
    assert oneuser.list_columns("id,enab") == ("ID", "ENAB")
    rows = oneuser.list_rows([_user(enabled=False)], columns=("ID", "ENAB"))
    assert rows == [[5, "no"]]
    with pytest.raises(CliError, match="unknown column"):
        oneuser.list_columns("id,bogus")


@pytest.mark.parametrize(
    ("mb", "text"),
    [
        (0, "0M"),
        (512, "512M"),
        (1024, "1024M"),
        (1536, "1.5G"),
        (2048, "2G"),
        (3 * 1024 * 1024, "3T"),
        (1100, "1.1G"),
    ],
)
def test_unit_to_str_as_opennebula(mb, text):
    assert t.unit_to_str(mb) == text


def test_show_sections_attributes_and_quota_tables():
    user = _user(
        quota=QUOTA, template='EMAIL = "a@b.c"\nSUNSTONE = [ VIEW = "[x]" ]', groups=[100, 1]
    )
    out = oneuser.render_show(user, default_quota='VM = [ RUNNING_MEMORY = "4096" ]')
    lines = _lines(out)
    sections = [
        "USER 5 INFORMATION",
        "USER TEMPLATE",
        "VMS USAGE & QUOTAS",
        "VMS USAGE & QUOTAS - RUNNING",
        "DATASTORE USAGE & QUOTAS",
        "NETWORK USAGE & QUOTAS",
        "IMAGE USAGE & QUOTAS",
    ]
    assert [line for line in lines if line in sections] == sections
    assert "ID              : 5" in lines
    assert "NAME            : alice" in lines
    assert "GROUP           : devs" in lines
    assert "SECONDARY GROUPS: 100,1" in lines
    assert "AUTH_DRIVER     : core" in lines
    assert "ENABLED         : Yes" in lines
    assert 'SUNSTONE = [ VIEW = "[x]" ]' in out  # brackets are not rich markup
    vms = lines.index("VMS USAGE & QUOTAS")
    assert lines[vms + 1].split() == ["VMS", "MEMORY", "CPU", "SYSTEM_DISK_SIZE"]
    assert lines[vms + 2].split() == "2 / 10 512M / 2G 0.50 / 4.00 0M / -".split()
    running = lines.index("VMS USAGE & QUOTAS - RUNNING")
    assert lines[running + 1].split() == ["RUNNING", "VMS", "RUNNING", "MEMORY", "RUNNING", "CPU"]
    assert lines[running + 2].split() == "1 / - 256M / 4G 0.25 / -".split()
    ds = lines.index("DATASTORE USAGE & QUOTAS")
    assert lines[ds + 1].split() == ["ID", "IMAGES", "SIZE"]
    assert lines[ds + 2].split() == "1 3 / - 100M / 1.5G".split()
    net = lines.index("NETWORK USAGE & QUOTAS")
    assert lines[net + 1].split() == ["ID", "LEASES"]
    assert lines[net + 2].split() == "0 1 / 4".split()
    img = lines.index("IMAGE USAGE & QUOTAS")
    assert lines[img + 1].split() == ["ID", "RUNNING", "VMS"]
    assert lines[img + 2].split() == "7 2 / -".split()


def test_show_without_quota():
    lines = _lines(oneuser.render_show(_user(quota="")))
    vms = lines.index("VMS USAGE & QUOTAS")  # as OpenNebula: zero usage, default limits
    assert lines[vms + 2].split() == "0 / - 0M / - 0.00 / - 0M / -".split()
    admin = _lines(oneuser.render_show(_user(uid=0, name="oneadmin", quota="")))
    vms = admin.index("VMS USAGE & QUOTAS")
    assert admin[vms + 1] == "VMS USAGE & QUOTAS - RUNNING"  # no table for oneadmin


def test_quota_dict_for_json():
    data = t.quota_dict(QUOTA)
    assert data["VM"]["VMS"] == 10 and data["VM"]["CPU_USED"] == 0.5
    assert data["DATASTORE"] == [
        {"ID": 1, "SIZE": 1536, "SIZE_USED": 100, "IMAGES": -2, "IMAGES_USED": 3}
    ]
    assert t.quota_dict("") == {"VM": None, "DATASTORE": [], "NETWORK": [], "IMAGE": []}


# --- end to end ----------------------------------------------------------------------------


def _setup(capsys) -> tuple[int, int, int]:
    rc, out, _ = run_cli(onegroup, capsys, "create", "devs")
    assert rc == 0 and out.startswith("ID: ")
    gid = int(out.split()[1])
    rc, out, err = run_cli(oneuser, capsys, "create", "alice", "pw-alice", "--group", "devs")
    assert rc == 0, err
    alice = int(out.split()[1])
    rc, out, err = run_cli(oneuser, capsys, "create", "bob", "pw-bob")
    assert rc == 0, err
    return gid, alice, int(out.split()[1])


def test_create_list_show_and_json(cli_env, capsys):
    gid, alice, bob = _setup(capsys)
    rc, out, _ = run_cli(oneuser, capsys, "list")
    lines = _lines(out)
    assert rc == 0
    assert lines[0].split() == ["ID", "NAME", "GROUP", "AUTH", "VMS", "MEMORY", "CPU"]
    rows = {line.split()[1]: line.split() for line in lines[1:]}
    assert rows["alice"][:4] == [str(alice), "alice", "devs", "core"]
    assert rows["bob"][2] == "users" and rows["oneadmin"][0] == "0"

    rc, out, _ = run_cli(oneuser, capsys, "list", "--json")
    data = json.loads(out)
    assert {u["name"]: u["gid"] for u in data} == {"oneadmin": 0, "alice": gid, "bob": 1}
    rc, out, _ = run_cli(oneuser, capsys, "-y", "show", "alice")
    assert yaml.safe_load(out)["gname"] == "devs"

    rc, out, _ = run_cli(oneuser, capsys, "show", "alice")
    assert rc == 0
    lines = _lines(out)
    assert lines[0] == f"USER {alice} INFORMATION"
    assert "GROUP           : devs" in lines and "IMAGE USAGE & QUOTAS" in lines
    rc, out, _ = run_cli(oneuser, capsys, "show", str(bob))
    assert _lines(out)[0] == f"USER {bob} INFORMATION"
    rc, out, _ = run_cli(oneuser, capsys, "show")  # yourself
    assert _lines(out)[0] == "USER 0 INFORMATION"


def test_login_as_a_user_sees_only_what_it_may(cli_env, capsys, monkeypatch):
    _, alice, _ = _setup(capsys)
    rc, out, err = run_cli(
        oneuser, capsys, "login", "alice", "--password", "pw-alice", "--ttl", "600"
    )
    assert rc == 0, err
    token = out.strip()
    assert token and "\n" not in token

    rc, out, _ = run_cli(oneuser, capsys, "list", "--token", token)
    assert rc == 0
    assert [line.split()[1] for line in _lines(out)[1:]] == ["alice"]
    monkeypatch.setenv("ONE_TOKEN", token)
    rc, out, _ = run_cli(oneuser, capsys, "list", "-j")
    assert [u["name"] for u in json.loads(out)] == ["alice"]
    rc, out, _ = run_cli(onegroup, capsys, "list")
    assert [line.split()[1] for line in _lines(out)[1:]] == ["devs"]
    rc, out, _ = run_cli(oneuser, capsys, "show")
    assert _lines(out)[0] == f"USER {alice} INFORMATION"

    # alice may not create users nor see oneadmin
    rc, _, err = run_cli(oneuser, capsys, "create", "mallory", "pw")
    assert rc == 1 and "[PERMISSION_DENIED]" in err and err.startswith("oneuser: error:")
    rc, _, err = run_cli(oneuser, capsys, "show", "oneadmin")
    assert rc == 1 and "not found" in err

    # the token is revoked by token-delete
    rc, _, err = run_cli(oneuser, capsys, "token-delete", "-v")
    assert rc == 0, err
    rc, _, err = run_cli(oneuser, capsys, "list")
    assert rc == 1 and "UNAUTHENTICATED" in err


def test_login_json_and_bad_password(cli_env, capsys):
    _setup(capsys)
    rc, out, _ = run_cli(oneuser, capsys, "login", "bob", "--password", "pw-bob", "-j")
    data = json.loads(out)
    assert rc == 0 and data["user"] == "bob" and data["token"] and data["expires_unix_ms"] > 0
    rc, _, err = run_cli(oneuser, capsys, "login", "bob", "--password", "wrong")
    assert rc == 1 and "UNAUTHENTICATED" in err
    rc, _, err = run_cli(oneuser, capsys, "login", "bob", "--ttl", "0", "--password", "pw-bob")
    assert rc == 1 and "--ttl" in err
    # no --password: the one of $ONE_AUTH when it is that user's
    rc, out, err = run_cli(oneuser, capsys, "login", "oneadmin", "-j")
    assert rc == 0 and json.loads(out)["user_id"] == 0, err
    rc, _, err = run_cli(oneuser, capsys, "login", "bob")  # not ONE_AUTH's user, no terminal
    assert rc == 1 and "no password for 'bob' given" in err


def test_update_without_file_opens_the_editor(cli_env, capsys, monkeypatch):
    _setup(capsys)

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.setattr("sys.stdin", Tty())
    monkeypatch.delenv("VISUAL", raising=False)
    monkeypatch.setenv("EDITOR", 'sh -c \'echo "ROLE = editor" >> "$0"\'')
    assert run_cli(oneuser, capsys, "update", "alice", "-v")[0] == 0
    assert "ROLE" in json.loads(run_cli(oneuser, capsys, "show", "alice", "-j")[1])["template"]
    monkeypatch.setenv("EDITOR", "false")
    rc, _, err = run_cli(oneuser, capsys, "update", "alice")
    assert rc == 1 and "nothing changed" in err


def test_modify_users(cli_env, capsys, monkeypatch, tmp_path):
    gid, alice, bob = _setup(capsys)
    assert (
        run_cli(oneuser, capsys, "chgrp", "bob", "devs", "-v")[1] == f"USER {bob}: Group changed\n"
    )
    assert run_cli(oneuser, capsys, "addgroup", "bob", "users")[0] == 0
    info = json.loads(run_cli(oneuser, capsys, "show", "bob", "-j")[1])
    assert info["gid"] == gid and sorted(info["groups"]) == sorted([gid, 1])
    assert run_cli(oneuser, capsys, "delgroup", "bob", "1")[0] == 0
    assert json.loads(run_cli(oneuser, capsys, "show", "bob", "-j")[1])["groups"] == [gid]

    monkeypatch.setattr("sys.stdin", io.StringIO('EMAIL = "bob@example.org"\n'))
    assert run_cli(oneuser, capsys, "update", "bob", "-")[0] == 0
    tmpl = tmp_path / "more.tmpl"
    tmpl.write_text('PHONE = "123"\n')
    assert run_cli(oneuser, capsys, "update", "bob", str(tmpl), "--append")[0] == 0
    out = run_cli(oneuser, capsys, "show", "bob")[1]
    assert "bob@example.org" in out and "123" in out

    quota = tmp_path / "quota"
    quota.write_text("VM = [ VMS = 4, MEMORY = 2048, CPU = 2 ]\n")
    rc, _, err = run_cli(oneuser, capsys, "quota", "bob", str(quota))
    assert rc == 0, err
    row = [line for line in _lines(run_cli(oneuser, capsys, "list")[1]) if " bob " in line][0]
    assert row.split()[-9:] == "0 / 4 0M / 2G 0.0 / 2.0".split()
    lines = _lines(run_cli(oneuser, capsys, "show", "bob")[1])
    vms = lines.index("VMS USAGE & QUOTAS")
    assert lines[vms + 2].split()[:6] == "0 / 4 0M / 2G".split()

    quota.write_text("VM = [ VMS = 7 ]\n")
    assert run_cli(oneuser, capsys, "defaultquota", str(quota))[0] == 0
    row = [line for line in _lines(run_cli(oneuser, capsys, "list")[1]) if " alice " in line][0]
    assert row.split()[-9:-6] == ["0", "/", "7"]

    assert run_cli(oneuser, capsys, "passwd", "bob", "pw-bob-2")[0] == 0
    assert run_cli(oneuser, capsys, "login", "bob", "--password", "pw-bob-2")[0] == 0
    assert run_cli(oneuser, capsys, "disable", "bob", "-v")[1] == f"USER {bob}: disabled\n"
    rc, _, err = run_cli(oneuser, capsys, "login", "bob", "--password", "pw-bob-2")
    assert rc == 1 and "disabled" in err
    assert run_cli(oneuser, capsys, "enable", "bob")[0] == 0
    assert run_cli(oneuser, capsys, "login", "bob", "--password", "pw-bob-2")[0] == 0

    assert run_cli(oneuser, capsys, "chauth", "bob", "core")[0] == 0
    assert run_cli(oneuser, capsys, "delete", "bob", "alice")[0] == 0
    names = [u["name"] for u in json.loads(run_cli(oneuser, capsys, "list", "-j")[1])]
    assert names == ["oneadmin"]


def test_errors_and_usage(cli_env, capsys):
    rc, _, err = run_cli(oneuser, capsys, "show", "nobody")
    assert rc == 1 and err == "oneuser: error: user 'nobody' not found (or not visible to you)\n"
    rc, _, err = run_cli(oneuser, capsys, "delete", "4242")
    assert rc == 1 and "[NOT_FOUND]" in err
    rc, _, err = run_cli(oneuser, capsys, "create", "x", "pw", "--group", "nogroup")
    assert rc == 1 and "group 'nogroup' not found" in err
    rc, _, err = run_cli(oneuser, capsys, "update", "oneadmin", "/nonexistent/file")
    assert rc == 1 and "no such file" in err
    rc, _, err = run_cli(oneuser, capsys, "create", "nopw")  # no password, no terminal
    assert rc == 1 and "no password given" in err
    with pytest.raises(SystemExit) as e:
        oneuser.main(["create"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        oneuser.main(["create", "x", "pw", "--driver", "kerberos"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        oneuser.main(["frobnicate"])
    assert e.value.code == 2
    assert "usage: oneuser" in capsys.readouterr().err


# --- ssh keys ----------------------------------------------------------------------------


def _keypair(tmp_path):
    key = ed25519.Ed25519PrivateKey.generate()
    private = tmp_path / "id_ed25519"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "id_ed25519.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        + b" carol@test\n"
    )
    return private, public


def test_ssh_login_secret_verifies_with_the_ssh_driver(tmp_path):
    from zones.authdrivers import Credentials
    from zones.authdrivers.ssh import SSHDriver

    private, public = _keypair(tmp_path)
    secret = oneuser._ssh_login_secret(str(private), "carol")
    record = {"name": "carol", "auth_driver": "ssh", "password": public.read_text().strip()}
    identity = SSHDriver().authenticate(Credentials("carol", secret), record)
    assert identity.username == "carol" and identity.driver == "ssh"


@pytest.fixture
def ssh_zone(tmp_path, monkeypatch):
    z = start_zone(tmp_path, auth={"drivers": ["core", "ssh"]})
    auth = tmp_path / "one_auth_cli"
    auth.write_text(f"oneadmin:{z.password}\n")
    monkeypatch.setenv("ONE_AUTH", str(auth))
    monkeypatch.setenv("ONE_ENDPOINT", z.endpoint)
    monkeypatch.delenv("ONE_TOKEN", raising=False)
    try:
        yield z
    finally:
        z.frontend.stop(grace=0)
        z.replica.close()
        z.store.close()


def test_create_with_ssh_key_and_log_in_with_it(ssh_zone, capsys, tmp_path):
    private, public = _keypair(tmp_path)
    rc, out, err = run_cli(oneuser, capsys, "create", "carol", "--ssh-key", str(public))
    assert rc == 0, err
    info = json.loads(run_cli(oneuser, capsys, "show", "carol", "-j")[1])
    assert info["auth_driver"] == "ssh"
    rc, out, err = run_cli(oneuser, capsys, "login", "carol", "--ssh-key", str(private))
    assert rc == 0, err
    rc, out, _ = run_cli(oneuser, capsys, "list", "--token", out.strip())
    assert [line.split()[1] for line in _lines(out)[1:]] == ["carol"]
    rc, _, err = run_cli(oneuser, capsys, "create", "dave", "pw", "--ssh-key", str(public))
    assert rc == 1 and "either a password or --ssh-key" in err
