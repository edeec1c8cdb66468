"""The per-user optimiser: AdamW and gradient clipping over stacked (K, ...) adapter weights."""

from __future__ import annotations

import torch


class StackedAdamW:
    """torch's AdamW, element-wise over stacked (K, ...) weights, with a step per user."""

    def __init__(self, params: list[torch.nn.Parameter], users: int, lr: float,
                 weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        self.params, self.lr, self.wd, self.betas, self.eps = params, lr, weight_decay, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.steps = torch.zeros(users, dtype=torch.float64)

    @torch.no_grad()
    def step(self, active: torch.Tensor) -> None:
        """Update the users in `active` (bool, (K,)) only; others keep weights and moments."""
        idx = active.nonzero().flatten()
        if idx.numel() == 0:
            return
        self.steps[idx] += 1
        b1, b2 = self.betas
        t = self.steps[idx]
        step_size = self.lr / (1 - b1 ** t)  # float64; cast to each weight's dtype below
        bc2_sqrt = torch.sqrt(1 - b2 ** t)
        dev = self.params[0].device
        idx_d = idx.to(dev)
        for p, m, v in zip(self.params, self.m, self.v):
            shape = (-1,) + (1,) * (p.dim() - 1)
            w, g = p.data.index_select(0, idx_d), p.grad.index_select(0, idx_d)
            mm, vv = m.index_select(0, idx_d), v.index_select(0, idx_d)
            w.mul_(1 - self.lr * self.wd)
            mm.lerp_(g, 1 - b1)
            vv.mul_(b2).addcmul_(g, g, value=1 - b2)
            denom = (vv.sqrt() / bc2_sqrt.to(dev, p.dtype).view(shape)).add_(self.eps)
            w.sub_(mm / denom * step_size.to(dev, p.dtype).view(shape))
            p.data.index_copy_(0, idx_d, w)
            m.index_copy_(0, idx_d, mm)
            v.index_copy_(0, idx_d, vv)


def clip_per_user(params: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale each user's gradient to at most `max_norm` (torch's clip_grad_norm_ per user)."""
    sq = sum(p.grad.pow(2).flatten(1).sum(1) for p in params)
    norms = sq.sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for p in params:
        p.grad.mul_(coef.view((-1,) + (1,) * (p.dim() - 1)))
    return norms
