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
it too (user attr ``warm_start``), and so are suggestions that repeated a finished trial's values, told that
trial's score instead of training (user attr ``repeat_of``; a point told again as FAIL).  Each trial also carries the leaderboard's view as user attrs: run_id, label,
status, stop reason, test nRMSE with and without TTC, gates.  Trials still running (an interrupted sweep) and
start-up points queued but never run (a sweep with fewer trials than its start-up design) are left out and
counted; a later export, after ``resume=true``, replaces the study.  One file holds every sweep of a round,
one study each.  While a sweep runs, ``ups.tune.live_study`` keeps its study in the same file up to date (the
export replaces that view when the sweep ends); both write the file in place, under one lock.

A random or grid sweep has no Optuna searcher, so its study is built from Tune's own results instead (the same
rules; study user attrs ``searcher`` and ``built_from``): each trial's searched values (``params.json``) in the
distributions of the space the sweep started with (``ups_space.yaml``, ``around`` windows resolved on the sweep's
recorded base config in ``ups_sweep.json``), its reports as intermediate values, its last ``val_objective`` as the
value; a trial that ended without its final report is COMPLETE with its last figure or PRUNED, as
``searcher.stopped`` says for TPE; an errored trial or one whose last figure is NaN is FAIL.  Such a study sits
beside the round's TPE studies in the same file, so that a random and a TPE sweep of one round can be compared in
optuna-dashboard.  A PBT sweep gets none: each trial's score comes from a schedule of values, not from one point of
the space.

Unpickling the searcher state runs code named in the file, as ``Tuner.restore`` does: read only experiment
folders you trust.  Ray is not imported.
"""
from __future__ import annotations

import contextlib
import copy
import math
import pickle
import tempfile
import warnings
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

from ups.reports.experiment import ExperimentResults, _Files, load_experiment, read_record
from ups.reports.sources import ReportError
from ups.tune.sweep_record import RECORD, SPACE_COPY  # Ray-free: ups_sweep.json and ups_space.yaml

STUDY_FILE = "optuna.db"
SEARCHER_STATE = "searcher-state-"  # Tune's Searcher.CKPT_FILE_TMPL = "searcher-state-{}.pkl"
OBJECTIVE = "val_objective"  # ups.tune.trainable.SEARCH_METRIC: what TPE minimises (Ray-free copy; a test ties them)
PLAIN_OBJECTIVE = "val_nrmse"  # ups.tune.trainable.METRIC: read where a report has no OBJECTIVE
UNFINISHED = {"RUNNING": "RUNNING", "PENDING": "WAITING", "PAUSED": "RUNNING"}  # Tune status → Optuna state name
# the leaderboard's columns each trial carries as a user attr (those with a value)
ROW_ATTRS = ("run_id", "label", "status", "stop_reason", "val_nrmse", "nrmse", "nrmse_ttc", "gate_pass",
             "gate_reasons", "promotion", "wall_clock", "params")


@dataclass
class StudyExport:
    path: Path  # the SQLite file
    study_name: str
    searcher: str = "optuna"  # the sweep's searcher.name: "optuna" (TPE's own study), "random" or "grid" (built
    # from Tune's results)
    states: Counter[str] = field(default_factory=Counter)  # Optuna state name → trials written
    left_out: Counter[str] = field(default_factory=Counter)  # unfinished, left out: RUNNING (an interrupted sweep's)
    # or WAITING (a start-up point queued but never run: the sweep ended first); OUTSIDE (values outside the space)

    @property
    def storage(self) -> str:
        return sqlite_url(self.path)

    def describe(self, where: str | None = None) -> str:
        """One line: the study's name, its trials by state, what was left out, and where it is (``where``, else
        its storage URL)."""
        counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(self.states.items())) or "no trials"
        said = ({"RUNNING": "running when Tune saved its searcher", "WAITING": "queued start-up point(s) never run"}
                if self.searcher == "optuna" else
                {"RUNNING": "unfinished when the sweep stopped", "WAITING": "pending, never started"})
        said["OUTSIDE"] = "with values outside the space the sweep started with"
        left = "".join(f"; {n} {said.get(s, s.lower())}, left out" for s, n in sorted(self.left_out.items()))
        built = "" if self.searcher == "optuna" else f", built from the {self.searcher} search's Tune results"
        return f"Optuna study '{self.study_name}' ({counts}{left}{built}) in {where or self.storage}"


def sqlite_url(path: str | Path) -> str:
    """The storage URL Optuna and optuna-dashboard take for the SQLite file ``path`` (absolute)."""
    return f"sqlite:///{Path(path).resolve()}"


def searcher_state(experiment: str | Path, files: _Files | None = None) -> dict[str, Any] | None:
    """The newest pickled searcher state of a Tune experiment folder (local or s3://) as a dict, or None when the
    folder has none (a random, grid or PBT sweep saves none with a study in it).  ``files``: the folder, opened."""
    files = files or _Files(experiment)
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
                 leaderboard: pd.DataFrame | None = None,
                 results: ExperimentResults | None = None) -> StudyExport | None:
    """Copy the experiment's Optuna study into the SQLite file ``out`` (see the module doc), or build one from
    Tune's results for a random or grid sweep; None for a sweep without either (PBT, a folder without the sweep's
    record or space copy).  ``leaderboard``: rows whose ``trial_id`` (and ``experiment``, when set) match give
    each trial its user attrs; ``results``: the experiment's ``load_experiment``, when the caller has read it."""
    import optuna

    name = study_name or Path(str(experiment).rstrip("/")).name
    rows = _rows_by_trial(leaderboard, name)
    result = StudyExport(Path(out), name)
    files = _Files(experiment)
    state = searcher_state(experiment, files)
    study = state.get("_ot_study") if state else None
    if isinstance(study, optuna.Study):
        trials = _tpe_trials(state, study, result, rows)
        directions, metric = study.directions, state.get("_metric")
        attrs = {"searcher.stopped": str(state.get("_stopped", "complete"))}
    else:
        built = _trials_from_results(experiment, files, result, rows, results)
        if built is None:
            return None
        trials, attrs = built
        directions, metric = [optuna.study.StudyDirection.MINIMIZE], OBJECTIVE
    _write_study(Path(out), name, directions, metric, {"experiment": str(experiment), "searcher": result.searcher,
                                                      **attrs}, trials)
    return result


def _tpe_trials(state: dict[str, Any], study: Any, result: StudyExport, rows: dict[str, dict[str, Any]]) -> list[Any]:
    """The finished trials of TPE's own study, each with its Tune trial id and leaderboard row as user attrs
    (counted in ``result``)."""
    by_number = {t.number: tid for tid, t in (state.get("_ot_trials") or {}).items() if hasattr(t, "number")}
    trials = []
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            result.left_out[t.state.name] += 1
            continue
        t = copy.deepcopy(t)
        tid = by_number.get(t.number)
        # no Tune trial: told an earlier sweep's trial (warm start), or a repeat of a finished trial's values,
        # told its score (``WarmOptunaSearch.suggest``: user attr ``repeat_of``)
        attrs = {"tune_trial_id": tid} if tid else {} if "repeat_of" in t.user_attrs else {"warm_start": True}
        attrs.update(_row_attrs(rows.get(str(tid))) if tid else {})
        t.user_attrs = {**t.user_attrs, **attrs}
        trials.append(t)
        result.states[t.state.name] += 1
    return trials


def _trials_from_results(experiment: str | Path, files: _Files, result: StudyExport, rows: dict[str, dict[str, Any]],
                         results: ExperimentResults | None = None) -> tuple[list[Any], dict[str, str]] | None:
    """(A random or grid sweep's trials as Optuna trials (module doc), counted in ``result``; the study's user
    attrs), or None when the folder is not such a sweep of this project (no ``ups_sweep.json`` or space copy, an
    Optuna or PBT sweep)."""
    import optuna
    from optuna.trial import TrialState

    record = _record(experiment, files)
    sweep = (record or {}).get("sweep") or {}
    searcher = str(sweep.get("searcher.name", ""))
    if searcher not in ("random", "grid") or sweep.get("scheduler.name") == "pbt":
        return None
    dists = _distributions(experiment, files, record)
    if dists is None:
        return None
    stopped = str(sweep.get("searcher.stopped", "complete"))
    result.searcher = searcher
    trials = []
    for tr in sorted((results or load_experiment(experiment)).trials, key=lambda t: (t.dirname or t.trial_id)):
        if tr.status in UNFINISHED:
            result.left_out[UNFINISHED[tr.status]] += 1
            continue
        params = fit_params(dists, tr.config)
        if params is None:
            result.left_out["OUTSIDE"] += 1
            continue
        steps, last = _reports(tr.history)
        final = bool(len(tr.history)) and _truthy(tr.history.iloc[-1].get("final"))
        state, value = end_state(tr.status == "ERROR", last, final, stopped, steps)
        t = optuna.trial.create_trial(params=params, distributions=dists, value=value, state=TrialState[state],
                                      intermediate_values=steps,
                                      user_attrs={"tune_trial_id": tr.trial_id, **_row_attrs(rows.get(tr.trial_id))})
        t.datetime_start, t.datetime_complete = _times(tr.history) or (t.datetime_start, t.datetime_complete)
        trials.append(t)
        result.states[state] += 1
    return trials, {"searcher.stopped": stopped, "built_from": "Tune results"}


def fit_params(dists: dict[str, Any], config: Any) -> dict[str, Any] | None:
    """A trial's searched values (Tune config keys) in the distributions ``dists``; None when one is missing or
    lies outside its distribution (such a trial is left out)."""
    params = {k: _fit(d, config[k]) for k, d in dists.items() if k in config}
    if set(params) != set(dists) or any(v is None for v in params.values()):
        return None
    return params


def end_state(error: bool, last: float | None, final: bool, stopped: str,
              steps: dict[int, float]) -> tuple[str, float | None]:
    """(Optuna state name, value) of a trial that ended: ``error``, its last reported objective ``last`` (NaN when
    not finite), whether that report was its ``final`` one, the sweep's ``searcher.stopped``, its finite reports."""
    if error or last is None or not math.isfinite(last):
        return "FAIL", None  # Ray's OptunaSearch: an error, or a NaN told, fails the trial
    if not final and stopped == "pruned":
        return "PRUNED", steps[max(steps)] if steps else None  # as Optuna's tell: its last intermediate value
    return "COMPLETE", last


def _record(experiment: str | Path, files: _Files) -> dict[str, Any] | None:
    """The sweep's ``ups_sweep.json``, None without one (a folder of another tool, a sweep from before records);
    one that is not a JSON object is refused, naming it (``resume=true`` refuses it too)."""
    try:
        return read_record(files)
    except ValueError as e:
        raise ReportError(f"experiment '{experiment}': its {RECORD} is unreadable ({e}), so its searcher and "
                          f"space are unknown. Fix: restore the file as the sweep wrote it") from None


def _distributions(experiment: str | Path, files: _Files, record: dict[str, Any]) -> dict[str, Any] | None:
    """Optuna distributions of the space copy (``ups_space.yaml``) the sweep started with, keyed as Tune's config
    (encoded values), ``around`` windows resolved on the recorded trial base config; None without a copy (a sweep
    from before copies were kept).  A copy this project no longer reads is refused, naming it."""
    from omegaconf import OmegaConf

    from ups.tune.space import SearchSpaceError, load_space, resolve_around

    try:
        text = files.read_text(files.join(SPACE_COPY))
    except OSError:
        return None
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / SPACE_COPY
        path.write_text(text, encoding="utf-8")
        try:
            space = load_space(path)
            if any(p.dist == "around" for p in space.params.values()):
                center = OmegaConf.create({})
                for key, value in (record.get("trial") or {}).items():
                    OmegaConf.update(center, key, value, merge=False)
                space = resolve_around(space, center, source="sweep's recorded base config")
        except SearchSpaceError as e:
            raise ReportError(f"experiment '{experiment}': its space copy {SPACE_COPY} cannot be read: "
                              f"{str(e).replace(str(path), SPACE_COPY)} The study is built on the "
                              f"distributions the sweep drew from. Fix: restore the file as the sweep wrote it "
                              f"(the space file named in its ups_sweep.json)") from None
    return {key: _distribution(p) for key, p in space.params.items()}


def _distribution(p: Any) -> Any:
    """The Optuna distribution a Tune domain of ``SearchSpace.tune_space`` maps to (``OptunaSearch``'s
    ``convert_search_space``: randint's exclusive high is Optuna's inclusive one)."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if p.dist in ("choice", "grid"):
        return CategoricalDistribution([p.encode(v) for v in p.values])
    if p.dist == "int":
        return IntDistribution(int(p.low), int(p.high), log=p.log)
    return FloatDistribution(float(p.low), float(p.high), log=p.dist == "loguniform")


def _fit(dist: Any, value: Any) -> Any:
    """``value`` when ``dist`` holds it, None when not; a float a rounding step past a bound (Tune's loguniform is
    exp(uniform(log low, log high))) is put on the bound."""
    from optuna.distributions import FloatDistribution

    try:
        internal = dist.to_internal_repr(value)
        if dist._contains(internal):
            return dist.to_external_repr(internal)
    except (ValueError, TypeError):
        return None
    if isinstance(dist, FloatDistribution) and isinstance(value, (int, float)) and not isinstance(value, bool):
        for bound in (dist.low, dist.high):
            if math.isclose(float(value), bound, rel_tol=1e-9, abs_tol=1e-12):
                return bound
    return None


def objective_column(history: pd.DataFrame) -> str:
    """The column a trial's objective is read from: the engine's ``OBJECTIVE``, else a plain Tune run's."""
    return OBJECTIVE if OBJECTIVE in history else PLAIN_OBJECTIVE


def _reports(history: pd.DataFrame) -> tuple[dict[int, float], float | None]:
    """({training_iteration: objective} of the finite reports, the last report's objective, NaN when not finite)."""
    if history.empty or "training_iteration" not in history:
        return {}, None
    col = objective_column(history)
    if col not in history:
        return {}, None
    values = pd.to_numeric(history[col], errors="coerce")
    steps = {int(i): float(v) for i, v in zip(history["training_iteration"], values)
             if pd.notna(i) and pd.notna(v) and math.isfinite(v)}
    return steps, float(values.iloc[-1]) if pd.notna(values.iloc[-1]) else math.nan


def _truthy(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v)) and bool(v)


def _times(history: pd.DataFrame) -> tuple[datetime, datetime] | None:
    """(start, end) from the reports' timestamps: the first report's less its own duration, the last's."""
    if history.empty or "timestamp" not in history:
        return None
    ts = pd.to_numeric(history["timestamp"], errors="coerce").dropna()
    if ts.empty:
        return None
    first = float(ts.iloc[0])
    if "time_this_iter_s" in history and pd.notna(history["time_this_iter_s"].iloc[0]):
        first -= float(history["time_this_iter_s"].iloc[0])
    return datetime.fromtimestamp(first), datetime.fromtimestamp(float(ts.iloc[-1]))


def _write_study(out: Path, name: str, directions: list[Any], metric: str | None, attrs: dict[str, str],
                 trials: list[Any]) -> None:
    """Replace study ``name`` in the SQLite file ``out`` (others kept) by one holding ``trials``, under the lock
    the live study (``ups.tune.live_study``) writes under.  Written in place, not to a copy moved over the file:
    a reader with the file open (optuna-dashboard, a running sweep's live study) would go on reading the
    replaced file.  A crash mid-write leaves this study partly written (the file itself stays whole: SQLite
    transactions); the next export (``ups report``) replaces it."""
    import optuna

    from ups.filelock import exclusive_lock

    out.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out.with_name(f".{out.name}.lock")), _quiet_optuna():
        storage = optuna.storages.RDBStorage(sqlite_url(out))
        try:
            if name in {s.study_name for s in optuna.get_all_study_summaries(storage)}:
                optuna.delete_study(study_name=name, storage=storage)  # an earlier export of this sweep, its live view
            new_study(storage, name, directions, metric, attrs).add_trials(trials)
        finally:
            storage.engine.dispose()


def new_study(storage: Any, name: str, directions: list[Any], metric: str | None, attrs: dict[str, str]) -> Any:
    """Study ``name`` created in ``storage`` with its metric name and user attrs (the export's and the live
    study's)."""
    import optuna

    study = optuna.create_study(storage=storage, study_name=name, directions=directions)
    if metric and len(directions) == 1:
        with warnings.catch_warnings():  # experimental since Optuna 3.2, still in 5.0
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([str(metric)])
    for k, v in attrs.items():
        study.set_user_attr(k, v)
    return study


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
