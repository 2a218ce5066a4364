"""A resumed sweep's physics gates and ASHA brackets go on as if the driver had not stopped.

The gate trackers (stopper and leaderboard callback) start empty after ``Tuner.restore``: a trial that was
diverging would get a fresh best loss.  ``restore_gates`` replays the restored trials' saved reports into
them.  With several ASHA brackets Ray draws a trial's bracket anew on a resume; ``ResumableASHA`` draws it
from the trial id, so ``restore_rungs`` can put each trial's rung records back in its own bracket.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import pytest
from ray.tune import Result

from ups.config import ConfigError
from ups.tune.gates import GateLimits, GateTracker, PhysicsGateStopper, gate_trackers
from ups.tune.stop_signals import SweepInterrupted
from ups.tune.tuner_build import build_scheduler, rung_ladder
from ups.tune.prepare import prepare
from ups.tune.launcher import run_round
from ups.tune.restore import (ResumableASHA, ResumableStopper, reported_histories, reported_history, restore_gates,
                               restore_rungs, restored_results)
from ups.tune.sweep_config import load_sweep_config
from ups.tune.sweep_record import differences

from tests.fake_trials import checkpointed
from tests.test_sweep_engine import common

LIMITS = GateLimits(divergence_factor=20.0, min_iterations=1)
# a trial's reports: autoencoder epochs, then an operator stage that first improves, then diverges
# (loss 16 > 20 × best 0.5 at operator epoch 6), a report without train_loss in between
HISTORY: list[dict[str, Any]] = (
    [{"training_iteration": i, "stage": "autoencoder", "epoch": i, "train_loss": 3.0 / i} for i in (1, 2)]
    + [{"training_iteration": 2 + e, "stage": "operator", "epoch": e, "train_loss": loss, "val_nrmse": 0.5}
       for e, loss in enumerate([1.0, 0.5, 2.0, 4.0, 8.0, 16.0, 32.0], start=1)]
)
HISTORY.insert(5, {"training_iteration": 5, "stage": "operator", "epoch": 3, "val_nrmse": 0.4})


def first_stop(tracker: GateTracker, trial_id: str, reports: list[dict[str, Any]], offset: int = 0) -> int | None:
    for i, r in enumerate(reports):
        if tracker.update(trial_id, r):
            return offset + i
    return None


def saved_trial(tmp_path: Path, trial_id: str, reports: list[Any], tail: str = "") -> Result:
    """A restored trial's ``Result`` whose folder holds ``reports`` as Tune writes them (one JSON a line)."""
    folder = tmp_path / f"trial_{trial_id}"
    folder.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in reports]
    (folder / "result.json").write_text("".join(f"{line}\n" for line in lines) + tail)
    return Result(metrics=reports[-1] if reports and isinstance(reports[-1], dict) else {}, checkpoint=None,
                  error=None, path=str(folder))


def test_a_tracker_seeded_from_the_saved_reports_stops_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    live = first_stop(GateTracker(LIMITS), "t1", HISTORY)
    assert live is not None and HISTORY[live]["train_loss"] == 16.0
    for cut in range(1, live + 1):  # the driver stopped after report `cut`
        result = saved_trial(tmp_path / str(cut), "t1", HISTORY[:cut])
        resumed = GateTracker(LIMITS)
        assert restore_gates([resumed], reported_histories([result])) == (1, 0)
        assert first_stop(resumed, "t1", HISTORY[cut:], offset=cut) == live, cut
        assert resumed.reasons["t1"].startswith("gate:diverging (train_loss 16 > 20× best 0.5 in stage operator")
    # without the saved reports (before this fix) a trial stopped after its loss of 2.0 was not stopped at all
    assert first_stop(GateTracker(LIMITS), "t1", HISTORY[6:]) is None


def test_a_trial_tune_restarts_from_the_start_is_not_taken_for_diverging() -> None:
    """A trial that failed with its checkpoint lost (a full disk cut it to 0 bytes) is retried from iteration 1: its
    first autoencoder losses again were compared with the best of the run before, and the retry was stopped as
    diverging (train_loss 0.576 > 20x best 0.00416). A report at an iteration the trial had already passed starts
    its best losses afresh; a real divergence after the restart still trips the gate."""
    tracker = GateTracker(LIMITS)
    first = [{"training_iteration": i, "stage": "autoencoder", "epoch": i, "train_loss": 1.0 / 4 ** i}
             for i in range(1, 6)]  # down to 0.00098
    assert tracker.replay("t1", first) is None
    retry = [{"training_iteration": i, "stage": "autoencoder", "epoch": i, "train_loss": 0.6 / i} for i in (1, 2, 3)]
    assert tracker.replay("t1", retry) is None
    assert tracker.update("t1", {"training_iteration": 4, "stage": "autoencoder", "epoch": 4, "train_loss": 50.0})
    # another trial's history is its own
    assert tracker.replay("t2", first) is None


def test_a_trial_past_a_gate_before_the_stop_is_stopped_at_its_first_report_after_it(tmp_path: Path) -> None:
    """The stopper had said stop, the driver died before Tune saved the trial as terminated: the resumed
    trial is stopped again, with the reason it had."""
    live = GateTracker(LIMITS)
    reason = live.replay("t2", HISTORY)
    assert reason is not None
    resumed = GateTracker(LIMITS)
    assert restore_gates([resumed], reported_histories([saved_trial(tmp_path, "t2", HISTORY)])) == (1, 1)
    assert resumed.update("t2", HISTORY[-1]) == reason == resumed.reasons["t2"]


def test_saved_reports_are_read_as_written(tmp_path: Path) -> None:
    """A report without a metric is not a NaN report (Result.metrics_dataframe would make it one), a NaN
    written by Tune is, and a line the killed driver left cut off is skipped."""
    reports = [{"training_iteration": 1, "stage": "operator", "train_loss": 1.0},
               {"training_iteration": 2, "stage": "done", "final": 1, "nrmse": 0.4},
               '{"training_iteration": 3, "stage": "operator", "train_loss": NaN}']
    result = saved_trial(tmp_path, "t3", reports, tail='{"training_iteration": 4, "train_lo')
    history = reported_history(result)
    assert [r["training_iteration"] for r in history] == [1, 2, 3] and math.isnan(history[2]["train_loss"])
    t = GateTracker(LIMITS)
    assert t.replay("t3", history[:2]) is None
    assert t.replay("t3", history[2:]).startswith("gate:nonfinite (train_loss=nan at iteration 3)")
    assert reported_history(Result(metrics={}, checkpoint=None, error=None, path=str(tmp_path / "none"))) == []


def test_a_stopper_tune_unpickles_on_a_resume_is_the_resuming_commands() -> None:
    """Tune pickles the stopper into its experiment state and puts that copy in place on a resume; once
    carry_over has registered the resuming command's stopper for the experiment, the copy runs that one."""
    import pickle

    from ups.tune import restore

    saved = pickle.dumps(ResumableStopper(PhysicsGateStopper(LIMITS), "store/exp-a"))
    other = pickle.dumps(ResumableStopper(PhysicsGateStopper(LIMITS), "store/exp-b"))
    fresh = ResumableStopper(PhysicsGateStopper(LIMITS), "store/exp-a")
    assert pickle.loads(saved).inner is not fresh.inner  # before carry_over: the saved copy
    restore._RESUMING[fresh.experiment] = fresh.inner  # what carry_over does
    try:
        assert pickle.loads(saved).inner is fresh.inner
        assert pickle.loads(other).inner is not fresh.inner
    finally:
        del restore._RESUMING[fresh.experiment]


def test_gate_trackers_are_found_in_a_combined_stopper() -> None:
    from ray.tune.stopper import CombinedStopper

    from ups.tune.gates import ComputeBudgetStopper

    gate = PhysicsGateStopper(LIMITS)
    assert gate_trackers(gate) == [gate.tracker]
    assert gate_trackers(CombinedStopper(ComputeBudgetStopper(10.0), gate)) == [gate.tracker]
    assert gate_trackers(None) == [] and gate_trackers(ComputeBudgetStopper(1.0)) == []


def diverging(driver_pid: int | None, iterations: int = 8, interrupt_at: int = 4):
    """A trial whose train_loss doubles each iteration (1, 2, 4, …: past 20× its best at iteration 6),
    checkpointed each iteration; a first run sends the driver a Ctrl-C at ``interrupt_at`` and waits there
    for the driver to end it."""
    return checkpointed(lambda it: {"stage": "operator", "epoch": it, "train_loss": 2.0 ** (it - 1), "val_nrmse": 0.5,
                                    "val_conservation_gap": 0.01, "val_bc_violation": 0.01},
                        iterations=iterations, step_s=0.05, driver_pid=driver_pid, interrupt_at=interrupt_at,
                        hold_s=60.0, final={"stage": "done", "done": True, "val_nrmse": 0.5, "nrmse": 0.4,
                                            "conservation_gap": 0.01, "bc_violation": 0.01})


def test_a_resumed_sweep_stops_a_diverging_trial_where_an_uninterrupted_one_does(ray_session, tmp_path: Path,
                                                                                capsys, monkeypatch) -> None:
    """… and with the stopper the resuming command seeded, not the copy Tune pickled into its experiment
    state (which ``TuneController.resume`` would put in its place)."""
    import ups.tune.restore as restore

    seeded: set[int] = set()
    used: set[int] = set()

    def restore_gates_spy(trackers, histories):
        seeded.update(id(t) for t in trackers)
        return real_restore_gates(trackers, histories)

    def stopper_spy(self, trial_id, result):
        used.add(id(self.tracker))
        return real_call(self, trial_id, result)

    real_restore_gates, real_call = restore.restore_gates, PhysicsGateStopper.__call__
    monkeypatch.setattr(restore, "restore_gates", restore_gates_spy)
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0]}\n")
    args = [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo", "num_samples=1",
            "gates.divergence_factor=20", "compute_budget_s=1000", "name=gate-resume"]  # budget: CombinedStopper
    whole = run_round("gate-whole", [*args[:-1], "name=gate-whole"], trainable=diverging(None))
    (row,) = [r for _, r in whole.rows[whole.rows["experiment"] == "gate-whole"].iterrows()]
    assert row["stop_reason"].startswith("gate:diverging") and "at iteration 6" in row["stop_reason"]
    with pytest.raises(SweepInterrupted):
        run_round("gate-resume", args, trainable=diverging(os.getpid()))
    monkeypatch.setattr(PhysicsGateStopper, "__call__", stopper_spy)
    again = run_round("gate-resume", [*args, "resume=true"], trainable=diverging(None))
    assert used and used <= seeded
    assert "gates: the reports of 1 restored trial(s) replayed (0 past a gate)" in capsys.readouterr().out
    (row,) = [r for _, r in again.rows[again.rows["experiment"] == "gate-resume"].iterrows()]
    assert row["stop_reason"].startswith("gate:diverging") and "at iteration 6" in row["stop_reason"], row


# ----------------------------------------------------------------------------------------- ASHA brackets
def test_scheduler_brackets_is_validated_and_passed_to_asha(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'scheduler.brackets' = 0: must be ≥ 1 .* Fix: scheduler.brackets=1"):
        load_sweep_config("round_a", ["scheduler.brackets=0"])
    with pytest.raises(ConfigError, match="scheduler.brackets"):
        load_sweep_config("round_a", ["scheduler.brackets=two"])
    assert load_sweep_config("round_a", []).scheduler.brackets == 1
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: uniform, low: 0.0, high: 1.0}\n")
    base = [f"space={space}", f"storage_path={tmp_path / 'runs'}", "scheduler.grace_period=1", "scheduler.max_t=8", "scheduler.reduction_factor=2", "stages.autoencoder.epochs=0",
            "stages.operator.epochs=4"]  # 6 epochs: max_t=8 cuts no trial
    p = prepare("round_a", [*base, "scheduler.brackets=3"])  # rungs 1, 2, 4, 8
    sched = build_scheduler(p.scfg, p.base, p.space)
    assert isinstance(sched, ResumableASHA) and [len(b._rungs) for b in sched._brackets] == [4, 3, 2]
    assert sched.reference == p.space.reference_point(p.base)  # the trial the searcher starts at is never cut
    off = prepare("round_a", [*base, "searcher.start_at_reference=false"])
    assert build_scheduler(off.scfg, off.base, off.space).reference == {}
    with pytest.raises(ConfigError, match=r"scheduler.brackets=5: .* 4 rung\(s\) .* Fix: scheduler.brackets=4 or"):
        prepare("round_a", [*base, "scheduler.brackets=5"])
    prepare("round_a", [*base, "scheduler.brackets=5", "scheduler.name=fifo"])  # an ASHA key, unused there


@pytest.mark.parametrize("overrides", [[], ["profile=full"], ["scheduler.grace_period=11"],
                                       ["scheduler.rungs_from=operator"]],
                         ids=["automatic-grace", "full-profile", "set-grace", "rungs-from-operator"])
def test_the_asha_the_sweep_runs_has_the_rungs_its_config_gives(tmp_path: Path, overrides: list[str]) -> None:
    """The scheduler Tune gets stops trials at ``asha_rungs``' milestones: the resolved grace period (0:
    automatic, past the autoencoder stage) and the configured reduction factor, not Ray's defaults."""
    from ups.tune.tuner_build import asha_rungs

    p = prepare("round_a", [f"storage_path={tmp_path / 'runs'}", *overrides])
    sched = build_scheduler(p.scfg, p.base, p.space)
    assert isinstance(sched, ResumableASHA)
    milestones = sorted(int(m) for m, _ in sched._brackets[0]._rungs)
    assert milestones == asha_rungs(p.scfg, p.base, p.space)[2]
    assert min(milestones) > p.base.stages.autoencoder.epochs  # never inside the autoencoder stage


@pytest.mark.parametrize("key, other", [("scheduler.brackets", 2), ("scheduler.rungs_from", "operator")])
def test_a_sweep_recorded_before_a_scheduler_key_existed_resumes_at_its_default(key: str, other: Any) -> None:
    """A sweep started before ``scheduler.brackets`` (or ``rungs_from``) existed ran with what is now the default
    (one bracket; Ray's ladder): resuming it at the default is no change, another value is refused as one."""
    from ups.tune.sweep_record import _sweep_section

    old = {"sweep": _sweep_section(load_sweep_config("round_a", []))}
    del old["sweep"][key]
    assert differences(old, {"sweep": _sweep_section(load_sweep_config("round_a", []))}) == []
    now = {"sweep": _sweep_section(load_sweep_config("round_a", [f"{key}={other}"]))}
    assert differences(old, now) == [f"{key}: '(unset)' → {other!r}"]


def test_a_resume_with_other_promotion_seeds_is_refused() -> None:
    """``promotion.seeds`` retrains each promoted configuration in an experiment of its own, which a resume
    restores as started: a resume with ``promotion.seeds=2`` after 1 trained no second seed, scored the missing one
    inf and crowned nothing without a word. It is now a change a resume refuses, as ``num_samples`` is; a sweep
    recorded before the record kept it resumes whatever the command says."""
    from ups.tune.sweep_record import _sweep_section

    one = {"sweep": _sweep_section(load_sweep_config("round_a", ["promotion.seeds=1"]))}
    two = {"sweep": _sweep_section(load_sweep_config("round_a", ["promotion.seeds=2"]))}
    assert differences(one, two) == ["promotion.seeds: 1 → 2"]
    assert differences(one, {"sweep": _sweep_section(load_sweep_config("round_a", ["promotion.seeds=1"]))}) == []
    old = {"sweep": {k: v for k, v in one["sweep"].items() if k != "promotion.seeds"}}
    assert differences(old, two) == []


def test_resumable_asha_draws_a_trial_bracket_from_its_id_with_rays_odds() -> None:
    one = ResumableASHA(max_t=9, grace_period=1, reduction_factor=3)
    assert {one.bracket_index(f"t{i}") for i in range(50)} == {0}
    two = ResumableASHA(max_t=9, grace_period=1, reduction_factor=3, brackets=2)  # 3 and 2 rungs
    again = ResumableASHA(max_t=9, grace_period=1, reduction_factor=3, brackets=2)
    ids = [f"{i:05x}_{i:05d}" for i in range(2000)]
    drawn = [two.bracket_index(t) for t in ids]
    assert drawn == [again.bracket_index(t) for t in ids]  # the same on a resume
    assert sum(drawn) / len(drawn) == pytest.approx(1 / (1 + math.e), abs=0.03)  # Ray's softmax of rung counts


def test_asha_never_stops_the_reference_trial_early_but_ranks_the_others_against_its_scores() -> None:
    """The reference trial's final eval is the small-eval gates' yardstick: ASHA stopped it (two searched trials
    reached the rung first with better scores), the gates fell back to the FNO baseline and no trial passed."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    def trial(tid: str, x: float) -> SimpleNamespace:
        return SimpleNamespace(trial_id=tid, config={"x": x, "derived": 1})

    def run(reference):
        sched = ResumableASHA(metric="val_nrmse", mode="min", time_attr="training_iteration", max_t=9,
                              grace_period=1, reduction_factor=3, reference=reference)
        good, also, ref, bad = trial("a_00001", 0.1), trial("a_00002", 0.2), trial("a_00000", 0.9), trial("a_00003", 0.8)
        for t in (good, also, ref, bad):
            sched.on_trial_add(None, t)
        acts = {t.config["x"]: sched.on_trial_result(None, t, {"training_iteration": 1, "val_nrmse": t.config["x"]})
                for t in (good, also, ref)}
        rung = dict(sched._brackets[0]._rungs)[1]  # the first milestone's recorded scores
        acts["bad"] = sched.on_trial_result(None, bad, {"training_iteration": 1, "val_nrmse": 0.8})
        return acts, rung, sched

    acts, _, _ = run(None)
    assert acts[0.9] == TrialScheduler.STOP  # Ray's ASHA: the reference, worst at the rung, is cut
    acts, rung, sched = run({"x": 0.9})
    assert acts[0.9] == TrialScheduler.CONTINUE and sched.reference_ids == {"a_00000"}
    assert "a_00000" in rung  # its score is in the rung: the others are still cut against it
    assert acts["bad"] == TrialScheduler.STOP  # worse than the rung's records, the reference's among them
    assert sched._num_stopped == sum(a == TrialScheduler.STOP for a in acts.values())  # Tune's count is right
    done = sched.on_trial_result(None, trial("a_00000", 0.9), {"training_iteration": 9, "val_nrmse": 0.9})
    assert done == TrialScheduler.STOP  # at max_t it ends like any trial
    # a good reference first at the rung: the next trial, alone there but for it, is cut against its score
    sched = ResumableASHA(metric="val_nrmse", mode="min", time_attr="training_iteration", max_t=9, grace_period=1,
                          reduction_factor=3, reference={"x": 0.05})
    ref, other = trial("b_00000", 0.05), trial("b_00001", 0.5)
    for t in (ref, other):
        sched.on_trial_add(None, t)
    assert sched.on_trial_result(None, ref, {"training_iteration": 1, "val_nrmse": 0.05}) == TrialScheduler.CONTINUE
    assert sched.on_trial_result(None, other, {"training_iteration": 1, "val_nrmse": 0.5}) == TrialScheduler.STOP


class AlternatingASHA(ResumableASHA):
    """Trials 0, 2, 4, … in bracket 0, the others in bracket 1 (Tune's trial ids end in the trial's index):
    both brackets get trials in every run, whatever ids Tune draws."""

    def bracket_index(self, trial_id: str) -> int:
        return int(trial_id.rsplit("_", 1)[-1]) % 2


@pytest.mark.parametrize("ladders", [None, [[3, 5], [5]]], ids=["rays-rungs", "rungs-from-operator"])
def test_a_restored_two_bracket_asha_gets_each_trials_records_back_in_its_bracket(ray_session, tmp_path: Path,
                                                                               ladders) -> None:
    """Ray's rungs (1, 3, 9 and 3, 9), or the ladders ``scheduler.rungs_from=operator`` gives with 2 autoencoder
    epochs (``rung_ladder(1, 3, 9, offset=2, k)``: 3, 5 and 5): the restored scheduler has the same milestones
    in each bracket, and ``restore_rungs`` puts back every record the live run made."""
    from ray import tune

    def curve(config):
        from ray import tune as t

        for i in range(1, 10):
            t.report({"val_nrmse": config["x"] / i + 0.01 * (i % 3)})

    if ladders is not None:
        assert ladders == [rung_ladder(1, 3, 9, offset=2, start=k) for k in range(2)]
    sched = AlternatingASHA(time_attr="training_iteration", max_t=9, grace_period=1, reduction_factor=3, brackets=2,
                            ladders=ladders)
    xs = [0.9, 0.5, 0.7, 0.2, 0.8, 0.3, 0.6, 0.4]
    tuner = tune.Tuner(curve, param_space={"x": tune.grid_search(xs)},
                       tune_config=tune.TuneConfig(metric="val_nrmse", mode="min", scheduler=sched),
                       run_config=tune.RunConfig(name="brackets", storage_path=str(tmp_path), verbose=0))
    tuner.fit()
    live = [{m: dict(rec) for m, rec in b._rungs} for b in sched._brackets]
    assert all(sum(map(len, b.values())) for b in live), live
    restored = tune.Tuner.restore(str(tmp_path / "brackets"), curve)
    brackets = restored._local_tuner._tune_config.scheduler._brackets
    assert restore_rungs(restored, restored_results(restored)) == sum(sum(map(len, b.values())) for b in live)
    assert [[m for m, _ in b._rungs] for b in brackets] == \
        [sorted(ladder, reverse=True) for ladder in (ladders or [[1, 3, 9], [3, 9]])]
    for b, want in zip(brackets, live):
        got = {m: rec for m, rec in b._rungs}
        assert got.keys() == want.keys()
        for m in got:
            assert got[m] == pytest.approx(want[m]), m


def test_a_resumed_asha_saved_before_the_reference_was_protected_says_so() -> None:
    """A sweep whose Tune state was saved before 2026-12-07 comes back with Ray's pickled scheduler, which has no
    ``reference``: ASHA may still cut its reference trial, and the resume says so."""
    from types import SimpleNamespace

    from ups.tune.restore import carry_over

    def resumed(sched):
        tune_cfg = SimpleNamespace(scheduler=sched, search_alg=None, metric="val_nrmse", mode="min")
        tuner = SimpleNamespace(_local_tuner=SimpleNamespace(_run_config=SimpleNamespace(), _tune_config=tune_cfg))
        fresh = SimpleNamespace(callbacks=[], stop=None, failure_config=None, verbose=0)
        return " ".join(carry_over(tuner, fresh, {"CPU": 1}, 1, 2, []))

    new = ResumableASHA(max_t=9, grace_period=1, reduction_factor=3, reference={"x": 1})
    old = ResumableASHA(max_t=9, grace_period=1, reduction_factor=3)
    del old.__dict__["reference"]  # as unpickled from a state saved before the attribute existed
    assert "predates the reference trial's protection" in resumed(old)
    assert "predates" not in resumed(new)


def test_every_gate_tracker_is_seeded_not_only_the_first_that_trips(tmp_path: Path) -> None:
    """The stopper's tracker and the leaderboard callback's both get the saved reports: the callback's labels the
    trial's row with the gate that stopped it."""
    stopper, callback = GateTracker(LIMITS), GateTracker(LIMITS)
    assert restore_gates([stopper, callback], reported_histories([saved_trial(tmp_path, "t2", HISTORY)])) == (1, 1)
    assert "t2" in stopper.reasons and callback.reasons.get("t2") == stopper.reasons["t2"]


def test_a_cut_off_line_inside_the_saved_reports_skips_only_itself(tmp_path: Path) -> None:
    """A driver killed mid-write leaves a cut-off line, and the resumed trial appends its reports after it: the
    reports after the cut are read too; a line that is valid JSON but no report (a number) is skipped."""
    reports = [{"training_iteration": 1, "train_loss": 1.0}, '{"training_iteration": 2, "train_lo', "42",
               {"training_iteration": 2, "train_loss": 0.9}, {"training_iteration": 3, "train_loss": 0.8}]
    history = reported_history(saved_trial(tmp_path, "t4", reports))
    assert all(isinstance(r, dict) for r in history) and [r["training_iteration"] for r in history] == [1, 2, 3]


def test_restored_pbt_logs_are_only_pbts(tmp_path: Path) -> None:
    """Only Ray PBT's ``pbt_*.txt`` logs are put back into the resumed driver's folder, no other text file."""
    from ups.tune.restore import pbt_logs

    stored = tmp_path / "exp"
    (stored / "trial_t1").mkdir(parents=True)
    (stored / "pbt_global.txt").write_text("g\n")
    (stored / "notes.txt").write_text("mine\n")
    (stored / "pbt_policy_t1.json").write_text("{}")
    result = Result(metrics={}, checkpoint=None, error=None, path=str(stored / "trial_t1"))
    assert pbt_logs([result]) == {"pbt_global.txt": "g\n"}


def test_a_restored_trial_without_its_reports_is_priced_at_the_share_it_last_reported() -> None:
    """A trial whose result.json is unreadable: its last time_total_s, at the GPU share its last result names
    (0.5), not the resuming command's resources.gpu (0.25)."""
    from ups.tune.restore import trial_compute_s

    r = Result(metrics={"time_total_s": 100.0, "gpu_share": 0.5}, checkpoint=None, error=None, path="/x/trial_t1")
    assert trial_compute_s([r], {}, 0.25) == ({"t1": 100.0}, {"t1": 50.0})
