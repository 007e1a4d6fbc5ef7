"""The submission process: runs the student's cells, then answers the checks' requests over a socket.

Everything here runs untrusted code, so nothing here decides a grade. It only executes what the
trusted side asks and sends back plain data (see grader/codec.py); objects that are not plain
data stay here and travel as numbered handles.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import linecache
import os
import socket
import sys
import traceback
import types
from typing import Any

import torch

from grader.codec import Decoder, Encoder, pack_frame
from grader.wire import read_frame, write_all

CELL_PREFIXES = ("<cell ", "<extra ")
MAX_TRACEBACK_CHARS = 4000
MAX_MESSAGE_CHARS = 2000


class _FakeIPython:
    """Stands in for IPython under grading: magics and shell lines are accepted but not run."""

    def __init__(self, namespace: dict):
        self.user_ns = namespace

    def run_line_magic(self, name: str, line: str, *args: Any) -> None:
        return None

    def run_cell_magic(self, name: str, line: str, cell: str) -> None:
        # Magics that only observe a cell (timing, capturing) still define what the cell defines.
        if name in ("time", "timeit", "capture", "prun"):
            exec(compile(cell, "<cell magic>", "exec"), self.user_ns)
        return None

    def system(self, command: str) -> int:
        return 0

    def getoutput(self, command: str) -> list:
        return []

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


def _transform(source: str) -> str:
    """IPython syntax (magics, `!cmd`, `x?`) becomes plain Python calls on get_ipython()."""
    if not any(line.lstrip().startswith(("%", "!")) or line.rstrip().endswith("?") for line in source.splitlines()):
        return source
    try:
        from IPython.core.inputtransformer2 import TransformerManager
    except ImportError:
        return "\n".join("pass  # " + line if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    return TransformerManager().transform_cell(source)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 20] + " ...[truncated]"


def _student_traceback(exc: BaseException) -> str:
    """The traceback limited to frames of the student's cells and files in the working directory."""
    cwd = os.getcwd()
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith(CELL_PREFIXES) or f.filename.startswith(cwd)]
    lines = traceback.format_list(frames) + traceback.format_exception_only(type(exc), exc)
    return _short("".join(lines), MAX_TRACEBACK_CHARS)


def _error(exc: BaseException, kind: str | None = None) -> dict:
    try:
        message = str(exc)
    except Exception:  # a hostile __str__
        message = "<exception message could not be read>"
    return {"error": {"type": kind or type(exc).__name__, "message": _short(message, MAX_MESSAGE_CHARS),
                      "traceback": _student_traceback(exc)}}


class Worker:
    def __init__(self, sock: socket.socket, device: str):
        self.sock = sock
        self.device = device
        # The cells run in a real __main__ module, so pickling by reference and `if __name__ ==
        # "__main__"` behave as in a kernel.
        main = types.ModuleType("__main__")
        main.__dict__["__builtins__"] = builtins
        sys.modules["__main__"] = main
        self.namespace: dict[str, Any] = main.__dict__
        self.handles: dict[int, Any] = {}
        self.handle_ids: dict[int, int] = {}
        self.cell_errors: list[dict] = []
        shell = _FakeIPython(self.namespace)
        self.namespace["get_ipython"] = lambda: shell

    # -- handles -------------------------------------------------------------------------------
    def _handle_for(self, obj: Any) -> dict:
        key = self.handle_ids.get(id(obj))
        if key is None or self.handles.get(key) is not obj:
            key = len(self.handles) + 1
            self.handles[key] = obj
            self.handle_ids[id(obj)] = key
        kind = type(obj)
        return {"$handle": key, "type": f"{kind.__module__}.{kind.__qualname__}", "callable": callable(obj)}

    def _resolve(self, tag: str, value: dict) -> Any:
        key = value[tag]
        if tag != "$ref" or key not in self.handles:
            raise KeyError(f"unknown object reference {key!r}")
        return self.handles[key]

    # -- cells ---------------------------------------------------------------------------------
    def run_cells(self, cells: list[dict]) -> dict:
        for cell in cells:
            label = cell.get("label") or f"cell {cell['index']}"
            filename = f"<{label}>"
            try:
                source = _transform(cell["source"])
                linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
                code = compile(source, filename, "exec")
                exec(code, self.namespace)
            except SystemExit as exc:
                self.cell_errors.append({"cell": cell["index"], "label": label, "type": "SystemExit",
                                         "message": f"the cell called sys.exit({exc.code!r}); grading went on"})
            except BaseException as exc:  # the student's cell failed: record it and run the next cell
                error = _error(exc)["error"]
                lineno = getattr(exc, "lineno", None) if isinstance(exc, SyntaxError) else None
                lineno = lineno if type(lineno) is int else None
                self.cell_errors.append({"cell": cell["index"], "label": label, "line": lineno, **error})
        names = sorted(name for name in self.namespace if not name.startswith("_") and name != "get_ipython")
        return {"ok": {"cell_errors": self.cell_errors, "names": names}}

    # -- requests ------------------------------------------------------------------------------
    def _target(self, request: dict, decoder: Decoder) -> Any:
        target = request.get("target")
        if target is None:
            return self._name(request["name"])
        return decoder.decode(target)

    def _name(self, name: str) -> Any:
        if name not in self.namespace:
            raise LookupError(name)
        return self.namespace[name]

    def handle(self, request: dict, decoder: Decoder) -> dict:
        op = request.get("op")
        try:
            if op == "get":
                return {"ok": self._name(request["name"])}
            if op == "has":
                return {"ok": request["name"] in self.namespace}
            if op == "names":
                return {"ok": sorted(n for n in self.namespace if not n.startswith("_"))}
            if op == "signature":
                return {"ok": str(inspect.signature(self._target(request, decoder)))}
            if op == "getattr":
                return {"ok": getattr(self._target(request, decoder), request["attr"])}
            if op == "setattr":
                setattr(self._target(request, decoder), request["attr"], decoder.decode(request["value"]))
                return {"ok": None}
            if op == "call":
                fn = self._target(request, decoder)
                args = decoder.decode(request.get("args", []))
                kwargs = decoder.decode(request.get("kwargs", {"$dict": []}))
                return {"ok": fn(*args, **kwargs)}
            if op == "getitem":
                return {"ok": self._target(request, decoder)[decoder.decode(request["key"])]}
            if op == "len":
                return {"ok": len(self._target(request, decoder))}
            if op == "iter":
                return {"ok": list(self._target(request, decoder))}
            if op == "module":
                return {"ok": importlib.import_module(request["module"])}
            if op == "backward":
                return {"ok": self._backward(request, decoder)}
            if op == "ping":
                return {"ok": os.getpid()}
            return {"error": {"type": "ProtocolError", "message": f"unknown request {op!r}", "traceback": ""}}
        except LookupError as exc:
            if op in ("get", "signature") and exc.args and exc.args[0] == request.get("name"):
                return {"error": {"type": "MissingDefinition", "message": f"the notebook does not define {request['name']!r}", "traceback": ""}}
            return _error(exc)
        except SystemExit as exc:
            return {"error": {"type": "SystemExit", "message": f"the code called sys.exit({exc.code!r})", "traceback": _student_traceback(exc)}}
        except BaseException as exc:  # the student's code raised: send it back as data
            return _error(exc)

    def _backward(self, request: dict, decoder: Decoder) -> dict:
        fn = self._target(request, decoder)
        args = list(decoder.decode(request.get("args", [])))
        kwargs = decoder.decode(request.get("kwargs", {"$dict": []}))
        grad_output = decoder.decode(request.get("grad_output"))
        params_of = decoder.decode(request["params_of"]) if request.get("params_of") is not None else fn
        inputs = []
        for index, arg in enumerate(args):
            if isinstance(arg, torch.Tensor) and arg.is_floating_point():
                args[index] = arg.detach().requires_grad_(True)
                inputs.append(index)
        parameters = dict(params_of.named_parameters()) if isinstance(params_of, torch.nn.Module) else {}
        for parameter in parameters.values():
            parameter.grad = None
        output = fn(*args, **kwargs)
        if not isinstance(output, torch.Tensor):
            raise TypeError(f"expected the call to return a tensor, got {type(output).__name__}")
        output.backward(grad_output if grad_output is not None else torch.ones_like(output))
        grads = [args[i].grad if i in inputs else None for i in range(len(args))]
        return {"output": output.detach(), "grads": grads,
                "param_grads": {name: p.grad for name, p in parameters.items()}}

    def serve(self) -> None:
        while True:
            frame = read_frame(self.sock, deadline=None)
            if frame is None:  # the trusted side closed the channel: grading is over
                return
            request, tensors = frame
            decoder = Decoder(tensors, resolve=self._resolve)
            if request.get("op") == "init":
                reply = self.run_cells(request["cells"])
            elif request.get("op") == "bye":
                return
            else:
                reply = self.handle(request, decoder)
            write_all(self.sock, self._encode(reply))

    def _encode(self, reply: dict) -> bytes:
        encoder = Encoder(handle_for=self._handle_for)
        try:
            if "ok" in reply:
                message = {"ok": encoder.encode(reply["ok"])}
            else:
                message = reply
            return pack_frame(message, encoder.tensors)
        except BaseException as exc:  # the result could not be encoded (or its methods raised)
            return pack_frame(_error(exc, kind="UnsendableResult"), {})


def serve_submission(sock: socket.socket, device: str, num_threads: int | None) -> None:
    """Entry point of the submission process, after the sandbox set it up."""
    if num_threads:
        torch.set_num_threads(num_threads)
    sys.argv = ["submission"]
    # The student's notebook imports files shipped with the lab from its working directory.
    sys.path.insert(0, os.getcwd())
    Worker(sock, device).serve()
