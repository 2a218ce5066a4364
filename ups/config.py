"""Typed configuration schema for UPS and its Hydra-style loader.

Every knob the sweeps turn lives here as a dotted key (``stages.operator.optimizer.lr``,
``ttc.candidates``, ``latent.dim`` …).  ``load_config`` composes ``ups/conf/train.yaml`` with a
model preset (``preset=dim64``) and Hydra overrides; an unknown or mistyped key fails at load time
with the key, the nearest valid key, and the fix.  This module does not import Ray.
"""
from __future__ import annotations

import copy
import difflib
import functools
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Sequence

from omegaconf import II, DictConfig, ListConfig, OmegaConf

CONF_DIR = Path(__file__).parent / "conf"
PRESET_DIMS: tuple[int, ...] = (8, 16, 24, 32, 48, 64, 128, 256, 512)


class ConfigError(ValueError):
    """A configuration the user wrote is invalid; the message names the key and the fix."""


# --------------------------------------------------------------------------------------- schema
@dataclass
class DataCfg:
    """Where the Burgers data comes from and how the PDEBench protocol slices it."""

    path: str | None = None  # explicit HDF5 (ours or PDEBench's); None → generate/cached
    nu: float = 0.01  # PDEBench ν (diffusion coefficient is ν/π)
    n: int = 2000  # trajectories to generate
    resolution: int = 1024  # saved grid points
    seed: int = 2022
    t_final: float = 2.0
    frames: int = 201
    cache_dir: str = "~/.cache/ups/data"
    # PDEBench protocol (config_Bgs.yaml)
    reduced_resolution: int = 4
    reduced_resolution_t: int = 5
    initial_step: int = 10
    test_ratio: float = 0.1
    val_ratio: float = 0.1  # taken from the end of the training part
    num_samples_max: int = -1


@dataclass
class LatentCfg:
    dim: int = 32
    tokens: int = 16


@dataclass
class EncoderCfg:
    hidden_dim: int = II("operator.hidden_dim")
    context_frames: int = 1  # most recent frames the encoder sees


@dataclass
class OperatorCfg:
    input_dim: int = II("latent.dim")
    hidden_dim: int = 64
    depths: list[int] = field(default_factory=lambda: [1, 1, 1])
    heads: int = 4
    group_size: int = 8
    drop_path: float = 0.0  # stochastic depth rate
    mlp_ratio: float = 2.0


@dataclass
class DecoderCfg:
    frequencies: list[float] = field(default_factory=lambda: [1.0, 2.0, 4.0, 8.0])
    hidden_dim: int = 64
    num_layers: int = 3


@dataclass
class DiffusionCfg:
    latent_dim: int = II("latent.dim")
    hidden_dim: int = 64
    num_layers: int = 3
    sigma_min: float = 0.002
    sigma_max: float = 1.0
    sigma_data: float = 0.5
    sample_steps: int = 4  # teacher sampling steps (distilled model uses ttc.steps)


@dataclass
class OptimizerCfg:
    name: str = "adamw"
    lr: float = 1.0e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.03


@dataclass
class StageCfg:
    epochs: int = 5
    optimizer: OptimizerCfg = field(default_factory=OptimizerCfg)
    scheduler: str = "cosine"  # constant | cosine
    warmup_steps_ratio: float = 0.05
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    batch_size: int = 32
    accum_steps: int = 1
    time_budget_s: float = 0.0  # wall-clock cap for this stage (0 = epochs decide)


def _autoencoder_stage() -> StageCfg:
    return StageCfg(epochs=10, optimizer=OptimizerCfg(lr=2.0e-3), warmup_steps_ratio=0.02)


def _operator_stage() -> StageCfg:
    # measured (dim32, 4-min CPU budget): lr 2e-3 + cosine, batch 32 → val nRMSE 0.055 vs 0.16 (lr 1e-3, batch 64)
    return StageCfg(epochs=15, optimizer=OptimizerCfg(lr=2.0e-3), scheduler="cosine", warmup_steps_ratio=0.01)


def _diff_stage() -> StageCfg:
    return StageCfg(epochs=5, optimizer=OptimizerCfg(lr=5.0e-4))


def _distill_stage() -> StageCfg:
    return StageCfg(epochs=6, optimizer=OptimizerCfg(lr=5.0e-4))


@dataclass
class StagesCfg:
    autoencoder: StageCfg = field(default_factory=_autoencoder_stage)  # trains encoder+decoder before the cache
    operator: StageCfg = field(default_factory=_operator_stage)
    diff_residual: StageCfg = field(default_factory=_diff_stage)
    consistency_distill: StageCfg = field(default_factory=_distill_stage)


@dataclass
class TrainingCfg:
    seed: int = 0
    latent_cache: bool = True
    latent_cache_dtype: str = "float32"  # float32 | bfloat16 | float16
    rollout_horizon: int = 8  # operator trained on 8-step latent rollouts: rollout error is what is scored
    lambda_rollout: float = 1.0
    lambda_spectral: float = 0.0
    lambda_field: float = 0.0  # rollout loss on decoded fields (operator stage)
    distill_num_taus: int = 5
    distill_micro_batch: int = 3
    num_threads: int = 2
    device: str = "auto"  # auto | cpu | cuda
    amp: str = "none"  # none | bf16 (CUDA autocast)
    time_budget_s: float = 0.0  # 0 = no wall-clock cap (epochs decide)
    checkpoint_every: int = 1  # epochs between checkpoints handed to report()
    val_max_samples: int = 64  # validation trajectories used for per-epoch rollout nRMSE (-1: all)


@dataclass
class RewardWeightsCfg:
    mass: float = 1.0
    energy: float = 1.0
    bc: float = 1.0
    smoothness: float = 0.1


@dataclass
class TTCCfg:
    enabled: bool = True
    candidates: int = 8
    beam_width: int = 3
    horizon: int = 2
    max_evaluations: int = 150  # decoded frames scored per sample and step (w·k·h + 1); ups/ttc.py
    threshold: float = 0.35  # search only where the deterministic step's look-ahead penalty exceeds it
    steps: int = 1  # sampler steps of the distilled residual
    gamma: float = 1.0
    noise_scale: float = 1.0
    weights: RewardWeightsCfg = field(default_factory=RewardWeightsCfg)


@dataclass
class EvalCfg:
    max_samples: int = -1  # test trajectories (-1: all)
    batch_size: int = 64
    ensemble_size: int = 8  # diffusion samples for ECE
    out_dir: str = "reports"
    baselines: bool = True
    fno_budget_s: float = 60.0


@dataclass
class RunCfg:
    run_id: str | None = None
    out_dir: str = "runs"
    label: str = ""
    tags: list[str] = field(default_factory=list)


@dataclass
class UPSConfig:
    preset: str = "dim32"
    data: DataCfg = field(default_factory=DataCfg)
    latent: LatentCfg = field(default_factory=LatentCfg)
    encoder: EncoderCfg = field(default_factory=EncoderCfg)
    operator: OperatorCfg = field(default_factory=OperatorCfg)
    decoder: DecoderCfg = field(default_factory=DecoderCfg)
    diffusion: DiffusionCfg = field(default_factory=DiffusionCfg)
    stages: StagesCfg = field(default_factory=StagesCfg)
    training: TrainingCfg = field(default_factory=TrainingCfg)
    ttc: TTCCfg = field(default_factory=TTCCfg)
    eval: EvalCfg = field(default_factory=EvalCfg)
    run: RunCfg = field(default_factory=RunCfg)


# ---------------------------------------------------------------------------------- presets
def preset_values(dim: int) -> dict[str, Any]:
    """The seed's scaling rules: tokens ∝ dim, hidden = 2×dim, group size divides hidden."""
    hidden = 2 * dim
    heads = max(1, min(16, hidden // 16))
    while hidden % heads:
        heads -= 1
    group_size = max(1, hidden // 8)
    return {
        "latent": {"dim": dim, "tokens": int(min(64, max(4, dim // 2)))},
        "operator": {"hidden_dim": hidden, "heads": heads, "group_size": group_size},
        "decoder": {"hidden_dim": hidden},
        "diffusion": {"hidden_dim": hidden},
    }


# ---------------------------------------------------------------------------------- loading
@functools.lru_cache(maxsize=1)
def schema_template() -> DictConfig:
    """The structured schema, built once (``OmegaConf.structured`` costs ~20 ms a call, and sweeps apply
    overrides hundreds of times when they validate a space).  Read it only: ``OmegaConf.merge`` copies
    its first argument, so ``merge(schema_template(), …)`` is a fresh config."""
    return OmegaConf.structured(UPSConfig)


@functools.lru_cache(maxsize=1)
def _schema_keys() -> tuple[str, ...]:
    return tuple(all_keys(schema_template()))


def all_keys(cfg: Any = None, prefix: str = "") -> list[str]:
    """Every dotted leaf key of the schema (or of ``cfg``)."""
    if cfg is None:
        return list(_schema_keys())
    keys: list[str] = []
    for k in cfg.keys():
        full = f"{prefix}{k}"
        node = cfg._get_node(k)
        if isinstance(node, DictConfig):
            keys.extend(all_keys(node, full + "."))
        else:
            keys.append(full)
    return keys


_NODE_TYPES = {"IntegerNode": int, "FloatNode": float, "BooleanNode": bool, "StringNode": str, "ListConfig": list}
_KEY_TYPES: dict[str, type | None] = {}


def key_type(key: str) -> type | None:
    """The type the schema holds at a dotted leaf key (int, float, bool, str, list), None if unknown/any."""
    if not _KEY_TYPES:
        def walk(node: Any, prefix: str) -> None:
            for k in node.keys():
                child = node._get_node(k)
                if isinstance(child, DictConfig):
                    walk(child, f"{prefix}{k}.")
                else:
                    _KEY_TYPES[f"{prefix}{k}"] = _NODE_TYPES.get(type(child).__name__)
        walk(schema_template(), "")
    return _KEY_TYPES.get(key)


def _one_level_off(key: str, cand: str) -> bool:
    """``key`` is ``cand`` with one inner section left out or one added, the leaf the same
    (``stages.operator.lr`` ~ ``stages.operator.optimizer.lr``)."""
    a, b = key.split("."), cand.split(".")
    if len(a) > len(b):
        a, b = b, a
    if len(b) != len(a) + 1 or len(a) < 2 or a[-1] != b[-1]:
        return False
    return any(b[:i] + b[i + 1:] == a for i in range(1, len(b) - 1))


def suggest_key(key: str, candidates: Iterable[str] | None = None) -> str | None:
    """The valid key a misspelt one most likely meant: one section too few or too many first (a string
    match would offer ``stages.operator.scheduler`` for ``stages.operator.lr``), then the closest spelling,
    then any key with the same leaf.  A section given a value (``searcher=bohb``, ``gates=false``) is pointed
    at its ``name`` or ``enabled`` key."""
    cands = list(candidates) if candidates is not None else all_keys()
    for leaf in ("name", "enabled"):
        if f"{key}.{leaf}" in cands:
            return f"{key}.{leaf}"
    nested = [c for c in cands if _one_level_off(key, c)]
    if nested:
        return nested[0]
    best = difflib.get_close_matches(key, cands, n=1, cutoff=0.5)
    if best:
        return best[0]
    leaf = key.rsplit(".", 1)[-1]
    by_leaf = [c for c in cands if c.rsplit(".", 1)[-1] == leaf]
    return by_leaf[0] if by_leaf else None


def did_you_mean(key: str, candidates: Iterable[str] | None = None) -> str:
    """`` Did you mean …?`` for an unknown ``key`` (empty when nothing is near).  A leaf several keys share
    (``lr``, ``training.epochs``: each stage has its own) lists them, rather than the one spelling nearest to the
    whole key (``training.amp``) or the first of them (``stages.autoencoder.optimizer.lr``, when the round searches
    the operator's)."""
    cands = list(candidates) if candidates is not None else all_keys()
    leaf = key.rsplit(".", 1)[-1]
    same = [c for c in cands if c != key and c.rsplit(".", 1)[-1] == leaf]
    near = suggest_key(key, cands)
    section = near in (f"{key}.name", f"{key}.enabled")  # a section given a value (scheduler=pbt)
    if len(same) > 1 and not section and (near is None or near.rsplit(".", 1)[-1] != leaf or "." not in key):
        return f" Did you mean one of {', '.join(repr(c) for c in same[:8])}{', …' if len(same) > 8 else ''}?"
    return f" Did you mean '{near}'?" if near else ""


def override_key(item: str) -> str:
    """The key of a ``key=value`` override as the config names it: spaces and Hydra's ``+`` prefix dropped
    (``" +stages.operator.epochs=3"`` → ``stages.operator.epochs``)."""
    return item.split("=", 1)[0].strip().lstrip("+")


def data_file_key(item: str, command: str, without: str) -> str:
    """The key of override ``item`` with ``data=<file>`` read as ``data.path=<file>`` (``ups eval``, ``ups train``);
    an empty file name (an unset ``$DATA``: the command went on with generated data) is refused, ``without`` saying
    what leaving it out does."""
    key = override_key(item)
    key = "data.path" if key == "data" else key
    if key == "data.path" and not item.split("=", 1)[-1].strip():
        raise ConfigError(f"{command}'{item}' names no file (an unset variable?). Fix: data=<PDEBench-layout HDF5 "
                          f"file>, or {without}")
    return key


def unknown_key_error(key: str, source: str) -> ConfigError:
    hint = did_you_mean(key)
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    siblings = [k for k in all_keys() if parent and k.startswith(parent + ".")]
    valid = f" Valid keys under '{parent}': {', '.join(siblings[:20])}." if siblings else ""
    return ConfigError(f"{source}: unknown config key '{key}'.{hint}{valid}")


def value_fix(cfg: Any, key: str | None, label: str = "now") -> str:
    """" Fix: …" for a value that does not fit ``key``: the type the schema holds there, and its value in ``cfg``."""
    if not key:
        return ""
    try:
        cur = OmegaConf.select(cfg, key, throw_on_missing=False)
    except Exception:
        return ""
    if isinstance(cur, (DictConfig, ListConfig)):
        cur = OmegaConf.to_container(cur)
    kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
            list: "a list in brackets, e.g. " + (f"[{', '.join(map(str, cur))}]" if isinstance(cur, list) and cur
                                                 else "[a, b]")}.get(type(cur))
    if kind is None:
        return ""
    shown = str(cur).lower() if isinstance(cur, bool) else repr(cur)  # as an override writes it: resume=false
    return f" Fix: give {kind} ({label} {key}={shown})."


_NO_VALUE = object()


def invalid_value_error(source: str, key: str | None, err: Exception, cfg: Any, value: Any = _NO_VALUE,
                        label: str = "now") -> ConfigError:
    """The error for a value that does not fit ``key``: the first line of ``err``, then ``value_fix``."""
    shown = "" if value is _NO_VALUE else f" {value!r}"
    return ConfigError(f"{source}: invalid value{shown} for '{key}': {err}".split("\n")[0]
                       + value_fix(cfg, key, label))


_MEMO_LOCK = threading.Lock()
_COMPOSED: OrderedDict[tuple[Any, ...], DictConfig] = OrderedDict()  # (dir, name, overrides, files) → Hydra's compose
_TYPED: OrderedDict[str, DictConfig] = OrderedDict()  # repr of a config's container → it merged onto the schema


def _memo_copy(memo: OrderedDict, size: int, key: Hashable, make: Callable[[], DictConfig]) -> DictConfig:
    """A deep copy (the caller may change it) of ``memo[key]``, made by ``make()`` on first use; ``memo`` keeps the
    ``size`` most recently used.  A ``make`` that raises keeps nothing: the same error comes again next time."""
    with _MEMO_LOCK:
        kept = memo.get(key)
        if kept is not None:
            memo.move_to_end(key)
    if kept is None:
        kept = make()
        with _MEMO_LOCK:
            memo[key] = kept
            while len(memo) > size:
                memo.popitem(last=False)
    return copy.deepcopy(kept)


def _conf_files(config_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file under ``config_dir`` with its mtime and size: a cached compose is reused only while they stay."""
    out = []
    for p in sorted(config_dir.rglob("*")):
        try:
            st = p.stat()
        except OSError:
            continue
        if p.is_file():
            out.append((str(p.relative_to(config_dir)), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _compose(overrides: Sequence[str], config_name: str, config_dir: Path) -> DictConfig:
    """Hydra's compose of ``config_name`` in ``config_dir`` with ``overrides`` (unresolved), a fresh config the caller
    may change.  A compose costs ~70 ms (Hydra's defaults tree, the YAML files, the overrides), and tests and sweeps
    load the same few configs many times: each distinct one (same folder, files unchanged, same overrides) is composed
    once and deep-copied (~3 ms) after.  Failures are not cached: a bad override raises the same error every time."""
    try:
        key: tuple[Any, ...] | None = (str(config_dir.resolve()), config_name, tuple(overrides),
                                       _conf_files(config_dir))
        hash(key)
    except TypeError:  # an override Hydra will refuse: compose and let it say so
        key = None
    if key is None:
        return _compose_uncached(overrides, config_name, config_dir)

    def fresh() -> DictConfig:
        cfg = _compose_uncached(overrides, config_name, config_dir)
        # Hydra's compose leaves its ``${now:…}`` results (hydra.run.dir) in the root's resolver cache: a copy must not
        # hand the first compose's time to a ``${now:…}`` in a later load's overrides, so it resolves afresh
        OmegaConf.clear_cache(cfg)
        return cfg

    return _memo_copy(_COMPOSED, 32, key, fresh)


def _compose_uncached(overrides: Sequence[str], config_name: str, config_dir: Path) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.core.global_hydra import GlobalHydra

    store = ConfigStore.instance()
    if "ups_schema.yaml" not in store.repo:  # Hydra deep-copies a stored node on every load: one store is enough
        store.store(name="ups_schema", node=UPSConfig)  # (OmegaConf.structured, ~15 ms a call)
    from hydra.errors import ConfigCompositionException, OverrideParseException

    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.3"):
            return compose(config_name=config_name, overrides=list(overrides))
    except OverrideParseException as e:
        raise ConfigError(f"overrides: cannot parse {e}. Use key=value, e.g. stages.operator.optimizer.lr=3e-4") from None
    except ConfigCompositionException as e:
        msg = str(e)
        m = re.search(r"Could not override '([^']+)'", msg) or re.search(r"Key '([^']+)' not in", msg)
        if m and ("not in struct" in msg or "Could not override" in msg):
            cause = str(e.__cause__) if e.__cause__ else ""
            if "not in struct" in msg or "not in struct" in cause or "Could not find" not in cause:
                raise unknown_key_error(m.group(1), "overrides") from None
        m = re.search(r"Could not find '([^']+)'", msg)
        if m:
            opts = ", ".join(f"dim{d}" for d in PRESET_DIMS)
            name = m.group(1).removeprefix("preset/")  # Hydra names the group's file: 'preset/dim7'
            raise ConfigError(f"overrides: unknown preset '{name}'. Fix: preset=<one of {opts}>") from None
        cause = str(e.__cause__).split("\n")[0] if e.__cause__ else ""
        m = re.search(r"Ambiguous value for argument '([^'=]+)=([^']*)'", msg)
        if m:  # Hydra's sweep syntax: a list of values to try belongs in a search space, not an override
            raise ConfigError(f"overrides: '{m.group(1)}={m.group(2)}' lists several values. Fix: one value "
                              f"({m.group(1)}={m.group(2).split(',')[0]}); a list value in brackets "
                              f"({m.group(1)}=[{m.group(2)}]) where the key takes a list; to try several values, "
                              f"put the key in the round's search space (search_spaces/<round>.yaml, or space=<file>) "
                              f"with dist: choice or grid: sweeps do not use Hydra's --multirun") from None
        m = re.search(r"Error merging override ([^=\s]+)=", msg)
        fix = value_fix(_compose((), config_name, config_dir), m.group(1).lstrip("+"),
                        "the default:") if m else ""
        raise ConfigError(f"overrides: {msg} {cause}".strip() + fix) from None


def load_config(
    overrides: Sequence[str] = (),
    config_name: str = "train",
    config_dir: Path = CONF_DIR,
    *,
    validate: bool = True,
) -> DictConfig:
    """Compose the UPS config with Hydra overrides; validate; return a resolved DictConfig.

    Raises ConfigError naming the key and its nearest valid key for misspelt keys, bad types,
    or values that break the model's scaling rules (``validate=False``: keys and types only, for overrides that
    go on top of another config, which is validated then).
    """
    try:
        cfg = _compose(overrides, config_name, config_dir)
        OmegaConf.resolve(cfg)
    except ConfigError:
        raise
    except Exception as e:  # omegaconf ValidationError etc.
        key = getattr(e, "full_key", None)
        raise invalid_value_error("overrides", key, e, _compose((), config_name, config_dir),
                                  label="the default:") from None
    if validate:
        validate_config(cfg)
    return cfg


def config_from_dict(d: dict[str, Any], source: str = "config") -> DictConfig:
    """Rebuild a validated config from a plain dict (e.g. stored in a checkpoint)."""
    schema = schema_template()
    try:
        cfg = OmegaConf.merge(schema, OmegaConf.create(d))
    except Exception as e:
        key = getattr(e, "full_key", None) or ""
        if "not in struct" in str(e) or "Key '" in str(e):
            raise unknown_key_error(str(key), source) from None
        raise invalid_value_error(source, key, e, schema) from None
    OmegaConf.resolve(cfg)
    validate_config(cfg, source)
    return cfg


def _typed_copy(cfg: DictConfig) -> DictConfig:
    """``merge(schema_template(), to_container(cfg))``: ``cfg`` on the structured schema (types checked on every
    assignment), a fresh config the caller may change.  The merge costs ~15 ms, and a sweep's checks
    (``check_against``: every extreme of every param, then the trials) apply overrides to the same few base
    configs hundreds of times: each distinct one is merged once and deep-copied (~3 ms) after."""
    container = OmegaConf.to_container(cfg)
    # plain dicts, lists and scalars (interpolations unresolved, as text): equal repr, equal merge
    return _memo_copy(_TYPED, 8, repr(container), lambda: OmegaConf.merge(schema_template(), container))


def apply_overrides(cfg: DictConfig, updates: dict[str, Any], source: str = "overrides") -> DictConfig:
    """Set dotted keys on a copy of ``cfg`` (used by sweeps for sampled params); unknown keys fail."""
    schema = _typed_copy(cfg)
    valid = set(_schema_keys())
    for key, value in updates.items():
        if key not in valid:
            raise unknown_key_error(key, source)
        try:
            OmegaConf.update(schema, key, value, merge=False)
        except Exception as e:
            raise invalid_value_error(source, key, e, schema, value) from None
    validate_config(schema, source)
    return schema


STAGE_NAMES = ("autoencoder", "operator", "diff_residual", "consistency_distill")
OPTIMIZERS = ("adamw",)  # ups.train.trainer builds torch.optim.AdamW for every stage
DEVICES = ("auto", "cpu", "cuda")  # or cuda:<index>
AMP_MODES = ("none", "bf16")  # bf16: CUDA autocast (ups.train.trainer)


def _at_least(low: float) -> Any:
    return lambda v: v >= low


def _above(low: float) -> Any:
    return lambda v: v > low


def _in_range(low: float, high: float) -> Any:  # low ≤ v < high
    return lambda v: low <= v < high


def _one_of(options: Sequence[str]) -> Any:
    return lambda v: v in options


def _device_ok(v: str) -> bool:
    return v in DEVICES or bool(re.fullmatch(r"cuda:\d+", str(v)))


# (key, test, what it needs, the fix): values the types allow but the model, trainer or torch cannot use;
# refused at load (before data, baselines or Ray), not in every trial. Checked before the scaling rules.
def is_local_path(v: Any) -> bool:
    """A path the code opens with Path() (None: unset): a URI is refused, since Path("s3://b/x") is the local
    ./s3:/b/x, where files were written or not found.  The one test for every local-path setting and argument."""
    return v is None or "://" not in str(v)


VALUE_RULES: tuple[tuple[str, Any, str, str], ...] = (
    ("data.path", is_local_path, "is a URI: the data is read from a local HDF5 file",
     "copy it locally (aws s3 cp …) and pass data.path=<local file>; to share one file through S3 between nodes, "
     "ups.cloud.dataset_sync (docs/CLUSTER.md)"),
    ("data.cache_dir", is_local_path, "is a URI: generated data is cached in a local folder",
     "data.cache_dir=~/.cache/ups/data (the default)"),
    ("run.out_dir", is_local_path, "is a URI: a training run writes its checkpoints to a local folder (a sweep with "
     "storage_path=s3://… keeps its trials' checkpoints on S3)", "run.out_dir=runs (the default)"),
    ("eval.out_dir", is_local_path, "is a URI: the evaluation's JSON, CSV and HTML are written to a local folder",
     "eval.out_dir=reports (the default)"),
    ("training.num_threads", _at_least(1), "must be ≥ 1 (torch's CPU threads per run; it was read as 1)",
     "use e.g. training.num_threads=2 (the default), or the cores a trial has (resources.cpu)"),
    ("operator.hidden_dim", _at_least(1), "must be ≥ 1", "use e.g. operator.hidden_dim=64 (2 × latent.dim)"),
    ("operator.heads", _at_least(1), "must be ≥ 1 (and divide operator.hidden_dim)", "use e.g. operator.heads=4"),
    ("operator.group_size", _at_least(1), "must be ≥ 1 (and divide operator.hidden_dim)",
     "use e.g. operator.group_size=8"),
    ("operator.drop_path", _in_range(0, 1), "must be in [0, 1) (a stochastic-depth rate)",
     "use e.g. operator.drop_path=0.1"),
    ("operator.mlp_ratio", _above(0), "must be > 0", "use e.g. operator.mlp_ratio=2.0"),
    ("encoder.context_frames", _at_least(1), "must be ≥ 1", "use encoder.context_frames=1"),
    ("diffusion.num_layers", _at_least(1), "must be ≥ 1", "use e.g. diffusion.num_layers=3"),
    ("diffusion.sample_steps", _at_least(1), "must be ≥ 1", "use e.g. diffusion.sample_steps=4"),
    ("diffusion.sigma_min", _above(0), "must be > 0", "use e.g. diffusion.sigma_min=0.002"),
    ("diffusion.sigma_data", _above(0), "must be > 0", "use e.g. diffusion.sigma_data=0.5"),
    ("training.lambda_rollout", _at_least(0), "must be ≥ 0 (a loss weight)", "use e.g. training.lambda_rollout=1.0"),
    ("training.lambda_spectral", _at_least(0), "must be ≥ 0 (a loss weight)", "use e.g. training.lambda_spectral=0"),
    ("training.lambda_field", _at_least(0), "must be ≥ 0 (a loss weight)", "use e.g. training.lambda_field=0"),
    ("training.time_budget_s", _at_least(0), "must be ≥ 0 (0: epochs decide)", "use training.time_budget_s=0"),
    ("training.device", _device_ok, f"is not a device the trainer knows ({', '.join(DEVICES)} or cuda:<index>)",
     "use training.device=auto (CUDA when available, else CPU)"),
    ("training.amp", _one_of(AMP_MODES), f"is not supported (only {' or '.join(AMP_MODES)}: bf16 autocast on CUDA)",
     "use training.amp=none or training.amp=bf16"),
    *((f"stages.{s}.{k}", ok, need, f"use e.g. stages.{s}.{fix}") for s in STAGE_NAMES for k, ok, need, fix in (
        ("optimizer.name", _one_of(OPTIMIZERS), f"is not supported: the trainer uses {', '.join(OPTIMIZERS)} "
                                                f"for every stage", "optimizer.name=adamw"),
        ("grad_clip", _at_least(0), "must be ≥ 0 (0: no clipping)", "grad_clip=1.0"),
        ("time_budget_s", _at_least(0), "must be ≥ 0 (0: epochs decide)", "time_budget_s=0"))),
)


def validate_config(cfg: DictConfig, source: str = "config") -> None:
    """Semantic checks the type system cannot express (scaling rules, ranges)."""

    def bad(key: str, why: str, fix: str) -> ConfigError:
        return ConfigError(f"{source}: '{key}' {why}. Fix: {fix}")

    for key, ok, need, fix in VALUE_RULES:  # first: the scaling rules below divide by heads / group_size
        v = OmegaConf.select(cfg, key)
        if not ok(v):
            raise bad(key, f"= {v!r} {need}", fix)
    stages = [f"stages.{s}" for s in STAGE_NAMES]
    if not any(OmegaConf.select(cfg, f"{k}.epochs") > 0 for k in stages):
        raise bad("stages.*.epochs", "are all 0, so nothing would be trained",
                  "give at least one stage epochs ≥ 1, e.g. stages.operator.epochs=15")
    if cfg.stages.consistency_distill.epochs > 0 and cfg.stages.diff_residual.epochs == 0:
        raise bad("stages.consistency_distill.epochs",
                  f"= {cfg.stages.consistency_distill.epochs} distills the diffusion residual, which "
                  f"stages.diff_residual.epochs=0 leaves untrained (its scale stays 0, and distillation diverged at "
                  f"its first batch)", "stages.consistency_distill.epochs=0 as well (no diffusion: TTC's candidates "
                  "are then the plain rollout), or stages.diff_residual.epochs ≥ 1")
    d = cfg.diffusion
    if not d.sigma_min < d.sigma_max:
        raise bad("diffusion.sigma_min", f"= {d.sigma_min} must be below diffusion.sigma_max = {d.sigma_max}",
                  "e.g. diffusion.sigma_min=0.002 diffusion.sigma_max=1.0")
    op = cfg.operator
    if op.hidden_dim % op.heads:
        raise bad("operator.heads", f"= {op.heads} does not divide operator.hidden_dim = {op.hidden_dim}",
                  "choose heads dividing hidden_dim")
    if op.hidden_dim % op.group_size:
        raise bad("operator.group_size", f"= {op.group_size} does not divide operator.hidden_dim = {op.hidden_dim}",
                  "choose a group size dividing hidden_dim")
    if not op.depths or any(d < 0 for d in op.depths):
        raise bad("operator.depths", f"= {list(op.depths)} is invalid", "use a non-empty list like [1,1,1]")
    for name in ("latent.dim", "latent.tokens", "decoder.hidden_dim", "decoder.num_layers", "diffusion.hidden_dim"):
        if OmegaConf.select(cfg, name) < 1:
            raise bad(name, "must be ≥ 1", "use a positive integer")
    for sname in STAGE_NAMES:
        st = cfg.stages[sname]
        k = f"stages.{sname}"
        if st.epochs < 0:
            raise bad(f"{k}.epochs", "must be ≥ 0", "use 0 to skip the stage")
        if not st.optimizer.lr > 0:
            raise bad(f"{k}.optimizer.lr", f"= {st.optimizer.lr} must be > 0", "use e.g. 3e-4")
        if len(st.optimizer.betas) != 2 or not all(0 <= b < 1 for b in st.optimizer.betas):
            raise bad(f"{k}.optimizer.betas", f"= {list(st.optimizer.betas)} is invalid", "use two values in [0,1), e.g. [0.9,0.95]")
        if st.scheduler not in ("constant", "cosine"):
            raise bad(f"{k}.scheduler", f"= '{st.scheduler}' is unknown", "use 'constant' or 'cosine'")
        if not 0 <= st.warmup_steps_ratio < 1:
            raise bad(f"{k}.warmup_steps_ratio", "must be in [0,1)", "use e.g. 0.05")
        if not 0 <= st.ema_decay < 1:
            raise bad(f"{k}.ema_decay", "must be in [0,1)", "use e.g. 0.999")
        if st.batch_size < 1 or st.accum_steps < 1:
            raise bad(f"{k}.batch_size", "and accum_steps must be ≥ 1", "use positive integers")
        if not st.optimizer.weight_decay >= 0:
            raise bad(f"{k}.optimizer.weight_decay", "must be ≥ 0", "use e.g. 0.03")
    if cfg.training.latent_cache_dtype not in ("float32", "bfloat16", "float16"):
        raise bad("training.latent_cache_dtype", f"= '{cfg.training.latent_cache_dtype}' is unknown",
                  "use float32, bfloat16 or float16")
    if cfg.training.rollout_horizon < 1:
        raise bad("training.rollout_horizon", "must be ≥ 1", "use 1 for one-step training")
    t = cfg.ttc
    if t.beam_width < 1 or t.candidates < 1 or t.horizon < 1 or t.steps < 1:
        raise bad("ttc", "candidates, beam_width, horizon and steps must be ≥ 1", "use positive integers")
    if t.beam_width > t.candidates:
        raise bad("ttc.beam_width", f"= {t.beam_width} exceeds ttc.candidates = {t.candidates}",
                  "keep beam_width ≤ candidates")
    if t.max_evaluations < 1:
        raise bad("ttc.max_evaluations", f"= {t.max_evaluations} must be ≥ 1", "use e.g. 150 (w·k·h + 1 per step)")
    if not 0 < t.gamma <= 1:
        raise bad("ttc.gamma", f"= {t.gamma} must be in (0, 1]", "use a discount like 1.0 or 0.9")
    if not t.threshold >= 0 or not t.noise_scale >= 0:
        raise bad("ttc.threshold", f"= {t.threshold} (and ttc.noise_scale = {t.noise_scale}) must be ≥ 0",
                  "use non-negative values, e.g. threshold=0.35 noise_scale=1.0")
    for wk in ("mass", "energy", "bc", "smoothness"):
        if not t.weights[wk] >= 0:
            raise bad(f"ttc.weights.{wk}", f"= {t.weights[wk]} must be ≥ 0", "use a non-negative reward weight")
    d = cfg.data
    if d.nu <= 0:
        raise bad("data.nu", f"= {d.nu} must be > 0", "use e.g. nu=0.01")
    if d.n <= 0:
        raise bad("data.n", f"= {d.n} must be > 0", "use e.g. n=2000")
    for key, ok, need, fix in (
            ("data.seed", d.seed >= 0, "must be ≥ 0", "use e.g. data.seed=2022"),
            ("data.t_final", d.t_final > 0, "must be > 0", "use 2.0 (PDEBench)"),
            ("data.frames", d.frames >= 2, "must be ≥ 2", "use 201 (PDEBench)"),
            ("data.resolution", d.resolution >= 2, "must be ≥ 2", "use 1024 (PDEBench)"),
            ("training.seed", cfg.training.seed >= 0, "must be ≥ 0", "use e.g. training.seed=0"),
            ("training.val_max_samples", cfg.training.val_max_samples == -1 or cfg.training.val_max_samples >= 1,
             "must be -1 (all) or ≥ 1", "use e.g. 64"),
            ("eval.max_samples", cfg.eval.max_samples >= -1, "must be -1 (all), 0 (no test evaluation) or a count",
             "use -1 for the whole test split")):
        if not ok:
            raise bad(key, f"= {OmegaConf.select(cfg, key)} {need}", fix)
    check_protocol(d, ConfigError, source)


def grid_size_from_config(cfg: Any) -> int:
    """Points per frame after the protocol's spatial subsampling (1024 / 4 = 256 by default)."""
    d = cfg.data
    return -(-int(d.resolution) // int(d.reduced_resolution))


def check_model_grid(cfg: Any, source: str = "config") -> None:
    """A model ``cfg`` can build on its data's grid: no more latent tokens than the grid points the encoder pools
    (``data.resolution / data.reduced_resolution``).  Not in ``validate_config``: commands that build no model
    (data, baselines) read small grids with any model settings.  Called where a model will be trained: ``ups
    train``, a sweep's base config and every sampled point (``ups.tune.space``), so a sweep stops before Ray
    instead of failing every trial inside it."""
    d, grid = cfg.data, grid_size_from_config(cfg)
    if int(cfg.latent.tokens) > grid:
        raise ConfigError(f"{source}: 'latent.tokens' = {cfg.latent.tokens} exceeds the {grid}-point grid the encoder "
                          f"reads (data.resolution={d.resolution} / data.reduced_resolution={d.reduced_resolution}). "
                          f"Fix: latent.tokens ≤ {grid}, or a finer grid (a smaller data.reduced_resolution)")


def cfg_value(cfg: Any, key: str) -> Any:
    """``cfg.key`` of a config section given as a plain dict or as an object (DictConfig, dataclass)."""
    return cfg[key] if isinstance(cfg, dict) else getattr(cfg, key)


def check_protocol(data_cfg: Any, error: type[ConfigError] = ConfigError, source: str = "config") -> None:
    """The PDEBench protocol's slicing settings (``data.*``): strides ≥ 1, split ratios in (0, 1)."""

    def get(key: str) -> Any:
        return cfg_value(data_cfg, key)

    def bad(key: str, why: str, fix: str) -> ConfigError:
        return error(f"{source}: 'data.{key}' {why}. Fix: {fix}")

    for key in ("reduced_resolution", "reduced_resolution_t"):
        if get(key) < 1:
            raise bad(key, f"= {get(key)} must be ≥ 1", f"use data.{key}=1 for no reduction")
    for key in ("test_ratio", "val_ratio"):
        if not 0 < get(key) < 1:
            raise bad(key, f"= {get(key)} must be in (0, 1)", "use e.g. 0.1")
    if get("test_ratio") + get("val_ratio") >= 1:
        raise bad("val_ratio", "+ test_ratio must be < 1", "use e.g. test_ratio=0.1 val_ratio=0.1")
    if get("initial_step") < 1:
        raise bad("initial_step", f"= {get('initial_step')} must be ≥ 1", "use 10 (PDEBench)")


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# where and how a run executes, not what it trains: one config on two machines (another cache folder, device
# or thread count) has one hash, and a resume may change them (ups.tune.sweep_record)
MACHINE_KEYS = ("data.cache_dir", "training.device", "training.num_threads")


def config_hash(cfg: DictConfig | dict[str, Any]) -> str:
    """The identity of what a config trains: everything but ``run.*`` and ``MACHINE_KEYS``."""
    import hashlib, json

    d = to_dict(cfg) if isinstance(cfg, (DictConfig, ListConfig)) else cfg
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in d.items() if k != "run"}
    for key in MACHINE_KEYS:
        section, _, leaf = key.partition(".")
        if isinstance(d.get(section), dict):
            d[section] = {k: v for k, v in d[section].items() if k != leaf}
    return hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
