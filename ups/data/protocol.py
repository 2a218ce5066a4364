"""PDEBench's evaluation protocol on a 1D Burgers file (ours or PDEBench's).

Mirrors ``pdebench/models/fno/utils.py`` (FNODatasetSingle): strides ``reduced_resolution`` in x
and ``reduced_resolution_t`` in t, keep the first ``num_samples_max`` samples (-1: all), then the
**first** ``int(num_samples_max · test_ratio)`` samples are the test set and the rest is training
(that is what PDEBench's loaders do: ``data[:test_idx]`` if_test else ``data[test_idx:]``).
Validation takes the last ``int(num_samples_max · val_ratio)`` samples of the training part.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ups.config import ConfigError, cfg_value, check_protocol
from ups.data.cache import dataset_path
from ups.data.hdf5 import DataFileError, read_pdebench


class ProtocolError(ConfigError):
    """Protocol settings that do not fit the data; names the key and the fix."""


@dataclass
class ProtocolData:
    train: torch.Tensor  # (N_train, T, X) float32
    val: torch.Tensor  # (N_val, T, X)
    test: torch.Tensor  # (N_test, T, X)
    x: torch.Tensor  # (X,)
    t: torch.Tensor  # (T,)
    nu: float
    initial_step: int
    source: Path
    data_hash: str
    attrs: dict[str, Any]

    @property
    def resolution(self) -> int:
        return int(self.x.numel())

    @property
    def frames(self) -> int:
        return int(self.t.numel())

    def summary(self) -> str:
        return (f"{self.source.name}: ν={self.nu:g} train/val/test = {len(self.train)}/{len(self.val)}/"
                f"{len(self.test)}, T={self.frames}, X={self.resolution}, initial_step={self.initial_step}")


def _fingerprint(path: Path, attrs: dict[str, Any], shape: tuple[int, ...], first: np.ndarray,
                 last: np.ndarray) -> str:
    """Cheap content identity: our content hash if present, else shape + attrs + first/last sample."""
    h = hashlib.sha1()
    if "content_hash" in attrs:
        h.update(str(attrs["content_hash"]).encode())
    else:
        h.update(json.dumps({"shape": list(shape), "attrs": {k: str(v) for k, v in attrs.items()},
                             "size": path.stat().st_size}, sort_keys=True).encode())
        h.update(np.ascontiguousarray(first).tobytes())
        h.update(np.ascontiguousarray(last).tobytes())
    return h.hexdigest()


def load_protocol(data_cfg: Any) -> ProtocolData:
    """Load ``data_cfg.path`` (or the cached generated file) and apply the PDEBench protocol."""
    check_protocol(data_cfg, ProtocolError)
    path_value = cfg_value(data_cfg, "path")
    source = Path(str(path_value)).expanduser() if path_value else dataset_path(data_cfg)
    nmax = int(cfg_value(data_cfg, "num_samples_max"))
    rx, rt = int(cfg_value(data_cfg, "reduced_resolution")), int(cfg_value(data_cfg, "reduced_resolution_t"))
    bf = read_pdebench(source, max_samples=nmax, reduced_resolution=rx, reduced_resolution_t=rt)
    data = bf.tensor  # (N, T, X)
    n = data.shape[0]
    initial_step = int(cfg_value(data_cfg, "initial_step"))
    if data.shape[1] <= initial_step:
        raise ProtocolError(f"data: '{source}' has {data.shape[1]} frames after reduced_resolution_t={rt}, not more "
                            f"than initial_step={initial_step}. Fix: lower data.initial_step or data.reduced_resolution_t")
    if not np.isfinite(data).all():
        bad = int((~np.isfinite(data)).any(axis=(1, 2)).sum())
        raise DataFileError(f"{source}: 'tensor' holds NaN/inf in {bad} samples. Fix: regenerate the file "
                            "(`ups data generate …`) or drop those samples")
    test_ratio, val_ratio = float(cfg_value(data_cfg, "test_ratio")), float(cfg_value(data_cfg, "val_ratio"))
    test_idx = int(n * test_ratio)
    n_val = int(n * val_ratio)
    n_train = n - test_idx - n_val
    if test_idx < 1 or n_val < 1 or n_train < 1:
        raise ProtocolError(f"data: {n} samples from '{source}' give train/val/test = {n_train}/{n_val}/{test_idx}; "
                            "every split needs ≥ 1. Fix: raise data.n / data.num_samples_max or data.test_ratio / "
                            "data.val_ratio")
    nu = bf.attrs.get("nu")
    if nu is None:
        from ups.data.hdf5 import nu_from_name

        nu = nu_from_name(source)
    nu = float(nu) if nu is not None else float(cfg_value(data_cfg, "nu"))
    protocol = {"rx": rx, "rt": rt, "nmax": nmax, "test_ratio": test_ratio, "val_ratio": val_ratio,
                "initial_step": initial_step}
    fp = _fingerprint(source, bf.attrs, data.shape, data[0], data[-1])
    data_hash = hashlib.sha1((fp + json.dumps(protocol, sort_keys=True)).encode()).hexdigest()[:16]
    tensor = torch.from_numpy(data)
    return ProtocolData(
        train=tensor[test_idx: test_idx + n_train],
        val=tensor[test_idx + n_train:],
        test=tensor[:test_idx],
        x=torch.from_numpy(bf.x.astype(np.float32)),
        t=torch.from_numpy(bf.t.astype(np.float32)),
        nu=nu, initial_step=initial_step, source=source, data_hash=data_hash,
        attrs={**bf.attrs, "protocol": protocol},
    )
