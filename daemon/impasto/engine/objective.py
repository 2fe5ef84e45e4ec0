"""The objective an image is optimised against, and a CUDA-graph replay of it.

`value_and_grad(x)` is the one interface the optimiser loop uses (the tiled objective
in tiled.py has it too). The parts of the last evaluation are fetched from the device
in one transfer: each `.item()` is a synchronisation, which a GPU pays for in idle time.
"""

from __future__ import annotations

import logging

import torch

from impasto.engine.losses import ContentLoss, StyleLoss, TVLoss
from impasto.engine.vgg import VGGFeatures

log = logging.getLogger(__name__)
PARTS = ("content", "style", "tv", "total")


class Recorder:
    """Counts evaluations and keeps the parts of the last one, as plain floats."""

    def __init__(self) -> None:
        self.evals = 0
        self.last: dict[str, float] = {}

    def record(self, parts: torch.Tensor) -> None:
        """parts: [content, style, tv, total], fetched in one transfer."""
        self.evals += 1
        self.last = dict(zip(PARTS, parts.detach().tolist()))


class Objective(Recorder):
    """Content + style + TV loss of an image; remembers the parts of the last call."""

    def __init__(self, net: VGGFeatures, content: dict[str, ContentLoss],
                 style: dict[str, StyleLoss], tv: TVLoss) -> None:
        super().__init__()
        self.net, self.content, self.style, self.tv = net, content, style, tv

    def parts(self, x: torch.Tensor) -> torch.Tensor:
        """[content, style, tv, total] as one tensor, differentiable."""
        feats = self.net(x)
        lc = sum(m(feats[n]) for n, m in self.content.items())
        ls = sum(m(feats[n]) for n, m in self.style.items())
        lt = self.tv(x)
        return torch.stack([lc, ls, lt, lc + ls + lt])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.parts(x)
        self.record(p)
        return p[3]

    def parts_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The parts (detached) and the gradient of the total, not recorded."""
        xg = x.detach().requires_grad_(True)
        p = self.parts(xg)
        (grad,) = torch.autograd.grad(p[3], xg)
        return p.detach(), grad

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p, grad = self.parts_and_grad(x)
        self.record(p)
        return p[3], grad


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
        return self.parts[3], self.grad


def graphed(objective: Objective, like: torch.Tensor) -> Objective | GraphedObjective:
    """The graph-captured objective, or the eager one where capture fails (an op
    that cannot be captured, or no memory for the graph's pool)."""
    try:
        return GraphedObjective(objective, like)
    except RuntimeError as e:
        log.warning("CUDA graph capture failed, evaluating eagerly: %s", str(e).splitlines()[0])
        torch.cuda.synchronize()
        return objective
