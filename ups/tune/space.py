"""Search spaces: YAML distributions over dotted UPS config keys, validated before Ray starts.

File layout (``search_spaces/<round>.yaml``)::

    description: optimizer & schedule
    reference:                      # the round's baseline = first trial (points_to_evaluate)
      stages.operator.optimizer.lr: 3.0e-4
    params:                         # what the searcher samples
      stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-3}
      stages.operator.warmup_steps_ratio: {dist: uniform, low: 0.0, high: 0.08}
      stages.operator.ema_decay: {dist: choice, values: [0.999, 0.9995, 0.9999]}
      stages.operator.epochs: {dist: int, low: 2, high: 6}          # inclusive
      operator.hidden_dim: {dist: int, low: 16, high: 512, log: true}  # inclusive, on a log scale (low ≥ 1)
      latent.dim: {dist: grid, values: [8, 16, 32]}                  # every value (grid searcher)
      ttc.threshold: {dist: around, rel: 0.2}   # ±20 % around the champion's value (round C)
    derived:                        # values computed from sampled ones, after sampling
      stages.diff_residual.optimizer.lr: {rule: copy, of: stages.operator.optimizer.lr}
      operator.heads: {rule: divisor, of: operator.hidden_dim, near: operator.heads}
      decoder.hidden_dim: {rule: scale, of: operator.hidden_dim, factor: 1}
      latent.tokens: {rule: preset, of: latent.dim}   # ups.config.preset_values(dim)[key]

Rules: ``copy`` (same value), ``scale`` (× factor, int keys rounded), ``divisor`` (largest divisor of
``of`` that is ≤ ``near``: heads and group sizes must divide hidden), ``preset`` (the seed's scaling
rules for a latent dim).  Non-scalar choices (``betas: [[0.9, 0.95], [0.9, 0.99]]``) are encoded as
JSON strings for the searcher and decoded in the trial.

Every problem raises ``SearchSpaceError`` (a ``ConfigError``) naming the file, the key and the
valid alternatives.  No Ray import at module level.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import json
import math
import random
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Collection, Mapping

from omegaconf import DictConfig, OmegaConf

from ups.config import (ConfigError, all_keys, apply_overrides, check_model_grid, did_you_mean, flatten, key_type,
                        preset_values, suggest_key, to_dict, validate_config)
from ups.yamlio import read_yaml

DISTS = ("choice", "uniform", "loguniform", "int", "grid", "around")
RULES = ("copy", "scale", "divisor", "preset")
TOP_LEVEL = ("description", "reference", "params", "derived", "round")
# Keys that describe where data lives, how a run is named or how it is evaluated are not swept.
NOT_SWEEPABLE_PREFIXES = ("data.", "run.", "eval.")
NOT_SWEEPABLE = {"preset", "training.device", "training.num_threads", "training.checkpoint_every",
                 "training.val_max_samples", "encoder.hidden_dim", "operator.input_dim", "diffusion.latent_dim"}


# Schema interpolations (``II(...)``) are resolved when a config is loaded; a swept source key carries
# its followers along explicitly.
LINKED = {"operator.input_dim": "latent.dim", "diffusion.latent_dim": "latent.dim",
          "encoder.hidden_dim": "operator.hidden_dim"}


def trains_point(config: Mapping[str, Any] | None, point: Mapping[str, Any]) -> bool:
    """Whether a trial's Tune ``config`` holds every value of searcher ``point`` (``SearchSpace.reference_point``:
    the trial that trains the round's reference; other keys, derived ones, may be there too)."""
    return all((config or {}).get(k) == v for k, v in point.items())


class SearchSpaceError(ConfigError):
    """A search-space file is invalid; the message names the file, key and fix."""


def sweepable_keys() -> list[str]:
    return [k for k in all_keys() if k not in NOT_SWEEPABLE and not k.startswith(NOT_SWEEPABLE_PREFIXES)]


@dataclass
class Param:
    key: str
    dist: str
    low: float | None = None
    high: float | None = None
    values: list[Any] = field(default_factory=list)
    rel: float = 0.2
    log: bool = False
    zero_width: float = 0.0

    @property
    def encoded(self) -> bool:
        return any(isinstance(v, (list, dict)) for v in self.values)

    def encode(self, value: Any) -> Any:
        return json.dumps(value) if self.encoded else value

    def decode(self, value: Any) -> Any:
        return json.loads(value) if self.encoded and isinstance(value, str) else value


@dataclass
class SearchSpace:
    path: Path
    description: str
    params: dict[str, Param]
    reference: dict[str, Any]
    derived: dict[str, dict[str, Any]]

    # ----------------------------------------------------------------- sampling & materializing
    def reference_point(self, base: DictConfig) -> dict[str, Any]:
        """The round's baseline as a searcher point (encoded), from `reference:` or the base config."""
        flat = flatten(to_dict(base))
        point = {}
        for key, p in self.params.items():
            value = self.reference.get(key, flat.get(key))
            if p.dist == "int" and isinstance(value, float) and value.is_integer():
                value = int(value)
            point[key] = p.encode(value)
        return point

    def latin_hypercube(self, n: int, seed: int) -> list[dict[str, Any]]:
        """``n`` searcher points (encoded) from a seeded Latin hypercube: each param's range is cut into
        ``n`` equal strata with one point in each (log-scaled for loguniform), so every choice value
        appears ⌊n/k⌋ or ⌈n/k⌉ times. TPE's start-up design: random draws can miss a choice value
        entirely, and TPE then never models it (docs/SWEEPS.md, TPE)."""
        from scipy.stats import qmc

        if n <= 0 or not self.params:
            return []
        unit = qmc.LatinHypercube(d=len(self.params), seed=seed).random(n)  # (n, d) in [0, 1)
        points = []
        for row in unit:
            point = {}
            for u, (key, p) in zip(row, self.params.items()):
                if p.dist in ("choice", "grid"):
                    value = p.values[min(int(u * len(p.values)), len(p.values) - 1)]
                elif p.dist == "uniform":
                    value = float(p.low + u * (p.high - p.low))
                elif p.dist == "loguniform":
                    value = float(min(p.high, max(p.low, math.exp(math.log(p.low) + u * math.log(p.high / p.low)))))
                elif p.dist == "int" and p.log:  # log strata over [low, high + 1), floored as lograndint draws
                    value = int(min(int(p.high), math.floor(int(p.low) * ((int(p.high) + 1) / int(p.low)) ** u)))
                elif p.dist == "int":
                    value = int(min(int(p.high), int(p.low) + int(u * (int(p.high) - int(p.low) + 1))))
                else:
                    raise self._unresolved(key)
                point[key] = p.encode(value)
            points.append(point)
        return points

    def decode(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in sampled.items():
            p = self.params.get(key)
            out[key] = p.decode(value) if p else value
        return out

    def materialize(self, base: DictConfig, sampled: Mapping[str, Any]) -> tuple[DictConfig, dict[str, Any]]:
        """Apply reference, sampled and derived values to base; returns (cfg, all set values)."""
        values = dict(self.reference)
        values.update(self.decode(sampled))
        view = OmegaConf.create(OmegaConf.to_container(base))  # unvalidated: derived rules fix it up
        for key, value in values.items():
            OmegaConf.update(view, key, value, merge=False)
        values.update(derive(self.derived, view, str(self.path)))
        for target, src in LINKED.items():  # interpolations the schema resolves at load time
            if src in values and target not in values:
                values[target] = values[src]
        cfg = apply_overrides(base, values, source=str(self.path)) if values else base
        check_model_grid(cfg, str(self.path))  # a trial builds this model on the data's grid
        return cfg, values

    def materialize_dict(self, base: dict[str, Any], sampled: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """``materialize`` on plain dicts (no OmegaConf, no validation): the driver's fast path for
        leaderboard rows of trials whose config the trial itself already validated."""
        values = dict(self.reference)
        values.update(self.decode(sampled))
        out = copy.deepcopy(base)
        for key, value in values.items():
            _dset(out, key, value)
        values.update(derive(self.derived, out, str(self.path)))
        for target, src in LINKED.items():
            if src in values and target not in values:
                values[target] = values[src]
        for key, value in values.items():
            _dset(out, key, value)
        return out, values

    def tune_space(self, searcher: str) -> dict[str, Any]:
        """Ray Tune distributions for the params (imports Ray)."""
        from ray import tune

        space: dict[str, Any] = {}
        for key, p in self.params.items():
            if p.dist == "choice":
                space[key] = tune.choice([p.encode(v) for v in p.values])
            elif p.dist == "grid":
                vals = [p.encode(v) for v in p.values]
                space[key] = tune.grid_search(vals) if searcher == "grid" else tune.choice(vals)
            elif p.dist == "uniform":
                space[key] = tune.uniform(p.low, p.high)
            elif p.dist == "loguniform":
                space[key] = tune.loguniform(p.low, p.high)
            elif p.dist == "int":  # inclusive high; Optuna's IntDistribution(log=p.log) behind OptunaSearch
                draw = tune.lograndint if p.log else tune.randint
                space[key] = draw(int(p.low), int(p.high) + 1)
            else:  # "around" must be resolved first
                raise self._unresolved(key)
        return space

    def pbt_mutations(self) -> dict[str, Any]:
        """PBT's ``hyperparam_mutations``: choices as ordered lists (PBT shifts to a neighbour or resamples),
        ranges as Tune domains (PBT multiplies by 1.2 / 0.8 or resamples; ``clamp`` keeps it in range)."""
        tuned = self.tune_space("random")
        return {key: [p.encode(v) for v in p.values] if p.dist in ("choice", "grid") else tuned[key]
                for key, p in self.params.items()}

    def clamp(self, config: dict[str, Any]) -> dict[str, Any]:
        """Sampled values pulled back into their declared ranges (PBT's multiplicative perturbation leaves them)."""
        for key, p in self.params.items():
            if key in config and p.dist in ("uniform", "loguniform", "int"):
                v = min(max(config[key], p.low), p.high)
                config[key] = int(round(v)) if p.dist == "int" else float(v)
        return config

    def _unresolved(self, key: str) -> SearchSpaceError:
        return SearchSpaceError(f"{self.path}: params.{key}: 'around' needs a champion; "
                                f"call resolve_around(space, champion_cfg) first")

    def drawn(self) -> list[str]:
        """The searched keys that are not on a grid: drawn anew per trial (at random under the grid searcher)."""
        return [k for k, p in self.params.items() if p.dist != "grid"]

    def largest(self, key: str, base: Any) -> float:
        """The largest value numeric ``key`` can take in a trial: the top of its range or choices when
        searched, the top of what it is derived from (copy, scale by a factor ≥ 0, divisor), else the base
        config's value.  ASHA's automatic ``max_t`` must not cut a trial whose sampled epochs run longer
        than the base config's."""
        return self._extreme(key, base, top=True)

    def smallest(self, key: str, base: Any) -> float:
        """The smallest value numeric ``key`` can take in a trial: the bottom of its range or choices when searched,
        the bottom of what it is copied or scaled (factor ≥ 0) from, 1 for a divisor, else the base config's value
        (``largest``'s counterpart: the fewest samples per batch, the most optimizer steps)."""
        return self._extreme(key, base, top=False)

    def _extreme(self, key: str, base: Any, top: bool) -> float:
        """``largest`` (``top``) or ``smallest``: one walk through params and derived rules; only a divisor differs
        (its top follows what it divides, its bottom is 1)."""
        p = self.params.get(key)
        if p is not None and p.values:
            return (max if top else min)(float(v) for v in p.values)
        end = None if p is None else (p.high if top else p.low)
        if end is not None:
            return float(end)
        rule = self.derived.get(key)
        if rule is not None and rule["rule"] == "divisor" and not top:
            return 1.0
        if rule is not None and rule["rule"] in ("copy", "divisor"):
            return self._extreme(rule["of"], base, top)
        if rule is not None and rule["rule"] == "scale" and float(rule.get("factor", 1.0)) >= 0:
            return self._extreme(rule["of"], base, top) * float(rule.get("factor", 1.0))
        return float(_select(base, key))

    def grid_size(self) -> int:
        n = 1
        for p in self.params.values():
            if p.dist == "grid":
                n *= len(p.values)
        return n


# ------------------------------------------------------------------------------- derivation
def _select(cfg: Any, key: str) -> Any:
    if isinstance(cfg, dict):
        node: Any = cfg
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node
    return OmegaConf.select(cfg, key)


def _dset(d: dict[str, Any], key: str, value: Any) -> None:
    *parents, leaf = key.split(".")
    for part in parents:
        d = d.setdefault(part, {})
    old = d.get(leaf)
    if isinstance(old, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # as the typed schema would store it
    d[leaf] = value


def _largest_divisor(n: int, near: int) -> int:
    near = max(1, min(int(near), int(n)))
    for d in range(near, 0, -1):
        if n % d == 0:
            return d
    return 1


def derive(rules: Mapping[str, Mapping[str, Any]], cfg: DictConfig, source: str) -> dict[str, Any]:
    """Compute derived values in file order, each seeing the values derived before it."""
    out: dict[str, Any] = {}

    def get(key: str) -> Any:
        return out[key] if key in out else _select(cfg, key)

    for target, rule in rules.items():
        kind, of = rule["rule"], rule["of"]
        src = get(of)
        try:
            if kind == "copy":
                out[target] = src
            elif kind == "scale":
                v = src * float(rule.get("factor", 1.0))
                cur = get(target)
                out[target] = int(round(v)) if isinstance(cur, int) and not isinstance(cur, bool) else v
            elif kind == "divisor":
                near = rule.get("near", get(target))
                near = get(near) if isinstance(near, str) else near
                out[target] = _largest_divisor(int(src), int(near))
            elif kind == "preset":
                flat = flatten(preset_values(int(src)))
                if target not in flat:
                    raise SearchSpaceError(f"{source}: derived.{target}: rule 'preset' sets only {sorted(flat)}")
                out[target] = flat[target]
        except (TypeError, ValueError, ZeroDivisionError, OverflowError) as e:
            if isinstance(e, ConfigError):
                raise
            raise SearchSpaceError(f"{source}: derived.{target}: rule '{kind}' cannot use {of} = {src!r} ({e}). "
                                   f"Fix: point 'of' at a numeric key, or change the rule") from None
    return out


# ----------------------------------------------------------------------------------- loading
# The fields each distribution and each derived rule takes (besides ``dist`` / ``rule`` and ``of``).
FIELDS = {"choice": ("values",), "grid": ("values",), "uniform": ("low", "high"), "loguniform": ("low", "high"),
          "int": ("low", "high", "log"), "around": ("rel", "log", "zero_width")}
RULE_FIELDS = {"copy": (), "scale": ("factor",), "divisor": ("near",), "preset": ()}
PRESET_OF = "latent.dim"  # ups.config.preset_values(dim) takes a latent dim
_SCI_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)[eE][-+]?\d+")  # scientific notation YAML 1.1 reads as text
_KIND = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}


def _err(path: Path, where: str, msg: str) -> SearchSpaceError:
    return SearchSpaceError(f"{path}: {where}: {msg}")


def _check_key(path: Path, where: str, key: str, sweepable: set[str]) -> None:
    if key in sweepable:
        return
    if key in set(all_keys()):
        raise _err(path, where, f"'{key}' is a config field but not sweepable (data, run, eval and device "
                                f"settings stay fixed within a round; set them as overrides instead). "
                                f"Sweepable keys include: {', '.join(sorted(sweepable)[:12])} …")
    hint = did_you_mean(key, sorted(sweepable))
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    sib = sorted(k for k in sweepable if parent and k.startswith(parent + "."))
    valid = f" Valid keys under '{parent}': {', '.join(sib)}." if sib else \
        f" Sweepable sections: {', '.join(sorted({k.split('.')[0] for k in sweepable}))}."
    raise _err(path, where, f"unknown config key '{key}'.{hint}{valid}")


def _yaml_float(key: str, v: Any) -> Any:
    """``v`` as a number where ``key`` is a float key and ``v`` is scientific notation that YAML 1.1 read as text
    (``1e-4``); any other value as it is (a quoted plain number stays text, and is refused as such)."""
    return float(v) if key_type(key) is float and isinstance(v, str) and _SCI_NUMBER.fullmatch(v.strip()) else v


def _num(path: Path, where: str, spec: Mapping[str, Any], name: str) -> float:
    if name not in spec:
        raise _err(path, where, f"missing '{name}' (e.g. {{dist: {spec.get('dist')}, low: 1e-4, high: 1e-3}})")
    v = spec[name]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            if isinstance(v, bool):
                raise TypeError
            v = float(v)  # YAML reads 1e-4 (no dot) as a string
        except (TypeError, ValueError):
            raise _err(path, where, f"'{name}' = {v!r} is not a number. Fix: write a plain number, e.g. "
                                    f"{name}: 0.5") from None
    if not math.isfinite(v):
        raise _err(path, where, f"'{name}' = {v!r} must be finite")
    return v


def _value_kind(v: Any) -> str:
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "number"
    return {str: "string", list: "list", dict: "mapping"}.get(type(v), "null" if v is None else type(v).__name__)


def _check_values(path: Path, where: str, key: str, dist: str, values: list[Any]) -> None:
    """A choice/grid list: one kind of value (YAML quotes and true/1 mix silently otherwise), no repeats."""
    kinds = sorted({_value_kind(v) for v in values})
    if len(kinds) > 1:
        want = _KIND.get(key_type(key))  # type: ignore[arg-type]
        fix = f"write every value as {want}" if want else "write every value the same way"
        note = " (a quoted number is a string)" if "string" in kinds else ""
        raise _err(path, where, f"'values' mixes {' and '.join(kinds)} ({values!r}){note}. Fix: {fix}"
                   + (" (no quotes)" if want in ("an integer", "a number") else ""))
    for i, v in enumerate(values):
        if v in values[:i]:
            raise _err(path, where, f"value {v!r} is listed twice in {values!r}: {dist} would "
                                    f"{'run it twice' if dist == 'grid' else 'draw it twice as often'}. "
                                    f"Fix: remove the repeat")


def _parse_param(path: Path, key: str, spec: Any) -> Param:
    where = f"params.{key}"
    if not isinstance(spec, Mapping) or "dist" not in spec:
        raise _err(path, where, f"expected a mapping with 'dist' (one of {', '.join(DISTS)}), got {spec!r}")
    dist = spec["dist"]
    if not isinstance(dist, str) or dist not in DISTS:
        raise _err(path, where, f"unknown dist '{dist}'. Valid: {', '.join(DISTS)}")
    allowed = ("dist", *FIELDS[dist])
    extra = [str(k) for k in spec if k not in allowed]
    if extra:
        other = sorted({d for d, f in FIELDS.items() if set(extra) <= set(f)})
        hint = f" ({', '.join(repr(x) for x in extra)} belong to dist: {' / '.join(other)})" if other else ""
        raise _err(path, where, f"field(s) {extra} are not fields of dist '{dist}', which takes "
                                f"{', '.join(FIELDS[dist])}{hint}. Fix: remove them, or change 'dist'")
    kt = key_type(key)
    if dist in ("uniform", "loguniform", "int", "around") and kt in (bool, str, list):
        raise _err(path, where, f"dist '{dist}' draws numbers, but '{key}' holds {_KIND[kt]}. "
                                f"Fix: use dist: choice with values: [...]")
    if dist in ("uniform", "loguniform") and kt is int:
        raise _err(path, where, f"dist '{dist}' draws fractional values, but '{key}' is an integer, so every "
                                f"trial would fail. Fix: use dist: int (low and high inclusive)")
    if dist == "int" and kt is float:  # by the schema's annotation: int-typed and untyped keys take int draws
        raise _err(path, where, f"dist 'int' draws whole numbers, but '{key}' is a float in the config schema, so "
                                f"the search would try only whole values. Fix: use dist: uniform or dist: loguniform "
                                f"(same low and high)")
    if dist in ("choice", "grid"):
        values = spec.get("values")
        if not isinstance(values, list) or not values:
            raise _err(path, where, f"'{dist}' needs a non-empty 'values' list, e.g. values: [0.999, 0.9995]")
        # YAML 1.1 reads 1e-4 and 1.0e4 (no dot or no exponent sign) as strings, which matched no float reference
        # ("0.0001 is not one of ['1e-4', …]") and were blamed on quotes when mixed
        values = [_yaml_float(key, v) for v in values]
        _check_values(path, where, key, dist, values)
        return Param(key, dist, values=list(values))
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise _err(path, where, f"'log' = {log!r} must be true or false. Fix: write log: true or log: false "
                                f"(no quotes)")
    if dist == "around":
        rel = _num(path, where, {"rel": 0.2, **spec}, "rel")
        if not 0 < rel < 1:
            raise _err(path, where, f"'rel' = {rel} must be in (0, 1), e.g. 0.2 for ±20 %")
        zero_width = _num(path, where, {"zero_width": 0.0, **spec}, "zero_width")
        if zero_width < 0:
            raise _err(path, where, f"'zero_width' = {zero_width} must be ≥ 0 (the range [0, w] searched when the "
                                    f"champion's value is 0). Fix: e.g. zero_width: 0.02")
        return Param(key, dist, rel=rel, log=log, zero_width=zero_width)
    low, high = _num(path, where, spec, "low"), _num(path, where, spec, "high")
    if low > high or (low == high and dist != "int"):
        raise _err(path, where, f"low = {low} must be below high = {high}. Fix: swap them or widen the range")
    if dist == "loguniform" and low <= 0:
        raise _err(path, where, f"loguniform needs low > 0 (got {low}). Fix: use a positive low, e.g. 1e-5, "
                                f"or dist: uniform")
    if dist == "int" and not (float(low).is_integer() and float(high).is_integer()):
        raise _err(path, where, f"int bounds must be integers (got {low}, {high}). Fix: whole numbers for low and "
                                f"high (both inclusive), or dist: uniform for a fractional key")
    if log and low < 1:  # Optuna's IntDistribution(log=True) and Ray's lograndint both need low ≥ 1
        raise _err(path, where, f"int with log: true needs low ≥ 1 (got {low:g}): a log scale has no 0. Fix: low: 1 "
                                f"or more, or log: false")
    return Param(key, dist, low=low, high=high, log=log)


def _parse_rule(path: Path, target: str, spec: Any, sweepable: set[str]) -> dict[str, Any]:
    where = f"derived.{target}"
    _check_key(path, where, target, sweepable)
    rule = spec.get("rule") if isinstance(spec, Mapping) else None
    if not isinstance(rule, str) or rule not in RULES:
        raise _err(path, where, f"expected {{rule: one of {', '.join(RULES)}, of: <key>}}, got {spec!r}")
    takes = ("of", *RULE_FIELDS[rule])
    extra = [str(k) for k in spec if k not in ("rule", *takes)]
    if extra:
        near = [m for x in extra for m in difflib.get_close_matches(x, takes, n=1, cutoff=0.6)]
        hint = f" Did you mean '{near[0]}'?" if near else ""
        raise _err(path, where, f"field(s) {extra} are not fields of rule '{rule}', which takes "
                                f"{', '.join(takes)}.{hint} Fix: remove or rename them")
    of = spec.get("of")
    if not isinstance(of, str):
        raise _err(path, where, "missing 'of: <dotted key>'")
    if of not in set(all_keys()):
        near = suggest_key(of)
        raise _err(path, where, f"'of' names unknown config key '{of}'." + (f" Did you mean '{near}'?" if near else ""))
    if of == target:
        raise _err(path, where, f"rule '{rule}' reads its own key ('of: {of}'), so it changes nothing or repeats "
                                f"itself. Fix: name another key in 'of', or remove derived.{target}")
    out = dict(spec)
    of_t, tgt_t = key_type(of), key_type(target)
    if rule == "copy" and of_t and tgt_t and of_t is not tgt_t and not (of_t is int and tgt_t is float):
        raise _err(path, where, f"copies '{of}' ({_KIND[of_t]}) into '{target}', which holds {_KIND[tgt_t]}. "
                                f"Fix: copy a key of the same type, or use rule: scale")
    if rule == "scale":
        if of_t not in (int, float) or tgt_t not in (int, float):
            bad, bad_t = (of, of_t) if of_t not in (int, float) else (target, tgt_t)
            raise _err(path, where, f"rule 'scale' multiplies numbers, but '{bad}' holds "
                                    f"{_KIND.get(bad_t, 'no number')}. Fix: use rule: copy, or scale a numeric key")
        out["factor"] = _num(path, where, {"factor": 1.0, **spec}, "factor")
    if rule == "divisor":
        if of_t is not int or tgt_t is not int:
            bad, bad_t = (of, of_t) if of_t is not int else (target, tgt_t)
            raise _err(path, where, f"rule 'divisor' needs integer keys, but '{bad}' holds "
                                    f"{_KIND.get(bad_t, 'no integer')}. Fix: e.g. {{rule: divisor, of: "
                                    f"operator.hidden_dim, near: 8}} on operator.heads or operator.group_size")
        near = spec.get("near")
        if isinstance(near, str):
            if near.strip().lstrip("-").isdigit():
                raise _err(path, where, f"'near' = {near!r} is a quoted number. Fix: write near: {near.strip()}")
            if near not in set(all_keys()):
                hint = suggest_key(near)
                raise _err(path, where, f"'near' names unknown config key '{near}'."
                                        + (f" Did you mean '{hint}'?" if hint else "")
                                        + " Fix: give a config key or a positive integer")
            if key_type(near) not in (int, float):
                raise _err(path, where, f"'near' names '{near}', which is not a number. Fix: name an integer key "
                                        f"or give a positive integer")
        elif near is not None and (isinstance(near, bool) or not isinstance(near, (int, float))
                                   or near != int(near) or near < 1):
            raise _err(path, where, f"'near' = {near!r} must be a positive integer or a config key. "
                                    f"Fix: e.g. near: 8 or near: {target}")
    if rule == "preset":
        if of != PRESET_OF:
            raise _err(path, where, f"rule 'preset' applies the seed's scaling rules to a latent dim, so 'of' must "
                                    f"be {PRESET_OF} (got '{of}'). Fix: of: {PRESET_OF}, or use rule: copy/scale")
        settable = sorted(flatten(preset_values(8)))
        if target not in settable:
            raise _err(path, where, f"rule 'preset' sets only {', '.join(k for k in settable if k != PRESET_OF)}. "
                                    f"Fix: use rule: copy or scale for '{target}'")
    return out


def _rule_reads(target: str, rule: Mapping[str, Any]) -> list[str]:
    """The keys a derived rule reads: ``of``, a key in ``near`` (divisor; without near: the target itself)."""
    reads = [rule["of"]]
    if rule["rule"] == "divisor":
        near = rule.get("near", target)
        if isinstance(near, str):
            reads.append(near)
    return reads


def _check_derived(path: Path, params: Mapping[str, Param], derived: Mapping[str, Mapping[str, Any]]) -> None:
    """Derived rules run in file order after sampling: refuse a rule that silently replaces a sample, or that
    reads a key a later rule derives (it would see the base value; two such rules form a cycle)."""
    order = list(derived)
    for i, (target, rule) in enumerate(derived.items()):
        where = f"derived.{target}"
        if target in params and not (rule["rule"] == "divisor" and rule.get("near") == target):
            raise _err(path, where, f"'{target}' is also in params, and this rule would replace the sampled value "
                                    f"in every trial. Fix: remove it from params or from derived (to snap a sampled "
                                    f"value, use {{rule: divisor, of: <key>, near: {target}}})")
        for read in _rule_reads(target, rule):
            if read in derived and order.index(read) > i:
                cycle = target in _rule_reads(read, derived[read])
                raise _err(path, where, f"reads '{read}', which derived.{read} sets only later (rules run in file "
                                        f"order), so it would see the base value"
                                        + ("; the two rules read each other (a cycle). Fix: let one of them read "
                                           "a param instead" if cycle else
                                           f". Fix: move derived.{read} above derived.{target}"))


def _section(path: Path, data: Mapping[str, Any], name: str, example: str) -> dict[str, Any]:
    raw = data.get(name)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SearchSpaceError(f"{path}: {name}: expected a mapping of dotted keys, got {raw!r}. Fix: one "
                               f"dotted key per line under '{name}:', e.g. '{example}'")
    return raw


def _nested_example(key: str, spec: Any) -> str | None:
    """``stages: {operator: {epochs: {dist: …}}}`` → ``stages.operator.epochs`` (first leaf spec)."""
    while isinstance(spec, Mapping) and spec and "dist" not in spec and "rule" not in spec:
        k, spec = next(iter(spec.items()))
        key = f"{key}.{k}"
    return key if isinstance(spec, Mapping) else None


def load_space(path: str | Path, base: DictConfig | None = None) -> SearchSpace:
    """Read and validate a search-space YAML; with ``base``, also type-check every value."""
    path = Path(path)
    if not path.exists():
        shipped = Path(__file__).resolve().parents[2] / "search_spaces"  # the rounds' spaces, in a checkout
        folders = [d for d in dict.fromkeys([path.parent.resolve(), shipped]) if d.is_dir()]
        avail = [f for d in folders for f in sorted(d.glob("*.yaml")) if "params:" in f.read_text(errors="replace")]
        close = difflib.get_close_matches(path.name, [f.name for f in avail], n=1, cutoff=0.8)
        near = next((f for f in avail if close and f.name == close[0]), None)
        listed = "; ".join(f"{d}: {', '.join(f.name for f in avail if f.parent == d)}" for d in folders
                           if any(f.parent == d for f in avail))
        raise SearchSpaceError(f"{path}: search-space file not found. "
                               + (f"Did you mean {near}? " if near else "")
                               + f"Search spaces (YAML with params:) in {listed or 'no folder nearby'}. "
                               f"Fix: space=search_spaces/<name>.yaml, or a copy of one")
    data = read_yaml(path, SearchSpaceError, "search-space file") or {}
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{path}: expected a mapping with 'params:', got {type(data).__name__} {data!r:.60}. "
                               f"Fix: space= a search-space YAML (params: dotted config keys → distributions), e.g. a "
                               f"copy of search_spaces/round_a.yaml")
    unknown = set(data) - set(TOP_LEVEL)
    if unknown:
        raise SearchSpaceError(f"{path}: unknown top-level key(s) {sorted(map(str, unknown))}. Valid: "
                               f"{', '.join(TOP_LEVEL)} (distributions go under 'params:')")
    if not isinstance(data.get("description", ""), (str, type(None))):
        raise SearchSpaceError(f"{path}: description: expected text, got {data['description']!r}. Fix: quote it, "
                               f"description: \"…\"")
    params_raw = data.get("params") or {}
    if not isinstance(params_raw, dict) or not params_raw:
        raise SearchSpaceError(f"{path}: 'params' must be a non-empty mapping of dotted keys to distributions. Fix: "
                               f"e.g. 'params:' then '  stages.operator.optimizer.lr: {{dist: loguniform, low: 2.0e-4, "
                               f"high: 4.5e-3}}'")
    sweepable = set(sweepable_keys())
    sections = {k.split(".")[0] for k in all_keys()} | {k.rsplit(".", 1)[0] for k in all_keys()}
    params: dict[str, Param] = {}
    for key, spec in params_raw.items():
        key = str(key)
        if key in sections and isinstance(spec, Mapping) and "dist" not in spec:
            leaf = _nested_example(key, spec) or f"{key}.<field>"
            raise _err(path, f"params.{key}", f"nested sections are not read under params:. Fix: use dotted keys, "
                                              f"e.g. '{leaf}: {{dist: …}}' directly under params:")
        _check_key(path, f"params.{key}", key, sweepable)
        params[key] = _parse_param(path, key, spec)
    derived = {str(t): _parse_rule(path, str(t), s, sweepable) for t, s in
               _section(path, data, "derived", "operator.heads: {rule: divisor, of: operator.hidden_dim}").items()}
    _check_derived(path, params, derived)
    reference = {str(k): _yaml_float(str(k), v)
                 for k, v in _section(path, data, "reference", "stages.operator.optimizer.lr: 3.0e-4").items()}
    for key, value in reference.items():
        where = f"reference.{key}"
        _check_key(path, where, key, sweepable)
        if key in derived and key not in params:
            raise _err(path, where, f"derived.{key} computes this key in every trial, so the reference value is "
                                    f"never used. Fix: remove it from reference")
        if key not in params:
            raise _err(path, where, f"'{key}' is not in params, so this value would be set in every trial, not only "
                                    f"in the first (reference) one. Fix: add it to params, or set it for the whole "
                                    f"round as an override ({key}={value})")
    space = SearchSpace(path, str(data.get("description") or ""), params, reference, derived)
    if base is not None:
        check_against(space, base)
    return space


def resolve_around(space: SearchSpace, center: DictConfig, source: str = "champion") -> SearchSpace:
    """Turn ``around`` params into uniform/loguniform ranges ±rel around the center config's value."""
    params = dict(space.params)
    for key, p in space.params.items():
        if p.dist != "around":
            continue
        c = OmegaConf.select(center, key)
        if isinstance(c, bool) or not isinstance(c, (int, float)):
            raise _err(space.path, f"params.{key}", f"'around' needs a numeric value in the {source}, got {c!r}")
        if c == 0:  # ±rel of 0 is 0 itself (grad_clip 0 = no clipping, ttc.threshold 0 = always search):
            # held at 0 unless the space gives zero_width, the width of [0, w] to search instead
            params[key] = Param(key, "uniform", low=0.0, high=p.zero_width) if p.zero_width > 0 else \
                Param(key, "choice", values=[c])
            continue
        lo, hi = sorted((c * (1 - p.rel), c * (1 + p.rel)))
        if isinstance(c, int):  # at least one step beside the champion's value, but never from ≥ 1 down to 0 or
            # below (a champion's ttc.beam_width=1 became [0, 2]: round C refused it; epochs=1 drew 0, no stage)
            low = max(math.floor(lo), 1) if c >= 1 else math.floor(lo)
            params[key] = Param(key, "int", low=low, high=max(math.ceil(hi), low + 1), log=p.log and low >= 1)
        else:
            params[key] = Param(key, "loguniform" if p.log and lo > 0 else "uniform", low=lo, high=hi)
    return SearchSpace(space.path, space.description, params, space.reference, space.derived)


def check_around_windows(declared: SearchSpace, resolved: SearchSpace, center: DictConfig, where: str,
                         given: Collection[str] = (), source: str = "champion") -> None:
    """Each ``around`` window of ``declared`` as ``resolve_around`` made it on ``center`` (``resolved``): both ends
    must be values the config takes.  An EMA decay of 0.97 ± 20 % reaches 1.164 (the decay must be below 1): the
    config's own fix ("use e.g. 0.999") names a value neither the command nor the space can set, so the window is
    refused here with what to write in the space instead: the widest rel (zero_width for a centre of 0), to two
    digits, that the config takes, and a fixed range holding the centre; both checked before they are offered.
    ``where``: the file the centre was read from; ``given``: keys whose centre the command line set instead."""
    for key, p in declared.params.items():
        if p.dist != "around" or resolved.params[key].dist == "choice":
            continue
        refused = _refused_end(resolved, center, key)
        if refused is None:
            continue
        c = OmegaConf.select(center, key)
        knob = "zero_width" if c == 0 else "rel"
        window = resolved.params[key]
        centre = f"the command line's {c:g}" if key in given else f"the {source}'s {c:g} ({where})"
        head = (f"±{p.rel:g} around {centre}" if c else f"zero_width {p.zero_width:g} from {centre}") + \
            f" gives {window.low:g}…{window.high:g}: {refused[0]:g} is refused ({refused[1]})"
        fix = _around_fix(declared, resolved, center, key, knob, refused[0], given)
        raise _err(declared.path, f"params.{key}", f"{head}. Fix: {fix}")


def _config_message(e: ConfigError, space: SearchSpace) -> str:
    """What the config said of a materialized point, without the space file's and the config's own prefixes."""
    text = str(e)
    for prefix in (f"{space.path}: ", "config: "):
        text = text[len(prefix):] if text.startswith(prefix) else text
    return text


def _refused_end(space: SearchSpace, base: DictConfig, key: str) -> tuple[float, str] | None:
    """(the end of ``key``'s range the config refuses, why without its fix), or None when both are taken."""
    p = space.params[key]
    for value in (p.low, p.high):
        try:
            space.materialize(base, {key: value})
        except SearchSpaceError:
            raise
        except ConfigError as e:
            return float(value), re.sub(r"\. Fix: .*$", "", _config_message(e, space), flags=re.DOTALL)
    return None


def _around_fix(declared: SearchSpace, resolved: SearchSpace, center: DictConfig, key: str, knob: str,
                refused: float, given: Collection[str]) -> str:
    """What to write in the space for an ``around`` window of ``key`` with a refused end (``check_around_windows``):
    the entry with the widest ``knob`` (rel, or zero_width), to two digits, that the config takes, and a fixed
    range that holds the centre; each one tried here before it is offered."""
    p, c = declared.params[key], OmegaConf.select(center, key)
    a_copy = "(or a copy of it, as space=<copy.yaml>)"

    def window(size: float) -> Param:
        one = SearchSpace(declared.path, declared.description, {key: replace(p, **{knob: size})},
                          declared.reference, declared.derived)
        return resolve_around(one, center).params[key]

    def takes(prm: Param) -> bool:
        return _refused_end(SearchSpace(resolved.path, resolved.description, {**resolved.params, key: prm},
                                        resolved.reference, resolved.derived), center, key) is None

    good, bad = getattr(p, knob) * 1e-6, getattr(p, knob)
    wide, fixes = resolved.params[key], []
    narrow = None  # an integer window keeps a step beside the centre: there no rel may make it fit
    if takes(window(good)):
        for _ in range(30):  # to a 1e-9 of the declared size: more than the 2 digits shown need
            mid = (good + bad) / 2
            good, bad = (mid, bad) if takes(window(mid)) else (good, mid)
        size = next((x for digits in range(2, 8) for x in [_round_down(good, digits)] if x > 0 and takes(window(x))),
                    good)
        narrow = window(size)
        entry = {"dist": "around", "rel": p.rel, "log": p.log, "zero_width": p.zero_width, knob: size}
        shown = ", ".join(f"{k}: {v}" if k == "dist" else f"{k}: {str(v).lower() if isinstance(v, bool) else f'{v:g}'}"
                          for k, v in entry.items() if k in ("dist", "rel", knob) or v)
        fixes.append(f"params.{key}: {{{shown}}} ({narrow.low:g}…{narrow.high:g} here)")
    low = wide.low if refused != wide.low else (narrow.low if narrow else c)
    high = wide.high if refused != wide.high else (narrow.high if narrow else c)
    fixed = (Param(key, "int", low=int(low), high=int(high)) if wide.dist == "int" else
             Param(key, wide.dist, low=float(f"{low:g}"), high=float(f"{high:g}")))
    if fixed.low <= c <= fixed.high and fixed.low < fixed.high and takes(fixed):
        fixes.append(f"a fixed range that holds {c:g}: params.{key}: {{dist: {fixed.dist}, low: {fixed.low:g}, "
                     f"high: {fixed.high:g}}}" + (f" (and no {key}=… on the command line)" if key in given else ""))
    if not fixes:
        return (f"remove params.{key} from {declared.path} {a_copy}: every {knob} reaches a value the config "
                f"refuses; the trials keep {c:g}")
    return f"in {declared.path} {a_copy}, " + ", or ".join(fixes)


def _round_down(x: float, digits: int) -> float:
    """``x`` > 0 rounded down to ``digits`` significant digits (0.0309 → 0.03 at 2)."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.floor(x * scale) / scale


def check_against(space: SearchSpace, base: DictConfig) -> None:
    """Apply the reference point and each distribution's extremes to base: types and scaling rules."""
    probes: list[dict[str, Any]] = [{}]
    for key, p in space.params.items():
        if p.dist in ("choice", "grid"):
            probes += [{key: v} for v in p.values]
        elif p.dist == "int":  # every value of a short range; a wider one at each end and its neighbour, so a
            # divisibility rule always meets a value it breaks (hidden_dim 8…64 passed on 8 and 64 while 49 of its
            # 57 values broke heads | hidden in the trial)
            lo, hi = int(p.low), int(p.high)
            ints = range(lo, hi + 1) if hi - lo < INT_ALL_VALUES else dict.fromkeys([lo, lo + 1, hi - 1, hi])
            probes += [{key: v} for v in ints]
        elif p.dist in ("uniform", "loguniform"):
            probes += [{key: p.low}, {key: p.high}]
    for probe in probes:
        try:
            space.materialize(base, {k: p.encode(v) for k, v in probe.items() for p in [space.params[k]]})
        except SearchSpaceError:
            raise
        except ConfigError as e:
            inner = _config_message(e, space)
            culprit = next((t for t in space.derived if f"'{t}'" in inner), None)
            if culprit is not None:  # the derived rule's result is what the config refuses
                given = (f"params.{k} = {v!r}" for k, v in probe.items()) if probe else iter(["the reference point"])
                rule = space.derived[culprit]
                raise SearchSpaceError(f"{space.path}: derived.{culprit}: with {next(given)}, rule '{rule['rule']}' "
                                       f"of {rule['of']} gives a value the config refuses: {inner}") from None
            where = f"params.{next(iter(probe))}" if probe else "reference"
            raise SearchSpaceError(f"{space.path}: {where}: value {probe or space.reference} is invalid for the "
                                   f"config: {inner}") from None
    ref = space.reference_point(base)
    for key, p in space.params.items():
        v = ref[key]
        # with no reference.<key> in the file the reference is the base config's value: say so, it is not in the file
        origin = "" if key in space.reference else " (the base config's value: the file has no reference." \
            f"{key})"
        if p.dist in ("choice", "grid") and v not in [p.encode(x) for x in p.values]:
            raise _err(space.path, f"reference.{key}", f"reference value {p.decode(v)!r}{origin} is not one of the "
                                                        f"choices {p.values}. Fix: add it to 'values' or set "
                                                        f"reference.{key}: <one of them> (the round's first trial and "
                                                        "the small-eval gates' yardstick)")
        if p.dist in ("uniform", "loguniform", "int") and not (p.low <= float(v) <= p.high):
            raise _err(space.path, f"reference.{key}", f"reference value {v!r}{origin} is outside "
                                                        f"[{p.low}, {p.high}]. Fix: widen the range or set "
                                                        f"reference.{key}: <a value inside it>")
    check_combinations(space, base)


# ------------------------------------------------------------------------------ combinations
# Values that pass one at a time can still break a cross-field rule together (ttc.beam_width ≤ ttc.candidates,
# heads | hidden_dim, sigma_min < sigma_max): every combination of the params' representative values is
# materialized as a trial does and validated, up to COMBO_CAP of them; above, seeded rows: the all-low and all-high
# corners, rows that put every pair of values together (the other params drawn at random), then random rows up
# to COMBO_SAMPLE. About 2 ms a row (validate_config on a DictConfig): ≤ 0.3 s for the shipped spaces.
COMBO_CAP = 256
COMBO_SAMPLE = 128
INT_ALL_VALUES = 16  # an int range of at most this many values is tried whole (heads 2…8 against hidden sizes)


def representative_values(space: SearchSpace, base: DictConfig) -> dict[str, list[Any]]:
    """Per param, the values worth combining, encoded as the searcher hands them to a trial: every choice/grid
    value; every value of an int range of at most ``INT_ALL_VALUES``; else a range's low, its reference
    value (when inside the range) and high. Unresolved ``around`` params
    are left out (they keep the base value until resolve_around)."""
    ref = space.reference_point(base)
    out: dict[str, list[Any]] = {}
    for key, p in space.params.items():
        if p.dist in ("choice", "grid"):
            out[key] = [p.encode(v) for v in p.values]
        elif p.dist == "int" and p.high - p.low < INT_ALL_VALUES:  # a divisibility rule can break inside
            out[key] = list(range(int(p.low), int(p.high) + 1))
        elif p.dist in ("uniform", "loguniform", "int"):
            cast = int if p.dist == "int" else float
            r = ref[key]
            mid = [cast(r)] if isinstance(r, (int, float)) and not isinstance(r, bool) and p.low <= r <= p.high else []
            out[key] = list(dict.fromkeys([cast(p.low), *mid, cast(p.high)]))
    return out


def _combinations(reps: Mapping[str, list[Any]], seed: int = 0) -> list[dict[str, Any]]:
    """All combinations up to COMBO_CAP; above, rows covering every pair of values, then random rows."""
    keys, vals = list(reps), list(reps.values())
    if math.prod(len(v) for v in vals) <= COMBO_CAP:
        return [dict(zip(keys, row)) for row in itertools.product(*vals)]
    rng = random.Random(seed)
    pairs = list(itertools.combinations(range(len(keys)), 2))
    rows: list[list[int]] = []
    covered: set[tuple[int, int, int, int]] = set()

    def add(row: list[int]) -> None:
        rows.append(row)
        covered.update((i, row[i], j, row[j]) for i, j in pairs)

    add([0] * len(vals))
    add([len(v) - 1 for v in vals])
    for i, j in pairs:
        for a, b in itertools.product(range(len(vals[i])), range(len(vals[j]))):
            if (i, a, j, b) not in covered:
                row = [rng.randrange(len(v)) for v in vals]
                row[i], row[j] = a, b
                add(row)
    while len(rows) < COMBO_SAMPLE:
        add([rng.randrange(len(v)) for v in vals])
    return [{k: vals[n][row[n]] for n, k in enumerate(keys)} for row in rows]


def check_combinations(space: SearchSpace, base: DictConfig) -> None:
    """Refuse a space in which some combination of swept values breaks a config rule (see COMBO_CAP)."""
    reps = representative_values(space, base)
    if len(reps) < 2:  # one param: each of its values was applied on its own (check_against)
        return
    base_dict = to_dict(base)
    view = OmegaConf.create(base_dict)  # untyped: the values were type-checked one by one; rules are checked here
    parents: dict[str, Any] = {}
    touched: set[str] = set()

    def refused(sampled: Mapping[str, Any]) -> str | None:
        """The config's message for this trial, None when it is valid (derived rules applied as in a trial)."""
        cfg, values = space.materialize_dict(base_dict, sampled)
        touched.update(values)
        for key in touched:
            parent, leaf = key.rsplit(".", 1)
            if parent not in parents:
                parents[parent] = OmegaConf.select(view, parent)
            parents[parent][leaf] = _select(cfg, key)
        try:
            validate_config(view)
            check_model_grid(view)
        except ConfigError as e:
            msg = str(e)
            return msg[len("config: "):] if msg.startswith("config: ") else msg
        return None

    ref = space.reference_point(base)
    for combo in _combinations(reps):
        msg = refused(combo)
        if msg is None:
            continue
        for key in reps:  # shrink: back to the reference value every param the failure does not need
            if combo[key] != ref[key] and (m := refused({**combo, key: ref[key]})) is not None:
                combo, msg = {**combo, key: ref[key]}, m
        keys = [k for k in reps if combo[k] != ref[k] or k in msg] or list(reps)
        shown = ", ".join(f"{k} = {space.params[k].decode(combo[k])!r}" for k in keys)
        _, values = space.materialize_dict(base_dict, combo)
        rules = [t for t in space.derived if t in msg]
        via = "".join(f", derived {t} = {values[t]!r}" for t in rules)
        rule, _, fix = msg.partition(". Fix: ")
        params = " or ".join(f"params.{k}" for k in keys)
        raise SearchSpaceError(
            f"{space.path}: {' + '.join(f'params.{k}' for k in keys)}: together, {shown}{via} break a config rule, so "
            f"every trial that draws them would fail: {rule}" + (f" ({fix})" if fix else "") + f". Fix: narrow "
            f"{params} so that no combination breaks the rule, or "
            + (f"change derived.{rules[0]} so that it keeps them consistent" if rules else
               "add a derived rule that keeps them consistent (copy, scale, divisor or preset: docs/SWEEPS.md)"))
