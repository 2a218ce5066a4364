"""Protocol loader on the tiny fixture data and on PDEBench-shaped files."""
from __future__ import annotations

import numpy as np
import torch


def test_tiny_data_shapes(tiny_data, tiny_cfg):
    d = tiny_data
    assert d.train.shape == (52, 41, 64) and d.val.shape == (6, 41, 64) and d.test.shape == (6, 41, 64)
    assert d.train.dtype == torch.float32
    assert d.x.shape == (64,) and d.t.shape == (41,)
    assert abs(float(d.t[1] - d.t[0]) - 0.05) < 1e-6
    assert d.nu == tiny_cfg.data.nu and d.initial_step == 10
    assert len(d.data_hash) == 16 and d.source.exists()
    assert torch.isfinite(d.train).all()
