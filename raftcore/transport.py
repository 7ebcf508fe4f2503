"""Front-end to front-end transport: PySyncObj's TCP transport, hardened.

- Wire format: PySyncObj pickles every message; we swap its codec for msgpack (and drop the
  per-message zlib pass), so nothing received from a peer is ever unpickled. Every message
  is sealed with AES-256-GCM under a key derived from the cluster secret (`PeerCipher`, in
  place of PySyncObj's Fernet), checked before decoding: bytes from a peer without the
  secret are never deserialized.
- Handshake: only a configured member's address is accepted as a peer's first message; the
  utility commands (add/remove/status over the raft port) and read-only peers are refused.
- Durability gate: while the journal holds entries that are not yet fsynced, outgoing
  messages other than the leader's own append_entries are held and released by
  `release()` after the sync; so no acknowledgement or vote leaves before its data is on
  disk. The leader may ship entries before its own sync (Raft thesis 10.2.1): it counts
  itself for commit only after the sync (see consensus.py).
- Fault injection (tests only): messages to and from blocked peers are dropped.
"""

import hashlib
import logging
import os
import struct
import types
from collections.abc import Callable

import pysyncobj.tcp_connection as _tcp_connection
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pysyncobj.transport import TCPTransport

from raftcore import codec

log = logging.getLogger(__name__)


def _identity(data: bytes, *_args) -> bytes:
    return data


# PySyncObj's TcpConnection calls `pickle.dumps/loads` and `zlib.compress/decompress` through
# these module globals; replacing them swaps the wire codec for every connection.
_tcp_connection.pickle = types.SimpleNamespace(dumps=codec.packb, loads=codec.unpackb)
_tcp_connection.zlib = types.SimpleNamespace(compress=_identity, decompress=_identity)

# A frame longer than any message we send is an attack or garbage: drop the connection
# instead of buffering up to 2 GiB waiting for it.
MAX_WIRE_MESSAGE = 64 * 1024 * 1024
_TcpConnection = _tcp_connection.TcpConnection
_parse_message = _TcpConnection._TcpConnection__processParseMessage


def _bounded_parse_message(conn):
    buffer = conn._TcpConnection__readBuffer
    if len(buffer) >= 4:
        (length,) = struct.unpack("i", buffer[:4])
        if length < 0 or length > MAX_WIRE_MESSAGE:
            log.warning("dropping a peer connection announcing a %d-byte frame", length)
            conn.disconnect()
            return None
    return _parse_message(conn)


_TcpConnection._TcpConnection__processParseMessage = _bounded_parse_message


class PeerCipher:
    """Authenticated encryption of peer messages with the cluster secret (AES-256-GCM).

    Has the three methods PySyncObj's TcpConnection calls on its "encryptor" (it was
    written for Fernet): the timestamp it checks for ordering is bound to the message as
    associated data. One C call per message, instead of Fernet's CBC + HMAC + base64.
    """

    _SALT = b"opennebula-raft/peer-cipher/v1"

    def __init__(self, secret: str) -> None:
        key = hashlib.pbkdf2_hmac("sha256", secret.encode(), self._SALT, 100_000)
        self._aead = AESGCM(key)

    def encrypt_at_time(self, data: bytes, timestamp: int) -> bytes:
        header = struct.pack("<Q", timestamp)
        nonce = os.urandom(12)
        return header + nonce + self._aead.encrypt(nonce, data, header)

    @staticmethod
    def extract_timestamp(token: bytes) -> int:
        if len(token) < 8 + 12 + 16:
            raise ValueError("peer message too short")
        return struct.unpack_from("<Q", token)[0]

    def decrypt(self, token: bytes) -> bytes:
        # Raises InvalidTag for anything not sealed with the cluster secret.
        return self._aead.decrypt(token[8:20], token[20:], token[:8])


class PeerTransport(TCPTransport):
    """TCPTransport plus the durability gate, the strict handshake and fault injection."""

    # Set by the adapter before SyncObj builds the transport (it passes only the class).
    gate: "DurabilityGate | None" = None

    def __init__(self, syncObj, selfNode, otherNodes) -> None:  # noqa: N803 (PySyncObj's names)
        self._gate = PeerTransport.gate
        if self._gate is not None:
            self._gate.transport = self
        super().__init__(syncObj, selfNode, otherNodes)

    def _onIncomingMessageReceived(self, conn, message) -> None:  # noqa: N802
        if self._syncObj.encryptor and not conn.sendRandKey:
            super()._onIncomingMessageReceived(conn, message)
            return
        if not isinstance(message, str) or message not in self._nodeAddrToNode:
            log.warning("refusing a peer connection that did not name a zone member")
            conn.disconnect()
            self._unknownConnections.discard(conn)
            return
        super()._onIncomingMessageReceived(conn, message)

    def send(self, node, message) -> bool:
        gate = self._gate
        if gate is not None and gate.intercept(node, message):
            return True
        return self.send_now(node, message)

    def send_now(self, node, message) -> bool:
        gate = self._gate
        if gate is not None and gate.on_send is not None:
            gate.on_send(node, message)
        return super().send(node, message)


class DurabilityGate:
    """Holds outgoing messages while the journal has unsynced data; drops blocked peers'."""

    def __init__(self, journal_dirty: Callable[[], bool], is_leader: Callable[[], bool]) -> None:
        self._journal_dirty = journal_dirty
        self._is_leader = is_leader
        self._held: list[tuple[object, dict]] = []
        self.transport: PeerTransport | None = None
        self.blocked: frozenset[str] = frozenset()
        self.decorate: Callable[[object, dict], None] | None = None
        self.on_send: Callable[[object, dict], None] | None = None  # tracing, when set
        self.unsafe_no_hold = False  # only for the test that proves the gate matters

    def intercept(self, node, message: dict) -> bool:
        """True when the message is dropped or held instead of sent now."""
        if getattr(node, "address", None) in self.blocked:
            return True
        if self.decorate is not None and isinstance(message, dict):
            self.decorate(node, message)
        if self.unsafe_no_hold or not self._journal_dirty():
            if self._held:
                self._held.append((node, message))
                return True
            return False
        if message.get("type") == "append_entries" and self._is_leader():
            return False
        self._held.append((node, message))
        return True

    def release(self) -> None:
        """Send what was held; call only when the journal is synced."""
        if not self._held or self.transport is None:
            return
        held, self._held = self._held, []
        for node, message in held:
            if getattr(node, "address", None) not in self.blocked:
                self.transport.send_now(node, message)
