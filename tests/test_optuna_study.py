"""The sweep's Optuna study in an SQLite file (ups.reports.optuna_study): what TPE was told, openable with
``optuna.load_study`` / optuna-dashboard, written by the sweep's report, from local and S3 experiments."""
from __future__ import annotations

import json
import math
import pickle
import shutil
from datetime import datetime
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from ups.reports.experiment import ExperimentResults, TrialRecord
from ups.reports.html import write_report
from ups.reports import optuna_study
from ups.reports.optuna_study import (STUDY_FILE, StudyExport, _distribution, _reports as report_steps,
                                      _row_attrs, _rows_by_trial, _times, _truthy, _write_study, end_state,
                                      export_study, fit_params, searcher_state, sqlite_url, study_hint)
from ups.reports.sources import ReportError, load_leaderboard
from ups.tune.space import load_space
from ups.tune.trainable import METRIC, SEARCH_METRIC

COMPLETE, FAIL, PRUNED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL,
                          optuna.trial.TrialState.PRUNED)


def _storage(path) -> str:
    return f"sqlite:///{path.resolve()}"


def _reports(trial_dir) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def test_the_sweeps_report_holds_the_study_tpe_saw(report_sweep) -> None:
    exp = report_sweep.experiment
    db = report_sweep.reports / "round_a" / STUDY_FILE
    assert db.is_file(), "the sweep's report wrote no Optuna study"
    study = optuna.load_study(study_name=exp.name, storage=_storage(db))
    assert study.metric_names == ["val_objective"] and study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.user_attrs["experiment"] == str(exp) and study.user_attrs["searcher"] == "optuna"

    lb = load_leaderboard(report_sweep.leaderboard)
    rows = lb[(lb["kind"] == "trial") & (lb["experiment"] == exp.name)].set_index("trial_id")
    trials = study.get_trials()
    assert len(trials) == len(rows) == 3 and {t.state for t in trials} == {optuna.trial.TrialState.COMPLETE}
    space = load_space(exp / "ups_space.yaml")
    for t in trials:
        tid = t.user_attrs["tune_trial_id"]
        row = rows.loc[tid]
        # the searched keys, each inside the distribution TPE sampled it from
        assert set(t.params) == set(space.params)
        assert all(t.distributions[k]._contains(t.distributions[k].to_internal_repr(v)) for k, v in t.params.items())
        # the value TPE was told: the trial's final val nRMSE (round A searches no ttc.* key); each report a step
        reports = _reports(exp / f"trial_{tid}")
        assert t.value == pytest.approx(reports[-1]["val_objective"]) == pytest.approx(row["val_nrmse"])
        assert sorted(t.intermediate_values) == [r["training_iteration"] for r in reports]
        # the leaderboard's view of the same trial
        assert t.user_attrs["run_id"] == row["run_id"] and t.user_attrs["status"] == "completed"
        assert t.user_attrs["nrmse"] == pytest.approx(row["nrmse"])
    assert study.best_trial.user_attrs["tune_trial_id"] == rows["val_nrmse"].astype(float).idxmin()
    page = (report_sweep.reports / "round_a" / "index.html").read_text()
    assert 'id="optuna-study"' in page and f"optuna-dashboard {_storage(db)}" in page
    assert f"optuna-dashboard sqlite:///{STUDY_FILE}    # from this report" in page  # a copied report folder
    assert study_hint(db, exp.name) == f"study '{exp.name}' in {_storage(db)} (optuna-dashboard {_storage(db)})"
    assert study_hint(db, "no-such-sweep") is None and study_hint(db.with_name("none.db"), exp.name) is None


def test_an_export_replaces_its_own_study_and_keeps_the_others(report_sweep, tmp_path) -> None:
    lb = load_leaderboard(report_sweep.leaderboard)
    db = tmp_path / "sub" / STUDY_FILE
    first = export_study(report_sweep.experiment, db, leaderboard=lb)
    again = export_study(report_sweep.experiment, db, leaderboard=lb)  # e.g. the report after resume=true
    other = export_study(report_sweep.experiment, db, study_name="another-sweep")  # no leaderboard: no row attrs
    assert first.states == again.states == other.states == {"COMPLETE": 3}
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(_storage(db))}
    assert summaries == {report_sweep.experiment.name: 3, "another-sweep": 3}
    bare = optuna.load_study(study_name="another-sweep", storage=_storage(db)).trials
    assert all(set(t.user_attrs) == {"tune_trial_id"} for t in bare)
    assert sorted(p.name for p in db.parent.iterdir()) == [f".{STUDY_FILE}.lock", STUDY_FILE]  # no temp file left


def test_unfinished_and_warm_start_trials(report_sweep, tmp_path) -> None:
    """A trial still running when Tune saved its searcher (an interrupted sweep) and a start-up point queued but
    never run are left out and counted; a trial an earlier sweep lent (searcher.warm_start, no Tune trial of its
    own) is kept and marked."""
    exp = tmp_path / report_sweep.experiment.name
    shutil.copytree(report_sweep.experiment, exp)
    state_file = max(exp.glob("searcher-state-*.pkl"))
    state = pickle.loads(state_file.read_bytes())
    study: optuna.Study = state["_ot_study"]
    done = study.trials[0]
    study.ask()  # RUNNING: asked for a trial that never reported back
    study.enqueue_trial(done.params)  # WAITING: a start-up point queued, never asked for
    study.add_trial(optuna.trial.create_trial(params=done.params, distributions=done.distributions, value=0.5))
    state_file.write_bytes(pickle.dumps(state))
    out = export_study(exp, tmp_path / STUDY_FILE)
    assert out.states == {"COMPLETE": 4} and out.left_out == {"RUNNING": 1, "WAITING": 1}
    assert ("(4 complete; 1 running when Tune saved its searcher, left out; 1 queued start-up point(s) never run, "
            "left out)") in out.describe()
    trials = optuna.load_study(study_name=exp.name, storage=_storage(tmp_path / STUDY_FILE)).trials
    assert [t.user_attrs.get("warm_start") for t in trials] == [None, None, None, True]


def test_a_cut_off_searcher_state_costs_the_report_a_note(report_sweep, tmp_path) -> None:
    exp = tmp_path / report_sweep.experiment.name
    shutil.copytree(report_sweep.experiment, exp)
    state_file = max(exp.glob("searcher-state-*.pkl"))
    state_file.write_bytes(state_file.read_bytes()[:100])  # cut off, as a killed copy leaves it
    with pytest.raises(ReportError, match=f"{state_file.name} cannot be read .*Fix: resume the sweep once"):
        export_study(exp, tmp_path / STUDY_FILE)
    page = write_report(exp, report_sweep.leaderboard, "round_a", tmp_path / "r").read_text()
    assert "Optuna study not exported" in page and 'id="optuna-study"' not in page  # the report itself stands
    assert not (tmp_path / "r" / STUDY_FILE).exists()


def _by_value(study: optuna.Study) -> dict[float, optuna.trial.FrozenTrial]:
    return {t.params["training.lambda_spectral"]: t for t in study.trials}


def test_a_grid_sweep_gets_a_study_built_from_tunes_results(failing_sweep, tmp_path) -> None:
    """No Optuna searcher, no pickled study: the study comes from Tune's own results, in the grid's distribution.
    The failing sweep's grid: λ 0.0 completes, 1.0 raises before its first report, 2.0 after one report."""
    assert optuna_study.OBJECTIVE == SEARCH_METRIC and optuna_study.PLAIN_OBJECTIVE == METRIC  # its Ray-free copies
    exp = failing_sweep.experiment
    assert searcher_state(exp) is None
    lb = load_leaderboard(failing_sweep.leaderboard)
    out = export_study(exp, tmp_path / STUDY_FILE, leaderboard=lb)
    assert out.searcher == "grid" and out.states == {"COMPLETE": 1, "FAIL": 2} and not out.left_out
    assert "built from the grid search's Tune results" in out.describe()
    study = optuna.load_study(study_name=exp.name, storage=out.storage)
    assert study.user_attrs["searcher"] == "grid" and study.user_attrs["built_from"] == "Tune results"
    assert study.metric_names == [SEARCH_METRIC] and study.direction == optuna.study.StudyDirection.MINIMIZE
    trials = _by_value(study)
    assert set(trials) == {0.0, 1.0, 2.0}
    assert all(t.distributions["training.lambda_spectral"] == optuna.distributions.CategoricalDistribution(
        [0.0, 1.0, 2.0]) for t in trials.values())
    done, before, after = trials[0.0], trials[1.0], trials[2.0]
    reports = _reports(exp / f"trial_{done.user_attrs['tune_trial_id']}")
    assert done.state == COMPLETE and done.value == pytest.approx(reports[-1][METRIC])  # no val_objective reported
    assert done.intermediate_values == {r["training_iteration"]: pytest.approx(r[METRIC]) for r in reports}
    # its span: from its first report less that report's own duration, to its last report
    span = reports[-1]["timestamp"] - reports[0]["timestamp"] + reports[0]["time_this_iter_s"]
    assert span > 0 and done.duration.total_seconds() == pytest.approx(span, abs=1e-3)
    row = lb[(lb["kind"] == "trial") & (lb["trial_id"] == done.user_attrs["tune_trial_id"])]
    assert done.user_attrs["run_id"] == row["run_id"].iloc[0]
    assert before.state == FAIL and before.value is None and before.intermediate_values == {}
    assert after.state == FAIL and after.intermediate_values == {1: pytest.approx(2.5)}  # 0.5 + λ / 1
    page = write_report(exp, failing_sweep.leaderboard, "faulty", tmp_path / "r").read_text()
    assert 'id="optuna-study"' in page and "the grid search&#x27;s trials as Tune recorded them" in page


def test_a_results_built_study_of_an_unfinished_sweep_on_s3(failing_sweep, s3_bucket, tmp_path) -> None:
    """From S3 as from a local folder; trials Tune had not finished when the sweep stopped are left out and
    counted (here the state file is edited as an interrupted sweep leaves it: one RUNNING, one PENDING)."""
    from ups.cloud.dataset_sync import upload_dir

    exp = tmp_path / failing_sweep.experiment.name
    shutil.copytree(failing_sweep.experiment, exp)
    state_file = max(exp.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    for item, status in zip(state["trial_data"], ("RUNNING", "PENDING")):
        trial = json.loads(item[0])
        trial["status"] = status
        item[0] = json.dumps(trial)
    state_file.write_text(json.dumps(state))
    uri = f"s3://{s3_bucket}/sweeps/{exp.name}"
    upload_dir(exp, uri)
    out = export_study(uri, tmp_path / STUDY_FILE)
    local = export_study(exp, tmp_path / "local.db")
    assert out.states == local.states and sum(out.states.values()) == 1, out
    assert out.left_out == local.left_out == {"RUNNING": 1, "WAITING": 1}
    assert ("1 unfinished when the sweep stopped, left out; 1 pending, never started, left out, built from the "
            "grid search's Tune results") in out.describe()


def test_a_results_built_study_follows_searcher_stopped_and_the_space_the_sweep_started_in(failing_sweep,
                                                                                           tmp_path) -> None:
    exp = tmp_path / failing_sweep.experiment.name
    shutil.copytree(failing_sweep.experiment, exp)
    record_file = exp / "ups_sweep.json"
    record = json.loads(record_file.read_text())
    done_dir = next(d for d in exp.glob("trial_*") if (d / "result.json").is_file() and _reports(d)
                    and _reports(d)[-1].get("final"))
    lines = (done_dir / "result.json").read_text().splitlines()
    (done_dir / "result.json").write_text("\n".join(lines[:-1]) + "\n")  # ended without its final report: an ASHA stop
    last = json.loads(lines[-2])[METRIC]

    def export(name: str) -> dict[float, optuna.trial.FrozenTrial]:
        out = export_study(exp, tmp_path / STUDY_FILE, study_name=name)
        return _by_value(optuna.load_study(study_name=name, storage=out.storage))

    stopped = export("as-complete")[0.0]  # searcher.stopped=complete (the default): Ray's way, as for TPE
    assert stopped.state == COMPLETE and stopped.value == pytest.approx(last)
    record["sweep"]["searcher.stopped"] = "pruned"
    record_file.write_text(json.dumps(record))
    stopped = export("as-pruned")[0.0]
    assert stopped.state == PRUNED and stopped.value == pytest.approx(last)  # Optuna's: the last intermediate value

    # an 'around' window, resolved on the recorded base config (λ 1.0 ± 20 %): the grid's 0.0 and 2.0 lie outside
    (exp / "ups_space.yaml").write_text("params:\n  training.lambda_spectral: {dist: around, rel: 0.2}\n")
    record["trial"]["training.lambda_spectral"] = 1.0
    record_file.write_text(json.dumps(record))
    out = export_study(exp, tmp_path / STUDY_FILE, study_name="around")
    assert out.states == {"FAIL": 1} and out.left_out == {"OUTSIDE": 2}, out
    assert "2 with values outside the space the sweep started with, left out" in out.describe()
    (t,) = optuna.load_study(study_name="around", storage=out.storage).trials
    assert t.distributions["training.lambda_spectral"] == optuna.distributions.FloatDistribution(0.8, 1.2)

    (exp / "ups_space.yaml").write_text("params:\n  training.lambda_spectrall: {dist: uniform, low: 0, high: 1}\n")
    with pytest.raises(ReportError, match=r"its space copy ups_space.yaml cannot be read: .*lambda_spectrall.*"
                                          r"Fix: restore the file as the sweep wrote it"):
        export_study(exp, tmp_path / STUDY_FILE, study_name="renamed-key")  # a key this project no longer has

    record_file.write_text("[1, 2")  # cut off: its searcher and space are unknown, refused naming it
    with pytest.raises(ReportError, match=r"its ups_sweep.json is unreadable .*Fix: restore the file as the sweep"):
        export_study(exp, tmp_path / STUDY_FILE, study_name="cut-record")

    record["sweep"]["scheduler.name"] = "pbt"  # a trial's score comes from a schedule of values: no study
    record_file.write_text(json.dumps(record))
    assert export_study(exp, tmp_path / "pbt.db") is None
    record["sweep"]["scheduler.name"] = "fifo"
    record_file.write_text(json.dumps(record))
    (exp / "ups_space.yaml").unlink()  # a sweep from before space copies: no distributions to build on
    assert export_study(exp, tmp_path / "none.db") is None
    assert not (tmp_path / "pbt.db").exists() and not (tmp_path / "none.db").exists()


def test_the_study_of_an_experiment_on_s3(report_sweep, s3_bucket, tmp_path) -> None:
    from ups.cloud.dataset_sync import upload_dir

    uri = f"s3://{s3_bucket}/sweeps/{report_sweep.experiment.name}"
    upload_dir(report_sweep.experiment, uri)
    out = export_study(uri, tmp_path / STUDY_FILE, leaderboard=load_leaderboard(report_sweep.leaderboard))
    assert out.study_name == report_sweep.experiment.name and out.states == {"COMPLETE": 3}
    s3 = pd.DataFrame([t.user_attrs for t in optuna.load_study(study_name=out.study_name, storage=out.storage).trials])
    local = optuna.load_study(study_name=out.study_name,
                              storage=_storage(report_sweep.reports / "round_a" / STUDY_FILE)).trials
    assert sorted(s3["run_id"]) == sorted(t.user_attrs["run_id"] for t in local)


def test_ups_report_names_the_rounds_studies(report_sweep, tmp_path, capsys) -> None:
    from ups.cli import main as ups_main

    out = tmp_path / "r"
    assert ups_main(["report", "round=round_a", f"leaderboard={report_sweep.leaderboard}",
                     f"experiment={report_sweep.experiment}", f"out={out}"]) == 0
    url = _storage(out / STUDY_FILE)
    assert f"Optuna studies: {url} (optuna-dashboard {url})" in capsys.readouterr().out
    assert [s.study_name for s in optuna.get_all_study_summaries(url)] == [report_sweep.experiment.name]


def test_a_value_a_rounding_step_past_a_bound_is_put_on_it_and_one_beyond_is_refused() -> None:
    """Tune's loguniform draws exp(uniform(log low, log high)), which can land a rounding step past ``high``: such a
    trial belongs to the space (on the bound); a value truly outside, or not one of the choices, does not."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    lr = FloatDistribution(1e-4, 1e-2, log=True)
    assert optuna_study._fit(lr, 1e-2 * (1 + 1e-15)) == 1e-2 and optuna_study._fit(lr, 3e-3) == 3e-3
    assert optuna_study._fit(lr, 1.1e-2) is None and optuna_study._fit(lr, -1.0) is None
    assert optuna_study._fit(CategoricalDistribution(["[0.9, 0.95]", "[0.9, 0.99]"]), "[0.9, 0.99]") == "[0.9, 0.99]"
    assert optuna_study._fit(CategoricalDistribution([0.0, 1.0]), 2.0) is None
    assert optuna_study._fit(IntDistribution(1, 3), 3) == 3 and optuna_study._fit(IntDistribution(1, 3), 4) is None


def test_a_suggestion_that_repeats_a_finished_trial_is_told_its_score_and_drawn_again() -> None:
    """Training is deterministic: a categorical space (round B's) had TPE suggest a finished trial's values again
    (the reference's, 1 trial in 5), which trained the same model twice.  The repeat is told that trial's score and
    the trial gets a fresh draw; a space with nothing left trains the repeat (after MAX_REDRAWS); values a running
    trial holds, or a trial ASHA stopped, are not known scores and are drawn as Optuna likes."""
    import optuna
    from ray import tune

    from ups.tune.trainable import SEARCH_METRIC
    from ups.tune.warm_start import MAX_REDRAWS, WarmOptunaSearch, params_key

    search = WarmOptunaSearch(sampler=optuna.samplers.RandomSampler(seed=0))
    assert search.set_search_properties("val_nrmse", "min", {"a": tune.choice([1, 2, 3])})
    values = []
    for i, score in enumerate((0.5, 0.4)):
        values.append(search.suggest(f"t{i}")["a"])
        search.on_trial_complete(f"t{i}", {SEARCH_METRIC: score, "final": 1})
    values.append(search.suggest("t2")["a"])
    assert sorted(values) == [1, 2, 3]  # each finished value drawn again was told its score, not trained
    repeats = [t for t in search._ot_study.trials
               if t.user_attrs.get("repeat_of") and t.state == optuna.trial.TrialState.COMPLETE]
    assert repeats and all(t.value == {"t0": 0.5, "t1": 0.4}[t.user_attrs["repeat_of"]]
                           and t.state == optuna.trial.TrialState.COMPLETE for t in repeats)
    assert all(t.params["a"] == values[int(t.user_attrs["repeat_of"][1:])] for t in repeats)
    # stopped early (no final report): its score is not the value's final one, so those values may train again
    search.on_trial_complete("t2", {SEARCH_METRIC: 0.3})
    assert search.suggest("t3")["a"] == values[2]
    # a point already told is told again as FAIL (TPE leaves those out), not as one more copy of its score
    assert all(t.state == optuna.trial.TrialState.FAIL for t in search._ot_study.trials
               if t.user_attrs.get("repeat_of") and t.number not in {r.number for r in repeats})
    assert len({t.params["a"] for t in repeats}) == len(repeats)  # each point told with its score once
    # every point of the space has finished: the trial trains a repeat at once (no redraws that cannot succeed)
    search._finished_scores[search._trial_keys["t3"]] = ("t3", 0.3)  # as if t3 had finished
    told = len(search._ot_study.trials)
    assert search.suggest("t4")["a"] in values and len(search._ot_study.trials) - told == 1
    # a space with points left but drawn badly: at most MAX_REDRAWS draws, then it trains the repeat
    wide = WarmOptunaSearch(sampler=optuna.samplers.RandomSampler(seed=0))
    assert wide.set_search_properties("val_nrmse", "min", {"a": tune.choice(list(range(1000)))})
    wide.suggest("w0")
    wide.on_trial_complete("w0", {SEARCH_METRIC: 0.5, "final": 1})
    wide._finished_scores = {params_key({"a": v}): ("w0", 0.5) for v in range(999)}  # only one point left
    before = len(wide._ot_study.trials)
    wide.suggest("w1")
    assert len(wide._ot_study.trials) - before <= MAX_REDRAWS + 1
    # what a resume restores: the scores travel with the searcher's pickled state (OptunaSearch.save: its __dict__)
    clone = WarmOptunaSearch()
    clone.__dict__.update(pickle.loads(pickle.dumps(search.__dict__)))
    assert clone._finished_scores == search._finished_scores and len(clone._finished_scores) == 3
    # the study export: a repeat is no Tune trial and no warm-start trial
    from ups.reports.optuna_study import _tpe_trials, StudyExport

    from pathlib import Path

    state = {"_ot_trials": search._ot_trials}
    exported = _tpe_trials(state, search._ot_study, StudyExport(Path("x"), "s"), {})
    assert all(not t.user_attrs.get("warm_start") for t in exported if t.user_attrs.get("repeat_of"))


def test_a_restarted_trials_repeated_iterations_are_not_reported_twice() -> None:
    """A trial restarted from its checkpoint reports the iterations after it again; Optuna warned of each repeat
    (`step=37 is already reported`) and kept the first value anyway."""
    import warnings

    from ray import tune

    from ups.tune.warm_start import WarmOptunaSearch

    search = WarmOptunaSearch(sampler=optuna.samplers.RandomSampler(seed=0))
    search.set_search_properties("val_nrmse", "min", {"a": tune.uniform(0.0, 1.0)})
    search.suggest("t0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Optuna's warning would fail here
        for step in (1, 2, 2, 3):
            search.on_trial_result("t0", {SEARCH_METRIC: 0.1 * step, "training_iteration": step})
    trial = search._ot_trials["t0"]
    assert trial.storage.get_trial(trial._trial_id).intermediate_values == pytest.approx({1: 0.1, 2: 0.2, 3: 0.3})


def test_an_earlier_sweeps_points_count_as_finished_but_the_queued_reference_still_trains() -> None:
    """searcher.warm_start tells TPE an earlier sweep's finished trials: a suggestion repeating one of them is told
    its score and drawn again, as a repeat of this sweep's own; the queued reference trains even when the earlier
    sweep trained the same values (it is this round's yardstick)."""
    from ray import tune

    from ups.tune.warm_start import WarmOptunaSearch

    warm = [({"a": 1}, 0.5), ({"a": 2}, 0.4)]
    search = WarmOptunaSearch(points_to_evaluate=[{"a": 1}], warm=warm,
                              sampler=optuna.samplers.RandomSampler(seed=0))
    assert search.set_search_properties("val_nrmse", "min", {"a": tune.choice([1, 2, 3])})
    assert search.suggest("ref")["a"] == 1  # queued: trained, though the earlier sweep had it
    assert search.suggest("t1")["a"] == 3  # 1 and 2 were trained before: told, drawn again
    assert {t.user_attrs.get("repeat_of") for t in search._ot_study.trials} >= {"warm start"}


@pytest.mark.parametrize("stopped", ["complete", "pruned"])
def test_the_report_a_trial_was_stopped_at_is_in_the_study(stopped: str) -> None:
    """Tune skips ``on_trial_result`` for the report ASHA or a physics gate stops a trial at, and calls
    ``on_trial_complete`` with it: the study lacked that step (19 of 20 intermediate values), and under
    ``searcher.stopped=pruned`` the trial's value was its step before, 0.586 for a trial whose stopping report was
    the divergence penalty."""
    from ray import tune

    from ups.tune.warm_start import WarmOptunaSearch

    search = WarmOptunaSearch(sampler=optuna.samplers.RandomSampler(seed=0), stopped=stopped)
    search.set_search_properties(SEARCH_METRIC, "min", {"a": tune.uniform(0.0, 1.0)})
    search.suggest("t0")
    for step in (1, 2):
        search.on_trial_result("t0", {SEARCH_METRIC: 0.6 - 0.01 * step, "training_iteration": step})
    stop = {SEARCH_METRIC: 1000.0, "training_iteration": 3}  # the gate's penalty: no on_trial_result for it
    search.on_trial_complete("t0", stop)
    (t,) = search._ot_study.get_trials()
    assert t.intermediate_values == pytest.approx({1: 0.59, 2: 0.58, 3: 1000.0})
    want = optuna.trial.TrialState.PRUNED if stopped == "pruned" else optuna.trial.TrialState.COMPLETE
    assert t.state == want and t.value == pytest.approx(1000.0)


def test_end_state_maps_error_nan_stop_and_final_to_optunas_states() -> None:
    """FAIL for an error or a non-finite last figure; a stop without the final report is PRUNED (value: the last
    intermediate value, i.e. the highest step) only under searcher.stopped=pruned, else COMPLETE with its last."""
    steps = {1: 0.5, 2: 0.4, 3: 0.3}
    assert end_state(False, 0.3, False, "pruned", steps) == ("PRUNED", 0.3)
    assert end_state(False, 0.3, True, "pruned", steps) == ("COMPLETE", 0.3)
    assert end_state(False, 0.3, False, "complete", steps) == ("COMPLETE", 0.3)
    assert end_state(True, 0.3, True, "complete", steps) == ("FAIL", None)
    assert end_state(False, math.nan, True, "complete", steps) == ("FAIL", None)
    assert end_state(False, math.inf, True, "complete", steps) == ("FAIL", None)
    assert end_state(False, None, False, "pruned", {}) == ("FAIL", None)


def test_reports_read_the_objective_on_its_step_and_leave_out_non_finite_ones() -> None:
    """val_objective is what TPE minimised (val_nrmse only without it); each finite report is the intermediate
    value of its training_iteration, and the last report's figure is the trial's (NaN when not finite)."""
    history = pd.DataFrame({"training_iteration": [1, 2, 3], "val_objective": [0.5, math.inf, 0.3],
                            "val_nrmse": [9.0, 9.0, 9.0]})
    assert report_steps(history) == ({1: 0.5, 3: 0.3}, 0.3)
    steps, last = report_steps(history.assign(val_objective=[0.5, 0.4, math.nan]))
    assert steps == {1: 0.5, 2: 0.4} and math.isnan(last)
    assert report_steps(history.drop(columns="val_objective")) == ({1: 9.0, 2: 9.0, 3: 9.0}, 9.0)


def test_a_trials_times_start_one_report_duration_before_its_first_report() -> None:
    history = pd.DataFrame({"timestamp": [1_000_100, 1_000_110], "time_this_iter_s": [4.0, 10.0]})
    assert _times(history) == (datetime.fromtimestamp(1_000_096), datetime.fromtimestamp(1_000_110))
    assert _times(history.drop(columns="time_this_iter_s"))[0] == datetime.fromtimestamp(1_000_100)


def test_distributions_of_the_space_keep_log_and_grid(tmp_path: Path) -> None:
    """loguniform is a log float, uniform a linear one, a grid Optuna's categorical of its values."""
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  stages.operator.optimizer.lr: {dist: loguniform, low: 1.0e-4, high: 1.0e-2}\n"
                    "  ttc.threshold: {dist: uniform, low: 0.1, high: 0.2}\n"
                    "  training.lambda_spectral: {dist: grid, values: [0.0, 1.0]}\n")
    params = load_space(path).params
    assert _distribution(params["stages.operator.optimizer.lr"]) == FloatDistribution(1e-4, 1e-2, log=True)
    assert _distribution(params["ttc.threshold"]) == FloatDistribution(0.1, 0.2)
    assert _distribution(params["training.lambda_spectral"]) == CategoricalDistribution([0.0, 1.0])


def test_a_trial_missing_a_searched_key_is_left_out() -> None:
    dists = {"a": FloatDistribution(0.0, 1.0), "b": CategoricalDistribution(["x", "y"])}
    assert fit_params(dists, {"a": 0.5, "b": "y", "other": 3}) == {"a": 0.5, "b": "y"}
    assert fit_params(dists, {"a": 0.5}) is None
    assert fit_params(dists, {"a": 1.5, "b": "y"}) is None


def test_final_flags_nan_and_zero_are_not_final() -> None:
    assert [_truthy(v) for v in (None, math.nan, 0, False, 1, True, 1.0)] == [False] * 4 + [True] * 3


def test_leaderboard_rows_are_the_trials_of_this_experiment_or_of_none() -> None:
    """Only ``kind == trial`` rows, of this experiment (by folder name) or of no named one, give user attrs; of a
    row, the ROW_ATTRS with a value, as plain Python scalars."""
    lb = pd.DataFrame({"kind": ["trial", "trial", "trial", "baseline"], "trial_id": ["t1", "t2", "t3", "t4"],
                       "experiment": ["s3://b/sweeps/exp_a/", "", "exp_b", "exp_a"],
                       "run_id": ["r1", "r2", "r3", "r4"], "nrmse": [np.float64(0.25), math.nan, 0.1, 0.1],
                       "label": ["", "L", "L", "L"]})
    rows = _rows_by_trial(lb, "exp_a")
    assert sorted(rows) == ["t1", "t2"]
    attrs = _row_attrs(rows["t1"])
    assert attrs == {"run_id": "r1", "nrmse": 0.25} and type(attrs["nrmse"]) is float
    assert _row_attrs(rows["t2"]) == {"run_id": "r2", "label": "L"}


def test_an_empty_export_says_no_trials() -> None:
    assert StudyExport(Path("x.db"), "s").describe("here") == "Optuna study 's' (no trials) in here"


def test_the_newest_searcher_state_is_read(tmp_path: Path) -> None:
    """Tune's searcher-state-<session>.pkl: the greatest name is the newest save."""
    for stamp in ("2026-01-02_00-00-00", "2026-01-01_00-00-00"):
        (tmp_path / f"searcher-state-{stamp}.pkl").write_bytes(pickle.dumps({"saved": stamp}))
    assert searcher_state(tmp_path) == {"saved": "2026-01-02_00-00-00"}


def test_a_written_study_carries_its_metric_name_and_attrs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The study names its objective (optuna-dashboard shows it) and keeps its user attrs; its URL is absolute, so
    that it opens from any directory."""
    monkeypatch.chdir(tmp_path)
    assert sqlite_url("r/optuna.db") == f"sqlite:///{tmp_path.resolve() / 'r' / 'optuna.db'}"
    _write_study(Path("r/optuna.db"), "s", [optuna.study.StudyDirection.MINIMIZE], "val_objective",
                 {"searcher": "grid"}, [])
    study = optuna.load_study(study_name="s", storage=sqlite_url("r/optuna.db"))
    assert study.metric_names == ["val_objective"] and study.user_attrs == {"searcher": "grid"}


def _trial(trial_id: str, status: str, lam: float, objectives: list[float], final: bool) -> TrialRecord:
    """A Tune trial as ``load_experiment`` reads it: one history row per report, the last one ``final`` or not."""
    history = pd.DataFrame({"training_iteration": list(range(1, len(objectives) + 1)), SEARCH_METRIC: objectives,
                            "final": [False] * (len(objectives) - 1) + [final]} if objectives else {})
    return TrialRecord(trial_id, status, {"training.lambda_spectral": lam}, history, dirname=f"trial_{trial_id}")


def test_a_random_sweeps_trials_get_their_states_from_tunes_status(tmp_path: Path) -> None:
    """Built from Tune's results under searcher.stopped=pruned: a final report is COMPLETE, a stop before it PRUNED
    at its last report, an error FAIL; a PAUSED trial (unfinished) and a PENDING one are left out and counted."""
    (tmp_path / "ups_sweep.json").write_text(json.dumps(
        {"sweep": {"searcher.name": "random", "searcher.stopped": "pruned", "scheduler.name": "asha"}, "trial": {}}))
    (tmp_path / "ups_space.yaml").write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0, 2.0]}\n")
    results = ExperimentResults(str(tmp_path), [
        _trial("a", "TERMINATED", 0.0, [0.5, 0.3], final=True), _trial("b", "TERMINATED", 1.0, [0.6, 0.4], final=False),
        _trial("c", "ERROR", 2.0, [0.7], final=False), _trial("d", "PAUSED", 0.0, [0.9], final=False),
        _trial("e", "PENDING", 1.0, [], final=False)])
    out = export_study(tmp_path, tmp_path / STUDY_FILE, results=results)
    assert out.searcher == "random" and out.states == {"COMPLETE": 1, "PRUNED": 1, "FAIL": 1}, out
    assert out.left_out == {"RUNNING": 1, "WAITING": 1}, out
    trials = {t.user_attrs["tune_trial_id"]: t for t in optuna.load_study(study_name=tmp_path.name,
                                                                           storage=out.storage).trials}
    assert (trials["a"].state, trials["a"].value, trials["a"].intermediate_values) == (COMPLETE, 0.3, {1: 0.5, 2: 0.3})
    assert (trials["b"].state, trials["b"].value) == (PRUNED, 0.4)
    assert (trials["c"].state, trials["c"].value, trials["c"].intermediate_values) == (FAIL, None, {1: 0.7})
