"""Trial scratch folders on each node: where they are and their removal once a sweep's trials have ended.

Standard library only (Ray is imported when ``remove_scratch`` runs): the removal task that
``remove_scratch`` sends to every node unpickles ``remove_local_scratch`` by importing this module in a
Ray worker, and a module that imported torch and Ray Tune (``ups.tune.trainable``) cost that worker ~2 s
of imports, paid at the end of every sweep (and of every promotion retrain).
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any


def scratch_root(experiment: str, storage: str = "") -> Path:
    """This node's scratch folder for an experiment's trials (trainer checkpoints, latent caches).  ``storage``:
    the sweep's ``storage_path``, hashed into the name: experiment names are ``<round>-<timestamp>`` to the
    second, so two sweeps of a round started in the same second under two storage paths (two users of one node,
    two pytest workers) had one folder, and the first to end removed the other's scratch under its running
    trials."""
    tag = f"-{hashlib.sha1(storage.encode()).hexdigest()[:8]}" if storage else ""
    return Path(tempfile.gettempdir()) / "ups-trials" / f"{experiment}{tag}"


def remove_scratch(experiment: str, storage: str = "", timeout_s: float = 60.0, here: bool = True) -> None:
    """Remove an experiment's scratch (``scratch_root(experiment, storage)``) on this node (``here``) and,
    through a zero-CPU task pinned to each, on every live node of the Ray cluster (the autoencoder stage cache
    and whatever a killed trial left there), once all its trials have ended."""
    if here:
        shutil.rmtree(scratch_root(experiment, storage), ignore_errors=True)
    import ray

    if not ray.is_initialized():
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    rm = ray.remote(num_cpus=0, max_retries=0)(remove_local_scratch)
    refs = [rm.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(experiment, storage) for n in ray.nodes() if n.get("Alive")]
    try:
        ray.get(refs, timeout=timeout_s)
    except (ray.exceptions.RayError, TimeoutError):
        pass  # a node that went away took its scratch with it; a hung one keeps a few MB of /tmp


def remove_local_scratch(experiment: str, storage: str = "") -> bool:
    """Remove an experiment's scratch on this node only (where Ray is gone, or run as the task above); True once
    it is gone."""
    path = scratch_root(experiment, storage)
    shutil.rmtree(path, ignore_errors=True)
    return not path.exists()


def checkpoint_copy(checkpoint: Any) -> Path:
    """A fresh local copy of a Tune checkpoint in a new ``$TMPDIR/checkpoint_tmp_*`` folder, the caller's to delete.
    A download that fails (the checkpoint gone from storage, a storage error) removes the folder: Ray's own
    ``to_directory()`` leaves it behind, empty."""
    local = Path(tempfile.mkdtemp(prefix="checkpoint_tmp_"))
    try:
        checkpoint.to_directory(str(local))
    except BaseException:
        shutil.rmtree(local, ignore_errors=True)
        raise
    return local
