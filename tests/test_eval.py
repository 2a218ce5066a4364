"""`ups eval` and evaluate(): protocol metrics, honest TTC, resolution handling, bad input."""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

import ups.eval as ups_eval
from ups.config import ConfigError, apply_overrides, load_config, to_dict
from ups.data.initial import cell_centres
from ups.eval import (EVAL_KEYS, EvalOutput, GridMap, _jsonable, _table_rows, check_eval_data, evaluate,
                      evaluate_detailed, main, model_time_step, output_paths, spectral_resample, val_nrmse_ttc)
from ups.metrics import METRIC_KEYS, PDEBENCH_SET_KEYS, nrmse_pdebench, nrmse_per_time, pdebench_metric_set

torch.set_num_threads(1)
N_TRAJ = 12
RES = 256  # saved points; the protocol keeps every 4th → 64-point model grid


def _solve(n: int, resolution: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from ups.data.initial import cell_centres, init_multi
    from ups.data.solver import solve_burgers

    x = cell_centres(resolution)
    t = np.linspace(0.0, 2.0, frames)
    u = solve_burgers(torch.tensor(init_multi(n, x, seed=seed)), 0.01, torch.tensor(t))
    return u.numpy().astype(np.float32), x, t


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """PDEBench-layout files written by the data module: the training layout, a finer grid, 201 frames."""
    from ups.data.hdf5 import write_pdebench

    d = tmp_path_factory.mktemp("evaldata")
    out = {}
    u, x, t = _solve(N_TRAJ, RES, 41, seed=5)
    out["base"] = write_pdebench(d / "base_Nu0.01.hdf5", u, x, t, {"nu": 0.01})
    u2, x2, t2 = _solve(N_TRAJ, 2 * RES, 41, seed=6)
    out["fine"] = write_pdebench(d / "fine_Nu0.01.hdf5", u2, x2, t2, {"nu": 0.01})
    u3, x3, t3 = _solve(N_TRAJ, RES, 201, seed=7)
    out["dense_t"] = write_pdebench(d / "dense_Nu0.01.hdf5", u3, x3, t3, {"nu": 0.01})
    return out


def tiny_overrides(tmp: Path, data_path: Path) -> list[str]:
    return ["preset=dim8", f"data.path={data_path}", f"data.resolution={RES}", "data.reduced_resolution=4",
            "data.frames=41", "data.reduced_resolution_t=1", "data.test_ratio=0.25", f"data.n={N_TRAJ}",
            f"data.cache_dir={tmp / 'cache'}", f"eval.out_dir={tmp / 'reports'}", "eval.ensemble_size=3",
            "eval.baselines=false", "ttc.threshold=0", "ttc.candidates=4", "ttc.beam_width=2",
            "run.run_id=tiny-run", "training.num_threads=1"]


@pytest.fixture(scope="module")
def tiny(files, tmp_path_factory):
    """A tiny real UPS model saved as a real checkpoint (weights random; residual sampler switched on)."""
    from ups.data.protocol import load_protocol
    from ups.models.ups_model import build_model
    from ups.train.checkpoint import save_checkpoint

    tmp = tmp_path_factory.mktemp("evalrun")
    cfg = load_config(tiny_overrides(tmp, files["base"]))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    model.residual_std.fill_(0.1)  # untrained sampler, but distinct TTC candidates
    ckpt = save_checkpoint(tmp / "ckpt", {"config": to_dict(cfg), "grid_size": model.grid_size,
                                          "model": model.state_dict(), "stage": "consistency_distill",
                                          "epoch": 0, "global_epoch": 0})
    return {"cfg": cfg, "model": model, "ckpt": ckpt, "tmp": tmp, "data": load_protocol(cfg.data)}


# ------------------------------------------------------------------------------------ pieces
def test_spectral_resample_is_exact_for_band_limited_periodic_fields():
    def field(n: int, x0: float) -> torch.Tensor:
        x = x0 + torch.arange(n, dtype=torch.float64) / n
        return 0.3 + torch.sin(2 * math.pi * x) + 0.5 * torch.cos(2 * math.pi * 5 * x + 1.0)

    for n_in, n_out in [(64, 256), (256, 64), (64, 96), (128, 128)]:
        x0_in, x0_out = 0.5 / n_in, 0.5 / (4 * n_out)
        got = spectral_resample(field(n_in, x0_in)[None], n_out, x0_out - x0_in)
        assert torch.allclose(got[0], field(n_out, x0_out), atol=1e-10), (n_in, n_out)
    gm = GridMap(128, 64, 0.01)
    u = field(128, 0.0)[None, None]
    assert torch.allclose(gm.to_eval(gm.to_model(u)), u, atol=1e-10)


def test_evaluate_reports_the_contract_keys(tiny):
    m = evaluate(tiny["model"], tiny["cfg"], tiny["data"])
    for key in EVAL_KEYS:
        assert key in m, key
    for key in EVAL_KEYS:
        assert m[key] is not None and math.isfinite(float(m[key])), key
    t = tiny["data"].test.shape[1]
    assert m["nrmse_pdebench"] == pytest.approx(m["nrmse"] * (t - 10) / t, rel=1e-6)
    # the rest of PDEBench's metric set, for the rollout without and with TTC (ups.metrics.pdebench_metric_set)
    from ups.metrics import PDEBENCH_SET_KEYS, pdebench_metric_set

    for key in PDEBENCH_SET_KEYS:
        assert math.isfinite(m[key]) and m[key] > 0 and math.isfinite(m[f"{key}_ttc"]), key
    assert m["max_err_pdebench"] > m["rmse_pdebench"] > m["frmse_high_pdebench"]
    still = pdebench_metric_set(tiny["data"].test, tiny["data"].test, 10)  # a perfect forecast: all 0
    assert set(still.values()) == {0.0}
    assert m["params"] == sum(p.numel() for p in tiny["model"].parameters())
    assert 0 <= m["ece"] <= 0.5 and m["ensemble_size"] == 3
    assert m["ttc_intervention_rate"] > 0  # threshold 0: the search really ran
    # per test sample, for a paired interval of the TTC gain (ups.ttc_gain)
    assert len(m["nrmse_samples"]) == len(m["nrmse_ttc_samples"]) == m["n_samples"]
    assert sum(m["nrmse_samples"]) / m["n_samples"] == pytest.approx(m["nrmse"], rel=1e-5)
    lo, hi = m["ttc_gain_ci95"]
    assert lo <= m["ttc_gain"] + 1e-9 and m["ttc_gain"] - 1e-9 <= hi
    print(f"tiny untrained model: nRMSE {m['nrmse']:.4f} → with TTC {m['nrmse_ttc']:.4f} "
          f"(gain {m['ttc_gain'] * 100:+.1f}%)")


def test_ttc_picks_do_not_depend_on_the_target(tiny):
    """Honest TTC: perturb and swap the target frames; TTC's choices and outputs stay identical."""
    data = tiny["data"]
    init = data.initial_step
    test = data.test.clone()
    g = torch.Generator().manual_seed(0)
    target = test[:, init:]
    perturbed = target.roll(1, dims=0) + 0.3 * torch.randn(target.shape, generator=g)  # other sample + noise
    test2 = torch.cat([test[:, :init], perturbed], dim=1)
    data2 = dataclasses.replace(data, test=test2)
    a = evaluate_detailed(tiny["model"], tiny["cfg"], data)
    b = evaluate_detailed(tiny["model"], tiny["cfg"], data2)
    assert int(a.ttc_chosen.max()) > 0  # the search picked stochastic candidates, so this is a real check
    assert torch.equal(a.ttc_chosen, b.ttc_chosen)
    assert torch.equal(a.pred_ttc, b.pred_ttc)
    assert torch.equal(a.pred, b.pred)
    assert a.metrics["nrmse_ttc"] != b.metrics["nrmse_ttc"]  # the metric does see the target


# what TTC decides and its reward figures: functions of the context frames only
TTC_FIGURES = ("ttc_intervention_rate", "ttc_search_used_rate", "ttc_evaluations_per_step",
               "ttc_reward_penalty_det", "ttc_reward_penalty")


@pytest.mark.parametrize("overrides", [{}, {"eval.batch_size": 5, "ttc.horizon": 3, "ttc.gamma": 0.9}],
                         ids=["default", "batched-h3"])
def test_only_the_future_truth_changes_and_nothing_ttc_does_moves(tiny, overrides):
    """Honest TTC, frame by frame: rewrite every frame after the context (another sample, rescaled, with its
    mass shifted, so a conservation, energy or BC reference read from the future would move); the forecasts,
    TTC's picks and gate, and its reward penalties stay bit-identical (batches split mid-split too)."""
    from ups.config import apply_overrides

    cfg = apply_overrides(tiny["cfg"], overrides, source="test") if overrides else tiny["cfg"]
    data = tiny["data"]
    init = data.initial_step
    test = data.test.clone()
    g = torch.Generator().manual_seed(1)
    future = test[:, init:]
    future = 3.0 * future.flip(0) + 1.0 + 0.5 * torch.randn(future.shape, generator=g)
    data2 = dataclasses.replace(data, test=torch.cat([test[:, :init], future], dim=1))
    a = evaluate_detailed(tiny["model"], cfg, data)
    b = evaluate_detailed(tiny["model"], cfg, data2)
    assert int(a.ttc_chosen.max()) > 0 and a.metrics["ttc_intervention_rate"] > 0  # the search really ran
    assert torch.equal(a.true[:, :init], b.true[:, :init]) and not torch.equal(a.true, b.true)
    assert torch.equal(a.pred, b.pred)
    assert torch.equal(a.pred_ttc, b.pred_ttc)
    assert torch.equal(a.ttc_chosen, b.ttc_chosen)
    for key in TTC_FIGURES:
        assert a.metrics[key] == b.metrics[key], key
    assert a.metrics["nrmse_ttc"] != b.metrics["nrmse_ttc"]  # the score, and only the score, sees the future


@pytest.mark.parametrize("threshold", [0.0, None], ids=["all-searched", "gated"])
def test_a_samples_ttc_forecast_and_ensemble_do_not_depend_on_the_batch(tiny, threshold):
    """One generator drew for the whole batch, so a sample's TTC candidates and ensemble members depended on
    eval.batch_size and on which of its batch-mates the gate searched (the audit: nRMSE with TTC 0.72284 at batch 4,
    0.72137 at 8). Each sample now draws from its own generators."""
    cfg = tiny["cfg"]
    if threshold is None:  # a threshold that searches some samples' steps and not others'
        rates = {}
        for t in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
            probe = apply_overrides(cfg, {"ttc.threshold": t, "eval.ensemble_size": 0}, source="test")
            rates[t] = evaluate_detailed(tiny["model"], probe, tiny["data"]).metrics["ttc_intervention_rate"]
        threshold = min(rates, key=lambda t: abs(rates[t] - 0.5))
        assert 0.1 < rates[threshold] < 0.9, rates
    runs = [evaluate_detailed(tiny["model"], apply_overrides(cfg, {"eval.batch_size": bs, "ttc.threshold": threshold},
                                                             source="test"), tiny["data"]) for bs in (1, 2, 5, 64)]
    first = runs[0]
    assert int(first.ttc_chosen.max()) > 0  # stochastic candidates were picked: noise matters here
    for other in runs[1:]:  # equal up to float rounding: batched matmuls round differently at each batch size
        assert torch.equal(first.ttc_chosen, other.ttc_chosen)
        assert torch.allclose(first.pred_ttc, other.pred_ttc, rtol=1e-4, atol=1e-5)
        assert other.metrics["ece"] == pytest.approx(first.metrics["ece"], rel=1e-5, abs=1e-8)
        assert other.metrics["nrmse_ttc"] == pytest.approx(first.metrics["nrmse_ttc"], rel=1e-5)


# ------------------------------------------------------------------------------------ CLI
def _ckpt_args(tiny, *extra: str) -> list[str]:
    return [f"checkpoint={tiny['ckpt']}", *extra]


def test_cli_writes_json_csv_html(tiny, files, capsys):
    assert main(_ckpt_args(tiny, f"data={files['base']}", "eval.baselines=true", "eval.fno_budget_s=1")) == 0
    out_dir = Path(tiny["cfg"].eval.out_dir)
    rec = json.loads((out_dir / "eval_tiny-run.json").read_text())
    for key in EVAL_KEYS:
        assert key in rec["metrics"]
    assert {b["name"] for b in rec["baselines"]} == {"persistence", "linear", "fno"}
    assert all(b["data_hash"] == tiny["data"].data_hash for b in rec["baselines"])  # same data
    csv = (out_dir / "eval_tiny-run.csv").read_text().splitlines()
    assert csv[0].startswith("model,") and csv[1].startswith("ups,") and csv[2].startswith("ups+ttc,")
    assert [line.split(",")[0] for line in csv[3:]] == ["ups autoencoder round trip", "baseline:persistence",
                                                        "baseline:linear", "baseline:fno"]
    assert list((tiny["tmp"] / "baselines").glob("baselines-*.json"))  # cached beside the data cache
    page = (out_dir / "eval_tiny-run.html").read_text()
    assert page.count("data:image/png;base64,") == 3 and "nRMSE" in page
    printed = capsys.readouterr().out
    assert "with TTC" in printed and "eval_tiny-run.json" in printed
    m = rec["metrics"]
    from ups.ttc_gain import MIN_SAMPLES

    assert ("95% interval" if m["n_samples"] >= MIN_SAMPLES else "test samples: too few for an interval") in printed  # PDEBench's metric set, printed and in every row of the table (UPS, with TTC, baselines)
    assert f"cRMSE {m['crmse_pdebench']:.4g} / {m['crmse_pdebench_ttc']:.4g}" in printed
    header = csv[0].split(",")
    assert {"rmse_pdebench", "frmse_high_pdebench"} <= set(header)
    col = header.index("max_err_pdebench")
    assert all(line.split(",")[col] for line in csv[1:3] + csv[4:]), csv
    # the autoencoder's round trip (ups.reconstruction): its own row (nRMSE and fRMSE bands) and printed line
    trip = dict(zip(header, csv[3].split(",")))
    assert float(trip["nrmse"]) == pytest.approx(m["recon_nrmse"], rel=1e-6)
    assert float(trip["frmse_high_pdebench"]) == pytest.approx(m["recon_frmse_high_pdebench"], rel=1e-6)
    assert f"autoencoder round trip of the true frames (the error left with a perfect operator): nRMSE " \
           f"{m['recon_nrmse']:.4f}" in printed
    assert not list(out_dir.glob(".*.tmp"))


def test_cli_resamples_a_finer_grid_and_refuses_a_different_time_step(tiny, files, capsys):
    out_dir = Path(tiny["cfg"].eval.out_dir)
    assert main(_ckpt_args(tiny, f"data={files['base']}", "run.run_id=fine")) == 0
    first = (out_dir / "eval_fine.json").read_text()
    assert main(_ckpt_args(tiny, f"data={files['fine']}", "run.run_id=fine")) == 0
    out = capsys.readouterr().out
    assert "resampled spectrally to 64 points" in out
    assert "names no ν" not in out  # the file has a nu attribute (and _Nu0.01 in its name)
    assert (out_dir / "eval_fine.json").read_text() == first  # an eval of other data is never overwritten
    (second,) = [p for p in out_dir.glob("eval_fine_*.json")]
    rec = json.loads(second.read_text())
    assert rec["metrics"]["grid"] == 128 and rec["metrics"]["model_grid"] == 64
    assert rec["metrics"]["nrmse"] < 10  # the forecast came back onto the file's grid sensibly

    with pytest.raises(ConfigError, match="time step") as e:
        main(_ckpt_args(tiny, f"data={files['dense_t']}"))
    assert str(files["dense_t"]) in str(e.value) and "Fix: data.reduced_resolution_t=5 " in str(e.value)
    assert main(_ckpt_args(tiny, f"data={files['dense_t']}", "data.reduced_resolution_t=5",
                           "run.run_id=dense")) == 0
    with pytest.raises(ConfigError, match="time step") as e:  # the same stride from another starting one
        main(_ckpt_args(tiny, f"data={files['dense_t']}", "data.reduced_resolution_t=2"))
    assert "Fix: data.reduced_resolution_t=5 " in str(e.value)
    from ups.data.hdf5 import write_pdebench

    import h5py

    plain = Path(tiny["tmp"]) / "plain.hdf5"  # the base file without its ν attribute or _Nu in its name
    plain.write_bytes(files["base"].read_bytes())
    with h5py.File(plain, "a") as f:
        del f.attrs["nu"]
    assert main(_ckpt_args(tiny, f"data={plain}", "run.run_id=plain")) == 0
    assert f"note: {plain} names no ν (no nu/Nu attribute, no _Nu<ν> in its name): it is taken to be ν = 0.01" \
        in capsys.readouterr().out
    u, x, t = _solve(N_TRAJ, RES, 61, seed=8)  # step 2/60: no whole stride gives the checkpoint's 2/40
    odd = write_pdebench(Path(tiny["tmp"]) / "odd_Nu0.01.hdf5", u, x, t, {"nu": 0.01})
    with pytest.raises(ConfigError, match=r"Fix: none on this file: no whole data.reduced_resolution_t turns its "
                                          r"step 0.0333333 into 0.05.*ups data generate frames=41 t_final=2"):
        main(_ckpt_args(tiny, f"data={odd}"))


def test_cli_bad_input_is_refused_before_compute(tiny, files, tmp_path):
    import h5py

    out = f"eval.out_dir={tmp_path / 'out'}"

    with pytest.raises(ConfigError, match="does not exist"):
        main([f"checkpoint={tmp_path / 'nope.pt'}"])
    # eval.max_samples=0 is "no test evaluation" (the config check says so): evaluate() took it for "all"
    with pytest.raises(ConfigError, match=r"eval.max_samples=0 evaluates no test sample. Fix: eval.max_samples=-1"):
        main(_ckpt_args(tiny, "eval.max_samples=0", out))
    bad = tmp_path / "corrupt" / "checkpoint.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(ConfigError, match="corrupt") as e:
        main([f"checkpoint={bad}"])
    assert str(bad) in str(e.value)

    rank2 = tmp_path / "rank2.hdf5"
    with h5py.File(rank2, "w") as f:
        f["tensor"] = np.zeros((4, 64), dtype=np.float32)
        f["x-coordinate"] = np.arange(64) / 64
        f["t-coordinate"] = np.arange(5) * 0.05
    with pytest.raises(ConfigError, match="rank") as e:
        main(_ckpt_args(tiny, f"data={rank2}", out))
    assert str(rank2) in str(e.value) and "Fix" in str(e.value)
    notensor = tmp_path / "notensor.hdf5"
    with h5py.File(notensor, "w") as f:
        f["u"] = np.zeros((4, 41, 64), dtype=np.float32)
    with pytest.raises(ConfigError, match="tensor") as e:
        main(_ckpt_args(tiny, f"data={notensor}", out))
    assert str(notensor) in str(e.value)

    with pytest.raises(ConfigError, match="cannot be overridden"):
        main(_ckpt_args(tiny, "latent.dim=16", out))
    with pytest.raises(ConfigError, match="ttc.gamma"):
        main(_ckpt_args(tiny, "ttc.gamma=0", out))
    with pytest.raises(ConfigError, match="checkpoint=PATH"):
        main([f"data={files['base']}"])
    # an unset $DATA: it evaluated on generated data; another initial_step: another forecast horizon, scored
    with pytest.raises(ConfigError, match=r"eval: 'data=' names no file .*Fix: data=<PDEBench-layout HDF5 file>"):
        main(_ckpt_args(tiny, "data=", out))
    with pytest.raises(ConfigError, match=r"data.initial_step=1, the checkpoint's \d+: a forecast on '.*Fix: drop "
                                          r"data.initial_step="):
        main(_ckpt_args(tiny, f"data={files['base']}", "data.initial_step=1", out))
    # a checkpoint trained on generated data, evaluated without data=: its data is generated again, and another
    # frame count or t_final was generated first, then refused with a fix that did not work
    from ups.config import apply_overrides, load_config
    from ups.eval import check_protocol_overrides

    own = load_config([])
    check_protocol_overrides(own, apply_overrides(own, {"data.n": 64}, source="t"))  # more trajectories: fine
    with pytest.raises(ConfigError, match=r"data.frames=21, the checkpoint's \d+; data.t_final=1.0, the checkpoint's "
                                          r".*on the checkpoint's own generated data .*Fix: drop data.frames= "
                                          r"data.t_final="):
        check_protocol_overrides(own, apply_overrides(own, {"data.frames": 21, "data.t_final": 1.0}, source="t"))
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_ups_eval_on_a_trained_checkpoint(files, tmp_path, capsys, monkeypatch):
    """End to end: the real staged trainer writes a checkpoint, `ups eval` evaluates it."""
    from ups.cli import main as ups_main
    from ups.train.trainer import train

    stages = ("autoencoder", "operator", "diff_residual", "consistency_distill")
    cfg = load_config(tiny_overrides(tmp_path, files["base"]) + [
        "stages.autoencoder.epochs=2", "stages.operator.epochs=2", "stages.diff_residual.epochs=1",
        "stages.consistency_distill.epochs=1", "training.val_max_samples=2", "eval.max_samples=2",
        "ttc.enabled=false"] + [f"stages.{s}.batch_size=8" for s in stages])
    res = train(cfg, run_dir=tmp_path / "run")
    assert "nrmse_ttc" in res.metrics  # the trainer's final report goes through evaluate()
    rc = ups_main(["eval", f"checkpoint={res.checkpoint.parent}", "ttc.enabled=true", "ttc.candidates=3",
                   "run.run_id=trained", "eval.max_samples=2"])
    assert rc == 0
    rec = json.loads((tmp_path / "reports" / "eval_trained.json").read_text())
    m = rec["metrics"]
    assert m["n_samples"] == 2 and m["ttc_enabled"] is True
    assert m["ttc_reward_penalty"] <= m["ttc_reward_penalty_det"] + 1e-12  # never worse on its own reward
    assert rec["info"]["checkpoint"] == str(res.checkpoint)
    assert "with TTC" in capsys.readouterr().out
    # no run.run_id (ups train records none): the name of the run folder that holds the checkpoint, where it was
    # a hash of the path; elsewhere the hash
    from ups.eval import _run_id

    blank = apply_overrides(cfg, {"run.run_id": None})
    assert _run_id(blank, {"path": str(res.checkpoint)}) == "run"
    assert _run_id(blank, {"path": str(tmp_path / "loose" / "checkpoint.pt")}).startswith("ckpt-")
    assert _run_id(cfg, {"path": str(res.checkpoint)}) == "tiny-run"
    monkeypatch.chdir(res.checkpoint.parent)  # a relative path names the same folder
    assert _run_id(blank, {"path": "checkpoint.pt"}) == "run"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_evaluate_with_ttc_on_cuda(tiny):
    import copy

    from ups.config import apply_overrides

    cpu = evaluate(copy.deepcopy(tiny["model"]), apply_overrides(tiny["cfg"], {"training.device": "cpu"}),
                   tiny["data"])
    gpu = evaluate(copy.deepcopy(tiny["model"]), apply_overrides(tiny["cfg"], {"training.device": "cuda"}),
                   tiny["data"])
    for key in EVAL_KEYS:
        assert gpu[key] is not None and math.isfinite(float(gpu[key])), key
    assert gpu["nrmse"] == pytest.approx(cpu["nrmse"], rel=1e-3)  # deterministic path: same numbers
    assert gpu["ttc_reward_penalty"] <= gpu["ttc_reward_penalty_det"] + 1e-9


def test_eval_of_a_few_samples_needs_only_the_splits_it_uses(tiny, files):
    """`ups eval` scores the test split (and fits its baselines on the training split): a file too small for a
    validation split is evaluated, not refused; one too small for a test split is refused with ratios that fit."""
    out_dir = Path(tiny["cfg"].eval.out_dir)
    # 6 samples at test_ratio 0.25 / val_ratio 0.1: train/val/test = 5/0/1 (refused before: "every split needs ≥ 1")
    assert main(_ckpt_args(tiny, f"data={files['base']}", "data.num_samples_max=6", "run.run_id=six")) == 0
    assert json.loads((out_dir / "eval_six.json").read_text())["metrics"]["n_samples"] == 1
    assert main(_ckpt_args(tiny, f"data={files['base']}", "data.num_samples_max=6", "run.run_id=six-b",
                           "eval.baselines=true", "eval.fno_budget_s=1")) == 0
    with pytest.raises(ConfigError, match=r"3 samples .* the test split needs ≥ 1 sample\. Fix: data.test_ratio=0.34 "
                                          r"data.val_ratio=0.1 \(with these 3 samples\)"):
        main(_ckpt_args(tiny, f"data={files['base']}", "data.num_samples_max=3", "run.run_id=three"))
    assert not list(out_dir.glob("eval_three*"))
    # eval.max_samples=N: the baselines score the same first N trajectories (they scored the whole split beside UPS
    # on its first N)
    assert main(_ckpt_args(tiny, f"data={files['base']}", "eval.max_samples=2", "run.run_id=two",
                           "eval.baselines=true", "eval.fno_budget_s=1")) == 0
    two = json.loads((out_dir / "eval_two.json").read_text())
    assert two["metrics"]["n_samples"] == 2 and [b["n_test"] for b in two["baselines"]] == [2, 2, 2]
    assert any("same 2 test trajectories of the same file (the first 2 of 3" in n for n in two["notes"]), two["notes"]


def test_eval_on_the_checkpoints_own_data_never_scores_its_training_samples(tiny, files, tmp_path):
    """The test split is the file's first samples: on the checkpoint's own data a larger data.test_ratio or
    data.num_samples_max moved samples it trained on into the scored split, silently. Refused, naming the fix."""
    out = f"eval.out_dir={tmp_path / 'out'}"
    # the checkpoint held out int(12 · 0.25) = 3 samples of files['base']; test_ratio 0.5 scores 6
    with pytest.raises(ConfigError, match=r"held out only its first 3 samples .* would score 6, samples 3…5 .*"
                                          r"Fix: drop the data.test_ratio= / data.num_samples_max= overrides, or add "
                                          r"eval.max_samples=3") as e:
        main(_ckpt_args(tiny, f"data={files['base']}", "data.test_ratio=0.5", out))
    assert str(files["base"]) in str(e.value)
    assert not (tmp_path / "out").exists()
    # the fix it names works; another file at that ratio is unseen data, and is scored
    assert main(_ckpt_args(tiny, f"data={files['base']}", "data.test_ratio=0.5", "eval.max_samples=3", out)) == 0
    assert main(_ckpt_args(tiny, f"data={files['fine']}", "data.test_ratio=0.5", out, "run.run_id=fine")) == 0

    # a checkpoint trained on generated data: a file with that data's content hash is its training data
    from ups.data.cache import content_hash
    from ups.data.hdf5 import read_pdebench, write_pdebench
    from ups.models.ups_model import build_model
    from ups.train.checkpoint import save_checkpoint

    cfg = load_config([o for o in tiny_overrides(tmp_path, files["base"]) if not o.startswith("data.path=")])
    model = build_model(cfg)
    ckpt = save_checkpoint(tmp_path / "gen_ckpt", {"config": to_dict(cfg), "grid_size": model.grid_size,
                                                   "model": model.state_dict(), "stage": "consistency_distill",
                                                   "epoch": 0, "global_epoch": 0})
    bf = read_pdebench(files["base"])
    copy = write_pdebench(tmp_path / "copy_Nu0.01.hdf5", bf.tensor, bf.x, bf.t,
                          {"nu": 0.01, "content_hash": content_hash(cfg.data)})
    with pytest.raises(ConfigError, match=r"held out only its first 3 samples .* would score 4"):
        main([f"checkpoint={ckpt}", f"data={copy}", "data.test_ratio=0.4", out])
    # the same trajectories generated on a finer grid (data.resolution=512: same n, seed, ν and time grid)
    import json as _json

    from ups.data.cache import generation_key

    finer = read_pdebench(files["fine"])
    regridded = write_pdebench(tmp_path / "fine_copy_Nu0.01.hdf5", finer.tensor, finer.x, finer.t, {
        "nu": 0.01, "generation_key": _json.dumps({**generation_key(cfg.data), "resolution": 512}, sort_keys=True)})
    with pytest.raises(ConfigError, match=r"held out only its first 3 samples .* would score 4"):
        main([f"checkpoint={ckpt}", f"data={regridded}", "data.test_ratio=0.4", out])
    assert main([f"checkpoint={ckpt}", f"data={regridded}", out, "run.run_id=regridded"]) == 0


def test_the_training_grid_is_not_shifted_for_float32_rounding_of_its_coordinates(tmp_path):
    """Files store x as float32: 0.5/100 is not exact, and the checkpoint's own 100-point grid was 'offset by
    1.1e-10' and round-tripped through a spectral shift, with a note saying so. A real offset still is shifted."""
    from ups.data.hdf5 import write_pdebench
    from ups.data.initial import cell_centres
    from ups.data.protocol import load_protocol
    from ups.eval import check_eval_data

    u = np.random.default_rng(0).standard_normal((12, 41, 100)).astype(np.float32)
    t = np.linspace(0.0, 2.0, 41)

    def protocol(path: Path):
        return load_config([f"data.path={path}", "data.resolution=100", "data.frames=41", "data.reduced_resolution=4",
                            "data.reduced_resolution_t=1", "data.test_ratio=0.25"])

    own = write_pdebench(tmp_path / "own_Nu0.01.hdf5", u, cell_centres(100), t, {"nu": 0.01})
    cfg = protocol(own)
    data = load_protocol(cfg.data)
    assert float(data.x[0]) != 0.5 / 100  # the float32 rounding this is about
    gm, notes = check_eval_data(cfg, 25, data, str(own))
    assert gm.identity and notes == []
    vertices = write_pdebench(tmp_path / "vertices_Nu0.01.hdf5", u, np.arange(100) / 100, t, {"nu": 0.01})
    gm2, notes2 = check_eval_data(cfg, 25, load_protocol(protocol(vertices).data, check_config=False), str(vertices))
    assert not gm2.identity and gm2.shift == pytest.approx(0.005) and "offset" in notes2[0]


def test_a_rollout_that_blows_up_reports_no_ttc_gain_and_no_ece(tiny, tmp_path):
    """Finite weights whose forecasts overflow to inf/NaN: nRMSE came back NaN, but the eval also reported a TTC
    gain of exactly 0 (interval [0, 0]) and a plausible ECE of 0.28 ranked from NaN ensemble members."""
    import copy

    from ups.metrics import ece

    model = copy.deepcopy(tiny["model"])
    model.decoder.field_std.fill_(3e38)  # a real, finite checkpoint value; its decoded fields overflow
    model.encoder.field_std.fill_(1e-38)
    m = evaluate(model, tiny["cfg"], tiny["data"])
    assert not math.isfinite(m["nrmse"])
    assert math.isnan(m["ttc_gain"]) and all(math.isnan(v) for v in m["ttc_gain_ci95"])
    assert math.isnan(m["ece"])
    true = tiny["data"].test[:2]
    members = true.expand(3, *true.shape).clone()
    members[0, :, -1, 0] = float("nan")
    assert math.isnan(ece(members, true, 10))


def test_a_run_folder_passed_as_checkpoint_is_told_the_checkpoint_that_exists(tiny, tmp_path):
    """`ups eval checkpoint=runs/<id>` said 'e.g. runs/<run_id>/checkpoints/last', a folder ups train never
    writes (it writes checkpoints/final, epoch_NNNN and LATEST)."""
    import shutil

    run = tmp_path / "run"
    (run / "checkpoints" / "final").mkdir(parents=True)
    shutil.copy(tiny["ckpt"], run / "checkpoints" / "final" / "checkpoint.pt")
    (run / "checkpoints" / "LATEST").write_text("final\n")
    with pytest.raises(ConfigError, match="does not exist") as e:
        main([f"checkpoint={run}"])
    assert "checkpoints/last" not in str(e.value)
    assert f"e.g. {run / 'checkpoints' / 'final'}, this run's latest" in str(e.value)
    with pytest.raises(ConfigError, match=r"e\.g\. runs/<run_id>/checkpoints/final\)"):
        main([f"checkpoint={tmp_path / 'nope'}"])


def test_an_out_dir_that_cannot_take_files_is_refused_before_the_evaluation(tiny, tmp_path, capsys):
    """eval.out_dir under a regular file: the evaluation ran, then a NotADirectoryError traceback lost it."""
    from ups.cli import main as ups_main

    blocker = tmp_path / "afile"
    blocker.write_text("")
    assert ups_main(["eval", f"checkpoint={tiny['ckpt']}", f"eval.out_dir={blocker / 'reports'}"]) == 2
    err = capsys.readouterr()
    assert "eval.out_dir" in err.err and str(blocker / "reports") in err.err and "Fix:" in err.err
    assert "nRMSE" not in err.out  # refused before the evaluation, not after it


def test_two_checkpoints_of_one_run_do_not_overwrite_each_others_eval(tiny, tmp_path):
    """A run with run.run_id set (every sweep trial) has epoch_N/ and final/ checkpoints with one run_id: the eval
    of final/ silently replaced eval_<run_id>.json of epoch_N/ (same data and settings, so the same fingerprint)."""
    import shutil

    out = tmp_path / "reports"
    for name in ("epoch_0001", "final"):
        (tmp_path / "run" / name).mkdir(parents=True)
        shutil.copy(tiny["ckpt"], tmp_path / "run" / name / "checkpoint.pt")
        assert main([f"checkpoint={tmp_path / 'run' / name}", f"eval.out_dir={out}"]) == 0
    recs = [json.loads(p.read_text()) for p in sorted(out.glob("eval_tiny-run*.json"))]
    assert sorted(Path(r["info"]["checkpoint"]).parent.name for r in recs) == ["epoch_0001", "final"]
    # the same checkpoint evaluated again replaces its own result
    assert main([f"checkpoint={tmp_path / 'run' / 'final'}", f"eval.out_dir={out}"]) == 0
    assert len(list(out.glob("eval_tiny-run*.json"))) == 2


def test_with_ttc_off_every_ttc_figure_is_the_plain_rollouts(tiny):
    """ttc.enabled=false: the "with TTC" figures are the deterministic rollout's, computed once (not a second time
    on the same frames)."""
    from ups.config import apply_overrides
    from ups.metrics import PDEBENCH_SET_KEYS

    cfg = apply_overrides(tiny["cfg"], {"ttc.enabled": False, "eval.ensemble_size": 0})
    m = evaluate(tiny["model"], cfg, tiny["data"])
    assert m["ttc_enabled"] is False and m["ttc_gain"] == 0.0 and m["ttc_intervention_rate"] == 0.0
    assert m["nrmse_ttc"] == m["nrmse"] and m["nrmse_ttc_pdebench"] == m["nrmse_pdebench"]
    for key in ("conservation_gap", "energy_violation", "bc_violation", "rollout_horizon", *PDEBENCH_SET_KEYS):
        assert m[f"{key}_ttc"] == m[key], key


def test_eval_takes_a_champion_record_and_an_s3_checkpoint(tiny, files, tmp_path, s3_client, s3_bucket, capsys,
                                                            monkeypatch):
    """After a cluster sweep the champion's checkpoint is an s3://…/checkpoint_N (champion.json records it so, and
    the sweep publishes the record next to its leaderboard on S3):
    ``ups eval checkpoint=s3://…`` mangled the URI into a local path 's3:/…' and refused it. It now downloads the
    checkpoint (deleted afterwards) and records the URI, not the temporary copy; ``checkpoint=champion`` and
    ``checkpoint=<record>.json`` evaluate the checkpoint a champion record names (local or on S3)."""
    import tempfile

    key = "sweeps/exp/trial_00000/checkpoint_000003/checkpoint.pt"
    s3_client.put_object(Bucket=s3_bucket, Key=key, Body=Path(tiny["ckpt"]).read_bytes())
    uri = f"s3://{s3_bucket}/sweeps/exp/trial_00000/checkpoint_000003"
    out_dir = tmp_path / "reports"
    quick = [f"data={files['base']}", "eval.max_samples=3", "ttc.enabled=false"]  # which weights, not their figures
    before = set(Path(tempfile.gettempdir()).glob("ups_ckpt_*"))
    assert main([f"checkpoint={uri}", *quick, f"eval.out_dir={out_dir}"]) == 0
    rec = json.loads((out_dir / "eval_tiny-run.json").read_text())
    assert rec["info"]["checkpoint"] == uri
    assert set(Path(tempfile.gettempdir()).glob("ups_ckpt_*")) == before, "the download outlived the evaluation"
    # the same weights evaluated from the local file give the same figures
    assert main(_ckpt_args(tiny, *quick, f"eval.out_dir={tmp_path / 'local'}")) == 0
    local = json.loads((tmp_path / "local" / "eval_tiny-run.json").read_text())
    assert rec["metrics"]["nrmse"] == pytest.approx(local["metrics"]["nrmse"], rel=1e-6)

    # a champion record (what a sweep writes: checkpoint + config + …), on S3 and local
    record = {"run_id": "r", "score": 0.1, "checkpoint": uri, "config": {}, "data_hash": "x"}
    (tmp_path / "champ_s3.json").write_text(json.dumps(record))
    assert main([f"checkpoint={tmp_path / 'champ_s3.json'}", *quick,
                 f"eval.out_dir={tmp_path / 'via_record'}"]) == 0
    assert json.loads((tmp_path / "via_record" / "eval_tiny-run.json").read_text())["info"]["checkpoint"] == uri
    # the record as an S3 sweep publishes it, read from the bucket (after ray down, nothing is on a head node)
    s3_client.put_object(Bucket=s3_bucket, Key="sweeps/exp/champion_full.json", Body=json.dumps(record).encode())
    assert main([f"checkpoint=s3://{s3_bucket}/sweeps/exp/champion_full.json", *quick,
                 f"eval.out_dir={tmp_path / 'via_s3_record'}"]) == 0
    assert json.loads((tmp_path / "via_s3_record" / "eval_tiny-run.json").read_text())["info"]["checkpoint"] == uri
    monkeypatch.chdir(tmp_path)
    (tmp_path / "reports").mkdir(exist_ok=True)
    (tmp_path / "reports" / "champion.json").write_text(json.dumps({**record, "checkpoint": str(tiny["ckpt"])}))
    assert main(["checkpoint=champion", *quick, f"eval.out_dir={tmp_path / 'champ'}"]) == 0
    got = json.loads((tmp_path / "champ" / "eval_tiny-run.json").read_text())
    assert got["info"]["checkpoint"] == str(tiny["ckpt"])
    # with its baselines, a champion's evaluation trains the FNO of the sweep that crowned it (budget and seed in
    # its record): it scored another FNO (ups eval's 60 s against the smoke sweep's 30) than the promotion had
    (tmp_path / "reports" / "champion.json").write_text(json.dumps(
        {**record, "checkpoint": str(tiny["ckpt"]), "baselines_run": {"fno_budget_s": 0.2, "seed": 4}}))
    capsys.readouterr()
    assert main(["checkpoint=champion", *quick, "eval.baselines=true", f"eval.out_dir={tmp_path / 'champ_fno'}"]) == 0
    fno = {b["name"]: b for b in json.loads((tmp_path / "champ_fno" / "eval_tiny-run.json").read_text())["baselines"]}
    assert (fno["fno"]["fno_budget_s"], fno["fno"]["seed"]) == (0.2, 4)
    assert "(trained 0.2 s, seed 4)" in capsys.readouterr().out
    assert main(["checkpoint=champion", *quick, "eval.baselines=true", "eval.fno_budget_s=0.3",
                 f"eval.out_dir={tmp_path / 'champ_fno2'}"]) == 0  # the command line wins
    fno = {b["name"]: b for b in json.loads((tmp_path / "champ_fno2" / "eval_tiny-run.json").read_text())["baselines"]}
    assert fno["fno"]["fno_budget_s"] == 0.3
    capsys.readouterr()
    # eval.fno_budget_s=0 trains no FNO: the output says so instead of leaving the row out without a word
    assert main(["checkpoint=champion", *quick, "eval.baselines=true", "eval.fno_budget_s=0",
                 f"eval.out_dir={tmp_path / 'champ_nofno'}"]) == 0
    names = {b["name"] for b in json.loads((tmp_path / "champ_nofno" / "eval_tiny-run.json").read_text())["baselines"]}
    assert "fno" not in names and "persistence" in names
    assert "no FNO baseline: eval.fno_budget_s=0 trains none" in capsys.readouterr().out
    # a sweep with fno_steps trained that many steps, with no wall-clock budget: the same FNO here
    (tmp_path / "reports" / "champion.json").write_text(json.dumps(
        {**record, "checkpoint": str(tiny["ckpt"]), "baselines_run": {"fno_budget_s": 0.0, "fno_steps": 3, "seed": 4}}))
    assert main(["checkpoint=champion", *quick, "eval.baselines=true", f"eval.out_dir={tmp_path / 'champ_fno3'}"]) == 0
    fno = {b["name"]: b for b in json.loads((tmp_path / "champ_fno3" / "eval_tiny-run.json").read_text())["baselines"]}
    assert (fno["fno"]["fno_steps"], fno["fno"]["details"]["steps"], fno["fno"]["seed"]) == (3, 3, 4)
    assert "(trained 3 steps, seed 4)" in capsys.readouterr().out

    # refusals name the record or the URI and the fix, and leave no download folder behind (an empty one stayed)
    import tempfile

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    with pytest.raises(ConfigError, match=r"does not exist on S3.*Fix"):
        main([f"checkpoint=s3://{s3_bucket}/sweeps/exp/trial_00000/checkpoint_000009", f"data={files['base']}"])
    s3_client.put_object(Bucket=s3_bucket, Key="sweeps/exp/trial_00000/checkpoint_000007/params.json", Body=b"{}")
    with pytest.raises(ConfigError, match=r"holds no checkpoint.pt.*Fix"):
        main([f"checkpoint=s3://{s3_bucket}/sweeps/exp/trial_00000/checkpoint_000007", f"data={files['base']}"])
    assert not list(temp.iterdir()), list(temp.iterdir())
    with pytest.raises(ConfigError, match=r"no champion: 'missing.json' does not exist.*Fix"):
        main(["checkpoint=missing.json"])
    with pytest.raises(ConfigError, match=r"no champion: 's3://.*/sweeps/exp/champion.json' does not exist on S3.*Fix"):
        main([f"checkpoint=s3://{s3_bucket}/sweeps/exp/champion.json"])
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"champion file '.*bad.json' must hold a JSON object"):
        main([f"checkpoint={tmp_path / 'bad.json'}"])


def test_a_checkpoint_from_the_middle_of_training_is_noted() -> None:
    """`ups eval` of a trial ASHA stopped in the operator stage printed TTC and ECE figures from an untrained diffusion
    residual, with nothing saying the checkpoint was not a finished model."""
    from ups.config import load_config
    from ups.eval import unfinished_note

    cfg = load_config([])
    note = unfinished_note({"stage": "operator", "epoch": 9, "global_epoch": 14}, cfg)
    assert "stage operator, epoch 9 (14 epochs in all)" in note and "TTC and ECE" in note and "untrained" in note
    later = unfinished_note({"stage": "diff_residual", "epoch": 2, "global_epoch": 40}, cfg)
    assert "untrained still: consistency_distill" in later and "TTC and ECE" not in later
    assert unfinished_note({"stage": "done", "epoch": 1, "global_epoch": 42}, cfg) == ""


def test_a_final_checkpoint_a_time_budget_cut_short_is_noted() -> None:
    """A run whose training.time_budget_s ran out saves a final checkpoint (stage done) with stages untrained."""
    import json

    from ups.config import load_config
    from ups.eval import unfinished_note

    history = [{"stage": "operator", "epoch": 3, "budget_exhausted": 1}]
    note = unfinished_note({"stage": "done", "budget_hit": True, "history": json.dumps(history)}, load_config([]))
    assert "a time budget cut training short in stage operator" in note and "TTC and ECE" in note


def test_a_checkpoint_evaluated_on_other_data_than_it_trained_on_is_noted() -> None:
    """`ups eval` of an old champion after the data generator changed scored it on the new data without a word
    (the upgrade trial); a checkpoint on its own data, or one that records no data, says nothing."""
    from types import SimpleNamespace

    from ups.eval import other_data_note

    data = SimpleNamespace(data_hash="0f5be426d2c8f77c")
    note = other_data_note({"data_hash": "be3e10259faa8cb3"}, data)
    assert "trained and scored on data be3e10259faa, this evaluation's is 0f5be426d2c8" in note, note
    assert "ups.data.cache.DATA_VERSION" in note and "do not compare with its leaderboard row" in note
    assert other_data_note({"data_hash": "0f5be426d2c8"}, data) == ""  # a record's hash cut to 12 characters
    assert other_data_note({}, data) == ""


# ------------------------------------------------------------------------------------ mutation review (round 8a)
def _fake_eval(metric_values: dict[str, Any]) -> EvalOutput:
    """An EvalOutput holding only ``metric_values`` (empty trajectories): for the table, which reads metrics only."""
    empty = torch.zeros(0, 1, 1)
    return EvalOutput(metric_values, empty, empty, empty, torch.zeros(0, 1, dtype=torch.long), {})


def test_the_ttc_figures_are_the_ttc_rollouts_and_a_two_member_ensemble_counts(tiny):
    """Every "with TTC" figure is computed from pred_ttc (not the plain rollout): PDEBench's nRMSE and set, and the
    nRMSE curve; with ttc.threshold=0 every step is searched (rate 1), the share of samples whose path came from the
    search is a whole number of samples; eval.ensemble_size=2 is an ensemble (ECE reported)."""
    cfg = apply_overrides(tiny["cfg"], {"eval.ensemble_size": 2}, source="test")
    ev = evaluate_detailed(tiny["model"], cfg, tiny["data"])
    m, init = ev.metrics, tiny["data"].initial_step
    assert not torch.equal(ev.pred, ev.pred_ttc)  # the two rollouts differ, so a swap shows
    assert m["nrmse_ttc_pdebench"] == pytest.approx(nrmse_pdebench(ev.pred_ttc, ev.true, init), rel=1e-12)
    assert m["nrmse_ttc_pdebench"] != pytest.approx(m["nrmse_pdebench"], rel=1e-9)
    ttc_set = pdebench_metric_set(ev.pred_ttc, ev.true, init)
    for key in PDEBENCH_SET_KEYS:
        assert m[f"{key}_ttc"] == pytest.approx(ttc_set[key], rel=1e-12), key
    assert ev.curves["ups_ttc"] == pytest.approx(nrmse_per_time(ev.pred_ttc, ev.true, init).tolist(), rel=1e-12)
    assert ev.curves["ups"] == pytest.approx(nrmse_per_time(ev.pred, ev.true, init).tolist(), rel=1e-12)
    assert m["ttc_intervention_rate"] == 1.0
    used = m["ttc_search_used_rate"] * m["n_samples"]
    assert 1 <= round(used) <= m["n_samples"] and used == pytest.approx(round(used), abs=1e-9), m
    assert m["ensemble_size"] == 2 and m["ece"] is not None and 0 <= m["ece"] <= 0.5


def test_the_eval_table_puts_each_rollouts_figures_in_its_own_row():
    """ups / ups+ttc rows of the CSV and HTML table: the plain figures (value 1) in one, the *_ttc ones (value 2) in
    the other; the plain row's seconds are the evaluation's less TTC's (10 - 3), the TTC row's TTC's (3)."""
    m: dict[str, Any] = {"params": 7, "eval_s": 10.0, "ttc_s": 3.0, "ece": 0.1, "nrmse_ttc": 2.0,
                         "nrmse_ttc_pdebench": 2.0}
    for key in (*METRIC_KEYS, *PDEBENCH_SET_KEYS):
        m[key] = 1.0
        m.setdefault(f"{key}_ttc", 2.0)
    ups, ttc = _table_rows(_fake_eval(m), [], "r")
    assert ups["model"] == "ups" and ttc["model"] == "ups+ttc"
    for key in (*METRIC_KEYS, *PDEBENCH_SET_KEYS):
        assert (ups[key], ttc[key]) == (1.0, 2.0), key
    assert (ups["seconds"], ttc["seconds"]) == (7.0, 3.0) and (ups["ece"], ttc["ece"]) == (0.1, None)


def test_an_eval_of_other_settings_gets_its_own_file_name_and_a_rerun_keeps_it(tmp_path):
    """eval_<run_id>.json of the same fingerprint is replaced; of another one is kept (the new one adds the
    fingerprint's first 8 characters); no file yet: the plain name."""
    stem, paths = output_paths(tmp_path, "r", "f" * 40)
    assert stem == "eval_r" and paths["csv"] == tmp_path / "eval_r.csv"
    paths["json"].write_text(json.dumps({"fingerprint": "f" * 40}))
    assert output_paths(tmp_path, "r", "f" * 40)[0] == "eval_r"
    assert output_paths(tmp_path, "r", "0123456789" * 4)[0] == "eval_r_01234567"


def test_an_offset_is_ignored_only_below_a_millionth_of_a_cell():
    """GridMap.identity: the shift is measured in cells of the eval grid (float32 rounding of x0 is ~1e-8 of a
    cell on a 1024-point grid; 5e-7 of the domain is 5e-4 of a cell, a real offset)."""
    assert GridMap(1024, 1024, 1e-11).identity
    assert not GridMap(1024, 1024, 5e-7).identity
    assert not GridMap(1024, 512, 0.0).identity


def test_json_output_writes_non_finite_figures_as_null():
    """A blown-up rollout's inf / nan figures become null in eval_<run_id>.json (json.dumps would write Infinity)."""
    got = _jsonable({"a": math.inf, "b": [-math.inf, math.nan, 1.5], "c": np.float32(2.0), 3: (np.int64(4),)})
    assert got == {"a": None, "b": [None, None, 1.5], "c": 2.0, "3": [4]}


def test_a_file_read_with_too_coarse_a_time_stride_is_told_stride_one(tiny):
    """A file saved at the checkpoint's own step, read with data.reduced_resolution_t=2 (its step doubled): the
    fix names data.reduced_resolution_t=1, the stride that gives the checkpoint's step back."""
    cfg = tiny["cfg"]
    dt = model_time_step(cfg)
    data = SimpleNamespace(test=torch.zeros(1, 41, 64), t=np.arange(41) * 2 * dt, x=cell_centres(64),
                           attrs={"protocol": {"rt": 2}})
    with pytest.raises(ConfigError, match=r"Fix: data\.reduced_resolution_t=1 \(the file's step is"):
        check_eval_data(cfg, 64, data, "f.h5")


def test_val_nrmse_ttc_is_the_validation_rollouts_nrmse_with_ttc(tiny):
    """What a sweep over ttc.* keys ranks on: nRMSE with TTC on the validation split (not the plain rollout's, and
    not the test split's), as evaluate_detailed scores it there."""
    got = val_nrmse_ttc(tiny["model"], tiny["cfg"], tiny["data"], -1)
    cfg = apply_overrides(tiny["cfg"], {"eval.ensemble_size": 0, "eval.max_samples": -1}, source="test")
    want = evaluate_detailed(tiny["model"], cfg, tiny["data"], "val").metrics
    assert got == want["nrmse_ttc"] and got != want["nrmse"]


def test_the_figures_show_each_rollout_under_its_own_name(monkeypatch):
    """eval_<run_id>.html's figures: truth, UPS and UPS + TTC of sample 0 under their own titles (values 0, 1, 2),
    the error panel |UPS − truth|, profiles at frames initial_step, the middle one and the last, and the nRMSE
    curves from frame initial_step on, each labelled with its own mean."""
    figs: list[Any] = []
    monkeypatch.setattr(ups_eval, "_png", lambda fig: figs.append(fig) or "png")
    true = torch.zeros(2, 6, 4)
    pred, pttc = true + 1.0, true + 2.0
    pred[0, 3, 0] = 5.0  # frame 3 (the middle of 2 … 5) differs at x = 0
    curves = {"ups": [0.1, 0.2, 0.3, 0.4], "ups_ttc": [0.05, 0.1, 0.15, 0.2]}
    ev = EvalOutput({"initial_step": 2, "nrmse": 0.25, "nrmse_ttc": 0.125}, true, pred, pttc,
                    torch.zeros(2, 4, dtype=torch.long), curves)
    captions = [c for c, _ in ups_eval._figures(ev, [{"name": "fno", "nrmse": 0.5}])]
    assert len(captions) == len(figs) == 3
    heat, profiles, over_time = (f.axes for f in figs)
    shown = {ax.get_title(): np.asarray(ax.images[0].get_array()) for ax in heat if ax.images}
    assert {k: float(v.mean()) for k, v in shown.items() if k != "|UPS − truth|"} == {
        "truth": 0.0, "UPS": pytest.approx(1.0 + 4 / 24), "UPS + TTC": 2.0}
    assert np.array_equal(shown["|UPS − truth|"], (pred[0] - true[0]).abs().numpy())
    assert heat[0].lines[0].get_ydata()[0] == 1.5  # the dashed line: between the context and the first forecast
    assert [ax.get_title() for ax in profiles] == ["frame 2", "frame 3", "frame 5"]
    lines = {ln.get_label(): ln.get_ydata() for ln in profiles[1].lines}
    assert list(lines["UPS"]) == [5.0, 1.0, 1.0, 1.0] and list(lines["UPS + TTC"]) == [2.0] * 4
    labelled = {ln.get_label(): ln for ln in over_time[0].lines}
    assert list(labelled["UPS (0.2500)"].get_xdata()) == [2, 3, 4, 5]
    assert list(labelled["UPS (0.2500)"].get_ydata()) == curves["ups"]
    assert list(labelled["UPS + TTC (0.1250)"].get_ydata()) == curves["ups_ttc"]
    assert list(labelled["fno (mean 0.5000)"].get_ydata()) == [0.5, 0.5]
    for fig in figs:
        plt.close(fig)
