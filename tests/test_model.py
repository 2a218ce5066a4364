"""UPS model: shapes for every preset, consistency scalings, the LatentForecaster contract."""
from __future__ import annotations

import pytest
import torch

from ups.config import PRESET_DIMS, load_config
from ups.models.diffusion import consistency_scalings, edm_scalings, karras_sigmas
from ups.models.interface import LatentForecaster
from ups.models.ups_model import build_model, count_parameters


@pytest.mark.parametrize("dim", PRESET_DIMS)
def test_preset_shapes(dim):
    torch.manual_seed(0)
    cfg = load_config([f"preset=dim{dim}"])
    model = build_model(cfg, grid_size=64 if dim >= 128 else 256).eval()
    X, N, D = model.grid_size, cfg.latent.tokens, cfg.latent.dim
    ctx = torch.randn(2, 3, X)
    with torch.no_grad():
        z = model.encode(ctx)
        assert z.shape == (2, N, D)
        assert model.step(z).shape == (2, N, D)
        assert model.decode(z).shape == (2, X)
        assert model.sample_next(z, 3, steps=2).shape == (2, 3, N, D)
        assert model.rollout(ctx, 4).shape == (2, 4, X)
    assert isinstance(model, LatentForecaster)
    assert count_parameters(model) > 0


def test_consistency_scalings_boundary():
    sd, smin = 0.5, 0.002
    cs, co, _ = consistency_scalings(torch.tensor(smin), sd, smin)
    assert float(cs) == pytest.approx(1.0) and float(co) == pytest.approx(0.0)
    # large σ: the network output dominates
    cs, co, ci = consistency_scalings(torch.tensor(80.0), sd, smin)
    assert float(cs) < 1e-3 and float(co) == pytest.approx(sd, rel=1e-2) and float(ci) == pytest.approx(1 / 80.0, rel=1e-3)
    e_skip, e_out, e_in = edm_scalings(torch.tensor(sd), sd)
    assert float(e_skip) == pytest.approx(0.5) and float(e_out) == pytest.approx(sd / 2 ** 0.5)
    s = karras_sigmas(5, smin, 1.0)
    assert float(s[0]) == pytest.approx(1.0) and float(s[-1]) == pytest.approx(smin, rel=1e-4)
    assert bool((s[:-1] > s[1:]).all())
