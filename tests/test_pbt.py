"""PBT in the sweep engine (ups.tune.pbt): no exploit once the perturbed stages are trained, and rows of
exploited trials under their own run_id."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from ups.tune.pbt import StagedPBT, pbt_start, pbt_window
from ups.tune.pbt_schedule import pbt_schedule, schedule_text

ITERATIONS, WINDOW = 16, 12  # as a UPS trial: one report per epoch of stages 1+11+1+2, then the final report


def test_pbt_window_ends_with_the_last_perturbed_stage() -> None:
    cfg = OmegaConf.create({"stages": {"autoencoder": {"epochs": 1}, "operator": {"epochs": 8},
                                       "diff_residual": {"epochs": 1}, "consistency_distill": {"epochs": 2}}})
    assert pbt_window(cfg, ["stages.operator.optimizer.lr", "stages.operator.ema_decay"]) == 9
    assert pbt_window(cfg, ["stages.autoencoder.optimizer.lr"]) == 1
    assert pbt_window(cfg, ["stages.autoencoder.optimizer.lr", "stages.diff_residual.optimizer.lr"]) == 10
    assert pbt_window(cfg, ["stages.operator.optimizer.lr", "ttc.beam_width"]) == 12  # not a stage's: all of it
    assert pbt_window(cfg, []) == 12
    # the operator's stochastic depth trains with the operator stage: a clone after it learns nothing from it (an
    # exploit at iteration 40 of round A's 42, past the operator stage, gave the clone its donor's scores)
    assert pbt_window(cfg, ["stages.operator.optimizer.lr", "operator.drop_path"]) == 9
    assert pbt_start(cfg, ["operator.drop_path"]) == 1


def test_pbt_starts_with_the_first_perturbed_stage() -> None:
    """Before it, the searched knobs change nothing: round A under PBT made 87 exploits in the autoencoder stage,
    where every trial reports the same (rising) val_nrmse, one trial going back to the others' iteration 4 each
    time it reached 6. The sweep's burn-in is this start plus one perturbation interval."""
    cfg = OmegaConf.create({"stages": {"autoencoder": {"epochs": 4}, "operator": {"epochs": 8},
                                       "diff_residual": {"epochs": 1}, "consistency_distill": {"epochs": 2}}})
    assert pbt_start(cfg, ["stages.operator.optimizer.lr", "stages.operator.ema_decay"]) == 4
    assert pbt_start(cfg, ["stages.diff_residual.optimizer.lr", "stages.consistency_distill.optimizer.lr"]) == 12
    assert pbt_start(cfg, ["stages.autoencoder.optimizer.lr", "stages.diff_residual.optimizer.lr"]) == 0
    assert pbt_start(cfg, ["stages.operator.optimizer.lr", "ttc.beam_width"]) == 0  # not a stage's: from the start
    assert pbt_start(cfg, []) == 0


def _exploits(scheduler, tmp_path: Path, name: str) -> list[list]:
    """Eight checkpointing trials, two at a time under ``scheduler``; PBT's log of exploits:
    [trial, donor, trial's iteration, donor's iteration, old config, new config] each."""
    from ray import tune
    from ray.tune import CheckpointConfig, RunConfig

    def fn(config):
        import tempfile
        import time

        from ray import tune
        from ray.tune import Checkpoint

        ckpt, start = tune.get_checkpoint(), 1
        if ckpt:
            with ckpt.as_directory() as c:
                start = int(Path(c, "it.txt").read_text()) + 1
        for it in range(start, ITERATIONS + 1):
            time.sleep(0.01)
            with tempfile.TemporaryDirectory() as d:
                Path(d, "it.txt").write_text(str(it))
                tune.report({"loss": config["lr"] / it}, checkpoint=Checkpoint.from_directory(d))

    grid = tune.Tuner(tune.with_resources(fn, {"cpu": 1}), param_space={"lr": tune.uniform(0.1, 1.0)},
                      tune_config=tune.TuneConfig(num_samples=8, metric="loss", mode="min", scheduler=scheduler,
                                                  reuse_actors=True),
                      run_config=RunConfig(name=name, storage_path=str(tmp_path), verbose=0,
                                           checkpoint_config=CheckpointConfig(num_to_keep=None))).fit()
    assert not grid.errors
    log = tmp_path / name / "pbt_global.txt"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


@pytest.mark.parametrize("interval", [2, 1])
def test_staged_pbt_never_clones_a_trained_stage(ray_session, tmp_path: Path, interval: int) -> None:
    """A trial past the window is neither exploited nor cloned.  With Ray's own PopulationBasedTraining in
    its place, this set-up (interval 2) cloned a trial at or past its last training iteration, a clone
    that trains nothing, in 6 of 6 runs (2026-12-02); every 1 iteration, StagedPBT still exploited inside
    the window in each of 12 runs (2-15 times)."""
    from ray import tune

    pbt = StagedPBT(window=WINDOW, time_attr="training_iteration", perturbation_interval=interval,
                    hyperparam_mutations={"lr": tune.uniform(0.1, 1.0)})
    exploits = _exploits(pbt, tmp_path, "staged")
    assert all(e[2] < WINDOW and e[3] < WINDOW for e in exploits), [e[:4] for e in exploits]
    if interval == 1:
        assert exploits, "PBT never exploited"


def test_result_trial_id_comes_from_the_trial_folder() -> None:
    from ray.tune import Result

    from ups.tune.results import result_trial_id

    donor_metrics = {"trial_id": "ab12_00001", "training_iteration": 7}  # what PBT leaves on a paused clone
    assert result_trial_id(Result(donor_metrics, None, None, "/runs/exp/trial_ab12_00000")) == "ab12_00000"
    assert result_trial_id(Result(donor_metrics, None, None, "bucket/exp/trial_ab12_00002/")) == "ab12_00002"
    assert result_trial_id(Result(donor_metrics, None, None, "/runs/exp/fn_ab12_00003_3_lr=0.5")) == "ab12_00001"


def test_upsert_keeps_one_row_per_run_id_of_a_batch(tmp_path: Path) -> None:
    from ups.leaderboard import read_leaderboard, upsert_rows

    lb = tmp_path / "leaderboard.csv"
    upsert_rows(lb, [{"run_id": "a", "val_nrmse": 0.5}, {"run_id": "b", "val_nrmse": 0.4}])
    upsert_rows(lb, [{"run_id": "a", "val_nrmse": 0.3}, {"run_id": "a", "val_nrmse": 0.2}])
    rows = read_leaderboard(lb).set_index("run_id")["val_nrmse"]
    assert rows.to_dict() == {"b": 0.4, "a": 0.2}


# ------------------------------------------------------------------------------------------ resume
class _OneTrialController:
    """What Ray's PBT asks of Tune's controller for one trial on its own: no search algorithm, the trials.
    With one trial PBT's quantiles are empty: it records and never exploits."""
    search_alg = None

    def __init__(self, trial):
        self.trial = trial

    def get_trials(self):
        return [self.trial]


def _pbt(**kw):
    from ray import tune

    return StagedPBT(window=WINDOW, time_attr="training_iteration", hyperparam_mutations={"lr": tune.uniform(0.1, 1.0)},
                     metric="val_nrmse", mode="min", **kw)


def _state(pbt, trial) -> tuple:
    s = pbt._trial_state[trial]
    return (s.last_score, s.last_perturbation_time, s.last_train_time, s.last_result, s.orig_tag,
            trial.trial_id in pbt.past)


@pytest.mark.parametrize("interval,burn_in", [(3, 0), (2, 5), (1, 0)])
def test_a_restored_pbt_state_is_the_one_live_pbt_had_kept(interval: int, burn_in: int) -> None:
    """Tune saves no scheduler state: Ray's PBT resumes knowing no trial's score and perturbing every trial
    at its next report.  StagedPBT.restore replays the saved reports: after every cut, the restored state
    (score, last perturbation, result, tag, window) is what Ray's own on_trial_result had recorded."""
    from ray.tune.experiment import Trial

    history = [{"training_iteration": i, "val_nrmse": 1.0 / i + (0.3 if i % 4 == 0 else 0.0)}
               for i in range(1, ITERATIONS + 1)]
    history[8]["val_nrmse"] = float("nan")
    for cut in range(len(history) + 1):
        live, trial = _pbt(perturbation_interval=interval, burn_in_period=burn_in), \
            Trial("fn", config={"lr": 0.5}, trial_id="t_00001", stub=True, experiment_tag="1_lr=0.5")
        ctrl = _OneTrialController(trial)
        live.on_trial_add(ctrl, trial)
        for r in history[:cut]:
            live.on_trial_result(ctrl, trial, dict(r))
        resumed = _pbt(perturbation_interval=interval, burn_in_period=burn_in)
        assert resumed.restore({"t_00001": history[:cut], "gone_00002": history}) == (2 if cut else 1)
        again = Trial("fn", config={"lr": 0.5}, trial_id="t_00001", stub=True,
                      experiment_tag="1_lr=0.5@perturbed[lr=0.6]")  # as Tune restores a perturbed trial
        resumed.on_trial_add(_OneTrialController(again), again)
        got, want = _state(resumed, again), _state(live, trial)
        nan = want[0] is not None and math.isnan(want[0])
        assert (math.isnan(got[0]) if nan else got[0] == want[0]) and got[1:] == want[1:], (cut, got, want)
        assert got[4] == "1_lr=0.5", got
    assert _state(resumed, again)[5] and _state(resumed, again)[0] is not None  # past the window, last check kept


def test_a_resumed_pbt_sweep_gets_its_population_state_back(ray_session, tmp_path: Path, capsys,
                                                            monkeypatch) -> None:
    """A PBT sweep stopped by Ctrl-C and resumed: when Tune adds each restored trial back, its scheduler
    knows the trial's last score and perturbation (Ray's PBT alone: none), under the trial's original tag."""
    import os

    from tests.fake_trials import checkpointed
    from tests.test_sweep_engine import common
    from ups.tune.stop_signals import SweepInterrupted
    from ups.tune.launcher import run_round

    def fake(driver_pid: int | None):
        return checkpointed(lambda it: {"stage": "operator", "epoch": it, "train_loss": 1.0 / it,
                                        "val_nrmse": 1.0 / it, "val_conservation_gap": 0.01, "val_bc_violation": 0.01},
                            iterations=9, step_s=0.05, driver_pid=driver_pid, interrupt_at=5, hold_s=60.0,
                            final={"stage": "done", "done": True, "val_nrmse": 0.1, "nrmse": 0.1,
                                   "conservation_gap": 0.01, "bc_violation": 0.01})

    space = tmp_path / "s.yaml"
    space.write_text("params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    # 3 trials: the reference, which PBT leaves out of its population (never exploited: it stops the driver), and a
    # population of 2 (a population of 1 is refused)
    args = [*common(tmp_path), f"space={space}", "searcher.name=random", "scheduler.name=pbt", "num_samples=3",
            "scheduler.perturbation_interval=2", "stages.autoencoder.epochs=0", "stages.operator.epochs=8",
            "gates.enabled=false", "name=pbt-resume"]  # window: iteration 8
    with pytest.raises(SweepInterrupted):
        run_round("pbt-resume", args, trainable=fake(os.getpid()))
    # the trials with reports when the sweep stopped: both, unless the second had not reported yet (a loaded
    # machine: its worker started after the first trial stopped the driver at iteration 5)
    reported = [p for p in (tmp_path / "runs" / "pbt-resume").glob("trial_*")
                if p.joinpath("result.json").is_file() and p.joinpath("result.json").read_text().strip()]
    added: dict[str, tuple] = {}
    real_add = StagedPBT.on_trial_add

    def add_spy(self, controller, trial):
        real_add(self, controller, trial)
        added[trial.trial_id] = _state(self, trial)

    monkeypatch.setattr(StagedPBT, "on_trial_add", add_spy)
    out = run_round("pbt-resume", [*args, "resume=true"], trainable=fake(None))
    printed = capsys.readouterr().out
    saved = {p.name.split("_", 1)[1]: [json.loads(line) for line in p.joinpath("result.json").read_text().splitlines()]
             for p in (tmp_path / "runs" / "pbt-resume").glob("trial_*")}
    assert len(added) == 3, added
    checked = 0
    for trial_id, (score, last_time, _, result, tag, _) in added.items():
        assert "@perturbed" not in tag, tag
        if score is None:  # it had not reached a check before the stop
            assert last_time == 0, (trial_id, added)
            continue
        checked += 1
        assert last_time >= 2 and score == -result["val_nrmse"] and result["training_iteration"] == last_time
        assert result in saved[trial_id] or any(r["training_iteration"] == last_time for r in saved[trial_id])
    assert checked >= 1, added  # the trial that stopped the driver at iteration 5 had been checked at 4
    assert f"pbt: the reports of {len(reported)} restored trial(s) replayed into its population state" in printed
    rows = out.rows[out.rows["experiment"] == "pbt-resume"]
    assert len(rows) == 3 and rows["run_id"].is_unique, rows[["run_id", "status"]]
    # each row's wall clock is what its trial ran, before the stop (read back from result.json) and after
    wall = dict(zip(rows["trial_id"].astype(str), rows["wall_clock"]))
    for trial_id, results in saved.items():
        assert wall[trial_id] == pytest.approx(sum(r["time_this_iter_s"] for r in results), abs=0.02), (wall, trial_id)


def test_a_pbt_population_taking_turns_keeps_every_report_in_result_json(ray_session, tmp_path: Path,
                                                                         monkeypatch) -> None:
    """3 PBT trials on 2 slots take turns (paused, then started again). Each start, Ray's JsonLoggerCallback
    copied the trial's result.json from storage over the driver's own, newer copy: a smoke round A under PBT
    kept 21-32 of each trial's 43-59 reports (iterations 11-18 of one trial gone), and the report's learning
    curves and a resume's replay read those files. Every report is kept now (ups.tune.trial_logs)."""
    from tests.fake_trials import checkpointed
    from tests.test_sweep_engine import common
    from ups.tune.launcher import run_round

    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "1")  # storage gets the driver's files every second
    lr = "stages.operator.optimizer.lr"  # the higher, the worse: the others exploit the best trial
    fake = checkpointed(lambda it, c: {"stage": "operator", "epoch": it, "train_loss": 1.0 / it,
                                       "val_nrmse": c.get(lr, 1e-3) * 100 / it, "val_conservation_gap": 0.01,
                                       "val_bc_violation": 0.01},
                        iterations=16, step_s=0.15, by_config=True,
                        final={"stage": "done", "done": True, "val_nrmse": 0.1, "nrmse": 0.1,
                               "conservation_gap": 0.01, "bc_violation": 0.01})
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    out = run_round("pbt-turns", [*common(tmp_path), f"space={space}", "scheduler.name=pbt", "num_samples=3",
                                  "scheduler.perturbation_interval=2", "stages.autoencoder.epochs=0",
                                  "stages.operator.epochs=16", "gates.enabled=false",
                                  "name=pbt-turns"], trainable=fake)
    rows = out.rows[out.rows["experiment"] == "pbt-turns"]
    assert len(rows) == 3
    wall = dict(zip(rows["trial_id"].astype(str), rows["wall_clock"]))
    exploited = 0
    for trial in (tmp_path / "runs" / "pbt-turns").glob("trial_*"):
        results = [json.loads(line) for line in trial.joinpath("result.json").read_text().splitlines()]
        reported = [r["training_iteration"] for r in results]
        # a row's wall clock is what the trial ran itself: not the time_total_s Ray hands an exploiting trial
        # with its donor's checkpoint, the donor's running time up to it in place of the trial's own (the
        # sweep's GPU-hours and cost were off by what exploits threw away or copied)
        own = sum(r["time_this_iter_s"] for r in results)
        assert wall[trial.name.split("_", 1)[1]] == pytest.approx(own, abs=0.02), (trial.name, wall, own)
        exploited += abs(results[-1]["time_total_s"] - own) > 0.1
        assert set(reported) == set(range(1, 18)), (trial.name, reported)  # 16 epochs and the final report
        # progress.csv: a row per report, in its header's columns, across the trial's turns (Ray's logger appended
        # each turn with the columns of its first report, and pandas stopped on the misaligned rows)
        progress = pd.read_csv(trial / "progress.csv")
        assert progress["training_iteration"].tolist() == reported, (trial.name, progress["training_iteration"])
        # one TensorBoard events file per trial, not one per start (ups.tune.trial_logs.KeepingTBXLogger)
        events = list(trial.glob("events.out.tfevents.*"))
        assert len(events) == 1, (trial.name, [e.name for e in events])
        steps = [e.step for e in _events(events[0]) if e.summary.value]  # (step 0: the hparams at the end)
        restarts = [e.step for e in _events(events[0]) if e.HasField("session_log")]
        assert sorted(set(steps) - {0}) == list(range(1, 18)) and len(restarts) == sum(b <= a for a, b in zip(reported, reported[1:]))
    assert exploited, "no trial went on from a donor's checkpoint: the wall-clock check above tested nothing"


def test_a_pbt_schedule_follows_the_chain_of_donors() -> None:
    """Ray copies a donor's policy file into the exploiting trial's and appends the exploit; a trial whose donor
    had no file keeps its own older lines, which its new weights no longer owe anything to."""
    lines = [["t1", "t0", 3, 2, {"lr": 0.1}, {"lr": 0.12}],      # t1's own exploit, overwritten below
             ["t2", "t0", 4, 4, {"lr": 0.2}, {"lr": 0.24}],      # from t2's file, copied into t1's
             ["t1", "t2", 8, 7, {"lr": 0.24}, {"lr": 0.288}]]    # t1 exploited t2 at t2's iteration 7
    ids = {"t0": "abc_00000", "t1": "abc_00001", "t2": "abc_00002"}
    schedule = pbt_schedule(lines, ids, dict)
    assert schedule == [{"from_iteration": 0, "trial": "abc_00000", "values": {"lr": 0.2}},
                        {"from_iteration": 4, "trial": "abc_00002", "values": {"lr": 0.24}},
                        {"from_iteration": 7, "trial": "abc_00001", "values": {"lr": 0.288}}]
    assert schedule_text(schedule) == ("from the start (abc_00000): lr=0.2 → it 4 (abc_00002): lr=0.24 → "
                                       "it 7 (abc_00001): lr=0.288")
    assert pbt_schedule([], ids, dict) == []
    assert pbt_schedule(lines[:1], {}, dict)[0]["trial"] == "t0"  # an unknown tag is named as it is


def test_a_resumed_pbt_sweep_puts_the_logs_of_its_exploits_back(ray_session, tmp_path: Path) -> None:
    """Tune's resume fetches only the experiment's .json/.pkl files into the new driver's folder. Ray's PBT then
    logged the resumed exploits into new files, which replaced the stored ones on the next sync: the schedules
    of trials exploited after a resume lost every donor from before the stop. The stopped run's logs are read
    from storage and put back in the new driver's folder before the first trial runs; a file already there
    is kept."""
    from ray.train._internal.storage import StorageContext
    from ray.tune import Result
    from ray.tune.experiment import Trial

    from ups.tune.restore import pbt_logs

    stored = tmp_path / "runs" / "exp"
    (stored / "trial_t_00001").mkdir(parents=True)
    (stored / "pbt_global.txt").write_text('["1", "0", 4, 4, {}, {}]\n')
    (stored / "pbt_policy_t_00001.txt").write_text('["1", "0", 4, 4, {}, {}]\n')
    (stored / "experiment_state-x.json").write_text("{}")  # Tune's own: fetched by Tune
    logs = pbt_logs([Result(metrics={}, checkpoint=None, error=None, path=str(stored / "trial_t_00001"))])
    assert logs == {"pbt_global.txt": '["1", "0", 4, 4, {}, {}]\n', "pbt_policy_t_00001.txt": '["1", "0", 4, 4, {}, {}]\n'}
    assert pbt_logs([]) == {}

    pbt = _pbt(perturbation_interval=2)
    assert pbt.restore({}, logs) == 0
    storage = StorageContext(storage_path=str(tmp_path / "resumed"), experiment_dir_name="exp")
    trial = Trial("fn", config={"lr": 0.5}, trial_id="t_00001", stub=True, experiment_tag="1_lr=0.5", storage=storage)
    staging = Path(trial.local_experiment_path)
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "pbt_policy_t_00001.txt").write_text("this run's\n")
    pbt.on_trial_add(_OneTrialController(trial), trial)
    assert (staging / "pbt_global.txt").read_text() == logs["pbt_global.txt"]
    assert (staging / "pbt_policy_t_00001.txt").read_text() == "this run's\n"
    (staging / "pbt_global.txt").unlink()
    other = Trial("fn", config={"lr": 0.6}, trial_id="t_00002", stub=True, experiment_tag="2_lr=0.6", storage=storage)
    assert Path(other.local_experiment_path) == staging
    pbt.on_trial_add(_OneTrialController(other), other)
    assert not (staging / "pbt_global.txt").exists()  # put back once, at the first trial


def test_the_reference_trial_stays_out_of_the_population() -> None:
    """The round's reference point trains alone under PBT: the small-eval gates measure the round's trials against
    it. Exploited or cloned, it was a PBT product like the others, and the gates fell back to the FNO baseline."""
    from ray.tune.experiment import Trial
    from ray.tune.schedulers import TrialScheduler

    pbt = _pbt(perturbation_interval=1, reference={"lr": 0.5})
    trials = [Trial("fn", config={"lr": lr}, trial_id=f"t_0000{i}", stub=True, experiment_tag=f"{i}_lr={lr}")
              for i, lr in enumerate([0.5, 0.9, 0.2, 0.7])]
    ctrl = _OneTrialController(trials[0])
    for t in trials:
        pbt.on_trial_add(ctrl, t)
    assert pbt.reference_ids == {"t_00000"}
    assert pbt.on_trial_result(ctrl, trials[0], {"training_iteration": 1, "val_nrmse": 9.0}) == TrialScheduler.CONTINUE
    for t, v in zip(trials, [0.9, 0.3, 0.1, 0.2]):  # as PBT records a check (the reference's too, were it scored)
        pbt._trial_state[t].last_score = -v
    lower, upper = pbt._quantiles()
    assert trials[0] not in lower + upper and [t.trial_id for t in lower] == ["t_00001"], (lower, upper)
    assert _pbt(perturbation_interval=1).reference_ids == set()  # no reference point (start_at_reference=false)


def _events(path: Path) -> list:
    """The Event records of a TensorBoard events file (TFRecord framing: length, CRC, payload, CRC)."""
    import struct

    from tensorboardX.proto.event_pb2 import Event

    out, data, at = [], path.read_bytes(), 0
    while at + 12 <= len(data):
        (n,) = struct.unpack("<Q", data[at:at + 8])
        payload = data[at + 12:at + 12 + n]
        at += 12 + n + 4
        out.append(Event.FromString(payload))
    return out


def test_tensorboard_gets_one_file_per_trial_and_the_restarts_marked(ray_session, tmp_path: Path) -> None:
    """A trial that went on from an earlier checkpoint (steps 3.. again after 5) writes on in its one events file,
    with a SessionLog.START at step 3: TensorBoard drops the old steps from 3 on, as for its own restarts."""
    from ray.train._internal.storage import StorageContext
    from ray.tune.experiment import Trial

    from ups.tune.trial_logs import KeepingTBXLogger

    storage = StorageContext(storage_path=str(tmp_path), experiment_dir_name="exp")
    trial = Trial("fn", config={"lr": 0.5}, trial_id="t_00001", stub=True, experiment_tag="1_lr=0.5", storage=storage)
    tbx = KeepingTBXLogger()
    tbx.log_trial_start(trial)
    for it in range(1, 6):
        tbx.log_trial_result(it, trial, {"training_iteration": it, "val_nrmse": 1.0 / it})
    tbx.log_trial_start(trial)  # PBT: exploited, restored from a checkpoint at iteration 2
    for it in range(3, 7):
        tbx.log_trial_result(it, trial, {"training_iteration": it, "val_nrmse": 0.5 / it})
    tbx.log_trial_end(trial)
    files = list(Path(trial.local_path).glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    seq = [("restart", e.step) if e.HasField("session_log") else ("value", e.step)
           for e in _events(files[0]) if e.HasField("session_log") or (e.summary.value and e.step)]
    values = [step for kind, step in seq if kind == "value"]
    assert seq[:6] == [("value", 1), ("value", 2), ("value", 3), ("value", 4), ("value", 5), ("restart", 3)], seq
    assert seq[6:] == [("value", 3), ("value", 4), ("value", 5), ("value", 6)], seq
    assert [k for k, _ in seq].count("restart") == 1 and sorted(set(values)) == [1, 2, 3, 4, 5, 6]


def test_a_replayed_time_that_goes_back_counts_as_a_perturbation_one_step_before_it() -> None:
    """An exploit restarts a trial from its donor's checkpoint: its time goes back (or repeats the iteration it
    was at).  The replay takes that as a perturbation one step before the new time, so the next check comes a
    full interval after it, as live PBT (which copies the donor's last perturbation time) would have it."""
    pbt = _pbt(perturbation_interval=2, burn_in_period=0)
    back = [{"training_iteration": t, "val_nrmse": 1.0 / (k + 1)} for k, t in enumerate([1, 2, 3, 4, 5, 3, 4])]
    snap = pbt.replay_history(back)
    assert snap["last_perturbation_time"] == 4 and snap["check"]["result"] == back[-1], snap
    repeat = [{"training_iteration": t, "val_nrmse": 1.0 / (k + 1)} for k, t in enumerate([1, 2, 3, 4, 4, 5])]
    snap = pbt.replay_history(repeat)
    assert snap["last_perturbation_time"] == 5 and snap["check"]["result"] == repeat[-1], snap


def test_trials_past_the_window_are_neither_exploited_nor_donors() -> None:
    from ray.tune.experiment import Trial

    pbt = _pbt(perturbation_interval=1)
    trials = [Trial("fn", config={"lr": lr}, trial_id=f"t_0000{i}", stub=True, experiment_tag=f"{i}_lr={lr}")
              for i, lr in enumerate([0.5, 0.9, 0.2, 0.7])]
    ctrl = _OneTrialController(trials[0])
    for t in trials:
        pbt.on_trial_add(ctrl, t)
    for t, v in zip(trials, [0.1, 0.3, 0.9, 0.2]):
        pbt._trial_state[t].last_score = -v
    assert pbt.on_trial_result(ctrl, trials[0], {"training_iteration": WINDOW, "val_nrmse": 0.1}) == "CONTINUE"
    assert pbt.past == {"t_00000"}  # the best trial, but its perturbed stages are trained
    lower, upper = pbt._quantiles()
    assert trials[0] not in lower + upper and len(pbt._trial_state) == 4, (lower, upper)


def test_a_restored_donor_hands_over_the_checkpoint_tune_restored_it_with(tmp_path: Path) -> None:
    from ray.train import Checkpoint
    from ray.train._internal.session import _TrainingResult
    from ray.tune.experiment import Trial

    trial = Trial("fn", config={"lr": 0.5}, trial_id="t_00001", stub=True, experiment_tag="1_lr=0.5")
    (tmp_path / "checkpoint_000003").mkdir()
    trial.run_metadata.checkpoint_manager.register_checkpoint(
        _TrainingResult(checkpoint=Checkpoint(str(tmp_path / "checkpoint_000003")), metrics={}))
    pbt = _pbt(perturbation_interval=1)
    pbt.restore({"t_00001": [{"training_iteration": i, "val_nrmse": 1.0 / i} for i in (1, 2, 3)]})
    pbt.on_trial_add(_OneTrialController(trial), trial)
    state = pbt._trial_state[trial]
    assert state.last_checkpoint is not None and state.last_checkpoint.path == str(tmp_path / "checkpoint_000003")
