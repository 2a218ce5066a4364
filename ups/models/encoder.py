"""Field → latent encoder: the grid is cut into ``latent.tokens`` patches, each patch becomes a token.

A linear patch embedding (invertible in principle: tokens × dim ≥ grid points for every preset on
the 256-point protocol grid) followed by a small circular-convolution mixer over neighbouring tokens,
so a token also knows the slopes at its patch edges.
"""
from __future__ import annotations

import torch
from torch import nn


class FieldEncoder(nn.Module):
    """(B, Tc, X) most recent frames → latent state (B, N, D)."""

    def __init__(self, grid_size: int, tokens: int, dim: int, hidden: int, context_frames: int = 1) -> None:
        super().__init__()
        if grid_size < tokens:
            raise ValueError(f"encoder: grid size {grid_size} is smaller than latent.tokens={tokens}. "
                             "Fix: use fewer tokens or a finer grid (data.reduced_resolution).")
        self.grid_size, self.tokens, self.dim = grid_size, tokens, dim
        self.context_frames = context_frames
        self.patch = -(-grid_size // tokens)  # ceil: a non-dividing grid is resampled periodically
        self.embed = nn.Linear(context_frames * self.patch, hidden)
        self.mix = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1, padding_mode="circular")
        self.act = nn.GELU()
        self.out = nn.Linear(hidden, dim)
        # field normalisation, set from training data by the trainer (saved with the weights)
        self.register_buffer("field_mean", torch.zeros(()))
        self.register_buffer("field_std", torch.ones(()))

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        if context.dim() == 2:
            context = context[:, None]
        B, Tc, X = context.shape
        if X != self.grid_size:
            raise ValueError(f"encoder: got a field with {X} grid points, the model was built for "
                             f"{self.grid_size}. Fix: use data with the training resolution.")
        cf = self.context_frames
        if Tc < cf:  # pad by repeating the oldest frame
            context = torch.cat([context[:, :1].expand(B, cf - Tc, X), context], dim=1)
        u = (context[:, -cf:] - self.field_mean) / self.field_std  # (B, cf, X)
        if self.tokens * self.patch != X:
            u = periodic_resample(u, self.tokens * self.patch)  # (B, cf, N·P)
        u = u.reshape(B, cf, self.tokens, self.patch).permute(0, 2, 1, 3)  # (B, N, cf, P)
        h = self.embed(u.reshape(B, self.tokens, cf * self.patch))  # (B, N, H), shift-equivariant: no position embedding
        h = h + self.mix(self.act(h).transpose(1, 2)).transpose(1, 2)  # (B, N, H)
        return self.out(self.act(h))  # (B, N, D)


def periodic_resample(u: torch.Tensor, n: int) -> torch.Tensor:
    """Linear interpolation of periodic cell-centred fields (B, C, X) onto n cell centres → (B, C, n)."""
    X = u.shape[-1]
    pos = (torch.arange(n, device=u.device, dtype=u.dtype) + 0.5) * X / n - 0.5  # source index coordinates
    lo = torch.floor(pos)
    w = pos - lo
    i0 = lo.long() % X
    i1 = (i0 + 1) % X
    return u[..., i0] * (1 - w) + u[..., i1] * w
