"""What per-sample noise (``ups.models.diffusion.SampleNoise``) costs the evaluation, against an earlier commit's
``ups/eval.py`` in the same process (runs alternate, medians compared).

Since 2026-12-07 each test sample draws its TTC candidates and ensemble members from its own generators, so its
figures do not depend on ``eval.batch_size`` (one generator drew for the whole batch before). This times
``evaluate_detailed`` of one untrained model of ``--preset`` (residual sampler switched on, TTC searching every step
with ``ttc.threshold=0``: the most noise drawn) on the smoke profile's data with the current code and with
``ups/eval.py`` as it was at ``--baseline`` (default 28887d3, the last commit before the change).

Prints one JSON object and a one-line summary.

    .venv/bin/python benchmarks/eval_noise.py [--baseline 28887d3] [--repeats 3] [--preset dim32] [--threads 1]
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ups.config import load_config  # noqa: E402


def module_at(commit: str, path: str, name: str) -> object:
    """``path`` of the repository as it was at ``commit``, imported as module ``name``."""
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{commit}:{path}"], check=True, capture_output=True,
                          text=True).stdout
    folder = Path(tempfile.mkdtemp(prefix="ups-eval-noise-"))
    (folder / f"{name}.py").write_text(text)
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while the class is made
    spec.loader.exec_module(mod)
    shutil.rmtree(folder, ignore_errors=True)  # imported: the copy is no longer read
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default="28887d3", help="commit whose ups/eval.py is the baseline")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--preset", default="dim32")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    import ups.eval as current
    from ups.data.protocol import load_protocol
    from ups.models.ups_model import build_model

    baseline = module_at(a.baseline, "ups/eval.py", "ups_eval_baseline")
    torch.set_num_threads(a.threads)
    cfg = load_config([f"preset={a.preset}", "data.n=256", "data.resolution=256", "data.reduced_resolution=2",
                       "ttc.threshold=0"])
    data = load_protocol(cfg.data)
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    model.residual_std.fill_(0.1)  # an untrained sampler, but distinct candidates
    seconds: dict[str, list[float]] = {"baseline": [], "per_sample": []}
    for _ in range(a.repeats):
        for name, mod in (("baseline", baseline), ("per_sample", current)):
            t0 = time.perf_counter()
            mod.evaluate_detailed(model, cfg, data)
            seconds[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in seconds.items()}
    out = {"baseline_commit": a.baseline, "preset": a.preset, "threads": a.threads, "test_samples": int(data.test.shape[0]),
           "eval_batch_size": int(cfg.eval.batch_size), "ensemble_size": int(cfg.eval.ensemble_size),
           "ttc": {k: cfg.ttc[k] for k in ("candidates", "beam_width", "horizon", "steps")}, "seconds": seconds,
           "median_s": med, "ratio_per_sample_over_baseline": med["per_sample"] / med["baseline"]}
    print(json.dumps(out))
    print(f"eval with per-sample noise {med['per_sample']:.2f} s vs {med['baseline']:.2f} s at {a.baseline} "
          f"(median of {a.repeats}): {out['ratio_per_sample_over_baseline']:.3f}×")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
