"""Burgers data generation speed: batched torch ETDRK4 vs a plain NumPy single-trajectory loop.

    python benchmarks/datagen.py            # 2,000 trajectories, ν=0.01, saved at 1024 points
    python benchmarks/datagen.py --n 128    # quick run

Runs the real generator (``ups.data.cache.generate``: ICs, amplitude-sorted batches, tail check,
atomic HDF5 write) into a temp folder, then times the same ETDRK4 scheme in plain NumPy, one
trajectory at a time with each trajectory's own grid and step (``--ref-n`` of them, picked evenly
across amplitudes, scaled to n), and checks that both agree. Prints a JSON object and a summary line.
Wall-clock and CPU-time ratios are both reported: on a shared machine CPU time is the stable one.
On CPU the generator runs one single-threaded solver process per core (``--workers``); the CPU time
includes those processes (and their torch import).
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

# threads that wait passively instead of spinning: on a shared or busy machine OpenMP's default
# spin-waiting makes 2 threads 10–30× slower than 1 (measured); must be set before torch loads
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ups.config import load_config  # noqa: E402
from ups.data.cache import cache_file, generate  # noqa: E402
from ups.data.initial import cell_centres, evaluate_init, sample_init_params  # noqa: E402
from ups.data.solver import choose_resolution, choose_substeps, solve_single_numpy  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=2000, help="trajectories (default 2000)")
    p.add_argument("--nu", type=float, default=0.01)
    p.add_argument("--resolution", type=int, default=1024)
    p.add_argument("--seed", type=int, default=2022)
    p.add_argument("--ref-n", type=int, default=6, help="trajectories timed with the NumPy loop")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the batched solver")
    p.add_argument("--device", default=None)
    p.add_argument("--workers", type=int, default=None,
                   help="CPU solver processes (default: one per core, capped by batches; 1: in-process)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    load_start = os.getloadavg()

    with tempfile.TemporaryDirectory(prefix="ups_datagen_") as tmp:
        cfg = load_config([f"data.n={a.n}", f"data.nu={a.nu}", f"data.resolution={a.resolution}",
                           f"data.seed={a.seed}", f"data.cache_dir={tmp}"]).data
        path = cache_file(cfg)
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        child_cpu0 = ch0.ru_utime + ch0.ru_stime
        t0, c0 = time.perf_counter(), time.process_time()
        attrs = generate(cfg, path, progress=sys.stderr.isatty(), device=a.device, workers=a.workers)
        batched_s = time.perf_counter() - t0
        # CPU time of this process and of its (joined) solver worker processes
        ch = resource.getrusage(resource.RUSAGE_CHILDREN)
        parent_cpu = time.process_time() - c0
        batched_cpu = parent_cpu + ch.ru_utime + ch.ru_stime - child_cpu0
        rss_after_batched = peak_rss_mb()
        size_mb = path.stat().st_size / 2**20

        # reference: the same scheme, one trajectory at a time in NumPy (float64, single thread)
        x = cell_centres(a.resolution)
        t = np.linspace(0.0, cfg.t_final, cfg.frames)
        u0 = evaluate_init(sample_init_params(a.n, a.seed), x)  # (n, X)
        order = np.argsort(-np.abs(u0).max(axis=1), kind="stable")
        pick = order[np.linspace(0, a.n - 1, min(a.ref_n, a.n)).round().astype(int)]
        with h5py.File(path, "r") as f:  # only the compared rows, not the whole file
            rows = np.sort(pick)
            saved = dict(zip(rows.tolist(), f["tensor"][rows]))
        ref_times, ref_cpu, max_diff = [], [], 0.0
        for i in pick:
            amp = float(np.abs(u0[i]).max())
            spread = float(u0[i].max() - u0[i].min()) / 2
            n_int = choose_resolution(spread, a.nu, a.resolution)
            sub = choose_substeps(amp, a.nu, n_int, float(t[1] - t[0]))
            s, c = time.perf_counter(), time.process_time()
            ref = solve_single_numpy(u0[i], a.nu, t, n_int, sub)
            ref_times.append(time.perf_counter() - s)
            ref_cpu.append(time.process_time() - c)
            scale = np.linalg.norm(ref, axis=-1).clip(1e-12)
            max_diff = max(max_diff, float((np.linalg.norm(saved[int(i)] - ref, axis=-1) / scale).max()))
    ref_per_traj = float(np.mean(ref_times))
    ref_total = ref_per_traj * a.n
    result = {
        "benchmark": "datagen", "n": a.n, "nu": a.nu, "resolution": a.resolution, "frames": int(cfg.frames),
        "threads": a.threads, "workers": int(attrs.get("workers", 1)), "device": a.device or "cpu",
        "batched_s": round(batched_s, 2), "batched_traj_per_s": round(a.n / batched_s, 2),
        "reference": "numpy single-trajectory ETDRK4 loop, per-trajectory grid and dt, float64",
        "reference_timed_trajectories": len(pick), "reference_s_per_traj": round(ref_per_traj, 4),
        "reference_traj_per_s": round(1.0 / ref_per_traj, 2), "reference_est_total_s": round(ref_total, 1),
        "speedup": round(ref_total / batched_s, 2),
        "batched_cpu_s": round(batched_cpu, 2), "batched_cpu_parent_s": round(parent_cpu, 2), "reference_est_total_cpu_s": round(float(np.mean(ref_cpu)) * a.n, 1),
        "speedup_cpu_time": round(float(np.mean(ref_cpu)) * a.n / batched_cpu, 2),
        "max_rel_diff_batched_vs_reference": max_diff,
        "solver_resolution": [int(attrs["solver_resolution_min"]), int(attrs["solver_resolution_max"])],
        "substeps": [int(attrs["substeps_min"]), int(attrs["substeps_max"])],
        "spectral_tail_max": float(attrs["spectral_tail_max"]),
        "file_mb": round(size_mb, 1), "peak_rss_mb_after_batched": round(rss_after_batched, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "loadavg_start": [round(v, 2) for v in load_start], "loadavg_end": [round(v, 2) for v in os.getloadavg()],
        "cpu_count": os.cpu_count(),
    }
    print(json.dumps(result))
    print(f"datagen: {a.n} trajectories (ν={a.nu:g}, X={a.resolution}) in {batched_s:.1f} s = "
          f"{result['batched_traj_per_s']} traj/s vs NumPy loop {result['reference_traj_per_s']} traj/s "
          f"→ {result['speedup']}× wall, {result['speedup_cpu_time']}× CPU time "
          f"(workers={result['workers']}, threads={a.threads if result['workers'] == 1 else 1}, peak RSS {result['peak_rss_mb']} MB, "
          f"load {result['loadavg_start'][0]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
