"""Baselines: FNO1d architecture, linear Fourier map, caching, CLI, and the protocol calibration."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch

from ups.baselines import ROW_KEYS, cache_path, leaderboard_rows, main, run_baselines
from ups.metrics import nrmse
from ups.models.baselines import fit_linear_fourier, persistence_rollout, train_fno
from ups.models.fno import FNO1d, SpectralConv1d, fno_rollout

# Calibration data: ν=0.01 at the protocol's 256 points × 41 frames (saved directly at 256).
CALIB_OVERRIDES = ["data.nu=0.01", "data.n=300", "data.resolution=256", "data.reduced_resolution=1", "data.seed=7"]
# Optimiser steps of the calibration FNO (PDEBench config, batch 50), a step count rather than a
# wall-clock budget so the test is deterministic under load. The test trains on 2 threads (the other
# tests here keep to 1): `benchmarks/fno_step.py --threads 1` / `--threads 2` measured 0.76 / 0.50 s per
# step on a quiet 2-core box (2026-12-03), so ≈ 55 s instead of ≈ 85 s when the test runs alone; beside another
# pytest-xdist worker (test.sh) it keeps to 1 thread.
# Measured on this data (seed 0, data version 2): FNO 0.228 at 110 steps vs linear 0.305 (data version 1: FNO
# 0.21 at 110 steps, 0.19 at 120, vs linear 0.29; seed 1 slower: 0.28 at 110, 0.25 at 120).
CALIB_FNO_STEPS = 110


@pytest.fixture(autouse=True)
def _few_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # 2 threads on a loaded 2-core box can be 10× slower
    yield
    torch.set_num_threads(old)


# ------------------------------------------------------------------------------ architecture
def test_fno1d_has_pdebench_parameter_count_and_shapes():
    model = FNO1d(modes=12, width=20, initial_step=10)
    assert sum(p.numel() for p in model.parameters()) == 43137  # PDEBench's "~43K" (complex = 2 reals)
    grid = (torch.arange(256) + 0.5) / 256
    out = model(torch.randn(3, 10, 256), grid)
    assert out.shape == (3, 256)
    roll = fno_rollout(model, torch.randn(2, 10, 256), 5, grid)
    assert roll.shape == (2, 5, 256)
    with pytest.raises(ValueError, match="context frames"):
        model(torch.randn(3, 9, 256), grid)


def test_spectral_conv_equals_truncated_fft_product():
    torch.manual_seed(0)
    conv = SpectralConv1d(5, 7, 12).double()
    x = torch.randn(258, 3, 5, dtype=torch.float64)  # (N, B, C_in), N as with PDEBench's padding
    x_ft = torch.fft.rfft(x.permute(1, 2, 0))  # (B, C_in, K)
    w = torch.view_as_complex(conv.weight.detach().contiguous())  # (C_in, C_out, M)
    out_ft = torch.zeros(3, 7, 258 // 2 + 1, dtype=torch.complex128)
    out_ft[:, :, :12] = torch.einsum("bim,iom->bom", x_ft[:, :, :12], w)
    ref = torch.fft.irfft(out_ft, n=258).permute(2, 0, 1)  # (N, B, C_out)
    assert torch.allclose(conv(x), ref, atol=1e-12)


def _pdebench_fno(model: FNO1d, context: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """PDEBench's FNO1d forward, channels first with torch.fft, from ``model``'s weights: (B, Ti, X) → (B, X)."""
    import torch.nn.functional as F

    b, _, n = context.shape
    x = torch.cat([context.permute(0, 2, 1), grid.to(context.dtype).expand(b, n)[..., None]], dim=-1)
    x = F.pad(model.fc0(x).permute(0, 2, 1), [0, model.padding])  # (B, W, X+P): zeros at the right end
    m = model.modes
    for i, (conv, w) in enumerate(zip(model.convs, model.ws)):
        x_ft = torch.fft.rfft(x)  # (B, W, K)
        out_ft = torch.zeros(b, conv.out_channels, x.shape[-1] // 2 + 1, dtype=x_ft.dtype)
        out_ft[:, :, :m] = torch.einsum("bim,iom->bom", x_ft[:, :, :m],
                                        torch.view_as_complex(conv.weight.detach().contiguous()))
        x = torch.fft.irfft(out_ft, n=x.shape[-1]) + w(x.permute(0, 2, 1)).permute(0, 2, 1)
        if i < 3:  # no activation after the last Fourier layer
            x = F.gelu(x)
    x = x[..., : -model.padding].permute(0, 2, 1)  # (B, X, W): the padding cut off again
    return model.fc2(F.gelu(model.fc1(x))).squeeze(-1)


def test_fno_matches_pdebench_forward_and_rolls_its_window_forward():
    """The grid-first FNO1d equals PDEBench's channels-first FFT forward (right-end padding, GELU after layers
    1-3); a rollout feeds each prediction back as the newest frame of the window."""
    torch.manual_seed(0)
    model = FNO1d(modes=4, width=6, initial_step=3).double()
    grid = (torch.arange(16, dtype=torch.float64) + 0.5) / 16
    ctx = torch.randn(2, 3, 16, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(model(ctx, grid), _pdebench_fno(model, ctx, grid), atol=1e-10)
        roll = fno_rollout(model, ctx, 3, grid)
        window = ctx
        for k in range(3):
            nxt = model(window, grid)
            assert torch.allclose(roll[:, k], nxt, atol=1e-10), k
            window = torch.cat([window[:, 1:], nxt[:, None]], dim=1)


# ---------------------------------------------------------------------------------- linear
def _advection_diffusion(n: int, t: int, x: int, seed: int) -> torch.Tensor:
    """Exact solutions of u_t + c u_x = D u_xx: each Fourier mode is multiplied by a fixed factor."""
    g = torch.Generator().manual_seed(seed)
    u0 = torch.randn(n, x, generator=g, dtype=torch.float64)
    k = torch.fft.rfftfreq(x, 1.0 / x, dtype=torch.float64) * 2 * math.pi
    factor = torch.exp((-1j * 0.7 * k - 1e-4 * k**2) * 0.01)  # one step of dt = 0.01
    u0_ft = torch.fft.rfft(u0)  # (n, K)
    u0_ft[:, -1] = 0  # no Nyquist mode: a real field cannot carry its phase shift
    u_ft = u0_ft[:, None, :] * factor ** torch.arange(t)[None, :, None]  # (n, t, K)
    return torch.fft.irfft(u_ft, n=x)  # (n, t, x)


def test_linear_map_recovers_a_linear_pde_exactly():
    train = _advection_diffusion(20, 12, 64, seed=0)
    test = _advection_diffusion(5, 41, 64, seed=1)
    lin = fit_linear_fourier(train, lags=1, ridge=0.0)
    pred = torch.cat([test[:, :10], lin.rollout(test[:, :10], 31)], dim=1)
    assert nrmse(pred, test, 10) < 1e-8
    assert lin.num_parameters == 2 * 33
    persist = torch.cat([test[:, :10], persistence_rollout(test[:, :10], 31)], dim=1)
    assert nrmse(persist, test, 10) > 0.5  # the field moves: repeating the last frame is poor


def test_linear_fit_rejects_bad_training_data():
    bad = _advection_diffusion(3, 12, 32, seed=0)
    bad[1, 4, 7] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_linear_fourier(bad)
    with pytest.raises(ValueError, match="frames"):
        fit_linear_fourier(bad[:, :2], lags=3)


# ------------------------------------------------------------------------------------ FNO
def test_fno_training_is_deterministic_given_seed(tiny_data):
    grid = tiny_data.x
    a = train_fno(tiny_data.train, grid, tiny_data.initial_step, budget_s=0, max_steps=1, seed=3)
    b = train_fno(tiny_data.train, grid, tiny_data.initial_step, budget_s=0, max_steps=1, seed=3)
    c = train_fno(tiny_data.train, grid, tiny_data.initial_step, budget_s=0, max_steps=1, seed=4)
    assert a.steps == b.steps == 1
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)
    assert a.final_loss == b.final_loss
    assert any(not torch.equal(pa, pc) for pa, pc in zip(a.model.parameters(), c.model.parameters()))
    with pytest.raises(ValueError, match="budget_s"):
        train_fno(tiny_data.train, grid, tiny_data.initial_step, budget_s=0, seed=0)


# ------------------------------------------------------------------------- run + cache
def test_run_baselines_rows_cache_and_determinism(tiny_data, tmp_path):
    rows = run_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=1)
    assert [r["name"] for r in rows] == ["persistence", "linear", "fno"]
    for r in rows:
        assert set(ROW_KEYS) <= set(r)
        assert r["data_hash"] == tiny_data.data_hash
        assert math.isfinite(r["nrmse"])
        assert r["nrmse_pdebench"] == pytest.approx(r["nrmse"] * 31 / 41, rel=1e-9)
    assert rows[0]["conservation_gap"] == 0.0 and rows[0]["energy_violation"] == 0.0
    assert rows[2]["params"] == 43137 and rows[2]["details"]["steps"] == 1

    # same seed, no cache: bit-identical metrics
    again = run_baselines(tiny_data, 0, seed=1, cache_dir=None, fno_steps=1)
    for r, s in zip(rows, again):
        assert {k: r[k] for k in ROW_KEYS if k != "train_s"} == {k: s[k] for k in ROW_KEYS if k != "train_s"}

    # the cache is what a second call returns (edit it and see the edit come back)
    path = cache_path(tmp_path, tiny_data.data_hash, 0, 1, 1)
    blob = json.loads(path.read_text())
    blob["rows"][0]["nrmse"] = 123.0
    path.write_text(json.dumps(blob))
    assert run_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=1)[0]["nrmse"] == 123.0
    # refresh recomputes; a corrupt cache file is recomputed and replaced, not fatal
    assert run_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=1, refresh=True)[0]["nrmse"] == rows[0]["nrmse"]
    path.write_text("{not json")
    assert run_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=1)[0]["nrmse"] == rows[0]["nrmse"]
    assert json.loads(path.read_text())["rows"][0]["nrmse"] == rows[0]["nrmse"]
    assert not list(tmp_path.glob(".*.tmp"))  # nothing half-written left behind

    # no FNO budget → only the two closed-form baselines
    assert [r["name"] for r in run_baselines(tiny_data, 0, seed=1, cache_dir=None)] == ["persistence", "linear"]

    # max_samples: the first N test trajectories, as eval.max_samples scores a model (ups eval scored the baselines
    # on the whole split next to UPS on its first N), cached apart from the whole split's rows
    n = 2
    first = run_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=1, max_samples=n)
    assert [r["n_test"] for r in first] == [n] * 3 and cache_path(tmp_path, tiny_data.data_hash, 0, 1, 1, n).is_file()
    ti = tiny_data.initial_step
    true = tiny_data.test[:n].float()
    held = true.clone()
    held[:, ti:] = true[:, ti - 1:ti]  # persistence: the last context frame, held
    assert first[0]["nrmse"] == pytest.approx(nrmse(held, true, ti), rel=1e-6) and first[0]["nrmse"] != rows[0]["nrmse"]
    assert run_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=1)[0]["nrmse"] == rows[0]["nrmse"]
    assert run_baselines(tiny_data, 0, seed=1, cache_dir=None, max_samples=10**6)[0]["n_test"] == \
        tiny_data.test.shape[0]  # more than the split holds: the whole split

    # a split of more than 50 samples that is no multiple of 50: nrmse_pdebench per batch of 50 (PDEBench's metrics()
    # loop), so rows cached for it before, with the plain mean, are not taken for the new ones
    import dataclasses

    reps = -(-60 // tiny_data.test.shape[0])
    sixty = dataclasses.replace(tiny_data, test=tiny_data.test.repeat(reps, 1, 1)[:60])
    odd = run_baselines(sixty, 0, seed=1, cache_dir=tmp_path / "odd")
    (path,) = (tmp_path / "odd").glob("baselines-*.json")
    assert json.loads(path.read_text())["key"]["nrmse_pdebench"] == "batches of 50" and odd[0]["n_test"] == 60
    lb = leaderboard_rows(rows)
    assert {r["kind"] for r in lb} == {"baseline"} and len({r["run_id"] for r in lb}) == 3


def test_scoring_the_whole_split_and_its_first_samples_trains_each_baseline_once(tiny_data, tmp_path, monkeypatch):
    """A sweep under ``eval.max_samples=N`` needs the baselines on the whole split (its leaderboard, the champion's
    bar) and on the first N (the small-eval gate's fallback, next to trials scored on N): one FNO training and one
    linear fit score both, each entry is cached on its own, and the rows are those of two separate requests."""
    import ups.baselines as baselines

    fits: list[str] = []
    for name in ("train_fno", "select_linear"):
        real = getattr(baselines, name)
        monkeypatch.setattr(baselines, name, lambda *a, _real=real, _name=name, **k: fits.append(_name) or _real(*a, **k))
    n = 2
    whole, first = baselines.score_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=2, samples=(-1, n))
    assert sorted(fits) == ["select_linear", "train_fno"]
    assert [r["n_test"] for r in whole] == [tiny_data.test.shape[0]] * 3 and [r["n_test"] for r in first] == [n] * 3
    assert [r["name"] for r in first] == ["persistence", "linear", "fno"]
    assert first[2]["details"] == whole[2]["details"] and first[2]["train_s"] == whole[2]["train_s"]  # one FNO
    fits.clear()  # cached: each entry is the rows a request of its own gets, and nothing is trained again
    assert run_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=2) == whole
    assert run_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=2, max_samples=n) == first
    assert fits == []
    alone = run_baselines(tiny_data, 0, seed=1, cache_dir=None, fno_steps=2, max_samples=n)  # trained apart
    assert [r["nrmse"] for r in alone] == pytest.approx([r["nrmse"] for r in first], rel=1e-5)
    # one entry cached, the other not (a sweep's first eval.max_samples after whole-split runs): both are scored
    # again, from one new FNO, and both caches rewritten (on a wall-clock budget a new FNO is another model)
    cache_path(tmp_path, tiny_data.data_hash, 0, 1, 2, n).unlink()
    whole_file = cache_path(tmp_path, tiny_data.data_hash, 0, 1, 2, None)
    blob = json.loads(whole_file.read_text())
    blob["rows"][2]["train_s"] = -1.0  # marks the old whole-split entry
    whole_file.write_text(json.dumps(blob))
    fits.clear()
    again = baselines.score_baselines(tiny_data, 0, seed=1, cache_dir=tmp_path, fno_steps=2, samples=(-1, n))
    assert sorted(fits) == ["select_linear", "train_fno"] and again[0][2]["train_s"] == again[1][2]["train_s"] >= 0
    assert json.loads(whole_file.read_text())["rows"][2]["train_s"] == again[0][2]["train_s"]
    assert [r["nrmse"] for r in again[1]] == pytest.approx([r["nrmse"] for r in first], rel=1e-5)


def test_run_baselines_rejects_bad_arguments(tiny_data):
    with pytest.raises(ValueError, match="unknown baseline"):
        run_baselines(tiny_data, 0, seed=0, cache_dir=None, names=["persistance"])
    with pytest.raises(ValueError, match="≥ 0"):
        run_baselines(tiny_data, -1, seed=0, cache_dir=None)
    with pytest.raises(TypeError, match="load_protocol"):
        run_baselines(object(), 0, seed=0, cache_dir=None)


# ------------------------------------------------------------------------------------ CLI
def test_cli_prints_table_writes_csv_json_and_leaderboard(tiny_cfg, tmp_path, capsys):
    from ups.leaderboard import read_leaderboard

    out, cache, lb = tmp_path / "out", tmp_path / "cache", tmp_path / "leaderboard.csv"
    argv = ["n=64", "resolution=256", f"cache_dir={tiny_cfg.data.cache_dir}", "fno_budget_s=0", "fno_seed=2",
            f"out={out}", f"baseline_cache={cache}", f"leaderboard={lb}", "threads=1"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "persistence" in printed and "linear" in printed
    csvs, jsons = list(out.glob("baselines-*.csv")), list(out.glob("baselines-*.json"))
    assert len(csvs) == 1 and len(jsons) == 1
    rows = json.loads(jsons[0].read_text())
    assert [r["name"] for r in rows] == ["persistence", "linear"]
    assert list(cache.glob("baselines-*.json"))
    board = read_leaderboard(lb)
    assert sorted(board["label"]) == ["linear", "persistence"] and set(board["kind"]) == {"baseline"}
    from ups.leaderboard import PDEBENCH_COLUMNS  # PDEBench's metric set, as a sweep's baseline rows carry it

    assert board[list(PDEBENCH_COLUMNS)].notna().all().all(), board[list(PDEBENCH_COLUMNS)]
    # fno_steps alone trains exactly that many steps (no default budget to cut them), as a sweep's fno_steps does
    steps = ["n=64", "resolution=256", f"cache_dir={tiny_cfg.data.cache_dir}", "fno_steps=2", "fno_seed=2",
             f"out={tmp_path / 'out2'}", f"baseline_cache={cache}", f"leaderboard={lb}", "threads=1"]
    assert main(steps) == 0
    fno = [r for r in json.loads(next((tmp_path / "out2").glob("baselines-*.json")).read_text()) if r["name"] == "fno"]
    assert (fno[0]["fno_budget_s"], fno[0]["fno_steps"], fno[0]["details"]["steps"]) == (0.0, 2, 2)
    assert read_leaderboard(lb)["run_id"].str.contains("-b0-steps2-s2").sum() == 3  # its three rows beside the first
    assert next((tmp_path / "out2").glob("baselines-*.json")).name.endswith("-b0-steps2-s2.json")
    # a file states its own grid: no data.* settings to match (no model is trained here); it was refused for not
    # matching data.resolution's default 1024, as a checkpoint's data would be
    (generated,) = Path(str(tiny_cfg.data.cache_dir)).expanduser().glob("*.hdf5")
    assert main([f"path={generated}", f"out={tmp_path / 'out3'}", "fno_budget_s=0", f"baseline_cache={cache}",
                 "threads=1"]) == 0
    assert "persistence" in capsys.readouterr().out


def test_cli_bad_keys_fail_before_compute(capsys, tmp_path):
    from ups.cli import main as ups_main

    assert ups_main(["baselines", "nuu=0.01", "fno_budget_s=0"]) == 2
    assert "unknown option 'nuu'. Fix: nu=0.01 (the nearest option)" in capsys.readouterr().err
    assert ups_main(["baselines", "data.nuu=0.01", "fno_budget_s=0"]) == 2
    err = capsys.readouterr().err
    assert "data.nuu" in err and "data.nu" in err
    # the command's own options: a typo was taken for a data key (fno_budget=60 → "did you mean
    # eval.fno_budget_s", itself refused); inf trained forever, nan skipped the FNO, refresh=maybe meant false
    for bad, said in (("fno_budget=60", "unknown option 'fno_budget'. Fix: fno_budget_s=60"),
                      ("treads=2", "unknown option 'treads'. Fix: threads=2"),
                      ("fno_budget_s=inf", "'fno_budget_s' must be a finite number, got inf"),
                      ("fno_budget_s=nan", "'fno_budget_s' must be a finite number, got nan"),
                      ("refresh=maybe", "refresh=maybe is not true or false")):
        assert ups_main(["baselines", bad]) == 2, bad
        assert said in capsys.readouterr().err, bad
    assert ups_main(["baselines", "fno_budget_s=soon"]) == 2
    assert "fno_budget_s" in capsys.readouterr().err
    assert ups_main(["baselines", "fno_budget_s"]) == 2
    assert "key=value" in capsys.readouterr().err
    assert ups_main(["baselines", "fno_budget_s=-1"]) == 2
    assert "'fno_budget_s' must be ≥ 0, got -1.0. Fix: e.g. fno_budget_s=" in capsys.readouterr().err
    bad = tmp_path / "lb.csv"
    bad.write_text("run_id;nrmse\nr1;0.1\n")  # a spreadsheet's save: refused before the data and the FNO
    assert ups_main(["baselines", "fno_budget_s=600", f"leaderboard={bad}", f"data.cache_dir={tmp_path / 'none'}"]) == 2
    assert "has no 'run_id'/'nrmse' columns" in capsys.readouterr().err and not (tmp_path / "none").exists()
    # outputs written after the FNO's training: a folder as the leaderboard, an out= that takes no files (a
    # traceback once the baselines were fitted), refused first
    for arg, said in ((f"leaderboard={tmp_path}", f"ups baselines leaderboard={tmp_path}: cannot write '{tmp_path}' ("),
                      ("out=/proc/ups-out", "ups baselines out=/proc/ups-out: cannot write in '/proc/ups-out'")):
        assert ups_main(["baselines", "fno_budget_s=600", arg, f"data.cache_dir={tmp_path / 'none'}"]) == 2, arg
        err = capsys.readouterr().err
        assert said in err and "Fix:" in err and not (tmp_path / "none").exists(), err
    assert ups_main(["baselines", "--help"]) == 0
    assert "fno_steps" in capsys.readouterr().out


# ----------------------------------------------------------------------------- calibration
@pytest.fixture(scope="module")
def calib_data(tiny_cache_dir):
    from ups.config import load_config
    from ups.data.cache import dataset_path
    from ups.data.protocol import load_protocol

    cfg = load_config([*CALIB_OVERRIDES, f"data.cache_dir={tiny_cache_dir}"])
    dataset_path(cfg.data, progress=False, num_threads=1)  # 2 threads on a loaded box: 10× slower
    return load_protocol(cfg.data)


def test_calibration_on_the_pdebench_protocol(calib_data):
    """DESIGN §2: persistence 0.62–0.67, linear 0.28–0.29 at ν=0.01, 256×41; FNO must beat both."""
    assert calib_data.test.shape[1:] == (41, 256)
    # 2 threads, or fewer where OMP_NUM_THREADS says so (tests/conftest.py sets 1 beside another xdist worker)
    allowed = int(os.environ.get("OMP_NUM_THREADS") or 2)
    torch.set_num_threads(min(2, allowed, os.cpu_count() or 1))  # the autouse fixture restores the count
    rows = {r["name"]: r for r in run_baselines(calib_data, 0, seed=0, cache_dir=None, fno_steps=CALIB_FNO_STEPS)}
    p, lin, fno = rows["persistence"]["nrmse"], rows["linear"]["nrmse"], rows["fno"]["nrmse"]
    print(f"calibration nRMSE: persistence {p:.4f}, linear {lin:.4f}, fno {fno:.4f} "
          f"({rows['fno']['details']['steps']} steps, {rows['fno']['train_s']:.1f} s)")
    assert 0.6 * 0.7 <= p <= 0.6 * 1.3, p
    assert 0.3 * 0.7 <= lin <= 0.3 * 1.3, lin
    assert p > lin > fno, (p, lin, fno)


def test_an_fno_no_better_than_persistence_is_called_under_trained():
    """`ups baselines fno_budget_s=30` on a loaded machine trained 2 steps and printed an FNO row of 1.004 against
    persistence's 0.59 without a word."""
    from ups.baselines import undertrained_fno_note

    rows = [{"name": "persistence", "nrmse": 0.5896}, {"name": "linear", "nrmse": 0.3},
            {"name": "fno", "nrmse": 1.004, "details": {"steps": 2}}]
    note = undertrained_fno_note(rows)
    assert note and "no better than persistence (0.5896), after 2 optimiser steps" in note and "fno_steps=" in note
    rows[2]["nrmse"] = 0.21
    assert undertrained_fno_note(rows) is None
    assert undertrained_fno_note(rows[:2]) is None  # fno_budget_s=0: no FNO row


def _second_order_linear(n: int, t: int, x: int, seed: int) -> torch.Tensor:
    """Exact trajectories of a two-lag linear recurrence per Fourier mode: û_{t+1} = a(k) û_t + b(k) û_{t-1}."""
    g = torch.Generator().manual_seed(seed)
    k = x // 2 + 1
    a = torch.polar(torch.full((k,), 0.9, dtype=torch.float64), torch.linspace(0, 1, k, dtype=torch.float64))
    b = torch.polar(torch.full((k,), 0.3, dtype=torch.float64), torch.linspace(0, -2, k, dtype=torch.float64))
    a[0], b[0], a[-1], b[-1] = 0.9, -0.3, 0, 0  # real mean-mode coefficients; no Nyquist mode
    frames = [torch.fft.rfft(torch.randn(n, x, generator=g, dtype=torch.float64)) for _ in range(2)]
    for f in frames:
        f[:, -1] = 0
    for _ in range(t - 2):
        frames.append(a * frames[-1] + b * frames[-2])
    return torch.fft.irfft(torch.stack(frames, dim=1), n=x)  # (n, t, x)


def test_two_lag_linear_map_recovers_a_second_order_recurrence_exactly():
    """With lags > 1 the fit's lag order (lag 0 = most recent frame) must match the one the rollout applies, and the
    rollout must slide its window by one frame; lags=1 data cannot tell."""
    train = _second_order_linear(8, 12, 32, seed=0)
    test = _second_order_linear(3, 20, 32, seed=1)
    lin = fit_linear_fourier(train, lags=2, ridge=0.0)
    assert lin.lags == 2
    pred = torch.cat([test[:, :10], lin.rollout(test[:, :10], 10)], dim=1)
    assert nrmse(pred, test, 10) < 1e-8
    one = fit_linear_fourier(train, lags=1, ridge=0.0)  # one lag cannot represent it
    assert nrmse(torch.cat([test[:, :10], one.rollout(test[:, :10], 10)], dim=1), test, 10) > 1e-3
    with pytest.raises(ValueError, match="ridge=-0.001 must be ≥ 0"):
        fit_linear_fourier(train, lags=2, ridge=-1e-3)
    with pytest.raises(ValueError, match="lags=0 must be ≥ 1"):
        fit_linear_fourier(train, lags=0)


def test_select_linear_keeps_the_candidate_best_on_validation():
    """Candidates are the lags ≤ initial_step (all of them, the last included) × ridges; the lowest validation
    rollout nRMSE wins."""
    from ups.baselines import select_linear

    train, val = _advection_diffusion(20, 12, 64, seed=0), _advection_diffusion(4, 12, 64, seed=2)
    lin, info = select_linear(train, val, 2, lags=(2, 3), ridges=(1e3, 0.0))
    assert (info["lags"], info["ridge"], info["selected_on"]) == (2, 0.0, "val") and lin.lags == 2
    assert info["val_nrmse"] < 1e-6
    _, info = select_linear(train, None, 2, lags=(2, 3), ridges=(1e3, 0.0))
    assert (info["lags"], info["ridge"], info["selected_on"]) == (2, 1e3, "default")


def test_baseline_cache_entries_of_another_request_or_lacking_row_keys_are_recomputed(tmp_path):
    """The cache file's name does not carry every setting (the baselines asked for): its stored key is compared,
    and rows lacking the table's keys (an older writer) are not served."""
    from types import SimpleNamespace

    u = _advection_diffusion(30, 14, 32, seed=0).float()
    data = SimpleNamespace(train=u[:20], val=u[20:24], test=u[24:], x=(torch.arange(32) + 0.5) / 32, initial_step=4,
                           data_hash="synthetic-advection", source="synthetic")
    alone = run_baselines(data, 0, seed=1, cache_dir=tmp_path, names=["persistence"])
    assert [r["name"] for r in alone] == ["persistence"]
    both = run_baselines(data, 0, seed=1, cache_dir=tmp_path)  # same file name, another request
    assert [r["name"] for r in both] == ["persistence", "linear"] and both[1]["details"]["selected_on"] == "val"
    path = cache_path(tmp_path, data.data_hash, 0, 1)
    blob = json.loads(path.read_text())
    for r in blob["rows"]:
        del r["nrmse_pdebench"]
        r["nrmse"] = 123.0
    path.write_text(json.dumps(blob))
    again = run_baselines(data, 0, seed=1, cache_dir=tmp_path)
    assert [r["nrmse"] for r in again] == [r["nrmse"] for r in both]


def test_fno_training_returns_the_weights_best_on_validation():
    """With ``val`` the returned weights are those of the best validation rollout nRMSE seen (after each epoch and at
    the end), never worse than the last weights, and val_nrmse is their score; ``val`` does not change the training.
    At this (high) learning rate the validation score of this seeded run is best mid-training (step 6 of 12: 0.92
    against 0.98 at the end, 1.04 after the first epoch)."""
    from ups.models.baselines import _rollout_nrmse

    u = _advection_diffusion(16, 6, 32, seed=0).float()
    train, val = u[:12], u[12:]
    grid = (torch.arange(32) + 0.5) / 32
    kw = dict(budget_s=0, max_steps=12, seed=0, batch_size=4, modes=4, width=8, lr=3e-2)  # 3 steps per epoch
    picked = train_fno(train, grid, 2, val=val, **kw)
    last = train_fno(train, grid, 2, **kw)  # the same 12 steps; its final weights
    last_score = _rollout_nrmse(last.model, val, grid, 2)
    assert picked.steps == last.steps == 12 and picked.best_step % 3 == 0
    assert picked.val_nrmse == pytest.approx(_rollout_nrmse(picked.model, val, grid, 2), rel=1e-6)
    assert picked.val_nrmse <= last_score
    assert picked.best_step < 12 and picked.val_nrmse < last_score - 0.02  # an epoch's check, not just the end's


def test_baselines_score_a_test_split_larger_than_one_rollout_batch():
    """Rollouts run in chunks of 256 trajectories: a 300-trajectory split is scored whole, each row its own rollout."""
    from types import SimpleNamespace

    from ups.baselines import _batched

    u = _advection_diffusion(40, 8, 16, seed=3).float()
    test = u[torch.arange(300) % 40]  # (300, 8, 16)
    data = SimpleNamespace(train=u[:30], val=u[30:], test=test, x=(torch.arange(16) + 0.5) / 16, initial_step=2,
                           data_hash="synthetic-300", source="synthetic")
    rows = run_baselines(data, 0, seed=0, cache_dir=None)
    assert [r["n_test"] for r in rows] == [300, 300] and all(math.isfinite(r["nrmse"]) for r in rows)
    lin = fit_linear_fourier(u[:30], lags=1, ridge=0.0)
    chunked = _batched(lin.rollout, test[:, :2], 6, batch=7)
    torch.testing.assert_close(chunked, lin.rollout(test[:, :2], 6), rtol=0, atol=0)


def test_run_baselines_refuses_splits_with_no_frame_after_the_context():
    """initial_step context frames and at least one to predict: a split of exactly initial_step frames is refused."""
    from types import SimpleNamespace

    u = _advection_diffusion(8, 6, 16, seed=4).float()
    for split in ("train", "test"):
        parts = {"train": u, "val": u[:2], "test": u}
        parts[split] = u[:, :4]
        data = SimpleNamespace(**parts, x=(torch.arange(16) + 0.5) / 16, initial_step=4, data_hash="short", source="s")
        with pytest.raises(ValueError, match=rf"data\.{split} has 4 frames but initial_step=4; need at least"):
            run_baselines(data, 0, seed=0, cache_dir=None)
    ok = SimpleNamespace(train=u, val=u[:2], test=u[:, :5], x=(torch.arange(16) + 0.5) / 16, initial_step=4,
                         data_hash="short", source="s")
    rows = run_baselines(ok, 0, seed=0, cache_dir=None)  # one predicted frame is enough
    assert [r["name"] for r in rows] == ["persistence", "linear"]
    assert [r["wall_clock"] for r in leaderboard_rows(rows)] == [r["train_s"] for r in rows]  # fitting, not scoring
