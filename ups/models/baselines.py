"""Reference forecasters on the PDEBench protocol: persistence, a linear Fourier map, FNO1d.

All three map the ``initial_step`` context frames ``(B, Ti, X)`` to an autoregressive rollout
``(B, n_steps, X)``; ``ups.baselines.run_baselines`` scores them with ``ups.metrics``.

Linear map — why Fourier space: periodic viscous Burgers and PDEBench's initial conditions (uniform
random phases) are invariant under translation, so the covariances of consecutive frames are
circulant and the least-squares *full* linear map (X×X per lag) is itself circulant, i.e. diagonal
in Fourier space.  Fitting one complex coefficient per wavenumber and lag therefore targets the
same optimum with X/2+1 instead of X² parameters per lag: it cannot overfit a few hundred
trajectories, is exactly translation-equivariant, is solved in closed form (deterministic) and the
rollout's stability is visible mode by mode.  Ridge regularisation (relative to each mode's
energy) keeps near-empty high modes from being fitted to round-off.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ups.models.fno import FNO1d, fno_rollout

__all__ = [
    "persistence_rollout",
    "LinearFourierMap",
    "fit_linear_fourier",
    "FNOTrainResult",
    "train_fno",
]


def _check_series(name: str, u: torch.Tensor, min_t: int) -> None:
    if not isinstance(u, torch.Tensor) or u.ndim != 3:
        shape = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
        raise ValueError(f"baselines: '{name}' must be a tensor (N, T, X), got {shape}")
    if u.shape[1] < min_t:
        raise ValueError(f"baselines: '{name}' has {u.shape[1]} frames; at least {min_t} are needed "
                         "(initial_step context frames + 1 target). Fix: lower data.initial_step or use longer data.")
    if u.shape[0] < 1:
        raise ValueError(f"baselines: '{name}' has no trajectories. Fix: raise data.n")
    if not bool(torch.isfinite(u).all()):
        raise ValueError(f"baselines: '{name}' contains NaN/Inf values. Fix: regenerate or clean the data file.")


# ---------------------------------------------------------------------------------- persistence
def persistence_rollout(context: torch.Tensor, n_steps: int) -> torch.Tensor:
    """Repeat the last context frame: (B, Ti, X) → (B, n_steps, X)."""
    return context[:, -1:].expand(-1, n_steps, -1).clone()  # (B, n_steps, X)


# ---------------------------------------------------------------------------------- linear
@dataclass
class LinearFourierMap:
    """û_{t+1}(k) = Σ_l c_l(k) û_{t-l}(k): one complex coefficient per wavenumber k and lag l."""

    coef: torch.Tensor  # (L, K) complex128, lag 0 = most recent frame
    n_x: int

    @property
    def lags(self) -> int:
        return int(self.coef.shape[0])

    @property
    def num_parameters(self) -> int:
        return 2 * self.coef.numel()  # real + imaginary parts

    def step(self, window: torch.Tensor) -> torch.Tensor:
        """(B, L, X) most recent L frames (oldest first) → next frame (B, X)."""
        w_ft = torch.fft.rfft(window.to(torch.float64), dim=-1).flip(1)  # (B, L, K), lag 0 first
        nxt = (w_ft * self.coef[None]).sum(dim=1)  # (B, K)
        return torch.fft.irfft(nxt, n=self.n_x, dim=-1)  # (B, X)

    def rollout(self, context: torch.Tensor, n_steps: int) -> torch.Tensor:
        """(B, Ti, X) → (B, n_steps, X) in the context's dtype."""
        if context.shape[1] < self.lags or context.shape[-1] != self.n_x:
            raise ValueError(f"LinearFourierMap: context {tuple(context.shape)} needs ≥ {self.lags} frames "
                             f"of {self.n_x} points")
        window = context[:, -self.lags:].to(torch.float64)  # (B, L, X)
        frames = []
        for _ in range(n_steps):
            nxt = self.step(window)  # (B, X)
            frames.append(nxt)
            window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)  # (B, L, X)
        return torch.stack(frames, dim=1).to(context.dtype)  # (B, n_steps, X)


def fit_linear_fourier(train: torch.Tensor, lags: int = 1, ridge: float = 1e-6) -> LinearFourierMap:
    """Ridge least squares of frame t+1 on frames t, …, t-lags+1, per Fourier mode, on all
    consecutive windows of the training trajectories (N, T, X)."""
    _check_series("train", train, lags + 1)
    if lags < 1:
        raise ValueError(f"fit_linear_fourier: lags={lags} must be ≥ 1")
    if ridge < 0:
        raise ValueError(f"fit_linear_fourier: ridge={ridge} must be ≥ 0")
    n, t, x = train.shape
    u_ft = torch.fft.rfft(train.to(torch.float64), dim=-1)  # (N, T, K)
    k = u_ft.shape[-1]
    # design: F[n, s, l, k] = û_{s+lags-1-l}(k); target Y[n, s, k] = û_{s+lags}(k)
    feats = torch.stack([u_ft[:, lags - 1 - l: t - 1 - l] for l in range(lags)], dim=2)  # (N, S, L, K)
    target = u_ft[:, lags:]  # (N, S, K)
    feats = feats.permute(3, 0, 1, 2).reshape(k, -1, lags)  # (K, N·S, L)
    target = target.permute(2, 0, 1).reshape(k, -1, 1)  # (K, N·S, 1)
    gram = feats.mH @ feats  # (K, L, L)
    rhs = feats.mH @ target  # (K, L, 1)
    energy = gram.diagonal(dim1=-2, dim2=-1).real.mean(dim=-1)  # (K,) per-mode energy
    # relative ridge, plus a floor at 1e-10 of the strongest mode so that empty modes (round-off
    # only, e.g. Nyquist) get a zero coefficient instead of a ratio of round-off errors
    damp = ridge * energy + 1e-10 * energy.max().clamp_min(1e-300)  # (K,)
    eye = torch.eye(lags, dtype=gram.dtype)
    coef = torch.linalg.solve(gram + damp[:, None, None] * eye, rhs)  # (K, L, 1)
    return LinearFourierMap(coef=coef[..., 0].T.contiguous(), n_x=x)


# ---------------------------------------------------------------------------------- FNO
@dataclass
class FNOTrainResult:
    model: FNO1d  # the weights with the best validation rollout nRMSE (the last ones without val)
    steps: int
    epochs: float
    train_s: float
    final_loss: float
    losses: list[float] = field(default_factory=list)  # mean rollout loss per completed epoch
    best_step: int = 0  # optimiser step of the returned weights
    val_nrmse: float | None = None  # their validation rollout nRMSE
    diverged: bool = False  # training loss became NaN/Inf (stopped early)


def _rollout_nrmse(model: FNO1d, series: torch.Tensor, grid: torch.Tensor, initial_step: int,
                   batch: int = 256) -> float:
    """PDEBench nRMSE of the model's rollout over the frames after the context (no grad)."""
    from ups.metrics import nrmse

    preds = []
    with torch.no_grad():
        for i in range(0, series.shape[0], batch):
            s = series[i: i + batch]
            preds.append(fno_rollout(model, s[:, :initial_step], s.shape[1] - initial_step, grid))
    pred = torch.cat([series[:, :initial_step], torch.cat(preds, dim=0)], dim=1)  # (N, T, X)
    return nrmse(pred, series, initial_step)


def train_fno(
    train: torch.Tensor,
    grid: torch.Tensor,
    initial_step: int,
    *,
    budget_s: float,
    seed: int,
    max_steps: int | None = None,
    val: torch.Tensor | None = None,
    batch_size: int = 50,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    modes: int = 12,
    width: int = 20,
    rollout_steps: int | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> FNOTrainResult:
    """Train PDEBench's FNO1d with its autoregressive rollout loss (sum over steps of the MSE of
    each predicted frame, full back-propagation through the rollout), Adam, StepLR(100 epochs, ½).

    Stops after ``budget_s`` seconds of wall clock or ``max_steps`` optimiser steps, whichever
    comes first (``budget_s <= 0`` with ``max_steps`` set: steps only).  With ``val`` (N, T, X)
    the rollout nRMSE on it is checked after every epoch and at the end, and the best weights are
    returned (rollout-loss training has loss spikes). PDEBench keeps its best checkpoint too, but
    picks it on the test split (``fno/train.py`` loads its validation loader with ``if_test=True``),
    so its published FNO figures are selected on the data they report; here ``val`` is a split of
    its own and the test split is scored once.  Given ``seed`` and a step count the result is bit-for-bit reproducible on
    CPU; a wall-clock budget fixes the step count only as fast as the machine allows, so
    ``steps`` is returned for the record.
    """
    _check_series("train", train, initial_step + 1)
    if val is not None and val.shape[0] == 0:
        val = None
    if val is not None:
        _check_series("val", val, initial_step + 1)
    if budget_s <= 0 and not max_steps:
        raise ValueError("train_fno: give a positive budget_s (seconds) or max_steps. "
                         "Fix: fno_budget_s=60")
    if grid.shape != (train.shape[-1],):
        raise ValueError(f"train_fno: grid {tuple(grid.shape)} does not match X={train.shape[-1]}")
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
        torch.manual_seed(seed)
        model = FNO1d(modes=modes, width=width, initial_step=initial_step)
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=100, gamma=0.5)  # per epoch, as PDEBench
    data = train.to(torch.float32)
    grid = grid.to(torch.float32)
    val_data = val.to(torch.float32) if val is not None else None
    n, t_len, _ = data.shape
    n_roll = t_len - initial_step if rollout_steps is None else min(rollout_steps, t_len - initial_step)
    bs = min(batch_size, n)
    steps_per_epoch = max(1, n // bs)
    deadline = time.perf_counter() + budget_s if budget_s > 0 else math.inf
    t0 = time.perf_counter()
    steps, losses, last = 0, [], math.nan
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    evaluated_at = -1
    diverged = stop = False

    def check_val() -> None:
        nonlocal best, evaluated_at
        if val_data is None or evaluated_at == steps:
            return
        evaluated_at = steps
        model.eval()
        score = _rollout_nrmse(model, val_data, grid, initial_step)
        model.train()
        if math.isfinite(score) and (best is None or score < best[0]):
            best = (score, steps, {k: v.detach().clone() for k, v in model.state_dict().items()})

    model.train()
    while not stop:
        perm = torch.randperm(n, generator=gen)
        epoch_losses = []
        for i in range(0, n - bs + 1, bs):  # drop the ragged last batch (stable step cost)
            batch = data[perm[i: i + bs]]  # (b, T, X)
            ctx = batch[:, :initial_step]  # (b, Ti, X)
            target = batch[:, initial_step: initial_step + n_roll]  # (b, n_roll, X)
            pred = fno_rollout(model, ctx, n_roll, grid)  # (b, n_roll, X)
            loss = ((pred - target) ** 2).mean(dim=(0, 2)).sum()  # Σ_t MSE_t (PDEBench)
            last = float(loss.detach())
            if not math.isfinite(last):
                diverged = stop = True
                break
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
            epoch_losses.append(last)
            if progress is not None:
                progress(steps, last)
            if (max_steps and steps >= max_steps) or time.perf_counter() >= deadline:
                stop = True
                break
        if len(epoch_losses) == steps_per_epoch:  # a completed epoch
            losses.append(sum(epoch_losses) / len(epoch_losses))
            sched.step()
            check_val()
    if not diverged:
        check_val()
    model.eval()
    best_step, val_score = steps, None
    if best is not None:
        val_score, best_step, state = best
        model.load_state_dict(state)
    return FNOTrainResult(model=model, steps=steps, epochs=steps / steps_per_epoch,
                          train_s=time.perf_counter() - t0, final_loss=last, losses=losses,
                          best_step=best_step, val_nrmse=val_score, diverged=diverged)
