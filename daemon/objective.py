"""The objective an image is optimised against, and a CUDA-graph replay of it.

`value_and_grad(x)` is the one interface the optimiser loop uses (the tiled objective
in tiled.py has it too). The parts of the last evaluation are fetched from the device
in one transfer: each `.item()` is a synchronisation, which a GPU pays for in idle time.
"""

from __future__ import annotations

import logging

import torch

from daemon.losses import ContentLoss, StyleLoss, TVLoss
from daemon.vgg import VGGFeatures

log = logging.getLogger(__name__)
PARTS = ("content", "style", "tv", "total")


class Objective:
    """Content + style + TV loss of an image; remembers the parts of the last call."""

    def __init__(self, net: VGGFeatures, content: dict[str, ContentLoss],
                 style: dict[str, StyleLoss], tv: TVLoss) -> None:
        self.net, self.content, self.style, self.tv = net, content, style, tv
        self.evals = 0
        self.last: dict[str, float] = {}

    def parts(self, x: torch.Tensor) -> torch.Tensor:
        """[content, style, tv, total] as one tensor, differentiable."""
        feats = self.net(x)
        lc = sum(m(feats[n]) for n, m in self.content.items())
        ls = sum(m(feats[n]) for n, m in self.style.items())
        lt = self.tv(x)
        return torch.stack([lc, ls, lt, lc + ls + lt])

    def record(self, parts: torch.Tensor) -> None:
        self.evals += 1
        self.last = dict(zip(PARTS, parts.detach().tolist()))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        p = self.parts(x)
        self.record(p)
        return p[3]

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xg = x.detach().requires_grad_(True)
        p = self.parts(xg)
        (grad,) = torch.autograd.grad(p[3], xg)
        self.record(p)
        return p[3].detach(), grad


class GraphedObjective:
    """An Objective's forward and backward pass captured once as a CUDA graph and
    replayed for each evaluation: one launch instead of a few hundred kernels, which
    matters at the small coarse scales where launches, not arithmetic, take the time.
    The returned gradient lives in the graph's buffer until the next call."""

    def __init__(self, objective: Objective, like: torch.Tensor) -> None:
        self.objective = objective
        self.x = torch.zeros_like(like)
        self.x.copy_(like)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):  # warm-up: cuDNN picks algorithms, autograd allocates
            for _ in range(3):
                self._pass()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.parts, self.grad = self._pass()

    def _pass(self) -> tuple[torch.Tensor, torch.Tensor]:
        xg = self.x.detach().requires_grad_(True)
        p = self.objective.parts(xg)
        (grad,) = torch.autograd.grad(p[3], xg)
        return p.detach(), grad

    @property
    def evals(self) -> int:
        return self.objective.evals

    @property
    def last(self) -> dict[str, float]:
        return self.objective.last

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.objective(x)

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
