"""`ups sweep <round> [key=value …]`: run a sweep script from ``sweeps/`` (same as ``python sweeps/<round>.py``)."""
from __future__ import annotations

import importlib.util
import sys
from typing import Callable

from ups.config import ConfigError
from ups.tune.sweep_config import REPO_ROOT

SWEEPS_DIR = REPO_ROOT / "sweeps"


def available_rounds() -> list[str]:
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.py") if not p.stem.startswith("_"))


def load_round(name: str) -> Callable[[list[str]], int]:
    path = SWEEPS_DIR / f"{name}.py"
    if not path.exists():
        raise ConfigError(f"ups sweep: unknown round '{name}' ({path} not found). Available: "
                          f"{', '.join(available_rounds())}")
    spec = importlib.util.spec_from_file_location(f"ups_sweep_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.main


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ups sweep <round> [key=value …]\n\nrounds: " + ", ".join(available_rounds()) +
              "\n\nexamples:\n  ups sweep round_a num_samples=8\n  ups sweep round_b profile=full resources.gpu=0.25"
              "\n  ups sweep round_a resume=true\n\nSee docs/SWEEPS.md for every key.")
        return 0
    return run_script(load_round(argv[0]), argv[1:])


def run_script(main_fn: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Entry point of ``sweeps/*.py``: bad input → one clear line and exit code 2; a sweep stopped by Ctrl-C
    (its results saved, how to resume printed) → exit code 130."""
    from ups.tune.launcher import SweepInterrupted

    try:
        return int(main_fn(sys.argv[1:] if argv is None else argv) or 0)
    except ConfigError as e:  # bad input (overrides, search space, config): one line, nothing started
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except SweepInterrupted:  # its message (what was kept, how to resume) is printed
        return 130
    except KeyboardInterrupt:  # before Tune started, or after its state was saved: nothing half-written
        print("\n[ups sweep] interrupted (Ctrl-C); finished trials are on the leaderboard, and a sweep whose "
              "Tune state was saved continues with resume=true", file=sys.stderr)
        return 130
