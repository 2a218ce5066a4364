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
from typing import Any, Iterable, Mapping

from ray.tune import Stopper

from ups.leaderboard import NO_EVAL_REASON, finite_or_none

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
    last_iteration: dict[str, int] = field(default_factory=dict)  # trial id → its latest training_iteration

    def update(self, trial_id: str, result: Mapping[str, Any]) -> str | None:
        if trial_id in self.reasons:
            return self.reasons[trial_id]
        reason = self._check(trial_id, result)
        if reason:
            self.reasons[trial_id] = reason
        return reason

    def replay(self, trial_id: str, history: Iterable[Mapping[str, Any]]) -> str | None:
        """Feed a trial's earlier reports, in the order it made them (a resumed sweep: what this tracker had
        seen before the driver stopped, ``ups.tune.restore.restore_gates``); returns its gate reason, if any."""
        reason = None
        for result in history:
            reason = self.update(trial_id, result)
        return reason

    def _check(self, trial_id: str, r: Mapping[str, Any]) -> str | None:
        it = int(r.get("training_iteration", 0) or 0)
        last = self.__dict__.setdefault("last_iteration", {})  # a tracker pickled before the field existed
        if it and it < last.get(trial_id, 0):  # Tune restarted it (a retry): from an earlier
            # checkpoint, or from the start when its checkpoint was lost; a stage's first losses again are no divergence
            self.best_loss = {k: v for k, v in self.best_loss.items() if k[0] != trial_id}
        if it:
            last[trial_id] = it
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


def gate_trackers(stop: Any) -> list[GateTracker]:
    """The trackers of the ``PhysicsGateStopper``s in a Tune stopper: itself, or the parts of Ray's
    ``CombinedStopper`` (``_stoppers`` in Ray 2.60)."""
    parts = getattr(stop, "_stoppers", None) or (stop,)
    return [s.tracker for s in parts if isinstance(s, PhysicsGateStopper)]


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


NOT_APPLIED = "not applied"  # marks a note in small_eval_gates' reasons: a gate the baseline gives no figure for


def small_eval_gates(row: Mapping[str, Any], base: Mapping[str, Any] | None, cfg: Any) -> tuple[bool, list[str]]:
    """The playbook's small-eval gates vs the round's baseline row → (pass, reasons).

    ``reasons``: the failed gates, then notes (containing ``NOT_APPLIED``) on gates that were not applied
    because the baseline legitimately has no such figure (ECE of a deterministic baseline); a pass has no
    failed gate.  A baseline without nRMSE, conservation gap or BC violation fails the trial: those figures
    come with every eval, so their absence means the baseline is broken, and no gate is skipped silently."""
    nrmse = finite_or_none(row.get("nrmse"))
    if nrmse is None and str(row.get("status")) == "completed":  # it ran its final evaluation: NaN/Inf came back
        return False, ["no finite small-eval nRMSE (the final evaluation returned NaN/Inf or nothing)"]
    if nrmse is None:
        return False, [NO_EVAL_REASON]
    if base is None:
        return False, ["no baseline figures to compare with"]
    tol = float(cfg.abs_tol)
    fails = _nrmse_gate(nrmse, finite_or_none(base.get("nrmse")), float(cfg.nrmse_margin), tol)
    notes: list[str] = []
    for col, ratio in (("conservation_gap", cfg.conservation_ratio), ("bc_violation", cfg.bc_ratio)):
        fails += _ratio_gate(col, finite_or_none(row.get(col)), finite_or_none(base.get(col)), ratio, tol)
    v, ref = finite_or_none(row.get("ece")), finite_or_none(base.get("ece"))
    if ref is None:  # a deterministic baseline (persistence/linear/FNO, or eval.ensemble_size < 2) has no ECE
        notes.append(f"ece gate {NOT_APPLIED} (the baseline has no ECE: deterministic)")
    else:
        fails += _ratio_gate("ece", v, ref, cfg.ece_ratio, tol)
    return not fails, fails + notes


def _nrmse_gate(nrmse: float, b: float | None, margin: float, tol: float) -> list[str]:
    if b is None:
        return ["baseline has no finite nrmse, so the nRMSE gate cannot be applied. Fix: let the reference "
                "trial finish its final eval, or set small_eval.fallback to a baseline row with an nrmse"]
    if nrmse <= b - margin + tol:  # tol: an exact margin (0.03 → 0.02) passes despite float rounding
        return []
    return [f"nrmse {nrmse:.4g} not ≤ baseline {b:.4g} − {margin:g}"]


def _ratio_gate(col: str, v: float | None, ref: float | None, ratio: float, tol: float) -> list[str]:
    if ref is None:
        return [f"baseline has no finite {col}, so the {col} gate cannot be applied. Fix: check the baseline "
                f"row's {col} (every eval reports it), or set small_eval.fallback to another baseline"]
    if v is None:
        return [f"{col} missing"]
    if v > ratio * ref + tol:
        return [f"{col} {v:.4g} > {ratio:g}× baseline {ref:.4g}"]
    return []
