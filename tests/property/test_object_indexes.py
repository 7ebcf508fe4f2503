"""The object indexes stay exact: after any sequence of pool operations, the `index` db
holds exactly the entries the live objects call for (none stale, none missing)."""

from hypothesis import given, settings
from hypothesis import strategies as st

from raftcore import objects, schema
from tests.statekit import Zone

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("allocate"), st.sampled_from(["a", "b", "c", "d"])),
        st.tuples(
            st.just("chown"),
            st.integers(0, 5),
            st.sampled_from([-1, 0, 1]),
            st.sampled_from([-1, 0, 1]),
        ),
        st.tuples(
            st.just("chmod"), st.integers(0, 5), st.sampled_from([0o600, 0o604, 0o640, 0o644])
        ),
        st.tuples(st.just("rename"), st.integers(0, 5), st.sampled_from(["a", "b", "e"])),
        st.tuples(st.just("delete"), st.integers(0, 5)),
    ),
    max_size=30,
)


def _apply(z: Zone, op: tuple) -> None:
    name = op[0]
    if name == "allocate":
        z.do("cluster.allocate", {"name": op[1]})
    elif name == "chown":
        args = {"kind": "cluster", "id": op[1], "uid": op[2], "gid": op[3]}
        z.do("obj.chown", args)
    elif name == "chmod":
        z.do("obj.chmod", {"kind": "cluster", "id": op[1], "perms": op[2]})
    elif name == "rename":
        z.do("obj.rename", {"kind": "cluster", "id": op[1], "name": op[2]})
    else:
        z.do("cluster.delete", {"id": op[1]})


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_indexes_match_the_objects(ops):
    z = Zone()
    z.ok("user.bootstrap", {"password_hash": "scrypt$h"}, uid=-1)
    z.ok("user.allocate", {"name": "u1", "password": "x", "driver": "core"})
    for op in ops:
        _apply(z, op)
    live = list(z.view().iter(schema.OBJECTS, objects.kind_prefix("cluster")))
    expected = set()
    for _, record in live:
        expected |= set(objects._index_entries(objects.KINDS["cluster"], record))
    assert set(z.state.get(schema.INDEX, {})) == expected
    names = [r["name"] for _, r in live]
    assert len(names) == len(set(names))  # cluster names are unique zone-wide
