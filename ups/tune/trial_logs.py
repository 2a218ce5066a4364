"""Tune's per-trial ``result.json`` / ``progress.csv`` loggers, kept from overwriting the driver's own files.

Ray's ``JsonLoggerCallback`` and ``CSVLoggerCallback`` (2.60) copy a trial's file from ``storage_path`` over
the driver's staging copy every time the trial starts.  That is right for a resumed driver, whose staging
folder is new and empty, but wrong within one run: a trial that is paused and started again (a PBT
population larger than the slots takes turns; ``pause``/``unpause``) gets back the copy last synced to
storage, and every report written since that sync is lost.  A smoke round A under PBT kept 21-32 of its
trials' 43-59 reports in ``result.json`` (2026-12-03), which the report's learning curves and a resumed
sweep's replay (``ups.tune.restore.reported_histories``) read.

These subclasses restore from storage only when the driver has no file of its own for the trial: the
driver's copy is the one storage is synced from, so it is never older.  Passing them in ``RunConfig``
callbacks replaces Ray's defaults (Tune adds a default logger only when none of its class is given).

Ray's ``TBXLoggerCallback`` opens a new TensorBoard events file at every start of a trial: a trial of that
PBT smoke round had 51 files, whose overlapping steps TensorBoard drew as one zig-zagging line.
``KeepingTBXLogger`` keeps writing one file per trial (per driver); when a trial goes on from an earlier
checkpoint (a PBT exploit, a resume), it marks the restart as TensorBoard's own restarts are marked (a
``SessionLog.START`` at that step, what tensorboardX's ``purge_step`` writes), so TensorBoard drops the
steps the trial trains again and draws its line as it now is.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback
from ray.tune.result import EXPR_PROGRESS_FILE, TIMESTEPS_TOTAL, TRAINING_ITERATION


class _KeepDriverCopy:
    """Mixin over a Ray ``LoggerCallback``: skip the restore from storage when the staging file exists."""

    def _restore_from_remote(self, file_name: str, trial: Any) -> None:
        local = Path(trial.local_path, file_name)
        if local.is_file() and local.stat().st_size > 0:
            return  # this driver wrote it: at least as new as the copy on storage
        super()._restore_from_remote(file_name, trial)  # type: ignore[misc]


class KeepingJsonLogger(_KeepDriverCopy, JsonLoggerCallback):
    """``result.json`` that keeps every report of a trial that is paused and started again."""


class KeepingCSVLogger(_KeepDriverCopy, CSVLoggerCallback):
    """``progress.csv`` that keeps every report of a trial that is paused and started again, in the columns of
    its header.  Ray's logger appends to an existing file with the columns of the first report after the start
    (a resume, a PBT turn), whose keys differ (a restored trial reports ``gpu_share``, the final report the eval's
    keys): its rows no longer lined up with the header, and ``pd.read_csv`` stopped ("Expected 31 fields in line
    44, saw 81").  Keys the header lacks are left out of the CSV; ``result.json`` has every key."""

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        if trial not in self._trial_files:
            self._setup_trial(trial)
        if self._trial_csv.get(trial) is None and self._trial_continue.get(trial):
            path = Path(trial.local_path, EXPR_PROGRESS_FILE)
            with path.open(newline="") as f:
                header = next(csv.reader(f), None)
            with path.open("rb") as f:  # a line a stopped driver left without its end: the next row starts anew
                f.seek(-1, 2)
                torn = f.read(1) not in (b"\n", b"\r")
            if torn:
                self._trial_files[trial].write("\r\n")
            if header:
                self._trial_csv[trial] = csv.DictWriter(self._trial_files[trial], header)
        super().log_trial_result(iteration, trial, result)


class KeepingTBXLogger(TBXLoggerCallback):
    """TensorBoard events: one file per trial, a restart from an earlier checkpoint marked for TensorBoard."""

    def __init__(self) -> None:
        super().__init__()
        self._last_step: dict[Any, int] = {}

    def log_trial_start(self, trial: Any) -> None:
        if trial in self._trial_writer:
            return  # started again (paused, taking turns, exploited): its file stays open
        super().log_trial_start(trial)
        restored = (trial.last_result or {}).get(TRAINING_ITERATION)  # a resumed trial's last report
        if restored:
            self._last_step[trial] = int(restored)

    def log_trial_result(self, iteration: int, trial: Any, result: dict) -> None:
        step = result.get(TIMESTEPS_TOTAL) or result.get(TRAINING_ITERATION)
        if step is not None:
            last = self._last_step.get(trial)
            if last is not None and step <= last and trial in self._trial_writer:
                self._mark_restart(trial, int(step))
            self._last_step[trial] = int(step)
        super().log_trial_result(iteration, trial, result)

    def _mark_restart(self, trial: Any, step: int) -> None:
        from tensorboardX.proto.event_pb2 import Event, SessionLog

        self._trial_writer[trial]._get_file_writer().add_event(
            Event(step=step, session_log=SessionLog(status=SessionLog.START)))

    def log_trial_end(self, trial: Any, failed: bool = False) -> None:
        self._last_step.pop(trial, None)
        super().log_trial_end(trial, failed)


def trial_loggers() -> list[Any]:
    """The logger callbacks a sweep's ``RunConfig`` gets in place of Ray's JSON, CSV and TensorBoard defaults."""
    return [KeepingJsonLogger(), KeepingCSVLogger(), KeepingTBXLogger()]
