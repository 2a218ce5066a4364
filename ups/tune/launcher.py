"""Run one sweep round end to end: validate → data & baselines → Ray → Tune → leaderboard → promotion.

Everything a user can get wrong (overrides, search space, storage, Ray address) is checked before
``ray.init`` and before any compute is spent.  ``run_round`` is what every ``sweeps/*.py`` script and
``ups sweep`` call; it returns a ``SweepOutcome``.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ups.config import (ConfigError, apply_overrides, check_model_grid, flatten, load_config, override_key,
                        to_dict)
from ups.leaderboard import leaderboard_problem, read_leaderboard, set_values, trial_standing, upsert_rows
from ups.outputs import make_writable_folder, probe_writable_file
from ups.tune.concurrency import ADAPTIVE, ClusterLimiter, VariantLimiter, cluster_slots, node_slots
from ups.tune.driver_lease import DriverLease, check_no_live_driver
from ups.tune.gates import ComputeBudgetStopper, GateLimits, PhysicsGateStopper, gate_trackers
from ups.tune.gpu_share import gpu_share_warning
from ups.tune.promotion import (SEED_KEY, apply_small_eval, champion_record, force_fill, full_eval, history_path,
                                pass_groups, read_champion, seed_groups, seed_mean_candidates, seed_points,
                                update_champion)
from ups.tune.ray_address import gcs_problem
from ups.tune.restore import (ResumableASHA, ResumableStopper, carry_over, reported_histories, restored_analysis,
                              restored_results, trial_compute_s)
from ups.tune.results import INTERRUPTED, LeaderboardCallback, RowContext, result_trial_id, trial_row
from ups.tune.retention import CheckpointRetention
from ups.tune.stop_signals import SweepInterrupted, log as _log, stop_signals_as_ctrl_c, watch_cluster
from ups.tune.scratch import remove_scratch
from ups.tune.space import (Param, SearchSpace, SearchSpaceError, check_against, check_around_windows, load_space,
                            resolve_around)
from ups.tune.sweep_config import SweepConfig, load_sweep_config, resolve_path, space_path, unread_overrides
from ups.tune.sweep_record import (RECORD, check_resume, experiment_dirs, latest_sweep, new_sweep_name,
                                   provisional_folder, read_record, sweep_record, write_record)
from ups.tune.trainable import METRIC, ups_trial
from ups.tune.trial_logs import trial_loggers
from ups.tune.tune_state import repair_cut_off_state
from ups.tune.wandb_logging import WandbRoundLogger, default_group, resolve_mode

class RayConnectError(ConfigError):
    """RAY_ADDRESS / ray_address points at no reachable cluster."""


@dataclass
class Prepared:
    scfg: SweepConfig
    base: Any  # DictConfig
    space: SearchSpace
    storage_path: str  # what Tune gets (absolute local dir or bucket/prefix)
    filesystem: Any  # pyarrow fs or None
    display_storage: str  # what users see (local dir or s3://…)
    leaderboard: Path
    centre: dict[str, Any] | None = None  # rounds C/D: the champion record the round starts from
    centre_note: str = ""  # rounds C/D: that champion and the around windows, as run_round prints it
    centre_data_differs: bool = False  # rounds C/D: its data.* settings differ (the centre note already says so)


@dataclass
class SweepOutcome:
    experiment: str
    experiment_path: str
    leaderboard: Path
    rows: pd.DataFrame
    champion: dict[str, Any] | None = None
    report: Path | None = None
    baseline_rows: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    failed: list[str] = field(default_factory=list)  # run_ids of this sweep's trials that errored past max_failures
    exit_status: int = 0  # the round script's: 1 when ``failed`` and ``fail_on_trial_error`` (the default)


# ------------------------------------------------------------------------------- preparation
def prepare(round_name: str, overrides: Sequence[str], defaults: dict[str, Any] | None = None,
            *, around_champion: bool = False) -> Prepared:
    """Parse and validate everything (no Ray, no compute).  Rounds C/D (``around_champion``) start from
    ``scfg.champion``'s record; a resumed one from the record its sweep started from (its ``ups_sweep.json``),
    whatever ``scfg.champion`` holds now."""
    from ups.tune.sweep_config import split_overrides

    scfg = load_sweep_config(round_name, overrides, defaults)
    space_file = space_path(scfg, round_name)
    space = load_space(space_file)
    around = sorted(k for k, prm in space.params.items() if prm.dist == "around")
    if around and not around_champion:
        raise ConfigError(f"{space_file}: params.{around[0]}: dist 'around' searches ±rel around the champion, "
                          f"which only round_c reads ({round_name} has none). Fix: run sweeps/round_c.py with this "
                          f"space, or give {', '.join(around)} a uniform/loguniform/int range")
    named = {override_key(o) for o in scfg.trial}
    # A key the space sweeps or derives, set on the command line or in the round's DEFAULTS, would be replaced
    # in every trial: refused. Profile values (ups/conf/sweep/*.yaml) are a base shared by every round and stay
    # allowed; round C's `around` keys too (there the override sets the centre instead of the champion).
    given: dict[str, str] = {}
    layers = [(defaults or {}).get("trial"), ((defaults or {}).get(scfg.profile) or {}).get("trial")]
    for item in (x for layer in layers for x in ([layer] if isinstance(layer, str) else layer or [])):
        given[override_key(str(item))] = f"sweeps/{round_name}.py DEFAULTS"
    for item in split_overrides(overrides)[1]:
        given[override_key(item)] = "the command line"
    clash = sorted(k for k in given if (k in space.params and space.params[k].dist != "around") or k in space.derived)
    if clash:
        k = clash[0]
        what = "derives" if k in space.derived and k not in space.params else "sweeps"
        raise ConfigError(f"overrides: {k}=… ({given[k]}) would be replaced in every trial: {space_file} {what} it"
                          + (f" (also: {', '.join(clash[1:])})" if clash[1:] else "")
                          + f". Fix: remove {k}=… from {given[k]}, or use a copy of the space without "
                            f"{k} in params/derived (space=path/to/copy.yaml)")
    base = load_config(scfg.trial)
    storage: tuple[str, Any, str] | None = None
    centre: dict[str, Any] | None = None  # rounds C/D: the champion record the round starts from
    where = scfg.champion  # where the centre's record was read (rounds C/D)
    other: list[str] = []  # rounds C/D: the champion's data.* settings that differ from the round's
    if around_champion:
        if scfg.resume:  # the sweep's own champion: a newer one, or none, must not move it
            storage = resolve_storage_path(scfg.storage_path)
            centre, where = resumed_centre(scfg, *storage) or (None, where)
        if centre is None:
            centre = champion_record(resolve_path(scfg.champion), round_name)
        champ = flatten(centre["config"])
        fixed = ("data.", "run.", "eval.", "training.device", "training.num_threads", "preset")
        keep = {k: v for k, v in champ.items() if not k.startswith(fixed) and k not in named}
        base = apply_overrides(base, keep, source=f"{where} (champion config)")
        declared, space = space, resolve_around(space, base)
        check_around_windows(declared, space, base, where, named)  # a ±rel past a bound: a fix the space can take
        note = centre_text(round_name, centre, declared.params, space, where)
        here = flatten(to_dict(base))
        other = [f"{k} {v!r} → {here.get(k)!r}" for k, v in sorted(champ.items()) if k.startswith("data.")
                 and k not in ("data.cache_dir", "data.path") and here.get(k) != v]
        if other:  # promotion compares data_hash: the round's best could never replace this champion
            note += (f"\nnote: that champion was trained on other data ({'; '.join(other[:4])}): this "
                     f"round's trials are scored on this data, so its promotion cannot replace it. Fix: champion=<a "
                     f"record of this data> (the full profile keeps reports/champion_full.json), or the champion's "
                     f"data settings")
        schedule = centre.get("pbt_schedule")
        if schedule:
            from ups.tune.pbt_schedule import schedule_text

            _log(f"the champion was trained by PBT ({len(schedule) - 1} exploit(s): {schedule_text(schedule)}); "
                 f"{round_name} starts from its last values, trained from scratch")
    check_model_grid(base)  # the base config's model on the data's grid (each sampled point: check_against)
    try:
        check_against(space, base)
    except SearchSpaceError as e:
        if not around_champion or "reference." not in str(e):
            raise
        raise SearchSpaceError(f"{e} (the reference point here is the champion's config, {where}; to keep "
                               f"this space, pass champion=<another champion.json>, or a copy of the space whose "
                               f"ranges hold the champion's values as space=<copy.yaml>)") from None
    check_searched_stages_train(space, base)
    for warning in ema_decay_notes(space, base):  # not `note`: that is the centre note returned below
        _log(f"warning: {warning}")
    check_promotion_seeds(scfg, space)
    space = grid_seed_passes(scfg, space, base)
    check_asha_rungs(scfg, base, space)
    check_pbt_space(scfg, space, base)
    check_trial_device(scfg, base)
    check_trial_eval(scfg, base)
    check_outputs_outside_job_copy(scfg)
    check_outputs_writable(scfg)
    storage_path, fs, shown = storage or resolve_storage_path(scfg.storage_path)
    return Prepared(scfg, base, space, storage_path, fs, shown, resolve_path(scfg.leaderboard), centre,
                    note if around_champion else "", bool(other))


def centre_data_note(p: Prepared, data: Any) -> str:
    """Rounds C/D: a note when the champion they start from was scored on other data than the round's, read from
    the data itself (its ``data_hash``).  ``prepare`` compares the ``data.*`` settings, which a file given as
    ``data.path=`` does not change (the file states its own grid, ν and samples)."""
    ours = str(getattr(data, "data_hash", "") or "")
    theirs = str((p.centre or {}).get("data_hash") or "")
    n = min(len(ours), len(theirs))
    if not n or ours[:n] == theirs[:n]:
        return ""
    return (f"note: the champion {p.centre.get('run_id')} was scored on other data (data_hash {theirs[:12]}; this "
            f"round's, {data.source}: {ours[:12]}): its promotion cannot replace that champion. Fix: champion=<a "
            f"record of this data>, or the champion's data")


def resumed_centre(scfg: SweepConfig, storage_path: str, fs: Any,
                   display_storage: str) -> tuple[dict[str, Any], str] | None:
    """(the champion record a resumed round C/D sweep started from, the ``ups_sweep.json`` that holds it), saying
    so when ``scfg.champion`` now names another one or is gone; None for a sweep recorded without one (a record
    older than its champion key, or none), which starts from ``scfg.champion`` as before."""
    name = experiment_name(scfg, storage_path, fs, display_storage)
    started = (read_record(storage_path, fs, name) or {}).get("champion")
    if not isinstance(started, dict) or not started.get("config"):
        return None
    now = read_champion(resolve_path(scfg.champion))
    if now is None:
        _log(f"resume: {name} started from champion {started.get('run_id')} (its {RECORD}); {scfg.champion} is not "
             f"there now: the sweep continues from the recorded one")
    elif now.get("run_id") != started.get("run_id"):
        _log(f"resume: {name} started from champion {started.get('run_id')} (its {RECORD}); the champion in "
             f"{scfg.champion} is now {now.get('run_id')}: the sweep continues from the one it started from")
    return started, f"{display_storage}/{name}/{RECORD}"


def centre_text(round_name: str, record: dict[str, Any], declared: dict[str, Param], space: SearchSpace,
                path: str) -> str:
    """The line a round C/D prints before anything runs: the champion it starts from, and each ``around``
    window of ``declared`` (the space file's params) as resolved on it in ``space`` (a held key says why)."""
    score = record.get("score")
    shown = f"{score:.4g}" if isinstance(score, (int, float)) else "?"
    head = (f"{round_name}: from champion {record.get('run_id')} (round {record.get('round') or '?'}, score "
            f"{shown}, {path})")
    around = {k: p for k, p in declared.items() if p.dist == "around"}
    parts = []
    for key, p in space.params.items():
        if key not in around:
            continue
        if p.dist == "choice":
            parts.append(f"{key} held at {p.values[0]:g} (±{around[key].rel:g} of 0; no zero_width)")
        elif p.low == 0 and around[key].zero_width > 0 and p.high == around[key].zero_width:
            parts.append(f"{key} 0…{p.high:g} (from 0: zero_width)")
        else:
            parts.append(f"{key} {p.low:g}…{p.high:g}" + (" (log)" if p.dist == "loguniform" else ""))
    return head + (", searching " + "; ".join(parts) if parts else "")


def check_resume_data(leaderboard: Path, name: str, data_hash: str) -> None:
    """Refuse to resume sweep ``name`` on other data than its trials on the leaderboard were scored on: the same
    ``data.*`` settings give other data when the generator changed since (``ups.data.cache.DATA_VERSION``), and
    its unfinished and new trials would be trained and scored on other data than its finished ones."""
    if not data_hash:
        return
    lb = read_leaderboard(leaderboard)
    rows = lb[(lb["experiment"] == name) & (lb["kind"] == "trial")]
    if "data_hash" not in rows:  # no leaderboard there (leaderboard= changed since), or one from before data_hash
        return
    before = sorted({str(h)[:12] for h in rows["data_hash"].dropna() if str(h)})
    if before and data_hash[:12] not in before:
        raise ConfigError(f"resume=true: the trials of {name} were trained and scored on data {', '.join(before)} "
                          f"({leaderboard}), this command's data is {data_hash[:12]}: the data generator changed "
                          f"since (ups.data.cache.DATA_VERSION) or a data file did. Its trials would mix data sets. "
                          f"Fix: resume with the code and data it started with, or start a new sweep of the round "
                          f"(without resume=true)")


_OUTPUT_OR = {"report_dir": " or write_report=false", "wandb.dir": " or wandb.enabled=false",
              "$WANDB_DIR": " (or unset it) or wandb.enabled=false"}


def ray_job_copy(cwd: Path) -> Path | None:
    """The temporary copy of a ``ray job submit --working-dir`` that ``cwd`` lies in, or None.  Ray unpacks the
    working dir into ``<session>/runtime_resources/working_dir_files/_ray_pkg_<hash>/`` and runs the job there;
    ``ray stop`` and the next session remove it, and a job with other sources gets another copy."""
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i:i + 2] == ("runtime_resources", "working_dir_files"):
            return Path(*parts[:i + 3])
    return None


def check_outputs_outside_job_copy(scfg: SweepConfig, cwd: Path | None = None) -> None:
    """Under ``ray job submit --working-dir .`` relative outputs landed in the job's temporary copy of the
    repository, with no word: the leaderboard, the report, the champion and (a local ``storage_path``) the Tune
    state and checkpoints, which ``ray stop`` deletes.  Refused before any compute, with the absolute paths."""
    copy = ray_job_copy(cwd or Path.cwd())
    if copy is None:
        return
    outputs = [("leaderboard", scfg.leaderboard), ("report_dir", scfg.report_dir), ("champion", scfg.champion)]
    if "://" not in scfg.storage_path:
        outputs.append(("storage_path", scfg.storage_path))
    inside = [(k, v) for k, v in outputs if resolve_path(v).is_relative_to(copy)]
    if inside:
        given = " ".join(f"{k}={v}" for k, v in inside)
        home = {"storage_path": "s3://YOUR-BUCKET/ups/sweeps (or ~/ups/sweeps)", "report_dir": "~/ups/reports"}
        fix = " ".join(f"{k}={home.get(k, f'~/ups/reports/{Path(v).name}')}" for k, v in inside)
        raise ConfigError(f"{given}: this sweep runs as a Ray job in its temporary copy of the repository ({copy}), "
                          f"where these would be written and then deleted with the Ray session (`ray stop`), and a "
                          f"job with changed sources gets another copy, so a resume would not find them. Fix: "
                          f"absolute paths outside it, e.g. {fix} (docs/CLUSTER.md)")


def check_outputs_writable(scfg: SweepConfig) -> None:
    """The leaderboard, champion.json and the report folder are written after the trials (the leaderboard
    first with the baselines, after the data): each must take a file before any data or compute is spent
    (``leaderboard=/proc/lb.csv`` failed with a traceback once the data and baselines were done)."""
    outputs = [("leaderboard", resolve_path(scfg.leaderboard), False)]
    if scfg.promotion.top_k > 0:  # the promotion writes champion.json (a round that reads one may not)
        outputs.append(("champion", resolve_path(scfg.champion), False))
    if scfg.write_report:
        outputs.append(("report_dir", resolve_path(scfg.report_dir), True))
    if scfg.wandb.enabled and resolve_mode(scfg.wandb.mode) != "disabled":  # W&B's own dir, when one is named (the
        # default, storage_path, is checked with the storage): a bad one disabled logging, found after ray.init
        if scfg.wandb.dir:
            outputs.append(("wandb.dir", resolve_path(scfg.wandb.dir), True))
        elif os.environ.get("WANDB_DIR"):
            outputs.append(("$WANDB_DIR", Path(os.environ["WANDB_DIR"]).expanduser(), True))
    for key, path, is_dir in outputs:
        try:  # the writes after the sweep would create the folders too
            if is_dir:
                make_writable_folder(path)
            else:
                probe_writable_file(path)
        except OSError as e:
            why = e.strerror if e.strerror else str(e)
            raise ConfigError(f"{key}={path}: the sweep could not write there ({why}). Fix: {key}=<a writable "
                              f"{'folder' if is_dir else 'file path'}>" + _OUTPUT_OR.get(key, "")) from None
    if scfg.promotion.top_k > 0:  # the promotion compares with the recorded champion, after every trial
        read_champion(resolve_path(scfg.champion))
    lb = resolve_path(scfg.leaderboard)
    problem = leaderboard_problem(lb)  # the sweep adds its rows to it: unreadable, it would fail after the data
    if problem:
        raise ConfigError(f"leaderboard={lb}: the file {problem}; the sweep adds its rows to it and changed nothing. "
                          f"Fix: repair it, move it aside to start a new one (mv {lb} {lb}.bak), or pass "
                          f"leaderboard=<another file>")


def check_searched_stages_train(space: SearchSpace, base: Any) -> None:
    """A searched ``stages.<stage>.…`` key of a stage that trains 0 epochs is never used (``stages.operator.
    epochs=0`` with round A ran a whole sweep of one model under four labels).  Refused before Ray, unless
    the space searches that stage's epochs too.  Likewise searched ``ttc.*`` keys with ``ttc.enabled=false``."""
    dead: dict[str, list[str]] = {}
    for key in space.params:
        parts = key.split(".")
        if len(parts) > 2 and parts[0] == "stages" and parts[1] in base.stages \
                and int(base.stages[parts[1]].epochs) == 0 and f"stages.{parts[1]}.epochs" not in space.params:
            dead.setdefault(parts[1], []).append(key)
    ttc = [k for k in space.params if k.startswith("ttc.") and k != "ttc.enabled"]
    if ttc and not bool(base.ttc.enabled) and "ttc.enabled" not in space.params:
        raise ConfigError(f"{space.path}: params {', '.join(ttc)} tune test-time conditioning, which is off here "
                          f"(ttc.enabled=false): the values searched for them would never be used. "
                          f"Fix: ttc.enabled=true, or a space without ttc.* in params (space=path/to/copy.yaml)")
    if dead:
        stage, keys = next(iter(dead.items()))
        raise ConfigError(f"{space.path}: params {', '.join(keys)} belong to stage '{stage}', which trains 0 epochs "
                          f"here (stages.{stage}.epochs=0): the values searched for them would never be used. "
                          f"Fix: stages.{stage}.epochs=<n ≥ 1>, or a space without stages.{stage}.* in params "
                          f"(space=path/to/copy.yaml)")


def train_samples(base: Any) -> int | None:
    """Training trajectories the protocol gives ``base.data`` (None when a data file cannot be inspected)."""
    from ups.data.protocol import split_sizes

    d = base.data
    if d.path:
        try:
            from ups.data.hdf5 import inspect_pdebench

            n = int(inspect_pdebench(Path(str(d.path)).expanduser()).shape[0])
        except (ConfigError, OSError):
            return None
    else:
        n = int(d.n)
    nmax = int(d.num_samples_max)
    n = n if nmax <= 0 else min(nmax, n)
    return split_sizes(n, float(d.test_ratio), float(d.val_ratio))["train"]


def ema_decay_notes(space: SearchSpace, base: Any, n_train: int | None = None) -> list[str]:
    """Searched ``stages.<stage>.ema_decay`` values that train one and the same model.

    The EMA's warm-up caps the decay at (1+t)/(10+t) (``ups.train.ema.warmup_decay``): a decay is used only once
    the stage has taken (10d − 1)/(1 − d) optimizer steps (0.999: 8,990). Values at or above the cap at the
    stage's last step (its longest trial here) are never reached, so they give bit-identical weights: round A
    searched 0.999 / 0.9995 / 0.9999 over 390 (smoke) and 1,000 (full) operator steps, three labels of one model."""
    from ups.train.ema import warmup_decay, warmup_steps

    n_train = train_samples(base) if n_train is None else n_train
    notes: list[str] = []
    if not n_train:
        return notes
    for key, p in space.params.items():
        parts = key.split(".")
        if len(parts) != 3 or parts[0] != "stages" or parts[2] != "ema_decay" or parts[1] not in base.stages:
            continue
        stage = f"stages.{parts[1]}"
        epochs = math.ceil(space.largest(f"{stage}.epochs", base))
        batches = math.ceil(n_train / max(1, int(space.smallest(f"{stage}.batch_size", base))))
        steps = epochs * max(1, math.ceil(batches / max(1, int(space.smallest(f"{stage}.accum_steps", base)))))
        cap = warmup_decay(steps)
        if p.values:
            dead = sorted({float(v) for v in p.values if float(v) >= cap})
            if len(dead) < 2:
                continue
            what = f"values {dead} train the same model"
        elif p.high is not None and float(p.high) > cap:
            what = f"the part [{max(float(p.low), cap):.4g}, {float(p.high):g}] of its range trains one and the same model"
        else:
            continue
        lowest = min(dead) if p.values else max(float(p.low), cap)
        need = warmup_steps(lowest)
        notes.append(f"{space.path}: params.{key}: {what}: the EMA's warm-up keeps the decay at most "
                     f"(1+t)/(10+t) = {cap:.4f} over the {steps} optimizer steps of {stage} here ({epochs} epochs × "
                     f"{steps // max(1, epochs)} steps on {n_train} training trajectories), so a decay of {lowest:g} "
                     f"is reached only after {need} steps. Fix: search decays below {cap:.4f}, or train "
                     f"{stage} for ≥ {need} steps ({stage}.epochs)")
    return notes


def check_promotion_seeds(scfg: SweepConfig, space: SearchSpace) -> None:
    n = scfg.promotion.seeds
    if n < 0:
        raise ConfigError(f"promotion.seeds={n}: must be ≥ 0 (extra training seeds per promoted configuration). "
                          f"Fix: promotion.seeds=0 (off) or e.g. promotion.seeds=2")
    if n > 0 and scfg.scheduler.name == "pbt":
        raise ConfigError(f"promotion.seeds={n} with scheduler.name=pbt: a PBT trial's score comes from a schedule of "
                          f"values and from weights it took over from other trials (its pbt_schedule on the "
                          f"leaderboard), so retraining its last values from scratch with other seeds would score "
                          f"another model. Fix: promotion.seeds=0 under PBT, or scheduler.name=asha to compare "
                          f"configurations over seeds")
    if n > 0 and SEED_KEY in space.params:
        raise ConfigError(f"{space.path}: params.{SEED_KEY} is searched, so promotion.seeds={n} cannot retrain the "
                          f"winners with other seeds. Fix: drop {SEED_KEY} from the space's params, or run with "
                          f"promotion.seeds=0")


def grid_seed_passes(scfg: SweepConfig, space: SearchSpace, base: Any) -> SearchSpace:
    """The grid searcher with ``num_samples`` beyond one pass of the grid: each further pass trains every grid
    point with the next training seed (the base config's ``training.seed``, +1, …), a ``training.seed`` grid
    added to the space.  Repeating a grid point with the same seed would train the same model again; with
    other seeds the repeats measure the seed-to-seed spread (the dims round's verdict reads it)."""
    size = space.grid_size()
    passes = scfg.num_samples // max(1, size) if scfg.searcher.name == "grid" else 1
    if scfg.searcher.name == "grid" and scfg.num_samples > 1 and scfg.num_samples % max(1, size):
        _log(f"num_samples={scfg.num_samples} is not a multiple of the grid's {size} points: "
             f"{max(1, passes) * size} trials ({max(1, passes)} pass(es), one training seed each)")
    if passes <= 1:
        return space
    drawn = space.drawn()
    if drawn:
        raise ConfigError(f"num_samples={scfg.num_samples} repeats the grid of {size} point(s) {passes} times, each "
                          f"pass with the next training seed, but {space.path} draws {', '.join(drawn)} at random "
                          f"(dist: {space.params[drawn[0]].dist}): Tune's grid searcher samples them anew for every "
                          f"trial, so the repeats would train other configurations, not the same ones with other "
                          f"seeds. Fix: give them dist: grid (values: [...]), or num_samples={size} for one pass, or "
                          f"searcher.name=random / optuna to search them")
    if SEED_KEY in space.params:
        raise ConfigError(f"num_samples={scfg.num_samples} repeats the grid of {size} points {passes} times, each "
                          f"pass with the next training seed, but {space.path} already sweeps {SEED_KEY}: the "
                          f"repeats would train the same models again. Fix: num_samples={size}, or list more "
                          f"values under params.{SEED_KEY}")
    if scfg.promotion.seeds > 0:
        raise ConfigError(f"num_samples={scfg.num_samples} repeats the grid with {passes} training seeds and "
                          f"promotion.seeds={scfg.promotion.seeds} would retrain the winners with more seeds again "
                          f"(the promotion already ranks and crowns each configuration on its mean over the passes). "
                          f"Fix: one of them: num_samples={size} or promotion.seeds=0")
    seed0 = int(base.training.seed)
    seeds = Param(SEED_KEY, "grid", values=list(range(seed0, seed0 + passes)))
    return replace(space, params={**space.params, SEED_KEY: seeds})


def trial_count(p: Prepared) -> int:
    """How many trials the sweep runs: ``num_samples``, or the grid's points (× seeds)."""
    return int(p.space.grid_size()) if p.scfg.searcher.name == "grid" else int(p.scfg.num_samples)


def planned_trials(p: Prepared) -> str:
    """How many trials the sweep runs, for the console: ``num_samples``, or the grid's points (× seeds)."""
    if p.scfg.searcher.name != "grid":
        return str(p.scfg.num_samples)
    seeds = p.space.params.get(SEED_KEY)
    n = p.space.grid_size()
    drawn = [k.rsplit(".", 1)[-1] for k in p.space.drawn()]
    also = f"; {', '.join(drawn)} drawn at random per trial" if drawn else ""
    return f"{n} (grid: {n // len(seeds.values)} points × {len(seeds.values)} training seeds{also})" \
        if seeds is not None and seeds.dist == "grid" and len(seeds.values) > 1 else f"{n} (grid{also})"


# the scheduler.time_attr values that count epochs (the rest count seconds): automatic rungs, max_t and PBT's
# burn-in are in epochs
EPOCH_TIME_ATTRS = ("training_iteration", "global_epoch")


def check_trial_device(scfg: SweepConfig, base: Any) -> None:
    """A trial sees only the GPUs Ray gives it (``resources.gpu``; ``CUDA_VISIBLE_DEVICES``, renumbered from 0):
    ``training.device=cuda`` with no GPU per trial made every trial fail, and the sweep end with 'best nan'."""
    device = str(base.training.device)
    if device.startswith("cuda") and scfg.resources.gpu == 0:
        raise ConfigError(f"training.device={device} but resources.gpu=0: Ray gives each trial no GPU, so every trial "
                          f"would fail to find CUDA. Fix: resources.gpu=0.25 (four trials per GPU) or 1 to train on "
                          f"GPUs, or training.device=auto (a trial then uses the GPU Ray gives it, if any)")
    if device.startswith("cuda:") and device != "cuda:0":
        raise ConfigError(f"training.device={device}: Ray shows each trial only the GPU it assigns, as cuda:0. Fix: "
                          f"training.device=auto (or cuda), and resources.gpu to share GPUs between trials")


def check_trial_eval(scfg: SweepConfig, base: Any) -> None:
    """``eval.max_samples=0`` (no test evaluation) leaves every trial without the test figures the small-eval
    gates and the promotion compare: the whole round trained, then "0 trial(s) passed the small-eval gates"."""
    if int(base.eval.max_samples) == 0 and scfg.promotion.top_k > 0:
        raise ConfigError(f"eval.max_samples=0 turns each trial's test evaluation off, but the round's small-eval "
                          f"gates and promotion (promotion.top_k={scfg.promotion.top_k}) compare the trials' test "
                          f"figures, so no trial could pass them. Fix: eval.max_samples=-1 (the whole test split) or a "
                          f"count, or promotion.top_k=0 to sweep on validation figures alone, without a promotion")


def check_pbt_space(scfg: SweepConfig, space: SearchSpace, base: Any) -> None:
    """PBT restarts a trial from another trial's checkpoint with perturbed values: only training knobs can
    change there. A model key (shape) would make every exploit fail on a checkpoint of another shape.  And
    its stage must leave room for one perturbation, or the sweep is random search under another name."""
    from ups.train.checkpoint import MODEL_SECTIONS

    if scfg.scheduler.name != "pbt":
        return
    lengths = sorted(k for k in [*space.params, *space.derived]
                     if k.startswith("stages.") and k.endswith((".epochs", ".time_budget_s")) or k == "training.time_budget_s")
    if lengths:
        raise ConfigError(f"{space.path}: scheduler.name=pbt cannot search {', '.join(lengths)}: PBT changes the "
                          f"values of running trials and hands them each other's checkpoints, and how long a stage "
                          f"trains fixes its schedule and where the population stops perturbing (the stages' ends). "
                          f"Fix: fix them in the profile or on the command line (e.g. stages.operator.epochs=40) and "
                          f"drop them from params, or scheduler.name=asha to compare training lengths")
    shaped = sorted({k for k in [*space.params, *space.derived] if k.split(".")[0] in MODEL_SECTIONS})
    if shaped:
        raise ConfigError(f"{space.path}: scheduler.name=pbt cannot search model keys ({', '.join(shaped)}): PBT "
                          f"hands trials each other's checkpoints, and a checkpoint only loads into the model shape "
                          f"it was trained with. Fix: scheduler.name=asha for capacity sweeps (round B, dims, "
                          f"aggressive), or keep only training knobs (stages.*, training.*, ttc.*) in the space")
    ref = scfg.searcher.start_at_reference and scfg.num_samples > 1  # the reference trial is left out of PBT's
    population = scfg.num_samples - int(ref)  # population (it measures the round, unperturbed)
    if population < 2:
        raise ConfigError(f"scheduler.name=pbt with num_samples={scfg.num_samples}: a population of {population}"
                          + (" (the reference trial, which PBT leaves out of it, is the other)" if ref else "")
                          + " has no other trial to exploit, so PBT would never perturb and the sweep would be random "
                          f"search. Fix: num_samples={2 + int(scfg.searcher.start_at_reference)} or more (the smoke "
                          f"profile's 4), or scheduler.name=asha")
    sc = scfg.scheduler
    burn_in, window = pbt_bounds(scfg, base, space)
    start = burn_in - sc.perturbation_interval
    if sc.time_attr in EPOCH_TIME_ATTRS and burn_in >= window:
        raise ConfigError(f"scheduler.perturbation_interval={sc.perturbation_interval}: PBT perturbs {space.path.name}'s "
                          f"knobs from iteration {start} (where their stages start) + one interval and stops at "
                          f"iteration {window} (where they end), so it would never perturb and the sweep would be "
                          f"random search. Fix: scheduler.perturbation_interval={max(1, (window - start) // 4)} (any "
                          f"value below {window - start}), or more epochs in those stages")


def check_asha_rungs(scfg: SweepConfig, base: Any, space: SearchSpace) -> None:
    """Refuse an ASHA first rung inside the autoencoder stage (the operator is untrained there, so
    val_nrmse ranks nothing and ASHA would stop trials at random) and a ``max_t`` that ends trials before
    their final evaluation (Ray's ASHA stops every trial at ``max_t``)."""
    sc, ae = scfg.scheduler, int(base.stages.autoencoder.epochs)
    per_stage = stage_epochs(base, space)
    longest = sum(per_stage.values())
    epochs = sc.time_attr in EPOCH_TIME_ATTRS  # else seconds
    if sc.name == "asha" and epochs and 0 < sc.max_t <= longest:
        which = "the longest trial this space can sample" if longest != total_epochs(base) else "a trial"
        stages = ", ".join(f"{n} {e}" for n, e in per_stage.items())
        raise ConfigError(f"scheduler.max_t={sc.max_t}: Ray's ASHA stops a trial when its {sc.time_attr} reaches "
                          f"max_t, and {which} here trains {longest} epochs ({stages}) before its final evaluation: "
                          f"trials would be cut before it, with no test score to rank or promote. Fix: "
                          f"scheduler.max_t=0 (automatic, here {longest + 2}), or fewer epochs "
                          f"(stages.operator.epochs=…) to train less")
    offset = rung_offset(scfg, base) if sc.name == "asha" else 0
    if offset and not epochs:
        raise ConfigError(f"scheduler.rungs_from=operator counts ASHA's rungs in epochs from the end of the "
                          f"autoencoder stage, but scheduler.time_attr={sc.time_attr} counts seconds. Fix: "
                          f"scheduler.time_attr=training_iteration, or scheduler.rungs_from=start")
    if sc.name == "asha" and epochs and offset + sc.grace_period > longest:
        where = f" (counted after the autoencoder's {offset} epochs)" if offset else ""
        raise ConfigError(f"scheduler.grace_period={sc.grace_period}{where} puts ASHA's first rung after the last epoch "
                          f"of the longest trial here ({sc.time_attr} {longest}): no trial would reach a rung, and "
                          f"ASHA would stop none. Fix: scheduler.grace_period=0 (automatic, here "
                          f"{automatic_grace(scfg, base)}) or a value up to "
                          f"{longest - offset}, or "
                          f"scheduler.name=fifo for no early stopping")
    if sc.name == "asha" and sc.time_attr != "training_iteration" and sc.grace_period == 0:
        raise ConfigError(f"scheduler.grace_period=0 (automatic) counts epochs, but scheduler.time_attr="
                          f"{sc.time_attr}. Fix: give scheduler.grace_period in {sc.time_attr} units, or use "
                          f"scheduler.time_attr=training_iteration")
    if sc.name == "asha" and not epochs and sc.max_t == 0:
        raise ConfigError(f"scheduler.max_t=0 (automatic) counts epochs ({longest + 2} here), but scheduler.time_attr="
                          f"{sc.time_attr} counts seconds: Ray's ASHA would stop every trial at {longest + 2} s. Fix: "
                          f"scheduler.max_t=<the most seconds a trial may train>, or "
                          f"scheduler.time_attr=training_iteration")
    if sc.name == "asha" and sc.time_attr == "training_iteration" and 0 < sc.grace_period <= ae and not offset:
        raise ConfigError(f"scheduler.grace_period={sc.grace_period} puts ASHA's first rung inside the autoencoder "
                          f"stage (iterations 1-{ae}), where the operator is untrained and val_nrmse ranks nothing: "
                          f"ASHA would stop trials at random. Fix: scheduler.grace_period=0 (automatic, here "
                          f"{auto_grace_period(base)}) or a value above {ae}")
    rungs = asha_rungs(scfg, base, space)[2]
    if sc.name == "asha" and sc.brackets > len(rungs):
        raise ConfigError(f"scheduler.brackets={sc.brackets}: each ASHA bracket starts one rung later than the one "
                          f"before, and this sweep has {len(rungs)} rung(s) ({sc.time_attr} {rungs}): brackets "
                          f"beyond {len(rungs)} would have no rung and never stop a trial. Fix: "
                          f"scheduler.brackets={len(rungs)} or fewer (1: one bracket), or more rungs (a smaller "
                          f"scheduler.grace_period or reduction_factor)")


def auto_grace_period(cfg: Any) -> int:
    """ASHA's first rung for ``scheduler.grace_period=0``: the autoencoder epochs plus a third of the
    operator's. Measured on the CPU profile (benchmarks/search_efficiency.py, ``rung_spearman``): the rank
    of a trial at operator epoch 10 of 30 predicts its final rank (Spearman 0.81-0.90), at epoch 6 it
    does not (0.58-0.73)."""
    return int(cfg.stages.autoencoder.epochs) + max(1, math.ceil(int(cfg.stages.operator.epochs) / 3))


def resolve_storage_path(storage_path: str) -> tuple[str, Any, str]:
    if not storage_path.startswith("s3://"):
        from ups.cloud.storage import resolve_storage

        resolve_storage(storage_path)  # its scheme check: S3://, gs://, s3:/ were taken for local folders
    if storage_path.startswith("s3://"):
        from ups.cloud.storage import preflight, resolve_storage

        preflight(storage_path)
        path, fs = resolve_storage(storage_path)
        return path, fs, storage_path.rstrip("/")
    p = resolve_path(storage_path)
    try:
        make_writable_folder(p)
    except OSError as e:
        raise ConfigError(f"storage_path: cannot write to '{p}' ({e.strerror}). Fix: pass storage_path=<a writable "
                          f"folder> or s3://bucket/prefix") from None
    return str(p), None, str(p)


def experiment_name(s: SweepConfig, storage_path: str, fs: Any, display_storage: str) -> str:
    """The sweep's folder name: ``name=``, the newest sweep of the round on a resume, or a new timestamped one."""
    if s.name:
        return s.name
    if s.resume:
        found = experiment_dirs(storage_path, fs, s.round)
        if not found:
            raise ConfigError(f"resume=true: no '{s.round}-*' sweep found under {display_storage}. Fix: run without "
                              f"resume=true to start one, or pass the storage_path=/name= of the interrupted sweep")
        return latest_sweep(found, s.round)
    return new_sweep_name(s.round, storage_path, fs)


# -------------------------------------------------------------------------------------- Ray
def check_ray_address(address: str, timeout: float) -> None:
    """Fail in seconds, with the fix, when a remote Ray address does not answer."""
    if address in ("", "auto", "local"):
        return
    scheme = address.split("://", 1)[0].lower() if "://" in address else ""
    if scheme in ("http", "https"):  # the shell's RAY_ADDRESS for `ray job submit`, not one a driver can connect to
        raise RayConnectError(
            f"RAY_ADDRESS '{address}' is the dashboard's Jobs API address (what `ray job submit` takes), not one a "
            f"driver connects to. Fix: submit the sweep as a job (`ray job submit --address {address} --working-dir . "
            f"-- python sweeps/<round>.py …`: Ray gives the job its own RAY_ADDRESS), or run it here against the "
            f"head's GCS (RAY_ADDRESS=<head>:6379), or unset RAY_ADDRESS for a local instance")
    if scheme == "ray":  # Ray Client: Tune's loop would run in an actor on the head, this driver's rest here
        raise RayConnectError(
            f"RAY_ADDRESS '{address}' is a Ray Client address: under Ray Client, Tune runs the sweep's loop in an "
            f"actor on the head, so its leaderboard rows, W&B run and Optuna study would be written on the head's "
            f"disk while this process writes the promotion and report here, and a resume=true cannot restore it. "
            f"Fix: run the driver on the cluster: `ray submit cluster.yaml sweeps/<round>.py … ray_address=auto`, or "
            f"`ray job submit --address http://<head>:8265 --working-dir . -- python sweeps/<round>.py …`, or join "
            f"the head's GCS from inside its network (RAY_ADDRESS=<head>:6379)")
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:6379, as Ray writes IPv6
    if not host or not port.isdigit():
        raise RayConnectError(f"RAY_ADDRESS '{address}' is not host:port. Fix: e.g. RAY_ADDRESS=10.0.0.5:6379, "
                              f"or unset RAY_ADDRESS to run on a local Ray instance")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as e:
        raise RayConnectError(
            f"Ray cluster at '{address}' (RAY_ADDRESS / ray_address) is unreachable within {timeout:g}s: {e}. "
            f"Fix: start it (`ray up cluster.yaml` or `ray start --head`), check host and port (the GCS's, 6379 by "
            f"default) and the security group, or unset RAY_ADDRESS to run on a local Ray instance") from None
    if "://" in address:  # another scheme Ray knows (a plug-in's): ray.init decides
        return
    problem = gcs_problem(hostport, timeout)
    if problem:
        raise RayConnectError(
            f"RAY_ADDRESS '{address}': {problem}. Fix: point RAY_ADDRESS / ray_address at the head's GCS port "
            f"(`ray start --head` prints it; 6379 by default, not the dashboard's 8265 or Ray Client's 10001), or "
            f"unset RAY_ADDRESS to run on a local Ray instance")


def connect_ray(s: SweepConfig) -> bool:
    """Reuse an initialized Ray, connect to RAY_ADDRESS, or start a local instance; True if we did."""
    import ray

    if ray.is_initialized():
        return False
    address = s.ray_address or os.environ.get("RAY_ADDRESS", "")
    check_ray_address(address, s.connect_timeout_s)
    from ups.tune.stop_signals import kept_sigterm

    with kept_sigterm():
        init_ray(s, address)
    return True


def init_ray(s: SweepConfig, address: str) -> None:
    import ray

    if address and address != "local":
        try:
            ray.init(address=address, log_to_driver=s.verbose >= 2)
        except (ConnectionError, RuntimeError, ValueError) as e:  # ValueError: an address Ray cannot parse
            first = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
            raise RayConnectError(
                f"could not connect to the Ray cluster at '{address}' (RAY_ADDRESS / ray_address): {first[:300]}. "
                f"Fix: check that the cluster is up (`ray status` on the head) and that the address is the head's "
                f"GCS host:port (or `auto` on the head itself), or unset RAY_ADDRESS to run locally") from None
    else:  # "local": a new local instance even where RAY_ADDRESS names a cluster, with ray_num_cpus as without it
        ray.init(address="local" if address else None, num_cpus=s.ray_num_cpus or None, include_dashboard=False,
                 log_to_driver=s.verbose >= 2, configure_logging=False)


def concurrency(s: SweepConfig, remote: bool) -> int:
    """Trials at a time: ``max_concurrent`` when set; on a remote cluster ``ADAPTIVE`` (the limit follows
    the cluster as it scales, ``ups.tune.concurrency``); on the local instance what its resources hold."""
    import ray

    if remote:
        return s.max_concurrent or ADAPTIVE
    res = ray.cluster_resources()
    gpus, cpus = float(res.get("GPU", 0)), float(res.get("CPU", 1))
    if s.resources.gpu > 0 and gpus == 0:
        raise ConfigError(f"resources.gpu={s.resources.gpu} but this Ray instance has no GPUs. Fix: use "
                          f"profile=smoke / resources.gpu=0 on CPU, or connect to a GPU cluster (RAY_ADDRESS)")
    check_local_fit(s, cpus, gpus)
    return local_concurrency(s, cpus, gpus)


def local_concurrency(s: SweepConfig, cpus: float, gpus: float) -> int:
    """``max_concurrent``, or the trials one node of ``cpus``/``gpus`` holds by every resource a trial asks
    for: 16 CPUs and 1 GPU hold 4 trials of ``{cpu: 2, gpu: 0.25}``, 4 CPUs and 1 GPU only 2 (a limit of 4
    there would keep 2 suggestions waiting for CPUs, each made before the results it could have used)."""
    return s.max_concurrent or max(1, node_slots({"CPU": cpus, "GPU": gpus}, per_trial_resources(s)))


def check_local_fit(s: SweepConfig, cpus: float, gpus: float) -> None:
    """Refuse a trial larger than the local Ray instance: Tune would keep every trial PENDING forever
    (``resources.cpu=3`` on a 2-core machine waited with no error).  A cluster may still add bigger nodes."""
    for key, want, have, unit in (("cpu", s.resources.cpu, cpus, "CPUs"), ("gpu", s.resources.gpu, gpus, "GPUs")):
        if want > have and (key == "cpu" or have > 0):
            fits = f"resources.{key}={have:g} or less" if have >= 1 else f"resources.{key}={have:g}"
            raise ConfigError(f"resources.{key}={want:g} per trial, but the local Ray instance has {have:g} {unit} "
                              f"({'ray_num_cpus / ' if key == 'cpu' else ''}this machine's): no trial could ever start, "
                              f"and Tune would wait with every trial PENDING. Fix: {fits}, or connect to a cluster "
                              f"with bigger nodes (RAY_ADDRESS=<head>:6379)")


def round_concurrency(s: SweepConfig, max_conc: int) -> int:
    """The round's own searcher limit: ``max_conc``, except under PBT, where it is ``ADAPTIVE`` (no limit
    on a random / grid searcher).  PBT's population (``num_samples``) must exist from the start, so the
    resources decide how many train at once and PBT pauses the others at its perturbation steps; a
    searcher's limit would leave no trial pending and split the population into waves that never meet.
    The promotion's retrains (FIFO) keep ``max_conc``."""
    if s.scheduler.name != "pbt":
        return max_conc
    if s.max_concurrent:
        who = (f"its {s.num_samples} trials (a population of {s.num_samples - 1} and the reference trial, which "
               f"PBT leaves out of it) take" if s.searcher.start_at_reference and s.num_samples > 1
               else f"its population of {s.num_samples} takes")
        _log(f"scheduler=pbt: max_concurrent={s.max_concurrent} is not applied to the round; {who} turns on what the "
             f"resources hold (resources.cpu / resources.gpu)")
    return ADAPTIVE


def per_trial_resources(s: SweepConfig) -> dict[str, float]:
    return {"CPU": s.resources.cpu, "GPU": s.resources.gpu}


def empty_cluster_text(per_trial: dict[str, float], nodes: list[dict[str, Any]] | None = None) -> str:
    """What a trial asks for against what the cluster's largest alive nodes have: ``1 CPU and 0.25 GPU per trial;
    its nodes have at most 2 CPUs and 0 GPUs``."""
    if nodes is None:
        import ray

        nodes = ray.nodes()
    alive = [n.get("Resources", {}) for n in nodes if n.get("Alive")]
    have = {k: max((float(r.get(k, 0)) for r in alive), default=0.0) for k in per_trial}
    ask = " and ".join(f"{v:g} {k}" for k, v in per_trial.items() if v > 0)
    return f"{ask} per trial; its nodes have at most " + " and ".join(f"{v:g} {k}s" for k, v in have.items())


# ----------------------------------------------------------------------------- data, baselines
def load_data(base: Any) -> Any:
    from ups.data.protocol import load_protocol

    return load_protocol(base.data)


def eval_subset(base: Any, data: Any) -> int:
    """How many of the first test trajectories each trial's own eval scores (``eval.max_samples``), or -1 for
    the whole test split (also when ``max_samples`` is 0 or not below the split's size)."""
    first = int(base.eval.max_samples)
    return first if 0 < first < int(data.test.shape[0]) else -1


def baseline_rows(s: SweepConfig, base: Any, data: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Persistence / linear / FNO on the same data → (leaderboard rows, kind=baseline, scored on the whole test
    split; the same models scored on the test trajectories each trial's own eval scores, ``eval.max_samples``:
    the small-eval gate's fallback when the reference trial has no eval).  The two lists are the same rows
    when the trials score the whole split.  Cached."""
    if not s.baselines:
        return [], []
    from ups.baselines import score_baselines  # part of ups: a failing import is a broken install, not "no rows"

    cache = Path(str(base.data.cache_dir)).expanduser().parent / "baselines"
    first = eval_subset(base, data)
    # fno_steps: exactly that many steps, with no wall-clock cut (a budget beside it would stop it first under load)
    scored = score_baselines(data, fno_budget_s=0.0 if s.fno_steps else s.fno_budget_s, seed=int(base.training.seed),
                             cache_dir=cache, fno_steps=s.fno_steps or None,
                             samples=(-1,) if first < 0 else (-1, first), announce=_log)
    dh = str(getattr(data, "data_hash", ""))[:12]
    tables = []
    for rows in scored:
        out = []
        for r in rows:
            row = {k: v for k, v in r.items() if not isinstance(v, (dict, list))}
            row.update({"run_id": f"baseline-{r['name']}-{dh}", "label": r["name"], "round": "baseline",
                        "kind": "baseline", "status": "completed", "stop_reason": "baseline",
                        # trained on the driver's CPU (ups.baselines): no GPU-hours to price, as a CPU trial's
                        "wall_clock": round(float(r.get("train_s") or 0.0), 2), "gpu_hours": 0.0, "est_cost": 0.0,
                        "tags": f"data:{dh}", "data_hash": dh,
                        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds")})
            out.append(row)
        tables.append(out)
    if first > 0:  # the gate says which samples its fallback row was scored on
        for row in tables[-1]:
            row["scored_on"] = f"the first {first} of {int(data.test.shape[0])} test trajectories"
    return tables[0], tables[-1]


# ------------------------------------------------------------------------------------- tuner
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
                          reuse_actors=True, trial_dirname_creator=_trial_dirname,
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


def _trial_dirname(trial: Any) -> str:
    return f"trial_{trial.trial_id}"


def make_trainable(p: Prepared, data: Any, trainable: Callable[..., Any] | None) -> Any:
    from ray import tune

    s = p.scfg
    if trainable is None:
        trainable = tune.with_parameters(ups_trial, base=to_dict(p.base), space=p.space, label=s.round, data=data,
                                         stage_cache=s.stage_cache, storage=p.storage_path)
    res = {"cpu": s.resources.cpu, "gpu": s.resources.gpu}
    return tune.with_resources(trainable, res)


# -------------------------------------------------------------------------------------- run
def check_sweep_folder(p: Prepared, name: str) -> None:
    """Before any compute: resume=true needs Tune state in the folder (a misspelt name= has none), and a new sweep
    must not start in the folder of an earlier one (name= given twice: Tune would mix the two sweeps), nor take
    the name of trials the leaderboard holds from a sweep elsewhere (its rows would be ranked and promoted with
    the new sweep's)."""
    from ray import tune

    from ups.tune.tune_state import has_state

    folder = f"{p.display_storage}/{name}"
    started = tune.Tuner.can_restore(f"{p.storage_path}/{name}", storage_filesystem=p.filesystem)
    # Tune writes tuner.pkl when the Tuner is built, its first experiment state seconds later: a driver killed in
    # between left a folder Tuner.restore cannot continue ("no search space has been defined") and, counted as a
    # sweep, one no new run could use either
    held = started and has_state(f"{p.storage_path}/{name}", p.filesystem)
    if p.scfg.resume and started and not held:
        raise ConfigError(f"resume=true: the sweep in '{folder}' was stopped before Tune saved its first state, so "
                          f"there is nothing to resume. Fix: run the same command without resume=true and with "
                          f"name={name}: it starts that sweep again in the same folder")
    if p.scfg.resume and not held:  # a misspelt name=, or a sweep killed before Tune started (data, baselines)
        raise ConfigError(f"resume=true: '{folder}' holds no restorable sweep state: no sweep of that name got as far "
                          f"as its trials there (a driver stopped while it made the data or baselines leaves none). "
                          f"Fix: run the same command without resume=true to start it (name={name} is free), or "
                          f"name= the sweep you meant (its folder under {p.display_storage})")
    if started and not held:
        _log(f"'{folder}' holds a sweep stopped before Tune saved its first state: starting it again there")
    if not p.scfg.resume and held:
        raise ConfigError(f"name={name}: '{folder}' already holds a sweep. Fix: resume=true to continue it, or name= "
                          f"a new sweep (without name= each sweep gets a timestamped one)")
    if not p.scfg.resume and not started and p.leaderboard.exists():  # rows of a sweep of this name elsewhere
        lb = read_leaderboard(p.leaderboard)
        theirs = lb[(lb["experiment"] == name) & (lb["kind"] == "trial")] if not lb.empty else lb
        if len(theirs):
            stamps = theirs["timestamp"].dropna().astype(str) if "timestamp" in theirs else []
            when = min(stamps) if len(stamps) else ""
            raise ConfigError(
                f"name={name}: the leaderboard {p.leaderboard} already holds {len(theirs)} trial row(s) of a sweep "
                f"named {name}{f' (from {when})' if when else ''}, which is not in '{folder}' (another storage_path, "
                f"or its folder was deleted). A new sweep of that name would be ranked and promoted with its trials "
                f"(and share its Optuna study and W&B run). Fix: name= a new sweep (without name= each sweep gets a "
                f"timestamped one), or leaderboard= another file, or resume=true with the storage_path that sweep is in")


def python_command() -> str:
    """``python`` where that is this interpreter on the PATH, else this interpreter's path (a venv's python run by
    its path, the venv not activated)."""
    found = shutil.which("python")
    return "python" if found and os.path.abspath(found) == os.path.abspath(sys.executable) else sys.executable


def resume_command(name: str, argv: Sequence[str] | None = None) -> str:
    """The command that resumes sweep ``name``: this process's command line with ``resume=true name=<name>`` in
    place of any it had (a sweep script or ``ups sweep``); else the words for it."""
    argv = list(sys.argv if argv is None else argv)
    head = argv[0] if argv else ""
    keep = [a for a in argv[1:] if override_key(a) not in ("resume", "name")]
    if Path(head).name in ("ipykernel_launcher.py", "__main__.py"):  # a notebook's kernel (python -m …): not a command
        head = ""  # (ipykernel in sys.modules said so in any process that had imported it: a test run's too)
    if head.endswith(".py"):
        cmd = [python_command(), head, *keep]
    elif Path(head).name == "ups":
        cmd = ["ups", *keep]
    else:
        return f"the same command with resume=true name={name}"
    return shlex.join([*cmd, "resume=true", f"name={name}"])


def run_round(round_name: str, overrides: Sequence[str] = (), *, defaults: dict[str, Any] | None = None,
              trainable: Callable[..., Any] | None = None, around_champion: bool = False,
              promote: bool = True, check: Callable[[Prepared], None] | None = None) -> SweepOutcome:
    """Run (or resume) one round; returns its outcome. ``trainable`` replaces the UPS trial (tests);
    ``check``: the round's own requirements on the prepared sweep, raising ConfigError before any compute."""
    p = prepare(round_name, overrides, defaults, around_champion=around_champion)
    if check is not None:
        check(p)
    s = p.scfg
    name = experiment_name(s, p.storage_path, p.filesystem, p.display_storage)
    exp_path = f"{p.display_storage}/{name}"
    for line in p.centre_note.splitlines():
        _log(line)
    record = {**sweep_record(p, overrides), "name": name}  # the name: a copied or renamed folder is refused
    # first: a sweep whose driver still runs (between building its Tuner and its first state, too) is its own
    check_no_live_driver(p.storage_path, p.filesystem, name, p.display_storage)
    check_sweep_folder(p, name)  # first: a folder with no Tune state has no trials whose settings could differ
    if s.resume:  # before any compute: the same trials, the same budgets and data, or a clear refusal
        check_resume(p.storage_path, p.filesystem, name, p.display_storage, record)
    if not s.resume:  # named before data and baselines: a driver stopped there had said nothing of which sweep
        _log(f"sweep {name}: {p.display_storage}/{name}")
    warm: list[tuple[dict[str, Any], float]] = []
    if not s.resume:  # a resumed sweep's searcher comes back with what it was told
        from ups.tune.warm_start import warm_points

        warm, note = warm_points(p, name, record)
        if note:
            _log(note)
    import ray

    address = s.ray_address or os.environ.get("RAY_ADDRESS", "")
    local = address in ("", "local")  # ray_address=local starts a local instance too: the same checks
    started = False
    if not ray.is_initialized():  # fail fast on a dead cluster / missing GPU before generating data
        if not local:  # a cluster: checked (check_ray_address) and connected before data and baselines
            started = connect_ray(s)
        if local:  # the local instance to be (Ray may see fewer CPUs, in a container: checked again)
            gpus = 0.0
            if s.resources.gpu > 0:
                import torch

                if not torch.cuda.is_available():
                    here = "profile=smoke (or resources.gpu=0)" if s.profile != "smoke" else "resources.gpu=0"
                    if str(p.base.training.device).startswith("cuda"):
                        here += " with training.device=auto"
                    raise ConfigError(f"resources.gpu={s.resources.gpu} (profile={s.profile}) but this machine has "
                                      f"no CUDA GPU and no RAY_ADDRESS is set. Fix: run {here} here, or connect to "
                                      f"a GPU cluster with RAY_ADDRESS=<head>:6379")
                gpus = float(torch.cuda.device_count())
            check_local_fit(s, float(s.ray_num_cpus or os.cpu_count() or 1), gpus)
    # a new sweep's folder and record exist from here: resume=true without name= after a driver stopped in the data or
    # baselines finds this sweep, not the newest earlier one with Tune state (whose promotion it redid); a refusal or
    # failure before Tune built the sweep removes them again (an interrupt keeps them: that is what they are for).
    # The lease is taken first: a second driver given this name= while this one makes its data or baselines is
    # refused at once (taken after the data, it let that second driver run the same sweep in the same folder)
    lease = DriverLease(p.storage_path, p.filesystem, name, p.display_storage)
    try:
        with provisional_folder(p.storage_path, p.filesystem, name, record, new=not s.resume, lease=lease):
            data = load_data(p.base) if trainable is None else None
            if s.resume and data is not None:
                check_resume_data(p.leaderboard, name, str(getattr(data, "data_hash", "") or ""))
            if not p.centre_data_differs and (note := centre_data_note(p, data)):
                _log(note)
            baselines, gate_baselines = baseline_rows(s, p.base, data) if data is not None else ([], [])
            if baselines:
                upsert_rows(p.leaderboard, baselines)
                first, n_test = eval_subset(p.base, data), int(data.test.shape[0])
                if first > 0:  # the gates measure trials against the reference trial, scored on the same
                    _log(f"note: eval.max_samples={first}: each trial's own eval scores the first {first} of the "
                         f"{n_test} test trajectories (and so do the small-eval gate's baselines), the leaderboard's "
                         f"baseline rows and the promotion's full-eval all {n_test}; on the leaderboard their nrmse do "
                         f"not compare (drop eval.max_samples to score trials on the whole split)")
            ref = {r["label"]: r for r in baselines}.get(s.gates.reference)
            limits = GateLimits.from_baseline(s.gates, ref)
            started = connect_ray(s) or started
            max_conc = concurrency(s, remote=not local)
            round_conc = round_concurrency(s, max_conc)
            point = p.space.reference_point(p.base)
            ctx = RowContext(round=s.round, experiment=name, space=p.space, base=to_dict(p.base), reference_point=point,
                             scheduler=s.scheduler.name, gpu_per_trial=s.resources.gpu,
                             cost_per_gpu_hour=s.cost_per_gpu_hour, tags=[f"profile:{s.profile}"],
                             data_hash=str(getattr(data, "data_hash", "") or ""))
            lb_cb = LeaderboardCallback(p.leaderboard, ctx, limits, gates_enabled=s.gates.enabled,
                                        budgets={"compute_budget_s": s.compute_budget_s, "time_budget_s": s.time_budget_s})
            callbacks: list[Any] = [lb_cb]
            mode = resolve_mode(s.wandb.mode)
            if s.wandb.enabled and mode != "disabled":
                callbacks.append(WandbRoundLogger(project=s.wandb.project, group=s.wandb.group or default_group(s.round),
                                                  name=name, mode=mode,
                                                  directory=resolve_path(s.wandb.dir) if s.wandb.dir else None,
                                                  # W&B writes its run folders in <dir>/wandb/
                                                  default_directory=Path(p.storage_path)
                                                  if p.filesystem is None else Path.cwd(),
                                                  config={"round": s.round, "profile": s.profile,
                                                          "num_samples": s.num_samples},
                                                  resume=s.resume, init_timeout_s=s.wandb.init_timeout_s,
                                                  leaderboard=lb_cb))
            if live := live_study(p, name, exp_path, warm, lb_cb):
                callbacks.append(live)
            tr = make_trainable(p, data, trainable)
            rungs = (f" (rungs at {s.scheduler.time_attr} {asha_rungs(s, p.base, p.space)[2]}"
                     + (f", {s.scheduler.brackets} brackets" if s.scheduler.brackets > 1 else "") + ")"
                     if s.scheduler.name == "asha" else "")
            slots = cluster_slots(per_trial_resources(s))
            at_a_time = (f"≤{round_conc}" if round_conc != ADAPTIVE else
                         f"as many as the resources hold (now {slots}; PBT's population takes turns)"
                         if s.scheduler.name == "pbt" else
                         f"as many as the cluster holds (now {slots}, "
                         f"{'one more' if s.pending_trials == 1 else f'{s.pending_trials} more'} pending)")
            _log(f"{s.round}: {planned_trials(p)} trials, {at_a_time} at a time, searcher={s.searcher.name}, "
                 f"scheduler={s.scheduler.name}{rungs}, storage={exp_path}")
            if slots == 0:  # a cluster (the local instance was checked to fit): Ray only repeats it every minute
                _log(f"note: no node of the cluster holds a trial now ({empty_cluster_text(per_trial_resources(s))}): "
                     f"the trials wait, pending, for workers to join, as cluster.yaml's autoscaler adds them for pending "
                     f"trials (`ray status` on the head shows the demand). On a cluster without an autoscaler they never "
                     f"start: stop with Ctrl-C (nothing is lost; resume=true with other resources.* continues) and "
                     f"ask for what its nodes have")
            for note in unread_overrides(s, overrides):
                _log(f"note: {note}")
            n_trials = trial_count(p)
            if (not s.resume and s.searcher.start_at_reference and s.searcher.name != "grid" and n_trials == 1
                    and not s.promotion.force):  # a grid's one point is not the reference: it is judged by the FNO
                _log("note: num_samples=1 trains the reference trial only: it is the small-eval gates' yardstick, "
                     "never promoted itself, so this sweep promotes nothing. Fix: num_samples=2 or more, or "
                     "promotion.force=true to full-evaluate it")
            if not s.resume and (note := startup_only_note(s, n_trials, round_conc if round_conc != ADAPTIVE else slots,
                                                           len(warm))):
                _log(f"note: {note}")
            from ray import tune

            if s.resume:
                _log(f"resuming {exp_path}")
                if repaired := restorable_state(p, name):
                    _log(repaired)
                tuner = tune.Tuner.restore(f"{p.storage_path}/{name}", tr, resume_errored=True,
                                           storage_filesystem=p.filesystem)
                results, histories = restored_runs(tuner, lb_cb)
                if note := finished_note(tuner, name, n_trials):
                    _log(note)
                stop = build_stopper(s, limits, lb_cb.spent_s)
                gates = [*gate_trackers(stop), lb_cb.tracker] if s.gates.enabled else []
                for line in carry_over(tuner, run_config(p, name, stop, callbacks),
                                       per_trial_resources(s), s.pending_trials, round_conc, results, gates, histories):
                    _log(line)
            else:
                tuner = build_tuner(p, name, tr, limits, round_conc, callbacks, warm)
                write_record(p.storage_path, p.filesystem, name, record)

            if live:  # after a resume's state repair (the study is rebuilt from the folder); the file exists when named
                live.setup()
                if not live.off:
                    _log(f"Optuna study, live: study '{name}' in {live.mirror.storage_url} "
                         f"(optuna-dashboard {live.mirror.storage_url})")

            def ray_gone() -> None:  # the driver's last act when its Ray went (its local instance stopped, or the head
                # of the joined cluster): no ResultGrid
                lb_cb.record_unfinished(INTERRUPTED)
                print_leaderboard(SweepOutcome(name, exp_path, p.leaderboard, read_leaderboard(p.leaderboard), None, None,
                                               baselines, interrupted=True), s.print_top)

            def cluster_lost(what: str) -> None:  # the joined cluster's head is gone: Ray would abort the driver
                ray_gone()  # the same record of the unfinished trials and leaderboard
                lease.release()
                _log(f"cluster lost: when it is back (`ray up cluster.yaml`, `ray status`), finish the sweep with "
                     f"{resume_command(name)}")

            try:
                with stop_signals_as_ctrl_c(on_ray_gone=ray_gone), watch_cluster(s.cluster_lost_s, cluster_lost):
                    grid = tuner.fit()
            finally:  # every trial has ended (or Tune raised): the stage cache and scratch a killed worker or
                # driver could not remove go too, on every node
                remove_scratch(name, p.storage_path)
            cut = loop_cut(lb_cb)
            reconcile(p.leaderboard, ctx, grid, lb_cb, cut)
            if cut != INTERRUPTED and (budget := lb_cb.cut_at_step):
                _log(budget_note(budget, sum(1 for r in grid if r.metrics), n_trials))  # reported: it ran
            champion, promotion_cut = None, False
            if cut == INTERRUPTED:
                _log("promotion: not run, the round is unfinished (it runs when the resumed sweep ends)")
            elif promote and s.promotion.top_k > 0:
                try:
                    with stop_signals_as_ctrl_c(into_tune=False):
                        champion = promote_round(p, ctx, baselines, data, limits, max_conc, gate_baselines)
                except SweepInterrupted:  # in the seed retrains' Tune loop: their own message and resume
                    raise
                except KeyboardInterrupt:  # in a full-eval: the trials are all recorded, the champion untouched
                    promotion_cut = True
            report = write_report(exp_path, p.leaderboard, s.round, resolve_path(s.report_dir) / s.round,
                                  champion=resolve_path(s.champion)) if s.write_report else None
            if exp_path.startswith("s3://"):  # leaderboard + report next to the Tune state (ups.cloud)
                wandb_runs = [c.offline_folder for c in callbacks if isinstance(c, WandbRoundLogger) and c.offline_folder]
                champ = resolve_path(s.champion)
                publish(exp_path, p.leaderboard, report, [champ, history_path(champ)], wandb_runs[0] if wandb_runs else None)
    finally:
        lease.release()
        if started:
            ray.shutdown()
    rows = read_leaderboard(p.leaderboard)
    outcome = SweepOutcome(name, exp_path, p.leaderboard, rows, champion, report, baselines,
                           interrupted=cut == INTERRUPTED or promotion_cut)
    print_leaderboard(outcome, s.print_top)
    if too_big := gpu_share_warning(rows[rows["experiment"] == name] if not rows.empty else rows,
                                    float(s.resources.gpu)):
        _log(too_big)
    if report:
        _log(f"report: {report}")
        from ups.reports.optuna_study import STUDY_FILE, study_hint  # the report module's: it imported

        if hint := study_hint(report.parent / STUDY_FILE, name):
            _log(f"Optuna study: {hint}")
    _log(f"leaderboard: {p.leaderboard}")
    if promotion_cut:
        msg = (f"interrupted during the promotion's full-eval: every trial of {name} is finished and on the "
               f"leaderboard; the champion was not changed. To redo the promotion: {resume_command(name)}")
        _log(msg)
        raise SweepInterrupted(msg, outcome)
    mine = rows[(rows["experiment"] == name) & (rows["kind"] == "trial")] if not rows.empty else rows
    if outcome.interrupted:
        done = int((mine["status"] != INTERRUPTED).sum()) if not mine.empty else 0
        msg = (f"interrupted: {len(lb_cb.open)} trial(s) unfinished, {done} finished (on the leaderboard), "
               f"{planned_trials(p)} asked for. Its state is saved in {exp_path}. To finish it: {resume_command(name)}")
        _log(msg)
        raise SweepInterrupted(msg, outcome)
    if not mine.empty and (failed := mine[mine["status"] == "error"]).shape[0]:  # past max_failures
        outcome.failed = failed["run_id"].astype(str).tolist()
        outcome.exit_status = 1 if s.fail_on_trial_error else 0
        status = ("; exit status 1 (fail_on_trial_error=false exits 0)" if outcome.exit_status else "")
        _log(f"warning: {len(failed)} trial(s) of {name} failed past max_failures={s.max_failures} "
             f"({', '.join(outcome.failed[:3])}{' …' if len(failed) > 3 else ''}; their rows "
             f"hold their last reports, and the error is in each trial's error.txt; the leaderboard, report and "
             f"promotion are done{status}). To retry them from their last checkpoints: {resume_command(name)}")
    return outcome


def live_study(p: Prepared, name: str, exp_path: str, warm: list[tuple[dict[str, Any], float]] | None = None,
               leaderboard: LeaderboardCallback | None = None) -> Any:
    """The callback that keeps the sweep's study in the round's report file up to date while it runs
    (``ups.tune.live_study``), or None: ``live_study=false``, ``write_report=false`` (no report file), PBT (no
    study).  A resumed sweep's study is first rebuilt from its experiment folder.  ``warm``: the trials TPE is
    told first (``searcher.warm_start``), shown from the start; ``leaderboard``: the sweep's callback, whose rows
    give each ended trial its user attrs."""
    s = p.scfg
    if not (s.live_study and s.write_report) or s.scheduler.name == "pbt":
        return None
    from ups.reports.optuna_study import STUDY_FILE
    from ups.tune.live_study import LiveStudy, StudyMirror

    mirror = StudyMirror.for_space(resolve_path(s.report_dir) / s.round / STUDY_FILE, name, p.space,
                                   stopped=s.searcher.stopped,
                                   attrs={"experiment": exp_path, "searcher": s.searcher.name}, warm=warm or ())
    return LiveStudy(mirror, experiment=exp_path if s.resume else None,
                     rows=leaderboard.rows.get if leaderboard is not None else None)


def budget_note(budget: str, started: int, planned: int) -> str:
    """What the driver says when a sweep budget (``time_budget_s`` / ``compute_budget_s``) ended Tune's loop: until
    then only the rows said so, and the promotion's line came next as if the round had run in full."""
    never = max(0, planned - started)
    return (f"sweep budget {budget} used up: Tune's loop ended with {started} of {planned} trial(s) started"
            + (f" ({never} never started)" if never else "")
            + "; the unfinished ones are on the leaderboard as stopped by it. A resume keeps the budget's clock: for "
              "more trials, start a new sweep with searcher.warm_start=latest (TPE is told these), or a larger "
              f"{budget}")


def loop_cut(cb: LeaderboardCallback) -> str | None:
    """Why Tune's loop ended with trials still running: None (it did not), the sweep budget that ended it
    (``time_budget_s`` / ``compute_budget_s``), or ``INTERRUPTED`` (Ctrl-C / SIGINT: the only other way)."""
    if not cb.open:
        return None
    # as of the loop's last step: a Ctrl-C's own clean-up (seconds of stopping trials) spends no budget
    return cb.cut_at_step or INTERRUPTED


def restorable_state(p: Prepared, name: str) -> str | None:
    """Refuse (or repair from this machine's staging copy) a cut-off Tune state before restoring it."""
    import ray

    try:  # the Ray temp folder of this machine (/tmp/ray unless RAY_TMPDIR / --temp-dir moved it)
        temp_root = str(Path(ray._private.worker._global_node.get_session_dir_path()).parent)
    except AttributeError:
        temp_root = os.path.join(tempfile.gettempdir(), "ray")
    try:
        return repair_cut_off_state(f"{p.storage_path}/{name}", p.filesystem, name, temp_root)
    except ValueError as e:
        raise ConfigError(f"resume=true: {e}") from None


def restored_runs(tuner: Any, cb: LeaderboardCallback) -> tuple[list[Any], dict[str, list[dict[str, Any]]]]:
    """A restored sweep's trials (``Result`` objects) and every report each had made (read once), with ``cb``
    told what each trial had run itself (its rows' ``wall_clock``, and ``gpu_hours`` at the shares it ran on) and
    the sum (the compute budget spent)."""
    results = restored_results(tuner)
    histories = reported_histories(results)
    cb.trial_s, cb.trial_gpu_s = trial_compute_s(results, histories, cb.ctx.gpu_per_trial)
    cb.spent_s = float(sum(cb.trial_s.values()))
    return results, histories


def finished_note(tuner: Any, name: str, planned: int) -> str:
    """What a resume of a sweep whose trials had all finished says: nothing trains; the rows, the promotion and the
    report are brought up to date.  Empty when a trial is left to run (or Tune's state cannot tell)."""
    trials = getattr(restored_analysis(tuner), "trials", None)
    if not trials or len(trials) < planned or any(t.status != "TERMINATED" for t in trials):
        return ""
    return (f"resume: every trial of {name} had finished ({len(trials)} of {planned}): none trains again; its rows, "
            "promotion (the full-evals on the leaderboard kept) and report are brought up to date")


def reconcile(path: Path, ctx: RowContext, grid: Any, cb: LeaderboardCallback, cut: str | None = None) -> None:
    """Rows for terminated trials the callback did not write (e.g. finished right before a driver kill), and
    for the trials the end of Tune's loop cut short (``cut``: why it ended, see ``loop_cut``; a budget's
    stop-all ends them within the loop), rewritten each time."""
    lb = read_leaderboard(path)
    have = dict(zip(lb["run_id"].astype(str), lb["checkpoint"]))
    status = dict(zip(lb["run_id"].astype(str), lb["status"].astype(str)))
    why = cut or cb.cut_at_step
    rows, moved = [], {}
    for r in grid:
        metrics = r.metrics or {}
        tid = result_trial_id(r)
        # or an earlier driver's Ctrl-C left it "interrupted; resume=true continues it", and this resume found the
        # sweep's budget already spent (that driver's clock is restored): the budget ended it, unrun here
        short = bool(tid) and (cb.cut_short(tid, metrics) or (
            why not in (None, INTERRUPTED) and status.get(ctx.run_id(tid)) == INTERRUPTED and r.error is None
            and not metrics.get("final")))
        ckpt = r.checkpoint.path if r.checkpoint is not None else None
        if tid and ckpt and ctx.run_id(tid) in have and str(have[ctx.run_id(tid)]) != ckpt:
            moved[ctx.run_id(tid)] = ckpt  # the sweep's folder moved (storage_path= of a resume): where it is now
        if not tid or (ctx.run_id(tid) in have and not short):
            continue
        # never started (pending when the loop ended): not a finished trial; a resume runs it (it was written as "asha:
        # early stop at iteration ?").  Tune's Result for it holds {'trial_id': …} alone: no report, no iteration
        if r.error is None and metrics.get("training_iteration") is None:
            continue
        rows.append(trial_row(ctx, tid, cb.live_config(tid) or r.config or {}, metrics,
                              gate_reason=cb.tracker.reasons.get(tid),
                              errored=r.error is not None, checkpoint=ckpt,
                              cut=why if short else None, pbt_schedule=cb.pbt_schedule(tid),
                              compute_s=cb.trial_s.get(tid), gpu_s=cb.trial_gpu_s.get(tid),
                              retries=cb.retries(tid)))
    if moved:
        set_values(path, "checkpoint", moved)
    if rows:
        upsert_rows(path, rows)


def promote_round(p: Prepared, ctx: RowContext, baselines: list[dict[str, Any]], data: Any, limits: GateLimits,
                  max_conc: int, gate_baselines: list[dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Small-eval gates → full-eval → champion.  ``baselines``: scored on the whole test split (the champion's bar);
    ``gate_baselines``: the same models scored on the trials' own eval samples (the small-eval gate's fallback;
    default ``baselines``)."""
    s, name = p.scfg, ctx.experiment
    passing = apply_small_eval(p.leaderboard, name, s.small_eval,
                               baselines if gate_baselines is None else gate_baselines)
    chosen = passing[: s.promotion.top_k]
    if s.promotion.force and len(chosen) < s.promotion.top_k:
        chosen = force_fill(read_leaderboard(p.leaderboard), name, chosen, s.promotion.top_k)
    if not chosen or not s.promotion.full_eval or data is None:
        _log(f"promotion: {len(passing)} trial(s) passed the small-eval gates; no full-eval run")
        return None
    groups: dict[str, list[str]] = {}
    if s.promotion.seeds > 0:
        groups = retrain_seeds(p, ctx, chosen, data, limits, max_conc)
    elif s.searcher.name == "grid" and SEED_KEY in p.space.params:  # the passes are each configuration's seeds
        pool = passing if not s.promotion.force else force_fill(read_leaderboard(p.leaderboard), name, passing, 10**9)
        groups = pass_groups(p.leaderboard, pool, name, p.space, s.promotion.top_k)
        chosen = list(groups)
        _log(f"promotion: the grid's training-seed passes ranked on each configuration's mean over its seeds: "
             f"{', '.join(f'{rid} (+{len(rids)} seed(s))' for rid, rids in groups.items())}")
    evaluate_ids = chosen + [r for rids in groups.values() for r in rids]
    _log(f"promotion: full-eval of {', '.join(evaluate_ids)}")
    fulls = full_eval(p.leaderboard, evaluate_ids, data, filesystem=p.filesystem, round_name=s.round,
                      cost_per_gpu_hour=s.cost_per_gpu_hour)
    if groups:
        fulls = seed_mean_candidates(fulls, groups, s.promotion.seeds)
        upsert_rows(p.leaderboard, fulls)  # the promoted trials' full-eval rows carry seed_mean / seed_scores
        for r in fulls:
            scores = json.loads(r["seed_scores"])
            _log(f"promotion: {r['source_run_id']}: score over {len(scores)} training seeds {scores} → mean "
                 f"{r['seed_mean']:.4g}")
    return update_champion(resolve_path(s.champion), fulls, p.leaderboard, baselines,
                           beat_baselines=s.promotion.beat_baselines)


def retrain_seeds(p: Prepared, round_ctx: RowContext, chosen: list[str], data: Any, limits: GateLimits,
                  max_conc: int) -> dict[str, list[str]]:
    """Retrain each promoted configuration with ``promotion.seeds`` more training seeds, full budgets, as a
    Tune experiment ``seeds-<experiment>`` next to the round (resumable, rows on the leaderboard); returns
    promoted run_id → its retrains' run_ids."""
    from ray import tune
    from ray.tune import TuneConfig

    from ups.tune.tune_state import has_state

    s = p.scfg
    seed_name = f"seeds-{round_ctx.experiment}"
    base_seed = int(p.base.training.seed)
    points = seed_points(p.leaderboard, chosen, p.space, base_seed, s.promotion.seeds)
    # the round's rows context; a retrain is never the reference (its seed differs from the round's)
    ctx = replace(round_ctx, experiment=seed_name, scheduler="fifo",
                  reference_point={**round_ctx.reference_point, SEED_KEY: base_seed},
                  tags=[*round_ctx.tags, f"seeds_of:{round_ctx.experiment}"])
    lb_cb = LeaderboardCallback(p.leaderboard, ctx, limits, gates_enabled=s.gates.enabled)
    tr = make_trainable(p, data, None)
    path = f"{p.storage_path}/{seed_name}"
    seeds = sorted({q[SEED_KEY] for q in points})
    _log(f"promotion: retraining {', '.join(chosen)} with training seed(s) {', '.join(map(str, seeds))} "
         f"({len(points)} trials, {p.display_storage}/{seed_name})")
    stop = PhysicsGateStopper(limits) if s.gates.enabled else None
    started = s.resume and tune.Tuner.can_restore(path, storage_filesystem=p.filesystem)
    if started and (repaired := restorable_state(p, seed_name)):
        _log(repaired)
    # Tune writes tuner.pkl when the Tuner is built, its first state a moment later: a driver killed in between
    # left a folder every resume failed to restore (as check_sweep_folder says of a round's own folder)
    held = started and has_state(path, p.filesystem)
    if started and not held:
        _log(f"promotion: {p.display_storage}/{seed_name} was stopped before Tune saved its first state: "
             "retraining from the start there")
    if held:
        tuner = tune.Tuner.restore(path, tr, resume_errored=True, storage_filesystem=p.filesystem)
        gates = [*gate_trackers(stop), lb_cb.tracker] if s.gates.enabled else []
        results, histories = restored_runs(tuner, lb_cb)
        for line in carry_over(tuner, run_config(p, seed_name, stop, [lb_cb]), per_trial_resources(s),
                               s.pending_trials, max_conc, results, gates, histories):
            _log(line)
    else:
        param_space = {**p.space.tune_space("random"), SEED_KEY: tune.choice(seeds)}
        tune_cfg = TuneConfig(metric=METRIC, mode="min", num_samples=len(points), reuse_actors=True,
                              search_alg=VariantLimiter(points_to_evaluate=points, max_concurrent=max_conc),
                              trial_dirname_creator=_trial_dirname)
        tuner = tune.Tuner(tr, param_space=param_space, tune_config=tune_cfg,
                           run_config=run_config(p, seed_name, stop, [lb_cb]))
    try:
        with stop_signals_as_ctrl_c(on_ray_gone=lambda: lb_cb.record_unfinished(INTERRUPTED)):
            grid = tuner.fit()
    finally:
        remove_scratch(seed_name, p.storage_path)
    cut = loop_cut(lb_cb)  # retrains have no sweep budget: only an interrupt cuts them
    reconcile(p.leaderboard, ctx, grid, lb_cb, cut)
    if cut == INTERRUPTED:
        msg = (f"interrupted while retraining the promoted configurations: {len(lb_cb.open)} trial(s) of {seed_name} "
               f"unfinished. To finish them and the promotion: {resume_command(round_ctx.experiment)}")
        _log(msg)
        raise SweepInterrupted(msg)
    return seed_groups(p.leaderboard, chosen, seed_name, p.space)


def publish(experiment_uri: str, leaderboard: Path, report: Path | None, files: Sequence[Path] = (),
            wandb_offline: Path | None = None) -> None:
    """Upload the leaderboard, ``files`` (the champion record and its history), the report and an offline W&B run
    to S3; a failed upload is reported, the local results stay."""
    from ups.cloud.dataset_sync import publish_results

    try:
        n = len(publish_results(experiment_uri, leaderboard, report, files, wandb_offline))
        _log(f"published {n} file(s) to {experiment_uri}")
    except Exception as e:
        print(f"[ups sweep] upload of leaderboard/report to {experiment_uri} failed: {e}", file=sys.stderr)


def write_report(experiment_path: str, leaderboard: Path, round_name: str, out_dir: Path,
                 champion: Path | None = None) -> Path | None:
    """The round's HTML report; ``champion``: the sweep's ``champion=`` record (the full profile's
    champion_full.json), not whatever champion.json lies next to the leaderboard."""
    try:
        from ups.reports.html import write_report as _write
    except ImportError:
        _log("HTML report module (ups.reports.html) not available; skipped")
        return None
    try:
        return Path(_write(experiment_path, leaderboard, round_name, out_dir, champion_path=champion))
    except Exception as e:  # a report failure must not lose the finished sweep
        print(f"[ups sweep] report failed: {e}", file=sys.stderr)
        return None


def leaderboard_table(o: SweepOutcome, top: int, key: str | None = None) -> tuple[list[str], list[list[str]]]:
    """The rows the sweep prints at its end, best first: this experiment's best ``top`` trials and every baseline. A trial is
    named by its trial id (the title names the experiment, run_id = experiment-trial id); ``gates`` says why a
    trial failed the small-eval gates, the sentence the leaderboard's ``gate_reasons`` holds without its
    "vs reference trial …:" preamble.  ``key``: the promotion's ranking figure (``promotion_key``), when known."""
    df = o.rows
    df = df[(df["experiment"] == o.experiment) | (df["run_id"].isin([b["run_id"] for b in o.baseline_rows]))].copy()
    # evaluated trials on their test nRMSE, then the rest on their val nRMSE: sound ones, gate-stopped, errored
    df["_sort"] = pd.to_numeric(df["nrmse"], errors="coerce").fillna(
        pd.to_numeric(df.get("val_nrmse"), errors="coerce") + 10.0).fillna(1e9)
    df["_sort"] += [1e10 * trial_standing(r) for r in df.to_dict("records")]
    key = key or promotion_key(o)  # a sweep that searches ttc.* keys promotes on val_nrmse_ttc: shown beside it
    vals = ["val_nrmse", "val_nrmse_ttc"] if key == "val_nrmse_ttc" else ["val_nrmse"]
    cols = ["trial", "label", *vals, "nrmse", "nrmse_ttc", "cons_gap", "bc_viol", "wall_s", "status", "gates",
            "promotion"]
    is_base = df["kind"].astype(str) == "baseline" if "kind" in df else pd.Series(False, index=df.index)
    # the best ``top`` trials, and the baselines always (20 trials better than persistence hid them all)
    shown = pd.concat([df[~is_base].sort_values("_sort").head(top), df[is_base]])
    out = []
    for _, r in shown.sort_values("_sort", kind="stable").iterrows():
        base = str(r.get("kind")) == "baseline"
        status = _fmt(r.get("status"))
        reason = _fmt(r.get("stop_reason"))
        if reason and reason not in (status, "completed", "baseline"):
            status = f"{status}: {reason}"
        out.append(["baseline" if base else _fmt(r.get("trial_id")) or _fmt(r.get("run_id")), _fmt(r.get("label")),
                    *[_fmt(r.get(c)) for c in (*vals, "nrmse", "nrmse_ttc", "conservation_gap", "bc_violation",
                                               "wall_clock")],
                    status, "" if base else _gates_cell(r), _fmt(r.get("promotion"))])
    return cols, out


def promotion_key(o: SweepOutcome) -> str:
    """The validation figure this sweep's promotion ranks its candidates on (``ups.leaderboard.selection_key`` of
    its finished trials): ``val_nrmse_ttc`` in a sweep that searches ``ttc.*`` keys, else ``val_nrmse``."""
    from ups.leaderboard import selection_key

    df = o.rows
    done = df[(df["experiment"] == o.experiment) & (df["kind"].astype(str) == "trial")
              & pd.to_numeric(df["nrmse"], errors="coerce").notna()] if len(df) else df
    return selection_key(done.to_dict("records")) if len(done) else "val_nrmse"


def _gates_cell(r: Any) -> str:
    from ups.leaderboard import is_round_reference

    if is_round_reference(r):
        return "reference"
    passed = r.get("gate_pass")
    if passed is None or (isinstance(passed, float) and passed != passed):
        return ""
    text = str(r.get("gate_reasons") or "")
    text = text.split(": ", 1)[1] if text.startswith("vs ") and ": " in text else text
    if str(passed).lower() in ("true", "1", "1.0"):
        return "pass"
    if text.startswith("no small-eval"):  # stopped early: the status column says so already
        return "no eval"
    return f"FAIL: {text}" if text else "FAIL"


def print_leaderboard(o: SweepOutcome, top: int) -> None:
    import sys

    from rich.console import Console
    from rich.table import Table

    key = promotion_key(o)
    cols, rows = leaderboard_table(o, top, key)
    if not rows:  # print_top=0 and no baselines: no table (an empty frame said nothing)
        return
    # ranked as the baselines can be: on test nRMSE (trials without an eval after, on val): not the promotion's order
    t = Table(title=f"Leaderboard — {o.experiment}", show_lines=False,
              caption="ranked on test nrmse, next to the baselines; the promotion picks on "
                      + (f"validation ({key})" if key.startswith("val_")
                         else "test nrmse (its trials recorded no val figure)"))
    for c in cols:
        t.add_column(c, overflow="fold", max_width=44 if c in ("label", "status", "gates") else None)
    for r in rows:
        t.add_row(*r)
    # a terminal's own width (a fixed 200 wrapped every line of a narrower one); a log file gets 200
    Console(width=None if sys.stdout.isatty() else 200).print(t)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)
