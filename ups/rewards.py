"""Ground-truth-free physics rewards for test-time conditioning (TTC).

Honesty by construction
-----------------------
Every reward here is a function of (a) candidate frames the model produced, (b) the frame just
before them, and (c) a :class:`ContextPhysics` summary. ``ContextPhysics.from_context(context)``
reduces the *observed* context frames ``(B, Tc, X)`` to a few per-sample scalars plus the last
observed frame; it stores no future frame, and no function in this module has a parameter through
which a target trajectory could enter. TTC (``ups/ttc.py``) builds the summary from the input
frames only, so perturbing the target cannot change what TTC picks (tests/test_ttc.py checks it).

Physics used (1D viscous Burgers, periodic on [0, 1), PDEBench convention):

* mass ``∫u dx`` is conserved exactly → penalise drift from the context's mass;
* energy ``½∫u² dx`` never grows (viscosity dissipates, the flux term is conservative) →
  penalise growth over the previous frame;
* the domain is periodic, so the wrap-around is not special, and entropy solutions of Burgers never
  gain total variation (TVD: shocks move, merge and decay, they do not appear from nothing) → penalise
  variation at the seam that is new total variation since the previous frame. A shock that crosses
  the seam moves variation there and scores 0; a jump that appears at the seam adds variation. (Until
  2026-12-05 this term compared the seam's third differences with the roughest interior spot: true
  ν=0.001 frames whose shock sat on the seam scored up to 1.78; ``benchmarks/seam_reward.py``.)
* viscosity damps high wavenumbers → penalise spectral-tail energy above the context's largest
  tail energy (smoothness).

All penalties are ≥ 0, are 0 for a physically consistent frame, and are in relative units (like
nRMSE): mass and BC in units of the context's RMS, energy as a relative growth, smoothness as the
RMS amplitude of the excess tail relative to the context's RMS. ``reward = -penalty``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import Any, Mapping

import torch

_EPS = 1e-12


@dataclass(frozen=True)
class RewardWeights:
    """Weights of the four penalty terms (``cfg.ttc.weights``)."""

    mass: float = 1.0
    energy: float = 1.0
    bc: float = 1.0
    smoothness: float = 0.1

    @classmethod
    def from_cfg(cls, weights: Any) -> "RewardWeights":
        """From ``cfg.ttc.weights`` (DictConfig / dataclass / mapping); unknown keys fail."""
        if isinstance(weights, RewardWeights):
            return weights
        names = [f.name for f in fields(cls)]
        if isinstance(weights, Mapping) or hasattr(weights, "keys"):
            items = {str(k): weights[k] for k in weights.keys()}
        else:
            items = {n: getattr(weights, n) for n in names}
        unknown = sorted(set(items) - set(names))
        if unknown:
            raise ValueError(f"ttc.weights: unknown reward weight(s) {unknown}; valid: {names}")
        out = cls(**{k: float(v) for k, v in items.items()})
        for n in names:
            v = getattr(out, n)
            if not math.isfinite(v) or v < 0:
                raise ValueError(f"ttc.weights.{n} = {v} must be a finite number ≥ 0")
        return out


@dataclass(frozen=True)
class ContextPhysics:
    """What a reward may know: per-sample summaries of the observed context frames. (B = batch)"""

    last: torch.Tensor  # (B, X) last observed frame (the "previous frame" of the first forecast)
    mass: torch.Tensor  # (B,) ∫u dx of the last observed frame
    energy: torch.Tensor  # (B,) ½∫u² dx of the last observed frame
    scale: torch.Tensor  # (B,) RMS of the last observed frame (normaliser)
    tail: torch.Tensor  # (B,) largest spectral-tail energy over the context frames
    cutoff: int  # first wavenumber counted in the tail

    @classmethod
    def from_context(cls, context: torch.Tensor, cutoff: int | None = None) -> "ContextPhysics":
        """Summarise the observed frames ``context`` (B, Tc, X); nothing else goes in."""
        if context.dim() != 3 or context.shape[1] < 1 or context.shape[2] < 4:
            raise ValueError(
                f"ContextPhysics.from_context: expected context frames (B, Tc, X) with Tc ≥ 1 and "
                f"X ≥ 4, got shape {tuple(context.shape)}")
        ctx = context.detach().to(torch.float64)  # (B, Tc, X)
        x_size = ctx.shape[-1]
        k_c = int(cutoff) if cutoff is not None else default_cutoff(x_size)
        last = ctx[:, -1]  # (B, X)
        rms = last.pow(2).mean(-1).sqrt()  # (B,)
        return cls(
            last=last,
            mass=mass(last),
            energy=energy(last),
            scale=rms.clamp_min(1e-6),
            tail=tail_energy(ctx, k_c).amax(dim=1),  # (B,)
            cutoff=k_c,
        )

    def select(self, rows: torch.Tensor) -> "ContextPhysics":
        """Rows ``rows`` (M,) of the batch, e.g. to score B·W·K flattened candidates."""
        return ContextPhysics(self.last[rows], self.mass[rows], self.energy[rows],
                              self.scale[rows], self.tail[rows], self.cutoff)


def default_cutoff(x_size: int) -> int:
    """Tail starts at a quarter of the grid's wavenumbers (k ≥ X/4 of the X/2 resolved)."""
    return max(1, x_size // 4)


# ----------------------------------------------------------------------------- field functionals
def mass(u: torch.Tensor) -> torch.Tensor:
    """∫u dx on the unit periodic cell: (..., X) → (...)."""
    return u.mean(-1)


def energy(u: torch.Tensor) -> torch.Tensor:
    """½∫u² dx on the unit periodic cell: (..., X) → (...)."""
    return 0.5 * u.pow(2).mean(-1)


def tail_energy(u: torch.Tensor, cutoff: int) -> torch.Tensor:
    """½∫ of the part of u with wavenumber ≥ cutoff (Parseval): (..., X) → (...)."""
    x_size = u.shape[-1]
    uh = torch.fft.rfft(u, dim=-1)  # (..., X//2+1)
    power = uh.real.pow(2) + uh.imag.pow(2)  # (..., X//2+1)
    w = torch.full((power.shape[-1],), 2.0, dtype=power.dtype, device=power.device)
    w[0] = 1.0
    if x_size % 2 == 0:
        w[-1] = 1.0  # Nyquist mode appears once
    w[: min(cutoff, power.shape[-1])] = 0.0
    return 0.5 * (power * w).sum(-1) / x_size**2


def total_variation(u: torch.Tensor) -> torch.Tensor:
    """Σ_i |u_i − u_{i−1}| around the periodic cell, the wrap pair included: (..., X) → (...)."""
    return (u - u.roll(1, -1)).abs().sum(-1)


def boundary_excess(u: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
    """Variation at the seam of ``u`` that the step from ``prev`` created: (..., X), (..., X) → (...) ≥ 0.

    ``min(seam variation of u, max(0, TV(u) − TV(prev)))``, the seam variation being |Δu| over the three
    pairs (x_{X−2}, x_{X−1}), (x_{X−1}, x_0), (x_0, x_1). A viscous Burgers solution's total
    variation never grows, so a physical frame scores 0 wherever its shocks are, on the seam
    included; a jump of size J that appears at the seam adds up to J of variation and scores up to
    J, less what viscosity removed elsewhere in the step. Variation that grows inside the domain
    (noise) is capped by the seam's own variation: the smoothness term sees that.
    """
    jumps = (u - u.roll(1, -1)).abs()  # (..., X): |u_i − u_{i−1}|, the wrap pair at i = 0
    grown = (jumps.sum(-1) - total_variation(prev)).clamp_min(0.0)  # (...)
    return torch.minimum(jumps[..., [-1, 0, 1]].sum(-1), grown)


# ------------------------------------------------------------------------------------ penalties
@dataclass(frozen=True)
class PenaltyTerms:
    """The four per-frame penalties, each (...,) ≥ 0."""

    mass: torch.Tensor
    energy: torch.Tensor
    bc: torch.Tensor
    smoothness: torch.Tensor

    def total(self, weights: RewardWeights) -> torch.Tensor:
        return (weights.mass * self.mass + weights.energy * self.energy
                + weights.bc * self.bc + weights.smoothness * self.smoothness)


def frame_penalties(frame: torch.Tensor, prev: torch.Tensor, ref: ContextPhysics) -> PenaltyTerms:
    """Penalties of candidate frames ``frame`` (M, X) following ``prev`` (M, X); ``ref`` has M rows.

    Callers flatten candidates to M rows and ``ref.select`` the matching batch rows.
    """
    if frame.shape != prev.shape or frame.dim() != 2 or ref.mass.shape[0] != frame.shape[0]:
        raise ValueError(f"frame_penalties: frame {tuple(frame.shape)}, prev {tuple(prev.shape)} "
                         f"and ref rows {ref.mass.shape[0]} must agree as (M, X)")
    f = frame.to(torch.float64)  # (M, X)
    p = prev.to(torch.float64)  # (M, X)
    e_prev = energy(p).clamp_min(_EPS)  # (M,)
    return PenaltyTerms(
        mass=(mass(f) - ref.mass).abs() / ref.scale,
        energy=(energy(f) - energy(p)).clamp_min(0.0) / e_prev,
        bc=boundary_excess(f, p) / ref.scale,
        smoothness=((tail_energy(f, ref.cutoff) - ref.tail).clamp_min(0.0)
                    / ref.energy.clamp_min(_EPS)).sqrt(),
    )


def frame_penalty(frame: torch.Tensor, prev: torch.Tensor, ref: ContextPhysics,
                  weights: RewardWeights) -> torch.Tensor:
    """Weighted penalty of (M, X) frames → (M,)."""
    return frame_penalties(frame, prev, ref).total(weights)


def trajectory_penalty(frames: torch.Tensor, ref: ContextPhysics, weights: RewardWeights,
                       gamma: float = 1.0) -> torch.Tensor:
    """Σ_t γ^t · penalty(frame_t | frame_{t-1}) for forecasts ``frames`` (B, T, X) → (B,).

    The frame before the first forecast is the last observed context frame (``ref.last``).
    """
    if frames.dim() != 3 or frames.shape[0] != ref.mass.shape[0]:
        raise ValueError(f"trajectory_penalty: expected forecasts (B, T, X) with B = "
                         f"{ref.mass.shape[0]}, got {tuple(frames.shape)}")
    prev = ref.last.to(torch.float64)  # (B, X)
    total = torch.zeros(frames.shape[0], dtype=torch.float64, device=frames.device)
    for t in range(frames.shape[1]):
        total = total + gamma**t * frame_penalty(frames[:, t], prev, ref, weights)
        prev = frames[:, t].to(torch.float64)
    return total
