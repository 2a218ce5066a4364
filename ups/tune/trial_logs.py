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
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback


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
    """``progress.csv`` that keeps every report of a trial that is paused and started again."""


def trial_loggers() -> list[Any]:
    """The logger callbacks a sweep's ``RunConfig`` gets in place of Ray's JSON and CSV defaults."""
    return [KeepingJsonLogger(), KeepingCSVLogger()]
