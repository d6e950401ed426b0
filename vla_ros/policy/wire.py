"""The openpi websocket protocol's encoding: msgpack, numpy arrays as tagged maps.

An ndarray travels as {"__ndarray__": True, "data": raw bytes, "dtype": dtype.str, "shape": [...]}
and a numpy scalar as {"__npgeneric__": True, "data": value, "dtype": dtype.str} (the layout of
openpi_client.msgpack_numpy, so either side can be openpi's). Object, void and complex arrays
have no portable form and are refused. Decoded arrays are read-only views of the message.
"""
from __future__ import annotations

import msgpack
import numpy as np

from vla_ros.policy.interface import PolicyError


def _encode(value):
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in "VOc":
        raise PolicyError(f"cannot send numpy dtype {value.dtype} (no portable encoding)")
    if isinstance(value, np.ndarray):
        return {b"__ndarray__": True, b"data": np.ascontiguousarray(value).tobytes(),
                b"dtype": value.dtype.str, b"shape": value.shape}
    if isinstance(value, np.generic):
        return {b"__npgeneric__": True, b"data": value.item(), b"dtype": value.dtype.str}
    return value


def _decode(value: dict):
    if b"__ndarray__" in value:
        return np.ndarray(buffer=value[b"data"], dtype=np.dtype(value[b"dtype"]), shape=value[b"shape"])
    if b"__npgeneric__" in value:
        return np.dtype(value[b"dtype"]).type(value[b"data"])
    return value


def pack(message) -> bytes:
    return msgpack.packb(message, default=_encode)


def unpack(data: bytes):
    """The message in `data`, or PolicyError when it is not msgpack of the protocol's kind."""
    try:
        return msgpack.unpackb(data, object_hook=_decode)
    except (ValueError, TypeError, KeyError, OverflowError, msgpack.UnpackException) as error:
        raise PolicyError(f"not a msgpack-numpy message: {error}") from None
