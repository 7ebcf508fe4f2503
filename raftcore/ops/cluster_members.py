"""Cluster membership (onecluster addhost/delhost/adddatastore/deldatastore/addvnet/delvnet).

Each op changes both sides in one command: the cluster record's member list ("hosts",
"datastores", "vnets") and the member's "cids". As in OpenNebula a host is in exactly
one cluster (adding it to another moves it; `delhost` moves it back to the default
cluster 0), while a datastore or a virtual network may be in several clusters, or none.

Authorization is OpenNebula's: ADMIN on the cluster and ADMIN on the member (`delhost`
also needs ADMIN on the default cluster, where the host goes).

Args: {"id": cluster id, "object": member id}. The cluster is the addressed object
(unknown: NO_EXISTS); the member is named in an argument (unknown: BAD_REQUEST).
Adding a member already there, or removing one that is not, is refused (ACTION) and
changes nothing.

`cluster_updates` is for the datastore and vnet kinds: the cluster side of placing a new
object in clusters, or of deleting one.
"""

from __future__ import annotations

from raftcore import objects
from raftcore.commands import ErrorCode, ok
from raftcore.ops.common import Mutation, Reject, Result, View, arg_int, check_args, require
from raftcore.ops.hosts import DEFAULT_CLUSTER, listed, move_host

CLUSTER = "cluster"


# member kind -> the cluster record's list of them
FIELDS: dict[str, str] = {"host": "hosts", "datastore": "datastores", "vnet": "vnets"}


def _label(kind: str, oid: int) -> str:
    return f"{objects.KINDS[kind].label} {oid}"


def cluster_updates(
    view: View, kind: str, oid: int, add: tuple[int, ...] = (), remove: tuple[int, ...] = ()
) -> list[Mutation]:
    """Mutations listing object `oid` (a datastore or vnet) in the clusters `add` and
    unlisting it from `remove` (clusters that do not exist are skipped). The caller
    writes the object's own "cids" (and checks the clusters exist when it adds)."""
    field = FIELDS[kind]
    mutations: list[Mutation] = []
    for cid, present in [(c, True) for c in add] + [(c, False) for c in remove]:
        cluster = objects.find(view, CLUSTER, cid)
        if cluster is not None:
            updated = {**cluster, field: listed(cluster.get(field, []), oid, present)}
            mutations += objects.put(view, CLUSTER, updated, cluster)
    return mutations


def _target(view: View, args: dict, kind: str) -> tuple[dict, dict]:
    check_args(args, ("id", "object"))
    cluster = objects.get(view, CLUSTER, arg_int(args, "id"))
    member = objects.ref(view, kind, args["object"], "object")
    return cluster, member


def op_addhost(view: View, args: dict, cmd: dict, index: int) -> Result:
    cluster, host = _target(view, args, "host")
    require(view, cmd, objects.auth(CLUSTER, cluster, "ADMIN"), objects.auth("host", host, "ADMIN"))
    if cluster["id"] in host["cids"]:
        raise Reject(ErrorCode.ACTION, f"host {host['id']} is already in cluster {cluster['id']}")
    return move_host(view, host, cluster), ok()


def op_delhost(view: View, args: dict, cmd: dict, index: int) -> Result:
    cluster, host = _target(view, args, "host")
    default = objects.get(view, CLUSTER, DEFAULT_CLUSTER)
    require(
        view,
        cmd,
        objects.auth(CLUSTER, cluster, "ADMIN"),
        objects.auth(CLUSTER, default, "ADMIN"),
        objects.auth("host", host, "ADMIN"),
    )
    if cluster["id"] not in host["cids"]:
        where = ", ".join(str(c) for c in host["cids"]) or "none"
        raise Reject(
            ErrorCode.ACTION,
            f"host {host['id']} is not in cluster {cluster['id']} (it is in cluster {where})",
        )
    if cluster["id"] == DEFAULT_CLUSTER:
        raise Reject(
            ErrorCode.ACTION,
            f"host {host['id']} is in the default cluster {DEFAULT_CLUSTER}: a host is always "
            "in one cluster; add it to another cluster instead",
        )
    return move_host(view, host, default), ok()


def _multi_op(kind: str, add: bool):
    """adddatastore / deldatastore / addvnet / delvnet: members of any number of
    clusters."""
    field = FIELDS[kind]

    def op(view: View, args: dict, cmd: dict, index: int) -> Result:
        cluster, member = _target(view, args, kind)
        require(
            view, cmd, objects.auth(CLUSTER, cluster, "ADMIN"), objects.auth(kind, member, "ADMIN")
        )
        cids = list(member.get("cids", []))
        what, cid = _label(kind, member["id"]), cluster["id"]
        if add and cid in cids:
            raise Reject(ErrorCode.ACTION, f"{what} is already in cluster {cid}")
        if not add and cid not in cids:
            raise Reject(ErrorCode.ACTION, f"{what} is not in cluster {cid}")
        new_member = {**member, "cids": listed(cids, cid, add)}
        new_cluster = {**cluster, field: listed(cluster.get(field, []), member["id"], add)}
        return (
            objects.put(view, kind, new_member, member)
            + objects.put(view, CLUSTER, new_cluster, cluster),
            ok(),
        )

    op.__name__ = f"op_{'add' if add else 'del'}{kind}"
    return op


HANDLERS = {
    "cluster.addhost": op_addhost,
    "cluster.delhost": op_delhost,
    "cluster.adddatastore": _multi_op("datastore", True),
    "cluster.deldatastore": _multi_op("datastore", False),
    "cluster.addvnet": _multi_op("vnet", True),
    "cluster.delvnet": _multi_op("vnet", False),
}
