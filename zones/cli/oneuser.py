"""oneuser: manage users (OpenNebula's `oneuser`).

    oneuser list [-l COLUMNS]                  ID NAME GROUP AUTH VMS MEMORY CPU
    oneuser show [user]                        (default: yourself)
    oneuser create <name> [password] [--driver core|ssh|x509|ldap] [--group g[,g2...]]
                                       [--ssh-key PUBLIC_KEY_FILE]
    oneuser delete <user>...
    oneuser passwd <user> [password] [--ssh-key PUBLIC_KEY_FILE]
    oneuser chgrp <user> <group>               (the primary group)
    oneuser addgroup <user> <group>            (a secondary group)
    oneuser delgroup <user> <group>
    oneuser enable <user>...  /  oneuser disable <user>...
    oneuser update <user> [FILE|-] [--append]  (the user template; no FILE: $EDITOR)
    oneuser chauth <user> <driver> [password] [--ssh-key PUBLIC_KEY_FILE]
    oneuser quota <user> [FILE|-]              (quota template; no FILE: $EDITOR)
    oneuser defaultquota [FILE|-]
    oneuser login <name> [--ttl SECONDS] [--ssh-key PRIVATE_KEY]   (prints a token)
    oneuser token-delete                       (revokes the token in use; alias logout)

Users and groups are named by id or by name. Global options as onezone: --endpoint,
--user, --password, --token, -j/--json, -y/--yaml ($ONE_ENDPOINT, $ONE_AUTH, $ONE_TOKEN).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any

from zones.api.gen import auth_pb2, common_pb2, quota_pb2, user_pb2
from zones.cli import pool
from zones.cli import tenancy as t
from zones.cli.common import (
    CliError,
    Session,
    credentials,
    emit,
    message_to_dict,
    render,
    table,
)

PROG = "oneuser"
DRIVERS = ("core", "ssh", "x509", "ldap")
DEFAULT_COLUMNS = ("ID", "NAME", "GROUP", "AUTH", "VMS", "MEMORY", "CPU")
# Cell of each column from (user, (vms, memory, cpu) quota cells).
_CELLS: dict[str, Callable[[user_pb2.User, tuple[str, str, str]], Any]] = {
    "ID": lambda u, q: u.id,
    "NAME": lambda u, q: u.name,
    "ENAB": lambda u, q: "yes" if u.enabled else "no",
    "GROUP": lambda u, q: u.gname or u.gid,
    "AUTH": lambda u, q: u.auth_driver,
    "VMS": lambda u, q: q[0],
    "MEMORY": lambda u, q: q[1],
    "CPU": lambda u, q: q[2],
}
_RIGHT = ("ID", "VMS", "MEMORY", "CPU")


# --- rendering ----------------------------------------------------------------------


def list_columns(spec: str | None) -> tuple[str, ...]:
    return pool.parse_columns(spec, _CELLS, DEFAULT_COLUMNS)


def list_rows(
    users: list[user_pb2.User],
    default_quota: str | None = None,
    columns: tuple[str, ...] = DEFAULT_COLUMNS,
) -> list[list[Any]]:
    rows = []
    for u in users:
        cells = t.list_quota_cells(u.quota, default_quota, u.id)
        rows.append([_CELLS[c](u, cells) for c in columns])
    return rows


def list_table(
    users: list[user_pb2.User],
    default_quota: str | None = None,
    columns: tuple[str, ...] = DEFAULT_COLUMNS,
):
    return table(columns, list_rows(users, default_quota, columns), right=_RIGHT)


def user_dict(user: user_pb2.User) -> dict:
    data = message_to_dict(user)
    data["quotas"] = t.quota_dict(user.quota)
    return data


def show_renderables(user: user_pb2.User, default_quota: str | None = None) -> list[Any]:
    info: list[tuple[str, Any]] = [
        ("ID", user.id),
        ("NAME", user.name),
        ("GROUP", user.gname or user.gid),
    ]
    if len(user.groups) > 1:
        info.append(("SECONDARY GROUPS", ",".join(str(g) for g in user.groups)))
    if user.admin_of:
        info.append(("ADMIN OF GROUPS", ",".join(str(g) for g in user.admin_of)))
    info += [("AUTH_DRIVER", user.auth_driver), ("ENABLED", t.yes_no(user.enabled))]
    out: list[Any] = [
        t.section(f"USER {user.id} INFORMATION"),
        t.attrs(info),
        "",
        t.section("USER TEMPLATE"),
    ]
    if user.template.strip():
        out.append(t.template_text(user.template))
    out += t.quota_renderables(user.quota, default_quota, user.id)
    return out


def render_show(user: user_pb2.User, default_quota: str | None = None) -> str:
    return render(show_renderables(user, default_quota), plain=True)


# --- commands -----------------------------------------------------------------------


def _info(session: Session, uid: int) -> user_pb2.User:
    request = user_pb2.UserInfoRequest(id=uid)
    return session.call(lambda c: t.users(c).Info(request, timeout=session.timeout))


def _write(session: Session, method: str, request) -> Any:
    return session.call(lambda c: getattr(t.users(c), method)(request, timeout=session.timeout))


def cmd_list(args, session: Session) -> int:
    columns = list_columns(args.list)
    users = t.list_users(session)
    if args.json or args.yaml:
        emit(args, [user_dict(u) for u in users], lambda: [])
        return 0
    defaults = t.default_quota(session, quota_pb2.USER)
    emit(args, None, lambda: [list_table(users, defaults, columns)])
    return 0


def cmd_show(args, session: Session) -> int:
    uid = -1 if args.target is None else t.resolve_user(session, args.target)
    user = _info(session, uid)
    if args.json or args.yaml:
        emit(args, user_dict(user), lambda: [])
        return 0
    defaults = t.default_quota(session, quota_pb2.USER)
    emit(args, None, lambda: show_renderables(user, defaults))
    return 0


def _secret(args, driver: str, what: str) -> str:
    """The password / public key of create, passwd and chauth."""
    if getattr(args, "ssh_key", None):
        if args.password_arg is not None:
            raise CliError("give either a password or --ssh-key, not both")
        if driver not in ("", "ssh"):
            raise CliError(f"--ssh-key sets an ssh public key, not a {driver} secret")
        return t.read_public_key(args.ssh_key)
    if args.password_arg is not None:
        return args.password_arg
    return t.ask_secret(f"{what[:1].upper()}{what[1:]}: ", what)


def _group_list(session: Session, spec: str | None) -> list[int]:
    if spec is None:
        return []
    refs = [r for r in spec.split(",") if r.strip()]
    if not refs:
        raise CliError("--group needs a group id or name")
    return [t.resolve_group(session, r) for r in refs]


def cmd_create(args, session: Session) -> int:
    driver = args.driver or ("ssh" if args.ssh_key else "core")
    secret = _secret(args, driver if args.driver else "", "password")
    gids = _group_list(session, args.group)
    request = user_pb2.UserAllocateRequest(
        name=args.name, password=secret, driver=driver, request_id=t.request_id()
    )
    if gids:
        request.gid = gids[0]
        request.groups.extend(gids[1:])
    reply = _write(session, "Allocate", request)
    emit(args, {"id": reply.id}, lambda: [f"ID: {reply.id}"])
    return 0


def cmd_delete(args, session: Session) -> int:
    for ref in args.users:
        uid = t.resolve_user(session, ref)
        _write(session, "Delete", common_pb2.ObjectRequest(id=uid, request_id=t.request_id()))
        t.done(args, {"id": uid, "deleted": True}, f"USER {uid}: deleted")
    return 0


def cmd_passwd(args, session: Session) -> int:
    uid = t.resolve_user(session, args.target)
    secret = _secret(args, "", "new password")
    request = user_pb2.UserPasswdRequest(id=uid, password=secret, request_id=t.request_id())
    _write(session, "Passwd", request)
    t.done(args, {"id": uid, "passwd": True}, f"USER {uid}: password changed")
    return 0


def _pair(args, session: Session, method: str, verb: str) -> int:
    uid = t.resolve_user(session, args.target)
    gid = t.resolve_group(session, args.group)
    _write(session, method, common_pb2.PairRequest(id=uid, other=gid, request_id=t.request_id()))
    t.done(args, {"id": uid, "group": gid, method.lower(): True}, f"USER {uid}: {verb}")
    return 0


def cmd_chgrp(args, session: Session) -> int:
    return _pair(args, session, "Chgrp", "Group changed")


def cmd_addgroup(args, session: Session) -> int:
    return _pair(args, session, "AddGroup", "Group added")


def cmd_delgroup(args, session: Session) -> int:
    return _pair(args, session, "DelGroup", "Group deleted")


def _enable(args, session: Session, enabled: bool) -> int:
    for ref in args.users:
        uid = t.resolve_user(session, ref)
        request = user_pb2.UserEnableRequest(id=uid, enabled=enabled, request_id=t.request_id())
        _write(session, "Enable", request)
        word = "enabled" if enabled else "disabled"
        t.done(args, {"id": uid, "enabled": enabled}, f"USER {uid}: {word}")
    return 0


def cmd_enable(args, session: Session) -> int:
    return _enable(args, session, True)


def cmd_disable(args, session: Session) -> int:
    return _enable(args, session, False)


def cmd_update(args, session: Session) -> int:
    uid = t.resolve_user(session, args.target)
    text = t.template_input(args.file, lambda: _info(session, uid).template, "user template")
    request = common_pb2.UpdateRequest(
        id=uid, template=text, append=args.append, request_id=t.request_id()
    )
    _write(session, "Update", request)
    t.done(args, {"id": uid, "updated": True}, f"USER {uid}: template updated")
    return 0


def cmd_chauth(args, session: Session) -> int:
    uid = t.resolve_user(session, args.target)
    driver = args.driver
    if args.ssh_key:
        secret = _secret(args, driver, "secret")
    else:
        secret = args.password_arg or ""  # empty: keep the stored secret
    request = user_pb2.UserChauthRequest(
        id=uid, driver=driver, password=secret, request_id=t.request_id()
    )
    _write(session, "Chauth", request)
    t.done(args, {"id": uid, "driver": driver}, f"USER {uid}: authentication driver changed")
    return 0


def _login_password(args) -> str:
    """The password of the user logging in: --password, else ONE_AUTH's when it is that
    user's, else asked on the terminal."""
    if getattr(args, "password", None) is not None:
        return args.password
    if not getattr(args, "user", None):
        try:
            name, secret = credentials(None, None)
        except CliError:
            name, secret = None, None
        if name == args.name:
            return secret
    return t.ask_secret(f"Password for {args.name}: ", f"password for {args.name!r}")


def _ssh_login_secret(key_path: str, name: str) -> str:
    try:
        from zones.authdrivers.ssh import sign_login
    except ImportError:
        raise CliError("ssh login is not available (zones.authdrivers.ssh is missing)") from None
    try:
        return sign_login(key_path, name)
    except FileNotFoundError:
        raise CliError(f"{key_path}: no such file") from None
    except OSError as e:
        raise CliError(f"cannot read {key_path}: {e.strerror}") from None
    except ValueError as first:
        if not sys.stdin.isatty():
            raise CliError(str(first)) from None
    passphrase = t.ask_secret(f"Passphrase for {key_path}: ", "passphrase")
    try:
        return sign_login(key_path, name, passphrase=passphrase)
    except ValueError as e:
        raise CliError(str(e)) from None


def cmd_login(args, session: Session) -> int:
    if args.ttl is not None and not 0 < args.ttl < 2**32:
        raise CliError(f"--ttl must be a positive number of seconds, got {args.ttl}")
    if args.ssh_key:
        secret = _ssh_login_secret(os.path.expanduser(args.ssh_key), args.name)
    else:
        secret = _login_password(args)
    request = auth_pb2.LoginRequest(
        username=args.name, password=secret, ttl_seconds=args.ttl or 0, request_id=t.request_id()
    )
    reply = session.call(lambda c: c.auth.Login(request, timeout=session.timeout), login=False)
    data = {
        "user": args.name,
        "user_id": reply.user_id,
        "token": reply.token,
        "expires_unix_ms": reply.expires_unix_ms,
    }
    emit(args, data, lambda: [reply.token])
    return 0


def cmd_token_delete(args, session: Session) -> int:
    if session.token is None:
        raise CliError("token-delete revokes the token in use: give --token or set ONE_TOKEN")
    request = auth_pb2.LogoutRequest(request_id=t.request_id())
    session.call(lambda c: c.auth.Logout(request, timeout=session.timeout))
    t.done(args, {"token_deleted": True}, "token revoked")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage users.")

    p = t.subparser(sub, "list", "list users (ID NAME GROUP AUTH VMS MEMORY CPU)", cmd_list)
    p.add_argument(
        "-l",
        "--list",
        metavar="COLUMNS",
        help=f"comma-separated columns (of {','.join(_CELLS)})",
    )
    t.finish(p)

    p = t.subparser(sub, "show", "show a user (default: yourself) and its quotas", cmd_show)
    p.add_argument("target", nargs="?", metavar="user", help="user id or name")
    t.finish(p)

    p = t.subparser(sub, "create", "create a user; prints its ID", cmd_create)
    p.add_argument("name")
    p.add_argument(
        "password_arg",
        nargs="?",
        metavar="password",
        help="password (core), DN (x509, ldap); asked if missing",
    )
    p.add_argument("--driver", choices=DRIVERS, help="authentication driver (default core)")
    p.add_argument(
        "--group",
        metavar="GROUP[,GROUP...]",
        help="primary group, then secondary ones (id or name; default users)",
    )
    p.add_argument(
        "--ssh-key",
        metavar="FILE",
        help="OpenSSH public key file: the user logs in with its private key",
    )
    t.finish(p)

    p = t.subparser(sub, "delete", "delete users", cmd_delete)
    p.add_argument("users", nargs="+", metavar="user")
    t.add_verbose(p)
    t.finish(p)

    p = t.subparser(sub, "passwd", "change a user's password (or ssh public key)", cmd_passwd)
    p.add_argument("target", metavar="user")
    p.add_argument("password_arg", nargs="?", metavar="password", help="asked if missing")
    p.add_argument("--ssh-key", metavar="FILE", help="OpenSSH public key file (ssh driver)")
    t.add_verbose(p)
    t.finish(p)

    for name, fn, what in (
        ("chgrp", cmd_chgrp, "change a user's primary group"),
        ("addgroup", cmd_addgroup, "add a secondary group to a user"),
        ("delgroup", cmd_delgroup, "remove a secondary group from a user"),
    ):
        p = t.subparser(sub, name, what, fn)
        p.add_argument("target", metavar="user")
        p.add_argument("group")
        t.add_verbose(p)
        t.finish(p)

    for name, fn, what in (
        ("enable", cmd_enable, "enable users"),
        ("disable", cmd_disable, "disable users (they can no longer log in)"),
    ):
        p = t.subparser(sub, name, what, fn)
        p.add_argument("users", nargs="+", metavar="user")
        t.add_verbose(p)
        t.finish(p)

    what = "replace (or --append to) a user's template"
    t.add_update(
        sub, cmd_update, what, "target", t.EDIT_FILE_HELP, t.EDIT_APPEND_HELP, metavar="user"
    )

    p = t.subparser(sub, "chauth", "change a user's authentication driver", cmd_chauth)
    p.add_argument("target", metavar="user")
    p.add_argument("driver", choices=DRIVERS)
    p.add_argument(
        "password_arg",
        nargs="?",
        metavar="password",
        help="new secret for the driver (default: keep the stored one)",
    )
    p.add_argument("--ssh-key", metavar="FILE", help="OpenSSH public key file (ssh driver)")
    t.add_verbose(p)
    t.finish(p)

    t.add_quota_commands(
        sub,
        quota_pb2.USER,
        "user",
        "target",
        t.resolve_user,
        lambda s, uid: _info(s, uid).quota,
        metavar="user",
    )

    p = t.subparser(sub, "login", "log in as a user and print the login token", cmd_login)
    p.set_defaults(needs_session=False)
    p.add_argument("name", help="user name")
    p.add_argument(
        "--ttl", type=int, metavar="SECONDS", help="token lifetime (default: the server's, 10 h)"
    )
    p.add_argument(
        "--ssh-key",
        metavar="PRIVATE_KEY",
        help="sign the login with this ssh private key (users of the ssh driver)",
    )
    t.finish(p)

    for name in ("token-delete", "logout"):
        p = t.subparser(
            sub, name, "revoke the login token in use (--token / $ONE_TOKEN)", cmd_token_delete
        )
        t.add_verbose(p)
        t.finish(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
