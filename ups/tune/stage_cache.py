"""Reuse of the autoencoder stage across the trials of one sweep (``stage_cache=true``, the default).

Rounds that search only later-stage knobs (round A: the operator's optimizer and schedule; round C:
lr, grad clip, TTC) train the very same autoencoder in every trial: same data, same model, same
seed, same autoencoder settings.  The first trial to finish that stage stores its end-of-stage
checkpoint and the stage's per-epoch reports under this node's experiment scratch; a later trial
whose key matches replays the reports to Tune (so ``training_iteration``, ASHA's rungs and the
curves stay the same) and resumes from the checkpoint, bit for bit what it would have trained.

The key is everything the autoencoder stage can depend on: the whole trial config except the later
stages' optimisation settings (``stages.operator|diff_residual|consistency_distill``), ``ttc``,
``eval`` and ``run``, plus the data's content hash.  Anything else that differs (model shape, data,
seed, autoencoder settings, training.*) is a different key.  Stages with a wall-clock budget are never
cached (where they stop depends on the clock).  Entries live in ``$TMPDIR/ups-trials/<experiment>-<storage hash>/
_stage_cache`` and go with the experiment's scratch when the sweep ends.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

CACHED_STAGE = "autoencoder"
NOT_IN_KEY = ("ttc", "eval", "run")


def stage_cache_key(cfg: Mapping[str, Any], data_hash: str) -> str | None:
    """Content key of the autoencoder stage of ``cfg`` (a plain config dict); None if not cacheable."""
    stage = cfg["stages"][CACHED_STAGE]
    if int(stage["epochs"]) <= 0 or float(stage.get("time_budget_s") or 0) > 0:
        return None
    if float(cfg.get("training", {}).get("time_budget_s") or 0) > 0 or not data_hash:
        return None
    keyed = {k: v for k, v in cfg.items() if k not in NOT_IN_KEY}
    keyed["stages"] = {CACHED_STAGE: stage}
    blob = json.dumps({"config": keyed, "data_hash": data_hash}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


class StageCache:
    """``<root>/<key>/{checkpoint/, reports.json}``, written atomically (first writer wins)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def lookup(self, key: str) -> tuple[Path, list[dict[str, Any]]] | None:
        entry = self.root / key
        try:
            reports = json.loads((entry / "reports.json").read_text())
        except (OSError, ValueError):
            return None
        ckpt = entry / "checkpoint"
        return (ckpt, reports) if (ckpt / "checkpoint.pt").exists() and reports else None

    def store(self, key: str, checkpoint_dir: Path, reports: list[dict[str, Any]]) -> bool:
        """Copy the end-of-stage checkpoint and the stage's reports in; False if an entry exists."""
        entry = self.root / key
        if entry.exists():
            return False
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=self.root))
        try:
            shutil.copytree(checkpoint_dir, tmp / "checkpoint")
            (tmp / "reports.json").write_text(json.dumps(reports, default=str))
            os.rename(tmp, entry)  # atomic; fails if another trial stored the same key first
            return True
        except OSError:
            return False
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
