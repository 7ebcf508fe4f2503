"""oneacl: manage ACL rules (OpenNebula's `oneacl`).

    oneacl list                 ID USER RES_VHNIUTGDCOZSvRMAPtB RID OPE_UMAC ZONE
    oneacl create "<USER> <RESOURCES>/<SELECTOR> <RIGHTS> [<ZONE>]"
    oneacl create <USER> <RESOURCES>/<SELECTOR> <RIGHTS> [<ZONE>]
    oneacl delete <id>...

A rule, e.g. `#5 IMAGE+TEMPLATE/@103 USE+MANAGE #0`: user selector `#uid`, `@gid` or
`*`; resource types joined by `+`; resource selector `#id`, `@gid`, `%cid` or `*`;
rights USE, MANAGE, ADMIN, CREATE; zone `#zid` or `*` (default: this zone). As in
OpenNebula, `#name` / `@name` may name a user / group instead of its id (resolved here
before the rule is sent). Only oneadmin may list or change rules.

Global options as onezone: --endpoint, --user, --password, --token, -j/--json, -y/--yaml.
"""

from __future__ import annotations

import argparse
import sys

from rich.text import Text

from raftcore import acl
from zones.api.gen import acl_pb2, common_pb2
from zones.cli import tenancy as t
from zones.cli.common import CliError, Session, add_global_args, emit, message_to_dict

PROG = "oneacl"
LIST_COLUMNS = tuple(name for name, _ in acl.LIST_COLUMNS)


# --- rendering ----------------------------------------------------------------------


def to_rule(msg: acl_pb2.AclRule) -> acl.Rule:
    return acl.Rule(msg.id, msg.user, msg.resource, msg.rights, msg.zone)


def render_list(rules: list[acl_pb2.AclRule]) -> str:
    """`oneacl list` as OpenNebula prints it (fixed-width, right-aligned columns)."""
    return acl.format_list(to_rule(r) for r in rules)


def rule_dict(msg: acl_pb2.AclRule) -> dict:
    data = message_to_dict(msg)
    row = acl.list_row(to_rule(msg))
    data["masks"] = {"resource": row[acl.RESOURCE_COLUMN], "rights": row[acl.RIGHTS_COLUMN]}
    return data


# --- names in rules -----------------------------------------------------------------


def _named(token: str) -> str | None:
    """The name after '#' or '@' when it is not a number (None otherwise)."""
    rest = token[1:]
    if token[:1] in ("#", "@") and rest and not (rest.isascii() and rest.isdigit()):
        return rest
    return None


def resolve_names(parts: list[str], session: Session) -> list[str]:
    """Replace `#user` / `@group` names in the user component and `@group` (and `#name`
    for a rule on USER or GROUP only) in the resource selector by their ids."""
    out = list(parts)
    if len(out) not in (3, 4):
        return out  # the server explains what is wrong
    name = _named(out[0])
    if name is not None:
        if out[0][0] == "#":
            out[0] = f"#{t.resolve_user(session, name)}"
        else:
            out[0] = f"@{t.resolve_group(session, name)}"
    if out[1].count("/") == 1:
        types, selector = out[1].split("/")
        name = _named(selector)
        if name is not None:
            if selector[0] == "@":
                selector = f"@{t.resolve_group(session, name)}"
            elif types.upper() == "USER":
                selector = f"#{t.resolve_user(session, name)}"
            elif types.upper() == "GROUP":
                selector = f"#{t.resolve_group(session, name)}"
            else:
                raise CliError(
                    f"resource selector {selector!r}: only USER or GROUP rules can name "
                    f"their object; give the id (#<id>)"
                )
            out[1] = f"{types}/{selector}"
    return out


# --- commands -----------------------------------------------------------------------


def _list(session: Session) -> list[acl_pb2.AclRule]:
    reply = session.call(
        lambda c: t.acls(c).List(acl_pb2.AclListRequest(), timeout=session.timeout)
    )
    return list(reply.rules)


def cmd_list(args, session: Session) -> int:
    rules = _list(session)
    emit(args, [rule_dict(r) for r in rules], lambda: [Text(render_list(rules))])
    return 0


def cmd_create(args, session: Session) -> int:
    parts = " ".join(args.rule).split()
    if not parts:
        raise CliError(f"empty ACL rule; expected {acl.GRAMMAR}")
    if len(parts) not in (3, 4):
        raise CliError(
            f"an ACL rule has 3 or 4 components ({acl.GRAMMAR}), got {len(parts)}: "
            f"{' '.join(parts)!r}"
        )
    text = " ".join(resolve_names(parts, session))
    request = acl_pb2.AclAddRequest(rule=text, request_id=t.request_id())
    reply = session.call(lambda c: t.acls(c).Add(request, timeout=session.timeout))
    emit(args, {"id": reply.id, "rule": text}, lambda: [f"ID: {reply.id}"])
    return 0


def _acl_id(value: str) -> int:
    if not (value.isascii() and value.isdigit()):
        raise CliError(f"ACL rule id must be a number, got {value!r}")
    return int(value)


def cmd_delete(args, session: Session) -> int:
    ids = [_acl_id(v) for v in args.ids]
    for rid in ids:
        request = common_pb2.ObjectRequest(id=rid, request_id=t.request_id())
        session.call(lambda c, r=request: t.acls(c).Delete(r, timeout=session.timeout))
        t.done(args, {"id": rid, "deleted": True}, f"ACL {rid}: deleted")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Manage ACL rules.")
    add_global_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t.finish(t.subparser(sub, "list", f"list ACL rules ({' '.join(LIST_COLUMNS)})", cmd_list))

    p = t.subparser(sub, "create", "add an ACL rule; prints its ID", cmd_create)
    p.add_argument(
        "rule",
        nargs="+",
        metavar="COMPONENT",
        help=f"the rule as one string, or its 3 or 4 components: {acl.GRAMMAR}",
    )
    t.finish(p)

    p = t.subparser(sub, "delete", "delete ACL rules", cmd_delete)
    p.add_argument("ids", nargs="+", metavar="id")
    t.add_verbose(p)
    t.finish(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
