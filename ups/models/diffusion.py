"""Diffusion residual in latent space and its consistency-distilled few-step sampler.

The residual r = (z_true_{t+1} − step(z_t)) / residual_std is modelled conditionally on the operator
prediction step(z_t). Noise schedule and scalings are small pure functions (EDM, Karras et al. 2022;
consistency models, Song et al. 2023); the network is ``ResidualDenoiser``; samplers are functions.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


# ------------------------------------------------------------------ scalings (pure functions)
def edm_scalings(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EDM preconditioning: (c_skip, c_out, c_in) for the teacher denoiser."""
    s2, d2 = sigma ** 2, sigma_data ** 2
    return d2 / (s2 + d2), sigma * sigma_data / torch.sqrt(s2 + d2), 1.0 / torch.sqrt(s2 + d2)


def consistency_scalings(sigma: torch.Tensor, sigma_data: float, sigma_min: float
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Consistency-model boundary scalings: c_skip(σ_min)=1, c_out(σ_min)=0, so f(x, σ_min)=x."""
    d2 = sigma_data ** 2
    c_skip = d2 / ((sigma - sigma_min) ** 2 + d2)
    c_out = (sigma - sigma_min) * sigma_data / torch.sqrt(sigma ** 2 + d2)
    c_in = 1.0 / torch.sqrt(sigma ** 2 + d2)
    return c_skip, c_out, c_in


def c_noise(sigma: torch.Tensor) -> torch.Tensor:
    return 0.25 * torch.log(sigma)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """n noise levels from σ_max down to σ_min (descending), Karras ρ-spacing; n=1 → [σ_max]."""
    if n <= 1:
        return torch.tensor([sigma_max])
    i = torch.arange(n, dtype=torch.float64) / (n - 1)
    s = (sigma_max ** (1 / rho) + i * (sigma_min ** (1 / rho) - sigma_max ** (1 / rho))) ** rho
    return s.float()


class SampleNoise:
    """Noise drawn from one generator per forecast sample, so what a sample draws does not depend on the samples
    that share its batch (``eval.batch_size``) or on which of them TTC's gate searched: one ``torch.Generator``
    drawing for a whole batch gave a sample other noise in a batch of 4 than in one of 8.

    ``rows(sample_of_row)`` is the view a sampler reads: which sample each row of the latent batch it is given
    belongs to (its rows may repeat a row ``k`` times, row-major, as ``sample_next`` does); without it, row ``i`` is
    sample ``i``."""

    def __init__(self, generators: Sequence[torch.Generator], sample_of_row: torch.Tensor | None = None) -> None:
        self.generators = list(generators)
        self.sample_of_row = sample_of_row

    @classmethod
    def seeded(cls, seed: int, stream: int, samples: Sequence[int], device: torch.device | str) -> "SampleNoise":
        """One generator per sample index in ``samples`` (their place in the evaluated split), seeded from
        (``seed``, ``stream``, index): the same sample draws the same noise in any batch."""
        seeds = [int(np.random.SeedSequence([int(seed), int(stream), int(i)]).generate_state(1)[0]) for i in samples]
        return cls([torch.Generator(device=device).manual_seed(s) for s in seeds])

    def rows(self, sample_of_row: torch.Tensor) -> "SampleNoise":
        """This noise for a latent batch whose row ``r`` belongs to sample ``sample_of_row[r]`` (positions in
        ``generators``)."""
        return SampleNoise(self.generators, sample_of_row.detach().to("cpu", torch.long))

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        """Standard normal noise shaped like ``x`` (R, …): each sample's rows from its own generator, in row order."""
        owner = self.sample_of_row if self.sample_of_row is not None else torch.arange(len(self.generators))
        if owner.numel() == 0 or x.shape[0] % owner.numel():
            raise ValueError(f"SampleNoise: {x.shape[0]} rows for {owner.numel()} described rows")
        owner = owner.repeat_interleave(x.shape[0] // owner.numel())  # sample_next's K copies of each row
        dev = self.generators[0].device
        out = torch.empty(x.shape, device=dev, dtype=x.dtype)
        for s in torch.unique(owner).tolist():
            at = (owner == s).nonzero().squeeze(1).to(dev)
            out[at] = torch.randn((at.numel(), *x.shape[1:]), generator=self.generators[s], device=dev, dtype=x.dtype)
        return out.to(x.device)


def randn_like(x: torch.Tensor, generator: torch.Generator | SampleNoise | None) -> torch.Tensor:
    """Standard normal noise shaped like x, drawn from ``generator`` on its own device (a ``SampleNoise``: from each
    sample's own generator)."""
    if isinstance(generator, SampleNoise):
        return generator.randn_like(x)
    dev = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=dev, dtype=x.dtype).to(x.device)


def rand(n: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    dev = generator.device if generator is not None else device
    return torch.rand(n, generator=generator, device=dev).to(device)


# ------------------------------------------------------------------ network
class ResidualDenoiser(nn.Module):
    """F(x_in (B, N, D), c_noise (B,), cond (B, N, D)) → (B, N, D): token MLP with global mixing."""

    def __init__(self, tokens: int, dim: int, hidden: int, num_layers: int) -> None:
        super().__init__()
        self.inp = nn.Linear(2 * dim, hidden)
        self.pos = nn.Parameter(torch.zeros(tokens, hidden))
        self.register_buffer("freqs", torch.exp(torch.linspace(0, math.log(64.0), hidden // 4 or 1)), persistent=False)
        self.noise = nn.Sequential(nn.Linear(2 * self.freqs.numel(), hidden), nn.GELU(), nn.Linear(hidden, hidden))
        self.layers = nn.ModuleList(
            nn.ModuleDict({"norm": nn.LayerNorm(hidden), "mix": nn.Linear(hidden, hidden),
                           "mlp": nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(), nn.Linear(2 * hidden, hidden))})
            for _ in range(max(1, num_layers)))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        ang = noise[:, None] * self.freqs  # (B, F)
        e = self.noise(torch.cat([torch.sin(ang), torch.cos(ang)], dim=-1))[:, None, :]  # (B, 1, H)
        h = self.inp(torch.cat([x, cond], dim=-1)) + self.pos + e  # (B, N, H)
        for layer in self.layers:
            y = layer["norm"](h)  # (B, N, H)
            y = y + layer["mix"](y.mean(dim=1, keepdim=True))  # global token context
            h = h + layer["mlp"](y)  # (B, N, H)
        return self.out(h)  # (B, N, D)


class EDMDenoiser(nn.Module):
    """Teacher D(x, σ | cond) = c_skip x + c_out F(c_in x, c_noise(σ), cond)."""

    def __init__(self, net: ResidualDenoiser, sigma_data: float) -> None:
        super().__init__()
        self.net, self.sigma_data = net, sigma_data

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cs, co, ci = (c[:, None, None] for c in edm_scalings(sigma, self.sigma_data))
        return cs * x + co * self.net(ci * x, c_noise(sigma), cond)  # (B, N, D)


class ConsistencyModel(nn.Module):
    """Student f(x, σ | cond) = c_skip x + c_out F(c_in x, c_noise(σ), cond), f(x, σ_min) = x."""

    def __init__(self, net: ResidualDenoiser, sigma_data: float, sigma_min: float) -> None:
        super().__init__()
        self.net, self.sigma_data, self.sigma_min = net, sigma_data, sigma_min

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cs, co, ci = (c[:, None, None] for c in consistency_scalings(sigma, self.sigma_data, self.sigma_min))
        return cs * x + co * self.net(ci * x, c_noise(sigma), cond)  # (B, N, D)


# ------------------------------------------------------------------ losses and samplers
def edm_loss(teacher: EDMDenoiser, r: torch.Tensor, cond: torch.Tensor, sigma_min: float, sigma_max: float,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Denoising score matching on the residual r (B, N, D); σ log-uniform in [σ_min, σ_max]."""
    B = r.shape[0]
    u = rand(B, generator, r.device)
    sigma = torch.exp(math.log(sigma_min) + u * (math.log(sigma_max) - math.log(sigma_min)))  # (B,)
    noise = randn_like(r, generator)
    d = teacher(r + sigma[:, None, None] * noise, sigma, cond)  # (B, N, D)
    sd = teacher.sigma_data
    weight = (sigma ** 2 + sd ** 2) / (sigma * sd) ** 2  # (B,)
    return (weight[:, None, None] * (d - r) ** 2).mean()


@torch.no_grad()
def edm_sample(teacher: EDMDenoiser, cond: torch.Tensor, steps: int, sigma_min: float, sigma_max: float,
               generator: torch.Generator | SampleNoise | None = None, noise_scale: float = 1.0) -> torch.Tensor:
    """Teacher Euler sampler from σ_max to σ_min in ``steps`` steps: cond (B, N, D) → r (B, N, D)."""
    sig = karras_sigmas(steps + 1, sigma_min, sigma_max).to(cond.device)
    x = noise_scale * sig[0] * randn_like(cond, generator)
    for i in range(steps):
        s = sig[i].expand(cond.shape[0])
        d = (x - teacher(x, s, cond)) / sig[i]
        x = x + (sig[i + 1] - sig[i]) * d
    return x


def consistency_distill_loss(student: ConsistencyModel, student_ema: ConsistencyModel, teacher: EDMDenoiser,
                             r: torch.Tensor, cond: torch.Tensor, sigmas: torch.Tensor,
                             generator: torch.Generator | None = None) -> torch.Tensor:
    """Consistency distillation (Song et al. 2023, CD with an Euler ODE step of the teacher).

    For a random adjacent pair σ_{i} > σ_{i+1} of ``sigmas`` (descending): x_i = r + σ_i ε;
    x_{i+1} = one teacher ODE step from x_i; loss = ||f_θ(x_i, σ_i) − f_ema(x_{i+1}, σ_{i+1})||².
    """
    B = r.shape[0]
    idx = (rand(B, generator, r.device) * (len(sigmas) - 1)).long().clamp_(max=len(sigmas) - 2)
    sigmas = sigmas.to(r.device)
    s_hi, s_lo = sigmas[idx], sigmas[idx + 1]  # (B,)
    noise = randn_like(r, generator)
    x_hi = r + s_hi[:, None, None] * noise  # (B, N, D)
    with torch.no_grad():
        d = (x_hi - teacher(x_hi, s_hi, cond)) / s_hi[:, None, None]
        x_lo = x_hi + (s_lo - s_hi)[:, None, None] * d
        target = student_ema(x_lo, s_lo, cond)
    return ((student(x_hi, s_hi, cond) - target) ** 2).mean()


@torch.no_grad()
def consistency_sample(student: ConsistencyModel, cond: torch.Tensor, steps: int, sigma_min: float,
                       sigma_max: float, generator: torch.Generator | SampleNoise | None = None,
                       noise_scale: float = 1.0) -> torch.Tensor:
    """Multistep consistency sampling: cond (B, N, D) → r (B, N, D) in ``steps`` network calls."""
    sig = karras_sigmas(max(1, steps) + 1, sigma_min, sigma_max)[:-1].to(cond.device)  # steps levels > σ_min
    B = cond.shape[0]

    def eps() -> torch.Tensor:
        return noise_scale * randn_like(cond, generator)

    x = student(sig[0] * eps(), sig[0].expand(B), cond)
    for s in sig[1:]:
        x = student(x + math.sqrt(max(float(s) ** 2 - sigma_min ** 2, 0.0)) * eps(), s.expand(B), cond)
    return x
