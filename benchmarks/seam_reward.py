"""Is TTC's seam (BC) reward honest? Scores true Burgers frames and frames with a jump put on the seam.

TTC's rewards must score a physically right frame 0 (``ups/rewards.py``). This scores every frame after
the 10 context frames of generated Burgers trajectories (train, val and test splits) against its true
previous frame with

* ``tvd``: the seam term TTC uses since 2026-12-05, ``ups.rewards.boundary_excess`` (variation at the
  seam that is new total variation), and
* ``d3``: the term it used before, kept here as the baseline: the seam's largest |third difference|
  beyond the interior's largest, which a true shock sitting on the seam also exceeds;

each in units of the last context frame's RMS, as TTC weighs it. Then it adds a spurious jump of
``J`` · RMS at the seam (the field plus ``J`` · RMS · (x − ½), periodic sawtooth) and reports how
often each term sees it (score > J/2). Data sets: PDEBench's ν = 0.01 and ν = 0.001 on 256 points
(generated into the data cache on first use, ~1 min each on 2 cores).

    .venv/bin/python benchmarks/seam_reward.py [--n 100] [--nu 0.01 0.001] [--jumps 0.05 0.1 0.3]

Prints one JSON object and a one-line summary.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CONTEXT = 10


def d3_excess(u: torch.Tensor) -> torch.Tensor:
    """The seam term before 2026-12-05: seam |Δ³| beyond the interior's largest, (..., X) → (...)."""
    d3 = u.roll(-1, -1) - 3 * u + 3 * u.roll(1, -1) - u.roll(2, -1)
    return (d3[..., [0, 1, -1]].abs().amax(-1) - d3[..., 2:-1].abs().amax(-1)).clamp_min(0.0)


def score(u: torch.Tensor, jumps: list[float]) -> dict:
    """Both terms on the true frames of ``u`` (N, T, X) and with each seam jump added."""
    from ups.rewards import boundary_excess

    terms = {"tvd": boundary_excess, "d3": lambda f, p: d3_excess(f)}
    x_size = u.shape[-1]
    x = (torch.arange(x_size, dtype=torch.float64) + 0.5) / x_size
    scale = u[:, CONTEXT - 1].pow(2).mean(-1).sqrt().clamp_min(1e-6)  # (N,)
    out: dict = {}
    for name, term in terms.items():
        true, seen = [], {j: [] for j in jumps}
        for t in range(CONTEXT, u.shape[1]):
            frame, prev = u[:, t], u[:, t - 1]  # (N, X)
            true.append(term(frame, prev) / scale)
            for j in jumps:
                seen[j].append(term(frame + j * scale[:, None] * (x - 0.5), prev) / scale)
        v = torch.stack(true)  # (T - CONTEXT, N)
        out[name] = {
            "true_frames": int(v.numel()),
            "true_scored_above_1e-3": float((v > 1e-3).double().mean()),
            "true_max": float(v.max()),
            "true_mean": float(v.mean()),
            "jump_seen": {str(j): float((torch.stack(w) > j / 2).double().mean()) for j, w in seen.items()},
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100, help="trajectories per data set (all splits scored)")
    ap.add_argument("--nu", type=float, nargs="+", default=[0.01, 0.001])
    ap.add_argument("--jumps", type=float, nargs="+", default=[0.05, 0.1, 0.3])
    a = ap.parse_args()
    from ups.config import load_config
    from ups.data.cache import dataset_path
    from ups.data.protocol import load_protocol

    out = {"n": a.n, "resolution": 256, "context": CONTEXT, "data": {}}
    for nu in a.nu:
        cfg = load_config([f"data.nu={nu}", f"data.n={a.n}", "data.resolution=256", "data.reduced_resolution=1",
                           "data.seed=7"])
        dataset_path(cfg.data, progress=False, num_threads=1)
        d = load_protocol(cfg.data)
        u = torch.cat([d.train, d.val, d.test]).to(torch.float64)  # (N, T, X)
        out["data"][f"nu={nu}"] = score(u, a.jumps)
    print(json.dumps(out))
    parts = []
    for key, r in out["data"].items():
        parts.append(f"{key}: true frames max tvd {r['tvd']['true_max']:.3f} vs d3 {r['d3']['true_max']:.3f}, "
                     f"jump {a.jumps[-1]} seen tvd {r['tvd']['jump_seen'][str(a.jumps[-1])]:.0%} "
                     f"vs d3 {r['d3']['jump_seen'][str(a.jumps[-1])]:.0%}")
    print("seam reward — " + "; ".join(parts))


if __name__ == "__main__":
    main()
