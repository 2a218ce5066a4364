"""The Tune objects of a sweep: the searcher (Optuna TPE, random, grid, warm start, behind the concurrency
limiters), the scheduler (ASHA with its rung ladder, FIFO, PBT), the stoppers (physics gates, compute budget),
the ``Tuner`` and its ``RunConfig``, and the trainable with its data."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable

from ups.config import to_dict
from ups.tune.concurrency import ADAPTIVE, ClusterLimiter, VariantLimiter
from ups.tune.gates import ComputeBudgetStopper, GateLimits, PhysicsGateStopper
from ups.tune.ray_session import per_trial_resources
from ups.tune.restore import ResumableASHA, ResumableStopper
from ups.tune.retention import CheckpointRetention
from ups.tune.space import SearchSpace
from ups.tune.sweep_config import SweepConfig
from ups.tune.trainable import METRIC, ups_trial
from ups.tune.trial_logs import trial_loggers

if TYPE_CHECKING:  # prepare imports this module's rung arithmetic
    from ups.tune.prepare import Prepared


# the scheduler.time_attr values that count epochs (the rest count seconds): automatic rungs, max_t and PBT's
# burn-in are in epochs
EPOCH_TIME_ATTRS = ("training_iteration", "global_epoch")


def auto_grace_period(cfg: Any) -> int:
    """ASHA's first rung for ``scheduler.grace_period=0``: the autoencoder epochs plus a third of the
    operator's. Measured on the CPU profile (benchmarks/search_efficiency.py, ``rung_spearman``): the rank
    of a trial at operator epoch 10 of 30 predicts its final rank (Spearman 0.81-0.90), at epoch 6 it
    does not (0.58-0.73)."""
    return int(cfg.stages.autoencoder.epochs) + max(1, math.ceil(int(cfg.stages.operator.epochs) / 3))


def stage_epochs(cfg: Any, space: SearchSpace | None = None) -> dict[str, int]:
    """Each stage's epochs in ``cfg``; with ``space``, in the longest trial it can sample (searched or derived
    ``stages.<stage>.epochs`` at their largest)."""
    if space is None:
        return {name: int(st.epochs) for name, st in cfg.stages.items()}
    return {name: math.ceil(space.largest(f"stages.{name}.epochs", cfg)) for name in cfg.stages}


def total_epochs(cfg: Any, space: SearchSpace | None = None) -> int:
    """Epochs over all stages (``stage_epochs``)."""
    return sum(stage_epochs(cfg, space).values())


def startup_only_note(s: SweepConfig, trials: int, at_a_time: int, warm: int = 0) -> str | None:
    """A note when Optuna's model (TPE or GP) can suggest no trial of this sweep: it samples from its model only
    once ``searcher.n_startup_trials`` trials have finished (``warm`` earlier ones count), and the k-th trial is
    suggested when about k - ``at_a_time`` have; so trials ≥ start-up + at a time are the first it models.
    None when some trial is modelled, or for another searcher."""
    if s.searcher.name != "optuna" or trials <= 0:
        return None
    startup = max(0, int(s.searcher.n_startup_trials) - warm)
    first_modelled = startup + max(1, at_a_time)  # 1-based: this trial is suggested after `startup` have finished
    if trials >= first_modelled:
        return None
    sampler = "GP" if s.searcher.sampler == "gp" else "TPE"
    return (f"searcher: {sampler} models no trial of this sweep: each of its {trials} trials is suggested before "
            f"searcher.n_startup_trials={s.searcher.n_startup_trials} have finished"
            + (f" ({warm} warm-start trials counted)" if warm else "")
            + f" ({max(1, at_a_time)} at a time), so every trial is a start-up point ("
            + ("the reference, " if s.searcher.start_at_reference else "")
            + ("Latin-hypercube points, then Optuna's random draws" if s.searcher.initial_design == "lhs"
               else "Optuna's random draws")
            + f"). For a model-guided search: num_samples={first_modelled + 2} or more, or a lower "
              "searcher.n_startup_trials")


def build_searcher(s: SweepConfig, point: dict[str, Any], max_conc: int, space: SearchSpace | None = None,
                   warm: list[tuple[dict[str, Any], float]] | None = None) -> tuple[Any, int | None]:
    """Tune search algorithm for ``searcher.*``. With optuna (``sampler``: TPE or GP) and
    ``initial_design=lhs`` its start-up trials (the reference point first, if queued) are a Latin
    hypercube over ``space`` instead of Optuna's independent random draws.  ``max_conc=ADAPTIVE``:
    Optuna behind a limiter that follows the cluster (``ClusterLimiter``, which also holds a fixed
    ``max_conc``, so that a resume can change either); random / grid search
    unlimited (Tune keeps many trials pending, so an autoscaler adds the nodes for them at once).  ``warm``:
    an earlier sweep's finished trials (``ups.tune.warm_start``), told to Optuna as completed trials; they count
    towards the start-up, so the Latin hypercube shrinks by as many (none when they are enough)."""
    first = [point] if s.searcher.start_at_reference else None
    if s.searcher.name == "optuna":
        import optuna

        startup = s.searcher.n_startup_trials
        if s.searcher.initial_design == "lhs" and space is not None:
            first = (first or []) + space.latin_hypercube(max(0, startup - len(first or []) - len(warm or [])),
                                                          s.searcher.seed)
        if s.searcher.sampler == "gp":
            sampler = optuna.samplers.GPSampler(seed=s.searcher.seed, n_startup_trials=startup)
        else:
            sampler = optuna.samplers.TPESampler(seed=s.searcher.seed, n_startup_trials=startup,
                                                 multivariate=s.searcher.multivariate,
                                                 constant_liar=s.searcher.constant_liar)
        from ups.tune.warm_start import WarmOptunaSearch

        optuna_search = WarmOptunaSearch(points_to_evaluate=first or None, sampler=sampler, warm=warm or (),
                                         stopped=s.searcher.stopped)
        return ClusterLimiter(optuna_search, per_trial_resources(s), s.pending_trials,
                              fixed=0 if max_conc == ADAPTIVE else max_conc), None
    if s.searcher.name == "random":
        return VariantLimiter(points_to_evaluate=first, random_state=s.searcher.seed, max_concurrent=max_conc), None
    return VariantLimiter(random_state=s.searcher.seed, max_concurrent=max_conc), None


def build_scheduler(s: SweepConfig, base: Any, space: SearchSpace) -> Any:
    from ups.tune.pbt import StagedPBT
    from ups.tune.restore import ResumableFIFO

    sc = s.scheduler
    if sc.name == "asha":
        max_t, grace, _ = asha_rungs(s, base, space)
        offset = rung_offset(s, base)
        ladders = [rung_ladder(grace, sc.reduction_factor, max_t, offset, k) for k in range(sc.brackets)] \
            if offset else None
        return ResumableASHA(time_attr=sc.time_attr, max_t=max_t, grace_period=grace,
                             reduction_factor=sc.reduction_factor, brackets=sc.brackets, ladders=ladders,
                             reference=space.reference_point(base) if s.searcher.start_at_reference else None)
    if sc.name == "pbt":
        mutations = space.pbt_mutations()
        burn_in, window = pbt_bounds(s, base, space)
        return StagedPBT(window=window, time_attr=sc.time_attr,
                         burn_in_period=burn_in if sc.time_attr in EPOCH_TIME_ATTRS else 0,
                         perturbation_interval=sc.perturbation_interval, hyperparam_mutations=mutations,
                         custom_explore_fn=space.clamp,
                         reference=space.reference_point(base) if s.searcher.start_at_reference else None)
    return ResumableFIFO()


def pbt_bounds(s: SweepConfig, base: Any, space: SearchSpace) -> tuple[int, int]:
    """PBT's burn-in and window in training iterations: no exploit before the perturbed knobs' first stage has
    trained one ``perturbation_interval`` (before, every trial scores alike: round A had 87 exploits in the
    autoencoder stage, one trial cloning the others' iteration 4 again and again), none from the end of their
    last stage on (``ups.tune.pbt``).  The burn-in applies to the time attributes that count epochs only."""
    from ups.tune.pbt import pbt_start, pbt_window

    keys = list(space.pbt_mutations())
    return pbt_start(base, keys) + s.scheduler.perturbation_interval, pbt_window(base, keys)


def asha_rungs(s: SweepConfig, base: Any, space: SearchSpace) -> tuple[int, int, list[int]]:
    """ASHA's max_t, grace period and rung milestones (in ``scheduler.time_attr`` units) for this sweep.  With
    ``scheduler.rungs_from=operator`` the grace period counts from the end of the autoencoder stage
    (``rung_offset``) and the milestones are that offset plus Ray's ladder."""
    sc = s.scheduler
    max_t = sc.max_t or total_epochs(base, space) + 2  # +2: the final eval report must not be cut off
    offset = rung_offset(s, base)
    grace = min(sc.grace_period or automatic_grace(s, base), max_t)
    return max_t, grace, [int(m) for m in rung_ladder(grace, sc.reduction_factor, max_t, offset)]


def automatic_grace(s: SweepConfig, base: Any) -> int:
    """``scheduler.grace_period=0``: one operator epoch after the autoencoder with ``rungs_from=operator``, else
    ``auto_grace_period`` (counted from iteration 0)."""
    return 1 if s.scheduler.rungs_from == "operator" else auto_grace_period(base)


def rung_offset(s: SweepConfig, base: Any) -> int:
    """Iterations before ASHA's rung ladder starts: the autoencoder epochs with ``scheduler.rungs_from=operator``."""
    return int(base.stages.autoencoder.epochs) if s.scheduler.rungs_from == "operator" else 0


def rung_ladder(grace: float, rf: float, max_t: float, offset: int = 0, start: int = 0) -> list[float]:
    """ASHA's rung milestones ``offset + grace × rf^k`` for k ≥ ``start`` (bracket ``start`` of Ray's ASHA starts
    that many rungs later), up to ``max_t``; with offset 0 Ray's own (``_Bracket``)."""
    out, k = [], start
    while offset + grace * rf ** k <= max_t:
        out.append(offset + grace * rf ** k)
        k += 1
    return out


def build_tuner(p: Prepared, name: str, trainable: Callable[..., Any], limits: GateLimits, max_conc: int,
                callbacks: list[Any], warm: list[tuple[dict[str, Any], float]] | None = None) -> Any:
    from ray import tune
    from ray.tune import TuneConfig

    s = p.scfg
    search_alg, _ = build_searcher(s, p.space.reference_point(p.base), max_conc, p.space, warm=warm)
    num_samples = s.num_samples
    if s.searcher.name == "grid":  # one pass: further passes are a training.seed axis (grid_seed_passes)
        num_samples = 1
    tune_cfg = TuneConfig(metric=METRIC, mode="min", search_alg=search_alg,
                          scheduler=build_scheduler(s, p.base, p.space), num_samples=num_samples,
                          reuse_actors=True, trial_dirname_creator=trial_dirname,
                          time_budget_s=s.time_budget_s or None)
    return tune.Tuner(trainable, param_space=p.space.tune_space(s.searcher.name), tune_config=tune_cfg,
                      run_config=run_config(p, name, build_stopper(s, limits), callbacks))


def run_config(p: Prepared, name: str, stop: Any, callbacks: list[Any]) -> Any:
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig

    s = p.scfg
    # Ray keeps every checkpoint; CheckpointRetention deletes them only where a resume can never need them
    # (Ray's num_to_keep deletes before the experiment state naming them is synced: ups.tune.retention)
    # keyed by the sweep's name, not its path: a sweep resumed from a moved folder still gets this command's stopper
    stop = ResumableStopper(stop, name) if stop is not None else None  # ups.tune.restore
    return RunConfig(name=name, storage_path=p.storage_path, storage_filesystem=p.filesystem, stop=stop,
                     callbacks=[*callbacks, CheckpointRetention(s.checkpoint_keep), *trial_loggers()],
                     checkpoint_config=CheckpointConfig(num_to_keep=None),
                     failure_config=FailureConfig(max_failures=s.max_failures), verbose=s.verbose)


def build_stopper(s: SweepConfig, limits: GateLimits, spent_s: float = 0.0) -> Any:
    """The gates and the compute budget (``spent_s`` of it used before: a resumed sweep)."""
    from ray.tune.stopper import CombinedStopper

    stoppers: list[Any] = [PhysicsGateStopper(limits)] if s.gates.enabled else []
    if s.compute_budget_s > 0:
        stoppers.append(ComputeBudgetStopper(s.compute_budget_s, spent_s))
    if not stoppers:
        return None
    return stoppers[0] if len(stoppers) == 1 else CombinedStopper(*stoppers)


def trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def make_trainable(p: Prepared, data: Any, trainable: Callable[..., Any] | None) -> Any:
    from ray import tune

    s = p.scfg
    if trainable is None:
        trainable = tune.with_parameters(ups_trial, base=to_dict(p.base), space=p.space, label=s.round, data=data,
                                         stage_cache=s.stage_cache, storage=p.storage_path)
    res = {"cpu": s.resources.cpu, "gpu": s.resources.gpu}
    return tune.with_resources(trainable, res)
