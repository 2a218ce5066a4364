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
moves them.

Tune does not save the scheduler either: the ASHA restored from ``tuner.pkl`` has empty rungs, so after
a resume a rung would compare a trial only with those that reached it after the resume (with one value
recorded, a trial worse than that one trial is stopped).  ``restore_rungs`` records at each rung what
every restored trial reported when it crossed it, from its saved results, as ASHA did live.  Still
Ray's own on a resume: ``time_budget_s`` (wall clock of each run).
"""
from __future__ import annotations

from typing import Any, Mapping

from ups.tune.concurrency import set_limit
from ups.tune.results import result_trial_id


def restored_configs(tuner: Any) -> tuple[Any, Any]:
    """(RunConfig, TuneConfig) a restored ``tuner`` will ``fit`` with."""
    internal = getattr(tuner, "_local_tuner", None)
    if internal is None or not hasattr(internal, "_run_config") or not hasattr(internal, "_tune_config"):
        raise RuntimeError("resume=true: this Ray's Tuner keeps its restored configs elsewhere than Ray 2.60's "
                           "(TunerInternal._run_config/_tune_config). Fix: install the pinned ray[tune]==2.60.0")
    return internal._run_config, internal._tune_config


def restored_results(tuner: Any) -> list[Any]:
    """The restored trials' ``Result`` objects (last metrics and per-report history), read once for
    ``spent_compute_s`` and ``restore_rungs``; none when Tune has no readable results yet."""
    try:
        return list(tuner.get_results())
    except (RuntimeError, ValueError):
        return []


def spent_compute_s(results: list[Any]) -> float:
    """Trial-seconds the restored trials had used (Σ their last reported ``time_total_s``)."""
    return float(sum(float((r.metrics or {}).get("time_total_s") or 0.0) for r in results))


def carry_over(tuner: Any, fresh: Any, per_trial: Mapping[str, float], pending: int, max_conc: int,
               results: list[Any]) -> list[str]:
    """Make a restored ``tuner`` run with the resuming command's ``fresh`` RunConfig (callbacks, stopper,
    failure policy, verbosity; its name and storage stay the restored ones) and concurrency (``max_conc``:
    a number or ``ADAPTIVE``; ``per_trial`` resources, ``pending`` trials); ASHA's rungs from ``results``
    (``restored_results``).  Returns lines to log."""
    run_cfg, tune_cfg = restored_configs(tuner)
    run_cfg.callbacks = fresh.callbacks
    run_cfg.stop = fresh.stop
    run_cfg.failure_config = fresh.failure_config
    run_cfg.verbose = fresh.verbose
    why_not = set_limit(tune_cfg.search_alg, per_trial, pending, max_conc)
    lines = [f"concurrency: {why_not}"] if why_not else []
    if (rungs := restore_rungs(tuner, results)) is not None:
        lines.append(f"asha: {rungs} rung record(s) of the restored trials put back")
    return lines


def restore_rungs(tuner: Any, results: list[Any]) -> int | None:
    """Fill a restored ASHA scheduler's rungs from the restored trials' ``results``: at each rung
    milestone, the trial's first result at or past it (what ``_Bracket.on_result`` records live).
    Returns how many records were put back; None when the scheduler is not a one-bracket ASHA."""
    import math

    from ray.tune.schedulers import AsyncHyperBandScheduler

    _, tune_cfg = restored_configs(tuner)
    sched = tune_cfg.scheduler
    brackets = getattr(sched, "_brackets", None)
    if not isinstance(sched, AsyncHyperBandScheduler) or not brackets or len(brackets) != 1:
        return None  # with several brackets, which one a trial was drawn into is not saved
    time_attr, metric = sched._time_attr, sched._metric or tune_cfg.metric
    sign = -1.0 if (sched._mode or tune_cfg.mode) == "min" else 1.0  # ASHA keeps metric_op * value
    n = 0
    for result in results:
        df, trial_id = result.metrics_dataframe, result_trial_id(result)
        if df is None or trial_id is None or time_attr not in df or metric not in df:
            continue
        df = df.sort_values(time_attr, kind="stable")
        for milestone, recorded in brackets[0]._rungs:
            reached = df[df[time_attr] >= milestone]
            if len(reached) and trial_id not in recorded:
                value = float(reached.iloc[0][metric])
                if not math.isnan(value):
                    recorded[trial_id] = sign * value
                    n += 1
    return n
