"""How many trials a sweep runs at a time.

On the local Ray instance a sweep starts, the machine's CPUs/GPUs are all there is: the limit is fixed
at launch (``max_concurrent`` or what the resources hold).  A remote cluster (``ray_address`` /
``RAY_ADDRESS``) grows and shrinks: ``cluster.yaml`` starts with a head that runs no trials and adds GPU
workers while trials are pending.  A limit read at launch there would be 1 for the whole sweep (no GPU
yet), and the autoscaler, seeing one pending trial, would never add a second worker.  So on a remote
cluster with ``max_concurrent=0`` the limit follows the cluster: as many trials as its alive nodes hold
now, plus ``pending_trials`` pending (default 1), whose resource demand the autoscaler sees and adds
nodes for (up to its ``max_workers``).  One pending trial brings the workers up one after another; as
many as the autoscaler may add (``max_workers`` × trials per worker) bring them up at once; the price,
for the whole sweep, is that a model-based searcher suggests each trial that many results before it runs.
"""
from __future__ import annotations

import math
import time
from typing import Any, Iterable, Mapping

from ray.tune.search import ConcurrencyLimiter, Searcher

ADAPTIVE = 0  # a max_concurrent of 0: follow the cluster


def node_slots(node: Mapping[str, float], per_trial: Mapping[str, float]) -> int:
    """Trials of ``per_trial`` resources (e.g. ``{"CPU": 2, "GPU": 0.25}``) that one node's totals hold."""
    need = {k: float(v) for k, v in per_trial.items() if float(v) > 0}
    if not need:
        return 0
    return min(math.floor(float(node.get(k, 0.0)) / v + 1e-9) for k, v in need.items())


def cluster_slots(per_trial: Mapping[str, float], nodes: Iterable[Mapping[str, Any]] | None = None) -> int:
    """Trials the cluster's alive nodes hold at once, node by node (a trial never spans nodes)."""
    if nodes is None:
        import ray

        nodes = ray.nodes()
    return sum(node_slots(n.get("Resources", {}), per_trial) for n in nodes if n.get("Alive"))


class ClusterLimiter(ConcurrencyLimiter):
    """A ``ConcurrencyLimiter`` whose limit is re-read from the cluster (at most every ``refresh_s``)
    before each suggestion: ``cluster_slots(per_trial) + pending``.  The extra trials wait as pending, so
    an autoscaler adds nodes for them; a lost (spot) node lowers the limit.  Tune (2.60) keeps at most the
    limit it reads at launch pending (``tune_controller._get_max_pending_trials``), on an empty cluster
    ``pending``.  Pickled with the experiment state like Tune's own limiter, so a resumed sweep keeps
    following the cluster."""

    def __init__(self, searcher: Searcher, per_trial: Mapping[str, float], pending: int = 1,
                 refresh_s: float = 5.0):
        self.per_trial = dict(per_trial)
        self.pending = pending
        self.refresh_s = refresh_s
        self.checked_at = time.monotonic()
        super().__init__(searcher, max_concurrent=cluster_slots(self.per_trial) + pending)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        now = time.monotonic()
        if not 0 <= now - self.checked_at < self.refresh_s:  # due, or a clock of another process (resumed)
            self.checked_at = now
            self.max_concurrent = cluster_slots(self.per_trial) + getattr(self, "pending", 1)  # older states: 1
        return super().suggest(trial_id)
