"""Where a trained model's test error comes from: the autoencoder's round trip against the whole forecast.

Trains one base config (by default the current champion's, from ``reports/champion.json``) once per variant and
training seed, in this process, one after the other, and scores each on the test split: the forecast's nRMSE and
PDEBench fRMSE bands, and the autoencoder's round trip of the true frames (``ups.reconstruction``: what a perfect
latent operator would leave). The first variant is the baseline the others are compared with (ratios of seed means,
same run). TTC is off: this is about the trained networks.

    .venv/bin/python benchmarks/error_split.py                                   # champion config, no variant
    .venv/bin/python benchmarks/error_split.py --seeds 0 1 --variant "" \\
        --variant "stages.autoencoder.epochs=40" --variant "training.lambda_spectral=0.05"

Prints one JSON object (every run, then per variant the seed means and the ratios to the first variant) and one
summary line per variant.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ups.config import apply_overrides, config_from_dict, override_key  # noqa: E402
from ups.reconstruction import RECON_KEYS  # noqa: E402

FIELDS = ("nrmse", "frmse_low_pdebench", "frmse_mid_pdebench", "frmse_high_pdebench", *RECON_KEYS)


def _updates(variant: str) -> dict[str, object]:
    """``"a.b=1 c=[0.9, 0.99]"`` → ``{"a.b": 1, "c": [0.9, 0.99]}`` (values read as YAML, as ``ups eval`` does)."""
    import yaml

    out: dict[str, object] = {}
    for item in shlex.split(variant):
        if "=" not in item:
            raise SystemExit(f"error_split: variant item '{item}' is not key=value. Fix: e.g. --variant "
                             "\"stages.autoencoder.epochs=40\"")
        out[override_key(item)] = yaml.safe_load(item.split("=", 1)[1])
    return out


def run_one(base: dict, variant: str, seed: int, threads: int, run_root: Path) -> dict:
    from ups.data.protocol import load_protocol
    from ups.train.trainer import train

    cfg = config_from_dict(base, source="error_split base config")
    cfg = apply_overrides(cfg, {**_updates(variant), "training.seed": seed, "ttc.enabled": False,
                                "training.num_threads": threads, "eval.max_samples": -1},
                          source=f"error_split variant {variant!r}")
    data = load_protocol(cfg.data)
    t0 = time.perf_counter()
    res = train(cfg, run_dir=Path(tempfile.mkdtemp(dir=run_root)), data=data)
    m = res.metrics
    return {"variant": variant, "seed": seed, "train_s": round(time.perf_counter() - t0, 1),
            **{k: float(m[k]) for k in FIELDS}, "val_recon_nrmse": float(m["val_recon_nrmse"])}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--champion", type=Path, default=Path("reports/champion.json"),
                    help="a champion.json (or any JSON with a 'config' key) whose config is the base")
    ap.add_argument("--variant", action="append", default=None,
                    help="space-separated key=value overrides of the base; repeat; the first is the baseline "
                         "(default: one variant, the base itself)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if not a.champion.exists():
        ap.error(f"{a.champion} does not exist. Fix: run a sweep first (bash run.sh) or pass --champion=<file>")
    base = json.loads(a.champion.read_text()).get("config")
    if not isinstance(base, dict):
        ap.error(f"{a.champion} has no 'config' object. Fix: pass a champion.json written by a sweep")
    variants = a.variant or [""]
    for v in variants:  # every variant checked before the first training
        apply_overrides(config_from_dict(base), _updates(v), source=f"error_split variant {v!r}")
    torch.set_num_threads(a.threads)
    runs = []
    with tempfile.TemporaryDirectory(prefix="ups-error-split-") as tmp:
        for v in variants:
            for s in a.seeds:
                r = run_one(base, v, s, a.threads, Path(tmp))
                runs.append(r)
                print(f"  {v or '(base)'} seed {s}: nRMSE {r['nrmse']:.4f}, round trip {r['recon_nrmse']:.4f} "
                      f"({r['train_s']:.0f} s)", file=sys.stderr, flush=True)
    means = {v: {k: statistics.fmean(r[k] for r in runs if r["variant"] == v) for k in (*FIELDS, "train_s")}
             for v in variants}
    ref = means[variants[0]]
    for v in variants:
        means[v]["vs_first"] = {k: means[v][k] / ref[k] for k in FIELDS if ref[k] > 0}
    print(json.dumps({"benchmark": "error_split", "champion": str(a.champion), "seeds": a.seeds, "runs": runs,
                      "means": means}, indent=1))
    for v in variants:
        m = means[v]
        print(f"{v or '(base)'}: nRMSE {m['nrmse']:.4f} (×{m['vs_first']['nrmse']:.2f}), round trip "
              f"{m['recon_nrmse']:.4f} = {m['recon_nrmse'] / m['nrmse']:.0%} of it; fRMSE high forecast "
              f"{m['frmse_high_pdebench']:.3g} / round trip {m['recon_frmse_high_pdebench']:.3g}; "
              f"{m['train_s']:.0f} s per training (mean of {len(a.seeds)} seed(s))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
