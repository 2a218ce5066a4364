"""Population-based training that stops perturbing once the perturbed knobs have nothing left to train.

Ray's PBT exploits at every ``perturbation_interval``: a bottom trial takes a top trial's latest
checkpoint and a perturbed copy of its config.  A UPS trial trains its stages one after another (one
iteration per epoch: autoencoder, operator, diffusion residual, distillation, then a final report), and
a sweep's knobs belong to one stage.  Once that stage is trained, a clone learns nothing with its new
values: it ends with its donor's weights and scores, under a config that never trained (seen with
``round_a`` under PBT: two trials cloned finished donors at iteration 11 of 12 and the leaderboard
showed each donor's score twice, one of them crowned with values that never ran).  ``StagedPBT``
therefore takes a trial out of the population from the iteration at which the last perturbed stage is
trained: it neither exploits nor serves as a donor (its last donor checkpoint may be older than the
``checkpoint_keep`` newest, which ``CheckpointRetention`` deletes), and it runs to its end.

Tune does not save a scheduler's state with the experiment: after ``resume=true`` Ray's PBT would know no
trial's score (its quantiles, over the trials that happened to report since, would compare a trial with
one or two others), would perturb every restored trial at its first report whatever its last
perturbation, would let a trial already past the window serve as a donor until it reports again, and
would tag a perturbed trial ``…@perturbed[…]@perturbed[…]``.  ``StagedPBT.restore`` takes each restored
trial's saved reports and replays PBT's own bookkeeping on them (``replay_history``), and
``on_trial_add`` puts the result in place when Tune adds the trial back, along with Ray's log files of
the stopped run's exploits (``pbt_policy_<trial id>.txt``, ``pbt_global.txt``), which Tune's resume does not
fetch (``ups.tune.pbt_schedule`` reads a trial's policy file into the schedule its weights trained with).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler

from ups.train.checkpoint import WEIGHT_FREE_KEYS
from ups.tune.restore import SavesStateOnTrialEnd
from ups.tune.space import trains_point


def _key_stage(key: str) -> str | None:
    """The stage a searched key acts in: ``stages.<stage>.…``, or the stage of a model key PBT may perturb (the
    operator's stochastic depth acts while the operator stage trains: a clone after it trains nothing with it)."""
    return key.split(".")[1] if key.startswith("stages.") else WEIGHT_FREE_KEYS.get(key)


def _stage_spans(cfg: Any, keys: Iterable[str]) -> tuple[list[tuple[int, int]] | None, int]:
    """(start, end) training iterations of each stage a key of ``keys`` belongs to (``stages.<stage>.…``, or a
    model key of ``WEIGHT_FREE_KEYS``), in the order the trainer runs the stages (``ups.config.StagesCfg``), and the
    total; None when a key belongs to no stage (it acts over the whole training) or there are no keys."""
    spans, total = {}, 0
    for name, stage in cfg.stages.items():
        spans[name] = (total, total + int(stage.epochs))
        total += int(stage.epochs)
    keys = list(keys)
    if not keys or any(_key_stage(key) not in spans for key in keys):
        return None, total
    return [spans[_key_stage(key)] for key in keys], total


def pbt_window(cfg: Any, keys: Iterable[str]) -> int:
    """The training iteration from which perturbing ``keys`` changes nothing: the epochs of every stage up
    to the last one a key belongs to (``stages.<stage>.…``, ``WEIGHT_FREE_KEYS``); all training epochs for any other
    key."""
    spans, total = _stage_spans(cfg, keys)
    return total if spans is None else max(end for _, end in spans)


def pbt_start(cfg: Any, keys: Iterable[str]) -> int:
    """The training iterations before the first stage any of ``keys`` belongs to starts (the epochs of the
    stages trained before it); 0 for a key of no stage.  Before it, the perturbed knobs have changed nothing:
    every trial reports the same scores (round A's autoencoder stage is the same in every trial), and an
    exploit there copies weights and perturbs values on noise."""
    spans, _ = _stage_spans(cfg, keys)
    return 0 if spans is None else min(start for start, _ in spans)


class StagedPBT(SavesStateOnTrialEnd, PopulationBasedTraining):
    """Ray's ``PopulationBasedTraining`` that takes a trial that reported at or past ``window``
    (``pbt_window``; counted in ``training_iteration``, whatever the ``time_attr``) out of the population:
    neither exploited nor cloned; it continues to its end.  The trial of the round's ``reference`` point is
    out of it from the start."""

    def __init__(self, *, window: int, reference: Mapping[str, Any] | None = None, **kwargs: Any):
        """``reference``: the round's reference point (encoded, as the searcher hands it to Tune); the trial
        that trains it stays out of the population (never exploited, never cloned) and trains the reference
        configuration alone, the yardstick the small-eval gates measure the round's trials against."""
        super().__init__(**kwargs)
        self.window = int(window)
        self.reference = dict(reference or {})
        self.reference_ids: set[str] = set()  # the trial(s) training the reference point
        self.past: set[str] = set()  # trial ids out of the population
        self._restored: dict[str, list[dict[str, Any]]] = {}  # trial id → its reports, until Tune adds it back

    def restore(self, histories: Mapping[str, Sequence[Mapping[str, Any]]],
                logs: Mapping[str, str] | None = None) -> int:
        """Before a resumed sweep's ``fit``: each restored trial's reports (trial id → its ``result.json``
        rows in order, ``ups.tune.restore.reported_history``).  ``on_trial_add`` replays them into the state
        PBT had kept for the trial (``replay_history``: Tune sets the metric and mode only at ``fit``), and
        puts ``logs`` (``ups.tune.restore.pbt_logs``: Ray's PBT log files of the stopped run, name → text) back
        in the new driver's experiment folder, where PBT appends to them.  Returns how many trials have
        reports to replay."""
        self._restored = {tid: [dict(r) for r in h] for tid, h in histories.items() if h}
        self._logs = dict(logs or {})
        return len(self._restored)

    def _put_back_logs(self, trial: Any) -> None:
        """Write the stopped run's PBT logs into the driver's experiment folder (once; a file already there is
        this run's and is kept)."""
        logs, self._logs = getattr(self, "_logs", None), {}
        if not logs:
            return
        try:
            folder = Path(trial.local_experiment_path)
        except Exception:  # a trial without storage: nowhere PBT would log to
            return
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in logs.items():
            if not (folder / name).exists():
                (folder / name).write_text(text)

    def replay_history(self, history: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
        """What ``on_trial_result`` recorded for a trial that reported ``history``: its last check (the
        report at which it was last due for a perturbation: score, result, time) and whether it is past the
        window.  None for a trial that never reached a check.  A time that goes back (an exploit restarts a
        trial from its donor's checkpoint) counts as a perturbation one step before it, about when the
        donor's checkpoint was taken (Ray copies the donor's last perturbation time)."""
        last_time, prev, check, past = 0, -math.inf, None, False
        for r in history:
            if self._metric not in r or self._time_attr not in r:
                continue
            t, value = r[self._time_attr], r[self._metric]
            if t <= prev:
                last_time = t - 1
            prev = t
            if int(r.get("training_iteration") or 0) >= self.window:
                past = True
                continue
            if t < self._burn_in_period or t - last_time < self._perturbation_interval:
                continue
            last_time = t  # a NaN score too, as Ray records it (its quantiles leave the trial out)
            check = {"score": self._metric_op * float(value), "result": dict(r), "time": t}
        if check is None and not past:
            return None
        return {"check": check, "last_perturbation_time": last_time, "past": past}

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        super().on_trial_add(tune_controller, trial)
        self._put_back_logs(trial)
        if self.reference and trains_point(trial.config, self.reference):
            self.reference_ids.add(trial.trial_id)
        state = self._trial_state[trial]
        state.orig_tag = str(state.orig_tag).split("@perturbed[")[0]  # a perturbed trial's tag, restored
        history = getattr(self, "_restored", {}).pop(trial.trial_id, None)  # (unpickled from an older version)
        snap = self.replay_history(history) if history else None
        if snap is None:
            return
        state.last_perturbation_time = snap["last_perturbation_time"]
        if snap["past"]:
            self.past.add(trial.trial_id)
        if snap["check"] is not None:
            state.last_score = snap["check"]["score"]
            state.last_result = snap["check"]["result"]
            state.last_train_time = snap["check"]["time"]
            # what a donor hands over: its latest checkpoint (saved at or after its last check), which Tune
            # restored with the trial; read only while the trial is in the top quantile
            state.last_checkpoint = trial.checkpoint

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if trial.trial_id in getattr(self, "reference_ids", ()):  # the round's yardstick trains on its own
            return TrialScheduler.CONTINUE
        if int(result.get("training_iteration") or 0) >= self.window:
            self.past.add(trial.trial_id)  # its perturbed stages are trained: cloning it or it changes nothing
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def _checkpoint_or_exploit(self, trial: Any, tune_controller: Any, upper_quantile: list[Any],
                               lower_quantile: list[Any]) -> None:
        """Ray hands a donor's checkpoint over only when the donor was in the top quantile at its own last
        check (else it sets its ``last_checkpoint`` to None); ranks move between checks, so a trial on top now
        whose last check ranked it lower had none, and every exploit of it was skipped ("no checkpoint for
        trial …": round A's tiny PBT run on this machine never exploited once).  Such a donor hands over its
        latest registered checkpoint (saved at or after its last check), as a restored donor does."""
        if trial in lower_quantile:
            for donor in upper_quantile:
                state = self._trial_state.get(donor)
                if state is not None and state.last_checkpoint is None and donor.checkpoint is not None:
                    state.last_checkpoint = donor.checkpoint
        super()._checkpoint_or_exploit(trial, tune_controller, upper_quantile, lower_quantile)

    def _quantiles(self) -> tuple[list[Any], list[Any]]:
        """Ray's bottom and top quantiles, over the trials still in the population."""
        everyone, out = self._trial_state, self.past | getattr(self, "reference_ids", set())
        self._trial_state = {t: s for t, s in everyone.items() if t.trial_id not in out}
        try:
            return super()._quantiles()
        finally:
            self._trial_state = everyone
