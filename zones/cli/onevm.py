"""onevm: virtual machines (OpenNebula's `onevm`).

    onevm list [-l COLUMNS]               ID USER GROUP NAME STAT CPU MEM HOST TIME
    onevm show <vm>                       VIRTUAL MACHINE INFORMATION, PERMISSIONS, VM DISKS,
                                          VM NICS, VIRTUAL MACHINE HISTORY, SCHEDULED
                                          ACTIONS, USER TEMPLATE, VIRTUAL MACHINE TEMPLATE
    onevm create <FILE> [--hold]          (prints its ID)
    onevm terminate|undeploy|poweroff|reboot [--hard] <vm>...
    onevm hold|release|stop|suspend|resume|resched|unresched <vm>...
    onevm deploy <vm> <host> [<datastore>]
    onevm migrate <vm> <host> [<datastore>] [--live] [--enforce]
    onevm recover <vm> --success|--failure|--retry|--delete|--delete-recreate
    onevm disk-attach <vm> (--image IMAGE [--target T] | --size MB [--type fs|swap] | --file F)
    onevm disk-detach <vm> <disk_id>
    onevm nic-attach <vm> (--network NET [--ip IP] | --file F)
    onevm nic-detach <vm> <nic_id>
    onevm disk-snapshot-create <vm> <disk_id> <name>
    onevm disk-snapshot-revert|disk-snapshot-delete <vm> <disk_id> <snapshot_id>
    onevm resize <vm> [--cpu N] [--vcpu N] [--memory MB] [--enforce]
    onevm sched-add <vm> <FILE>   onevm sched-update <vm> <sched_id> <FILE>
    onevm sched-delete <vm> <sched_id>
    onevm delete|update|rename|chown|chgrp|chmod ...   (delete: recover --delete)

VMs, hosts, images and networks are named by id or by name. Global options as onezone
(--endpoint, --user, --password, --token, -j/--json, -y/--yaml).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text

from raftcore import lifecycle, perms, schedule
from raftcore import template as tmpl
from zones.cli import pool
from zones.cli import tenancy as t
from zones.cli.common import CliError, Session, emit, render, table

PROG = "onevm"
KIND = "vm"
ATTR_WIDTH = 16  # `onevm show` prints "%-16s: %s"

Names = pool.Names


# --- cells ----------------------------------------------------------------------------


time_str = t.time_str


def period_str(ms: int) -> str:
    """OpenNebula's period_to_str: `  3d 04h05` (days, hours, minutes)."""
    seconds = max(ms, 0) // 1000
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days:3d}d {hours:02d}h{rest // 60:02d}"


_name = pool.name_of


def state_name(vm: dict) -> str:
    return lifecycle.state_str(vm["state"], vm["lcm_state"])


def short_state(vm: dict) -> str:
    return lifecycle.short_state(vm["state"], vm["lcm_state"])


def current_host(vm: dict) -> dict | None:
    """The history record of the host the VM is on (none when it is on no host)."""
    if not vm.get("capacity") or not vm.get("history"):
        return None
    hid = vm["capacity"][-1]["hid"]
    return next((h for h in reversed(vm["history"]) if h["hid"] == hid), None)


def cpu_str(cpu: float) -> str:
    return f"{cpu:g}"


def run_time(vm: dict, now_ms: int) -> int:
    return (vm.get("etime") or now_ms) - vm["stime"]


_CELLS: dict[str, Callable[[dict, Names, int], Any]] = {
    "ID": lambda v, n, now: v["id"],
    "USER": lambda v, n, now: _name(n, "user", v["uid"]),
    "GROUP": lambda v, n, now: _name(n, "group", v["gid"]),
    "NAME": lambda v, n, now: v["name"],
    "STAT": lambda v, n, now: short_state(v),
    "CPU": lambda v, n, now: cpu_str(v["cpu"]),
    "MEM": lambda v, n, now: t.unit_to_str(v["memory"]),
    "HOST": lambda v, n, now: (current_host(v) or {}).get("hostname", ""),
    "TIME": lambda v, n, now: period_str(run_time(v, now)),
    "VCPU": lambda v, n, now: v["vcpu"],
    "STATE": lambda v, n, now: state_name(v),
}
DEFAULT_COLUMNS = ("ID", "USER", "GROUP", "NAME", "STAT", "CPU", "MEM", "HOST", "TIME")
_RIGHT = ("ID", "CPU", "MEM", "VCPU")


# --- rendering ------------------------------------------------------------------------


def list_columns(spec: str | None) -> tuple[str, ...]:
    return pool.parse_columns(spec, _CELLS, DEFAULT_COLUMNS)


def list_rows(
    vms: list[dict],
    names: Names | None = None,
    columns: tuple[str, ...] = DEFAULT_COLUMNS,
    now_ms: int | None = None,
) -> list[list]:
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return [[_CELLS[c](v, names or {}, now) for c in columns] for v in vms]


def list_table(vms, names=None, columns=DEFAULT_COLUMNS, now_ms=None):
    return table(columns, list_rows(vms, names, columns, now_ms), right=_RIGHT)


def _attrs(pairs: list[tuple[str, Any]]) -> Text:
    return t.attrs(pairs, ATTR_WIDTH)


def disk_rows(vm: dict) -> list[list]:
    """VM DISKS: ID DATASTORE TARGET IMAGE SIZE TYPE SAVE."""
    rows = []
    for d in vm["disks"]:
        image = d.get("image", "-") if "image_id" in d else f"{d['type']} (volatile)"
        rows.append(
            [
                d["disk_id"],
                d.get("datastore_id", "-"),
                d.get("target", "-"),
                image,
                t.unit_to_str(d["size"]),
                d["type"] if "image_id" in d else "fs",
                "YES" if d.get("persistent") else "NO",
            ]
        )
    return rows


def nic_rows(vm: dict) -> list[list]:
    """VM NICS: ID NETWORK BRIDGE IP MAC."""
    return [
        [
            n["nic_id"],
            n.get("network", n["network_id"]),
            n.get("bridge", "-"),
            n.get("ip", "-"),
            n.get("mac", "-"),
        ]
        for n in vm["nics"]
    ]


def history_rows(vm: dict, now_ms: int) -> list[list]:
    """VIRTUAL MACHINE HISTORY: SEQ UID REQ HOST ACTION DS START TIME PROLOG."""
    rows = []
    for h in vm["history"]:
        end = h["etime"] or now_ms
        prolog = (h["petime"] or (now_ms if h["pstime"] else 0)) - h["pstime"]
        rows.append(
            [
                h["seq"],
                h["uid"],
                h.get("req_id", "-")[:8] or "-",
                h["hostname"],
                h["action"] or "none",
                h["ds_id"],
                time_str(h["stime"]),
                period_str(end - h["stime"]),
                period_str(prolog if h["pstime"] else 0),
            ]
        )
    return rows


def repeat_str(s: dict) -> str:
    days = ",".join(map(str, s["days"]))
    return {
        -1: "",
        schedule.WEEKLY: f"Weekly {days}",
        schedule.MONTHLY: f"Monthly {days}",
        schedule.YEARLY: f"Yearly {days}",
        schedule.HOURLY: f"Each {days} hours",
    }[s["repeat"]]


def end_str(s: dict) -> str:
    if s["repeat"] == schedule.NONE:
        return ""
    if s["end_type"] == schedule.TIMES:
        return f"After {s['end_value']} times"
    if s["end_type"] == schedule.DATE:
        return f"On {time_str(s['end_value'])}"
    return "None"


def sched_rows(vm: dict) -> list[list]:
    """SCHEDULED ACTIONS: ID ACTION ARGS SCHEDULED REPEAT END DONE."""
    return [
        [
            s["id"],
            s["action"],
            s["args"] or "-",
            time_str(s["time"]),
            repeat_str(s),
            end_str(s),
            time_str(s.get("done", 0)),
        ]
        for s in vm["sched_actions"]
    ]


def show_renderables(vm: dict, names: Names | None = None, now_ms: int | None = None) -> list:
    names = names or {}
    now = int(time.time() * 1000) if now_ms is None else now_ms
    host = current_host(vm)
    info = [
        ("ID", vm["id"]),
        ("NAME", vm["name"]),
        ("USER", _name(names, "user", vm["uid"])),
        ("GROUP", _name(names, "group", vm["gid"])),
        ("STATE", lifecycle.VmState(vm["state"]).name),
        ("LCM_STATE", lifecycle.LcmState(vm["lcm_state"]).name),
        ("RESCHED", "Yes" if vm.get("resched") else "No"),
        ("HOST", host["hostname"] if host else ""),
        ("CLUSTER ID", host["cid"] if host else -1),
        ("START TIME", time_str(vm["stime"])),
        ("END TIME", time_str(vm.get("etime", 0))),
        ("DEPLOY ID", vm.get("deploy_id") or "-"),
    ]
    if vm.get("intent"):
        info.append(("INTENT", vm["intent"]))
    if vm.get("error"):
        info.append(("ERROR", vm["error"]))
    capacity = [
        ("CPU", cpu_str(vm["cpu"])),
        ("VCPU", vm["vcpu"]),
        ("MEMORY", t.unit_to_str(vm["memory"])),
    ]
    out: list[Any] = [
        t.section(f"VIRTUAL MACHINE {vm['id']} INFORMATION"),
        _attrs(info),
        "",
        t.section("VIRTUAL MACHINE CAPACITY"),
        _attrs(capacity),
        "",
        t.section("PERMISSIONS"),
        _attrs(perms.to_rows(vm["perms"])),
    ]
    out += ["", t.section("VM DISKS")]
    if vm["disks"]:
        cols = ("ID", "DATASTORE", "TARGET", "IMAGE", "SIZE", "TYPE", "SAVE")
        out.append(table(cols, disk_rows(vm), right=("ID", "SIZE")))
    out += ["", t.section("VM NICS")]
    if vm["nics"]:
        out.append(table(("ID", "NETWORK", "BRIDGE", "IP", "MAC"), nic_rows(vm), right=("ID",)))
    out += ["", t.section("VIRTUAL MACHINE HISTORY")]
    if vm["history"]:
        cols = ("SEQ", "UID", "REQ", "HOST", "ACTION", "DS", "START", "TIME", "PROLOG")
        out.append(table(cols, history_rows(vm, now), right=("SEQ", "UID", "DS")))
    out += ["", t.section("SCHEDULED ACTIONS")]
    if vm["sched_actions"]:
        cols = ("ID", "ACTION", "ARGS", "SCHEDULED", "REPEAT", "END", "DONE")
        out.append(table(cols, sched_rows(vm), right=("ID",)))
    out += ["", t.section("USER TEMPLATE")]
    if vm.get("user_template", "").strip():
        out.append(t.template_text(vm["user_template"]))
    out += ["", t.section("VIRTUAL MACHINE TEMPLATE")]
    if vm["template"].strip():
        out.append(t.template_text(vm["template"]))
    return out


def render_show(vm: dict, names: Names | None = None, now_ms: int | None = None) -> str:
    return render(show_renderables(vm, names, now_ms), plain=True)


# --- commands -------------------------------------------------------------------------


names_of = pool.names_of


cmd_list = pool.list_command(
    KIND, lambda session, records, cols: list_table(records, names_of(session), cols), list_columns
)


cmd_show = pool.show_command(
    KIND, "vm", lambda obj, record: show_renderables(record, pool.owner_names(obj, record))
)


def cmd_create(args, session: Session) -> int:
    text = t.read_input(args.file)
    ids = [
        pool.allocate(session, KIND, template=text, hold=args.hold) for _ in range(args.multiple)
    ]
    emit(args, {"ids": ids} if len(ids) > 1 else {"id": ids[0]}, lambda: [f"ID: {i}" for i in ids])
    return 0


def _each(action: str, hard: bool = False):
    """A subcommand applying `action` (or `<action>-hard` with --hard) to VMs."""

    def cmd(args, session: Session) -> int:
        name = f"{action}-hard" if hard and args.hard else action
        for ref in args.vms:
            oid = pool.resolve(session, KIND, ref)
            pool.action(session, KIND, oid, name)
            t.done(args, {"id": oid, "action": name}, f"VM {oid}: {name}")
        return 0

    return cmd


def _one(action: str, build: Callable[[argparse.Namespace, Session], dict], word: str):
    """A subcommand applying `action` with the args `build` makes to one VM."""

    def cmd(args, session: Session) -> int:
        oid = pool.resolve(session, KIND, args.vm)
        result = pool.action(session, KIND, oid, action, build(args, session))
        data = {"id": oid, "action": action, **(result or {})}
        t.done(args, data, f"VM {oid}: {word}")
        if result and not (args.json or args.yaml):
            for key, value in result.items():
                print(f"{key.upper()}: {value}")
        return 0

    return cmd


def _placement(args, session: Session) -> dict:
    out: dict[str, Any] = {"host": pool.resolve(session, "host", args.host)}
    if args.datastore is not None:
        out["ds"] = pool.resolve(session, "datastore", args.datastore)
    return out


def _migrate_args(args, session: Session) -> dict:
    out = _placement(args, session)
    if args.live:
        out["live"] = True
    if args.enforce:
        out["enforce"] = True
    return out


def _recover_args(args, session: Session) -> dict:
    return {"op": args.op}


def _vector(key: str, pairs: list[tuple[str, str]]) -> str:
    t_ = tmpl.Template()
    t_.append(key, pairs)
    return tmpl.render(t_)


def _disk_args(args, session: Session) -> dict:
    if args.file:
        return {"template": t.read_input(args.file)}
    if args.image is not None:
        pairs = [("IMAGE_ID", str(pool.resolve(session, "image", args.image)))]
    elif args.size is not None:
        pairs = [("SIZE", str(args.size)), ("TYPE", args.type)]
    else:
        raise CliError("disk-attach needs --image, --size or --file")
    if args.target:
        pairs.append(("TARGET", args.target))
    return {"template": _vector("DISK", pairs)}


def _nic_args(args, session: Session) -> dict:
    if args.file:
        return {"template": t.read_input(args.file)}
    if args.network is None:
        raise CliError("nic-attach needs --network or --file")
    pairs = [("NETWORK_ID", str(pool.resolve(session, "vnet", args.network)))]
    if args.ip:
        pairs.append(("IP", args.ip))
    return {"template": _vector("NIC", pairs)}


def _resize_args(args, session: Session) -> dict:
    out: dict[str, Any] = {}
    if args.cpu is not None:
        out["cpu"] = args.cpu
    if args.vcpu is not None:
        out["vcpu"] = args.vcpu
    if args.memory is not None:
        out["memory"] = args.memory
    if not out:
        raise CliError("resize needs --cpu, --vcpu or --memory")
    if args.enforce:
        out["enforce"] = True
    return out


def _snapshot_args(args, session: Session) -> dict:
    return {"disk_id": args.disk_id, "snapshot_id": args.snapshot_id}


def _sched_template(args) -> str:
    text = t.read_input(args.file)
    if "SCHED_ACTION" not in text.upper():  # a bare vector's body: wrap it
        text = f"SCHED_ACTION = [ {text.strip().replace(chr(10), ', ')} ]"
    return text


def build_parser() -> argparse.ArgumentParser:
    parser, sub = t.new_parser(PROG, "Manage virtual machines.")

    vms = t.arg("vms", nargs="+", metavar="vm")
    enforce = t.arg("--enforce", action="store_true", help="check the host's capacity (always)")
    disk_id = t.arg("disk_id", type=int)
    snapshot_id = t.arg("snapshot_id", type=int)
    sched_id = t.arg("sched_id", type=int)
    file = t.arg("file", metavar="FILE", help="template file, '-' for stdin")
    pool.add_list(sub, "list VMs (" + " ".join(DEFAULT_COLUMNS) + ")", cmd_list, _CELLS)
    pool.add_show(sub, "show a VM", cmd_show, "vm", "VM id or name")
    t.command(
        sub,
        "create",
        "create a VM from a template file; prints its ID",
        cmd_create,
        t.arg("file", metavar="FILE", help="VM template file, '-' for stdin"),
        t.arg("--hold", action="store_true", help="create it on hold"),
        t.arg("-m", "--multiple", type=int, default=1, metavar="N", help="create N VMs"),
    )

    for name, helptext in (
        ("terminate", "terminate VMs (--hard: destroy at once)"),
        ("undeploy", "shut VMs down and free their hosts (--hard: destroy)"),
        ("poweroff", "power VMs off, keeping their hosts (--hard: destroy)"),
        ("reboot", "reboot VMs (--hard: reset)"),
    ):
        hard = t.arg("--hard", action="store_true", help=f"{name}-hard")
        t.command(sub, name, helptext, _each(name, hard=True), vms, hard, verbose=True)

    for name, helptext in (
        ("hold", "hold pending VMs (the scheduler leaves them)"),
        ("release", "release VMs on hold"),
        ("stop", "stop VMs (saved to the front-end, host freed)"),
        ("suspend", "suspend VMs (saved on their hosts)"),
        ("resume", "resume stopped, suspended, undeployed or powered-off VMs"),
        ("resched", "ask the scheduler to move VMs"),
        ("unresched", "cancel resched"),
    ):
        t.command(sub, name, helptext, _each(name), vms, verbose=True)

    # one VM: (name, help, build the action's args, word, arguments after <vm>)
    ops: tuple[tuple[str, str, Callable, str, tuple], ...] = (
        (
            "deploy",
            "place a VM on a host",
            _placement,
            "deployed",
            (
                "host",
                t.arg("datastore", nargs="?", help="system datastore (default: the cluster's)"),
            ),
        ),
        (
            "migrate",
            "move a VM to another host",
            _migrate_args,
            "migrating",
            (
                "host",
                t.arg("datastore", nargs="?", help="system datastore (default: the current one)"),
                t.arg(
                    "--live", action="store_true", help="live migration (the guest keeps running)"
                ),
                enforce,
            ),
        ),
        ("recover", "recover a VM stuck in an operation", _recover_args, "recovered", ()),
        (
            "disk-attach",
            "attach a disk",
            _disk_args,
            "disk attached",
            (
                t.arg("--image", help="image id or name"),
                t.arg("--size", type=int, metavar="MB", help="a volatile disk of MB"),
                t.arg("--type", default="fs", choices=("fs", "swap"), help="volatile disk type"),
                t.arg("--target", help="device, e.g. vdb"),
                t.arg("--file", help="a DISK = [ ... ] template file"),
            ),
        ),
        (
            "disk-detach",
            "detach a disk",
            lambda a, s: {"disk_id": a.disk_id},
            "disk detached",
            (disk_id,),
        ),
        (
            "nic-attach",
            "attach a NIC",
            _nic_args,
            "NIC attached",
            (
                t.arg("--network", help="network id or name"),
                t.arg("--ip", help="the address to lease"),
                t.arg("--file", help="a NIC = [ ... ] template file"),
            ),
        ),
        (
            "nic-detach",
            "detach a NIC",
            lambda a, s: {"nic_id": a.nic_id},
            "NIC detached",
            (t.arg("nic_id", type=int),),
        ),
        (
            "disk-snapshot-create",
            "snapshot a disk",
            lambda a, s: {"disk_id": a.disk_id, "name": a.name},
            "snapshot created",
            (disk_id, "name"),
        ),
        (
            "disk-snapshot-revert",
            "revert a disk snapshot",
            _snapshot_args,
            "snapshot reverted",
            (disk_id, snapshot_id),
        ),
        (
            "disk-snapshot-delete",
            "delete a disk snapshot",
            _snapshot_args,
            "snapshot deleted",
            (disk_id, snapshot_id),
        ),
        (
            "resize",
            "change a VM's CPU, VCPU or memory",
            _resize_args,
            "resized",
            (
                t.arg("--cpu", type=float),
                t.arg("--vcpu", type=int),
                t.arg("--memory", type=int, metavar="MB"),
                enforce,
            ),
        ),
        (
            "sched-add",
            "add a scheduled action (SCHED_ACTION = [ ACTION, TIME, ... ])",
            lambda a, s: {"template": _sched_template(a)},
            "action scheduled",
            (file,),
        ),
        (
            "sched-update",
            "replace a scheduled action",
            lambda a, s: {"sched_id": a.sched_id, "template": _sched_template(a)},
            "scheduled action updated",
            (sched_id, file),
        ),
        (
            "sched-delete",
            "delete a scheduled action",
            lambda a, s: {"sched_id": a.sched_id},
            "scheduled action deleted",
            (sched_id,),
        ),
    )
    for name, helptext, build, word, arguments in ops:
        p = t.subparser(sub, name, helptext, _one(name, build, word))
        p.add_argument("vm")
        for a in arguments:
            names, kw = ((a,), {}) if isinstance(a, str) else a
            p.add_argument(*names, **kw)
        if name == "recover":
            group = p.add_mutually_exclusive_group(required=True)
            for op in ("success", "failure", "retry", "delete", "delete-recreate"):
                group.add_argument(f"--{op}", dest="op", action="store_const", const=op)
        t.add_verbose(p)
        t.finish(p)

    pool.add_common_commands(sub, KIND, "VM")
    return parser


def main(argv: list[str] | None = None) -> int:
    return t.main_for(PROG, build_parser, argv)


if __name__ == "__main__":
    sys.exit(main())
