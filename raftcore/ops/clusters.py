"""Clusters: groups of hosts, datastores and virtual networks (onecluster).

A cluster record (raftcore.objects) adds {"hosts", "datastores", "vnets"}: the ids of its
members, kept by the members' own operations (a host, datastore or vnet lists its
clusters in `cids`).
"""

from raftcore import objects
from raftcore.commands import ErrorCode, ok
from raftcore.ops import vdcs
from raftcore.ops.common import Reject, Result, View, arg_int, check_args, require
from raftcore.ops.tenancy import arg_template

KIND = "cluster"
DEFAULT_CLUSTER = 0
MEMBERS = ("hosts", "datastores", "vnets")


def op_cluster_allocate(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("name",), ("template",))
    text = arg_template(args) if "template" in args else ""
    require(view, cmd, objects.create_request(KIND, gid=0))
    record, mutations = objects.new(view, cmd, KIND, args["name"], text, {m: [] for m in MEMBERS})
    return mutations, ok({"id": record["id"]})


def op_cluster_delete(view: View, args: dict, cmd: dict, index: int) -> Result:
    check_args(args, ("id",))
    record = objects.get(view, KIND, arg_int(args, "id"))
    require(view, cmd, objects.auth(KIND, record, "ADMIN"))
    if record["id"] == DEFAULT_CLUSTER:
        raise Reject(ErrorCode.ACTION, "cluster 0 (default) cannot be deleted")
    left = [f"{len(record[m])} {m}" for m in MEMBERS if record[m]]
    if left:
        raise Reject(
            ErrorCode.ACTION,
            f"cluster {record['id']} is not empty ({', '.join(left)}): remove them first",
        )
    return [*vdcs.forget(view, KIND, record["id"]), *objects.remove(KIND, record)], ok()


HANDLERS = {"cluster.allocate": op_cluster_allocate, "cluster.delete": op_cluster_delete}
