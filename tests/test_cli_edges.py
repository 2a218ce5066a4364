"""Command-line edges found by probing every command (2026-12-05): each ran to a traceback (exit 1) or did
something else than asked; now refused with the setting and a fix (exit 2), or answered with the usage."""
from __future__ import annotations

from pathlib import Path

import pytest

from ups.cli import main as ups_main

ROOT = Path(__file__).resolve().parents[1]

UNWRITABLE = "/proc/ups-cannot-write-here"  # /proc takes no new folder, even as root


@pytest.mark.parametrize("argv, said", [
    (["train", "--run-dir", UNWRITABLE, "preset=dim8"], "ups train run folder"),
    (["report", f"out={UNWRITABLE}", "leaderboard=LB", "round=round_a"], f"ups report out={UNWRITABLE}"),
    (["export", "champion", "checkpoint=/nonexistent.pt", f"out={UNWRITABLE}"], f"ups export champion out={UNWRITABLE}"),
])
def test_an_output_folder_that_cannot_be_written_is_refused_first(argv, said, tmp_path, capsys) -> None:
    """Each failed with FileNotFoundError after the model (train, export) or the report's figures were made."""
    from ups.leaderboard import upsert_rows

    lb = tmp_path / "lb.csv"
    upsert_rows(lb, [{"run_id": "r-t1", "kind": "trial", "round": "round_a", "nrmse": 0.1, "status": "completed"}])
    assert ups_main([a.replace("LB", str(lb)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert said in err and "cannot write in '/proc" in err and "Fix:" in err and "Traceback" not in err, err


@pytest.mark.parametrize("argv", [["report", "compare", "--help"], ["report", "notebook", "--help"],
                                  ["export", "champion", "--help"]])
def test_help_anywhere_prints_the_usage(argv, capsys) -> None:
    assert ups_main(argv) == 0 and "ups " in capsys.readouterr().out


def test_a_sweep_script_takes_help_after_overrides(capsys) -> None:
    from ups.tune.cli import load_round, run_script

    assert run_script(load_round("round_a"), ["num_samples=2", "--help"]) == 0
    assert "Round A" in capsys.readouterr().out
    # with space=, the help describes that file's distributions, not the round's own
    space = ROOT / "search_spaces" / "round_b.yaml"
    assert run_script(load_round("round_a"), [f"space={space}", "--help"]) == 0
    out = capsys.readouterr().out
    assert f"Search space (space={space}): search_spaces/round_b.yaml" in out and "latent.tokens" in out, out


def test_a_round_name_is_a_name_not_a_path(capsys) -> None:
    """ups sweep ../sweeps/round_a ran the file at that relative path, any .py reachable so."""
    assert ups_main(["sweep", "../sweeps/round_a"]) == 2
    assert "unknown round '../sweeps/round_a'" in capsys.readouterr().err


def test_data_generate_refuses_a_thread_count_below_one(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        ups_main(["data", "generate", "--threads", "-1"])
    assert e.value.code == 2 and "--threads -1: must be ≥ 1" in capsys.readouterr().err


@pytest.mark.parametrize("script,override,needle", [
    ("round_a", "bogus.key=1", "unknown key 'bogus.key'"),
    ("round_c", "stages.operator.epochs=abc", "stages.operator.epochs"),
    ("dims", "space=no/such/space.yaml", "no/such/space.yaml"),
])
def test_a_sweep_script_refuses_bad_overrides_before_importing_ray_or_torch(script, override, needle, tmp_path):
    """run_script's quick check: a mistyped key, a bad value or a missing space file is refused (exit 2, one
    line naming it) before the script imports the launcher, i.e. without Ray's and torch's ~2 s of imports."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    code = ("import runpy, sys\n"
            f"sys.argv = [{str(root / 'sweeps' / (script + '.py'))!r}, {override!r}]\n"
            "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\nexcept SystemExit as e:\n"
            "    print('exit', e.code, 'ray' in sys.modules, 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "exit 2 False False", proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err, err


@pytest.mark.parametrize("args, needle", [
    (["generate", "nuu=0.01"], "unknown key 'nuu'. Did you mean 'nu'?"),
    (["generate", "n=-1"], "'data.n' = -1 must be > 0"),
    (["info", "no/such/file.hdf5"], "file not found"),
])
def test_ups_data_refuses_bad_input_before_importing_torch(args, needle, tmp_path):
    """``ups.data`` loads its modules on first use: ``ups data`` refuses a typo in ~0.2 s instead of ~1.5 s of torch
    imports."""
    import subprocess
    import sys

    code = ("import sys\nfrom ups.cli import main\n"
            f"rc = main(['data', *{args!r}])\nprint('exit', rc, 'torch' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True,
                          text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "exit 2 False", proc.stdout + proc.stderr
    assert needle in proc.stderr, proc.stderr


@pytest.mark.parametrize("argv", [["-m", "ups.cli", "--help"], ["sweeps/round_a.py", "--help"]])
def test_a_reader_that_closed_the_pipe_gets_no_traceback(argv) -> None:
    """``ups data info f | head`` ended in a BrokenPipeError traceback (and "Exception ignored … stdout" at exit)
    once head had its lines. A pipe whose read end is closed before the command writes makes that certain."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    try:
        run = subprocess.run([sys.executable, *argv], stdout=w, stderr=subprocess.PIPE, text=True, cwd=root,
                             timeout=120)
    finally:
        os.close(w)
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr[-1500:]
    assert run.returncode == 141, (run.returncode, run.stderr[-500:])
