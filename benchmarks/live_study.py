"""What the live Optuna study (``ups.tune.live_study``) costs the sweep's driver.

The driver's ``LiveStudy`` callback feeds a ``StudyMirror`` on every Tune event and writes it to the round's
SQLite file every ``flush_s`` seconds of Tune's loop and whenever a trial ends.  This replays a sweep's events
in that order, on a fresh SQLite file, and times every mirror call (the events' bookkeeping and each flush) with
nothing between them:

- ``overhead``: the shape of ``benchmarks/tune_overhead.py`` (16 trials × ~30 s, 10 reports each, one at a time);
- ``large``: a large sweep (200 trials × 40 reports, 4 at a time, 60 s each), where the study file grows to
  8,000 intermediate values and each flush writes into it.

Each scenario's ``driver_s`` (Σ the mirror's calls) is divided by the sweep's running time (trials × seconds /
concurrency), which the replay does not spend: ``share_pct`` is the driver time the live study would add, as a
share of the sweep's wall clock.  ``first_flush_s`` is the one-off creation of a new round file's tables.

    python benchmarks/live_study.py            # both scenarios (about 1 min)
    python benchmarks/live_study.py --repeat 3

Prints one JSON object and a one-line summary.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from ups.tune.live_study import StudyMirror

DISTS = {"optimizer.lr": FloatDistribution(1e-4, 1e-2, log=True), "optimizer.warmup_ratio": FloatDistribution(0, 0.2),
         "optimizer.ema_decay": CategoricalDistribution([0.0, 0.99, 0.999]), "latent.tokens": IntDistribution(4, 32),
         "stages.operator.batch_size": CategoricalDistribution([8, 16, 32])}


def replay(trials: int, reports: int, seconds: float, concurrency: int, flush_s: float, root: Path) -> dict:
    """One sweep's events through a StudyMirror with the callback's flush rule; every call timed."""
    mirror = StudyMirror(root / f"optuna-{trials}x{reports}.db", "sweep", DISTS)
    events = []  # (sweep time, kind, trial)
    for i in range(trials):
        start = (i // concurrency) * seconds
        events.append((start, "start", i))
        events += [(start + seconds * (k + 1) / reports, "report", i, k + 1) for k in range(reports)]
        events.append((start + seconds, "end", i))
    events.sort(key=lambda e: (e[0], {"start": 0, "report": 1, "end": 2}[e[1]]))
    spent, flushes, last = 0.0, 0, -1e9
    t = time.perf_counter()
    mirror.flush()  # LiveStudy.setup: the study listed from the start (a new file: its tables created)
    first = time.perf_counter() - t
    for ev in events:
        at, kind, i = ev[:3]
        tid = f"trial_{i:05d}"
        t = time.perf_counter()
        if kind == "start":
            mirror.start(tid, {"optimizer.lr": 1e-3 * (1 + i % 7), "optimizer.warmup_ratio": 0.05,
                               "optimizer.ema_decay": 0.99, "latent.tokens": 8 + i % 9,
                               "stages.operator.batch_size": 16})
        elif kind == "report":
            mirror.report(tid, {"training_iteration": ev[3], "val_objective": 1.0 / ev[3] + 1e-3 * i,
                                "final": ev[3] == reports})
        else:
            mirror.end(tid)
        if kind == "end" or at - last >= flush_s:  # LiveStudy: a trial's end, or flush_s since the last write
            mirror.flush()
            flushes, last = flushes + 1, at
        spent += time.perf_counter() - t
    wall = trials * seconds / concurrency
    return {"trials": trials, "reports": reports, "seconds_per_trial": seconds, "concurrency": concurrency,
            "flushes": flushes, "first_flush_s": round(first, 3), "driver_s": round(spent, 3),
            "per_flush_ms": round(1000 * spent / max(flushes, 1), 2), "sweep_wall_s": wall,
            "share_pct": round(100 * spent / wall, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--flush-s", type=float, default=5.0, help="LiveStudy's flush_s")
    args = ap.parse_args()
    runs = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            runs.append({"overhead": replay(16, 10, 30.0, 1, args.flush_s, Path(d)),
                         "large": replay(200, 40, 60.0, 4, args.flush_s, Path(d))})
    worst = {k: max(r[k]["share_pct"] for r in runs) for k in ("overhead", "large")}
    print(json.dumps({"flush_s": args.flush_s, "runs": runs, "worst_share_pct": worst}))
    o, g = runs[-1]["overhead"], runs[-1]["large"]
    print(f"live_study: {o['driver_s']:.2f} s of driver time over a {o['sweep_wall_s']:.0f} s sweep of {o['trials']} "
          f"trials ({worst['overhead']:.2f} % worst of {args.repeat}); {g['driver_s']:.1f} s over {g['sweep_wall_s']:.0f} s "
          f"for {g['trials']} trials × {g['reports']} reports ({worst['large']:.2f} %); a new file's first write "
          f"{o['first_flush_s']:.2f} s")


if __name__ == "__main__":
    main()
