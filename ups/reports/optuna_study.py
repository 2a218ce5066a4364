"""A sweep's Optuna study, as its TPE searcher saw it, in an SQLite file Optuna's own tools open.

Ray's ``OptunaSearch`` keeps its study in memory; Tune pickles the searcher into the experiment folder
(``searcher-state-<session>.pkl``, the file ``resume=true`` restores it from).  ``export_study`` reads the
newest of those (local or ``s3://``, as Tune would: the greatest name) and copies the study's finished trials
into ``<file>`` under the experiment's name, so that::

    optuna-dashboard sqlite:///reports/round_a/optuna.db          # pip install optuna-dashboard
    optuna.load_study(study_name="round_a-…", storage="sqlite:///reports/round_a/optuna.db")

show what TPE was told: each trial's searched values (the Tune config's keys), the objective it minimised
(``val_objective``: the val nRMSE, with TTC where the space searches ``ttc.*``), every reported iteration as an
intermediate value, and the state (a trial ASHA or a gate stopped is COMPLETE with its last figure, Ray's way,
or PRUNED under ``searcher.stopped=pruned``).  Trials an earlier sweep lent through ``searcher.warm_start`` are in
it too (user attr ``warm_start``).  Each trial also carries the leaderboard's view as user attrs: run_id, label,
status, stop reason, test nRMSE with and without TTC, gates.  Trials still running (an interrupted sweep) and
start-up points queued but never run (a sweep with fewer trials than its start-up design) are left out and
counted; a later export, after ``resume=true``, replaces the study.  One file holds every sweep of a round,
one study each.

Unpickling the searcher state runs code named in the file, as ``Tuner.restore`` does: read only experiment
folders you trust.  Ray is not imported.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import pickle
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from ups.reports.experiment import _Files
from ups.reports.sources import ReportError

STUDY_FILE = "optuna.db"
SEARCHER_STATE = "searcher-state-"  # Tune's Searcher.CKPT_FILE_TMPL = "searcher-state-{}.pkl"
# the leaderboard's columns each trial carries as a user attr (those with a value)
ROW_ATTRS = ("run_id", "label", "status", "stop_reason", "val_nrmse", "nrmse", "nrmse_ttc", "gate_pass",
             "gate_reasons", "promotion", "wall_clock", "params")


@dataclass
class StudyExport:
    path: Path  # the SQLite file
    study_name: str
    states: dict[str, int] = field(default_factory=dict)  # Optuna state name → trials written
    left_out: dict[str, int] = field(default_factory=dict)  # unfinished, left out: RUNNING (an interrupted sweep's)
    # or WAITING (a start-up point queued but never run: the sweep ended first)

    @property
    def storage(self) -> str:
        return sqlite_url(self.path)

    def describe(self) -> str:
        counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.states.items())) or "no trials"
        said = {"RUNNING": "running when Tune saved its searcher", "WAITING": "queued start-up point(s) never run"}
        left = "".join(f"; {n} {said.get(s, s.lower())}, left out" for s, n in sorted(self.left_out.items()))
        return f"Optuna study '{self.study_name}' ({counts}{left}) in {self.storage}"


def sqlite_url(path: str | Path) -> str:
    """The storage URL Optuna and optuna-dashboard take for the SQLite file ``path`` (absolute)."""
    return f"sqlite:///{Path(path).resolve()}"


def searcher_state(experiment: str | Path) -> dict[str, Any] | None:
    """The newest pickled searcher state of a Tune experiment folder (local or s3://) as a dict, or None when the
    folder has none (a random, grid or PBT sweep saves none with a study in it)."""
    files = _Files(experiment)
    try:
        names = [n for n, is_dir in files.listdir(files.root)
                 if not is_dir and n.startswith(SEARCHER_STATE) and n.endswith(".pkl")]
    except OSError:
        return None
    if not names:
        return None
    newest = max(names)
    try:
        state = pickle.loads(files.read_bytes(files.join(newest)))
    except Exception as e:  # a cut-off copy (resume=true repairs it) or a searcher of another library
        raise ReportError(f"experiment '{experiment}': {newest} cannot be read ({type(e).__name__}: {e}). Fix: "
                          f"resume the sweep once (resume=true) so that Tune saves its searcher again") from None
    return state if isinstance(state, dict) else None


def export_study(experiment: str | Path, out: Path, *, study_name: str | None = None,
                 leaderboard: pd.DataFrame | None = None) -> StudyExport | None:
    """Copy the experiment's Optuna study into the SQLite file ``out`` (see the module doc); None when its sweep
    had no Optuna searcher.  ``leaderboard``: rows whose ``trial_id`` (and ``experiment``, when set) match give
    each trial its user attrs."""
    import optuna

    state = searcher_state(experiment)
    study = state.get("_ot_study") if state else None
    if not isinstance(study, optuna.Study):
        return None
    name = study_name or Path(str(experiment).rstrip("/")).name
    by_number = {t.number: tid for tid, t in (state.get("_ot_trials") or {}).items() if hasattr(t, "number")}
    rows = _rows_by_trial(leaderboard, name)
    out = Path(out)
    result = StudyExport(out, name)
    trials = []
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            result.left_out[t.state.name] = result.left_out.get(t.state.name, 0) + 1
            continue
        t = copy.deepcopy(t)
        tid = by_number.get(t.number)
        attrs = {"tune_trial_id": tid} if tid else {"warm_start": True}
        attrs.update(_row_attrs(rows.get(str(tid))) if tid else {})
        t.user_attrs = {**t.user_attrs, **attrs}
        trials.append(t)
        result.states[t.state.name] = result.states.get(t.state.name, 0) + 1
    out.parent.mkdir(parents=True, exist_ok=True)
    from ups.filelock import exclusive_lock

    with exclusive_lock(out.with_name(f".{out.name}.lock")), _quiet_optuna():
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")  # a crash mid-write leaves the old file whole
        tmp.unlink(missing_ok=True)
        try:
            if out.exists():
                tmp.write_bytes(out.read_bytes())
            storage = optuna.storages.RDBStorage(sqlite_url(tmp))
            try:
                if name in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
                    optuna.delete_study(study_name=name, storage=storage)  # an earlier export of this sweep
                dst = optuna.create_study(storage=storage, study_name=name, directions=study.directions)
                metric = state.get("_metric")
                if metric and len(study.directions) == 1:
                    with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        dst.set_metric_names([str(metric)])
                dst.set_user_attr("experiment", str(experiment))
                dst.set_user_attr("searcher.stopped", str(state.get("_stopped", "complete")))
                dst.add_trials(trials)
            finally:
                storage.engine.dispose()
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    return result


def study_hint(path: Path, study_name: str) -> str | None:
    """'<storage> (study <name>): optuna-dashboard <storage>' when the SQLite file ``path`` holds that study."""
    import optuna

    if not Path(path).is_file():
        return None
    url = sqlite_url(path)
    try:
        with _quiet_optuna():
            storage = optuna.storages.RDBStorage(url)
            try:
                names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
            finally:
                storage.engine.dispose()
    except Exception:
        return None
    return f"study '{study_name}' in {url} (optuna-dashboard {url})" if study_name in names else None


def _rows_by_trial(lb: pd.DataFrame | None, experiment: str) -> dict[str, dict[str, Any]]:
    if lb is None or lb.empty or "trial_id" not in lb:
        return {}
    rows = lb[lb["kind"] == "trial"] if "kind" in lb else lb
    if "experiment" in rows:
        names = rows["experiment"].fillna("").astype(str).map(lambda s: Path(s.rstrip("/")).name)
        rows = rows[(names == experiment) | (names == "")]
    return {str(r["trial_id"]): r.to_dict() for _, r in rows.iterrows() if pd.notna(r["trial_id"])}


def _row_attrs(row: dict[str, Any] | None) -> dict[str, Any]:
    """The leaderboard row's ``ROW_ATTRS`` with a value, as JSON-safe scalars."""
    out: dict[str, Any] = {}
    for k in ROW_ATTRS:
        v = (row or {}).get(k)
        if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
            continue
        out[k] = v.item() if hasattr(v, "item") else v
    return out


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna logs each study it creates at INFO; an export is not news."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(level)
