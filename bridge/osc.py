"""OSC 1.0 packets: encode messages and bundles, decode robustly, split streams into MTU-sized bundles.

Pure functions over bytes (no sockets, no python-osc): the byte layout follows the OSC 1.0 spec
(https://opensoundcontrol.stanford.edu/spec-1_0.html):

- every item is padded with NUL bytes to a multiple of 4 bytes; OSC-strings always carry at least one NUL;
- a message is ``address`` (OSC-string starting with ``/``), a type-tag string (``,`` + one tag per
  argument), then the arguments, big-endian;
- a bundle is ``#bundle\\0``, a 64-bit NTP time tag, then elements, each an int32 size followed by a
  message or bundle of that many bytes.

Argument types (Python -> tag): ``bool`` -> ``T``/``F``, ``int`` -> ``i`` (``h`` outside int32),
``float`` -> ``f``, ``str`` -> ``s``, ``bytes`` -> ``b`` (blob), ``None`` -> ``N``; numpy scalars as their
Python kind; a 1-D numpy array expands to its elements.  ``Typed(tag, value)`` forces a tag
(``i h f d s S c b t T F N I``).  The decoder accepts all of these tags.
"""
from __future__ import annotations

import functools
import math
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

BUNDLE_TAG = b"#bundle\x00"
IMMEDIATELY = 1  # the special time tag 0x0000000000000001: "process now"
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 to 1970-01-01
MAX_DEPTH = 8  # nested bundles deeper than this are rejected
DEFAULT_MTU_PAYLOAD = 1472  # 1500-byte Ethernet MTU - 20 (IPv4) - 8 (UDP)


class OscError(ValueError):
    """Base class for OSC errors (a ``ValueError``)."""


class OscDecodeError(OscError):
    """A malformed or truncated packet (raised by ``decode_packet``; never anything else)."""


class OscEncodeError(OscError):
    """An address or argument that cannot be encoded, or a message larger than ``max_bytes``."""


class Message(NamedTuple):
    """A decoded message: ``address`` and its ``args`` (a list); unpacks as ``(address, args)``."""

    address: str
    args: list


@dataclass
class Bundle:
    """A decoded bundle: NTP ``timetag`` (``IMMEDIATELY`` = 1) and ``elements`` (messages and bundles)."""

    timetag: int
    elements: list = field(default_factory=list)

    @property
    def messages(self) -> list[Message]:
        """All messages of this bundle and its nested bundles, depth-first."""
        return flatten(self)


class Typed(NamedTuple):
    """An argument with an explicit OSC type tag, e.g. ``Typed("d", 0.1)`` or ``Typed("t", IMMEDIATELY)``."""

    tag: str
    value: Any = None


# --------------------------------------------------------------------------------------------- time tags
def timetag_from_unix(t: float | None = None) -> int:
    """Unix seconds (default: now) -> 64-bit NTP time tag (32.32 fixed point since 1900)."""
    t = time.time() if t is None else float(t)
    secs = math.floor(t)
    frac = int(round((t - secs) * (1 << 32)))
    if frac >= 1 << 32:
        secs, frac = secs + 1, frac - (1 << 32)
    return ((int(secs) + NTP_EPOCH_OFFSET) << 32) | frac


def timetag_to_unix(tag: int) -> float:
    """64-bit NTP time tag -> Unix seconds (``IMMEDIATELY`` maps to 1900-01-01 + 2**-32 s)."""
    return (tag >> 32) - NTP_EPOCH_OFFSET + (tag & 0xFFFFFFFF) / float(1 << 32)


# --------------------------------------------------------------------------------------------- encoding
def _pad(n: int) -> int:
    """Bytes of NUL padding after ``n`` bytes to reach a multiple of 4."""
    return -n % 4


def encode_string(s: str) -> bytes:
    """OSC-string: UTF-8 bytes, a NUL terminator, then NULs to a multiple of 4 bytes."""
    b = s.encode("utf-8")
    if b"\x00" in b:
        raise OscEncodeError(f"OSC strings cannot contain NUL: {s!r}")
    return b + b"\x00" * (4 - len(b) % 4)


def encode_blob(data: bytes) -> bytes:
    """OSC-blob: int32 size, the bytes, NUL padding to a multiple of 4."""
    data = bytes(data)
    return struct.pack(">i", len(data)) + data + b"\x00" * _pad(len(data))


def _expand(args: Iterable) -> list:
    out: list = []
    for a in args:
        if isinstance(a, np.ndarray):
            if a.ndim > 1:
                raise OscEncodeError(f"cannot send a {a.ndim}-D array as OSC arguments; flatten it first")
            out.extend(a.tolist())
        else:
            out.append(a)
    return out


def _tag_of(a) -> tuple[str, Any]:
    if isinstance(a, Typed):
        return a.tag, a.value
    if a is None:
        return "N", None
    if isinstance(a, (bool, np.bool_)):
        return ("T" if a else "F"), None
    if isinstance(a, (int, np.integer)):
        v = int(a)
        return ("i" if -(1 << 31) <= v < (1 << 31) else "h"), v
    if isinstance(a, (float, np.floating)):
        return "f", float(a)
    if isinstance(a, str):
        return "s", a
    if isinstance(a, (bytes, bytearray, memoryview)):
        return "b", bytes(a)
    raise OscEncodeError(f"cannot encode OSC argument of type {type(a).__name__}: {a!r}")


_FIXED = {"i": ">i", "h": ">q", "f": ">f", "d": ">d", "t": ">Q", "c": ">I"}
_NO_DATA = {"T", "F", "N", "I"}
_RUN = frozenset("ifhdt")


@functools.lru_cache(maxsize=4096)
def _address_bytes(address: str) -> bytes:
    if not isinstance(address, str) or not address.startswith("/"):
        raise OscEncodeError(f"OSC address must be a string starting with '/': {address!r}")
    if any(c in address for c in " #"):
        raise OscEncodeError(f"OSC address must not contain spaces or '#': {address!r}")
    return encode_string(address)


def encode_message(address: str, args: Sequence = ()) -> bytes:
    """One OSC message as bytes (OSC 1.0 layout, see module doc).

    Runs of consecutive fixed-width arguments are packed with a single ``struct`` call (a pose frame of
    57 numbers costs one pack); Python floats and int32 ints take a fast path.
    """
    if not isinstance(address, str):
        raise OscEncodeError(f"OSC address must be a string starting with '/': {address!r}")
    head = _address_bytes(address)
    tags = [","]
    fmt: list[str] = [">"]
    vals: list = []
    body: list[bytes] = []

    def flush():
        if vals:
            try:
                body.append(struct.pack("".join(fmt), *vals))
            except (struct.error, TypeError) as exc:
                raise OscEncodeError(f"an argument does not fit its OSC type ({''.join(fmt[1:])}): {exc}") from None
            del fmt[1:]
            vals.clear()

    for a in _expand(args):
        t = type(a)
        if t is float:
            tags.append("f")
            fmt.append("f")
            vals.append(a)
            continue
        if t is int and -(1 << 31) <= a < (1 << 31):
            tags.append("i")
            fmt.append("i")
            vals.append(a)
            continue
        tag, v = _tag_of(a)
        tags.append(tag)
        if tag in _FIXED:
            if tag == "c":
                v = ord(v) if isinstance(v, str) else int(v)
            fmt.append(_FIXED[tag][1:])
            vals.append(v)
        elif tag in ("s", "S"):
            flush()
            body.append(encode_string(str(v)))
        elif tag == "b":
            flush()
            body.append(encode_blob(v))
        elif tag in _NO_DATA:
            pass
        else:
            raise OscEncodeError(f"unsupported OSC type tag {tag!r}")
    flush()
    return head + encode_string("".join(tags)) + b"".join(body)


def encode_bundle(messages: Iterable, timetag: int = IMMEDIATELY) -> bytes:
    """A bundle of ``messages``: each element is encoded bytes, an ``(address, args)`` pair or a ``Bundle``."""
    parts = [BUNDLE_TAG, struct.pack(">Q", int(timetag))]
    for m in messages:
        b = _element_bytes(m)
        parts.append(struct.pack(">i", len(b)))
        parts.append(b)
    return b"".join(parts)


def _element_bytes(m) -> bytes:
    if isinstance(m, (bytes, bytearray, memoryview)):
        b = bytes(m)
        if len(b) % 4 or not b or b[:1] not in (b"/", b"#"):
            raise OscEncodeError("bundle element bytes must be an encoded OSC message or bundle")
        return b
    if isinstance(m, Bundle):
        return encode_bundle(m.elements, m.timetag)
    address, args = m
    return encode_message(address, args)


def pack_bundles(messages: Iterable, max_bytes: int = DEFAULT_MTU_PAYLOAD, timetag: int = IMMEDIATELY) -> list[bytes]:
    """Split ``messages`` (bytes or ``(address, args)``) into bundles of at most ``max_bytes`` each.

    Order is kept; packing is greedy.  A message too large for a bundle but within ``max_bytes`` is
    sent bare; one larger than ``max_bytes`` raises ``OscEncodeError`` (the grammar never builds one:
    a 33-joint pose frame is 500 bytes).
    """
    header = len(BUNDLE_TAG) + 8
    if max_bytes < header + 4 + 8:
        raise OscEncodeError(f"max_bytes={max_bytes} is too small for an OSC bundle")
    out: list[bytes] = []
    cur: list[bytes] = []
    size = header

    def close():
        nonlocal cur, size
        if cur:
            out.append(encode_bundle(cur, timetag))
            cur, size = [], header

    for m in messages:
        b = _element_bytes(m)
        if len(b) > max_bytes:
            raise OscEncodeError(f"OSC message of {len(b)} bytes exceeds max_bytes={max_bytes}")
        if header + 4 + len(b) > max_bytes:
            close()
            out.append(b)
            continue
        if size + 4 + len(b) > max_bytes:
            close()
        cur.append(b)
        size += 4 + len(b)
    close()
    return out


# --------------------------------------------------------------------------------------------- decoding
def _read_string(data: bytes, pos: int) -> tuple[str, int]:
    end = data.find(b"\x00", pos)
    if end < 0:
        raise OscDecodeError(f"unterminated OSC string at byte {pos}")
    nxt = end + 1 + _pad(end + 1 - pos)
    if nxt > len(data):
        raise OscDecodeError(f"OSC string at byte {pos} lacks its padding")
    if data[end:nxt].strip(b"\x00"):
        raise OscDecodeError(f"non-NUL padding after OSC string at byte {pos}")
    try:
        return data[pos:end].decode("utf-8"), nxt
    except UnicodeDecodeError:
        raise OscDecodeError(f"OSC string at byte {pos} is not UTF-8") from None


def _decode_message(data: bytes) -> Message:
    address, pos = _read_string(data, 0)
    if not address.startswith("/"):
        raise OscDecodeError(f"OSC address must start with '/': {address[:40]!r}")
    if pos == len(data):  # OSC 1.0: older senders may omit the type tag string
        return Message(address, [])
    tags, pos = _read_string(data, pos)
    if not tags.startswith(","):
        raise OscDecodeError(f"type tag string must start with ',': {tags[:40]!r}")
    args: list = []
    n = len(data)
    tags = tags[1:]
    i = 0
    while i < len(tags):
        tag = tags[i]
        i += 1
        if tag in _RUN:  # a run of fixed-width numbers: one unpack
            j = i
            while j < len(tags) and tags[j] in _RUN:
                j += 1
            fmt = ">" + "".join(_FIXED[t][1:] for t in tags[i - 1: j])
            size = struct.calcsize(fmt)
            if pos + size > n:
                raise OscDecodeError(f"arguments '{tags[i - 1: j]}' truncated at byte {pos}")
            args.extend(struct.unpack_from(fmt, data, pos))
            pos += size
            i = j
        elif tag in _FIXED:
            fmt = _FIXED[tag]
            size = struct.calcsize(fmt)
            if pos + size > n:
                raise OscDecodeError(f"argument '{tag}' truncated at byte {pos}")
            (v,) = struct.unpack_from(fmt, data, pos)
            pos += size
            args.append(chr(v) if tag == "c" and v < 0x110000 else v)
        elif tag in ("s", "S"):
            v, pos = _read_string(data, pos)
            args.append(v)
        elif tag == "b":
            if pos + 4 > n:
                raise OscDecodeError(f"blob size truncated at byte {pos}")
            (size,) = struct.unpack_from(">i", data, pos)
            if size < 0 or pos + 4 + size + _pad(size) > n:
                raise OscDecodeError(f"blob of {size} bytes at byte {pos} overruns the packet")
            args.append(bytes(data[pos + 4: pos + 4 + size]))
            pos += 4 + size + _pad(size)
        elif tag == "T":
            args.append(True)
        elif tag == "F":
            args.append(False)
        elif tag == "N":
            args.append(None)
        elif tag == "I":
            args.append(math.inf)
        elif tag in "[]":
            raise OscDecodeError("OSC arrays ('[' ']') are not supported")
        else:
            raise OscDecodeError(f"unknown OSC type tag {tag!r}")
    if pos != n:
        raise OscDecodeError(f"{n - pos} trailing bytes after the arguments")
    return Message(address, args)


def _decode(data: bytes, depth: int):
    if len(data) == 0 or len(data) % 4:
        raise OscDecodeError(f"OSC packet size must be a positive multiple of 4, got {len(data)}")
    if data[:8] == BUNDLE_TAG:
        if depth >= MAX_DEPTH:
            raise OscDecodeError(f"bundles nested deeper than {MAX_DEPTH}")
        if len(data) < 16:
            raise OscDecodeError("bundle shorter than its header")
        (tt,) = struct.unpack_from(">Q", data, 8)
        pos, elements = 16, []
        while pos < len(data):
            if pos + 4 > len(data):
                raise OscDecodeError("bundle element size truncated")
            (size,) = struct.unpack_from(">i", data, pos)
            if size <= 0 or size % 4 or pos + 4 + size > len(data):
                raise OscDecodeError(f"bundle element of {size} bytes at byte {pos} is invalid")
            elements.append(_decode(data[pos + 4: pos + 4 + size], depth + 1))
            pos += 4 + size
        return Bundle(tt, elements)
    if data[:1] == b"/":
        return _decode_message(data)
    raise OscDecodeError("not an OSC message ('/') or bundle ('#bundle')")


def decode_packet(data: bytes) -> Message | Bundle:
    """Bytes -> ``Message`` or ``Bundle``; any malformation raises ``OscDecodeError`` (and nothing else)."""
    try:
        return _decode(bytes(data), 0)
    except OscDecodeError:
        raise
    except Exception as exc:  # defensive: a decoder bug must not escape as another type into a server loop
        raise OscDecodeError(f"undecodable packet: {exc!r}") from None


def flatten(packet: Message | Bundle) -> list[Message]:
    """All messages in a decoded packet, depth-first (bundle time tags dropped)."""
    if isinstance(packet, Message):
        return [packet]
    out: list[Message] = []
    for e in packet.elements:
        out.extend(flatten(e))
    return out
