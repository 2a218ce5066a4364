"""Trial → leaderboard row, and the driver-side Tune callback that writes rows as trials finish.

Rows are written from the driver the moment a trial terminates (``on_trial_complete`` /
``on_trial_error``), so a killed driver loses nothing finished; ``upsert_rows`` dedupes by run_id, so
a resumed sweep re-writing a row never duplicates it.
"""
from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence

from ray.tune import Callback

from ups.config import config_hash
from ups.leaderboard import EVAL_COLUMNS, finite_or_none, upsert_rows
from ups.tune.gates import GateLimits, GateTracker
from ups.tune.pbt_schedule import read_pbt_schedule
from ups.tune.space import SearchSpace, trains_point


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
    data_hash: str = ""  # the sweep's data: reports pair trials with the baselines of the same data
    label: str = ""  # run.label: the user's name for the sweep's trials, before each row's own label

    def run_id(self, trial_id: str) -> str:
        return f"{self.experiment}-{trial_id}"


def row_tags(base: Any) -> list[str]:
    """The user's ``run.tags`` of a sweep's base config, as leaderboard tags (``;`` separates tags there)."""
    return [str(t).replace(";", ",") for t in (base.run.tags or []) if str(t).strip()]


GPU_SHARE = "gpu_share"  # in every report of ups_trial: the GPUs Ray gave the trial then (a resume may change them)


def gpu_seconds(dt: float, result: Mapping[str, Any], fallback_share: float) -> float:
    """GPU-seconds of one report's ``dt`` seconds: at the share the trial reported running on, or, for a trainable
    that does not report it (a sweep started before it was reported), at ``fallback_share`` (``resources.gpu``)."""
    share = finite_or_none(result.get(GPU_SHARE))
    return dt * (float(share) if share is not None else fallback_share)


INTERRUPTED = "interrupted"  # the sweep was stopped (Ctrl-C / SIGINT) with this trial unfinished


def stop_reason(result: Mapping[str, Any], gate_reason: str | None, scheduler: str, errored: bool,
                cut: str | None = None) -> tuple[str, str]:
    """(status, stop_reason) for the leaderboard.  ``cut``: the trial was still running when the sweep's
    loop ended, because of ``INTERRUPTED`` or a sweep budget (its key: ``time_budget_s``, ...)."""
    it = result.get("training_iteration", "?")
    if errored:
        return "error", "error (see the trial's error.txt)"
    if cut == INTERRUPTED:
        return INTERRUPTED, f"sweep interrupted at iteration {it}; resume=true continues it"
    if gate_reason:
        return "stopped", gate_reason
    if cut:
        return "stopped", f"sweep budget {cut} reached at iteration {it}"
    if result.get("final"):
        return "completed", "completed"
    if scheduler in ("asha", "pbt"):
        return "stopped", f"{scheduler}: early stop at iteration {it}"
    return "stopped", f"stopped at iteration {it}"


def trial_row(ctx: RowContext, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any],
              *, gate_reason: str | None, errored: bool = False, checkpoint: str | None = None,
              cut: str | None = None, pbt_schedule: Sequence[Mapping[str, Any]] = (),
              compute_s: float | None = None, gpu_s: float | None = None, retries: int = 0) -> dict[str, Any]:
    """``retries``: how often Tune restarted the trial after a failure (a lost node, a killed worker; tag
    ``retried:N``).  ``pbt_schedule`` (PBT rounds): the stretches the trial's weights trained in (``ups.tune.pbt_schedule``),
    stored as JSON in the row's ``pbt_schedule`` ("" for a trial never exploited); the row's config is its last.
    ``compute_s``: the trial-seconds the trial itself ran (Σ its ``time_this_iter_s``: ``LeaderboardCallback``),
    its ``wall_clock`` and what its GPU-hours and cost are priced on; without it, its last ``time_total_s``,
    which for a trial PBT exploited is its donor's running time up to the checkpoint it went on from, plus
    its own since.  ``gpu_s``: its GPU-seconds, each report's seconds at the GPU share it ran on (``gpu_seconds``),
    what ``gpu_hours`` and ``est_cost`` are; without it, the seconds at ``ctx.gpu_per_trial``."""
    status, reason = stop_reason(result, gate_reason, ctx.scheduler, errored, cut)
    try:
        cfg, values = ctx.space.materialize_dict(ctx.base, config)
        chash, cjson = config_hash(cfg), json.dumps(cfg, sort_keys=True, default=str)
    except Exception:  # a bad sample is recorded, not fatal for the leaderboard
        cfg, values, chash, cjson = {}, ctx.space.decode(config), "", ""
    # with TTC off, the eval's nrmse_ttc is the plain rollout's figure: the tag says so on a shared leaderboard
    ttc_off = [] if (cfg.get("ttc") or {}).get("enabled", True) else ["ttc:off"]
    epochs = epochs_run(result)
    wall = (finite_or_none(compute_s) if compute_s is not None else finite_or_none(result.get("time_total_s"))) or 0.0
    gpu_h = (finite_or_none(gpu_s) if gpu_s is not None else wall * ctx.gpu_per_trial) / 3600.0
    is_ref = trains_point(config, ctx.reference_point)
    row: dict[str, Any] = {
        "run_id": ctx.run_id(trial_id),
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        # the values the trial trained with: a derived rule may move a sample (round B: heads 6 of hidden 64 → 4)
        "label": (f"{ctx.label}: " if ctx.label else "")
        + ("reference" if is_ref else ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(values.get(k, v))}"
                                                for k, v in ctx.space.decode(config).items())),
        "round": ctx.round, "kind": "trial",
        "wall_clock": round(wall, 2), "gpu_hours": round(gpu_h, 5),
        "est_cost": round(gpu_h * ctx.cost_per_gpu_hour, 4),
        "params": result.get("params"),
        "status": status, "stop_reason": reason,
        "tags": ";".join(ctx.tags + (["reference"] if is_ref else []) + ttc_off
                         + ([f"retried:{int(retries)}"] if retries else [])),
        "config_hash": chash, "checkpoint": checkpoint or "", "trial_id": trial_id, "data_hash": ctx.data_hash,
        "experiment": ctx.experiment, "config_json": cjson,
        "val_nrmse": finite_or_none(result.get("val_nrmse")), "epochs": epochs,
        "val_nrmse_ttc": finite_or_none(result.get("val_nrmse_ttc")),  # the final report's, with TTC on
        # on CUDA: PyTorch's peak in this trial's process and the GPU's size (ups.tune.gpu_share reads them)
        "gpu_mem_peak_mib": finite_or_none(result.get("gpu_mem_peak_mib")),
        "gpu_mem_total_mib": finite_or_none(result.get("gpu_mem_total_mib")),
        "sampled_json": json.dumps(values, sort_keys=True, default=str),
    }
    if ctx.scheduler == "pbt":
        row["pbt_schedule"] = json.dumps(list(pbt_schedule), default=str) if pbt_schedule else ""
    if result.get("final"):
        for col in EVAL_COLUMNS:
            row[col] = finite_or_none(result.get(col))
        row["eval_samples_json"] = eval_samples_json(result)
    return row


def epochs_run(result: Mapping[str, Any]) -> Any:
    """The training epochs a trial ran by its last ``result``: the trainer's ``global_epoch`` (every report has
    it), else ``training_iteration``, which counts one report per epoch and, for a trial that finished, its final
    evaluation's report too (43 for 10+30+1+1 epochs)."""
    epochs = result.get("global_epoch")
    if isinstance(epochs, (int, float)) and not isinstance(epochs, bool) and math.isfinite(epochs):
        return int(epochs)
    return result.get("training_iteration")


def eval_samples_json(result: Mapping[str, Any]) -> str:
    """The final evaluation's per-test-sample nRMSE without and with TTC, as one JSON object
    ``{"nrmse": [...], "nrmse_ttc": [...]}`` ("" when the trial did not report them): what a paired interval
    for the TTC gain needs (``ups.ttc_gain``)."""
    out = {}
    for key in ("nrmse", "nrmse_ttc"):
        v = result.get(f"{key}_samples")
        if isinstance(v, str) and v:
            try:
                out[key] = json.loads(v)
            except ValueError:
                return ""
        elif isinstance(v, (list, tuple)):
            out[key] = list(v)
    return json.dumps(out, separators=(",", ":")) if len(out) == 2 else ""


def result_trial_id(result: Any) -> str | None:
    """The trial a Tune ``Result`` belongs to, from its folder (``trial_<id>``: ``tuner_build.trial_dirname``).
    Not its metrics' ``trial_id``: a trial PBT paused right after an exploit carries its donor's last
    result, id included; the metrics' id only for a folder named otherwise."""
    folder = str(result.path or "").rstrip("/").rsplit("/", 1)[-1]
    if folder.startswith("trial_"):
        return folder[len("trial_"):]
    return (result.metrics or {}).get("trial_id")


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class LeaderboardCallback(Callback):
    """Writes one leaderboard row per terminated trial (driver side)."""

    def __init__(self, path: Path, ctx: RowContext, limits: GateLimits, gates_enabled: bool = True,
                 budgets: Mapping[str, float] | None = None):
        """``budgets``: the sweep's ``compute_budget_s`` / ``time_budget_s`` (0: none), to tell a trial the
        budget cut from one the scheduler stopped."""
        self.budgets = {k: float(v) for k, v in (budgets or {}).items() if v and float(v) > 0}
        self.t0 = time.monotonic()
        self.path = Path(path)
        self.ctx = ctx
        self.tracker = GateTracker(limits)
        self.gates_enabled = gates_enabled  # off: no trial is stopped by a gate, so none is labelled so
        self.rows: dict[str, dict[str, Any]] = {}  # trial id → the row this driver wrote when Tune ended it
        self.open: set[str] = set()  # trials not yet TERMINATED/ERROR at the end of the last controller step
        self.seen: set[str] = set()  # trials that reported to this driver
        self.spent_s = 0.0  # Σ time_this_iter_s this driver saw (the compute budget's measure)
        self.trial_s: dict[str, float] = {}  # trial id → Σ its own time_this_iter_s (a resume seeds it)
        self.trial_gpu_s: dict[str, float] = {}  # trial id → Σ those seconds × the GPU share it ran them on
        self.wall_before_s = 0.0  # running time of the drivers before this one (a resumed sweep)
        self.wall_at_step = 0.0  # wall_s() at the end of the last step of Tune's loop
        self.cut_at_step: str | None = None  # the sweep budget used up at the end of that step, if any
        self._trials: list[Any] = []  # Tune's live trials at the last step (record_unfinished)
        self.experiment_dir = ""  # the driver's experiment folder, where Ray's PBT writes its policy files
        self.unwritten: dict[str, dict[str, Any]] = {}  # run_id → a row a failed write left (disk full, read-only)
        self.write_error = ""  # that failure, said once; "" while the leaderboard takes rows
        self.last_try = 0.0  # monotonic time of the last write attempt while rows wait

    def setup(self, **info: Any) -> None:
        self.t0 = time.monotonic()  # the experiment starts (Tune's own time budget counts from here)

    def wall_s(self) -> float:
        """The sweep's running time: this driver's, plus what earlier drivers of a resumed sweep ran
        (``set_state``); the time between a stop and its resume does not count, as for Tune's time budget."""
        return self.wall_before_s + time.monotonic() - self.t0

    def __getstate__(self) -> dict[str, Any]:  # pickled with the Tuner: never Tune's live trials
        return {**self.__dict__, "_trials": []}

    def __setstate__(self, state: dict[str, Any]) -> None:  # a Tuner pickled before these fields existed
        self.__dict__.update({"unwritten": {}, "write_error": "", "last_try": 0.0, **state})

    def get_state(self) -> dict[str, Any]:
        """Saved by Tune with its experiment state (callback index 0: the leaderboard callback is always first),
        so a resumed sweep's clock goes on where Tune's ``TimeoutStopper``, restored the same way, goes on: as
        of the last step of Tune's loop, as that stopper counts (not the seconds a Ctrl-C then takes to stop
        the trials)."""
        return {"ups_wall_s": self.wall_at_step}

    def set_state(self, state: dict[str, Any]) -> None:
        self.wall_before_s = self.wall_at_step = float(state.get("ups_wall_s", 0.0) or 0.0)
        self.t0 = time.monotonic()

    def budget_hit(self) -> str | None:
        """The sweep budget used up by now, if any (the compute budget as Σ time_this_iter_s this driver saw)."""
        if self.spent_s >= self.budgets.get("compute_budget_s", math.inf):
            return "compute_budget_s"
        if self.wall_s() >= self.budgets.get("time_budget_s", math.inf):
            return "time_budget_s"
        return None

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        dt = float(result.get("time_this_iter_s") or 0.0)
        self.spent_s += dt
        self.trial_s[trial.trial_id] = self.trial_s.get(trial.trial_id, 0.0) + dt
        self.trial_gpu_s[trial.trial_id] = (self.trial_gpu_s.get(trial.trial_id, 0.0)
                                            + gpu_seconds(dt, result, self.ctx.gpu_per_trial))
        self.seen.add(trial.trial_id)
        if self.gates_enabled:
            self.tracker.update(trial.trial_id, result)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # read before Tune's clean-up, which marks the trials an interrupt leaves running TERMINATED in
        # memory (the saved state, which resume=true restores, keeps them unfinished)
        self.open = {t.trial_id for t in trials if t.status not in ("TERMINATED", "ERROR")}
        self.wall_at_step, self.cut_at_step = self.wall_s(), self.budget_hit()
        if self.unwritten and time.monotonic() - self.last_try > 30:  # space freed while the sweep runs
            self.upsert([])
        self._trials = trials  # Tune's live list: what record_unfinished reads when no ResultGrid comes
        if trials and not self.experiment_dir and self.ctx.scheduler == "pbt":  # PBT's policy files: before any
            try:  # trial ends (_row sets it then), so that an interrupt's rows carry their schedules too
                self.experiment_dir = str(trials[0].local_experiment_path)
            except Exception:  # a trial without storage yet
                pass

    def record_unfinished(self, cut: str) -> int:
        """Rows for the trials still open at the last step that reported here, labelled by ``cut`` (why the loop
        ended), from Tune's in-memory trials: for a driver that ends without ``fit()`` returning (its local Ray
        stopped with it), where ``reconcile`` would write them from the ResultGrid.  Returns the rows written."""
        rows = [self._row(t, errored=False, cut=cut) for t in self._trials
                if t.trial_id in self.open and t.trial_id in self.seen and t.trial_id not in self.rows]
        if rows:
            self.upsert(rows)
        return len(rows)

    def upsert(self, rows: list[dict[str, Any]]) -> bool:
        """Write ``rows`` and any a failed write left, or keep them all for the next try. A leaderboard that cannot
        take them (disk full, read-only) is said once and never fails the trial: Tune turns an exception here into
        a trial error, and retrained a finished trial from its checkpoint.  ``reconcile`` writes what is left
        at the end of the loop (``flush``).  Returns whether everything is written."""
        pending = {**self.unwritten, **{str(r["run_id"]): r for r in rows}}
        self.last_try = time.monotonic()
        try:
            upsert_rows(self.path, list(pending.values()))
        except OSError as e:
            self.unwritten = pending
            if not self.write_error:
                print(f"[ups sweep] cannot write the leaderboard {self.path} ({e.strerror or e}); {len(pending)} row(s) "
                      f"wait in memory and are written once it can take them (every trial's result is in Tune's "
                      f"state as well). Fix: free space on that disk, or make the file writable", file=sys.stderr)
            self.write_error = str(e)
            return False
        if self.write_error:
            print(f"[ups sweep] the leaderboard {self.path} takes rows again: {len(pending)} written", file=sys.stderr)
        self.unwritten, self.write_error = {}, ""
        return True

    def flush(self) -> None:
        """Write the rows a failed write left; OSError if the leaderboard still cannot take them."""
        if self.unwritten:
            pending = list(self.unwritten.values())
            upsert_rows(self.path, pending)
            self.unwritten, self.write_error = {}, ""

    def pbt_schedule(self, trial_id: str) -> list[dict[str, Any]]:
        """A PBT trial's schedule (``ups.tune.pbt_schedule.pbt_schedule``) from Ray's policy file in the driver's
        experiment folder, donors named by trial id; [] outside PBT rounds and for a trial never exploited."""
        if self.ctx.scheduler != "pbt" or not self.experiment_dir:
            return []
        tags = {str(getattr(t, "experiment_tag", "")).split("@perturbed[")[0]: t.trial_id for t in self._trials}
        return read_pbt_schedule(self.experiment_dir, trial_id, tags, self.ctx.space.decode)

    def _live(self, trial_id: str) -> Any:
        """Tune's live trial of that id at the last step; None for one this driver never saw."""
        return next((t for t in self._trials if t.trial_id == trial_id), None)

    def live_config(self, trial_id: str) -> dict[str, Any] | None:
        """The trial's config as Tune holds it at the last step (after a PBT exploit, its new values; a Tune
        ``Result`` of a trial paused right after one carries its donor's last config), None for one not seen."""
        t = self._live(trial_id)
        return None if t is None else dict(t.config)

    def retries(self, trial_id: str) -> int:
        """How often Tune restarted this trial after a failure (its ``num_failures``), from Tune's live trials at
        the last step; 0 for one this driver never saw."""
        return int(getattr(self._live(trial_id), "num_failures", 0) or 0)

    def _row(self, trial: Any, errored: bool, cut: str | None) -> dict[str, Any]:
        """A Tune trial's leaderboard row from its last result (``cut``: why the loop ended it, if it did)."""
        ckpt = trial.checkpoint.path if getattr(trial, "checkpoint", None) is not None else None
        if self.ctx.scheduler == "pbt":
            try:
                self.experiment_dir = str(trial.local_experiment_path)
            except Exception:  # a trial without storage (never started): keep the folder already known
                pass
        return trial_row(self.ctx, trial.trial_id, trial.config, dict(trial.last_result or {}),
                         gate_reason=self.tracker.reasons.get(trial.trial_id), errored=errored, checkpoint=ckpt,
                         cut=cut, pbt_schedule=self.pbt_schedule(trial.trial_id),
                         compute_s=self.trial_s.get(trial.trial_id), gpu_s=self.trial_gpu_s.get(trial.trial_id),
                         retries=int(getattr(trial, "num_failures", 0) or 0))

    def _write(self, trial: Any, errored: bool) -> None:
        final = (trial.last_result or {}).get("final")
        row = self.rows[trial.trial_id] = self._row(trial, errored, None if final else self.budget_hit())
        self.upsert([row])

    def cut_short(self, trial_id: str, result: Mapping[str, Any]) -> bool:
        """Did this trial report here, and end without its final result and without Tune telling this
        callback (Tune's loop ended under it: an interrupt, or a sweep budget's stop-all)?"""
        return trial_id in self.seen and trial_id not in self.rows and not result.get("final")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, errored=False)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._write(trial, errored=True)
        if note := error_file_note(trial):
            print(f"[ups sweep] {note}", file=sys.stderr)


def error_file_note(trial: Any) -> str | None:
    """After Tune recorded a trial's final error: remove its ``error.pkl`` if it does not unpickle (a failure on a
    full disk leaves 0 bytes, and Ray's ResultGrid, which unpickles every trial's, ended the driver and every resume
    in ``EOFError``), and say why, with the free space of the disk it is on; None when it was readable."""
    from ups.tune.tune_state import drop_unreadable_error_pickles

    try:
        storage = trial.storage
        dropped = bool(drop_unreadable_error_pickles(str(trial.local_path))  # Ray's staging copy, then storage
                       + drop_unreadable_error_pickles(storage.trial_fs_path, storage.storage_filesystem))
    except Exception:  # a trial without storage: nothing was written
        return None
    if not dropped:
        return None
    import shutil

    from pyarrow import fs as pafs

    folders = [str(trial.local_path)]  # Ray's staging copy, and the storage_path the trial's files go to
    if isinstance(getattr(trial.storage, "storage_filesystem", None), pafs.LocalFileSystem):
        folders.append(str(trial.storage.trial_fs_path))
    free = []
    for folder in dict.fromkeys(folders):
        try:
            free.append((shutil.disk_usage(folder).free, folder))
        except OSError:
            continue
    where = (f"{min(free)[1]}: {min(free)[0] / 2**20:.0f} MiB free there" if free else "free space unknown")
    return (f"trial {trial.trial_id} failed and its error could not be saved in full ({where}; a full disk?). Fix: "
            f"free space, then resume=true retries it from its last checkpoint")
