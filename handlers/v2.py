"""The KServe v2 (Open Inference Protocol) REST codec of the handlers: one request body in, one answer out.

A v2 request is ``{"inputs": [{"name", "shape", "datatype", "data"}], "id"?, "parameters"?, "outputs"?}``;
TorchServe (0.12.0's ``/v2/models/M/infer``, and ``/explain``) hands it to the handler as it came, like a v1 body:
parsed JSON for ``Content-Type: application/json``, else bytes (tritonclient sends no Content-Type). Bytes may carry
the binary tensor extension (Triton's, what tritonclient sends by default): the JSON header is the first
``Inference-Header-Content-Length`` bytes, and each input with ``parameters.binary_data_size`` takes its data from
the bytes after it, in order. ``data`` may be nested or flat (row-major); either way it is checked against
``shape`` and kept flat here. Answers are always JSON (clients take JSON outputs even when they asked for binary).

Errors are ``BadTensor`` (a ValueError) with a message that names the input; the base handler answers them 400.
Only the standard library and torch are imported: the same module runs in TorchServe workers and our own runtime.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import torch

# v2 datatype -> struct format code of one element (little-endian binary data); BYTES has its own framing.
_STRUCT = {
    "BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q", "INT8": "b", "INT16": "h",
    "INT32": "i", "INT64": "q", "FP16": "e", "FP32": "f", "FP64": "d",
}  # fmt: skip
DATATYPES = (*_STRUCT, "BYTES")
INTEGERS = tuple(name for name in _STRUCT if "INT" in name)
FLOATS = ("FP16", "FP32", "FP64")
NUMERIC = (*INTEGERS, *FLOATS)
# bfloat16 answers as FP32: not every v2 client knows BF16, and every bfloat16 value is exactly a float32.
_TORCH = {
    torch.bool: "BOOL", torch.uint8: "UINT8", torch.int8: "INT8", torch.int16: "INT16", torch.int32: "INT32",
    torch.int64: "INT64", torch.float16: "FP16", torch.bfloat16: "FP32", torch.float32: "FP32",
    torch.float64: "FP64",
}  # fmt: skip
BINARY_HEADER = "Inference-Header-Content-Length"


class BadTensor(ValueError):
    """A v2 body, or one of its inputs, that does not hold what it says; the message names the input."""


@dataclass
class Tensor:
    """One input: ``data`` flat in row-major order, ``len(data) == prod(shape)``, elements of ``datatype``
    (BYTES: str from JSON, bytes from binary data)."""

    name: str
    shape: list[int]
    datatype: str
    data: list[Any]
    parameters: dict[str, Any] = field(default_factory=dict)

    def rows(self) -> list[Any]:
        """The instances along the first dimension: elements for shape [N], nested lists for [N, ...]."""
        return _nest(self.data, self.shape) if self.shape else list(self.data)

    def where(self) -> str:
        return f"input {self.name!r}"


@dataclass
class Request:
    inputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    outputs: list[str] | None = None  # the output names asked for, when the request names them


def mismatch(tensor: Tensor, datatypes: tuple[str, ...], rank: int | None, expects: str) -> str | None:
    """What is wrong with ``tensor`` for a handler that takes ``datatypes`` at ``rank`` (None: any), or None."""
    if tensor.datatype not in datatypes:
        return f"datatype {tensor.datatype}, expected {' or '.join(datatypes)} ({expects})"
    if not tensor.shape or (rank is not None and len(tensor.shape) != rank):
        return f"shape {tensor.shape}, expected {'[N]' if rank == 1 else '[N, ...]'} ({expects})"
    if tensor.shape[0] == 0:
        return f"shape {tensor.shape} holds no instances"
    return None


def header_length(value: Any) -> int | None:
    """The binary extension's JSON length from its header value (None when absent); BadTensor when not a count."""
    if value is None or value == "":
        return None
    try:
        length = int(str(value).strip())
    except ValueError:
        raise BadTensor(f"{BINARY_HEADER} must be a byte count, not {value!r}") from None
    if length < 0:
        raise BadTensor(f"{BINARY_HEADER} must be a byte count, not {value!r}")
    return length


def read(body: Any, json_length: int | None = None) -> Request | None:
    """The v2 request in ``body`` (a dict, or bytes/str of its JSON, with binary data after ``json_length`` bytes),
    or None when the body is no v2 request (no ``"inputs"``, or ``"instances"`` too: a v1 body). Raises BadTensor.
    """
    tail = b""
    if isinstance(body, (bytes, bytearray, str)):
        # Only the start is looked at before parsing: raw calls' bodies (images, long texts) are never copied.
        if body[:64].lstrip()[:1] not in ("{", b"{"):
            return None
        raw = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        head = raw if json_length is None else raw[:json_length]
        tail = b"" if json_length is None else raw[json_length:]
        try:
            body = json.loads(head)
        except ValueError:
            if json_length is None:
                return None  # a raw call's bytes that merely start with "{"
            raise BadTensor(f"the first {json_length} bytes ({BINARY_HEADER}) are not a JSON object") from None
    if not isinstance(body, dict) or "inputs" not in body or "instances" in body:
        return None
    return _request(body, tail)


def _request(body: dict[str, Any], tail: bytes) -> Request:
    inputs = body["inputs"]
    if not isinstance(inputs, list):
        raise BadTensor(f'"inputs" must be a list of tensors, got {type(inputs).__name__}')
    request_id = body.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise BadTensor(f'"id" must be a string, got {type(request_id).__name__}')
    parameters = body.get("parameters")
    parameters = {} if parameters is None else parameters
    if not isinstance(parameters, dict):
        raise BadTensor(f'"parameters" must be an object, got {type(parameters).__name__}')
    tensors = []
    offset = 0
    for number, entry in enumerate(inputs):
        tensor, offset = _tensor(number, entry, tail, offset)
        tensors.append(tensor)
    if offset != len(tail):
        raise BadTensor(f"{len(tail) - offset} bytes of binary data follow the inputs that no input claims")
    return Request(tensors, request_id, parameters, _requested_outputs(body.get("outputs")))


def _requested_outputs(outputs: Any) -> list[str] | None:
    if outputs is None:
        return None
    named = isinstance(outputs, list) and all(isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs)
    if not named:
        raise BadTensor('"outputs" must be a list of objects with a "name"')
    return [o["name"] for o in outputs]


def _tensor(number: int, entry: Any, tail: bytes, offset: int) -> tuple[Tensor, int]:
    if not isinstance(entry, dict):
        raise BadTensor(f"inputs[{number}] must be an object with name, shape, datatype and data")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise BadTensor(f'inputs[{number}] has no "name" (a non-empty string)')
    where = f"input {name!r}"
    parameters = entry.get("parameters")
    parameters = {} if parameters is None else parameters
    if not isinstance(parameters, dict):
        raise BadTensor(f'{where}: "parameters" must be an object')
    shape = entry.get("shape")
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
        raise BadTensor(f'{where}: "shape" must be a list of non-negative integers, got {json.dumps(shape)}')
    datatype = entry.get("datatype")
    if datatype not in DATATYPES:
        raise BadTensor(f"{where}: unknown datatype {json.dumps(datatype)}; expected one of {', '.join(DATATYPES)}")
    count = math.prod(shape)
    size = parameters.get("binary_data_size")
    if size is not None:
        if "data" in entry:
            raise BadTensor(f'{where}: both "data" and parameters.binary_data_size')
        if isinstance(size, bool) or not isinstance(size, int) or size < 0 or offset + size > len(tail):
            raise BadTensor(f"{where}: binary_data_size {size!r} but {len(tail) - offset} bytes of binary data left")
        data = _from_binary(where, tail[offset : offset + size], datatype, count)
        offset += size
    elif "data" not in entry:
        raise BadTensor(f'{where}: missing "data" (or parameters.binary_data_size)')
    else:
        data = _flat(where, entry["data"])
        if len(data) != count:
            raise BadTensor(f'{where}: shape {shape} holds {count} values, "data" has {len(data)}')
        _check_values(where, data, datatype)
    return Tensor(name, shape, datatype, data, parameters), offset


def _flat(where: str, data: Any) -> list[Any]:
    """Nested lists (rectangular) -> their elements in row-major order; a flat list stays as it is."""
    if not isinstance(data, list):
        raise BadTensor(f'{where}: "data" must be a list, got {type(data).__name__}')
    while data and isinstance(data[0], list):
        if not all(isinstance(row, list) and len(row) == len(data[0]) for row in data):
            raise BadTensor(f'{where}: "data" is ragged (its nested lists differ in length)')
        data = [value for row in data for value in row]
    if any(isinstance(value, list) for value in data):
        raise BadTensor(f'{where}: "data" is ragged (lists mixed with values)')
    return data


def _check_values(where: str, data: list[Any], datatype: str) -> None:
    # set(map(type)) and min/max run in C: fast enough for the tensors JSON can carry at all.
    kinds = set(map(type, data))
    if datatype == "BYTES":
        allowed: tuple[type, ...] = (str,)
        what = "strings"
    elif datatype == "BOOL":
        allowed, what = (bool,), "true or false"
    elif datatype in INTEGERS:
        allowed, what = (int,), "integers"
    else:
        allowed, what = (int, float), "numbers"
    if not kinds <= set(allowed):
        first = next(n for n, value in enumerate(data) if type(value) not in allowed)
        raise BadTensor(f"{where}: datatype {datatype} takes {what}, data[{first}] is {json.dumps(data[first])}")
    if datatype in INTEGERS and data:
        bits = int("".join(c for c in datatype if c.isdigit()))
        low, high = (0, 2**bits - 1) if datatype.startswith("U") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        if min(data) < low or max(data) > high:
            raise BadTensor(f"{where}: values out of range for {datatype} ({low}..{high})")


def _from_binary(where: str, raw: bytes, datatype: str, count: int) -> list[Any]:
    if datatype == "BYTES":
        # Each element: its length as a little-endian uint32, then its bytes (tritonclient's serialize_byte_tensor).
        values, position = [], 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise BadTensor(f"{where}: truncated BYTES binary data")
            (length,) = struct.unpack_from("<I", raw, position)
            values.append(raw[position + 4 : position + 4 + length])
            position += 4 + length
        if position != len(raw) or len(values) != count:
            raise BadTensor(f"{where}: the binary data holds {len(values)} BYTES elements, the shape {count}")
        return values
    code = _STRUCT[datatype]
    if len(raw) != count * struct.calcsize(code):
        raise BadTensor(f"{where}: {len(raw)} bytes of binary data for {count} {datatype} values")
    return list(struct.unpack(f"<{count}{code}", raw))


def _nest(flat: list[Any], shape: list[int]) -> list[Any]:
    if len(shape) == 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_nest(flat[n * step : (n + 1) * step], shape[1:]) for n in range(shape[0])]


def output(name: str, values: list[Any], as_json: bool = False) -> dict[str, Any]:
    """One output tensor of ``values`` (one per instance): tensors of one shape stacked with their dtype; else
    rectangular lists of numbers (INT64 for ints, FP64 for other numbers, BOOL) or strings (BYTES); anything else
    (and everything when ``as_json``) as BYTES [N] of compact JSON texts.
    """
    if not as_json:
        if values and all(isinstance(v, torch.Tensor) for v in values):
            if len({(tuple(v.shape), v.dtype) for v in values}) == 1 and values[0].dtype in _TORCH:
                stacked = torch.stack(values)
                datatype = _TORCH[stacked.dtype]
                flat = (stacked.float() if stacked.dtype == torch.bfloat16 else stacked).reshape(-1).tolist()
                return _tensor_json(name, list(stacked.shape), datatype, flat)
            values = [v.tolist() for v in values]
        found = _rectangular(values)
        if found is not None:
            shape, flat = found
            kind = _datatype_of(flat)
            if kind is not None:
                return _tensor_json(name, shape, kind, flat)
    texts = [json.dumps(_plain(v), separators=(",", ":"), ensure_ascii=False) for v in values]
    return _tensor_json(name, [len(values)], "BYTES", texts)


def _tensor_json(name: str, shape: list[int], datatype: str, data: list[Any]) -> dict[str, Any]:
    return {"name": name, "shape": shape, "datatype": datatype, "data": data}


def _rectangular(values: list[Any]) -> tuple[list[int], list[Any]] | None:
    shape = [len(values)]
    flat = values
    while flat and all(isinstance(v, list) for v in flat):
        width = len(flat[0])
        if width == 0 or any(len(v) != width for v in flat):
            return None
        shape.append(width)
        flat = [x for v in flat for x in v]
    if any(isinstance(v, (list, tuple, dict)) for v in flat):
        return None
    return shape, flat


def _datatype_of(flat: list[Any]) -> str | None:
    kinds = set(map(type, flat))
    if not kinds:
        return None
    if kinds == {str}:
        return "BYTES"
    if kinds == {bool}:
        return "BOOL"
    if kinds == {int}:
        return "INT64"
    if kinds <= {int, float}:
        return "FP64"
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def answer(
    model_name: str | None, model_version: str | None, request: Request, outputs: list[dict[str, Any]]
) -> dict[str, Any]:
    """The v2 response body; ``id`` only when the request gave one (KServe fails on ``"id": null``)."""
    body: dict[str, Any] = {"model_name": model_name or ""}
    if model_version:
        body["model_version"] = str(model_version)
    if request.id is not None:
        body["id"] = request.id
    body["outputs"] = outputs
    return body
