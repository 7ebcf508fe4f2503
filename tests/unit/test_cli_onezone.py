"""onezone against an in-process front-end: tables, JSON/YAML, credentials, failover."""

import json

import pytest
import yaml

from zones.cli import onezone
from zones.cli.common import CliError, credentials, endpoints
from zones.config import free_port


@pytest.fixture
def cli(zone, monkeypatch, tmp_path):
    auth = tmp_path / "one_auth_cli"
    auth.write_text(f"oneadmin:{zone.password}\n")
    monkeypatch.setenv("ONE_AUTH", str(auth))
    monkeypatch.setenv("ONE_ENDPOINT", zone.endpoint)

    def run(*argv):
        return onezone.main(list(argv))

    return run


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_list_table(cli, capsys):
    assert cli("list") == 0
    out = _lines(capsys.readouterr().out)
    assert out[0].split() == ["C", "ID", "NAME", "ENDPOINT", "FED_INDEX", "STAT"]
    assert out[1].split()[:3] == ["*", "0", "OpenNebula"]
    assert out[1].split()[-1] == "ON"
    assert "\x1b[" not in "\n".join(out)  # no colours when not a tty


def test_show_sections_and_columns(cli, zone, capsys):
    assert cli("show") == 0
    out = capsys.readouterr().out
    lines = _lines(out)
    for section in ("ZONE 0 INFORMATION", "ZONE SERVERS", "HA & FEDERATION SYNC STATUS"):
        assert section in lines
    assert "ZONE TEMPLATE" in lines
    header = lines[lines.index("HA & FEDERATION SYNC STATUS") + 1].split()
    assert header == ["ID", "NAME", "STATE", "TERM", "INDEX", "COMMIT", "VOTE", "FED_INDEX"]
    row = lines[lines.index("HA & FEDERATION SYNC STATUS") + 2].split()
    assert row[:3] == ["0", "fe0", "leader"]
    assert row[-1] == "-1"
    assert f'ENDPOINT="{zone.endpoint}"' in out
    assert cli("show", "OpenNebula") == 0
    assert cli("show", "0") == 0


def test_show_json_and_yaml(cli, capsys):
    assert cli("show", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["name"] == "OpenNebula"
    assert data["status"][0]["state"] == "leader"
    assert isinstance(data["status"][0]["term"], int)
    assert cli("-y", "list") == 0
    [zone] = yaml.safe_load(capsys.readouterr().out)
    assert zone["name"] == "OpenNebula" and zone["current"] is True
    assert cli("-j", "list") == 0
    assert json.loads(capsys.readouterr().out)[0]["id"] == 0


def test_unknown_zone_is_an_error(cli, capsys):
    assert cli("show", "nope") == 1
    assert "zone 'nope' not found" in capsys.readouterr().err


def test_server_commands_report_errors_with_exit_code(cli, capsys):
    assert cli("server-del", "0", "42") == 1
    assert "[NOT_FOUND] server 42 does not exist" in capsys.readouterr().err
    assert cli("server-reset", "0", "x") == 1
    assert "server id must be a number" in capsys.readouterr().err
    assert cli("server-add", "0", "--name", "n", "--rpc", "bad", "--grpc", "h:1") == 1
    assert "INVALID_ARGUMENT" in capsys.readouterr().err


def test_server_add_requires_its_options(cli, capsys):
    with pytest.raises(SystemExit) as e:
        cli("server-add", "0", "--name", "n")
    assert e.value.code == 2


def test_bad_password_fails_cleanly(cli, capsys):
    assert cli("--user", "oneadmin", "--password", "wrong", "list") == 1
    err = capsys.readouterr().err
    assert "UNAUTHENTICATED" in err and "invalid username or password" in err


def test_failover_to_the_next_endpoint(cli, zone, capsys):
    dead = f"127.0.0.1:{free_port()}"
    assert cli("--endpoint", f"{dead},{zone.endpoint}", "list", "--timeout", "3") == 0
    assert "OpenNebula" in capsys.readouterr().out


def test_no_front_end_answers(cli, capsys):
    dead = f"127.0.0.1:{free_port()}"
    assert cli("--endpoint", dead, "--timeout", "1", "list") == 1
    err = capsys.readouterr().err
    assert "no front-end answered" in err and dead in err


def test_endpoint_parsing(monkeypatch):
    monkeypatch.delenv("ONE_ENDPOINT", raising=False)
    assert endpoints("a:1, b:2") == ["a:1", "b:2"]
    assert endpoints("http://h:2633/RPC2") == ["h:2633"]
    monkeypatch.setenv("ONE_ENDPOINT", "x:9")
    assert endpoints(None) == ["x:9"]
    with pytest.raises(CliError, match="host:port"):
        endpoints("justahost")


def test_credentials_sources(monkeypatch, tmp_path):
    assert credentials("u", "p") == ("u", "p")
    f = tmp_path / "auth"
    f.write_text("alice:pa:ss\n")
    monkeypatch.setenv("ONE_AUTH", str(f))
    assert credentials(None, None) == ("alice", "pa:ss")
    monkeypatch.setenv("ONE_AUTH", str(tmp_path / "missing"))
    with pytest.raises(CliError, match="no credentials"):
        credentials(None, None)
    f.write_text("garbage\n")
    monkeypatch.setenv("ONE_AUTH", str(f))
    with pytest.raises(CliError, match="user:password"):
        credentials(None, None)
