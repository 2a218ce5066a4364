"""PDEBench-layout HDF5 I/O for 1D Burgers: ``tensor`` (N,T,X), ``x-coordinate`` (X,), ``t-coordinate``.

Real PDEBench files (``1D_Burgers_Sols_Nu*.hdf5``) store T+1 time coordinates for T frames (their
generator saves ``arange(it_tot + 1) * dt_save``); we write the same and read both T and T+1.
Writes are atomic (temp file in the target folder, then ``os.replace``); a failed write leaves
nothing behind. Bad files raise ``DataFileError`` naming the file, the key and the fix.
"""
from __future__ import annotations

import errno
import hashlib
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ups.config import ConfigError

TENSOR_KEY = "tensor"
X_KEY = "x-coordinate"
T_KEY = "t-coordinate"
NU_ATTRS = ("nu", "Nu")  # ours; PDEBench's Data_Merge.py writes attrs['Nu'] for Burgers files
REGENERATE_HINT = "regenerate it with `ups data generate nu=0.01 n=2000 resolution=1024` or re-download it"
MIN_GRID_POINTS = 4  # fewest x points the model, the spectral resampling in eval and the BC metrics handle
GRID_RTOL = 1e-3  # uniform spacing, domain length and time step: tolerance relative to the spacing


class DataFileError(ConfigError):
    """An HDF5 data file is missing, unreadable or not in the PDEBench 1D layout (a ValueError)."""


@dataclass
class BurgersFile:
    tensor: np.ndarray  # (N, T, X) float32
    x: np.ndarray  # (X,)
    t: np.ndarray  # (T,)
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path = Path()
    nu: float | None = None  # validated: from attrs or the PDEBench file name; None if unknown


@dataclass
class FileInfo:
    """Header of a PDEBench-layout file (validated, tensor not loaded)."""

    path: Path
    shape: tuple[int, int, int]
    dtype: str
    x: np.ndarray  # (X,)
    t: np.ndarray  # (T,) — trimmed to the frame count
    t_entries: int  # entries stored in t-coordinate (T or T+1)
    attrs: dict[str, Any]
    nu: float | None  # from attrs or the PDEBench file name; None if unknown
    size_bytes: int


def _plain(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.decode()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    return v


def nu_from_name(path: Path) -> float | None:
    """PDEBench names files ``1D_Burgers_Sols_Nu0.01.hdf5`` → 0.01."""
    m = re.search(r"_Nu([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)", path.name)
    return float(m.group(1)) if m else None


def check_grid(path: Any, x: np.ndarray, t: np.ndarray, *, where: str = "") -> None:
    """Refuse coordinates the model cannot use (raises ``DataFileError`` naming file, key and fix).

    x: finite, strictly increasing, uniform, ≥ ``MIN_GRID_POINTS`` points, periodic domain of length
    X·dx = 1 (PDEBench: x ∈ [0, 1), diffusion ν/π). t: finite, strictly increasing, uniform.
    ``where`` (e.g. " after data.reduced_resolution=4") says the grid was subsampled: the fix for too
    few points is then a smaller stride. Used by the file reader, ``load_protocol`` and ``ups eval``.
    """
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if x.size < MIN_GRID_POINTS:
        fix = "lower data.reduced_resolution" if where else f"use a file with ≥ {MIN_GRID_POINTS} points ({REGENERATE_HINT})"
        raise DataFileError(f"{path}: '{X_KEY}'{where} has {x.size} point(s); the model needs at least "
                            f"{MIN_GRID_POINTS}. Fix: {fix}")
    for key, c in ((X_KEY, x), (T_KEY, t)):
        bad = np.flatnonzero(~np.isfinite(c))
        if bad.size:
            raise DataFileError(f"{path}: '{key}' holds NaN/inf at index {', '.join(map(str, bad[:5].tolist()))}"
                                f"{' …' if bad.size > 5 else ''}. Fix: {REGENERATE_HINT}")
        if c.size < 2:
            continue
        d = np.diff(c)
        axis = "x" if key == X_KEY else "t"
        if (d < 0).all():
            raise DataFileError(f"{path}: '{key}' must be increasing; it is stored in decreasing order "
                                f"({c[0]:.6g} … {c[-1]:.6g}). Fix: store '{key}' ascending and flip '{TENSOR_KEY}' "
                                f"along the {axis} axis to match, or {REGENERATE_HINT}")
        if not (d > 0).all():
            i = int(np.flatnonzero(d <= 0)[0])
            raise DataFileError(f"{path}: '{key}' must be strictly increasing, but entry {i + 1} ({c[i + 1]:.6g}) "
                                f"does not exceed entry {i} ({c[i]:.6g}). Fix: store the {axis} coordinates in "
                                f"increasing order with the matching '{TENSOR_KEY}' layout, or {REGENERATE_HINT}")
        step = float(d.mean())
        if float(np.abs(d - step).max()) > GRID_RTOL * step:
            raise DataFileError(f"{path}: '{key}'{where} is not uniformly spaced (spacings {d.min():.6g} … "
                                f"{d.max():.6g}); the model assumes a uniform "
                                f"{'periodic grid' if key == X_KEY else 'time step'}. Fix: resample the data onto "
                                f"a uniform {axis} grid first, or {REGENERATE_HINT}")
    length = float(np.diff(x).mean()) * x.size
    if abs(length - 1.0) > GRID_RTOL:
        raise DataFileError(f"{path}: '{X_KEY}'{where} spans a periodic domain of length X·dx = {length:.6g}; this "
                            "project (like PDEBench) solves Burgers on x ∈ [0, 1) with diffusion ν/π. Fix: rescale "
                            "x (and ν) to the unit interval, e.g. cell centres (i+0.5)/X, or "
                            f"{REGENERATE_HINT}")


def _nu_attr(path: Path, value: Any, key: str = "nu") -> float:
    v = np.asarray(value).reshape(-1) if not isinstance(value, (str, bytes)) else np.asarray([value])
    try:
        if v.size != 1:
            raise ValueError
        nu = float(v[0])
    except (TypeError, ValueError):
        raise DataFileError(f"{path}: attribute '{key}' = {value!r} is not a number. Fix: set the file's '{key}' "
                            "attribute to the PDEBench viscosity (e.g. 0.01, diffusion ν/π), delete it to use the "
                            f"file name's _Nu…, or {REGENERATE_HINT}") from None
    return nu


def _file_nu(path: Path, attrs: dict[str, Any]) -> float | None:
    """ν from the 'nu' / PDEBench's 'Nu' attribute and/or PDEBench's file name; all present must agree."""
    named = nu_from_name(path)
    given = {k: _nu_attr(path, attrs[k], k) for k in NU_ATTRS if k in attrs}
    if len(given) == 2 and not np.isclose(given["nu"], given["Nu"], rtol=1e-6, atol=0.0):
        raise DataFileError(f"{path}: attributes 'nu' = {given['nu']:g} and 'Nu' = {given['Nu']:g} disagree "
                            "(PDEBench stores ν as 'Nu'). Fix: correct or delete the wrong one")
    key = next(iter(given), None)
    nu = given[key] if key is not None else None
    if nu is not None and named is not None and not np.isclose(nu, named, rtol=1e-6, atol=0.0):
        raise DataFileError(f"{path}: attribute '{key}' = {nu:g} contradicts the file name (_Nu{named:g}), and "
                            f"PDEBench names files by their ν. Fix: rename the file or correct its '{key}' attribute "
                            "so they agree")
    nu = named if nu is None else nu
    if nu is not None and not (np.isfinite(nu) and nu > 0):
        src = f"attribute '{key}'" if key is not None else "file name _Nu…"
        raise DataFileError(f"{path}: {src} gives ν = {nu:g}; ν must be finite and > 0. Fix: set 'nu' to the "
                            f"viscosity the data was generated with (e.g. 0.01), or {REGENERATE_HINT}")
    return nu


def _no_permission(path: Path) -> DataFileError:
    return DataFileError(f"{path}: no permission to read it (Permission denied). Fix: make it readable by this user "
                         f"(chmod a+r '{path}', and a+x on its folders) or set data.path to a readable copy")


def _open(path: Path) -> h5py.File:
    try:
        found = path.exists()
    except PermissionError:  # a folder on the way may not be entered: Path.exists raises, it does not say False
        raise _no_permission(path) from None
    if not found:
        raise DataFileError(f"{path}: file not found. Fix: set data.path to an existing HDF5 file, or leave "
                            "it empty to generate data (`ups data generate …`)")
    if path.is_dir():
        raise DataFileError(f"{path}: is a directory, not an HDF5 file. Fix: point data.path to a .hdf5 file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM):  # the bytes may be fine: regenerating is not the fix
            raise _no_permission(path) from None
        raise DataFileError(f"{path}: cannot be opened as HDF5 ({str(e).splitlines()[0]}); the file is truncated "
                            f"or not HDF5. Fix: {REGENERATE_HINT}") from None


def _validate(path: Path, f: h5py.File) -> FileInfo:
    keys = sorted(f.keys())
    if TENSOR_KEY not in f:
        raise DataFileError(f"{path}: key '{TENSOR_KEY}' missing (found: {', '.join(keys) or 'nothing'}). Fix: 1D "
                            f"Burgers files store the solution as '{TENSOR_KEY}' (N, T, X) — use a PDEBench "
                            "1D_Burgers_Sols_Nu*.hdf5 file or one written by `ups data generate`")
    ds = f[TENSOR_KEY]
    if not isinstance(ds, h5py.Dataset) or ds.ndim != 3:
        shape = getattr(ds, "shape", "a group")
        raise DataFileError(f"{path}: key '{TENSOR_KEY}' has shape {shape}, expected rank 3 (N samples, T frames, "
                            "X points). Fix: write 1D Burgers data as (N, T, X); 2D/3D PDEBench files are not supported")
    n, t_frames, x_points = ds.shape
    if min(ds.shape) < 1:
        raise DataFileError(f"{path}: '{TENSOR_KEY}' is empty (shape {ds.shape}). Fix: {REGENERATE_HINT}")
    if not np.issubdtype(ds.dtype, np.floating):
        raise DataFileError(f"{path}: '{TENSOR_KEY}' has dtype {ds.dtype}, expected floating point. Fix: {REGENERATE_HINT}")
    for key in (X_KEY, T_KEY):
        if key not in f:
            raise DataFileError(f"{path}: key '{key}' missing (found: {', '.join(keys)}). Fix: PDEBench files store "
                                f"'{X_KEY}' (X,) and '{T_KEY}' (T or T+1,); add them or {REGENERATE_HINT}")
    for key in (X_KEY, T_KEY):
        c = f[key]
        if not isinstance(c, h5py.Dataset) or c.ndim != 1:
            raise DataFileError(f"{path}: key '{key}' has shape {getattr(c, 'shape', 'a group')}, expected a 1-D "
                                f"array. Fix: store '{key}' as a 1-D dataset, or {REGENERATE_HINT}")
    try:
        x = np.asarray(f[X_KEY][...], dtype=np.float64).reshape(-1)
        t_all = np.asarray(f[T_KEY][...], dtype=np.float64).reshape(-1)
    except OSError as e:
        raise DataFileError(f"{path}: coordinates unreadable ({e}); the file is truncated. Fix: {REGENERATE_HINT}") from None
    if x.size != x_points:
        raise DataFileError(f"{path}: '{X_KEY}' has {x.size} entries but '{TENSOR_KEY}' has X = {x_points} points. "
                            f"Fix: {REGENERATE_HINT}")
    if t_all.size not in (t_frames, t_frames + 1):
        raise DataFileError(f"{path}: '{T_KEY}' has {t_all.size} entries but '{TENSOR_KEY}' has T = {t_frames} frames "
                            f"(expected T or T+1 like PDEBench). Fix: {REGENERATE_HINT}")
    check_grid(path, x, t_all)
    attrs = {k: _plain(v) for k, v in f.attrs.items()}
    nu = _file_nu(path, attrs)
    return FileInfo(path=path, shape=(n, t_frames, x_points), dtype=str(ds.dtype), x=x, t=t_all[:t_frames],
                    t_entries=int(t_all.size), attrs=attrs, nu=nu, size_bytes=path.stat().st_size)


def inspect_pdebench(path: str | Path) -> FileInfo:
    """Validate a file's layout and return its header without loading ``tensor``."""
    path = Path(path).expanduser()
    with _open(path) as f:
        return _validate(path, f)


def declared_nu(path: str | Path) -> tuple[bool, float | None]:
    """(readable, ν) of a data file's header: (False, None) for a path that is no file or not a valid PDEBench file
    (its loader refuses it with its own fix), else (True, the ν its attributes or PDEBench name give, None if none)."""
    path = Path(path).expanduser()
    if not path.is_file():
        return False, None
    try:
        return True, inspect_pdebench(path).nu
    except (OSError, ValueError):
        return False, None


def read_pdebench(path: str | Path, *, max_samples: int = -1, reduced_resolution: int = 1,
                  reduced_resolution_t: int = 1, chunk: int = 256, start: int = 0) -> BurgersFile:
    """Load a PDEBench-layout file → ``BurgersFile`` (tensor float32 (N,T,X)).

    ``max_samples`` (>0) keeps the first samples (``start``: from that one on, up to ``max_samples``); the
    reduced_* strides are applied while reading, chunk by chunk, so a 10,000-sample PDEBench file never sits
    in memory at full resolution.
    """
    path = Path(path).expanduser()
    with _open(path) as f:
        info = _validate(path, f)
        n = info.shape[0] if max_samples is None or max_samples <= 0 else min(max_samples, info.shape[0])
        ds = f[TENSOR_KEY]
        parts = []
        try:
            for i in range(start, n, chunk):
                block = ds[i: min(n, i + chunk)]  # (c, T, X)
                parts.append(np.ascontiguousarray(block[:, ::reduced_resolution_t, ::reduced_resolution],
                                                  dtype=np.float32))
        except OSError as e:
            raise DataFileError(f"{path}: '{TENSOR_KEY}' unreadable at samples {i}..{i + chunk} ({str(e).splitlines()[0]}); "
                                f"the file is truncated or corrupt. Fix: {REGENERATE_HINT}") from None
    tensor = np.concatenate(parts, axis=0) if parts else np.zeros(  # (N, T', X')
        (0, len(range(0, info.shape[1], reduced_resolution_t)), len(range(0, info.shape[2], reduced_resolution))),
        dtype=np.float32)
    return BurgersFile(tensor=tensor, x=info.x[::reduced_resolution], t=info.t[::reduced_resolution_t],
                       attrs=info.attrs, path=path, nu=info.nu)


def pdebench_time_coordinate(t: np.ndarray) -> np.ndarray:
    """Frame times (T,) → PDEBench's T+1 entries (one extra interval appended)."""
    t = np.asarray(t, dtype=np.float64).reshape(-1)
    if t.size < 2:
        return t
    return np.append(t, t[-1] + (t[-1] - t[-2]))


DIGEST_ATTR = "samples_digest"
DIGEST_SAMPLES = 8


def samples_digest(ds: h5py.Dataset) -> str:
    """SHA-1 of a few samples of a (N, T, X) dataset, evenly spread, the first and last included, at full
    resolution: ``<count>:<hex>``.  ``ups data generate`` records it, because its ``content_hash`` names the
    generation settings, not the data: a file edited in place kept that identity and the baselines cached for the
    data it had before (an all-zero tensor scored persistence 0.597)."""
    n = int(ds.shape[0])
    idx = sorted({int(i) for i in np.linspace(0, n - 1, min(n, DIGEST_SAMPLES)).round()})
    h = hashlib.sha1()
    for i in idx:
        h.update(np.ascontiguousarray(ds[i], dtype=np.float32).tobytes())
    return f"{len(idx)}:{h.hexdigest()}"


def check_samples_digest(path: Path, attrs: dict[str, Any]) -> None:
    """Refuse a generated file that still carries its ``content_hash`` while the samples its ``samples_digest``
    covers (8, spread over the file: a spot check, not every sample) no longer match it."""
    want = attrs.get(DIGEST_ATTR)
    if want is None or "content_hash" not in attrs:
        return  # a PDEBench file, one generated before the digest, or one identified by its contents anyway
    with h5py.File(path, "r") as f:
        got = samples_digest(f[TENSOR_KEY])
    if str(want) != got:
        raise DataFileError(f"{path}: 'tensor' was changed after `ups data generate` wrote it (its {DIGEST_ATTR} "
                            f"attribute does not match the data), but it still carries the generated file's "
                            "content_hash, under which results and baselines of the original data are cached. Fix: "
                            "regenerate it (delete it; `ups data generate …`), or to use the edited data as your own "
                            "file, delete its content_hash attribute (h5py: del f.attrs['content_hash']); it is then "
                            "identified by its contents")


class PDEBenchWriter:
    """Atomic, incremental writer: ``with PDEBenchWriter(path, n, x, t, attrs) as w: w.write(rows, data)``.

    Data goes to a temp file next to ``path``; it is renamed into place only when the block exits
    without an exception and every sample was written; otherwise the temp file is deleted.
    """

    def __init__(self, path: str | Path, n: int, x: np.ndarray, t: np.ndarray, attrs: dict[str, Any]):
        self.path = Path(path).expanduser()
        self.n, self.x, self.t, self.attrs = n, np.asarray(x), np.asarray(t), dict(attrs)
        self.tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:8]}.tmp")
        self._written = np.zeros(n, dtype=bool)
        self._f: h5py.File | None = None

    def __enter__(self) -> "PDEBenchWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        t_frames, x_points = self.t.size, self.x.size
        self._f = h5py.File(self.tmp, "w")
        self._ds = self._f.create_dataset(TENSOR_KEY, shape=(self.n, t_frames, x_points), dtype="float32",
                                          chunks=(1, t_frames, x_points))
        self._f.create_dataset(X_KEY, data=self.x.astype(np.float32))
        self._f.create_dataset(T_KEY, data=pdebench_time_coordinate(self.t).astype(np.float32))
        for k, v in self.attrs.items():
            self._f.attrs[k] = v
        return self

    def write(self, rows: np.ndarray | slice, data: np.ndarray) -> None:
        """Write samples ``rows`` (indices in any order, or a slice) ← data (len(rows), T, X)."""
        assert self._f is not None
        if isinstance(rows, slice):
            self._ds[rows] = data
            self._written[rows] = True
        else:
            rows = np.asarray(rows)
            data = np.asarray(data)
            for j, r in enumerate(rows.tolist()):  # one chunk per sample: ~20× faster than a fancy selection
                self._ds[r] = data[j]
            self._written[rows] = True

    def samples_digest(self) -> str:
        """``samples_digest`` of what is written so far (call it after the last sample)."""
        assert self._f is not None
        return samples_digest(self._ds)

    def set_attrs(self, attrs: dict[str, Any]) -> None:
        """Add attributes known only after the data (e.g. solver statistics)."""
        assert self._f is not None
        for k, v in attrs.items():
            self._f.attrs[k] = v

    def __exit__(self, exc_type, exc, tb) -> None:
        f, self._f = self._f, None
        try:
            if f is not None:
                f.close()
        finally:
            if exc_type is None and not self._written.all():
                self.tmp.unlink(missing_ok=True)
                raise RuntimeError(f"{self.path}: only {int(self._written.sum())}/{self.n} samples were written")
            if exc_type is None:
                os.replace(self.tmp, self.path)
            else:
                self.tmp.unlink(missing_ok=True)


def write_pdebench(path: str | Path, tensor: np.ndarray, x: np.ndarray, t: np.ndarray,
                   attrs: dict[str, Any] | None = None) -> Path:
    """Write (N,T,X) data in the PDEBench layout, atomically. ``t`` has T (or T+1) entries."""
    tensor = np.asarray(tensor)
    if tensor.ndim != 3:
        raise ValueError(f"write_pdebench: tensor must be (N, T, X), got shape {tensor.shape}")
    t = np.asarray(t).reshape(-1)
    if t.size == tensor.shape[1] + 1:
        t = t[:-1]
    if t.size != tensor.shape[1] or np.asarray(x).size != tensor.shape[2]:
        raise ValueError(f"write_pdebench: x ({np.asarray(x).size}) / t ({t.size}) do not match tensor {tensor.shape}")
    with PDEBenchWriter(path, tensor.shape[0], x, t, attrs or {}) as w:
        w.write(slice(None), tensor.astype(np.float32))
    return Path(path).expanduser()
