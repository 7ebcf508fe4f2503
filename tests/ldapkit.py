"""A private OpenLDAP server (Debian's slapd) for tests, on 127.0.0.1.

`Slapd(workdir).start()` writes a slapd.conf in `workdir` (mdb backend, the core, cosine,
inetorgperson and nis schemas of /etc/ldap/schema), loads the seed entries with
``slapadd`` (offline, before the server starts), starts ``slapd -d 0`` (``-d`` keeps it in
the foreground, so the PID we hold is the server's), waits until it answers a bind, and
`stop()` ends it by that PID. With ``tls=True`` it also listens on ldaps with a
certificate signed by a throwaway CA (`ca_file`).

Seed: ``dc=example,dc=org`` with ``ou=people`` (inetOrgPerson users, userPassword as
{SSHA} made by ``slappasswd``), ``ou=groups`` (groupOfNames) and a service account
``cn=one-service`` that may read everything but passwords. Unauthenticated binds (DN,
empty password) are allowed, as on permissive servers.

Needs the packages ``slapd`` and ``ldap-utils``: scripts/setup.sh installs them; without
them the kit raises SlapdMissing with the command to run (tests never skip for it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from zones.config import free_port
from zones.pki import write_pki

SUFFIX = "dc=example,dc=org"
ROOT_DN = f"cn=admin,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
GROUPS = f"ou=groups,{SUFFIX}"
SERVICE_DN = f"cn=one-service,{SUFFIX}"
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")
SCHEMA_DIR = Path("/etc/ldap/schema")
MODULE_DIR = Path("/usr/lib/ldap")
INSTALL = (
    "install them with `DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "--no-install-recommends slapd ldap-utils` (scripts/setup.sh does it)"
)


def _listening(port: int) -> bool:
    """True once a socket listens on 127.0.0.1:port (/proc/net/tcp, state 0A)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        return any(
            fields[1] == wanted and fields[3] == "0A"
            for fields in (line.split() for line in f.readlines()[1:])
        )


class SlapdMissing(RuntimeError):
    """slapd or its tools are not installed."""


def _tool(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if path is None:
        raise SlapdMissing(f"{name} is not installed: the LDAP tests need a real slapd; {INSTALL}")
    return path


def user_dn(uid: str) -> str:
    return f"uid={uid},{PEOPLE}"


def group_dn(cn: str) -> str:
    return f"cn={cn},{GROUPS}"


@dataclass
class Slapd:
    workdir: Path
    # uid -> password
    users: dict[str, str] = field(
        default_factory=lambda: {"alice": "alice-pw-1", "bob": "bob-pw-2", "carol": "carol-pw-3"}
    )
    # group cn -> member uids (groupOfNames needs at least one member)
    groups: dict[str, list[str]] = field(
        default_factory=lambda: {"admins": ["alice"], "devs": ["alice", "bob"], "ops": ["bob"]}
    )
    tls: bool = False
    root_password: str = "root-pw-" + "r" * 16
    service_password: str = "service-pw-" + "s" * 16
    start_timeout: float = 15.0
    port: int = 0
    tls_port: int = 0
    process: subprocess.Popen | None = None
    ca_file: str | None = None

    @property
    def uri(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_uri(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    # --- set-up ------------------------------------------------------------------------

    def _hash(self, password: str) -> str:
        """{SSHA} hash by slappasswd, the password passed in a 0600 file (not argv)."""
        pw_file = self.workdir / "pw.tmp"
        fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password)  # no newline: slappasswd -T hashes the whole file
        try:
            out = subprocess.run(
                [_tool("slappasswd"), "-h", "{SSHA}", "-T", str(pw_file)],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            )
        finally:
            pw_file.unlink()
        return out.stdout.strip()

    def _write_tls(self) -> tuple[Path, Path]:
        paths = write_pki(self.workdir, ["slapd"], days=1)
        self.ca_file = paths["ca"]
        return Path(paths["slapd.crt"]), Path(paths["slapd.key"])

    def _write_config(self) -> Path:
        db = self.workdir / "db"
        db.mkdir(exist_ok=True)
        lines = [f"include {SCHEMA_DIR / (s + '.schema')}" for s in SCHEMAS]
        lines += [
            f"pidfile {self.workdir / 'slapd.pid'}",
            f"argsfile {self.workdir / 'slapd.args'}",
            f"modulepath {MODULE_DIR}",
            "moduleload back_mdb",
            # Accept unauthenticated binds (a DN with an empty password) as anonymous, as
            # permissive directories do (slapd refuses them by default), so the tests
            # show that the ldap driver refuses empty passwords by itself.
            "allow bind_anon_dn",
        ]
        if self.tls:
            cert, key = self._write_tls()
            lines += [f"TLSCertificateFile {cert}", f"TLSCertificateKeyFile {key}"]
        lines += [
            "database mdb",
            "maxsize 16777216",
            f'suffix "{SUFFIX}"',
            f'rootdn "{ROOT_DN}"',
            f"rootpw {self._hash(self.root_password)}",
            f"directory {db}",
            "access to attrs=userPassword",
            "    by self write",
            "    by anonymous auth",
            "    by * none",
            "access to *",
            "    by * read",
        ]
        conf = self.workdir / "slapd.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def _seed_ldif(self) -> str:
        entries = [
            [f"dn: {SUFFIX}", "objectClass: dcObject", "objectClass: organization"]
            + ["dc: example", "o: Example"],
            [f"dn: {PEOPLE}", "objectClass: organizationalUnit", "ou: people"],
            [f"dn: {GROUPS}", "objectClass: organizationalUnit", "ou: groups"],
            [
                f"dn: {SERVICE_DN}",
                "objectClass: organizationalRole",
                "objectClass: simpleSecurityObject",
                "cn: one-service",
                f"userPassword: {self._hash(self.service_password)}",
            ],
        ]
        for uid, password in self.users.items():
            entries.append(
                [
                    f"dn: {user_dn(uid)}",
                    "objectClass: inetOrgPerson",
                    f"uid: {uid}",
                    f"cn: {uid}",
                    f"sn: {uid}",
                    f"userPassword: {self._hash(password)}",
                ]
            )
        for cn, members in self.groups.items():
            entries.append(
                [f"dn: {group_dn(cn)}", "objectClass: groupOfNames", f"cn: {cn}"]
                + [f"member: {user_dn(m)}" for m in members]
            )
        return "\n\n".join("\n".join(e) for e in entries) + "\n"

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> Slapd:
        slapd = _tool("slapd")
        _tool("slappasswd")
        slapadd = _tool("slapadd")
        for schema in SCHEMAS:
            if not (SCHEMA_DIR / f"{schema}.schema").is_file():
                raise SlapdMissing(f"{SCHEMA_DIR}/{schema}.schema is missing; {INSTALL}")
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self._write_config()
        seed = self.workdir / "seed.ldif"
        seed.write_text(self._seed_ldif())
        subprocess.run(
            [slapadd, "-q", "-f", str(conf), "-l", str(seed)],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        last_error = ""
        for _ in range(3):  # a free port can be taken before slapd binds it: retry
            self.port = free_port()
            urls = [f"ldap://127.0.0.1:{self.port}/"]
            if self.tls:
                self.tls_port = free_port()
                urls.append(f"ldaps://127.0.0.1:{self.tls_port}/")
            log = open(self.workdir / "slapd.log", "wb")  # Popen hands slapd its own copy
            try:
                self.process = subprocess.Popen(
                    [slapd, "-f", str(conf), "-h", " ".join(urls), "-d", "0"],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            finally:
                log.close()
            if self._wait_ready():
                return self
            last_error = self.log_tail()
            self.stop()
        raise RuntimeError(f"slapd did not start: {last_error}")

    def _wait_ready(self) -> bool:
        """True once a root bind succeeds; False if slapd exits; fails at the deadline."""
        import ldap3

        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            if not _listening(self.port):
                # Connecting before slapd listens can connect the socket to itself (the
                # port is in the ephemeral range): the bind then reads its own request.
                time.sleep(0.02)
                continue
            server = ldap3.Server(
                "127.0.0.1", port=self.port, get_info=ldap3.NONE, connect_timeout=1
            )
            conn = ldap3.Connection(server, ROOT_DN, self.root_password, receive_timeout=2)
            try:
                if conn.bind():
                    return True
            except ldap3.core.exceptions.LDAPException:
                pass
            finally:
                if not conn.closed:
                    conn.unbind()
            time.sleep(0.02)
        self.stop()
        raise AssertionError(
            f"slapd (pid {self.pid}) did not answer on {self.uri} within "
            f"{self.start_timeout} s: {self.log_tail()}"
        )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "slapd.log").read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the slapd we started (by its PID), SIGKILL if it does not exit."""
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout)

    # --- helpers for tests -------------------------------------------------------------------

    def admin(self):
        """An ldap3 connection bound as the root DN (to change entries at run time)."""
        import ldap3

        server = ldap3.Server("127.0.0.1", port=self.port, get_info=ldap3.NONE, connect_timeout=2)
        conn = ldap3.Connection(server, ROOT_DN, self.root_password, receive_timeout=5)
        if not conn.bind():
            raise AssertionError(f"root bind to {self.uri} failed: {conn.result}")
        return conn

    def add_user(self, uid: str, password: str, attrs: dict | None = None) -> str:
        """Add an inetOrgPerson under ou=people (escaping the uid in its DN)."""
        from ldap3.utils.dn import escape_rdn

        dn = f"uid={escape_rdn(uid)},{PEOPLE}"
        conn = self.admin()
        try:
            values = {"uid": uid, "cn": uid, "sn": uid, "userPassword": self._hash(password)}
            values.update(attrs or {})
            if not conn.add(dn, ["inetOrgPerson"], values):
                raise AssertionError(f"adding {dn!r} failed: {conn.result}")
        finally:
            conn.unbind()
        return dn

    def __enter__(self) -> Slapd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
