"""Exponential moving average of a module's parameters (with the usual warm-up of the decay)."""
from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn


def warmup_decay(update: int) -> float:
    """The warm-up's cap on the decay at EMA update ``update`` (1-based): (1+t)/(10+t).

    A configured decay d is reached only from update (10d − 1)/(1 − d) on (0.999: 8,990; 0.9999: 89,990);
    over a stage with fewer optimizer steps every decay at or above ``warmup_decay(steps)`` trains the same
    weights (``ups.tune.prepare.ema_decay_notes`` says so before a sweep that searches such values)."""
    return (1 + update) / (10 + update)


def warmup_steps(decay: float) -> int:
    """The first EMA update at which the warm-up lets ``decay`` act (``warmup_decay``'s inverse): (10d − 1)/(1 − d).

    The closed form in floats can land a hair above the integer it equals (0.9: 80.00000000000001), and its
    ceiling was then one update late; the result is settled against ``warmup_decay`` itself."""
    if decay >= 1:
        return 0
    t = max(0, math.ceil((10 * decay - 1) / (1 - decay)))
    while t > 0 and warmup_decay(t - 1) >= decay:
        t -= 1
    while warmup_decay(t) < decay:
        t += 1
    return t


class EMA:
    """Shadow copy of ``params``; decay_t = min(decay, (1+t)/(10+t)) so early averages are not stale."""

    def __init__(self, params: Iterable[nn.Parameter], decay: float, shadow_module: nn.Module | None = None) -> None:
        """``shadow_module``: a copy of the module whose parameters hold the average (e.g. a CD target net)."""
        self.params = [p for p in params]
        self.decay = float(decay)
        if shadow_module is not None:
            self.shadow = [p.data for p in shadow_module.parameters()]
            if len(self.shadow) != len(self.params):
                raise ValueError("EMA shadow module does not match the averaged parameters")
            with torch.no_grad():
                for s, p in zip(self.shadow, self.params):
                    s.copy_(p)
        else:
            self.shadow = [p.detach().clone() for p in self.params]
        self.num_updates = 0

    @torch.no_grad()
    def update(self) -> None:
        self.num_updates += 1
        d = min(self.decay, warmup_decay(self.num_updates))
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - d)

    @torch.no_grad()
    def copy_to(self, params: Iterable[nn.Parameter] | None = None) -> None:
        for p, s in zip(self.params if params is None else list(params), self.shadow):
            p.copy_(s)

    @torch.no_grad()
    def swap(self) -> None:
        """Exchange live and shadow weights (call twice to restore)."""
        for p, s in zip(self.params, self.shadow):
            tmp = p.detach().clone()
            p.copy_(s)
            s.copy_(tmp)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "num_updates": self.num_updates, "shadow": [s.clone() for s in self.shadow]}

    def load_state_dict(self, state: dict) -> None:
        self.decay = float(state["decay"])
        self.num_updates = int(state["num_updates"])
        if len(state["shadow"]) != len(self.shadow):
            raise ValueError("EMA state does not match the model's parameters")
        for i, (s, v) in enumerate(zip(self.shadow, state["shadow"])):
            if tuple(v.shape) != tuple(s.shape):  # copy_ would broadcast a (1, 3) shadow into a (4, 3) one
                raise ValueError(f"EMA state does not match the model's parameters: shadow tensor {i} has shape "
                                 f"{tuple(v.shape)}, the parameter {tuple(s.shape)}")
            s.copy_(v)
