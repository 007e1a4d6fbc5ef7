"""The oom-diagnosis lab's training setup: a small residual MLP, its data, and the step that runs out of memory.

Everything here is shared by the notebook and the checks, so both build the same model, batch
and optimizer. The sizes are picked so that one step takes a fraction of a second on a laptop
CPU while the failing batch still makes activations, not weights, the bulk of the memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

MiB = 2**20


@dataclass(frozen=True)
class LabConfig:
    in_features: int = 64  # input width of one example
    width: int = 64  # the residual stream; the blocks' hidden layer is 4x wider
    expansion: int = 4  # as in a transformer's MLP: most saved activations live in the wide layer
    depth: int = 4  # residual blocks; checkpointing keeps one block's activations at a time
    classes: int = 10
    batch_size: int = 2048  # the batch that no longer fits: activations grow with it, weights do not
    budget_bytes: int = 6 * MiB  # the "GPU": a quarter of what the plain step needs at this batch
    lr: float = 1e-3  # Adam's learning rate in the notebook; the checks pick their own


CONFIG = LabConfig()


class Block(nn.Module):
    """x + fc2(gelu(fc1(x))): autograd keeps fc1's input, gelu's input and fc2's input."""

    def __init__(self, width: int, expansion: int):
        super().__init__()
        self.fc1 = nn.Linear(width, expansion * width)
        self.fc2 = nn.Linear(expansion * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, width) -> (B, width)
        return x + self.fc2(F.gelu(self.fc1(x)))


class ResidualMLP(nn.Module):
    """embed -> depth residual blocks -> head. `blocks` is a ModuleList so a caller can run them one by one."""

    def __init__(self, config: LabConfig = CONFIG):
        super().__init__()
        self.embed = nn.Linear(config.in_features, config.width)
        self.blocks = nn.ModuleList(Block(config.width, config.expansion) for _ in range(config.depth))
        self.head = nn.Linear(config.width, config.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, in_features) -> (B, classes)
        h = self.embed(x)  # (B, width)
        for block in self.blocks:
            h = block(h)  # (B, width)
        return self.head(h)  # (B, classes) logits


def make_model(config: LabConfig = CONFIG, seed: int = 0, **changes) -> ResidualMLP:
    """A freshly initialised model; keyword `changes` override config fields (e.g. width=128)."""
    if changes:
        config = LabConfig(**{**config.__dict__, **changes})
    torch.manual_seed(seed)
    return ResidualMLP(config)


def make_batch(config: LabConfig = CONFIG, batch_size: int | None = None, seed: int = 0,
               device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (B, in_features) float32 and labels (B,) int64 from a fixed random teacher."""
    generator = torch.Generator().manual_seed(seed)
    batch_size = config.batch_size if batch_size is None else batch_size
    x = torch.randn(batch_size, config.in_features, generator=generator)
    teacher = torch.randn(config.in_features, config.classes, generator=torch.Generator().manual_seed(1234))
    y = (x @ teacher + 0.5 * torch.randn(batch_size, config.classes, generator=generator)).argmax(dim=1)
    return x.to(device), y.to(device)


def make_optimizer(model: nn.Module, name: str = "adam", lr: float | None = None) -> torch.optim.Optimizer:
    """'adam' (two state tensors per parameter), 'sgd_momentum' (one) or 'sgd' (none)."""
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=CONFIG.lr if lr is None else lr)
    if name == "sgd_momentum":
        return torch.optim.SGD(model.parameters(), lr=0.1 if lr is None else lr, momentum=0.9)
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=0.1 if lr is None else lr)
    raise ValueError(f"unknown optimizer {name!r}: use 'adam', 'sgd_momentum' or 'sgd'")


def loss_fn(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the batch: the loss whose update the fixed step must reproduce."""
    return F.cross_entropy(logits, y)


def reference_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> float:
    """The plain step: whole batch at once, fp32, every activation kept. Correct, and too big."""
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()


def state_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of the parameters by name (plain data, unlike a state_dict's OrderedDict)."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def load_state(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Copy parameters in by name, keeping each parameter's device; returns the model."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(state[name])
    return model


def loss_and_grads(forward, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict:
    """Run `forward(model, x)`, the loss and backward; returns {"loss", "logits", "grads": {name: grad}}."""
    model.zero_grad(set_to_none=True)
    logits = forward(model, x)
    loss = loss_fn(logits, y)
    loss.backward()
    grads = {name: p.grad.detach().clone() if p.grad is not None else None for name, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    return {"loss": loss.item(), "logits": logits.detach(), "grads": grads}
