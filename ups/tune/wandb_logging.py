"""Cheap W&B logging from the driver: one run per sweep round, grouped ``sota-sweep-<round>``.

Ray's ``WandbLoggerCallback`` starts a W&B process per trial (6–8 s each even offline, DESIGN.md §4);
this callback opens a single run in the driver, logs every trial report under ``<trial_id>/<metric>``,
and a table of finished trials at the end.  Offline unless ``WANDB_API_KEY`` is set (``wandb sync``
uploads later).  A W&B failure is reported and logging switched off; it never stops a sweep.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ray.tune import Callback

LOGGED = ("train_loss", "val_nrmse", "val_conservation_gap", "val_bc_violation", "nrmse", "nrmse_ttc",
          "conservation_gap", "bc_violation", "ece", "wall_clock")


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        if os.environ.get("WANDB_MODE") in ("offline", "disabled", "online"):
            return os.environ["WANDB_MODE"]
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return mode


def default_group(round_name: str) -> str:
    return f"sota-sweep-{round_name.replace('_', '-').removeprefix('round-')}" if round_name.startswith("round_") \
        else f"sota-{round_name.replace('_', '-')}"


class WandbRoundLogger(Callback):
    def __init__(self, *, project: str, group: str, name: str, mode: str, directory: Path,
                 config: dict[str, Any] | None = None):
        self.project, self.group, self.name, self.mode = project, group, name, mode
        self.directory = Path(directory)
        self.config = config or {}
        self._run: Any = None
        self._rows: list[list[Any]] = []

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with the experiment state
        d = dict(self.__dict__)
        d["_run"] = None
        return d

    def setup(self, **info: Any) -> None:
        if self.mode == "disabled" or self._run is not None:
            return
        try:
            import wandb

            self.directory.mkdir(parents=True, exist_ok=True)
            self._run = wandb.init(project=self.project, group=self.group, name=self.name, job_type="sweep",
                                   mode=self.mode, dir=str(self.directory), config=self.config,
                                   resume="allow", id=self.name.replace("/", "-")[:60], reinit="finish_previous",
                                   settings=wandb.Settings(silent=True, console="off", x_disable_stats=True))
        except Exception as e:  # never let logging kill a sweep
            print(f"[ups sweep] W&B logging disabled: {e}".split("\n")[0], file=sys.stderr)
            self._run = None

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self._run is None:
            return
        data = {f"{trial.trial_id}/{k}": result[k] for k in LOGGED
                if isinstance(result.get(k), (int, float)) and not isinstance(result.get(k), bool)}
        if data:
            self._run.log(data)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        r = trial.last_result or {}
        self._rows.append([trial.trial_id, str(trial.config), r.get("val_nrmse"), r.get("nrmse"),
                           r.get("nrmse_ttc"), r.get("training_iteration")])

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._run is None:
            return
        try:
            import wandb

            table = wandb.Table(columns=["trial_id", "config", "val_nrmse", "nrmse", "nrmse_ttc", "iterations"],
                                data=[[None if isinstance(v, float) and v != v else v for v in row] for row in self._rows])
            self._run.log({"trials": table})
            self._run.finish()
        except Exception as e:
            print(f"[ups sweep] W&B finish failed: {e}".split("\n")[0], file=sys.stderr)
        self._run = None
