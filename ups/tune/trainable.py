"""The Tune trainable: one UPS training run per trial, reporting every epoch to Tune.

The driver loads the data once and hands it to every trial through the object store
(``tune.with_parameters``); the trial rebuilds its config from the base config + the sampled values
(+ derived values), resumes from Tune's checkpoint when the trial is restored, and forwards each
``ups.train.train`` report as ``tune.report(metrics, checkpoint=…)``.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Mapping

from ray import tune
from ray.tune import Checkpoint

from ups.config import config_from_dict, to_dict
from ups.train.checkpoint import CheckpointError
from ups.tune.gpu_share import no_cuda_for_share
from ups.tune.results import GPU_SHARE
from ups.tune.scratch import checkpoint_copy, scratch_root
from ups.tune.space import SearchSpace
from ups.tune.stage_cache import CACHED_STAGE, StageCache, stage_cache_key

NONFINITE_PENALTY = 1.0e3  # what the searcher sees instead of NaN/Inf (the gate stops such trials)
METRIC = "val_nrmse"  # ASHA's rungs, PBT, Tune's best trial: the plain rollout on the val split, every epoch
# what Optuna is told (every report; Ray's OptunaSearch reads it from each): METRIC, except that a trial's final
# report carries its val nRMSE with TTC when the sweep searches ttc.* keys, which act only through TTC
SEARCH_METRIC = "val_objective"
TTC_METRIC = "val_nrmse_ttc"


def searches_ttc(space: SearchSpace) -> bool:
    """Whether ``space`` searches a ``ttc.*`` key (whose effect the plain val rollout cannot see)."""
    return any(k.startswith("ttc.") for k in space.params)


def final_objective(space: SearchSpace) -> str:
    """What a finished trial of a sweep of ``space`` reports as ``SEARCH_METRIC``: ``TTC_METRIC`` when it searches
    ``ttc.*`` keys, else ``METRIC``."""
    return TTC_METRIC if searches_ttc(space) else METRIC


def with_objective(m: dict[str, Any], ttc: bool) -> dict[str, Any]:
    """``m`` (``clean_metrics``' output) with ``SEARCH_METRIC``: ``TTC_METRIC`` when ``ttc`` and the report has it
    (the final one), else ``METRIC``; a nonfinite TTC figure reads as ``NONFINITE_PENALTY``."""
    if ttc and TTC_METRIC in m:
        v = m[TTC_METRIC]
        m[SEARCH_METRIC] = v if isinstance(v, float) and math.isfinite(v) else NONFINITE_PENALTY
    elif METRIC in m:
        m[SEARCH_METRIC] = m[METRIC]
    return m


def clean_metrics(metrics: Mapping[str, Any], metric: str = METRIC) -> dict[str, Any]:
    """Scalars only (a list of numbers, e.g. per-sample nRMSE, becomes a compact JSON string; NaN → null);
    ``done`` → ``final`` (``done`` is reserved by Tune); NaN/Inf flagged for the gate."""
    out: dict[str, Any] = {}
    bad: list[str] = []
    for k, v in metrics.items():
        if hasattr(v, "item") and getattr(v, "ndim", 0) == 0:
            v = v.item()
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, numbers.Real):
            v = float(v) if not isinstance(v, int) else v
            if isinstance(v, float) and not math.isfinite(v):
                bad.append(k)
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, numbers.Real) for x in v):
            v = json.dumps([float(x) if math.isfinite(float(x)) else None for x in v], separators=(",", ":"))
        elif not isinstance(v, str) and v is not None:
            continue
        out["final" if k == "done" else k] = v
    if bad:
        out["nonfinite"] = 1
        out["nonfinite_keys"] = ",".join(bad)
        if metric in bad:
            out[f"{metric}_raw"] = str(out[metric])
            out[metric] = NONFINITE_PENALTY
    return out


def _resume_path(ckpt: Checkpoint | None) -> tuple[Path | None, Path | None]:
    """(file or folder to resume from, the temporary copy to delete afterwards)."""
    if ckpt is None:
        return None, None
    local = checkpoint_copy(ckpt)  # always a fresh temporary copy: ours to delete
    f = local / "checkpoint.pt"
    return (f if f.exists() else local), local


def diverged_text(e: Exception) -> str:
    """What a diverged trial reports: where and why, without the trainer's "last good state is saved in
    <scratch>", a folder the trial deletes when it ends (Tune's own checkpoints are what remains)."""
    return str(e).split(". Training stopped")[0].split(". Fix")[0][:300]


def stored_checkpoint_error(e: CheckpointError, local_copy: Path, stored: str) -> CheckpointError:
    """A restored checkpoint that does not load, named where it is stored (not the temporary copy, which is
    deleted) with a fix a sweep can act on."""
    what = str(e).split(" Fix:")[0].replace(str(local_copy), str(stored).rstrip("/"))
    return CheckpointError(
        f"{what} (the trial's last checkpoint in storage_path). Fix: this trial cannot continue from it; its "
        f"finished reports stay on the leaderboard. Restore that file from a backup and run resume=true again, "
        f"or let the trial end as errored (after max_failures retries) and sweep its configuration (params.json "
        f"next to the checkpoint) again")


def _takes(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` accepts keyword ``name`` (by name or ``**kwargs``)."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(q.name == name or q.kind is inspect.Parameter.VAR_KEYWORD for q in params)


def ups_trial(config: dict[str, Any], *, base: dict[str, Any], space: SearchSpace, label: str = "",
              data: Any = None, train_fn: Callable[..., Any] | None = None, stage_cache: bool = False,
              storage: str = "") -> None:
    """Function trainable (Ray 2.60 API: ``tune.report`` / ``tune.get_checkpoint``).

    ``stage_cache``: reuse the autoencoder stage of an earlier trial of this sweep on this node when its
    key matches (``ups.tune.stage_cache``).  ``storage``: the sweep's ``storage_path``, which names its
    scratch folder with the experiment (``ups.tune.scratch.scratch_root``)."""
    from ups.train.trainer import TrainingDiverged

    if train_fn is None:
        from ups.train.trainer import train as train_fn  # noqa: N813 (imported lazily: heavy)

    cfg, _ = space.materialize(config_from_dict(base, source="sweep base config"), config)
    ctx = tune.get_context()
    cfg.run.run_id = ctx.get_trial_id()
    cfg.run.label = label or cfg.run.label
    # Scratch for the trainer's own checkpoints / latent cache, outside the trial dir: the trial dir is
    # uploaded to storage_path (S3), which would duplicate them and race their rotation. Tune's
    # checkpoints (tune.report) carry everything a retried or resumed trial needs.
    scratch = scratch_root(ctx.get_experiment_name(), storage)
    run_dir = scratch / ctx.get_trial_id()
    run_dir.mkdir(parents=True, exist_ok=True)

    restored = tune.get_checkpoint()
    resume_from, resume_copy = _resume_path(restored)
    cache = StageCache(scratch / "_stage_cache")
    key = stage_cache_key(to_dict(cfg), str(getattr(data, "data_hash", "") or "")) \
        if stage_cache and resume_from is None else None
    stage_reports: list[dict[str, Any]] = []
    # the GPU share this trial runs on (a resume may change resources.gpu): what each report's seconds are priced on
    share = {GPU_SHARE: float(ctx.get_trial_resources().required_resources.get("GPU", 0.0))}
    if share[GPU_SHARE] > 0:  # before any work: a GPU share this process cannot use is refused, not trained on CPU
        import ray
        import torch

        why = no_cuda_for_share(share[GPU_SHARE], str(cfg.training.device), cuda_available=torch.cuda.is_available(),
                                where=f"node {ray.util.get_node_ip_address()} (torch {torch.__version__}, "
                                      f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', '')!r})")
        if why:
            raise RuntimeError(why)

    ttc_objective = searches_ttc(space)

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        m = with_objective(clean_metrics(metrics), ttc_objective)
        if key is not None and m.get("stage") == CACHED_STAGE:
            stage_reports.append(m)
            if checkpoint_dir is not None and int(m.get("epoch", 0)) == int(cfg.stages[CACHED_STAGE].epochs) \
                    and not m.get("budget_exhausted"):
                cache.store(key, Path(checkpoint_dir), stage_reports)
        if checkpoint_dir is not None:
            tune.report({**m, **share}, checkpoint=Checkpoint.from_directory(str(checkpoint_dir)))
        else:
            tune.report({**m, **share})

    try:
        hit = cache.lookup(key) if key else None
        if hit is not None:  # replay the stage's reports (same iterations for ASHA), resume at its end
            key = None
            ckpt_dir, replay = hit
            for i, m in enumerate(replay):
                last = i == len(replay) - 1
                tune.report({**with_objective(dict(m), ttc_objective), "stage_cached": 1, **share},
                            checkpoint=Checkpoint.from_directory(str(ckpt_dir)) if last else None)
            resume_from = ckpt_dir / "checkpoint.pt"
        # the val rollout with TTC (one more TTC rollout per trial) is evaluated only where the searcher is told it
        # (a custom train_fn with train's older signature, without val_ttc, is called as before)
        train_fn(cfg, report=report, run_dir=run_dir, resume_from=resume_from, data=data,
                 **({"val_ttc": True} if ttc_objective and _takes(train_fn, "val_ttc") else {}))
    except TrainingDiverged as e:  # NaN/Inf loss or gradient: a gate matter, not a crash
        tune.report({"nonfinite": 1, "nonfinite_keys": "train_loss", METRIC: NONFINITE_PENALTY,
                     SEARCH_METRIC: NONFINITE_PENALTY, "diverged": diverged_text(e), **share})
    except CheckpointError as e:
        if restored is None or resume_copy is None:
            raise
        raise stored_checkpoint_error(e, resume_copy, restored.path) from None
    finally:
        # Runs on completion, errors and scheduler stops alike (Tune stops a trial by raising SystemExit
        # out of tune.report). Every checkpoint the trial reported is already persisted to storage_path,
        # so the scratch folder (trainer checkpoints, latent cache) and the restored copy are disposable;
        # left behind they filled /tmp by ~5 MB (dim32) to GBs (dim512) per trial.
        shutil.rmtree(run_dir, ignore_errors=True)
        if resume_copy is not None:
            shutil.rmtree(resume_copy, ignore_errors=True)
