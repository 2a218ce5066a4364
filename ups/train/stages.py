"""The training stages: what each trains, on which samples, with which loss.

Order: autoencoder (encoder + decoder on single frames) → latent cache → operator (latent rollout
loss, optional decoded-field and spectral terms) → diff_residual (EDM denoiser of the operator's
latent residual) → consistency_distill (few-step student of the EMA teacher).
Every loss draws its randomness (frames, noise levels, noise) from the stage's ``generator`` so an
epoch is reproducible from the generator state saved in the checkpoint.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F

from ups.models.diffusion import consistency_distill_loss, edm_loss, karras_sigmas
from ups.models.ups_model import UPSModel

STAGES: tuple[str, ...] = ("autoencoder", "operator", "diff_residual", "consistency_distill")


@dataclass
class StageContext:
    """What the losses need: the model, the training fields, the latent cache and config values."""

    model: UPSModel
    cfg: object
    train: torch.Tensor  # (M, T, X) float32 on device
    device: torch.device
    latents: torch.Tensor | None = None  # (M, T, N, D) in the cache dtype (None: re-encode each step)
    latent_var: float = 1.0
    field_var: float = 1.0
    extras: dict = field(default_factory=dict)

    def latent_window(self, idx: torch.Tensor, t0: torch.Tensor, length: int) -> torch.Tensor:
        """Latents of frames t0..t0+length-1 for trajectories idx → (B, length, N, D) float32."""
        offs = t0[:, None] + torch.arange(length, device=t0.device)  # (B, L)
        if self.latents is not None:
            dev = self.latents.device  # the training device (ups.train.trainer._prepare_latents)
            lat = self.latents[idx.to(dev)[:, None], offs.to(dev)]  # (B, L, N, D)
            return lat.to(self.device, torch.float32)
        windows = self.context_windows(idx, offs)  # (B, L, cf, X)
        B, L, cf, X = windows.shape
        with torch.no_grad():
            return self.model.encode(windows.reshape(B * L, cf, X)).reshape(B, L, *self.model_latent_shape)

    def context_windows(self, idx: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
        """The encoder's input for frames ``offs`` (B, L) of trajectories idx → (B, L, cf, X): its
        ``context_frames`` most recent frames, oldest first, frame 0 repeated before the start, as
        ``encode_trajectories`` (the latent cache) and inference give it (one frame repeated cf times before)."""
        cf = int(getattr(self.model, "context_frames", 1))
        back = offs[..., None] + torch.arange(1 - cf, 1, device=offs.device)  # (B, L, cf)
        dev = self.train.device
        return self.train[idx.to(dev)[:, None, None], back.clamp(min=0).to(dev)]  # (B, L, cf, X)

    @property
    def model_latent_shape(self) -> tuple[int, int]:
        return (self.model.tokens, self.model.dim)

    def field_window(self, idx: torch.Tensor, t0: torch.Tensor, length: int) -> torch.Tensor:
        offs = t0[:, None] + torch.arange(length, device=t0.device)  # (B, L)
        return self.train[idx.to(self.train.device)[:, None], offs.to(self.train.device)]  # (B, L, X)


def _starts(n: int, t_max: int, g: torch.Generator) -> torch.Tensor:
    return torch.randint(0, t_max + 1, (n,), generator=g)


# ------------------------------------------------------------------ autoencoder
def autoencoder_loss(ctx: StageContext, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One random frame per trajectory: relative MSE of decode(encode(u)) (+ spectral term)."""
    T = ctx.train.shape[1]
    windows = ctx.context_windows(idx, _starts(len(idx), T - 1, g)[:, None])[:, 0]  # (B, cf, X), the frame last
    u = windows[:, -1]  # (B, X)
    rec = ctx.model.decode(ctx.model.encode(windows))  # (B, X)
    loss = F.mse_loss(rec, u) / ctx.field_var
    lam = float(ctx.cfg.training.lambda_spectral)
    if lam > 0:
        loss = loss + lam * spectral_loss(rec, u)
    return loss


def spectral_loss(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Relative squared error of Fourier amplitudes: fields (..., X) → scalar."""
    fp, ft = torch.fft.rfft(pred, dim=-1).abs(), torch.fft.rfft(true, dim=-1).abs()
    return ((fp - ft) ** 2).sum(-1).mean() / (ft ** 2).sum(-1).mean().clamp_min(1e-12)


# ------------------------------------------------------------------ operator
def operator_loss(ctx: StageContext, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Latent rollout loss over ``training.rollout_horizon`` steps from a random start frame.

    Per-step latent MSE (relative to the cached latents' variance); the first step has weight 1,
    the later steps ``lambda_rollout`` each (weighted mean). ``lambda_field`` adds the same rollout
    loss on decoded fields against the true fields, ``lambda_spectral`` a Fourier-amplitude term.
    """
    tc = ctx.cfg.training
    H = int(tc.rollout_horizon)
    T = ctx.train.shape[1]
    H = min(H, T - 1)
    t0 = _starts(len(idx), T - 1 - H, g)
    z_true = ctx.latent_window(idx, t0, H + 1)  # (B, H+1, N, D)
    lam_r, lam_f, lam_s = float(tc.lambda_rollout), float(tc.lambda_field), float(tc.lambda_spectral)
    need_fields = lam_f > 0 or lam_s > 0
    u_true = ctx.field_window(idx, t0, H + 1) if need_fields else None  # (B, H+1, X)
    z = z_true[:, 0]  # (B, N, D)
    total, weight = z.new_zeros(()), 0.0
    for k in range(1, H + 1):
        z = ctx.model.step(z)  # (B, N, D)
        w = 1.0 if k == 1 else lam_r
        if w == 0:
            continue
        step_loss = F.mse_loss(z, z_true[:, k]) / ctx.latent_var
        if need_fields:
            u = ctx.model.decode(z)  # (B, X)
            if lam_f > 0:
                step_loss = step_loss + lam_f * F.mse_loss(u, u_true[:, k]) / ctx.field_var
            if lam_s > 0:
                step_loss = step_loss + lam_s * spectral_loss(u, u_true[:, k])
        total = total + w * step_loss
        weight += w
    return total / weight


# ------------------------------------------------------------------ diffusion residual
@torch.no_grad()
def residual_pairs(ctx: StageContext, idx: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(cond = step(z_t), residual z_{t+1} − step(z_t)) for random t: each (B, N, D)."""
    T = ctx.train.shape[1]
    z = ctx.latent_window(idx, _starts(len(idx), T - 2, g), 2)  # (B, 2, N, D)
    was = ctx.model.operator.training
    ctx.model.operator.eval()
    base = ctx.model.step(z[:, 0])
    ctx.model.operator.train(was)
    return base, z[:, 1] - base


@torch.no_grad()
def estimate_residual_std(ctx: StageContext, n: int, seed: int) -> float:
    g = torch.Generator().manual_seed(seed)
    M = ctx.train.shape[0]
    idx = torch.randperm(M, generator=g)[: max(1, min(M, n))]
    _, r = residual_pairs(ctx, idx, g)
    return float(r.float().std().clamp_min(1e-6))


def diffusion_loss(ctx: StageContext, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    m = ctx.model
    cond, r = residual_pairs(ctx, idx, g)
    return edm_loss(m.diffusion, r / m.residual_std, cond, m.sigma_min, m.sigma_max, generator=g)


# ------------------------------------------------------------------ consistency distillation
def distill_loss(ctx: StageContext, idx: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """CD loss on ``distill_micro_batch`` random adjacent noise-level pairs per sample."""
    m = ctx.model
    cond, r = residual_pairs(ctx, idx, g)
    reps = max(1, int(ctx.cfg.training.distill_micro_batch))
    cond, r = cond.repeat(reps, 1, 1), r.repeat(reps, 1, 1)  # (reps·B, N, D)
    sigmas = ctx.extras["distill_sigmas"]
    return consistency_distill_loss(m.consistency, ctx.extras["student_target"], m.diffusion,
                                    r / m.residual_std, cond, sigmas, generator=g)


def distill_sigmas(cfg: object) -> torch.Tensor:
    d = cfg.diffusion
    return karras_sigmas(max(2, int(cfg.training.distill_num_taus)), float(d.sigma_min), float(d.sigma_max))


LOSSES: dict[str, Callable[[StageContext, torch.Tensor, torch.Generator], torch.Tensor]] = {
    "autoencoder": autoencoder_loss,
    "operator": operator_loss,
    "diff_residual": diffusion_loss,
    "consistency_distill": distill_loss,
}


def stage_modules(model: UPSModel, stage: str) -> list[torch.nn.Module]:
    return {"autoencoder": [model.encoder, model.decoder], "operator": [model.operator],
            "diff_residual": [model.diffusion], "consistency_distill": [model.consistency]}[stage]
