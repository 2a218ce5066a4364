"""Learning-rate schedules: linear warmup, then constant or cosine decay (per optimizer step)."""
from __future__ import annotations

import math

import torch


def lr_factor(step: int, total_steps: int, warmup_steps: int, kind: str, min_progress: float = 0.0) -> float:
    """Multiplier of the base lr at optimizer step ``step`` (0-based).

    ``min_progress`` ∈ [0, 1] lets a wall-clock budget advance the cosine decay (fraction of the
    stage's time budget spent) when it runs out before the planned steps.
    """
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if kind == "constant":
        return 1.0
    if kind == "cosine":
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, max((step - warmup_steps) / span, min_progress))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown scheduler '{kind}': use 'constant' or 'cosine'")


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_ratio: float,
                    kind: str, clock: dict | None = None,
                    warmup_cap: int | None = None) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR over ``total_steps``; ``clock['progress']`` (if given) is the time-budget progress."""
    warmup = int(round(warmup_ratio * total_steps))
    if warmup_cap is not None:
        warmup = min(warmup, warmup_cap)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup, kind, clock["progress"] if clock else 0.0))
