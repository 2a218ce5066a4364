"""Checkpoint retention that a killed driver can always resume from (``checkpoint_keep``).

Ray's own ``CheckpointConfig(num_to_keep=K)`` deletes a trial's older checkpoint the moment a newer
one registers, while the experiment state that ``Tuner.restore`` reads is copied to ``storage_path``
later (forced K checkpoints after the last copy, otherwise every ≥ 10 s), in a background thread. A driver killed in between leaves a state that
points at a checkpoint that no longer exists: the resumed trial fails with "Could not recover from
checkpoint as it does not exist on storage anymore" and is lost (``benchmarks/checkpoint_retention.py``:
with K=2 and trials checkpointing every ~20 ms, the state on storage named a deleted checkpoint at
14-35 of ~180 controller steps; ``tests/test_checkpoint_retention.py`` checks every step).

So Ray keeps every checkpoint (``num_to_keep=None``) and this driver-side callback deletes them
instead, under one rule per trial: a checkpoint goes only when it is older than the one the state on
storage names for that trial *and* is not among the trial's ``keep`` newest (and no trial, on storage or
live, restores from it: PBT hands one trial's checkpoint to another). The state on storage
only ever moves forward (each sync copies a newer save), so a checkpoint older than the one it names
now is never named again. Where the state on storage cannot be read (not written yet, caught
mid-copy) or does not know the trial, nothing of that trial is deleted.
"""
from __future__ import annotations

import re
import time
from collections import defaultdict
from typing import Any, Iterable

from ray.tune import Callback, Checkpoint

from ups.tune.tune_state import storage_state_checkpoints

CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d+)$")


def deletable(registered: list[str], named: str | None, keep: int) -> list[str]:
    """The checkpoints (oldest first) that may go: before ``named`` and outside the ``keep`` newest."""
    if named is None or named not in registered:
        return []
    return registered[: min(registered.index(named), max(0, len(registered) - keep))]


class CheckpointRetention(Callback):
    """Keep each trial's ``keep`` newest checkpoints, never one the state on storage still names.

    Use with ``CheckpointConfig(num_to_keep=None)``. Prunes at most every ``period_s`` during the run
    and once more at the end (after Tune's final state sync), when it also removes checkpoints an
    interrupted earlier run of the experiment left behind."""

    def __init__(self, keep: int, period_s: float = 5.0) -> None:
        self.keep = max(1, int(keep))
        self.period_s = float(period_s)
        self._registered: dict[str, list[Checkpoint]] = defaultdict(list)
        self._last_prune = 0.0
        self._pruned = False  # this run deleted a checkpoint

    def __getstate__(self) -> dict[str, Any]:  # pickled with the Tuner: the registry is per run
        return {"keep": self.keep, "period_s": self.period_s}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["keep"], state["period_s"])

    def on_checkpoint(self, iteration: int, trials: list[Any], trial: Any, checkpoint: Checkpoint, **info: Any) -> None:
        self._registered[trial.trial_id].append(checkpoint)

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if now - self._last_prune < self.period_s:
            return
        if any(len(c) > self.keep for c in self._registered.values()):
            self._last_prune = now
            self.prune(trials)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        named = _named(trials)  # the final state (Tune synced it before this call): read once for both passes
        # Tune saves no state after this call, and stopped saving a finished trial's entry when it ended: the state
        # on storage may list what went, now or in a prune after that trial's last save
        if self.prune(trials, named) + self.prune_leftovers(trials, named) or self._pruned:
            restate(trials)

    def prune(self, trials: Iterable[Any], named: dict[str, str | None] | None = None) -> int:
        """Delete what the rule allows among this run's registered checkpoints; returns how many.

        ``named``: the state on storage as ``storage_state_checkpoints`` reads it (read here if not given)."""
        by_id = {t.trial_id: t for t in trials}
        named = named if named is not None else _named(by_id.values())
        if not by_id or named is None:
            return 0
        protected = _in_use(named, by_id.values())
        n = 0
        for trial_id, ckpts in self._registered.items():
            gone = set(deletable([c.path for c in ckpts], named.get(trial_id), self.keep)) - protected
            if not gone:
                continue
            for c in ckpts:
                if c.path in gone:
                    _delete(c.filesystem, c.path)
                    n += 1
                    self._pruned = True
            self._registered[trial_id] = [c for c in ckpts if c.path not in gone]
            if trial_id in by_id:
                _forget(by_id[trial_id], gone)
        return n

    def prune_leftovers(self, trials: Iterable[Any], named: dict[str, str | None] | None = None) -> int:
        """At the end: checkpoint folders of any run of the experiment older than the one the final state
        names, outside the ``keep`` highest indices (a killed run's, which this run never registered)."""
        trials = list(trials)
        named = named if named is not None else _named(trials)
        if not trials or named is None:
            return 0
        fs = trials[0].storage.storage_filesystem
        protected = _in_use(named, trials)
        n = 0
        for t in trials:
            ref = named.get(t.trial_id)
            ref_idx = _index(ref) if ref else None
            if ref_idx is None:
                continue
            trial_dir = t.storage.trial_fs_path
            found = sorted((i, f"{trial_dir}/{name}") for name in _list(fs, trial_dir)
                           if (i := _index(name)) is not None)
            newest = {p for _, p in found[-self.keep:]}
            gone = {p for i, p in found if i < ref_idx and p not in newest} - protected
            for p in gone:
                _delete(fs, p)
            _forget(t, gone)
            n += len(gone)
        return n


def restate(trials: Iterable[Any]) -> bool:
    """Rewrite the newest experiment state on storage with the trials' checkpoint lists as they are now.

    The end's pruning comes after Tune's last state sync, so that state still listed the checkpoints it deleted
    (and a resumed run's, those its killed run left): ``ExperimentAnalysis(path).get_best_checkpoint`` and
    ``Result.best_checkpoints`` of the folder then named folders that do not exist.  Only each trial's run
    metadata changes (Ray's own serialisation of it); the file is written beside and moved over the old one, so
    a reader sees the old state or the new, never a part.  False when there is no readable state to rewrite."""
    from ray.tune.utils.serialization import TuneFunctionEncoder

    from ups.tune.tune_state import newest_state

    trials = list(trials)
    if not trials:
        return False
    fs = trials[0].storage.storage_filesystem
    path, state = newest_state(trials[0].storage.experiment_fs_path, fs)
    if path is None or state is None:
        return False
    import json

    by_id = {t.trial_id: t for t in trials}
    data = []
    for trial_json, runtime_json in state["trial_data"]:
        t = by_id.get(json.loads(trial_json).get("trial_id"))
        data.append([trial_json, t.run_metadata.get_json_state() if t is not None else runtime_json])
    tmp = f"{path.rsplit('/', 1)[0]}/.ups-restate.tmp"
    try:
        with fs.open_output_stream(tmp) as f:
            f.write(json.dumps({**state, "trial_data": data}, cls=TuneFunctionEncoder).encode())
        fs.move(tmp, path)
    except OSError:
        _delete(fs, tmp)
        return False
    return True


def _named(trials: Iterable[Any]) -> dict[str, str | None] | None:
    """The latest checkpoint per trial as the experiment state on storage names it (None: none readable)."""
    first = next(iter(trials), None)
    if first is None:
        return None
    return storage_state_checkpoints(first.storage.experiment_fs_path, first.storage.storage_filesystem)


def _in_use(named: dict[str, str | None], trials: Iterable[Any]) -> set[str]:
    """Checkpoints some trial restores from: named by the state on storage, or a live trial's latest (PBT
    hands one trial's checkpoint to another)."""
    live = {t.checkpoint.path for t in trials if getattr(t, "checkpoint", None) is not None}
    return {p for p in named.values() if p} | live


def _index(path: str) -> int | None:
    m = CHECKPOINT_DIR.match(path.rstrip("/").rsplit("/", 1)[-1])
    return int(m.group(1)) if m else None


def _list(fs: Any, path: str) -> list[str]:
    from ray.train._internal.storage import _list_at_fs_path

    try:
        return [p.rstrip("/") for p in _list_at_fs_path(fs, path)]
    except (OSError, FileNotFoundError):
        return []


def _delete(fs: Any, path: str) -> None:
    from ray.train._internal.storage import _delete_fs_path

    try:
        _delete_fs_path(fs=fs, fs_path=path)
    except (OSError, FileNotFoundError):
        pass  # already gone


def _forget(trial: Any, paths: set[str]) -> None:
    """Drop deleted checkpoints from Tune's own list of the trial's checkpoints (Result.best_checkpoints,
    and the experiment state, which would otherwise grow by one entry per epoch)."""
    manager = getattr(trial.run_metadata, "checkpoint_manager", None)
    if manager is None or not paths:
        return
    manager._checkpoint_results = [r for r in manager._checkpoint_results if r.checkpoint.path not in paths]
    trial.run_metadata.invalidate_cache()


class RetentionAudit(Callback):
    """Diagnostic (tests, ``benchmarks/checkpoint_retention.py``): after every controller step, checks that
    each checkpoint the state on storage names exists, and tracks the most checkpoint folders a trial held."""

    def __init__(self) -> None:
        self.steps = self.named = self.most_held = 0
        self.missing: list[str] = []

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        from ray.train._internal.storage import _exists_at_fs_path

        if not trials:
            return
        self.steps += 1
        fs = trials[0].storage.storage_filesystem
        for path in filter(None, (_named(trials) or {}).values()):
            self.named += 1
            if not _exists_at_fs_path(fs, path):
                self.missing.append(path)
        held = [sum(_index(n) is not None for n in _list(fs, t.storage.trial_fs_path)) for t in trials]
        self.most_held = max(self.most_held, *held)
