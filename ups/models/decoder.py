"""Latent → field decoder: a Fourier-feature neural field conditioned on the patch tokens.

Every grid point x lies in the patch of one token n with local coordinate s ∈ [0, 1). Its value is an
MLP of (token features of n and its two neighbours) + (Fourier features of s at
``decoder.frequencies``). The decoder is resolution-agnostic: any number of points per patch works.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


class FourierDecoder(nn.Module):
    """Latent state (B, N, D) → field (B, X)."""

    def __init__(self, grid_size: int, tokens: int, dim: int, hidden: int,
                 frequencies: Sequence[float], num_layers: int) -> None:
        super().__init__()
        self.grid_size, self.tokens = grid_size, tokens
        self.register_buffer("freqs", torch.tensor([float(f) for f in frequencies]) * math.pi, persistent=False)
        n_ff = 1 + 2 * len(frequencies)
        self.context = nn.Conv1d(dim, hidden, kernel_size=3, padding=1, padding_mode="circular")
        self.scale = nn.Conv1d(dim, hidden, kernel_size=3, padding=1, padding_mode="circular")
        self.ff = nn.Linear(n_ff, hidden)
        layers: list[nn.Module] = []
        for _ in range(max(0, num_layers - 1)):
            layers += [nn.GELU(), nn.Linear(hidden, hidden)]
        self.mlp = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.GELU(), nn.Linear(hidden, 1))
        self.register_buffer("field_mean", torch.zeros(()))
        self.register_buffer("field_std", torch.ones(()))

    def query(self, grid_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell centres x_j = (j+½)/X → (owning token index (X,), Fourier features of local s (X, 1+2F))."""
        x = (torch.arange(grid_size, device=self.freqs.device, dtype=torch.float64) + 0.5) / grid_size
        pos = x * self.tokens
        idx = torch.floor(pos).long().clamp_(0, self.tokens - 1)
        s = (pos - idx).to(self.freqs.dtype)  # local coordinate in [0, 1)
        ang = s[:, None] * self.freqs  # (X, F)
        return idx, torch.cat([s[:, None] * 2 - 1, torch.sin(ang), torch.cos(ang)], dim=-1)

    def forward(self, z: torch.Tensor, grid_size: int | None = None) -> torch.Tensor:
        X = grid_size or self.grid_size
        zt = z.transpose(1, 2)  # (B, D, N)
        ctx = self.context(zt).transpose(1, 2)  # (B, N, H)
        gain = self.scale(zt).transpose(1, 2)  # (B, N, H)
        idx, feats = self.query(X)
        ff = self.ff(feats.to(z.dtype))  # (X, H)
        h = ctx[:, idx] + (1 + gain[:, idx]) * ff  # (B, X, H)
        h = self.head(self.mlp(h)).squeeze(-1)  # (B, X)
        return h * self.field_std + self.field_mean
