"""Honest test-time conditioning (TTC): reward-guided beam search over latent forecasts.

Works on any :class:`ups.models.interface.LatentForecaster` (encode / step / sample_next / decode);
it never imports the model code or the data, and it never sees a target trajectory: the only
inputs are the context frames, the model and ``cfg.ttc``. Rewards come from ``ups.rewards``
(context summary + known physics).

Algorithm, per forecast step and vectorised over the batch:

1. Every live beam ``w`` proposes candidate 0 = the deterministic operator step ``step(z_w)``.
   Each candidate is scored by rolling it ``h`` steps ahead with the deterministic operator,
   decoding every look-ahead state and summing ``γ^j · penalty(frame_j | frame_{j-1})``.
2. Gate (``ttc.threshold``): a sample is searched only when the look-ahead penalty of the best
   beam's deterministic candidate exceeds the threshold. Otherwise all its beams advance with
   candidate 0 (no stochastic candidates are drawn for it; nothing is spent on it).
3. For gated samples every beam draws ``k-1`` more candidates with ``sample_next`` (``ttc.steps``
   sampler steps of the distilled residual, ``ttc.noise_scale``), scored the same way.
4. Keep the ``w`` candidates with the lowest ``committed penalty + look-ahead penalty``.
5. After the last step, return the beam with the lowest committed (undiscounted) penalty — unless
   the plain deterministic rollout, tracked alongside, has a lower one; then return that. Hence TTC
   never does worse than its deterministic candidate on its own reward.

Budget (``ttc.max_evaluations``): counted per sample and per forecast step as decoded frames that
get a reward (``w·k·h`` for the search + 1 for the deterministic reference rollout). ``plan_budget``
shrinks the search to fit, giving priority to candidates, then beam width, then horizon.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ups.config import ConfigError
from ups.models.interface import LatentForecaster
from ups.rewards import ContextPhysics, RewardWeights, frame_penalty, trajectory_penalty

if TYPE_CHECKING:  # TTC works on any LatentForecaster: no import of the model code at run time
    from ups.models.diffusion import SampleNoise


@dataclass(frozen=True)
class SearchBudget:
    candidates: int  # k per beam, candidate 0 deterministic
    beam_width: int  # w
    horizon: int  # h frames scored per candidate (the candidate itself + h-1 deterministic steps)

    @property
    def evaluations_per_step(self) -> int:
        return self.beam_width * self.candidates * self.horizon + 1


@dataclass(frozen=True)
class TTCSettings:
    """Validated ``cfg.ttc``."""

    enabled: bool
    budget: SearchBudget
    threshold: float
    steps: int
    gamma: float
    noise_scale: float
    weights: RewardWeights

    @classmethod
    def from_cfg(cls, ttc_cfg: Any) -> "TTCSettings":
        def num(key: str, ok: bool, fix: str) -> None:
            if not ok:
                raise ConfigError(f"ttc.{key} = {getattr(ttc_cfg, key)!r} is invalid. Fix: {fix}")

        for key in ("candidates", "beam_width", "horizon", "steps", "max_evaluations"):
            num(key, int(getattr(ttc_cfg, key)) >= 1, f"use an integer ≥ 1 for ttc.{key}")
        num("gamma", 0.0 < float(ttc_cfg.gamma) <= 1.0, "use a discount in (0, 1], e.g. ttc.gamma=1.0")
        num("threshold", math.isfinite(float(ttc_cfg.threshold)) and float(ttc_cfg.threshold) >= 0,
            "use a penalty threshold ≥ 0 (0 = search whenever the deterministic step is imperfect)")
        num("noise_scale", float(ttc_cfg.noise_scale) >= 0, "use a noise scale ≥ 0, e.g. 1.0")
        try:
            weights = RewardWeights.from_cfg(ttc_cfg.weights)
        except ValueError as e:
            raise ConfigError(f"{e}. Fix: use non-negative weights mass, energy, bc, smoothness") from None
        return cls(
            enabled=bool(ttc_cfg.enabled),
            budget=plan_budget(int(ttc_cfg.candidates), int(ttc_cfg.beam_width), int(ttc_cfg.horizon),
                               int(ttc_cfg.max_evaluations)),
            threshold=float(ttc_cfg.threshold),
            steps=int(ttc_cfg.steps),
            gamma=float(ttc_cfg.gamma),
            noise_scale=float(ttc_cfg.noise_scale),
            weights=weights,
        )


def plan_budget(candidates: int, beam_width: int, horizon: int, max_evaluations: int) -> SearchBudget:
    """Largest search with ``w·k·h + 1 ≤ max_evaluations`` (priority: k, then w, then h)."""
    avail = max(1, max_evaluations - 1)  # one decode per step for the deterministic reference
    k = max(1, min(candidates, avail))
    w = max(1, min(beam_width, avail // k))
    h = max(1, min(horizon, avail // (k * w)))
    return SearchBudget(candidates=k, beam_width=w, horizon=h)


@dataclass
class TTCResult:
    frames: torch.Tensor  # (B, T, X) TTC forecast (T = n_steps)
    penalty: torch.Tensor  # (B,) committed penalty of `frames` (undiscounted)
    det_frames: torch.Tensor  # (B, T, X) deterministic rollout
    det_penalty: torch.Tensor  # (B,) its committed penalty
    chosen: torch.Tensor  # (B, T) candidate index taken at each step by the returned path (0 = det)
    searched: torch.Tensor  # (B, T) bool: the gate opened at this step
    used_search: torch.Tensor  # (B,) bool: the returned path came from the search (not the fallback)
    evaluations: int  # decoded frames scored, all samples and steps
    budget: SearchBudget
    seconds: float

    @property
    def interventions(self) -> int:
        return int(self.searched.sum())


def deterministic_rollout(model: LatentForecaster, context: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Encode once, step the latent operator, decode: (B, Tc, X) → (B, n_steps, X)."""
    z = model.encode(context)  # (B, N, D)
    out = []
    for _ in range(n_steps):
        z = model.step(z)  # (B, N, D)
        out.append(model.decode(z))  # (B, X)
    return torch.stack(out, dim=1)  # (B, T, X)


def _score(model: LatentForecaster, z: torch.Tensor, prev: torch.Tensor, ref: ContextPhysics,
           weights: RewardWeights, gamma: float, horizon: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Look-ahead score of candidate states ``z`` (M, N, D) after frames ``prev`` (M, X).

    Returns (look-ahead penalty (M,), the candidate's own frame (M, X), its own penalty (M,)).
    """
    look = torch.zeros(z.shape[0], dtype=torch.float64, device=z.device)
    frame0 = pen0 = None
    p = prev
    for j in range(horizon):
        if j:
            z = model.step(z)  # (M, N, D)
        u = model.decode(z)  # (M, X)
        pen = frame_penalty(u, p, ref, weights)  # (M,)
        look = look + gamma**j * pen
        if j == 0:
            frame0, pen0 = u, pen
        p = u
    assert frame0 is not None and pen0 is not None
    return look, frame0, pen0


def ttc_rollout(model: LatentForecaster, context: torch.Tensor, n_steps: int, ttc_cfg: Any, *,
                generator: torch.Generator | SampleNoise | None = None) -> torch.Tensor:
    """TTC forecast only: (B, Tc, X) → (B, n_steps, X) (see :func:`ttc_search`)."""
    return ttc_search(model, context, n_steps, ttc_cfg, generator=generator).frames


@torch.no_grad()
def ttc_search(model: LatentForecaster, context: torch.Tensor, n_steps: int, ttc_cfg: Any, *,
               generator: torch.Generator | SampleNoise | None = None) -> TTCResult:
    """Forecast ``n_steps`` frames from ``context`` (B, Tc, X) with reward-guided beam search.

    ``ttc_cfg`` is ``cfg.ttc``. There is deliberately no argument for a target trajectory.
    An ``nn.Module`` runs in eval mode for the search (stochastic depth would make the
    "deterministic" candidate random) and gets its mode back afterwards.
    """
    s = TTCSettings.from_cfg(ttc_cfg)
    if n_steps < 1:
        raise ValueError(f"ttc_search: n_steps = {n_steps}; need at least one step to forecast")
    was_training = isinstance(model, torch.nn.Module) and model.training
    if was_training:
        model.eval()  # type: ignore[union-attr]
    try:
        return _search(model, context, n_steps, s, generator)
    finally:
        if was_training:
            model.train()  # type: ignore[union-attr]


def _search(model: LatentForecaster, context: torch.Tensor, n_steps: int, s: TTCSettings,
            generator: torch.Generator | SampleNoise | None) -> TTCResult:
    t0 = time.perf_counter()
    ref = ContextPhysics.from_context(context)
    bsz = context.shape[0]
    dev = context.device
    k, w, h = s.budget.candidates, s.budget.beam_width, s.budget.horizon
    if not s.enabled:
        k, w, h = 1, 1, 1

    z0 = model.encode(context)  # (B, N, D)
    lat = z0.shape[1:]  # (N, D)
    x_size = context.shape[-1]
    inf = torch.tensor(float("inf"), dtype=torch.float64, device=dev)

    beams = z0[:, None].expand(bsz, w, *lat).clone()  # (B, W, N, D)
    cum = torch.full((bsz, w), float("inf"), dtype=torch.float64, device=dev)  # (B, W)
    cum[:, 0] = 0.0  # only one live beam at the start
    prev = ref.last[:, None].expand(bsz, w, x_size).clone()  # (B, W, X)
    hist = torch.zeros(bsz, w, 0, x_size, dtype=torch.float64, device=dev)  # (B, W, t, X)
    picks = torch.zeros(bsz, w, 0, dtype=torch.long, device=dev)  # (B, W, t)
    searched = torch.zeros(bsz, n_steps, dtype=torch.bool, device=dev)
    rows_bw = torch.arange(bsz, device=dev).repeat_interleave(w)  # (B·W,)
    ref_bw = ref.select(rows_bw)
    evaluations = 0

    det_z = z0
    det_frames = []

    for t in range(n_steps):
        # deterministic reference rollout (also the fallback)
        det_z = model.step(det_z)  # (B, N, D)
        det_frames.append(model.decode(det_z))  # (B, X)
        evaluations += bsz

        # candidate 0 of every beam: the deterministic step
        z_det = model.step(beams.reshape(bsz * w, *lat))  # (B·W, N, D)
        look0, f0, p0 = _score(model, z_det, prev.reshape(bsz * w, x_size), ref_bw, s.weights, s.gamma, h)
        evaluations += bsz * w * h
        cand_z = z_det.reshape(bsz, w, 1, *lat)  # (B, W, 1, N, D)
        look = look0.reshape(bsz, w, 1)  # (B, W, 1)
        frames = f0.to(torch.float64).reshape(bsz, w, 1, x_size)  # (B, W, 1, X)
        pens = p0.reshape(bsz, w, 1)  # (B, W, 1)

        gate = look[:, 0, 0] > s.threshold if k > 1 else torch.zeros(bsz, dtype=torch.bool, device=dev)
        searched[:, t] = gate
        if k > 1:
            look = torch.cat([look, inf.expand(bsz, w, k - 1)], dim=2)  # (B, W, K)
            pens = torch.cat([pens, inf.expand(bsz, w, k - 1)], dim=2)
            frames = torch.cat([frames, frames.new_zeros(bsz, w, k - 1, x_size)], dim=2)
            cand_z = torch.cat([cand_z, cand_z.new_zeros(bsz, w, k - 1, *lat)], dim=2)
            idx = gate.nonzero().squeeze(1)  # (G,)
            if idx.numel():
                g = idx.numel()
                noise = generator.rows(idx.repeat_interleave(w)) if hasattr(generator, "rows") else generator
                zs = model.sample_next(beams[idx].reshape(g * w, *lat), k - 1, generator=noise,
                                       steps=s.steps, noise_scale=s.noise_scale)  # (G·W, K-1, N, D)
                rows = idx.repeat_interleave(w * (k - 1))  # (G·W·(K-1),)
                prev_s = prev[idx].unsqueeze(2).expand(g, w, k - 1, x_size).reshape(-1, x_size)
                ls, fs, ps = _score(model, zs.reshape(-1, *lat), prev_s, ref.select(rows),
                                    s.weights, s.gamma, h)
                evaluations += g * w * (k - 1) * h
                look[idx, :, 1:] = ls.reshape(g, w, k - 1)
                pens[idx, :, 1:] = ps.reshape(g, w, k - 1)
                frames[idx, :, 1:] = fs.to(torch.float64).reshape(g, w, k - 1, x_size)
                cand_z[idx, :, 1:] = zs.reshape(g, w, k - 1, *lat).to(cand_z.dtype)

        kk = look.shape[2]
        key = (cum[:, :, None] + look).reshape(bsz, w * kk)  # (B, W·K); dead beams are inf
        top = torch.topk(key, w, dim=1, largest=False, sorted=True).indices  # (B, W) best first
        parent, cand = top // kk, top % kk  # (B, W)
        bi = torch.arange(bsz, device=dev)[:, None]  # (B, 1)
        alive = torch.isfinite(key.gather(1, top))  # (B, W)
        cum = torch.where(alive, cum[bi, parent] + pens[bi, parent, cand], inf)
        beams = cand_z[bi, parent, cand]  # (B, W, N, D)
        prev = frames[bi, parent, cand]  # (B, W, X)
        hist = torch.cat([hist[bi, parent], prev[:, :, None]], dim=2)  # (B, W, t+1, X)
        picks = torch.cat([picks[bi, parent], cand[:, :, None]], dim=2)  # (B, W, t+1)

    det = torch.stack(det_frames, dim=1)  # (B, T, X)
    det_pen = trajectory_penalty(det, ref, s.weights)  # (B,)
    best = cum.argmin(dim=1)  # (B,)
    ar = torch.arange(bsz, device=dev)
    search_frames = hist[ar, best]  # (B, T, X)
    search_pen = trajectory_penalty(search_frames, ref, s.weights)  # (B,) recomputed, same reward
    best_picks = picks[ar, best]  # (B, T)
    # an all-deterministic path is the reference rollout itself: return it bit-for-bit
    use_search = (search_pen <= det_pen) & (best_picks != 0).any(dim=1)
    out = torch.where(use_search[:, None, None], search_frames, det.to(torch.float64))
    chosen = torch.where(use_search[:, None], best_picks, torch.zeros_like(best_picks))
    return TTCResult(
        frames=out.to(context.dtype),
        penalty=torch.where(use_search, search_pen, det_pen),
        det_frames=det,
        det_penalty=det_pen,
        chosen=chosen,
        searched=searched,
        used_search=use_search,
        evaluations=evaluations,
        budget=SearchBudget(k, w, h),
        seconds=time.perf_counter() - t0,
    )
