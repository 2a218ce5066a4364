"""Typed settings of one sweep round and the parser of its command-line overrides.

A sweep command takes Hydra-style ``key=value`` overrides of two kinds:

* sweep keys (this schema): ``num_samples=8 max_concurrent=4 resources.gpu=0.25 profile=full
  storage_path=s3://bucket/sweeps resume=true scheduler.name=fifo searcher.seed=3 wandb.enabled=false``
* model/training keys of the UPS config, either plain (``stages.operator.epochs=3``, ``preset=dim16``)
  or prefixed with ``trial.`` (``trial.stages.operator.epochs=3``); they change the base config every
  trial starts from (the search space then overrides the swept keys).

Precedence: schema defaults < profile (``ups/conf/sweep/<profile>.yaml``) < the round script's
defaults < command-line overrides.  Unknown keys fail before anything runs, naming the nearest key.
No Ray import here.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf

from ups.config import (ConfigError, StagesCfg, _above, _at_least, all_keys, did_you_mean, invalid_value_error,
                        is_local_path, override_key)
from ups.yamlio import read_yaml

SWEEP_CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "sweep"
REPO_ROOT = Path(__file__).resolve().parents[2]
PROFILES = ("smoke", "full")


@dataclass
class ResourcesCfg:
    cpu: float = 1.0  # CPUs per trial
    gpu: float = 0.0  # GPUs per trial (0.25 → 4 trials share one GPU)


@dataclass
class SchedulerCfg:
    name: str = "asha"  # asha | fifo | pbt
    time_attr: str = "training_iteration"  # one iteration = one epoch of one stage
    max_t: int = 0  # 0: epochs of the longest trial the space can sample + 2 (room for the final eval report)
    grace_period: int = 0  # first rung; 0: autoencoder epochs + a third of the operator's (tuner_build.auto_grace_period)
    reduction_factor: float = 2.0
    brackets: int = 1  # asha only (ASHAScheduler(brackets=)): bracket k starts at rung k; ≤ the rung count
    rungs_from: str = "start"  # asha only: where the rung ladder counts from: start (Ray's rule, rungs at
    # grace_period × reduction_factor^k) | operator (the end of the autoencoder stage, which val_nrmse cannot
    # rank and the stage cache makes nearly free: autoencoder epochs + grace_period × reduction_factor^k, grace
    # 0 → 1 operator epoch; docs/SWEEPS.md "ASHA")
    perturbation_interval: int = 2  # pbt only


@dataclass
class SearcherCfg:
    name: str = "optuna"  # optuna (TPE) | random | grid
    seed: int = 0
    n_startup_trials: int = 10  # TPE start-up trials before its model (Optuna's default; fewer let TPE lock
    # onto the categorical values its start-up happened to draw: docs/SWEEPS.md)
    start_at_reference: bool = True  # evaluate the space's reference point first (Tune points_to_evaluate)
    initial_design: str = "lhs"  # TPE's start-up points: lhs (Latin hypercube: every knob's range and every
    # choice covered evenly) | random (Optuna's own independent draws)
    sampler: str = "tpe"  # Optuna's model after the start-up: tpe (TPESampler) | gp (GPSampler: a Gaussian
    # process with a noise term; replayed no better than TPE on the CPU profile: docs/SEARCH_EFFICIENCY.md)
    multivariate: bool = False  # TPE only: one joint density over all knobs (Optuna's multivariate TPE) instead
    # of one per knob, so interactions (the good lr depends on the batch size) are modelled
    constant_liar: bool = False  # TPE only: trials still running count as bad, so concurrent suggestions spread
    warm_start: str = ""  # optuna only: tell TPE an earlier sweep's finished trials first: latest | <experiment>
    # (same storage_path, same base config; ups.tune.warm_start)
    stopped: str = "complete"  # optuna only: how a trial stopped before its final evaluation (ASHA, a gate) is
    # told: complete (its last figure, as a finished trial's: Ray's OptunaSearch) | pruned (Optuna's PRUNED
    # state: its figures per iteration, ranked after every finished trial, by how far it got, then its last figure;
    # sampler=gp reads finished trials only, so there a pruned trial is not seen at all)


@dataclass
class TrainGateCfg:
    """In-flight physics gates (our Tune Stopper): stop a trial as soon as one trips."""

    enabled: bool = True
    reference: str = "linear"  # baseline row whose figures scale the limits: persistence | linear | fno
    conservation_multiple: float = 10.0  # stop if val conservation gap > max(multiple × reference, floor)
    conservation_floor: float = 1.0  # gaps are relative to the field's RMS (ups.metrics)
    bc_multiple: float = 10.0
    bc_floor: float = 1.0
    skip_stages: list[str] = field(default_factory=lambda: ["autoencoder"])  # operator untrained there
    grace_epochs: int = 1  # physics gates apply from this epoch of a stage on (NaN/Inf: always)
    divergence_factor: float = 20.0  # stop if train_loss > factor × best train_loss of the same stage
    min_iterations: int = 1  # divergence is checked from this iteration on


@dataclass
class SmallEvalGateCfg:
    """The playbook's small-eval gates, relative to the round's baseline (its reference trial)."""

    nrmse_margin: float = 0.01  # must beat baseline nRMSE by at least this
    conservation_ratio: float = 1.0
    bc_ratio: float = 1.0
    ece_ratio: float = 1.25
    abs_tol: float = 1.0e-6  # figures below this count as equal (numerical noise)
    # baseline row used when the reference trial has no eval: the FNO, a learned surrogate on the same
    # data (the linear map conserves mass and periodicity exactly by construction, so no learned model
    # could pass 1.0× its conservation/BC figures and the gate would say nothing)
    fallback: str = "fno"


@dataclass
class PromotionCfg:
    top_k: int = 1  # gate-passing trials re-evaluated on the full test split with TTC
    force: bool = False  # promote the top_k even if they fail the gates (playbook: aggressive round)
    full_eval: bool = True
    seeds: int = 0  # retrain each promoted config with this many more training seeds; champion on the seed mean
    beat_baselines: bool = True  # crown only a full-eval that beats every baseline (persistence/linear/FNO) on its data


@dataclass
class WandbCfg:
    enabled: bool = True
    project: str = "universal-simulator"
    group: str = ""  # default: sota-sweep-<round with dashes> (sota-sweep-round-a); aggressive: sota-aggressive (playbook)
    mode: str = "auto"  # auto (WANDB_MODE if set, else online iff WANDB_API_KEY is set) | offline | online | disabled
    dir: str = ""  # W&B's dir (run folders in <dir>/wandb/); default: $WANDB_DIR, else <storage_path> (local) or .
    init_timeout_s: float = 20.0  # online wandb.init gives up after this long and logs offline instead


@dataclass
class SweepConfig:
    round: str = "round_a"
    profile: str = "smoke"
    space: str = ""  # search-space YAML; default search_spaces/<round>.yaml
    name: str = ""  # experiment name; default <round>-<UTC timestamp>; resume picks the latest
    num_samples: int = 4
    max_concurrent: int = 0  # 0: adapt to the cluster (the trials its nodes hold by CPUs and GPUs)
    pending_trials: int = 1  # with max_concurrent=0 on a cluster and TPE: trials kept pending beyond what the
    # cluster holds now; the autoscaler adds nodes for all of them at once (docs/CLUSTER.md)
    resources: ResourcesCfg = field(default_factory=ResourcesCfg)
    storage_path: str = "runs/sweeps"  # local folder or s3://bucket/prefix
    resume: bool = False
    time_budget_s: float = 0.0  # wall-clock cap of the whole sweep (0: none); running trials are stopped
    compute_budget_s: float = 0.0  # cap on Σ trial-seconds (0: none), e.g. equal-compute comparisons
    leaderboard: str = "reports/leaderboard.csv"
    champion: str = "reports/champion.json"  # round_c reads it; promotion writes it
    report_dir: str = "reports"
    write_report: bool = True  # HTML report (ups.reports.html) at the end
    live_study: bool = True  # with write_report: the report's Optuna study file holds the sweep while it runs
    # (optuna-dashboard sqlite:///<report_dir>/<round>/optuna.db; ups.tune.live_study); not for PBT
    cost_per_gpu_hour: float = 2.0  # USD, for est_cost
    baselines: bool = True  # persistence / linear / FNO rows on the same data
    fno_budget_s: float = 20.0
    # > 0: the FNO baseline trains exactly this many optimiser steps (bit-for-bit reproducible; fno_budget_s is then
    # not used); 0: it trains fno_budget_s seconds, as many steps as the machine's load allows
    fno_steps: int = 0
    ray_address: str = ""  # default: $RAY_ADDRESS; empty → start a local Ray instance
    ray_num_cpus: int = 0  # local instance only; 0 = all cores
    connect_timeout_s: float = 5.0
    # a joined cluster whose GCS takes no connection this long ends the driver with its unfinished trials recorded
    # (ups.tune.stop_signals.watch_cluster; Ray aborts the driver after 60 s); 0: not watched
    cluster_lost_s: float = 30.0
    checkpoint_keep: int = 1
    stage_cache: bool = True  # trials with identical autoencoder-stage inputs reuse it (ups.tune.stage_cache)
    max_failures: int = 2  # retries of a trial whose worker died (spot loss), from its last checkpoint; -1: ∞
    fail_on_trial_error: bool = True  # exit status 1 when a trial failed past max_failures (all else is done)
    verbose: int = 1  # Tune console verbosity 0..3
    print_top: int = 15  # trials printed at the end (the baselines are printed besides)
    scheduler: SchedulerCfg = field(default_factory=SchedulerCfg)
    searcher: SearcherCfg = field(default_factory=SearcherCfg)
    gates: TrainGateCfg = field(default_factory=TrainGateCfg)
    small_eval: SmallEvalGateCfg = field(default_factory=SmallEvalGateCfg)
    promotion: PromotionCfg = field(default_factory=PromotionCfg)
    wandb: WandbCfg = field(default_factory=WandbCfg)
    trial: list[str] = field(default_factory=list)  # UPS overrides for the base config


def sweep_keys() -> list[str]:
    """Every dotted leaf key of the sweep schema (a fresh list; the schema's keys are read once)."""
    return list(_sweep_keys())


@functools.lru_cache(maxsize=1)
def _sweep_keys() -> tuple[str, ...]:
    # OmegaConf.structured(SweepConfig) costs ~20 ms, and sweep_keys is asked for each override layer of every
    # load_sweep_config (several per prepare): once is enough, the schema is a dataclass
    return tuple(all_keys(OmegaConf.structured(SweepConfig)))


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def split_overrides(overrides: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Separate sweep-key overrides (parsed values) from UPS trial overrides (raw strings)."""
    skeys = set(sweep_keys())
    ups_keys = set(all_keys())
    sweep: dict[str, Any] = {}
    trial: list[str] = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"overrides: '{item}' is not key=value. Example: num_samples=8 or "
                              f"stages.operator.optimizer.lr=3e-4")
        key, value = override_key(item), item.partition("=")[2]
        under = key.removeprefix("trial.") if key.startswith("trial.") else None
        if under in skeys - ups_keys - {"trial"}:  # the UPS config answered "unknown config key 'num_samples'.
            # Did you mean 'data.num_samples_max'?" (3 trajectories)
            raise ConfigError(f"overrides: '{key}': {under} is a sweep key, not a model/training key "
                              f"(trial. prefixes only those). Fix: {under}={value}")
        if under is not None:
            trial.append(f"{under}={value}")
        elif key == "trial":  # trial=[a=1,b=2]: its items are trial overrides in this place (the last value wins,
            # and a key the space sweeps is refused as for a plain override)
            v = _parse_value(value)
            trial += [str(x) for x in (v if isinstance(v, list) else [] if v in (None, "") else [v])]
        elif key in skeys:
            sweep[key] = _parse_value(value)
        elif key in ups_keys:
            trial.append(f"{key}={value}")
        else:
            cands = sorted(skeys - {"trial"}) + sorted(ups_keys)
            hint = did_you_mean(key, cands)
            raise ConfigError(
                f"overrides: unknown key '{key}'.{hint} Sweep keys: {', '.join(sorted(skeys - {'trial'}))}. "
                f"Model/training keys are the UPS config keys (e.g. stages.operator.epochs), optionally "
                f"prefixed with 'trial.'.")
    return sweep, trial


def dedupe_overrides(overrides: Sequence[str]) -> list[str]:
    """Later layers win: keep only the last ``key=value`` for each key (Hydra refuses duplicates)."""
    last = {override_key(o): i for i, o in enumerate(overrides)}
    return [o for i, o in enumerate(overrides) if last[override_key(o)] == i]


def _merge_layer(cfg: DictConfig, layer: dict[str, Any], source: str) -> DictConfig:
    """Merge a dotted-or-nested mapping of sweep keys onto cfg; 'trial' lists are appended."""
    skeys = set(sweep_keys())
    flat: dict[str, Any] = {}

    def walk(d: dict[str, Any], prefix: str = "") -> None:
        for k, v in d.items():
            full = f"{prefix}{k}"
            if isinstance(v, dict) and full != "trial":
                walk(v, full + ".")
            else:
                flat[full] = v

    walk(layer)
    for key, value in flat.items():
        if key == "trial":
            extra = [value] if isinstance(value, str) else list(value or [])
            cfg.trial = list(cfg.trial) + [str(x) for x in extra]
            continue
        if key not in skeys:
            raise ConfigError(f"{source}: unknown sweep key '{key}'.{did_you_mean(key, sorted(skeys))}")
        try:
            OmegaConf.update(cfg, key, value, merge=False)
        except Exception as e:
            raise invalid_value_error(source, key, e, cfg, value) from None
    return cfg


def load_profile(profile: str) -> dict[str, Any]:
    path = SWEEP_CONF_DIR / f"{profile}.yaml"
    if not path.exists():
        avail = ", ".join(sorted(p.stem for p in SWEEP_CONF_DIR.glob("*.yaml")))
        raise ConfigError(f"overrides: unknown profile '{profile}' ({path} missing). Available: {avail}")
    data = read_yaml(path, ConfigError, "sweep profile") or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sweep keys")
    return data


def load_sweep_config(round_name: str, overrides: Sequence[str] = (),
                      defaults: dict[str, Any] | None = None) -> SweepConfig:
    """Compose a round's sweep settings: schema < profile < round defaults < overrides.

    Round defaults may be profile-specific: ``{"smoke": {...}, "full": {...}, ...common keys}``.
    """
    sweep_over, trial_over = split_overrides(overrides)
    defaults = dict(defaults or {})
    for source, given in (("overrides", sweep_over.get("round")), (f"sweeps/{round_name}.py defaults",
                                                                  defaults.get("round"))):
        if given is not None and str(given) != round_name:  # it named the sweep, its rows, report and W&B group
            # after another round while it ran this round's space
            raise ConfigError(f"{source}: round={given}, but this sweep is round {round_name} (its script's): "
                              f"round= would file this sweep's folder, leaderboard "
                              f"rows, report and W&B group under {given}. Fix: leave round= out; to run {given}, run "
                              f"its script (ups sweep {given})")
    per_profile = {p: defaults.pop(p, {}) or {} for p in PROFILES}
    profile = str(sweep_over.get("profile", defaults.get("profile", "smoke")))
    cfg = OmegaConf.structured(SweepConfig)
    cfg.round = round_name
    _merge_layer(cfg, load_profile(profile), str(SWEEP_CONF_DIR / f"{profile}.yaml"))
    _merge_layer(cfg, defaults, f"sweeps/{round_name}.py defaults")
    _merge_layer(cfg, per_profile.get(profile, {}), f"sweeps/{round_name}.py {profile} defaults")
    _merge_layer(cfg, sweep_over, "overrides")
    if "fno_budget_s" in sweep_over and "fno_steps" not in sweep_over:
        cfg.fno_steps = 0  # a budget on the command line is what trains the FNO (the profile's fno_steps ignored it)
    if sweep_over.get("scheduler.name") == "pbt" and "searcher.name" not in sweep_over and cfg.searcher.name == "optuna":
        # PBT draws its population at random and explores by perturbing it; the round's default TPE cannot
        # drive it (the sweep's header line says searcher=random). An explicit searcher.name=optuna is refused.
        cfg.searcher.name = "random"
    threads = []
    cpu = float(cfg.resources.cpu)
    if "resources.cpu" in sweep_over and not any(override_key(o) == "training.num_threads" for o in trial_over) \
            and math.isfinite(cpu) and cpu > 0:  # else refused below, naming the key
        # the CPUs a trial reserves are the threads it trains on (the profiles pin 1 or 2: resources.cpu=2 reserved
        # two cores and trained on one), unless the command sets training.num_threads itself
        threads = [f"training.num_threads={max(1, int(cpu))}"]
    cfg.trial = dedupe_overrides(list(cfg.trial) + threads + trial_over)
    cfg.profile = profile
    out: SweepConfig = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    validate_sweep_config(out)
    return out


def validate_sweep_config(s: SweepConfig) -> None:
    def bad(key: str, why: str, fix: str) -> ConfigError:
        return ConfigError(f"sweep config: '{key}' {why}. Fix: {fix}")

    for key, v in flatten_sweep(s).items():  # resources.gpu=inf crashed in int(); nan passed every comparison
        if isinstance(v, float) and not math.isfinite(v):
            raise bad(key, f"= {v} is not a finite number", f"{key}={flatten_sweep(SweepConfig()).get(key)} (the "
                      f"schema's default; the round's own is in --help)")
    if s.num_samples < 1:
        raise bad("num_samples", f"= {s.num_samples} must be ≥ 1", "num_samples=4")
    if s.max_concurrent < 0:
        raise bad("max_concurrent", "must be ≥ 0", "max_concurrent=0 adapts to the cluster")
    if s.pending_trials < 1:
        raise bad("pending_trials", f"= {s.pending_trials} must be ≥ 1",
                  "pending_trials=1 adds one worker at a time; max_workers × trials per worker adds them at once")
    if s.resources.cpu < 0 or s.resources.gpu < 0 or (s.resources.cpu == 0 and s.resources.gpu == 0):
        raise bad("resources", f"cpu={s.resources.cpu} gpu={s.resources.gpu} is invalid (each must be ≥ 0, and "
                  f"not both 0)", "resources.cpu=1 (and resources.gpu=0.25 on GPUs, 0 on a CPU machine)")
    if s.resources.gpu > 1 and s.resources.gpu != int(s.resources.gpu):
        raise bad("resources.gpu", f"= {s.resources.gpu}: fractions only below 1", "use 0.25, 0.5, 1, 2 …")
    if s.scheduler.name not in ("asha", "fifo", "pbt"):
        raise bad("scheduler.name", f"= '{s.scheduler.name}' is unknown", "use asha, fifo or pbt")
    if s.scheduler.grace_period < 0 or s.scheduler.reduction_factor <= 1:
        raise bad("scheduler", "grace_period must be ≥ 0 (0: automatic) and reduction_factor > 1",
                  "scheduler.grace_period=0 scheduler.reduction_factor=3")
    if s.scheduler.max_t and s.scheduler.max_t < s.scheduler.grace_period:
        raise bad("scheduler.max_t", "is below grace_period", "raise max_t or use 0 (automatic)")
    if s.searcher.name not in ("optuna", "random", "grid"):
        raise bad("searcher.name", f"= '{s.searcher.name}' is unknown", "use optuna, random or grid")
    if s.searcher.initial_design not in ("lhs", "random"):
        raise bad("searcher.initial_design", f"= '{s.searcher.initial_design}' is unknown", "use lhs or random")
    if s.searcher.stopped not in ("complete", "pruned"):
        raise bad("searcher.stopped", f"= '{s.searcher.stopped}' is unknown", "use complete or pruned")
    if s.searcher.sampler not in ("tpe", "gp"):
        raise bad("searcher.sampler", f"= '{s.searcher.sampler}' is unknown", "use tpe or gp")
    if s.searcher.sampler == "gp" and (s.searcher.multivariate or s.searcher.constant_liar):
        raise bad("searcher.multivariate/constant_liar", "are TPE options; GPSampler has neither",
                  "use searcher.sampler=tpe, or leave both false")
    if s.scheduler.name == "pbt" and s.searcher.name == "optuna":
        raise bad("scheduler.name", "= pbt cannot be combined with searcher.name=optuna",
                  "use searcher.name=random with PBT")
    if s.wandb.mode not in ("auto", "offline", "online", "disabled"):
        raise bad("wandb.mode", f"= '{s.wandb.mode}' is unknown", "use auto, offline, online or disabled")
    if s.gates.reference not in ("persistence", "linear", "fno"):
        raise bad("gates.reference", f"= '{s.gates.reference}' is unknown", "use persistence, linear or fno")
    if s.max_failures < -1:
        raise bad("max_failures", f"= {s.max_failures} must be ≥ -1", "max_failures=2 (-1 retries forever)")
    if s.promotion.top_k < 0:
        raise bad("promotion.top_k", "must be ≥ 0", "promotion.top_k=1")
    flat = flatten_sweep(s)
    for key, ok, need, fix in RANGES:
        if not ok(flat[key]):
            raise bad(key, f"= {flat[key]!r}: {need}", fix)
    stages = [f.name for f in fields(StagesCfg)]
    if unknown := sorted(set(s.gates.skip_stages) - set(stages)):
        raise bad("gates.skip_stages", f"names unknown stage(s) {', '.join(unknown)}",
                  f"list some of {', '.join(stages)}, e.g. gates.skip_stages=[autoencoder]")


# Settings that one scheduler or searcher reads and the others ignore: key → (the selecting key, its users).
# (searcher.warm_start with another searcher is refused instead: ups.tune.warm_start.)
READ_ONLY_BY = {
    **{f"scheduler.{k}": ("scheduler.name", ("asha",))
       for k in ("grace_period", "reduction_factor", "max_t", "brackets", "rungs_from")},
    "scheduler.perturbation_interval": ("scheduler.name", ("pbt",)),
    **{f"searcher.{k}": ("searcher.name", ("optuna",))
       for k in ("n_startup_trials", "initial_design", "sampler", "multivariate", "constant_liar", "stopped")},
}


def unread_overrides(s: SweepConfig, overrides: Sequence[str]) -> list[str]:
    """Notes on the sweep overrides given on the command line that this sweep's scheduler or searcher does not
    read (``scheduler.rungs_from=operator`` with ``scheduler.name=pbt``).  Accepted, not refused: one command
    line may serve several searches (the search-efficiency benchmark passes one ``--set`` to its FIFO and its
    ASHA runs); the sweep prints these so nobody believes they took effect."""
    given = {override_key(o): o.partition("=")[2] for o in overrides}  # values as typed
    flat = flatten_sweep(s)
    out = []
    for key, (selector, readers) in READ_ONLY_BY.items():
        if key in given and flat[selector] not in readers:
            out.append(f"{key}={given[key]} has no effect: only {selector}={'/'.join(readers)} reads it, and this "
                       f"sweep runs {selector}={flat[selector]}")
    return out


def flatten_sweep(s: SweepConfig) -> dict[str, Any]:
    """A sweep config's settings by dotted key (``scheduler.max_t``: 0)."""
    out: dict[str, Any] = {}
    for f in fields(s):
        v = getattr(s, f.name)
        if is_dataclass(v):
            out.update({f"{f.name}.{k}": x for k, x in flatten_sweep(v).items()})  # type: ignore[arg-type]
        else:
            out[f.name] = v
    return out


# What scheduler.time_attr may count: metrics every report of a trial carries and that only grow. Tune adds
# training_iteration and time_total_s; the trainer (ups.train.trainer._epoch_metrics / _final_report) adds
# global_epoch and wall_clock ("epoch" restarts with each stage, so a scheduler cannot count it).
TIME_ATTRS = ("training_iteration", "time_total_s", "global_epoch", "wall_clock")

def _not_blank(v: Any) -> bool:
    """A path setting that names something: an empty one resolves to the working directory."""
    return bool(str(v).strip())


_PUBLISHED = "as a local file (with storage_path=s3://… the sweep also publishes a copy next to its Tune state)"


# (key, test, what it needs, the fix): numeric settings a typo could make nonsensical, refused before Ray
RANGES: tuple[tuple[str, Any, str, str], ...] = (
    ("time_budget_s", _at_least(0), "must be ≥ 0 (0: no wall-clock cap)", "time_budget_s=0, or the cap in seconds"),
    ("compute_budget_s", _at_least(0), "must be ≥ 0 (0: no compute cap)", "compute_budget_s=0, or Σ trial-seconds"),
    ("checkpoint_keep", _at_least(1), "must be ≥ 1 (a resume needs a checkpoint)", "checkpoint_keep=1"),
    ("cost_per_gpu_hour", _at_least(0), "must be ≥ 0 (USD per GPU-hour, for est_cost)", "cost_per_gpu_hour=2.0"),
    ("fno_budget_s", _above(0), "must be > 0 (seconds of FNO training for the baseline row)", "fno_budget_s=20"),
    ("fno_steps", _at_least(0), "must be ≥ 0 (optimiser steps of the FNO baseline; 0: fno_budget_s seconds)",
     "fno_steps=100, or fno_steps=0 for fno_budget_s"),
    ("ray_num_cpus", _at_least(0), "must be ≥ 0 (0: all cores)", "ray_num_cpus=0"),
    ("connect_timeout_s", _above(0), "must be > 0", "connect_timeout_s=5"),
    ("cluster_lost_s", _at_least(0), "must be ≥ 0 (seconds without the cluster's GCS before the driver ends; 0: not "
     "watched)", "cluster_lost_s=30"),
    ("verbose", lambda v: 0 <= v <= 3, "must be 0, 1, 2 or 3 (Tune's console verbosity)", "verbose=1"),
    ("print_top", _at_least(0), "must be ≥ 0 (trial rows printed with the baselines)", "print_top=15"),
    ("scheduler.max_t", _at_least(0), "must be ≥ 0 (0: the longest trial's epochs + 2)", "scheduler.max_t=0"),
    ("scheduler.brackets", _at_least(1), "must be ≥ 1 (ASHA's brackets; 1: one bracket, as before the key existed)",
     "scheduler.brackets=1"),
    ("scheduler.rungs_from", lambda v: v in ("start", "operator"), "is unknown (where ASHA's rung ladder counts "
     "from)", "scheduler.rungs_from=start (Ray's rule), or scheduler.rungs_from=operator (after the autoencoder stage)"),
    ("scheduler.perturbation_interval", _at_least(1), "must be ≥ 1 (PBT perturbs every this many iterations)",
     "scheduler.perturbation_interval=2"),
    ("searcher.n_startup_trials", _at_least(0), "must be ≥ 0", "searcher.n_startup_trials=10 (Optuna's default)"),
    ("wandb.init_timeout_s", _above(0), "must be > 0 (seconds wandb.init may take before the offline fallback)",
     "wandb.init_timeout_s=20"),
    ("searcher.seed", _at_least(0), "must be ≥ 0 (Optuna and NumPy take no negative seed)", "searcher.seed=0"),
    ("scheduler.time_attr", lambda v: v in TIME_ATTRS,
     f"is not a metric every trial reports, so the scheduler would never stop a trial (one of "
     f"{', '.join(TIME_ATTRS)})", "scheduler.time_attr=training_iteration (one iteration per epoch)"),
    ("gates.conservation_multiple", _above(0), "must be > 0", "gates.conservation_multiple=10"),
    ("gates.conservation_floor", _at_least(0), "must be ≥ 0", "gates.conservation_floor=1.0"),
    ("gates.bc_multiple", _above(0), "must be > 0", "gates.bc_multiple=10"),
    ("gates.bc_floor", _at_least(0), "must be ≥ 0", "gates.bc_floor=1.0"),
    ("gates.grace_epochs", _at_least(0), "must be ≥ 0", "gates.grace_epochs=1"),
    ("gates.divergence_factor", _above(1), "must be > 1 (stop when train_loss exceeds this × its best)",
     "gates.divergence_factor=20"),
    ("gates.min_iterations", _at_least(0), "must be ≥ 0", "gates.min_iterations=1"),
    ("small_eval.nrmse_margin", _at_least(0), "must be ≥ 0 (how much a trial must beat the baseline's nRMSE by; "
     "a negative margin would pass trials worse than the baseline)",
     "small_eval.nrmse_margin=0.01 (the playbook's), 0 for 'no worse', or promotion.force=true to promote anyway"),
    ("small_eval.conservation_ratio", _above(0), "must be > 0 (× the baseline's figure)",
     "small_eval.conservation_ratio=1.0"),
    ("small_eval.bc_ratio", _above(0), "must be > 0 (× the baseline's figure)", "small_eval.bc_ratio=1.0"),
    ("small_eval.ece_ratio", _above(0), "must be > 0 (× the baseline's figure)", "small_eval.ece_ratio=1.25"),
    ("small_eval.abs_tol", _at_least(0), "must be ≥ 0", "small_eval.abs_tol=1e-6"),
    ("small_eval.fallback", lambda v: v in ("persistence", "linear", "fno"), "is not a baseline",
     "use persistence, linear or fno"),
    # an empty path resolves to the working directory: storage_path= wrote the sweep's state files loose there
    ("storage_path", _not_blank, "is empty (a local folder or s3://bucket/prefix)",
     "storage_path=runs/sweeps (the default), or storage_path=s3://bucket/sweeps"),
    ("leaderboard", _not_blank, "is empty (the CSV every sweep adds its rows to)",
     "leaderboard=reports/leaderboard.csv (the default)"),
    ("champion", _not_blank, "is empty (the champion record promotion writes)",
     "champion=reports/champion.json (the default)"),
    ("report_dir", _not_blank, "is empty (the folder the round's HTML report goes under)",
     "report_dir=reports (the default)"),
    ("leaderboard", is_local_path, f"is a URI: the sweep reads and writes its leaderboard {_PUBLISHED}",
     "leaderboard=reports/leaderboard.csv (the default); to add to a published one, copy it here first (aws s3 cp)"),
    ("champion", is_local_path, f"is a URI: promotion reads and writes the champion record {_PUBLISHED}",
     "champion=reports/champion.json (the default); to start from a published record, copy it here first "
     "(aws s3 cp) and pass its path"),
    ("report_dir", is_local_path, f"is a URI: the HTML report is written {_PUBLISHED}", "report_dir=reports (the default)"),
    ("wandb.dir", is_local_path, "is a URI: W&B writes a local folder (an S3 sweep publishes an offline run's folder "
     "next to its Tune state)",
     "leave wandb.dir empty (run folders in <storage_path>/wandb/, or ./wandb/ with S3 storage)"),
    ("space", is_local_path, "is a URI: a search space is read from a local YAML file",
     "space=search_spaces/<name>.yaml, or a local copy of the file"),
    # one folder under storage_path, and the prefix of every run_id: name=../x wrote the sweep outside it
    ("name", lambda v: v == "" or (re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,99}", v) is not None),
     "must be one folder name under storage_path (letters, digits, . _ + -; no / or .., at most 100 characters)",
     "name=round_a-final, or no name= for <round>-<UTC time>"),
)


def default_space_path(round_name: str) -> Path:
    """The search space a round sweeps without ``space=``: ``search_spaces/<round>.yaml``."""
    return REPO_ROOT / "search_spaces" / f"{round_name}.yaml"


def space_path(scfg: SweepConfig, round_name: str) -> Path:
    """The search-space file a round sweeps: ``space=…`` when given, else its own ``search_spaces/<round>.yaml``."""
    return resolve_path(scfg.space) if scfg.space else default_space_path(round_name)


def resolve_path(p: str) -> Path:
    """Absolute local path (Tune may chdir into trial folders): relative paths are from the cwd."""
    return Path(p).expanduser().resolve()
