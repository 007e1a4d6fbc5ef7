"""The ddp-on-cpu lab's plumbing: start N gloo ranks on this machine, count what they send, and a tiny model.

Nothing here is graded. The notebook and the checks share this file, so both start ranks the
same way and train the same model on the same data.

How ranks start, and why that way: `launch(worker, world_size, ...)` forks `world_size` copies of
the current process, joins them in one gloo process group over 127.0.0.1, runs
`worker(rank, world_size, ...)` in each, and returns what each rank returned. It forks (the
"fork" start method of multiprocessing) because a function defined in a notebook cell cannot be
pickled by reference into a freshly spawned interpreter: there is no `__main__` file to import it
from. A fork copies the whole notebook namespace instead. The price:

* fork exists on Linux and macOS, not on Windows;
* a process that has initialised CUDA or joined a process group itself cannot safely fork ranks
  that use them, so the notebook's own process never joins a group: only the forked ranks do;
* the ranks start with a copy of the notebook's state, not a fresh interpreter, so a rank sees
  every variable, seed and import the notebook had at the moment of the launch.

torchrun and mp.spawn start fresh interpreters from a script; that is the right tool for real
jobs, and a poor one for a notebook.

Traffic counting: inside a rank, every point-to-point message (dist.send, dist.isend,
dist.batch_isend_irecv, dist.recv, dist.irecv) is recorded in `TRAFFIC` with its peer and size.
Collectives such as dist.all_reduce are not counted: they are what you are rebuilding.
"""

from __future__ import annotations

import faulthandler
import io
import os
import signal
import socket
import time
import traceback
from dataclasses import dataclass, field
from datetime import timedelta
from multiprocessing import get_context
from multiprocessing.connection import wait

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

DEFAULT_TIMEOUT_S = 10.0  # a lab-sized collective takes milliseconds; ten seconds means a deadlock
FAILURE_GRACE_S = 0.5  # after a rank fails, how long the others may take to report why they failed too


# -- the model and the data ----------------------------------------------------------------------
@dataclass(frozen=True)
class LabConfig:
    in_features: int = 8
    hidden: int = 32
    classes: int = 4
    lr: float = 0.1  # plain SGD: the update is -lr * gradient, so a gradient off by 2x shows at once


CONFIG = LabConfig()


def make_model(config: LabConfig = CONFIG) -> nn.Module:
    """A small MLP, (B, in_features) -> (B, classes) logits, drawn from torch's global RNG.

    It does not seed anything itself, like every real model constructor: call torch.manual_seed
    first to get the same weights twice.
    """
    return nn.Sequential(
        nn.Linear(config.in_features, config.hidden),
        nn.Tanh(),
        nn.Linear(config.hidden, config.classes),
    )


def make_batches(steps: int, batch_size: int, seed: int, config: LabConfig = CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
    """`steps` global batches: x (steps, batch_size, in_features) float32, y (steps, batch_size) int64.

    Drawn from a private generator, so the data does not depend on (or disturb) the global RNG.
    """
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(steps, batch_size, config.in_features, generator=generator)
    y = torch.randint(0, config.classes, (steps, batch_size), generator=generator)
    return x, y


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the examples given: the mean over this rank's shard, inside a rank."""
    return F.cross_entropy(logits, y)


def train_single_process(model: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float = CONFIG.lr) -> list[float]:
    """The reference: one SGD step per global batch x[s], y[s] on one process. Returns the losses."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for step in range(x.size(0)):
        optimizer.zero_grad()
        loss = loss_fn(model(x[step]), y[step])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# -- traffic ---------------------------------------------------------------------------------------
@dataclass
class Traffic:
    """The point-to-point messages this rank sent and received since the last reset()."""

    sent: list[tuple[int, int]] = field(default_factory=list)  # (destination rank, bytes)
    received: list[tuple[int, int]] = field(default_factory=list)  # (source rank, or -1 for any, bytes)

    @property
    def bytes_sent(self) -> int:
        return sum(nbytes for _, nbytes in self.sent)

    @property
    def bytes_received(self) -> int:
        return sum(nbytes for _, nbytes in self.received)

    def reset(self) -> None:
        self.sent.clear()
        self.received.clear()


TRAFFIC = Traffic()


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _count_traffic() -> None:
    """Record every message of this rank: dist.send, isend, recv, irecv and batch_isend_irecv all end
    in a call of ProcessGroup.send / recv / recv_anysource, whatever name the caller imported."""
    group_class = dist.ProcessGroup
    send, recv, recv_any = group_class.send, group_class.recv, group_class.recv_anysource

    def counted_send(self, tensors, dst_rank, tag=0):
        TRAFFIC.sent.append((int(dst_rank), _nbytes(tensors)))
        return send(self, tensors, dst_rank, tag)

    def counted_recv(self, tensors, src_rank, tag=0):
        TRAFFIC.received.append((int(src_rank), _nbytes(tensors)))
        return recv(self, tensors, src_rank, tag)

    def counted_recv_anysource(self, tensors, tag=0):
        TRAFFIC.received.append((-1, _nbytes(tensors)))
        return recv_any(self, tensors, tag)

    group_class.send, group_class.recv, group_class.recv_anysource = counted_send, counted_recv, counted_recv_anysource


# -- launching ranks -------------------------------------------------------------------------------
class RankFailed(RuntimeError):
    """A rank raised, died, or did not finish in time; the message says which rank and why."""


DEADLOCK_HINT = (
    "Likely cause: a deadlock. gloo's dist.send returns only once the peer has posted the matching "
    "receive, so a ring in which every rank first calls dist.send (and only then dist.recv) waits "
    "forever: everyone is sending, nobody is receiving. Start the send without waiting for it "
    "(req = dist.isend(...); dist.recv(...); req.wait()), or use dist.batch_isend_irecv. Also check "
    "that every send has a matching receive of the same size on the peer."
)


def _your_frames(error: BaseException) -> str:
    """The traceback without the frames of this file and of torch: what is left is the notebook's code."""
    torch_dir = os.path.dirname(torch.__file__)
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)
              if frame.filename != __file__ and not frame.filename.startswith(torch_dir)]
    return "".join(traceback.format_list(frames[-8:]))


def _run_rank(rank: int, world_size: int, listener: socket.socket, worker, args: tuple, timeout_s: float, results) -> None:
    """The body of one forked rank: join the group, run the worker, send back its result."""
    torch.set_num_threads(1)  # N ranks share a few cores; and no OpenMP pool copied across a fork
    faulthandler.disable()  # a rank that crashes is reported by the parent; no interpreter dump on top of it
    if "GLOO_SOCKET_IFNAME" not in os.environ and os.path.exists("/sys/class/net/lo"):
        os.environ["GLOO_SOCKET_IFNAME"] = "lo"  # talk over loopback, whatever the hostname resolves to
    try:
        timeout = timedelta(seconds=timeout_s)
        port = listener.getsockname()[1]
        if rank == 0:  # rank 0 serves the rendezvous store on the socket the parent already bound
            store = dist.TCPStore("127.0.0.1", port, world_size, is_master=True, timeout=timeout,
                                  master_listen_fd=listener.fileno())
        else:
            listener.close()
            store = dist.TCPStore("127.0.0.1", port, world_size, is_master=False, timeout=timeout)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=timeout)
        _count_traffic()
        result = worker(rank, world_size, *args)
        if dist.is_initialized():  # (unless the worker destroyed the group itself)
            dist.barrier()  # nobody leaves early: rank 0 serves the store others may still need, and peers' links stay up
        payload = {"result": result}
    except BaseException as error:  # reported to the parent, which raises RankFailed
        payload = {"error": f"{type(error).__name__}: {error}", "traceback": _your_frames(error)}
    buffer = io.BytesIO()
    try:
        torch.save(payload, buffer)
    except Exception as error:
        buffer = io.BytesIO()
        torch.save({"error": f"the worker's result cannot be sent back ({error}); return tensors, numbers, "
                             "strings, lists, tuples and dicts of them", "traceback": ""}, buffer)
    results.send_bytes(buffer.getvalue())
    results.close()


def launch(worker, world_size: int, *args, timeout_s: float = DEFAULT_TIMEOUT_S) -> list:
    """Run `worker(rank, world_size, *args)` on `world_size` forked ranks in one gloo group; return
    each rank's result, in rank order.

    A rank's result crosses back with torch.save: tensors, numbers, strings, lists, tuples, dicts.
    Every rank waits at a barrier after its worker, so none leaves while others still need it.
    Raises RankFailed when a rank raises or dies: the others get half a second to report too, the
    rank most likely at fault is named (a peer's "connection reset" is a consequence, not a
    cause), and the rest are stopped. Also raises RankFailed when a rank has not finished after
    `timeout_s` seconds; gloo's own time limit is the same, so a rank stuck in a send or receive
    usually fails first with gloo's message.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    context = get_context("fork")
    # The store's port is bound here, before any rank starts: no race with other programs for a free port.
    listener = socket.create_server(("127.0.0.1", 0), backlog=max(world_size, 8))
    ranks, pipes = [], {}
    try:
        for rank in range(world_size):
            receiver, sender = context.Pipe(duplex=False)
            process = context.Process(target=_run_rank, name=f"rank {rank}", daemon=True,
                                      args=(rank, world_size, listener, worker, args, timeout_s, sender))
            process.start()
            sender.close()
            ranks.append(process)
            pipes[receiver] = rank
        listener.close()  # rank 0 holds its own copy
        return _collect(ranks, pipes, timeout_s + 5.0)
    finally:
        listener.close()
        for process in ranks:
            if process.is_alive():
                process.kill()
            process.join()


def _why_it_ended(exitcode: int | None) -> str:
    if exitcode == -signal.SIGABRT:
        return ("it was aborted (SIGABRT). gloo aborts a rank whose receive buffer does not have the size of the "
                "message that arrives (\"Received data size doesn't match expected size\" in the output). Likely "
                "cause: a send and its matching recv disagree on the size, for instance because the sender and the "
                "receiver do not mean the same chunk index.")
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return (f"it was killed by {name}. Likely cause: SIGKILL is what an exhausted memory limit looks like; "
                "SIGSEGV, a crash inside a library.")
    return (f"it exited with code {exitcode}. Likely cause: the worker called sys.exit or os._exit.")


def _collect(ranks: list, pipes: dict, timeout_s: float) -> list:
    """Each rank's result, in rank order; RankFailed naming the rank most likely at fault if any rank fails."""
    results: list = [None] * len(ranks)
    failures: list[tuple[int, int, str]] = []  # (how likely the root cause: lower first, rank, message)
    deadline = time.monotonic() + timeout_s
    while pipes:
        ready = wait(list(pipes), timeout=max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        for receiver in ready:
            rank = pipes.pop(receiver)
            try:
                payload = torch.load(io.BytesIO(receiver.recv_bytes()), weights_only=True)
            except EOFError:
                ranks[rank].join(1.0)
                failures.append((1, rank, f"rank {rank} of {len(ranks)} ended without returning a result: "
                                          f"{_why_it_ended(ranks[rank].exitcode)}"))
                continue
            except Exception as error:  # torch.load(weights_only=True) reads plain data and tensors only
                failures.append((0, rank, f"rank {rank} of {len(ranks)} returned a result that cannot be read back "
                                          f"({type(error).__name__}); return tensors, numbers, strings, lists, tuples "
                                          "and dicts of them"))
                continue
            if "error" in payload:
                failures.append(_describe_error(rank, len(ranks), payload))
            else:
                results[rank] = payload["result"]
        if failures:  # the first failure often takes the others down with it: give them a moment to report
            deadline = min(deadline, time.monotonic() + FAILURE_GRACE_S)
    if failures:
        raise RankFailed(min(failures)[2])
    if pipes:
        stuck = sorted(pipes.values())
        raise RankFailed(f"rank(s) {stuck} of {len(ranks)} did not finish within {timeout_s:g} s. {DEADLOCK_HINT}")
    return results


def _describe_error(rank: int, world_size: int, payload: dict) -> tuple[int, int, str]:
    error = payload["error"]
    where = f"\n--- where, in rank {rank} ---\n{payload['traceback']}" if payload["traceback"] else ""
    if "Connection reset by peer" in error or "Connection closed by peer" in error:
        likely = 3  # a consequence: a peer died or left while this rank was talking to it
    elif "Timed out" in error or "timed out" in error:
        likely, error = 2, f"{error}\n{DEADLOCK_HINT}"
    else:
        likely = 0  # the worker's own exception
    return likely, rank, f"rank {rank} of {world_size} raised {error}{where}"


# -- what the checks run (handy in the notebook too) ----------------------------------------------
def _all_reduce_worker(rank: int, world_size: int, all_reduce, cases: list) -> list[dict]:
    runs = []
    for inputs in cases:
        tensor = inputs[rank].clone()
        dist.barrier()  # cases never overlap: each one starts when every rank has finished the last
        TRAFFIC.reset()
        returned = all_reduce(tensor)
        runs.append({"tensor": tensor, "returned": returned if isinstance(returned, torch.Tensor) else None,
                     "sent": list(TRAFFIC.sent)})
    return runs


def all_reduce_trial(all_reduce, cases: list[list[torch.Tensor]], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[list[dict]]:
    """Call `all_reduce(tensor)` on every rank, once per case; cases[c][r] is rank r's input of case c.

    Returns runs[c][r] = {"tensor": what rank r's tensor held afterwards, "returned": the tensor
    all_reduce returned (None if it returned something else), "sent": [(destination, bytes), ...]}.
    """
    world_size = len(cases[0])
    per_rank = launch(_all_reduce_worker, world_size, all_reduce, cases, timeout_s=timeout_s)
    return [[per_rank[rank][case] for rank in range(world_size)] for case in range(len(cases))]


def _replica_worker(rank: int, world_size: int, make_replica, seeds: list) -> list[dict]:
    torch.manual_seed(1000 + rank)  # ranks whose global RNG has drifted apart, as after real start-up code
    return [{name: value.detach().clone() for name, value in make_replica(seed).state_dict().items()} for seed in seeds]


def replica_trial(make_replica, world_size: int, seeds: list[int], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[list[dict]]:
    """The state_dict of make_replica(seed) on every rank: states[rank][i] for seeds[i]."""
    return launch(_replica_worker, world_size, make_replica, seeds, timeout_s=timeout_s)


def _average_worker(rank: int, world_size: int, average_gradients, grads: list[dict]) -> dict:
    torch.manual_seed(0)
    model = make_model()
    for name, parameter in model.named_parameters():
        parameter.grad = grads[rank][name].clone()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    average_gradients(model)
    return {"grads": {name: p.grad for name, p in model.named_parameters()},
            "params_changed": [name for name, p in model.named_parameters() if not torch.equal(p.detach(), before[name])]}


def average_gradients_trial(average_gradients, grads: list[dict], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict]:
    """Give rank r the gradients grads[r] ({parameter name: tensor}) on make_model(), call
    average_gradients(model); per rank: {"grads": the gradients afterwards, "params_changed": names}."""
    return launch(_average_worker, len(grads), average_gradients, grads, timeout_s=timeout_s)


def _data_parallel_worker(rank: int, world_size: int, make_replica, step, x, y, seed: int, lr: float) -> dict:
    model = make_replica(seed)
    start = {name: value.detach().clone() for name, value in model.state_dict().items()}
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for s in range(x.size(0)):
        x_local = x[s].chunk(world_size)[rank]  # (batch / world_size, in_features): this rank's shard
        y_local = y[s].chunk(world_size)[rank]
        losses.append(step(model, optimizer, x_local, y_local))
    return {"start": start, "state": {name: value.detach().clone() for name, value in model.state_dict().items()},
            "losses": losses}


def data_parallel_trial(make_replica, step, x: torch.Tensor, y: torch.Tensor, world_size: int, seed: int,
                        lr: float = CONFIG.lr, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict]:
    """Train make_replica(seed) with SGD(lr) on every rank: for each global batch x[s], y[s], rank r calls
    step(model, optimizer, x_local, y_local) on its contiguous 1/world_size of the batch.
    Per rank: {"start": the replica's first state_dict, "state": the final one, "losses": what step returned}."""
    if x.size(1) % world_size:
        raise ValueError(f"a global batch of {x.size(1)} does not split evenly over {world_size} ranks")
    return launch(_data_parallel_worker, world_size, make_replica, step, x, y, seed, lr, timeout_s=timeout_s)
