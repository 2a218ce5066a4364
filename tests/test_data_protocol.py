"""Protocol loader on the tiny fixture data and on PDEBench-shaped files."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ups.config import ConfigError


def test_tiny_data_shapes(tiny_data, tiny_cfg):
    d = tiny_data
    assert d.train.shape == (52, 41, 64) and d.val.shape == (6, 41, 64) and d.test.shape == (6, 41, 64)
    assert d.train.dtype == torch.float32
    assert d.x.shape == (64,) and d.t.shape == (41,)
    assert abs(float(d.t[1] - d.t[0]) - 0.05) < 1e-6
    assert d.nu == tiny_cfg.data.nu and d.initial_step == 10
    assert len(d.data_hash) == 16 and d.source.exists()
    assert torch.isfinite(d.train).all()


def _indexed_file(path, n=20, t_frames=21, x_points=16):
    """tensor[i] = i, so the split is visible in the values."""
    from ups.data.hdf5 import write_pdebench

    u = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, t_frames, x_points)).copy()
    return write_pdebench(path, u, (np.arange(x_points) + 0.5) / x_points, np.linspace(0, 0.2, t_frames), {})


def _cfg(path, *extra):
    from ups.config import load_config

    return load_config([f"data.path={path}", "data.initial_step=2", *extra]).data


def _ids(split):
    return split[:, 0, 0].int().tolist()


def test_split_follows_pdebench(tmp_path):
    """PDEBench (FNODatasetSingle): test = first int(N·test_ratio), train = the rest; val = end of train."""
    from ups.data.protocol import load_protocol

    p = _indexed_file(tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5")
    d = load_protocol(_cfg(p))
    assert _ids(d.test) == [0, 1] and _ids(d.train) == list(range(2, 18)) and _ids(d.val) == [18, 19]
    assert d.train.shape[1:] == (5, 4)  # reduced_resolution_t 5 (21→5), reduced_resolution 4 (16→4)
    assert d.nu == 0.1  # from the file name
    d10 = load_protocol(_cfg(p, "data.num_samples_max=10", "data.reduced_resolution=1", "data.reduced_resolution_t=1"))
    assert _ids(d10.test) == [0] and _ids(d10.train) == list(range(1, 9)) and _ids(d10.val) == [9]
    assert d10.train.shape[1:] == (21, 16)
    assert d10.data_hash != d.data_hash


def test_protocol_refusals(tmp_path):
    from ups.data.protocol import ProtocolError, load_protocol

    p = _indexed_file(tmp_path / "f.hdf5")
    with pytest.raises(ProtocolError, match=r"initial_step=10.*Fix"):
        load_protocol(_cfg(p, "data.initial_step=10"))
    with pytest.raises(ProtocolError, match=r"every split needs ≥ 1.*Fix"):
        load_protocol(_cfg(p, "data.num_samples_max=5"))
    with pytest.raises(ConfigError, match=r"'data.test_ratio' = 1.5"):  # refused with the config
        _cfg(p, "data.test_ratio=1.5")
    cfg = _cfg(p)
    cfg.test_ratio = 1.5  # set past the config's checks: the loader refuses it too
    with pytest.raises(ProtocolError, match=r"'data.test_ratio' = 1.5"):
        load_protocol(cfg)
