"""Content-addressed cache of generated Burgers datasets.

The file name carries a hash of everything that determines the data (ν, n, resolution, seed, time
grid, initial-condition family, solver and its version), so the same request never recomputes and a
different one never collides. Files are written to a temp name and renamed when complete; a
half-written file never counts. A lock file serialises concurrent generators (e.g. Ray trials).
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from ups.config import ConfigError
from ups.data.hdf5 import DIGEST_ATTR, MIN_GRID_POINTS, DataFileError, PDEBenchWriter, inspect_pdebench
from ups.filelock import exclusive_lock
from ups.data.initial import cell_centres, evaluate_init, sample_init_params
from ups.data.solver import (MAX_RESOLUTION, RES_FACTOR, SOLVER_NAME, SOLVER_VERSION, SolverError,
                             choose_resolution, choose_substeps, diffusion, is_power_of_two, solve_burgers)

DATA_VERSION = "2"  # 2: init_multi window flag shares PDEBench's edge variate
K_TOT = 4
TAIL_TOL = 1e-5  # largest acceptable relative spectral tail (≈3× the saved relative error, measured)
CHUNK = 128  # trajectories per solver batch
MIN_RESOLUTION = max(16, MIN_GRID_POINTS)  # the FFT solver's 16, never fewer than the reader accepts


class DataConfigError(ConfigError):
    """A data request that cannot be generated; names the key and the fix."""


def _get(cfg: Any, key: str) -> Any:
    return cfg[key] if isinstance(cfg, dict) else getattr(cfg, key)


def validate_request(data_cfg: Any) -> None:
    """Check a generation request before any compute is spent."""
    def bad(key: str, why: str, fix: str) -> DataConfigError:
        return DataConfigError(f"data: '{key}' {why}. Fix: {fix}")

    nu, n, res = _get(data_cfg, "nu"), _get(data_cfg, "n"), _get(data_cfg, "resolution")
    if not (isinstance(nu, (int, float)) and math.isfinite(nu) and nu > 0):
        raise bad("nu", f"= {nu} must be > 0", "use e.g. nu=0.01 (PDEBench diffusion is ν/π)")
    if not (isinstance(n, int) and n > 0):
        raise bad("n", f"= {n} must be a positive integer", "use e.g. n=2000")
    if not (isinstance(res, int) and is_power_of_two(res) and res >= MIN_RESOLUTION):
        raise bad("resolution", f"= {res} is not a power of two ≥ {MIN_RESOLUTION}, which the FFT solver needs",
                  "use 256, 512, 1024 or 2048")
    if res > MAX_RESOLUTION:
        raise bad("resolution", f"= {res} exceeds {MAX_RESOLUTION}", f"use at most {MAX_RESOLUTION}")
    frames, t_final = _get(data_cfg, "frames"), _get(data_cfg, "t_final")
    if not (isinstance(frames, int) and frames >= 2):
        raise bad("frames", f"= {frames} must be ≥ 2", "use 201 (PDEBench: t ∈ [0,2] every 0.01)")
    if not (t_final > 0 and math.isfinite(t_final)):
        raise bad("t_final", f"= {t_final} must be > 0", "use 2.0 (PDEBench)")


def generation_key(data_cfg: Any) -> dict[str, Any]:
    """Everything that determines a generated file (and nothing else)."""
    return {
        "nu": float(_get(data_cfg, "nu")), "n": int(_get(data_cfg, "n")),
        "resolution": int(_get(data_cfg, "resolution")), "seed": int(_get(data_cfg, "seed")),
        "t_final": float(_get(data_cfg, "t_final")), "frames": int(_get(data_cfg, "frames")),
        "init": f"pdebench-init_multi-k{K_TOT}", "solver": SOLVER_NAME, "solver_version": SOLVER_VERSION,
        "data_version": DATA_VERSION, "tail_tol": TAIL_TOL,
    }


def content_hash(data_cfg: Any) -> str:
    return hashlib.sha1(json.dumps(generation_key(data_cfg), sort_keys=True).encode()).hexdigest()[:16]


def cache_file(data_cfg: Any) -> Path:
    """Where the dataset for this request lives (whether or not it exists yet)."""
    k = generation_key(data_cfg)
    root = Path(str(_get(data_cfg, "cache_dir"))).expanduser()
    return root / f"burgers_nu{k['nu']:g}_n{k['n']}_x{k['resolution']}_seed{k['seed']}_{content_hash(data_cfg)}.hdf5"


def is_complete(path: Path, expected_hash: str) -> bool:
    if not path.exists():
        return False
    try:
        info = inspect_pdebench(path)
    except DataFileError:
        return False
    return info.attrs.get("content_hash") == expected_hash


def _locked(path: Path) -> AbstractContextManager[None]:
    return exclusive_lock(path.with_name(path.name + ".lock"))


@contextmanager
def torch_threads(num_threads: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op threads (None: leave as is)."""
    if not num_threads:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _script_being_rerun() -> str:
    """The file spawn is re-running as ``__mp_main__`` (``sys.modules`` gets it only afterwards)."""
    frame = sys._getframe()
    while frame is not None and frame.f_globals.get("__name__") != "__mp_main__":
        frame = frame.f_back
    return frame.f_code.co_filename if frame is not None else "?"


def refuse_while_spawning(path: Path) -> None:
    """Refuse to generate from a child process that is still re-running the parent's main script.

    The generator's solver pool starts its workers with ``spawn``; each re-runs the main script. In
    a script with no ``if __name__ == "__main__":`` guard that re-run reaches this function again and
    would wait for ever on the lock its own parent holds (the parent waits for the worker): a silent
    hang.  The stdlib's own check (at the next process start) is never reached, so check here."""
    if getattr(multiprocessing.current_process(), "_inheriting", False):  # set while spawn re-runs __main__
        raise DataConfigError(
            f"data: '{path.name}' is being generated by the parent process, and this solver worker is re-running "
            f"the main script '{_script_being_rerun()}' at import time (multiprocessing "
            "'spawn'), which loads the data again. Fix: put the script's code under `if __name__ == \"__main__\":`, "
            "or generate the data first (`ups data generate …`)")


def dataset_path(data_cfg: Any, *, progress: bool = True, device: Any = None,
                 num_threads: int | None = None, workers: int | None = None) -> Path:
    """The cached HDF5 for ``data_cfg`` — generated (atomically) only when missing."""
    validate_request(data_cfg)
    path = cache_file(data_cfg)
    h = content_hash(data_cfg)
    if is_complete(path, h):
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataConfigError(f"data: 'cache_dir' = {path.parent} is not writable ({e}). "
                              "Fix: set data.cache_dir to a writable folder") from None
    refuse_while_spawning(path)
    with _locked(path):
        # holding the lock, no one else writes this file: temp files left by a killed writer are stale
        for stale in path.parent.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        if not is_complete(path, h):  # another process may have finished it meanwhile
            with torch_threads(num_threads):
                generate(data_cfg, path, progress=progress, device=device, workers=workers)
    return path


def resolve_device(device: Any = None) -> torch.device:
    """None/"auto" → CUDA when available, else CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise DataConfigError(f"data: device '{device}' is not a torch device. Fix: use cpu, cuda or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DataConfigError("data: device 'cuda' requested but CUDA is not available. Fix: use --device cpu")
    return dev


def plan_batches(u0: np.ndarray, nu: float, resolution: int, dt_save: float, chunk: int = CHUNK,
                 slack: float = 0.85) -> list[np.ndarray]:
    """Group trajectories (n, X) into solver batches of similar cost.

    Each trajectory's own grid and step count follow from its amplitude (``choose_resolution``,
    ``choose_substeps``); a batch runs at its most demanding member's, so batches hold one grid and
    step counts within ``slack`` of the batch's largest. Returns row indices per batch, hardest first.
    """
    amp = np.abs(u0).max(axis=1)  # (n,)
    half_range = (u0.max(axis=1) - u0.min(axis=1)) / 2
    need_res = np.array([choose_resolution(float(s), nu, resolution) for s in half_range])
    need_sub = np.array([choose_substeps(float(a), nu, int(r), dt_save) for a, r in zip(amp, need_res)])
    order = np.lexsort((-amp, -need_sub, -need_res))  # grid, then steps, then amplitude (descending)
    batches, i, n = [], 0, len(order)
    while i < n:
        r0, s0 = need_res[order[i]], need_sub[order[i]]
        j = i + 1
        while j < n and j - i < chunk and need_res[order[j]] == r0 and need_sub[order[j]] >= slack * s0:
            j += 1
        batches.append(order[i:j])
        i = j
    return batches


def cpu_cores() -> int:
    """CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None, device: torch.device, n_batches: int) -> int:
    """Solver processes: only on CPU; None/0 → one per core; never more than there are batches."""
    if device.type != "cpu":
        return 1
    if workers is not None and workers < 0:
        raise DataConfigError(f"data: workers = {workers} must be ≥ 0. Fix: use 0 (one per core) or e.g. 2")
    w = workers or cpu_cores()
    return max(1, min(w, n_batches))


def solve_batch(u0_rows: np.ndarray, nu: float, t: np.ndarray, device: Any = None) -> tuple[np.ndarray, tuple]:
    """One solver batch (c, X) → ((c, T, X) float32, (resolution, substeps, tail)); refines the grid
    until the spectral tail is below TAIL_TOL."""
    batch = torch.as_tensor(u0_rows)
    t_tensor = torch.as_tensor(t)
    out, info = solve_burgers(batch, nu, t_tensor, device=device, return_info=True)
    while info.spectral_tail > TAIL_TOL and info.solver_resolution < MAX_RESOLUTION:
        out, info = solve_burgers(batch, nu, t_tensor, device=device, return_info=True,
                                  solver_resolution=2 * info.solver_resolution)
    if info.spectral_tail > TAIL_TOL:
        raise DataConfigError(
            f"data: nu={nu:g} is under-resolved even on {info.solver_resolution} points (spectral tail "
            f"{info.spectral_tail:.1e} > {TAIL_TOL:.0e}). Fix: use a larger nu")
    return out.cpu().numpy(), (info.solver_resolution, info.substeps, info.spectral_tail)


def _worker_init(parent: int) -> None:
    # one core per process: torch's 2 intra-op threads barely parallelise the batched FFT solver
    torch.set_num_threads(1)
    _end_with_parent(parent)


def _end_with_parent(parent: int) -> None:
    """Linux: this process gets SIGTERM when the process that started it dies.  A driver killed with kill -9
    mid-generation left its solver workers idle, adopted by init, for good (the pool's own shutdown never ran)."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the parent died before the call
        os.kill(os.getpid(), signal.SIGTERM)


def generate(data_cfg: Any, path: str | Path, *, progress: bool = True, device: Any = None,
             chunk: int = CHUNK, workers: int | None = None) -> dict[str, Any]:
    """Generate the dataset for ``data_cfg`` into ``path`` (atomic). Returns the stored attributes.

    ``device``: None/"auto" runs on CUDA when available, else CPU. ``workers``: on CPU, solver
    processes (one thread each) over disjoint batches; None/0 → one per core, capped by the number
    of batches; 1 → in this process. The data are identical for any number of workers.
    """
    validate_request(data_cfg)
    device = resolve_device(device)
    k = generation_key(data_cfg)
    n, res, nu = k["n"], k["resolution"], k["nu"]
    x = cell_centres(res)  # (X,)
    t = np.linspace(0.0, k["t_final"], k["frames"])  # (T,)
    params = sample_init_params(n, k["seed"], K_TOT)
    u0 = evaluate_init(params, x)  # (n, X) float64
    spread = float((u0.max(axis=1) - u0.min(axis=1)).max()) / 2
    if RES_FACTOR * spread / diffusion(nu) > MAX_RESOLUTION // 3:
        nu_min = RES_FACTOR * spread * math.pi / (MAX_RESOLUTION // 3)
        raise DataConfigError(f"data: 'nu' = {nu:g} is too small for the spectral solver: resolving the shocks of "
                              f"these initial conditions needs more than {MAX_RESOLUTION} grid points. "
                              f"Fix: use nu ≥ {nu_min:.2g}")
    chunks = plan_batches(u0, nu, res, k["t_final"] / (k["frames"] - 1), chunk)
    attrs: dict[str, Any] = {
        "nu": nu, "Nu": nu,  # 'Nu': the attribute PDEBench's Data_Merge.py writes
        "diffusion": diffusion(nu), "seed": k["seed"], "n": n, "resolution": res,
        "t_final": k["t_final"], "frames": k["frames"], "dt_save": k["t_final"] / (k["frames"] - 1),
        "equation": "u_t + (u^2/2)_x = (nu/pi) u_xx, x in [0,1) periodic (PDEBench convention)",
        "grid": "cell centres x_i = (i+0.5)/X", "initial_condition": k["init"],
        "solver": SOLVER_NAME, "solver_version": SOLVER_VERSION, "data_version": DATA_VERSION,
        "content_hash": content_hash(data_cfg), "generation_key": json.dumps(k, sort_keys=True),
        "t_coordinate_note": "T+1 entries like PDEBench files; frame i is at t[i]",
        "created_unix": time.time(), "device": str(device),
    }
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"burgers ν={nu:g} n={n} X={res}", unit="traj")
    resolutions, substeps, tails = [], [], []
    n_workers = resolve_workers(workers, device, len(chunks))
    attrs["workers"] = n_workers
    start = time.perf_counter()

    def record(rows: np.ndarray, out: np.ndarray, info: tuple) -> None:
        resolutions.append(info[0])
        substeps.append(info[1])
        tails.append(info[2])
        writer.write(rows, out)
        if bar is not None:
            bar.update(len(rows))

    pool = None
    try:
        with PDEBenchWriter(path, n, x, t, attrs) as writer:
            if n_workers == 1:
                for rows in chunks:
                    record(rows, *solve_batch(u0[rows], nu, t, device))
            else:
                # passive OpenMP waits in the children (inherited environment; spinning is 10×+ slower when busy)
                os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
                pool = ProcessPoolExecutor(n_workers, mp_context=multiprocessing.get_context("spawn"),
                                           initializer=_worker_init, initargs=(os.getpid(),))
                # hardest batches first (plan_batches order); keep at most 2 per worker in flight so
                # finished (c, T, X) results are written while the next ones compute
                pending: dict[Future, np.ndarray] = {}
                queue = list(chunks)
                while queue or pending:
                    while queue and len(pending) < 2 * n_workers:
                        rows = queue.pop(0)
                        pending[pool.submit(solve_batch, u0[rows], nu, t, "cpu")] = rows
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in done:
                        record(pending.pop(fut), *fut.result())
                pool.shutdown(wait=True)  # idle by now; joins (and reaps) the workers
                pool = None
            stats = {"solver_resolution_min": min(resolutions), "solver_resolution_max": max(resolutions),
                     "substeps_min": min(substeps), "substeps_max": max(substeps),
                     "spectral_tail_max": max(tails), "generation_seconds": time.perf_counter() - start}
            stats[DIGEST_ATTR] = writer.samples_digest()  # the data written, for a later edit to be seen
            writer.set_attrs(stats)
            attrs.update(stats)
    except SolverError as e:
        raise DataConfigError(f"data: generation failed for nu={nu}, resolution={res}: {e}") from None
    except BrokenProcessPool:
        raise DataConfigError(
            f"data: a solver worker process ended abruptly while generating '{path}' (its own error, if any, is "
            "printed above; nothing was written). Fix: if the error says so, put the calling script's code under "
            "`if __name__ == \"__main__\":`; if a worker was killed for memory, generate with fewer workers "
            "(`ups data generate … --workers 1`)") from None
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
        if bar is not None:
            bar.close()
    return attrs
