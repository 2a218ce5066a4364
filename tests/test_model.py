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


def test_consistency_model_is_identity_at_sigma_min():
    from ups.models.diffusion import ConsistencyModel, ResidualDenoiser

    torch.manual_seed(0)
    net = ResidualDenoiser(tokens=4, dim=8, hidden=16, num_layers=2)
    for p in net.parameters():  # make the network output non-trivial
        torch.nn.init.normal_(p, std=0.5)
    f = ConsistencyModel(net, sigma_data=0.5, sigma_min=0.002)
    x, cond = torch.randn(3, 4, 8), torch.randn(3, 4, 8)
    assert torch.allclose(f(x, torch.full((3,), 0.002), cond), x, atol=1e-6)
    assert not torch.allclose(f(x, torch.full((3,), 0.5), cond), x, atol=1e-2)


def test_sample_next_is_seeded_and_adds_residual():
    cfg = load_config(["preset=dim8"])
    model = build_model(cfg, grid_size=64).eval()
    z = torch.randn(2, cfg.latent.tokens, cfg.latent.dim)
    with torch.no_grad():
        base = model.step(z)
        # no residual trained yet: every sample is the operator step
        assert torch.equal(model.sample_next(z, 3), base[:, None].expand(2, 3, *base.shape[1:]))
        model.residual_std.fill_(0.1)
        model.distilled.fill_(True)
        a = model.sample_next(z, 4, generator=torch.Generator().manual_seed(1), steps=2)
        b = model.sample_next(z, 4, generator=torch.Generator().manual_seed(1), steps=2)
    assert torch.equal(a, b)
    assert a.std(dim=1).mean() > 0  # the K samples differ


def test_bad_grid_is_refused():
    cfg = load_config(["preset=dim32"])
    model = build_model(cfg, grid_size=256)
    with pytest.raises(ValueError, match="256"):
        model.encode(torch.randn(1, 1, 128))
    with pytest.raises(ValueError, match="latent.tokens"):
        build_model(cfg, grid_size=8)
