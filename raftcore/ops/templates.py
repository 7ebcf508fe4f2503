"""VM templates (onetemplate): the definitions VMs are instantiated from.

A template record is the common pool record (raftcore.objects) whose `template` is the
VM template text (NAME is the record's name, not kept in the text). Its checks are a
VM's that need no other object: CPU > 0 (two decimals), VCPU >= 1, MEMORY > 0 MB when
given, DISK / NIC vectors' shape, VMGROUP, SCHED_ACTION; the images and networks it
names are looked up when it is instantiated.

Ops (args besides "id"):

    template.allocate     {"template", "name"?}
    template.delete       {}
    template.clone        {"name", "recursive"?}                 -> {"id"}
    template.instantiate  {"name"?, "hold"?, "template"?, "persistent"?} -> {"id": vm id}

`instantiate` merges "template" into the template as OpenNebula does (an attribute
given there replaces every attribute of the same name, e.g. one DISK replaces all of
them) and creates the VM (CREATE VM, plus USE on the template).
"""

from __future__ import annotations

from raftcore import objects, template
from raftcore.commands import ErrorCode, ok
from raftcore.ops import vmcore
from raftcore.ops.common import (
    Reject,
    Result,
    View,
    arg_bool,
    arg_int,
    bad,
    check_args,
    next_id,
    require,
)
from raftcore.ops.tenancy import arg_template, merge_template

KIND = "template"


def _no_recursive(args: dict, what: str) -> None:
    # Copying the images of a template needs image cloning, which raftcore.ops.images
    # does not offer (yet): refuse rather than pretend.
    if "recursive" in args and arg_bool(args, "recursive"):
        raise Reject(
            ErrorCode.ACTION, f"{what} with recursive (the template's images too) is not supported"
        )


def op_template_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("template",), ("name",))
    t = template.parse(arg_template(args))
    name = args["name"] if "name" in args else vmcore.name_of(t)
    if name is None:
        raise bad("missing argument 'name' (or NAME in the template)")
    vmcore.check_template(t, complete=False, now_ms=cmd["ts"])
    t.remove("NAME")
    require(view, cmd, objects.create_request(KIND, vmcore.caller_gid(view, cmd)))
    record, mutations = objects.new(view, cmd, KIND, name, template.render(t))
    return mutations, ok({"id": record["id"]})


def op_template_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",), ("recursive",))
    record = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, record, "MANAGE"))
    _no_recursive(args, "delete")
    return objects.remove(KIND, record), ok()


def op_template_clone(view: View, args: dict, cmd: dict, index: int) -> Result:
    """A copy owned by the caller, in its group (USE on the original, CREATE TEMPLATE)."""
    check_args(args, ("id", "name"), ("recursive",))
    record = objects.get(view, KIND, arg_int(args, "id"))
    name = objects.check_name(args["name"])
    require(
        view,
        cmd,
        objects.auth(KIND, record, "USE"),
        objects.create_request(KIND, vmcore.caller_gid(view, cmd)),
    )
    _no_recursive(args, "clone")
    copy, mutations = objects.new(view, cmd, KIND, name, record["template"])
    return mutations, ok({"id": copy["id"]})


def op_template_instantiate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",), ("name", "hold", "template", "persistent"))
    record = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, record, "USE"))
    hold = arg_bool(args, "hold") if "hold" in args else False
    if "persistent" in args and arg_bool(args, "persistent"):
        # OpenNebula's persistent instantiate copies the template and its images for
        # the VM alone; without image cloning it cannot be done faithfully.
        raise Reject(
            ErrorCode.ACTION, "persistent instantiate (private image copies) is not supported"
        )
    text = record["template"]
    if "template" in args:
        text = merge_template(text, arg_template(args), append=True)
    vm_id, _ = next_id(view, f"obj:{vmcore.KIND}")
    if "name" in args:
        name = objects.check_name(args["name"])
    else:
        name = vmcore.name_of(vmcore.parse_text(text)) or f"{record['name']}-{vm_id}"
        objects.check_name(name, "VM name")
    vm, mutations = vmcore.create(
        view,
        cmd,
        text,
        hold=hold,
        name=name,
        template_id=record["id"],
        extra_auth=(objects.auth(KIND, record, "USE"),),
    )
    return mutations, ok({"id": vm["id"]})


HANDLERS = {
    "template.allocate": op_template_allocate,
    "template.delete": op_template_delete,
    "template.clone": op_template_clone,
    "template.instantiate": op_template_instantiate,
}
