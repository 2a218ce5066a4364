"""FNO1d training-step cost: our truncated-DFT spectral convolution vs PDEBench's FFT layout (the baseline).

    python benchmarks/fno_step.py                  # batch 50, 256 points, 31-step rollout loss, 2 threads
    python benchmarks/fno_step.py --repeats 3 --threads 1

One training step = the PDEBench autoregressive rollout (10 context frames → 31 predicted frames)
forward, the summed MSE, backward and an Adam update, for

* ``pdebench``: the reference layout of pdebench/models/fno/fno.py (channels-first, full
  ``rfft``/``irfft`` per layer, complex weights, 1×1 ``Conv1d``), re-stated below for timing only;
* ``ups``: ``ups.models.fno.FNO1d`` (channels-last, two small matmuls against a truncated DFT
  basis per layer, ``Linear`` for the 1×1 convolution).

Both have 43,137 parameters; the outputs are checked to agree (same weights copied across) before
timing. Prints a JSON object and a one-line summary with the speed-up measured in this run
(wall-clock and process CPU time; on a shared machine CPU time is the steadier one).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ups.models.fno import FNO1d, fno_rollout  # noqa: E402


class _RefSpectralConv1d(nn.Module):
    def __init__(self, width: int, modes: int) -> None:
        super().__init__()
        self.modes = modes
        self.weights1 = nn.Parameter(torch.zeros(width, width, modes, dtype=torch.cfloat))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, N)
        x_ft = torch.fft.rfft(x)
        out_ft = torch.zeros(x.shape[0], self.weights1.shape[1], x.size(-1) // 2 + 1, dtype=torch.cfloat)
        out_ft[:, :, : self.modes] = torch.einsum("bix,iox->box", x_ft[:, :, : self.modes], self.weights1)
        return torch.fft.irfft(out_ft, n=x.size(-1))  # (B, C, N)


class _RefFNO1d(nn.Module):
    """PDEBench's FNO1d layout (for timing); weights copied from an ``ups`` FNO1d."""

    def __init__(self, src: FNO1d) -> None:
        super().__init__()
        w, m = src.width, src.modes
        self.padding = src.padding
        self.fc0 = nn.Linear(src.initial_step + 1, w)
        self.convs = nn.ModuleList(_RefSpectralConv1d(w, m) for _ in range(4))
        self.ws = nn.ModuleList(nn.Conv1d(w, w, 1) for _ in range(4))
        self.fc1, self.fc2 = nn.Linear(w, 128), nn.Linear(128, 1)
        with torch.no_grad():
            self.fc0.load_state_dict(src.fc0.state_dict())
            self.fc1.load_state_dict(src.fc1.state_dict())
            self.fc2.load_state_dict(src.fc2.state_dict())
            for rc, sc, rw, sw in zip(self.convs, src.convs, self.ws, src.ws):
                rc.weights1.copy_(torch.view_as_complex(sc.weight.detach().contiguous()))
                rw.weight.copy_(sw.weight[:, :, None])
                rw.bias.copy_(sw.bias)

    def forward(self, context: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
        b, _, n = context.shape
        x = torch.cat([context.transpose(1, 2), grid.reshape(1, n, 1).expand(b, n, 1)], dim=-1)  # (B, X, Ti+1)
        x = F.pad(self.fc0(x).permute(0, 2, 1), [0, self.padding])  # (B, W, X+P)
        for i, (conv, w) in enumerate(zip(self.convs, self.ws)):
            x = conv(x) + w(x)
            if i < 3:
                x = F.gelu(x)
        x = x[..., : -self.padding].permute(0, 2, 1)  # (B, X, W)
        return self.fc2(F.gelu(self.fc1(x))).squeeze(-1)  # (B, X)


def _generic_rollout(model: nn.Module, context: torch.Tensor, n_steps: int, grid: torch.Tensor) -> torch.Tensor:
    """PDEBench's loop: predict, append, slide the (B, Ti, X) window."""
    frames = []
    for _ in range(n_steps):
        nxt = model(context, grid)  # (B, X)
        frames.append(nxt)
        context = torch.cat([context[:, 1:], nxt[:, None]], dim=1)
    return torch.stack(frames, dim=1)  # (B, n_steps, X)


def _step_times(models: dict[str, nn.Module], data: torch.Tensor, grid: torch.Tensor,
                repeats: int) -> dict[str, dict[str, float]]:
    """Alternate one training step of each model per round, so load changes hit both alike."""
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    walls: dict[str, list[float]] = {k: [] for k in models}
    cpus: dict[str, list[float]] = {k: [] for k in models}
    for r in range(repeats + 1):  # round 0 warms up
        for k, model in models.items():
            w0, c0 = time.perf_counter(), time.process_time()
            roll = fno_rollout if isinstance(model, FNO1d) else _generic_rollout
            pred = roll(model, data[:, :10], data.shape[1] - 10, grid)  # type: ignore[arg-type]
            loss = ((pred - data[:, 10:]) ** 2).mean(dim=(0, 2)).sum()
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            if r:
                walls[k].append(time.perf_counter() - w0)
                cpus[k].append(time.process_time() - c0)
    return {k: {"wall_s_min": min(walls[k]), "wall_s_median": statistics.median(walls[k]),
                "cpu_s_min": min(cpus[k])} for k in models}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--resolution", type=int, default=256)
    p.add_argument("--frames", type=int, default=41)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    load = os.getloadavg()
    torch.manual_seed(0)
    ours = FNO1d()
    ref = _RefFNO1d(ours)
    grid = (torch.arange(a.resolution) + 0.5) / a.resolution
    data = torch.randn(a.batch, a.frames, a.resolution)
    with torch.no_grad():
        diff = float((ours(data[:, :10], grid) - ref(data[:, :10], grid)).abs().max())
    assert diff < 1e-4, f"reference and ours disagree by {diff}"
    times = _step_times({"pdebench": ref, "ups": ours}, data, grid, a.repeats)
    t_ref, t_ups = times["pdebench"], times["ups"]
    out = {
        "benchmark": "fno_step",
        "config": {"batch": a.batch, "resolution": a.resolution, "frames": a.frames, "threads": a.threads,
                   "repeats": a.repeats, "params": sum(q.numel() for q in ours.parameters())},
        "pdebench_fft": t_ref, "ups_dft": t_ups, "max_abs_output_diff": diff,
        "speedup_wall": t_ref["wall_s_min"] / t_ups["wall_s_min"],
        "speedup_cpu": t_ref["cpu_s_min"] / t_ups["cpu_s_min"],
        "loadavg_1m_before": load[0], "loadavg_1m_after": os.getloadavg()[0],
    }
    print(json.dumps(out, indent=1))
    print(f"fno_step: ups {t_ups['wall_s_min']:.2f} s vs PDEBench layout {t_ref['wall_s_min']:.2f} s per training step "
          f"(batch {a.batch}, {a.resolution} pts, {a.frames - 10}-step rollout) → ×{out['speedup_wall']:.2f} wall, "
          f"×{out['speedup_cpu']:.2f} CPU; load avg {load[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
