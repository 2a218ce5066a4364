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
"""
from __future__ import annotations

from typing import Any, Iterable

from ray.tune.schedulers import PopulationBasedTraining, TrialScheduler


def pbt_window(cfg: Any, keys: Iterable[str]) -> int:
    """The training iteration from which perturbing ``keys`` changes nothing: the epochs of every stage up
    to the last one a key belongs to (``stages.<stage>.…``); all training epochs for any other key."""
    ends, total = {}, 0
    for name, stage in cfg.stages.items():  # the order the trainer runs them in (ups.config.StagesCfg)
        total += int(stage.epochs)
        ends[name] = total
    stages = {key.split(".")[1] for key in keys}
    if any(not key.startswith("stages.") or key.split(".")[1] not in ends for key in keys):
        return total
    return max((ends[s] for s in stages), default=total)


class StagedPBT(PopulationBasedTraining):
    """Ray's ``PopulationBasedTraining`` that takes a trial that reported at or past ``window``
    (``pbt_window``; counted in ``training_iteration``, whatever the ``time_attr``) out of the population:
    neither exploited nor cloned; it continues to its end."""

    def __init__(self, *, window: int, **kwargs: Any):
        super().__init__(**kwargs)
        self.window = int(window)
        self.past: set[str] = set()  # trial ids out of the population

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        if int(result.get("training_iteration") or 0) >= self.window:
            self.past.add(trial.trial_id)  # its perturbed stages are trained: cloning it or it changes nothing
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def _quantiles(self) -> tuple[list[Any], list[Any]]:
        """Ray's bottom and top quantiles, over the trials still in the population."""
        everyone = self._trial_state
        self._trial_state = {t: s for t, s in everyone.items() if t.trial_id not in self.past}
        try:
            return super()._quantiles()
        finally:
            self._trial_state = everyone
