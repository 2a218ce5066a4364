"""`ups train` end to end on the shared tiny Burgers file; latent cache equivalence; time budget."""
from __future__ import annotations

import json

import pytest
import torch

from tests.fixtures.data import TINY_OVERRIDES
from ups.cli import main as ups_main
from ups.config import apply_overrides
from ups.train.latent_cache import build_latent_cache, encode_trajectories
from ups.train.trainer import train

FAST = {"stages.autoencoder.epochs": 2, "stages.operator.epochs": 2, "stages.diff_residual.epochs": 1,
        "stages.consistency_distill.epochs": 1, "training.rollout_horizon": 3, "ttc.enabled": False,
        "eval.max_samples": 2}


def test_ups_train_cli(tiny_cfg, tiny_data, tmp_path, capsys, monkeypatch):
    args = [*TINY_OVERRIDES, f"data.cache_dir={tiny_cfg.data.cache_dir}", "stages.autoencoder.epochs=2",
            "training.rollout_horizon=3", "ttc.enabled=false", "eval.max_samples=2"]
    assert ups_main(["train", *args, "--run-dir", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "parameters (encoder" in out and "val_nrmse" in out
    # each epoch's line shows the autoencoder's round trip, and the closing JSON the test split's
    assert out.count(" (round trip ") >= 6, out  # 2 + 2 + 1 + 1 epochs
    closing = json.loads(next(line for line in out.splitlines() if line.startswith("{")))
    assert closing["recon_nrmse"] > 0
    final = json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]
    assert final["done"] and final["nrmse"] > 0 and final["params"] > 0
    assert (tmp_path / "run" / "checkpoints" / "final" / "checkpoint.pt").exists()
    # a new run in that folder (--run-dir between the overrides, as typed: it was "unrecognized arguments") is
    # refused before any compute: it replaced final/ and kept the old run's newer epoch checkpoints beside its own
    assert ups_main(["train", args[0], "--run-dir", str(tmp_path / "run"), *args[1:], "stages.operator.epochs=1"]) == 2
    err = capsys.readouterr().err
    assert f"ups train: error: run folder {tmp_path / 'run'} holds a finished run (epoch_" in err and \
        "Fix: --run-dir <another folder> or run.run_id=<a name> for a new run" in err and \
        f"--resume {tmp_path / 'run'} redoes that run's final evaluation" in err, err
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final"] == final
    assert ups_main(["train", "data=", "preset=dim8"]) == 2  # an unset $DATA: not generated data without a word
    assert "'data=' names no file (an unset variable?)" in capsys.readouterr().err
    assert ups_main(["train", "data=/nowhere/x.hdf5", "preset=dim8", "--run-dir", str(tmp_path / "x")]) == 2
    assert "/nowhere/x.hdf5" in (err := capsys.readouterr().err) and "DataCfg" not in err, err  # data= is data.path=
    # a misspelt key is refused before any compute, with the nearest valid key
    assert ups_main(["train", "stages.operator.optimzer.lr=1e-3"]) == 2
    assert "stages.operator.optimizer.lr" in capsys.readouterr().err
    # a missing or broken --resume checkpoint: a one-line error with the fix (exit 2), not a traceback
    assert ups_main(["train", *args, "--resume", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert "ups train: error: --resume: checkpoint" in err and "nope" in err and "Fix:" in err
    broken = tmp_path / "broken" / "checkpoint.pt"
    broken.parent.mkdir()
    broken.write_bytes(b"not a checkpoint")
    assert ups_main(["train", *args, "--resume", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "ups train: error: --resume:" in err and str(broken) in err, err
    # a CUDA device this process cannot use: one line with the fix, not a traceback
    import torch

    bad = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    assert ups_main(["train", *args, f"training.device={bad}", "--run-dir", str(tmp_path / "dev")]) == 2
    err = capsys.readouterr().err
    assert f"ups train: error: training.device={bad} but" in err and "Fix: training.device=" in err, err
    # --resume with no overrides: the run's own settings (preset dim8 here, the default is dim32: it was refused as
    # "a different model"), in the run's folder, from a relative path too
    epoch = sorted((tmp_path / "run" / "checkpoints").glob("epoch_*"))[0]
    monkeypatch.chdir(epoch.parent)
    assert ups_main(["train", "--resume", epoch.name, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"resuming {epoch / 'checkpoint.pt'} in {tmp_path / 'run'}\n" in out, out
    assert f"checkpoint {tmp_path / 'run' / 'checkpoints' / 'final'}" in out, out
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["final"]["params"] == closing["params"]
    # an override goes on top of the run's settings (its 2 autoencoder epochs, not the default 10; the preset
    # repeated changes nothing), and a changed run gets a folder of its own
    args_off = ["stages.diff_residual.epochs=0", "stages.consistency_distill.epochs=0", "preset=dim8"]
    assert ups_main(["train", "--resume", str(epoch), *args_off, "--run-dir", str(tmp_path / "more"), "--quiet"]) == 0
    cfg = json.loads((tmp_path / "more" / "config.json").read_text())
    # the same changed resume again, into that folder (now a run of its own): refused, not mixed
    assert ups_main(["train", "--resume", str(epoch), *args_off, "--run-dir", str(tmp_path / "more"), "--quiet"]) == 2
    assert f"run folder {tmp_path / 'more'} holds a finished run" in capsys.readouterr().err
    assert cfg["stages"]["autoencoder"]["epochs"] == 2 and cfg["stages"]["diff_residual"]["epochs"] == 0, cfg
    assert cfg["data"]["n"] == 64 and cfg["preset"] == "dim8"
    # validated with the run's settings: that run has no distillation, so diff_residual=0 alone is fine (with the
    # default's 6 distillation epochs it was refused)
    again = tmp_path / "more" / "checkpoints" / "final"
    assert ups_main(["train", "--resume", str(again), "stages.diff_residual.epochs=0", "eval.max_samples=1",
                     "--run-dir", str(tmp_path / "again"), "--quiet"]) == 0, capsys.readouterr().err
    # another preset: the trainer names what differs (exit 2)
    assert ups_main(["train", "--resume", str(epoch), "preset=dim16", "--run-dir", str(tmp_path / "other")]) == 2
    assert "was trained with a different model" in capsys.readouterr().err
    # a stage that diverges: its message (stage, epoch, the lr to lower, the last good state), exit 1, no traceback
    rc = ups_main(["train", *args, "stages.autoencoder.optimizer.lr=1e30", "stages.autoencoder.grad_clip=0",
                   "--run-dir", str(tmp_path / "div")])
    err = capsys.readouterr().err
    assert rc == 1 and "ups train: error: stage 'autoencoder' diverged" in err, err
    assert "Fix: lower stages.autoencoder.optimizer.lr" in err and str(tmp_path / "div") in err, err


def test_latent_cache_matches_reencoding(tiny_cfg, tiny_data, tmp_path):
    cfg = apply_overrides(tiny_cfg, {**FAST, "stages.diff_residual.epochs": 0,
                                     "stages.consistency_distill.epochs": 0})
    a = train(cfg, run_dir=tmp_path / "cached", data=tiny_data)
    b = train(apply_overrides(cfg, {"training.latent_cache": False}), run_dir=tmp_path / "enc", data=tiny_data)
    la = [m["train_loss"] for m in a.history if m["stage"] == "operator"]
    lb = [m["train_loss"] for m in b.history if m["stage"] == "operator"]
    assert la == pytest.approx(lb, rel=1e-4)
    enc = a.model.encoder
    lat = build_latent_cache(enc, tiny_data.train, tiny_data.data_hash, "bfloat16", tmp_path / "c.pt")
    assert lat.dtype == torch.bfloat16 and (tmp_path / "c.pt").exists()
    ref = encode_trajectories(enc, tiny_data.train)
    assert torch.allclose(lat.float(), ref, rtol=2e-2, atol=2e-2 * float(ref.abs().max()))
    again = build_latent_cache(enc, tiny_data.train, tiny_data.data_hash, "bfloat16", tmp_path / "c.pt")
    assert torch.equal(again, lat)  # reused from disk


def test_time_budget_stops_and_keeps_results(tiny_cfg, tiny_data, tmp_path):
    cfg = apply_overrides(tiny_cfg, {**FAST, "stages.autoencoder.epochs": 1000, "training.time_budget_s": 2.0})
    seen: list[dict] = []
    res = train(cfg, run_dir=tmp_path, data=tiny_data, report=lambda m, c: seen.append(m))
    assert res.stopped_early and seen[-2].get("budget_exhausted")
    assert {m["stage"] for m in seen[:-1]} == {"autoencoder"}  # later stages skipped
    assert seen[-1]["done"] and res.checkpoint.exists()


def test_the_cli_says_when_the_time_budget_ended_training(tiny_cfg, tiny_data, tmp_path, capsys):
    """``ups train … training.time_budget_s=…`` said only "done" when the budget had cut a stage short and skipped
    the stages after it."""
    args = [*TINY_OVERRIDES, f"data.cache_dir={tiny_cfg.data.cache_dir}", "stages.autoencoder.epochs=1000",
            "training.time_budget_s=2", "ttc.enabled=false", "eval.max_samples=2", "--run-dir", str(tmp_path / "r")]
    assert ups_main(["train", *args, "--quiet"]) == 0
    assert "ups train: training.time_budget_s=2 ran out in the autoencoder stage: that stage stopped before its " \
           "epochs and the stages after it were not trained" in capsys.readouterr().out
    # a resume with more time trained nothing and recorded the run as done with budget_exhausted false: refused
    before = (tmp_path / "r" / "metrics.json").read_text()
    assert ups_main(["train", "--resume", str(tmp_path / "r"), "training.time_budget_s=0", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "is the final one of a run that training.time_budget_s ended after" in err and \
        "in its autoencoder stage" in err and "Fix: train again with the larger budget" in err, err
    assert (tmp_path / "r" / "metrics.json").read_text() == before
    assert ups_main(["train", "--resume", str(tmp_path / "r"), "--quiet"]) == 0  # its own budget: the evaluation


def test_ctrl_c_in_ups_train_says_how_to_go_on_and_leaves_no_empty_checkpoint(tiny_cfg, tiny_data, tmp_path):
    """Ctrl-C in ``ups train`` printed a 20–30 line KeyboardInterrupt traceback (at times from inside torch.save,
    leaving an empty epoch_N/ folder) and no word of the resume; now one line, the resume command, exit 130."""
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "ups.cli", "train", *TINY_OVERRIDES, f"data.cache_dir={tiny_cfg.data.cache_dir}",
           "stages.autoencoder.epochs=100000", "training.checkpoint_every=1", "ttc.enabled=false", "--run-dir", str(run)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.time() + 120
        while not list((run / "checkpoints").glob("epoch_*/checkpoint.pt")) and time.time() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "ups train: interrupted (Ctrl-C). Its checkpoints" in err and f"ups train --resume {run}" in err, err
    assert "Traceback" not in err, err[-2000:]
    assert all((d / "checkpoint.pt").is_file() for d in (run / "checkpoints").glob("epoch_*")), "an empty epoch folder"


def test_ups_train_says_which_nu_a_data_file_gives_the_run(tmp_path):
    """The file's ν wins over data.nu (a run on a ν=0.1 file given data.nu=0.01 trains and records 0.1) and a file
    that names no ν is recorded with data.nu: both happened without a word."""
    import numpy as np

    from ups.config import load_config
    from ups.data.hdf5 import write_pdebench
    from ups.train.cli import nu_notes

    u = np.random.default_rng(0).standard_normal((4, 21, 16)).astype(np.float32)
    x, t = (np.arange(16) + 0.5) / 16, np.linspace(0, 0.2, 21)
    named = write_pdebench(tmp_path / "a_Nu0.1.hdf5", u, x, t, {"nu": 0.1})
    bare = write_pdebench(tmp_path / "plain.hdf5", u, x, t, {})
    said = nu_notes(load_config([f"data.path={named}", "data.nu=0.01"]), [f"data.path={named}", "data.nu=0.01"])
    assert said == [f"{named} holds ν=0.1, which the run trains and records, not data.nu=0.01"]
    assert nu_notes(load_config([f"data.path={named}"]), [f"data.path={named}"]) == []  # the file's, nothing given
    said = nu_notes(load_config([f"data.path={bare}"]), [f"data.path={bare}"])
    assert len(said) == 1 and "names no ν" in said[0] and "data.nu=0.01 (the default)" in said[0], said


def test_an_interrupted_checkpoint_write_leaves_no_folder(tmp_path, monkeypatch):
    """Ctrl-C inside torch.save left an empty epoch_N/ folder (and its temp file): the folder a save made goes too,
    one that held a checkpoint before stays with it."""
    from ups.train import checkpoint as ck

    ck.save_checkpoint(tmp_path / "kept", {"x": 1})

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.torch, "save", interrupted)
    for name in ("new", "kept"):
        with pytest.raises(KeyboardInterrupt):
            ck.save_checkpoint(tmp_path / name, {"x": 2})
    assert not (tmp_path / "new").exists()
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["checkpoint.pt"]
