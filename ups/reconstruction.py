"""The autoencoder's round trip of the true frames: the error a forecast would keep with a perfect operator.

A latent surrogate forecasts ``decode(z_t)``. Had its operator predicted exactly ``encode(true frames up to t)``,
its forecast of frame t would be ``decode(encode(…))``: the round trip below. Its error against the truth, scored
the way the forecast is (``recon_nrmse``, and PDEBench's fRMSE bands), tells a researcher which half of the model
to spend capacity on: a forecast error close to the round trip's is the autoencoder's (latent tokens, dim, decoder),
one far above it is the operator's. It is a reference point, not a strict bound: another latent state may decode
closer to the truth than the encoder's.

No Ray, no training code; any ``LatentForecaster`` (encode/decode) works.
"""
from __future__ import annotations

from typing import Any

import torch

from ups import metrics

RECON_KEYS: tuple[str, ...] = ("recon_nrmse", "recon_frmse_low_pdebench", "recon_frmse_mid_pdebench",
                               "recon_frmse_high_pdebench")


def _context_frames(model: Any) -> int:
    return max(1, int(getattr(getattr(model, "encoder", None), "context_frames", 1)))


@torch.no_grad()
def round_trip(model: Any, traj: torch.Tensor, initial_step: int, batch_size: int = 64) -> torch.Tensor:
    """``decode(encode(frames up to t))`` for every predicted frame t ≥ ``initial_step`` of ``traj`` (B, T, X) on the
    model's grid → (B, T - initial_step, X). The encoder sees the same number of most recent true frames as when it
    encodes a forecast's context (``encoder.context_frames``; the first frame repeated where fewer exist). At most
    ``batch_size`` frames go through the model at once, as many as one step of a forecast of ``batch_size`` samples:
    a large model on a shared GPU needs no more memory for this than for its rollout."""
    cf = _context_frames(model)
    B, T, X = traj.shape
    padded = torch.cat([traj[:, :1].expand(B, cf - 1, X), traj], dim=1)  # (B, T + cf - 1, X)
    windows = padded.unfold(1, cf, 1)[:, initial_step:]  # (B, T', X, cf): the window ending at frame t
    windows = windows.permute(0, 1, 3, 2).reshape(-1, cf, X)  # (B·T', cf, X), a view where it can be
    step = max(1, batch_size)
    rec = [model.decode(model.encode(windows[i:i + step])) for i in range(0, windows.shape[0], step)]  # (≤step, X)
    return torch.cat(rec).reshape(B, T - initial_step, X)  # (B, T', X)


def round_trip_metrics(recon: torch.Tensor, true: torch.Tensor, initial_step: int, *,
                       bands: bool = True) -> dict[str, float]:
    """Scores of a round trip ``recon`` (B, T', X) against ``true`` (B, T, X), as a forecast is scored: ``recon_nrmse``
    over the predicted frames, and with ``bands`` PDEBench's fRMSE low/mid/high (keys ``RECON_KEYS``)."""
    full = torch.cat([true[:, :initial_step].to(recon.dtype), recon], dim=1)  # (B, T, X), context from the truth
    out = {"recon_nrmse": metrics.nrmse(full, true, initial_step)}
    if bands:
        s = metrics.pdebench_metric_set(full, true, initial_step)
        out.update({k: s[k.removeprefix("recon_")] for k in RECON_KEYS[1:]})
    return out
