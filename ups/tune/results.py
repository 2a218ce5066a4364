"""Trial → leaderboard row, and the driver-side Tune callback that writes rows as trials finish.

Rows are written from the driver the moment a trial terminates (``on_trial_complete`` /
``on_trial_error``), so a killed driver loses nothing finished; ``upsert_rows`` dedupes by run_id, so
a resumed sweep re-writing a row never duplicates it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from ray.tune import Callback

from ups.config import config_hash
from ups.leaderboard import finite_or_none, upsert_rows
from ups.tune.gates import GateLimits, GateTracker
from ups.tune.space import SearchSpace

EVAL_COLUMNS = ("nrmse", "nrmse_ttc", "nrmse_pdebench", "conservation_gap", "energy_violation",
                "bc_violation", "ece", "rollout_horizon")


@dataclass
class RowContext:
    """What every row of one sweep shares."""

    round: str
    experiment: str
    space: SearchSpace
    base: dict[str, Any]
    reference_point: dict[str, Any]
    scheduler: str = "asha"
    gpu_per_trial: float = 0.0
    cost_per_gpu_hour: float = 0.0
    tags: list[str] = field(default_factory=list)

    def run_id(self, trial_id: str) -> str:
        return f"{self.experiment}-{trial_id}"


def stop_reason(result: Mapping[str, Any], gate_reason: str | None, scheduler: str, errored: bool) -> tuple[str, str]:
    """(status, stop_reason) for the leaderboard."""
    if errored:
        return "error", "error (see the trial's error.txt)"
    if gate_reason:
        return "stopped", gate_reason
    if result.get("final"):
        return "completed", "completed"
    it = result.get("training_iteration", "?")
    if scheduler in ("asha", "pbt"):
        return "stopped", f"{scheduler}: early stop at iteration {it}"
    return "stopped", f"stopped at iteration {it}"


def trial_row(ctx: RowContext, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any],
              *, gate_reason: str | None, errored: bool = False, checkpoint: str | None = None) -> dict[str, Any]:
    status, reason = stop_reason(result, gate_reason, ctx.scheduler, errored)
    try:
        cfg, values = ctx.space.materialize_dict(ctx.base, config)
        chash, cjson = config_hash(cfg), json.dumps(cfg, sort_keys=True, default=str)
    except Exception:  # a bad sample is recorded, not fatal for the leaderboard
        values, chash, cjson = ctx.space.decode(config), "", ""
    wall = finite_or_none(result.get("time_total_s")) or 0.0
    gpu_h = wall * ctx.gpu_per_trial / 3600.0
    is_ref = all(config.get(k) == v for k, v in ctx.reference_point.items())
    row: dict[str, Any] = {
        "run_id": ctx.run_id(trial_id),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "label": "reference" if is_ref else ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}"
                                                      for k, v in ctx.space.decode(config).items()),
        "round": ctx.round, "kind": "trial",
        "wall_clock": round(wall, 2), "gpu_hours": round(gpu_h, 5),
        "est_cost": round(gpu_h * ctx.cost_per_gpu_hour, 4),
        "params": result.get("params"),
        "status": status, "stop_reason": reason,
        "tags": ";".join(ctx.tags + (["reference"] if is_ref else [])),
        "config_hash": chash, "checkpoint": checkpoint or "", "trial_id": trial_id,
        "experiment": ctx.experiment, "config_json": cjson,
        "val_nrmse": finite_or_none(result.get("val_nrmse")), "epochs": result.get("training_iteration"),
        "sampled_json": json.dumps(values, sort_keys=True, default=str),
    }
    if result.get("final"):
        for col in EVAL_COLUMNS:
            row[col] = finite_or_none(result.get(col))
    return row


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class LeaderboardCallback(Callback):
    """Writes one leaderboard row per terminated trial (driver side)."""

    def __init__(self, path: Path, ctx: RowContext, limits: GateLimits, gates_enabled: bool = True):
        self.path = Path(path)
        self.ctx = ctx
        self.tracker = GateTracker(limits)
        self.gates_enabled = gates_enabled  # off: no trial is stopped by a gate, so none is labelled so
        self.written: set[str] = set()

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.gates_enabled:
            self.tracker.update(trial.trial_id, result)

    def _write(self, trial: Any, errored: bool) -> None:
        result = dict(trial.last_result or {})
        reason = self.tracker.reasons.get(trial.trial_id)
        ckpt = trial.checkpoint.path if getattr(trial, "checkpoint", None) is not None else None
        row = trial_row(self.ctx, trial.trial_id, trial.config, result, gate_reason=reason,
                        errored=errored, checkpoint=ckpt)
        upsert_rows(self.path, [row])
        self.written.add(trial.trial_id)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, errored=True)
