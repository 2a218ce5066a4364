"""Physics gates: stop trials that go non-finite, break conservation/BCs, or diverge; small-eval gates.

Two layers (the playbook's): *in-flight* gates (``GateTracker`` + the Tune ``PhysicsGateStopper``),
checked on every epoch report against limits scaled from a baseline's figures, and *small-eval* gates
(``small_eval_gates``), checked on a finished trial's eval against the round's baseline.  Optuna's
constraints_func never sees Tune metrics, so these gates live here.  The trackers are pure Python;
only ``PhysicsGateStopper`` touches Ray.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from ray.tune import Stopper

from ups.leaderboard import finite_or_none

NONFINITE_KEYS = ("train_loss", "val_nrmse", "val_conservation_gap", "val_bc_violation")


@dataclass
class GateLimits:
    """Absolute in-flight limits (already scaled by the baseline)."""

    conservation_gap: float = math.inf
    bc_violation: float = math.inf
    divergence_factor: float = 20.0
    min_iterations: int = 1
    skip_stages: tuple[str, ...] = ("autoencoder",)
    grace_epochs: int = 1

    @classmethod
    def from_baseline(cls, gates: Any, baseline: Mapping[str, Any] | None) -> "GateLimits":
        """limit = max(multiple × baseline figure, floor); no baseline → the floors × multiple."""
        def lim(col: str, multiple: float, floor: float) -> float:
            ref = finite_or_none((baseline or {}).get(col))
            return max(multiple * ref, floor) if ref is not None else floor

        return cls(conservation_gap=lim("conservation_gap", gates.conservation_multiple, gates.conservation_floor),
                   bc_violation=lim("bc_violation", gates.bc_multiple, gates.bc_floor),
                   divergence_factor=float(gates.divergence_factor), min_iterations=int(gates.min_iterations),
                   skip_stages=tuple(gates.skip_stages), grace_epochs=int(gates.grace_epochs))



@dataclass
class GateTracker:
    """Per-trial history → the first gate a trial trips (reason string) or None."""

    limits: GateLimits
    best_loss: dict[tuple[str, str], float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def update(self, trial_id: str, result: Mapping[str, Any]) -> str | None:
        if trial_id in self.reasons:
            return self.reasons[trial_id]
        reason = self._check(trial_id, result)
        if reason:
            self.reasons[trial_id] = reason
        return reason

    def _check(self, trial_id: str, r: Mapping[str, Any]) -> str | None:
        it = int(r.get("training_iteration", 0) or 0)
        if r.get("nonfinite"):
            return f"gate:nonfinite ({r.get('nonfinite_keys', 'metrics')} NaN/Inf at iteration {it})"
        for k in NONFINITE_KEYS:
            if k in r and r[k] is not None and finite_or_none(r[k]) is None:
                return f"gate:nonfinite ({k}={r[k]} at iteration {it})"
        stage = str(r.get("stage", ""))
        loss = finite_or_none(r.get("train_loss"))
        if loss is not None and stage != "done":
            key = (trial_id, stage)
            best = self.best_loss.get(key)
            if best is not None and it >= self.limits.min_iterations and best > 0 \
                    and loss > self.limits.divergence_factor * best:
                return (f"gate:diverging (train_loss {loss:.3g} > {self.limits.divergence_factor:g}× best "
                        f"{best:.3g} in stage {stage} at iteration {it})")
            self.best_loss[key] = loss if best is None else min(best, loss)
        if stage in self.limits.skip_stages or int(r.get("epoch", 1) or 1) < self.limits.grace_epochs:
            return None
        gap = finite_or_none(r.get("val_conservation_gap"))
        if gap is not None and gap > self.limits.conservation_gap:
            return f"gate:conservation (gap {gap:.3g} > limit {self.limits.conservation_gap:.3g} at iteration {it})"
        bc = finite_or_none(r.get("val_bc_violation"))
        if bc is not None and bc > self.limits.bc_violation:
            return f"gate:bc (violation {bc:.3g} > limit {self.limits.bc_violation:.3g} at iteration {it})"
        return None


class PhysicsGateStopper(Stopper):
    """Tune Stopper: ends a trial when it trips a gate (the reason is recomputed by the leaderboard)."""

    def __init__(self, limits: GateLimits):
        self.tracker = GateTracker(limits)

    def __call__(self, trial_id: str, result: dict) -> bool:
        return self.tracker.update(trial_id, result) is not None

    def stop_all(self) -> bool:
        return False


class ComputeBudgetStopper(Stopper):
    """Ends the whole sweep once its trials have used ``budget_s`` trial-seconds (Σ time_this_iter_s);
    ``spent_s``: what they had used before (a resumed sweep)."""

    def __init__(self, budget_s: float, spent_s: float = 0.0):
        self.budget_s = float(budget_s)
        self.spent_s = float(spent_s)

    def __call__(self, trial_id: str, result: dict) -> bool:
        self.spent_s += float(result.get("time_this_iter_s") or 0.0)
        return False

    def stop_all(self) -> bool:
        return self.spent_s >= self.budget_s


def small_eval_gates(row: Mapping[str, Any], base: Mapping[str, Any] | None, cfg: Any) -> tuple[bool, list[str]]:
    """The playbook's small-eval gates vs the round's baseline row → (pass, failed/missing reasons)."""
    fails: list[str] = []
    nrmse = finite_or_none(row.get("nrmse"))
    if nrmse is None:
        return False, ["no small-eval (trial stopped before its final evaluation)"]
    if base is None:
        return False, ["no baseline figures to compare with"]
    tol = float(cfg.abs_tol)
    b = finite_or_none(base.get("nrmse"))
    if b is not None and not nrmse <= b - cfg.nrmse_margin:
        fails.append(f"nrmse {nrmse:.4g} not ≤ baseline {b:.4g} − {cfg.nrmse_margin:g}")
    for col, ratio in (("conservation_gap", cfg.conservation_ratio), ("bc_violation", cfg.bc_ratio),
                       ("ece", cfg.ece_ratio)):
        v, ref = finite_or_none(row.get(col)), finite_or_none(base.get(col))
        if ref is None:
            continue  # baseline has no such figure (e.g. ECE of a deterministic baseline)
        if v is None:
            fails.append(f"{col} missing")
        elif v > ratio * ref + tol:
            fails.append(f"{col} {v:.4g} > {ratio:g}× baseline {ref:.4g}")
    return not fails, fails
