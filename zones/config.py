"""oned configuration: one TOML file -> frozen dataclasses, validated up front.

Every error names the offending key (``ConfigError: oned.toml: [raft] heartbeat: ...``)
so an operator can fix the file without reading code. Relative paths are resolved
against the directory of the config file.

Example::

    server_id = 0
    name = "fe0"
    data_dir = "/var/lib/one/fe0"
    raft_address = "10.0.0.1:2633"
    grpc_address = "10.0.0.1:2634"
    metrics_address = "10.0.0.1:9633"   # optional
    secret_file = "/etc/one/cluster.secret"   # must exist, mode 0600
    auth_file = "/etc/one/one_auth"            # oneadmin:<password>
    log_file = "/var/log/one/oned.log"         # optional
    log_level = "info"

    [[servers]]
    id = 0
    name = "fe0"
    raft = "10.0.0.1:2633"
    grpc = "10.0.0.1:2634"
    # ... one [[servers]] table per initial front-end

    [raft]
    election_timeout_min = 0.2
    election_timeout_max = 0.5
    heartbeat = 0.05
    batch_linger = 0.005   # group commit window under concurrent writes (0: off)

    [tls]                # optional
    cert = "server.crt"
    key = "server.key"
    client_ca = "ca.crt" # optional: require client certificates signed by this CA

    [auth]               # optional: login drivers besides core (zones/authdrivers)
    drivers = ["core", "ssh", "x509", "ldap"]

    [auth.ldap]          # required when drivers lists "ldap"
    uri = "ldaps://ldap.example.org"
    base_dn = "ou=people,dc=example,dc=org"
    bind_dn = "cn=one,dc=example,dc=org"     # optional service account for the searches
    bind_password_file = "/etc/one/ldap.pw"  # with bind_dn; mode 0600
    group_base_dn = "ou=groups,dc=example,dc=org"

    [auth.ldap.groups]   # directory group DN -> zone group id; the first match is primary
    "cn=admins,ou=groups,dc=example,dc=org" = 100
"""

from __future__ import annotations

import os
import re
import stat
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from zones.authdrivers.dn import normalize_dn

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
REPLICA_KINDS = ("raft", "local")
MIN_SECRET_CHARS = 16
AUTH_DRIVERS = ("core", "ssh", "x509", "ldap")
LDAP_SCHEMES = {"ldap": 389, "ldaps": 636}
# An LDAP attribute description (RFC 4512 descr or numeric oid): it goes into a search
# filter unescaped, so nothing else is accepted.
_LDAP_ATTRIBUTE = re.compile(r"[A-Za-z][A-Za-z0-9-]*|[0-9]+(\.[0-9]+)+")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class ServerSpec:
    """One server of the initial zone ([[servers]])."""

    id: int
    name: str
    raft: str
    grpc: str


@dataclass(frozen=True)
class RaftConfig:
    election_timeout_min: float = 0.2
    election_timeout_max: float = 0.5
    heartbeat: float = 0.05
    leader_fallback_timeout: float = 1.0
    snapshot_min_entries: int = 10000
    fault_injection: bool = False
    # Set on a server added to a running zone: until it has caught up with the leader it
    # neither votes nor stands for election.
    join: bool = False
    # Writes are refused (RESOURCE_EXHAUSTED) while the data dir has less free space.
    min_free_bytes: int = 64 * 1024 * 1024
    # Group commit (seconds): under concurrent writes the leader waits up to this long to
    # pack more proposals into one log entry; a lone writer never waits. 0 disables it.
    batch_linger: float = 0.005
    # "raft" (the real consensus) or "local": a test/dev-only single-server mode that
    # applies commands in-process without a raft log (raftcore.fake.LocalReplica).
    replica: str = "raft"


@dataclass(frozen=True)
class TLSConfig:
    cert: str
    key: str
    # Require client certificates signed by this CA (mutual TLS) when set.
    client_ca: str | None = None
    # CA used to verify the other front-ends' server certificates when this front-end
    # forwards a call; defaults to client_ca, then to the system roots.
    ca: str | None = None

    def read(self) -> tuple[bytes, bytes, bytes | None, bytes | None]:
        def _read(path: str | None) -> bytes | None:
            return Path(path).read_bytes() if path else None

        return (
            Path(self.cert).read_bytes(),
            Path(self.key).read_bytes(),
            _read(self.client_ca),
            _read(self.ca or self.client_ca),
        )


@dataclass(frozen=True)
class LDAPConfig:
    """[auth.ldap]: the directory the ``ldap`` login driver binds to."""

    uri: str  # ldap://host[:port] or ldaps://host[:port]
    base_dn: str  # where users are searched (subtree)
    user_attribute: str = "uid"  # the attribute holding the login name
    # Service account for the searches; anonymous searches without it.
    bind_dn: str | None = None
    bind_password_file: str | None = None  # the service account's password (mode 0600)
    group_base_dn: str | None = None  # where groups are searched; default base_dn
    member_attribute: str = "member"  # the group attribute listing member DNs
    timeout: float = 5.0  # seconds, for connecting and for each answer
    # (directory group DN, zone group id), in the file's order: the first group of the
    # user that is listed here is the user's primary group.
    groups: tuple[tuple[str, int], ...] = ()
    # ldaps: CA (PEM) that signed the directory's certificate; default: the system roots.
    ca_file: str | None = None
    path: str = "<config>"

    def read_bind_password(self) -> str | None:
        """The service account's password, or None without bind_dn; ConfigError if the
        file is missing, empty, or readable by group or others."""
        if self.bind_password_file is None:
            return None
        where = f"{self.path}: [auth.ldap] bind_password_file"
        return read_password_file(self.bind_password_file, where)


@dataclass(frozen=True)
class AuthConfig:
    """[auth]: the login drivers (zones/authdrivers); ``core`` is always on."""

    drivers: tuple[str, ...] = ("core",)
    ldap: LDAPConfig | None = None


@dataclass(frozen=True)
class Config:
    server_id: int
    name: str
    data_dir: str
    raft_address: str
    grpc_address: str
    secret_file: str
    auth_file: str
    servers: tuple[ServerSpec, ...]
    raft: RaftConfig = field(default_factory=RaftConfig)
    metrics_address: str | None = None
    log_file: str | None = None
    log_level: str = "info"
    tls: TLSConfig | None = None
    # Threads serving gRPC calls (each in-flight call holds one while it waits for the log).
    grpc_workers: int = 64
    # Serve gRPC from a worker process beside the raft process (zones/replica_ipc.py), so
    # the two do not share one interpreter lock. False: one process (tests, debugging).
    api_process: bool = True
    # Name given to the zone when it is bootstrapped (first leader of a new zone).
    zone_name: str = "OpenNebula"
    auth: AuthConfig = field(default_factory=AuthConfig)
    path: str = "<memory>"

    @property
    def peers(self) -> list[str]:
        """Raft addresses of all initial servers, this one included."""
        return [s.raft for s in self.servers]

    def server(self, server_id: int) -> ServerSpec | None:
        for s in self.servers:
            if s.id == server_id:
                return s
        return None

    def read_secret(self) -> str:
        return read_secret(self.secret_file, where=f"{self.path}: secret_file")


# --- helpers -------------------------------------------------------------------------


def split_address(value: str) -> tuple[str, int]:
    """Split "host:port" (IPv6 host in brackets) into (host, port); raises ValueError."""
    if not isinstance(value, str):
        raise ValueError(f"must be a string 'host:port', got {type(value).__name__}")
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ValueError(f"{value!r} must be 'host:port'")
    if host.startswith("[") != host.endswith("]") or host == "[]":
        raise ValueError(f"{value!r} has a malformed IPv6 host (use [addr]:port)")
    if not host.startswith("[") and ":" in host:
        raise ValueError(f"{value!r}: an IPv6 host must be in brackets, e.g. [::1]:2633")
    if any(c.isspace() for c in host):
        raise ValueError(f"{value!r}: the host contains whitespace")
    if not (port.isascii() and port.isdigit()):
        raise ValueError(f"{value!r}: the port must be a number")
    return host, int(port)


def check_address(value: Any, allow_zero_port: bool = False) -> str:
    host, port = split_address(value)
    low = 0 if allow_zero_port else 1
    if not low <= port <= 65535:
        raise ValueError(f"{value!r}: the port must be {low}..65535")
    return value


def _read_private(path: str, where: str, what: str) -> str:
    """The text of a file only its owner may read (a secret or a password)."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ConfigError(f"{where}: {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"{where}: cannot stat {path}: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"{where}: {path} is not a regular file")
    if st.st_mode & 0o077:
        raise ConfigError(
            f"{where}: {path} has mode {stat.S_IMODE(st.st_mode):04o}; {what} "
            f"must not be readable by group or others (chmod 600 {path})"
        )
    try:
        return p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{where}: cannot read {path}: {e}") from None


def read_secret(path: str, where: str = "secret_file") -> str:
    """Read the cluster secret, refusing a file that group or others can read."""
    secret = _read_private(path, where, "the cluster secret").strip()
    if len(secret) < MIN_SECRET_CHARS:
        raise ConfigError(
            f"{where}: the secret in {path} is too short "
            f"({len(secret)} characters, at least {MIN_SECRET_CHARS})"
        )
    return secret


def read_password_file(path: str, where: str) -> str:
    """A password kept in a file of its own (first line, without the line end), refusing
    a file that group or others can read, or an empty one."""
    lines = _read_private(path, where, "a password file").splitlines()
    if not lines or not lines[0]:
        raise ConfigError(f"{where}: {path} is empty (the password is its first line)")
    return lines[0]


def read_auth_file(path: str) -> tuple[str, str]:
    """Parse a `user:password` file (ONE_AUTH format); raises ValueError."""
    text = Path(path).read_text().strip()
    line = text.splitlines()[0].strip() if text else ""
    user, sep, password = line.partition(":")
    if not sep or not user or not password:
        raise ValueError(f"{path} must contain 'user:password'")
    return user, password


class _Table:
    """Reads typed values out of one TOML table, naming the key on every error."""

    def __init__(self, data: dict, prefix: str, where: str) -> None:
        self.data = data
        self.prefix = prefix
        self.where = where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}: {self.prefix}{name}"

    def fail(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.key(name)}: {message}")

    def get(self, name: str, kind: type | tuple, default: Any = ..., what: str = "") -> Any:
        self.used.add(name)
        if name not in self.data:
            if default is ...:
                raise ConfigError(f"{self.key(name)}: required key is missing")
            return default
        value = self.data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)
        if not ok:
            expected = what or " or ".join(k.__name__ for k in kinds)
            raise self.fail(name, f"must be {expected}, got {type(value).__name__} {value!r}")
        return value

    def string(self, name: str, default: Any = ...) -> Any:
        value = self.get(name, str, default, "a string")
        if isinstance(value, str) and not value.strip():
            raise self.fail(name, "must not be empty")
        return value

    def number(self, name: str, default: Any = ...) -> float:
        value = self.get(name, (int, float), default, "a number")
        if value <= 0:
            raise self.fail(name, f"must be a positive number, got {value!r}")
        return float(value)

    def integer(self, name: str, default: Any = ..., minimum: int = 0) -> int:
        value = self.get(name, int, default, "an integer")
        if value < minimum:
            raise self.fail(name, f"must be >= {minimum}, got {value}")
        return value

    def address(self, name: str, default: Any = ..., allow_zero_port: bool = False) -> Any:
        value = self.string(name, default)
        if value is None:
            return None
        try:
            return check_address(value, allow_zero_port)
        except ValueError as e:
            raise self.fail(name, str(e)) from None

    def path(self, name: str, base: Path, default: Any = ...) -> Any:
        value = self.string(name, default)
        if value is None:
            return None
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else (base / p))

    def check_unknown(self) -> None:
        unknown = sorted(k for k in self.data if k not in self.used)
        if unknown:
            raise ConfigError(
                f"{self.where}: {self.prefix or 'top level'}: unknown key(s): {', '.join(unknown)}"
            )


# --- loading -------------------------------------------------------------------------


def load(path: str | os.PathLike) -> Config:
    """Read and validate a config file; raises ConfigError naming the key at fault."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file does not exist") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config file: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: invalid TOML: {e}") from None
    return from_dict(data, where=str(p), base=p.resolve().parent)


def from_dict(data: dict, where: str = "<config>", base: Path | None = None) -> Config:
    base = base or Path.cwd()
    top = _Table(data, "", where)
    server_id = top.integer("server_id")
    name = top.string("name")
    zone_name = top.string("zone_name", "OpenNebula")
    data_dir = top.path("data_dir", base)
    raft_address = top.address("raft_address")
    grpc_address = top.address("grpc_address")
    metrics_address = top.address("metrics_address", None, allow_zero_port=True)
    secret_file = top.path("secret_file", base)
    auth_file = top.path("auth_file", base)
    log_file = top.path("log_file", base, None)
    log_level = top.string("log_level", "info").lower()
    if log_level not in LOG_LEVELS:
        raise top.fail("log_level", f"must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    grpc_workers = top.integer("grpc_workers", 64, minimum=1)
    api_process = top.get("api_process", bool, True, "true or false")

    servers = _servers(top.get("servers", list, what="an array of [[servers]] tables"), where)
    raft = _raft(top.get("raft", dict, {}, what="a table [raft]"), where)
    tls_data = top.get("tls", dict, None, what="a table [tls]")
    tls = _tls(tls_data, where, base) if tls_data is not None else None
    auth_data = top.get("auth", dict, None, what="a table [auth]")
    auth = _auth(auth_data, where, base) if auth_data is not None else AuthConfig()
    top.check_unknown()

    me = next((s for s in servers if s.id == server_id), None)
    if me is None:
        raise ConfigError(
            f"{where}: server_id: {server_id} is not one of the [[servers]] ids "
            f"({', '.join(str(s.id) for s in servers)}); list this server too"
        )
    if me.raft != raft_address:
        raise ConfigError(
            f"{where}: raft_address: {raft_address!r} differs from [[servers]] id {server_id} "
            f"raft {me.raft!r}"
        )
    if me.grpc != grpc_address:
        raise ConfigError(
            f"{where}: grpc_address: {grpc_address!r} differs from [[servers]] id {server_id} "
            f"grpc {me.grpc!r}"
        )
    if raft.replica == "local" and len(servers) != 1:
        raise ConfigError(
            f"{where}: [raft] replica: 'local' is a single-server test mode, "
            f"but [[servers]] lists {len(servers)} servers"
        )
    if metrics_address in (raft_address, grpc_address) and not metrics_address.endswith(":0"):
        raise ConfigError(f"{where}: metrics_address: {metrics_address!r} is already used")
    if raft_address == grpc_address:
        raise ConfigError(f"{where}: grpc_address: same as raft_address {raft_address!r}")
    if "x509" in auth.drivers and (tls is None or tls.client_ca is None):
        raise ConfigError(
            f"{where}: [auth] drivers: 'x509' logs in with the client certificate of mutual "
            f"TLS: set [tls] client_ca too"
        )

    config = Config(
        server_id=server_id,
        name=name,
        zone_name=zone_name,
        data_dir=data_dir,
        raft_address=raft_address,
        grpc_address=grpc_address,
        secret_file=secret_file,
        auth_file=auth_file,
        servers=servers,
        raft=raft,
        metrics_address=metrics_address,
        log_file=log_file,
        log_level=log_level,
        tls=tls,
        grpc_workers=grpc_workers,
        api_process=api_process and raft.replica != "local",
        auth=auth,
        path=where,
    )
    config.read_secret()  # must exist with mode 0600, refused otherwise
    if auth.ldap is not None:
        auth.ldap.read_bind_password()  # likewise, when there is one
    return config


def _servers(items: list, where: str) -> tuple[ServerSpec, ...]:
    if not items:
        raise ConfigError(f"{where}: servers: at least one [[servers]] table is required")
    out: list[ServerSpec] = []
    seen: dict[str, dict[Any, int]] = {"id": {}, "name": {}, "raft": {}, "grpc": {}}
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: servers[{i}]: must be a table, got {item!r}")
        t = _Table(item, f"servers[{i}].", where)
        spec = ServerSpec(
            id=t.integer("id"),
            name=t.string("name"),
            raft=t.address("raft"),
            grpc=t.address("grpc"),
        )
        t.check_unknown()
        for attr, values in seen.items():
            value = getattr(spec, attr)
            if value in values:
                raise ConfigError(
                    f"{where}: servers[{i}].{attr}: {value!r} is already used by "
                    f"servers[{values[value]}]"
                )
            values[value] = i
        out.append(spec)
    return tuple(sorted(out, key=lambda s: s.id))


def _raft(data: dict, where: str) -> RaftConfig:
    t = _Table(data, "[raft] ", where)
    d = RaftConfig()
    cfg = RaftConfig(
        election_timeout_min=t.number("election_timeout_min", d.election_timeout_min),
        election_timeout_max=t.number("election_timeout_max", d.election_timeout_max),
        heartbeat=t.number("heartbeat", d.heartbeat),
        leader_fallback_timeout=t.number("leader_fallback_timeout", d.leader_fallback_timeout),
        snapshot_min_entries=t.integer("snapshot_min_entries", d.snapshot_min_entries, 1),
        fault_injection=t.get("fault_injection", bool, d.fault_injection, "true or false"),
        min_free_bytes=t.integer("min_free_bytes", d.min_free_bytes, 0),
        batch_linger=float(t.get("batch_linger", (int, float), d.batch_linger, "a number")),
        join=t.get("join", bool, d.join, "true or false"),
        replica=t.string("replica", d.replica),
    )
    t.check_unknown()
    if cfg.election_timeout_max <= cfg.election_timeout_min:
        raise t.fail(
            "election_timeout_max",
            f"must be greater than election_timeout_min ({cfg.election_timeout_min})",
        )
    if cfg.election_timeout_min <= 3 * cfg.heartbeat:
        raise t.fail(
            "heartbeat",
            f"must be less than a third of election_timeout_min ({cfg.election_timeout_min})",
        )
    if not 0 <= cfg.batch_linger < cfg.heartbeat:
        raise t.fail(
            "batch_linger", f"must be at least 0 and less than heartbeat ({cfg.heartbeat})"
        )
    if cfg.replica not in REPLICA_KINDS:
        raise t.fail("replica", f"must be one of {', '.join(REPLICA_KINDS)}, got {cfg.replica!r}")
    return cfg


def _tls(data: dict, where: str, base: Path) -> TLSConfig:
    t = _Table(data, "[tls] ", where)
    cfg = TLSConfig(
        cert=t.path("cert", base),
        key=t.path("key", base),
        client_ca=t.path("client_ca", base, None),
        ca=t.path("ca", base, None),
    )
    t.check_unknown()
    for name in ("cert", "key", "client_ca", "ca"):
        value = getattr(cfg, name)
        if value is not None and not Path(value).is_file():
            raise t.fail(name, f"{value} does not exist")
    return cfg


def _auth(data: dict, where: str, base: Path) -> AuthConfig:
    t = _Table(data, "[auth] ", where)
    names = t.get("drivers", list, ["core"], what="an array of driver names")
    drivers: list[str] = ["core"]  # always on
    for name in names:
        if not isinstance(name, str) or name not in AUTH_DRIVERS:
            raise t.fail("drivers", f"{name!r} is not one of {', '.join(AUTH_DRIVERS)}")
        if name in drivers and name != "core":
            raise t.fail("drivers", f"{name!r} is listed twice")
        if name not in drivers:
            drivers.append(name)
    ldap_data = t.get("ldap", dict, None, what="a table [auth.ldap]")
    t.check_unknown()
    if "ldap" in drivers and ldap_data is None:
        raise t.fail("drivers", "'ldap' needs an [auth.ldap] table")
    if ldap_data is not None and "ldap" not in drivers:
        raise ConfigError(f"{where}: [auth.ldap]: set, but [auth] drivers does not list 'ldap'")
    ldap = _auth_ldap(ldap_data, where, base) if ldap_data is not None else None
    return AuthConfig(drivers=tuple(drivers), ldap=ldap)


def _auth_ldap(data: dict, where: str, base: Path) -> LDAPConfig:
    t = _Table(data, "[auth.ldap] ", where)
    d = LDAPConfig(uri="", base_dn="")

    def dn(name: str, default: Any = ...) -> Any:
        value = t.string(name, default)
        if value is not None:
            try:
                normalize_dn(value)
            except ValueError as e:
                raise t.fail(name, f"{value!r} is not a DN: {e}") from None
        return value

    def attribute(name: str, default: str) -> str:
        value = t.string(name, default)
        if not _LDAP_ATTRIBUTE.fullmatch(value):
            raise t.fail(name, f"{value!r} is not an LDAP attribute name")
        return value

    uri = t.string("uri")
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as e:
        raise t.fail("uri", f"{uri!r}: {e}") from None
    if parts.scheme not in LDAP_SCHEMES or not parts.hostname:
        raise t.fail("uri", f"{uri!r} must be ldap://host[:port] or ldaps://host[:port]")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise t.fail("uri", f"{uri!r}: give only the scheme, host and port")
    if port == 0:
        raise t.fail("uri", f"{uri!r}: the port must be 1..65535")
    groups_data = t.get("groups", dict, {}, what="a table [auth.ldap.groups]")
    cfg = LDAPConfig(
        uri=uri,
        base_dn=dn("base_dn"),
        user_attribute=attribute("user_attribute", d.user_attribute),
        bind_dn=dn("bind_dn", None),
        bind_password_file=t.path("bind_password_file", base, None),
        group_base_dn=dn("group_base_dn", None),
        member_attribute=attribute("member_attribute", d.member_attribute),
        timeout=t.number("timeout", d.timeout),
        ca_file=t.path("ca_file", base, None),
        groups=_ldap_groups(groups_data, where),
        path=where,
    )
    t.check_unknown()
    if (cfg.bind_dn is None) != (cfg.bind_password_file is None):
        missing = "bind_password_file" if cfg.bind_password_file is None else "bind_dn"
        raise t.fail(missing, "bind_dn and bind_password_file go together: set both or neither")
    if cfg.ca_file is not None:
        if parts.scheme != "ldaps":
            raise t.fail("ca_file", "only used with an ldaps:// uri")
        if not Path(cfg.ca_file).is_file():
            raise t.fail("ca_file", f"{cfg.ca_file} does not exist")
    return cfg


def _ldap_groups(data: dict, where: str) -> tuple[tuple[str, int], ...]:
    out: list[tuple[str, int]] = []
    seen: dict[str, str] = {}
    for group_dn, gid in data.items():
        key = f"{where}: [auth.ldap.groups] {group_dn!r}"
        try:
            norm = normalize_dn(group_dn)
        except ValueError as e:
            raise ConfigError(f"{key}: not a DN: {e}") from None
        if norm in seen:
            raise ConfigError(f"{key}: the same DN as {seen[norm]!r}")
        if not isinstance(gid, int) or isinstance(gid, bool) or gid < 0:
            raise ConfigError(f"{key}: must be a zone group id (an integer >= 0), got {gid!r}")
        seen[norm] = group_dn
        out.append((group_dn, gid))
    return tuple(out)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now on `host` (for labs and tests)."""
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """`n` distinct TCP ports free right now on `host`: the sockets stay bound until all
    are chosen (one at a time, the kernel may hand out a port it just gave back)."""
    import socket

    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(n)]
    try:
        for s in socks:
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
