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

from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter, Searcher

ADAPTIVE = 0  # a max_concurrent of 0: follow the cluster


def most_at_once(spans: Iterable[tuple[float, float]]) -> int:
    """The most (start, end) spans open at one time (start inclusive, end exclusive): how many trials of a sweep
    ran together, from their run intervals (tests, ``benchmarks/gpu_packing.py``)."""
    spans = list(spans)
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans], key=lambda t: (t[0], t[1]))
    most = now = 0
    for _, d in events:
        now += d
        most = max(most, now)
    return most


def node_slots(node: Mapping[str, float], per_trial: Mapping[str, float]) -> int:
    """Trials of ``per_trial`` resources (e.g. ``{"CPU": 2, "GPU": 0.25}``) that one node's totals hold."""
    need = {k: float(v) for k, v in per_trial.items() if float(v) > 0}
    if not need:
        return 0

    def fits(k: str, v: float) -> int:
        have = float(node.get(k, 0.0))
        if k == "GPU" and v < 1:  # Ray packs a GPU share within one GPU: 0.4 → 2 per GPU, not 5 on two GPUs
            whole = math.floor(have + 1e-9)
            return math.floor(1 / v + 1e-9) * whole + math.floor(max(have - whole, 0.0) / v + 1e-9)
        return math.floor(have / v + 1e-9)

    return min(fits(k, v) for k, v in need.items())


def cluster_slots(per_trial: Mapping[str, float], nodes: Iterable[Mapping[str, Any]] | None = None) -> int:
    """Trials the cluster's alive nodes hold at once, node by node (a trial never spans nodes)."""
    if nodes is None:
        import ray

        nodes = ray.nodes()
    return sum(node_slots(n.get("Resources", {}), per_trial) for n in nodes if n.get("Alive"))


class ClusterLimiter(ConcurrencyLimiter):
    """The sweep's ``ConcurrencyLimiter`` for a model-based searcher: a ``fixed`` limit (``max_concurrent=N``),
    or (``fixed=0``) one re-read from the cluster (at most every ``refresh_s``) before each suggestion:
    ``cluster_slots(per_trial) + pending``.  The extra trials wait as pending, so an autoscaler adds nodes
    for them; a lost (spot) node lowers the limit.  Tune (2.60) keeps at most the limit it reads at launch
    pending (``tune_controller._get_max_pending_trials``), on an empty cluster ``pending``.

    On a resume Tune brings back the limiter pickled when the sweep started and then its saved state
    (``set_state``); the settings (``fixed``, ``per_trial``, ``pending``) are the ones ``configure`` gave it
    last, i.e. the resuming command's (``ups.tune.restore``), never the saved ones."""

    SETTINGS = ("fixed", "per_trial", "pending")

    def __init__(self, searcher: Searcher, per_trial: Mapping[str, float], pending: int = 1,
                 refresh_s: float = 5.0, fixed: int = 0):
        self.per_trial = dict(per_trial)
        self.pending = pending
        self.fixed = fixed
        self.refresh_s = refresh_s
        self.checked_at = time.monotonic()
        super().__init__(searcher, max_concurrent=self.limit())

    def limit(self) -> int:
        """The limit now: ``fixed``, or what the cluster's alive nodes hold plus ``pending``."""
        fixed = getattr(self, "fixed", 0)  # limiters pickled before fixed limits existed follow the cluster
        return fixed if fixed > 0 else cluster_slots(self.per_trial) + getattr(self, "pending", 1)

    def configure(self, per_trial: Mapping[str, float], pending: int, fixed: int) -> None:
        """New settings (a resuming command's); the limit follows at once."""
        self.per_trial, self.pending, self.fixed = dict(per_trial), pending, fixed
        self.checked_at = time.monotonic()
        self.max_concurrent = self.limit()

    def set_state(self, state: dict[str, Any]) -> None:
        """The saved live trials and results; the settings stay this limiter's own."""
        kept = {k: self.__dict__[k] for k in self.SETTINGS if k in self.__dict__}
        super().set_state(state)
        self.__dict__.update(kept)
        self.max_concurrent = self.limit()

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        now = time.monotonic()
        if not 0 <= now - self.checked_at < self.refresh_s:  # due, or a clock of another process (resumed)
            self.checked_at = now
            self.max_concurrent = self.limit()
        return super().suggest(trial_id)


class VariantLimiter(BasicVariantGenerator):
    """Ray's random / grid generator whose ``max_concurrent`` survives a restore: Tune's ``set_state``
    brings back the saved one, this keeps the value last set (a resuming command's)."""

    def set_state(self, state: dict[str, Any]) -> None:
        limit = self.max_concurrent
        super().set_state(state)
        self.max_concurrent = limit


def set_limit(search_alg: Any, per_trial: Mapping[str, float], pending: int, max_conc: int) -> str | None:
    """Give a restored search algorithm the resuming command's concurrency (``max_conc``: a number, or
    ``ADAPTIVE``).  None when applied; otherwise why not (a sweep started before the limit could change)."""
    if isinstance(search_alg, ClusterLimiter):
        search_alg.configure(per_trial, pending, 0 if max_conc == ADAPTIVE else max_conc)
        return None
    if isinstance(search_alg, VariantLimiter):
        search_alg.max_concurrent = 0 if max_conc == ADAPTIVE else max_conc
        return None
    now = getattr(search_alg, "max_concurrent", None)
    return (f"this sweep was started before a resume could change its concurrency: it stays at "
            f"{now or 'unlimited'} at a time")
