"""Evaluate a UPS checkpoint on any PDEBench-layout file: ``ups eval checkpoint=… data=… [overrides]``.

``evaluate(model, cfg, data)`` runs the PDEBench protocol on one split (context = the first
``initial_step`` frames, autoregressive rollout over the rest) without and with TTC, plus a
diffusion ensemble for ECE, and returns the metric dict of docs/CONTRACTS.md. ``main(argv)`` loads
the checkpoint and the data, checks that the file can be evaluated by this checkpoint (same time
step and frame count; a different grid is resampled spectrally, the data being periodic), adds the
baselines on the same data and writes ``eval_<run_id>.json``, ``.csv`` and ``.html`` (plots as
embedded PNG) into ``cfg.eval.out_dir``.

TTC never sees the target: the forecast functions below get the context frames only; the truth is
used afterwards, for the metrics (tests/test_eval.py perturbs it and checks nothing TTC does moves).
"""
from __future__ import annotations

import base64
import contextlib
import copy
import hashlib
import html
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ups import metrics
from ups.config import ConfigError, apply_overrides, data_file_key, override_key, to_dict
from ups.leaderboard import PDEBENCH_NAMES
from ups.models.diffusion import SampleNoise
from ups.models.interface import LatentForecaster
from ups.outputs import atomic_path
from ups.reconstruction import RECON_KEYS, round_trip, round_trip_metrics
from ups.ttc import TTCSettings, deterministic_rollout, ttc_search
from ups.ttc_gain import MIN_SAMPLES, gain_interval

EVAL_KEYS = ("nrmse", "nrmse_ttc", "nrmse_pdebench", "conservation_gap", "energy_violation", "bc_violation",
             "ece", "rollout_horizon", "eval_s", "ttc_s", "params")
# override prefixes that make sense at evaluation time; model keys would not fit the stored weights
EVAL_OVERRIDE_PREFIXES = ("data.", "ttc.", "eval.", "run.", "training.device", "training.num_threads",
                          "training.seed")
USAGE = ("usage: ups eval checkpoint=PATH [data=FILE.h5] [key=value …]\n"
         "  e.g. ups eval checkpoint=runs/r1/checkpoints/final data=1D_Burgers_Sols_Nu0.01.hdf5 "
         "ttc.candidates=16 data.reduced_resolution=4 eval.max_samples=200\n"
         "  PATH: a checkpoint.pt or the folder holding it, an s3://…/checkpoint_N of a sweep on S3, or a champion "
         "record (checkpoint=champion for reports/champion.json, or checkpoint=<record>.json)")


# ------------------------------------------------------------------------------ resampling
def spectral_resample(u: torch.Tensor, n: int, shift: float = 0.0) -> torch.Tensor:
    """Trigonometric interpolation of periodic samples on [0, 1): (..., X) → (..., n).

    Input samples sit at ``x0_in + j/X``, output at ``x0_out + j/n`` with ``shift = x0_out - x0_in``.
    Band-limited fields (modes below both Nyquists) are reproduced exactly.
    """
    x_in = u.shape[-1]
    if x_in == n and shift == 0.0:
        return u.clone()
    uh = torch.fft.rfft(u.to(torch.float64), dim=-1)  # (..., X//2+1)
    k = torch.arange(uh.shape[-1], dtype=torch.float64, device=u.device)
    uh = uh * torch.exp(2j * math.pi * k * shift)
    m = min(x_in // 2, n // 2)
    out = torch.zeros(*uh.shape[:-1], n // 2 + 1, dtype=uh.dtype, device=u.device)  # (..., n//2+1)
    out[..., : m + 1] = uh[..., : m + 1]
    if x_in % 2 == 0 and n > x_in:
        out[..., x_in // 2] *= 0.5  # the source Nyquist mode splits into ±k on the finer grid
    if n % 2 == 0 and n < x_in:
        out[..., n // 2] = 2 * out[..., n // 2].real  # ±k alias onto the coarser grid's Nyquist
    return (torch.fft.irfft(out, n=n, dim=-1) * (n / x_in)).to(u.dtype)


@dataclass(frozen=True)
class GridMap:
    """How the eval file's grid maps to the model's: identity, or spectral resampling both ways."""

    eval_size: int
    model_size: int
    shift: float  # x0_model - x0_eval

    @property
    def identity(self) -> bool:
        # a shift below 1e-6 of a cell is the float32 rounding of stored coordinates (x0 = 0.5/1000 …), not an offset
        return self.eval_size == self.model_size and abs(self.shift) * self.eval_size < 1e-6

    def to_model(self, u: torch.Tensor) -> torch.Tensor:
        return u if self.identity else spectral_resample(u, self.model_size, self.shift)

    def to_eval(self, u: torch.Tensor) -> torch.Tensor:
        return u if self.identity else spectral_resample(u, self.eval_size, -self.shift)


# ------------------------------------------------------------------------------ forecasting
def _model_grid(model: Any, x_size: int) -> int:
    return int(getattr(model, "grid_size", x_size))


@torch.no_grad()
def ensemble_rollout(model: LatentForecaster, context: torch.Tensor, n_steps: int, size: int, *,
                     generator: torch.Generator | SampleNoise | None, steps: int = 1,
                     noise_scale: float = 1.0) -> torch.Tensor:
    """``size`` stochastic rollouts (one sampled residual per step): (B, Tc, X) → (S, B, n_steps, X)."""
    b = context.shape[0]
    ctx = context.repeat(size, 1, 1)  # (S·B, Tc, X), member-major
    z = model.encode(ctx)  # (S·B, N, D)
    if isinstance(generator, SampleNoise):
        generator = generator.rows(torch.arange(b).repeat(size))  # row m·B + j is sample j's member m
    frames = []
    for _ in range(n_steps):
        z = model.sample_next(z, 1, generator=generator, steps=steps, noise_scale=noise_scale)[:, 0]
        frames.append(model.decode(z))  # (S·B, X)
    return torch.stack(frames, dim=1).reshape(size, b, n_steps, -1)  # (S, B, T, X)


@dataclass
class EvalOutput:
    metrics: dict[str, Any]
    true: torch.Tensor  # (B, T, X) truth incl. context (eval grid)
    pred: torch.Tensor  # (B, T, X) context + deterministic rollout
    pred_ttc: torch.Tensor  # (B, T, X) context + TTC rollout
    ttc_chosen: torch.Tensor  # (B, T - initial_step) candidate index per step (0 = deterministic)
    curves: dict[str, list[float]]  # nRMSE per predicted frame
    notes: list[str] = field(default_factory=list)


def eval_device(cfg: Any) -> torch.device:
    """Where an evaluation runs: CUDA for ``training.device=cuda``, or ``auto`` with a GPU; else the CPU."""
    want = str(cfg.training.device)
    if want == "cuda" or (want == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def evaluate_detailed(model: LatentForecaster, cfg: Any, data: Any, split: str = "test", *,
                      grid: GridMap | None = None) -> EvalOutput:
    """The PDEBench-protocol evaluation of ``model`` on ``data.<split>``, keeping trajectories."""
    t_start = time.perf_counter()
    if split not in ("train", "val", "test"):
        raise ConfigError(f"evaluate: split '{split}' is unknown. Fix: use train, val or test")
    traj = getattr(data, split)  # (N, T, X)
    if cfg.eval.max_samples is not None and int(cfg.eval.max_samples) > 0:
        traj = traj[: int(cfg.eval.max_samples)]
    n_traj, n_frames, x_size = traj.shape
    init = int(data.initial_step)
    if n_traj == 0:
        raise ConfigError(f"evaluate: the {split} split of '{getattr(data, 'source', '?')}' is empty. "
                          "Fix: use a file with more trajectories or a larger data.test_ratio")
    if not 1 <= init < n_frames:
        raise ConfigError(f"evaluate: data.initial_step = {init} leaves no frame to forecast in "
                          f"'{getattr(data, 'source', '?')}' ({n_frames} frames). Fix: data with more than {init} frames "
                          "at the model's time step (a checkpoint's initial_step is fixed: `ups eval` keeps it), or, "
                          "when training, a lower data.initial_step")
    settings = TTCSettings.from_cfg(cfg.ttc)  # bad TTC settings fail before compute
    grid = grid or GridMap(x_size, _model_grid(model, x_size), 0.0)
    dev = eval_device(cfg)
    if isinstance(model, torch.nn.Module):
        model = model.to(dev).eval()
    seed = int(cfg.training.seed)
    n_steps = n_frames - init
    ens_size = int(cfg.eval.ensemble_size)
    bs = max(1, int(cfg.eval.batch_size))

    preds, preds_ttc, chosen, members, recons = [], [], [], [], []
    ttc_s = 0.0
    searched = used = evals = 0
    det_pen, ttc_pen = [], []
    with torch.no_grad():
        for i in range(0, n_traj, bs):
            # (b, Tc, Xm) context only; a copy, not a view into storage that also holds the target frames
            ctx = grid.to_model(traj[i:i + bs, :init].clone().to(dev))
            # each sample draws from its own generators (TTC's candidates: stream 0, the ensemble: stream 1), so
            # its figures do not depend on eval.batch_size or on which samples share its batch
            here = range(i, i + ctx.shape[0])
            plain = model.rollout(ctx, n_steps) if hasattr(model, "rollout") else \
                deterministic_rollout(model, ctx, n_steps)  # (b, T', Xm)
            preds.append(grid.to_eval(plain).cpu())
            whole = grid.to_model(traj[i:i + bs].to(dev))  # (b, T, Xm): the true frames, for the round trip only
            recons.append(grid.to_eval(round_trip(model, whole, init, bs)).cpu())  # (b, T', X)
            if settings.enabled:
                res = ttc_search(model, ctx, n_steps, cfg.ttc, generator=SampleNoise.seeded(seed, 0, here, dev))
                ttc_s += res.seconds
                searched += res.interventions
                used += int(res.used_search.sum())
                evals += res.evaluations
                det_pen.append(res.det_penalty.cpu())
                ttc_pen.append(res.penalty.cpu())
                preds_ttc.append(grid.to_eval(res.frames).cpu())
                chosen.append(res.chosen.cpu())
            else:
                preds_ttc.append(preds[-1])
                chosen.append(torch.zeros(ctx.shape[0], n_steps, dtype=torch.long))
            if ens_size >= 2:
                ens = ensemble_rollout(model, ctx, n_steps, ens_size, generator=SampleNoise.seeded(seed, 1, here, dev),
                                       steps=settings.steps, noise_scale=settings.noise_scale)
                members.append(grid.to_eval(ens).cpu())

    true = traj.cpu().to(torch.float32)  # (N, T, X)
    ctx_true = true[:, :init]

    def full(parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([ctx_true, torch.cat(parts).to(torch.float32)], dim=1)  # (N, T, X)

    pred, pred_ttc = full(preds), full(preds_ttc)
    m = metrics.rollout_metrics(pred, true, init)
    mt = metrics.rollout_metrics(pred_ttc, true, init) if settings.enabled else m  # TTC off: the same rollout
    out: dict[str, Any] = dict(m)
    out["nrmse_ttc"] = mt["nrmse"]
    out["nrmse_ttc_pdebench"] = mt["nrmse_pdebench"]
    for key in ("conservation_gap", "energy_violation", "bc_violation", "rollout_horizon"):
        out[f"{key}_ttc"] = mt[key]
    # the rest of PDEBench's metric set (RMSE, cRMSE, bRMSE, Max, fRMSE by band), as its tables compute it
    plain_set = metrics.pdebench_metric_set(pred, true, init)
    out.update(plain_set)
    ttc_set = metrics.pdebench_metric_set(pred_ttc, true, init) if settings.enabled else plain_set
    out.update({f"{k}_ttc": v for k, v in ttc_set.items()})
    # the autoencoder's round trip of the true frames: what the forecast's error would be with a perfect operator
    out.update(round_trip_metrics(torch.cat(recons).to(torch.float32), true, init))
    finite = math.isfinite(m["nrmse"]) and math.isfinite(mt["nrmse"])  # a rollout that blew up has no gain, not 0
    out["ttc_gain"] = (m["nrmse"] - mt["nrmse"]) / m["nrmse"] if m["nrmse"] > 0 else (0.0 if finite else math.nan)
    # per test sample (mean over predicted frames; their mean is nrmse / nrmse_ttc): paired intervals for
    # the TTC gain (sweeps/dims.py, ups/ttc_gain.py)
    out["nrmse_samples"] = [round(float(v), 7) for v in metrics.nrmse_per_sample(pred, true, init)]
    out["nrmse_ttc_samples"] = [round(float(v), 7) for v in metrics.nrmse_per_sample(pred_ttc, true, init)]
    out["ttc_gain_ci95"] = (list(gain_interval(out["nrmse_samples"], out["nrmse_ttc_samples"], seed=seed))
                            if finite else [math.nan, math.nan])
    out["ttc_enabled"] = settings.enabled
    out["ttc_intervention_rate"] = searched / (n_traj * n_steps)
    out["ttc_search_used_rate"] = used / n_traj
    out["ttc_evaluations_per_step"] = evals / (n_traj * n_steps) if settings.enabled else 0.0
    if det_pen:
        out["ttc_reward_penalty_det"] = float(torch.cat(det_pen).mean())
        out["ttc_reward_penalty"] = float(torch.cat(ttc_pen).mean())
    if members:
        ens = torch.cat(members, dim=1).to(torch.float32)  # (S, N, T', X)
        ens = torch.cat([ctx_true.expand(ens.shape[0], *ctx_true.shape), ens], dim=2)  # (S, N, T, X)
        out["ece"] = metrics.ece(ens, true, init)
    else:
        out["ece"] = None
    out["ensemble_size"] = ens_size if members else 0
    out["params"] = int(sum(p.numel() for p in model.parameters())) if isinstance(model, torch.nn.Module) else 0
    out["n_samples"], out["n_frames"], out["initial_step"], out["grid"] = n_traj, n_frames, init, x_size
    out["model_grid"], out["split"] = grid.model_size, split
    out["ttc_s"] = ttc_s
    out["eval_s"] = time.perf_counter() - t_start
    curves = {"ups": metrics.nrmse_per_time(pred, true, init).tolist(),
              "ups_ttc": metrics.nrmse_per_time(pred_ttc, true, init).tolist()}
    return EvalOutput(out, true, pred, pred_ttc, torch.cat(chosen), curves)


def evaluate(model: LatentForecaster, cfg: Any, data: Any, split: str = "test") -> dict[str, Any]:
    """Metric dict (keys ``EVAL_KEYS`` and more) of ``model`` on ``data.<split>``; see module doc."""
    return evaluate_detailed(model, cfg, data, split).metrics


def val_nrmse_ttc(model: LatentForecaster, cfg: Any, data: Any, max_samples: int) -> float:
    """The rollout nRMSE with TTC on the first ``max_samples`` validation trajectories (-1: all), as the test
    evaluation runs it (same TTC settings and seed; no ensemble): what a sweep that searches ``ttc.*`` keys ranks its
    trials on, so that its searcher sees those keys act (the per-epoch ``val_nrmse`` is a plain rollout)."""
    vcfg = copy.deepcopy(cfg)
    vcfg.eval.max_samples = int(max_samples)
    vcfg.eval.ensemble_size = 0
    return float(evaluate_detailed(model, vcfg, data, "val").metrics["nrmse_ttc"])


# ------------------------------------------------------------------------------ compatibility
def model_time_step(cfg: Any) -> float:
    from ups.data.protocol import protocol_time_step

    return protocol_time_step(cfg.data)


def model_frames(cfg: Any) -> int:
    from ups.data.protocol import protocol_frames

    return protocol_frames(cfg.data)


# data.* settings that fix the checkpoint's forecast (its time step, horizon and start): checked before any data
PROTOCOL_KEYS = ("initial_step", "frames", "t_final", "reduced_resolution_t")


def check_protocol_overrides(ckpt_cfg: Any, cfg: Any) -> None:
    """Refuse, before data is read or generated, overrides that change the checkpoint's time protocol: on its own
    generated data (no ``data=``) any of ``PROTOCOL_KEYS`` made ``ups eval`` generate a dataset only to refuse it
    (with a fix that did not work); on a file, ``initial_step`` (the file sets the rest, and
    ``reduced_resolution_t`` is how a file saved at a finer step is read at the checkpoint's)."""
    keys = ("initial_step",) if cfg.data.path else PROTOCOL_KEYS
    changed = [k for k in keys if getattr(cfg.data, k) != getattr(ckpt_cfg.data, k)]
    if not changed:
        return
    said = "; ".join(f"data.{k}={getattr(cfg.data, k)}, the checkpoint's {getattr(ckpt_cfg.data, k)}" for k in changed)
    on = f"on '{cfg.data.path}'" if cfg.data.path else "on the checkpoint's own generated data (no data=)"
    raise ConfigError(f"eval: {said}: a forecast {on} with another time step, horizon or start would not compare "
                      f"with the checkpoint's. Fix: drop {' '.join(f'data.{k}=' for k in changed)}")


def check_eval_data(ckpt_cfg: Any, grid_size: int, data: Any, source: str) -> tuple[GridMap, list[str]]:
    """Refuse files this checkpoint cannot forecast; map grids that differ. Returns (map, notes)."""
    from ups.data.hdf5 import check_grid

    notes: list[str] = []
    test = data.test
    t = np.asarray(data.t, dtype=np.float64).reshape(-1)
    x = np.asarray(data.x, dtype=np.float64).reshape(-1)
    n_frames, x_size = int(test.shape[1]), int(test.shape[2])
    if len(x) != x_size or len(t) != n_frames:
        raise ConfigError(f"eval data '{source}': coordinates ({len(x)} x, {len(t)} t) do not match the test "
                          f"split's {x_size} points × {n_frames} frames. Fix: load the file with "
                          "ups.data.protocol.load_protocol")
    # the same grid check as the file reader and load_protocol: finite, increasing, uniform, ≥ 4 points, length 1
    check_grid(source, x, t, where=" after subsampling")
    dt_model, frames_model = model_time_step(ckpt_cfg), model_frames(ckpt_cfg)
    if len(t) >= 2:
        dt = float(np.diff(t).mean())  # > 0: check_grid refused non-increasing t
        if not math.isclose(dt, dt_model, rel_tol=1e-3):
            rt = int(((getattr(data, "attrs", None) or {}).get("protocol") or {}).get("rt") or 1)
            stride = dt_model / (dt / rt)  # the stride that gives the checkpoint's step from the file's own step
            if stride >= 1 and abs(stride - round(stride)) < 1e-3:
                fix = f"data.reduced_resolution_t={round(stride)} (the file's step is {dt / rt:.6g})"
            else:
                fix = (f"none on this file: no whole data.reduced_resolution_t turns its step {dt / rt:.6g} into "
                       f"{dt_model:.6g}; evaluate a file saved at a step that divides {dt_model:.6g}, e.g. one "
                       f"made as the checkpoint's data was (`ups data generate frames={ckpt_cfg.data.frames} "
                       f"t_final={ckpt_cfg.data.t_final:g} …`)")
            raise ConfigError(
                f"eval data '{source}': its time step after subsampling (data.reduced_resolution_t={rt}) is "
                f"{dt:.6g}, the checkpoint was trained with {dt_model:.6g}. A learned one-step operator cannot be "
                f"resampled in time. Fix: {fix}.")
    if n_frames != frames_model:
        raise ConfigError(
            f"eval data '{source}': {n_frames} frames after subsampling, the checkpoint's protocol has "
            f"{frames_model}; rollout metrics over a different horizon are not comparable. Fix: evaluate a "
            f"file with the same frame count and time step (data.frames / data.reduced_resolution_t).")
    d = ckpt_cfg.data
    x0_model = 0.5 / int(d.resolution)  # PDEBench cell centres, subsampled by [::reduced_resolution]
    gm = GridMap(x_size, int(grid_size), x0_model - float(x[0]))
    if gm.eval_size != gm.model_size:
        notes.append(f"eval grid has {x_size} points, the checkpoint's {grid_size}: contexts are resampled "
                     f"spectrally to {grid_size} points and forecasts back to {x_size} (periodic data); "
                     "metrics are on the file's grid")
    elif not gm.identity:
        notes.append(f"eval grid is offset by {gm.shift:.3g} from the checkpoint's; shifted spectrally")
    nu = getattr(data, "nu", None)
    if nu is not None and not math.isclose(float(nu), float(d.nu), rel_tol=1e-6):
        notes.append(f"eval data ν = {nu}, the checkpoint was trained at ν = {d.nu}: out-of-distribution test")
    return gm, notes


def unnamed_nu_note(cfg: Any) -> str | None:
    """A note when ``data.path`` is a file that names no ν (no ``nu``/``Nu`` attribute, no ``_Nu<ν>`` in its name):
    it is scored as if it were ``data.nu`` (the checkpoint's, unless given), which the file cannot confirm."""
    path = str(cfg.data.path or "")
    from ups.data.hdf5 import declared_nu

    readable, nu = declared_nu(path) if path else (False, None)
    if not readable or nu is not None:
        return None  # generated data, a file that names its ν, or one refused with its own message when loaded
    return (f"{path} names no ν (no nu/Nu attribute, no _Nu<ν> in its name): it is taken to be ν = "
            f"{float(cfg.data.nu):g}, as the checkpoint was trained; if its ν is another, this is an out-of-distribution "
            f"test the evaluation cannot flag")


def check_test_unseen(ckpt_cfg: Any, cfg: Any, data: Any, source: str) -> None:
    """Refuse scoring samples the checkpoint trained or validated on. On the checkpoint's own data (its
    ``data.path``, or the file generated for it, on any grid) the test split is the file's first samples, and a
    larger ``data.test_ratio`` / ``data.num_samples_max`` than the checkpoint's moves training samples into it."""
    from ups.data.cache import content_hash, generation_key
    from ups.data.hdf5 import inspect_pdebench
    from ups.data.protocol import split_sizes

    d = ckpt_cfg.data
    src = Path(str(source)).expanduser()
    if d.path:
        trained = Path(str(d.path)).expanduser()
        try:
            same = trained.exists() and src.exists() and os.path.samefile(trained, src)
        except OSError:
            same = False
    else:  # generated: the same request, or the same draws (n, seed, ν, time grid) on another grid (their
        # wavenumbers differ by the grid's period, x[-1]-x[0], a fraction of a percent: the same trajectories here)
        attrs = getattr(data, "attrs", None) or {}
        try:
            made = {k: v for k, v in json.loads(str(attrs.get("generation_key", "{}"))).items() if k != "resolution"}
        except (ValueError, AttributeError):
            made = {}
        same = attrs.get("content_hash") == content_hash(d) or made == {
            k: v for k, v in generation_key(d).items() if k != "resolution"}
    if not same:
        return
    n_file = int(inspect_pdebench(src).shape[0])
    nmax = int(d.num_samples_max)
    held_out = split_sizes(n_file if nmax <= 0 else min(nmax, n_file), float(d.test_ratio),
                           float(d.val_ratio))["test"]
    scored = int(data.test.shape[0])
    if int(cfg.eval.max_samples) > 0:
        scored = min(scored, int(cfg.eval.max_samples))
    if scored > held_out:
        raise ConfigError(
            f"eval data '{source}': the checkpoint was trained on this data and held out only its first {held_out} "
            f"samples (data.test_ratio={float(d.test_ratio):g} data.num_samples_max={nmax}); the test split here "
            f"(data.test_ratio={float(cfg.data.test_ratio):g} data.num_samples_max={int(cfg.data.num_samples_max)}) "
            f"would score {scored}, samples {held_out}…{scored - 1} of which it trained or validated on. Fix: drop "
            f"the data.test_ratio= / data.num_samples_max= overrides, or add eval.max_samples={held_out}")


# ------------------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str]) -> tuple[str, dict[str, Any]]:
    """``checkpoint=…``, ``data=…`` (→ data.path) and dotted overrides → (checkpoint, overrides)."""
    import yaml

    ckpt: str | None = None
    updates: dict[str, Any] = {}
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"eval: cannot parse '{arg}'. {USAGE}")
        key, raw = override_key(arg), arg.split("=", 1)[1]
        if key == "checkpoint":
            ckpt = raw
            continue
        key = data_file_key(arg, "eval: ", "leave data= out to evaluate on the checkpoint's own generated data")
        if not key.startswith(EVAL_OVERRIDE_PREFIXES):
            raise ConfigError(f"eval: '{key}' cannot be overridden at evaluation time (the weights fix the "
                              f"model). Fix: override only {', '.join(p + '*' for p in EVAL_OVERRIDE_PREFIXES)}, "
                              "or retrain with the new value")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        updates[key] = raw if key == "data.path" else value
    if ckpt is None:
        raise ConfigError(f"eval: missing checkpoint=PATH. {USAGE}")
    return ckpt, updates


def _run_id(cfg: Any, state: dict[str, Any]) -> str:
    from ups.train.checkpoint import run_folder

    rid = cfg.run.run_id or state.get("run_id")
    where = str(state.get("path", ""))
    ckpt = Path(where) if "://" in where else Path(where).expanduser().resolve()
    if not rid and (run := run_folder(ckpt)) is not None:
        rid = run.name  # ups train's run folder runs/<run_id>/checkpoints/<name>/checkpoint.pt
    if rid:
        return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(rid))
    return "ckpt-" + hashlib.sha1(_where(state["path"]).encode()).hexdigest()[:10]


def _where(path: str) -> str:
    """A checkpoint's identity: the absolute local path, or the ``s3://`` URI as it is (Path would fold it)."""
    return path if str(path).startswith("s3://") else str(Path(path).resolve())


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _figures(ev: EvalOutput, baselines: list[dict[str, Any]]) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    init = int(ev.metrics["initial_step"])
    figs = []
    true, pred, pttc = (a[0].numpy() for a in (ev.true, ev.pred, ev.pred_ttc))  # (T, X) sample 0
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.2), sharey=True, layout="constrained")
    vmin, vmax = float(true.min()), float(true.max())
    for ax, (name, arr) in zip(axes, [("truth", true), ("UPS", pred), ("UPS + TTC", pttc)]):
        im = ax.imshow(arr, aspect="auto", origin="lower", vmin=vmin, vmax=vmax, cmap="RdBu_r")
        ax.axhline(init - 0.5, color="k", lw=0.8, ls="--")
        ax.set_title(name)
        ax.set_xlabel("x index")
    axes[0].set_ylabel("frame")
    fig.colorbar(im, ax=axes[:3].tolist(), shrink=0.8)
    im = axes[3].imshow(np.abs(pred - true), aspect="auto", origin="lower", cmap="magma")
    axes[3].set_title("|UPS − truth|")
    fig.colorbar(im, ax=axes[3], shrink=0.8)
    figs.append(("Rollout vs truth, test sample 0 (dashed: end of context)", _png(fig)))

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.2))
    n = true.shape[0]
    for ax, t in zip(axes, [init, (init + n - 1) // 2, n - 1]):
        ax.plot(true[t], "k", lw=1.5, label="truth")
        ax.plot(pred[t], "C0", lw=1, label="UPS")
        ax.plot(pttc[t], "C3", lw=1, ls="--", label="UPS + TTC")
        ax.set_title(f"frame {t}")
    axes[0].legend()
    figs.append(("Profiles at three frames, sample 0", _png(fig)))

    fig, ax = plt.subplots(figsize=(7, 3.5))
    steps = np.arange(init, init + len(ev.curves["ups"]))
    ax.plot(steps, ev.curves["ups"], "C0", label=f"UPS ({ev.metrics['nrmse']:.4f})")
    ax.plot(steps, ev.curves["ups_ttc"], "C3--", label=f"UPS + TTC ({ev.metrics['nrmse_ttc']:.4f})")
    for i, row in enumerate(baselines):
        if row.get("nrmse") is not None:
            ax.axhline(float(row["nrmse"]), color=f"C{i + 4}", lw=0.8, ls=":",
                       label=f"{row.get('name')} (mean {float(row['nrmse']):.4f})")
    ax.set_xlabel("frame")
    ax.set_ylabel("nRMSE")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    figs.append(("nRMSE over time (test mean)", _png(fig)))
    return figs


def _table_rows(ev: EvalOutput, baselines: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    m = ev.metrics
    rows = [
        {"model": "ups", "run_id": run_id, **{k: m.get(k) for k in metrics.METRIC_KEYS}, "ece": m.get("ece"),
         "params": m["params"], "seconds": m["eval_s"] - m["ttc_s"],
         **{k: m.get(k) for k in metrics.PDEBENCH_SET_KEYS}},
        {"model": "ups+ttc", "run_id": run_id, "nrmse": m["nrmse_ttc"], "nrmse_pdebench": m["nrmse_ttc_pdebench"],
         **{k: m[f"{k}_ttc"] for k in ("conservation_gap", "energy_violation", "bc_violation", "rollout_horizon")},
         "ece": None, "params": m["params"], "seconds": m["ttc_s"],
         **{k: m.get(f"{k}_ttc") for k in metrics.PDEBENCH_SET_KEYS}},
    ]
    if m.get("recon_nrmse") is not None:  # the autoencoder's round trip of the true frames (ups.reconstruction)
        rows.append({"model": "ups autoencoder round trip", "run_id": run_id,
                     **{k.removeprefix("recon_"): m.get(k) for k in RECON_KEYS}})  # nrmse, frmse_*_pdebench
    for b in baselines:
        rows.append({"model": f"baseline:{b.get('name')}", "run_id": run_id,
                     **{k: b.get(k) for k in metrics.METRIC_KEYS}, "ece": b.get("ece"),
                     "params": b.get("params"), "seconds": b.get("train_s"),
                     **{k: b.get(k) for k in metrics.PDEBENCH_SET_KEYS}})
    return rows


def _html(title: str, rows: list[dict[str, Any]], ev: EvalOutput, info: dict[str, Any],
          figs: list[tuple[str, str]]) -> str:
    import pandas as pd

    table = pd.DataFrame(rows).to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–")
    notes = "".join(f"<li>{html.escape(n)}</li>" for n in ev.notes) or "<li>none</li>"
    meta = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in info.items())
    imgs = "".join(f"<h3>{html.escape(c)}</h3><img src='data:image/png;base64,{b}'/>" for c, b in figs)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}img{max-width:100%}</style>"
            f"</head><body><h1>{html.escape(title)}</h1><table>{meta}</table><h2>Metrics</h2>{table}"
            f"<h2>Notes</h2><ul>{notes}</ul>{imgs}</body></html>")


def _atomic_write_all(files: dict[Path, str]) -> None:
    """Write every file to a temp sibling first, then rename them all (no half-written set)."""
    with contextlib.ExitStack() as stack:  # each atomic_path renames on the stack's clean exit, none on an error
        for path, text in files.items():
            stack.enter_context(atomic_path(path)).write_text(text, encoding="utf-8")


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.generic,)):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    return str(v)


def output_paths(out_dir: Path, run_id: str, fingerprint: str) -> tuple[str, dict[str, Path]]:
    """``eval_<run_id>.*``; if that name holds an eval of other data/settings, add a fingerprint."""
    stem = f"eval_{run_id}"
    existing = out_dir / f"{stem}.json"
    if existing.exists():
        try:
            old = json.loads(existing.read_text()).get("fingerprint")
        except (OSError, ValueError):
            old = None
        if old != fingerprint:
            stem = f"{stem}_{fingerprint[:8]}"
    return stem, {ext: out_dir / f"{stem}.{ext}" for ext in ("json", "csv", "html")}


def main(argv: list[str]) -> int:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.split("\n\n")[0] + "\n\n" + USAGE)
        return 0
    ckpt_arg, updates = parse_args(argv)
    stored, record = checkpoint_source(ckpt_arg)
    fno = record.get("baselines_run")
    try:  # a hand-edited or partial record: ignored (eval.fno_budget_s as given), not a traceback
        fno = {"fno_budget_s": float(fno["fno_budget_s"]), "fno_steps": int(fno.get("fno_steps") or 0),
               "seed": int(fno["seed"])}
        fno = fno if math.isfinite(fno["fno_budget_s"]) and fno["fno_budget_s"] >= 0 and fno["fno_steps"] >= 0 \
            else None
    except (TypeError, KeyError, ValueError):
        fno = None
    if not stored.startswith("s3://"):
        return _evaluate_checkpoint(stored, None, updates, fno)
    from ups.reports.sources import checkpoint_file

    with checkpoint_file(stored) as local:  # the download is deleted when the evaluation ends, errors included
        return _evaluate_checkpoint(str(local), stored, updates, fno)


def unfinished_note(state: dict[str, Any], cfg: Any) -> str:
    """A note for a checkpoint saved before training finished (a trial ASHA stopped, a run cut short): which stage
    and epoch it holds, and, before the diffusion stages, that its TTC and ECE figures sample an untrained
    residual.  Empty for a final checkpoint."""
    from ups.train.stages import STAGES
    from ups.train.trainer import budget_cut_stage

    stage = str(state.get("stage", ""))
    if stage == "done" and state.get("budget_hit"):  # final, but a time budget cut a stage short
        try:
            history = state.get("history") or []
            history = json.loads(history) if isinstance(history, str) else history
            stage = budget_cut_stage(history) or stage
        except (TypeError, ValueError):
            pass
    if stage == "done" or stage not in STAGES:
        return ""
    later = [st for st in STAGES[STAGES.index(stage) + 1:] if int(cfg.stages[st].epochs) > 0]
    text = (f"the checkpoint is from the middle of training: stage {stage}, epoch {state.get('epoch')} "
            f"({state.get('global_epoch')} epochs in all)" if state.get("stage") != "done" else
            f"the checkpoint is final, but a time budget cut training short in stage {stage}")
    if stage in ("autoencoder", "operator") and any(st in later for st in ("diff_residual", "consistency_distill")):
        text += ("; its diffusion residual is untrained, so the TTC and ECE figures (which sample it) do not "
                 "describe a trained model")
    elif later:
        text += f"; untrained still: {', '.join(later)}"
    return text


def checkpoint_source(arg: str) -> tuple[str, dict[str, Any]]:
    """``checkpoint=…`` as given → (the checkpoint to load: a local path or an ``s3://`` URI, the champion record
    it came from or {}).  ``champion`` (for ``reports/champion.json``) or a ``….json`` champion record stands for
    the checkpoint it records; a relative one recorded there is looked for from here, then from the folder above
    the record's (the checkout)."""
    if arg != "champion" and not arg.endswith(".json"):
        return arg, {}
    from ups.reports.sources import DEFAULT_CHAMPION, champion_checkpoint

    rec, stored, base = champion_checkpoint(DEFAULT_CHAMPION if arg == "champion" else arg)  # local, or on S3
    if base is None or stored.startswith("s3://") or Path(stored).expanduser().is_absolute() or Path(stored).exists():
        return stored, rec
    beside = base / stored
    return (str(beside) if beside.exists() else stored), rec


def other_data_note(state: dict[str, Any], data: Any) -> str:
    """A note when the checkpoint was trained on other data than it is evaluated on (its ``data_hash``): another
    file or ``data.*`` setting, or the same settings after the data generator changed (``DATA_VERSION``), whose
    figures do not compare with the checkpoint's leaderboard row."""
    trained, here = str(state.get("data_hash") or ""), str(getattr(data, "data_hash", "") or "")
    n = min(len(trained), len(here))
    if not n or trained[:n] == here[:n]:
        return ""
    return (f"the checkpoint was trained and scored on data {trained[:12]}, this evaluation's is {here[:12]} (another "
            f"file or data.* setting, or the same settings after the data generator changed: "
            f"ups.data.cache.DATA_VERSION): these figures do not compare with its leaderboard row")


def _evaluate_checkpoint(ckpt_path: str, stored_as: str | None, updates: dict[str, Any],
                         sweep_fno: dict[str, Any] | None = None) -> int:
    """``main`` on a local checkpoint file; ``stored_as``: the ``s3://`` URI it was downloaded from (recorded in
    the outputs instead of the temporary copy); ``sweep_fno``: the champion record's ``baselines_run`` (the FNO
    budget and seed of the sweep that crowned it), used for the FNO baseline unless ``eval.fno_budget_s`` is
    given, so the FNO is the one the promotion compared with (and cached)."""
    from ups.data.protocol import load_protocol
    from ups.train.checkpoint import CheckpointError, load_checkpoint

    try:
        model, ckpt_cfg, state = load_checkpoint(ckpt_path)
    except CheckpointError as e:
        raise ConfigError(str(e).replace(ckpt_path, stored_as) if stored_as else str(e)) from None
    if stored_as:
        state["path"] = stored_as
    cfg = apply_overrides(ckpt_cfg, updates, source="ups eval")
    if int(cfg.eval.max_samples) == 0:  # 0 means "no test evaluation" (a training run's setting): nothing to do
        raise ConfigError("ups eval: eval.max_samples=0 evaluates no test sample. Fix: eval.max_samples=-1 (all) "
                          "or a count")
    TTCSettings.from_cfg(cfg.ttc)  # bad TTC settings fail before any data is read
    check_protocol_overrides(ckpt_cfg, cfg)
    try:
        # the test split is what is scored; the baselines fit on the training split; validation is unused
        data = load_protocol(cfg.data, check_config=False,  # compared with the checkpoint below
                             need=("train", "test") if cfg.eval.baselines else ("test",))
    except (FileNotFoundError, OSError, KeyError) as e:
        raise ConfigError(f"eval data '{cfg.data.path}': {e}. Fix: pass data=<PDEBench-layout HDF5 file>") from None
    except ConfigError:
        raise
    except ValueError as e:  # DataFileError names file, key and fix
        raise ConfigError(str(e)) from None
    source = str(getattr(data, "source", cfg.data.path))
    grid, notes = check_eval_data(ckpt_cfg, int(state["grid_size"]), data, source)
    if (stage_note := unfinished_note(state, ckpt_cfg)):
        notes.insert(0, stage_note)
    if (nu_note := unnamed_nu_note(cfg)):
        notes.append(nu_note)
    if (data_note := other_data_note(state, data)):
        notes.append(data_note)
    check_test_unseen(ckpt_cfg, cfg, data, source)
    from ups.outputs import check_writable_folder

    # before the evaluation: an out_dir that cannot take the files lost it to a traceback at the end
    check_writable_folder(Path(str(cfg.eval.out_dir)).expanduser(), "ups eval eval.out_dir", "eval.out_dir=reports")
    torch.set_num_threads(max(1, int(cfg.training.num_threads)))
    for n in notes:
        print(f"note: {n}")

    ev = evaluate_detailed(model, cfg, data, "test", grid=grid)
    ev.notes.extend(notes)
    baselines: list[dict[str, Any]] = []
    if cfg.eval.baselines:
        from ups.baselines import run_baselines

        cache = Path(str(cfg.data.cache_dir)).expanduser().parent / "baselines"
        budget, fno_seed, steps = float(cfg.eval.fno_budget_s), int(cfg.training.seed), 0
        if sweep_fno and "eval.fno_budget_s" not in updates:
            budget, fno_seed = float(sweep_fno["fno_budget_s"]), int(sweep_fno["seed"])
            steps = int(sweep_fno.get("fno_steps") or 0)
            ev.notes.append(f"the FNO baseline is the champion's sweep's: "
                            f"{f'{steps} steps' if steps else f'{budget:g} s'} of training, seed {fno_seed} "
                            f"(eval.fno_budget_s=… trains another)")
        baselines = [dict(r) for r in run_baselines(data, budget, fno_seed, cache, fno_steps=steps or None,
                                                      max_samples=int(cfg.eval.max_samples))]
        if budget <= 0 and not steps:
            ev.notes.append("no FNO baseline: eval.fno_budget_s=0 trains none (persistence and linear only); "
                            "eval.fno_budget_s=60 trains one")
            print(f"note: {ev.notes[-1]}")
        # the same trajectories as UPS: with eval.max_samples=N they scored the whole split, UPS its first N
        n = int(ev.metrics["n_samples"])
        ev.notes.append(f"baselines are evaluated on the same {n} test trajectories of the same file"
                        + (f" (the first {n} of {int(data.test.shape[0])}: eval.max_samples)"
                           if n < int(data.test.shape[0]) else ""))

    run_id = _run_id(cfg, state)
    m = ev.metrics
    fingerprint = hashlib.sha1(json.dumps(  # the checkpoint too: a run's epoch_N/ and final/ share its run_id
        [str(getattr(data, "data_hash", source)), to_dict(cfg)["ttc"], to_dict(cfg)["eval"], to_dict(cfg)["data"],
         _where(state["path"])],
        sort_keys=True, default=str).encode()).hexdigest()
    out_dir = Path(str(cfg.eval.out_dir)).expanduser()
    stem, paths = output_paths(out_dir, run_id, fingerprint)
    info = {"run_id": run_id, "checkpoint": state["path"], "stage": state.get("stage"), "epoch": state.get("epoch"),
            "data": source, "data_hash": getattr(data, "data_hash", None), "split": "test",
            "samples": m["n_samples"], "grid": f"{m['grid']} (model {m['model_grid']})",
            "ttc": f"k={cfg.ttc.candidates} w={cfg.ttc.beam_width} h={cfg.ttc.horizon} "
                   f"threshold={cfg.ttc.threshold} enabled={cfg.ttc.enabled}"}
    rows = _table_rows(ev, baselines, run_id)
    import pandas as pd

    record = {"run_id": run_id, "fingerprint": fingerprint, "info": info, "metrics": m, "baselines": baselines,
              "curves": ev.curves, "notes": ev.notes, "config": to_dict(cfg)}
    files = {
        paths["json"]: json.dumps(_jsonable(record), indent=2),
        paths["csv"]: pd.DataFrame(rows).to_csv(index=False),
        paths["html"]: _html(f"UPS evaluation — {run_id}", rows, ev, info, _figures(ev, baselines)),
    }
    _atomic_write_all(files)
    gain = m["ttc_gain"] * 100
    lo, hi = m["ttc_gain_ci95"]
    interval = (f", 95% interval {lo * 100:+.1f}…{hi * 100:+.1f} over {m['n_samples']} test samples"
                if m["n_samples"] >= MIN_SAMPLES else f", {m['n_samples']} test samples: too few for an interval")
    ttc = (f"with TTC {m['nrmse_ttc']:.4f} ({gain:+.1f}% vs without{interval}; TTC searched "
           f"{m['ttc_intervention_rate'] * 100:.0f}% of steps)" if cfg.ttc.enabled else "TTC off (ttc.enabled=false)")
    print(f"nRMSE {m['nrmse']:.4f} (PDEBench-style {m['nrmse_pdebench']:.4f}) | {ttc} | "
          f"conservation {m['conservation_gap']:.3g} energy {m['energy_violation']:.3g} bc {m['bc_violation']:.3g} "
          f"ECE {m['ece'] if m['ece'] is None else round(m['ece'], 4)} horizon {m['rollout_horizon']:.1f} | "
          f"eval {m['eval_s']:.1f}s (TTC {m['ttc_s']:.1f}s) | {m['params']} params")
    print("PDEBench metric set (all frames, test batches of 50; without / with TTC): "
          + ", ".join(f"{name} {m[key]:.4g} / {m[f'{key}_ttc']:.4g}" for key, name in PDEBENCH_NAMES.items()))
    if m.get("recon_nrmse") is not None:
        share = m["recon_nrmse"] / m["nrmse"] if m["nrmse"] > 0 else math.nan
        print(f"autoencoder round trip of the true frames (the error left with a perfect operator): nRMSE "
              f"{m['recon_nrmse']:.4f} ({share:.0%} of the forecast's), fRMSE low/mid/high "
              + " / ".join(f"{m[f'recon_frmse_{b}_pdebench']:.4g}" for b in ("low", "mid", "high"))
              + " (forecast: " + " / ".join(f"{m[f'frmse_{b}_pdebench']:.4g}" for b in ("low", "mid", "high")) + ")")
    if gain > 50:
        print("warning: a TTC gain this large is what target leakage looks like (README: \"TTC is honest\"); the "
              "rewards here see only context frames, so check the deterministic rollout instead (is it broken?)")
    for b in baselines:
        steps = int(b.get("fno_steps") or 0)
        length = f"{steps} steps" if steps else f"{float(b.get('fno_budget_s') or 0):g} s"
        trained = (f" (trained {length}, seed {b.get('seed')})"
                   if b.get("name") == "fno" and b.get("fno_budget_s") is not None else "")
        print(f"baseline {b.get('name')}: nRMSE {float(b.get('nrmse', math.nan)):.4f}{trained}")
    print(f"wrote {paths['json']}, {paths['csv'].name}, {paths['html'].name}")
    return 0
