"""GPU packing: the same trials through the sweep engine at 1, 2 and 4 trials per GPU, same run.

The full profile packs four trials on a GPU (``resources.gpu=0.25``) because its models are small:
one trial alone leaves most of a GPU idle. This measures that claim. The same ``--trials`` round-A
trials (full-profile data and model, random search with one seed, so every setting trains the same
configs; FIFO, no early stopping; the stage cache off, so every trial does the same work) run once
per ``resources.gpu`` fraction on one local Ray instance, one after another. Per setting it records
the sweep's wall clock, trials per hour, the concurrency the launcher chose and the concurrency seen
(overlap of the trials' run intervals), each trial's own wall clock, the GPU's utilisation and memory
in use (NVML, sampled every 0.25 s) and the trials' test nRMSE (packing must not change results).
Throughput ratios are against ``resources.gpu=1`` in the same run.

    python benchmarks/gpu_packing.py                      # 8 trials at 1, 0.5, 0.25 GPU (a GPU machine)
    python benchmarks/gpu_packing.py --fake-gpus 1 --trials 2 --n 64 --resolution 256 --fractions 1,0.5
                                                          # a CPU dry run: Ray's logical GPU, trials on CPU

Prints one JSON object and a one-line summary (``--out`` also writes the JSON). ``--deadline-s`` caps each
sweep (``time_budget_s``) to end by then and skips the settings left with under 30 s (listed as skipped),
so a leased machine's time is kept; a capped setting counts only its completed trials.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sweeps"))

import torch  # noqa: E402


class GpuMonitor:
    """NVML samples of GPU 0 (utilisation %, memory in use MiB) in a thread; empty without NVML/CUDA."""

    def __init__(self, period_s: float = 0.25):
        self.period_s, self.samples = period_s, []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
            self.name = str(pynvml.nvmlDeviceGetName(self._handle))
        except Exception:  # no NVML (CPU machine, or nvidia-ml-py missing)
            self._nvml, self._handle, self.name = None, None, None

    def used_mib(self) -> float | None:
        """GPU memory in use now (MiB, the whole GPU); None without NVML."""
        return None if self._nvml is None else self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20

    def __enter__(self) -> "GpuMonitor":
        if self._nvml is not None:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            u = self._nvml.nvmlDeviceGetUtilizationRates(self._handle)
            m = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
            self.samples.append((time.perf_counter(), float(u.gpu), m.used / 2**20))
            self._stop.wait(self.period_s)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self) -> dict[str, Any]:
        if not self.samples:
            return {}
        util = [s[1] for s in self.samples]
        mem = [s[2] for s in self.samples]
        return {"gpu_util_mean_pct": round(statistics.fmean(util), 1),
                "gpu_util_busy_share": round(sum(u > 0 for u in util) / len(util), 3),
                "gpu_mem_peak_mib": round(max(mem), 1), "gpu_samples": len(util)}


def trial_intervals(rows: Any) -> list[tuple[float, float]]:
    """(start, end) of each trial from its row: end = the row's timestamp, start = end − its wall clock.
    Timestamps have 1 s resolution, so the overlap is read with a 1 s tolerance (intervals shrunk by 1 s)."""
    import pandas as pd

    out = []
    for ts, wall in zip(pd.to_datetime(rows["timestamp"]), rows["wall_clock"].astype(float)):
        end = ts.timestamp()
        out.append((end - wall + 1.0, end))
    return [(a, b) for a, b in out if b > a]


def overrides_for(args: argparse.Namespace, root: Path, fraction: float) -> list[str]:
    tag = f"{fraction:g}".replace(".", "p")
    return ["profile=full", f"num_samples={args.trials}", "max_concurrent=0", f"resources.gpu={fraction:g}",
            f"resources.cpu={args.cpu:g}", "searcher.name=random", "searcher.seed=0", "scheduler.name=fifo",
            "baselines=false", "promotion.top_k=0", "wandb.enabled=false", "write_report=false", "print_top=0",
            "verbose=0", "stage_cache=false", f"name=pack_{tag}", f"storage_path={root / 'runs'}",
            f"leaderboard={root / 'leaderboard.csv'}", f"report_dir={root / 'reports'}",
            f"data.n={args.n}", f"data.resolution={args.resolution}", f"data.cache_dir={root / 'data'}",
            f"stages.autoencoder.epochs={args.ae_epochs}", f"stages.operator.epochs={args.op_epochs}",
            f"stages.diff_residual.epochs={args.diff_epochs}",
            f"stages.consistency_distill.epochs={args.distill_epochs}",
            f"eval.max_samples={args.eval_samples}", f"training.amp={args.amp}",
            f"training.num_threads={args.threads}"] + (
        # a dry run's logical GPU: the trials hold a share and train on the CPU, deliberately (a share torch cannot
        # use is refused otherwise: ups.tune.gpu_share)
        ["training.device=cpu"] if args.fake_gpus and not torch.cuda.is_available() else [])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--fractions", default="0.25,1,0.5", help="resources.gpu per setting, run in this order")
    ap.add_argument("--cpu", type=float, default=2, help="resources.cpu per trial (the full profile's 2)")
    ap.add_argument("--threads", type=int, default=2, help="training.num_threads (the full profile's 2)")
    ap.add_argument("--n", type=int, default=2000, help="data.n (the full profile's 2000)")
    ap.add_argument("--resolution", type=int, default=1024, help="data.resolution (the full profile's 1024)")
    ap.add_argument("--ae-epochs", type=int, default=2)
    ap.add_argument("--op-epochs", type=int, default=3)
    ap.add_argument("--diff-epochs", type=int, default=1)
    ap.add_argument("--distill-epochs", type=int, default=1)
    ap.add_argument("--eval-samples", type=int, default=32, help="eval.max_samples (test trajectories, TTC on)")
    ap.add_argument("--amp", default="none", choices=["none", "bf16"])
    ap.add_argument("--fake-gpus", type=float, default=0, help="logical GPUs for a CPU dry run (trials run on CPU)")
    ap.add_argument("--deadline-s", type=float, default=0,
                    help="seconds from the start: each sweep is capped to end by then (its time_budget_s), later "
                         "settings are skipped (0: none)")
    ap.add_argument("--out", default="", help="also write the JSON here")
    args = ap.parse_args()
    t_start = time.perf_counter()
    fractions = [float(f) for f in args.fractions.split(",") if f.strip()]
    if any(not 0 < f <= 1 for f in fractions):
        ap.error(f"--fractions {args.fractions}: each must be in (0, 1]")
    os.environ.setdefault("WANDB_MODE", "disabled")

    import ray

    from round_a import DEFAULTS  # the round's own defaults (sweeps/round_a.py)
    from ups.tune.concurrency import most_at_once
    from ups.tune.launcher import load_data, run_round
    from ups.tune.ray_session import local_concurrency
    from ups.tune.prepare import prepare

    root = Path(tempfile.mkdtemp(prefix="gpu_packing_"))
    # the data once, before any timing (on CUDA when present; the sweeps then find it in the cache)
    t0 = time.perf_counter()
    p = prepare("round_a", overrides_for(args, root, fractions[0]), DEFAULTS)
    load_data(p.base)
    data_s = time.perf_counter() - t0
    gpus = args.fake_gpus or float(torch.cuda.device_count())
    if gpus == 0:
        sys.exit("gpu_packing: no CUDA GPU here (torch.cuda.device_count() == 0). Fix: run it on a GPU machine, "
                 "or pass --fake-gpus 1 for a CPU dry run")
    ncpu = os.cpu_count() or 1
    ray.init(num_cpus=ncpu, num_gpus=gpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    settings: list[dict[str, Any]] = []
    try:
        for g in fractions:
            extra, cap = [], None
            if args.deadline_s:  # no sweep runs past the deadline: the sweep's own wall-clock cap
                left = args.deadline_s - (time.perf_counter() - t_start)
                if left < 30:
                    settings.append({"resources_gpu": g, "skipped": f"under 30 s left of --deadline-s {args.deadline_s:g}"})
                    continue
                cap = round(left)
                extra = [f"time_budget_s={cap}"]
            with GpuMonitor() as mon:
                t0 = time.perf_counter()
                o = run_round("round_a", overrides_for(args, root, g) + extra, defaults=DEFAULTS, promote=False)
                wall = time.perf_counter() - t0
            rows = o.rows[(o.rows["experiment"] == o.experiment) & (o.rows["kind"] == "trial")]
            done = rows[rows["status"] == "completed"]
            planned = local_concurrency(prepare("round_a", overrides_for(args, root, g), DEFAULTS).scfg, ncpu, gpus)
            s = {"resources_gpu": g, "concurrency_planned": planned,
                 "concurrency_seen": most_at_once(trial_intervals(rows)), "trials": int(len(rows)),
                 "completed": int(len(done)), "sweep_s": round(wall, 2), "cap_s": cap,
                 "trials_per_hour": round(len(done) / wall * 3600, 1),
                 "trial_wall_median_s": round(float(rows["wall_clock"].median()), 2),
                 "gpu_hours": round(float(rows["gpu_hours"].sum()), 5),
                 "test_nrmse_median": round(float(done["nrmse"].median()), 5) if len(done) else None,
                 "test_nrmse_by_label": {str(r["label"]): round(float(r["nrmse"]), 5) for _, r in done.iterrows()},
                 **mon.summary()}
            settings.append(s)
            print(f"gpu_packing: resources.gpu={g:g}: {s['completed']}/{s['trials']} trials in {wall:.1f}s "
                  f"(concurrency {s['concurrency_seen']}, trial median {s['trial_wall_median_s']}s)", flush=True)
    finally:
        ray.shutdown()
    base = next((s for s in settings if s.get("resources_gpu") == 1.0 and s.get("completed")), None)
    for s in settings:
        if base and "sweep_s" in s:  # completed trials per second: a setting capped by --deadline-s completes fewer
            s["throughput_vs_1gpu"] = round((s["completed"] / s["sweep_s"]) / (base["completed"] / base["sweep_s"]), 3)
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU ({args.fake_gpus:g} logical GPU)"
    out = {"device": dev, "torch": torch.__version__, "cpus": ncpu, "gpus": gpus, "trials": args.trials,
           "data": {"n": args.n, "resolution": args.resolution, "prepare_s": round(data_s, 2)},
           "epochs": {"autoencoder": args.ae_epochs, "operator": args.op_epochs, "diff_residual": args.diff_epochs,
                      "consistency_distill": args.distill_epochs}, "eval_samples": args.eval_samples,
           "amp": args.amp, "resources_cpu": args.cpu, "settings": settings,
           "total_s": round(time.perf_counter() - t_start, 1)}
    text = json.dumps(out)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    parts = [f"{s['resources_gpu']:g} GPU/trial: {s['trials_per_hour']:.0f} trials/h"
             + (f" ({s['throughput_vs_1gpu']:.2f}×)" if "throughput_vs_1gpu" in s else "")
             for s in settings if "sweep_s" in s]
    print(f"gpu_packing on {dev}: " + "; ".join(parts) + f" — {args.trials} identical trials per setting")
    if not any(s.get("completed") for s in settings):  # a figure of 0 trials/h measured nothing: not a success
        sys.exit(f"gpu_packing: no trial completed in any setting; their errors are in {root / 'runs'}/pack_*/*/error.txt")
    shutil.rmtree(root, ignore_errors=True)  # the sweeps' folders and data (kept above, for their errors)


if __name__ == "__main__":
    main()
