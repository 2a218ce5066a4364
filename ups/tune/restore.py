"""What ``Tuner.restore`` brings back, and what the resuming command puts in its place.

Tune (2.60) restores a sweep from its ``tuner.pkl``: the search algorithm, callbacks and stopper pickled
when the sweep *started*, not the resuming command's (``Tuner.restore`` takes only the trainable and the
param space).  Left so, a resumed sweep

* reports to the callbacks unpickled from the start: the driver's own leaderboard callback sees no
  trial, so a second Ctrl-C is taken for the end of the sweep, its cut trials are recorded as stopped
  and the unfinished round is promoted (``tests/test_fault_driver.py``); W&B settings of the resuming
  command are ignored;
* keeps the concurrency it started with, whatever ``max_concurrent`` / ``pending_trials`` /
  ``resources`` the resuming command gives (Tune's saved searcher state sets it again at ``fit``);
* counts its compute budget from zero.

``carry_over`` sets the resuming command's callbacks, stopper (with the compute already spent), failure
policy, verbosity and concurrency on the restored tuner before ``fit``.  Ray has no public API for this,
so it sets the restored ``TunerInternal``'s run and tune configs, which ``fit`` reads
(``TunerInternal._get_tune_run_arguments`` / ``_fit_resume``); the test above fails if a Ray upgrade
moves them.  The stopper needs one more step: Tune also pickles it into every ``experiment_state-*.json``,
and ``TuneController.resume`` puts that copy (as of Tune's last snapshot) in place of the RunConfig's
(``__setstate__`` of the saved ``runner_data``), so the one ``carry_over`` set would never run.  The
sweep's stopper is a ``ResumableStopper``: unpickled after ``carry_over`` registered the resuming
command's stopper for the same experiment, it delegates to that one.

Tune does not save the scheduler either: the ASHA restored from ``tuner.pkl`` has empty rungs, so after
a resume a rung would compare a trial only with those that reached it after the resume (with one value
recorded, a trial worse than that one trial is stopped; PBT's population state likewise, put back by
``StagedPBT.restore``, ``ups.tune.pbt``).  ``restore_rungs`` records at each rung what
every restored trial reported when it crossed it, from its saved results, as ASHA did live.  With
several brackets (``scheduler.brackets``) Ray draws each trial's bracket at random when the trial is added,
again for every restored trial on a resume, and saves no draw: ``ResumableASHA`` draws it from the trial
id instead, so a restored trial goes on in the bracket whose rungs it reached and ``restore_rungs`` puts
its records back there.  The gate trackers of the resuming command (``ups.tune.gates``: its stopper's
and the leaderboard callback's) start empty too: a trial that was diverging would get a fresh best loss,
and a trial a gate had stopped would be labelled as merely stopped.  ``restore_gates`` replays every
restored trial's saved reports into them, and the gates go on as if the driver had not stopped.  ``time_budget_s`` goes on with what was left: Tune pickles its ``TimeoutStopper`` (the remaining
budget) with the experiment state, and the leaderboard callback's clock, which labels the rows the budget
cut, is Tune callback state saved with it; the time between a stop and its resume counts for neither.
"""
from __future__ import annotations

import json
import math
import posixpath
import random
from typing import Any, Mapping, Sequence

from ray.tune import Stopper
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from ups.tune.concurrency import set_limit
from ups.tune.gates import GateTracker
from ups.tune.results import gpu_seconds, result_trial_id
from ups.tune.space import trains_point


_RESUMING: dict[str, Stopper] = {}  # experiment path → the resuming command's stopper (``carry_over``)


class ResumableStopper(Stopper):
    """A sweep's stopper (``inner``) as Tune saves it with ``experiment``'s state: unpickled in a process where
    ``carry_over`` registered the resuming command's stopper for that experiment (its name: the folder may have
    moved since), it runs that one instead of the saved copy."""

    def __init__(self, inner: Stopper, experiment: str):
        self.inner, self.experiment = inner, experiment

    def __call__(self, trial_id: str, result: dict) -> bool:
        return bool(self.inner(trial_id, result))

    def stop_all(self) -> bool:
        return bool(self.inner.stop_all())

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.inner = _RESUMING.get(self.experiment, self.inner)


class SavesStateOnTrialEnd:
    """A Tune scheduler mixin: the experiment state is saved at the first step after a trial ends, not up to
    Tune's checkpoint period (10 s or more) later.  Killed in that window, a driver left a state without the
    ended trial, whose leaderboard row was already written: the resume trained it again from its last checkpoint
    (random search: the same trial id, its row rewritten), or, with TPE, whose restored sampler suggested the same
    point again under a new id, trained it a second time under another row (9 rows for num_samples=8).  The save
    waits for the next step, when Tune has marked the trial terminated and told the searcher; Tune's controller
    reaches a scheduler only through the wrapper it passes (``_tune_controller``, Ray 2.60)."""

    _state_due = False

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        super().on_trial_complete(tune_controller, trial, result)  # type: ignore[misc]
        self._state_due = True

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_error(tune_controller, trial)  # type: ignore[misc]
        self._state_due = True

    def choose_trial_to_run(self, tune_controller: Any) -> Any:
        if self._state_due:
            self._state_due = False
            controller = getattr(tune_controller, "_tune_controller", tune_controller)
            if callable(save := getattr(controller, "checkpoint", None)):
                save(force=True)
        return super().choose_trial_to_run(tune_controller)  # type: ignore[misc]


class ResumableFIFO(SavesStateOnTrialEnd, FIFOScheduler):
    """Ray's FIFO scheduler, saving the experiment state when a trial ends (``SavesStateOnTrialEnd``)."""


class ResumableASHA(SavesStateOnTrialEnd, ASHAScheduler):
    """Ray's ASHA, with each trial's bracket drawn from its trial id rather than NumPy's global generator:
    the same odds as Ray's (a softmax of the brackets' rung counts), but the same bracket again when a
    resume adds the trial anew.  ``ladders``: each bracket's rung milestones, ascending, in place of Ray's
    ``grace_period × reduction_factor^k`` (``scheduler.rungs_from=operator``: the same ladder after the
    autoencoder stage, ``ups.tune.tuner_build.rung_ladder``).  With one bracket and no ladders it is Ray's ASHA.

    ``reference``: the round's reference point (encoded, as the searcher hands it to Tune).  The trial that
    trains it is never stopped early: its score still enters the rungs the other trials are cut against, but it
    trains to the end, because its final eval is the yardstick of the small-eval gates (stopped, the gates fell
    back to the FNO baseline, whose BC violation no smoke trial reaches, and no trial could be promoted)."""

    def __init__(self, *args: Any, ladders: Sequence[Sequence[float]] | None = None,
                 reference: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if ladders is not None:
            if len(ladders) != len(self._brackets):
                raise ValueError(f"ResumableASHA: {len(ladders)} ladders for {len(self._brackets)} brackets")
            for bracket, ladder in zip(self._brackets, ladders):
                bracket._rungs = [(m, {}) for m in sorted(ladder, reverse=True)]  # Ray keeps them descending
        self.reference = dict(reference or {})
        self.reference_ids: set[str] = set()  # the trial(s) training the reference point

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)  # Ray's metric/mode checks (and its own draw, replaced)
        self._trial_info[trial.trial_id] = self._brackets[self.bracket_index(trial.trial_id)]
        reference = getattr(self, "reference", None)  # None: a scheduler pickled before it had one
        if reference and trains_point(trial.config, reference):
            self.reference_ids.add(trial.trial_id)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        action = super().on_trial_result(tune_controller, trial, result)  # records the score in its rung
        if (action == TrialScheduler.STOP and trial.trial_id in getattr(self, "reference_ids", ())
                and result.get(self._time_attr, 0) < self._max_t):
            self._num_stopped -= 1
            return TrialScheduler.CONTINUE
        return action

    def bracket_index(self, trial_id: str) -> int:
        sizes = [len(b._rungs) for b in self._brackets]
        weights = [math.exp(n - max(sizes)) for n in sizes]
        u = random.Random(trial_id).random() * sum(weights)  # str seeds hash with SHA-512: the same in any process
        for i, w in enumerate(weights):
            u -= w
            if u < 0:
                return i
        return len(weights) - 1


def restored_configs(tuner: Any) -> tuple[Any, Any]:
    """(RunConfig, TuneConfig) a restored ``tuner`` will ``fit`` with."""
    internal = getattr(tuner, "_local_tuner", None)
    if internal is None or not hasattr(internal, "_run_config") or not hasattr(internal, "_tune_config"):
        raise RuntimeError("resume=true: this Ray's Tuner keeps its restored configs elsewhere than Ray 2.60's "
                           "(TunerInternal._run_config/_tune_config). Fix: install the pinned ray[tune]==2.60.0")
    return internal._run_config, internal._tune_config


def restored_results(tuner: Any) -> list[Any]:
    """The restored trials' ``Result`` objects (last metrics and per-report history), read once for
    ``trial_compute_s`` and ``restore_rungs``; none when Tune has no readable results yet.

    A driver killed right after the searcher suggested a trial leaves that trial in Tune's state without a folder
    (``trial_dir_name`` unset): Ray's ``ResultGrid`` then raises for the whole experiment ("Should not access
    `trial_fs_path` without setting `trial_dir_name`"), and every other trial's results were lost to the resume (its
    ASHA rungs empty, its gates and compute not replayed).  Those trials are read one by one instead, that one left
    out: it has reported nothing."""
    try:
        return list(tuner.get_results())
    except (RuntimeError, ValueError):
        pass
    from ray.tune import ResultGrid

    analysis = restored_analysis(tuner)
    if analysis is None:
        return []
    try:
        grid = ResultGrid.__new__(ResultGrid)  # its per-trial conversion, without building the whole grid
        grid._experiment_analysis = analysis
        out = []
        for trial in analysis.trials:
            try:
                out.append(grid._trial_to_result(trial))
            except (RuntimeError, ValueError):
                continue  # no folder: suggested, never started
        return out
    except AttributeError:  # Ray's private layout (pinned 2.60) moved: the resume goes on without them, as before
        return []


def restored_analysis(tuner: Any) -> Any:
    """The ``ExperimentAnalysis`` a restored ``Tuner`` holds (Ray 2.60's private ``_local_tuner``), None if none."""
    return getattr(getattr(tuner, "_local_tuner", None), "_experiment_analysis", None)


def trial_compute_s(results: list[Any], histories: Mapping[str, list[dict[str, Any]]],
                    fallback_share: float = 0.0) -> tuple[dict[str, float], dict[str, float]]:
    """Trial id → the trial-seconds each restored trial had used itself: Σ ``time_this_iter_s`` of its
    ``reported_histories``, or its last ``time_total_s`` when its ``result.json`` is unreadable.  Not the last
    ``time_total_s``: a trial PBT exploited goes on from its donor's checkpoint with the donor's
    ``time_total_s`` there in place of its own, and a trial restarted from a checkpoint loses from that
    count the iterations it had run after it, though they were spent.  And trial id → its GPU-seconds: each
    report's seconds at the GPU share it reported running on (``gpu_seconds``; ``fallback_share``, the
    resuming command's ``resources.gpu``, where it did not report one)."""
    secs, gpu = {}, {}
    for r in results:
        if (tid := result_trial_id(r)) is None:
            continue
        if tid in histories:
            secs[tid] = gpu[tid] = 0.0
            for h in histories[tid]:
                dt = float(h.get("time_this_iter_s") or 0.0)
                secs[tid] += dt
                gpu[tid] += gpu_seconds(dt, h, fallback_share)
        else:
            secs[tid] = float((r.metrics or {}).get("time_total_s") or 0.0)
            gpu[tid] = gpu_seconds(secs[tid], r.metrics or {}, fallback_share)
    return secs, gpu


def carry_over(tuner: Any, fresh: Any, per_trial: Mapping[str, float], pending: int, max_conc: int,
               results: list[Any], gates: Sequence[GateTracker] = (),
               histories: Mapping[str, list[dict[str, Any]]] | None = None) -> list[str]:
    """Make a restored ``tuner`` run with the resuming command's ``fresh`` RunConfig (callbacks, stopper,
    failure policy, verbosity; its name and storage stay the restored ones) and concurrency (``max_conc``:
    a number or ``ADAPTIVE``; ``per_trial`` resources, ``pending`` trials); ASHA's rungs and the ``gates``'
    trackers (those of ``fresh``'s stopper and callbacks) from ``results`` (``restored_results``).
    Returns lines to log."""
    run_cfg, tune_cfg = restored_configs(tuner)
    run_cfg.callbacks = fresh.callbacks
    run_cfg.stop = fresh.stop
    if isinstance(fresh.stop, ResumableStopper):
        _RESUMING[fresh.stop.experiment] = fresh.stop.inner
    run_cfg.failure_config = fresh.failure_config
    run_cfg.verbose = fresh.verbose
    why_not = set_limit(tune_cfg.search_alg, per_trial, pending, max_conc)
    lines = [f"concurrency: {why_not}"] if why_not else []
    if (rungs := restore_rungs(tuner, results)) is not None:
        lines.append(f"asha: {rungs} rung record(s) of the restored trials put back")
    if isinstance(tune_cfg.scheduler, ResumableASHA) and not hasattr(tune_cfg.scheduler, "reference"):
        lines.append("asha: this sweep's saved scheduler predates the reference trial's protection (2026-12-07): "
                     "ASHA may still stop its reference trial early; a new sweep protects it")
    from ups.tune.pbt import StagedPBT

    pbt = tune_cfg.scheduler if isinstance(tune_cfg.scheduler, StagedPBT) else None
    if histories is None:  # each result.json read once, for both (or by the caller: ``trial_compute_s``)
        histories = reported_histories(results) if gates or pbt else {}
    if pbt is not None:  # its scores, last perturbations, tags and window, which Tune does not save
        logs = pbt_logs(results)
        lines.append(f"pbt: the reports of {pbt.restore(histories, logs)} restored trial(s) replayed into its "
                     f"population state" + (f"; its {len(logs)} log file(s) of exploits put back" if logs else ""))
    if gates:
        seeded, tripped = restore_gates(gates, histories)
        lines.append(f"gates: the reports of {seeded} restored trial(s) replayed ({tripped} past a gate)")
    return lines


def reported_history(result: Any) -> list[dict[str, Any]]:
    """Every result a restored trial reported, in order: its saved ``result.json`` (a JSON object a line, as
    Tune writes it; a line the stopped driver left cut off is skipped).  Read as written, not from
    ``Result.metrics_dataframe``, where a metric that a report lacked reads NaN, which the non-finite gate
    would take for a NaN reported."""
    if not result.path:
        return []
    try:
        with result.filesystem.open_input_stream(posixpath.join(str(result.path), "result.json")) as f:
            text = f.read().decode(errors="replace")
    except (FileNotFoundError, OSError):
        return []
    history = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            history.append(row)
    return history


def pbt_logs(results: list[Any]) -> dict[str, str]:
    """Ray PBT's logs in the restored experiment's folder on storage (``pbt_global.txt`` and each
    ``pbt_policy_<trial id>.txt``: file name → text).  Tune's resume fetches only the folder's ``.json``/``.pkl``
    files into the new driver's own: without these, PBT would log the resumed exploits into new files that
    replace the stored ones, and a trial's schedule would lose its donors from before the stop."""
    stored = next((r for r in results if r.path), None)
    if stored is None:
        return {}
    from pyarrow import fs as pafs

    folder, fs = posixpath.dirname(str(stored.path).rstrip("/")), stored.filesystem
    try:
        infos = fs.get_file_info(pafs.FileSelector(folder))
    except OSError:
        return {}
    out = {}
    for info in infos:
        name = posixpath.basename(info.path)
        if info.type == pafs.FileType.File and name.startswith("pbt_") and name.endswith(".txt"):
            try:
                with fs.open_input_stream(info.path) as f:
                    out[name] = f.read().decode(errors="replace")
            except OSError:
                continue
    return out


def reported_histories(results: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Trial id → ``reported_history`` of each restored trial that had reported."""
    out = {}
    for result in results:
        if (trial_id := result_trial_id(result)) is not None and (history := reported_history(result)):
            out[trial_id] = history
    return out


def restore_gates(trackers: Sequence[GateTracker], histories: Mapping[str, list[dict[str, Any]]]) -> tuple[int, int]:
    """Replay into each gate tracker every report the restored trials had made (``reported_histories``), so
    a trial's best loss, and a gate it had already tripped, are what the live trackers had seen (as of Tune's
    last snapshot: ``result.json`` reaches storage with the experiment state, whose checkpoints the trials
    go on from).  Finished trials too: they report no more, but a gated one whose row the stopped driver did
    not write is labelled with its gate.  Returns (trials replayed, trials past a gate)."""
    tripped = 0
    for trial_id, history in histories.items():
        tripped += any([t.replay(trial_id, history) for t in trackers])
    return len(histories), tripped


def restore_rungs(tuner: Any, results: list[Any]) -> int | None:
    """Fill a restored ASHA scheduler's rungs from the restored trials' ``results``: at each rung
    milestone of the trial's bracket, its first result at or past it (what ``_Bracket.on_result`` records
    live).  Returns how many records were put back; None when the scheduler is not an ASHA, or is Ray's own
    with several brackets (which bracket it drew for a trial is saved nowhere; ``ResumableASHA`` knows)."""
    from ray.tune.schedulers import AsyncHyperBandScheduler

    _, tune_cfg = restored_configs(tuner)
    sched = tune_cfg.scheduler
    brackets = getattr(sched, "_brackets", None)
    if not isinstance(sched, AsyncHyperBandScheduler) or not brackets:
        return None
    if len(brackets) > 1 and not isinstance(sched, ResumableASHA):
        return None
    time_attr, metric = sched._time_attr, sched._metric or tune_cfg.metric
    sign = -1.0 if (sched._mode or tune_cfg.mode) == "min" else 1.0  # ASHA keeps metric_op * value
    n = 0
    for result in results:
        df, trial_id = result.metrics_dataframe, result_trial_id(result)
        if df is None or trial_id is None or time_attr not in df or metric not in df:
            continue
        df = df.sort_values(time_attr, kind="stable")
        bracket = brackets[sched.bracket_index(trial_id)] if isinstance(sched, ResumableASHA) else brackets[0]
        for milestone, recorded in bracket._rungs:
            reached = df[df[time_attr] >= milestone]
            if len(reached) and trial_id not in recorded:
                value = float(reached.iloc[0][metric])
                if not math.isnan(value):
                    recorded[trial_id] = sign * value
                    n += 1
    return n
