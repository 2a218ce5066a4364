"""Does TTC help small models more?  The dims round's answer, with its uncertainty.

Each dims trial's final evaluation records the per-test-sample nRMSE without and with TTC
(leaderboard column ``eval_samples_json``).  For one model the TTC gain is
``1 - mean(nrmse_ttc) / mean(nrmse)`` over the test samples, and for the question the quantity is the
**slope of that gain against log2(latent.dim)**: negative = TTC's gain shrinks as the model grows.

Both come with a paired bootstrap over test samples: every draw resamples the same sample indices for
every dim (all trials are evaluated on the same test split), so the comparison between dims is paired
as well.  Training noise: with one training seed per dim (the dims round's default) the interval does not
hold it, and a verdict says what these trained models do on this test set.  ``num_samples`` beyond one
pass of the grid trains every dim again with the next training seeds (``python sweeps/dims.py
num_samples=15``: 5 dims × 3 seeds, ``ups.tune.prepare.grid_seed_passes``); a dim's gain is then the mean
over its seeds, and each bootstrap draw resamples the seeds of every dim as well, so the interval holds
the seed-to-seed spread of the gain too.

The verdict is "yes" (the slope's interval is below 0), "no" (above 0: TTC helps larger models more),
"no difference resolved" (the interval spans 0), "too few test samples" (under ``MIN_SAMPLES``: the
interval is shown but not read), or "not answerable" (fewer than two dims with per-sample figures, or
TTC did nothing in any of them).  Ray-free: used by ``sweeps/dims.py`` and the notebook.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

CONFIDENCE = 0.95
_Q = ((1 - CONFIDENCE) / 2, 1 - (1 - CONFIDENCE) / 2)  # the interval's quantiles
_DRAW_CELLS = 2_000_000  # resampled indices held at once (16 MB): a 20,000-sample split is drawn in chunks
# below this many test samples a percentile bootstrap under-covers badly (the smoke profile evaluates 8):
# the interval is still printed, but no yes/no is read from it
MIN_SAMPLES = 20


@dataclass
class DimGain:
    """One dim's TTC gain, with a ``CONFIDENCE`` paired-bootstrap interval over test samples."""

    dim: int
    params: int | None
    nrmse: float
    nrmse_ttc: float
    gain: float  # 1 - nrmse_ttc / nrmse (0.05: TTC lowers nRMSE by 5 %)
    lo: float = math.nan
    hi: float = math.nan
    n_samples: int = 0
    seeds: int = 1  # training seeds (rows) the gain averages
    recon_nrmse: float = math.nan  # the autoencoder's round trip (ups.reconstruction), mean over the seeds

    @property
    def resolved(self) -> bool:
        """The interval excludes 0: TTC helps (or hurts) this model beyond test-sample noise."""
        return self.n_samples > 0 and (self.lo > 0 or self.hi < 0)


@dataclass
class Verdict:
    """The answer to "does TTC help small models more?"."""

    answer: str  # "yes" | "no" | "no difference resolved" | "too few test samples" | "not answerable"
    slope: float = math.nan  # change of the gain per doubling of latent.dim (-0.02: 2 points less per doubling)
    lo: float = math.nan
    hi: float = math.nan
    text: str = ""
    dims: list[DimGain] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"question": "does TTC help small models more?", "answer": self.answer, "slope_per_doubling": self.slope,
                "ci": [self.lo, self.hi], "confidence": CONFIDENCE, "text": self.text,
                "dims": [asdict(d) for d in self.dims]}


def newest_experiment(leaderboard: Any) -> str | None:
    """The sweep (``experiment``) of a leaderboard DataFrame's newest trial row; None without trial rows."""
    df = leaderboard[leaderboard["kind"] == "trial"]
    return None if df.empty else str(df.sort_values("timestamp").iloc[-1]["experiment"])


def verdict_file(folder: Path, experiment: str) -> Path:
    """Where a dims sweep's verdict is written: ``ttc_by_dim_<experiment>.json`` next to its report (the sweep
    writes it, and ``ups report round=dims`` writes it again from the leaderboard)."""
    return Path(folder) / f"ttc_by_dim_{experiment}.json"


def write_verdict(path: Path, verdict: Verdict) -> Path:
    """``verdict`` as JSON at ``path`` (``Verdict.as_dict``); returns the path."""
    Path(path).write_text(json.dumps(verdict.as_dict(), indent=1, default=str))
    return Path(path)


def dims_rows(leaderboard: Any, experiment: str | None = None) -> list[dict[str, Any]]:
    """The inputs of ``ttc_verdict`` from a leaderboard DataFrame: the trial rows of one dims sweep
    (``experiment``; default the one with the newest trial row), ``dim`` read from ``sampled_json``."""
    df = leaderboard[leaderboard["kind"] == "trial"]
    experiment = experiment if experiment is not None else newest_experiment(leaderboard)
    if df.empty or experiment is None:
        return []
    out = []
    for _, r in df[df["experiment"] == experiment].iterrows():
        try:
            sampled = json.loads(r.get("sampled_json") or "{}")
        except (TypeError, ValueError):
            sampled = {}
        sampled = sampled if isinstance(sampled, dict) else {}
        out.append({"dim": sampled.get("latent.dim"), "seed": sampled.get("training.seed"), "params": r.get("params"),
                    "nrmse": r.get("nrmse"), "nrmse_ttc": r.get("nrmse_ttc"), "recon_nrmse": r.get("recon_nrmse"),
                    "eval_samples_json": r.get("eval_samples_json", "")})
    return out


def read_eval_samples(cell: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(nrmse, nrmse_ttc) per test sample from an ``eval_samples_json`` cell; None when absent or unusable."""
    if not isinstance(cell, str) or not cell.strip():
        return None
    try:
        d = json.loads(cell)
        a = np.asarray(d["nrmse"], dtype=float)
        b = np.asarray(d["nrmse_ttc"], dtype=float)
    except (ValueError, KeyError, TypeError):
        return None
    if a.ndim != 1 or a.shape != b.shape or a.size == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return None
    return a, b


def _gain(plain: np.ndarray, ttc: np.ndarray) -> np.ndarray:
    """1 - mean(ttc) / mean(plain) along the last axis (per bootstrap draw when 2-D)."""
    m = plain.mean(axis=-1)
    return np.where(m > 0, 1.0 - ttc.mean(axis=-1) / np.where(m > 0, m, 1.0), 0.0)


def _boot(samples: list[tuple[np.ndarray, np.ndarray]], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, D) bootstrap TTC gains of D models evaluated on the same test samples (paired: every draw
    resamples the same indices for all of them), drawn in chunks of at most ``_DRAW_CELLS`` indices."""
    n = samples[0][0].size
    chunk = max(1, min(n_boot, _DRAW_CELLS // n))
    parts = []
    for k in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - k), n))
        parts.append(np.stack([_gain(a[idx], b[idx]) for a, b in samples], axis=-1))
    return np.concatenate(parts)


def gain_interval(plain: Any, ttc: Any, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """One model's TTC gain interval (``CONFIDENCE``), a paired bootstrap over its test samples: per-sample
    nRMSE without (``plain``) and with TTC (``ttc``).  (nan, nan) without samples."""
    a, b = np.asarray(plain, dtype=float), np.asarray(ttc, dtype=float)
    if a.size == 0 or a.shape != b.shape:
        return math.nan, math.nan
    lo, hi = np.quantile(_boot([(a, b)], n_boot, np.random.default_rng(seed))[:, 0], _Q)
    return float(lo), float(hi)


def mean_difference_interval(a: Any, b: Any, *, n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """``CONFIDENCE`` interval of ``mean(b) - mean(a)`` for two models scored on the same test samples (paired:
    every draw resamples the same indices for both).  (nan, nan) when the two do not pair up."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.ndim != 1 or x.size == 0 or x.shape != y.shape:
        return math.nan, math.nan
    d = y - x  # (N,) per-sample differences: their mean is the difference of the means
    rng = np.random.default_rng(seed)
    chunk = max(1, min(n_boot, _DRAW_CELLS // d.size))
    draws = np.concatenate([d[rng.integers(0, d.size, size=(min(chunk, n_boot - k), d.size))].mean(axis=1)
                            for k in range(0, n_boot, chunk)])
    lo, hi = np.quantile(draws, _Q)
    return float(lo), float(hi)


def _slope(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares slope of y (..., D) against x (D,)."""
    xc = x - x.mean()
    return (y - y.mean(axis=-1, keepdims=True)) @ xc / float(xc @ xc)


def ttc_verdict(rows: Iterable[Mapping[str, Any]], *, n_boot: int = 4000, seed: int = 0) -> Verdict:
    """The verdict from the dims round's trial rows (``dim`` = latent.dim, ``params``, ``nrmse``,
    ``nrmse_ttc``, ``eval_samples_json``, optionally ``seed`` = training.seed).  Rows without per-sample
    figures are listed with their point gain but no interval, and take no part in the slope.

    Several rows of one dim (training seeds: ``num_samples`` beyond one pass of the dims grid) make that dim's
    gain the mean of its seeds' gains, and every bootstrap draw resamples the seeds of each dim as well as
    the test samples, so the interval holds training noise too (the seeds' part of each draw widened by
    √(k/(k−1)): resampling k values understates the spread of their mean by that factor)."""
    from ups.leaderboard import finite_or_none  # pandas: only where a leaderboard is read, not in ups.eval's import

    by_dim: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        try:
            by_dim.setdefault(int(r["dim"]), []).append(r)
        except (TypeError, ValueError, KeyError):
            continue
    dims: list[DimGain] = []
    per: dict[int, list[tuple[np.ndarray, np.ndarray]]] = {}  # dim → per seed (nrmse, nrmse_ttc) per test sample
    for dim, group in by_dim.items():
        with_samples = [s for r in group if (s := read_eval_samples(r.get("eval_samples_json"))) is not None]
        if with_samples:
            per[dim] = with_samples
            nr = float(np.mean([a.mean() for a, _ in with_samples]))
            nt = float(np.mean([b.mean() for _, b in with_samples]))
            gain = float(np.mean([_gain(a, b) for a, b in with_samples]))
            n_seeds = len(with_samples)
        else:
            pts = [(a, b) for r in group if (a := finite_or_none(r.get("nrmse"))) is not None and a > 0
                   and (b := finite_or_none(r.get("nrmse_ttc"))) is not None]
            nr = float(np.mean([a for a, _ in pts])) if pts else math.nan
            nt = float(np.mean([b for _, b in pts])) if pts else math.nan
            gain = float(np.mean([1.0 - b / a for a, b in pts])) if pts else math.nan
            n_seeds = max(1, len(pts))
        p = group[0].get("params")
        trips = [v for r in group if (v := finite_or_none(r.get("recon_nrmse"))) is not None]
        dims.append(DimGain(dim, int(p) if isinstance(p, numbers.Real) and math.isfinite(float(p)) else None,
                            nr, nt, gain, n_samples=int(with_samples[0][0].size) if with_samples else 0,
                            seeds=n_seeds, recon_nrmse=float(np.mean(trips)) if trips else math.nan))
    dims.sort(key=lambda d: d.dim)
    rng = np.random.default_rng(seed)
    sizes = {s[0].size for group in per.values() for s in group}
    paired = len(sizes) == 1  # the same test split for every model: resample the same indices for all
    models = [(dim, k) for dim, group in per.items() for k in range(len(group))]
    if paired:
        cols = _boot([per[d][k] for d, k in models], n_boot, rng)  # (n_boot, models)
    else:
        cols = np.stack([_boot([per[d][k]], n_boot, rng)[:, 0] for d, k in models], axis=-1) if models \
            else np.zeros((n_boot, 0))
    boot: dict[int, np.ndarray] = {}  # dim → (n_boot,) gains, seeds resampled within each draw
    for dim, group in per.items():
        own = cols[:, [i for i, (d, _) in enumerate(models) if d == dim]]  # (n_boot, k)
        k = own.shape[1]
        centre = own.mean(axis=1)  # (n_boot,) the k seeds' mean gain on this draw's test samples
        if k == 1:
            boot[dim] = centre
            continue
        resampled = np.take_along_axis(own, rng.integers(0, k, size=(n_boot, k)), axis=1).mean(axis=1)
        # the seeds' part of the draw, widened by √(k/(k−1)): a resampled mean of k values varies (k−1)/k as
        # much as the mean of k new ones would (the residual bootstrap's correction, Davison & Hinkley §6.2)
        boot[dim] = centre + math.sqrt(k / (k - 1)) * (resampled - centre)
    for d in dims:
        if d.dim in boot:
            d.lo, d.hi = (float(v) for v in np.quantile(boot[d.dim], _Q))

    usable = sorted(boot)
    if len(usable) < 2:
        return Verdict("not answerable", text=f"not answerable: {len(usable)} dim(s) with per-sample figures "
                       "(two are needed; a dims sweep that finished records them on the leaderboard)", dims=dims)
    if all(np.allclose(a, b) for d in usable for a, b in per[d]):
        return Verdict("not answerable", text="not answerable: TTC changed no forecast in any dim (ttc.enabled "
                       "off, or ttc.threshold too high for any step to be searched)", dims=dims)
    x = np.log2(np.asarray(usable, dtype=float))
    gains = {d.dim: d.gain for d in dims}  # each dim's mean gain over its seeds, computed above
    point = float(_slope(x, np.asarray([gains[d] for d in usable], dtype=float)))
    draws = _slope(x, np.stack([boot[d] for d in usable], axis=-1))  # (n_boot,)
    lo, hi = (float(v) for v in np.quantile(draws, _Q))
    counts = sorted({len(per[d]) for d in usable})
    if counts == [1]:
        seeds_text = "one training seed per dim, so training noise is not in the interval"
    else:
        k = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
        seeds_text = f"{k} training seeds per dim, resampled too: training noise is in the interval"
    span = (f"{point * 100:+.2f} percentage points of TTC gain per doubling of latent.dim, {CONFIDENCE:.0%} interval "
            f"{lo * 100:+.2f}…{hi * 100:+.2f} ({'paired ' if paired else ''}bootstrap over "
            f"{'/'.join(str(s) for s in sorted(sizes))} test samples, dims {', '.join(map(str, usable))}; "
            f"{seeds_text})")
    samples = ("More test samples (the whole test split with eval.max_samples=-1, more with a larger data.n or "
               "profile=full)")
    more = (f"{samples} or more training seeds per dim (num_samples = dims × seeds) narrow it" if counts == [1] else
            f"{samples} or more training seeds narrow it")
    if min(sizes) < MIN_SAMPLES:
        return Verdict("too few test samples", point, lo, hi,
                       f"too few test samples to tell: {span}. Below {MIN_SAMPLES} test samples the interval "
                       f"is too optimistic to read; evaluate on more (eval.max_samples=-1, or profile=full)", dims)
    if hi < 0:
        return Verdict("yes", point, lo, hi, f"yes: TTC helps small models more: {span}", dims)
    if lo > 0:
        return Verdict("no", point, lo, hi, f"no: TTC helps larger models more: {span}", dims)
    return Verdict("no difference resolved", point, lo, hi, f"no difference resolved: {span}. {more}", dims)
