"""The contract between the UPS model, TTC and evaluation (no Ray, no training code).

Shapes: B batch, Tc context frames, X grid points, K candidates, N tokens, D latent dim.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

if TYPE_CHECKING:
    from ups.models.diffusion import SampleNoise


@runtime_checkable
class LatentForecaster(Protocol):
    """What TTC and evaluation need from a latent surrogate."""

    def encode(self, context: torch.Tensor) -> torch.Tensor:
        """(B, Tc, X) most recent frames → latent state (B, N, D)."""

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """Deterministic latent operator step: (B, N, D) → (B, N, D)."""

    def sample_next(self, z: torch.Tensor, k: int, generator: torch.Generator | SampleNoise | None = None,
                    steps: int = 1, noise_scale: float = 1.0) -> torch.Tensor:
        """K stochastic next states (operator + sampled diffusion residual): (B, N, D) → (B, K, N, D). A
        ``SampleNoise`` generator describes which sample each row of ``z`` is (``rows``)."""

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latent state (B, N, D) → field on the model's grid (B, X)."""
