"""Hyperparameter importance from finished trials via an in-memory Optuna study.

Method, in order of preference (the one used is returned and printed under the plot):
1. Optuna fANOVA (``FanovaImportanceEvaluator``), when scikit-learn is installed;
2. Optuna PED-ANOVA (``PedAnovaImportanceEvaluator``), dependency-free;
3. fallback when Optuna cannot rank (fewer than ``MIN_TRIALS`` finished trials, or the evaluator
   fails): |Spearman rank correlation| between each parameter and the objective, normalised to sum 1.
   Below ``MIN_RANKED`` finished trials there is no importance at all: two points give every varying
   parameter |ρ| = 1, i.e. equal bars that only look like a finding.
Distributions are inferred from the observed values: floats spanning ≥ 2 decades (all > 0) are
log-uniform, ints are integer ranges, anything else is categorical (lists stringified).
"""
from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pandas as pd

MIN_TRIALS = 4
MIN_RANKED = 3
IGNORED_PREFIXES = ("run.", "data.path", "data.cache_dir", "eval.out_dir", "training.device")


def varying_params(configs: list[dict[str, Any]]) -> list[str]:
    """Dotted keys whose value differs between the (flattened) configs."""
    from ups.config import flatten

    flat = [flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f})
    out = []
    for k in keys:
        if k.startswith(IGNORED_PREFIXES):
            continue
        vals = {_hashable(f.get(k)) for f in flat}
        if len(vals) > 1:
            out.append(k)
    return out


def _hashable(v: Any) -> Any:
    return str(v) if isinstance(v, (list, dict)) else v


def _distribution(values: pd.Series):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    v = values.dropna()
    is_bool = v.map(lambda x: isinstance(x, (bool, np.bool_))).all()
    numeric = pd.to_numeric(v, errors="coerce")
    if not is_bool and numeric.notna().all() and len(v):
        lo, hi = float(numeric.min()), float(numeric.max())
        if lo == hi:
            return None
        if (numeric == numeric.round()).all() and v.map(lambda x: isinstance(x, (int, np.integer))).all():
            return IntDistribution(int(lo), int(hi))
        log = lo > 0 and hi / lo >= 100
        return FloatDistribution(lo, hi, log=log)
    cats = sorted({str(x) for x in v})
    return CategoricalDistribution(cats) if len(cats) > 1 else None


def param_importance(df: pd.DataFrame, params: list[str], objective: str = "nrmse") -> tuple[dict[str, float], str]:
    """Importance of each parameter for ``objective`` (minimised) → ({param: share}, method)."""
    d = df[df[objective].notna() & np.isfinite(pd.to_numeric(df[objective], errors="coerce"))]
    dists = {}
    for p in params:
        if p in d:
            dist = _distribution(d[p])
            if dist is not None:
                dists[p] = dist
    if not dists:
        return {}, "none: no parameter varies between finished trials"
    if len(d) < MIN_RANKED:
        return {}, (f"none: only {len(d)} finished trial(s) with a {objective}; a ranking needs ≥ {MIN_RANKED} "
                    "(trials stopped early have no final evaluation)")
    if len(d) >= MIN_TRIALS:
        try:
            return _optuna_importance(d, dists, objective)
        except Exception as e:  # evaluator failures on degenerate data fall back below
            method_note = f" ({e})" if isinstance(e, ValueError) else f" (Optuna failed: {type(e).__name__}: {e})"
    else:
        method_note = f" (only {len(d)} finished trial(s); Optuna needs ≥ {MIN_TRIALS})"
    return _spearman(d, list(dists), objective), "|Spearman rank correlation| fallback" + method_note


def _optuna_importance(d: pd.DataFrame, dists: dict, objective: str) -> tuple[dict[str, float], str]:
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.importance import FanovaImportanceEvaluator, PedAnovaImportanceEvaluator

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize")
    for _, row in d.iterrows():
        params = {}
        for k, dist in dists.items():
            v = row[k]
            if isinstance(dist, CategoricalDistribution):
                params[k] = str(v)
            elif isinstance(v, float) and math.isnan(v):
                params = None
                break
            else:
                params[k] = int(v) if type(dist).__name__ == "IntDistribution" else float(v)
        if params is None:
            continue
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=float(row[objective])))
    try:
        import sklearn  # noqa: F401

        evaluator, method = FanovaImportanceEvaluator(seed=0), "Optuna fANOVA"
    except ImportError:
        evaluator, method = PedAnovaImportanceEvaluator(), "Optuna PED-ANOVA"
    with warnings.catch_warnings():  # "importances will be equal" on few trials: judged below, and refused
        warnings.simplefilter("ignore")
        imp = optuna.importance.get_param_importances(study, evaluator=evaluator)
    vals = np.array(list(imp.values()), dtype=float)
    if not len(vals) or not np.isfinite(vals).all() or vals.sum() <= 0:
        raise ValueError(f"{method} found no ranking in the {len(study.trials)} trial(s) that set every parameter")
    return {k: float(v) for k, v in imp.items()}, f"{method} on {len(study.trials)} finished trials"


def _spearman(d: pd.DataFrame, params: list[str], objective: str) -> dict[str, float]:
    y = pd.to_numeric(d[objective], errors="coerce").rank()
    raw = {}
    for p in params:
        x = d[p]
        xr = pd.to_numeric(x, errors="coerce")
        xr = (xr if xr.notna().all() else x.astype(str).astype("category").cat.codes.astype(float)).rank()
        c = float(np.corrcoef(xr, y)[0, 1]) if len(d) > 1 and xr.std() > 0 and y.std() > 0 else 0.0
        raw[p] = abs(c) if math.isfinite(c) else 0.0
    total = sum(raw.values())
    if total <= 0:
        return {p: 0.0 for p in params}
    return dict(sorted(((p, v / total) for p, v in raw.items()), key=lambda kv: -kv[1]))
