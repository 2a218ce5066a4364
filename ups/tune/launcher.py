"""Run one sweep round end to end: validate → data & baselines → Ray → Tune → leaderboard → promotion.

Everything a user can get wrong (overrides, search space, storage, Ray address) is checked before
``ray.init`` and before any compute is spent (``ups.tune.prepare``, ``ups.tune.ray_session``).  ``run_round`` is what
every ``sweeps/*.py`` script and ``ups sweep`` call; it returns a ``SweepOutcome``.
"""
from __future__ import annotations

import json
import math
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from ups.code_version import checkout_fix, describe
from ups.config import ConfigError, override_key, to_dict
from ups.leaderboard import read_leaderboard, set_values, upsert_rows
from ups.outputs import OutputWriteError
from ups.tune.concurrency import ADAPTIVE, VariantLimiter, cluster_slots
from ups.tune.driver_lease import DriverLease, check_no_live_driver
from ups.tune.gates import GateLimits, PhysicsGateStopper, gate_trackers
from ups.tune.gpu_share import gpu_share_warning
from ups.tune.prepare import (Prepared, centre_data_note, check_resume_data, experiment_name, planned_trials,
                              prepare, trial_count)
from ups.tune.promotion import (SEED_KEY, apply_small_eval, force_fill, full_eval, history_path, pass_groups,
                                seed_groups, seed_mean_candidates, seed_points, update_champion)
from ups.tune.ray_session import (check_local_fit, concurrency, connect_ray, empty_cluster_text,
                                  per_trial_resources, round_concurrency)
from ups.tune.restore import carry_over, reported_histories, restored_analysis, restored_results, trial_compute_s
from ups.tune.results import INTERRUPTED, LeaderboardCallback, RowContext, result_trial_id, row_tags, trial_row
from ups.tune.scratch import remove_local_scratch, remove_scratch
from ups.tune.stop_signals import SweepInterrupted, log as _log, stop_signals_as_ctrl_c, watch_cluster
from ups.tune.summary import SweepOutcome, print_leaderboard
from ups.tune.sweep_config import SweepConfig, resolve_path, unread_overrides
from ups.tune.sweep_record import check_resume, provisional_folder, read_record, sweep_record, write_record
from ups.tune.trainable import METRIC
from ups.tune.tune_state import foreign_state, repair_cut_off_state
from ups.tune.tuner_build import (trial_dirname, asha_rungs, build_stopper, build_tuner, make_trainable,
                                  run_config, startup_only_note)
from ups.tune.wandb_logging import WandbRoundLogger, default_group, resolve_mode

# Tune pickles the trial folder namer by its module path: sweeps started before 9d7ba65 (2026-12-07) name it here
# (tests/test_pickled_names.py keeps every name a released version's Tune state holds)
_trial_dirname = trial_dirname


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


def _fno_setting(row: Any) -> tuple[str, str]:
    """How a baseline row's FNO was trained, and the overrides that train it so: (``120 steps``, ``fno_steps=120``)
    or (``30 s of training``, ``fno_steps=0 fno_budget_s=30``)."""
    def num(key: str) -> float:
        v = pd.to_numeric(row.get(key), errors="coerce")
        return 0.0 if pd.isna(v) else float(v)

    if (steps := num("fno_steps")) > 0:
        return f"{steps:g} steps", f"fno_steps={steps:g}"
    return f"{num('fno_budget_s'):g} s of training", f"fno_steps=0 fno_budget_s={num('fno_budget_s'):g}"


def fno_row_change_note(leaderboard: Path, rows: Sequence[dict[str, Any]]) -> str:
    """A note when this sweep's FNO baseline row replaces the leaderboard's row of the same data trained otherwise
    (``fno_steps`` / ``fno_budget_s``): the leaderboard keeps one FNO row per data set, so the reports of rounds
    gated against the earlier one show this one from now on (the upgrade trial: the smoke profile's 30 s FNO, nRMSE
    1.04, became 120 steps, 0.21, under a round A crowned against the first)."""
    fno = next((r for r in rows if r.get("label") == "fno"), None)
    lb = read_leaderboard(leaderboard)
    if fno is None or "run_id" not in lb:
        return ""
    old = lb[lb["run_id"].astype(str) == str(fno["run_id"])]
    if old.empty or (was := _fno_setting(old.iloc[-1]))[0] == (now := _fno_setting(fno))[0]:
        return ""
    score = pd.to_numeric(old["nrmse"], errors="coerce").iloc[-1]
    return (f"note: the leaderboard's FNO baseline of data {fno.get('data_hash')} ({was[0]}, nRMSE {score:.4g}) is "
            f"replaced by this sweep's ({now[0]}, nRMSE {float(fno.get('nrmse') or math.nan):.4g}): it keeps one FNO "
            f"row per data set, so the reports of rounds gated against the earlier one show this one. Fix: to keep "
            f"the earlier row, run with its setting ({was[1]})")


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
        check_state_code(p, name)
    if not s.resume:  # named before data and baselines: a driver stopped there had said nothing of which sweep
        _log(f"sweep {name}: {p.display_storage}/{name}")
    warm: list[tuple[dict[str, Any], float]] = []
    warm_from = ""
    if not s.resume:  # a resumed sweep's searcher comes back with what it was told
        from ups.tune.warm_start import warm_points

        warm, note, warm_from = warm_points(p, name, record)
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
            if warm and data is not None:
                from ups.tune.warm_start import check_warm_data

                check_warm_data(p.leaderboard, warm_from, str(getattr(data, "data_hash", "") or ""))
            if not p.centre_data_differs and (note := centre_data_note(p, data)):
                _log(note)
            baselines, gate_baselines = baseline_rows(s, p.base, data) if data is not None else ([], [])
            if baselines:
                if note := fno_row_change_note(p.leaderboard, baselines):
                    _log(note)
                try:
                    upsert_rows(p.leaderboard, baselines)
                except OSError as e:  # a full disk under the leaderboard: a traceback before any trial
                    raise OutputWriteError(f"cannot write the leaderboard {p.leaderboard} ({e.strerror or e}); nothing "
                                           f"has trained yet and the baselines are cached. Fix: free space on that disk "
                                           f"or make the file writable, then run the same command again") from None
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
                             cost_per_gpu_hour=s.cost_per_gpu_hour, tags=[f"profile:{s.profile}", *row_tags(p.base)],
                             data_hash=str(getattr(data, "data_hash", "") or ""), label=str(p.base.run.label or ""))
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
                try:
                    tuner = build_tuner(p, name, tr, limits, round_conc, callbacks, warm)  # writes tuner.pkl
                    write_record(p.storage_path, p.filesystem, name, record)
                except OSError as e:  # a full storage disk: Ray's traceback, and a 0-byte tuner.pkl left behind
                    raise OutputWriteError(f"cannot write the sweep's state in {p.display_storage}/{name} "
                                           f"({e.strerror or e}); nothing has trained yet. Fix: free space there, then "
                                           f"run the same command again") from None

            if live:  # after a resume's state repair (the study is rebuilt from the folder); the file exists when named
                live.setup()
                if not live.off:
                    _log(f"Optuna study, live: study '{name}' in {live.mirror.storage_url} "
                         f"(optuna-dashboard {live.mirror.storage_url})")

            def ray_gone() -> None:  # the driver's last act when its Ray went (its local instance stopped, or the head
                # of the joined cluster): no ResultGrid
                lb_cb.record_unfinished(INTERRUPTED)
                remove_local_scratch(name, p.storage_path)  # the finally below is not reached: the driver ends here
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
            reconcile_or_stop(p.leaderboard, ctx, grid, lb_cb, cut, name)
            if cut != INTERRUPTED and (budget := lb_cb.cut_at_step):
                _log(budget_note(budget, sum(1 for r in grid if r.metrics), n_trials))  # reported: it ran
            champion, promotion_cut = None, False
            if cut == INTERRUPTED:
                _log("promotion: not run, the round is unfinished (it runs when the resumed sweep ends)")
            elif promote and s.promotion.top_k > 0:
                try:
                    with stop_signals_as_ctrl_c(into_tune=False) as stops:
                        champion = promote_round(p, ctx, baselines, data, limits, max_conc, gate_baselines,
                                                 check_stop=stops.check)
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


def check_state_code(p: Prepared, name: str) -> None:
    """Refuse, before data and baselines, a resume whose Tune state names code this version (or environment) does not
    have."""
    found = foreign_state(f"{p.storage_path}/{name}", p.filesystem)
    if found is None:
        return
    path, error, ours = found
    if not ours:
        raise ConfigError(f"resume=true: Tune's state file '{path}' names a module this environment does not have "
                          f"({error}): the sweep was started where it was installed (another Ray, Optuna or W&B "
                          f"version, or a package missing here). Fix: resume in that environment, or install what is "
                          f"missing here (`bash scripts/setup.sh` installs the versions pyproject.toml pins), then "
                          f"the same command")
    code = (read_record(p.storage_path, p.filesystem, name) or {}).get("code")
    raise ConfigError(f"resume=true: Tune's state file '{path}' was written by another version "
                      f"({describe(code)}): it names code this version does not have ({error}). Fix: resume with "
                      f"that version ({checkout_fix(code, name)}, then the same command), or start a new sweep of the "
                      f"round (without resume=true); finished trials stay on the leaderboard either way")


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
    cb.flush()  # the rows a failed write left (a full disk freed since)
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


def reconcile_or_stop(path: Path, ctx: RowContext, grid: Any, cb: LeaderboardCallback, cut: str | None,
                      sweep: str) -> None:
    """``reconcile``, or an ``OutputWriteError`` naming the leaderboard and the resume that writes the rows (every
    trial's result is in Tune's state) when it cannot take them: a full disk ended the driver in a traceback."""
    try:
        reconcile(path, ctx, grid, cb, cut)
    except OSError as e:
        raise OutputWriteError(f"cannot write the leaderboard {path} ({e.strerror or e}); every trial's result is kept in "
                               f"Tune's state. Fix: free space on that disk or make the file writable, then "
                               f"{resume_command(sweep)} writes their rows and goes on with the promotion and "
                               f"report") from None


def promote_round(p: Prepared, ctx: RowContext, baselines: list[dict[str, Any]], data: Any, limits: GateLimits,
                  max_conc: int, gate_baselines: list[dict[str, Any]] | None = None,
                  check_stop: Callable[[], None] | None = None) -> dict[str, Any] | None:
    """Small-eval gates → full-eval → champion.  ``baselines``: scored on the whole test split (the champion's bar);
    ``gate_baselines``: the same models scored on the trials' own eval samples (the small-eval gate's fallback;
    default ``baselines``); ``check_stop``: raises ``KeyboardInterrupt`` after a stop signal whose interrupt was
    lost (``StopSignals.check``), after each full-eval and before the champion is crowned."""
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
                      cost_per_gpu_hour=s.cost_per_gpu_hour, check_stop=check_stop)
    if groups:
        fulls = seed_mean_candidates(fulls, groups, s.promotion.seeds)
        upsert_rows(p.leaderboard, fulls)  # the promoted trials' full-eval rows carry seed_mean / seed_scores
        for r in fulls:
            scores = json.loads(r["seed_scores"])
            _log(f"promotion: {r['source_run_id']}: score over {len(scores)} training seeds {scores} → mean "
                 f"{r['seed_mean']:.4g}")
    if check_stop is not None:
        check_stop()
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
                              trial_dirname_creator=trial_dirname)
        tuner = tune.Tuner(tr, param_space=param_space, tune_config=tune_cfg,
                           run_config=run_config(p, seed_name, stop, [lb_cb]))
    try:
        with stop_signals_as_ctrl_c(on_ray_gone=lambda: lb_cb.record_unfinished(INTERRUPTED)):
            grid = tuner.fit()
    finally:
        remove_scratch(seed_name, p.storage_path)
    cut = loop_cut(lb_cb)  # retrains have no sweep budget: only an interrupt cuts them
    reconcile_or_stop(p.leaderboard, ctx, grid, lb_cb, cut, round_ctx.experiment)
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
