"""Go's ``encoding/gob``, as much of it as Go's ``net/rpc`` needs to talk to Aligned's operators and aggregators.

A gob stream (one per direction of a connection) is a sequence of messages, each ``uint length`` then either a
type definition (``-id`` and a ``wireType``) or a value (``id`` and the value). Type ids are the sender's own
(65 and up for its types), so a decoder keeps a table per stream, and definitions may come in any order.

Encoding, as Go's package documentation specifies it:

- an unsigned integer below 128 is one byte; a larger one is its big-endian bytes, minimal, after a byte
  holding the negated byte count; a signed integer is shifted left one bit, complemented when negative, and
  sent as unsigned; a bool is 0 or 1; a string or ``[]byte`` is its length and its bytes;
- an array or a slice is its element count and every element (zero ones too); ``[N]byte`` is an array of
  unsigned integers, not a byte string;
- a struct is a run of ``(field number delta, value)`` pairs closed by a delta of 0, leaving out fields with
  zero values (a nil pointer too); a field of struct type is always sent;
- a top-level value that is not a struct is sent as field 0 of a struct: a 0 byte, then the value.

Only what the control plane speaks is supported (bool, int, uint, string, []byte, arrays, slices and structs);
a float, map, interface or custom encoder in a stream is refused with ``GobError``, never guessed at.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Predefined type ids (encoding/gob's type.go).
BOOL_ID, INT_ID, UINT_ID, FLOAT_ID, BYTES_ID, STRING_ID = 1, 2, 3, 4, 5, 6
WIRE_TYPE_ID, ARRAY_TYPE_ID, COMMON_TYPE_ID, SLICE_TYPE_ID, STRUCT_TYPE_ID = 16, 17, 18, 19, 20
FIRST_USER_ID = 65

# Bounds on what a peer may make us allocate: Aligned's messages are a few hundred bytes.
MAX_MESSAGE_BYTES = 64 * 1024
MAX_ELEMENTS = 4096
MAX_DEPTH = 16


class GobError(ValueError):
    """A stream that is not gob, or uses what is not supported here: the connection can't go on."""


# --- Types --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Basic:
    name: str
    id: int


BOOL = Basic("bool", BOOL_ID)
INT = Basic("int", INT_ID)
UINT = Basic("uint", UINT_ID)
BYTES = Basic("[]byte", BYTES_ID)
STRING = Basic("string", STRING_ID)


@dataclass(frozen=True)
class Array:
    name: str
    elem: GobType
    length: int


@dataclass(frozen=True)
class Slice:
    name: str
    elem: GobType


@dataclass(frozen=True)
class Struct:
    name: str
    fields: tuple[tuple[str, GobType], ...] = ()


GobType = Basic | Array | Slice | Struct
_BASICS: dict[int, Basic] = {t.id: t for t in (BOOL, INT, UINT, BYTES, STRING)}


def zero(t: GobType) -> Any:
    """Go's zero value of ``t`` as this module represents values; a struct's is None (a nil pointer)."""
    if isinstance(t, Basic):
        return {BOOL_ID: False, INT_ID: 0, UINT_ID: 0, BYTES_ID: b"", STRING_ID: ""}[t.id]
    if isinstance(t, Array):
        return [zero(t.elem)] * t.length
    if isinstance(t, Slice):
        return []
    return None


# --- Primitive writes and reads ---------------------------------------------------------------------


def encode_uint(n: int) -> bytes:
    if n < 0 or n >= 1 << 64:
        raise GobError(f"uint out of range: {n}")
    if n < 128:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([256 - len(raw)]) + raw


def encode_int(n: int) -> bytes:
    if not -(1 << 63) <= n < 1 << 63:
        raise GobError(f"int out of range: {n}")
    return encode_uint((~n << 1) | 1 if n < 0 else n << 1)


class Reader:
    """Bounded reads from one message's bytes; running past its end is a GobError."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise GobError("message ends early")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise GobError("message ends early")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def uint(self) -> int:
        first = self.byte()
        if first < 128:
            return first
        count = 256 - first
        if count > 8:
            raise GobError(f"uint of {count} bytes")
        return int.from_bytes(self.take(count), "big")

    def int(self) -> int:
        u = self.uint()
        return ~(u >> 1) if u & 1 else u >> 1

    def done(self) -> bool:
        return self.pos >= len(self.data)


# --- Encoding -----------------------------------------------------------------------------------------


class Encoder:
    """One direction of a stream: each type's definition goes out once, before its first value."""

    def __init__(self) -> None:
        self._ids: dict[GobType, int] = {}
        self._next_id = FIRST_USER_ID

    def message(self, t: GobType, value: Any) -> bytes:
        """The bytes that send ``value`` of type ``t``: any definitions it still needs, then the value."""
        out = bytearray()
        definitions: list[bytes] = []
        type_id = self._define(t, definitions)
        for body in definitions:
            out += encode_uint(len(body)) + body
        body = encode_int(type_id) + self._top(t, value)
        out += encode_uint(len(body)) + body
        return bytes(out)

    def _define(self, t: GobType, out: list[bytes]) -> int:
        if isinstance(t, Basic):
            return t.id
        if t in self._ids:
            return self._ids[t]
        type_id = self._next_id
        self._next_id += 1
        self._ids[t] = type_id
        if isinstance(t, Array):
            elem = self._define(t.elem, out)
            # wireType{ArrayT: &arrayType{CommonType{Name, Id}, Elem, Len}}: field 0 of wireType.
            wire = (
                b"\x01"
                + _common(t.name, type_id)
                + b"\x01"
                + encode_int(elem)
                + b"\x01"
                + encode_int(t.length)
            )
            wire += b"\x00\x00"
        elif isinstance(t, Slice):
            elem = self._define(t.elem, out)
            wire = b"\x02" + _common(t.name, type_id) + b"\x01" + encode_int(elem) + b"\x00\x00"
        else:
            ids = [self._define(ft, out) for _, ft in t.fields]
            fields = b"".join(
                b"\x01" + _string(name) + b"\x01" + encode_int(fid) + b"\x00"
                for (name, _), fid in zip(t.fields, ids, strict=True)
            )
            wire = b"\x03" + _common(t.name, type_id)
            if t.fields:
                wire += b"\x01" + encode_uint(len(t.fields)) + fields
            wire += b"\x00\x00"
        out.append(encode_int(-type_id) + wire)
        return type_id

    def _top(self, t: GobType, value: Any) -> bytes:
        if isinstance(t, Struct):
            return self._struct(t, value)
        return b"\x00" + self._value(t, value, send_zero=True)

    def _struct(self, t: Struct, value: dict[str, Any] | None) -> bytes:
        value = value or {}
        out = bytearray()
        last = -1
        for number, (name, ft) in enumerate(t.fields):
            item = value.get(name)
            if item is None or (not isinstance(ft, (Struct, Array)) and item == zero(ft)):
                continue  # zero values (and nil pointers) are left out
            out += encode_uint(number - last) + self._value(ft, item, send_zero=False)
            last = number
        return bytes(out) + b"\x00"

    def _value(self, t: GobType, value: Any, *, send_zero: bool) -> bytes:
        if isinstance(t, Basic):
            if t.id == BOOL_ID:
                return encode_uint(1 if value else 0)
            if t.id == INT_ID:
                return encode_int(int(value))
            if t.id == UINT_ID:
                return encode_uint(int(value))
            raw = value if t.id == BYTES_ID else str(value).encode()
            return encode_uint(len(raw)) + bytes(raw)
        if isinstance(t, Array):
            if len(value) != t.length:
                raise GobError(f"{t.name} needs {t.length} elements, got {len(value)}")
            return encode_uint(t.length) + b"".join(self._value(t.elem, v, send_zero=True) for v in value)
        if isinstance(t, Slice):
            return encode_uint(len(value)) + b"".join(self._value(t.elem, v, send_zero=True) for v in value)
        return self._struct(t, value)


def _string(text: str) -> bytes:
    raw = text.encode()
    return encode_uint(len(raw)) + raw


def _common(name: str, type_id: int) -> bytes:
    """Field 0 of arrayType/sliceType/structType: CommonType{Name string; Id typeId} (an empty name left out)."""
    body = (b"\x01" + _string(name) + b"\x01" if name else b"\x02") + encode_int(type_id) + b"\x00"
    return b"\x01" + body


# --- Decoding -----------------------------------------------------------------------------------------


@dataclass
class _Wire:
    kind: str  # "array", "slice", "struct"
    name: str = ""
    elem: int = 0
    length: int = 0
    fields: list[tuple[str, int]] = field(default_factory=list)


class Decoder:
    """One direction of a stream, read message by message from ``read(n)`` (which returns exactly n bytes, or
    fewer at the end of the stream). Keeps the sender's type definitions."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self._read = read
        self._types: dict[int, _Wire] = {}

    def _exactly(self, n: int) -> bytes:
        data = self._read(n)
        if len(data) < n:
            raise EOFError("stream ended" if not data else "stream ended in the middle of a message")
        return data

    def _length(self) -> int:
        first = self._read(1)
        if not first:
            raise EOFError("stream ended")
        if first[0] < 128:
            return first[0]
        count = 256 - first[0]
        if count > 8:
            raise GobError("bad message length")
        return int.from_bytes(self._exactly(count), "big")

    def value(self) -> tuple[int, Any]:
        """The next value (definitions before it are taken in): (the sender's type id, the value)."""
        while True:
            length = self._length()
            if length == 0 or length > MAX_MESSAGE_BYTES:
                raise GobError(f"message of {length} bytes")
            reader = Reader(self._exactly(length))
            type_id = reader.int()
            if type_id < 0:
                self._types[-type_id] = self._wire_type(reader)
                continue
            if type_id in _BASICS or type_id in self._types:
                value = self._top(type_id, reader)
                if not reader.done():
                    raise GobError("bytes left over after a value")
                return type_id, value
            raise GobError(f"value of undefined type {type_id}")

    # -- type definitions

    def _wire_type(self, r: Reader) -> _Wire:
        delta = r.uint()
        if delta not in (1, 2, 3):  # ArrayT, SliceT, StructT; MapT and custom encoders are not supported
            raise GobError(f"unsupported kind of type definition (wireType field {delta - 1})")
        kind = {1: "array", 2: "slice", 3: "struct"}[delta]
        wire = _Wire(kind=kind)
        self._struct_fields(r, lambda number, rr: self._type_field(wire, number, rr))
        if r.uint() != 0:
            raise GobError("a type definition with more than one kind")
        return wire

    def _type_field(self, wire: _Wire, number: int, r: Reader) -> None:
        if number == 0:  # CommonType

            def common(n: int, rr: Reader) -> None:
                if n == 0:
                    wire.name = rr.take(rr.uint()).decode(errors="replace")
                elif n == 1:
                    rr.int()
                else:
                    raise GobError("bad CommonType")

            self._struct_fields(r, common)
        elif number == 1 and wire.kind == "struct":
            count = r.uint()
            if count > MAX_ELEMENTS:
                raise GobError("too many fields")
            for _ in range(count):
                wire.fields.append(self._field_type(r))
        elif number == 1:
            wire.elem = r.int()
        elif number == 2 and wire.kind == "array":
            wire.length = r.int()
        else:
            raise GobError(f"bad field {number} in a {wire.kind} definition")

    def _field_type(self, r: Reader) -> tuple[str, int]:
        """One fieldType{Name string; Id typeId} of a struct's definition."""
        name, type_id = "", 0

        def part(n: int, rr: Reader) -> None:
            nonlocal name, type_id
            if n == 0:
                name = rr.take(rr.uint()).decode(errors="replace")
            elif n == 1:
                type_id = rr.int()
            else:
                raise GobError("bad fieldType")

        self._struct_fields(r, part)
        return name, type_id

    @staticmethod
    def _struct_fields(r: Reader, on_field: Callable[[int, Reader], None]) -> None:
        number = -1
        while True:
            delta = r.uint()
            if delta == 0:
                return
            number += delta
            on_field(number, r)

    # -- values

    def _top(self, type_id: int, r: Reader) -> Any:
        wire = self._types.get(type_id)
        if wire is not None and wire.kind == "struct":
            return self._decode(type_id, r, 0)
        if r.uint() != 0:
            raise GobError("a non-struct value must be sent as field 0")
        return self._decode(type_id, r, 0)

    def _decode(self, type_id: int, r: Reader, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise GobError("values nested too deep")
        if type_id == BOOL_ID:
            return r.uint() != 0
        if type_id == INT_ID:
            return r.int()
        if type_id == UINT_ID:
            return r.uint()
        if type_id in (BYTES_ID, STRING_ID):
            raw = r.take(r.uint())
            return raw if type_id == BYTES_ID else raw.decode(errors="replace")
        wire = self._types.get(type_id)
        if wire is None:
            raise GobError(f"unsupported or undefined type {type_id}")
        if wire.kind in ("array", "slice"):
            count = r.uint()
            if count > MAX_ELEMENTS or (wire.kind == "array" and count != wire.length):
                raise GobError(f"{wire.name or 'array'} of {count} elements")
            return [self._decode(wire.elem, r, depth + 1) for _ in range(count)]
        value: dict[str, Any] = {}
        number = -1
        while True:
            delta = r.uint()
            if delta == 0:
                return value
            number += delta
            if number >= len(wire.fields):
                raise GobError(f"field {number} of a struct of {len(wire.fields)}")
            name, field_id = wire.fields[number]
            value[name] = self._decode(field_id, r, depth + 1)
