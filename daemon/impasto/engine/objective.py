"""The objective an image is optimised against, and a CUDA-graph replay of it.

`value_and_grad(x)` is the one interface the optimiser loop uses (the tiled objective
in tiled.py has it too). The parts of the last evaluation are fetched from the device
in one transfer: each `.item()` is a synchronisation, which a GPU pays for in idle time.
"""

from __future__ import annotations

import logging

import torch

from impasto.engine.losses import Term
from impasto.engine.vgg import VGGFeatures

log = logging.getLogger(__name__)


def groups_of(terms: list[Term]) -> list[str]:
    """The terms' group names in first-seen order: what progress and results report."""
    return list(dict.fromkeys(t.group for t in terms))


class Recorder:
    """Counts evaluations and keeps the parts of the last one, as plain floats, named by
    the terms' groups and "total"."""

    def __init__(self, terms: list[Term]) -> None:
        self.terms = terms
        self.names = [*groups_of(terms), "total"]
        self.evals = 0
        self.last: dict[str, float] = {}

    def record(self, parts: torch.Tensor) -> None:
        """parts: one value per name, fetched in one transfer."""
        self.evals += 1
        self.last = dict(zip(self.names, parts.detach().tolist()))

    def stack(self, by_group: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        values = [by_group.get(n, like.new_zeros(())) for n in self.names[:-1]]
        return torch.stack([*values, sum(values, like.new_zeros(()))])


class Objective(Recorder):
    """The sum of its terms at an image; remembers the parts of the last call."""

    def __init__(self, net: VGGFeatures, terms: list[Term]) -> None:
        super().__init__(terms)
        self.net = net
        self.total_index = len(self.names) - 1

    def parts(self, x: torch.Tensor) -> torch.Tensor:
        """One value per group, then the total, as one tensor, differentiable."""
        feats = self.net(x)
        by_group: dict[str, torch.Tensor] = {}
        for t in self.terms:
            v = t(x if t.layer is None else feats[t.layer])
            by_group[t.group] = by_group[t.group] + v if t.group in by_group else v
        return self.stack(by_group, x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.parts(x)
        self.record(p)
        return p[-1]

    def parts_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The parts (detached) and the gradient of the total, not recorded."""
        xg = x.detach().requires_grad_(True)
        p = self.parts(xg)
        (grad,) = torch.autograd.grad(p[-1], xg)
        return p.detach(), grad

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, grad = self.parts_and_grad(x)
        self.record(p)
        return p[-1], grad


class GraphedObjective:
    """An Objective's forward and backward pass captured once as a CUDA graph and
    replayed for each evaluation: one launch instead of a few hundred kernels, which
    matters at the small coarse scales where launches, not arithmetic, take the time.
    The returned gradient lives in the graph's buffer until the next call."""

    def __init__(self, objective: Objective, like: torch.Tensor) -> None:
        self.objective = objective
        self.x = like.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        # Warm-up on a side stream, as capture requires: lazy initialisation and the
        # first allocations must happen outside the graph.
        with torch.cuda.stream(stream):
            for _ in range(3):
                objective.parts_and_grad(self.x)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.parts, self.grad = objective.parts_and_grad(self.x)

    @property
    def evals(self) -> int:
        return self.objective.evals

    @property
    def last(self) -> dict[str, float]:
        return self.objective.last

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.x.copy_(x)
        self.graph.replay()
        self.objective.record(self.parts)
        return self.parts[-1], self.grad


def graphed(objective: Objective, like: torch.Tensor) -> Objective | GraphedObjective:
    """The graph-captured objective, or the eager one where capture fails (an op
    that cannot be captured, or no memory for the graph's pool)."""
    try:
        return GraphedObjective(objective, like)
    except RuntimeError as e:
        log.warning("CUDA graph capture failed, evaluating eagerly: %s", str(e).splitlines()[0])
        torch.cuda.synchronize()
        return objective
