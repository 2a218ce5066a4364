"""A cut-off Tune experiment state on storage (driver killed while Tune copied it): repaired or refused.

Tune copies ``experiment_state-*.json`` to ``storage_path`` in a background thread, not atomically.
``resume=true`` on a cut-off file must not die in a JSON traceback: it puts back the intact staging
copy this machine still has, or refuses with the file and the fix.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from ups.config import ConfigError
from ups.tune.launcher import run_round
from ups.tune.tune_state import newest_state, repair_cut_off_state

from tests.test_sweep_engine import common, make_trainable


def cut_off(exp: Path) -> Path:
    (state,) = exp.glob("experiment_state-*.json")
    state.write_bytes(state.read_bytes()[:100])
    assert newest_state(str(exp))[1] is None
    return state


def test_resume_repairs_a_cut_off_state_from_the_staging_copy(ray_session, tmp_path: Path, capsys) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0, 1.0]}\n")
    args = [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo", "num_samples=1",
            "max_concurrent=2", "name=cutoff"]
    first = run_round("cutoff", args, trainable=make_trainable("training.lambda_spectral", {}, iterations=3))
    state = cut_off(tmp_path / "runs" / "cutoff")
    again = run_round("cutoff", [*args, "resume=true"],
                      trainable=make_trainable("training.lambda_spectral", {}, iterations=3))
    assert "was cut off (a driver killed mid-copy, or a full disk); restored it from" in capsys.readouterr().out
    assert newest_state(str(state.parent))[1] is not None
    rows = again.rows[again.rows["experiment"] == "cutoff"]
    assert len(rows) == 2 and rows["run_id"].is_unique and set(rows["status"]) == {"completed"}
    assert set(rows["run_id"]) == set(first.rows[first.rows["experiment"] == "cutoff"]["run_id"])


def test_cut_off_state_without_a_staging_copy_is_refused_with_the_fix(tmp_path: Path) -> None:
    exp = tmp_path / "round_a-20261201-000000"
    exp.mkdir()
    (exp / "experiment_state-2026-12-01_00-00-00.json").write_text('{"trial_data": [["{\\"trial_id')
    with pytest.raises(ValueError) as e:
        repair_cut_off_state(str(exp), None, exp.name, str(tmp_path / "ray"))
    msg = str(e.value)
    assert "experiment_state-2026-12-01_00-00-00.json" in msg and "is cut off" in msg and "Fix:" in msg
    assert repair_cut_off_state(str(tmp_path / "nothing-here"), None, "x", str(tmp_path / "ray")) is None


def test_launcher_refuses_it_before_restoring(ray_session, tmp_path: Path) -> None:
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: grid, values: [0.0]}\n")
    args = [*common(tmp_path), f"space={space}", "searcher.name=grid", "scheduler.name=fifo", "num_samples=1",
            "name=cutoff2"]
    run_round("cutoff2", args, trainable=make_trainable("training.lambda_spectral", {}, iterations=2))
    cut_off(tmp_path / "runs" / "cutoff2")
    session = Path(ray_session._private.worker._global_node.get_session_dir_path())
    staged = list(session.glob("artifacts/*/cutoff2/driver_artifacts/experiment_state-*.json"))
    assert staged
    for f in staged:  # as if the killed driver had run on another machine
        f.unlink()
    with pytest.raises(ConfigError, match=r"resume=true: Tune's experiment state .* is cut off"):
        run_round("cutoff2", [*args, "resume=true"], trainable=make_trainable("training.lambda_spectral", {}))


def _metrics(it: int) -> dict:
    return {"stage": "operator", "epoch": it, "train_loss": 1.0, "val_nrmse": 0.5}


@pytest.mark.timeout(120)  # unrepaired, the resume hangs
def test_resume_repairs_a_cut_off_searcher_state_instead_of_restarting_the_sweep(ray_session, tmp_path: Path,
                                                                                 capsys) -> None:
    """The searcher's and the callbacks' state files are copied to storage the same way: one cut off made Tune log
    "Failed to restore the run state" and start the experiment again from nothing: this Optuna resume hung
    (a finished grid sweep resumed so saved a new experiment state with 0 trials over its own)."""
    import os

    from tests.fake_trials import checkpointed
    from ups.tune.stop_signals import SweepInterrupted

    space = tmp_path / "s.yaml"
    space.write_text("params:\n  training.lambda_spectral: {dist: uniform, low: 0.0, high: 1.0}\n")
    args = [*common(tmp_path), f"space={space}", "searcher.name=optuna", "scheduler.name=fifo", "num_samples=2",
            "max_concurrent=1", "gates.enabled=false", "name=cutsearch"]
    with pytest.raises(SweepInterrupted):
        run_round("cutsearch", args, trainable=checkpointed(_metrics, iterations=6, step_s=0.1,
                                                            driver_pid=os.getpid(), interrupt_at=2))
    exp = tmp_path / "runs" / "cutsearch"
    started = {p.name for p in exp.glob("trial_*")}
    searcher = max(exp.glob("searcher-state-*.pkl"))
    searcher.write_bytes(searcher.read_bytes()[:50])  # the driver killed while Tune copied it to storage
    capsys.readouterr()
    again = run_round("cutsearch", [*args, "resume=true"],
                      trainable=checkpointed(_metrics, iterations=6, step_s=0.05, final={"val_nrmse": 0.4, "final": True}))
    out = capsys.readouterr().out
    assert f"{searcher.name}" in out and "restored it from" in out
    rows = again.rows[again.rows["experiment"] == "cutsearch"]
    assert len(rows) == 2 and rows["run_id"].is_unique and set(rows["status"]) == {"completed"}, rows
    assert started <= {f"trial_{t}" for t in rows["trial_id"]}  # the interrupted trial went on, not a new one


def test_a_cut_off_searcher_state_without_a_staging_copy_is_refused_with_the_fix(tmp_path: Path) -> None:
    exp = tmp_path / "round_a-20261201-000000"
    exp.mkdir()
    (exp / "searcher-state-2026-12-01_00-00-00.pkl").write_bytes(b"\x80\x05\x95\x10\x00\x00")
    with pytest.raises(ValueError) as e:
        repair_cut_off_state(str(exp), None, exp.name, str(tmp_path / "ray"))
    msg = str(e.value)
    assert "searcher-state-2026-12-01_00-00-00.pkl" in msg and "is cut off" in msg and "Fix:" in msg
