"""Trial errors and resume targets: a diverged or unloadable trial names paths that exist; resume=true picks the newest sweep."""
from __future__ import annotations

from pathlib import Path

import pytest

from ups.train.checkpoint import CheckpointError, read_checkpoint
from ups.train.trainer import TrainingDiverged
from ups.tune.trainable import diverged_text, stored_checkpoint_error


def test_a_corrupt_restored_checkpoint_is_named_where_it_is_stored(tmp_path: Path) -> None:
    copy = tmp_path / "checkpoint_tmp_1234"  # what Checkpoint.to_directory() gives: deleted after the trial
    copy.mkdir()
    (copy / "checkpoint.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(copy / "checkpoint.pt")
    stored = "bucket/sweeps/round_a-x/trial_ab12/checkpoint_000003"
    msg = str(stored_checkpoint_error(e.value, copy, stored))
    assert f"{stored}/checkpoint.pt" in msg and "truncated or corrupt" in msg
    assert str(copy) not in msg  # the temporary copy is gone when the user reads this
    assert "resume=true" in msg and "params.json" in msg


def test_a_diverged_report_names_no_deleted_scratch_file() -> None:
    e = TrainingDiverged("stage 'operator' diverged at epoch 3, batch 2: loss=nan. Training stopped; the last "
                         "good state is saved in '/tmp/ups_scratch/x/last_good/checkpoint.pt'. Fix: lower "
                         "stages.operator.optimizer.lr", Path("/tmp/ups_scratch/x/last_good/checkpoint.pt"))
    text = diverged_text(e)
    assert text == "stage 'operator' diverged at epoch 3, batch 2: loss=nan"


def test_resume_without_name_continues_the_newest_timestamped_sweep() -> None:
    from ups.tune.sweep_record import latest_sweep

    names = ["round_a-20261201-090000", "round_a-final", "round_a-20261202-101500", "round_a-20261130-235959"]
    assert latest_sweep(names, "round_a") == "round_a-20261202-101500"  # not the hand-named folder
    assert latest_sweep(["round_a-final", "round_a-alpha"], "round_a") == "round_a-final"  # only hand-named ones


def test_a_train_fn_without_val_ttc_runs_in_a_sweep_searching_ttc_keys(tmp_path: Path, monkeypatch) -> None:
    """``ups_trial(train_fn=…)`` takes any trainer with ``train``'s older signature (tests wrap ``train`` so): in a
    sweep that searches ``ttc.*`` keys it was called with ``val_ttc=True`` and every trial errored (TypeError)."""
    import types

    import ups.tune.trainable as trainable
    from ups.config import to_dict
    from ups.tune.prepare import prepare

    p = prepare("aggressive", ["wandb.enabled=false", f"storage_path={tmp_path / 'ray'}"])
    assert trainable.searches_ttc(p.space)
    ctx = types.SimpleNamespace(get_trial_id=lambda: "t1", get_experiment_name=lambda: "exp-val-ttc",
                                get_trial_resources=lambda: types.SimpleNamespace(required_resources={}))
    monkeypatch.setattr(trainable, "tune", types.SimpleNamespace(get_context=lambda: ctx, get_checkpoint=lambda: None,
                                                                report=lambda *a, **k: None))
    monkeypatch.setattr(trainable, "scratch_root", lambda name, storage="": tmp_path / "scratch" / name)
    calls = []

    def old_train(cfg, *, report, run_dir, resume_from=None, data=None):
        calls.append(cfg.run.run_id)

    def new_train(cfg, *, report, run_dir, resume_from=None, data=None, val_ttc=False):
        calls.append(val_ttc)

    config: dict = {}  # the space's centre values
    trainable.ups_trial(config, base=to_dict(p.base), space=p.space, train_fn=old_train)
    trainable.ups_trial(config, base=to_dict(p.base), space=p.space, train_fn=new_train)
    assert calls == ["t1", True]


def test_a_checkpoint_that_cannot_be_copied_leaves_no_folder_behind(tmp_path: Path, monkeypatch) -> None:
    """A restored or promoted checkpoint gone from storage: the copy fails and its temp folder goes with it
    (Ray's to_directory() left an empty checkpoint_tmp_* folder in /tmp, two per test-suite run)."""
    import tempfile

    from ray.tune import Checkpoint

    from ups.tune.scratch import checkpoint_copy

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(FileNotFoundError):
        checkpoint_copy(Checkpoint(str(tmp_path / "trial_x" / "checkpoint_000004")))
    assert not list(temp.glob("checkpoint_tmp_*"))
    stored = tmp_path / "checkpoint_000001"
    stored.mkdir()
    (stored / "checkpoint.pt").write_bytes(b"weights")
    copy = checkpoint_copy(Checkpoint(str(stored)))
    assert copy.parent == temp and copy.name.startswith("checkpoint_tmp_")
    assert (copy / "checkpoint.pt").read_bytes() == b"weights"
