"""Baselines on the PDEBench protocol and the ``ups baselines`` command.

``run_baselines(data, fno_budget_s, seed, cache_dir)`` scores persistence, the linear Fourier map
and PDEBench's FNO1d on ``data.test`` with ``ups.metrics.rollout_metrics`` and caches the rows as
JSON keyed by (data hash, FNO budget, seed), so every sweep and leaderboard compares against the
same numbers without retraining.

    ups baselines nu=0.01 n=2000 fno_budget_s=60            # data overrides are DataCfg keys
    ups baselines path=/data/1D_Burgers_Sols_Nu0.01.hdf5 fno_budget_s=600 fno_seed=1 out=reports

Options besides the data keys: ``fno_budget_s`` (seconds of FNO training, 0 = skip the FNO),
``fno_steps`` (stop after this many optimiser steps instead: bit-for-bit reproducible),
``fno_seed`` (FNO initialisation and batch order; default ``training.seed``; ``seed=`` is the data
seed, as in ``ups data generate``), ``out`` (folder for the CSV/JSON table), ``baseline_cache`` (folder of the JSON cache,
``none`` to disable), ``leaderboard`` (CSV to upsert ``kind=baseline`` rows into), ``threads``.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ups.config import DataCfg
from ups.metrics import METRIC_KEYS, PDEBENCH_BATCH, PDEBENCH_SET_KEYS, pdebench_metric_set, rollout_metrics
from ups.models.baselines import LinearFourierMap, fit_linear_fourier, persistence_rollout, train_fno
from ups.models.fno import FNO1d, fno_rollout
from ups.outputs import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

__all__ = ["BASELINE_NAMES", "CACHE_VERSION", "ROW_KEYS", "run_baselines", "score_baselines", "cache_path",
           "leaderboard_rows", "select_linear", "main"]

BASELINE_NAMES: tuple[str, ...] = ("persistence", "linear", "fno")
CACHE_VERSION = 2  # bump when a baseline or metric definition changes: old cache entries are ignored (2: the
# rest of PDEBench's metric set, 2026-12-05)
TABLE_KEYS: tuple[str, ...] = ("name", *METRIC_KEYS, "params", "train_s")  # printed; the CSV/JSON have ROW_KEYS
ROW_KEYS: tuple[str, ...] = (*TABLE_KEYS, *PDEBENCH_SET_KEYS)
LINEAR_LAGS: tuple[int, ...] = (1, 2, 3, 5)
LINEAR_RIDGES: tuple[float, ...] = (1e-6, 1e-4, 1e-2)
DEFAULT_CACHE_DIR = "~/.cache/ups/baselines"


# ------------------------------------------------------------------------------------- helpers
def _full(context: torch.Tensor, rollout: torch.Tensor) -> torch.Tensor:
    return torch.cat([context, rollout.to(context.dtype)], dim=1)  # (B, T, X)


def _score(name: str, pred: torch.Tensor, true: torch.Tensor, initial_step: int, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, **rollout_metrics(pred, true, initial_step),
                           **pdebench_metric_set(pred, true, initial_step)}
    row.update(extra)
    return row


def _batched(fn, context: torch.Tensor, n_steps: int, batch: int = 256) -> torch.Tensor:
    outs = [fn(context[i: i + batch], n_steps) for i in range(0, context.shape[0], batch)]
    return torch.cat(outs, dim=0)  # (B, n_steps, X)


def _check_data(data: Any) -> None:
    for key in ("train", "val", "test", "x", "initial_step", "data_hash"):
        if not hasattr(data, key):
            raise TypeError(f"run_baselines: data has no '{key}'. Fix: pass ups.data.protocol.load_protocol(cfg.data)")
    ti = int(data.initial_step)
    for split in ("train", "test"):
        u = getattr(data, split)
        if not isinstance(u, torch.Tensor) or u.ndim != 3 or u.shape[0] == 0:
            shape = tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__
            raise ValueError(f"run_baselines: data.{split} must be a non-empty tensor (N, T, X), got {shape} "
                             f"(source {getattr(data, 'source', '?')}). Fix: raise data.n or lower data.test_ratio")
        if u.shape[1] <= ti:
            raise ValueError(f"run_baselines: data.{split} has {u.shape[1]} frames but initial_step={ti}; "
                             "need at least initial_step + 1. Fix: lower data.initial_step or data.reduced_resolution_t")


def select_linear(train: torch.Tensor, val: torch.Tensor | None, initial_step: int,
                  lags: Sequence[int] = LINEAR_LAGS, ridges: Sequence[float] = LINEAR_RIDGES
                  ) -> tuple[LinearFourierMap, dict[str, Any]]:
    """Fit the linear map for each (lags, ridge) on ``train``; keep the best rollout nRMSE on ``val``."""
    cands = [(l, r) for l in lags if l <= initial_step for r in ridges]
    if val is None or val.shape[0] == 0 or len(cands) == 1:
        l, r = cands[0] if cands else (1, ridges[0])
        return fit_linear_fourier(train, l, r), {"lags": l, "ridge": r, "selected_on": "default"}
    from ups.metrics import nrmse

    best: tuple[float, LinearFourierMap, int, float] | None = None
    n_roll = val.shape[1] - initial_step
    for l, r in cands:
        m = fit_linear_fourier(train, l, r)
        score = nrmse(_full(val[:, :initial_step], m.rollout(val[:, :initial_step], n_roll)), val, initial_step)
        if math.isfinite(score) and (best is None or score < best[0]):
            best = (score, m, l, r)
    if best is None:
        raise RuntimeError("select_linear: every linear candidate diverged on the validation split")
    return best[1], {"lags": best[2], "ridge": best[3], "selected_on": "val", "val_nrmse": best[0]}


# ---------------------------------------------------------------------------------- the cache
def fno_tag(fno_budget_s: float, seed: int, fno_steps: int | None = None) -> str:
    """The FNO settings as the cache files, output files and leaderboard run ids name them: ``-b60-s0``,
    ``-b0-steps120-s0``."""
    steps = f"-steps{int(fno_steps)}" if fno_steps else ""
    return f"-b{float(fno_budget_s):g}{steps}-s{int(seed)}"


def cache_path(cache_dir: str | Path, data_hash: str, fno_budget_s: float, seed: int,
               fno_steps: int | None = None, max_samples: int | None = None) -> Path:
    first = f"-n{int(max_samples)}" if max_samples else ""
    name = f"baselines-v{CACHE_VERSION}-{data_hash}{fno_tag(fno_budget_s, seed, fno_steps)}{first}.json"
    return Path(cache_dir).expanduser() / name


def _read_cache(path: Path, key: dict[str, Any]) -> list[dict[str, Any]] | None:
    if not path.exists():
        return None
    try:
        blob = json.loads(path.read_text())
        if blob.get("key") != key:
            log.info("baselines cache %s holds another request (%s); recomputing", path, blob.get("key"))
            return None
        rows = blob["rows"]
        if not rows or any(not set(ROW_KEYS) <= set(r) for r in rows):
            raise ValueError("rows lack required keys")
        return rows
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("baselines cache %s is unreadable (%s); recomputing and overwriting it", path, e)
        return None


def _write_json_atomic(path: Path, blob: Any) -> None:
    write_text_atomic(path, json.dumps(blob, indent=1, allow_nan=True))


# ------------------------------------------------------------------------------------ running
def run_baselines(data: Any, fno_budget_s: float, seed: int, cache_dir: str | Path | None,
                  *, fno_steps: int | None = None, names: Sequence[str] = BASELINE_NAMES,
                  refresh: bool = False, max_samples: int = -1) -> list[dict[str, Any]]:
    """Score the baselines on ``data.test``; rows have ``ROW_KEYS`` (+ ``eval_s`` and details).

    ``fno_budget_s`` seconds of FNO training (``fno_steps`` caps/fixes the optimiser steps for
    exact reproducibility); with neither the FNO is skipped.  ``max_samples`` > 0: scored on the first
    that many test trajectories, as ``eval.max_samples`` scores a model (``ups eval``), not on the whole
    split.  Rows are cached in ``cache_dir`` (None: no cache) under (data hash, budget, steps, seed,
    samples); ``refresh`` recomputes.
    """
    return score_baselines(data, fno_budget_s, seed, cache_dir, fno_steps=fno_steps, names=names,
                           refresh=refresh, samples=(max_samples,))[0]


def score_baselines(data: Any, fno_budget_s: float, seed: int, cache_dir: str | Path | None,
                    *, fno_steps: int | None = None, names: Sequence[str] = BASELINE_NAMES,
                    refresh: bool = False, samples: Sequence[int] = (-1,),
                    announce: Callable[[str], None] | None = None) -> list[list[dict[str, Any]]]:
    """``run_baselines`` for each of ``samples`` (``max_samples`` values: ≤ 0 or ≥ the split is the whole
    split) → one list of rows per entry, from one fit of the linear map and one FNO training: the rows a
    sweep puts on its leaderboard (whole split) and the ones its small-eval gate compares with trials scored
    under ``eval.max_samples`` are of the same trained models.  Each entry is cached on its own; when every
    entry is cached nothing is trained, and when one is not, every entry is scored again (and its cache rewritten),
    so the entries stay of one FNO (one trained on a wall-clock budget is another model each time)."""
    unknown = [n for n in names if n not in BASELINE_NAMES]
    if unknown:
        raise ValueError(f"run_baselines: unknown baseline(s) {unknown}; choose from {list(BASELINE_NAMES)}")
    if fno_budget_s < 0 or (fno_steps is not None and fno_steps < 0):
        raise ValueError(f"run_baselines: fno_budget_s={fno_budget_s} and fno_steps={fno_steps} must be ≥ 0")
    _check_data(data)
    names = [n for n in names if n != "fno" or fno_budget_s > 0 or fno_steps]
    n_test = int(data.test.shape[0])
    firsts = [int(m) if 0 < int(m) < n_test else None for m in samples]  # None: the whole split
    keys, paths, found = [], [], []
    for first in firsts:
        key = {"version": CACHE_VERSION, "data_hash": str(data.data_hash), "fno_budget_s": float(fno_budget_s),
               "fno_steps": int(fno_steps) if fno_steps else None, "seed": int(seed), "names": list(names)}
        if first is not None:
            key["max_samples"] = first
        scored = first or n_test
        if scored > PDEBENCH_BATCH and scored % PDEBENCH_BATCH:  # nrmse_pdebench per batch of 50 since 2026-12-06: rows
            key["nrmse_pdebench"] = f"batches of {PDEBENCH_BATCH}"  # cached before for such a split had the plain mean
        path = cache_path(cache_dir, data.data_hash, fno_budget_s, seed, fno_steps, first) if cache_dir else None
        keys.append(key)
        paths.append(path)
        found.append(_read_cache(path, key) if path is not None and not refresh else None)
    if all(rows is not None for rows in found):
        return [list(rows) for rows in found if rows is not None]
    if announce is not None:  # what the minutes before the first trial are spent on (a sweep's driver)
        length = f"{int(fno_steps)} steps" if fno_steps else f"{fno_budget_s:g} s"
        fno = f" and training the FNO ({length}, seed {int(seed)})" if "fno" in names else ""
        announce(f"baselines: none cached for data {str(data.data_hash)[:12]}: fitting the linear map{fno} in this "
                 f"process" + (f"; cached afterwards in {cache_dir}" if cache_dir else ""))

    ti = int(data.initial_step)
    val = data.val if isinstance(data.val, torch.Tensor) and data.val.ndim == 3 and data.val.shape[0] else None
    grid = torch.as_tensor(data.x, dtype=torch.float32)
    # name → (model, its row's fields besides the metrics)
    fitted: dict[str, tuple[Any, dict[str, Any]]] = {"persistence": (None, {"params": 0, "train_s": 0.0})}
    if "linear" in names:
        t0 = time.perf_counter()
        lin, info = select_linear(data.train, val, ti)
        fitted["linear"] = (lin, {"params": lin.num_parameters, "train_s": time.perf_counter() - t0, "details": info})
    if "fno" in names:
        res = train_fno(data.train, grid, ti, budget_s=float(fno_budget_s), seed=int(seed),
                        max_steps=int(fno_steps) if fno_steps else None, val=val)
        model: FNO1d = res.model
        fitted["fno"] = (model, {"params": sum(p.numel() for p in model.parameters()), "train_s": res.train_s,
                                 "details": {"steps": res.steps, "epochs": round(res.epochs, 3),
                                             "best_step": res.best_step, "val_nrmse": res.val_nrmse,
                                             "final_loss": res.final_loss, "diverged": res.diverged,
                                             "modes": model.modes, "width": model.width}})

    def rollout(name: str, ctx: torch.Tensor, n_roll: int) -> torch.Tensor:  # (N, n_roll, X)
        if name == "persistence":
            return persistence_rollout(ctx, n_roll)
        m = fitted[name][0]
        if name == "linear":
            return _batched(m.rollout, ctx, n_roll)
        with torch.no_grad():
            return _batched(lambda c, n: fno_rollout(m, c, n, grid), ctx, n_roll)

    out: list[list[dict[str, Any]]] = []
    for first, key, path in zip(firsts, keys, paths):
        test = data.test[:first].to(torch.float32)  # (N, T, X): the first ``max_samples`` when set
        ctx, n_roll = test[:, :ti], test.shape[1] - ti
        rows: list[dict[str, Any]] = []
        for name in (n for n in BASELINE_NAMES if n in names):
            t1 = time.perf_counter()
            pred = _full(ctx, rollout(name, ctx, n_roll))
            eval_s = time.perf_counter() - t1  # the rollout's time, not the metrics'
            fields = fitted[name][1]
            row = _score(name, pred, test, ti, params=fields["params"], train_s=fields["train_s"], eval_s=eval_s)
            if "details" in fields:  # a copy per entry: the row lists are handed out apart
                row["details"] = dict(fields["details"])
            rows.append(row)
        for r in rows:
            r.update({"data_hash": str(data.data_hash), "seed": int(seed), "fno_budget_s": float(fno_budget_s),
                      "fno_steps": int(fno_steps or 0), "n_train": int(data.train.shape[0]),
                      "n_test": int(test.shape[0])})
        if path is not None:
            _write_json_atomic(path, {"key": key, "rows": rows})
        out.append(rows)
    return out


def leaderboard_rows(rows: Sequence[dict[str, Any]], experiment: str = "baselines") -> list[dict[str, Any]]:
    """Baseline rows in the leaderboard's columns (``kind=baseline``, stable ``run_id``)."""
    out = []
    for r in rows:
        run_id = (f"baseline-{r['name']}-{str(r.get('data_hash', ''))[:12]}"
                  f"{fno_tag(r.get('fno_budget_s', 0), r.get('seed', 0), r.get('fno_steps'))}")
        out.append({
            "run_id": run_id, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"), "label": r["name"],
            "round": "baselines", "kind": "baseline", **{k: r[k] for k in (*METRIC_KEYS, *PDEBENCH_SET_KEYS)},
            "wall_clock": r["train_s"], "params": r["params"], "status": "TERMINATED",
            "config_hash": r.get("data_hash"), "experiment": experiment,
            "config_json": json.dumps(r.get("details", {}), sort_keys=True),
        })
    return out


# ----------------------------------------------------------------------------------------- CLI
_OWN_KEYS = {"fno_budget_s", "fno_steps", "fno_seed", "out", "baseline_cache", "leaderboard", "threads", "refresh"}
_DATA_KEYS = {f.name for f in dataclasses.fields(DataCfg)}  # what ``nu=0.01`` (data.nu) may name
_BOOL = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


def _parse(argv: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    from ups.config import ConfigError, override_key

    own: dict[str, str] = {}
    data_overrides: list[str] = []
    for arg in argv:
        if "=" not in arg:
            raise ConfigError(f"baselines: cannot parse argument '{arg}'. Use key=value, e.g. fno_budget_s=60 nu=0.01")
        k, v = override_key(arg), arg.split("=", 1)[1]
        if k in _OWN_KEYS:
            own[k] = v
        elif k.startswith("data.") or k in _DATA_KEYS:
            data_overrides.append(f"{k if k.startswith('data.') else 'data.' + k}={v}")
        else:  # fno_budget=60 was taken for data.fno_budget, and the fix offered was eval.fno_budget_s (refused too)
            import difflib

            near = difflib.get_close_matches(k, sorted(_OWN_KEYS | _DATA_KEYS), n=1, cutoff=0.5)
            raise ConfigError(f"baselines: unknown option '{k}'. Fix: "
                              + (f"{near[0]}={v} (the nearest option)" if near else
                                 f"one of {', '.join(sorted(_OWN_KEYS))}, or a data key ({', '.join(sorted(_DATA_KEYS))})"))
    if own.get("refresh", "false").lower() not in _BOOL:
        raise ConfigError(f"baselines: refresh={own['refresh']} is not true or false. Fix: refresh=true to recompute "
                          f"the cached baselines, or leave it out")
    return own, data_overrides


def _num(own: dict[str, str], key: str, kind: type, default: Any) -> Any:
    from ups.config import ConfigError

    if key not in own:
        return default
    try:
        val = kind(own[key])
    except ValueError:
        raise ConfigError(f"baselines: '{key}={own[key]}' is not a valid {kind.__name__}. "
                          f"Fix: e.g. {key}={default}") from None
    if not math.isfinite(val):  # inf trained the FNO forever; nan skipped it without a word
        raise ConfigError(f"baselines: '{key}' must be a finite number, got {own[key]}. Fix: e.g. {key}={default}")
    if val < 0:
        raise ConfigError(f"baselines: '{key}' must be ≥ 0, got {val}. Fix: e.g. {key}={default}")
    return val


def undertrained_fno_note(rows: Sequence[dict[str, Any]]) -> str | None:
    """A note when the FNO row scores no better than persistence: a wall-clock budget that bought a few optimiser
    steps on a loaded machine (2 steps in 30 s) gives a row that says nothing about the FNO."""
    by = {r.get("name"): r for r in rows}
    fno, keep = by.get("fno"), by.get("persistence")
    if not fno or not keep or fno.get("nrmse") is None or keep.get("nrmse") is None:
        return None
    if float(fno["nrmse"]) < float(keep["nrmse"]):
        return None
    steps = (fno.get("details") or {}).get("steps")
    return (f"note: the FNO scores {float(fno['nrmse']):.4g}, no better than persistence ({float(keep['nrmse']):.4g})"
            + (f", after {steps} optimiser steps" if steps is not None else "") + ": it is under-trained, not a "
            "baseline to compare with. Fix: fno_steps=500 (PDEBench's batch; reproducible under any load) or a larger "
            "fno_budget_s")


def _print_table(rows: Sequence[dict[str, Any]], title: str) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # pragma: no cover - rich is a core dependency
        import pandas as pd

        print(title)
        print(pd.DataFrame(rows)[list(TABLE_KEYS)].to_string(index=False))
        return
    table = Table(title=title)
    for k in TABLE_KEYS:
        table.add_column(k, justify="left" if k == "name" else "right", no_wrap=True)
    for r in rows:
        cells = []
        for k in TABLE_KEYS:
            v = r[k]
            cells.append(v if isinstance(v, str) else f"{v:,}" if isinstance(v, int) else f"{v:.4g}")
        table.add_row(*cells)
    console = Console()
    Console(width=max(console.width, 150)).print(table)  # never truncate metric names


def main(argv: list[str]) -> int:
    """``ups baselines [data overrides] fno_budget_s=60 fno_seed=0 out=reports``."""
    if any(a in ("-h", "--help", "help") for a in argv):
        print(__doc__)
        return 0
    from ups.config import load_config

    own, data_overrides = _parse(argv)
    cfg = load_config(data_overrides)  # unknown data keys fail here, naming the nearest key
    steps = _num(own, "fno_steps", int, 0) or None
    # fno_steps alone: exactly that many steps, as a sweep's fno_steps trains them (a default budget beside it cut
    # them under load, and its cache entry was not the sweep's)
    budget = _num(own, "fno_budget_s", float, 0.0 if steps else float(cfg.eval.fno_budget_s))
    seed = _num(own, "fno_seed", int, int(cfg.training.seed))
    threads = _num(own, "threads", int, int(cfg.training.num_threads))
    if threads:
        torch.set_num_threads(threads)
    out_dir = Path(own.get("out", cfg.eval.out_dir)).expanduser()
    if own.get("leaderboard"):  # its rows go in after the FNO's training: a file they cannot go into, refused now
        from ups.config import ConfigError
        from ups.leaderboard import leaderboard_problem

        problem = leaderboard_problem(Path(own["leaderboard"]).expanduser())
        if problem:
            raise ConfigError(f"baselines: leaderboard={own['leaderboard']}: the file {problem}. Fix: repair it, move "
                              f"it aside to start a new one, or pass leaderboard=<another file>")
    from ups.outputs import check_writable_file, check_writable_folder

    # written after the baselines are fitted (the FNO trained): a place they cannot go is refused now
    check_writable_folder(out_dir, f"ups baselines out={out_dir}", "out=reports")
    if own.get("leaderboard"):
        check_writable_file(Path(own["leaderboard"]), f"ups baselines leaderboard={own['leaderboard']}",
                            "leaderboard=reports/leaderboard.csv")
    cache = own.get("baseline_cache", DEFAULT_CACHE_DIR)
    cache_dir = None if cache.lower() in ("", "none", "off") else Path(cache).expanduser()

    from ups.data.protocol import load_protocol

    data = load_protocol(cfg.data, check_config=False)  # no model is trained here: the file states its own grid
    print(f"data: {data.source} (hash {data.data_hash}); train {tuple(data.train.shape)}, "
          f"test {tuple(data.test.shape)}; FNO budget {budget:g} s" + (f", {steps} steps" if steps else ""))
    rows = run_baselines(data, budget, seed, cache_dir, fno_steps=steps,
                         refresh=_BOOL[own.get("refresh", "false").lower()])
    _print_table(rows, f"Baselines on {Path(str(data.source)).name} (nRMSE over {data.test.shape[1] - data.initial_step} "
                       f"predicted frames; nrmse_pdebench incl. {data.initial_step} context frames)")
    if note := undertrained_fno_note(rows):
        print(note)

    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    stem = out_dir / f"baselines-{data.data_hash}{fno_tag(budget, seed, steps)}"
    df = pd.DataFrame(rows)
    if "details" in df:
        df["details"] = df["details"].map(lambda d: json.dumps(d, sort_keys=True) if isinstance(d, dict) else "")
    with atomic_path(stem.with_suffix(".csv")) as tmp_csv:  # a fixed temp name was shared by concurrent writers
        df.to_csv(tmp_csv, index=False)
    _write_json_atomic(stem.with_suffix(".json"), rows)
    print(f"wrote {stem.with_suffix('.csv')} and {stem.with_suffix('.json')}")
    if own.get("leaderboard"):
        from ups.leaderboard import upsert_rows

        upsert_rows(own["leaderboard"], leaderboard_rows(rows))
        print(f"upserted {len(rows)} baseline rows into {own['leaderboard']}")
    return 0
