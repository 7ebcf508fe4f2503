"""Shared fixtures: an in-process front-end (LocalReplica + the real gRPC API).

`zone` gives a bootstrapped single-server zone on 127.0.0.1 with its admin password and
helpers; `make_config` writes a valid config dict for a temporary directory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from raftcore import schema
from raftcore.codec import packb
from raftcore.commands import make_command
from raftcore.fake import LocalReplica
from raftcore.store import Store
from zones.api.client import Client
from zones.config import Config, free_ports, from_dict
from zones.frontend import Frontend

SECRET = "s3cr3t-" + "x" * 32


def write_secret(path: Path, text: str = SECRET, mode: int = 0o600) -> Path:
    path.write_text(text + "\n")
    os.chmod(path, mode)
    return path


def config_dict(tmp: Path, n: int = 1, server_id: int = 0, **top) -> dict:
    """A valid config dict for server `server_id` of an n-server zone under `tmp`."""
    secret = tmp / "secret"
    if not secret.exists():
        write_secret(secret)
    ports = free_ports(2 * n)
    servers = [
        {
            "id": i,
            "name": f"fe{i}",
            "raft": f"127.0.0.1:{ports[2 * i]}",
            "grpc": f"127.0.0.1:{ports[2 * i + 1]}",
        }
        for i in range(n)
    ]
    me = servers[server_id]
    data = {
        "server_id": server_id,
        "name": me["name"],
        "data_dir": str(tmp / f"data{server_id}"),
        "raft_address": me["raft"],
        "grpc_address": me["grpc"],
        "secret_file": str(secret),
        "auth_file": str(tmp / "one_auth"),
        "servers": servers,
        "raft": {"election_timeout_min": 0.2, "election_timeout_max": 0.5},
    }
    data.update(top)
    return data


@pytest.fixture
def make_config(tmp_path):
    def make(n: int = 1, server_id: int = 0, **top) -> Config:
        return from_dict(config_dict(tmp_path, n, server_id, **top), base=tmp_path)

    return make


def wait_until(predicate, timeout: float = 5.0, what: str = "condition", interval: float = 0.01):
    """Poll `predicate` until true or fail after `timeout` seconds, naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


@dataclass
class Zone:
    """An in-process, bootstrapped zone of one front-end."""

    frontend: Frontend
    store: Store
    replica: LocalReplica
    config: Config
    password: str

    @property
    def endpoint(self) -> str:
        return self.config.grpc_address

    def client(self, token: str | None = None) -> Client:
        return Client(self.endpoint, token=token)

    def admin(self) -> Client:
        return self.client().login("oneadmin", self.password)

    def propose(self, op: str, args: dict, uid: int = 0, ts_ms: int | None = None, rid=None):
        ts = int(time.time() * 1000) if ts_ms is None else ts_ms
        rid = rid or f"test-{time.monotonic_ns()}"
        return self.replica.propose(make_command(op, args, rid=rid, uid=uid, ts_ms=ts))

    def add_user(self, uid: int, name: str, enabled: bool = True) -> None:
        """Write a user record directly (no user.create op exists yet; test only)."""
        record = {
            "id": uid,
            "name": name,
            "password": "",
            "gid": 1,
            "groups": [1],
            "enabled": enabled,
            "auth_driver": "core",
            "template": "",
        }
        env, dbs = self.store._env, self.store._dbs
        with env.begin(write=True) as txn:
            txn.put(schema.id_key(uid), packb(record), db=dbs[schema.USERS])
            txn.put(schema.str_key(name), packb(uid), db=dbs[schema.USERS_BY_NAME])

    def token_for(self, uid: int, ttl_ms: int = 3_600_000, ts_ms: int | None = None) -> str:
        """Create a token of user `uid` through the log; returns the token."""
        from raftcore.auth import new_token, token_hash

        token = new_token()
        ts = int(time.time() * 1000) if ts_ms is None else ts_ms
        _, result = self.propose(
            "token.create",
            {"token_hash": token_hash(token), "uid": uid, "expires": ts + ttl_ms},
            uid=uid,
            ts_ms=ts,
        )
        assert result["ok"], result
        return token

    def servers(self) -> list[dict]:
        with self.store.read() as view:
            return [v for _, v in view.iter(schema.SERVERS)]


def start_zone(tmp_path: Path, n: int = 1, password: str = "admin-password-1", **top) -> Zone:
    (tmp_path / "one_auth").write_text(f"oneadmin:{password}\n")
    os.chmod(tmp_path / "one_auth", 0o600)
    config = from_dict(config_dict(tmp_path, n, **top), base=tmp_path)
    store = Store(str(tmp_path / "state"), map_size=64 << 20)
    replica = LocalReplica(store, server_id=0, raft_address=config.raft_address)
    fe = Frontend(config, replica=replica, store=store).start()
    assert fe.bootstrapper.done.wait(10), "bootstrap did not finish"
    return Zone(fe, store, replica, config, password)


@pytest.fixture
def zone(tmp_path):
    z = start_zone(tmp_path)
    try:
        yield z
    finally:
        z.frontend.stop(grace=0)
        z.replica.close()
        z.store.close()


@pytest.fixture(scope="module")
def slapd(tmp_path_factory):
    """A private slapd on 127.0.0.1 (ldap and ldaps), seeded by tests.ldapkit; one per
    test module, stopped by its PID at the end. Fails (never skips) without slapd."""
    from tests.ldapkit import Slapd

    server = Slapd(tmp_path_factory.mktemp("slapd"), tls=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def cli_env(zone, monkeypatch, tmp_path):
    """The in-process zone with ONE_AUTH / ONE_ENDPOINT set for the CLIs (as oneadmin)."""
    auth = tmp_path / "one_auth_cli"
    auth.write_text(f"oneadmin:{zone.password}\n")
    monkeypatch.setenv("ONE_AUTH", str(auth))
    monkeypatch.setenv("ONE_ENDPOINT", zone.endpoint)
    monkeypatch.delenv("ONE_TOKEN", raising=False)
    return zone


def run_cli(module, capsys, *argv) -> tuple[int, str, str]:
    """Run a CLI's main(argv) in-process: (exit code, stdout, stderr)."""
    rc = module.main(list(argv))
    captured = capsys.readouterr()
    return rc, captured.out, captured.err
