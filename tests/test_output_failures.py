"""A disk that cannot take a sweep's files (full, or a path that is not a folder) loses no finished result and
leaves a sweep that resumes: the leaderboard's rows wait in memory, an unreadable trial error file is removed."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from ups.leaderboard import read_leaderboard
from ups.outputs import OutputWriteError
from ups.tune.gates import GateLimits
from ups.tune.results import LeaderboardCallback, RowContext, error_file_note


def _ctx() -> tuple[RowContext, dict]:
    from ups.config import load_config, to_dict
    from ups.tune.space import load_space

    base = load_config(["preset=dim8"])
    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "round_a.yaml", base)
    ref = space.reference_point(base)
    return RowContext(round="round_a", experiment="round_a-x", space=space, base=to_dict(base), reference_point=ref), ref


def _trial(tid: str, config: dict) -> SimpleNamespace:
    done = {"training_iteration": 30, "val_nrmse": 0.4, "nrmse": 0.4, "final": True, "done": True}
    return SimpleNamespace(trial_id=tid, config=config, last_result=done, checkpoint=None, num_failures=0)


def test_a_leaderboard_that_cannot_take_a_row_keeps_it_and_writes_it_later(tmp_path: Path, capsys) -> None:
    """A full disk under the leaderboard raised in the callback's ``on_trial_complete``; Tune took that for a
    trial error and retrained the finished trial from its checkpoint, then ended the driver in a traceback."""
    from ups.tune.launcher import reconcile_or_stop

    ctx, ref = _ctx()
    folder = tmp_path / "reports"
    folder.write_text("a file where the leaderboard's folder should be")  # every write raises OSError
    lb = folder / "leaderboard.csv"
    cb = LeaderboardCallback(lb, ctx, GateLimits())
    cb.on_trial_complete(1, [], _trial("t1", ref))  # no exception: Tune would turn one into a trial error
    cb.on_trial_complete(2, [], _trial("t2", ref))
    err = capsys.readouterr().err
    assert err.count("cannot write the leaderboard") == 1 and "Fix: free space" in err  # said once
    assert set(cb.unwritten) == {ctx.run_id("t1"), ctx.run_id("t2")}
    with pytest.raises(OutputWriteError, match=r"cannot write the leaderboard .*resume=true name=round_a-x"):
        reconcile_or_stop(lb, ctx, [], cb, None, "round_a-x")  # the loop's end: the fix and the resume
    folder.unlink()
    folder.mkdir()  # the disk has room again: the next row takes the waiting ones with it
    cb.on_trial_complete(3, [], _trial("t3", ref))
    assert "takes rows again: 3 written" in capsys.readouterr().err
    assert set(read_leaderboard(lb)["run_id"]) == {ctx.run_id(t) for t in ("t1", "t2", "t3")}
    assert not cb.unwritten


def test_an_error_file_a_full_disk_cut_to_nothing_is_removed_and_said(tmp_path: Path) -> None:
    """Ray writes a failed trial's exception to ``error.pkl``; on a full disk it was 0 bytes, and Ray's ResultGrid,
    which unpickles every trial's, ended the driver in ``EOFError: Ran out of input``, and every resume after it."""
    from ray import cloudpickle

    exp = tmp_path / "round_a-x"
    bad, good = exp / "trial_aa", exp / "trial_bb"
    bad.mkdir(parents=True)
    good.mkdir()
    (bad / "error.pkl").write_bytes(b"")
    (good / "error.pkl").write_bytes(cloudpickle.dumps(RuntimeError("a readable error")))
    storage = SimpleNamespace(trial_fs_path=str(bad), storage_filesystem=None)
    note = error_file_note(SimpleNamespace(trial_id="aa", local_path=str(bad), storage=storage))
    assert note and "trial aa failed and its error could not be saved in full" in note and "MiB free" in note
    assert not (bad / "error.pkl").exists() and (good / "error.pkl").exists()
    storage = SimpleNamespace(trial_fs_path=str(good), storage_filesystem=None)
    assert error_file_note(SimpleNamespace(trial_id="bb", local_path=str(good), storage=storage)) is None


def test_a_sweep_whose_trial_error_file_is_empty_resumes(ray_session, tmp_path: Path) -> None:
    """The resume: an experiment whose errored trial's ``error.pkl`` is empty (the disk was full when it failed)
    restored into ``EOFError`` every time; the file is removed before Tune reads it, and the sweep finishes."""
    from tests.test_sweep_engine import common, make_trainable
    from ups.tune.launcher import run_round

    space = tmp_path / "s.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0]}\n")
    args = [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo", "num_samples=1",
            "max_concurrent=1", "max_failures=0", "gates.enabled=false", "name=full-disk", "fail_on_trial_error=false"]
    first = run_round("full-disk", args, trainable=make_trainable("training.lambda_spectral", {1.0: "raise"}))
    assert len(first.failed) == 1
    (pkl,) = list((tmp_path / "runs" / "full-disk").glob("trial_*/error.pkl"))
    pkl.write_bytes(b"")  # as a full disk leaves it
    again = run_round("full-disk", [*args, "resume=true"], trainable=make_trainable("training.lambda_spectral", {}))
    rows = again.rows[again.rows["experiment"] == "full-disk"]
    assert len(rows) == 2 and rows["run_id"].is_unique
    assert set(rows["status"]) == {"completed"}, rows[["run_id", "status"]].to_dict("records")  # retried, finished
    assert json.loads(rows.iloc[0]["config_json"])  # real rows, not placeholders


def test_a_full_disk_before_any_trial_ends_the_sweep_with_the_fix(tmp_path: Path, monkeypatch) -> None:
    """The leaderboard's disk full when the baseline rows are written ended the driver in a traceback; now the
    fix, and the new sweep's folder is removed (nothing trained: the same command starts it again)."""
    import errno

    from ups.tune import launcher

    runs = tmp_path / "runs"
    args = [f"storage_path={runs}", f"leaderboard={tmp_path / 'lb.csv'}", f"report_dir={tmp_path / 'r'}",
            f"champion={tmp_path / 'c.json'}", "wandb.enabled=false", "name=early"]
    monkeypatch.setattr(launcher, "load_data", lambda base: SimpleNamespace(data_hash="d1"))
    monkeypatch.setattr(launcher, "baseline_rows", lambda s, base, data: ([{"run_id": "baseline-x", "label": "x"}], []))

    def full(path, rows):  # what a full disk raises (ENOSPC) when the leaderboard is written
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(launcher, "upsert_rows", full)
    with pytest.raises(OutputWriteError, match=r"cannot write the leaderboard .*lb\.csv \(No space left on device\); "
                                               r"nothing has trained yet.*Fix: free space .* run the same command"):
        launcher.run_round("round_a", args)
    assert not (runs / "early").exists()  # a new sweep's folder goes with it


def test_a_row_that_waited_never_replaces_the_newer_row_of_its_trial(tmp_path: Path) -> None:
    """A trial's row that a full disk left waiting ('interrupted') and then its newer row (it completed): the
    leaderboard gets the newer one, not the stale row that waited."""
    from ups.leaderboard import read_leaderboard
    from ups.tune.results import INTERRUPTED, trial_row

    ctx, ref = _ctx()
    folder = tmp_path / "reports"
    folder.write_text("not a folder")
    cb = LeaderboardCallback(folder / "leaderboard.csv", ctx, GateLimits())
    assert not cb.upsert([trial_row(ctx, "t1", ref, {"training_iteration": 5}, gate_reason=None, cut=INTERRUPTED)])
    folder.unlink()
    folder.mkdir()
    cb.on_trial_complete(9, [], _trial("t1", ref))
    rows = read_leaderboard(folder / "leaderboard.csv").set_index("run_id")
    assert rows.loc[ctx.run_id("t1"), "status"] == "completed", rows["stop_reason"].to_dict()


def test_rows_for_an_interrupted_loop_cover_only_the_open_trials_that_reported_here(tmp_path: Path) -> None:
    """At an interrupt, a trial still pending (never reported: a resume runs it) gets no row, and a trial whose row
    the callback already wrote is not taken for one the loop cut short; a gated trial's row says 'stopped' and why."""
    from ups.leaderboard import read_leaderboard
    from ups.tune.results import INTERRUPTED, stop_reason

    ctx, ref = _ctx()
    lb = tmp_path / "leaderboard.csv"
    cb = LeaderboardCallback(lb, ctx, GateLimits())
    running = {"training_iteration": 3, "val_nrmse": 0.5, "time_this_iter_s": 1.0}
    t1, t2, t3 = (SimpleNamespace(trial_id=t, config=ref, last_result=running, checkpoint=None, num_failures=0,
                                  status="RUNNING") for t in ("t1", "t2", "t3"))
    for t in (t1, t3):
        cb.on_trial_result(3, [t1, t2, t3], t, dict(running))
    t3.last_result, t3.status = _trial("t3", ref).last_result, "TERMINATED"
    cb.on_trial_complete(4, [t1, t2, t3], t3)
    cb.on_step_end(4, [t1, t2, t3])
    assert cb.cut_short("t1", running) and not cb.cut_short("t2", running) and not cb.cut_short("t3", running)
    assert cb.record_unfinished(INTERRUPTED) == 1
    rows = read_leaderboard(lb).set_index("run_id")
    assert sorted(rows.index) == [ctx.run_id("t1"), ctx.run_id("t3")]
    assert rows.loc[ctx.run_id("t1"), "status"] == INTERRUPTED and rows.loc[ctx.run_id("t3"), "status"] == "completed"
    gate = "gate:diverging (train_loss 16 > 20× best 0.5 in stage operator at iteration 8)"
    assert stop_reason({"training_iteration": 8}, gate, "asha", errored=False) == ("stopped", gate)


# ------------------------------------------------------------------ trial rows: stop reasons, budgets, columns
def test_stop_reason_precedence() -> None:
    """Which label wins when several apply: an error over an interrupt, an interrupt over a gate (the trial is
    unfinished: resume=true continues it), a gate over a sweep budget; early stops name ASHA or PBT."""
    from ups.tune.results import INTERRUPTED, stop_reason

    it = {"training_iteration": 4}
    assert stop_reason(it, "gate:x", "asha", errored=True, cut=INTERRUPTED)[0] == "error"
    assert stop_reason(it, "gate:x", "asha", errored=False, cut=INTERRUPTED)[0] == INTERRUPTED
    assert stop_reason(it, "gate:x", "asha", errored=False, cut="time_budget_s") == ("stopped", "gate:x")
    assert stop_reason(it, None, "asha", errored=False, cut="time_budget_s") == (
        "stopped", "sweep budget time_budget_s reached at iteration 4")
    assert stop_reason(it, None, "pbt", errored=False) == ("stopped", "pbt: early stop at iteration 4")
    assert stop_reason(it, None, "fifo", errored=False) == ("stopped", "stopped at iteration 4")
    assert stop_reason({**it, "final": True}, None, "asha", errored=False) == ("completed", "completed")


def test_a_row_without_the_final_eval_has_no_test_scores() -> None:
    """Only the final report's eval fills the test columns: a stopped trial's row with an nrmse would read as a
    finished trial in the reports (``trial_state``) and could be picked best."""
    ctx, ref = _ctx()
    from ups.tune.results import trial_row

    row = trial_row(ctx, "t1", ref, {"training_iteration": 3, "nrmse": 0.3, "nrmse_ttc": 0.2}, gate_reason=None)
    assert "nrmse" not in row and "nrmse_ttc" not in row and "eval_samples_json" not in row
    done = trial_row(ctx, "t2", ref, {"training_iteration": 3, "nrmse": 0.3, "final": True}, gate_reason=None)
    assert done["nrmse"] == 0.3 and done["status"] == "completed"


def test_epochs_run_prefers_a_numeric_global_epoch() -> None:
    """``global_epoch`` when it is a finite number, else ``training_iteration`` (a bool or NaN is no epoch count)."""
    from ups.tune.results import epochs_run

    assert epochs_run({"global_epoch": 12.0, "training_iteration": 14}) == 12
    assert epochs_run({"global_epoch": True, "training_iteration": 7}) == 7
    assert epochs_run({"global_epoch": float("nan"), "training_iteration": 7}) == 7


def test_eval_samples_json_needs_both_lists() -> None:
    """The paired TTC-gain interval needs both per-sample lists; one alone, or one unreadable, records none."""
    from ups.tune.results import eval_samples_json

    assert eval_samples_json({"nrmse_samples": [0.1, 0.2], "nrmse_ttc_samples": "[0.05, 0.1]"}) == (
        '{"nrmse":[0.1,0.2],"nrmse_ttc":[0.05,0.1]}')
    assert eval_samples_json({"nrmse_samples": [0.1]}) == ""
    assert eval_samples_json({"nrmse_samples": [0.1], "nrmse_ttc_samples": "[0.1"}) == ""


def test_a_nonfinite_gpu_share_is_priced_at_the_fallback() -> None:
    """A NaN share (a report that lost it) prices at ``resources.gpu``, not NaN GPU-hours."""
    from ups.tune.results import gpu_seconds

    assert gpu_seconds(10.0, {"gpu_share": float("nan")}, 0.5) == 5.0
    assert gpu_seconds(10.0, {"gpu_share": 0.25}, 0.5) == 2.5


def test_the_budget_labels_only_trials_it_cut(tmp_path: Path) -> None:
    """A compute budget is used up at Σ time_this_iter_s ≥ it; a budget of 0 means none.  A trial that ends after
    that with its final result is 'completed'; one ended without it is labelled with the budget."""
    ctx, ref = _ctx()
    none = LeaderboardCallback(tmp_path / "a.csv", ctx, GateLimits(), budgets={"compute_budget_s": 0,
                                                                                 "time_budget_s": 0})
    assert none.budgets == {} and none.budget_hit() is None
    cb = LeaderboardCallback(tmp_path / "lb.csv", ctx, GateLimits(), budgets={"compute_budget_s": 5.0})
    t1, t2 = _trial("t1", ref), _trial("t2", ref)
    t2.last_result = {"training_iteration": 2, "val_nrmse": 0.5}
    for t in (t1, t2):
        cb.on_trial_result(1, [t1, t2], t, {"time_this_iter_s": 2.5})
    assert cb.spent_s == 5.0 and cb.budget_hit() == "compute_budget_s"
    cb.on_trial_complete(2, [t1, t2], t1)
    cb.on_trial_complete(2, [t1, t2], t2)
    rows = read_leaderboard(tmp_path / "lb.csv").set_index("run_id")
    assert rows.loc[ctx.run_id("t1"), "status"] == "completed"
    assert rows.loc[ctx.run_id("t2"), "stop_reason"] == "sweep budget compute_budget_s reached at iteration 2"


def test_open_trials_and_gates_off(tmp_path: Path) -> None:
    """An errored trial is not open at the step's end (its row is written by on_trial_error, never as cut short);
    with gates off, a NaN loss labels no trial as gated."""
    ctx, ref = _ctx()
    cb = LeaderboardCallback(tmp_path / "lb.csv", ctx, GateLimits(), gates_enabled=False)
    trials = [SimpleNamespace(trial_id=t, status=s) for t, s in (("a", "ERROR"), ("b", "RUNNING"),
                                                                  ("c", "TERMINATED"), ("d", "PENDING"))]
    cb.on_step_end(1, trials)
    assert cb.open == {"b", "d"}
    cb.on_trial_result(1, [], SimpleNamespace(trial_id="b"), {"training_iteration": 1, "train_loss": float("nan")})
    assert cb.tracker.reasons == {}
