"""How precisely one trial of the CPU smoke profile measures its configuration: the noise floor of any sweep.

One configuration (the profile's defaults: ``ups/conf/sweep/smoke.yaml``, dim32, 10 autoencoder + 30
operator epochs) is trained

* with training seeds 0..``--seeds``-1 (initialisation and data order change; the autoencoder too), and
* with training seed 0 and the operator's learning rate moved by ±0.1 % and ±0.2 % (``--jitter``): what
  a sweep sees, where every trial uses seed 0 and the cached seed-0 autoencoder, and two nearby
  configurations differ by a little.

Each model is scored as the sweep scores it, rollout val nRMSE on the whole val split (25 trajectories),
and on ``--heldout`` fresh trajectories from another data seed.  From the per-trajectory errors
(seeds × trajectories) a two-way decomposition separates the model's own spread (the part shared by
every trajectory: a better or worse model) from the seed × trajectory part, and predicts the spread of
a val split of n trajectories, ``sqrt(var_model + var_interaction / n)``.  If the model part dominates,
a larger val split cannot make a trial's score more precise: only more training (or more seeds per
configuration) can.

    python benchmarks/trial_noise.py                      # 6 seeds + 4 lr jitters, 2 at a time (≈ 5 min)
    python benchmarks/trial_noise.py --seeds 3 --jitter   # quicker, seeds only
    python benchmarks/trial_noise.py --set stages.operator.epochs=60   # a longer profile (≈ 7 min)

Prints one JSON object and a one-line summary.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HELDOUT_DATA_SEED = 7  # the profile's data use data.seed=2022


def profile_overrides() -> list[str]:
    from ups.tune.sweep_config import load_profile

    return [*load_profile("smoke")["trial"], "training.val_max_samples=-1"]


def heldout_overrides(n: int) -> list[str]:
    """The profile's data settings with another data seed and ``n`` trajectories: every split is unseen."""
    return [*profile_overrides(), f"data.seed={HELDOUT_DATA_SEED}", f"data.n={n}"]


def one_run(seed: int, extra: list[str], heldout_n: int, root: str) -> dict:
    """Train one model; its val nRMSE and per-trajectory nRMSE on the val split and the held-out set."""
    import torch

    from ups.config import load_config
    from ups.data.protocol import load_protocol
    from ups.metrics import nrmse_per_sample
    from ups.train.trainer import train

    cfg = load_config([*profile_overrides(), f"training.seed={seed}", *extra])
    tag = "_".join([f"s{seed}", *(e.split("=")[1] for e in extra)])
    res = train(cfg, run_dir=Path(root) / tag)
    data = load_protocol(cfg.data)
    h = load_protocol(load_config(heldout_overrides(heldout_n)).data)
    heldout = torch.cat([h.train, h.val, h.test])
    k = int(cfg.data.initial_step)

    def per_trajectory(traj: torch.Tensor) -> list[float]:
        out = []
        with torch.no_grad():
            for i in range(0, traj.shape[0], 64):
                u = traj[i:i + 64]  # (b, T, X)
                pred = torch.cat([u[:, :k], res.model.rollout(u[:, :k], u.shape[1] - k)], dim=1)  # (b, T, X)
                out += nrmse_per_sample(pred, u, k).tolist()
        return out

    return {"seed": seed, "overrides": extra, "val_nrmse": float(res.metrics["val_nrmse"]),
            "val": per_trajectory(data.val), "heldout": per_trajectory(heldout)}


def decompose(errors: list[list[float]]) -> dict:
    """Two-way decomposition of per-trajectory errors E[s, j] = mu_j + a_s + e_sj (models × trajectories):
    var_model = var(a), var_interaction = var(e); the sd of a score over n trajectories is
    sqrt(var_model + var_interaction / n)."""
    import numpy as np

    e = np.asarray(errors, dtype=float)  # (S, J)
    s, j = e.shape
    resid = e - e.mean(1, keepdims=True) - e.mean(0, keepdims=True) + e.mean()
    var_inter = float((resid ** 2).sum() / ((s - 1) * (j - 1)))
    var_model = max(0.0, float(e.mean(1).var(ddof=1)) - var_inter / j)
    return {"models": s, "trajectories": j, "sd_model": round(math.sqrt(var_model), 5),
            "sd_interaction": round(math.sqrt(var_inter), 5),
            "sd_of_score": {str(n): round(math.sqrt(var_model + var_inter / n), 5) for n in (25, 256, 10 ** 9)}}  # 1e9: the model part alone


def spread(values: list[float]) -> dict:
    return {"values": [round(v, 4) for v in values], "mean": round(statistics.mean(values), 4),
            "sd": round(statistics.stdev(values), 4), "range": round(max(values) - min(values), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=6, help="training seeds 0..N-1 of the default configuration")
    ap.add_argument("--jitter", type=float, nargs="*", default=[-0.002, -0.001, 0.001, 0.002],
                    help="relative changes of the operator lr, trained with seed 0 (none: skip)")
    ap.add_argument("--heldout", type=int, default=256, help="fresh trajectories (data seed 7) to score on")
    ap.add_argument("--workers", type=int, default=2, help="runs at a time (one thread each)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override on top of the profile for every run, e.g. stages.operator.epochs=60 "
                         "(repeatable; model and training keys: the held-out data stay the profile's)")
    args = ap.parse_args()
    if args.seeds < 3:
        ap.error("--seeds must be ≥ 3 (a spread and a decomposition need several models)")
    from ups.config import load_config
    from ups.data.protocol import load_protocol

    base_lr = float(load_config([*profile_overrides(), *args.set]).stages.operator.optimizer.lr)
    for o in (profile_overrides(), heldout_overrides(args.heldout)):  # generate both datasets once, up front
        load_protocol(load_config(o).data)
    runs = [(s, list(args.set)) for s in range(args.seeds)]
    runs += [(0, [*args.set, f"stages.operator.optimizer.lr={base_lr * (1 + r):.7g}"]) for r in args.jitter]
    with tempfile.TemporaryDirectory(prefix="trial_noise_") as root, \
            ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(one_run, *zip(*runs), [args.heldout] * len(runs), [root] * len(runs)))
    by_seed, jittered = results[:args.seeds], results[args.seeds:]
    out = {"profile": "smoke", "overrides": args.set, "base_lr": base_lr, "heldout_trajectories": args.heldout,
           "val_trajectories": len(by_seed[0]["val"]),
           "training_seeds": {"val_nrmse": spread([r["val_nrmse"] for r in by_seed]),
                              "heldout_nrmse": spread([statistics.mean(r["heldout"]) for r in by_seed]),
                              "val_vs_heldout_pearson": round(float(statistics.correlation(
                                  [r["val_nrmse"] for r in by_seed], [statistics.mean(r["heldout"]) for r in by_seed])), 3),
                              "decomposition_heldout": decompose([r["heldout"] for r in by_seed]),
                              "decomposition_val": decompose([r["val"] for r in by_seed])}}
    if jittered:  # seed 0 at the base lr is the centre of the jitter
        out["lr_jitter_seed0"] = {"relative_lr_changes": [0.0, *args.jitter],
                                  "val_nrmse": spread([r["val_nrmse"] for r in (by_seed[0], *jittered)]),
                                  "heldout_nrmse": spread([statistics.mean(r["heldout"]) for r in (by_seed[0], *jittered)])}
    print(json.dumps(out))
    ts, d = out["training_seeds"], out["training_seeds"]["decomposition_heldout"]
    line = (f"trial noise (smoke profile, {' '.join(args.set) or 'default config'}): {args.seeds} training seeds val nRMSE sd {ts['val_nrmse']['sd']} "
            f"(range {ts['val_nrmse']['range']}), on {args.heldout} held-out trajectories sd {ts['heldout_nrmse']['sd']} "
            f"(val vs held-out r = {ts['val_vs_heldout_pearson']}); the model's own spread {d['sd_model']} of "
            f"{d['sd_of_score']['25']} at 25 trajectories (on the val split's own 25: "
            f"{ts['decomposition_val']['sd_model']} of {ts['decomposition_val']['sd_of_score']['25']})")
    if jittered:
        j = out["lr_jitter_seed0"]["val_nrmse"]
        line += f"; lr ±0.1-0.2 % at seed 0: sd {j['sd']} (range {j['range']})"
    print(line)


if __name__ == "__main__":
    main()
