"""Rollout metrics on the PDEBench protocol (torch only, no Ray).

Every function takes full trajectories ``(B, T, X)`` *including* the ``initial_step`` context
frames, the way PDEBench's evaluation loop builds ``pred`` (context copied from the truth, then the
autoregressive rollout appended).  Unless stated otherwise a metric looks only at the predicted
frames ``t >= initial_step``.

Definitions (all dimensionless, lower is better except ``rollout_horizon``):

``nrmse``
    PDEBench ``metric_func`` (pdebench/models/metrics.py, ``err_nMSE``): for each sample ``b`` and
    frame ``t`` ``sqrt(mean_x (pred-true)^2) / sqrt(mean_x true^2)``; mean over samples, then over
    the predicted frames.  This is our headline number.
``nrmse_pdebench``
    The number PDEBench's training scripts print: the same over *all* frames with the context
    copied from the truth, in the test loader's batches of 50 as the rest of the set below, i.e.
    ``nrmse * (T - initial_step) / T`` (× 31/41 on the protocol) when the split is ≤ 50 samples or a multiple of 50.
``conservation_gap``
    Mass drift: ``|mean_x pred_t - mean_x u_c| / rms_x(u_c)`` where ``u_c`` is the last context
    frame (periodic viscous Burgers conserves ``∫u dx`` exactly); mean over samples and predicted
    frames.  Normalised by the field's RMS because the mass itself can be close to zero.
``energy_violation``
    Growth of ``E = ½∫u² dx`` (which viscous Burgers can only dissipate): the sum over predicted
    transitions ``t-1 → t`` (starting from the last context frame) of ``relu(E_t - E_{t-1})``,
    divided by ``E`` of the last context frame; mean over samples.  0 when energy never grows.
``bc_violation``
    Periodic seam mismatch: quadratic extrapolation of the last three grid values one cell past the
    right end, ``3u[-1] - 3u[-2] + u[-3]``, should equal ``u[0]`` (and symmetrically from the left
    end to ``u[-1]``).  The mean absolute mismatch of both sides divided by ``rms_x(u)``; mean over
    samples and frames.  A smooth periodic field scores O(dx³) ≈ 0; a field with a jump at the
    seam scores O(1).
``rollout_horizon``
    Per sample, the number of predicted frames before the Pearson correlation (over x) between
    prediction and truth first drops below ``rho`` (0.8); mean over samples.  Equals
    ``T - initial_step`` when it never drops.  Higher is better.
``rmse_pdebench``, ``crmse_pdebench``, ``brmse_pdebench``, ``max_err_pdebench``, ``frmse_{low,mid,high}_pdebench``
    The rest of PDEBench's metric set (``pdebench_metric_set``), computed as ``metric_func`` computes them for
    the tables of the PDEBench paper: all frames with the context copied from the truth, over the test split
    in consecutive batches of 50 (``config_Bgs.yaml``'s ``batch_size``, the unshuffled validation loader),
    each batch's figure averaged over frames, then the batches averaged.  Per batch: RMSE is the mean over
    samples of ``sqrt(mean_x (pred-true)^2)``; cRMSE the RMS over samples of the error in ``mean_x u`` (the
    conserved mass); bRMSE the mean over samples of the RMS error at the two boundary points; Max the
    largest ``|pred-true|`` in the batch (so it depends on the batching, as PDEBench's does); fRMSE the RMS
    over samples of ``|rfft(pred-true)| / X`` per Fourier mode, averaged over modes 0–3 (low), 4–11 (mid) and
    12 up (high).
``ece``
    Expected calibration error of central prediction intervals from an ensemble ``(S, B, T, X)``.
    Each true value gets a randomised PIT ``(k + U) / (S + 1)``, ``k`` = #members below it,
    ``U ~ U(0,1)``; the truth lies in the central ``α`` interval when ``|PIT - ½| ≤ α/2``.  We use the
    exact expectation over ``U`` (no randomness), so a calibrated ensemble has expected coverage
    exactly ``α`` for any ``S``.  ECE = mean over levels ``α ∈ {0.1, …, 0.9}`` of
    ``|coverage(α) - α|`` over all predicted points.  0 is perfect.  An ensemble whose members all
    lie on one side of the truth scores just under 0.5 (0.37 for S=5, 0.49 for S=99): with S
    members, "below every member" is itself an event of probability 1/(S+1).
"""
from __future__ import annotations

from typing import Sequence

import torch

__all__ = [
    "ECE_LEVELS",
    "METRIC_KEYS",
    "nrmse",
    "nrmse_per_time",
    "nrmse_per_sample",
    "nrmse_pdebench",
    "conservation_gap",
    "energy_violation",
    "bc_violation",
    "correlation_per_time",
    "rollout_horizon",
    "ece",
    "interval_coverage",
    "rollout_metrics",
    "PDEBENCH_SET_KEYS",
    "pdebench_metric_set",
]

ECE_LEVELS: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
METRIC_KEYS: tuple[str, ...] = (
    "nrmse", "nrmse_pdebench", "conservation_gap", "energy_violation", "bc_violation", "rollout_horizon",
)
_EPS = 1e-12


# ------------------------------------------------------------------------------------- checks
def _check_traj(name: str, u: torch.Tensor) -> None:
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"metrics: '{name}' must be a torch.Tensor (B, T, X), got {type(u).__name__}")
    if u.ndim != 3:
        raise ValueError(f"metrics: '{name}' must have shape (B, T, X), got {tuple(u.shape)}. "
                         "Fix: add a batch dimension with u[None] for a single trajectory.")


def _check_pair(pred: torch.Tensor, true: torch.Tensor, initial_step: int) -> None:
    _check_traj("pred", pred)
    _check_traj("true", true)
    if pred.shape != true.shape:
        raise ValueError(f"metrics: pred {tuple(pred.shape)} and true {tuple(true.shape)} differ in shape. "
                         "Fix: pass full trajectories incl. the context frames for both.")
    _check_step(initial_step, pred.shape[1])


def _check_step(initial_step: int, t: int) -> None:
    if not 0 <= int(initial_step) < t:
        raise ValueError(f"metrics: initial_step={initial_step} must be in [0, T={t}). "
                         "Fix: use data.initial_step (10 on the PDEBench protocol) and full trajectories.")


def _f64(u: torch.Tensor) -> torch.Tensor:
    return u.detach().to(dtype=torch.float64, device="cpu")


# ------------------------------------------------------------------------------------- nRMSE
def _nrmse_bt(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """(B, T, X) × 2 → (B, T) PDEBench per-sample, per-frame normalised RMSE."""
    err = torch.sqrt(torch.mean((pred - true) ** 2, dim=-1))  # (B, T)
    nrm = torch.sqrt(torch.mean(true**2, dim=-1)).clamp_min(_EPS)  # (B, T)
    return err / nrm


def nrmse_per_time(pred: torch.Tensor, true: torch.Tensor, initial_step: int) -> torch.Tensor:
    """Per predicted frame nRMSE averaged over samples: (T - initial_step,) float64."""
    _check_pair(pred, true, initial_step)
    p, t = _f64(pred)[:, initial_step:], _f64(true)[:, initial_step:]
    return _nrmse_bt(p, t).mean(dim=0)


def nrmse_per_sample(pred: torch.Tensor, true: torch.Tensor, initial_step: int) -> torch.Tensor:
    """Per sample nRMSE averaged over predicted frames: (B,) float64."""
    _check_pair(pred, true, initial_step)
    p, t = _f64(pred)[:, initial_step:], _f64(true)[:, initial_step:]
    return _nrmse_bt(p, t).mean(dim=1)


def nrmse(pred: torch.Tensor, true: torch.Tensor, initial_step: int) -> float:
    """PDEBench nRMSE over the predicted frames (mean over samples, then time)."""
    return float(nrmse_per_time(pred, true, initial_step).mean())


PDEBENCH_BATCH = 50  # pdebench/models/config/args/config_Bgs.yaml batch_size: the validation loader's batches


def nrmse_pdebench(pred: torch.Tensor, true: torch.Tensor, initial_step: int,
                   batch_size: int = PDEBENCH_BATCH) -> float:
    """nRMSE as PDEBench's ``metrics()`` loop computes it: all frames, context copied from the truth, per batch of
    ``batch_size`` test samples (the mean over its samples, then frames), the batches averaged, as the rest of
    ``pdebench_metric_set``.  A split of ≤ ``batch_size`` samples, or a multiple of it, gives the mean over all
    samples (``nrmse`` × (T - initial_step) / T); another size weights the last, smaller batch as a whole one."""
    _check_pair(pred, true, initial_step)
    if int(batch_size) < 1:
        raise ValueError(f"metrics: batch_size must be ≥ 1, got {batch_size}")
    p = _f64(pred).clone()
    t = _f64(true)
    p[:, :initial_step] = t[:, :initial_step]
    bt = _nrmse_bt(p, t)  # (B, T)
    per_batch = [bt[i:i + int(batch_size)].mean(dim=0).mean() for i in range(0, bt.shape[0], int(batch_size))]
    return float(torch.stack(per_batch).mean())


PDEBENCH_SET_KEYS: tuple[str, ...] = ("rmse_pdebench", "crmse_pdebench", "brmse_pdebench", "max_err_pdebench",
                                      "frmse_low_pdebench", "frmse_mid_pdebench", "frmse_high_pdebench")
PDEBENCH_BANDS = (4, 12)  # metric_func's iLow, iHigh: Fourier modes [0, 4) low, [4, 12) mid, [12, X/2] high


def pdebench_metric_set(pred: torch.Tensor, true: torch.Tensor, initial_step: int,
                        batch_size: int = PDEBENCH_BATCH, length: float = 1.0) -> dict[str, float]:
    """PDEBench's ``metric_func`` figures besides nRMSE (keys ``PDEBENCH_SET_KEYS``; see the module doc) for full
    trajectories (B, T, X): the context copied from the truth, per batch of ``batch_size`` test samples, averaged
    over frames and then over batches. ``length``: the domain length (PDEBench's ``Lx``, 1)."""
    _check_pair(pred, true, initial_step)
    if int(batch_size) < 1:
        raise ValueError(f"metrics: batch_size must be ≥ 1, got {batch_size}")
    p, t = _f64(pred).clone(), _f64(true)
    p[:, :initial_step] = t[:, :initial_step]
    x_size = t.shape[-1]
    low, high = PDEBENCH_BANDS
    per_batch = []
    for i in range(0, t.shape[0], int(batch_size)):
        d = p[i:i + int(batch_size)] - t[i:i + int(batch_size)]  # (b, T, X)
        spectrum = torch.fft.rfft(d, dim=-1).abs() ** 2  # (b, T, X/2+1): |rfft(pred) - rfft(true)|²
        f_rms = torch.sqrt(spectrum.mean(dim=0)) / x_size * length  # (T, X/2+1)
        per_batch.append(torch.stack([
            torch.sqrt(torch.mean(d**2, dim=-1)).mean(dim=0).mean(),  # RMSE
            torch.sqrt(torch.mean(d.sum(dim=-1) ** 2, dim=0)).mean() / x_size,  # cRMSE: Σx error, RMS over samples
            torch.sqrt((d[..., 0] ** 2 + d[..., -1] ** 2) / 2).mean(dim=0).mean(),  # bRMSE: the two boundary points
            d.abs().amax(dim=(0, 2)).mean(),  # Max: the batch's largest error per frame
            *(f_rms[:, band].mean(dim=-1).mean() for band in (slice(0, low), slice(low, high), slice(high, None))),
        ]))
    values = torch.stack(per_batch).mean(dim=0)  # (7,) mean over batches, as PDEBench's metrics() divides by itot
    return {k: float(v) for k, v in zip(PDEBENCH_SET_KEYS, values)}


# ------------------------------------------------------------------------------------ physics
def conservation_gap(pred: torch.Tensor, initial_step: int) -> float:
    """Mean |mass drift| of predicted frames vs the last context frame, in units of its RMS."""
    _check_traj("pred", pred)
    _check_step(initial_step, pred.shape[1])
    if initial_step < 1:
        raise ValueError("metrics: conservation_gap needs initial_step ≥ 1 (a context frame to compare to)")
    u = _f64(pred)
    ref = u[:, initial_step - 1]  # (B, X)
    mass_ref = ref.mean(dim=-1, keepdim=True)  # (B, 1)
    scale = torch.sqrt(torch.mean(ref**2, dim=-1, keepdim=True)).clamp_min(_EPS)  # (B, 1)
    mass = u[:, initial_step:].mean(dim=-1)  # (B, Tp)
    return float(((mass - mass_ref).abs() / scale).mean())


def energy_violation(pred: torch.Tensor, initial_step: int) -> float:
    """Relative growth of ½∫u² summed over predicted transitions (relu), mean over samples."""
    _check_traj("pred", pred)
    _check_step(initial_step, pred.shape[1])
    if initial_step < 1:
        raise ValueError("metrics: energy_violation needs initial_step ≥ 1 (a context frame to compare to)")
    u = _f64(pred)[:, initial_step - 1:]  # (B, Tp+1, X)
    energy = 0.5 * torch.mean(u**2, dim=-1)  # (B, Tp+1): ½∫u² on [0,1)
    growth = torch.relu(energy[:, 1:] - energy[:, :-1]).sum(dim=1)  # (B,)
    return float((growth / energy[:, 0].clamp_min(_EPS)).mean())


def bc_violation(pred: torch.Tensor) -> float:
    """Periodic seam mismatch (quadratic extrapolation across the boundary) relative to rms(u)."""
    _check_traj("pred", pred)
    if pred.shape[-1] < 4:
        raise ValueError(f"metrics: bc_violation needs ≥ 4 grid points, got X={pred.shape[-1]}")
    u = _f64(pred)  # (B, T, X)
    right = 3 * u[..., -1] - 3 * u[..., -2] + u[..., -3]  # (B, T) estimate of u(x_end + dx) = u(x_0)
    left = 3 * u[..., 0] - 3 * u[..., 1] + u[..., 2]  # (B, T) estimate of u(x_0 - dx) = u(x_end)
    mismatch = 0.5 * ((right - u[..., 0]).abs() + (left - u[..., -1]).abs())  # (B, T)
    scale = torch.sqrt(torch.mean(u**2, dim=-1)).clamp_min(_EPS)  # (B, T)
    return float((mismatch / scale).mean())


# ------------------------------------------------------------------------------------ horizon
def correlation_per_time(pred: torch.Tensor, true: torch.Tensor, initial_step: int) -> torch.Tensor:
    """Pearson ρ over x between prediction and truth per sample and predicted frame: (B, Tp)."""
    _check_pair(pred, true, initial_step)
    p = _f64(pred)[:, initial_step:]
    t = _f64(true)[:, initial_step:]
    p = p - p.mean(dim=-1, keepdim=True)
    t = t - t.mean(dim=-1, keepdim=True)
    num = (p * t).sum(dim=-1)  # (B, Tp)
    den = torch.sqrt((p**2).sum(dim=-1) * (t**2).sum(dim=-1))  # (B, Tp)
    rho = num / den.clamp_min(_EPS)
    # Both fields flat (e.g. fully decayed): call them correlated only if they agree.
    flat = den <= _EPS
    if flat.any():
        agree = (_f64(pred)[:, initial_step:] - _f64(true)[:, initial_step:]).abs().amax(dim=-1) <= 1e-6
        rho = torch.where(flat, agree.to(rho.dtype), rho)
    return rho


def rollout_horizon(pred: torch.Tensor, true: torch.Tensor, initial_step: int, rho: float = 0.8) -> float:
    """Mean number of predicted frames before the correlation with the truth drops below ``rho``."""
    r = correlation_per_time(pred, true, initial_step)  # (B, Tp)
    below = r < rho  # NaN predictions count as below
    below |= torch.isnan(r)
    n_pred = r.shape[1]
    idx = torch.arange(n_pred, dtype=torch.float64).expand_as(r)
    first = torch.where(below, idx, torch.full_like(idx, float(n_pred))).amin(dim=1)  # (B,)
    return float(first.mean())


# ---------------------------------------------------------------------------------------- ECE
def interval_coverage(ensemble: torch.Tensor, true: torch.Tensor, initial_step: int,
                      levels: Sequence[float] = ECE_LEVELS) -> torch.Tensor:
    """Expected fraction of true values inside the ensemble's central intervals: (len(levels),)."""
    if not isinstance(ensemble, torch.Tensor) or ensemble.ndim != 4:
        shape = tuple(ensemble.shape) if isinstance(ensemble, torch.Tensor) else type(ensemble).__name__
        raise ValueError(f"metrics: ensemble must have shape (S, B, T, X), got {shape}. "
                         "Fix: stack S sampled rollouts along a new first dimension.")
    _check_pair(ensemble[0], true, initial_step)
    s = ensemble.shape[0]
    if s < 2:
        raise ValueError(f"metrics: ECE needs an ensemble of ≥ 2 members, got S={s}. Fix: raise eval.ensemble_size")
    lv = torch.as_tensor(list(levels), dtype=torch.float64)
    if lv.numel() == 0 or bool(((lv <= 0) | (lv >= 1)).any()):
        raise ValueError(f"metrics: ECE levels must lie in (0, 1), got {list(levels)}")
    e = _f64(ensemble)[:, :, initial_step:]  # (S, B, Tp, X)
    t = _f64(true)[:, initial_step:]  # (B, Tp, X)
    if not bool(torch.isfinite(e).all()):  # NaN members rank below nothing: a finite ECE would be made up
        return torch.full((lv.numel(),), float("nan"), dtype=torch.float64)
    k = (e < t.unsqueeze(0)).sum(dim=0).reshape(-1).to(torch.float64)  # (P,) rank of the truth
    lo_pit, hi_pit = k / (s + 1), (k + 1) / (s + 1)  # PIT ~ U(lo, hi) for a calibrated ensemble
    lo_band = (0.5 - lv / 2).unsqueeze(1)  # (L, 1)
    hi_band = (0.5 + lv / 2).unsqueeze(1)
    overlap = (torch.minimum(hi_pit, hi_band) - torch.maximum(lo_pit, lo_band)).clamp_min(0.0)  # (L, P)
    return (overlap * (s + 1)).mean(dim=1)  # (L,)


def ece(ensemble: torch.Tensor, true: torch.Tensor, initial_step: int,
        levels: Sequence[float] = ECE_LEVELS) -> float:
    """Mean |coverage - level| of central prediction intervals over ``levels`` (see module doc)."""
    cov = interval_coverage(ensemble, true, initial_step, levels)
    lv = torch.as_tensor(list(levels), dtype=torch.float64)
    return float((cov - lv).abs().mean())


# -------------------------------------------------------------------------------------- all
def rollout_metrics(pred: torch.Tensor, true: torch.Tensor, initial_step: int) -> dict[str, float]:
    """Every deterministic rollout metric (keys ``METRIC_KEYS``) for full trajectories (B, T, X)."""
    _check_pair(pred, true, initial_step)
    return {
        "nrmse": nrmse(pred, true, initial_step),
        "nrmse_pdebench": nrmse_pdebench(pred, true, initial_step),
        "conservation_gap": conservation_gap(pred, initial_step),
        "energy_violation": energy_violation(pred, initial_step),
        "bc_violation": bc_violation(pred[:, initial_step:]),
        "rollout_horizon": rollout_horizon(pred, true, initial_step),
    }
