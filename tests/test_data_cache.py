"""Content-addressed cache: never recomputes, never counts a half-written file, reproducible, CLI."""
from __future__ import annotations

import os
import re

import numpy as np
import pytest

import ups.data.cache as cache
from ups.cli import main as ups_main
from ups.config import load_config
from ups.data.hdf5 import inspect_pdebench, read_pdebench

SMALL = ["data.n=3", "data.resolution=32", "data.frames=11", "data.t_final=0.1"]


def _cfg(tmp_path, *extra):
    return load_config([*SMALL, f"data.cache_dir={tmp_path}", *extra]).data


def _data_files(d):
    return sorted(p.name for p in d.iterdir() if not p.name.endswith(".lock"))


def test_same_request_never_recomputes(tiny_data, tiny_cfg):
    path = tiny_data.source
    before = os.stat(path).st_mtime_ns
    assert cache.dataset_path(tiny_cfg.data, progress=False) == path
    assert os.stat(path).st_mtime_ns == before
    info = inspect_pdebench(path)
    assert info.attrs["content_hash"] == cache.content_hash(tiny_cfg.data)
    assert info.attrs["nu"] == 0.01 and info.attrs["seed"] == 2022 and info.attrs["solver"]
    assert info.attrs["spectral_tail_max"] <= cache.TAIL_TOL


def test_generated_files_carry_pdebench_Nu_attribute(tmp_path):
    """PDEBench's Burgers files store ν as attrs['Nu'] (Data_Merge.py transform); ours carry it next to 'nu'."""
    path = cache.dataset_path(_cfg(tmp_path, "data.nu=0.02"), progress=False, workers=1)
    attrs = inspect_pdebench(path).attrs
    assert attrs["Nu"] == 0.02 and attrs["nu"] == 0.02


def test_key_is_content_addressed(tmp_path):
    a = cache.cache_file(_cfg(tmp_path))
    assert cache.cache_file(_cfg(tmp_path, "data.seed=1")) != a
    assert cache.cache_file(_cfg(tmp_path, "data.nu=0.02")) != a
    # protocol settings do not change the generated file
    assert cache.cache_file(_cfg(tmp_path, "data.reduced_resolution=2", "data.test_ratio=0.2")) == a


def test_reproducible_and_half_written_file_ignored(tmp_path):
    cfg_a, cfg_b = _cfg(tmp_path / "a"), _cfg(tmp_path / "b")
    pa = cache.dataset_path(cfg_a, progress=False)
    np.testing.assert_array_equal(read_pdebench(pa).tensor, read_pdebench(cache.dataset_path(cfg_b, progress=False)).tensor)
    # a truncated file at the cache path does not count: it is regenerated, identical to the first
    good = read_pdebench(pa).tensor
    pa.write_bytes(pa.read_bytes()[:1000])
    assert cache.dataset_path(cfg_a, progress=False) == pa
    np.testing.assert_array_equal(read_pdebench(pa).tensor, good)


def test_interrupted_generation_leaves_nothing(tmp_path, monkeypatch):
    real = cache.solve_burgers
    calls = {"n": 0}

    def crash_on_second_batch(*args, **kwargs):  # fault injection into our own solver call
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "solve_burgers", crash_on_second_batch)
    cfg = _cfg(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        cache.generate(cfg, cache.cache_file(cfg), progress=False, chunk=1, workers=1)  # patch is in-process
    assert _data_files(tmp_path) == []
    # a writer killed with SIGKILL leaves its temp file; the next generator removes it under the lock
    stale = tmp_path / f".{cache.cache_file(cfg).name}.deadbeef.tmp"
    stale.write_bytes(b"partial")
    monkeypatch.setattr(cache, "solve_burgers", real)
    assert cache.dataset_path(cfg, progress=False) == cache.cache_file(cfg)
    assert _data_files(tmp_path) == [cache.cache_file(cfg).name]


def test_cli_generate_then_cached(tmp_path, capsys):
    args = ["data", "generate", "n=2", "resolution=32", "frames=6", "t_final=0.05", f"cache_dir={tmp_path / 'c'}",
            "--no-progress", "--threads", "1", "--out", str(tmp_path / "out.hdf5")]
    assert ups_main(args) == 0
    assert "generated:" in capsys.readouterr().out
    assert ups_main(args) == 0
    assert "cached:" in capsys.readouterr().out
    bf = read_pdebench(tmp_path / "out.hdf5")
    assert bf.tensor.shape == (2, 6, 32) and bf.tensor.dtype == np.float32


def test_cli_generate_refuses_an_unwritable_out_before_solving(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")  # --out under a regular file: its folder can never be created
    args = ["data", "generate", "n=2", "resolution=32", "frames=6", "t_final=0.05", f"cache_dir={tmp_path / 'c'}",
            "--no-progress", "--threads", "1", "--out", str(blocker / "sub" / "out.hdf5")]
    assert ups_main(args) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "cannot write" in err and "Fix:" in err
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*.hdf5"))  # nothing was solved


def test_cli_generate_refuses_a_uri_out_before_solving(tmp_path, capsys, monkeypatch):
    """--out s3://b/x.h5 copied the file to the local ./s3:/b/x.h5 (Path folds the URI)."""
    monkeypatch.chdir(tmp_path)
    args = ["data", "generate", "n=2", "resolution=32", "frames=6", "t_final=0.05", f"cache_dir={tmp_path / 'c'}",
            "--no-progress", "--threads", "1", "--out", "s3://bucket/out.hdf5"]
    assert ups_main(args) == 2
    err = capsys.readouterr().err
    assert "--out s3://bucket/out.hdf5 is a URI" in err and "Fix: --out <local file>" in err
    assert not (tmp_path / "s3:").exists() and not (tmp_path / "c").exists()  # nothing solved, nothing copied


def test_batches_cover_every_trajectory_once_with_similar_cost():
    from ups.data.initial import cell_centres, init_multi
    from ups.data.solver import choose_resolution, choose_substeps

    u0 = init_multi(600, cell_centres(256), seed=4)
    batches = cache.plan_batches(u0, 0.01, 256, 0.01, chunk=64)
    assert sorted(np.concatenate(batches).tolist()) == list(range(600))
    amp, half = np.abs(u0).max(axis=1), (u0.max(axis=1) - u0.min(axis=1)) / 2
    grids = [choose_resolution(float(s), 0.01, 256) for s in half]
    for rows in batches:
        assert 1 <= len(rows) <= 64
        assert len({grids[r] for r in rows}) == 1  # one solver grid per batch
        steps = [choose_substeps(float(amp[r]), 0.01, grids[r], 0.01) for r in rows]
        assert min(steps) >= 0.85 * max(steps)


def test_worker_processes_give_identical_data(tmp_path):
    """CPU solver processes over disjoint batches write exactly what the in-process loop writes."""
    cfg = load_config(["data.n=12", "data.resolution=64", "data.frames=6", "data.t_final=0.05",
                       f"data.cache_dir={tmp_path}"]).data
    a = cache.generate(cfg, tmp_path / "one.hdf5", progress=False, chunk=3, workers=1, device="cpu")
    b = cache.generate(cfg, tmp_path / "two.hdf5", progress=False, chunk=3, workers=2, device="cpu")
    assert (a["workers"], b["workers"]) == (1, 2)
    ta, tb = read_pdebench(tmp_path / "one.hdf5").tensor, read_pdebench(tmp_path / "two.hdf5").tensor
    assert ta.shape == (12, 6, 64)
    np.testing.assert_array_equal(ta, tb)


def test_unguarded_script_fails_instead_of_hanging(tmp_path):
    """A user script with no ``__main__`` guard: the solver pool's spawned worker re-runs it and asks for
    the same file while its parent holds the lock.  It used to wait for ever; now it fails, saying why."""
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "no_guard.py"
    script.write_text(textwrap.dedent(f"""
        import ups.data.cache as cache
        from ups.config import load_config
        cache.generate.__kwdefaults__["chunk"] = 3  # 4 solver batches: the pool starts
        cfg = load_config(["data.n=12", "data.resolution=64", "data.frames=6", "data.t_final=0.05",
                           "data.cache_dir={tmp_path / 'cache'}"]).data
        cache.dataset_path(cfg, progress=False, workers=2)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert proc.returncode != 0
    worker_error = proc.stderr.split("re-running the main script '")[1]
    assert worker_error.startswith(f"{script}' at import time") and 'if __name__ == "__main__":' in worker_error
    assert "a solver worker process ended abruptly" in proc.stderr.splitlines()[-1]  # the parent's own error
    assert _data_files(tmp_path / "cache") == []  # no file, no temp file left


def test_a_generated_file_edited_in_place_is_refused(tmp_path):
    """The generated file's content_hash names its generation settings, not its data: edited in place (h5py), it
    kept that identity, and with it the baselines and results cached for the data it had before. The file carries
    a digest of its samples since; a mismatch is refused, naming the way to use the edit as one's own data."""
    import h5py

    from ups.data.hdf5 import DataFileError
    from ups.data.protocol import load_protocol

    cfg = _cfg(tmp_path, "data.n=20", "data.reduced_resolution=1", "data.reduced_resolution_t=1")
    generated = cache.dataset_path(cfg, progress=False, workers=1)
    assert str(inspect_pdebench(generated).attrs["samples_digest"]).startswith("8:")
    mine = tmp_path / "mine.hdf5"  # a copy passed as data.path (the cache itself regenerates a file it doubts)
    mine.write_bytes(generated.read_bytes())
    own = load_config([*SMALL, f"data.path={mine}", "data.n=20", "data.reduced_resolution=1",
                       "data.reduced_resolution_t=1"]).data
    first = load_protocol(own)
    assert first.data_hash == load_protocol(cfg).data_hash  # the copy is the generated data
    with h5py.File(mine, "a") as f:
        f["tensor"][19] = 2 * f["tensor"][19]  # the last sample, scaled
    with pytest.raises(DataFileError, match=r"mine\.hdf5: 'tensor' was changed after `ups data generate` wrote it .* "
                                            r"Fix: regenerate it .* del f\.attrs\['content_hash'\]"):
        load_protocol(own)
    with h5py.File(mine, "a") as f:
        del f.attrs["content_hash"]  # the digest left: the file is identified by its contents, nothing to check
    edited = load_protocol(own)
    assert edited.data_hash != first.data_hash


def test_solver_workers_end_when_the_generating_process_is_killed(tmp_path):
    """kill -9 of a driver mid-generation left its spawned solver workers idle under init for good."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "gen.py"
    script.write_text(
        "import multiprocessing, os, time\n"
        "from concurrent.futures import ProcessPoolExecutor\n"
        "from ups.data.cache import _worker_init\n"
        "if __name__ == '__main__':\n"
        "    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context('spawn'),\n"
        "                               initializer=_worker_init, initargs=(os.getpid(),))\n"
        "    print(pool.submit(os.getpid).result(), flush=True)\n"
        "    time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        worker = int(parent.stdout.readline())
        os.kill(worker, 0)  # alive
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(worker, 0)
            except ProcessLookupError:
                return
            with open(f"/proc/{worker}/stat") as f:  # reaped by init, or a zombie on its way
                if f.read().split(") ")[1].startswith("Z"):
                    return
            time.sleep(0.2)
        os.kill(worker, signal.SIGKILL)
        pytest.fail(f"solver worker {worker} outlived its killed parent by 15 s")
    finally:
        if parent.poll() is None:
            parent.kill()


def test_every_generation_setting_and_version_changes_the_content_hash(tmp_path, monkeypatch):
    """The hash names all that determines the data: a request differing only in the time grid, or made after a bump
    of DATA_VERSION / SOLVER_VERSION, gets a file of its own (it was served the old file's frames)."""
    base = _cfg(tmp_path)
    h, f = cache.content_hash(base), cache.cache_file(base)
    for extra in ("data.t_final=0.2", "data.frames=21", "data.seed=1", "data.n=4", "data.resolution=64", "data.nu=0.02"):
        assert cache.content_hash(_cfg(tmp_path, extra)) != h, extra
        assert cache.cache_file(_cfg(tmp_path, extra)) != f, extra
    for const in ("DATA_VERSION", "SOLVER_VERSION"):
        with monkeypatch.context() as m:
            m.setattr(cache, const, getattr(cache, const) + "-next")
            assert cache.content_hash(base) != h and cache.cache_file(base) != f, const
    assert cache.content_hash(base) == h


def test_a_generated_file_records_its_grid_and_is_not_taken_for_another_request(tmp_path):
    """The attributes state the time step and the solver grids used; is_complete checks the stored content_hash,
    not just that a readable file sits at the path."""
    from ups.data.solver import is_power_of_two

    cfg = _cfg(tmp_path)
    path = cache.dataset_path(cfg, progress=False, workers=1)
    attrs = inspect_pdebench(path).attrs
    assert attrs["dt_save"] == pytest.approx(0.1 / 10) and (attrs["t_final"], attrs["frames"]) == (0.1, 11)
    lo, hi = attrs["solver_resolution_min"], attrs["solver_resolution_max"]
    assert is_power_of_two(lo) and is_power_of_two(hi) and 32 <= lo <= hi and attrs["substeps_min"] >= 1
    assert cache.is_complete(path, cache.content_hash(cfg))
    assert not cache.is_complete(path, cache.content_hash(_cfg(tmp_path, "data.seed=5")))
    assert not cache.is_complete(tmp_path / "missing.hdf5", cache.content_hash(cfg))


def test_solve_batch_refines_the_grid_until_the_spectral_tail_is_small(monkeypatch):
    """A batch whose automatic grid leaves a spectral tail above TAIL_TOL is solved again on 2× the points; where
    even MAX_RESOLUTION does not get it there, generation is refused, naming nu."""
    from ups.data.initial import cell_centres
    from ups.data.solver import choose_resolution

    u0 = np.sin(2 * np.pi * cell_centres(32))[None]  # (1, 32): a shock forms by t ≈ 1/(2π)
    t = np.linspace(0.0, 0.2, 3)
    auto = choose_resolution(1.0, 0.01, 32)
    out, (res, _, tail) = cache.solve_batch(u0, 0.01, t)
    assert res == auto and tail <= cache.TAIL_TOL and out.shape == (1, 3, 32)
    monkeypatch.setattr(cache, "TAIL_TOL", tail / 2)  # the automatic grid is now not enough
    out2, (res2, _, tail2) = cache.solve_batch(u0, 0.01, t)
    assert res2 == 2 * auto and tail2 <= tail / 2
    np.testing.assert_allclose(out2, out, atol=1e-5)  # the same solution, better resolved
    monkeypatch.setattr(cache, "TAIL_TOL", 0.0)
    monkeypatch.setattr(cache, "MAX_RESOLUTION", 2 * auto)
    with pytest.raises(cache.DataConfigError, match=r"nu=0\.01 is under-resolved even on .* Fix: use a larger nu"):
        cache.solve_batch(u0, 0.01, t)


@pytest.mark.parametrize("key, value, said", [
    ("frames", 1, "'frames' = 1 must be ≥ 2"),  # one frame: no save interval (t_final / 0)
    ("resolution", 2 * cache.MAX_RESOLUTION, f"'resolution' = {2 * cache.MAX_RESOLUTION} exceeds {cache.MAX_RESOLUTION}"),
    ("resolution", 8, "'resolution' = 8 is not a power of two ≥ 16"),
    ("t_final", 0.0, "'t_final' = 0.0 must be > 0"),
])
def test_validate_request_refuses_what_the_solver_cannot_generate(key, value, said):
    request = {"nu": 0.01, "n": 3, "resolution": 32, "frames": 11, "t_final": 0.1, key: value}
    with pytest.raises(cache.DataConfigError, match=re.escape(said) + r".*Fix: "):
        cache.validate_request(request)
    cache.validate_request({**request, key: {"frames": 2, "resolution": 64, "t_final": 2.0}[key]})  # a neighbour is fine
