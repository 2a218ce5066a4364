"""``time_budget_s`` across a resume: Tune pickles its ``TimeoutStopper`` (the remaining budget) into the
experiment state and a resumed sweep goes on with what was left; the leaderboard's clock, which tells a trial
the budget cut from one stopped otherwise, is saved with Tune's callback state and goes on the same way."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ups.tune.stop_signals import SweepInterrupted
from ups.tune.launcher import run_round
from ups.tune.results import LeaderboardCallback

from tests.fake_trials import checkpointed
from tests.test_sweep_engine import common


def slow(driver_pid: int | None, interrupt_at: int = 60, step_s: float = 0.25, iterations: int = 400):
    """One long trial (``iterations`` × ``step_s``), checkpointed each iteration; a first run sends the driver
    a Ctrl-C at ``interrupt_at``."""
    return checkpointed(lambda it: {"stage": "operator", "epoch": it, "train_loss": 1.0, "val_nrmse": 0.5},
                        iterations=iterations, step_s=step_s, driver_pid=driver_pid, interrupt_at=interrupt_at)


def test_the_leaderboard_clock_is_saved_and_goes_on_after_a_resume() -> None:
    cb = LeaderboardCallback(Path("unused.csv"), None, None, budgets={"time_budget_s": 10.0})  # type: ignore[arg-type]
    cb.setup()
    cb.t0 -= 4.0  # this driver ran 4 s, then Tune's loop ended (a Ctrl-C) and its clean-up took 3 s more
    cb.on_step_end(iteration=1, trials=[])
    cb.t0 -= 3.0
    state = cb.get_state()  # the clock as of the loop's last step, as Tune's TimeoutStopper counts
    assert state["ups_wall_s"] == pytest.approx(4.0, abs=0.5) and cb.budget_hit() is None
    again = LeaderboardCallback(Path("unused.csv"), None, None, budgets={"time_budget_s": 10.0})  # type: ignore[arg-type]
    again.setup()
    again.set_state(state)
    again.t0 -= 6.5  # the resumed driver ran 6.5 s more: 10.5 s of the sweep's 10
    assert again.wall_s() == pytest.approx(10.5, abs=0.5) and again.budget_hit() == "time_budget_s"
    again.on_step_end(iteration=1, trials=[])
    assert again.cut_at_step == "time_budget_s"


def test_a_resumed_sweep_spends_only_what_was_left_of_its_time_budget(ray_session, tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0]}\n")
    budget = 30.0
    args = [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo", "num_samples=1",
            "gates.enabled=false", f"time_budget_s={budget}", "name=budget-resume"]
    t = time.monotonic()
    with pytest.raises(SweepInterrupted):
        run_round("budget-resume", args, trainable=slow(os.getpid()))
    first = time.monotonic() - t
    t = time.monotonic()
    again = run_round("budget-resume", [*args, "resume=true"], trainable=slow(None))
    second = time.monotonic() - t
    (row,) = [r for _, r in again.rows[again.rows["experiment"] == "budget-resume"].iterrows()]
    # The trial ran 60 × 0.25 s = 15 s before the Ctrl-C, plus its actor's start (s1), so the resume had at most
    # 30 − 15 − s1 s left: fewer than 60 + 15 / 0.25 = 120 iterations in all, whatever the box's load. A resume
    # given a fresh 30 s would reach about 60 + (30 − s2) / 0.25 (s2: the restored actor's start), above the bound
    # while s2 < 15 s. Half the budget goes before the Ctrl-C so that a loaded box (two pytest workers) still
    # interrupts before the budget ends; if it does not (s1 > 15 s), the resume runs nothing and the row says the
    # budget ended the trial at iteration 60 (the test below)
    assert row["stop_reason"].startswith("sweep budget time_budget_s reached at iteration"), row["stop_reason"]
    iterations = int(row["stop_reason"].rsplit(" ", 1)[-1])
    assert iterations < budget / 0.25, (iterations, first, second)  # fewer than a fresh budget's worth


def test_a_resume_that_finds_the_budget_spent_records_the_interrupted_trials_as_cut_by_it(tmp_path: Path) -> None:
    """The Ctrl-C came after the budget was spent but before Tune's stopper acted (a slow box: the test above
    met it on two pytest workers). The resumed sweep ends at once without running the trial, and its row must
    not go on saying 'resume=true continues it'. A Ctrl-C of the resume leaves it as it was; a finished trial's
    row is never touched."""
    from types import SimpleNamespace

    from ups.config import load_config, to_dict
    from ups.leaderboard import read_leaderboard, upsert_rows
    from ups.tune.gates import GateLimits
    from ups.tune.launcher import reconcile
    from ups.tune.results import INTERRUPTED, RowContext, trial_row
    from ups.tune.space import load_space

    base = load_config(["preset=dim8"])
    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "round_a.yaml", base)
    ref = space.reference_point(base)
    ctx = RowContext(round="round_a", experiment="round_a-x", space=space, base=to_dict(base), reference_point=ref)
    cut_at_24 = {"training_iteration": 24, "val_nrmse": 0.5}
    done = {"training_iteration": 30, "val_nrmse": 0.4, "nrmse": 0.4, "final": True, "done": True}
    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [trial_row(ctx, "t1", ref, cut_at_24, gate_reason=None, cut=INTERRUPTED),
                     trial_row(ctx, "t2", ref, done, gate_reason=None)])
    grid = [SimpleNamespace(path="/x/trial_t1", metrics=cut_at_24, config=ref, checkpoint=None, error=None),
            SimpleNamespace(path="/x/trial_t2", metrics=done, config=ref, checkpoint=None, error=None)]

    def reasons() -> dict[str, tuple[str, str]]:
        rows = read_leaderboard(lb)
        return {r: (s, w) for r, s, w in zip(rows["run_id"], rows["status"], rows["stop_reason"])}

    before = reasons()
    reconcile(lb, ctx, grid, LeaderboardCallback(lb, ctx, GateLimits()), INTERRUPTED)  # Ctrl-C again: as it was
    assert reasons() == before and before[ctx.run_id("t1")][1].endswith("resume=true continues it")
    reconcile(lb, ctx, grid, LeaderboardCallback(lb, ctx, GateLimits()), "time_budget_s")
    after = reasons()
    assert after[ctx.run_id("t1")] == ("stopped", "sweep budget time_budget_s reached at iteration 24"), after
    assert after[ctx.run_id("t2")] == before[ctx.run_id("t2")] == ("completed", "completed")


def test_a_trial_that_never_started_gets_no_row_and_one_that_failed_before_reporting_does(tmp_path: Path) -> None:
    """A sweep stopped while trials were still pending (a cluster without the GPUs they asked for) wrote rows for
    them as "stopped, asha: early stop at iteration ?", and its last line counted them as finished. A trial that
    never reported and did not fail has not run: no row (a resume runs it). One that failed before its first
    report (a refused GPU share) keeps its error row."""
    from types import SimpleNamespace

    from ups.config import load_config, to_dict
    from ups.leaderboard import read_leaderboard
    from ups.tune.gates import GateLimits
    from ups.tune.launcher import reconcile
    from ups.tune.results import INTERRUPTED, RowContext
    from ups.tune.space import load_space

    base = load_config(["preset=dim8"])
    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "round_a.yaml", base)
    ref = space.reference_point(base)
    ctx = RowContext(round="round_a", experiment="round_a-x", space=space, base=to_dict(base), reference_point=ref)
    done = {"training_iteration": 30, "val_nrmse": 0.4, "nrmse": 0.4, "final": True, "done": True}
    grid = [SimpleNamespace(path="/x/trial_t1", metrics=done, config=ref, checkpoint=None, error=None),
            SimpleNamespace(path="/x/trial_t2", metrics={}, config=ref, checkpoint=None, error=None),
            # what Tune's ResultGrid holds for a trial a Ctrl-C caught still PENDING: its id, no report
            SimpleNamespace(path="/x/trial_t4", metrics={"trial_id": "t4"}, config=ref, checkpoint=None, error=None),
            SimpleNamespace(path="/x/trial_t3", metrics={}, config=ref, checkpoint=None,
                            error=RuntimeError("the trial holds resources.gpu=0.25 of a GPU but torch …"))]
    lb = tmp_path / "lb.csv"
    for cut in (INTERRUPTED, None):
        reconcile(lb, ctx, grid, LeaderboardCallback(lb, ctx, GateLimits()), cut)
        rows = read_leaderboard(lb).set_index("run_id")
        assert ctx.run_id("t2") not in rows.index and ctx.run_id("t4") not in rows.index, rows["stop_reason"].to_dict()
        assert rows.loc[ctx.run_id("t1"), "status"] == "completed" and rows.loc[ctx.run_id("t3"), "status"] == "error"


def test_a_row_reconcile_writes_takes_the_live_trials_retries_and_config(tmp_path: Path) -> None:
    """The callback tags a trial Tune restarted after a failure ``retried:N``; a row ``reconcile`` writes (the
    trial finished right before a driver kill, or the loop cut it) carried no such tag, and under PBT it took the
    config of the Result, a donor's for a trial paused right after an exploit."""
    from types import SimpleNamespace

    from ups.config import load_config, to_dict
    from ups.leaderboard import read_leaderboard
    from ups.tune.gates import GateLimits
    from ups.tune.launcher import reconcile
    from ups.tune.results import INTERRUPTED, RowContext
    from ups.tune.space import load_space

    base = load_config(["preset=dim8"])
    space = load_space(Path(__file__).resolve().parents[1] / "search_spaces" / "round_a.yaml", base)
    ref = space.reference_point(base)
    ctx = RowContext(round="round_a", experiment="round_a-x", space=space, base=to_dict(base), reference_point=ref)
    done = {"training_iteration": 30, "val_nrmse": 0.4, "nrmse": 0.4, "final": True, "done": True}
    grid = [SimpleNamespace(path=f"/x/trial_{t}", metrics=done, config=ref, checkpoint=None, error=None)
            for t in ("t1", "t2")]
    lb = tmp_path / "lb.csv"
    cb = LeaderboardCallback(lb, ctx, GateLimits())
    # t2 as PBT leaves a trial paused right after an exploit: Tune's Result carries its donor's last config, the
    # live trial its new values (the row showed the donor's)
    lr = "stages.operator.optimizer.lr"
    moved = {**ref, lr: space.params[lr].encode(space.params[lr].high)}
    cb._trials = [SimpleNamespace(trial_id="t1", num_failures=2, config=ref),
                  SimpleNamespace(trial_id="t2", num_failures=0, config=moved)]
    reconcile(lb, ctx, grid, cb, INTERRUPTED)
    rows = read_leaderboard(lb).set_index("run_id")
    tags = {r: str(t).split(";") for r, t in rows["tags"].items()}
    assert "retried:2" in tags[ctx.run_id("t1")], tags
    assert not any(t.startswith("retried") for t in tags[ctx.run_id("t2")]), tags
    assert json.loads(rows.loc[ctx.run_id("t2"), "sampled_json"])[lr] == pytest.approx(space.params[lr].high)
    assert rows.loc[ctx.run_id("t1"), "label"] == "reference" and rows.loc[ctx.run_id("t2"), "label"] != "reference"
