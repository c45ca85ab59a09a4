"""Plain sequential PyTorch version of the Spurious-XOR protocol (the benchmark's reference).

One run at a time, as a PyTorch user would write it: the same model, losses,
optimiser and masks as ``jaxmm``'s ``vanilla`` / ``synib`` methods on the
same data arrays.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class FusionNet(nn.Module):
    """Linear(64,16)+ReLU encoders, Linear(16,1) unimodal heads, Linear(32,32)+ReLU+Linear(32,1) fusion."""

    def __init__(self, dim: int = 64, hidden: int = 16):
        super().__init__()
        self.encoders = nn.ModuleList([nn.Sequential(nn.Linear(dim, hidden), nn.ReLU()) for _ in range(2)])
        self.heads = nn.ModuleList([nn.Linear(hidden, 1) for _ in range(2)])
        self.fusion = nn.Sequential(nn.Linear(2 * hidden, 32), nn.ReLU(), nn.Linear(32, 1))

    def unimodal(self, m: int, x: torch.Tensor) -> torch.Tensor:
        return self.heads[m](self.encoders[m](x)).squeeze(-1)

    def forward(self, x0, x1):
        h0, h1 = self.encoders[0](x0), self.encoders[1](x1)
        return (self.fusion(torch.cat([h0, h1], -1)).squeeze(-1),
                self.heads[0](h0).squeeze(-1), self.heads[1](h1).squeeze(-1))


def _kl_half(logit):
    p = torch.sigmoid(logit)
    return (p * F.logsigmoid(logit) + (1 - p) * F.logsigmoid(-logit)).mean() + np.log(2.0)


def _learned_keep(model, x, y, m, steps, lr, sparsity):
    ell = torch.full_like(x, -4.0, requires_grad=True)
    opt = torch.optim.Adam([ell], lr=lr)
    for _ in range(steps):
        g = torch.sigmoid(ell)
        xc = (1 - g) * x + g * torch.randn_like(x)
        obj = -F.binary_cross_entropy_with_logits(model.unimodal(m, xc), y) + sparsity * g.mean()
        opt.zero_grad()
        obj.backward()
        opt.step()
    return (torch.sigmoid(ell) > 0.5).float().detach()


def train_one(data: dict, mask: str | None, *, epochs=100, lr=3e-4, wd=1e-5, lam=10.0, p=0.4,
              learned_steps=50, learned_lr=3.0, sparsity=0.03, anneal=20, seed=0) -> float:
    """Trains one run and returns its fusion test accuracy. ``mask=None`` is vanilla fusion."""
    torch.manual_seed(seed)
    x0, x1, y = (torch.tensor(data[k]) for k in ("x0", "x1", "y"))
    y = y.float()
    model = FusionNet()
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=wd)
    n = len(y)
    for ep in range(epochs):
        lam_eff = lam * min(1.0, (ep + 1) / anneal) if mask == "learned" else lam
        for idx in torch.randperm(n).split(128):
            a, b, t = x0[idx], x1[idx], y[idx]
            f, u0, u1 = model(a, b)
            loss = F.binary_cross_entropy_with_logits(f, t) + 0.05 * (
                F.binary_cross_entropy_with_logits(u0, t) + F.binary_cross_entropy_with_logits(u1, t))
            if mask is not None:
                if mask == "oracle":
                    m0 = torch.zeros_like(a)
                    m0[:, :4] = 1
                    m1 = m0
                elif mask == "random":
                    m0, m1 = torch.bernoulli(torch.full_like(a, p)), torch.bernoulli(torch.full_like(b, p))
                else:
                    m0 = 1 - _learned_keep(model, a, t, 0, learned_steps, learned_lr, sparsity)
                    m1 = 1 - _learned_keep(model, b, t, 1, learned_steps, learned_lr, sparsity)
                a_c = (1 - m0) * a + m0 * torch.randn_like(a)
                b_c = (1 - m1) * b + m1 * torch.randn_like(b)
                loss = loss + lam_eff * (_kl_half(model(a_c, b)[0]) + _kl_half(model(a, b_c)[0]))
            opt.zero_grad()
            loss.backward()
            opt.step()
    with torch.no_grad():
        f = model(torch.tensor(data["tx0"]), torch.tensor(data["tx1"]))[0]
        return float(((f > 0).float() == torch.tensor(data["ty"]).float()).float().mean())
