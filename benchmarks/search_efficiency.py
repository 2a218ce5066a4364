"""Search efficiency: ASHA + Optuna TPE vs random search with full budgets, same seeds, same compute.

Both searches run real UPS trials (CPU smoke profile; autoencoder/operator learning rates and warmup) on one local Ray
instance in this process.  Random search runs ``--random-trials`` full-budget trials (FIFO); its total
compute (Σ trial seconds) is the budget ASHA+TPE gets (it samples more configs and stops the poor
ones early).  Reported: each search's best val nRMSE, the compute each needed to reach random
search's best, their ratio (target ≥ 3×), and both best-so-far curves (PNG).

    python benchmarks/search_efficiency.py                     # 12 random trials (≈ 5 min on 2 CPUs)
    python benchmarks/search_efficiency.py --random-trials 4 --out /tmp/se

Prints one JSON object and a one-line summary.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def curve(exp_dir: Path) -> list[tuple[float, float]]:
    """Best-so-far val_nrmse against cumulative trial compute (Σ time_this_iter_s in report order)."""
    events = []
    for f in exp_dir.glob("trial_*/result.json"):
        for line in f.read_text().splitlines():
            r = json.loads(line)
            v = r.get("val_nrmse")
            if v is None or r.get("nonfinite"):
                continue
            events.append((float(r["timestamp"]) + 1e-6 * float(r.get("time_total_s", 0)),
                           float(r.get("time_this_iter_s", 0.0)), float(v)))
    events.sort()
    out, spent, best = [], 0.0, math.inf
    for _, dt, v in events:
        spent += dt
        best = min(best, v)
        out.append((spent, best))
    return out


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--random-trials", type=int, default=12)
    ap.add_argument("--max-asha-trials", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="")
    ap.add_argument("--ae-epochs", type=int, default=3)
    ap.add_argument("--op-epochs", type=int, default=16)
    ap.add_argument("--grace", type=int, default=5, help="ASHA grace period (iterations, AE epochs included)")
    ap.add_argument("--rf", type=int, default=3, help="ASHA reduction factor")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="search_eff_"))
    root.mkdir(parents=True, exist_ok=True)
    space = root / "space.yaml"  # the knobs that matter most in the CPU smoke budget
    space.write_text("reference:\n  stages.autoencoder.optimizer.lr: 2.0e-3\n  stages.operator.optimizer.lr: 1.0e-3\n"
                     "params:\n"
                     "  stages.autoencoder.optimizer.lr: {dist: loguniform, low: 1.0e-5, high: 2.0e-2}\n"
                     "  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-5, high: 1.0e-2}\n"
                     "  stages.autoencoder.warmup_steps_ratio: {dist: uniform, low: 0.0, high: 0.3}\n")
    # Trial shape: a short autoencoder stage, then most of the budget in the operator stage, so ASHA's
    # rungs (iterations 5 and 15 of ~23) judge trials on operator-stage rollout nRMSE, not on the
    # autoencoder warm-up where val_nrmse says little.
    shape = [f"stages.autoencoder.epochs={args.ae_epochs}", f"stages.operator.epochs={args.op_epochs}"]
    common = ["max_concurrent=2", f"searcher.seed={args.seed}", "gates.enabled=false", f"space={space}", *shape]
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rnd = run("random", [*common, "searcher.name=random", "scheduler.name=fifo", f"num_samples={args.random_trials}"],
              root)
    c_rnd = curve(rnd)
    budget = c_rnd[-1][0]
    # same compute: ASHA+TPE keeps sampling until its trials have used random search's total compute
    asha = run("asha_tpe", [*common, "searcher.name=optuna", "scheduler.name=asha", f"scheduler.grace_period={args.grace}",
                            f"scheduler.reduction_factor={args.rf}", f"num_samples={args.max_asha_trials}",
                            f"compute_budget_s={budget:.1f}"], root)
    ray.shutdown()
    c_asha = [(s, b) for s, b in curve(asha) if s <= budget * 1.02]
    best_rnd, best_asha = c_rnd[-1][1], c_asha[-1][1]
    need_rnd = compute_to_reach(c_rnd, best_rnd)
    need_asha = compute_to_reach(c_asha, best_rnd)
    ratio = (need_rnd / need_asha) if need_asha else None

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for c, label in ((c_rnd, "random (full budgets)"), (c_asha, "ASHA + TPE")):
        ax.step([s for s, _ in c], [b for _, b in c], where="post", label=label)
    ax.axhline(best_rnd, ls=":", c="gray")
    ax.set_xlabel("compute (trial-seconds)")
    ax.set_ylabel("best val nRMSE so far")
    ax.legend()
    ax.set_title("search efficiency (AE/operator lr + warmup, CPU smoke)")
    png = root / "search_efficiency.png"
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    n_asha = len(list(asha.glob("trial_*")))
    out = {"random_trials": args.random_trials, "asha_trials": n_asha, "budget_trial_s": round(budget, 1),
           "best_random": round(best_rnd, 5), "best_asha_tpe": round(best_asha, 5),
           "compute_random_to_its_best_s": round(need_rnd or 0, 1),
           "compute_asha_to_random_best_s": round(need_asha, 1) if need_asha else None,
           "ratio": round(ratio, 2) if ratio else None, "target_ratio": 3.0, "png": str(png), "seed": args.seed,
           "ae_epochs": args.ae_epochs, "op_epochs": args.op_epochs, "grace": args.grace, "rf": args.rf}
    print(json.dumps(out))
    r = f"{ratio:.2f}× less compute" if ratio else "did not reach random's best within the same compute"
    print(f"search_efficiency: ASHA+TPE best {best_asha:.4f} vs random {best_rnd:.4f} "
          f"({n_asha} vs {args.random_trials} trials, {budget:.0f} trial-s each); to random's best: {r}; {png}")


if __name__ == "__main__":
    main()
