"""Latent cache: every training frame encoded once by the frozen encoder, stored in a compact dtype.

The operator, diffusion and distillation stages read latent windows from it instead of re-encoding
fields every step. The cache is saved next to the run (``latent_cache.pt``) keyed by a hash of the
encoder weights, the data and the dtype, so a resumed run reuses it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from ups.models.encoder import FieldEncoder
from ups.outputs import atomic_path

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def encoder_key(encoder: FieldEncoder, data_hash: str, dtype: str) -> str:
    h = hashlib.sha1(f"{data_hash}|{dtype}".encode())
    for name, t in sorted(encoder.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()[:16]


@torch.no_grad()
def encode_trajectories(encoder: FieldEncoder, traj: torch.Tensor, batch_size: int = 256,
                        device: torch.device | str = "cpu") -> torch.Tensor:
    """Encode every frame of (M, T, X) trajectories → latents (M, T, N, D) (float32).

    Frame t is encoded from frames ≤ t (the encoder's ``context_frames`` most recent ones).
    """
    M, T, X = traj.shape
    cf = encoder.context_frames
    was_training = encoder.training
    encoder.eval()
    out = []
    for i in range(0, M, batch_size):
        chunk = traj[i:i + batch_size].to(device)  # (b, T, X)
        b = chunk.shape[0]
        if cf == 1:
            z = encoder(chunk.reshape(b * T, 1, X))  # (b·T, N, D)
        else:
            pad = torch.cat([chunk[:, :1].expand(b, cf - 1, X), chunk], dim=1)  # (b, T+cf-1, X)
            windows = pad.unfold(1, cf, 1).permute(0, 1, 3, 2)  # (b, T, cf, X)
            z = encoder(windows.reshape(b * T, cf, X))
        out.append(z.reshape(b, T, *z.shape[1:]).float().cpu())
    encoder.train(was_training)
    return torch.cat(out, dim=0)


def build_latent_cache(encoder: FieldEncoder, traj: torch.Tensor, data_hash: str, dtype: str,
                       path: Path | None = None, device: torch.device | str = "cpu") -> torch.Tensor:
    """Latents (M, T, N, D) in ``dtype``; loaded from ``path`` when its key matches, else encoded and saved."""
    key = encoder_key(encoder, data_hash, dtype)
    if path is not None and Path(path).exists():
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            if blob.get("key") == key and tuple(blob["latents"].shape[:2]) == tuple(traj.shape[:2]):
                return blob["latents"]
        except Exception:
            pass  # stale or damaged cache: rebuild it
    lat = encode_trajectories(encoder, traj, device=device).to(DTYPES[dtype])
    if path is not None:
        with atomic_path(path) as tmp:
            torch.save({"key": key, "latents": lat}, tmp)
    return lat
