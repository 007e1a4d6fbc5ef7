"""The grading side of the isolation channel: what a check holds when it uses `submission`.

`RemoteNamespace` reads like the notebook's namespace (`submission.f(x)`), but every access is a
request to the submission process and every answer is decoded from plain data (grader/codec.py).
Objects that are not plain data come back as `RemoteObject` handles; a handle has no truth value
and compares by identity only, so an object built to "equal everything" cannot satisfy a check.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

from grader.codec import CodecError, Decoder, Encoder, pack_frame
from grader.sandbox import WorkerProcess, WorkerSpec, Zygote, describe_exit
from grader.wire import ChannelClosed, ChannelTimeout, read_frame, write_all

OUTPUT_TAIL_BYTES = 16 * 1024
MAX_RESTARTS = 4


class SubmissionError(Exception):
    """The student's code raised. Carries the student's exception type, message and traceback."""

    def __init__(self, type_name: str, message: str, traceback: str = ""):
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name
        self.message = message
        self.traceback = traceback


class MissingDefinition(SubmissionError, AttributeError):
    """The notebook does not define a name a check needs."""


class SubmissionCrashed(Exception):
    """The submission process died (crash, os._exit, a signal, the memory limit). Never catch it in a check."""


class SubmissionTimeout(Exception):
    """The submission ran past a time limit and was stopped. Never catch it in a check."""


class _OutputTail:
    """Drains the submission's stdout/stderr in a thread, keeping the last bytes (floods cost CPU only)."""

    def __init__(self, fd: int):
        self.fd = fd
        self.tail = bytearray()
        self.total = 0
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.total += len(chunk)
            self.tail += chunk
            if len(self.tail) > OUTPUT_TAIL_BYTES:
                del self.tail[: len(self.tail) - OUTPUT_TAIL_BYTES]
        try:
            os.close(self.fd)
        except OSError:
            pass

    def text(self) -> str:
        return bytes(self.tail).decode("utf-8", "replace")


class Session:
    """One submission process at a time: started from the zygote, initialised with the cells,
    restarted after a crash or a timeout so the next check still gets an answer."""

    def __init__(self, zygote: Zygote, spec: WorkerSpec, cells: list[dict], *, call_timeout: float,
                 deadline: float, memory_limit_bytes: int):
        self.zygote = zygote
        self.spec = spec
        self.cells = cells
        self.call_timeout = call_timeout
        self.deadline = deadline
        self.memory_limit_bytes = memory_limit_bytes
        self.worker: WorkerProcess | None = None
        self.output: _OutputTail | None = None
        self.generation = 0
        self.restarts = 0
        self.init_result: dict | None = None
        self.isolation = "unknown"
        self.outputs: list[str] = []
        self._pending_start = False

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Fork the submission process and send it the cells; the answer is read by `ensure_ready`."""
        self.worker = self.zygote.spawn(self.spec)
        self.isolation = self.worker.isolation
        self.output = _OutputTail(self.worker.output_fd)
        self.generation += 1
        write_all(self.worker.sock, pack_frame({"op": "init", "cells": self.cells}, {}))
        self._pending_start = True

    def ensure_ready(self) -> None:
        if self.worker is None or (not self._pending_start and not self.worker.alive()):
            if self.worker is not None:
                self._stop_worker()
            if self.restarts >= MAX_RESTARTS:
                raise SubmissionCrashed(f"the submission process was restarted {MAX_RESTARTS} times and is not started again")
            if self.generation > 0:
                self.restarts += 1
            self.start()
        if self._pending_start:
            self._pending_start = False
            timeout = max(1.0, self.deadline - time.monotonic())
            reply = self._receive(timeout, what="running the notebook's cells")
            if self.init_result is None:
                self.init_result = reply if isinstance(reply, dict) else {}

    def close(self) -> None:
        if self.worker is not None:
            try:
                write_all(self.worker.sock, pack_frame({"op": "bye"}, {}))
            except OSError:
                pass
            self._stop_worker(grace=0.2)

    def _stop_worker(self, grace: float = 0.0) -> None:
        worker, self.worker = self.worker, None
        if worker is None:
            return
        end = time.monotonic() + grace
        while grace and worker.alive() and time.monotonic() < end:
            time.sleep(0.01)
        worker.kill()
        if self.output is not None:
            self.output.thread.join(timeout=1.0)
            self.outputs.append(self.output.text())
            self.output = None

    def output_tail(self) -> str:
        texts = list(self.outputs)
        if self.output is not None:
            texts.append(self.output.text())
        return "".join(texts)[-OUTPUT_TAIL_BYTES:]

    # -- requests ----------------------------------------------------------------------------------
    def request(self, message: dict, payload: dict | None = None, timeout: float | None = None) -> Any:
        self.ensure_ready()
        generation = self.generation
        encoder = Encoder(handle_for=lambda obj: self._ref_for(obj, generation))
        body = {key: encoder.encode(value) if key in ("args", "kwargs", "value", "key", "target", "grad_output", "params_of") else value
                for key, value in {**message, **(payload or {})}.items()}
        try:
            write_all(self.worker.sock, pack_frame(body, encoder.tensors))
        except OSError:
            return self._died("while receiving a request")
        return self._receive(timeout if timeout is not None else self.call_timeout, what=f"a call ({message.get('op')})")

    def _ref_for(self, obj: Any, generation: int) -> dict:
        if isinstance(obj, RemoteObject):
            if obj._generation != generation:
                raise SubmissionCrashed("this object belonged to a submission process that was restarted after a crash")
            return {"$ref": obj._handle}
        raise CodecError(f"a {type(obj).__name__} cannot be sent to the submission; send tensors, numbers, strings, lists or dicts")

    def _receive(self, timeout: float, what: str) -> Any:
        worker = self.worker
        limit = min(timeout, max(0.0, self.deadline - time.monotonic()))
        deadline = time.monotonic() + limit

        def watch() -> None:
            if not worker.alive():
                raise ChannelClosed()
            if self.memory_limit_bytes and worker.rss_bytes() > self.memory_limit_bytes:
                worker.kill()
                raise SubmissionCrashed(f"the submission used more than {self.memory_limit_bytes // 2**20} MB of memory "
                                        f"and was stopped ({what})")

        try:
            frame = read_frame(worker.sock, deadline=deadline, on_wait=watch)
        except ChannelTimeout:
            self._stop_worker()
            overall = time.monotonic() >= self.deadline - 0.01
            raise SubmissionTimeout(
                f"the lab's total time limit ran out during {what}" if overall
                else f"no answer within {timeout:g} s during {what}: an infinite loop or far too slow code?") from None
        except ChannelClosed:
            return self._died(what)
        except CodecError as exc:
            self._stop_worker()
            raise SubmissionCrashed(f"the submission sent a malformed answer ({exc})") from None
        if frame is None:
            return self._died(what)
        message, tensors = frame
        generation = self.generation
        decoder = Decoder(tensors, resolve=lambda tag, value: self._remote(tag, value, generation))
        if "error" in message:
            error = message["error"] if isinstance(message["error"], dict) else {}
            kind = str(error.get("type", "Error"))
            cls = MissingDefinition if kind == "MissingDefinition" else SubmissionError
            raise cls(kind, str(error.get("message", "")), str(error.get("traceback", "")))
        if "ok" not in message:
            raise SubmissionCrashed("the submission sent an answer without a result")
        try:
            return decoder.decode(message["ok"])
        except (CodecError, KeyError, TypeError, ValueError) as exc:
            raise SubmissionCrashed(f"the submission sent a malformed answer ({exc})") from None

    def _died(self, what: str):
        worker = self.worker
        code = self.zygote.exit_status(worker) if worker is not None else None
        self._stop_worker()
        raise SubmissionCrashed(f"{describe_exit(code)} during {what}")

    def _remote(self, tag: str, value: dict, generation: int) -> Any:
        if tag != "$handle":
            raise CodecError("the submission may not send references")
        return RemoteObject(self, int(value["$handle"]), str(value.get("type", "object")), bool(value.get("callable")), generation)


class RemoteObject:
    """An object that lives in the submission process; operations on it are requests."""

    __slots__ = ("_session", "_handle", "_type", "_callable", "_generation")

    def __init__(self, session: Session, handle: int, type_name: str, is_callable: bool, generation: int):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_handle", handle)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "_callable", is_callable)
        object.__setattr__(self, "_generation", generation)

    def _ask(self, op: str, **payload: Any) -> Any:
        return self._session.request({"op": op}, {"target": self, **payload})

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._ask("getattr", attr=name)

    def __setattr__(self, name: str, value: Any) -> None:
        self._ask("setattr", attr=name, value=value)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._ask("call", args=list(args), kwargs=kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._ask("getitem", key=key)

    def __len__(self) -> int:
        try:
            value = self._ask("len")
        except SubmissionError as exc:
            if exc.type_name == "TypeError":  # no len() there: list(handle) falls back to iterating
                raise TypeError(exc.message) from None
            raise
        if type(value) is not int:
            raise TypeError("len() of a submission object did not return an int")
        return value

    def __iter__(self) -> Iterator[Any]:
        return iter(self._ask("iter"))

    def __bool__(self) -> bool:
        raise TypeError(f"a {self._type} from the submission has no truth value here; compare its data instead")

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"<submission {self._type} #{self._handle}>"


class RemoteNamespace:
    """The `submission` fixture: the notebook's top-level names, reached through the channel."""

    def __init__(self, session: Session):
        object.__setattr__(self, "_session", session)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._session.request({"op": "get", "name": name})

    def __getitem__(self, name: str) -> Any:
        return self._session.request({"op": "get", "name": name})

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("the submission's namespace is read-only from a check")

    def has(self, name: str) -> bool:
        return self._session.request({"op": "has", "name": name}) is True

    def names(self) -> list[str]:
        return list(self._session.request({"op": "names"}))

    def signature(self, target: str | RemoteObject) -> str:
        if isinstance(target, RemoteObject):
            return str(target._ask("signature"))
        return str(self._session.request({"op": "signature", "name": target}))

    def module(self, name: str) -> RemoteObject:
        """A module imported in the submission process (e.g. a helper file the lab ships)."""
        return self._session.request({"op": "module", "module": name})

    def backward(self, fn: RemoteObject, *args: Any, grad_output: Any = None, params_of: RemoteObject | None = None,
                 **kwargs: Any) -> dict:
        """Call `fn(*args, **kwargs)` there and backpropagate `grad_output` (ones by default).

        Returns {"output", "grads": one per positional arg (None for non-float args),
        "param_grads": {name: grad} for `params_of` (default: `fn` when it is a module)}.
        """
        return self._session.request({"op": "backward"}, {"target": fn, "args": list(args), "kwargs": kwargs,
                                                          "grad_output": grad_output, "params_of": params_of})

    @contextlib.contextmanager
    def timeout(self, seconds: float) -> Iterator[None]:
        """A different per-call time limit inside the block (the lab's total limit still applies)."""
        session = self._session
        previous, session.call_timeout = session.call_timeout, float(seconds)
        try:
            yield
        finally:
            session.call_timeout = previous

    @property
    def cell_errors(self) -> list[dict]:
        """Errors raised by the notebook's cells when they ran (the cells after an error still run)."""
        self._session.ensure_ready()
        from grader.engine import _plain_cell_errors

        return _plain_cell_errors((self._session.init_result or {}).get("cell_errors", []))

