"""Search efficiency: ASHA + Optuna TPE vs random search with full budgets, same seeds, same compute.

Both searches run real UPS trials of the CPU smoke profile (``ups/conf/sweep/smoke.yaml``: dim32,
10 autoencoder + 30 operator epochs, ≈ 30 s a trial); the validation metric uses the whole val split
so that one lucky draw of 8 trajectories does not decide "best".  Two search spaces (``--space``):

* ``new_problem`` (default): the first sweep on a new problem, every operator-stage optimisation knob
  over the range people try when they do not know it yet: lr 1e-5…3e-2, weight decay 1e-4…1,
  batch size 8…64, grad clip 0.01…10, warmup 0…0.3, cosine|constant;
* ``round_a``: round A's knobs (lr widened to 1e-5…3e-2, warmup, EMA decay, betas): one strong knob.

For every seed of the seed set, in one process on one local Ray:

* random search (Ray's BasicVariantGenerator, FIFO, every trial to its full budget) runs
  ``--random-trials`` trials; its total compute (Σ time_this_iter_s over all trials) is the budget;
* ASHA + TPE (Optuna behind the concurrency limiter, its ``--startup`` start-up trials a Latin
  hypercube over the space by default, ``--init random`` for Optuna's random draws; ASHA rungs at ``--grace`` × ``--rf``^k
  iterations: one rung at operator epoch 10 by default, the first epoch whose rank predicts the final
  rank; with ``--set scheduler.rungs_from=operator`` at the autoencoder epochs + ``--grace`` × ``--rf``^k, e.g.
  ``--grace 1 --rf 3``: operator epochs 1, 3, 9, 27; ``rung_spearman``, from random search's full curves, is
  read at the first rung ASHA + TPE ran with) samples new configurations and stops poor ones at the rungs
  until it has used the same compute or run ``--max-asha-trials`` trials (``asha_hit_trial_cap``).

Both are pure searches from their first draw: no hand-picked first trial (``--reference`` starts both
at the space's reference point, as the sweep rounds do; a good reference makes the metric degenerate:
random search's best is then its first trial).  Reported per seed and over the seed set: each
search's best val nRMSE, the compute random search needed to reach its own best, the compute
ASHA + TPE needed to reach that same value, their ratio (target ≥ 3×), pooled (Σ over seeds) and
median, and both best-so-far curves (one PNG panel per seed).  A seed where ASHA + TPE never reaches
random's best counts with its whole budget (ratio = need_random / budget) and is flagged.

What the ratio means: an equally good searcher scores about 0.8x, not 1x.  Random search reaches its
own best on average half way through its budget, while any other searcher must beat the minimum of
someone else's draws, which an independent random search fails to do within the budget half the time
(that seed then counts with the whole budget).  ``replay_without_tpe`` measures this on the run's own
trials: random search's full-length trials of every seed, replayed in other random orders (300 times)
with no rung (the control) and through ASHA's rung rule (what the scheduler alone buys; the rest of
the measured ratio is TPE and its start-up design).  ``asha_startup_compute_s`` is what ASHA + TPE spent
on its start-up trials.  ``--pool DIR...`` pools the seeds of earlier runs of the same command.
``ratio_pooled_interval_90`` is the 5–95 % range of the pooled ratio over resampled seeds (2000
resamplings with replacement).  ``ratio_pooled_at_random_quantiles`` reads the ratio against fixed targets instead of each seed's
best-of-N draw: the 1, 5 and 10 % quantiles of all random-search trials' final val nRMSE, the same
target in every seed (a reading that does not hinge on one extreme draw per seed).
``mean_curve_speedup`` is the reading of the hyperparameter-optimisation papers (Hyperband, BOHB):
each search's best-so-far curve averaged over the seeds; random search's mean curve ends at its
budget B, and the speedup is B over the compute at which ASHA + TPE's mean curve reaches that value;
its controls (``controls``) read the same on random search's own trials replayed as pseudo-seeds.

Both searches train every trial with training seed 0, so "best" is partly the luck of one seed.
``--reseed N`` retrains each search's winning configuration with training seeds 1..N: a winner that
is really better stays better; a lucky run falls back to the pack.  ``--noise-seeds N`` trains the
default configuration with seeds 0..N-1 for the spread of one configuration.

    python benchmarks/search_efficiency.py                          # 3 seeds × 24 random trials (≈ 40 min)
    python benchmarks/search_efficiency.py --reseed 0 --noise-seeds 0  # the ratio alone (≈ 31 min)
    python benchmarks/search_efficiency.py --space round_a          # round A's space
    python benchmarks/search_efficiency.py --seeds 0 --random-trials 4 --out /tmp/se
    python benchmarks/search_efficiency.py --reseed 0 --noise-seeds 0 --seeds 3 4 5 --out /tmp/b  # more seeds, then
    python benchmarks/search_efficiency.py --pool /tmp/a /tmp/b                                     # one pooled figure

Prints one JSON object and a one-line summary.  The ``--out`` folder gets ``search_efficiency.json``,
the PNG, ``space.yaml``, Tune's folders (``runs/``, large: checkpoints) and ``trials.json.gz``: every
trial's searched values and curve.  Those three small files alone are enough for ``--pool`` and for
``benchmarks/search_surrogate.py``; keep them (or commit them) when ``runs/`` goes.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

SPACES = {
    # Round A (optimizer & schedule) with its learning-rate range widened: one strong knob. Its EMA decays are
    # the ones the 2026-11-23 run (docs/SEARCH_EFFICIENCY.md) searched: all at or above the EMA warm-up's cap over
    # the smoke profile's operator steps (ups.train.ema.warmup_decay), so they train one model: 3 live knobs, not 4
    # (search_spaces/round_a.yaml searches reachable decays since 2026-12-05; the sweep warns before Ray starts).
    "round_a": """\
description: round A (optimizer & schedule) with the learning-rate range widened for a new problem
reference:  # the playbook's balanced mid-range config: the first trial of both searches
  stages.operator.optimizer.lr: 3.0e-4
  stages.operator.warmup_steps_ratio: 0.05
  stages.operator.ema_decay: 0.9995
  stages.operator.optimizer.betas: [0.9, 0.95]
params:
  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-5, high: 3.0e-2}
  stages.operator.warmup_steps_ratio: {dist: uniform, low: 0.0, high: 0.3}
  stages.operator.ema_decay: {dist: choice, values: [0.99, 0.999, 0.9995, 0.9999]}
  stages.operator.optimizer.betas: {dist: choice, values: [[0.9, 0.95], [0.9, 0.99], [0.9, 0.999]]}
""",
    # A first sweep on a new problem: every operator-stage optimisation knob at once, each over the
    # range people try when they do not know it yet (several knobs have a bad region).
    "new_problem": """\
description: first sweep on a new problem - all operator-stage optimisation knobs, wide ranges
reference:  # generic AdamW settings (the config schema's defaults): the first trial of both searches
  stages.operator.optimizer.lr: 1.0e-3
  stages.operator.optimizer.weight_decay: 0.03
  stages.operator.batch_size: 16
  stages.operator.grad_clip: 1.0
  stages.operator.warmup_steps_ratio: 0.05
  stages.operator.scheduler: cosine
params:
  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-5, high: 3.0e-2}
  stages.operator.optimizer.weight_decay: {dist: loguniform, low: 1.0e-4, high: 1.0}
  stages.operator.batch_size: {dist: choice, values: [8, 16, 32, 64]}
  stages.operator.grad_clip: {dist: loguniform, low: 1.0e-2, high: 10.0}
  stages.operator.warmup_steps_ratio: {dist: uniform, low: 0.0, high: 0.3}
  stages.operator.scheduler: {dist: choice, values: [cosine, constant]}
""",
}


def curve(exp_dir: Path) -> list[tuple[float, float]]:
    """Best-so-far val_nrmse against cumulative trial compute (Σ time_this_iter_s in report order)."""
    h = val_reports(exp_dir)
    if "nonfinite" in h:  # NaN/Inf placeholders (the searcher's penalty value) are not results, but their
        # compute was spent (ComputeBudgetStopper counts it): kept on the axis, never a best
        h = h.assign(val_nrmse=h["val_nrmse"].where(h["nonfinite"].fillna(0) == 0, math.inf))
    h = h.assign(_order=h["timestamp"].astype(float) + 1e-6 * h["time_total_s"].fillna(0).astype(float))
    out, spent, best = [], 0.0, math.inf
    h = h.sort_values(["_order", "time_this_iter_s", "val_nrmse"])
    for dt, v in h[["time_this_iter_s", "val_nrmse"]].itertuples(index=False):
        spent += float(dt) if dt == dt else 0.0
        best = min(best, float(v))
        out.append((spent, best))
    return out


def val_reports(exp_dir: Path):
    """Every reported result that carries a val_nrmse, one row per report (ups.reports' Tune reader)."""
    from ups.reports.experiment import load_experiment

    h = load_experiment(exp_dir).histories()
    return h[h["val_nrmse"].notna()]


def compute_to_reach(c: list[tuple[float, float]], target: float) -> float | None:
    for spent, best in c:
        if best <= target + 1e-12:
            return spent
    return None


def run(name: str, overrides: list[str], root: Path) -> Path:
    from ups.tune.launcher import run_round

    out = run_round("round_a", [f"name={name}", f"storage_path={root / 'runs'}", f"leaderboard={root / 'lb.csv'}",
                                f"report_dir={root / 'reports'}", "promotion.top_k=0", "write_report=false",
                                "wandb.enabled=false", "baselines=false", "verbose=0", "print_top=0", *overrides])
    return Path(out.experiment_path)


def search_overrides(settings: dict, space: Path) -> list[str]:
    """The sweep overrides both searches share (``settings``: the benchmark's reference flag and its
    ``--set`` overrides of the profile)."""
    return ["gates.enabled=false", f"space={space}", "training.val_max_samples=-1",
            f"searcher.start_at_reference={str(settings['reference']).lower()}", *(settings.get("set") or [])]


def asha_tpe_overrides(settings: dict, space: Path) -> list[str]:
    """The ASHA + TPE search's sweep overrides (``settings``: grace, rf, startup, init, reference)."""
    return [*search_overrides(settings, space), "searcher.name=optuna", "scheduler.name=asha",
            f"scheduler.grace_period={settings['grace']}", f"scheduler.reduction_factor={settings['rf']}",
            f"searcher.n_startup_trials={settings['startup']}", f"searcher.initial_design={settings['init']}"]


def one_seed(seed: int, args: argparse.Namespace, space: Path, root: Path) -> dict:
    common = ["max_concurrent=2", f"searcher.seed={seed}"]
    rnd = run(f"random_s{seed}", [*common, *search_overrides(vars(args), space), "searcher.name=random",
                                  "scheduler.name=fifo", f"num_samples={args.random_trials}"], root)
    c_rnd = curve(rnd)
    budget = c_rnd[-1][0]
    asha = run(f"asha_tpe_s{seed}", [*common, *asha_tpe_overrides(vars(args), space),
                                     f"num_samples={args.max_asha_trials}", f"compute_budget_s={budget:.1f}"], root)
    c_asha = within(curve(asha), budget * 1.02)
    best_rnd, best_asha = c_rnd[-1][1], c_asha[-1][1]
    winners = {f"random_s{seed}": best_config(rnd, space), f"asha_tpe_s{seed}": best_config(asha, space)}
    rung_rho = rung_spearman(rnd, asha_rungs(vars(args), space)[0])  # the first rung ASHA + TPE ran with
    need_rnd = compute_to_reach(c_rnd, best_rnd) or budget
    need_asha = compute_to_reach(c_asha, best_rnd)
    reached = need_asha is not None
    ratio = need_rnd / (need_asha if reached else budget)
    n_asha = len(list(asha.glob("trial_*")))
    return {"seed": seed, "budget_trial_s": round(budget, 1), "random_trials": len(list(rnd.glob("trial_*"))),
            "asha_trials": n_asha, "best_random": round(best_rnd, 5),
            "best_asha_tpe": round(best_asha, 5), "compute_random_to_its_best_s": round(need_rnd, 1),
            "compute_asha_to_random_best_s": round(need_asha, 1) if reached else None, "reached": reached,
            "ratio": round(ratio, 2), "rung_spearman": rung_rho, "curves": {"random": c_rnd, "asha_tpe": c_asha}, "winners": winners,
            # ASHA + TPE ends at its compute budget or after --max-asha-trials trials: with cheap rungs, the cap
            # can come first, and then it had less compute than random search (its end point is not comparable)
            "asha_compute_s": round(c_asha[-1][0], 1) if c_asha else 0.0,
            "asha_hit_trial_cap": n_asha >= args.max_asha_trials}


def rung_spearman(exp_dir: Path, it: int) -> float | None:
    """Spearman rank correlation, over random search's full-budget trials, between val nRMSE at iteration
    ``it`` (ASHA's first rung) and the trial's best: how well the rung's ranking predicts the final one."""
    h = val_reports(exp_dir)
    at = h[h["training_iteration"] == it].groupby("trial_id")["val_nrmse"].last()
    best = h.groupby("trial_id")["val_nrmse"].min().reindex(at.index)
    return round(float(at.corr(best, method="spearman")), 3) if len(at) > 2 else None


def trial_reports(exp_dir: Path) -> list[tuple[str, list[int], list[float], list[float]]]:
    """Each trial's id and its (training_iteration, val_nrmse, time_this_iter_s) per report, trials in
    start order."""
    h = val_reports(exp_dir)
    out = []
    for tid, g in h.groupby("trial_id"):
        g = g.sort_values("training_iteration")
        out.append((float(g["timestamp"].min()), str(tid), g["training_iteration"].astype(int).tolist(),
                    g["val_nrmse"].astype(float).tolist(), g["time_this_iter_s"].fillna(0).astype(float).tolist()))
    return [c[1:] for c in sorted(out, key=lambda c: c[0])]


TRIALS = "trials.json.gz"  # an --out folder's trials without Tune's files: what --pool and the replay read


def read_runs(root: Path) -> dict[str, list[dict[str, Any]]]:
    """``{experiment: [{trial_id, params, its, vals, dts}, …] in start order}`` from ``root/runs``."""
    out = {}
    for exp in sorted(p for p in (root / "runs").iterdir() if p.is_dir()):
        rows = []
        for tid, its, vals, dts in trial_reports(exp):
            params = next(exp.glob(f"trial_{tid}*/params.json"), None)
            rows.append({"trial_id": tid, "params": json.loads(params.read_text()) if params else None,
                         "its": its, "vals": vals, "dts": dts})
        out[exp.name] = rows
    return out


def export_trials(root: Path) -> Path:
    """Write ``root/trials.json.gz``: every trial's searched values and curve (a few hundred kB for a
    12-seed run, against Tune's folders with checkpoints), so that ``search_efficiency.json``,
    ``space.yaml`` and this file alone can be pooled and replayed, or committed."""
    import gzip

    path = root / TRIALS
    with gzip.open(path, "wt") as f:
        json.dump(read_runs(root), f)
    return path


def experiment_trials(root: Path) -> dict[str, list[dict[str, Any]]]:
    """A run's trials, from ``root/runs`` when it is there, else from its ``trials.json.gz``."""
    import gzip

    if (root / "runs").is_dir():
        return read_runs(root)
    if (root / TRIALS).is_file():
        with gzip.open(root / TRIALS, "rt") as f:
            return json.load(f)
    sys.exit(f"{root} has neither runs/ nor {TRIALS}: give the --out folder of a finished run")


def asha_cut(its: list[int], vals: list[float], rungs: list[int], rf: float,
             recorded: dict[int, list[float]]) -> int:
    """How many of a trial's reports run under ASHA's rule (Ray's _Bracket: a trial reaching a rung
    stops if its value is worse than the 1/rf quantile of the values ``recorded`` there before it)."""
    import numpy as np

    for r in rungs:
        k = next((i for i, it in enumerate(its) if it >= r), None)
        if k is None:
            break
        seen = recorded[r]
        cut = float(np.nanpercentile(seen, 100.0 / rf)) if seen else None
        seen.append(vals[k])
        if cut is not None and vals[k] > cut:
            return k + 1
    return len(its)


def extend(c: list[tuple[float, float]], vals: list[float], dts: list[float]) -> None:
    """Append a trial's reports (their val nRMSE and compute) to the best-so-far curve ``c``."""
    spent, best = c[-1] if c else (0.0, math.inf)
    for v, dt in zip(vals, dts):
        spent, best = spent + dt, min(best, v)
        c.append((spent, best))


def replay(trials: list, rungs: list[int], rf: float) -> list[tuple[float, float]]:
    """Best-so-far against compute when ``trials`` (full-length curves) run one after another under
    ASHA's rule (``asha_cut``); no rungs: every trial runs to its end."""
    recorded: dict[int, list[float]] = {r: [] for r in rungs}
    out: list[tuple[float, float]] = []
    for its, vals, dts in trials:
        end = asha_cut(its, vals, rungs, rf, recorded)
        extend(out, vals[:end], dts[:end])
    return out


def ratio_stats(pairs: list[tuple[float, float]]) -> dict:
    """The benchmark's ratio over repetitions or seeds of (random's compute, the other's compute)."""
    import numpy as np

    a = np.array(pairs, dtype=float)
    return {"ratio_pooled": round(float(a[:, 0].sum() / a[:, 1].sum()), 2),
            "ratio_median": round(float(np.median(a[:, 0] / a[:, 1])), 2),
            "p_ratio_ge_3": round(float(np.mean(a[:, 0] / a[:, 1] >= 3.0)), 2)}


def seed_computes(per_seed: list[dict]) -> tuple[Any, Any]:
    """Per seed: random's compute to its best, ASHA + TPE's compute to it (its whole budget where it never did)."""
    import numpy as np

    return (np.array([r["compute_random_to_its_best_s"] for r in per_seed], dtype=float),
            np.array([r["compute_asha_to_random_best_s"] or r["budget_trial_s"] for r in per_seed], dtype=float))


def pooled_ratio(per_seed: list[dict]) -> float:
    """Σ random's compute to its best ÷ Σ ASHA + TPE's compute to it (``seed_computes``)."""
    need, asha = seed_computes(per_seed)
    return round(float(need.sum() / asha.sum()), 2)


def pooled_ratio_interval(per_seed: list[dict], boot: int = 2000, seed: int = 0) -> list[float]:
    """5–95 % of ``pooled_ratio`` over ``boot`` resamplings of the seeds (with replacement): how far the
    issue's pooled reading could move with another draw of as many seeds."""
    import numpy as np

    need, asha = seed_computes(per_seed)
    rows = np.random.default_rng(seed).integers(0, len(per_seed), (boot, len(per_seed)))
    return [round(float(q), 2) for q in np.quantile(need[rows].sum(1) / asha[rows].sum(1), [0.05, 0.95])]


def random_draw(pool: list, n_random: int, rf: float, rng: Any) -> tuple[list[tuple[float, float]], float, list]:
    """One repetition's random search, ``n_random`` trials drawn from ``pool`` run to their ends, and an
    independent random order of the whole pool for the other searcher → (random's curve, its budget, order)."""
    c_rnd = replay([pool[i] for i in rng.choice(len(pool), n_random, replace=False)], [], rf)
    return c_rnd, c_rnd[-1][0], [pool[i] for i in rng.permutation(len(pool))]


def within(c: list[tuple[float, float]], budget: float) -> list[tuple[float, float]]:
    """A best-so-far curve up to ``budget`` trial-s."""
    return [(s, b) for s, b in c if s <= budget]


def asha_replay(pool: list, n_random: int, rungs: list[int], rf: float, reps: int = 300, seed: int = 0,
                fixed_targets: dict[str, float] | None = None) -> dict:
    """What ASHA's rung alone buys, without TPE: random search's own full-length trials (``pool``, all
    seeds) replayed.  Each repetition draws ``n_random`` of them as a random search (its best is the
    target, its compute the budget) and replays an independent random order of the whole pool through
    ASHA's rule, or with no rung as the control (about 0.8 for an equally good searcher: module doc).
    Reported as the benchmark's ratio, pooled over repetitions.  ``fixed_targets`` (name → val nRMSE):
    the same draws read against each fixed target as well (``at_fixed_targets``; the control is then
    about 1x, both searches chasing the same value)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    modes = (("no_rung", []), ("asha_rung", rungs))
    need: dict[str, list] = {"no_rung": [], "asha_rung": []}
    fixed = {name: {key: [] for key, _ in modes} for name in (fixed_targets or {})}
    for _ in range(reps):
        c_rnd, budget, order = random_draw(pool, n_random, rf, rng)
        target = c_rnd[-1][1]
        need_rnd = compute_to_reach(c_rnd, target) or budget
        for key, rr in modes:
            c_other = within(replay(order, rr, rf), budget)
            got = compute_to_reach(c_other, target)
            need[key].append((need_rnd, got if got is not None else budget))
            for name, value in (fixed_targets or {}).items():
                fixed[name][key].append((compute_to_reach(c_rnd, value) or budget,
                                         compute_to_reach(c_other, value) or budget))
    out = {"trials_in_pool": len(pool), "repetitions": reps, "rungs": rungs,
           **{key: ratio_stats(pairs) for key, pairs in need.items()}}
    if fixed:
        out["at_fixed_targets"] = {name: {key: ratio_stats(pairs)["ratio_pooled"] for key, pairs in by.items()}
                                   for name, by in fixed.items()}
    return out


def best_config(exp_dir: Path, space: Path) -> dict:
    """The searched values of the trial with the lowest val nRMSE (decoded to plain YAML values)."""
    from ups.tune.space import load_space

    params = load_space(space).params
    h = val_reports(exp_dir)
    tid = str(h.loc[h["val_nrmse"].idxmin(), "trial_id"])
    sampled = json.loads(next(exp_dir.glob(f"trial_{tid}*/params.json")).read_text())
    return {k: params[k].decode(v) if k in params else v for k, v in sampled.items()}


def train_seeds(name: str, fixed: dict, seeds: list[int], root: Path, extra: list[str] | None = None) -> list[float]:
    """Final val nRMSE of one configuration (``fixed`` over the profile's defaults) trained with each of
    ``seeds``: a grid sweep over training.seed through the same engine, the fixed values as one-value grids."""
    import yaml

    space = root / f"{name}_space.yaml"
    params = {k: {"dist": "grid", "values": [v]} for k, v in fixed.items()}
    params["training.seed"] = {"dist": "grid", "values": list(seeds)}
    space.write_text(yaml.safe_dump({"description": f"{name}: one configuration, several training seeds",
                                     "reference": {**fixed, "training.seed": seeds[0]}, "params": params},
                                    sort_keys=False))
    exp = run(name, ["max_concurrent=2", "gates.enabled=false", f"space={space}", "searcher.name=grid",
                     "scheduler.name=fifo", "num_samples=1", "training.val_max_samples=-1", *(extra or [])], root)
    return [float(v) for v in val_reports(exp).groupby("trial_id")["val_nrmse"].last()]


def reseed(winners: dict[str, dict], n: int, root: Path, extra: list[str] | None = None) -> dict:
    """Each search's winning config retrained with training seeds 1..n (the searches used seed 0): is the
    winner better, or was its run lucky?"""
    out = {}
    for name, cfg in winners.items():
        finals = train_seeds(f"reseed_{name}", cfg, list(range(1, n + 1)), root, extra)
        out[name] = {"config": cfg, "val_nrmse_other_seeds": sorted(round(v, 4) for v in finals),
                     "mean": round(statistics.mean(finals), 4),
                     "sd": round(statistics.stdev(finals), 4) if len(finals) > 1 else None}
    return out


def seed_noise(n: int, root: Path, extra: list[str] | None = None) -> dict:
    """The profile's default config trained with ``n`` training seeds: how far apart identical
    configurations end, i.e. the resolution at which 'best' means anything."""
    finals = train_seeds("seed_noise", {}, list(range(n)), root, extra)
    return {"training_seeds": n, "val_nrmse": sorted(round(v, 4) for v in finals),
            "mean": round(statistics.mean(finals), 4), "sd": round(statistics.stdev(finals), 4) if n > 1 else None,
            "range": round(max(finals) - min(finals), 4)}


def plot(results: list[dict], png: Path, space: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 3.6), squeeze=False)
    for ax, r in zip(axes[0], results):
        for key, label in (("random", "random (full budgets)"), ("asha_tpe", "ASHA + TPE")):
            c = r["curves"][key]
            ax.step([s for s, _ in c], [b for _, b in c], where="post", label=label)
        ax.axhline(r["best_random"], ls=":", c="gray")
        ax.set_yscale("log")
        ax.set_xlabel("compute (trial-seconds)")
        ax.set_title(f"seed {r['seed']}: random ÷ ASHA+TPE compute = {r['ratio']:.2f}×", fontsize=10)
    axes[0][0].set_ylabel("best val nRMSE so far")
    axes[0][0].legend()
    fig.suptitle(f"search efficiency: space '{space}', CPU smoke profile")
    fig.tight_layout()
    fig.savefig(png, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2], help="search seeds (none: skip the searches)")
    ap.add_argument("--noise-seeds", type=int, default=4,
                    help="also train the default config with this many training seeds (0: skip)")
    ap.add_argument("--reseed", type=int, default=2,
                    help="retrain each search's winner with this many other training seeds (0: skip)")
    ap.add_argument("--random-trials", type=int, default=24,
                    help="random search's trials per seed; its compute is the budget of both searches")
    ap.add_argument("--max-asha-trials", type=int, default=100,
                    help="ASHA + TPE stops at random search's compute or after this many trials, whichever comes "
                         "first (per seed: asha_compute_s, asha_hit_trial_cap); raise it for cheap early rungs, "
                         "e.g. 250 with --set scheduler.rungs_from=operator --grace 1")
    ap.add_argument("--grace", type=int, default=20,
                    help="ASHA grace period in iterations (10 AE epochs + 10 operator: the first operator epoch whose "
                         "rank predicts the final rank, see rung_spearman)")
    ap.add_argument("--rf", type=int, default=3, help="ASHA reduction factor")
    ap.add_argument("--startup", type=int, default=10,
                    help="TPE start-up trials (the sweeps' default; 5 random ones let TPE lock onto one scheduler value)")
    ap.add_argument("--init", choices=["lhs", "random"], default="lhs",
                    help="TPE start-up design (searcher.initial_design; the sweeps' default is lhs)")
    ap.add_argument("--space", choices=sorted(SPACES), default="new_problem")
    ap.add_argument("--reference", action=argparse.BooleanOptionalAction, default=False,
                    help="start both searches at the space's hand-picked reference point (default: pure "
                         "random search against pure ASHA + TPE, no shared first trial)")
    ap.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                    help="a config override of the profile for both searches, e.g. stages.operator.epochs=60 "
                         "(repeatable; move --grace with the epochs: 10 + a third of the operator's)")
    ap.add_argument("--out", default="")
    ap.add_argument("--tolerance", type=float, default=0.007,
                    help="also read the ratio to within this much of random search's best (default: the seed-to-seed "
                         "sd of one configuration's val nRMSE, --noise-seeds 4 on 2026-11-23); not the issue's bar")
    ap.add_argument("--pool", nargs="+", default=[], metavar="DIR",
                    help="run nothing: pool the seeds of earlier runs' --out folders (same command, disjoint --seeds)")
    args = ap.parse_args()
    if args.pool:
        pool_runs(args.pool, args.tolerance)
        return
    root = Path(args.out or tempfile.mkdtemp(prefix="search_eff_"))
    root.mkdir(parents=True, exist_ok=True)
    space = root / "space.yaml"
    space.write_text(SPACES[args.space])
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        results = []
        for seed in args.seeds:
            results.append(one_seed(seed, args, space, root))
            r = results[-1]
            print(f"seed {seed}: random best {r['best_random']:.4f} at {r['compute_random_to_its_best_s']:.0f} "
                  f"trial-s; ASHA+TPE best {r['best_asha_tpe']:.4f}, reached random's best at "
                  f"{r['compute_asha_to_random_best_s']} trial-s → {r['ratio']:.2f}×; rung Spearman {r['rung_spearman']}",
                  flush=True)
        noise = seed_noise(args.noise_seeds, root, args.set) if args.noise_seeds > 1 else None
        winners = {k: v for r in results for k, v in r.pop("winners").items()}
        reseeded = reseed(winners, args.reseed, root, args.set) if args.reseed > 0 and winners else None
    finally:
        ray.shutdown()
    if noise:
        print(f"seed noise: default config, training seeds 0..{args.noise_seeds - 1}: val nRMSE {noise['val_nrmse']} "
              f"(sd {noise['sd']}, range {noise['range']})")
    if reseeded:
        for name, r in reseeded.items():
            print(f"reseed: {name} winner, training seeds 1..{args.reseed}: val nRMSE {r['val_nrmse_other_seeds']} "
                  f"(mean {r['mean']})")
    if not results:
        print(json.dumps({"seed_noise": noise}))
        return
    png = root / "search_efficiency.png"
    plot(results, png, args.space)
    settings = {"random_trials": args.random_trials, "grace": args.grace, "rf": args.rf, "space": args.space,
                "reference": args.reference, "startup": args.startup, "init": args.init, "set": args.set}
    out = {**summarize([{k: v for k, v in r.items() if k != "curves"} for r in results], [root], settings,
                       [r["curves"] for r in results], args.tolerance),
           "png": str(png), "seed_noise": noise, "reseeded_winners": reseeded}
    (root / "search_efficiency.json").write_text(json.dumps({**out, "curves": [r["curves"] for r in results]}))
    export_trials(root)
    report(out)


def asha_rungs(settings: dict, space: Path) -> list[int]:
    """The rungs the ASHA + TPE search ran with: the product's own (``ups.tune.tuner_build.asha_rungs``)."""
    from ups.tune.prepare import prepare
    from ups.tune.tuner_build import asha_rungs as product_rungs

    p = prepare("round_a", asha_tpe_overrides(settings, space))
    return product_rungs(p.scfg, p.base, p.space)[2]


QUANTILES = (0.01, 0.05, 0.10)


def pooled_ratio_to(per_seed: list[dict], curves: list[dict], targets: list[float]) -> float:
    """Σ random search's compute to each seed's target ÷ Σ ASHA + TPE's (a search that never reaches it is
    charged its whole budget)."""
    spent = {k: sum(compute_to_reach(c[k], t) or r["budget_trial_s"] for r, c, t in zip(per_seed, curves, targets))
             for k in ("random", "asha_tpe")}
    return round(spent["random"] / spent["asha_tpe"], 2)


def quantile_ratios(per_seed: list[dict], curves: list[dict], finals: list[float],
                    qs: tuple[float, ...] = QUANTILES) -> dict[str, dict[str, float]]:
    """The ratio read against fixed targets instead of each seed's best-of-N random draw: the q-quantile of
    every random-search trial's final val nRMSE (pooled over seeds), the same target in every seed; a
    search that never reaches it is charged its whole budget. → {"q0.05": {target, ratio_pooled}, ...}"""
    import numpy as np

    out = {}
    for q in qs:
        target = float(np.quantile(finals, q))
        out[f"q{q:.2f}"] = {"target": round(target, 4),
                            "ratio_pooled": pooled_ratio_to(per_seed, curves, [target] * len(per_seed))}
    return out


def best_at(c: list[tuple[float, float]], grid: Any) -> Any:
    """A best-so-far curve's values after each of ``grid``'s trial-s (inf before its first report)."""
    import numpy as np

    spent = np.array([s for s, _ in c], dtype=float)
    best = np.array([math.inf] + [b for _, b in c], dtype=float)
    return best[np.searchsorted(spent, grid, side="right")]


def mean_curve_speedup(per_seed: list[dict], curves: list[dict], points: int = 2000, boot: int = 2000) -> dict:
    """The hyperparameter-optimisation papers' reading (Hyperband, BOHB): average each search's best-so-far
    curve over the seeds (on the trial-s axis, up to the smallest budget B); random search's mean curve
    reaches its final value at B, and the speedup is B over the compute at which ASHA + TPE's mean curve
    first gets there (1: never within B).  ``interval_90``: the 5-95 % range of the speedup over
    ``boot`` resamplings of the seeds (with replacement)."""
    import numpy as np

    budget = min(r["budget_trial_s"] for r in per_seed)
    grid = np.linspace(budget / points, budget, points)
    per = {k: np.array([best_at(c[k], grid) for c in curves]) for k in ("random", "asha_tpe")}

    def speedup(rows: np.ndarray) -> tuple[float, float, float]:
        rnd, asha = per["random"][rows].mean(axis=0), per["asha_tpe"][rows].mean(axis=0)
        hit = np.flatnonzero(asha <= rnd[-1])
        return (budget / float(grid[hit[0]]) if len(hit) else 1.0), float(rnd[-1]), float(asha[-1])

    value, target, final = speedup(np.arange(len(curves)))
    rng = np.random.default_rng(0)
    resampled = [speedup(rng.integers(0, len(curves), len(curves)))[0] for _ in range(boot)] or [value]
    return {"budget_trial_s": round(budget, 1), "random_mean_final": round(target, 4),
            "asha_tpe_mean_final": round(final, 4), "speedup": round(value, 2),
            "interval_90": [round(float(q), 2) for q in np.quantile(resampled, [0.05, 0.95])]}


def mean_curve_control(pool: list, n_random: int, n_seeds: int, rungs: list[int], rf: float, reps: int = 100,
                       seed: int = 0) -> dict:
    """``mean_curve_speedup``'s controls on random search's own trials: each repetition builds ``n_seeds``
    pseudo-seeds, each a random search of ``n_random`` drawn trials against an independent random order of
    the pool (no rung: an equally good searcher; ``rungs``: ASHA's rung on random sampling), and reads the
    speedup of their seed-mean curves.  → per control the median, 5-95 % range and share ≥ 3× over reps."""
    import numpy as np

    rng = np.random.default_rng(seed)
    out = {}
    for key, rr in (("no_rung", []), ("asha_rung", rungs)):
        speedups = []
        for _ in range(reps):
            per_seed, curves = [], []
            for _ in range(n_seeds):
                c_rnd, budget, order = random_draw(pool, n_random, rf, rng)
                per_seed.append({"budget_trial_s": budget})
                curves.append({"random": c_rnd, "asha_tpe": within(replay(order, rr, rf), budget)})
            speedups.append(mean_curve_speedup(per_seed, curves, points=400, boot=1)["speedup"])
        a = np.array(speedups)
        out[key] = {"median": round(float(np.median(a)), 2), "range_90": [round(float(q), 2) for q in np.quantile(a, [0.05, 0.95])],
                    "p_ge_3": round(float(np.mean(a >= 3.0)), 2)}
    return {"repetitions": reps, "seeds": n_seeds, **out}


def summarize(per_seed: list[dict], roots: list[Path], settings: dict, curves: list[dict], tol: float) -> dict:
    """Pooled (Σ over seeds) and median ratio, the same read to within ``tol`` of random search's best,
    and ASHA's rung replayed on random search's trials of every seed under ``roots`` (``asha_replay``)."""
    ratios = [r["ratio"] for r in per_seed]
    near = pooled_ratio_to(per_seed, curves, [r["best_random"] + tol for r in per_seed])  # a noise-wide target
    trials = [experiment_trials(root) for root in roots]
    startup = [round(sum(sum(t["dts"]) for t in runs[f"asha_tpe_s{r['seed']}"][:settings["startup"]]), 1)
               for r in per_seed for runs in trials if f"asha_tpe_s{r['seed']}" in runs]
    pool = [(t["its"], t["vals"], t["dts"]) for runs in trials for name in sorted(runs) if name.startswith("random_s")
            for t in runs[name]]
    rungs = asha_rungs(settings, roots[0] / "space.yaml")
    finals = [v[-1] for _, v, _ in pool if v and math.isfinite(v[-1])]
    at_q = quantile_ratios(per_seed, curves, finals) if finals else None
    return {"seeds": [r["seed"] for r in per_seed], **settings, "per_seed": per_seed,
            "ratio_median": round(statistics.median(ratios), 2), "ratio_pooled": pooled_ratio(per_seed),
            "ratio_pooled_interval_90": pooled_ratio_interval(per_seed),
            "seeds_reached": sum(r["reached"] for r in per_seed), "asha_startup_compute_s": startup,
            "asha_better_or_equal_best": sum(r["best_asha_tpe"] <= r["best_random"] for r in per_seed),
            "target_ratio": 3.0, "tolerance": tol, "ratio_pooled_within_tolerance": near,
            "ratio_pooled_at_random_quantiles": at_q, "mean_curve_speedup": {
                **mean_curve_speedup(per_seed, curves),
                "controls": mean_curve_control(pool, settings["random_trials"], len(per_seed), rungs, settings["rf"])
                if len(pool) > settings["random_trials"] else None},
            "replay_without_tpe": asha_replay(pool, settings["random_trials"], rungs, settings["rf"],
                                              fixed_targets={q: v["target"] for q, v in (at_q or {}).items()})
            if len(pool) > settings["random_trials"] else None}


def report(out: dict) -> None:
    print(json.dumps(out))
    ratios = [r["ratio"] for r in out["per_seed"]]
    rep = out["replay_without_tpe"]
    parts = [f"compute to reach random search's best, random ÷ ASHA+TPE = {out['ratio_pooled']:.2f}× (target ≥ 3×; "
             f"pooled over seeds {out['seeds']}, 90 % over resampled seeds "
             f"{'–'.join(f'{x:.2f}' for x in out.get('ratio_pooled_interval_90') or [])}×; "
             f"median {out['ratio_median']:.2f}×, per seed "
             f"{', '.join(f'{x:.2f}' for x in ratios)})",
             f"best ≤ random's in {out['asha_better_or_equal_best']}/{len(ratios)} seeds",
             f"to within {out['tolerance']} of random's best {out['ratio_pooled_within_tolerance']:.2f}× pooled"]
    if qr := out.get("ratio_pooled_at_random_quantiles"):
        part = "to the 1/5/10 % quantiles of random search's trials " + "/".join(f"{v['ratio_pooled']:.2f}" for v in qr.values()) + "×"
        if rep and (fx := rep.get("at_fixed_targets")):
            part += (" (replayed random search: " + "/".join(f"{v['no_rung']:.2f}" for v in fx.values()) + "×, with "
                     "ASHA's rung " + "/".join(f"{v['asha_rung']:.2f}" for v in fx.values()) + "×)")
        parts.append(part)
    if mc := out.get("mean_curve_speedup"):
        part = (f"seed-mean curves: ASHA+TPE reaches random search's final mean {mc['random_mean_final']} "
                f"{mc['speedup']}× sooner (90 % over resampled seeds {mc['interval_90'][0]}–{mc['interval_90'][1]}×")
        if ct := mc.get("controls"):
            part += f"; replayed random search {ct['no_rung']['median']}×, with ASHA's rung {ct['asha_rung']['median']}× (medians)"
        parts.append(part + ")")
    if rep:
        parts.append(f"ASHA's rung alone on random search's trials (no TPE): {rep['asha_rung']['ratio_pooled']:.2f}× "
                     f"against {rep['no_rung']['ratio_pooled']:.2f}× without it")
    if out.get("png"):
        parts.append(out["png"])
    print("search_efficiency: " + "; ".join(parts))


def load_runs(dirs: list[str] | list[Path]) -> tuple[dict, list[dict], list[dict]]:
    """The settings, per-seed results and curves of earlier runs' ``--out`` folders (their
    search_efficiency.json and runs/), refused unless they ran the same command with disjoint seeds."""
    roots = [Path(d) for d in dirs]
    for root in roots:
        if not (root / "search_efficiency.json").is_file() or not ((root / "runs").is_dir() or (root / TRIALS).is_file()):
            sys.exit(f"{root} has no search_efficiency.json and runs/ (or {TRIALS}) of a finished run; give the "
                     f"--out folders of finished runs of search_efficiency.py")
    saved = [json.loads((root / "search_efficiency.json").read_text()) for root in roots]
    keys = ("random_trials", "grace", "rf", "space", "reference", "startup", "init", "set")
    settings = {k: saved[0].get(k) for k in keys}
    for root, d in zip(roots, saved):
        if any(d.get(k) != settings[k] for k in keys):
            sys.exit(f"{root} ran with other settings ({ {k: d.get(k) for k in keys} } vs {settings}); "
                     f"pool only runs of the same command with other --seeds")
    per_seed = [r for d in saved for r in d["per_seed"]]
    if len({r["seed"] for r in per_seed}) < len(per_seed):
        sys.exit("a seed appears in more than one run; pool runs with disjoint --seeds")
    return settings, per_seed, [c for d in saved for c in d["curves"]]


def pool_runs(dirs: list[str], tol: float) -> None:
    """``--pool``: one pooled summary over the seeds of earlier runs."""
    settings, per_seed, curves = load_runs(dirs)
    roots = [Path(d) for d in dirs]
    report({**summarize(per_seed, roots, settings, curves, tol), "pooled_from": [str(r) for r in roots]})

if __name__ == "__main__":
    main()
