"""The autoencoder's round trip (ups.reconstruction): which frames the encoder sees, how it is scored, and that
`ups eval`, the trainer's reports and the leaderboard carry it."""
from __future__ import annotations

import math
import types

import pytest
import torch

from ups.reconstruction import RECON_KEYS, round_trip, round_trip_metrics

torch.set_num_threads(1)


class WindowModel:
    """encode: a weighted sum of the context window's frames (weights 1, 10, 100, … from the newest back), kept as
    one token per grid point; decode: the token values. Its round trip of frame t spells which frames it saw."""

    def __init__(self, context_frames: int, gain: float = 1.0) -> None:
        self.encoder = types.SimpleNamespace(context_frames=context_frames)
        self.gain = gain

    def encode(self, context: torch.Tensor) -> torch.Tensor:  # (B, cf, X) → (B, X, 1)
        self.largest = max(getattr(self, "largest", 0), context.shape[0])
        cf = context.shape[1]
        w = 10.0 ** torch.arange(cf - 1, -1, -1, dtype=context.dtype)  # oldest … newest: 10^(cf-1) … 1
        return (context * w[None, :, None]).sum(1)[..., None] * self.gain

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, X, 1) → (B, X)
        return z[..., 0]


def test_the_round_trip_of_frame_t_encodes_the_frames_up_to_t():
    B, T, X = 3, 7, 5
    u = torch.arange(B * T * X, dtype=torch.float64).reshape(B, T, X)
    got = round_trip(WindowModel(1), u, initial_step=2, batch_size=2)
    assert got.shape == (B, T - 2, X) and torch.equal(got, u[:, 2:])
    # three context frames: frame t is seen with t-1 and t-2; before the first frame, the first frame repeats
    # (as UPSModel's encoder pads a short context)
    model = WindowModel(3)
    got = round_trip(model, u, initial_step=1, batch_size=2)
    assert model.largest == 2  # never more frames at once than a forecast step of batch_size samples
    want = torch.stack([100 * u[:, max(t - 2, 0)] + 10 * u[:, t - 1] + u[:, t] for t in range(1, T)], dim=1)
    assert torch.equal(got, want)


def test_the_round_trip_is_scored_as_the_forecast_is():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(60, 9, 32, generator=g, dtype=torch.float64)
    exact = round_trip_metrics(round_trip(WindowModel(1), u, 4), u, 4)
    assert set(exact) == set(RECON_KEYS) and set(exact.values()) == {0.0}
    off = round_trip_metrics(round_trip(WindowModel(1, gain=1.1), u, 4), u, 4)  # every frame 10 % too large
    assert off["recon_nrmse"] == pytest.approx(0.1, rel=1e-9)
    # PDEBench's bands of 0.1·u: each band's share of the error, which the context frames (copied) dilute
    from ups.metrics import pdebench_metric_set

    scaled = torch.cat([u[:, :4], 1.1 * u[:, 4:]], dim=1)
    want = pdebench_metric_set(scaled, u, 4)
    for band in ("low", "mid", "high"):
        assert off[f"recon_frmse_{band}_pdebench"] == pytest.approx(want[f"frmse_{band}_pdebench"], rel=1e-9)
    assert set(round_trip_metrics(round_trip(WindowModel(1), u, 4), u, 4, bands=False)) == {"recon_nrmse"}


def test_evaluate_scores_the_real_models_round_trip_on_the_eval_grid(tmp_path):
    """A UPS model on a finer eval file (resampled to the model's grid and back): the round trip equals
    decode(encode(true frame)) by hand, mapped like the forecast."""
    from tests.test_eval import N_TRAJ, RES, _solve, tiny_overrides

    from ups.config import load_config
    from ups.data.hdf5 import write_pdebench
    from ups.data.protocol import load_protocol
    from ups.eval import GridMap, evaluate_detailed
    from ups.models.ups_model import build_model

    u, x, t = _solve(N_TRAJ, RES, 41, seed=5)
    base = write_pdebench(tmp_path / "base_Nu0.01.hdf5", u, x, t, {"nu": 0.01})
    cfg = load_config(tiny_overrides(tmp_path, base) + ["ttc.enabled=false", "eval.ensemble_size=0",
                                                         "encoder.context_frames=2"])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    data = load_protocol(cfg.data)
    init = data.initial_step
    fine = torch.cat([data.test, data.test], dim=-1)  # not a real finer field: any (N, T, 2X) tensor maps
    grid = GridMap(fine.shape[-1], model.grid_size, 0.0)
    ev = evaluate_detailed(model, cfg, types.SimpleNamespace(test=fine, initial_step=init, source="x"), grid=grid)
    m = ev.metrics
    with torch.no_grad():
        tm = grid.to_model(fine)
        hand = torch.stack([model.decode(model.encode(tm[:, t - 1:t + 1])) for t in range(init, fine.shape[1])], 1)
    want = round_trip_metrics(grid.to_eval(hand).float(), fine.float(), init)
    for key in RECON_KEYS:
        assert m[key] == pytest.approx(want[key], rel=1e-5), key
        assert math.isfinite(m[key]) and m[key] > 0, key
    assert m["recon_nrmse"] != pytest.approx(m["nrmse"])  # a different quantity from the forecast's


def test_training_reports_the_round_trip_every_epoch_and_the_sweep_records_it(tmp_path):
    from tests.test_train import TINY

    from ups.config import load_config
    from ups.leaderboard import EVAL_COLUMNS, LEADERBOARD_COLUMNS
    from ups.train.trainer import train

    g = torch.Generator().manual_seed(0)
    x = torch.linspace(0, 1, 33)[:-1]
    k = torch.randint(1, 4, (30, 1), generator=g)
    tt = torch.linspace(0, 1, 10)[None, :, None]
    u = torch.sin(2 * torch.pi * (k[:, :, None] * x - 0.2 * tt)) * torch.exp(-tt)  # (30, 10, 32)
    data = types.SimpleNamespace(train=u[:18], val=u[18:24], test=u[24:], data_hash="rt", source="rt",
                                 initial_step=4)
    reports: list[dict] = []
    cfg = load_config(TINY + ["stages.autoencoder.epochs=6", "stages.autoencoder.optimizer.lr=3e-3"])
    train(cfg, run_dir=tmp_path / "run", data=data, report=lambda m, c: reports.append(m))
    epochs, final = reports[:-1], reports[-1]
    assert all(math.isfinite(m["val_recon_nrmse"]) for m in epochs)
    ae = [m["val_recon_nrmse"] for m in epochs if m["stage"] == "autoencoder"]
    assert ae[-1] < ae[0], ae  # the autoencoder stage is what moves it
    later = {round(m["val_recon_nrmse"], 12) for m in epochs if m["stage"] != "autoencoder"}
    assert len(later) == 1  # the encoder and decoder are frozen after their stage
    # ... so the trainer measures it once after that stage: the final report, measured afresh, gives the same figure
    assert round(final["val_recon_nrmse"], 12) in later
    assert math.isfinite(final["val_recon_nrmse"]) and math.isfinite(final["recon_nrmse"])
    assert "recon_nrmse" in EVAL_COLUMNS and "recon_nrmse" in LEADERBOARD_COLUMNS
