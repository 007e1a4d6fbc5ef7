"""The value codec of the isolation channel: plain JSON for structure, safetensors for tensor bytes.

Decoding never executes code: JSON is parsed by the standard library, tensors are rebuilt from raw
bytes by safetensors (a format made so that loading cannot run code), and every decoded tensor is
a plain `torch.Tensor` built here, whatever class the other side claimed to have. Objects that are
not plain data do not cross at all: the submission side keeps them and sends a handle instead.
"""

from __future__ import annotations

import base64
import json
import math
import struct
from collections.abc import Callable
from typing import Any

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

MAX_DEPTH = 64
HEADER = struct.Struct("!IQ")  # JSON length, tensor blob length
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_BLOB_BYTES = 512 * 1024 * 1024  # what a grading process will hold of one answer


class CodecError(Exception):
    """A value that cannot cross the channel, or a frame that is not well formed."""


def _numpy():
    try:
        import numpy
    except ImportError:  # numpy is a dependency, but keep the codec usable without it
        return None
    return numpy


class Encoder:
    """Turns a value into (JSON-able structure, {key: tensor}).

    `handle_for(obj)` is called for anything that is not plain data; it returns a JSON-able
    placeholder (the submission side registers the object and sends a handle) or raises CodecError.
    """

    def __init__(self, handle_for: Callable[[Any], Any] | None = None):
        self.handle_for = handle_for
        self.tensors: dict[str, torch.Tensor] = {}
        self._seen: dict[int, str] = {}
        self._alive: list[Any] = []  # keeps every source object alive so its id() cannot be reused

    def encode(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError(f"value nested deeper than {MAX_DEPTH} levels")
        kind = type(value)
        if value is None or kind is bool or kind is str:
            return value
        if kind is int:
            return value
        if kind is float:
            return value if math.isfinite(value) else {"$float": repr(value)}
        if isinstance(value, torch.Tensor):
            return self._tensor(value)
        if isinstance(value, (torch.Size, tuple)) and kind in (tuple, torch.Size):
            return {"$tuple": [self.encode(item, depth + 1) for item in value]}
        if kind is list:
            return [self.encode(item, depth + 1) for item in value]
        if kind is dict or (isinstance(value, dict) and type(value).__module__ == "collections"):
            return {"$dict": [[self.encode(k, depth + 1), self.encode(v, depth + 1)] for k, v in value.items()]}
        if kind is complex:
            return {"$complex": [_finite_or_tag(value.real), _finite_or_tag(value.imag)]}
        if kind is bytes:
            return {"$bytes": base64.b64encode(value).decode("ascii")}
        if isinstance(value, torch.dtype):
            return {"$dtype": str(value).removeprefix("torch.")}
        if isinstance(value, torch.device):
            return {"$device": str(value)}
        np = _numpy()
        if np is not None:
            if kind is np.ndarray and value.dtype.kind in "biuf":
                return self._tensor(torch.from_numpy(np.ascontiguousarray(value)), numpy=True)
            if isinstance(value, np.generic) and value.dtype.kind in "biufc":
                return self.encode(value.item(), depth + 1)
        if self.handle_for is not None:
            return self.handle_for(value)
        raise CodecError(f"a {kind.__name__} cannot cross the isolation channel")

    def _tensor(self, value: torch.Tensor, numpy: bool = False) -> dict:
        if value.is_complex():
            raise CodecError("complex tensors cannot cross the isolation channel; send torch.view_as_real(t)")
        key = self._seen.get(id(value))
        if key is None:
            key = f"t{len(self.tensors)}"
            self._seen[id(value)] = key
            self._alive.append(value)
            # A copy on the CPU, contiguous, with no storage shared with any other entry.
            plain = torch.Tensor._make_subclass(torch.Tensor, value.detach()) if type(value) is not torch.Tensor else value.detach()
            self.tensors[key] = plain.to("cpu", copy=True).contiguous()
        spec = {"$tensor": key, "device": str(value.device)}
        if value.requires_grad:
            spec["requires_grad"] = True
        if numpy:
            spec["numpy"] = True
        return spec


def _finite_or_tag(number: float) -> Any:
    return number if math.isfinite(number) else {"$float": repr(number)}


class Decoder:
    """Rebuilds values from (JSON structure, tensors). `resolve(tag, payload)` handles "$handle"/"$ref"."""

    def __init__(self, tensors: dict[str, torch.Tensor], resolve: Callable[[str, Any], Any] | None = None,
                 place_on_device: bool = True):
        self.tensors = tensors
        self.resolve = resolve
        self.place_on_device = place_on_device

    def decode(self, value: Any, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise CodecError(f"value nested deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        if isinstance(value, list):
            return [self.decode(item, depth + 1) for item in value]
        if not isinstance(value, dict) or len(value) == 0:
            raise CodecError(f"malformed value in frame: {type(value).__name__}")
        tag = next(iter(value))
        payload = value[tag]
        if tag == "$tuple":
            return tuple(self.decode(item, depth + 1) for item in _list(payload))
        if tag == "$dict":
            result = {}
            for pair in _list(payload):
                if not isinstance(pair, list) or len(pair) != 2:
                    raise CodecError("malformed dict entry in frame")
                key = self.decode(pair[0], depth + 1)
                try:
                    result[key] = self.decode(pair[1], depth + 1)
                except TypeError as exc:  # an unhashable key such as a list
                    raise CodecError(f"dict key cannot be used: {exc}") from None
            return result
        if tag == "$tensor":
            return self._tensor(value)
        if tag == "$float":
            if payload not in ("nan", "inf", "-inf"):
                raise CodecError(f"malformed float {payload!r}")
            return float(payload)
        if tag == "$complex":
            real, imag = (self.decode(part, depth + 1) for part in _list(payload))
            return complex(real, imag)
        if tag == "$bytes":
            return base64.b64decode(str(payload), validate=True)
        if tag == "$dtype":
            dtype = getattr(torch, str(payload), None)
            if not isinstance(dtype, torch.dtype):
                raise CodecError(f"unknown dtype {payload!r}")
            return dtype
        if tag == "$device":
            return torch.device(str(payload))
        if tag in ("$handle", "$ref") and self.resolve is not None:
            return self.resolve(tag, value)
        raise CodecError(f"unknown tag {tag!r} in frame")

    def _tensor(self, spec: dict) -> Any:
        tensor = self.tensors.get(spec["$tensor"])
        if tensor is None:
            raise CodecError(f"frame refers to a missing tensor {spec['$tensor']!r}")
        if spec.get("numpy"):
            return tensor.numpy()
        device = str(spec.get("device", "cpu"))
        if self.place_on_device and device != "cpu" and torch.cuda.is_available():
            tensor = tensor.to(device)
        if spec.get("requires_grad") and (tensor.is_floating_point() or tensor.is_complex()):
            tensor = tensor.requires_grad_(True)
        return tensor


def _list(payload: Any) -> list:
    if not isinstance(payload, list):
        raise CodecError("malformed frame: expected a list")
    return payload


def pack_frame(message: dict, tensors: dict[str, torch.Tensor]) -> bytes:
    """One frame: header (two lengths), the JSON message, then the safetensors blob (if any)."""
    body = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")
    blob = save_tensors(tensors) if tensors else b""
    return HEADER.pack(len(body), len(blob)) + body + blob


def unpack_frame(body: bytes, blob: bytes) -> tuple[dict, dict[str, torch.Tensor]]:
    try:
        message = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CodecError(f"frame is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise CodecError("frame message is not an object")
    try:
        tensors = load_tensors(blob) if blob else {}
    except Exception as exc:  # safetensors raises its own error types for malformed bytes
        raise CodecError(f"frame tensors are malformed: {exc}") from None
    return message, tensors
