"""PDEBench-layout HDF5 I/O and bad input: each refusal names the file/key and the fix, leaves nothing behind."""
from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest

from ups.cli import main as ups_main
from ups.data.hdf5 import DataFileError, PDEBenchWriter, inspect_pdebench, read_pdebench, write_pdebench


def _pdebench_like(path: Path, n: int = 6, t_frames: int = 21, x_points: int = 32, t_entries: int | None = None,
                   x=None, t=None, attrs=None) -> Path:
    """A file shaped like PDEBench's own (no attributes, T+1 time entries); x / t / attrs replace the defaults."""
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["tensor"] = rng.standard_normal((n, t_frames, x_points)).astype(np.float32)
        f["x-coordinate"] = ((np.arange(x_points) + 0.5) / x_points).astype(np.float32) if x is None else x
        f["t-coordinate"] = (np.arange(t_entries or t_frames + 1) * 0.01).astype(np.float32) if t is None else t
        for k, v in (attrs or {}).items():
            f.attrs[k] = v
    return path


_X = (np.arange(32) + 0.5) / 32  # the default file's grid
_T = np.arange(22) * 0.01
# (file name, _pdebench_like arguments, key the message must name, pattern)
MALFORMED = [
    ("x_reversed.hdf5", {"x": _X[::-1].copy()}, "'x-coordinate'", r"must be increasing"),
    ("x_nonuniform.hdf5", {"x": np.sort(np.random.default_rng(1).uniform(0, 1, 32))}, "'x-coordinate'",
     r"not uniformly spaced"),
    ("x_domain2pi.hdf5", {"x": _X * 2 * np.pi}, "'x-coordinate'", r"domain of length X·dx = 6\.28"),
    ("x_nan.hdf5", {"x": np.where(np.arange(32) == 5, np.nan, _X)}, "'x-coordinate'", r"NaN/inf at index 5"),
    ("x_duplicate.hdf5", {"x": np.where(np.arange(32) == 6, _X[5], _X)}, "'x-coordinate'", r"strictly increasing"),
    ("x_one_point.hdf5", {"x_points": 1, "x": np.array([0.5])}, "'x-coordinate'", r"1 point\(s\).*at least 4"),
    ("x_2d.hdf5", {"x": _X.reshape(4, 8)}, "'x-coordinate'", r"shape \(4, 8\), expected a 1-D"),
    ("t_const.hdf5", {"t": np.zeros(22)}, "'t-coordinate'", r"strictly increasing.*entry 1 \(0\)"),
    ("t_nonmono.hdf5", {"t": np.concatenate([_T[:10], _T[10:][::-1]])}, "'t-coordinate'", r"strictly increasing"),
    ("t_nan.hdf5", {"t": np.where(np.arange(22) == 7, np.nan, _T)}, "'t-coordinate'", r"NaN/inf at index 7"),
    ("t_nonuniform.hdf5", {"t": _T ** 2}, "'t-coordinate'", r"not uniformly spaced"),
    ("nu_str.hdf5", {"attrs": {"nu": "abc"}}, "'nu'", r"'nu' = 'abc' is not a number"),
    ("nu_neg.hdf5", {"attrs": {"nu": -1.0}}, "'nu'", r"ν = -1; ν must be finite and > 0"),
    ("nu_nan.hdf5", {"attrs": {"nu": np.nan}}, "'nu'", r"ν = nan; ν must be finite and > 0"),
    ("1D_Burgers_Sols_Nu0.1.hdf5", {"attrs": {"nu": 0.01}}, "'nu'", r"'nu' = 0\.01 contradicts the file name \(_Nu0\.1\)"),
    ("1D_Burgers_Sols_Nu0.hdf5", {}, "_Nu", r"ν = 0; ν must be finite and > 0"),
]


@pytest.mark.parametrize("name, kwargs, key, pattern", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_files_are_refused_naming_file_key_and_fix(tmp_path, capsys, name, kwargs, key, pattern):
    p = _pdebench_like(tmp_path / name, **kwargs)
    for reader in (inspect_pdebench, read_pdebench):
        with pytest.raises(DataFileError) as e:
            reader(p)
        msg = str(e.value)
        assert str(p) in msg and key in msg and "Fix:" in msg, msg
        assert re.search(pattern, msg), msg
    assert ups_main(["data", "info", str(p)]) == 2  # a message, never a traceback
    err = capsys.readouterr().err
    assert str(p) in err and key in err and "Fix:" in err and "Traceback" not in err


def test_real_layouts_and_generated_files_still_load(tmp_path):
    """PDEBench float32 cell centres at 1024 points, 201 frames (T+1 = 202 entries); our writer's files."""
    p = _pdebench_like(tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5", n=2, t_frames=201, x_points=1024)
    info = inspect_pdebench(p)
    assert info.nu == 0.01 and info.shape == (2, 201, 1024)
    same = _pdebench_like(tmp_path / "1D_Burgers_Sols_Nu0.002.hdf5", attrs={"nu": 0.002})  # name and attr agree
    assert inspect_pdebench(same).nu == 0.002
    from ups.data.initial import cell_centres

    w = write_pdebench(tmp_path / "ours.hdf5", np.zeros((2, 41, 256), np.float32), cell_centres(256),
                       np.linspace(0, 2, 41), {"nu": np.float64(0.01)})
    assert inspect_pdebench(w).nu == 0.01


def test_pdebench_Nu_attribute_gives_nu(tmp_path):
    """PDEBench's Data_Merge.py (transform, type 'burgers') stores ν as attrs['Nu']: a renamed file keeps its ν,
    and a name or our 'nu' attribute that contradicts it is refused."""
    renamed = _pdebench_like(tmp_path / "burgers_copy.hdf5", attrs={"Nu": 0.1})
    assert inspect_pdebench(renamed).nu == 0.1 and read_pdebench(renamed).nu == 0.1
    assert inspect_pdebench(_pdebench_like(tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5", attrs={"Nu": 0.1})).nu == 0.1
    named = _pdebench_like(tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5", attrs={"Nu": 0.1})
    with pytest.raises(DataFileError, match=r"attribute 'Nu' = 0\.1 contradicts the file name \(_Nu0\.01\)"):
        inspect_pdebench(named)
    both = _pdebench_like(tmp_path / "both.hdf5", attrs={"Nu": 0.1, "nu": 0.01})
    with pytest.raises(DataFileError, match=r"attributes 'nu' = 0\.01 and 'Nu' = 0\.1 disagree"):
        inspect_pdebench(both)
    with pytest.raises(DataFileError, match=r"'Nu' = 'abc' is not a number"):
        inspect_pdebench(_pdebench_like(tmp_path / "nu_str.hdf5", attrs={"Nu": "abc"}))


def _files(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if not p.name.endswith(".lock")) if d.exists() else []


def test_roundtrip_writes_pdebench_t_plus_one(tmp_path):
    u = np.random.default_rng(1).standard_normal((3, 11, 16)).astype(np.float32)
    x, t = (np.arange(16) + 0.5) / 16, np.linspace(0, 0.1, 11)
    p = write_pdebench(tmp_path / "a.hdf5", u, x, t, {"nu": 0.02, "seed": 3})
    with h5py.File(p) as f:
        assert f["t-coordinate"].shape == (12,)  # like PDEBench: T+1 entries
    bf = read_pdebench(p)
    np.testing.assert_array_equal(bf.tensor, u)
    assert bf.t.shape == (11,) and bf.attrs["nu"] == 0.02 and bf.attrs["seed"] == 3
    assert _files(tmp_path) == ["a.hdf5"]


def test_reads_pdebench_files_both_t_layouts(tmp_path):
    real = _pdebench_like(tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5")  # T+1 time entries, no attrs
    info = inspect_pdebench(real)
    assert info.shape == (6, 21, 32) and info.t_entries == 22 and info.t.shape == (21,)
    assert info.nu == 0.001  # from PDEBench's file name
    same_t = _pdebench_like(tmp_path / "b.hdf5", t_entries=21)
    assert read_pdebench(same_t, reduced_resolution=4, reduced_resolution_t=5).tensor.shape == (6, 5, 8)


def test_missing_tensor_key(tmp_path):
    p = tmp_path / "no_tensor.hdf5"
    with h5py.File(p, "w") as f:
        f["u"] = np.zeros((2, 3, 4), dtype=np.float32)
    with pytest.raises(DataFileError, match=r"no_tensor\.hdf5.*'tensor' missing \(found: u\).*Fix"):
        read_pdebench(p)


def test_wrong_rank(tmp_path):
    p = tmp_path / "rank2.hdf5"
    with h5py.File(p, "w") as f:
        f["tensor"] = np.zeros((4, 16), dtype=np.float32)
    with pytest.raises(DataFileError, match=r"rank2\.hdf5.*'tensor' has shape \(4, 16\), expected rank 3.*Fix"):
        read_pdebench(p)


def test_truncated_file(tmp_path):
    p = _pdebench_like(tmp_path / "trunc.hdf5", n=64, x_points=256)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataFileError, match=r"trunc\.hdf5.*truncated.*Fix: regenerate"):
        read_pdebench(p)
    assert _files(tmp_path) == ["trunc.hdf5"]  # nothing new written


def test_unreadable_file_says_permission_not_truncated(tmp_path, monkeypatch):
    """chmod 000: the message said "truncated or not HDF5. Fix: regenerate it" for a file whose bytes are fine."""
    import errno
    import os

    p = _pdebench_like(tmp_path / "locked.hdf5")
    p.chmod(0)
    if os.geteuid() == 0:  # root reads it anyway: h5py's own error for a file it may not open (errno 13)
        def denied(name, *a, **k):
            raise OSError(errno.EACCES, f"Unable to synchronously open file (unable to open file: name = '{name}', "
                                        "errno = 13, error message = 'Permission denied', flags = 0, o_flags = 0)")

        monkeypatch.setattr("ups.data.hdf5.h5py.File", denied)
    with pytest.raises(DataFileError, match=r"locked\.hdf5: no permission to read it.*Fix: make it readable.*chmod a\+r"
                       ) as e:
        read_pdebench(p)
    assert "regenerate" not in str(e.value) and "truncated" not in str(e.value)
    p.chmod(0o644)
    # a folder on the way that may not be entered: Path.exists raised a bare PermissionError
    monkeypatch.setattr("pathlib.Path.exists", lambda self: (_ for _ in ()).throw(PermissionError(errno.EACCES, "x")))
    with pytest.raises(DataFileError, match=r"locked\.hdf5: no permission to read it"):
        read_pdebench(p)


def test_coordinate_mismatch_and_missing_file(tmp_path):
    p = _pdebench_like(tmp_path / "bad_t.hdf5", t_entries=7)
    with pytest.raises(DataFileError, match=r"'t-coordinate' has 7 entries.*T = 21"):
        read_pdebench(p)
    with pytest.raises(DataFileError, match=r"nope\.hdf5: file not found.*Fix"):
        read_pdebench(tmp_path / "nope.hdf5")


def test_failed_write_leaves_nothing(tmp_path):
    x, t = np.arange(8) / 8, np.linspace(0, 1, 5)
    with pytest.raises(RuntimeError, match="boom"):
        with PDEBenchWriter(tmp_path / "w.hdf5", 4, x, t, {}) as w:
            w.write(slice(0, 2), np.zeros((2, 5, 8), np.float32))
            raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="only 2/4 samples"):
        with PDEBenchWriter(tmp_path / "w.hdf5", 4, x, t, {}) as w:
            w.write(np.array([3, 1]), np.zeros((2, 5, 8), np.float32))
    assert _files(tmp_path) == []


@pytest.mark.parametrize("override, pattern", [
    ("nuu=0.01", r"unknown key 'nuu'\. Did you mean 'nu'\?"),
    ("nu=-0.5", r"'data\.nu' = -0\.5 must be > 0\. Fix"),
    ("nu=0", r"'data\.nu' = 0\.0 must be > 0\. Fix"),
    ("n=0", r"'data\.n' = 0 must be > 0\. Fix"),
    ("resolution=1000", r"'resolution' = 1000 is not a power of two.*Fix: use 256, 512, 1024"),
    ("resolution=2", r"'resolution' = 2 is not a power of two ≥ 16\b.*Fix: use 256, 512, 1024"),  # reader: ≥ 4
    ("resolution=3", r"'resolution' = 3 is not a power of two ≥ 16\b.*Fix: use 256, 512, 1024"),
    ("nu=1e-6", r"'nu' = 1e-06 is too small for the spectral solver.*Fix: use nu ≥"),
])
def test_generate_refuses_bad_overrides(tmp_path, capsys, override, pattern):
    cache = tmp_path / "cache"
    rc = ups_main(["data", "generate", override, f"cache_dir={cache}", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2
    assert re.search(pattern, err), err
    assert _files(cache) == []  # refused before compute: nothing written


def test_the_smallest_generated_grid_is_readable(tmp_path):
    """The generator's minimum resolution derives from the reader's ``MIN_GRID_POINTS`` (one constant): a file
    generated at it reads back."""
    from ups.config import load_config
    from ups.data.cache import MIN_RESOLUTION, dataset_path
    from ups.data.hdf5 import MIN_GRID_POINTS

    assert MIN_RESOLUTION >= MIN_GRID_POINTS
    cfg = load_config([f"data.resolution={MIN_RESOLUTION}", "data.n=1", "data.frames=3", "data.t_final=0.01",
                       f"data.cache_dir={tmp_path}"])
    assert read_pdebench(dataset_path(cfg.data, progress=False, workers=1)).tensor.shape == (1, 3, MIN_RESOLUTION)


def test_info_command(tmp_path, capsys):
    p = _pdebench_like(tmp_path / "1D_Burgers_Sols_Nu0.01.hdf5")
    assert ups_main(["data", "info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "(6, 21, 32)" in out and "22 entries for 21 frames" in out and "nu            0.01" in out
    assert ups_main(["data", "info", str(tmp_path / "missing.hdf5")]) == 2
    err = capsys.readouterr().err
    assert "missing.hdf5: file not found. Fix: the path of an HDF5 file" in err and "data.path" not in err, err


def test_the_extra_pdebench_time_entry_is_the_last_one(tmp_path):
    """PDEBench stores T+1 time entries from 0: the frames' times are the first T (the appended interval is last),
    both when reading such a file and when writing one from T+1 entries."""
    p = _pdebench_like(tmp_path / "f.hdf5", t_frames=21)  # t = 0, 0.01, …, 0.21
    assert read_pdebench(p).t[0] == 0.0 and inspect_pdebench(p).t[-1] == pytest.approx(0.2)
    w = write_pdebench(tmp_path / "w.hdf5", np.ones((1, 5, 8), np.float32), (np.arange(8) + 0.5) / 8,
                       np.arange(6) * 0.1)
    np.testing.assert_allclose(read_pdebench(w).t, np.arange(5) * 0.1, atol=1e-6)


def test_a_file_name_with_nu_in_scientific_notation(tmp_path):
    """Python names ν = 1e-05 'Nu1e-05' (str(1e-05)): the name gives 1e-05, not 1."""
    from ups.data.hdf5 import nu_from_name

    assert nu_from_name(Path("1D_Burgers_Sols_Nu1e-05.hdf5")) == 1e-05
    assert inspect_pdebench(_pdebench_like(tmp_path / "1D_Burgers_Sols_Nu2.5E-4.hdf5")).nu == 2.5e-4
