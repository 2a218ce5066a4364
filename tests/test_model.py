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


# ------------------------------------------------------------------ parts of the model, checked one by one
def _tiny_model(**over: str):
    """dim8 preset on a 32-point grid (4 tokens of 8 points), with optional config overrides."""
    cfg = load_config(["preset=dim8"] + [f"{k}={v}" for k, v in over.items()])
    return build_model(cfg, grid_size=32)


def _randomize(module: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial weights everywhere (the operator's output layer starts at zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def test_an_untrained_operator_is_the_identity_map():
    """The output projection starts at zero and the step is residual: step(z) = z before any training."""
    model = _tiny_model().eval()
    z = torch.randn(3, model.tokens, model.dim)
    with torch.no_grad():
        assert torch.equal(model.step(z), z)


def test_the_operator_and_the_decoder_are_periodic_in_the_tokens():
    """Rolling the tokens by one rolls the step's output by one token and the decoded field by one patch
    (8 points): circular convolutions and no absolute position embedding on a periodic domain."""
    model = _tiny_model().eval()
    _randomize(model.operator)
    _randomize(model.decoder, 1)
    z = torch.randn(2, model.tokens, model.dim)
    with torch.no_grad():
        assert torch.allclose(model.step(z.roll(1, dims=1)), model.step(z).roll(1, dims=1), atol=1e-5)
        assert torch.allclose(model.decode(z.roll(1, dims=1)), model.decode(z).roll(8, dims=-1), atol=1e-5)


def test_stochastic_depth_rates_grow_linearly_and_scale_the_kept_branches():
    """depths [1,1,1] with drop_path 0.2: block rates 0, 0.1, 0.2. A kept branch is divided by 1 − p (so its mean
    is unchanged); in eval mode nothing is dropped."""
    from ups.models.operator import DropPath, LatentOperator

    op = LatentOperator(4, 8, 16, [1, 1, 1], heads=1, group_size=2, drop_path=0.2)
    assert [blk.drop.p for st in op.stages for blk in st] == pytest.approx([0.0, 0.1, 0.2])
    drop = DropPath(0.25).train()
    torch.manual_seed(0)
    out = drop(torch.ones(4000, 2, 3))
    assert out.unique().tolist() == pytest.approx([0.0, 4 / 3])
    assert float(out.mean()) == pytest.approx(1.0, abs=0.05)
    assert torch.equal(drop.eval()(torch.ones(5, 2)), torch.ones(5, 2))


def test_attention_and_mlp_see_group_normalised_tokens_and_the_long_skip_fuses_the_first_stage():
    """Pre-norm blocks: the qkv and MLP inputs have mean 0 (variance at most 1) over each group of ``group_size``
    channels of each token (GroupNorm's affine starts at 1, 0). The last stage's skip fuses [h, first stage's output]."""
    model = _tiny_model()
    op = model.operator
    seen: dict[str, torch.Tensor] = {}
    blk = op.stages[1][0]
    blk.qkv.register_forward_pre_hook(lambda m, a: seen.setdefault("qkv", a[0]))
    blk.mlp[0].register_forward_pre_hook(lambda m, a: seen.setdefault("mlp", a[0]))
    op.stages[0][-1].register_forward_hook(lambda m, a, out: seen.setdefault("stage0", out))
    op.skips[0].register_forward_pre_hook(lambda m, a: seen.setdefault("skip", a[0]))
    op.eval()
    with torch.no_grad():
        op(torch.randn(3, model.tokens, model.dim) * 5 + 2)
    for name in ("qkv", "mlp"):
        g = seen[name].reshape(3, model.tokens, -1, 2)  # (B, N, groups, group_size=2)
        assert torch.allclose(g.mean(-1), torch.zeros(()), atol=1e-4), name
        assert float(g.var(-1, unbiased=False).max()) <= 1.0 + 1e-4, name  # (below 1 only where eps matters)
    h = seen["skip"].shape[-1] // 2
    assert torch.equal(seen["skip"][..., h:], seen["stage0"])


def test_the_decoder_queries_cell_centres_inside_their_patch():
    """8 points on 4 tokens: centres (j+½)/8 lie in patches 0,0,1,1,2,2,3,3 at local s = ¼, ¾ (feature 2s−1 = ∓½)."""
    dec = _tiny_model().decoder
    idx, feats = dec.query(8)
    assert idx.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert feats[:, 0].tolist() == pytest.approx([-0.5, 0.5] * 4)


def test_the_decoder_denormalises_and_its_fourier_features_reach_the_output():
    """Output = net · field_std + field_mean; with the gain conv at zero the Fourier features still enter
    (h = context + (1 + 0)·ff), so the field varies inside a patch."""
    model = _tiny_model().eval()
    _randomize(model.decoder, 2)
    dec = model.decoder
    z = torch.randn(2, model.tokens, model.dim)
    with torch.no_grad():
        base = dec(z)
        dec.field_mean.fill_(3.0)
        dec.field_std.fill_(2.0)
        assert torch.allclose(dec(z), 2 * base + 3, atol=1e-5)
        dec.scale.weight.zero_()
        dec.scale.bias.zero_()
        u = dec(z).reshape(2, model.tokens, 8)  # (B, token, point in its patch)
    assert float((u - u.mean(-1, keepdim=True)).abs().max()) > 1e-3


def test_the_encoder_uses_the_newest_frames_normalised_and_pads_with_the_oldest():
    """3 context frames: a longer context is cut to its newest 3, a shorter one padded by repeating its oldest
    frame; the field is normalised by the stored mean/std; the token mixer is a residual branch."""
    from ups.models.encoder import FieldEncoder

    torch.manual_seed(0)
    enc = FieldEncoder(32, 4, 8, 16, context_frames=3)
    a, b, c, d = torch.randn(4, 2, 1, 32)
    with torch.no_grad():
        assert torch.equal(enc(torch.cat([d, a, b, c], 1)), enc(torch.cat([a, b, c], 1)))
        assert torch.equal(enc(torch.cat([a, b], 1)), enc(torch.cat([a, a, b], 1)))
        ctx = torch.cat([a, b, c], 1)
        ref = enc(ctx)
        enc.field_mean.fill_(1.5)
        enc.field_std.fill_(4.0)
        assert torch.allclose(enc(ctx * 4.0 + 1.5), ref, atol=1e-5)
        enc.mix.weight.zero_()
        enc.mix.bias.zero_()
        z, z2 = enc(ctx), enc(ctx + 0.5 * torch.randn_like(ctx))
    assert not torch.allclose(z, z2, atol=1e-3)  # without the mixer the patch embedding still reaches the tokens


def test_periodic_resample_interpolates_between_cell_centres_across_the_seam():
    """u = [0, 4, 8, 12] on 4 cells onto 8: centres at source coordinates −¼, ¼, ¾, …, 3¼ (the first and last
    wrap around): 3, 1, 3, 5, 7, 9, 11, 9."""
    from ups.models.encoder import periodic_resample

    u = torch.tensor([[[0.0, 4.0, 8.0, 12.0]]])
    assert periodic_resample(u, 8)[0, 0].tolist() == pytest.approx([3, 1, 3, 5, 7, 9, 11, 9])
    assert torch.equal(periodic_resample(u, 4), u)


def test_count_parameters_trainable_only_skips_frozen_ones():
    model = _tiny_model()
    total = count_parameters(model)
    model.encoder.requires_grad_(False)
    enc = sum(p.numel() for p in model.encoder.parameters())
    assert count_parameters(model, trainable_only=True) == total - enc
    assert count_parameters(model) == total


def test_sample_residual_picks_the_sampler_and_scales_by_residual_std(monkeypatch):
    """Undistilled (or teacher=True): the EDM teacher with max(steps, sample_steps) steps; distilled: the consistency
    student with ``steps``. Either way the unit-scale sample is multiplied by residual_std."""
    import ups.models.ups_model as um

    calls: list[tuple[str, int]] = []

    def fake(name: str):
        def sampler(net, cond, steps, *a, **k):
            calls.append((name, steps))
            return torch.ones_like(cond)
        return sampler

    monkeypatch.setattr(um, "edm_sample", fake("edm"))
    monkeypatch.setattr(um, "consistency_sample", fake("cm"))
    model = _tiny_model(**{"diffusion.sample_steps": "4"})
    base = torch.zeros(2, model.tokens, model.dim)
    model.residual_std.fill_(0.25)
    assert torch.equal(model.sample_residual(base, steps=2), torch.full_like(base, 0.25))
    model.distilled.fill_(True)
    model.sample_residual(base, steps=2)
    model.sample_residual(base, steps=6, teacher=True)
    assert calls == [("edm", 4), ("cm", 2), ("edm", 6)]


def test_rollout_decodes_every_stepped_state():
    model = _tiny_model().eval()
    _randomize(model.operator)
    ctx = torch.randn(2, 1, 32)
    with torch.no_grad():
        roll = model.rollout(ctx, 2)
        z1 = model.step(model.encode(ctx))
        assert torch.allclose(roll[:, 0], model.decode(z1), atol=1e-6)
        assert torch.allclose(roll[:, 1], model.decode(model.step(z1)), atol=1e-6)


# ------------------------------------------------------------------ diffusion: preconditioning, loss, samplers
class _Const(torch.nn.Module):
    """Stand-in denoiser D(x, σ, cond) = scale·x, recording the σ it is called with."""

    def __init__(self, scale: float = 0.0, sigma_data: float = 0.5) -> None:
        super().__init__()
        self.scale, self.sigma_data = scale, sigma_data
        self.sigmas: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.sigmas.append(sigma)
        return self.scale * x


def _randn(shape: tuple[int, ...], seed: int, draws: int = 1) -> list[torch.Tensor]:
    """The first ``draws`` standard normal tensors a generator seeded ``seed`` gives."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(draws)]


def test_edm_denoiser_feeds_the_net_c_in_scaled_input():
    """D(x, σ) = c_skip x + c_out F(c_in x, …) with c_in = 1/√(σ² + σ_d²): σ = σ_d = 0.5 gives c_in = √2."""
    from ups.models.diffusion import EDMDenoiser

    seen: list[torch.Tensor] = []

    class Net(torch.nn.Module):
        def forward(self, x, noise, cond):
            seen.append(x)
            return torch.zeros_like(x)

    den = EDMDenoiser(Net(), sigma_data=0.5)
    x = torch.randn(2, 4, 8)
    out = den(x, torch.full((2,), 0.5), torch.zeros_like(x))
    assert torch.allclose(seen[0], x * 2 ** 0.5, atol=1e-6)
    assert torch.allclose(out, 0.5 * x, atol=1e-6)  # c_skip(σ_d) = ½, the net's output 0
    assert karras_sigmas(1, 0.002, 80.0).tolist() == [80.0]


def test_edm_loss_weights_the_error_by_lambda_sigma():
    """σ_min = σ_max = 1, σ_d = ½, a denoiser that outputs 0, residual 1: λ(σ) = (σ² + σ_d²)/(σ σ_d)² = 5."""
    from ups.models.diffusion import edm_loss

    loss = edm_loss(_Const(0.0, 0.5), torch.ones(3, 4, 8), torch.zeros(3, 4, 8), 1.0, 1.0,
                    generator=torch.Generator().manual_seed(0))
    assert float(loss) == pytest.approx(5.0)


def test_edm_loss_draws_sigma_log_uniformly():
    """σ log-uniform on [0.01, 100]: its median is 1 (uniform on the interval it would be about 50)."""
    from ups.models.diffusion import edm_loss

    teacher = _Const()
    edm_loss(teacher, torch.zeros(2000, 1, 1), torch.zeros(2000, 1, 1), 0.01, 100.0,
             generator=torch.Generator().manual_seed(0))
    s = teacher.sigmas[0]
    assert 0.5 < float(s.median()) < 2.0 and float(s.min()) >= 0.01 and float(s.max()) <= 100.0


def test_edm_sample_with_a_zero_denoiser_shrinks_the_start_noise_to_sigma_min():
    """D ≡ 0: each Euler step multiplies x by σ_{i+1}/σ_i, so x ends at σ_min·ε from its start σ_max·ε."""
    from ups.models.diffusion import edm_sample

    cond = torch.zeros(2, 4, 8)
    out = edm_sample(_Const(), cond, 3, 0.5, 10.0, generator=torch.Generator().manual_seed(7))
    (eps,) = _randn((2, 4, 8), 7)
    assert torch.allclose(out, 0.5 * eps, atol=1e-5)


def test_consistency_distillation_targets_the_ema_student_one_teacher_step_lower():
    """sigmas [2, 1], r = 0, teacher D ≡ 0: x_hi = 2ε and the Euler step gives x_lo = ε. With identity students
    the loss is mean((2ε − ε)²) = mean(ε²); with an EMA target that outputs 0 it is mean((2ε)²), 4 times that
    (the target at σ_hi, or the live student as target, gives another ratio)."""
    from ups.models.diffusion import consistency_distill_loss

    class Ident(torch.nn.Module):
        def forward(self, x, sigma, cond):
            return x

    class Zero(torch.nn.Module):
        def forward(self, x, sigma, cond):
            return torch.zeros_like(x)

    r = torch.zeros(3, 4, 8)
    sig = torch.tensor([2.0, 1.0])

    def loss(target: torch.nn.Module) -> float:
        g = torch.Generator().manual_seed(5)
        out = consistency_distill_loss(Ident(), target, _Const(), r, r, sig, generator=g)
        return float(out)

    # the same ε in both (same generator seed): the EMA target's output alone makes the difference
    ident, zero = loss(Ident()), loss(Zero())
    assert ident > 0 and zero == pytest.approx(4 * ident, rel=1e-5)


def test_consistency_sampling_renoises_to_each_level_above_sigma_min():
    """Identity student, 2 steps on [σ_min, σ_max] = [0.5, 2]: levels σ_0 = 2, σ_1 = karras(3)[1];
    x = σ_0 ε_0 + √(σ_1² − σ_min²) ε_1."""
    from ups.models.diffusion import consistency_sample

    class Ident(torch.nn.Module):
        def forward(self, x, sigma, cond):
            return x

    cond = torch.zeros(2, 4, 8)
    out = consistency_sample(Ident(), cond, 2, 0.5, 2.0, generator=torch.Generator().manual_seed(3))
    e0, e1 = _randn((2, 4, 8), 3, 2)
    s1 = float(karras_sigmas(3, 0.5, 2.0)[1])
    assert torch.allclose(out, 2.0 * e0 + (s1 ** 2 - 0.25) ** 0.5 * e1, atol=1e-5)


def test_sample_noise_gives_each_sample_its_own_rows_in_order():
    """Two samples with K = 2 rows each (row-major as sample_next lays them): rows 0–1 from sample 0's generator."""
    from ups.models.diffusion import SampleNoise

    noise = SampleNoise([torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)])
    out = noise.randn_like(torch.zeros(4, 3))
    assert torch.equal(out[:2], _randn((2, 3), 1)[0]) and torch.equal(out[2:], _randn((2, 3), 2)[0])


def test_the_residual_denoiser_mixes_information_across_tokens():
    """Each layer adds the token mean: the output at token 0 depends on the input at token 3."""
    from ups.models.diffusion import ResidualDenoiser

    torch.manual_seed(0)
    net = ResidualDenoiser(tokens=4, dim=8, hidden=16, num_layers=2)
    x, cond, noise = torch.randn(1, 4, 8), torch.randn(1, 4, 8), torch.zeros(1)
    y = x.clone()
    y[:, 3] += 1.0
    with torch.no_grad():
        assert float((net(x, noise, cond)[:, 0] - net(y, noise, cond)[:, 0]).abs().max()) > 1e-4
