"""Everything a sweep checks and resolves before ``ray.init``: the overrides, the search space against the
base config, the stages it trains, promotion, PBT and ASHA settings, output folders, the storage path and the
experiment's name (``prepare`` → ``Prepared``).  A refusal here costs no compute."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from ups.code_version import checkout_fix
from ups.config import ConfigError, apply_overrides, check_model_grid, flatten, load_config, override_key, to_dict
from ups.leaderboard import leaderboard_problem, scored_data
from ups.outputs import make_writable_folder, probe_writable_file
from ups.tune.promotion import SEED_KEY, champion_record, read_champion
from ups.tune.space import (Param, SearchSpace, SearchSpaceError, check_against, check_around_windows, load_space,
                            resolve_around)
from ups.tune.stop_signals import log as _log
from ups.tune.sweep_config import SweepConfig, load_sweep_config, resolve_path, space_path
from ups.tune.sweep_record import RECORD, experiment_dirs, latest_sweep, new_sweep_name, read_record
from ups.tune.tuner_build import (EPOCH_TIME_ATTRS, asha_rungs, auto_grace_period, automatic_grace, pbt_bounds,
                                  rung_offset, stage_epochs, total_epochs)
from ups.tune.wandb_logging import resolve_mode


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
    for warning in late_rung_notes(scfg, base, space):
        _log(f"warning: {warning}")
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
            f"round's, {data.source}: {ours[:12]}): the round searches around it, but its promotion cannot replace "
            f"it, as scores on other data do not compare. Fix: champion=<a record scored on this data> (or a new "
            f"path, which this round's best becomes), or the champion's data.* settings; where they are this round's, "
            f"the data generator changed since it was crowned (ups.data.cache.DATA_VERSION)")


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
            parts.append(f"{key} {p.low:g}…{p.high:g}" + (" (log)" if p.dist == "loguniform" or p.log else ""))
    return head + (", searching " + "; ".join(parts) if parts else "")


def check_resume_data(leaderboard: Path, name: str, data_hash: str) -> None:
    """Refuse to resume sweep ``name`` on other data than its trials on the leaderboard were scored on: the same
    ``data.*`` settings give other data when the generator changed since (``ups.data.cache.DATA_VERSION``), and
    its unfinished and new trials would be trained and scored on other data than its finished ones."""
    if not data_hash:
        return
    before = scored_data(leaderboard, name)  # none where leaderboard= changed since, or one from before data_hash
    if before and data_hash[:12] not in before:
        raise ConfigError(f"resume=true: the trials of {name} were trained and scored on data {', '.join(before)} "
                          f"({leaderboard}), this command's data is {data_hash[:12]}: the data generator changed "
                          f"since (ups.data.cache.DATA_VERSION) or a data file did. Its trials would mix data sets. "
                          f"Fix: resume with the code and data it started with ({checkout_fix(None, name)}, then the "
                          f"same command), or start a new sweep of the round (without resume=true)")


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
        lock = Path(f"{path}.lock")  # leaderboard and champion writes take turns under <file>.lock (ups.filelock)
        if not is_dir and key in ("leaderboard", "champion"):
            try:
                probe_writable_file(lock)
            except OSError as e:
                raise ConfigError(f"{key}={path}: its lock file {lock} cannot be opened ({e.strerror or e}), and every "
                                  f"write of the file takes it. Fix: remove {lock} (it holds nothing: the sweep makes "
                                  f"it again)") from None
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
    from ups.train.checkpoint import MODEL_SECTIONS, WEIGHT_FREE_KEYS

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
    shaped = sorted({k for k in [*space.params, *space.derived]
                     if k.split(".")[0] in MODEL_SECTIONS and k not in WEIGHT_FREE_KEYS})
    if shaped:
        raise ConfigError(f"{space.path}: scheduler.name=pbt cannot search model keys ({', '.join(shaped)}): PBT "
                          f"hands trials each other's checkpoints, and a checkpoint only loads into the model shape "
                          f"it was trained with. Fix: scheduler.name=asha for capacity sweeps (round B, dims, "
                          f"aggressive), or keep only training knobs (stages.*, training.*, ttc.*, "
                          f"{', '.join(WEIGHT_FREE_KEYS)}) in the space")
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


def late_rung_notes(scfg: SweepConfig, base: Any, space: SearchSpace) -> list[str]:
    """ASHA rungs (counted in epochs) at or after the last training epoch of the longest trial: a trial cut there
    has paid for all its training and loses only its final evaluation, so it has no test score to rank or promote."""
    sc = scfg.scheduler
    if sc.name != "asha" or sc.time_attr not in EPOCH_TIME_ATTRS:
        return []
    longest = sum(stage_epochs(base, space).values())
    late = [r for r in asha_rungs(scfg, base, space)[2] if r >= longest]
    if not late:
        return []
    return [f"ASHA rung(s) at {sc.time_attr} {', '.join(map(str, late))}: every trial here has trained all its "
            f"{longest} epochs by then, so a trial cut there saves no training and loses only its final evaluation "
            f"(no test score to rank or promote). Fix: put the last rung before {longest}: a smaller "
            f"scheduler.grace_period ({sc.grace_period or 'automatic'} now) or a larger scheduler.reduction_factor "
            f"({sc.reduction_factor:g} now)"]


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
