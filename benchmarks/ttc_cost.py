"""What test-time conditioning costs, and what it buys, against the plain rollout in the same run.

Times, on the same contexts: the deterministic rollout (baseline), TTC with the configured gate
(``ttc.threshold``), and TTC forced to search every step (threshold 0). Reports the ratios, the
decoded frames per step, the share of steps the gate opened, and the reward penalty with and
without TTC. With ``--checkpoint`` (e.g. runs/<id>/checkpoints/final) it also scores the test split
of the checkpoint's data: nRMSE without / with TTC — the honest gain (README.md, "Evaluating a checkpoint"). Without a
checkpoint an untrained model of ``--preset`` is timed (cost only; its gain means nothing).

Prints one JSON object and a one-line summary.

    .venv/bin/python benchmarks/ttc_cost.py [--checkpoint PATH] [--preset dim32] [--batch 32]
        [--samples 64] [--threads 1] [ttc.candidates=8 ttc.beam_width=3 …]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ups.config import apply_overrides, load_config  # noqa: E402


def _timed(fn, repeats: int = 1):
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default=None, help="a UPS checkpoint (file or folder)")
    ap.add_argument("--preset", default="dim32", help="model preset when no checkpoint is given")
    ap.add_argument("--batch", type=int, default=32, help="contexts per rollout call")
    ap.add_argument("--samples", type=int, default=64, help="test trajectories for the nRMSE gain")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2, help="timing repeats (best of)")
    ap.add_argument("overrides", nargs="*", help="ttc.* overrides, e.g. ttc.candidates=16")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)

    from ups.data.initial import cell_centres, init_multi
    from ups.models.ups_model import build_model
    from ups.ttc import deterministic_rollout, ttc_search

    updates = dict(o.split("=", 1) for o in a.overrides)
    updates.setdefault("ttc.enabled", "true")  # checkpoints trained with TTC off still get measured
    if a.checkpoint:
        from ups.train.checkpoint import load_checkpoint

        model, cfg, _ = load_checkpoint(a.checkpoint)
    else:
        cfg = load_config([f"preset={a.preset}"])
        torch.manual_seed(0)
        model = build_model(cfg).eval()
        model.residual_std.fill_(0.05)  # an untrained sampler still gives distinct candidates to score
    import yaml

    cfg = apply_overrides(cfg, {k: yaml.safe_load(v) for k, v in updates.items()}, source="benchmark")
    forced = apply_overrides(cfg, {"ttc.threshold": 0.0}, source="benchmark")
    init, frames = int(cfg.data.initial_step), 41
    n_steps = frames - init
    grid = int(model.grid_size)

    data = None
    if a.checkpoint:  # real test contexts of the checkpoint's data
        from ups.data.protocol import load_protocol

        data = load_protocol(cfg.data)
        ctx = data.test[: a.batch, :init].to(torch.float32)  # (B, Tc, X)
        n_steps = data.test.shape[1] - init
    else:  # smooth PDEBench-family fields held still (timing does not need the solver)
        x = cell_centres(grid)
        u0 = torch.tensor(init_multi(a.batch, x, seed=1), dtype=torch.float32)  # (B, X)
        ctx = u0[:, None].expand(a.batch, init, grid).contiguous()  # (B, Tc, X)

    with torch.no_grad():
        det_s, _ = _timed(lambda: deterministic_rollout(model, ctx, n_steps), a.repeats)
        gated_s, gated = _timed(lambda: ttc_search(model, ctx, n_steps, cfg.ttc,
                                                   generator=torch.Generator().manual_seed(0)), a.repeats)
        forced_s, full = _timed(lambda: ttc_search(model, ctx, n_steps, forced.ttc,
                                                   generator=torch.Generator().manual_seed(0)), a.repeats)
    per_step = ctx.shape[0] * n_steps
    res = {
        "device": "cpu", "threads": a.threads, "batch": ctx.shape[0], "steps": n_steps, "grid": grid,
        "model": a.checkpoint or f"untrained {a.preset}",
        "params": sum(p.numel() for p in model.parameters()),
        "ttc": {k: cfg.ttc[k] for k in ("candidates", "beam_width", "horizon", "max_evaluations", "threshold")},
        "budget": vars(full.budget) if hasattr(full.budget, "__dict__") else str(full.budget),
        "det_rollout_s": det_s,
        "ttc_gated_s": gated_s,
        "ttc_forced_s": forced_s,
        "ratio_gated_vs_det": gated_s / det_s,
        "ratio_forced_vs_det": forced_s / det_s,
        "gate_open_rate": gated.interventions / per_step,
        "decoded_frames_per_step_forced": full.evaluations / per_step,
        "reward_penalty_det": float(full.det_penalty.mean()),
        "reward_penalty_ttc_forced": float(full.penalty.mean()),
        "search_path_used_rate": float(full.used_search.float().mean()),
    }
    if data is not None:
        from ups.eval import evaluate

        ev_cfg = apply_overrides(cfg, {"eval.max_samples": a.samples, "eval.ensemble_size": 0}, source="benchmark")
        m = evaluate(model, ev_cfg, data)
        mf = evaluate(model, apply_overrides(ev_cfg, {"ttc.threshold": 0.0}, source="benchmark"), data)
        res.update({"test_samples": m["n_samples"], "nrmse": m["nrmse"], "nrmse_ttc_gated": m["nrmse_ttc"],
                    "nrmse_ttc_forced": mf["nrmse_ttc"], "ttc_gain_gated": m["ttc_gain"],
                    "ttc_gain_forced": mf["ttc_gain"]})
    print(json.dumps(res, indent=1, default=str))
    line = (f"TTC cost: gated {res['ratio_gated_vs_det']:.1f}× / forced {res['ratio_forced_vs_det']:.1f}× the plain "
            f"rollout ({det_s:.2f}s for {ctx.shape[0]}×{n_steps} steps), gate open {res['gate_open_rate'] * 100:.0f}% of "
            f"steps, {res['decoded_frames_per_step_forced']:.0f} decodes/step forced; reward penalty "
            f"{res['reward_penalty_det']:.3g} → {res['reward_penalty_ttc_forced']:.3g}")
    if a.checkpoint:
        line += (f"; nRMSE {res['nrmse']:.4f} → gated {res['nrmse_ttc_gated']:.4f} / forced "
                 f"{res['nrmse_ttc_forced']:.4f} ({res['ttc_gain_forced'] * 100:+.1f}%)")
    print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
