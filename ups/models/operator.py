"""Latent operator: a small U-shaped transformer over tokens that predicts the residual update.

``operator.depths`` lists the stages (blocks per stage). The first half of the stages save their output
and the mirrored second-half stages fuse it back through a linear long skip (U-ViT style). Each block
is pre-norm local depthwise-conv token mixing + multi-head self-attention (``heads``) + MLP (``mlp_ratio``) with GroupNorm over channel
groups of ``group_size`` and optional stochastic depth (``drop_path``, linearly increasing).
The output projection starts at zero, so an untrained operator is the identity map z → z.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ChannelGroupNorm(nn.Module):
    """GroupNorm over the channel axis of token tensors (…, C), groups of ``group_size`` channels."""

    def __init__(self, channels: int, group_size: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(channels // group_size, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        return self.norm(x.reshape(-1, shape[-1])).reshape(shape)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability p (training only)."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p <= 0:
            return x
        keep = 1.0 - self.p
        mask = torch.rand((x.shape[0],) + (1,) * (x.dim() - 1), device=x.device, dtype=x.dtype) < keep
        return x * mask / keep


class Block(nn.Module):
    def __init__(self, hidden: int, heads: int, group_size: int, mlp_ratio: float, drop_path: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm0 = ChannelGroupNorm(hidden, group_size)
        # local token mixing (depthwise circular conv): the translation-equivariant, local prior of a PDE
        self.local = nn.Conv1d(hidden, hidden, kernel_size=3, padding=1, padding_mode="circular", groups=hidden)
        self.norm1 = ChannelGroupNorm(hidden, group_size)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.norm2 = ChannelGroupNorm(hidden, group_size)
        inner = max(1, int(hidden * mlp_ratio))
        self.mlp = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden))
        self.drop = DropPath(drop_path)

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        B, N, H = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, H // self.heads).permute(2, 0, 3, 1, 4)  # (B, h, N, H/h)
        y = F.scaled_dot_product_attention(q, k, v)  # (B, h, N, H/h)
        return self.proj(y.transpose(1, 2).reshape(B, N, H))  # (B, N, H)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.local(self.norm0(x).transpose(1, 2)).transpose(1, 2))  # (B, N, H)
        x = x + self.drop(self.attention(self.norm1(x)))  # (B, N, H)
        return x + self.drop(self.mlp(self.norm2(x)))  # (B, N, H)


class LatentOperator(nn.Module):
    """Deterministic latent step z_{t+1} = z_t + Δ(z_t): (B, N, D) → (B, N, D)."""

    def __init__(self, tokens: int, dim: int, hidden: int, depths: Sequence[int], heads: int,
                 group_size: int, mlp_ratio: float = 2.0, drop_path: float = 0.0) -> None:
        super().__init__()
        depths = [int(d) for d in depths]
        total = max(1, sum(depths))
        rates = [drop_path * i / max(1, total - 1) for i in range(total)]
        self.inp = nn.Linear(dim, hidden)  # no absolute position embedding: periodic PDEs are shift-invariant
        self.stages = nn.ModuleList()
        i = 0
        for d in depths:
            self.stages.append(nn.ModuleList(
                Block(hidden, heads, group_size, mlp_ratio, rates[min(i + j, total - 1)]) for j in range(d)))
            i += d
        n = len(depths)
        self.n_skips = n // 2  # stage s < n//2 feeds stage n-1-s
        self.skips = nn.ModuleList(nn.Linear(2 * hidden, hidden) for _ in range(self.n_skips))
        self.norm = ChannelGroupNorm(hidden, group_size)
        self.out = nn.Linear(hidden, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.inp(z)  # (B, N, H)
        saved: list[torch.Tensor] = []
        n = len(self.stages)
        for s, blocks in enumerate(self.stages):
            j = n - 1 - s
            if j < self.n_skips and s > j:  # second half: fuse the mirrored stage's output
                h = self.skips[j](torch.cat([h, saved[j]], dim=-1))  # (B, N, H)
            for blk in blocks:
                h = blk(h)
            if s < self.n_skips:
                saved.append(h)
        return z + self.out(self.norm(h))  # (B, N, D)
