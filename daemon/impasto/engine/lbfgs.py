"""L-BFGS with the two-loop recursion done on the pairs' Gram matrix.

The iterates are those of torch.optim.LBFGS(lr=1, max_iter=1, no line search) called
once per evaluation, which is how neural-style and the engine use it. torch's version
walks the history pair by pair: for 100 pairs that is about 400 vector kernels and 200
host-device synchronisations per step (each `alpha=` takes a Python float), which on a
GPU costs more than the VGG19 evaluation itself at typical sizes.

Here the pairs are rows of two matrices S and Y, and the recursion is rewritten in
terms of inner products: with v = [S; Y] g and the Gram matrix of [S; Y], every
alpha_i and beta_i is a scalar recursion of O(m^2) flops on the host, and the new
direction is one matrix-vector product, d = -gamma g + S^T a + Y^T b. The Gram entries
of a new pair come from vectors already at hand (S s_k = t S d_k, and S d_k follows
from the previous step's v and coefficients), so each step reads the history twice,
as the two-loop recursion does, with 4 kernels and one synchronisation.
"""

from __future__ import annotations

import numpy as np
import torch

CURVATURE_MIN = 1e-10  # torch.optim.LBFGS skips pairs with y.s at or below this


class LBFGS:
    """Minimises a closure over one tensor; one closure evaluation per `step`."""

    def __init__(self, x: torch.Tensor, history_size: int = 100) -> None:
        self.stalled = False  # set when the gradient vanished: no step can improve
        self.x = x
        self.m = history_size
        n = x.numel()
        self.n = n
        # Rows: steps s_i and gradient changes y_i, in slot order (not age order);
        # as many rows as allocated so far (see _grow).
        self.S = x.new_zeros(0, n)
        self.Y = x.new_zeros(0, n)
        # Gram matrix of [S; Y] in float64, slots 0..m-1 for S and m..2m-1 for Y.
        self.G = np.zeros((2 * self.m, 2 * self.m))
        self.rho = np.zeros(self.m)
        self.order: list[int] = []  # slots, oldest pair first
        self.gamma = 1.0
        self._g_prev: torch.Tensor | None = None
        self._d: torch.Tensor | None = None
        self._t = 1.0
        self._v_prev = np.zeros(2 * self.m)  # [S; Y] g_prev for the current history
        self._c_prev = np.zeros(2 * self.m)  # d_prev = -gamma g_prev + [S; Y]^T c_prev

    def _grow(self, need: int) -> None:
        rows = self.S.shape[0]
        if need <= rows:
            return
        # Grow geometrically: a short run never holds memory for 100 pairs.
        cap = min(self.m, max(8, 2 * rows, need))
        for name in ("S", "Y"):
            old = getattr(self, name)
            new = old.new_zeros(cap, self.n)
            new[:rows] = old
            setattr(self, name, new)

    def step(self, closure) -> torch.Tensor:  # noqa: ANN001 - Callable[[], Tensor]
        with torch.enable_grad():
            loss = closure()
        g = self.x.grad.detach().reshape(-1)
        if self._d is None:  # first step: scaled steepest descent, as torch
            g_sum = float(g.abs().sum())
            if not g_sum > 0:
                # A flat objective (a flat image against a flat style, say): nothing to
                # do. torch's LBFGS divides by zero here; stopping is the sound result.
                self.stalled = True
                return loss
            d = g.neg()
            t = min(1.0, 1.0 / g_sum)
        else:
            d, t = self._direction(g)
        self._g_prev = g.clone()
        self._d, self._t = d, t
        with torch.no_grad():
            self.x.add_(d.view_as(self.x), alpha=t)
        return loss

    def _direction(self, g: torch.Tensor) -> tuple[torch.Tensor, float]:
        m, cap = self.m, self.S.shape[0]
        assert self._g_prev is not None and self._d is not None
        y = g - self._g_prev
        s = self._d * self._t
        # One transfer: S g, Y g and the new pair's own inner products.
        parts = [y.dot(s), y.dot(y), s.dot(s), s.dot(g), y.dot(g)]
        head = torch.stack(parts)
        if cap:
            head = torch.cat([head, self.S @ g, self.Y @ g])
        host = head.double().cpu().numpy()
        ys, yy, ss, sg, yg = host[:5]
        v = np.zeros(2 * m)
        if cap:
            v[:cap] = host[5:5 + cap]
            v[m:m + cap] = host[5 + cap:5 + 2 * cap]
        if ys > CURVATURE_MIN:
            # [S; Y] s and [S; Y] y for the history as it stands, before the new pair.
            hd = -self.gamma * self._v_prev + self.G @ self._c_prev
            hs = self._t * hd
            hy = v - self._v_prev
            if len(self.order) == m:
                slot = self.order.pop(0)
            else:
                slot = len(self.order)
                self._grow(slot + 1)
            self.S[slot] = s
            self.Y[slot] = y
            live = self.order + [m + i for i in self.order]  # the other pairs' rows
            for rows, col in ((hs, slot), (hy, m + slot)):
                self.G[live, col] = rows[live]
                self.G[col, live] = rows[live]
            self.G[slot, slot], self.G[m + slot, m + slot] = ss, yy
            self.G[slot, m + slot] = self.G[m + slot, slot] = ys
            self.order.append(slot)
            self.rho[slot] = 1.0 / ys
            self.gamma = ys / yy
            v[slot], v[m + slot] = sg, yg
        c = self._coefficients(v)
        d = g * -self.gamma
        k = self.S.shape[0]
        if self.order:
            cd = torch.from_numpy(c).to(device=g.device, dtype=g.dtype)
            d = torch.addmv(d, self.S.T, cd[:k])
            d = torch.addmv(d, self.Y.T, cd[m:m + k])
        self._v_prev, self._c_prev = v, c
        return d, 1.0

    def _coefficients(self, v: np.ndarray) -> np.ndarray:
        """The two-loop recursion on inner products: d = -gamma g + [S; Y]^T c.

        In age order (0 oldest): q = -g - sum_{j>i} alpha_j y_j gives
        alpha_i = rho_i (-s_i.g - sum_{j>i} alpha_j s_i.y_j), and r = gamma q +
        sum_{j<i} (alpha_j - beta_j) s_j gives beta_i = rho_i y_i.r likewise.
        """
        m, G, gamma = self.m, self.G, self.gamma
        s_idx = np.array(self.order, dtype=int)
        y_idx = s_idx + m
        n = len(s_idx)
        c = np.zeros(2 * m)
        if n == 0:
            return c
        rho = self.rho[s_idx]
        sy = G[np.ix_(s_idx, y_idx)]  # s_i . y_j
        yy = G[np.ix_(y_idx, y_idx)]
        ys = sy.T  # y_i . s_j
        alpha = np.zeros(n)
        for i in range(n - 1, -1, -1):
            alpha[i] = rho[i] * (-v[s_idx[i]] - sy[i, i + 1:] @ alpha[i + 1:])
        yq = -v[y_idx] - yy @ alpha
        ab = np.zeros(n)  # alpha_j - beta_j
        for i in range(n):
            beta = rho[i] * (gamma * yq[i] + ys[i, :i] @ ab[:i])
            ab[i] = alpha[i] - beta
        c[s_idx] = ab
        c[y_idx] = -gamma * alpha
        return c
