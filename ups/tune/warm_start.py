"""``searcher.warm_start``: TPE is told an earlier sweep's finished trials before it suggests anything.

``resume=true`` continues one sweep with the settings it started with, so "8 more trials of round A" used to
mean a new sweep whose TPE learned the space from scratch: its start-up trials spent again on what the first
sweep had measured.  With ``searcher.warm_start=latest`` (the newest earlier sweep of the round under the same
``storage_path``) or ``=<experiment name>``, the new sweep reads that sweep's Tune folder and adds each trial
that reached its final evaluation to Optuna's study as a completed trial (``OptunaSearch.add_evaluated_point``,
value = its final ``val_nrmse``, the metric the searcher minimises).  When they are at least
``searcher.n_startup_trials``, TPE's model runs from the first suggestion and the Latin-hypercube start-up is
not queued; the round's reference point is still trained first (the small-eval gates' yardstick).

Refused before Ray starts, naming the fix: another searcher than optuna; no earlier sweep; an earlier sweep
trained on another base config (data, epochs, model: its scores would not compare, the same rule as
``resume=true``); no finished trial whose values lie in this space.  Trials stopped early (ASHA, a gate) are
not told: their last ``val_nrmse`` is from an earlier epoch and would not compare with a final one.
"""
from __future__ import annotations

import math
from typing import Any

import optuna
from ray.tune.search.optuna import OptunaSearch

from ups.code_version import code_version, describe, other_data_version
from ups.config import ConfigError
from ups.tune.sweep_record import SPACE_COPY
from ups.tune.trainable import SEARCH_METRIC, TTC_METRIC, final_objective, with_objective


class WarmOptunaSearch(OptunaSearch):
    """``OptunaSearch`` told ``SEARCH_METRIC`` (whatever metric Tune's config names: that one is ASHA's), whose
    study holds ``warm`` (Tune config, value) pairs as completed trials once Tune has set its space (a
    module-level class: Tune pickles its searcher with the experiment).  ``stopped`` (``searcher.stopped``): a
    trial that ended without its final report (ASHA, a gate) is told as ``complete`` with its last figure (Ray's
    way), or as ``pruned``: Optuna's PRUNED state, which TPE ranks after every finished trial, by the last
    iteration it reported, then by its figure there (``OptunaSearch.on_trial_result`` reported each one)."""

    def __init__(self, *args: Any, warm: list[tuple[dict[str, Any], float]] = (), stopped: str = "complete",
                 **kwargs: Any) -> None:
        self._warm = list(warm)
        self._stopped = stopped
        super().__init__(*args, **kwargs)

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec: Any) -> bool:
        return super().set_search_properties(SEARCH_METRIC, mode, config, **spec)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # a trial restarted from a checkpoint reports the iterations after it again: Optuna keeps the first value
        # of a step and warns of every repeat ("step=37 is already reported"), three times a resume
        ot_trial = self._ot_trials.get(trial_id)
        step = result.get("training_iteration")
        if ot_trial is not None and step is not None and trial_id not in self._completed_trials:
            done = ot_trial.storage.get_trial(ot_trial._trial_id).intermediate_values
            if step in done:
                return
        super().on_trial_result(trial_id, _with_objective(result))

    def suggest(self, trial_id: str) -> dict | None:
        """Optuna's suggestion, drawn again when it repeats the values of a trial that finished (training is
        deterministic: the same values and seed train the same model; a categorical space such as round B's
        suggested the reference's values again, 1 trial in 5).  The repeat is told the score that trial got, with
        user attribute ``repeat_of``, so the model learns from it, and the trial gets a fresh draw; a point told
        once is told as FAIL after (TPE leaves those out: no extra weight on it).  After ``MAX_REDRAWS`` repeats in a
        row (a space nearly exhausted), or when every point of a categorical space has finished, it trains the
        repeat.  Values a running trial holds are not redrawn: their score is not known yet
        (``searcher.constant_liar=true`` spreads those).  An earlier sweep's finished trials
        (``searcher.warm_start``) count as finished; queued points (the reference, the start-up design) are trained
        as queued."""
        config = super().suggest(trial_id)
        if callable(self._space) or trial_id not in self._ot_trials:
            return config
        scores = self.__dict__.setdefault("_finished_scores", {})  # a searcher pickled before this has none
        told = self.__dict__.setdefault("_told_repeats", set())
        size = space_size(self._space)
        for _ in range(MAX_REDRAWS):
            ot_trial = self._ot_trials[trial_id]
            key = params_key(ot_trial.params)
            if key not in scores or (size is not None and len(scores) >= size):  # new, or nothing new is left
                break
            if "fixed_params" in self._ot_study._storage.get_trial(ot_trial._trial_id).system_attrs:
                break  # a queued point (the reference, the start-up design) is trained as queued
            first, value = scores[key]
            repeat = self._ot_trials.pop(trial_id)
            repeat.set_user_attr("repeat_of", first)
            if key in told:  # once is enough for the model: more copies would weigh this point again and again
                self._ot_study.tell(repeat, state=optuna.trial.TrialState.FAIL)
            else:
                told.add(key)
                self._ot_study.tell(repeat, value)
                print(f"[ups sweep] searcher: TPE suggested the values trial {first} finished with (score "
                      f"{value:.4g}); told it that score and drew again for {trial_id}", flush=True)
            config = super().suggest(trial_id)
        self.__dict__.setdefault("_trial_keys", {})[trial_id] = params_key(self._ot_trials[trial_id].params)
        return config

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        # the report ASHA or a gate stopped the trial at: Tune skips on_trial_result for a STOP decision, so the study
        # lacked that step, and a pruned trial's value (its last step's) was the one before, 0.586 for a trial whose
        # stopping report was the divergence penalty (1000)
        if result and not error and result.get("training_iteration") is not None:
            self.on_trial_result(trial_id, result)
        # a searcher pickled before ``stopped`` existed (a resumed sweep) tells Ray's way, as it did
        if result and not error and not result.get("final") and getattr(self, "_stopped", "complete") == "pruned":
            result = None  # OptunaSearch tells a trial without a figure (and no error) as PRUNED
        super().on_trial_complete(trial_id, _with_objective(result) if result else result, error)
        value = _with_objective(result).get(SEARCH_METRIC) if result and not error and result.get("final") else None
        key = getattr(self, "_trial_keys", {}).get(trial_id)
        if key is not None and isinstance(value, (int, float)) and math.isfinite(value):
            # its final score only: one ASHA or a gate stopped may do otherwise against other rungs
            self.__dict__.setdefault("_finished_scores", {}).setdefault(key, (trial_id, float(value)))

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)
        for params, value in self._warm:
            self.add_evaluated_point(params, value)
        scores = self.__dict__.setdefault("_finished_scores", {})
        for t in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if t.value is not None and math.isfinite(t.value):  # the earlier sweep's: trained, on the same base
                scores.setdefault(params_key(t.params), ("warm start", float(t.value)))


def warm_points(p: Any, current: str, record: dict[str, Any]) -> tuple[list[tuple[dict[str, Any], float]], str, str]:
    """([(Tune config of an earlier finished trial, its final val_nrmse)], what the sweep says about them, the
    earlier sweep's name) for ``p.scfg.searcher.warm_start``; ``([], "", "")`` when it is off.  ``current``: this
    sweep's experiment name (never its own warm start); ``record``: this sweep's ``sweep_record`` (its trial base
    config). Its data is checked once made (``check_warm_data``)."""
    from ups.tune.sweep_record import experiment_dirs, latest_sweep, read_record
    from ups.tune.tune_state import has_state

    s = p.scfg
    want = str(s.searcher.warm_start or "").strip()
    if not want:
        return [], "", ""
    if s.searcher.name != "optuna":
        raise ConfigError(f"searcher.warm_start={want}: only Optuna's TPE can be told earlier trials "
                          f"(searcher.name={s.searcher.name}). Fix: searcher.name=optuna, or drop searcher.warm_start")
    found = [n for n in experiment_dirs(p.storage_path, p.filesystem, s.round)  # not one stopped before its trials
             if n != current and has_state(f"{p.storage_path}/{n}", p.filesystem)]
    if want == "latest":
        if not found:
            raise ConfigError(f"searcher.warm_start=latest: no earlier '{s.round}-*' sweep under {p.display_storage}. "
                              f"Fix: run the round once first, or name the sweep: searcher.warm_start=<experiment>")
        name = latest_sweep(found, s.round)
    else:
        name = want
    earlier = read_record(p.storage_path, p.filesystem, name) if name != current else None
    if earlier is None and want != "latest":
        raise ConfigError(f"searcher.warm_start={name}: no sweep of that name under {p.display_storage} "
                          f"(its ups_sweep.json). Fix: one of {', '.join(found[-5:]) or '(none of this round)'}, "
                          f"or latest")
    earlier = earlier or {}
    if str(earlier.get("sweep", {}).get("scheduler.name")) == "pbt":
        raise ConfigError(f"searcher.warm_start={name}: that sweep ran PBT, so each trial's score comes from a "
                          f"schedule of values, not from the one config TPE would be told. Fix: warm-start from an "
                          f"ASHA or FIFO sweep of this round")
    if other_data_version(earlier.get("code"), record.get("trial", {})):
        raise ConfigError(f"searcher.warm_start={name}: that sweep ran on {describe(earlier.get('code'))}, "
                          f"whose data generator made other data from the same data.* settings than this code's "
                          f"(data version {code_version()['data_version']}, ups.data.cache.DATA_VERSION): TPE would "
                          f"be told scores on other data. Fix: warm-start from a sweep of this data version, or drop "
                          f"searcher.warm_start")
    differ = _base_differences(earlier.get("trial", {}), record.get("trial", {}), set(p.space.params) |
                               set(p.space.derived))
    if differ:
        raise ConfigError(f"searcher.warm_start={name}: that sweep trained another base config ({'; '.join(differ[:4])}"
                          f"{f'; and {len(differ) - 4} more' if len(differ) > 4 else ''}), so its scores do not "
                          f"compare with this sweep's. Fix: the same profile and trial overrides as that sweep "
                          f"(its command: {p.display_storage}/{name}/ups_sweep.json), or another warm_start")
    extra = sorted(_searched_there(p, name) - set(p.space.params))
    if extra:  # its trials varied what this sweep holds at the base value: their scores mix those values
        raise ConfigError(f"searcher.warm_start={name}: that sweep also searched {', '.join(extra)}, which this "
                          f"sweep holds at its base value, so its scores do not belong to this space's points. "
                          f"Fix: search those keys here too (its space: {p.display_storage}/{name}/{SPACE_COPY}), "
                          f"or warm-start from a sweep of this space")
    points, skipped = _finished_trials(f"{p.display_storage}/{name}", p.space)
    metric = final_objective(p.space)
    ttc = metric == TTC_METRIC
    if not points:
        older = [n for n in found if n != name][-3:]
        raise ConfigError(f"searcher.warm_start={want}: no trial of {name} reached its final evaluation with values "
                          f"in this space{f' and a {TTC_METRIC} (this space searches ttc.* keys; sweeps before 2026-12-05 did not report it)' if ttc else ''} "
                          f"({skipped} skipped). Fix: finish that sweep first (resume=true "
                          f"name={name}), or warm-start from another sweep with finished trials"
                          + (f" (searcher.warm_start=<one of {', '.join(older)}>)" if older else ""))
    note = (f"warm start: TPE told {len(points)} finished trial(s) of {name} (best {metric} "
            f"{min(v for _, v in points):.4g})" + (f"; {skipped} left out (stopped early, errored"
                                                   f"{f', without {TTC_METRIC}' if ttc else ''} or outside this "
                                                   f"space)" if skipped else ""))
    return points, note, name


def check_warm_data(leaderboard: Any, name: str, data_hash: str) -> None:
    """Refuse to tell TPE the trials of sweep ``name`` when the leaderboard says they were scored on other data than
    this sweep's (``data_hash``): a sweep recorded before its record kept the data version, on data the generator
    now makes otherwise, or a data file that changed."""
    from ups.leaderboard import scored_data

    if not data_hash or not name:
        return
    before = scored_data(leaderboard, name)
    if before and data_hash[:12] not in before:
        raise ConfigError(f"searcher.warm_start={name}: that sweep's trials were scored on data {', '.join(before)} "
                          f"({leaderboard}), this sweep's data is {data_hash[:12]}: the data generator changed since "
                          f"(ups.data.cache.DATA_VERSION) or a data file did, so TPE would be told scores on other "
                          f"data. Fix: warm-start from a sweep on this data, or drop searcher.warm_start")


def _searched_there(p: Any, name: str) -> set[str]:
    """The keys sweep ``name`` searched, from the copy of its space file (none known for a sweep without one)."""
    import yaml

    from ups.tune.sweep_record import experiment_file

    fs, path = experiment_file(p.storage_path, p.filesystem, name, SPACE_COPY)
    try:
        with fs.open_input_stream(path) as f:
            params = (yaml.safe_load(f.read().decode()) or {}).get("params") or {}
    except (OSError, ValueError, AttributeError, yaml.YAMLError):
        return set()
    return set(params) if isinstance(params, dict) else set()


def _base_differences(a: dict[str, Any], b: dict[str, Any], searched: set[str]) -> list[str]:
    """Base-config keys the two sweeps set differently, leaving out what either searches (and derives)."""
    return [f"{k}: {a.get(k)!r} → {b.get(k)!r}" for k in sorted(set(a) | set(b))
            if k not in searched and a.get(k) != b.get(k) and not k.startswith(("run.", "training.seed"))
            and k not in SCORE_FREE_KEYS]


# base-config keys that change no val_nrmse TPE is told: the test split's own eval (val_nrmse_ttc sets its own count)
SCORE_FREE_KEYS = ("eval.max_samples",)


MAX_REDRAWS = 10


def space_size(space: Any) -> int | None:
    """How many distinct points an Optuna search space (name → distribution) holds: a product of categorical
    choices; None when a distribution is continuous or not Optuna's."""
    if not isinstance(space, dict) or not space:
        return None
    n = 1
    for dist in space.values():
        if not isinstance(dist, optuna.distributions.CategoricalDistribution):
            return None
        n *= len(dist.choices)
    return n


def params_key(params: dict[str, Any]) -> str:
    """One Optuna trial's values as a comparable key (floats by their repr: a repeat is the very same draw)."""
    return repr(sorted((k, repr(v)) for k, v in params.items()))


def _with_objective(result: dict) -> dict:
    """A report without ``SEARCH_METRIC`` (a trainable of its own, e.g. a benchmark's) read on ``METRIC``."""
    return result if SEARCH_METRIC in result else with_objective(dict(result), ttc=False)


def _finished_trials(path: str, space: Any) -> tuple[list[tuple[dict[str, Any], float]], int]:
    """(Tune config restricted to the space's params, its final figure as this sweep's trials report
    ``SEARCH_METRIC``: ``final_objective``) of every finished trial; how many not.  A trial without that figure
    (finished before ``val_nrmse_ttc`` was reported: only the plain ``val_nrmse``, another figure than this sweep's
    trials give TPE) is left out."""
    import pandas as pd

    from ups.reports.experiment import load_experiment

    dists = OptunaSearch.convert_search_space(space.tune_space("optuna"))
    key = final_objective(space)
    points, skipped = [], 0
    for t in load_experiment(path).trials:
        h = t.history
        final = h[pd.to_numeric(h["final"], errors="coerce").fillna(0) > 0] if "final" in h and len(h) else h.iloc[:0]
        value = pd.to_numeric(final[key], errors="coerce").iloc[-1] if key in final and len(final) else None
        params = {k: t.config.get(k) for k in dists}
        ok = value is not None and math.isfinite(value) and t.error is None and all(
            k in t.config and _inside(dists[k], v) for k, v in params.items())
        if ok:
            points.append((params, float(value)))
        else:
            skipped += 1
    return points, skipped


def _inside(dist: Any, value: Any) -> bool:
    try:
        return bool(dist._contains(dist.to_internal_repr(value)))
    except (ValueError, TypeError):
        return False
