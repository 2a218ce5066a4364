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
    """tensor[i] = i, so the split is visible in the values (at x index 0; the other points are i + 0.5, so that
    sample 0 has a target)."""
    from ups.data.hdf5 import write_pdebench

    u = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, t_frames, x_points)).copy()
    u[:, :, 1:] += 0.5
    return write_pdebench(path, u, (np.arange(x_points) + 0.5) / x_points, np.linspace(0, 0.2, t_frames), {})


def _cfg(path, *extra):
    from ups.config import load_config

    # the file: 21 frames every 0.01, 16 points — data.* must describe it (the checkpoint records it)
    return load_config([f"data.path={path}", "data.initial_step=2", "data.frames=21", "data.t_final=0.2",
                        "data.resolution=16", *extra]).data


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


def test_the_test_split_alone_reads_only_its_samples(tmp_path, monkeypatch):
    """ups eval without baselines needs the test split alone, the file's first samples: it read the whole file
    (a 10,000-trajectory PDEBench file, 8 GB, to score a few). The data's identity is the same either way."""
    import ups.data.protocol as protocol

    p = _indexed_file(tmp_path / "1D_Burgers_Sols_Nu0.1.hdf5", n=40)
    full = protocol.load_protocol(_cfg(p))
    rows, read = [], protocol.read_pdebench

    def counting(*a, **k):
        bf = read(*a, **k)
        rows.append(bf.tensor.shape[0])
        return bf

    monkeypatch.setattr(protocol, "read_pdebench", counting)
    test = protocol.load_protocol(_cfg(p), need=("test",))
    assert sum(rows) == 4 + 1  # the 4 test samples and the last one (for the data hash), not 40
    assert _ids(test.test) == _ids(full.test) == [0, 1, 2, 3] and test.data_hash == full.data_hash
    assert len(test.train) == len(test.val) == 0
    d10 = protocol.load_protocol(_cfg(p, "data.num_samples_max=10"), need=("test",))
    assert d10.data_hash == protocol.load_protocol(_cfg(p, "data.num_samples_max=10")).data_hash


def test_protocol_refusals(tmp_path):
    from ups.data.protocol import ProtocolError, load_protocol

    p = _indexed_file(tmp_path / "f.hdf5")
    with pytest.raises(ProtocolError, match=r"initial_step=10.*Fix"):
        load_protocol(_cfg(p, "data.initial_step=10"))
    with pytest.raises(ProtocolError, match=r"the val and test splits need ≥ 1 sample.*Fix: data.test_ratio=0.2 "
                                             r"data.val_ratio=0.2 \(with these 5 samples\) or data.num_samples_max=-1"):
        load_protocol(_cfg(p, "data.num_samples_max=5"))
    d = load_protocol(_cfg(p, "data.num_samples_max=5", "data.test_ratio=0.2"), need=("test",))  # ups eval, no baselines
    assert _ids(d.test) == [0] and d.val.shape[0] == 0
    with pytest.raises(ProtocolError, match=r"the test split needs.*Fix: data.test_ratio=0.34 data.val_ratio=0.1"):
        load_protocol(_cfg(p, "data.num_samples_max=3"), need=("test",))
    with pytest.raises(ConfigError, match=r"'data.test_ratio' = 1.5"):  # refused with the config
        _cfg(p, "data.test_ratio=1.5")
    cfg = _cfg(p)
    cfg.test_ratio = 1.5  # set past the config's checks: the loader refuses it too
    with pytest.raises(ProtocolError, match=r"'data.test_ratio' = 1.5"):
        load_protocol(cfg)


def _grid_file(path, n=20, t_frames=21, x_points=16, dt=0.01, x=None, t=None, tensor=None):
    """PDEBench layout (T+1 time entries) with a chosen time step; x / t / tensor replace the defaults."""
    import h5py

    with h5py.File(path, "w") as f:
        f["tensor"] = (np.random.default_rng(0).standard_normal((n, t_frames, x_points)).astype(np.float32)
                       if tensor is None else tensor)
        f["x-coordinate"] = ((np.arange(x_points) + 0.5) / x_points) if x is None else x
        f["t-coordinate"] = (np.arange(t_frames + 1) * dt) if t is None else t
    return path


def test_training_refuses_a_time_axis_eval_would_refuse(tmp_path):
    """dt = 0.02 file with data.* saying 0.01: refused at load (it used to train, then `ups eval` refused it)."""
    from ups.config import load_config
    from ups.data.hdf5 import DataFileError
    from ups.data.protocol import load_protocol
    from ups.eval import check_eval_data

    p = _grid_file(tmp_path / "dt002.hdf5", dt=0.02)
    with pytest.raises(DataFileError) as e:
        load_protocol(_cfg(p))  # data.t_final=0.2 over 21 frames → 0.01
    msg = str(e.value)
    assert str(p) in msg and "'t-coordinate' step is 0.02" in msg and "data.t_final" in msg
    assert "Fix: add data.frames=21 data.t_final=0.4 data.resolution=16" in msg
    cfg = load_config([f"data.path={p}", "data.initial_step=2", "data.frames=21", "data.t_final=0.4",
                       "data.resolution=16"])  # the printed fix
    data = load_protocol(cfg.data)
    gm, _ = check_eval_data(cfg, 4, data, str(p))  # the checkpoint's config then evaluates its own file
    assert gm.identity
    with pytest.raises(DataFileError, match=r"21 frames \('tensor' T\) but data.frames=41.*Fix: add data.frames=21"):
        load_protocol(_cfg(p, "data.frames=41", "data.t_final=0.8"))  # same step, other horizon
    with pytest.raises(DataFileError, match=r"16 points \('x-coordinate'\) but data.resolution=32.*Fix"):
        load_protocol(_cfg(p, "data.resolution=32", "data.t_final=0.4"))
    assert load_protocol(_cfg(p, "data.frames=41"), check_config=False).frames == 5  # eval compares itself


@pytest.mark.parametrize("kwargs, extra, pattern", [
    ({"x": np.arange(16) / 16}, [], r"'x-coordinate' starts at 0, not at the first cell centre.*Fix"),
    ({"x_points": 18, "n": 20}, ["data.resolution=18"], r"18 points.*not a multiple of data.reduced_resolution=4.*Fix"),
    ({"x_points": 8}, ["data.resolution=8"],
     r"'x-coordinate' after data.reduced_resolution=4 has 2 point\(s\).*Fix: lower data.reduced_resolution"),
    ({"t": np.zeros(22)}, [], r"'t-coordinate' must be strictly increasing.*Fix"),
    ({"x": (np.arange(16)[::-1] + 0.5) / 16}, [], r"'x-coordinate' must be increasing.*Fix"),
], ids=["x_vertices", "x_not_divisible", "x_too_coarse", "t_const", "x_reversed"])
def test_protocol_grid_refusals(tmp_path, kwargs, extra, pattern):
    from ups.data.protocol import load_protocol

    p = _grid_file(tmp_path / "g.hdf5", **kwargs)
    with pytest.raises(ConfigError, match=pattern) as e:
        load_protocol(_cfg(p, *extra))
    assert str(p) in str(e.value)


def test_nan_samples_are_listed(tmp_path):
    from ups.data.hdf5 import DataFileError
    from ups.data.protocol import load_protocol

    u = np.zeros((20, 21, 16), np.float32)
    u[3, 5, 4] = np.nan
    u[7, 0, 0] = np.inf
    p = _grid_file(tmp_path / "nan.hdf5", tensor=u)
    with pytest.raises(DataFileError, match=r"nan\.hdf5: 'tensor' holds NaN/inf in 2 samples \(indices 3, 7;.*Fix"):
        load_protocol(_cfg(p))


def test_values_whose_squares_overflow_float32_are_refused(tmp_path):
    """Finite float32 values of 1e30 passed the NaN/inf check and every nRMSE on the file came out NaN (ups eval
    exited 0 with nan everywhere)."""
    from ups.data.hdf5 import DataFileError
    from ups.data.protocol import load_protocol

    u = np.random.default_rng(0).standard_normal((20, 21, 16)).astype(np.float32)
    u[5] *= 1e30
    p = _grid_file(tmp_path / "big.hdf5", tensor=u)
    with pytest.raises(DataFileError, match=r"big\.hdf5: 'tensor' holds values up to .*e\+30 in magnitude.*Fix"):
        load_protocol(_cfg(p))


def test_samples_with_no_target_signal_are_refused(tmp_path):
    """A sample that is zero in every predicted frame has no nRMSE (it divides by the target's norm): refused
    at load, naming the samples, where it used to reach the baselines (a traceback from the linear fit) or, in
    a sweep, train trials scored 1e5."""
    from ups.data.hdf5 import DataFileError
    from ups.data.protocol import load_protocol

    u = np.random.default_rng(0).standard_normal((20, 21, 16)).astype(np.float32)
    u[4] = 0.0
    u[9, 2:] = 0.0  # its context frames (initial_step=2 below) are not zero: still no target
    p = _grid_file(tmp_path / "blank.hdf5", tensor=u)
    with pytest.raises(DataFileError, match=r"blank\.hdf5: 'tensor' is zero in every frame from initial_step=2 on "
                                            r"in 2 of 20 samples \(indices 4, 9;.*Fix"):
        load_protocol(_cfg(p, "data.initial_step=2"))
    u[9, 10, 4] = 1e-3  # one nonzero target value at the protocol's points (every 5th frame, 4th point) is a target
    u[4, 15, 8] = -2.0
    load_protocol(_cfg(_grid_file(tmp_path / "ok.hdf5", tensor=u), "data.initial_step=2"))


def test_file_nu_is_used_and_checked(tmp_path):
    from ups.data.hdf5 import DataFileError
    from ups.data.protocol import load_protocol

    p = _grid_file(tmp_path / "1D_Burgers_Sols_Nu0.001.hdf5")
    assert load_protocol(_cfg(p)).nu == 0.001  # PDEBench: the name gives ν (config default 0.01 ignored)
    import h5py

    with h5py.File(p, "a") as f:
        f.attrs["nu"] = 0.01
    with pytest.raises(DataFileError, match=r"'nu' = 0\.01 contradicts the file name \(_Nu0\.001\).*Fix"):
        load_protocol(_cfg(p))


def test_eval_grid_check_refuses_constant_time(tmp_path):
    """`ups eval`'s check shares the grid check: constant t is a message, not a ZeroDivisionError."""
    from types import SimpleNamespace

    from ups.config import load_config
    from ups.data.hdf5 import DataFileError
    from ups.eval import check_eval_data

    cfg = load_config(["data.frames=21", "data.t_final=0.2", "data.resolution=16", "data.reduced_resolution_t=5",
                       "data.reduced_resolution=4"])
    x = torch.tensor((np.arange(0, 16, 4) + 0.5) / 16)
    data = SimpleNamespace(test=torch.zeros(2, 5, 4), x=x, t=torch.zeros(5), nu=0.01)
    with pytest.raises(DataFileError, match=r"f\.hdf5: 't-coordinate' must be strictly increasing.*Fix"):
        check_eval_data(cfg, 4, data, "f.hdf5")
    data.t = torch.tensor([0.0, 0.05, 0.1, 0.3, 0.2])
    with pytest.raises(DataFileError, match=r"strictly increasing"):
        check_eval_data(cfg, 4, data, "f.hdf5")
    data.t = torch.arange(5) * 0.05
    assert check_eval_data(cfg, 4, data, "f.hdf5")[0].identity


def test_eval_check_refuses_another_horizon_or_time_step_and_notes_another_nu():
    """A file of another frame count (another horizon), 2 % off the checkpoint's time step, or with coordinates that
    do not match its test split is refused; another ν is scored, with a note that the test is out of distribution."""
    from types import SimpleNamespace

    from ups.config import ConfigError, load_config
    from ups.eval import check_eval_data

    cfg = load_config(["data.frames=21", "data.t_final=0.2", "data.resolution=16", "data.reduced_resolution_t=5",
                       "data.reduced_resolution=4"])
    x = torch.tensor((np.arange(0, 16, 4) + 0.5) / 16)
    nu = float(cfg.data.nu)
    data = SimpleNamespace(test=torch.zeros(2, 5, 4), x=x, t=torch.arange(5) * 0.05, nu=nu)
    assert check_eval_data(cfg, 4, data, "f.hdf5")[1] == []
    data.nu = 2 * nu
    assert any("out-of-distribution" in n for n in check_eval_data(cfg, 4, data, "f.hdf5")[1])
    short = SimpleNamespace(test=torch.zeros(2, 4, 4), x=x, t=torch.arange(4) * 0.05, nu=nu)
    with pytest.raises(ConfigError, match=r"4 frames after subsampling, the checkpoint's protocol has 5"):
        check_eval_data(cfg, 4, short, "f.hdf5")
    with pytest.raises(ConfigError, match=r"time step after subsampling .* is 0.051, the checkpoint was trained with 0.05"):
        check_eval_data(cfg, 4, SimpleNamespace(test=torch.zeros(2, 5, 4), x=x, t=torch.arange(5) * 0.051, nu=nu),
                        "f.hdf5")
    with pytest.raises(ConfigError, match=r"coordinates \(4 x, 4 t\) do not match"):
        check_eval_data(cfg, 4, SimpleNamespace(test=torch.zeros(2, 5, 4), x=x, t=torch.arange(4) * 0.05, nu=nu),
                        "f.hdf5")


@pytest.mark.parametrize("kwargs, key", [({"dt": 0.02}, "'t-coordinate'"), ({"t": np.zeros(22)}, "'t-coordinate'"),
                                         ({"x": (np.arange(16) + 0.5) / 16 * 2 * np.pi}, "'x-coordinate'")],
                         ids=["dt002", "t_const", "x_2pi"])
def test_ups_train_refuses_before_compute(tmp_path, capsys, kwargs, key):
    from ups.cli import main as ups_main

    p = _grid_file(tmp_path / "bad.hdf5", **kwargs)
    run_dir = tmp_path / "run"
    rc = ups_main(["train", f"data.path={p}", "data.initial_step=2", "data.frames=21", "data.t_final=0.2",
                   "data.resolution=16", "preset=dim8", "--run-dir", str(run_dir)])
    err = capsys.readouterr().err
    assert rc == 2 and str(p) in err and key in err and "Fix:" in err and "Traceback" not in err, err
    assert not run_dir.exists()  # nothing trained, nothing written


@pytest.mark.parametrize("extra, said", [
    (["data.initial_step=50"], r"has 41 frames after reduced_resolution_t=5, not more than initial_step=50"),
    (["data.reduced_resolution=3"], r"has 64 points, not a multiple of data.reduced_resolution=3"),
    (["data.n=5"], r"5 samples from .* give train/val/test = 5/0/0 .*Fix: .*data\.n=10")])
def test_settings_the_data_cannot_fit_are_refused_before_it_is_generated(tmp_path, extra, said):
    """Each followed from the data.* settings alone, but was refused only after the dataset was generated
    (minutes at the default 2,000 trajectories × 1,024 points)."""
    from ups.config import load_config
    from ups.data.protocol import ProtocolError, load_protocol

    cfg = load_config(["data.n=12", "data.resolution=64", "data.frames=201", f"data.cache_dir={tmp_path / 'cache'}",
                       *extra]).data
    with pytest.raises(ProtocolError, match=rf"data: the data the data\.\* settings describe {said}"
                       if not extra[0].startswith("data.n=") else said):
        load_protocol(cfg)
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())  # nothing generated


def test_a_corrupted_cached_file_is_told_to_be_deleted_and_then_made_again(tmp_path):
    """A cached generated file with NaN in it (a disk error, an edit) said "regenerate the file (`ups data generate
    …`)", which found the file "cached" (its attributes are complete) and kept it. The fix names the file to delete,
    and the next load generates it again."""
    import h5py

    from ups.config import load_config
    from ups.data.hdf5 import DataFileError
    from ups.data.protocol import load_protocol

    cfg = load_config(["data.n=12", "data.resolution=64", "data.frames=61", "data.t_final=0.6",
                       "data.reduced_resolution_t=3", f"data.cache_dir={tmp_path / 'cache'}"]).data
    good = load_protocol(cfg)
    with h5py.File(good.source, "a") as f:
        f["tensor"][4, 3, :] = np.nan
    with pytest.raises(DataFileError, match=r"NaN/inf in 1 samples.*Fix: delete this cached file \(rm '.*'\): the next "
                                            r"command generates it again") as e:
        load_protocol(cfg)
    assert "drop those samples" not in str(e.value)
    good.source.unlink()
    again = load_protocol(cfg)
    assert torch.equal(again.test, good.test) and again.data_hash == good.data_hash


def test_no_frame_left_after_initial_step_is_refused(tmp_path):
    """21 frames at reduced_resolution_t=5 are 5: initial_step=5 leaves nothing to forecast, and the refusal says
    so (not that the file's samples are blank from initial_step on)."""
    from ups.data.protocol import load_protocol

    p = _grid_file(tmp_path / "g.hdf5")
    with pytest.raises(ConfigError) as e:
        load_protocol(_cfg(p, "data.initial_step=5"))
    assert "has 5 frames after reduced_resolution_t=5, not more than initial_step=5" in str(e.value), str(e.value)
    assert load_protocol(_cfg(p, "data.initial_step=4")).initial_step == 4


def test_the_data_hash_names_the_split_and_the_whole_file(tmp_path):
    """Baselines and results are cached under data_hash: another split of the same file, or a file whose last
    sample was edited (same shape, attributes and size), must not share it."""
    import h5py

    from ups.data.protocol import load_protocol

    p = _grid_file(tmp_path / "g.hdf5")
    first = load_protocol(_cfg(p)).data_hash
    assert load_protocol(_cfg(p)).data_hash == first
    assert load_protocol(_cfg(p, "data.test_ratio=0.2")).data_hash != first
    with h5py.File(p, "a") as f:
        f["tensor"][19] = 2 * f["tensor"][19]
    assert load_protocol(_cfg(p)).data_hash != first
