"""The gob codec (controlplane.gob) against golden bytes and against Go's own encoding/gob."""

from __future__ import annotations

import io
import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bls import FIELD_MODULUS
from controlplane.gob import (
    INT,
    STRING,
    UINT,
    Array,
    Decoder,
    Encoder,
    GobError,
    Struct,
    encode_int,
    encode_uint,
)
from intake.wire import SIGNED_TASK_RESPONSE, element_to_int, int_to_element


def _decode_all(data: bytes) -> list[Any]:
    decoder = Decoder(io.BytesIO(data).read)
    values = []
    while True:
        try:
            values.append(decoder.value()[1])
        except EOFError:
            return values


def _plain(rng: random.Random, *, signature: bool = True) -> dict[str, Any]:
    """A SignedTaskResponse in gobcheck's JSON: hex byte arrays, Montgomery limbs as they are."""
    value: dict[str, Any] = {
        "BatchMerkleRoot": rng.randbytes(32).hex(),
        "SenderAddress": rng.randbytes(20).hex(),
        "BatchIdentifierHash": bytes(31).hex() + "ff",  # zero bytes among them: arrays send every element
        "OperatorId": rng.randbytes(32).hex(),
    }
    if signature:
        value["X"] = int_to_element(rng.randrange(FIELD_MODULUS))
        value["Y"] = [0, 0, 0, rng.getrandbits(64)]  # zero limbs, and a full one
    return value


def _as_value(plain: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = {
        name: list(bytes.fromhex(plain[name]))
        for name in ("BatchMerkleRoot", "SenderAddress", "BatchIdentifierHash", "OperatorId")
    }
    if plain.get("X") is not None:
        value["BlsSignature"] = {"G1Point": {"G1Affine": {"X": plain["X"], "Y": plain["Y"]}}}
    else:
        value["BlsSignature"] = {}  # Go sends a nil G1Point as the Signature struct with no field
    return value


def _gobcheck(go_programs: dict[str, Path], mode: str, stdin: str) -> str:
    done = subprocess.run(
        [str(go_programs["gobcheck"]), mode], input=stdin, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_it_encodes_integers_as_gob_specifies() -> None:
    assert encode_uint(0) == b"\x00"
    assert encode_uint(127) == b"\x7f"
    assert encode_uint(128) == b"\xff\x80"
    assert encode_uint(256) == b"\xfe\x01\x00"
    assert encode_uint(2**64 - 1) == b"\xf8" + b"\xff" * 8
    assert encode_int(0) == b"\x00"
    assert encode_int(-1) == b"\x01"
    assert encode_int(1) == b"\x02"
    assert encode_int(-129) == b"\xfe\x01\x01"
    with pytest.raises(GobError):
        encode_uint(2**64)


def test_it_writes_a_struct_and_its_definition_once_per_stream() -> None:
    # The bytes of Go's package documentation example: type Point struct{ X, Y int }; Point{22, 33}.
    point = Struct("Point", (("X", INT), ("Y", INT)))
    encoder = Encoder()
    first = encoder.message(point, {"X": 22, "Y": 33})
    golden = bytes.fromhex(
        "1f ff81 03 01 01 05 506f696e74 01 ff82 00 01 02 01 01 58 01 04 00 01 01 59 01 04 00 00 00"
        " 07 ff82 01 2c 01 42 00"
    )
    assert first == golden
    second = encoder.message(
        point, {"X": 0, "Y": 33}
    )  # the definition is not sent again; X (zero) is left out
    assert second == bytes.fromhex("05 ff82 02 42 00")
    assert _decode_all(first + second) == [{"X": 22, "Y": 33}, {"Y": 33}]


def test_it_sends_a_non_struct_value_as_field_zero() -> None:
    assert Encoder().message(UINT, 1) == b"\x03\x06\x00\x01"
    assert _decode_all(Encoder().message(STRING, "hi")) == ["hi"]


def test_it_reads_what_go_writes(go_programs: dict[str, Path]) -> None:
    rng = random.Random(1)
    plains = [_plain(rng), _plain(rng, signature=False), _plain(rng)]
    stream = bytes.fromhex(_gobcheck(go_programs, "encode", "".join(json.dumps(p) + "\n" for p in plains)))
    assert _decode_all(stream) == [_as_value(p) for p in plains]


def test_it_writes_what_go_reads(go_programs: dict[str, Path]) -> None:
    rng = random.Random(2)
    plains = [_plain(rng), _plain(rng), _plain(rng, signature=False)]
    encoder = Encoder()
    stream = b"".join(encoder.message(SIGNED_TASK_RESPONSE, _as_value(p)) for p in plains)
    decoded = [json.loads(line) for line in _gobcheck(go_programs, "decode", stream.hex()).splitlines()]
    assert decoded == [{**p, "X": p.get("X"), "Y": p.get("Y")} for p in plains]


def test_it_converts_field_elements_from_and_to_montgomery_form() -> None:
    for value in (0, 1, 2, FIELD_MODULUS - 1, 12345678901234567890123456789):
        assert element_to_int(int_to_element(value)) == value
    # 1 in Montgomery form is 2^256 mod p: the limbs of R.
    r = pow(2, 256, FIELD_MODULUS)
    assert int_to_element(1) == [(r >> (64 * i)) & (2**64 - 1) for i in range(4)]


@pytest.mark.parametrize(
    ("stream", "why"),
    [
        (b"", "stream ended"),
        (b"\x05\xff\x82", "ended in the middle"),
        (b"\x03\xff\x82\x00", "undefined type"),  # a value of a type (65) never defined
        (b"\x03\x0c\x00\x05hi", "ends early"),  # a string longer than its message
        (b"\xf7" + b"\x00" * 9, "bad message length"),
        (b"\x04\xff\x81\x04\x00", "unsupported kind"),  # a map definition
    ],
)
def test_it_refuses_streams_that_are_not_gob(stream: bytes, why: str) -> None:
    decoder = Decoder(io.BytesIO(stream).read)
    with pytest.raises((GobError, EOFError), match=why):
        decoder.value()


def test_it_refuses_an_array_of_the_wrong_length() -> None:
    encoder = Encoder()
    with pytest.raises(GobError, match="needs 4 elements"):
        encoder.message(Array("Element", UINT, 4), [1, 2, 3])
