"""msgpack, the one serializer for stored and transmitted data (never pickle)."""

from typing import Any

import msgpack

MAX_MESSAGE = 64 * 1024 * 1024


def packb(obj: Any) -> bytes:
    return msgpack.packb(obj, use_bin_type=True)


def unpackb(data: bytes, max_size: int = MAX_MESSAGE) -> Any:
    """Decode msgpack; raises ValueError on malformed or oversized input."""
    if len(data) > max_size:
        raise ValueError(f"message of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError, TypeError) as e:
        raise ValueError(f"malformed msgpack: {e}") from e
