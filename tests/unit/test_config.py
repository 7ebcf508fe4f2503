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
