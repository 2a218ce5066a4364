"""Framework overhead of the sweep engine vs a plain sequential loop doing the same trials, same run.

Each trial is the same fixed CPU work (torch matmuls calibrated in this process to ~``--seconds``),
split into ``--epochs`` reports with a small checkpoint every 2 epochs — the shape of a UPS trial.
The plain loop runs the trials one after another in this process, once before and once after the
engine (baseline = their mean, so load drift on a shared machine shows up instead of biasing the ratio); the engine runs them through
``run_round`` (real local Ray, Tune, FIFO, random search, physics-gate stopper, leaderboard callback,
W&B offline logging ON) with ``max_concurrent=1`` so both do the same work serially.

    python benchmarks/tune_overhead.py                      # 16 trials × ~30 s, loop + engine + loop (≈ 24 min)
    python benchmarks/tune_overhead.py --trials 4 --seconds 5

Prints one JSON object and a one-line summary; overhead = engine wall / plain wall − 1 (target ≤ 10 %).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

import torch  # noqa: E402


def work_unit(n: int) -> float:
    a = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    s = 0.0
    for _ in range(n):
        s += float((a @ a).sum()) * 1e-12
    return s


def calibrate(seconds_per_epoch: float) -> int:
    work_unit(20)  # warm-up: the first calls (allocator, thread pool) are slower and made trials ~20 % short
    t0, n = time.perf_counter(), 50
    work_unit(n)
    per = (time.perf_counter() - t0) / n
    return max(1, int(seconds_per_epoch / per))


def run_trial(units: int, epochs: int, report, ckpt_root: Path) -> None:
    """One trial: `epochs` reports, a checkpoint every 2nd epoch (as the UPS trainer in sweeps)."""
    for ep in range(1, epochs + 1):
        work_unit(units)
        ckpt = None
        if ep % 2 == 0 or ep == epochs:
            ckpt = ckpt_root / f"ep{ep}"
            ckpt.mkdir(parents=True, exist_ok=True)
            torch.save({"w": torch.zeros(1000), "epoch": ep}, ckpt / "checkpoint.pt")
        report({"stage": "operator", "epoch": ep, "train_loss": 1.0 / ep, "val_nrmse": 0.5 / ep,
                "val_conservation_gap": 0.01, "val_bc_violation": 0.01, "params": 1}, ckpt)


def plain_loop(trials: int, units: int, epochs: int, root: Path) -> float:
    t0 = time.perf_counter()
    for i in range(trials):
        log = (root / f"plain_{i}.jsonl").open("w")

        def report(m, ckpt, log=log):
            log.write(json.dumps(m) + "\n")

        run_trial(units, epochs, report, root / f"plain_{i}")
        log.close()
    return time.perf_counter() - t0


def make_trainable(units: int, epochs: int, threads: int):
    def trial(config):
        import tempfile as tf
        from pathlib import Path as P

        from ray import tune
        from ray.tune import Checkpoint

        torch.set_num_threads(threads)  # the plain loop's; Ray sets the worker's OMP_NUM_THREADS to resources.cpu (smoke: 1)

        def report(m, ckpt):
            tune.report(m, checkpoint=Checkpoint.from_directory(str(ckpt)) if ckpt else None)

        with tf.TemporaryDirectory(prefix="ovh_") as root:  # the plain loop's twin lives in its run root
            run_trial(units, epochs, report, P(root))
        tune.report({"stage": "done", "done": 1, "final": 1, "val_nrmse": 0.5 / epochs, "nrmse": 0.5 / epochs})

    return trial


def time_state_saves() -> dict[str, float]:
    """Count and time the experiment-state saves the sweep's schedulers force when a trial ends
    (``ups.tune.restore.SavesStateOnTrialEnd``): the step that saves, timed whole, in this process."""
    from ups.tune import restore

    spent = {"saves": 0, "s": 0.0}
    choose = restore.SavesStateOnTrialEnd.choose_trial_to_run

    def timed(self, controller):
        due, t = self._state_due, time.perf_counter()
        out = choose(self, controller)
        if due:
            spent["saves"] += 1
            spent["s"] += time.perf_counter() - t
        return out

    restore.SavesStateOnTrialEnd.choose_trial_to_run = timed
    return spent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=30.0, help="compute per trial")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    units = calibrate(args.seconds / args.epochs)
    root = Path(tempfile.mkdtemp(prefix="tune_overhead_"))
    plain_before = plain_loop(args.trials, units, args.epochs, root)

    import ray

    from ups.tune.launcher import run_round

    space = root / "space.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: uniform, low: 0.0, high: 0.1}\n")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    saves = time_state_saves()
    t0 = time.perf_counter()
    run_round("overhead", [f"space={space}", f"num_samples={args.trials}", "max_concurrent=1", "searcher.name=random",
                           "scheduler.name=fifo", "baselines=false", "promotion.top_k=0", "verbose=0",
                           f"storage_path={root / 'runs'}", f"leaderboard={root / 'lb.csv'}",
                           f"report_dir={root / 'reports'}", "print_top=0", "write_report=false", f"training.num_threads={args.threads}"],
              trainable=make_trainable(units, args.epochs, args.threads))
    engine = time.perf_counter() - t0
    ray.shutdown()
    # the plain loop again after the engine: on a shared machine the load drifts, so the baseline is
    # the mean of a run before and a run after (both are printed)
    plain_after = plain_loop(args.trials, units, args.epochs, root)
    plain = 0.5 * (plain_before + plain_after)
    out = {"trials": args.trials, "seconds_per_trial": args.seconds, "epochs": args.epochs,
           "plain_s": round(plain, 2), "plain_before_s": round(plain_before, 2),
           "plain_after_s": round(plain_after, 2), "plain_s_per_trial": round(plain / args.trials, 2),
           "engine_s": round(engine, 2), "ratio": round(engine / plain, 4),
           "overhead_pct": round(100 * (engine / plain - 1), 2), "per_trial_overhead_s": round((engine - plain) / args.trials, 3),
           "state_saves_on_trial_end": saves["saves"], "state_saves_s": round(saves["s"], 3),
           "wandb": os.environ.get("WANDB_MODE"), "concurrency": 1, "note": "same process, same work; 2 CPUs"}
    print(json.dumps(out))
    print(f"tune_overhead: engine {engine:.1f}s vs plain loop {plain:.1f}s for {args.trials}×{args.seconds:g}s trials "
          f"→ overhead {out['overhead_pct']:+.1f}% ({out['per_trial_overhead_s']:.2f}s/trial, W&B {out['wandb']}; "
          f"{saves['saves']} state saves at trial ends, {saves['s']:.2f}s)")


if __name__ == "__main__":
    main()
