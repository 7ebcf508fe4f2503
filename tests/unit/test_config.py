"""zones.config: a valid file loads; every invalid one is refused naming the key."""

import copy
import os

import pytest

from tests.conftest import config_dict, write_secret
from zones.config import ConfigError, from_dict, load, read_auth_file


def _set(data: dict, path: str, value) -> None:
    """Set data[a][b]... for path "a.b" ("servers.0.raft" indexes lists); DELETE removes."""
    keys = path.split(".")
    target = data
    for k in keys[:-1]:
        target = target[int(k)] if isinstance(target, list) else target.setdefault(k, {})
    last = keys[-1]
    if value is DELETE:
        del target[last]
    elif isinstance(target, list):
        target[int(last)] = value
    else:
        target[last] = value


DELETE = object()


def test_valid_config_loads_with_defaults(tmp_path):
    data = config_dict(tmp_path, n=3, server_id=1)
    cfg = from_dict(data, base=tmp_path)
    assert cfg.server_id == 1
    assert cfg.raft_address == data["servers"][1]["raft"]
    assert cfg.peers == [s["raft"] for s in data["servers"]]
    assert cfg.raft.heartbeat == 0.05
    assert cfg.raft.replica == "raft"
    assert cfg.metrics_address is None and cfg.tls is None
    assert cfg.read_secret().startswith("s3cr3t-")


def test_toml_file_and_relative_paths(tmp_path):
    write_secret(tmp_path / "secret")
    (tmp_path / "oned.toml").write_text(
        """
server_id = 0
name = "fe0"
data_dir = "data"
raft_address = "127.0.0.1:2633"
grpc_address = "127.0.0.1:2634"
metrics_address = "127.0.0.1:9633"
secret_file = "secret"
auth_file = "one_auth"
log_level = "DEBUG"

[[servers]]
id = 0
name = "fe0"
raft = "127.0.0.1:2633"
grpc = "127.0.0.1:2634"

[raft]
election_timeout_min = 1
election_timeout_max = 2.5
"""
    )
    cfg = load(tmp_path / "oned.toml")
    assert cfg.data_dir == str(tmp_path / "data")
    assert cfg.secret_file == str(tmp_path / "secret")
    assert cfg.log_level == "debug"
    assert cfg.raft.election_timeout_max == 2.5
    assert cfg.raft.min_free_bytes == 64 * 1024 * 1024


BAD = [
    ("server_id", DELETE, "server_id: required key is missing"),
    ("server_id", "0", "server_id: must be an integer"),
    ("server_id", True, "server_id: must be an integer"),
    ("server_id", 7, "server_id: 7 is not one of the [[servers]] ids"),
    ("name", "", "name: must not be empty"),
    ("raft_address", "localhost", "raft_address: 'localhost' must be 'host:port'"),
    ("raft_address", "127.0.0.1:0", "raft_address: '127.0.0.1:0': the port must be 1..65535"),
    ("raft_address", "127.0.0.1:99999", "raft_address"),
    ("grpc_address", "::1:80", "grpc_address: '::1:80': an IPv6 host must be in brackets"),
    ("grpc_address", "127.0.0.1:abc", "grpc_address: '127.0.0.1:abc': the port must be a number"),
    ("metrics_address", "nope", "metrics_address"),
    ("log_level", "loud", "log_level: must be one of"),
    ("secret_file", DELETE, "secret_file: required key is missing"),
    ("auth_file", 5, "auth_file: must be a string"),
    ("colour", "blue", "top level: unknown key(s): colour"),
    ("servers", [], "servers: at least one [[servers]] table is required"),
    ("servers", "fe0", "servers: must be an array of [[servers]] tables"),
    ("servers.0.raft", "127.0.0.1", "servers[0].raft"),
    ("servers.0.id", -1, "servers[0].id: must be >= 0"),
    ("servers.0.extra", 1, "servers[0].: unknown key(s): extra"),
    ("raft.heartbeat", -1, "[raft] heartbeat: must be a positive number"),
    ("raft.heartbeat", 0.1, "[raft] heartbeat: must be less than a third of election_timeout_min"),
    ("raft.election_timeout_max", 0.1, "[raft] election_timeout_max: must be greater than"),
    ("raft.snapshot_min_entries", 0, "[raft] snapshot_min_entries: must be >= 1"),
    ("raft.min_free_bytes", -1, "[raft] min_free_bytes: must be >= 0"),
    ("raft.batch_linger", -0.001, "[raft] batch_linger: must be at least 0 and less than"),
    ("raft.batch_linger", 0.05, "[raft] batch_linger: must be at least 0 and less than"),
    ("raft.batch_linger", "5ms", "[raft] batch_linger: must be a number"),
    ("raft.fault_injection", "yes", "[raft] fault_injection: must be true or false"),
    ("raft.replica", "paxos", "[raft] replica: must be one of raft, local"),
    ("raft.typo", 1, "[raft] : unknown key(s): typo"),
    ("raft", 3, "raft: must be a table [raft]"),
    ("tls", {"cert": "missing.crt", "key": "k"}, "[tls] cert: "),
    ("tls", {"key": "k"}, "[tls] cert: required key is missing"),
]


@pytest.mark.parametrize("path,value,message", BAD, ids=[f"{p}={v!r}"[:40] for p, v, _ in BAD])
def test_invalid_config_names_the_key(tmp_path, path, value, message):
    data = copy.deepcopy(config_dict(tmp_path, n=1))
    _set(data, path, value)
    with pytest.raises(ConfigError) as err:
        from_dict(data, where="oned.toml", base=tmp_path)
    assert message in str(err.value)
    assert str(err.value).startswith("oned.toml: ")


def test_own_addresses_must_match_the_servers_table(tmp_path):
    data = config_dict(tmp_path, n=2, server_id=0)
    data["servers"][0]["grpc"] = "127.0.0.1:1"
    with pytest.raises(ConfigError, match="grpc_address: .* differs from \\[\\[servers\\]\\] id 0"):
        from_dict(data, base=tmp_path)


def test_duplicate_servers_are_refused(tmp_path):
    data = config_dict(tmp_path, n=2)
    data["servers"][1]["raft"] = data["servers"][0]["raft"]
    with pytest.raises(ConfigError, match=r"servers\[1\].raft: .* already used by servers\[0\]"):
        from_dict(data, base=tmp_path)
    data = config_dict(tmp_path, n=2)
    data["servers"][1]["id"] = 0
    with pytest.raises(ConfigError, match=r"servers\[1\].id"):
        from_dict(data, base=tmp_path)


def test_local_replica_is_single_server_only(tmp_path):
    data = config_dict(tmp_path, n=3, raft={"replica": "local"})
    with pytest.raises(ConfigError, match="single-server test mode"):
        from_dict(data, base=tmp_path)
    assert from_dict(config_dict(tmp_path, n=1, raft={"replica": "local"})).raft.replica == "local"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_secret_readable_by_others_is_refused(tmp_path, mode):
    data = config_dict(tmp_path)
    os.chmod(data["secret_file"], mode)
    with pytest.raises(ConfigError, match="must not be readable by group or others"):
        from_dict(data, base=tmp_path)


def test_secret_must_exist_and_be_long_enough(tmp_path):
    data = config_dict(tmp_path)
    data["secret_file"] = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match="secret_file: .*nope does not exist"):
        from_dict(data, base=tmp_path)
    write_secret(tmp_path / "short", "abc")
    data["secret_file"] = str(tmp_path / "short")
    with pytest.raises(ConfigError, match="too short"):
        from_dict(data, base=tmp_path)


def test_unreadable_or_invalid_files(tmp_path):
    with pytest.raises(ConfigError, match="config file does not exist"):
        load(tmp_path / "missing.toml")
    (tmp_path / "bad.toml").write_text("server_id = \n")
    with pytest.raises(ConfigError, match="invalid TOML"):
        load(tmp_path / "bad.toml")


def test_auth_file_format(tmp_path):
    (tmp_path / "a").write_text("oneadmin:pw:with:colons\n")
    assert read_auth_file(str(tmp_path / "a")) == ("oneadmin", "pw:with:colons")
    (tmp_path / "b").write_text("nocolon\n")
    with pytest.raises(ValueError, match="user:password"):
        read_auth_file(str(tmp_path / "b"))


# --- [auth] ---------------------------------------------------------------------------

GROUP_ADMINS = "cn=admins,ou=groups,dc=example,dc=org"
GROUP_DEVS = "cn=devs,ou=groups,dc=example,dc=org"


def _ldap(tmp_path, **over) -> dict:
    """A valid [auth.ldap] table (with a service account whose password file is 0600)."""
    write_secret(tmp_path / "ldap.pw", "service-password")
    table = {
        "uri": "ldap://127.0.0.1:3389",
        "base_dn": "ou=people,dc=example,dc=org",
        "bind_dn": "cn=one,dc=example,dc=org",
        "bind_password_file": "ldap.pw",
        "group_base_dn": "ou=groups,dc=example,dc=org",
        "timeout": 2,
        "groups": {GROUP_DEVS: 101, GROUP_ADMINS: 100},
    }
    table.update(over)
    return table


def test_auth_defaults_to_core_only(tmp_path):
    cfg = from_dict(config_dict(tmp_path), base=tmp_path)
    assert cfg.auth.drivers == ("core",)
    assert cfg.auth.ldap is None


def test_auth_ldap_section_loads_from_toml(tmp_path):
    write_secret(tmp_path / "secret")
    write_secret(tmp_path / "ldap.pw", "service-password")
    (tmp_path / "oned.toml").write_text(
        f"""
server_id = 0
name = "fe0"
data_dir = "data"
raft_address = "127.0.0.1:2633"
grpc_address = "127.0.0.1:2634"
secret_file = "secret"
auth_file = "one_auth"

[[servers]]
id = 0
name = "fe0"
raft = "127.0.0.1:2633"
grpc = "127.0.0.1:2634"

[auth]
drivers = ["ssh", "ldap"]

[auth.ldap]
uri = "ldap://127.0.0.1:3389"
base_dn = "ou=people,dc=example,dc=org"
bind_dn = "cn=one,dc=example,dc=org"
bind_password_file = "ldap.pw"
timeout = 1.5

[auth.ldap.groups]
"{GROUP_DEVS}" = 101
"{GROUP_ADMINS}" = 100
"""
    )
    cfg = load(tmp_path / "oned.toml")
    assert cfg.auth.drivers == ("core", "ssh", "ldap")  # core always on, first
    ldap = cfg.auth.ldap
    assert ldap.uri == "ldap://127.0.0.1:3389"
    assert ldap.user_attribute == "uid" and ldap.member_attribute == "member"
    assert ldap.group_base_dn is None and ldap.timeout == 1.5
    assert ldap.bind_password_file == str(tmp_path / "ldap.pw")  # relative to the file
    assert ldap.read_bind_password() == "service-password"
    assert ldap.groups == ((GROUP_DEVS, 101), (GROUP_ADMINS, 100))  # the file's order


def test_auth_password_never_inline_and_file_checked(tmp_path):
    data = config_dict(tmp_path, auth={"drivers": ["ldap"], "ldap": _ldap(tmp_path)})
    assert from_dict(data, base=tmp_path).auth.ldap.read_bind_password() == "service-password"
    os.chmod(tmp_path / "ldap.pw", 0o644)
    with pytest.raises(ConfigError) as err:
        from_dict(data, base=tmp_path)
    assert "[auth.ldap] bind_password_file" in str(err.value)
    assert "must not be readable by group or others" in str(err.value)
    assert "service-password" not in str(err.value)
    (tmp_path / "ldap.pw").write_text("")
    os.chmod(tmp_path / "ldap.pw", 0o600)
    with pytest.raises(ConfigError, match=r"bind_password_file: .* is empty"):
        from_dict(data, base=tmp_path)


AUTH_BAD = [
    ({"drivers": "ldap"}, "[auth] drivers: must be an array of driver names"),
    ({"drivers": ["core", "kerberos"]}, "[auth] drivers: 'kerberos' is not one of"),
    ({"drivers": ["ssh", "ssh"]}, "[auth] drivers: 'ssh' is listed twice"),
    ({"drivers": ["ldap"]}, "[auth] drivers: 'ldap' needs an [auth.ldap] table"),
    ({"drivers": ["x509"]}, "[auth] drivers: 'x509' logs in with the client certificate"),
    ({"colour": 1}, "[auth] : unknown key(s): colour"),
    ({"ldap": "LDAP"}, "[auth] ldap: must be a table [auth.ldap]"),
    ({"ldap": "VALID"}, "[auth.ldap]: set, but [auth] drivers does not list 'ldap'"),
    ({"ldap": {"uri": DELETE}}, "[auth.ldap] uri: required key is missing"),
    ({"ldap": {"uri": "http://x"}}, "[auth.ldap] uri: 'http://x' must be ldap://host"),
    ({"ldap": {"uri": "ldap://"}}, "[auth.ldap] uri: 'ldap://' must be ldap://host"),
    ({"ldap": {"uri": "ldap://h:99999"}}, "[auth.ldap] uri: 'ldap://h:99999'"),
    ({"ldap": {"uri": "ldap://h/dc=x"}}, "[auth.ldap] uri: 'ldap://h/dc=x': give only"),
    ({"ldap": {"base_dn": DELETE}}, "[auth.ldap] base_dn: required key is missing"),
    ({"ldap": {"base_dn": "people"}}, "[auth.ldap] base_dn: 'people' is not a DN"),
    ({"ldap": {"user_attribute": "uid)(x"}}, "[auth.ldap] user_attribute: 'uid)(x' is not"),
    ({"ldap": {"member_attribute": "*"}}, "[auth.ldap] member_attribute: '*' is not"),
    ({"ldap": {"bind_dn": DELETE}}, "[auth.ldap] bind_dn: bind_dn and bind_password_file go"),
    ({"ldap": {"bind_password_file": DELETE}}, "[auth.ldap] bind_password_file: bind_dn and"),
    ({"ldap": {"bind_password": "x"}}, "[auth.ldap] : unknown key(s): bind_password"),
    ({"ldap": {"bind_password_file": "nope"}}, "[auth.ldap] bind_password_file: "),
    ({"ldap": {"timeout": 0}}, "[auth.ldap] timeout: must be a positive number"),
    ({"ldap": {"ca_file": "ca.pem"}}, "[auth.ldap] ca_file: only used with an ldaps:// uri"),
    ({"ldap": {"groups": {"admins": 100}}}, "[auth.ldap.groups] 'admins': not a DN"),
    ({"ldap": {"groups": {GROUP_ADMINS: "100"}}}, "must be a zone group id"),
    ({"ldap": {"groups": {GROUP_ADMINS: -1}}}, "must be a zone group id"),
    (
        {"ldap": {"groups": {GROUP_ADMINS: 100, "CN=Admins, ou=groups,dc=example,dc=org": 7}}},
        "the same DN as",
    ),
]


@pytest.mark.parametrize("auth,message", AUTH_BAD, ids=[f"{a!r}"[:50] for a, _ in AUTH_BAD])
def test_invalid_auth_section_names_the_key(tmp_path, auth, message):
    auth = dict(auth)  # a shallow copy: deepcopy would copy the DELETE sentinel too
    if "ldap" in auth and isinstance(auth["ldap"], dict):
        table = _ldap(tmp_path)
        for key, value in auth["ldap"].items():
            if value is DELETE:
                table.pop(key)
            else:
                table[key] = value
        auth["ldap"] = table
        auth.setdefault("drivers", ["ldap"])
    elif auth.get("ldap") == "VALID":
        auth["ldap"] = _ldap(tmp_path)
    data = config_dict(tmp_path, auth=auth)
    with pytest.raises(ConfigError) as err:
        from_dict(data, where="oned.toml", base=tmp_path)
    assert message in str(err.value)
    assert str(err.value).startswith("oned.toml: ")


def test_x509_driver_needs_client_ca(tmp_path):
    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / name).write_text("pem")
    tls = {"cert": "server.crt", "key": "server.key"}
    with pytest.raises(ConfigError, match=r"\[auth\] drivers: 'x509'.*\[tls\] client_ca"):
        from_dict(config_dict(tmp_path, tls=tls, auth={"drivers": ["x509"]}), base=tmp_path)
    cfg = from_dict(
        config_dict(tmp_path, tls={**tls, "client_ca": "ca.crt"}, auth={"drivers": ["x509"]}),
        base=tmp_path,
    )
    assert cfg.auth.drivers == ("core", "x509")


def test_free_ports_are_distinct_even_when_the_kernel_reuses_a_closed_port(monkeypatch):
    import socket

    from zones.config import free_ports

    bound: set[int] = set()

    class Kernel:
        """Hands out the lowest port not bound right now (a port closed is free again)."""

        def __init__(self, *args) -> None:
            self.port = None

        def bind(self, address) -> None:
            self.port = min(set(range(40000, 40100)) - bound)
            bound.add(self.port)

        def getsockname(self):
            return ("127.0.0.1", self.port)

        def close(self) -> None:
            bound.discard(self.port)

        def __enter__(self):
            return self

        def __exit__(self, *exc) -> None:
            self.close()

    monkeypatch.setattr(socket, "socket", Kernel)
    ports = free_ports(8)
    assert len(set(ports)) == 8 and not bound  # distinct, and every socket closed again
