"""What oneuser, onegroup and oneacl share: stubs, name resolution, template input, and
OpenNebula's quota rendering (`oneuser list` quota columns, `oneuser show` quota tables).

Quotas arrive as OpenNebula quota template text (User.quota, Group.quota, Quota.quota):

    VM = [ VMS = "10", VMS_USED = "1", CPU = "4.5", CPU_USED = "0.5", MEMORY = "2048", ... ]
    DATASTORE = [ ID = "1", SIZE = "100", SIZE_USED = "0", IMAGES = "-1", ... ]

A limit of -1 means "the default quota" (looked up in the default quota text, unlimited
when the default does not set it) and -2 means unlimited, shown as "-".
"""

from __future__ import annotations

import argparse
import getpass
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from rich.text import Text

from raftcore import template as tmpl
from zones.api.gen import (
    acl_pb2_grpc,
    group_pb2,
    group_pb2_grpc,
    quota_pb2,
    quota_pb2_grpc,
    user_pb2,
    user_pb2_grpc,
)
from zones.cli.common import (
    CliError,
    Session,
    add_global_args,
    emit,
    endpoints,
    run,
    table,
)

LIMIT_DEFAULT = -1
LIMIT_UNLIMITED = -2
ATTR_WIDTH = 16  # `oneuser show` prints "%-16s: %s"

# --- stubs and calls ----------------------------------------------------------------


def users(client) -> user_pb2_grpc.UserServiceStub:
    return user_pb2_grpc.UserServiceStub(client.channel)


def groups(client) -> group_pb2_grpc.GroupServiceStub:
    return group_pb2_grpc.GroupServiceStub(client.channel)


def acls(client) -> acl_pb2_grpc.AclServiceStub:
    return acl_pb2_grpc.AclServiceStub(client.channel)


def quotas(client) -> quota_pb2_grpc.QuotaServiceStub:
    return quota_pb2_grpc.QuotaServiceStub(client.channel)


def request_id() -> str:
    """One id per command: a retried call (failover) is applied once."""
    return uuid.uuid4().hex


def list_users(session: Session) -> list[user_pb2.User]:
    reply = session.call(
        lambda c: users(c).List(user_pb2.UserListRequest(), timeout=session.timeout)
    )
    return list(reply.users)


def list_groups(session: Session) -> list[group_pb2.Group]:
    reply = session.call(
        lambda c: groups(c).List(group_pb2.GroupListRequest(), timeout=session.timeout)
    )
    return list(reply.groups)


def _is_id(ref: str) -> bool:
    return ref.isascii() and ref.isdigit()


def _resolve(kind: str, ref: str, lister: Callable[[], Sequence[Any]]) -> int:
    ref = ref.strip()
    if not ref:
        raise CliError(f"empty {kind} name")
    if _is_id(ref):
        return int(ref)
    matches = [obj.id for obj in lister() if obj.name == ref]
    if not matches:
        raise CliError(f"{kind} {ref!r} not found (or not visible to you)")
    if len(matches) > 1:
        ids = ", ".join(str(m) for m in matches)
        raise CliError(f"{kind} name {ref!r} is ambiguous (ids {ids}): use the id")
    return matches[0]


def resolve_user(session: Session, ref: str) -> int:
    """A user id from an id or a name (names are resolved with UserService.List)."""
    return _resolve("user", ref, lambda: list_users(session))


def resolve_group(session: Session, ref: str) -> int:
    """A group id from an id or a name (names are resolved with GroupService.List)."""
    return _resolve("group", ref, lambda: list_groups(session))


def default_quota(session: Session, kind: int) -> str | None:
    """The default quota text of users or groups; None when it cannot be read (the
    quota service is missing or the caller may not read it)."""
    request = quota_pb2.QuotaGetRequest(kind=kind)
    try:
        reply = session.call(lambda c: quotas(c).GetDefault(request, timeout=session.timeout))
    except grpc.RpcError as e:
        if e.code() in (
            grpc.StatusCode.UNIMPLEMENTED,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.NOT_FOUND,
        ):
            return None
        raise
    return reply.quota


# --- input: files, stdin, editor, secrets ------------------------------------------


def read_input(path: str) -> str:
    """The text of `path`, or of stdin for '-'."""
    if path == "-":
        return sys.stdin.read()
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise CliError(f"{path}: not UTF-8 text") from None
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None


def edit(initial: str, what: str) -> str:
    """Let the user edit `initial` in $EDITOR (as OpenNebula does without a FILE)."""
    if not sys.stdin.isatty():
        raise CliError(f"give the {what} as a FILE, or '-' to read it from stdin")
    editor = os.environ.get("VISUAL") or os.environ.get("EDITOR") or "vi"
    fd, path = tempfile.mkstemp(prefix="one-cli-", suffix=".txt")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(initial)
        rc = subprocess.run([*shlex.split(editor), path], check=False).returncode
        if rc != 0:
            raise CliError(f"editor {editor!r} exited with status {rc}; nothing changed")
        with open(path, encoding="utf-8") as f:
            return f.read()
    finally:
        os.unlink(path)


def template_input(path: str | None, current: Callable[[], str], what: str) -> str:
    """The text to send: from FILE / stdin, or edited from the current one."""
    if path is not None:
        return read_input(path)
    return edit(current(), what)


def read_public_key(path: str) -> str:
    """The first non-empty line of an OpenSSH public key file."""
    for line in read_input(path).splitlines():
        if line.strip():
            return line.strip()
    raise CliError(f"{path}: empty public key file")


def ask_secret(prompt: str, what: str) -> str:
    if not sys.stdin.isatty():
        raise CliError(f"no {what} given (and no terminal to ask)")
    return getpass.getpass(prompt)


# --- quota text ------------------------------------------------------------------------

QUOTA_SECTIONS = ("VM", "DATASTORE", "NETWORK", "IMAGE")


def parse_quota(text: str | None) -> dict[str, list[dict[str, str]]]:
    """Quota text as {SECTION: [vector, ...]}; an unreadable text counts as empty."""
    out: dict[str, list[dict[str, str]]] = {s: [] for s in QUOTA_SECTIONS}
    if not text or not text.strip():
        return out
    try:
        t = tmpl.parse(text)
    except tmpl.TemplateError:
        return out
    for section in QUOTA_SECTIONS:
        out[section] = t.vectors(section)
    return out


def _number(value: str | None) -> int | float | None:
    if value is None:
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    if not math.isfinite(f):
        return None
    return int(f) if f == int(f) else f


def quota_dict(text: str | None) -> dict[str, Any]:
    """Quota text as plain numbers for --json/--yaml: {"VM": {...} | None, "DATASTORE":
    [{"ID": 1, "SIZE": 100, "SIZE_USED": 0, ...}], ...}."""
    parsed = parse_quota(text)
    out: dict[str, Any] = {}
    for section, vectors in parsed.items():
        numeric = [
            {k: _number(v) if _number(v) is not None else v for k, v in vec.items()}
            for vec in vectors
        ]
        out[section] = (numeric[0] if numeric else None) if section == "VM" else numeric
    return out


def _vector_for(parsed: dict[str, list[dict[str, str]]], section: str, qid: str | None):
    for vec in parsed.get(section, []):
        if qid is None or vec.get("ID") == qid:
            return vec
    return None


def _limit(
    vec: dict[str, str],
    metric: str,
    defaults: dict[str, list[dict[str, str]]] | None,
    section: str,
) -> float:
    """The effective limit of `metric`: -1 resolved through the default quota."""
    value = _number(vec.get(metric))
    if value is None:
        value = LIMIT_UNLIMITED
    if value == LIMIT_DEFAULT:
        dvec = _vector_for(defaults or {}, section, vec.get("ID")) if defaults else None
        dvalue = _number(dvec.get(metric)) if dvec else None
        value = LIMIT_UNLIMITED if dvalue is None or dvalue == LIMIT_DEFAULT else dvalue
    return value


def _used(vec: dict[str, str], metric: str) -> float:
    value = _number(vec.get(f"{metric}_USED"))
    return 0 if value is None else value


_UNITS = ("K", "M", "G", "T")


def unit_to_str(value: float, unit: str = "M") -> str:
    """A size as OpenNebula prints it: 512 -> '512M', 2048 -> '2G', 1536 -> '1.5G'
    (divided by 1024 while above 1024, one decimal, '.0' dropped)."""
    i = _UNITS.index(unit)
    value = float(value)
    while value > 1024 and i < len(_UNITS) - 1:
        value /= 1024.0
        i += 1
    tenths = int(value * 10 + (0.5 if value >= 0 else -0.5))  # Ruby's round: half away
    shown: int | float = tenths / 10
    if shown == int(shown):
        shown = int(shown)
    return f"{shown}{_UNITS[i]}"


def _blank_vm() -> dict[str, str]:
    """What OpenNebula shows for a user or group without a VM quota: every limit the
    default one, no usage."""
    metrics = (
        "VMS",
        "CPU",
        "MEMORY",
        "RUNNING_VMS",
        "RUNNING_CPU",
        "RUNNING_MEMORY",
        "SYSTEM_DISK_SIZE",
    )
    vec: dict[str, str] = {}
    for m in metrics:
        vec[m] = str(LIMIT_DEFAULT)
        vec[f"{m}_USED"] = "0"
    return vec


def list_vm_vector(
    text: str | None, default_text: str | None, oid: int
) -> tuple[dict[str, str] | None, dict[str, list[dict[str, str]]]]:
    """The VM vector behind the list columns, and the parsed default quota. No VM quota:
    None ("-"), unless a default VM quota applies to this user/group (not to id 0,
    oneadmin), when it is shown against that default as OpenNebula does."""
    defaults = parse_quota(default_text)
    vm = _vector_for(parse_quota(text), "VM", None)
    if vm is None and oid != 0 and defaults.get("VM"):
        vm = _blank_vm()
    return vm, defaults


def list_quota_cells(text: str | None, default_text: str | None, oid: int) -> tuple[str, str, str]:
    """The VMS, MEMORY and CPU cells of `oneuser list` / `onegroup list`: usage / limit."""
    vm, defaults = list_vm_vector(text, default_text, oid)
    if vm is None:
        return "-", "-", "-"
    vms = _limit(vm, "VMS", defaults, "VM")
    mem = _limit(vm, "MEMORY", defaults, "VM")
    cpu = _limit(vm, "CPU", defaults, "VM")
    vms_limit = "-" if vms == LIMIT_UNLIMITED else str(int(vms))
    vms_cell = f"{int(_used(vm, 'VMS')):3d} / {vms_limit:>3}"
    mem_limit = "-" if mem == LIMIT_UNLIMITED else unit_to_str(mem)
    mem_cell = f"{unit_to_str(_used(vm, 'MEMORY')):>7} / {mem_limit:>7}"
    cpu_limit = "-" if cpu == LIMIT_UNLIMITED else f"{cpu:3.1f}"
    cpu_cell = f"{_used(vm, 'CPU'):3.1f} / {cpu_limit:>3}"
    return vms_cell, mem_cell, cpu_cell


# --- `show` rendering ------------------------------------------------------------------


def section(title: str) -> Text:
    return Text(title, style="bold")


def attrs(pairs: Sequence[tuple[str, Any]], width: int = ATTR_WIDTH) -> Text:
    """`NAME            : value` lines, names padded to `width` (`oneuser show`'s is 16)."""
    return Text("\n".join(f"{k.ljust(width)}: {v}".rstrip() for k, v in pairs))


def time_str(ms: int) -> str:
    """OpenNebula's time_to_str: local `MM/DD HH:MM:SS`, '-' for never."""
    if not ms:
        return "-"
    return time.strftime("%m/%d %H:%M:%S", time.localtime(ms / 1000))


def template_text(text: str) -> Text:
    """A template as stored (plain Text: vectors' brackets are not rich markup)."""
    return Text("\n".join(line.rstrip() for line in text.strip("\n").splitlines()))


def yes_no(value: bool) -> str:
    return "Yes" if value else "No"


def _count_cell(used: float, limit: float, width: int) -> str:
    shown = "-" if limit == LIMIT_UNLIMITED else str(int(limit))
    return f"{int(used):>{width}} / {shown:>{width}}"


def _size_cell(used: float, limit: float, width: int = 8) -> str:
    shown = "-" if limit == LIMIT_UNLIMITED else unit_to_str(limit)
    return f"{unit_to_str(used):>{width}} / {shown:>{width}}"


def _cpu_cell(used: float, limit: float, width: int = 8) -> str:
    shown = "-" if limit == LIMIT_UNLIMITED else f"{limit:.2f}"
    return f"{used:>{width}.2f} / {shown:>{width}}"


def quota_renderables(text: str | None, default_text: str | None, oid: int) -> list[Any]:
    """The quota part of `oneuser show` / `onegroup show` (OpenNebula 6/7 layout):
    VMS USAGE & QUOTAS, VMS USAGE & QUOTAS - RUNNING, DATASTORE USAGE & QUOTAS, NETWORK
    USAGE & QUOTAS, IMAGE USAGE & QUOTAS; each table only when it has rows."""
    parsed = parse_quota(text)
    defaults = parse_quota(default_text)
    vm = _vector_for(parsed, "VM", None)
    if vm is None and oid != 0:
        vm = _blank_vm()

    def lim(vec: dict[str, str], metric: str, sect: str) -> float:
        return _limit(vec, metric, defaults, sect)

    out: list[Any] = ["", section("VMS USAGE & QUOTAS"), ""]
    if vm is not None:
        row = [
            _count_cell(_used(vm, "VMS"), lim(vm, "VMS", "VM"), 7),
            _size_cell(_used(vm, "MEMORY"), lim(vm, "MEMORY", "VM")),
            _cpu_cell(_used(vm, "CPU"), lim(vm, "CPU", "VM")),
            _size_cell(_used(vm, "SYSTEM_DISK_SIZE"), lim(vm, "SYSTEM_DISK_SIZE", "VM")),
        ]
        cols = ("VMS", "MEMORY", "CPU", "SYSTEM_DISK_SIZE")
        out += [table(cols, [row], right=cols), ""]
    out += [section("VMS USAGE & QUOTAS - RUNNING"), ""]
    if vm is not None:
        row = [
            _count_cell(_used(vm, "RUNNING_VMS"), lim(vm, "RUNNING_VMS", "VM"), 7),
            _size_cell(_used(vm, "RUNNING_MEMORY"), lim(vm, "RUNNING_MEMORY", "VM")),
            _cpu_cell(_used(vm, "RUNNING_CPU"), lim(vm, "RUNNING_CPU", "VM")),
        ]
        cols = ("RUNNING VMS", "RUNNING MEMORY", "RUNNING CPU")
        out += [table(cols, [row], right=cols), ""]
    out += [section("DATASTORE USAGE & QUOTAS"), ""]
    if parsed["DATASTORE"]:
        rows = [
            [
                v.get("ID", ""),
                _count_cell(_used(v, "IMAGES"), lim(v, "IMAGES", "DATASTORE"), 8),
                _size_cell(_used(v, "SIZE"), lim(v, "SIZE", "DATASTORE")),
            ]
            for v in parsed["DATASTORE"]
        ]
        out += [table(("ID", "IMAGES", "SIZE"), rows, right=("ID", "IMAGES", "SIZE")), ""]
    out += [section("NETWORK USAGE & QUOTAS"), ""]
    if parsed["NETWORK"]:
        rows = [
            [v.get("ID", ""), _count_cell(_used(v, "LEASES"), lim(v, "LEASES", "NETWORK"), 8)]
            for v in parsed["NETWORK"]
        ]
        out += [table(("ID", "LEASES"), rows, right=("ID", "LEASES")), ""]
    out += [section("IMAGE USAGE & QUOTAS")]
    if parsed["IMAGE"]:
        rows = [
            [v.get("ID", ""), _count_cell(_used(v, "RVMS"), lim(v, "RVMS", "IMAGE"), 8)]
            for v in parsed["IMAGE"]
        ]
        out += ["", table(("ID", "RUNNING VMS"), rows, right=("ID", "RUNNING VMS"))]
    return out


# --- command plumbing ------------------------------------------------------------------


def add_verbose(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="say what was done (as OpenNebula's -v)"
    )


def done(args: argparse.Namespace, data: dict, message: str) -> None:
    """Report a write: JSON/YAML data when asked, the message with -v, else nothing (as
    OpenNebula's CLIs, silent on success)."""
    if getattr(args, "json", False) or getattr(args, "yaml", False):
        emit(args, data, lambda: [])
    elif getattr(args, "verbose", False):
        print(message)


def subparser(sub, name: str, help: str, fn, **kw) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help, description=help, **kw)
    p.set_defaults(fn=fn, needs_session=True)
    return p


def finish(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_global_args(p, sub=True)
    return p


def arg(*names: str, **kw: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """An argument of `command`: arg("vm"), arg("--hard", action="store_true")."""
    return names, kw


def command(
    sub, name: str, help: str, fn, *arguments, verbose: bool = False
) -> argparse.ArgumentParser:
    """A finished subcommand from a table of arguments (a plain string: a positional
    argument; else an `arg(...)`), with -v/--verbose when `verbose`."""
    p = subparser(sub, name, help, fn)
    for a in arguments:
        names, kw = (a,), {}
        if not isinstance(a, str):
            names, kw = a
        p.add_argument(*names, **kw)
    if verbose:
        add_verbose(p)
    return finish(p)


EDIT_FILE_HELP = "template file, '-' for stdin (default: edit in $EDITOR)"
EDIT_APPEND_HELP = "merge into the template instead of replacing it"
QUOTA_FILE = arg(
    "file",
    nargs="?",
    metavar="FILE",
    help="quota template, '-' for stdin (default: edit in $EDITOR)",
)


def add_update(
    sub,
    fn,
    what: str,
    dest: str,
    file_help: str = "template file, '-' for stdin",
    append_help: str = "merge instead of replacing",
    **kw: Any,
) -> argparse.ArgumentParser:
    """`update <dest> [FILE|-] [-a/--append] [-v]` (`kw`: of the <dest> argument)."""
    return command(
        sub,
        "update",
        what,
        fn,
        arg(dest, **kw),
        arg("file", nargs="?", metavar="FILE", help=file_help),
        arg("-a", "--append", action="store_true", help=append_help),
        verbose=True,
    )


def add_quota_commands(
    sub,
    kind: int,
    noun: str,
    dest: str,
    resolve: Callable[[Session, str], int],
    current: Callable[[Session, int], str],
    **kw: Any,
) -> None:
    """`quota <dest> [FILE|-]` and `defaultquota [FILE|-]` of users or groups (`kind`:
    quota_pb2.USER or GROUP; `current`: the quota text of one; `kw`: of <dest>)."""
    label = noun.upper()

    def cmd_quota(args, session: Session) -> int:
        oid = resolve(session, getattr(args, dest))
        text = template_input(args.file, lambda: current(session, oid), "quota template")
        request = quota_pb2.QuotaSetRequest(kind=kind, id=oid, quota=text, request_id=request_id())
        session.call(lambda c: quotas(c).Set(request, timeout=session.timeout))
        done(args, {"id": oid, "quota": True}, f"{label} {oid}: quota set")
        return 0

    def cmd_defaultquota(args, session: Session) -> int:
        text = template_input(
            args.file, lambda: default_quota(session, kind) or "", "quota template"
        )
        request = quota_pb2.QuotaDefaultSetRequest(kind=kind, quota=text, request_id=request_id())
        session.call(lambda c: quotas(c).SetDefault(request, timeout=session.timeout))
        done(args, {"defaultquota": True}, f"default {noun} quota set")
        return 0

    what = f"set a {noun}'s quota from a quota template"
    command(sub, "quota", what, cmd_quota, arg(dest, **kw), QUOTA_FILE, verbose=True)
    what = f"set the default quota of {noun}s"
    command(sub, "defaultquota", what, cmd_defaultquota, QUOTA_FILE, verbose=True)


def new_parser(prog: str, description: str) -> tuple[argparse.ArgumentParser, Any]:
    """The top parser of a CLI (global options) and its COMMAND subparsers."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_global_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    return parser, sub


def main_for(prog: str, build_parser: Callable[[], argparse.ArgumentParser], argv) -> int:
    """Parse, open a session (lazily for commands that log in themselves), run, and
    turn errors into `<prog>: error: ...` with exit code 1 (usage errors exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "json", False) and getattr(args, "yaml", False):
        parser.error("-j/--json and -y/--yaml are mutually exclusive")

    def body() -> int:
        if getattr(args, "needs_session", True):
            session = Session.from_args(args)
        else:
            session = Session(endpoints(args.endpoint), None, None, args.timeout)
        try:
            return args.fn(args, session)
        finally:
            session.close()

    return run(prog, body)
