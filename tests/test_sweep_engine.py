"""The sweep engine on the real local Ray (session fixture): physics gates, ASHA, leaderboard rows.

The trainables here are small functions with known curves (the engine, not the model, is under
test); they run through the same launcher, Tuner, Stopper, scheduler, searcher and callbacks as the
UPS trainable.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from ups.config import ConfigError
from ups.leaderboard import read_leaderboard
from ups.tune.gates import GateLimits, GateTracker
from ups.tune.launcher import run_round
from ups.tune.restore import reported_histories, restore_rungs, restored_results, trial_compute_s
from ups.tune.trainable import clean_metrics


def make_trainable(key: str, behaviour: dict, iterations: int = 6, sleep: float = 0.05):
    """A Tune function trainable whose reports depend on config[key] (closure → pickled by value)."""

    def fake(config):
        import time

        from ray import tune

        v = config[key]
        kind = behaviour.get(v, "ok")
        for it in range(1, iterations + 1):
            time.sleep(sleep)
            m = {"stage": "operator", "epoch": it, "train_loss": 1.0 / it, "val_nrmse": 0.5 + float(v) / it,
                 "val_conservation_gap": 0.01, "val_bc_violation": 0.01, "params": 123}
            if kind == "nan" and it >= 2:
                m["train_loss"] = float("nan")
            if kind == "conservation" and it >= 2:
                m["val_conservation_gap"] = 50.0
            if kind == "diverge" and it >= 3:
                m["train_loss"] = 1.0e4
            if kind == "raise" and it >= 2:
                raise RuntimeError("a trial that fails")
            tune.report(clean_metrics(m))
        tune.report(clean_metrics({"stage": "done", "done": True, "val_nrmse": 0.5 + float(v) / iterations,
                                   "nrmse": 0.4 + float(v), "nrmse_ttc": 0.39 + float(v),
                                   "conservation_gap": 0.01, "bc_violation": 0.01, "params": 123}))

    return fake


def common(tmp_path: Path) -> list[str]:
    """The engine's tests look at Tune, the leaderboard and the stoppers: no HTML report (3 s a sweep; the report's
    own tests render real sweeps' reports, tests/test_report_smoke.py)."""
    return [f"storage_path={tmp_path / 'runs'}", f"leaderboard={tmp_path / 'lb.csv'}",
            f"champion={tmp_path / 'champion.json'}", f"report_dir={tmp_path / 'reports'}", "verbose=0",
            "wandb.enabled=false", "baselines=false", "promotion.top_k=0", "write_report=false"]


def test_gate_stopper_stops_nan_and_conservation_breakers(ray_session, tmp_path: Path) -> None:
    space = tmp_path / "gates.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0, 2.0, 3.0]}\n")
    trainable = make_trainable("training.lambda_spectral", {1.0: "nan", 2.0: "conservation", 3.0: "diverge"})
    out = run_round("gates", [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo",
                              "num_samples=1", "max_concurrent=2"], trainable=trainable)
    rows = out.rows[out.rows["experiment"] == out.experiment]
    assert len(rows) == 4 and rows["run_id"].is_unique
    by_value = {float(__import__("json").loads(r["sampled_json"])["training.lambda_spectral"]): r
                for _, r in rows.iterrows()}
    assert by_value[0.0]["stop_reason"] == "completed" and by_value[0.0]["status"] == "completed"
    assert by_value[1.0]["stop_reason"].startswith("gate:nonfinite") and "iteration 2" in by_value[1.0]["stop_reason"]
    assert by_value[2.0]["stop_reason"].startswith("gate:conservation") and by_value[2.0]["epochs"] == 2
    assert by_value[3.0]["stop_reason"].startswith("gate:diverging") and by_value[3.0]["epochs"] == 3
    assert by_value[0.0]["nrmse"] == pytest.approx(0.4)
    # the reason is on the persisted leaderboard too
    lb = read_leaderboard(tmp_path / "lb.csv")
    assert lb["stop_reason"].str.startswith("gate:").sum() == 3


def test_asha_stops_a_trial_early_in_a_seeded_run(ray_session, tmp_path: Path) -> None:
    space = tmp_path / "asha.yaml"
    space.write_text("reference:\n  stages.operator.optimizer.lr: 1.0e-4\n"
                     "params:\n  stages.operator.optimizer.lr: {dist: uniform, low: 1.0e-4, high: 1.0}\n")
    trainable = make_trainable("stages.operator.optimizer.lr", {}, iterations=8, sleep=0.1)
    out = run_round("asha", [*common(tmp_path), f"space={space}", "searcher.name=optuna", "searcher.seed=7",
                             "scheduler.name=asha", "scheduler.grace_period=1", "scheduler.reduction_factor=2",
                             "stages.autoencoder.epochs=0",  # the fake trainable has no autoencoder stage
                             "num_samples=6", "max_concurrent=2"], trainable=trainable)
    rows = out.rows[out.rows["experiment"] == out.experiment]
    assert len(rows) == 6
    early = rows[rows["stop_reason"].str.startswith("asha: early stop")]
    assert len(early) >= 1, rows[["label", "stop_reason", "epochs"]]
    assert (early["epochs"] < 9).all()
    ref = rows[rows["label"] == "reference"]
    assert len(ref) == 1 and ref.iloc[0]["stop_reason"] == "completed"  # the round's baseline ran in full


def test_a_restored_asha_gets_its_rung_records_back(ray_session, tmp_path: Path) -> None:
    """Tune does not save the scheduler: the ASHA a resume unpickles has empty rungs.  restore_rungs puts
    back, from the trials' saved results, exactly what the live ASHA had recorded at each rung."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    def curve(config):
        from ray import tune as t

        for i in range(1, 10):
            t.report({"val_nrmse": config["x"] / i + 0.01 * (i % 3)})

    sched = ASHAScheduler(time_attr="training_iteration", max_t=9, grace_period=1, reduction_factor=3)
    tuner = tune.Tuner(curve, param_space={"x": tune.grid_search([0.9, 0.5, 0.7, 0.2, 0.8, 0.3])},
                       tune_config=tune.TuneConfig(metric="val_nrmse", mode="min", scheduler=sched),
                       run_config=tune.RunConfig(name="rungs", storage_path=str(tmp_path), verbose=0))
    tuner.fit()
    live = {m: dict(rec) for m, rec in sched._brackets[0]._rungs}
    assert sum(map(len, live.values())) > 6  # trials went past the first rung
    restored = tune.Tuner.restore(str(tmp_path / "rungs"), curve)
    rungs = restored._local_tuner._tune_config.scheduler._brackets[0]._rungs
    assert not any(rec for _, rec in rungs)  # what Tune brings back
    assert restore_rungs(restored, restored_results(restored)) == sum(map(len, live.values()))
    assert {m: rec for m, rec in rungs}.keys() == live.keys()
    for m, rec in rungs:
        assert rec == pytest.approx(live[m]), m

    # a driver killed right after the searcher suggested a trial: that trial has no folder in Tune's state, and
    # Ray's ResultGrid raised for the whole experiment, so the resume put back no rung record at all (seen in a run)
    restored = tune.Tuner.restore(str(tmp_path / "rungs"), curve)
    trials = restored._local_tuner._experiment_analysis.trials
    gone = trials[-1]
    gone.storage.trial_dir_name = None
    with pytest.raises(RuntimeError, match="trial_dir_name"):
        restored.get_results()
    results = restored_results(restored)
    assert len(results) == len(trials) - 1
    expected = sum(1 for _, rec in live.items() for tid in rec if tid != gone.trial_id)
    assert restore_rungs(restored, results) == expected > 0


def _sees_the_first_trial_ended(config: dict) -> None:
    """Trial x=0 ends at once; trial x=1 (run after it) waits up to 8 s for the experiment state on storage to
    hold an ended trial, and reports how long that took (-1: never)."""
    import time

    from ray import tune as t

    if config["x"] == 0:
        t.report({"waited": 0.0})
        return
    start = time.monotonic()
    while time.monotonic() - start < 8:
        if any("TERMINATED" in f.read_text() for f in Path(config["exp"]).glob("experiment_state-*.json")):
            t.report({"waited": time.monotonic() - start})
            return
        time.sleep(0.1)
    t.report({"waited": -1.0})


@pytest.mark.parametrize("ours", [True, False], ids=["resumable_fifo", "ray_fifo"])
def test_the_experiment_state_is_saved_when_a_trial_ends(ray_session, tmp_path: Path, monkeypatch, ours) -> None:
    """Tune saved its experiment state every 10 s or more: a driver killed between a trial's end (its leaderboard
    row written) and the next save left a state without it, and the resume trained it again (with TPE, the same
    point under a new id: a duplicate row).  The sweep's schedulers save it at the next step.  Tune's own period
    is set to 60 s here, so that only that save can be seen (the control: Ray's FIFO scheduler, never)."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler

    from ups.tune.restore import ResumableFIFO

    monkeypatch.setenv("TUNE_GLOBAL_CHECKPOINT_S", "60")
    exp = tmp_path / "state"
    tuner = tune.Tuner(_sees_the_first_trial_ended,
                       param_space={"x": tune.grid_search([0, 1]), "exp": str(exp)},
                       tune_config=tune.TuneConfig(metric="waited", mode="max", max_concurrent_trials=1,
                                                   scheduler=ResumableFIFO() if ours else FIFOScheduler()),
                       run_config=tune.RunConfig(name="state", storage_path=str(tmp_path), verbose=0))
    waited = sorted(r.metrics["waited"] for r in tuner.fit())
    if ours:
        assert 0 <= waited[-1] < 8, waited
    else:
        assert waited[0] == -1.0, waited


def test_trials_failed_past_max_failures_are_named_with_the_resume(ray_session, tmp_path: Path, capsys) -> None:
    """A sweep whose trials failed past max_failures names them and the resume that retries them, and its script
    exits with status 1 once everything else is done (it exited 0 and printed the failed trial as its best, nothing
    saying that resume=true retries it); ``fail_on_trial_error=false`` exits 0."""
    space = tmp_path / "fails.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0]}\n")
    trainable = make_trainable("training.lambda_spectral", {1.0: "raise"}, iterations=3, sleep=0.01)
    out = run_round("fails", [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo",
                              "num_samples=1", "max_failures=0", "gates.enabled=false"], trainable=trainable)
    rows = out.rows[(out.rows["experiment"] == out.experiment) & (out.rows["kind"] == "trial")]
    assert sorted(rows["status"]) == ["completed", "error"], rows[["run_id", "status"]]
    failed = rows[rows["status"] == "error"]["run_id"].iloc[0]
    said = capsys.readouterr()
    assert f"warning: 1 trial(s) of {out.experiment} failed past max_failures=0 ({failed};" in said.out + said.err
    assert "To retry them from their last checkpoints: " in said.out + said.err
    assert out.failed == [failed] and out.exit_status == 1 and "exit status 1 (fail_on_trial_error=false" in said.out + said.err
    out = run_round("fails", [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo",
                              "num_samples=1", "max_failures=0", "gates.enabled=false", "fail_on_trial_error=false"],
                    trainable=trainable)
    said = capsys.readouterr()
    assert len(out.failed) == 1 and out.exit_status == 0 and "exit status" not in said.out + said.err


def test_compute_budget_cut_is_recorded_as_such(ray_session, tmp_path: Path, capsys) -> None:
    """compute_budget_s ends the sweep with trials running: they are stopped by the budget (not by ASHA, not
    'interrupted'), the sweep returns normally and says the budget ended it (only its rows did)."""
    space = tmp_path / "budget.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0, 2.0, 3.0]}\n")
    trainable = make_trainable("training.lambda_spectral", {}, iterations=40, sleep=0.05)
    out = run_round("budget", [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=asha",
                               "scheduler.grace_period=1", "stages.autoencoder.epochs=0", "num_samples=1",
                               "max_concurrent=2", "compute_budget_s=0.6"], trainable=trainable)
    assert not out.interrupted
    rows = out.rows[out.rows["experiment"] == out.experiment]
    cut = rows[rows["stop_reason"].str.startswith("sweep budget compute_budget_s reached at iteration")]
    assert len(cut) >= 1 and (cut["status"] == "stopped").all(), rows[["label", "status", "stop_reason"]]
    assert not rows["status"].eq("interrupted").any()
    out_text = capsys.readouterr().out
    assert "sweep budget compute_budget_s used up: Tune's loop ended with" in out_text and " of 4 trial(s) started" \
        in out_text and "searcher.warm_start=latest" in out_text, out_text[-2000:]


def test_resume_refuses_other_settings_and_accepts_operational_ones(ray_session, tmp_path: Path) -> None:
    """resume=true with another trial budget is refused before Ray runs anything, naming the key and the
    command that started the sweep; with only operational changes (concurrency, verbosity) it resumes."""
    space = tmp_path / "rec.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0]}\n")
    trainable = make_trainable("training.lambda_spectral", {}, iterations=2, sleep=0.0)
    args = [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo", "num_samples=1",
            "max_concurrent=2", "stages.operator.epochs=3"]
    first = run_round("rec", args, trainable=trainable)
    record = Path(first.experiment_path) / "ups_sweep.json"
    assert "stages.operator.epochs=3" in record.read_text()
    with pytest.raises(ConfigError) as e:
        run_round("rec", [*args, "stages.operator.epochs=5", "resume=true"], trainable=trainable)
    msg = str(e.value)
    assert "stages.operator.epochs: 3 → 5" in msg and f"{first.experiment}/ups_sweep.json" in msg
    assert f"stages.operator.epochs=3 name={first.experiment} resume=true" in msg  # the command to resume with
    again = run_round("rec", [*args, "max_concurrent=1", "verbose=0", "resume=true"], trainable=trainable)
    assert again.experiment == first.experiment and len(again.rows[again.rows["experiment"] == first.experiment]) == 2
    # what the restored trials had spent, from their own result files (a resumed compute budget starts there)
    from ray import tune

    spent = sum(json.loads(f.read_text().splitlines()[-1])["time_total_s"]
                for f in Path(first.experiment_path).glob("trial_*/result.json"))
    restored = restored_results(tune.Tuner.restore(first.experiment_path, trainable))
    assert spent > 0 and sum(trial_compute_s(restored, reported_histories(restored))[0].values()) == pytest.approx(spent)
    # the space file edited (or updated with the project) since: refused, with the copy kept at launch to resume in
    original = space.read_text()
    space.write_text(original.replace("[0.0, 1.0]", "[0.0, 1.0, 2.0]"))
    with pytest.raises(ConfigError) as e:
        run_round("rec", [*args, "resume=true"], trainable=trainable)
    copy = Path(first.experiment_path) / "ups_space.yaml"
    assert "search space" in str(e.value) and f"space={copy} resume=true" in str(e.value)
    assert copy.read_text() == original
    resumed = run_round("rec", [*args, f"space={copy}", "resume=true"], trainable=trainable)
    assert resumed.experiment == first.experiment and copy.read_text() == original
    space.write_text(original)
    # the baseline rows set the gates' limits: turning them on is another sweep (their FNO budget only counts
    # when they are on)
    with pytest.raises(ConfigError, match=r"baselines: False → True"):
        run_round("rec", [*args, "baselines=true", "resume=true"], trainable=trainable)
    assert run_round("rec", [*args, "fno_budget_s=2", "resume=true"], trainable=trainable).experiment == first.experiment
    # a sweep recorded before a setting existed (here searcher.sampler) resumes at that setting's default only;
    # one recorded before the baselines were recorded resumes as the command says
    saved = json.loads(record.read_text())
    del saved["sweep"]["searcher.sampler"], saved["sweep"]["baselines"]
    record.write_text(json.dumps(saved))
    assert run_round("rec", [*args, "resume=true"], trainable=trainable).experiment == first.experiment
    with pytest.raises(ConfigError, match=r"searcher.sampler: '\(unset\)' → 'gp'"):
        run_round("rec", [*args, "searcher.sampler=gp", "resume=true"], trainable=trainable)
    record.write_text('{"round": "rec", "trial": ')  # cut off
    with pytest.raises(ConfigError, match=f"'{record}' .* is unreadable .* Fix: restore it, or delete it"):
        run_round("rec", [*args, "resume=true"], trainable=trainable)


def test_gate_tracker_units() -> None:
    lim = GateLimits(conservation_gap=1.0, bc_violation=1.0, divergence_factor=10.0)
    t = GateTracker(lim)
    assert t.update("a", {"stage": "autoencoder", "epoch": 1, "val_conservation_gap": 9.0, "train_loss": 1.0}) is None
    assert t.update("a", {"stage": "operator", "epoch": 1, "val_conservation_gap": 0.5, "train_loss": 1.0}) is None
    assert t.update("a", {"stage": "operator", "epoch": 2, "val_bc_violation": 3.0}).startswith("gate:bc")
    assert t.update("b", {"nonfinite": 1, "nonfinite_keys": "val_nrmse"}).startswith("gate:nonfinite")
    m = clean_metrics({"val_nrmse": math.inf, "done": True, "blob": {"a": 1}, "per_sample": [0.5, math.nan, 2]})
    assert m["val_nrmse"] == 1.0e3 and m["nonfinite"] == 1 and m["final"] == 1 and "blob" not in m
    assert m["per_sample"] == "[0.5,null,2.0]"  # a list of numbers: compact JSON (eval's per-sample nRMSE)


def test_gate_limits_are_the_multiple_of_the_baseline_figure_or_the_floor() -> None:
    """In-flight limits = max(multiple × the reference baseline's figure, floor); NaN/Inf trips whatever the limit."""
    from ups.tune.sweep_config import TrainGateCfg

    gates = TrainGateCfg()  # conservation/BC: 10× the reference, floors 1.0
    lim = GateLimits.from_baseline(gates, {"conservation_gap": 0.5, "bc_violation": 0.02})
    assert lim.conservation_gap == pytest.approx(5.0) and lim.bc_violation == pytest.approx(1.0)  # BC: the floor
    assert GateLimits.from_baseline(gates, None).conservation_gap == 1.0  # no baseline: the floor
    assert GateLimits.from_baseline(gates, {"conservation_gap": math.nan}).conservation_gap == 1.0
    t = GateTracker(lim)
    assert t.update("a", {"stage": "operator", "epoch": 1, "val_conservation_gap": 4.9}) is None
    assert t.update("a", {"stage": "operator", "epoch": 2, "val_conservation_gap": 5.1}).startswith("gate:conservation")
    assert t.update("b", {"stage": "operator", "epoch": 1, "val_nrmse": math.inf}).startswith("gate:nonfinite")
    assert t.update("c", {"stage": "autoencoder", "epoch": 1, "train_loss": math.nan}).startswith("gate:nonfinite")


def test_a_sweep_resumed_from_a_moved_folder_records_where_its_checkpoints_are_now(ray_session, tmp_path: Path,
                                                                                  monkeypatch) -> None:
    """mv runs/x moved/x, then resume=true storage_path=moved: Tune restored, but the leaderboard kept the old
    checkpoint paths and the promotion's full-eval died on them after the round (seen in a run)."""
    import shutil

    def saving(config):
        import tempfile

        from ray import tune

        for it in (1, 2):
            with tempfile.TemporaryDirectory() as d:
                Path(d, "checkpoint.pt").write_bytes(b"x")
                tune.report(clean_metrics({"stage": "operator", "epoch": it, "val_nrmse": 0.5, "train_loss": 1.0}),
                            checkpoint=tune.Checkpoint.from_directory(d))

    space = tmp_path / "mv.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0]}\n")
    args = [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo", "num_samples=1",
            "max_concurrent=2", "name=mv1"]
    run_round("mv", args, trainable=saving)
    lb = tmp_path / "lb.csv"
    before = read_leaderboard(lb)["checkpoint"].dropna().tolist()
    assert len(before) == 2 and all(c.startswith(str(tmp_path / "runs" / "mv1")) for c in before)
    shutil.move(tmp_path / "runs", tmp_path / "moved")
    from ups.tune import restore

    found, unpickle = [], restore.ResumableStopper.__setstate__

    def spy(self, state):  # Tune unpickles the saved stopper: it must find the resuming command's (keyed by path
        unpickle(self, state)  # before, a moved sweep ran the saved copy)
        found.append(self.inner is restore._RESUMING.get(self.experiment, object()))

    monkeypatch.setattr(restore.ResumableStopper, "__setstate__", spy)
    run_round("mv", [*args, f"storage_path={tmp_path / 'moved'}", "resume=true"], trainable=saving)
    assert found and found[-1]
    after = read_leaderboard(lb)
    assert len(after) == 2 and all(c.startswith(str(tmp_path / "moved" / "mv1")) and Path(c).is_dir()
                                   for c in after["checkpoint"])


def test_a_copied_sweep_folder_resumed_under_its_new_name_is_refused(ray_session, tmp_path: Path) -> None:
    """cp -r runs/x runs/x-copy, then name=x-copy resume=true: Tune restored the copy and every trial got a second
    leaderboard row (run_id x-copy-<trial> next to x-<trial>), counted twice in the round's report and promotion."""
    import shutil

    space = tmp_path / "cp.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0]}\n")
    trainable = make_trainable("training.lambda_spectral", {}, iterations=2, sleep=0.0)
    args = [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo", "num_samples=1",
            "max_concurrent=2"]
    first = run_round("cp", args, trainable=trainable)
    shutil.copytree(first.experiment_path, tmp_path / "runs" / "cp-copy")
    with pytest.raises(ConfigError) as e:
        run_round("cp", [*args, "name=cp-copy", "resume=true"], trainable=trainable)
    msg = str(e.value)
    assert f"started as sweep {first.experiment}" in msg and "cp-copy/ups_sweep.json" in msg
    assert f"name={first.experiment} resume=true" in msg
    lb = read_leaderboard(tmp_path / "lb.csv")
    assert len(lb) == 2 and (lb["experiment"] == first.experiment).all()
    # the fix the message gives: the copy, under its own name in another folder, resumes (its rows are replaced)
    shutil.move(tmp_path / "runs" / "cp-copy", tmp_path / "elsewhere" / first.experiment)
    run_round("cp", [*args, f"storage_path={tmp_path / 'elsewhere'}", f"name={first.experiment}", "resume=true"],
              trainable=trainable)
    assert len(read_leaderboard(tmp_path / "lb.csv")) == 2
