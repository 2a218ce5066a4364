"""Cheap W&B logging from the driver: one run per sweep round, grouped ``sota-sweep-<round>``
(``sota-sweep-round-a``, ``sota-sweep-round-b``, ...; the aggressive round keeps the playbook's ``sota-aggressive``).

Ray's ``WandbLoggerCallback`` starts a W&B process per trial (seconds per trial, even offline);
this callback opens a single run in the driver and logs every trial report under ``<trial_id>/<metric>``,
each trial's curves on its own x axis ``<trial_id>/training_iteration`` (``define_metric``), and at the
end a ``trials`` table of every trial Tune knows (restored ones included) with status, stop reason and
the gate that stopped it.

Offline unless ``WANDB_API_KEY`` is set (``wandb sync`` uploads later); ``WANDB_MODE`` (``dryrun`` is
offline) and ``WANDB_DIR`` are honoured.  Online, ``wandb.init`` waits at most ``init_timeout_s`` and
then falls back to offline; the failed attempt's ``run-<time>-<id>`` folder is removed, so that ``wandb sync``
of the folder uploads no broken run.  A resumed sweep continues its online run (same id, ``resume="allow"``)
when every earlier run of that id was online (W&B's folder names under the W&B dir tell: ``run-…`` online,
``offline-run-…`` offline).  Otherwise (offline W&B cannot resume a run; an online resume of an offline-logged
sweep would clash with the later ``wandb sync`` of its folder; no folder found) it logs to a new run
``<id>-resume-<UTC time>`` in the same group, with ``resumed_from`` (config and summary) naming the first:
``wandb sync`` of both keeps both histories.
A W&B failure is reported once and logging switched off; it never stops a sweep.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ray.tune import Callback

LOGGED = ("train_loss", "val_nrmse", "val_conservation_gap", "val_bc_violation", "nrmse", "nrmse_ttc",
          "conservation_gap", "bc_violation", "ece", "wall_clock")
STEP = "training_iteration"
TABLE_COLUMNS = ["trial_id", "status", "stop_reason", "gate", "val_nrmse", "nrmse", "nrmse_ttc", "epochs",
                 "wall_clock_s", "config"]
_ALIASES = {"dryrun": "offline", "run": "online"}  # W&B's legacy spellings


def resolve_mode(mode: str) -> str:
    if mode == "auto":
        env = _ALIASES.get(os.environ.get("WANDB_MODE", ""), os.environ.get("WANDB_MODE", ""))
        if env in ("offline", "disabled", "online"):
            return env
        return "online" if os.environ.get("WANDB_API_KEY") else "offline"
    return _ALIASES.get(mode, mode)


# the groups the playbook's hand-run sweeps used (playbook 04, "Monitor & Gate"), where they differ from the pattern
PLAYBOOK_GROUPS = {"aggressive": "sota-aggressive"}


def default_group(round_name: str) -> str:
    """``round_a`` → ``sota-sweep-round-a``; ``aggressive`` → ``sota-aggressive`` (the playbook's group, so new runs
    land next to the hand-run ones)."""
    return PLAYBOOK_GROUPS.get(round_name, f"sota-sweep-{round_name.replace('_', '-')}")


def wandb_dirs(root: Path) -> list[Path]:
    """Where W&B puts its run folders for ``dir=root``: ``root/wandb``, or ``root/.wandb`` where that exists."""
    return [root / "wandb", root / ".wandb"]


def _folders(root: Path, run_id: str, prefix: str) -> list[Path]:
    """W&B's folders ``<prefix>-<YYYYmmdd_HHMMSS>-<run_id>[-<n>]`` of run ``run_id`` under ``root``."""
    name = re.compile(rf"{prefix}-\d{{8}}_\d{{6}}-{re.escape(run_id)}(-\d+)?")
    return [p for d in wandb_dirs(root) if d.is_dir() for p in d.iterdir()
            if name.fullmatch(p.name) and p.is_dir() and not p.is_symlink()]


def earlier_modes(root: Path, run_id: str) -> set[str]:
    """The modes (``online``, ``offline``) run ``run_id`` was logged in under ``root``: its folders that hold
    its record log ``run-<id>.wandb``.  Empty: nothing known (another W&B dir, ``wandb sync --clean``)."""
    return {mode for mode, prefix in (("online", "run"), ("offline", "offline-run"))
            if any((p / f"run-{run_id}.wandb").is_file() for p in _folders(root, run_id, prefix))}


def resume_run_id(base_id: str, mode: str, resume: bool, earlier: set[str], stamp: str) -> str:
    """The run id a driver logs to: ``base_id`` for a fresh sweep, and for a resume in ``mode`` online when
    every earlier run of ``base_id`` was (``earlier`` = ``{"online"}``): W&B continues it.  Else a new run
    ``<base_id>-resume-<stamp>``: offline W&B cannot resume, and an offline run's later ``wandb sync`` would
    replace (or clash with) the history an online resume appended under the same id; unknown counts as offline."""
    if not resume or (mode == "online" and earlier == {"online"}):
        return base_id
    return f"{base_id[:36]}-resume-{stamp}"


def _warn(msg: str) -> None:
    print(f"[ups sweep] {msg}".split("\n")[0], file=sys.stderr, flush=True)


def _number(v: Any) -> Any:
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


class WandbRoundLogger(Callback):
    """``directory``: ``wandb.dir`` when set; else ``$WANDB_DIR`` when set; else ``default_directory``.
    ``resume``: this driver resumes the sweep (``resume=true``).  ``leaderboard``: the sweep's
    ``LeaderboardCallback`` (before this one in the callback list), for the table's status / stop reason /
    gate, and the rows of trials finished before a resume."""

    def __init__(self, *, project: str, group: str, name: str, mode: str, directory: Path | None = None,
                 default_directory: Path | None = None, config: dict[str, Any] | None = None,
                 resume: bool = False, init_timeout_s: float = 20.0, leaderboard: Any = None):
        self.project, self.group, self.name, self.mode = project, group, name, mode
        self.directory = Path(directory) if directory else None
        self.default_directory = Path(default_directory) if default_directory else None
        self.config = config or {}
        self.resume, self.init_timeout_s, self.leaderboard = resume, float(init_timeout_s), leaderboard
        self._run: Any = None
        self._attempt = ""  # the run id of the latest wandb.init
        self._rows: dict[str, list[Any]] = {}  # trial_id → table row, for the trials that ended here
        self._steps: set[str] = set()  # trials whose x axis is defined in this run
        self.offline_folder: Path | None = None  # the finished offline run's folder (what `wandb sync` takes)

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles callbacks with the experiment state
        d = dict(self.__dict__)
        d["_run"] = None
        return d

    # ------------------------------------------------------------------------------ the run
    @property
    def base_id(self) -> str:
        return self.name.replace("/", "-")[:60]

    def run_dir(self) -> Path | None:
        if self.directory is not None:
            return self.directory
        return Path(os.environ["WANDB_DIR"]).expanduser() if os.environ.get("WANDB_DIR") else self.default_directory

    def run_identity(self, mode: str) -> tuple[str, str, str | None]:
        """(run id, run name, ``resumed_from``) this driver logs to in ``mode`` (``resume_run_id``)."""
        stamp = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}"
        earlier = earlier_modes(self.run_dir() or Path.cwd(), self.base_id) if self.resume else set()
        run_id = resume_run_id(self.base_id, mode, self.resume, earlier, stamp)
        if run_id == self.base_id:
            return run_id, self.name, None
        return run_id, f"{self.name}-resume-{stamp}", self.base_id

    def _entries(self) -> set[Path]:
        """What the W&B dirs hold now: before an init whose failure may leave a folder."""
        try:
            return {p for d in wandb_dirs(self.run_dir() or Path.cwd()) if d.is_dir() for p in d.iterdir()}
        except OSError:
            return set()

    def _drop_failed_attempt(self, before: set[Path]) -> None:
        """Remove the folder the failed online ``wandb.init`` left (new since ``before``, of its run id)."""
        try:
            for p in set(_folders(self.run_dir() or Path.cwd(), self._attempt, "run")) - before:
                shutil.rmtree(p, ignore_errors=True)
        except OSError:
            pass

    def _init(self, mode: str) -> Any:
        import wandb

        run_id, name, resumed_from = self.run_identity(mode)
        config = dict(self.config)
        if resumed_from is not None:  # a new run in the same group, linked to the first
            config["resumed_from"] = resumed_from
        kw: dict[str, Any] = {}
        if (d := self.run_dir()) is not None:
            d.mkdir(parents=True, exist_ok=True)
            kw["dir"] = str(d)
        self._attempt = run_id
        run = wandb.init(project=self.project, group=self.group, name=name, job_type="sweep", mode=mode,
                         config=config, id=run_id, reinit="finish_previous",
                         resume="allow" if mode == "online" else None,
                         settings=wandb.Settings(silent=True, console="off", x_disable_stats=True,
                                                 init_timeout=self.init_timeout_s), **kw)
        if "resumed_from" in config:
            run.summary["resumed_from"] = config["resumed_from"]
        return run

    def setup(self, **info: Any) -> None:
        if self.mode == "disabled" or self._run is not None:
            return
        self._steps = set()
        before = self._entries() if self.mode == "online" else set()
        try:
            self._run = self._init(self.mode)
            return
        except Exception as e:  # never let logging kill a sweep
            if self.mode != "online":
                _warn(f"W&B logging disabled: {e}")
                return
            _warn(f"W&B online init failed, logging offline instead (upload later with `wandb sync`): {e}")
        try:
            import wandb

            wandb.teardown()  # the failed online run keeps its id busy in this process's W&B service
            self._drop_failed_attempt(before)
            self._run = self._init("offline")
        except Exception as e:
            _warn(f"W&B logging disabled: {e}")
            self._run = None

    def _disable(self, what: str, e: Exception) -> None:
        _warn(f"W&B {what} failed, logging switched off for the rest of the sweep: {e}")
        run, self._run = self._run, None
        try:
            run.finish(exit_code=1)
        except Exception:
            pass

    # ------------------------------------------------------------------------------ per report
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self._run is None:
            return
        tid = trial.trial_id
        data = {f"{tid}/{k}": result[k] for k in (*LOGGED, STEP) if _number(result.get(k)) is not None}
        if not data:
            return
        try:
            if tid not in self._steps:
                self._run.define_metric(f"{tid}/{STEP}", hidden=True)
                self._run.define_metric(f"{tid}/*", step_metric=f"{tid}/{STEP}")
                self._steps.add(tid)
            self._run.log(data)
        except Exception as e:  # the W&B service died, the disk is full, ...
            self._disable("log", e)

    # ------------------------------------------------------------------------------ the trials table
    def _row(self, trial: Any, errored: bool = False, cut: str | None = None) -> list[Any]:
        from ups.tune.results import epochs_run, stop_reason

        r = dict(trial.last_result or {})
        lb = self.leaderboard
        gate = lb.tracker.reasons.get(trial.trial_id) if lb is not None else None
        if lb is not None:
            status, reason = stop_reason(r, gate, lb.ctx.scheduler, errored,
                                         cut if cut else None if r.get("final") else lb.budget_hit())
        else:
            status, reason = stop_reason(r, None, "", errored, cut)
        return [trial.trial_id, status, reason, gate or "", _number(r.get("val_nrmse")), _number(r.get("nrmse")),
                _number(r.get("nrmse_ttc")), epochs_run(r), _number(r.get("time_total_s")), str(trial.config)]

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._rows[trial.trial_id] = self._row(trial)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._rows[trial.trial_id] = self._row(trial, errored=True)

    def _leaderboard_rows(self) -> dict[str, list[Any]]:
        """Rows of this sweep's trials that ended before a resume (the leaderboard has them)."""
        lb = self.leaderboard
        if lb is None:
            return {}
        try:
            from ups.leaderboard import read_leaderboard

            df = read_leaderboard(lb.path)
            df = df[(df["experiment"] == lb.ctx.experiment) & (df["kind"] == "trial")]
        except Exception:
            return {}
        out = {}
        for rec in df.to_dict("records"):
            reason = str(rec.get("stop_reason") or "")
            out[str(rec["trial_id"])] = [
                str(rec["trial_id"]), str(rec.get("status") or ""), reason, reason if reason.startswith("gate:") else "",
                _number(rec.get("val_nrmse")), _number(rec.get("nrmse")), _number(rec.get("nrmse_ttc")),
                _number(rec.get("epochs")), _number(rec.get("wall_clock")), ""]
        return out

    def table_rows(self, trials: list) -> list[list[Any]]:
        """One row per trial Tune knows (``trials`` of ``on_experiment_end``: restored ones too)."""
        lb, earlier = self.leaderboard, None
        rows = []
        for t in trials:
            if t.trial_id in self._rows:
                rows.append(self._rows[t.trial_id])
                continue
            if earlier is None:
                earlier = self._leaderboard_rows()
            if t.trial_id in earlier and (lb is None or t.trial_id not in lb.open):
                rows.append([*earlier[t.trial_id][:-1], str(t.config)])
            elif t.status == "ERROR":
                rows.append(self._row(t, errored=True))
            elif lb is not None and t.trial_id in lb.open:  # still running when Tune's loop ended
                from ups.tune.results import INTERRUPTED

                rows.append(self._row(t, cut=lb.cut_at_step or INTERRUPTED))
            else:
                row = self._row(t)
                if t.status != "TERMINATED":
                    row[1], row[2] = t.status.lower(), f"not finished ({t.status})"
                rows.append(row)
        known = {t.trial_id for t in trials}
        rows += [r for tid, r in self._rows.items() if tid not in known]
        return rows

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        if self._run is None:
            return
        try:
            import wandb

            rows = self.table_rows(trials)
            self._run.log({"trials": wandb.Table(columns=TABLE_COLUMNS, data=rows)})
            statuses = [r[1] for r in rows]
            self._run.summary.update({"trials_total": len(rows),
                                      **{f"trials_{s}": statuses.count(s) for s in sorted(set(statuses))}})
            where = self.where_logged(self._run)
            if folder := self.offline_dir(self._run):
                self.offline_folder = Path(folder)
            self._run.finish()
            if where:
                print(f"[ups sweep] {where}", flush=True)
        except Exception as e:
            _warn(f"W&B finish failed: {e}")
        self._run = None

    @staticmethod
    def where_logged(run: Any) -> str:
        """Where this sweep's W&B run is, in the words the user acts on: an offline folder and its upload command,
        or the run's URL."""
        if getattr(run, "offline", False):
            folder = WandbRoundLogger.offline_dir(run)
            return f"W&B (offline): {folder}; upload it with: wandb sync {folder}" if folder else ""
        return f"W&B: {run.url}" if getattr(run, "url", None) else ""

    @staticmethod
    def offline_dir(run: Any) -> str:
        """An offline run's folder (offline-run-…); "" for an online run."""
        if not getattr(run, "offline", False):
            return ""
        return getattr(run.settings, "sync_dir", "") or (str(Path(run.dir).parent) if run.dir else "")
