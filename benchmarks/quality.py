"""Rollout quality of the UPS model after a fixed CPU wall clock, beside the protocol's baselines.

PDEBench protocol (ν=0.01, 2,000 trajectories, 256 points × 41 frames, initial_step 10, 31-step
autoregressive rollout). The UPS model (default preset dim32) trains for ``--minutes`` of wall
clock, split over the stages by ``--split`` (autoencoder, operator, diffusion, distillation);
``ups.baselines.run_baselines`` gives persistence, the linear one-step map and PDEBench's FNO1d
trained for the same wall clock in this run (cached by data, budget and seed). The test split is
scored with ``ups.eval.evaluate`` (nRMSE with and without TTC).

Prints one JSON object and a one-line summary. Bars: UPS nRMSE < linear, ≤ persistence / 2;
target: ≤ FNO at equal wall clock.

    .venv/bin/python benchmarks/quality.py [--minutes 10] [--preset dim32] [--n 2000] [overrides …]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ups.config import load_config  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0, help="UPS training wall clock (and FNO budget)")
    ap.add_argument("--preset", default="dim32")
    ap.add_argument("--n", type=int, default=2000, help="trajectories generated (90/10 test split)")
    ap.add_argument("--split", default="0.2,0.72,0.04,0.04",
                    help="fractions of the budget for autoencoder, operator, diff_residual, consistency_distill")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-baselines", action="store_true", help="skip persistence/linear/FNO")
    ap.add_argument("--no-ttc", action="store_true", help="skip the TTC evaluation")
    ap.add_argument("--run-dir", type=Path, default=None)
    ap.add_argument("overrides", nargs="*", help="extra config overrides")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    budget = 60.0 * a.minutes
    fr = [float(f) for f in a.split.split(",")]
    if len(fr) != 4 or abs(sum(fr) - 1) > 1e-6:
        ap.error("--split needs four fractions that sum to 1")
    stages = ("autoencoder", "operator", "diff_residual", "consistency_distill")
    ov = [f"preset={a.preset}", "data.nu=0.01", f"data.n={a.n}", f"training.seed={a.seed}",
          f"training.num_threads={a.threads}", f"training.time_budget_s={budget}"]
    for s, f in zip(stages, fr):  # the budget decides, not the epoch count
        ov += [f"stages.{s}.time_budget_s={f * budget:.1f}", f"stages.{s}.epochs=100000"]
    if a.no_ttc:
        ov.append("ttc.enabled=false")
    cfg = load_config(ov + list(a.overrides))
    # a budget-driven run: the cosine schedules would otherwise be planned over 100000 epochs
    from ups.data.protocol import load_protocol
    from ups.models.ups_model import build_model, count_parameters
    from ups.train.trainer import train

    t0 = time.perf_counter()
    data = load_protocol(cfg.data)
    data_s = time.perf_counter() - t0
    print(f"data: {data.summary()} ({data_s:.0f}s)", file=sys.stderr, flush=True)

    baselines: dict[str, dict] = {}
    if not a.no_baselines:
        from ups.baselines import run_baselines

        cache = Path(cfg.data.cache_dir).expanduser() / "baselines"
        for row in run_baselines(data, fno_budget_s=budget, seed=a.seed, cache_dir=cache):
            baselines[row["name"]] = row
        print("baselines: " + ", ".join(f"{k} {v['nrmse']:.4f}" for k, v in baselines.items()),
              file=sys.stderr, flush=True)

    run_dir = a.run_dir or Path(tempfile.mkdtemp(prefix="ups-quality-"))
    curve: list[dict] = []

    def report(m: dict, ckpt) -> None:
        if not m.get("done"):
            curve.append({k: m[k] for k in ("stage", "epoch", "val_nrmse", "wall_clock", "train_loss")})
            if m["epoch"] % 10 == 1 or m.get("budget_exhausted"):
                print(f"  [{m['stage']}] epoch {m['epoch']} loss {m['train_loss']:.4g} "
                      f"val_nrmse {m['val_nrmse']:.4f} t={m['wall_clock']:.0f}s", file=sys.stderr, flush=True)

    res = train(cfg, report=report, run_dir=run_dir, data=data)
    fm = res.metrics
    ups_nrmse = float(fm["nrmse"])
    out: dict = {
        "benchmark": "quality", "preset": a.preset, "params": count_parameters(build_model(cfg, data.resolution)),
        "minutes": a.minutes, "threads": a.threads, "data": data.summary(),
        "train_wall_s": fm.get("wall_clock"), "ups_nrmse": ups_nrmse,
        "ups_nrmse_pdebench": fm.get("nrmse_pdebench"), "ups_nrmse_ttc": fm.get("nrmse_ttc"),
        "ttc_gain": fm.get("ttc_gain"), "val_nrmse": fm.get("val_nrmse"),
        "conservation_gap": fm.get("conservation_gap"), "rollout_horizon": fm.get("rollout_horizon"),
        "epochs": {s: sum(1 for c in curve if c["stage"] == s) for s in stages},
        "baselines": {k: {kk: v.get(kk) for kk in ("nrmse", "params", "train_s")} for k, v in baselines.items()},
        "run_dir": str(run_dir), "curve": curve,
    }
    summary = f"UPS {a.preset} after {a.minutes:g} min: nRMSE {ups_nrmse:.4f}"
    if "persistence" in baselines:
        p = baselines["persistence"]["nrmse"]
        out["vs_persistence"] = p / ups_nrmse
        out["bar_persistence_2x"] = ups_nrmse * 2 <= p
        summary += f"; persistence {p:.4f} ({p / ups_nrmse:.1f}x)"
    if "linear" in baselines:
        lin = baselines["linear"]["nrmse"]
        out["bar_linear"] = ups_nrmse < lin
        summary += f"; linear {lin:.4f}"
    if "fno" in baselines:
        f = baselines["fno"]["nrmse"]
        out["fno_nrmse"], out["gap_vs_fno"] = f, ups_nrmse - f
        out["target_fno"] = ups_nrmse <= f
        summary += f"; FNO1d same wall clock {f:.4f} (gap {ups_nrmse - f:+.4f})"
    if fm.get("nrmse_ttc") is not None:
        summary += f"; with TTC {fm['nrmse_ttc']:.4f}"
    print(json.dumps(out, indent=1, default=float))
    print(summary)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
