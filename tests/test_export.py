"""ups export champion on a real smoke-sweep champion: TorchScript/ONNX parity ≤ 1e-5, latency table,
model card; refusal of a missing champion and of an unknown architecture."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch

from ups.config import ConfigError, load_config
from ups.data.hdf5 import write_pdebench
from ups.data.initial import cell_centres
from ups.data.protocol import load_protocol
from ups.reports.export import _test_batch, benchmark, parity
from ups.reports.export import main as export_main
from ups.train.checkpoint import read_checkpoint, save_checkpoint


@pytest.fixture(scope="module")
def exported(report_sweep, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    # no leaderboard=: the champion record names the leaderboard it was crowned in (the default one was read, and the
    # card of a sweep run with leaderboard=… said "not recorded" for every figure: test_latency_and_model_card)
    assert json.loads(report_sweep.champion.read_text())["leaderboard"] == str(Path(report_sweep.leaderboard).resolve())
    rc = export_main(["champion", f"champion={report_sweep.champion}",
                      f"out={out}", "batch_sizes=1,4,16", "repeats=3", "threads=1", "n_steps=4"])
    champ = json.loads(report_sweep.champion.read_text())
    return rc, out / champ["run_id"], champ


def test_export_parity_and_files(exported) -> None:
    rc, d, champ = exported
    assert rc == 0
    for name in ("step.torchscript.pt", "step.onnx", "rollout.torchscript.pt", "rollout.onnx", "MODEL_CARD.md"):
        assert (d / name).stat().st_size > 1_000, name
    onnx.checker.check_model(onnx.load(str(d / "rollout.onnx")))
    parity = json.loads((d / "parity.json").read_text())
    assert {(r["artifact"], r["runtime"]) for r in parity} == {(a, r) for a in ("step", "rollout")
                                                               for r in ("torchscript", "onnxruntime")}
    assert all(r["ok"] for r in parity)
    assert max(r["max_abs"] for r in parity if r["artifact"] == "step") <= 1e-5
    # the exported rollout reproduces the PyTorch model itself (no TTC), at a new batch size
    from ups.train.checkpoint import load_checkpoint

    model, cfg, _ = load_checkpoint(champ["checkpoint"])
    ts = torch.jit.load(str(d / "rollout.torchscript.pt"))
    ctx = torch.randn(3, int(cfg.data.initial_step), model.grid_size)
    with torch.no_grad():
        assert (ts(ctx) - model.rollout(ctx, 4)).abs().max().item() <= 1e-5


def test_latency_and_model_card(exported) -> None:
    rc, d, champ = exported
    lat = json.loads((d / "latency.json").read_text())["rows"]
    assert {(r["artifact"], r["runtime"], r["batch"]) for r in lat} >= {
        (a, rt, b) for a in ("step", "rollout") for rt in ("pytorch eager", "torchscript", "onnxruntime") for b in (1, 4, 16)}
    assert all(r["latency_ms"] > 0 and r["throughput"] > 0 for r in lat)
    card = (d / "MODEL_CARD.md").read_text()
    for section in ("## At a glance", "## Accuracy", "## Physics gates", "## Parity", "## Inference latency",
                    "## Data and protocol", "## Recommended uses", "## Not recommended"):
        assert section in card, section
    assert champ["run_id"] in card and f"{champ['nrmse']:.4g}" in card
    assert "ν = 0.01" in card and "initial_step 10" in card and "PARITY CHECK FAILED" not in card
    pdebench = next(line for line in card.splitlines() if line.startswith("| PDEBench metric set"))  # its full eval's
    assert all(f"{name} " in pdebench for name in ("RMSE", "cRMSE", "bRMSE", "Max", "fRMSE high")), pdebench
    assert "not recorded" not in pdebench, pdebench
    trip = next(line for line in card.splitlines() if line.startswith("| autoencoder round trip"))  # ups.reconstruction
    assert "not recorded" not in trip and float(trip.rstrip(" |").rsplit("|", 1)[1]) > 0, trip


def test_missing_champion_is_refused(tmp_path, capsys) -> None:
    with pytest.raises(ConfigError, match=r"no champion: .*champion.json' does not exist.*checkpoint="):
        export_main(["champion", f"champion={tmp_path / 'champion.json'}", f"out={tmp_path / 'x'}"])
    (tmp_path / "champion.json").write_text(json.dumps({"run_id": "r1"}))
    with pytest.raises(ConfigError, match="has no 'checkpoint' key"):
        export_main(["champion", f"champion={tmp_path / 'champion.json'}"])
    for ckpt in (str(tmp_path / "runs" / "gone" / "checkpoint_000009"), 123):  # deleted trial folder; hand-edited
        (tmp_path / "champion.json").write_text(json.dumps({"run_id": "r1", "checkpoint": ckpt}))
        with pytest.raises(ConfigError, match=rf"champion file '{re.escape(str(tmp_path / 'champion.json'))}': its "
                                              rf"'checkpoint' '{re.escape(str(ckpt))}' does not exist.*Fix: pass checkpoint="):
            export_main(["champion", f"champion={tmp_path / 'champion.json'}", f"out={tmp_path / 'x'}"])
    # a hand-edited figure went into MODEL_CARD.md as text
    (tmp_path / "champion.json").write_text(json.dumps({"run_id": "r1", "checkpoint": "x", "nrmse": "abc"}))
    with pytest.raises(ConfigError, match=r"champion.json': 'nrmse' is 'abc', not a number\. Fix: put back the figure"):
        export_main(["champion", f"champion={tmp_path / 'champion.json'}", f"out={tmp_path / 'x'}"])
    with pytest.raises(ConfigError, match="unknown target 'chmpion'"):
        export_main(["chmpion"])
    # out-of-range numbers: each named with its fix, before any champion or model is read
    with pytest.raises(ConfigError, match=re.escape("threads=0 must be ≥ 1 (threads=2); repeats=0 must be ≥ 1 "
                                                    "(repeats=20). Fix: the value in brackets")):
        export_main(["champion", "threads=0", "repeats=0", f"champion={tmp_path / 'none.json'}", f"out={tmp_path / 'x'}"])
    with pytest.raises(ConfigError, match=r"batch_sizes=0,4 needs one or more sizes ≥ 1.*n_steps=0 must be ≥ 1"):
        export_main(["champion", "batch_sizes=0,4", "n_steps=0", f"out={tmp_path / 'x'}"])
    assert not (tmp_path / "x").exists()


def test_unknown_architecture_is_refused(report_sweep, tmp_path) -> None:
    champ = json.loads(report_sweep.champion.read_text())
    state = read_checkpoint(champ["checkpoint"])
    state.pop("path")
    state["config"] = {**state["config"], "operator": {**state["config"]["operator"], "kind": "graph_transformer"}}
    bad = save_checkpoint(tmp_path / "alien", {k: v for k, v in state.items() if k != "format"})
    with pytest.raises(ConfigError, match="architecture this version cannot build.*operator.kind"):
        export_main(["champion", f"checkpoint={bad}", f"out={tmp_path / 'out'}"])
    (tmp_path / "foreign.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot export: checkpoint .* truncated or corrupt"):
        export_main(["champion", f"checkpoint={tmp_path / 'foreign.pt'}", f"out={tmp_path / 'out'}"])
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_the_model_card_compares_with_the_baselines_of_the_champions_own_data(tmp_path) -> None:
    """Smoke and full profiles share one leaderboard: the card of a full-data champion (0.09) said it did not beat
    the smoke data's persistence (0.08) and never named the full data's FNO (0.05)."""
    from ups.leaderboard import upsert_rows
    from ups.reports.export import _metrics_for

    lb = tmp_path / "leaderboard.csv"
    full, smoke = "f00dfeedbeef", "5a0e1c9d7b3f"
    upsert_rows(lb, [{"run_id": f"baseline-{n}-{h}", "kind": "baseline", "label": n, "nrmse": v, "data_hash": h}
                     for n, v, h in (("persistence", 0.70, full), ("fno", 0.05, full),
                                     ("persistence", 0.08, smoke), ("fno", 0.30, smoke))]
                + [{"run_id": "t1", "kind": "trial", "nrmse": 0.09, "checkpoint": "/c/t1", "data_hash": full + "0000"}])
    assert _metrics_for("t1", "/c/t1", {"run_id": "t1", "checkpoint": "/c/t1"}, lb)[3] == {"persistence": 0.70, "fno": 0.05}
    champ = {"run_id": "x", "checkpoint": "/c/x", "data_hash": smoke + "0000"}  # the record's own hash wins
    assert _metrics_for("x", "/c/x", champ, lb)[3] == {"persistence": 0.08, "fno": 0.30}


def test_a_train_runs_checkpoint_exports_under_its_run_with_its_own_metrics(report_sweep, tmp_path) -> None:
    """``ups export champion checkpoint=<run>/checkpoints/final`` of an ``ups train`` run: the export went to
    ``<out>/final/`` (a second run's replaced it) and the card said "not recorded" for every figure; it is now
    ``<out>/<run>-final/`` with the run's own metrics.json figures."""
    champ = json.loads(report_sweep.champion.read_text())
    src = Path(champ["checkpoint"])
    src = src if src.is_file() else src / "checkpoint.pt"
    run = tmp_path / "myrun"
    state = read_checkpoint(src)  # as `ups train` saves it: no run id (a sweep trial's names its trial)
    state.pop("path")
    state.pop("run_id", None)
    state["config"] = {**state["config"], "run": {**state["config"]["run"], "run_id": ""}}
    save_checkpoint(run / "checkpoints" / "final", {k: v for k, v in state.items() if k != "format"})
    (run / "metrics.json").write_text(json.dumps({"final": {"nrmse": 0.4321, "nrmse_ttc": 0.4210, "done": True},
                                                  "history": []}))
    out = tmp_path / "export"
    assert export_main(["champion", f"checkpoint={run / 'checkpoints' / 'final'}", f"out={out}",
                        f"leaderboard={tmp_path / 'none.csv'}", "batch_sizes=1", "repeats=1", "threads=1",
                        "n_steps=2"]) == 0
    card = (out / "myrun-final" / "MODEL_CARD.md").read_text()
    assert "0.4321" in card and f"run metrics {run / 'metrics.json'}" in card, card[:2000]
    # its epoch checkpoint goes beside it, not over it; its figures are not the final's
    save_checkpoint(run / "checkpoints" / "epoch_0002", {k: v for k, v in state.items() if k != "format"})
    assert export_main(["champion", f"checkpoint={run / 'checkpoints' / 'epoch_0002'}", f"out={out}",
                        f"leaderboard={tmp_path / 'none.csv'}", "batch_sizes=1", "repeats=1", "threads=1",
                        "n_steps=2"]) == 0
    assert "0.4321" not in (out / "myrun-epoch_0002" / "MODEL_CARD.md").read_text()
    assert (out / "myrun-final" / "MODEL_CARD.md").read_text() == card


def test_the_model_card_names_the_preset_whose_sizes_the_model_has() -> None:
    """A dims-round champion (latent dim 64, sized by the presets' rules) was carded as "preset `dim32`": the
    config's ``preset`` key keeps the base config's name when a sweep sets the sizes."""
    from ups.config import load_config, to_dict
    from ups.reports.model_card import preset_text, render_model_card

    assert preset_text(to_dict(load_config([]))) == "preset `dim32`"
    dims64 = to_dict(load_config(["preset=dim64"]))
    dims64["preset"] = "dim32"  # as the dims round's trials record it
    assert preset_text(dims64) == "the sizes of preset `dim64`"
    assert "| architecture | the sizes of preset `dim64`: latent 32 tokens × 64 dims" in render_model_card(
        {"name": "x", "config": dims64})
    dims64["operator"]["hidden_dim"] = 100  # round B's own sizes
    assert preset_text(dims64) == "sizes set by the sweep (base preset `dim32`)"


# ------------------------------------------------------------------------------------ mutation review (round 8a)
class _Shifted:
    """A runtime whose output is its input plus ``delta`` (``reshape``: an output of another shape), callable as
    a TorchScript module and as an onnxruntime session (``run``): what parity() compares with eager PyTorch."""

    def __init__(self, delta: float, reshape: bool = False) -> None:
        self.delta, self.reshape = delta, reshape

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = x + self.delta
        return y[:, :1] if self.reshape else y

    def run(self, _names: Any, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [self(torch.from_numpy(feed["context"])).numpy()]


def _parity_rows(delta: float, artifact: str = "step", tolerance: float = 1e-3, floor: float | None = None,
                 reshape: bool = False, x: torch.Tensor | None = None) -> dict[str, dict[str, Any]]:
    """parity() of the identity (eager) against two runtimes off by ``delta``, one batch of ones (B=2, 3, 4) or
    ``x``; ``floor``: a float64 reference ``floor`` away from eager. Rows by runtime."""
    x = torch.ones(2, 3, 4, dtype=torch.float64) if x is None else x
    ref64 = None if floor is None else (lambda v: v + floor)
    rows = parity(lambda v: v, _Shifted(delta, reshape), _Shifted(delta, reshape), {2: x}, artifact, tolerance,
                  reference64=ref64)
    return {r["runtime"]: r for r in rows}


def test_parity_passes_at_the_tolerance_and_fails_beyond_it() -> None:
    """Max |Δ| is the largest absolute difference, and ≤ tolerance passes (0.25 ≤ 0.25, exact in binary)."""
    at = _parity_rows(0.25, tolerance=0.25)
    assert set(at) == {"torchscript", "onnxruntime"}
    assert all(r["ok"] and r["max_abs"] == 0.25 and r["batch"] == 2 for r in at.values()), at
    assert at["onnxruntime"]["max_rel"] == pytest.approx(0.25 / (1 + 1e-6))
    beyond = _parity_rows(0.5, tolerance=0.25)
    assert not any(r["ok"] for r in beyond.values()) and beyond["torchscript"]["criterion"] == "> 0.25"


def test_only_a_rollout_may_pass_within_ten_times_the_float32_floor() -> None:
    """Δ = 0.5 with a float32 floor of 0.0625 (10 × = 0.625): a rollout passes, a one-step graph does not; Δ = 1
    exceeds 10 × floor and fails the rollout too."""
    roll = _parity_rows(0.5, "rollout", tolerance=0.25, floor=0.0625)["torchscript"]
    assert roll["ok"] and roll["f32_floor"] == 0.0625 and "10 × float32 floor" in roll["criterion"]
    assert not _parity_rows(0.5, "step", tolerance=0.25, floor=0.0625)["torchscript"]["ok"]
    far = _parity_rows(1.0, "rollout", tolerance=0.25, floor=0.0625)["torchscript"]
    assert not far["ok"] and far["criterion"] == "> 0.25 and > 10 × floor"


def test_parity_fails_a_non_finite_output_and_one_of_another_shape() -> None:
    """NaN outputs that agree (Δ = 0 where finite) are no pass; an output of another shape is a failed row."""
    x = torch.ones(2, 3, 4, dtype=torch.float64)
    x[0, 0, 0] = math.nan
    nan = _parity_rows(0.0, x=x)["onnxruntime"]
    assert not nan["ok"]
    odd = _parity_rows(0.0, reshape=True)["torchscript"]
    assert not odd["ok"] and odd["max_abs"] == math.inf and odd["criterion"].startswith("shape")


def _one_element_off(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its first element 0.5 larger: a runtime wrong at one grid point of one sample."""
    y = x.clone()
    y[0, 0, 0] += 0.5
    return y


def test_max_abs_is_the_largest_difference_not_the_mean() -> None:
    """One element of 24 off by 0.5: max |Δ| is 0.5 (not 0.5 / 24) and fails a 0.25 tolerance."""
    x = torch.zeros(2, 3, 4, dtype=torch.float64)
    rows = parity(lambda v: v, _one_element_off, _Shifted(0.0), {2: x}, "step", 0.25)
    ts, ort = rows
    assert ts["max_abs"] == 0.5 and not ts["ok"]
    assert ort["max_abs"] == 0.0 and ort["ok"] and ort["criterion"] == "≤ 0.25"


def test_the_export_test_batch_is_the_test_splits_contexts_reused_in_turn(tmp_path) -> None:
    """5 contexts from a 3-trajectory test split: trajectories 0, 1, 2, 0, 1, their first initial_step frames only
    (the frames after are what is forecast: n_steps = frames - initial_step)."""
    rng = np.random.default_rng(0)
    u = rng.standard_normal((12, 41, 256)).astype(np.float32)
    path = write_pdebench(tmp_path / "f_Nu0.01.hdf5", u, cell_centres(256), np.linspace(0.0, 2.0, 41), {"nu": 0.01})
    cfg = load_config(["preset=dim8", f"data.path={path}", "data.resolution=256", "data.reduced_resolution=4",
                       "data.frames=41", "data.reduced_resolution_t=1", "data.test_ratio=0.25", "data.n=12",
                       f"data.cache_dir={tmp_path / 'cache'}"])
    test = load_protocol(cfg.data).test
    k = int(cfg.data.initial_step)
    assert len(test) == 3
    ctx, what, n_steps = _test_batch(cfg, test.shape[-1], 5)
    assert torch.equal(ctx, test[[0, 1, 2, 0, 1], :k].float())
    assert n_steps == 41 - k and "5 contexts from the 3 trajectories" in what and "used 1–2 times" in what


def test_throughput_is_samples_per_second_of_the_median_call() -> None:
    """benchmark(): a batch of b samples in the median call time gives b / median samples per second."""
    rows = benchmark({("step", "eager", "cpu"): lambda x: x.sum()}, lambda b, _dev: torch.ones(b, 4), [1, 8], 3)
    assert [(r["batch"], r["calls"]) for r in rows] == [(1, 3), (8, 3)]
    for r in rows:
        assert r["throughput"] == pytest.approx(r["batch"] / (r["latency_ms"] / 1e3), rel=1e-9)
        assert r["p90_ms"] >= r["latency_ms"] > 0
