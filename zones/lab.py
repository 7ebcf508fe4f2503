"""A zone of real `oned` processes on 127.0.0.1: for `make run`, the tests and the benchmarks.

Python API::

    with Lab("/tmp/zone", frontends=3) as lab:      # .up() on enter, .down() on exit
        i = lab.leader_index()
        c = lab.client(i)                             # logged in as oneadmin
        c.kv.Put(kv_pb2.PutRequest(key="k", value=b"v"))
        lab.kill(i)                                   # SIGKILL, by pid
        lab.start(i)                                  # same config and data

Command line::

    python -m zones.lab up   --frontends 3 --dir DIR   # prints one JSON object, leaves them running
    python -m zones.lab down --dir DIR                 # stops them (pids from DIR/lab.json)
    python -m zones.lab run  --frontends 3 --dir DIR   # up, show the zone, serve until Ctrl-C
    ... up|run --tls server|mutual                      # gRPC over TLS (a lab CA in DIR/pki)

Layout of DIR: `secret` (cluster secret, 0600), `one_auth` (oneadmin:<password>, 0600),
`fe<i>/oned.toml`, `fe<i>/data/`, `fe<i>/oned.log` (stdout+stderr), `lab.json`; with TLS
`pki/` (ca.crt, fe<i>.crt/.key, client.crt/.key; keys 0600).
Front-end i has server id i. `up` starts a fresh zone: files a previous lab left in DIR
are removed first (a DIR holding anything else is refused).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import grpc

from zones.api.client import Client, open_channel
from zones.api.gen import zone_pb2
from zones.config import RaftConfig, free_port
from zones.pki import issue, write_pki

ROOT = Path(__file__).resolve().parent.parent
LAB_FILE = "lab.json"
MARKER = ".zones-lab"
LOG_TAIL_LINES = 40
_LAB_FILES = ("secret", "one_auth", LAB_FILE)
# None: plaintext gRPC; "server": TLS with the lab CA's server certificates; "mutual":
# clients must also present a certificate of the lab CA (DIR/pki/client.crt).
TLS_MODES = (None, "server", "mutual")


class LabError(RuntimeError):
    """The lab could not do what was asked; the message says why (with log tails)."""


@dataclass
class FrontendInfo:
    id: int
    name: str
    grpc: str
    raft: str
    metrics: str
    pid: int | None
    data_dir: str
    config: str
    log: str


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    raise TypeError(f"cannot write {value!r} to TOML")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def _tail(path: str | Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode("utf-8", errors="replace")
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(text.splitlines()[-lines:])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def _pid_is_oned(pid: int, config: str) -> bool:
    """True if pid runs `zones.oned --config <config>` (guards against reused pids)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return b"zones.oned" in args and config.encode() in args


class Lab:
    """A zone of `frontends` oned processes in `dir` (see the module docstring)."""

    def __init__(
        self,
        dir: str | os.PathLike,
        frontends: int = 3,
        fault_injection: bool = False,
        raft_overrides: dict | None = None,
        log_level: str = "info",
        python: str = sys.executable,
        api_process: bool = True,
        tls: str | None = None,
        auth_drivers: tuple[str, ...] = (),
    ) -> None:
        if frontends < 1:
            raise ValueError("a lab needs at least one front-end")
        if tls not in TLS_MODES:
            raise ValueError(f"tls must be one of {TLS_MODES}, got {tls!r}")
        self.dir = Path(dir).resolve()
        self.n = frontends
        self.fault_injection = fault_injection
        self.raft_overrides = dict(raft_overrides or {})
        self.log_level = log_level
        self.python = python
        self.api_process = api_process
        self.tls = tls
        self.auth_drivers = tuple(auth_drivers)
        self.pki_dir = self.dir / "pki"
        self.secret_file = self.dir / "secret"
        self.auth_file = self.dir / "one_auth"
        self.fes: list[FrontendInfo] = []
        self._procs: dict[int, subprocess.Popen] = {}
        self._clients: dict[int, Client] = {}
        self._channels: dict[int, grpc.Channel] = {}
        self._token: str | None = None
        self._lock = threading.RLock()

    # --- life cycle -----------------------------------------------------------------

    def up(self, timeout: float = 30.0) -> Lab:
        """Write the configs, start every front-end, wait for a leader and the bootstrap."""
        try:
            self._prepare()
            for i in range(self.n):
                self.start(i)
            self._wait_ready(time.monotonic() + timeout)
            self._save()
        except BaseException as e:
            tails = self._log_tails()
            self.down()
            if isinstance(e, LabError | TimeoutError):
                raise LabError(f"{e}\n{tails}") from None
            raise
        return self

    def down(self, timeout: float = 10.0) -> None:
        """Stop every front-end: SIGTERM, then SIGKILL after `timeout` (by pid)."""
        with self._lock:
            for c in self._clients.values():
                c.close()
            self._clients.clear()
            for ch in self._channels.values():
                ch.close()
            self._channels.clear()
            for i in range(len(self.fes)):
                self._signal(i, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            for i in range(len(self.fes)):
                self._reap(i, deadline)
            for i in range(len(self.fes)):
                if self.fes[i].pid is not None:
                    self._signal(i, signal.SIGKILL)
                    self._reap(i, time.monotonic() + 5.0)
            if (self.dir / MARKER).exists() and self.fes:
                self._save()

    def __enter__(self) -> Lab:
        if not self.fes:
            self.up()
        return self

    def __exit__(self, *exc) -> None:
        self.down()

    # --- one front-end --------------------------------------------------------------

    def start(self, i: int) -> int:
        """(Re)start front-end i with its config and data; returns its pid."""
        with self._lock:
            fe = self.fes[i]
            if fe.pid is not None and _pid_alive(fe.pid):
                raise LabError(f"front-end {i} is already running (pid {fe.pid})")
            env = dict(os.environ)
            env["PYTHONPATH"] = os.pathsep.join(
                p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p
            )
            env["PYTHONUNBUFFERED"] = "1"
            with open(fe.log, "ab") as log:
                proc = subprocess.Popen(
                    [self.python, "-m", "zones.oned", "--config", fe.config],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    cwd=str(ROOT),
                    env=env,
                )
            self._procs[i] = proc
            fe.pid = proc.pid
            if (self.dir / LAB_FILE).exists():
                self._save()
            return proc.pid

    def add_frontend(self, timeout: float = 15.0) -> int:
        """Grow the zone by one front-end: ServerAdd through the leader, then start it
        with a config listing every current server plus itself. Returns its index (which
        is also its server id only while no server was deleted: see .frontend(i).id)."""
        with self._lock:
            used = {
                int(a.rsplit(":", 1)[1]) for fe in self.fes for a in (fe.grpc, fe.raft, fe.metrics)
            }
            ports = []
            while len(ports) < 3:
                p = free_port()
                if p not in used and p not in ports:
                    ports.append(p)
            i = len(self.fes)
            request = zone_pb2.ServerAddRequest(
                name=f"fe{i}",
                raft_endpoint=f"127.0.0.1:{ports[1]}",
                grpc_endpoint=f"127.0.0.1:{ports[0]}",
            )
            # ServerAdd first records the server (its id), then changes the raft
            # membership, which needs the new server's acknowledgement once the zone
            # has fewer than three servers: so start it as soon as its id is known.
            outcome: dict = {}
            admin = self.client(None, timeout)  # under our lock, before the thread needs it
            adder = threading.Thread(
                target=self._server_add, args=(admin, request, timeout, outcome), daemon=True
            )
            adder.start()
            server_id = self._wait_server_id(admin, request.raft_endpoint, outcome, timeout)
            fe_dir = self.dir / f"fe{i}"
            fe_dir.mkdir(mode=0o700)
            fe = FrontendInfo(
                id=server_id,
                name=request.name,
                grpc=request.grpc_endpoint,
                raft=request.raft_endpoint,
                metrics=f"127.0.0.1:{ports[2]}",
                pid=None,
                data_dir=str(fe_dir / "data"),
                config=str(fe_dir / "oned.toml"),
                log=str(fe_dir / "oned.log"),
            )
            self.fes.append(fe)
            self.n = len(self.fes)
            members = set(outcome["members"]) | {fe.raft}
            Path(fe.config).write_text(
                self._config_text(fe, [f for f in self.fes if f.raft in members], join=True)
            )
            self.start(i)
            self._save()
        adder.join(timeout)
        if "error" in outcome:
            raise LabError(f"ServerAdd of {request.name} failed: {outcome['error']}")
        self.wait_serving(i, timeout)
        return i

    @staticmethod
    def _server_add(admin: Client, request, timeout: float, outcome: dict) -> None:
        try:
            outcome["id"] = admin.zone.ServerAdd(request, timeout=timeout).id
        except grpc.RpcError as e:
            outcome["error"] = e.details()

    @staticmethod
    def _wait_server_id(admin: Client, raft: str, outcome: dict, timeout: float) -> int:
        """The id the zone gave the server being added (from its replicated server list)."""
        deadline = time.monotonic() + timeout
        while True:
            if "error" in outcome:
                raise LabError(f"ServerAdd of {raft} failed: {outcome['error']}")
            try:
                info = admin.zone.Info(zone_pb2.ZoneInfoRequest(), timeout=2.0)
                ids = {s.raft_endpoint: s.id for s in info.servers}
                if raft in ids:
                    outcome["members"] = list(ids)
                    return ids[raft]
            except grpc.RpcError:
                pass
            if time.monotonic() >= deadline:
                raise LabError(f"ServerAdd of {raft}: the server never appeared in the zone")
            time.sleep(0.02)

    def wait_serving(self, i: int, timeout: float = 15.0) -> zone_pb2.ServerStatus:
        """Wait until front-end i answers LocalStatus; LabError (with its log) otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            if not self.running(i):
                fe = self.fes[i]
                raise LabError(f"front-end {i} is not running; log {fe.log}:\n{_tail(fe.log)}")
            try:
                return self.local_status(i)
            except grpc.RpcError as e:
                if time.monotonic() >= deadline:
                    raise LabError(f"front-end {i} does not answer: {e.details()}") from None
            time.sleep(0.05)

    def stop(self, i: int, timeout: float = 10.0) -> None:
        """SIGTERM front-end i, SIGKILL after `timeout`; waits until it is gone."""
        with self._lock:
            self._signal(i, signal.SIGTERM)
            if not self._reap(i, time.monotonic() + timeout):
                self._signal(i, signal.SIGKILL)
                self._reap(i, time.monotonic() + 5.0)
            self._save()

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to front-end i; for SIGKILL/SIGTERM wait until it is gone."""
        with self._lock:
            self._signal(i, sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                if not self._reap(i, time.monotonic() + 10.0):
                    raise LabError(f"front-end {i} did not exit after {signal.Signals(sig).name}")
                self._save()

    def pause(self, i: int) -> None:
        self._signal(i, signal.SIGSTOP)

    def resume(self, i: int) -> None:
        self._signal(i, signal.SIGCONT)

    def running(self, i: int) -> bool:
        pid = self.fes[i].pid
        return pid is not None and _pid_alive(pid)

    # --- information ----------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return [fe.grpc for fe in self.fes]

    @property
    def one_endpoint(self) -> str:
        return ",".join(self.endpoints)

    @property
    def password(self) -> str:
        return self.auth_file.read_text().strip().split(":", 1)[1]

    @property
    def secret(self) -> str:
        return self.secret_file.read_text().strip()

    def frontend(self, i: int) -> FrontendInfo:
        return self.fes[i]

    def describe(self) -> dict:
        """What `python -m zones.lab up` prints."""
        return {
            "dir": str(self.dir),
            "frontends": [asdict(fe) for fe in self.fes],
            "ONE_ENDPOINT": self.one_endpoint,
            "ONE_AUTH": str(self.auth_file),
            "secret_file": str(self.secret_file),
            **self._tls_env(),
        }

    def _tls_env(self) -> dict:
        """The CLI's TLS variables for this lab (zones.cli.common)."""
        if self.tls is None:
            return {}
        env = {"ONE_CA": str(self.pki_dir / "ca.crt")}
        if self.tls == "mutual":
            env["ONE_CERT"] = str(self.pki_dir / "client.crt")
            env["ONE_KEY"] = str(self.pki_dir / "client.key")
        return env

    def local_status(self, i: int, timeout: float = 0.5) -> zone_pb2.ServerStatus:
        """Front-end i's own raft status (peer-authenticated LocalStatus)."""
        return self._status_future(i, timeout).result()

    def _status_future(self, i: int, timeout: float):
        from zones.api.auth import PEER_KEY, sign_peer

        stub = self.channel(i).unary_unary(
            "/one.v1.ZoneService/LocalStatus",
            request_serializer=zone_pb2.LocalStatusRequest.SerializeToString,
            response_deserializer=zone_pb2.ServerStatus.FromString,
        )
        md = [(PEER_KEY, sign_peer(self.secret, i))]
        return stub.future(zone_pb2.LocalStatusRequest(), timeout=timeout, metadata=md)

    def statuses(self, timeout: float = 0.5) -> dict[int, zone_pb2.ServerStatus | None]:
        """LocalStatus of every running front-end (None where it did not answer)."""
        futs = {i: self._status_future(i, timeout) for i in range(self.n) if self.running(i)}
        out: dict[int, zone_pb2.ServerStatus | None] = {}
        for i, fut in futs.items():
            try:
                out[i] = fut.result()
            except grpc.RpcError:
                out[i] = None
        return out

    def leader_index(self, timeout: float = 10.0, exclude: tuple[int, ...] = ()) -> int:
        """Index of the front-end that reports itself leader (highest term wins).

        Raises LabError if none does within `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        seen: dict[int, str] = {}
        while True:
            leaders = []
            for i, st in self.statuses().items():
                seen[i] = "no answer" if st is None else f"{st.state} term {st.term}"
                if st is not None and st.state in ("leader", "solo") and i not in exclude:
                    leaders.append((st.term, i))
            if leaders:
                return max(leaders)[1]
            if time.monotonic() >= deadline:
                states = ", ".join(f"fe{i}: {s}" for i, s in sorted(seen.items())) or "none running"
                raise LabError(f"no leader within {timeout:.1f} s ({states})")
            time.sleep(0.05)

    # --- clients --------------------------------------------------------------------

    def channel(self, i: int) -> grpc.Channel:
        """A cached plain channel to front-end i (no credentials attached)."""
        with self._lock:
            ch = self._channels.get(i)
            if ch is None:
                ch = self._channels[i] = open_channel(self.fes[i].grpc, self.credentials())
            return ch

    def token(self, timeout: float = 10.0) -> str:
        """A oneadmin token (one Login per lab, shared by every client)."""
        with self._lock:
            if self._token is None:
                self._token = self._login(time.monotonic() + timeout)
            return self._token

    def client(self, i: int | None = None, timeout: float = 10.0) -> Client:
        """The Client of front-end i (the leader if None), logged in as oneadmin.

        Has `.kv`, `.zone`, `.auth` stubs, `.token` and `.metadata`. One cached client per
        front-end (its channel reconnects after a restart); closed by down().
        """
        if i is None:
            i = self.leader_index(timeout)
        with self._lock:
            c = self._clients.get(i)
            if c is None:
                c = self._clients[i] = Client(
                    self.fes[i].grpc, token=self.token(timeout), credentials=self.credentials()
                )
            return c

    def _login(self, deadline: float) -> str:
        user, password = "oneadmin", self.password
        last = "no front-end running"
        while True:
            for i in range(self.n):
                if not self.running(i):
                    continue
                try:
                    with Client(self.fes[i].grpc, credentials=self.credentials()) as c:
                        c.login(
                            user, password, timeout=max(0.5, min(3.0, deadline - time.monotonic()))
                        )
                        return c.token
                except grpc.RpcError as e:
                    last = f"fe{i}: {e.code().name}: {e.details()}"
            if time.monotonic() >= deadline:
                raise LabError(f"cannot log in as oneadmin ({last})")
            time.sleep(0.1)

    # --- internals ------------------------------------------------------------------

    def _prepare(self) -> None:
        d = self.dir
        if d.exists() and any(d.iterdir()):
            if not (d / MARKER).exists():
                raise LabError(f"{d} exists and is not a lab directory; use an empty one")
            old = Lab.load(d)
            alive = [fe.pid for fe in old.fes if fe.pid and _pid_alive(fe.pid)]
            if alive:
                raise LabError(
                    f"a lab is already running in {d} (pids {alive}); "
                    f"stop it first: python -m zones.lab down --dir {d}"
                )
            for child in d.iterdir():
                if child.name.startswith("fe") and child.is_dir():
                    shutil.rmtree(child)
                elif child.name in _LAB_FILES:
                    child.unlink()
        d.mkdir(parents=True, exist_ok=True)
        (d / MARKER).write_text("created by zones.lab; `up` may wipe this directory\n")
        _write_private(self.secret_file, secrets.token_hex(32) + "\n")
        _write_private(self.auth_file, f"oneadmin:{secrets.token_urlsafe(18)}\n")
        used: set[int] = set()

        def port() -> int:
            while True:
                p = free_port()
                if p not in used:
                    used.add(p)
                    return p

        if self.tls is not None:
            if self.pki_dir.exists():
                shutil.rmtree(self.pki_dir)
            write_pki(self.pki_dir, [f"fe{i}" for i in range(self.n)] + ["client"])
        self.fes = []
        for i in range(self.n):
            fe_dir = d / f"fe{i}"
            fe_dir.mkdir(mode=0o700)
            self.fes.append(
                FrontendInfo(
                    id=i,
                    name=f"fe{i}",
                    grpc=f"127.0.0.1:{port()}",
                    raft=f"127.0.0.1:{port()}",
                    metrics=f"127.0.0.1:{port()}",
                    pid=None,
                    data_dir=str(fe_dir / "data"),
                    config=str(fe_dir / "oned.toml"),
                    log=str(fe_dir / "oned.log"),
                )
            )
        for fe in self.fes:
            Path(fe.config).write_text(self._config_text(fe))

    def _config_text(
        self, fe: FrontendInfo, servers: list[FrontendInfo] | None = None, join: bool = False
    ) -> str:
        d = RaftConfig()
        raft = {
            "election_timeout_min": d.election_timeout_min,
            "election_timeout_max": d.election_timeout_max,
            "heartbeat": d.heartbeat,
            "leader_fallback_timeout": d.leader_fallback_timeout,
            "snapshot_min_entries": d.snapshot_min_entries,
            "fault_injection": self.fault_injection,
            **self.raft_overrides,
        }
        if join:
            raft["join"] = True
        lines = [
            f"# front-end {fe.id} of the lab in {self.dir} (written by zones.lab)",
            f"server_id = {fe.id}",
            f"name = {_toml_value(fe.name)}",
            f"data_dir = {_toml_value(fe.data_dir)}",
            f"raft_address = {_toml_value(fe.raft)}",
            f"grpc_address = {_toml_value(fe.grpc)}",
            f"metrics_address = {_toml_value(fe.metrics)}",
            f"secret_file = {_toml_value(str(self.secret_file))}",
            f"auth_file = {_toml_value(str(self.auth_file))}",
            f"log_level = {_toml_value(self.log_level)}",
            f"api_process = {_toml_value(self.api_process)}",
            "",
        ]
        for other in self.fes if servers is None else servers:
            lines += [
                "[[servers]]",
                f"id = {other.id}",
                f"name = {_toml_value(other.name)}",
                f"raft = {_toml_value(other.raft)}",
                f"grpc = {_toml_value(other.grpc)}",
                "",
            ]
        lines.append("[raft]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in raft.items()]
        lines += self._tls_lines(fe)
        if self.auth_drivers:
            lines += ["", "[auth]", f"drivers = {json.dumps(list(self.auth_drivers))}"]
        return "\n".join(lines) + "\n"

    def _tls_lines(self, fe: FrontendInfo) -> list[str]:
        if self.tls is None:
            return []
        pki = self.pki_dir
        if not (pki / f"{fe.name}.crt").exists():
            issue(pki, fe.name)
        lines = [
            "",
            "[tls]",
            f"cert = {_toml_value(str(pki / f'{fe.name}.crt'))}",
            f"key = {_toml_value(str(pki / f'{fe.name}.key'))}",
            f"ca = {_toml_value(str(pki / 'ca.crt'))}",
        ]
        if self.tls == "mutual":
            lines.append(f"client_ca = {_toml_value(str(pki / 'ca.crt'))}")
        return lines

    def credentials(self) -> grpc.ChannelCredentials | None:
        """What a client of this lab needs: the lab CA (and, mutual, its certificate)."""
        if self.tls is None:
            return None
        ca = (self.pki_dir / "ca.crt").read_bytes()
        if self.tls == "server":
            return grpc.ssl_channel_credentials(root_certificates=ca)
        return grpc.ssl_channel_credentials(
            root_certificates=ca,
            private_key=(self.pki_dir / "client.key").read_bytes(),
            certificate_chain=(self.pki_dir / "client.crt").read_bytes(),
        )

    def _wait_ready(self, deadline: float) -> None:
        """Until a Login succeeds (a leader exists and bootstrapped); fail fast on a crash."""
        last = "no answer yet"
        while True:
            for i in range(self.n):
                if not self.running(i):
                    code = self._procs[i].poll() if i in self._procs else None
                    raise LabError(
                        f"front-end {i} exited during start-up (exit code {code}); "
                        f"log {self.fes[i].log}:\n{_tail(self.fes[i].log)}"
                    )
            try:
                self._token = self._login(min(deadline, time.monotonic() + 1.0))
                return
            except LabError as e:
                last = str(e)
            if time.monotonic() >= deadline:
                raise LabError(f"the zone did not become ready in time: {last}")

    def _signal(self, i: int, sig: int) -> None:
        fe = self.fes[i]
        if fe.pid is None:
            return
        proc = self._procs.get(i)
        if proc is not None and proc.pid == fe.pid:
            if proc.poll() is None:
                proc.send_signal(sig)
            return
        # Not our child (a lab loaded from lab.json): check the pid is still that oned.
        if _pid_alive(fe.pid) and _pid_is_oned(fe.pid, fe.config):
            os.kill(fe.pid, sig)

    def _reap(self, i: int, deadline: float) -> bool:
        """Wait until front-end i has exited (until `deadline`); True if it has."""
        fe = self.fes[i]
        if fe.pid is None:
            return True
        proc = self._procs.get(i)
        while True:
            if proc is not None and proc.pid == fe.pid:
                gone = proc.poll() is not None
            else:
                gone = not _pid_alive(fe.pid) or not _pid_is_oned(fe.pid, fe.config)
            if gone:
                fe.pid = None
                self._procs.pop(i, None)
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)

    def _log_tails(self) -> str:
        parts = []
        for fe in self.fes:
            if os.path.exists(fe.log):
                parts.append(f"--- {fe.name} ({fe.log}), last lines:\n{_tail(fe.log, 15)}")
        return "\n".join(parts)

    def _save(self) -> None:
        data = self.describe()
        data.update(
            frontends_count=self.n,
            fault_injection=self.fault_injection,
            raft_overrides=self.raft_overrides,
            tls=self.tls,
            auth_drivers=list(self.auth_drivers),
        )
        tmp = self.dir / (LAB_FILE + ".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(tmp, self.dir / LAB_FILE)

    @classmethod
    def load(cls, dir: str | os.PathLike) -> Lab:
        """The lab described by DIR/lab.json (to stop it, or to look at it)."""
        path = Path(dir) / LAB_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LabError(f"no lab in {dir} ({path} does not exist)") from None
        except (OSError, ValueError) as e:
            raise LabError(f"cannot read {path}: {e}") from None
        lab = cls(
            dir,
            frontends=data["frontends_count"],
            fault_injection=data.get("fault_injection", False),
            raft_overrides=data.get("raft_overrides"),
            tls=data.get("tls"),
            auth_drivers=tuple(data.get("auth_drivers", ())),
        )
        lab.fes = [FrontendInfo(**fe) for fe in data["frontends"]]
        return lab


# --- command line ---------------------------------------------------------------------


def _new_lab(args) -> Lab:
    overrides = {"replica": "local"} if args.replica == "local" else {}
    if args.replica == "local" and args.frontends != 1:
        raise LabError("--replica local runs a single front-end: use --frontends 1")
    return Lab(
        args.dir,
        frontends=args.frontends,
        fault_injection=args.fault_injection,
        raft_overrides=overrides,
        tls=args.tls,
    )


def _cmd_up(args) -> int:
    lab = _new_lab(args)
    lab.up(timeout=args.timeout)
    print(json.dumps(lab.describe()))
    return 0


def _cmd_down(args) -> int:
    lab = Lab.load(args.dir)
    lab.down(timeout=args.timeout)
    left = [fe.pid for fe in lab.fes if fe.pid is not None]
    if left:
        print(f"lab: could not stop pids {left}", file=sys.stderr)
        return 1
    print(f"lab: stopped {len(lab.fes)} front-end(s) in {lab.dir}", file=sys.stderr)
    return 0


def _cmd_run(args) -> int:
    from zones.cli.onezone import render_show

    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    lab = _new_lab(args)
    print(f"lab: starting {args.frontends} front-end(s) in {lab.dir} ...", flush=True)
    try:
        lab.up(timeout=args.timeout)
        c = lab.client(lab.leader_index())
        info = c.zone.Info(zone_pb2.ZoneInfoRequest(), timeout=5.0)
        print(render_show(info, plain=not sys.stdout.isatty()))
        print(
            "\nThe zone is running. In another shell:\n\n"
            f"    export ONE_ENDPOINT={lab.one_endpoint}\n"
            f"    export ONE_AUTH={lab.auth_file}\n"
            "    .venv/bin/onezone show\n"
            "    .venv/bin/onezone list\n\n"
            f"Logs: {lab.dir}/fe<i>/oned.log   Stop: Ctrl-C\n",
            flush=True,
        )
        dead: set[int] = set()
        while not stop.wait(1.0):
            for i in range(lab.n):
                if i not in dead and not lab.running(i):
                    dead.add(i)
                    print(f"lab: front-end {i} is not running (see {lab.fes[i].log})", flush=True)
    finally:
        print("lab: stopping ...", flush=True)
        lab.down()
        print("lab: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zones.lab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name in ("up", "run"):
        p = sub.add_parser(name, help=f"{name} a lab zone")
        p.add_argument("--frontends", type=int, default=3, choices=(1, 3, 5))
        p.add_argument("--dir", required=True)
        p.add_argument("--timeout", type=float, default=60.0, help="start-up timeout (s)")
        p.add_argument("--fault-injection", action="store_true", help=argparse.SUPPRESS)
        p.add_argument(
            "--replica",
            choices=("raft", "local"),
            default="raft",
            help="local: single-server test/dev mode without raft (with --frontends 1)",
        )
        p.add_argument(
            "--tls",
            choices=("server", "mutual"),
            default=None,
            help="serve gRPC over TLS with a lab CA in DIR/pki (mutual: clients need "
            "DIR/pki/client.crt too); prints ONE_CA (ONE_CERT, ONE_KEY) for the CLIs",
        )
    p = sub.add_parser("down", help="stop the lab zone in DIR")
    p.add_argument("--dir", required=True)
    p.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    handler = {"up": _cmd_up, "down": _cmd_down, "run": _cmd_run}[args.cmd]
    try:
        return handler(args)
    except LabError as e:
        print(f"lab: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
