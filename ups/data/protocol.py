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
from typing import Any, Sequence

import numpy as np
import torch

from ups.config import ConfigError, cfg_value, check_protocol
from ups.data.cache import dataset_path
from ups.data.hdf5 import (GRID_RTOL, DataFileError, FileInfo, check_grid, check_samples_digest, inspect_pdebench,
                           read_pdebench)

# |u| above this: squares summed over a sample overflow float32 (3.4e38), and every nRMSE on the file is NaN
MAX_ABS_VALUE = 1e15


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


def protocol_time_step(data_cfg: Any) -> float:
    """Time step between the protocol's frames that ``data.*`` describes (what a checkpoint is trained on)."""
    return (float(cfg_value(data_cfg, "t_final")) / (int(cfg_value(data_cfg, "frames")) - 1)
            * int(cfg_value(data_cfg, "reduced_resolution_t")))


def protocol_frames(data_cfg: Any) -> int:
    """Frames after ``reduced_resolution_t`` that ``data.*`` describes."""
    return len(range(0, int(cfg_value(data_cfg, "frames")), int(cfg_value(data_cfg, "reduced_resolution_t"))))


def check_file_matches_config(info: FileInfo, data_cfg: Any) -> None:
    """The checkpoint records ``data.frames/t_final/resolution`` and ``ups eval`` compares files against
    them (time step, frame count, the x offset of cell centres), so a training file must match them.

    Refused here, before any compute, with the overrides that describe the file.
    """
    t_frames, x_points = info.shape[1], info.shape[2]
    frames, t_final, res = (int(cfg_value(data_cfg, "frames")), float(cfg_value(data_cfg, "t_final")),
                            int(cfg_value(data_cfg, "resolution")))
    dt_file = float(info.t[1] - info.t[0]) if t_frames > 1 else None
    wrong = []
    if t_frames != frames:
        wrong.append(f"'{info.path}' has {t_frames} frames ('tensor' T) but data.frames={frames}")
    if dt_file is not None and frames > 1 and abs(dt_file - t_final / (frames - 1)) > GRID_RTOL * dt_file:
        wrong.append(f"its 't-coordinate' step is {dt_file:.6g} but data.t_final/(data.frames-1) = "
                     f"{t_final / (frames - 1):.6g}")
    if x_points != res:
        wrong.append(f"it has {x_points} points ('x-coordinate') but data.resolution={res}")
    elif abs(float(info.x[0]) - 0.5 / x_points) > GRID_RTOL / x_points:
        raise DataFileError(f"{info.path}: 'x-coordinate' starts at {float(info.x[0]):.6g}, not at the first cell "
                            f"centre 0.5/X = {0.5 / x_points:.6g}; a checkpoint assumes PDEBench's cell centres "
                            "(i+0.5)/X, so `ups eval` would shift its forecasts. Fix: store x at cell centres "
                            "(shift the data spectrally), or regenerate it with `ups data generate …`")
    if wrong:
        t_fix = f" data.t_final={dt_file * (t_frames - 1):.6g}" if dt_file is not None else ""
        raise DataFileError(
            f"{info.path}: does not match the data.* settings a checkpoint records: {'; '.join(wrong)}. "
            "`ups eval` compares files against those settings, so a model trained this way could not be "
            f"evaluated. Fix: add data.frames={t_frames}{t_fix} data.resolution={x_points} to the command")


SPLITS = ("train", "val", "test")


def split_sizes(n: int, test_ratio: float, val_ratio: float) -> dict[str, int]:
    """The protocol's split sizes for ``n`` samples (PDEBench's ``int(n · ratio)``)."""
    test, val = int(n * test_ratio), int(n * val_ratio)
    return {"train": n - test - val, "val": val, "test": test}


def splits_fix(n: int, test_ratio: float, val_ratio: float, need: Sequence[str], generated: bool) -> str:
    """What gives each split in ``need`` at least one sample: ratios that do for these ``n`` samples, or (data
    the project generates) the ``data.n`` that does at these ratios."""
    def ok(m: int, t: float, v: float) -> bool:
        return all(split_sizes(m, t, v)[k] >= 1 for k in need)

    fixes = []
    # ratios in (0, 1) with a sum < 1 (check_protocol), in hundredths, closest to the given ones first
    ratios = [(t / 100, v / 100) for t in range(1, 99) for v in range(1, 99 - t)]
    fit = next((r for r in sorted(ratios, key=lambda r: (abs(r[0] - test_ratio) + abs(r[1] - val_ratio), r))
                if ok(n, *r)), None)
    if fit is not None:
        fixes.append(f"data.test_ratio={fit[0]:g} data.val_ratio={fit[1]:g} (with these {n} samples)")
    if generated:
        m = next((m for m in range(max(n, 1), 100_000) if ok(m, test_ratio, val_ratio)), None)
        if m is not None:
            fixes.append(f"data.n={m} (at these ratios)")
    return " or ".join(fixes) if fixes else f"a file with more samples ({n} cannot be split so)"


def check_fits(what: str, shape: Sequence[int], data_cfg: Any, need: Sequence[str], generated: bool) -> None:
    """Refuse data of ``shape`` (samples, frames, points) the protocol's settings cannot use: a grid stride that
    does not divide the points, no frame left to forecast after ``initial_step``, an empty split in ``need``."""
    n_file, t_frames, x_points = (int(v) for v in shape[:3])
    nmax = int(cfg_value(data_cfg, "num_samples_max"))
    rx, rt = int(cfg_value(data_cfg, "reduced_resolution")), int(cfg_value(data_cfg, "reduced_resolution_t"))
    initial_step = int(cfg_value(data_cfg, "initial_step"))
    if x_points % rx:
        raise ProtocolError(f"data: {what} has {x_points} points, not a multiple of data.reduced_resolution={rx}: "
                            f"the subsampled grid would not be periodic. Fix: use a data.reduced_resolution that "
                            f"divides {x_points}")
    t_reduced = len(range(0, t_frames, rt))
    if t_reduced <= initial_step:
        raise ProtocolError(f"data: {what} has {t_reduced} frames after reduced_resolution_t={rt}, not more "
                            f"than initial_step={initial_step}. Fix: lower data.initial_step or data.reduced_resolution_t")
    n = n_file if nmax <= 0 else min(nmax, n_file)
    test_ratio, val_ratio = float(cfg_value(data_cfg, "test_ratio")), float(cfg_value(data_cfg, "val_ratio"))
    sizes = split_sizes(n, test_ratio, val_ratio)
    short = [k for k in need if sizes[k] < 1]
    if short:
        kept = f" (data.num_samples_max={nmax})" if 0 < nmax < n_file else ""
        raise ProtocolError(f"data: {n} samples from {what}{kept} give train/val/test = {sizes['train']}/{sizes['val']}/"
                            f"{sizes['test']} at data.test_ratio={test_ratio:g} data.val_ratio={val_ratio:g}; the "
                            f"{' and '.join(short)} split{'s' if len(short) > 1 else ''} "
                            f"{'need' if len(short) > 1 else 'needs'} ≥ 1 sample. "
                            f"Fix: {splits_fix(n, test_ratio, val_ratio, need, generated=generated)}"
                            + (" or data.num_samples_max=-1 (all of the file)" if kept else ""))


def load_protocol(data_cfg: Any, *, check_config: bool = True, need: Sequence[str] = SPLITS) -> ProtocolData:
    """Load ``data_cfg.path`` (or the cached generated file) and apply the PDEBench protocol.

    ``check_config`` (training): the file must match ``data.frames/t_final/resolution`` (see
    ``check_file_matches_config``). ``ups eval`` passes False and compares with the checkpoint instead.
    ``need``: the splits that must hold at least one sample (``ups eval`` uses the test split alone, and the
    training split for its baselines).
    """
    check_protocol(data_cfg, ProtocolError)
    path_value = cfg_value(data_cfg, "path")
    nmax = int(cfg_value(data_cfg, "num_samples_max"))
    rx, rt = int(cfg_value(data_cfg, "reduced_resolution")), int(cfg_value(data_cfg, "reduced_resolution_t"))
    initial_step = int(cfg_value(data_cfg, "initial_step"))
    test_ratio, val_ratio = float(cfg_value(data_cfg, "test_ratio")), float(cfg_value(data_cfg, "val_ratio"))
    if not path_value:  # the data data.* describes: what does not fit is refused before it is generated
        check_fits("the data the data.* settings describe", (int(cfg_value(data_cfg, "n")),
                   int(cfg_value(data_cfg, "frames")), int(cfg_value(data_cfg, "resolution"))), data_cfg, need, True)
    source = Path(str(path_value)).expanduser() if path_value else dataset_path(data_cfg)
    # a generated file in the cache is found "cached" by `ups data generate` (its attributes are complete): deleting
    # it is what makes the next command generate it again
    regenerate = ("regenerate it (`ups data generate …`)" if path_value else
                  f"delete this cached file (rm '{source}'): the next command generates it again")
    info = inspect_pdebench(source)  # layout, grid and ν checked before the tensor is read
    if check_config:
        check_file_matches_config(info, data_cfg)
    check_fits(f"'{source}'", info.shape, data_cfg, need, not path_value)
    check_grid(source, info.x[::rx], info.t[::rt], where=f" after data.reduced_resolution={rx}")
    n = info.shape[0] if nmax <= 0 else min(nmax, info.shape[0])
    sizes = split_sizes(n, test_ratio, val_ratio)
    test_idx, n_train = sizes["test"], sizes["train"]
    # the test split is the file's first samples: ups eval without baselines reads those alone (and the last
    # sample, for the data's identity), not a 10,000-trajectory PDEBench file
    test_only = set(need) <= {"test"}
    bf = read_pdebench(source, max_samples=test_idx if test_only else n, reduced_resolution=rx, reduced_resolution_t=rt)
    data = bf.tensor  # (N, T, X): all n samples, or the test split's
    last = read_pdebench(source, start=n - 1, max_samples=n, reduced_resolution=rx,
                         reduced_resolution_t=rt).tensor[0] if test_only else data[-1]
    if not np.isfinite(data).all():
        bad = np.flatnonzero((~np.isfinite(data)).any(axis=(1, 2)))
        shown = ", ".join(map(str, bad[:8].tolist())) + (" …" if bad.size > 8 else "")
        raise DataFileError(f"{source}: 'tensor' holds NaN/inf in {bad.size} samples (indices {shown}; checked at the "
                            f"protocol's subsampled points). Fix: {regenerate}" + (", or drop those samples" if path_value
                                                                                   else ""))
    big = float(np.abs(data).max()) if data.size else 0.0
    if big > MAX_ABS_VALUE:  # finite, but its squares overflow float32: every nRMSE on the file came out NaN
        raise DataFileError(f"{source}: 'tensor' holds values up to {big:.3g} in magnitude, whose squares overflow "
                            f"the float32 the models and metrics compute in (a 1D Burgers field is of order 1; the "
                            f"limit here is {MAX_ABS_VALUE:.0e}). Fix: check the file's units or scaling, or "
                            f"{regenerate}")
    # nRMSE divides by each sample's target norm: a sample that is zero in every predicted frame has none (an
    # edited or placeholder file), and every score on it (baselines, trials, gates) would be inf or garbage
    blank = np.flatnonzero(~(data[:, initial_step:] != 0).any(axis=(1, 2)))
    if blank.size:
        shown = ", ".join(map(str, blank[:8].tolist())) + (" …" if blank.size > 8 else "")
        raise DataFileError(f"{source}: 'tensor' is zero in every frame from initial_step={initial_step} on in "
                            f"{blank.size} of {data.shape[0]} samples (indices {shown}; read at the protocol's "
                            "subsampled points): their nRMSE, which divides by the target's norm, is undefined. "
                            f"Fix: drop those samples from the file, or {regenerate}")
    nu = bf.nu if bf.nu is not None else float(cfg_value(data_cfg, "nu"))  # the file's ν wins (PDEBench name/attr)
    protocol = {"rx": rx, "rt": rt, "nmax": nmax, "test_ratio": test_ratio, "val_ratio": val_ratio,
                "initial_step": initial_step}
    check_samples_digest(source, bf.attrs)  # a generated file edited in place keeps its content_hash
    fp = _fingerprint(source, bf.attrs, (n, *data.shape[1:]), data[0], last)
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
