"""`ups sweep <round> [key=value …]`: run a sweep script from ``sweeps/`` (same as ``python sweeps/<round>.py``)."""
from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from ups.config import ConfigError
from ups.outputs import OutputWriteError, refusal_leaves_no_folders
from ups.tune.sweep_config import REPO_ROOT, default_space_path, resolve_path

SWEEPS_DIR = REPO_ROOT / "sweeps"


def available_rounds() -> list[str]:
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.py") if not p.stem.startswith("_"))


def load_round(name: str) -> Callable[[list[str]], int]:
    path = SWEEPS_DIR / f"{name}.py"
    if not re.fullmatch(r"[A-Za-z0-9_]+", name) or not path.exists():  # ../x ran any .py file reachable
        raise ConfigError(f"ups sweep: unknown round '{name}' ({path} not found). Available: "
                          f"{', '.join(available_rounds())}")
    spec = importlib.util.spec_from_file_location(f"ups_sweep_{name}", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.main


HELP_FLAGS = ("-h", "--help", "help")


def describe_param(p: Any) -> str:
    """One search-space entry as the help prints it: ``loguniform 0.0002 … 0.0045``, ``choice [16, 32]``."""
    if p.dist in ("choice", "grid"):
        return f"{p.dist} {p.values}"
    if p.dist == "around":
        zero = f", a zero champion value within ±{p.zero_width:g}" if p.zero_width else ""
        return f"around: the champion's value ±{100 * p.rel:g} %{' (log scale)' if p.log else ''}{zero}"
    return f"{p.dist} {p.low:g} … {p.high:g}" + (" (log scale)" if p.dist == "int" and p.log else "")


def describe_rule(rule: dict[str, Any]) -> str:
    """A derived key's rule as the help prints it: ``copy of …``, ``a divisor of … near 8``."""
    extra = ", ".join(f"{k} {v}" for k, v in rule.items() if k not in ("rule", "of"))
    kind = {"copy": "copy of", "scale": "scaled from", "divisor": "a divisor of", "preset": "preset by"}
    return f"{kind.get(rule['rule'], rule['rule'])} {rule['of']}" + (f" ({extra})" if extra else "")


def round_help(main_fn: Callable[..., Any], args: Sequence[str] = ()) -> str:
    """What ``python sweeps/<round>.py --help`` prints: the script's docstring, the search space it sweeps
    (its file, or the ``space=`` among ``args``; description and distributions) and the script's profile defaults;
    nothing is started."""
    from ups.tune.space import SearchSpaceError, load_space

    g = getattr(main_fn, "__globals__", {})
    # a script without a ROUND constant is the round its file names (sweeps/my_round.py: my_round)
    name, defaults = g.get("ROUND") or Path(str(g.get("__file__", ""))).stem, g.get("DEFAULTS") or {}
    lines = [(g.get("__doc__") or f"Sweep round {name}.").strip(), ""]
    given = [a.split("=", 1)[1] for a in args if a.startswith("space=")]
    path = resolve_path(given[-1]) if given else default_space_path(name)
    try:
        space = load_space(path)
    except (SearchSpaceError, OSError) as e:
        lines.append(f"Search space {path}: cannot be read ({' '.join(str(e).split())})")
    else:
        shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
        lines.append(f"Search space (space=… to use another file): {shown}" if not given
                     else f"Search space (space={given[-1]}): {shown}")
        width = max((len(k) for k in space.params), default=0)
        lines += [f"  {k:<{width}}  {describe_param(p)}" for k, p in space.params.items()]
        if space.derived:
            lines.append("Derived in each trial (scaling rules):")
            lines += [f"  {k} = {describe_rule(v)}" for k, v in space.derived.items()]
    engine = [f"{part}.{k}={str(v).lower() if isinstance(v, bool) else v}" for part in ("searcher", "scheduler")
              for k, v in (defaults.get(part) or {}).items()]  # the name first, then the round's own settings
    if engine:
        lines += ["", "Engine: " + ", ".join(engine)]

    def dotted(d: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
        """Defaults as the overrides that would set them: ``gates.enabled=false resources.gpu=0.5``."""
        def text(v: Any) -> str:
            return str(v).lower() if isinstance(v, bool) else str(v)

        out = []
        for k, v in d.items():
            if k not in skip:
                out += [f"{k}.{kk}={text(vv)}" for kk, vv in v.items()] if isinstance(v, dict) else [f"{k}={text(v)}"]
        return " ".join(out)

    if common := dotted(defaults, ("searcher", "scheduler", "smoke", "full")):
        lines.append(f"Round defaults (every profile): {common}")
    for profile in ("smoke", "full"):
        d = defaults.get(profile)
        if d:
            trial = " ".join(d.get("trial", []))
            text = "; ".join(x for x in (dotted(d, ("trial",)), f"per trial: {trial}" if trial else "") if x)
            lines.append(f"profile={profile} defaults: {text}")
    lines += ["", "Overrides are key=value: num_samples=8 max_concurrent=4 resources.gpu=0.25 profile=full "
                  "resume=true, or any model/training key (stages.operator.epochs=4). Every key: docs/SWEEPS.md"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: ups sweep <round> [key=value …]\n\nrounds: " + ", ".join(available_rounds()) +
              "\n\nexamples:\n  ups sweep round_a num_samples=8\n  ups sweep round_b profile=full resources.gpu=0.25"
              "\n  ups sweep round_a resume=true\n  ups sweep round_c --help      # what a round searches, its defaults"
              "\n\nSee docs/SWEEPS.md for every key.")
        return 0
    return run_script(load_round(argv[0]), argv[1:])


def quick_check(main_fn: Callable[..., Any], args: list[str]) -> None:
    """What can be refused without Ray or torch, before a script imports the launcher (about 2 s of imports):
    the overrides (sweep keys, values, trial config keys) and the round's search-space file. A mistyped key
    is refused in a fraction of a second. ``prepare`` repeats these checks and makes the rest. Only for a
    script that names its ``ROUND`` (and its ``DEFAULTS``) as ``sweeps/*.py`` do: what else its ``main`` runs
    is not known here."""
    from ups.config import load_config
    from ups.tune.space import load_space
    from ups.tune.sweep_config import load_sweep_config, space_path

    g = getattr(main_fn, "__globals__", {})
    name = g.get("ROUND")
    if not isinstance(name, str):
        return
    scfg = load_sweep_config(name, args, g.get("DEFAULTS"))
    load_config(scfg.trial)
    load_space(space_path(scfg, name))


def run_script(main_fn: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Entry point of ``sweeps/*.py``: bad input → one clear line and exit code 2; a sweep stopped by Ctrl-C
    (its results saved, how to resume printed) → exit code 130; otherwise what the script's ``main`` returns
    (``SweepOutcome.exit_status``: 1 when trials failed past ``max_failures``, ``fail_on_trial_error``)."""
    from ups.tune.stop_signals import SweepInterrupted

    args = sys.argv[1:] if argv is None else argv
    if any(a in HELP_FLAGS for a in args):  # anywhere, as `ups train … --help` (it was refused after an override)
        from ups.cli import closed_stdout

        try:
            print(round_help(main_fn, args))
            sys.stdout.flush()
        except BrokenPipeError:  # python sweeps/round_a.py --help | head
            return closed_stdout()
        return 0
    from ups.tune.stop_signals import stop_signals_as_ctrl_c

    try:
        # SIGTERM / SIGHUP outside Tune's loop (making the data, training the baselines, writing the report) killed
        # the driver without a word and left its lease behind: taken as Ctrl-C there too (the loop takes its own)
        with stop_signals_as_ctrl_c(into_tune=False), refusal_leaves_no_folders():  # a refusal: no empty folders left
            quick_check(main_fn, args)
            return int(main_fn(args) or 0)
    except ConfigError as e:  # bad input (overrides, search space, config): one line, nothing started
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 2
    except SweepInterrupted:  # its message (what was kept, how to resume) is printed
        return 130
    except OutputWriteError as e:  # results kept (Tune's state), a file could not take them: the fix and the resume
        print("error: " + " ".join(str(e).split()), file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # before Tune started, or after its state was saved: nothing half-written
        print("\n[ups sweep] interrupted (Ctrl-C or a stop signal); finished trials are on the leaderboard, and a sweep whose "
              "Tune state was saved continues with resume=true", file=sys.stderr)
        return 130
