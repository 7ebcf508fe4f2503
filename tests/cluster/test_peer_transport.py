"""The raft port: only peers holding the cluster secret get through, and never via pickle."""

import os
import pickle
import socket
import struct

import pytest
from pysyncobj.encryptor import getEncryptor

from tests.cluster.raftkit import Cluster, put, wait_for


class _Evil:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def cluster3(tmp_path):
    c = Cluster(str(tmp_path), 3)
    yield c
    c.close()


def _frame(data: bytes) -> bytes:
    return struct.pack("i", len(data)) + data


def _send_and_wait_close(addr: str, payload: bytes) -> bytes:
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(payload)
        s.settimeout(5)
        chunks = []
        while True:
            try:
                chunk = s.recv(4096)
            except TimeoutError:
                pytest.fail("the raft port kept a connection that sent bad data")
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


@pytest.mark.parametrize("secret", ["wrong-secret-wrong-secret", "s" * 32])
def test_pickled_payload_is_never_deserialized(cluster3, tmp_path, secret):
    """With the wrong secret it fails authentication; with the right one it is not msgpack."""
    marker = tmp_path / f"pwned-{len(secret)}"
    body = getEncryptor(secret).encrypt_at_time(pickle.dumps(_Evil(str(marker)), 2), 1)
    _send_and_wait_close(cluster3.addrs[0], _frame(body))
    assert not marker.exists()
    leader = cluster3.replicas[cluster3.leader()]
    assert leader.propose(put("still-works"))[1]["ok"]


def test_garbage_and_unknown_peers_are_disconnected(cluster3):
    _send_and_wait_close(cluster3.addrs[1], _frame(os.urandom(64)))
    _send_and_wait_close(cluster3.addrs[1], b"\xff\xff\xff\x7f" + b"x" * 16)
    leader = cluster3.replicas[cluster3.leader()]
    assert leader.propose(put("after-garbage"))[1]["ok"]
    wait_for(lambda: all(len(r.status().connected) == 2 for r in cluster3.replicas))


def test_raft_port_binds_only_the_configured_address(cluster3):
    host, port = cluster3.addrs[0].rsplit(":", 1)
    with socket.socket() as s:
        # 127.0.0.2 is loopback too; a wildcard bind would accept there.
        assert s.connect_ex(("127.0.0.2", int(port))) != 0
