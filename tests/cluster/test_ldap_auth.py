"""The ldap login driver against a real slapd (Debian's package) on 127.0.0.1.

The `slapd` fixture (tests/conftest.py, tests/ldapkit.py) starts one private server for
this module: users alice (groups admins, devs), bob (devs, ops), carol (none) under
ou=people, a service account, and ldap + ldaps listeners.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

from tests.conftest import config_dict
from tests.ldapkit import GROUPS, PEOPLE, SERVICE_DN, SUFFIX, group_dn, user_dn
from zones.authdrivers import BAD_LOGIN, AuthFailed, Credentials, Identity, drivers_from_config
from zones.authdrivers.ldap import LDAPDriver
from zones.config import LDAPConfig, free_port, from_dict

ADMINS, DEVS, OPS = 100, 101, 102
MAPPING = ((group_dn("devs"), DEVS), (group_dn("admins"), ADMINS), (group_dn("ops"), OPS))


def _driver(uri: str, **over) -> LDAPDriver:
    password = over.pop("bind_password", None)
    fields = {"uri": uri, "base_dn": SUFFIX, "group_base_dn": GROUPS, "groups": MAPPING}
    fields.update(over)
    return LDAPDriver(LDAPConfig(**fields), bind_password=password)


def _refused(driver: LDAPDriver, username: str, password: str, user=None) -> str:
    with pytest.raises(AuthFailed) as err:
        driver.authenticate(Credentials(username, password), user)
    message = str(err.value)
    if password:
        assert password not in message  # the secret is never echoed
    return message


def test_good_password_returns_dn_and_mapped_groups(slapd):
    driver = _driver(slapd.uri)
    ident = driver.authenticate(Credentials("alice", "alice-pw-1"), None)
    # Primary first: the mapping's order, not the directory's.
    assert ident == Identity("alice", "ldap", user_dn("alice"), (DEVS, ADMINS))
    assert driver.authenticate(Credentials("bob", "bob-pw-2"), None).groups == (DEVS, OPS)
    assert driver.authenticate(Credentials("carol", "carol-pw-3"), None).groups == ()
    # Another order of the mapping makes admins primary; unmapped groups are ignored.
    other = _driver(slapd.uri, groups=((group_dn("admins"), ADMINS),))
    assert other.authenticate(Credentials("alice", "alice-pw-1"), None).groups == (ADMINS,)
    # Group DNs in the config are matched whatever their case and spacing.
    loose = _driver(slapd.uri, groups=(("CN=Devs, OU=Groups, DC=Example, DC=Org", DEVS),))
    assert loose.authenticate(Credentials("bob", "bob-pw-2"), None).groups == (DEVS,)


def test_existing_zone_user(slapd):
    driver = _driver(slapd.uri)
    record = {"id": 9, "name": "alice", "password": user_dn("alice"), "auth_driver": "ldap"}
    ident = driver.authenticate(Credentials("alice", "alice-pw-1"), record)
    assert ident.stored_secret == user_dn("alice")
    # A zone user of another driver is never taken over by a directory entry of its name.
    core = {"id": 0, "name": "alice", "password": "scrypt$...", "auth_driver": "core"}
    assert _refused(driver, "alice", "alice-pw-1", core) == BAD_LOGIN


def test_bad_password_and_unknown_user(slapd):
    driver = _driver(slapd.uri)
    assert _refused(driver, "alice", "alice-pw-2") == BAD_LOGIN
    assert _refused(driver, "alice", "bob-pw-2") == BAD_LOGIN
    assert _refused(driver, "nobody", "alice-pw-1") == BAD_LOGIN
    assert _refused(driver, "", "alice-pw-1") == BAD_LOGIN
    # The entry must hold the name exactly: uid matching is case-insensitive in LDAP, but
    # "Alice" must not become a second zone user of alice's entry.
    assert _refused(driver, "Alice", "alice-pw-1") == BAD_LOGIN


def test_empty_password_is_refused(slapd):
    # The danger: this slapd (like permissive directories) answers a bind with a DN and
    # an empty password with success, as an anonymous session.
    ldapwhoami = shutil.which("ldapwhoami")
    assert ldapwhoami, "ldapwhoami missing: apt-get install ldap-utils"
    out = subprocess.run(
        [ldapwhoami, "-x", "-H", slapd.uri, "-D", user_dn("alice"), "-w", ""],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.returncode == 0 and out.stdout.strip() == "anonymous", out
    driver = _driver(slapd.uri)
    assert _refused(driver, "alice", "") == BAD_LOGIN


@pytest.mark.parametrize(
    "username",
    ["*", "al*", "*)(uid=*", "alice)(uid=*", "*)(|(uid=*", "alice)(|(objectClass=*", "\\2a"],
)
def test_filter_injection(slapd, username):
    """Each name is searched as a literal: unescaped, "*" and "al*" would match entries
    (several: a different message; or alice, whose password is given) and the others
    would rewrite the filter."""
    driver = _driver(slapd.uri)
    assert _refused(driver, username, "alice-pw-1") == BAD_LOGIN


def test_names_with_filter_characters_log_in(slapd):
    """Escaping is right, not merely restrictive: a uid made of filter metacharacters
    finds its own entry (and nothing else)."""
    name = "o*(brien)\\x"
    slapd.add_user(name, "obrien-pw-1")
    driver = _driver(slapd.uri)
    ident = driver.authenticate(Credentials(name, "obrien-pw-1"), None)
    assert ident.username == name
    assert ident.stored_secret.endswith(f",{PEOPLE}") and ident.groups == ()
    assert _refused(driver, name, "alice-pw-1") == BAD_LOGIN


def test_ambiguous_user_attribute(slapd):
    slapd.add_user("twin-a", "twin-pw-1", {"cn": "twin"})
    slapd.add_user("twin-b", "twin-pw-2", {"cn": "twin"})
    driver = _driver(slapd.uri, user_attribute="cn")
    assert "several LDAP entries" in _refused(driver, "twin", "twin-pw-1")


def test_service_account_from_the_config(slapd, tmp_path):
    pw_file = tmp_path / "ldap.pw"
    pw_file.write_text(slapd.service_password + "\n")
    os.chmod(pw_file, 0o600)
    ldap = {
        "uri": slapd.uri,
        "base_dn": PEOPLE,
        "bind_dn": SERVICE_DN,
        "bind_password_file": str(pw_file),
        "group_base_dn": GROUPS,
        "timeout": 2,
        "groups": {group_dn("ops"): OPS},
    }
    cfg = from_dict(config_dict(tmp_path, auth={"drivers": ["ldap"], "ldap": ldap}))
    drivers = drivers_from_config(cfg.auth)
    assert set(drivers) == {"core", "ldap"}
    ident = drivers["ldap"].authenticate(Credentials("bob", "bob-pw-2"), None)
    assert ident == Identity("bob", "ldap", user_dn("bob"), (OPS,))
    assert slapd.service_password not in repr(drivers["ldap"])
    wrong = _driver(slapd.uri, bind_dn=SERVICE_DN, bind_password="not-the-password")
    message = _refused(wrong, "bob", "bob-pw-2")
    assert "refused the zone's service account" in message
    assert "not-the-password" not in message


def test_ldaps(slapd):
    driver = _driver(slapd.ldaps_uri, ca_file=slapd.ca_file)
    ident = driver.authenticate(Credentials("alice", "alice-pw-1"), None)
    assert ident.stored_secret == user_dn("alice")
    # Without the CA that signed the server certificate, the connection is refused.
    untrusted = _driver(slapd.ldaps_uri)
    message = _refused(untrusted, "alice", "alice-pw-1")
    assert "LDAP server unreachable" in message and "CERTIFICATE_VERIFY_FAILED" in message


def test_unreachable_server_fails_fast():
    refused = _driver(f"ldap://127.0.0.1:{free_port()}", timeout=1)
    start = time.monotonic()
    message = _refused(refused, "alice", "alice-pw-1")
    assert message.startswith("LDAP server unreachable: ldap://127.0.0.1:")
    assert "refused" in message.lower()
    assert time.monotonic() - start < 2

    # A server that accepts the connection but never answers: the receive timeout.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        driver = _driver(f"ldap://127.0.0.1:{port}", timeout=1)
        start = time.monotonic()
        message = _refused(driver, "alice", "alice-pw-1")
        elapsed = time.monotonic() - start
    finally:
        silent.close()
    assert message == f"LDAP server unreachable: ldap://127.0.0.1:{port}: no answer (timed out)"
    assert elapsed < 3, elapsed


def test_server_stopped_while_in_use(tmp_path):
    """A slapd that goes away between logins: the next login says unreachable."""
    from tests.ldapkit import Slapd

    server = Slapd(tmp_path / "slapd").start()
    try:
        driver = _driver(server.uri, timeout=1)
        assert driver.authenticate(Credentials("carol", "carol-pw-3"), None).driver == "ldap"
        pid = server.pid
    finally:
        server.stop()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped by its PID, and reaped
    assert "LDAP server unreachable" in _refused(driver, "carol", "carol-pw-3")


def test_missing_slapd_fails_loudly(tmp_path, monkeypatch):
    """Without the packages the kit raises (the tests fail, never skip) and says how to
    install them."""
    import tests.ldapkit as kit

    monkeypatch.setattr(kit.shutil, "which", lambda *args, **kwargs: None)
    with pytest.raises(kit.SlapdMissing, match="apt-get install .*slapd ldap-utils"):
        kit.Slapd(tmp_path / "slapd").start()
