"""A running sweep kept up to date in its round's Optuna study file, so that optuna-dashboard shows it live.

The report (``ups.reports.optuna_study``) writes a sweep's study into ``<report_dir>/<round>/optuna.db`` when the
sweep ends.  ``LiveStudy``, a driver-side Tune callback, keeps the same study (same file, same name: the
experiment's) up to date while the sweep runs::

    optuna-dashboard sqlite:///reports/round_a/optuna.db      # during the sweep, refreshed every few seconds

- a trial appears RUNNING when Tune starts it, with its searched values in the distributions of the sweep's
  space (the Tune config's keys, as the export writes them);
- each report's ``val_objective`` (``val_nrmse`` where a report has none) is an intermediate value at its
  ``training_iteration``;
- the trials an earlier sweep lent through ``searcher.warm_start`` are COMPLETE from the first write, with their
  final ``val_nrmse`` and user attr ``warm_start``, as the export writes them from TPE's study;
- a trial that ends is written by the export's rules: FAIL for an error or a non-finite last figure; PRUNED
  with its last figure under ``searcher.stopped=pruned`` when it ended before its final report (ASHA, a gate);
  COMPLETE with its last figure otherwise.  A trial whose values fall outside the space is left out, as there.
  Its leaderboard row's columns are its user attrs, as there (``gate_pass`` and ``promotion`` come with the
  export: promotion decides them after the sweep).

Writes are batched (``StudyMirror.flush``): every ``flush_s`` seconds of Tune's loop and whenever a trial ends,
under the export's lock, on a connection opened for that write (the file the path names now, even one moved over
it by hand).  Exports write the file in place too, so a dashboard holding it open sees every write.  A write
is idempotent against what the file holds (trials found by their ``tune_trial_id`` user attr): a study an export
rebuilt mid-sweep, a killed driver's leftovers or a resumed sweep are brought up to date, never duplicated.  A
resumed sweep first rebuilds the study from its experiment folder (the export, plus the trials it left unfinished
with the reports they made before the stop), then goes on live.

The study is a view, not the record: when the sweep ends the report's export replaces it (for a TPE sweep with
TPE's own study).  A failed write (a locked or broken file) is printed once and turns the view off, never the
sweep.  PBT sweeps get none (the export writes none: a trial's score comes from a schedule of values).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from ray.tune import Callback

from ups.reports.experiment import load_experiment
from ups.reports.optuna_study import (OBJECTIVE, PLAIN_OBJECTIVE, UNFINISHED, _distribution, _quiet_optuna, _row_attrs,
                                      _truthy, end_state, export_study, fit_params, new_study, objective_column,
                                      sqlite_url)
from ups.tune.space import SearchSpace
from ups.tune.stop_signals import log as _log

BUILT_FROM = "the running sweep (live; the report replaces it when the sweep ends)"


@dataclass
class _Trial:
    params: dict[str, Any] | None  # None: a value outside the space (left out)
    start: datetime
    steps: dict[int, float] = field(default_factory=dict)  # training_iteration → objective (finite reports)
    last: float | None = None  # the last report's objective, NaN when not finite
    final: bool = False  # the last report was the trial's final evaluation
    attrs: dict[str, Any] = field(default_factory=dict)  # its leaderboard row's columns, once it ended
    state: str | None = None  # None while it runs; COMPLETE | PRUNED | FAIL once it ended
    value: float | None = None


@dataclass
class _Written:
    trial_id: int  # Optuna's storage id of the trial
    steps: set[int]
    finished: bool


class StudyMirror:
    """Tune trials → Optuna study ``study_name`` in the SQLite file ``path`` (module doc); uses no Ray (tested
    without a cluster)."""

    def __init__(self, path: Path, study_name: str, distributions: Mapping[str, Any], *, stopped: str = "complete",
                 attrs: Mapping[str, str] | None = None, warm: Sequence[tuple[Mapping[str, Any], float]] = ()):
        """``warm``: (Tune config, value) of the trials TPE is told before its first suggestion
        (``ups.tune.warm_start``); written once, the first time the study in the file holds none."""
        self.path = Path(path)
        self.study_name = study_name
        self.distributions = dict(distributions)
        self.stopped = stopped
        self.attrs = {"built_from": BUILT_FROM, **(attrs or {})}
        self.trials: dict[str, _Trial] = {}  # Tune trial id → what the driver saw
        self.warm = [(params, float(v)) for c, v in warm if (params := fit_params(self.distributions, c)) is not None]
        self._warm_written = False  # the study in the file holds warm-start trials
        self._study_id: int | None = None
        self._seen: tuple[int, ...] | None = None  # the file as this mirror's last write left it (_stamp)
        self._written: dict[str, _Written] = {}  # Tune trial id → what the file holds (for study _study_id)
        self._dirty = False

    @classmethod
    def for_space(cls, path: Path, study_name: str, space: SearchSpace, **kw: Any) -> StudyMirror:
        return cls(path, study_name, {key: _distribution(p) for key, p in space.params.items()}, **kw)

    @property
    def storage_url(self) -> str:
        return sqlite_url(self.path)

    def start(self, trial_id: str, config: Mapping[str, Any]) -> None:
        """Tune started (or restored) trial ``trial_id`` with ``config``."""
        if trial_id in self.trials:
            return
        self.trials[trial_id] = _Trial(fit_params(self.distributions, config), datetime.now())
        self._dirty = True

    def report(self, trial_id: str, result: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> None:
        """One of the trial's reports (Tune's result dict)."""
        if trial_id not in self.trials:
            self.start(trial_id, config or {})
        t = self.trials[trial_id]
        v = result.get(OBJECTIVE, result.get(PLAIN_OBJECTIVE))
        try:
            v = float(v) if v is not None else None
        except (TypeError, ValueError):
            v = None
        step = result.get("training_iteration")
        step = int(step) if isinstance(step, (int, float)) and math.isfinite(step) else None
        t.last = v if v is not None and math.isfinite(v) else math.nan
        t.final = _truthy(result.get("final"))
        if step is not None and v is not None and math.isfinite(v):
            t.steps[step] = v
            self._dirty = True

    def end(self, trial_id: str, *, error: bool = False, attrs: Mapping[str, Any] | None = None) -> None:
        """The trial ended: errored, or stopped (finished, ASHA, a gate); ``attrs``: its leaderboard row's
        columns (``_row_attrs``)."""
        t = self.trials.get(trial_id)
        if t is None or t.state is not None:
            return
        t.attrs = dict(attrs or {})
        t.state, t.value = end_state(error, t.last, t.final, self.stopped, t.steps)  # the export's rules
        self._dirty = True

    def flush(self) -> None:
        """Write what the file lacks (module doc); raises what Optuna or SQLite raise."""
        import optuna
        from optuna.trial import TrialState

        from ups.filelock import exclusive_lock

        if not self._dirty and self._seen is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(self.path.with_name(f".{self.path.name}.lock")), _quiet_optuna():
            if _stamp(self.path) != self._seen:  # written by someone else since (an export, another sweep): read
                self._study_id = self._seen = None  # again what it holds, its schema checked
            checked = self._seen is not None
            storage = optuna.storages.RDBStorage(self.storage_url, skip_compatibility_check=checked,
                                                 skip_table_creation=checked)
            try:
                study_id = self._study(storage)
                if self.warm and not self._warm_written:
                    for params, value in self.warm:
                        storage.create_new_trial(study_id, template_trial=optuna.trial.create_trial(
                            state=TrialState.COMPLETE, value=value, params=params,
                            distributions={k: self.distributions[k] for k in params},
                            user_attrs={"warm_start": True}))
                    self._warm_written = True
                for tid, t in self.trials.items():
                    if t.params is None:
                        continue
                    w = self._written.get(tid)
                    if w is None:
                        template = optuna.trial.create_trial(
                            state=TrialState.RUNNING, params=t.params,
                            distributions={k: self.distributions[k] for k in t.params},
                            intermediate_values=dict(t.steps), user_attrs={"tune_trial_id": tid})
                        template.datetime_start = t.start
                        w = self._written[tid] = _Written(storage.create_new_trial(study_id, template_trial=template),
                                                          set(t.steps), False)
                    elif not w.finished:
                        for step in sorted(set(t.steps) - w.steps):
                            storage.set_trial_intermediate_value(w.trial_id, step, t.steps[step])
                            w.steps.add(step)
                    if t.state is not None and not w.finished:
                        for k, v in t.attrs.items():
                            storage.set_trial_user_attr(w.trial_id, k, v)
                        storage.set_trial_state_values(w.trial_id, TrialState[t.state],
                                                       None if t.value is None else [t.value])
                        w.finished = True
            finally:
                storage.engine.dispose()
            self._seen = _stamp(self.path)
        self._dirty = False

    def _study(self, storage: Any) -> int:
        """The study's id in the file, created when missing; what the file holds of it, read unless the file is
        as this mirror left it (an export replaced it, another sweep wrote it, a resumed or restarted driver)."""
        import optuna

        try:
            study_id = storage.get_study_id_from_name(self.study_name)
        except KeyError:
            new_study(storage, self.study_name, [optuna.study.StudyDirection.MINIMIZE], OBJECTIVE, self.attrs)
            study_id = storage.get_study_id_from_name(self.study_name)
        if study_id != self._study_id:
            self._written = {}
            self._warm_written = False
            for ft in storage.get_all_trials(study_id, deepcopy=False):
                self._warm_written |= bool(ft.user_attrs.get("warm_start"))
                tid = ft.user_attrs.get("tune_trial_id")
                if tid:
                    self._written[str(tid)] = _Written(ft._trial_id, set(ft.intermediate_values),
                                                       ft.state.is_finished())
            self._study_id = study_id
        return study_id


def _stamp(path: Path) -> tuple[int, ...] | None:
    """What tells the file as one write left it from one changed or replaced since (None: no file)."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size


class LiveStudy(Callback):
    """Driver side: feeds a ``StudyMirror`` from Tune's callbacks and flushes it every ``flush_s`` seconds of
    Tune's loop and whenever a trial ends.  ``experiment``: the experiment folder to rebuild the study from
    first, on a resumed sweep (``export_study``)."""

    def __init__(self, mirror: StudyMirror, *, flush_s: float = 5.0, experiment: str | None = None,
                 rows: Callable[[str], Mapping[str, Any] | None] | None = None):
        """``rows``: a trial id's leaderboard row once it ended (``LeaderboardCallback.rows.get``: that callback
        comes first in Tune's list, so it has written the row when this one hears of the end)."""
        self.mirror = mirror
        self.rows = rows
        self.flush_s = flush_s
        self.experiment = experiment
        self.off = False
        self._last = 0.0
        self._ready = False

    def setup(self, **info: Any) -> None:
        """The study written (a resumed sweep's rebuilt first), so that it is listed from the start; once: the
        launcher calls it before it names the file, Tune again when the experiment starts."""
        if self._ready:
            return
        self._ready = True
        if self.experiment:
            try:
                self.rebuild(self.experiment)
            except Exception as e:  # a view: the sweep goes on, the study is written from now on
                _log(f"note: the live Optuna study could not be rebuilt from {self.experiment} ({type(e).__name__}: "
                     f"{e}); it shows this driver's trials from now on")
        self._flush(force=True)

    def rebuild(self, experiment: str) -> None:
        """A resumed sweep: its finished trials as the export writes them, and the trials it left unfinished
        (which Tune restores) with the reports they made before the stop, so that their curves go on."""
        results = load_experiment(experiment)
        export_study(experiment, self.mirror.path, study_name=self.mirror.study_name, results=results)
        for tr in results.trials:
            if tr.status in UNFINISHED and tr.status != "PENDING":
                self.mirror.start(tr.trial_id, tr.config)
                col = objective_column(tr.history)  # the export's column
                for row in tr.history.to_dict("records"):
                    self.mirror.report(tr.trial_id, {"training_iteration": row.get("training_iteration"),
                                                     col: row.get(col), "final": row.get("final")})

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.mirror.start(trial.trial_id, trial.config)
        self._flush(force=False)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.mirror.report(trial.trial_id, result, trial.config)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.mirror.end(trial.trial_id, attrs=self._row_attrs(trial.trial_id))
        self._flush(force=True)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.mirror.start(trial.trial_id, trial.config)  # one that failed before its first report
        self.mirror.end(trial.trial_id, error=True, attrs=self._row_attrs(trial.trial_id))
        self._flush(force=True)

    def _row_attrs(self, trial_id: str) -> dict[str, Any]:
        return _row_attrs(self.rows(trial_id)) if self.rows else {}

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self._flush(force=False)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self._flush(force=True)

    def _flush(self, force: bool) -> None:
        now = time.monotonic()
        if self.off or (not force and now - self._last < self.flush_s):
            return
        self._last = now
        try:
            self.mirror.flush()
        except Exception as e:
            self.off = True
            _log(f"note: the live Optuna study in {self.mirror.storage_url} is off ({type(e).__name__}: {e}); "
                 f"the report writes the sweep's study when it ends")
