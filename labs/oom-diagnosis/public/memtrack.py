"""A memory budget for training steps: counts live tensor bytes and fails like CUDA when over.

On CPU there is no allocator to ask, so `MemoryTracker` watches every aten operation with a
`TorchDispatchMode`: each new output storage is counted when it appears and uncounted when
Python's weak reference to it fires (PyTorch keeps one Python object per storage while the storage
lives, so the callback comes exactly when the memory is released). Views share their base's
storage and are counted once. On CUDA the caching allocator already keeps these numbers, so the
tracker reads `torch.cuda.max_memory_allocated` instead.

What counts: the tensors you hand it (`track=`: modules, optimizers, tensors) plus everything
allocated while it runs. Tensors that existed before and were not handed in are not counted, on
either device; that keeps the two paths in agreement.

Trade-offs, stated plainly:
- Memory used inside one kernel and freed before it returns (e.g. a matmul's workspace) is not
  seen on CPU; on CUDA it is, when it comes from the caching allocator.
- On CUDA the budget is checked when the tracked block ends, not at the failing allocation: the
  caching allocator rounds segments up to 2 MiB, which at this lab's MiB-sized budgets would
  make a real allocator limit fail for reasons that have nothing to do with the step.
- The dispatch mode costs tens of microseconds per operation; fine for a small model.
- The tracker runs in the same process as the code it measures, so that code could lie to it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

MiB = 2**20
LOW_PRECISION = (torch.float16, torch.bfloat16)


class OutOfMemoryError(torch.OutOfMemoryError):
    """Raised when a tracked block goes over its budget; `except torch.OutOfMemoryError` catches it."""

    def __init__(self, message: str, *, tried_bytes: int, live_bytes: int, budget_bytes: int):
        super().__init__(message)
        self.tried_bytes = tried_bytes
        self.live_bytes = live_bytes
        self.budget_bytes = budget_bytes


def format_bytes(n: int | float) -> str:
    """2.5 MiB style, like the CUDA allocator's messages."""
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} bytes"


def _storages(obj: Any) -> list[torch.UntypedStorage]:
    """The distinct tensor storages held by a module, an optimizer, a tensor or a container of them."""
    tensors: list[torch.Tensor] = []
    if isinstance(obj, torch.Tensor):
        tensors.append(obj)
        if obj.grad is not None:
            tensors.append(obj.grad)
    elif isinstance(obj, torch.nn.Module):
        for tensor in [*obj.parameters(), *obj.buffers()]:
            tensors.extend(t for t in (tensor, tensor.grad) if t is not None)
    elif isinstance(obj, torch.optim.Optimizer):
        for state in obj.state.values():
            tensors.extend(v for v in state.values() if isinstance(v, torch.Tensor))
    elif isinstance(obj, dict):
        return [s for value in obj.values() for s in _storages(value)]
    elif isinstance(obj, (list, tuple)):
        return [s for item in obj for s in _storages(item)]
    else:
        raise TypeError(f"track= takes modules, optimizers, tensors and containers of them, got {type(obj).__name__}")
    return [t.untyped_storage() for t in tensors if t.layout == torch.strided]


class _LiveStorages:
    """Bytes of the storages it was shown that are still alive (CPU accounting)."""

    def __init__(self) -> None:
        self.sizes: dict[int, int] = {}  # id(storage) -> nbytes while the storage lives
        self.refs: dict[int, weakref.ref] = {}
        self.live_bytes = 0

    def add(self, storage: torch.UntypedStorage) -> int:
        """Count `storage` if it is new (or grew); returns the bytes it adds."""
        key, nbytes = id(storage), storage.nbytes()
        old = self.sizes.get(key)
        if old is None:
            if nbytes == 0:
                return 0
            self.refs[key] = weakref.ref(storage, lambda _ref, key=key: self._release(key))
            old = 0
        self.sizes[key] = nbytes
        self.live_bytes += nbytes - old
        return max(0, nbytes - old)

    def _release(self, key: int) -> None:
        self.live_bytes -= self.sizes.pop(key, 0)
        self.refs.pop(key, None)

    def clear(self) -> None:
        self.sizes.clear()
        self.refs.clear()  # dropping the weakrefs also drops their callbacks
        self.live_bytes = 0


class _WatchOperations(TorchDispatchMode):
    """Shows every output of every aten operation to the tracker."""

    def __init__(self, tracker: MemoryTracker):
        super().__init__()
        self.tracker = tracker

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # Otherwise torch wraps __torch_dispatch__ in torch._dynamo.disable, whose first call imports
        # all of dynamo (seconds). Nothing here is compiled, so there is nothing for it to skip.
        return False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        outputs, _ = tree_flatten(out)
        inputs, _ = tree_flatten((args, kwargs))
        self.tracker._saw_outputs(func, [t for t in outputs if isinstance(t, torch.Tensor)],
                                  [t for t in inputs if isinstance(t, torch.Tensor)])
        return out


class MemoryTracker:
    """Context manager: peak and live tensor bytes of a block, with an optional budget.

        with MemoryTracker(budget_bytes=12 * MiB, track=[model, optimizer]) as mem:
            train_step(model, optimizer, x, y)
        print(format_bytes(mem.peak_bytes))

    On CPU an allocation that takes the live bytes over the budget raises `OutOfMemoryError`
    (a `torch.OutOfMemoryError`) at that operation, with a message shaped like CUDA's.
    """

    def __init__(self, budget_bytes: int | None = None, track: Any = (), device: str | torch.device | None = None):
        self.budget_bytes = budget_bytes
        self.track = track
        self.device = torch.device(device) if device is not None else self._guess_device(track)
        self.baseline_bytes = 0  # bytes of the tracked tensors when the block started
        self.peak_bytes = 0
        self.end_bytes = 0  # live bytes when the block ended
        self.low_precision = False  # did any float16/bfloat16 tensor appear?
        self._live = _LiveStorages()
        self._mode: _WatchOperations | None = None
        self._cuda_start = 0
        self._active = False

    @staticmethod
    def _guess_device(track: Any) -> torch.device:
        for storage in _storages(track):
            return storage.device
        return torch.device("cpu")

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    @property
    def live_bytes(self) -> int:
        if self.on_cuda and self._active:
            return self.baseline_bytes + torch.cuda.memory_allocated(self.device) - self._cuda_start
        return self._live.live_bytes if self._active else self.end_bytes

    # -- entering and leaving ---------------------------------------------------------------------
    def __enter__(self) -> MemoryTracker:
        self._live.clear()
        distinct = {id(s): s for s in _storages(self.track)}
        if self.on_cuda:
            torch.cuda.synchronize(self.device)
            self.baseline_bytes = sum(s.nbytes() for s in distinct.values())
            self._cuda_start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            for storage in distinct.values():
                self._live.add(storage)
            self.baseline_bytes = self._live.live_bytes
        self.peak_bytes = self.baseline_bytes
        self.low_precision = False
        self._active = True
        self._mode = _WatchOperations(self)
        self._mode.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._mode.__exit__(exc_type, exc, tb)
        self._mode = None
        if self.on_cuda:
            torch.cuda.synchronize(self.device)
            extra = torch.cuda.max_memory_allocated(self.device) - self._cuda_start
            self.peak_bytes = max(self.peak_bytes, self.baseline_bytes + extra)
        self.end_bytes = self.live_bytes
        self._active = False
        self._live.clear()
        if exc_type is None and self.on_cuda and self.budget_bytes is not None and self.peak_bytes > self.budget_bytes:
            over = self.peak_bytes - self.budget_bytes
            raise OutOfMemoryError(
                f"CUDA out of memory (budget set by memtrack on {self.device}, checked when the block ended). "
                f"The block peaked at {format_bytes(self.peak_bytes)}, {format_bytes(over)} over the budget of "
                f"{format_bytes(self.budget_bytes)} (tracked tensors at the start: {format_bytes(self.baseline_bytes)}).",
                tried_bytes=over, live_bytes=self.peak_bytes, budget_bytes=self.budget_bytes)
        return False

    # -- accounting --------------------------------------------------------------------------------
    def _saw_outputs(self, func, outputs: list[torch.Tensor], inputs: list[torch.Tensor]) -> None:
        if any(t.dtype in LOW_PRECISION for t in outputs):
            self.low_precision = True
        if self.on_cuda:
            return
        new_bytes = 0
        for tensor in outputs:
            if tensor.device != self.device or tensor.layout != torch.strided:
                continue
            storage = tensor.untyped_storage()
            if id(storage) not in self._live.sizes and any(t.untyped_storage() is storage for t in inputs
                                                            if t.layout == torch.strided):
                continue  # a view of, or an in-place write to, a tensor from before that was not tracked
            new_bytes += self._live.add(storage)
        live = self._live.live_bytes
        if self.budget_bytes is not None and live > self.budget_bytes and new_bytes > 0:
            raise OutOfMemoryError(self._message(new_bytes, live - new_bytes, str(func)),
                                   tried_bytes=new_bytes, live_bytes=live, budget_bytes=self.budget_bytes)
        self.peak_bytes = max(self.peak_bytes, live)

    def _message(self, tried: int, already: int, where: str) -> str:
        free = max(0, self.budget_bytes - already)
        return (f"CUDA out of memory (simulated by memtrack on {self.device}). "
                f"Tried to allocate {format_bytes(tried)}. The budget is {format_bytes(self.budget_bytes)}, "
                f"of which {format_bytes(already)} is allocated by live tensors and {format_bytes(free)} is free "
                f"(tracked tensors at the start: {format_bytes(self.baseline_bytes)}). "
                f"The allocation came from {where}.")

    def report(self) -> dict:
        """Plain numbers, safe to send anywhere."""
        return {"device": str(self.device), "budget_bytes": self.budget_bytes, "baseline_bytes": self.baseline_bytes,
                "peak_bytes": self.peak_bytes, "end_bytes": self.end_bytes, "low_precision": self.low_precision}


def measure(fn: Callable, *args: Any, budget_bytes: int | None = None, track: Any = (), **kwargs: Any) -> dict:
    """Run `fn(*args, **kwargs)` under a `MemoryTracker`; returns its `report()` plus "result".

    The arguments are not tracked unless passed in `track` too (pass the model, the optimizer
    and the batch to count them, as a GPU would).
    """
    with MemoryTracker(budget_bytes=budget_bytes, track=track) as tracker:
        result = fn(*args, **kwargs)
    return {**tracker.report(), "result": result}
