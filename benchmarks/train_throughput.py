"""Operator-stage training throughput: latent cache vs re-encoding, our loop vs a bare torch loop.

Three measurements of the same model (preset, default dim32) on protocol-shaped fields
(N trajectories × 41 frames × 256 points; the values do not matter for speed):

1. ``ups.train.train`` operator stage with the latent cache (``training.latent_cache=true``);
2. the same with ``training.latent_cache=false`` (frames re-encoded by the frozen encoder every step);
3. a bare torch loop: same model, same latent rollout loss, AdamW, no EMA/schedule/clip/validation.

Figures are samples/s of the stage's batch loop (``samples_per_s`` reported per epoch, median over
epochs after the first) and, for (1), also end to end including per-epoch validation + checkpoints
(over the epochs after the first; needs ``--epochs`` ≥ 2).
Ratios compare runs made in this process one after another. On CUDA the runs use bf16 autocast and
are labelled ``cuda-bf16``.

    .venv/bin/python benchmarks/train_throughput.py [--preset dim32] [--n 512] [--epochs 4]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ups.config import load_config  # noqa: E402
from ups.models.ups_model import build_model, count_parameters  # noqa: E402
from ups.train.latent_cache import encode_trajectories  # noqa: E402
from ups.train.trainer import train  # noqa: E402


def synthetic(n: int, frames: int = 41, grid: int = 256, seed: int = 0) -> types.SimpleNamespace:
    g = torch.Generator().manual_seed(seed)
    x = (torch.arange(grid) + 0.5) / grid
    k = torch.randint(1, 5, (n, 1, 1), generator=g)
    a = torch.rand(n, 1, 1, generator=g)
    t = torch.linspace(0, 2, frames)[None, :, None]
    u = a * torch.sin(2 * torch.pi * k * (x - 0.1 * t)) * torch.exp(-0.3 * t)  # (n, T, X)
    nv = max(8, n // 10)
    return types.SimpleNamespace(train=u[:n], val=u[:nv], test=u[:0], data_hash=f"synthetic-{n}-{seed}",
                                 source="synthetic", initial_step=10)


def run_ours(overrides: list[str], data, epochs: int) -> dict:
    cfg = load_config(overrides + [f"stages.operator.epochs={epochs}", "stages.autoencoder.epochs=0",
                                   "stages.diff_residual.epochs=0", "stages.consistency_distill.epochs=0",
                                   "eval.baselines=false", "ttc.enabled=false", "eval.max_samples=0"])
    hist: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        train(cfg, run_dir=Path(d), data=data, report=lambda m, c: hist.append(m))
        total = time.perf_counter() - t0
    eps = [m for m in hist if m.get("stage") == "operator"]
    steady = eps[1:] or eps
    loop_sps = statistics.median(m["samples_per_s"] for m in steady)
    n = data.train.shape[0]
    stage_s = sum(m["epoch_s"] for m in eps)
    # wall_clock is read after an epoch's validation, epoch_s before it: between the first and the last
    # epoch's wall_clock lie the epochs after the first, each with its loop, its validation and the previous
    # epoch's checkpoint (the old start, wall_clock - epoch_s of the first epoch, left its validation out)
    if len(eps) > 1:
        wall, n_eps = eps[-1]["wall_clock"] - eps[0]["wall_clock"], len(eps) - 1
    else:  # one epoch: its loop alone
        wall, n_eps = eps[0]["epoch_s"], 1
    return {"loop_samples_per_s": loop_sps, "end_to_end_samples_per_s": n * n_eps / wall,
            "stage_loop_s": stage_s, "stage_wall_s": wall, "total_s": total}


def run_bare(overrides: list[str], data, epochs: int, device: torch.device, bf16: bool) -> dict:
    """A plain torch loop: latents from a cache, rollout loss, AdamW. Nothing else."""
    cfg = load_config(overrides)
    torch.manual_seed(0)
    model = build_model(cfg, grid_size=data.train.shape[-1]).to(device)
    # (M, T, N, D) on the device, as the trainer's cache (_prepare_latents); encode_trajectories returns it on the CPU
    lat = encode_trajectories(model.encoder, data.train.to(device), device=device).to(device)
    H = int(cfg.training.rollout_horizon)
    st = cfg.stages.operator
    bs = int(st.batch_size)
    opt = torch.optim.AdamW(model.operator.parameters(), lr=float(st.optimizer.lr),
                            betas=tuple(st.optimizer.betas), weight_decay=float(st.optimizer.weight_decay))
    lam = float(cfg.training.lambda_rollout)
    M, T = lat.shape[:2]
    g = torch.Generator().manual_seed(0)
    rates = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(M, generator=g)
        for b in range(0, M, bs):
            idx = perm[b:b + bs]
            t = torch.randint(0, T - H, (len(idx),), generator=g)
            win = lat[idx[:, None].to(device), (t[:, None] + torch.arange(H + 1)).to(device)]  # (B, H+1, N, D)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                z, loss, w = win[:, 0], 0.0, 0.0
                for k in range(1, H + 1):
                    z = model.operator(z)
                    wk = 1.0 if k == 1 else lam
                    if wk:
                        loss = loss + wk * F.mse_loss(z, win[:, k])
                        w += wk
                loss = loss / w
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rates.append(M / (time.perf_counter() - t0))
    return {"loop_samples_per_s": statistics.median(rates[1:] or rates)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="dim32")
    ap.add_argument("--n", type=int, default=512, help="training trajectories")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    bf16 = device.type == "cuda"
    label = "cuda-bf16" if bf16 else "cpu-fp32"
    ov = [f"preset={a.preset}", f"training.num_threads={a.threads}",
          f"training.amp={'bf16' if bf16 else 'none'}"] + a.overrides
    data = synthetic(a.n)
    cached = run_ours(ov + ["training.latent_cache=true"], data, a.epochs)
    reenc = run_ours(ov + ["training.latent_cache=false"], data, a.epochs)
    bare = run_bare(ov, data, a.epochs, device, bf16)
    cfg = load_config(ov)
    out = {
        "benchmark": "train_throughput", "device": label, "preset": a.preset, "threads": a.threads,
        "params": count_parameters(build_model(cfg)), "n_train": a.n, "epochs": a.epochs,
        "rollout_horizon": int(cfg.training.rollout_horizon), "batch_size": int(cfg.stages.operator.batch_size),
        "cached": cached, "reencode": reenc, "bare": bare,
        "cache_speedup": cached["loop_samples_per_s"] / reenc["loop_samples_per_s"],
        "loop_overhead": 1.0 - cached["loop_samples_per_s"] / bare["loop_samples_per_s"],
        "end_to_end_overhead": 1.0 - cached["end_to_end_samples_per_s"] / bare["loop_samples_per_s"],
    }
    print(json.dumps(out, indent=1))
    print(f"[{label}] operator stage {a.preset}: cache {cached['loop_samples_per_s']:.0f} samples/s vs re-encode "
          f"{reenc['loop_samples_per_s']:.0f} ({out['cache_speedup']:.2f}x); our loop vs bare torch "
          f"{bare['loop_samples_per_s']:.0f} samples/s: overhead {100 * out['loop_overhead']:.1f}% "
          f"(end to end incl. validation/checkpoints {100 * out['end_to_end_overhead']:.1f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
