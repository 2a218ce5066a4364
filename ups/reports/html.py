"""The sweep report: ``reports/<round>/index.html`` with a sortable leaderboard and PNG figures.

Contract (called by the sweep engine at the end of every sweep)::

    write_report(experiment_path, leaderboard_path, round_name, out_dir) -> Path  # index.html

The page is self-contained (inline CSS and ~30 lines of JS for column sorting, no CDN, no network);
figures are PNG files next to it. Everything is rendered in a temp folder first and then moved into
``out_dir`` file by file (``os.replace``, index.html last): a crash never leaves a half-written file, the
previous report stays until the new one is complete, and no other file in ``out_dir`` is touched
(``out_dir`` may be ``reports/`` itself, next to the leaderboard). Failed trials (ERROR status or no metric) stay in the table, marked, with their error line.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import shutil
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from ups.leaderboard import PDEBENCH_COLUMNS, PDEBENCH_NAMES, gate_word
from ups.outputs import fresh_temp_folder
from ups.reports import plots
from ups.reports.experiment import ExperimentResults, load_experiment
from ups.reports.importance import param_importance, varying_params
from ups.reports.optuna_study import STUDY_FILE, StudyExport, export_study
from ups.reports.sources import (ReportError, best_trial, cell_text, checkpoint_file, checkpoint_name,
                                 experiment_folder, is_failed, load_champion, load_leaderboard, newest_sweep,
                                 one_data_set, recorded_experiment_folders, row_config, select_round, trial_state)
from ups.tune.pbt_schedule import schedule_text
from ups.ttc_gain import Verdict, dims_rows, newest_experiment, ttc_verdict, verdict_file, write_verdict

TABLE_COLUMNS = ["label", "run_id", "kind", "round", "status", "val_nrmse", "nrmse", "nrmse_ttc", "nrmse_pdebench", "recon_nrmse",
                 "conservation_gap", "energy_violation", "bc_violation", "ece", "rollout_horizon",
                 "wall_clock", "gpu_hours", "est_cost", "params", "gate_pass", "gate_reasons", "promotion",
                 "trial_id"]
GPU_COLUMNS = ["gpu_mem_peak_mib"]  # shown only when some trial ran on CUDA (empty on CPU sweeps)
TTC_VAL_COLUMNS = ["val_nrmse_ttc"]  # shown only when some trial has one (a sweep searching ttc.* keys ranks on it)


def table_columns(lb: pd.DataFrame) -> list[str]:
    """The trial table's columns: ``TABLE_COLUMNS`` (``val_nrmse``: what the promotion ranks on, and a stopped
    trial's last figure), with ``val_nrmse_ttc`` after it and each trial's GPU memory peak after ``est_cost`` when
    any row has one (``ups.tune.gpu_share``: what sizes ``resources.gpu``)."""
    def present(cols: list[str]) -> list[str]:
        return [c for c in cols if c in lb.columns and pd.to_numeric(lb[c], errors="coerce").notna().any()]

    v, i = TABLE_COLUMNS.index("val_nrmse") + 1, TABLE_COLUMNS.index("est_cost") + 1
    return TABLE_COLUMNS[:v] + present(TTC_VAL_COLUMNS) + TABLE_COLUMNS[v:i] + present(GPU_COLUMNS) + TABLE_COLUMNS[i:]


FIGURES = [  # key, title, caption
    ("best_vs_cost", "Best nRMSE vs compute", "Running best test nRMSE against cumulative trial wall clock "
     "and GPU-hours, one line per round in the leaderboard (all rounds); failed trials add cost, no value."),
    ("rung_survival", "Trial survival", "Trials still reporting at each training_iteration, read from "
     "the Tune experiment (result.json / progress.csv): ASHA cuts trials at its rungs (an ASHA round), a physics "
     "gate at any iteration; red crosses: errored trials at their last iteration."),
    ("importance", "Parameter importance", "Importance of the sampled parameters for the final test nRMSE "
     "of this round's finished trials (in-memory Optuna study; method in the plot title)."),
    ("ttc_paradox", "nRMSE vs parameters, with and without TTC", "Best test nRMSE per parameter count, "
     "without TTC (blue) and with TTC (pink), all rounds; baselines as reference lines (FNO: star)."),
    ("pareto", "Pareto front: nRMSE vs cost", "Non-dominated trials of this round in (cost, nRMSE); cost is "
     "est_cost when recorded, else GPU-hours, else wall clock."),
    ("learning_curves", "Learning curves (top trials)", "Validation rollout nRMSE (the ASHA metric) per "
     "epoch for the best trials of the experiment, in the order each trial reported; a trial that went on from a "
     "checkpoint (a PBT exploit, a resume) starts a new stretch of its line at an open diamond."),
    ("rollout", "Champion rollout vs truth", "One test trajectory: truth, the champion's autoregressive "
     "prediction without TTC (context frames above the dashed line are given), and the error."),
    ("gates", "Physics gates per trial", "Test nRMSE per trial coloured by the small-eval gates: green pass, red "
     "FAIL, blue the round's reference trial (the baseline the gates measure the others against), grey no gate "
     "(the round's promotion has not run on it). Trials stopped early or unfinished (grey: interrupted, resume=true "
     "continues them) or errored (purple) are listed without a metric."),
]


@dataclass
class FigureResult:
    key: str
    title: str
    caption: str
    png: str | None = None
    note: str | None = None


# --------------------------------------------------------------------------------------- entry
def write_report(experiment_path: str | Path | None, leaderboard_path: Path, round_name: str,
                 out_dir: Path, *, champion_path: Path | None = None, metric: str = "val_nrmse",
                 data_hash: str | None = None) -> Path:
    """Render the report of one round (``round_name='all'``: every round); returns index.html's path."""
    leaderboard_path = Path(leaderboard_path)
    out_dir = Path(out_dir)
    full = load_leaderboard(leaderboard_path)
    lb = select_round(full, round_name)
    lb, data_hash, data_note = one_data_set(lb, experiment_path, data_hash)
    exp_path = experiment_path if experiment_path not in (None, "") else _infer_experiment(lb)
    exp: ExperimentResults | None = None
    notes: list[str] = [data_note] if data_note else []
    if exp_path is not None:
        if experiment_path in (None, "") and not _exists(exp_path):
            name = Path(exp_path).name
            recorded = recorded_experiment_folders(lb, name)
            where = (f"sweep '{name}': its trials' checkpoints on the leaderboard place it in "
                     f"{' and '.join(repr(r) for r in recorded)}, and neither that nor '{exp_path}'"
                     if recorded else f"experiment folder '{exp_path}' named in the leaderboard")
            notes.append(f"{where} no longer exists; figures from trial histories are skipped. Fix: pass "
                         f"experiment=<its folder now> (a moved sweep records its new place after resume=true "
                         f"storage_path=<the folder above it>)")
        elif experiment_path in (None, ""):  # inferred: a folder that cannot be read costs figures, not the report
            try:
                exp = load_experiment(exp_path)
                notes.extend(exp.notes)
            except (ReportError, OSError) as e:
                notes.append(f"experiment folder '{exp_path}' (from the leaderboard) could not be read ({e}); "
                             "figures from trial histories are skipped. Fix: pass experiment=<its folder>")
        else:
            exp = load_experiment(exp_path)  # an explicit path that is missing is an input error
            notes.extend(exp.notes)
    trials = lb[lb["kind"] != "baseline"]
    if trials.empty and (exp is None or not exp.trials):
        known = sorted(set(full.loc[full["kind"] != "baseline", "round"]))
        raise ReportError(f"leaderboard '{leaderboard_path}' has no trials of round '{round_name}' and no "
                          f"experiment was given. Rounds present: {', '.join(known) or 'none'}. "
                          f"Fix: round=<one of those> or experiment=<tune experiment folder>")
    lb = _merge_experiment_trials(lb, exp, round_name)
    champion = _champion(full, lb, leaderboard_path, champion_path, notes, data_hash)
    study = _export_study(exp, full, out_dir, notes) if round_name != "all" else None

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = fresh_temp_folder(out_dir.parent, out_dir.name)
    try:
        figs = _render_figures(full, lb, exp, champion, tmp, metric, data_hash)
        dims = _dims_verdict(lb) if round_name == "dims" else None
        page = _page(round_name, leaderboard_path, exp_path, lb, exp, champion, figs, notes, study,
                     dims[1] if dims else None)
        if dims:  # the sweep's ttc_by_dim_<experiment>.json, from the leaderboard as it is now
            write_verdict(verdict_file(tmp, dims[0]), dims[1])
        (tmp / "index.html").write_text(page, encoding="utf-8")
        _table_csv(lb).to_csv(tmp / "table.csv", index=False)
        publish(tmp, out_dir, OWNED_FILES, last="index.html")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir / "index.html"


def _export_study(exp: ExperimentResults | None, full: pd.DataFrame, out_dir: Path,
                  notes: list[str]) -> StudyExport | None:
    """The sweep's Optuna study into ``out_dir/optuna.db`` (``ups.reports.optuna_study``); a failure costs a note."""
    if exp is None:
        return None
    try:
        return export_study(exp.path, out_dir / STUDY_FILE, leaderboard=full, results=exp)
    except Exception as e:  # the report and its figures do not depend on it
        notes.append(f"Optuna study not exported ({type(e).__name__}: {e})")
        return None


def _exists(p: str | Path) -> bool:
    return "://" in str(p) or Path(p).exists()


def publish(tmp: Path, out_dir: Path, owned: set[str], last: str) -> None:
    """Move every file of ``tmp`` into ``out_dir`` (os.replace per file, ``last`` at the end) and remove
    stale files named in ``owned`` that this run did not produce. Nothing else in ``out_dir`` is touched:
    it may be a shared folder (the sweep engine passes ``reports/``, which holds the leaderboard)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    produced = {p.name for p in tmp.iterdir()}
    for name in sorted(produced - {last}):
        os.replace(tmp / name, out_dir / name)
    if last in produced:
        os.replace(tmp / last, out_dir / last)
    for name in owned - produced:
        (out_dir / name).unlink(missing_ok=True)
    tmp.rmdir()


OWNED_FILES = {f"{key}.png" for key, _, _ in FIGURES} | {"table.csv", "index.html"}


def _infer_experiment(lb: pd.DataFrame, storage: str | Path = "runs/sweeps") -> str | None:
    """The folder (``experiment_folder``) of the round's newest sweep (``newest_sweep``), as the notebook finds it;
    it was the sweep with the most rows, so ``ups report`` after a new sweep drew an older one's trial histories."""
    name = newest_sweep(lb)
    return experiment_folder(lb, name, storage) if name else None


def _merge_experiment_trials(lb: pd.DataFrame, exp: ExperimentResults | None, round_name: str) -> pd.DataFrame:
    """Add experiment trials missing from the leaderboard (e.g. errored before writing a row); mark
    leaderboard rows whose trial errored in the experiment."""
    if exp is None:
        return lb.reset_index(drop=True)
    lb = lb.copy()
    lb["error"] = ""
    ids = set(lb["trial_id"].dropna().astype(str))
    extra = []
    for t in exp.trials:
        if t.trial_id in ids:
            m = lb["trial_id"].astype(str) == t.trial_id
            if t.status == "ERROR":
                lb.loc[m & (lb["status"] == ""), "status"] = "ERROR"
            lb.loc[m, "error"] = t.error or ""
            continue
        best = float("nan")
        if "val_nrmse" in t.history:
            v = pd.to_numeric(t.history["val_nrmse"], errors="coerce")
            best = float(v.min()) if v.notna().any() else best
        extra.append({"run_id": f"trial:{t.trial_id}", "trial_id": t.trial_id, "kind": "trial",
                      "round": round_name if round_name != "all" else "", "status": t.status,
                      "label": t.dirname[:40], "error": t.error or "", "best_val_nrmse": best,
                      "stop_reason": "not in leaderboard", "experiment": exp.path,
                      "config_json": json.dumps(t.config, default=str)})
    if extra:
        lb = pd.concat([lb, pd.DataFrame(extra)], ignore_index=True)
    return lb.reset_index(drop=True)


def _champion(full: pd.DataFrame, lb: pd.DataFrame, leaderboard_path: Path, champion_path: Path | None,
              notes: list[str], data_hash: str | None = None) -> dict[str, Any] | None:
    """champion.json next to the leaderboard when present (and of the report's data), else the round's best trial
    with a checkpoint."""
    cpath = Path(champion_path) if champion_path else leaderboard_path.parent / "champion.json"
    if cpath.exists():
        try:
            ch = load_champion(cpath)
            theirs = str(ch.get("data_hash") or "")[:12]
            if data_hash and theirs and theirs != data_hash[:12]:
                notes.append(f"champion '{cpath}' was scored on other test data (data_hash {theirs}, this report "
                             f"{data_hash[:12]}), so the round's best trial stands in for it. Fix: champion=<that "
                             f"data's record> (the full profile's is reports/champion_full.json)")
            else:
                ch["_source"] = f"champion ({cpath})"
                return ch
        except ReportError as e:
            notes.append(str(e))
    row = best_trial(lb[lb["checkpoint"].notna() & (lb["checkpoint"].astype(str) != "")])
    if row is None:
        return None
    d = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.to_dict().items()}
    d["_source"] = "best trial of this round (no champion promoted yet)"
    return d


# ------------------------------------------------------------------------------------- figures
def _render_figures(full: pd.DataFrame, lb: pd.DataFrame, exp: ExperimentResults | None,
                    champion: dict[str, Any] | None, out: Path, metric: str,
                    data_hash: str | None = None) -> list[FigureResult]:
    hist = exp.histories() if exp is not None else pd.DataFrame()
    statuses = {t.trial_id: t.status for t in exp.trials} if exp is not None else {}
    others = full[full["kind"] != "baseline"]
    if data_hash and "data_hash" in others:  # every round's trials on the report's test data (or none recorded):
        # another data set's trials drew their nRMSE into the cost and TTC figures beside this data's baselines
        h12 = others["data_hash"].fillna("").astype(str).str[:12]
        others = others[(h12 == "") | (h12 == str(data_hash)[:12])]
    all_rounds = pd.concat([others, lb[lb["kind"] == "baseline"]], ignore_index=True)
    no_exp = "no Tune experiment folder given or recorded in the leaderboard (pass experiment=<path>)"
    own_trials = set(lb.loc[lb["kind"] == "trial", "run_id"].astype(str))

    scheduler = exp.scheduler if exp is not None else ""
    if not scheduler and exploited(lb).any():
        scheduler = "pbt"  # no sweep record (an older folder, or no experiment): a PBT round's rows say so

    def importance(path: Path) -> Path:
        if scheduler == "pbt":
            _skip(PBT_NO_IMPORTANCE)
        imp, method = round_importances(lb, exp)
        return plots.plot_importance(imp, method, path)

    makers: dict[str, Callable[[Path], Path]] = {
        "best_vs_cost": lambda p: plots.plot_best_vs_cost(all_rounds, p),
        "rung_survival": lambda p: plots.plot_rung_survival(hist, statuses, p, scheduler) if exp else _skip(no_exp),
        "importance": importance,
        "ttc_paradox": lambda p: plots.plot_ttc_paradox(all_rounds, p, focus=own_trials),
        "pareto": lambda p: plots.plot_pareto(lb, p),
        "learning_curves": lambda p: plots.plot_learning_curves(hist, p, metric) if exp else _skip(no_exp),
        "rollout": lambda p: _rollout_figure(champion, p),
        "gates": lambda p: plots.plot_gates(lb, p),
    }
    results = []
    for key, title, caption in FIGURES:
        fr = FigureResult(key, title, caption)
        try:
            fr.png = makers[key](out / f"{key}.png").name
        except plots.PlotSkipped as e:
            fr.note = str(e)
        except Exception as e:  # a figure must not take the whole report down; say what broke
            fr.note = f"figure failed: {type(e).__name__}: {e}"
            print(f"ups report: figure '{key}' failed:\n{traceback.format_exc()}", file=sys.stderr)
        results.append(fr)
    return results


PBT_NO_IMPORTANCE = ("a PBT round: each trial's score comes from a schedule of values (its row shows only its last; "
                     "see PBT schedules), so an importance of the values on the rows would mislead; none is computed")


def _skip(reason: str) -> Path:
    raise plots.PlotSkipped(reason)


def round_importances(lb: pd.DataFrame, exp: ExperimentResults | None = None) -> tuple[dict[str, float], str]:
    t = lb[(lb["kind"] == "trial") & lb["nrmse"].notna()]
    if t.empty:
        return {}, "no finished trial with a test nRMSE"
    from ups.config import flatten

    configs = [row_config(r) for _, r in t.iterrows()]
    sampled = [_json_dict(v) for v in t["sampled_json"]] if "sampled_json" in t else []
    by_id = {x.trial_id: flatten(x.config) for x in exp.trials} if exp is not None else {}
    if sampled and all(sampled):  # the values each trial trained with: the sampled ones and their derived copies,
        if len({frozenset(x) for x in sampled}) == 1:  # unless rounds that sampled other keys mix (round=all):
            configs = sampled  # then each trial's whole config, which sets every key
    elif by_id:  # else the Tune configs (the searcher's view of the same parameters)
        tune_cfgs = [by_id.get(str(tid)) for tid in t["trial_id"]]
        if all(tune_cfgs):
            configs = tune_cfgs  # type: ignore[assignment]
    flat = [flatten(c) for c in configs]
    params = varying_params(configs)
    frame = pd.DataFrame([{p: _scalar(f.get(p)) for p in params} for f in flat], index=t.index)
    searched = {k for c in by_id.values() for k in c}
    frame, params = merge_copies(frame, params, searched)
    frame["nrmse"] = t["nrmse"].astype(float)
    return param_importance(frame, params, "nrmse")


def merge_copies(frame: pd.DataFrame, params: list[str], searched: set[str]) -> tuple[pd.DataFrame, list[str]]:
    """One column per group of parameters with the same value in every trial: a derived copy (round A's
    diffusion and distillation lr = the operator's lr) carries no information of its own, and an importance
    evaluator would split the group's share among its copies.  The group keeps the searched key(s) (the Tune
    config's keys, when the experiment is known) or else its first key in schema order, labelled
    ``key (+N derived)`` / ``key (+N with the same values)``."""
    from ups.config import all_keys

    order = {k: i for i, k in enumerate(all_keys())}
    groups: dict[tuple[str, ...], list[str]] = {}
    for p in params:
        groups.setdefault(tuple(frame[p].astype(str)), []).append(p)
    out, names = pd.DataFrame(index=frame.index), []
    for keys in groups.values():
        keys = sorted(keys, key=lambda k: (k not in searched, order.get(k, len(order)), k))
        lead = [k for k in keys if k in searched] or keys[:1]
        rest = len(keys) - len(lead)
        name = " = ".join(lead)
        if rest:
            name += f" (+{rest} derived)" if searched & set(keys) else f" (+{rest} with the same values)"
        out[name] = frame[keys[0]]
        names.append(name)
    return out, names


def _json_dict(v: Any) -> dict[str, Any]:
    if not isinstance(v, str) or not v:
        return {}
    try:
        d = json.loads(v)
    except ValueError:
        return {}
    return d if isinstance(d, dict) else {}


def _scalar(v: Any) -> Any:
    return str(v) if isinstance(v, (list, dict, tuple)) else v


def _rollout_figure(champion: dict[str, Any] | None, path: Path) -> Path:
    if champion is None:
        raise plots.PlotSkipped("no champion and no trial with a checkpoint yet")
    ckpt_raw = champion.get("checkpoint")
    if not ckpt_raw:
        raise plots.PlotSkipped(f"{champion.get('_source')}: no checkpoint recorded")
    try:
        # ups report has no checkpoint= (the default fix): the champion record is what it reads the checkpoint from
        with checkpoint_file(str(ckpt_raw), fix="champion=<a champion.json whose checkpoint is on this machine>; a "
                             "sweep whose folder moved records the new place after resume=true storage_path=<it>") as ckpt:
            truth, pred, x, t, initial_step, label = champion_rollout(ckpt)
    except ReportError as e:
        raise plots.PlotSkipped(str(e)) from None
    name = champion.get("run_id") or champion.get("trial_id") or checkpoint_name(ckpt_raw)
    return plots.plot_rollout(truth, pred, x, t, initial_step,
                              f"{champion.get('_source', 'champion')}: {name} — {label}", path)


def champion_rollout(checkpoint: Path,
                     sample: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, str]:
    """Roll the checkpoint's model out (no TTC) on one test trajectory of its own data protocol.

    Returns truth (T, X), prediction (T, X) with the context frames copied, x, t, initial_step, label.
    Skips (PlotSkipped) when the data would have to be generated first: a report never spends that.
    """
    import torch

    from ups.metrics import nrmse
    from ups.train.checkpoint import load_checkpoint

    model, cfg, _ = load_checkpoint(checkpoint)
    data = _protocol_data_if_available(cfg)
    test = data.test
    if len(test) == 0:
        raise plots.PlotSkipped("the champion's protocol has an empty test split")
    k = int(cfg.data.initial_step)
    u = test[sample:sample + 1]  # (1, T, X)
    with torch.no_grad():
        pred = model.rollout(u[:, :k], u.shape[1] - k)  # (1, T-k, X)
    full = torch.cat([u[:, :k], pred], dim=1)  # (1, T, X)
    err = nrmse(full, u, k)
    return (u[0].numpy(), full[0].numpy(), np.asarray(data.x), np.asarray(data.t), k,
            f"test sample {sample}, rollout nRMSE {err:.4f}")


def _protocol_data_if_available(cfg: Any):
    try:
        from ups.data.protocol import load_protocol
    except ImportError as e:
        raise plots.PlotSkipped(f"data protocol module unavailable ({e})") from None
    if cfg.data.path:
        if not Path(str(cfg.data.path)).expanduser().exists():
            raise plots.PlotSkipped(f"the champion's data file '{cfg.data.path}' is missing")
    else:
        try:
            from ups.data import cache
        except ImportError as e:
            raise plots.PlotSkipped(f"data cache module unavailable ({e})") from None
        p = cache.cache_file(cfg.data)
        if not Path(p).exists():
            raise plots.PlotSkipped(f"the champion's dataset is not in the cache ({p}); a report never "
                                    "generates data")
    return load_protocol(cfg.data)


# ---------------------------------------------------------------------------------------- HTML
CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#212121;max-width:1400px}
h1{font-size:1.5em;margin-bottom:4px} h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
.meta{color:#616161;font-size:.85em} .kpis{display:flex;gap:16px;flex-wrap:wrap;margin:12px 0}
.kpi{background:#f5f5f5;border-radius:6px;padding:8px 14px} .kpi b{display:block;font-size:1.25em}
table{border-collapse:collapse;font-size:.8em;width:100%} th,td{border:1px solid #e0e0e0;padding:3px 6px;text-align:right;white-space:nowrap}
th{background:#eceff1;cursor:pointer;position:sticky;top:0;user-select:none} th[data-dir=asc]::after{content:" \\25B2"} th[data-dir=desc]::after{content:" \\25BC"}
td.txt{text-align:left} tr.baseline td{background:#fff8e1;font-style:italic} tr.failed td{background:#ffebee;color:#b71c1c}
tr.champion td{font-weight:bold;background:#e8f5e9} tr.stopped td{color:#757575} .pass{color:#2e7d32;font-weight:bold} .fail{color:#c62828;font-weight:bold}
.scroll{overflow:auto;max-height:520px} figure{margin:18px 0} figure img{max-width:100%;border:1px solid #eee}
figcaption{color:#616161;font-size:.85em;max-width:900px} .skipped{background:#fafafa;border:1px dashed #bbb;padding:10px;color:#616161}
pre{background:#263238;color:#eceff1;padding:10px;border-radius:4px;overflow:auto;font-size:.8em;max-height:400px}
"""

JS = """
(function () {
  function key(cell) { return cell ? cell.getAttribute('data-v') : null; }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var asc = th.getAttribute('data-dir') !== 'asc';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('data-dir'); });
        th.setAttribute('data-dir', asc ? 'asc' : 'desc');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          var ex = x === null || x === '', ey = y === null || y === '';
          if (ex || ey) { return ex === ey ? 0 : (ex ? 1 : -1); }
          var nx = Number(x), ny = Number(y);
          var r = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return asc ? r : -r;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
  document.body.setAttribute('data-sort-ready', '1');
})();
"""


def _fmt(v: Any, col: str) -> tuple[str, str]:
    """(display text, sort key) for one cell."""
    if v is None or (isinstance(v, float) and math.isnan(v)) or (isinstance(v, str) and v == ""):
        return "", ""
    if col == "gate_pass":
        return ("pass", "1") if v is True else ("FAIL", "0") if v is False else (str(v), str(v))
    if isinstance(v, (int, np.integer)) or (isinstance(v, float) and col == "params"):
        return f"{int(v):,}", str(int(v))
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if col in ("wall_clock",):
            return f"{f:.1f}", repr(f)
        return (f"{f:.4g}" if abs(f) >= 1e-3 or f == 0 else f"{f:.3e}"), repr(f)
    s = str(v)
    return s, s


def _table_csv(lb: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in table_columns(lb) + ["error"] if c in lb.columns]
    return lb[cols]


def _rows_html(lb: pd.DataFrame, champion: dict[str, Any] | None) -> str:
    champ_id = str(champion.get("run_id")) if champion and champion.get("run_id") else None
    state = lb.apply(trial_state, axis=1)
    order = lb.assign(_b=(lb["kind"] == "baseline"), _f=state.eq("failed"), _s=state)
    order = order.sort_values(["_b", "_f", "nrmse"], kind="stable", na_position="last")
    out = []
    columns = table_columns(lb)
    for _, row in order.iterrows():
        cls = {"baseline": "baseline", "failed": "failed", "stopped": "stopped"}.get(row["_s"], "")
        if champ_id and str(row["run_id"]) == champ_id and not row["_b"]:
            cls = "champion"
        title = html.escape(str(row.get("error") or row.get("stop_reason") or ""), quote=True)
        cells = []
        for c in columns:
            v = row.get(c)
            if c == "status" and row["_f"] and not str(v or ""):
                v = "FAILED (no metric)"
            text, key = _fmt(v, c)
            klass = "txt" if c in ("label", "run_id", "kind", "round", "status", "gate_reasons", "promotion", "trial_id") else ""
            if c == "gate_pass" and text:  # the reference is the yardstick, not a trial that failed
                text = gate_word(row)
                klass = "txt" if text in ("reference", "no eval") else "pass" if text == "pass" else "fail"
            cells.append(f'<td class="{klass}" data-v="{html.escape(key, quote=True)}">{html.escape(text)}</td>')
        out.append(f'<tr class="{cls}" title="{title}">' + "".join(cells) + "</tr>")
    return "\n".join(out)


def _dims_verdict(lb: pd.DataFrame) -> tuple[str, Verdict] | None:
    """(sweep, its answer to "does TTC help small models more?") for the round's newest sweep (``ups.ttc_gain``);
    None when no trial row has the dims' figures."""
    name = newest_experiment(lb) if "sampled_json" in lb.columns else None
    if name is None:
        return None
    v = ttc_verdict(dims_rows(lb, name))
    return (name, v) if v.dims else None


def _ttc_by_dim_html(v: Verdict | None) -> str:
    """The dims round's answer (``_dims_verdict``) as a section of the report; "" without one."""
    if v is None:
        return ""
    e = html.escape
    rows = "".join(
        f"<tr><td>{d.dim}</td><td>{d.params if d.params is not None else '—'}</td><td>{d.nrmse:.4g}</td>"
        f"<td>{d.nrmse_ttc:.4g}</td><td>{'—' if math.isnan(d.recon_nrmse) else format(d.recon_nrmse, '.4g')}</td><td>{d.gain:+.1%}</td>"
        f"<td>{f'{d.lo:+.1%} … {d.hi:+.1%}' if d.n_samples else 'no per-sample figures'}</td><td>{d.seeds}</td></tr>"
        for d in v.dims)
    return (f'<section id="ttc-by-dim"><h2>Does TTC help small models more?</h2><p><b>{e(v.text)}</b></p>'
            f'<table><thead><tr><th>latent.dim</th><th>params</th><th>nRMSE</th><th>nRMSE with TTC</th>'
            f'<th title="recon_nrmse: the autoencoder\'s round trip of the true test frames">autoencoder round trip</th>'
            f'<th>TTC gain</th><th>95 % interval</th><th>training seeds</th></tr></thead><tbody>{rows}</tbody></table>'
            f'</section>')


def _pdebench_html(lb: pd.DataFrame) -> str:
    """PDEBench's metric set (``ups.leaderboard.PDEBENCH_COLUMNS``) for the round's full evals (else its best trial)
    and the baselines: the figures PDEBench's tables print, on this round's test split; "" when no row has them."""
    cols = list(PDEBENCH_COLUMNS)
    if not set(cols) <= set(lb.columns) or "nrmse_pdebench" not in lb.columns:
        return ""
    rows = lb[lb["kind"].isin(["full_eval", "baseline"])]
    best = best_trial(lb)
    if not (rows["kind"] == "full_eval").any() and best is not None:
        rows = pd.concat([best.to_frame().T, rows])
    rows = rows[rows[cols].apply(pd.to_numeric, errors="coerce").notna().any(axis=1)]
    if rows.empty:
        return ""
    e = html.escape
    shown = ["nrmse_pdebench", *cols]
    body = "".join(
        f"<tr><td>{e(cell_text(r.get('label')) or str(r['run_id']))}</td><td>{e(str(r['kind']))}</td>"
        + "".join(f"<td>{_fmt(r.get(c), c)[0]}</td>" for c in shown) + "</tr>"
        for _, r in rows.iterrows())
    names = {"nrmse_pdebench": "nRMSE", **PDEBENCH_NAMES}  # the paper's
    head = "".join(f"<th title='{e(c)}'>{e(names[c])}</th>" for c in shown)
    return ('<section id="pdebench-metrics"><h2>PDEBench metric set</h2><p class="meta">As PDEBench\'s '
            "<code>metric_func</code> computes them for its tables: every frame with the context copied from the truth "
            "(so × 31/41 of the predicted frames' error), in test batches of 50, averaged over the batches; cRMSE is "
            "the error in the conserved mass, bRMSE at the boundary points, fRMSE per Fourier band (modes 0–3, 4–11, "
            "12 up). Without TTC (<code>ups eval</code> adds the TTC figures).</p>"
            f"<table><thead><tr><th>label</th><th>kind</th>{head}</tr></thead><tbody>{body}</tbody></table></section>")


def exploited(lb: pd.DataFrame) -> pd.Series:
    """Which rows hold a PBT schedule (``pbt_schedule``: trials PBT exploited; "" or missing for the others and
    for rows of other schedulers)."""
    if "pbt_schedule" not in lb.columns:
        return pd.Series(False, index=lb.index)
    return lb["pbt_schedule"].apply(lambda v: isinstance(v, str) and bool(v))


def _pbt_schedules_html(lb: pd.DataFrame, top: int = 10) -> str:
    """A PBT round's best trials with the schedule behind each one's weights (``pbt_schedule``): under PBT a
    trial's config on the leaderboard is only its last; its weights trained in other trials, with other values."""
    trials = lb[(lb["kind"] == "trial") & exploited(lb)]
    if trials.empty:
        return ""
    trials = trials.assign(_v=pd.to_numeric(trials["val_nrmse"], errors="coerce")).sort_values("_v").head(top)
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(str(r['trial_id']))}</td><td>{e(_fmt(r.get('val_nrmse'), 'val_nrmse')[0])}</td>"
        f"<td>{e(_fmt(r.get('nrmse'), 'nrmse')[0])}</td>"
        f"<td>{e(schedule_text(json.loads(r['pbt_schedule'])))}</td></tr>" for _, r in trials.iterrows())
    return ('<section id="pbt-schedules"><h2>PBT schedules</h2><p class="meta">Under PBT a trial\'s row shows its last '
            'values only. Its weights trained in stretches: from the start in one trial, then, from each exploit\'s '
            'iteration on, in the trial that took over the checkpoint, with the values listed (Ray\'s '
            '<code>pbt_policy_*.txt</code>; <code>PopulationBasedTrainingReplay</code> replays one). Trials never '
            'exploited trained with their own values from the start and are not listed.</p>'
            '<table><thead><tr><th>trial</th><th>val nRMSE</th><th>test nRMSE</th><th>schedule</th></tr></thead>'
            f'<tbody>{rows}</tbody></table></section>')


def _study_html(study: StudyExport | None) -> str:
    """Where the sweep's Optuna study is and how to open it."""
    if study is None:
        return ""
    e = html.escape
    load = (f"import optuna; study = optuna.load_study(study_name={study.study_name!r}, "
            f"storage={study.storage!r})")
    what = ("what TPE was told (each trial's searched values, the objective it minimised, every reported "
            "iteration)" if study.searcher == "optuna" else
            f"the {study.searcher} search's trials as Tune recorded them (each trial's searched values, its last "
            f"val_objective, every reported iteration), to set beside a TPE sweep's study")
    return (f'<section id="optuna-study"><h2>Optuna study</h2><p class="meta">{e(study.describe())}: {e(what)}, '
            f'with the leaderboard\'s test nRMSE, status and gates as user attrs. One file holds every sweep of '
            f'this round.</p><pre>optuna-dashboard {e(study.storage)}    # pip install optuna-dashboard\n'
            f'{e(load)}\n'
            f'optuna-dashboard sqlite:///{STUDY_FILE}    # from this report\'s folder, wherever it was copied to</pre>'
            f'</section>')


def _page(round_name: str, leaderboard_path: Path, exp_path: Any, lb: pd.DataFrame,
          exp: ExperimentResults | None, champion: dict[str, Any] | None, figs: list[FigureResult],
          notes: list[str], study: StudyExport | None = None, dims: Verdict | None = None) -> str:
    e = html.escape
    trials = lb[lb["kind"] == "trial"]
    failed = trials[trials.apply(is_failed, axis=1)] if len(trials) else trials
    best = best_trial(lb)
    n_pass = int((trials["gate_pass"] == True).sum()) if len(trials) else 0  # noqa: E712
    kpis = [("trials", str(len(trials))), ("failed", str(len(failed))), ("gates passed", str(n_pass)),
            ("best trial (by val nRMSE)", cell_text(best.get("label")) or str(best["run_id"]) if best is not None else "—"),
            ("its test nRMSE", f"{best['nrmse']:.4g}" if best is not None else "—")]
    for _, b in lb[(lb["kind"] == "baseline") & lb["nrmse"].notna()].iterrows():
        kpis.append((f"{plots._baseline_name(b)} baseline", f"{b['nrmse']:.4g}"))
    kpi_html = "".join(f'<div class="kpi">{e(k)}<b>{e(v)}</b></div>' for k, v in kpis)
    head = "".join(f"<th>{e(c)}</th>" for c in table_columns(lb))
    fig_html = []
    for f in figs:
        if f.png:
            fig_html.append(f'<figure id="fig-{f.key}" class="plot"><h3>{e(f.title)}</h3>'
                            f'<img src="{e(f.png)}" alt="{e(f.title)}"><figcaption>{e(f.caption)}</figcaption></figure>')
        else:
            fig_html.append(f'<figure id="fig-{f.key}" class="plot skipped-plot"><h3>{e(f.title)}</h3>'
                            f'<div class="skipped">skipped: {e(f.note or "")}</div></figure>')
    fail_html = ""
    if len(failed):
        items = "".join(f"<li><b>{e(str(r.get('trial_id') or r['run_id']))}</b> [{e(str(r['status'] or 'no metric'))}]: "
                        f"{e(str(r.get('error') or r.get('stop_reason') or 'no metric reported'))}</li>"
                        for _, r in failed.iterrows())
        fail_html = f'<section id="failures"><h2>Failed trials ({len(failed)})</h2><ul>{items}</ul></section>'
    champ_html = ""
    if champion is not None:
        cfg = champion.get("config") if isinstance(champion.get("config"), dict) else row_config(champion)
        shown = {k: v for k, v in champion.items() if not k.startswith("_") and k not in ("config", "config_json")}
        champ_html = (f'<section id="champion"><h2>Champion: {e(champion.get("_source", ""))}</h2>'
                      f'<pre>{e(json.dumps(shown, indent=2, default=str))}</pre>'
                      f'<h3>Config</h3><pre>{e(json.dumps(cfg, indent=2, default=str)) if cfg else "(not recorded)"}</pre></section>')
    ttc_html = _ttc_by_dim_html(dims)
    pbt_html = _pbt_schedules_html(lb)
    pdebench_html = _pdebench_html(lb)
    study_html = _study_html(study)
    skipped = [f"{f.title}: {f.note}" for f in figs if f.note]
    note_items = "".join(f"<li>{e(n)}</li>" for n in notes + skipped)
    exp_desc = f"{exp_path} ({len(exp.trials)} Tune trials)" if exp is not None else (str(exp_path) if exp_path else "none")
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>UPS Sweeps report: {e(round_name)}</title><style>{CSS}</style></head>
<body>
<h1>UPS Sweeps report: round {e(round_name)}</h1>
<p class="meta">generated {now} · leaderboard {e(str(leaderboard_path))} · experiment {e(exp_desc)}.
nRMSE: PDEBench definition over the predicted frames (nrmse_pdebench includes the context frames, ×31/41);
recon_nrmse: the autoencoder's round trip of the true test frames, the error a perfect latent operator would leave
(close to nrmse: the autoencoder limits the model; far below it: the operator does).</p>
<div class="kpis">{kpi_html}</div>
<section id="leaderboard"><h2>Leaderboard (click a column to sort)</h2>
<p class="meta">Baselines (yellow) are reference rows; failed trials are red; trials stopped early (ASHA or a
gate; no final test evaluation) are grey; the champion is bold green.
Hover a row for its error / stop reason.</p>
<div class="scroll"><table id="leaderboard-table" class="sortable"><thead><tr>{head}</tr></thead>
<tbody>
{_rows_html(lb, champion)}
</tbody></table></div></section>
{fail_html}
{ttc_html}
{pdebench_html}
{pbt_html}
<section id="plots"><h2>Figures</h2>
{''.join(fig_html)}
</section>
{champ_html}
{study_html}
<section id="notes"><h2>Notes</h2><ul>{note_items or '<li>none</li>'}</ul></section>
<script>{JS}</script>
</body></html>
"""
