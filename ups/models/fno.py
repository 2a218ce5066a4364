"""FNO1d with PDEBench's Burgers configuration (the bar every surrogate must clear).

Architecture as in pdebench/models/fno/fno.py (after Li et al., 2020): the last ``initial_step``
frames plus the grid coordinate are lifted to ``width`` channels, four Fourier layers
(spectral convolution on the lowest ``modes`` modes + pointwise 1×1 convolution, GELU between),
a two-layer head (``width → 128 → 1``), zero padding of 2 cells at the right end as PDEBench does.
With modes 12, width 20 and 10 frames it has 43,137 real parameters (complex weights stored as
real/imaginary pairs, so ``numel`` counts them the way the published "~43K" does).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SpectralConv1d", "FNO1d", "fno_rollout"]


def _dft_bases(n: int, modes: int, dtype: torch.dtype, device: torch.device | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Truncated real DFT as matrices.

    forward (2M, N): rows ``cos(2πkn/N)`` then ``-sin(2πkn/N)``, so ``fwd @ u`` = (Re, Im) of
    ``rfft(u)[:M]``; inverse (N, 2M): ``irfft`` of a spectrum that is zero beyond mode M (the
    imaginary part of mode 0 is dropped, as ``irfft`` does).  Requires M ≤ N // 2 (no Nyquist term).
    """
    k = torch.arange(modes, dtype=torch.float64)
    n_idx = torch.arange(n, dtype=torch.float64)
    ang = 2 * math.pi * k[:, None] * n_idx[None, :] / n  # (M, N)
    fwd = torch.cat([torch.cos(ang), -torch.sin(ang)], dim=0)  # (2M, N)
    w = torch.full((modes,), 2.0 / n, dtype=torch.float64)
    w[0] = 1.0 / n
    inv = torch.cat([torch.cos(ang) * w[:, None], -torch.sin(ang) * w[:, None]], dim=0).T  # (N, 2M)
    inv[:, modes] = 0.0  # Im of mode 0 does not contribute
    return fwd.to(dtype=dtype, device=device), inv.contiguous().to(dtype=dtype, device=device)


class SpectralConv1d(nn.Module):
    """Multiply the lowest ``modes`` Fourier modes by a learned complex (in, out) matrix per mode.

    Grid-first layout: (N, B, C_in) → (N, B, C_out), so that both transforms are single matrix
    products over ``B·C`` columns.  Mathematically ``irfft(W · rfft(u)[:modes])``; with 12 of
    N/2+1 modes kept, products against a truncated DFT basis are ~2.5× cheaper on CPU than full
    FFTs and their backward passes (benchmarks/fno_step.py), with identical results up to
    round-off (checked against ``torch.fft`` in tests/test_baselines.py).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.modes = in_channels, out_channels, modes
        scale = 1.0 / (in_channels * out_channels)
        # PDEBench: scale * torch.rand(cfloat) → real and imaginary parts both U(0, scale)
        self.weight = nn.Parameter(scale * torch.rand(in_channels, out_channels, modes, 2))
        self._bases: dict[tuple[int, torch.dtype, torch.device], tuple[torch.Tensor, torch.Tensor]] = {}

    def bases(self, n: int, dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (n, dtype, device)
        if key not in self._bases:
            self._bases[key] = _dft_bases(n, min(self.modes, n // 2), dtype, device)
        return self._bases[key]

    def block_weight(self, m: int) -> torch.Tensor:
        """Complex (C_in, C_out) per mode as a real block matrix [[Re, Im], [-Im, Re]]: (M, 2C_in, 2C_out)."""
        w_re = self.weight[:, :, :m, 0].permute(2, 0, 1)  # (M, C_in, C_out)
        w_im = self.weight[:, :, :m, 1].permute(2, 0, 1)
        return torch.cat([torch.cat([w_re, w_im], dim=-1), torch.cat([-w_im, w_re], dim=-1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (N, B, C_in)
        n, b, c_in = x.shape
        fwd, inv = self.bases(n, x.dtype, x.device)  # (2M, N), (N, 2M)
        m = fwd.shape[0] // 2
        coef = (fwd @ x.reshape(n, b * c_in)).reshape(2 * m, b, c_in)  # (2M, B, C_in): Re rows, Im rows
        a = torch.cat([coef[:m], coef[m:]], dim=-1)  # (M, B, 2C_in): [Re | Im]
        o = torch.bmm(a, self.block_weight(m))  # (M, B, 2C_out): [Re | Im] of W·û
        c_out = self.out_channels
        o = torch.cat([o[..., :c_out], o[..., c_out:]], dim=0)  # (2M, B, C_out)
        return (inv @ o.reshape(2 * m, b * c_out)).reshape(n, b, c_out)  # (N, B, C_out)


class FNO1d(nn.Module):
    """Next-frame operator: (B, initial_step, X) context + grid (X,) → next frame (B, X)."""

    def __init__(self, modes: int = 12, width: int = 20, initial_step: int = 10, padding: int = 2) -> None:
        super().__init__()
        if modes < 1 or width < 1 or initial_step < 1 or padding < 0:
            raise ValueError(f"FNO1d: modes={modes}, width={width}, initial_step={initial_step} must be ≥ 1 "
                             f"and padding={padding} ≥ 0")
        self.modes, self.width, self.initial_step, self.padding = modes, width, initial_step, padding
        self.fc0 = nn.Linear(initial_step + 1, width)
        self.convs = nn.ModuleList(SpectralConv1d(width, width, modes) for _ in range(4))
        self.ws = nn.ModuleList(nn.Linear(width, width) for _ in range(4))  # PDEBench's 1×1 Conv1d
        self.fc1 = nn.Linear(width, 128)
        self.fc2 = nn.Linear(128, 1)

    def forward_grid_first(self, window: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        """(X, B, Ti) context in grid-first layout → next frame (X, B)."""
        n, b, ti = window.shape
        if ti != self.initial_step:
            raise ValueError(f"FNO1d: expected {self.initial_step} context frames, got {ti}")
        g = grid.to(window.dtype).reshape(n, 1, 1).expand(n, b, 1)  # (X, B, 1)
        h = self.fc0(torch.cat([window, g], dim=-1))  # (X, B, W)
        if self.padding:
            h = F.pad(h, [0, 0, 0, 0, 0, self.padding])  # (X+P, B, W) zero cells at the right end
        for i, (conv, w) in enumerate(zip(self.convs, self.ws)):
            h = conv(h) + w(h)  # (X+P, B, W)
            if i < 3:
                h = F.gelu(h)
        if self.padding:
            h = h[: -self.padding]  # (X, B, W)
        h = F.gelu(self.fc1(h))  # (X, B, 128)
        return self.fc2(h).squeeze(-1)  # (X, B)

    def forward(self, context: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        # context: (B, Ti, X); grid: (X,)
        return self.forward_grid_first(context.permute(2, 0, 1), grid).T  # (B, X)


def fno_rollout(model: FNO1d, context: torch.Tensor, n_steps: int, grid: torch.Tensor) -> torch.Tensor:
    """Autoregressive rollout (no grad handling here): (B, Ti, X) → (B, n_steps, X)."""
    window = context.permute(2, 0, 1)  # (X, B, Ti)
    frames = []
    for _ in range(n_steps):
        nxt = model.forward_grid_first(window, grid)  # (X, B)
        frames.append(nxt)
        window = torch.cat([window[..., 1:], nxt[..., None]], dim=-1)  # (X, B, Ti)
    return torch.stack(frames, dim=0).permute(2, 0, 1)  # (B, n_steps, X)
