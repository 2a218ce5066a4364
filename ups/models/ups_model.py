"""The Universal Physics Simulator model: encoder → latent operator (+ diffusion residual) → decoder.

Implements ``ups.models.interface.LatentForecaster``. Everything is set by the config sections
``latent``, ``encoder``, ``operator``, ``decoder``, ``diffusion`` (see ups/config.py).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ups.config import grid_size_from_config
from ups.models.decoder import FourierDecoder
from ups.models.diffusion import (ConsistencyModel, EDMDenoiser, ResidualDenoiser, SampleNoise, consistency_sample,
                                  edm_sample)
from ups.models.encoder import FieldEncoder
from ups.models.operator import LatentOperator


class UPSModel(nn.Module):
    """Latent forecaster. Shapes: B batch, Tc context frames, X grid, N tokens, D latent dim, K samples."""

    def __init__(self, cfg: Any, grid_size: int) -> None:
        super().__init__()
        N, D = int(cfg.latent.tokens), int(cfg.latent.dim)
        op, dec, dif = cfg.operator, cfg.decoder, cfg.diffusion
        if int(op.input_dim) != D or int(dif.latent_dim) != D:
            raise ValueError(f"model: operator.input_dim={op.input_dim} and diffusion.latent_dim={dif.latent_dim} "
                             f"must equal latent.dim={D}. Fix: leave them at their default (${{latent.dim}}).")
        self.grid_size, self.tokens, self.dim = int(grid_size), N, D
        self.context_frames = int(cfg.encoder.context_frames)
        self.encoder = FieldEncoder(self.grid_size, N, D, int(cfg.encoder.hidden_dim), self.context_frames)
        self.operator = LatentOperator(N, D, int(op.hidden_dim), list(op.depths), int(op.heads),
                                       int(op.group_size), float(op.mlp_ratio), float(op.drop_path))
        self.decoder = FourierDecoder(self.grid_size, N, D, int(dec.hidden_dim), list(dec.frequencies),
                                      int(dec.num_layers))
        self.sigma_min, self.sigma_max = float(dif.sigma_min), float(dif.sigma_max)
        self.sigma_data, self.sample_steps = float(dif.sigma_data), int(dif.sample_steps)
        self.diffusion = EDMDenoiser(ResidualDenoiser(N, D, int(dif.hidden_dim), int(dif.num_layers)), self.sigma_data)
        self.consistency = ConsistencyModel(copy.deepcopy(self.diffusion.net), self.sigma_data, self.sigma_min)
        # scale of operator residuals in latent space (set by the diffusion stage); 0 = no residual trained
        self.register_buffer("residual_std", torch.zeros(()))
        self.register_buffer("distilled", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------ LatentForecaster
    def encode(self, context: torch.Tensor) -> torch.Tensor:
        """(B, Tc, X) → (B, N, D)."""
        return self.encoder(context)

    def step(self, z: torch.Tensor) -> torch.Tensor:
        """(B, N, D) → (B, N, D)."""
        return self.operator(z)

    def decode(self, z: torch.Tensor, grid_size: int | None = None) -> torch.Tensor:
        """(B, N, D) → (B, X)."""
        return self.decoder(z, grid_size)

    def sample_residual(self, base: torch.Tensor, generator: torch.Generator | SampleNoise | None = None, steps: int = 1,
                        noise_scale: float = 1.0, teacher: bool = False) -> torch.Tensor:
        """Residual samples (B, N, D) in latent units for operator predictions ``base`` (B, N, D)."""
        if float(self.residual_std) <= 0:
            return torch.zeros_like(base)
        cond = base  # the residual is conditioned on the operator prediction
        if teacher or not bool(self.distilled):
            r = edm_sample(self.diffusion, cond, max(steps, self.sample_steps), self.sigma_min,
                           self.sigma_max, generator, noise_scale)
        else:
            r = consistency_sample(self.consistency, cond, steps, self.sigma_min, self.sigma_max, generator,
                                   noise_scale)
        return r * self.residual_std

    def sample_next(self, z: torch.Tensor, k: int, generator: torch.Generator | SampleNoise | None = None,
                    steps: int = 1, noise_scale: float = 1.0) -> torch.Tensor:
        """K stochastic next states: (B, N, D) → (B, K, N, D) = step(z) + distilled residual samples."""
        B, N, D = z.shape
        base = self.step(z)  # (B, N, D)
        rep = base[:, None].expand(B, k, N, D).reshape(B * k, N, D)  # (B·K, N, D)
        r = self.sample_residual(rep, generator, steps, noise_scale)  # (B·K, N, D)
        return (rep + r).reshape(B, k, N, D)

    def rollout(self, context: torch.Tensor, n_steps: int, ttc_cfg: Any = None,
                generator: torch.Generator | SampleNoise | None = None) -> torch.Tensor:
        """Autoregressive forecast from context (B, Tc, X) → (B, n_steps, X).

        Deterministic operator rollout; with an enabled ``ttc_cfg`` the search in ``ups.ttc`` is used.
        """
        if ttc_cfg is not None and bool(getattr(ttc_cfg, "enabled", False)):
            from ups import ttc  # lazy: TTC lives in its own module

            return ttc.ttc_rollout(self, context, n_steps, ttc_cfg, generator=generator)
        z = self.encode(context)  # (B, N, D)
        frames = []
        for _ in range(n_steps):
            z = self.step(z)
            frames.append(self.decode(z, context.shape[-1]))
        return torch.stack(frames, dim=1)  # (B, n_steps, X)


def build_model(cfg: Any, grid_size: int | None = None) -> UPSModel:
    """Build the UPS model from a config; ``grid_size`` defaults to the protocol grid of ``cfg.data``."""
    return UPSModel(cfg, grid_size if grid_size is not None else grid_size_from_config(cfg))


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Parameters of the inference model (the consistency student counts, its copy of the teacher does too)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: UPSModel) -> dict[str, int]:
    return {name: sum(p.numel() for p in getattr(model, name).parameters())
            for name in ("encoder", "operator", "decoder", "diffusion", "consistency")}
