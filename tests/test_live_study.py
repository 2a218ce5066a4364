"""The running sweep in its round's Optuna study file (ups.tune.live_study): what optuna-dashboard shows while the
sweep runs, by the same rules as the report's export, which replaces it when the sweep ends."""
from __future__ import annotations

import json
import math
import shutil
import types
from pathlib import Path

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from ups.reports.experiment import load_experiment
from ups.reports.optuna_study import STUDY_FILE, _write_study, export_study
from ups.tune.live_study import BUILT_FROM, LiveStudy, StudyMirror

DISTS = {"lr": FloatDistribution(1e-4, 1e-2, log=True), "batch": CategoricalDistribution([8, 16])}


def _study(db: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{db.resolve()}")


def _view(study: optuna.Study) -> dict[str, tuple]:
    """Tune trial id → (state, value, params, intermediate values)."""
    return {t.user_attrs["tune_trial_id"]: (t.state.name, t.value, t.params, t.intermediate_values)
            for t in study.get_trials()}


def test_the_mirror_writes_a_real_experiment_as_the_export_does(failing_sweep, tmp_path) -> None:
    """The failing grid sweep's trials (one completes, one raises before its first report, one after), fed to the
    mirror as Tune's callbacks would, give the study the export builds from the experiment folder."""
    exp = failing_sweep.experiment
    space = {"training.lambda_spectral": CategoricalDistribution([0.0, 1.0, 2.0])}
    mirror = StudyMirror(tmp_path / "live" / STUDY_FILE, exp.name, space)
    for tr in load_experiment(exp).trials:
        mirror.start(tr.trial_id, tr.config)
        for _, row in tr.history.iterrows():
            mirror.report(tr.trial_id, row.dropna().to_dict())
        mirror.end(tr.trial_id, error=tr.status == "ERROR")
    mirror.flush()
    export_study(exp, tmp_path / "export" / STUDY_FILE)
    live, exported = _study(mirror.path, exp.name), _study(tmp_path / "export" / STUDY_FILE, exp.name)
    assert _view(live) == _view(exported) and len(_view(live)) == 3
    assert sorted(s for s, *_ in _view(live).values()) == ["COMPLETE", "FAIL", "FAIL"]
    assert live.metric_names == exported.metric_names and live.user_attrs["built_from"] == BUILT_FROM


def test_states_follow_searcher_stopped_and_values_outside_the_space_are_left_out(tmp_path) -> None:
    db = tmp_path / STUDY_FILE
    for stopped, cut in (("complete", "COMPLETE"), ("pruned", "PRUNED")):
        m = StudyMirror(db, f"sweep-{stopped}", DISTS, stopped=stopped)
        m.start("done", {"lr": 1e-3, "batch": 8, "unsearched": 3})
        m.start("cut", {"lr": 2e-3, "batch": 16})
        m.start("nan", {"lr": 3e-3, "batch": 16})
        m.start("outside", {"lr": 1.0, "batch": 8})
        for i in (1, 2):
            m.report("done", {"training_iteration": i, "val_objective": 1.0 / i})
            m.report("cut", {"training_iteration": i, "val_nrmse": 0.5 / i})  # no val_objective: val_nrmse
        m.report("done", {"training_iteration": 3, "val_objective": 0.25, "final": True})
        m.report("nan", {"training_iteration": 1, "val_objective": math.nan})
        for tid in m.trials:
            m.end(tid)
        m.flush()
        view = _view(_study(db, f"sweep-{stopped}"))
        assert view == {"done": ("COMPLETE", 0.25, {"lr": 1e-3, "batch": 8}, {1: 1.0, 2: 0.5, 3: 0.25}),
                        "cut": (cut, 0.25, {"lr": 2e-3, "batch": 16}, {1: 0.5, 2: 0.25}),
                        "nan": ("FAIL", None, {"lr": 3e-3, "batch": 16}, {})}, view


def test_writes_are_idempotent_and_survive_an_export_and_a_killed_driver(tmp_path) -> None:
    """Trials are matched by their Tune id against what the file holds: flushing twice adds nothing; an export
    that replaced the file mid-sweep (another study kept, this one rebuilt) is brought up to date, not
    duplicated; a new driver (resume after kill -9) goes on with the trials the old one left RUNNING."""
    db = tmp_path / STUDY_FILE
    m = StudyMirror(db, "sweep", DISTS)
    m.start("a", {"lr": 1e-3, "batch": 8})
    m.start("b", {"lr": 2e-3, "batch": 8})
    for i in (1, 2):
        m.report("a", {"training_iteration": i, "val_objective": 1.0 / i})
        m.report("b", {"training_iteration": i, "val_objective": 2.0 / i})
    m.flush()
    m.flush()
    assert [t.state.name for t in _study(db, "sweep").trials] == ["RUNNING", "RUNNING"]
    # a reader that keeps the file open all along, as optuna-dashboard does: it must see every later write
    reader = optuna.storages.RDBStorage(f"sqlite:///{db.resolve()}")
    assert len(optuna.load_study(study_name="sweep", storage=reader).trials) == 2

    # an export replaces the file: another sweep's study in it, this one rebuilt with "a" finished
    done = optuna.trial.create_trial(params={"lr": 1e-3, "batch": 8}, distributions=DISTS, value=0.5,
                                     intermediate_values={1: 1.0, 2: 0.5}, user_attrs={"tune_trial_id": "a"})
    _write_study(db, "other", [optuna.study.StudyDirection.MINIMIZE], "val_objective", {}, [done])
    _write_study(db, "sweep", [optuna.study.StudyDirection.MINIMIZE], "val_objective", {"searcher": "grid"}, [done])
    m.end("a")
    m.report("b", {"training_iteration": 3, "val_objective": 0.5})
    m.flush()
    assert _view(_study(db, "sweep")) == {"a": ("COMPLETE", 0.5, {"lr": 1e-3, "batch": 8}, {1: 1.0, 2: 0.5}),
                                          "b": ("RUNNING", None, {"lr": 2e-3, "batch": 8}, {1: 2.0, 2: 1.0, 3: 0.5})}
    assert len(_study(db, "other").trials) == 1

    # the driver is killed; a new one restores "b" and sees its later reports only
    again = StudyMirror(db, "sweep", DISTS)
    again.start("b", {"lr": 2e-3, "batch": 8})
    again.report("b", {"training_iteration": 4, "val_objective": 0.4, "final": True})
    again.end("b")
    again.flush()
    view = _view(_study(db, "sweep"))
    assert len(view) == 2 and view["b"] == ("COMPLETE", 0.4, {"lr": 2e-3, "batch": 8},
                                            {1: 2.0, 2: 1.0, 3: 0.5, 4: 0.4})
    assert _view(optuna.load_study(study_name="sweep", storage=reader)) == view  # not a replaced file's
    reader.engine.dispose()


def test_a_resumed_sweeps_study_is_rebuilt_from_its_folder_first(failing_sweep, tmp_path) -> None:
    """``LiveStudy.setup`` on a resumed sweep: the export of its experiment folder, the trials the stop left
    RUNNING with the reports they made before it (Tune restores them: their curves go on), then this driver's.
    The folder is the failing sweep's, its state edited as an interrupted sweep leaves it (one trial RUNNING,
    one PENDING)."""
    exp = tmp_path / failing_sweep.experiment.name
    shutil.copytree(failing_sweep.experiment, exp)
    by_reports = sorted(load_experiment(exp).trials, key=lambda t: len(t.history))
    unfinished = {"RUNNING": by_reports[-1].trial_id, "PENDING": by_reports[0].trial_id}  # the most reports, none
    state_file = max(exp.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    for item in state["trial_data"]:
        trial = json.loads(item[0])
        trial["status"] = next((st for st, tid in unfinished.items() if tid == trial["trial_id"]), trial["status"])
        item[0] = json.dumps(trial)
    state_file.write_text(json.dumps(state))
    running = next(t for t in load_experiment(exp).trials if t.trial_id == unfinished["RUNNING"])
    space = {"training.lambda_spectral": CategoricalDistribution([0.0, 1.0, 2.0])}
    db = tmp_path / STUDY_FILE
    cb = LiveStudy(StudyMirror(db, exp.name, space), experiment=str(exp))
    cb.setup()
    view = _view(_study(db, exp.name))
    assert len(view) == 2 and unfinished["PENDING"] not in view  # a pending trial shows once Tune starts it
    state, value, params, steps = view[unfinished["RUNNING"]]
    assert state == "RUNNING" and value is None and params == {"training.lambda_spectral": running.config[
        "training.lambda_spectral"]}
    assert len(steps) >= 3 and steps == {int(i): pytest.approx(v) for i, v in zip(
        running.history["training_iteration"], running.history["val_nrmse"]) if v == v}
    # Tune restores it and a new trial starts: the restored one goes on, nothing twice
    restored = types.SimpleNamespace(trial_id=unfinished["RUNNING"], config=running.config)
    cb.on_trial_start(0, [], restored)
    cb.on_trial_result(0, [], restored, {"training_iteration": 9, "val_nrmse": 0.25, "final": True})
    cb.on_trial_complete(0, [], restored)
    trial = types.SimpleNamespace(trial_id="new_trial", config={"training.lambda_spectral": 0.0})
    cb.on_trial_start(0, [], trial)
    cb.on_trial_result(0, [], trial, {"training_iteration": 1, "val_nrmse": 0.7})
    cb.on_trial_error(0, [], trial)
    view = _view(_study(db, exp.name))
    assert len(view) == 3 and view["new_trial"] == ("FAIL", None, {"training.lambda_spectral": 0.0}, {1: 0.7})
    assert view[unfinished["RUNNING"]][:2] == ("COMPLETE", 0.25) and 9 in view[unfinished["RUNNING"]][3]
    assert not cb.off


def test_warm_start_trials_are_in_the_study_from_the_first_write_and_only_once(tmp_path) -> None:
    """``searcher.warm_start``: the earlier sweep's trials TPE is told are COMPLETE in the view from the start, as
    the export writes them from TPE's study (user attr ``warm_start``); a point outside the space is left out, a
    later flush or a new driver (a study that already holds them: a resumed sweep's rebuilt one) adds none."""
    db = tmp_path / STUDY_FILE
    warm = [({"lr": 1e-3, "batch": 8}, 0.3), ({"lr": 2e-3, "batch": 16, "unsearched": 1}, 0.2),
            ({"lr": 1.0, "batch": 8}, 0.1)]

    def warm_view() -> list[tuple]:
        return sorted((t.state.name, t.value, t.params) for t in _study(db, "sweep").trials
                      if t.user_attrs.get("warm_start") is True)

    cb = LiveStudy(StudyMirror(db, "sweep", DISTS, warm=warm))
    cb.setup()  # before any trial starts
    told = [("COMPLETE", 0.2, {"lr": 2e-3, "batch": 16}), ("COMPLETE", 0.3, {"lr": 1e-3, "batch": 8})]
    assert warm_view() == told and len(_study(db, "sweep").trials) == 2
    trial = types.SimpleNamespace(trial_id="t1", config={"lr": 3e-3, "batch": 8})
    cb.on_trial_start(0, [], trial)
    cb.on_trial_result(0, [], trial, {"training_iteration": 1, "val_objective": 0.4, "final": True})
    cb.on_trial_complete(0, [], trial)
    again = StudyMirror(db, "sweep", DISTS, warm=warm)  # a new driver finds them in the file
    again.start("t2", {"lr": 4e-3, "batch": 8})
    again.flush()
    assert warm_view() == told and len(_study(db, "sweep").trials) == 4


def test_an_ended_trial_carries_its_leaderboard_row_as_user_attrs(tmp_path) -> None:
    """As the export writes them (``ROW_ATTRS`` with a value), from the row the leaderboard callback wrote when
    Tune told it of the end (it comes first in Tune's list); a trial without a row gets none."""
    db = tmp_path / STUDY_FILE
    rows = {"ok": {"run_id": "sweep-ok", "status": "completed", "stop_reason": "completed", "val_nrmse": 0.25,
                   "gate_pass": None, "params": 1234, "not_an_attr": 1},
            "bad": {"run_id": "sweep-bad", "status": "error", "stop_reason": "error: boom", "val_nrmse": math.nan}}
    cb = LiveStudy(StudyMirror(db, "sweep", DISTS), rows=rows.get)
    for tid in ("ok", "bad", "norow"):
        trial = types.SimpleNamespace(trial_id=tid, config={"lr": 1e-3, "batch": 8})
        cb.on_trial_start(0, [], trial)
        cb.on_trial_result(0, [], trial, {"training_iteration": 1, "val_objective": 0.25, "final": True})
        (cb.on_trial_error if tid == "bad" else cb.on_trial_complete)(0, [], trial)
    attrs = {t.user_attrs["tune_trial_id"]: t.user_attrs for t in _study(db, "sweep").trials}
    assert attrs == {"ok": {"tune_trial_id": "ok", "run_id": "sweep-ok", "status": "completed",
                            "stop_reason": "completed", "val_nrmse": 0.25, "params": 1234},
                     "bad": {"tune_trial_id": "bad", "run_id": "sweep-bad", "status": "error",
                             "stop_reason": "error: boom"},
                     "norow": {"tune_trial_id": "norow"}}, attrs


def test_a_broken_file_turns_the_view_off_not_the_sweep(tmp_path, capsys) -> None:
    db = tmp_path / STUDY_FILE
    db.write_bytes(b"not a database " * 100)
    cb = LiveStudy(StudyMirror(db, "sweep", DISTS))
    cb.setup()
    assert cb.off and "the live Optuna study in" in capsys.readouterr().out
    cb.on_trial_complete(0, [], types.SimpleNamespace(trial_id="x", config={}))  # nothing raised, nothing tried


def _live_trainable(db: Path, name: str):
    def trainable(config):
        """Reports twice, then waits (≤ 30 s) until its own trial is RUNNING in the study file with both reports,
        and reports whether it saw that."""
        import time

        import optuna
        from ray import tune

        from ups.tune.trainable import clean_metrics

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        me = tune.get_context().get_trial_id()
        v = float(config["training.lambda_spectral"])
        for it in (1, 2):
            tune.report(clean_metrics({"stage": "operator", "epoch": it, "val_nrmse": 0.5 + v / it}))
        seen, t0 = 0.0, time.monotonic()
        while not seen and time.monotonic() - t0 < 30:
            time.sleep(0.5)
            try:
                study = optuna.load_study(study_name=name, storage=f"sqlite:///{db}")
            except Exception:  # not written yet
                continue
            seen = float(any(t.user_attrs.get("tune_trial_id") == me and t.state.name == "RUNNING"
                             and sorted(t.intermediate_values) == [1, 2] for t in study.get_trials()))
        tune.report(clean_metrics({"stage": "done", "done": True, "val_nrmse": 0.5 + v / 3, "seen_live": seen}))
    return trainable


def test_a_running_sweep_is_in_its_study_file_while_it_runs(ray_session, tmp_path) -> None:
    """A real sweep on the session's Ray: each trial finds itself RUNNING with its reports in the study file
    while it runs; when the sweep ends the report's export has replaced the view (no trial twice)."""
    from ups.tune.launcher import run_round

    space = tmp_path / "space.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0]}\n")
    name = "live-1"
    db = (tmp_path / "reports" / "live" / STUDY_FILE).resolve()
    out = run_round("live", [f"storage_path={tmp_path / 'runs'}", f"leaderboard={tmp_path / 'lb.csv'}",
                             f"champion={tmp_path / 'champ.json'}", f"report_dir={tmp_path / 'reports'}",
                             "verbose=0", "wandb.enabled=false", "baselines=false", "promotion.top_k=0",
                             f"space={space}", "searcher.name=grid", "scheduler.name=fifo", "num_samples=1",
                             "max_concurrent=2", f"name={name}"], trainable=_live_trainable(db, name))
    trials = load_experiment(out.experiment_path).trials
    assert len(trials) == 2 and all(t.history["seen_live"].iloc[-1] == 1.0 for t in trials), \
        [t.history.to_dict("records") for t in trials]
    study = _study(db, name)
    assert study.user_attrs["built_from"] == "Tune results" and len(study.trials) == 2
    assert {t.state.name for t in study.trials} == {"COMPLETE"}


@pytest.mark.parametrize("overrides, on", [((), True), (("live_study=false",), False), (("write_report=false",), False),
                                           (("scheduler.name=pbt", "searcher.name=random"), False)])
def test_which_sweeps_get_a_live_study(tmp_path, overrides, on) -> None:
    """On by default, in the round's report file, in the space's distributions; off with live_study=false, without
    a report (no report file) and for PBT (the export writes no study for it either)."""
    from ups.tune.launcher import live_study
    from ups.tune.prepare import prepare

    p = prepare("round_a", [f"storage_path={tmp_path / 'runs'}", f"report_dir={tmp_path / 'reports'}", *overrides])
    live = live_study(p, "round_a-x", str(tmp_path / "runs" / "round_a-x"))
    assert (live is not None) == on
    if on:
        assert live.mirror.path == (tmp_path / "reports" / "round_a" / STUDY_FILE).resolve()
        assert set(live.mirror.distributions) == set(p.space.params) and live.experiment is None
        assert not live.mirror.path.exists()  # nothing written before the launcher's setup
