"""Searcher settings on recorded trials: the product's ASHA + TPE replayed offline against random search.

The live benchmark (``search_efficiency.py``) needs about 40 minutes per 3 seeds, so it can try few
searcher settings, each over few seeds.  This script reuses what those runs recorded: every
full-length trial becomes a table entry, its configuration → its recorded val nRMSE curve and
per-epoch compute (a tabular benchmark).  For each searcher setting it replays many repetitions of
the live benchmark's comparison:

* random search: ``n_random`` of random search's recorded trials in a random order, each to its full
  budget; its best is the target, its compute the budget;
* ASHA + TPE: the product's searcher itself (``ups.tune.tuner_build.build_searcher``: Ray's OptunaSearch
  with the TPE sampler and its Latin hypercube start-up, from the sweep config the setting gives),
  each suggestion answered by the nearest recorded trial not used yet in this repetition (the same
  choice values where any is left; nearest in the space's unit cube, log-scaled for loguniform
  knobs), cut by Ray's rule at the rungs of the product's ASHA (``build_scheduler``; with
  ``scheduler.brackets`` > 1, at those of the bracket its trial id draws, as live); the searcher is told
  the trial's last value, as Ray's OptunaSearch is.

Reported per setting, as the live benchmark does: the compute ratio pooled and median, the share of
repetitions at ≥ 3×, the share where ASHA + TPE reached random's best, and ``mean_curve_speedup``: the
papers' reading (``search_efficiency.mean_curve_speedup``) with the repetitions as seeds, i.e. what a
live run with many seeds would read.  The row ``as run live`` uses the
runs' own settings, next to their measured ratio: the calibration.  ``oracle`` is no searcher: it draws
the recorded trials nearest to the best recorded configuration (the nearest ``--oracle-share`` of them,
the best one itself left out: its value is partly luck) in random order under the same ASHA, i.e.
what a searcher that knew the good region from its first trial would score.  ``oracle after the
start-up`` runs the first setting's own start-up trials (its searcher, its ASHA), then the oracle's
draws: what a model that knew the good region once its start-up ended would score, i.e. what the
start-up alone leaves to any model (not a strict bound: the oracle draws its neighbourhood in random
order).

``asha=promotion`` (a pseudo-key, like ``n_random``) replays the other ASHA of Li et al. (2020, their
Algorithm 2), which Ray Tune does not ship: a trial reaching a rung pauses there, and the next free worker
resumes the best paused trial that is in the top 1/rf of that rung's results, else starts a new
suggestion.  Ray's ASHA decides at the rung with the results it has, so its first trials run to the end;
here they pause until enough results make one of them the best 1/rf (``PromotionASHA``).  The searcher is
told a trial's value at its first rung, so all it sees is of one fidelity.

Limits: trials run one after another (the live runs keep 2 in flight); a suggestion is answered by a
recorded neighbour, so the searcher cannot exploit detail finer than the recorded trials resolve.

    python benchmarks/search_efficiency.py --reseed 0 --noise-seeds 0 --out /tmp/a   # record (≈ 40 min)
    python benchmarks/search_surrogate.py /tmp/a /tmp/b /tmp/c                          # replay (≈ 1 min)
    python benchmarks/search_surrogate.py /tmp/a --reps 50 --setting "searcher.n_startup_trials=5"

Prints one JSON object and a one-line summary.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_efficiency import (asha_cut, asha_tpe_overrides, compute_to_reach, experiment_trials,  # noqa: E402
                               extend, load_runs, mean_curve_speedup, pooled_ratio, ratio_stats, replay, within)

# Settings replayed by default: the live one, then one lever each (overrides of the sweep config; the
# pseudo-key n_random scales random search's trials, and with them the budget of both).
DEFAULT_SETTINGS = [
    [],
    ["searcher.initial_design=random"],
    ["searcher.n_startup_trials=5"],
    ["searcher.n_startup_trials=20"],
    ["scheduler.name=fifo"],
    ["scheduler.reduction_factor=2"],
    ["n_random=48"],
    ["n_random=96"],
]


@dataclass
class Recorded:
    """One recorded full-length trial: its searcher values and its curve."""

    config: dict[str, Any]
    its: list[int]
    vals: list[float]
    dts: list[float]
    random: bool  # ran in random search (the pool random search's repetitions draw from)

    @property
    def curve(self) -> tuple[list[int], list[float], list[float]]:
        return self.its, self.vals, self.dts


def load_trials(runs: list[Path]) -> list[Recorded]:
    """Every full-length trial of the runs (one that reached the last iteration any trial reached; ASHA's
    stopped ones did not), with its searched values (from the runs' Tune folders or their trials.json.gz)."""
    found = [(name, t) for run in runs for name, trials in sorted(experiment_trials(Path(run)).items())
             for t in trials if t["its"]]
    last = max(t["its"][-1] for _, t in found)
    return [Recorded(t["params"], t["its"], t["vals"], t["dts"], name.startswith("random"))
            for name, t in found if t["its"][-1] == last and t["params"] is not None]


class Table:
    """Nearest recorded trial to a suggested configuration: choice values first, then the unit cube."""

    def __init__(self, space: Any, trials: list[Recorded]) -> None:
        import numpy as np

        self.space, self.trials = space, trials
        self.cont = [k for k, p in space.params.items() if p.dist not in ("choice", "grid")]
        self.cat = [k for k, p in space.params.items() if p.dist in ("choice", "grid")]
        self.X = np.array([self.unit(t.config) for t in trials]).reshape(len(trials), len(self.cont))
        self.C = [tuple(str(t.config[k]) for k in self.cat) for t in trials]

    def unit(self, config: dict[str, Any]) -> list[float]:
        out = []
        for k in self.cont:
            p, v = self.space.params[k], float(config[k])
            if p.dist == "loguniform" or (p.dist == "int" and p.log):
                out.append((math.log(v) - math.log(p.low)) / (math.log(p.high) - math.log(p.low)))
            else:
                out.append((v - p.low) / (p.high - p.low))
        return out

    def by_distance(self, config: dict[str, Any]) -> list[int]:
        """Recorded trials, nearest to ``config`` first (a differing choice value outweighs the whole cube)."""
        import numpy as np

        d = np.abs(self.X - np.array(self.unit(config))).sum(axis=1)
        cats = tuple(str(config[k]) for k in self.cat)
        d = d + np.array([1e3 * sum(a != b for a, b in zip(c, cats)) for c in self.C])
        return [int(i) for i in np.argsort(d, kind="stable")]

    def nearest(self, config: dict[str, Any], used: set[int]) -> int:
        return next(i for i in self.by_distance(config) if i not in used)


class PromotionASHA:
    """Promotion-type ASHA's bookkeeping (Li et al. 2020, Algorithm 2): which job a free worker runs next.

    ``rungs`` are milestones; a trial is recorded at a rung when it reports there and pauses.  The next
    job is the best not-yet-promoted trial among the top ``floor(n / rf)`` of the highest rung that has
    one (resume it to the next rung, or to its end from the last rung), else ``None``: start a new trial.
    """

    def __init__(self, rungs: list[int], rf: float) -> None:
        self.rungs, self.rf = rungs, rf
        self.recorded: list[dict[Any, float]] = [{} for _ in rungs]
        self.promoted: list[set[Any]] = [set() for _ in rungs]

    def record(self, level: int, trial: Any, value: float) -> None:
        self.recorded[level][trial] = value

    def next_job(self) -> tuple[Any, int] | None:
        """(trial, rung level it leaves) to resume, or None to start a new trial."""
        for level in reversed(range(len(self.rungs))):
            rec = self.recorded[level]
            top = sorted(rec, key=rec.__getitem__)[:int(len(rec) // self.rf)]
            for trial in top:
                if trial not in self.promoted[level]:
                    self.promoted[level].add(trial)
                    return trial, level
        return None


def replay_searcher(p: Any, seed: int) -> Any:
    """The product's searcher (``build_searcher``) for the prepared sweep ``p``, seeded, one trial in flight."""
    from ups.tune.tuner_build import build_searcher

    p.scfg.searcher.seed = seed
    searcher, _ = build_searcher(p.scfg, p.space.reference_point(p.base), 1, p.space)
    searcher.set_search_properties("val_nrmse", "min", p.space.tune_space(p.scfg.searcher.name))
    return searcher


def tell(searcher: Any, tid: str, t: Recorded, n: int) -> None:
    """What Tune tells the searcher of a trial that ran ``t``'s first ``n`` reports: each one (``on_trial_result``:
    the figure and its iteration, Optuna's intermediate values), then its end (``on_trial_complete`` with the last
    report, ``final`` when it ran to the end: ``searcher.stopped`` tells the others apart)."""
    for k in range(n):
        searcher.on_trial_result(tid, {"val_nrmse": t.vals[k], "training_iteration": t.its[k]})
    searcher.on_trial_complete(tid, {"val_nrmse": t.vals[n - 1], "training_iteration": t.its[n - 1],
                                     "final": n == len(t.its)})


def promotion_curve(p: Any, table: Table, rungs: list[int], rf: float, budget: float,
                    seed: int) -> list[tuple[float, float]]:
    """One promotion-type ASHA + searcher run on the table (``PromotionASHA``; one job at a time): a new
    suggestion runs to the first rung and pauses, a promoted one resumes to the next rung or its end."""
    def until(t: Recorded, level: int) -> int:  # reports up to and including rung ``level`` (all past the last)
        if level >= len(rungs):
            return len(t.its)
        k = next((i for i, it in enumerate(t.its) if it >= rungs[level]), None)
        return len(t.its) if k is None else k + 1

    searcher = replay_searcher(p, seed)
    asha = PromotionASHA(rungs, rf)
    c: list[tuple[float, float]] = []
    done: dict[int, int] = {}  # recorded trial → reports run so far
    used: set[int] = set()
    while (c[-1][0] if c else 0.0) < budget:
        job = asha.next_job()
        if job is None and len(used) >= len(table.trials):
            break
        if job is None:  # a new suggestion, to the first rung
            tid = f"t{len(used)}"
            i, level = table.nearest(searcher.suggest(tid), used), 0
            used.add(i)
            start = 0
        else:
            i, left = job
            level, start = left + 1, done[i]
        t = table.trials[i]
        end = until(t, level)
        extend(c, t.vals[start:end], t.dts[start:end])
        done[i] = end
        if end < len(t.its):  # paused at rung ``level``
            asha.record(level, i, t.vals[end - 1])
        if job is None:  # told at its first pause, as the live searcher learns of a trial once
            tell(searcher, tid, t, end)
    return c


@dataclass
class Brackets:
    """The product's ASHA for a replay (``build_scheduler``): each bracket's rung milestones, ascending, and
    the rule that draws a trial's bracket from its id (``ResumableASHA.bracket_index``, Ray's odds); one
    bracket without rungs when the sweep does not run ASHA."""

    ladders: list[list[int]]
    pick: Callable[[str], int]

    @classmethod
    def of(cls, p: Any) -> "Brackets":
        from ups.tune.tuner_build import build_scheduler

        if p.scfg.scheduler.name != "asha":
            return cls([[]], lambda _: 0)
        sched = build_scheduler(p.scfg, p.base, p.space)
        return cls([sorted(int(m) for m, _ in b._rungs) for b in sched._brackets], sched.bracket_index)

    def cutter(self, rf: float) -> Callable[[str, Recorded], int]:
        """A fresh run's ASHA: (trial id, recorded trial) → how many of its reports run (``asha_cut`` in the
        trial's bracket, against what that bracket recorded before it)."""
        recorded = [{r: [] for r in ladder} for ladder in self.ladders]

        def cut(tid: str, t: Recorded) -> int:
            b = self.pick(tid)  # 0 with one bracket
            return asha_cut(t.its, t.vals, self.ladders[b], rf, recorded[b])
        return cut


def searcher_curve(p: Any, table: Table, brackets: Brackets, rf: float, budget: float,
                   seed: int, then: list[int] | None = None, startup: int | None = None) -> list[tuple[float, float]]:
    """One ASHA + searcher run on the table: the product's searcher (``build_searcher``, one trial in
    flight) suggests, the nearest unused recorded trial answers, ASHA's rule cuts it in the trial's
    bracket.  With ``then`` (recorded trials, in the order to draw them) the searcher only makes its
    ``startup`` suggestions (default: its start-up trials) and those trials follow: a model that knows
    the good region from the moment its start-up ends (``startup=0``: from the first trial, the oracle)."""
    startup = p.scfg.searcher.n_startup_trials if startup is None else startup
    searcher = replay_searcher(p, seed) if then is None or startup > 0 else None  # the oracle asks none
    cut = brackets.cutter(rf)
    c: list[tuple[float, float]] = []
    used: set[int] = set()
    while (c[-1][0] if c else 0.0) < budget and len(used) < len(table.trials):
        tid = f"t{len(used)}"
        asked = then is None or len(used) < startup
        if asked:
            assert searcher is not None
            i = table.nearest(searcher.suggest(tid), used)
        else:
            i = next((j for j in then if j not in used), -1)
            if i < 0:  # the oracle's pool is spent
                break
        used.add(i)
        t = table.trials[i]
        n = cut(tid, t)
        extend(c, t.vals[:n], t.dts[:n])
        if asked:
            tell(searcher, tid, t, n)
    return c


def replay_setting(live: list[str], setting: list[str], table: Table, reps: int, seed: int,
                   n_random: int, oracle_share: float | None = None,
                   after_startup: bool = False) -> dict[str, Any]:
    """The live benchmark's comparison, ``reps`` times, with the product's searcher and scheduler
    configured by ``live`` + ``setting`` (the oracle instead of the searcher when ``oracle_share``; the
    oracle after the searcher's start-up trials when ``after_startup`` too)."""
    import numpy as np

    from ups.tune.prepare import prepare

    overrides = [o for o in setting if not o.startswith(("n_random=", "asha="))]
    n_random = next((int(o.split("=")[1]) for o in setting if o.startswith("n_random=")), n_random)
    promotion = "asha=promotion" in setting
    if any(o.startswith("asha=") for o in setting) and not promotion:
        raise SystemExit("search_surrogate: --setting asha=…: only asha=promotion (Ray's stopping ASHA is the default)")
    if promotion and oracle_share is not None:
        raise SystemExit("search_surrogate: the oracle rows replay Ray's ASHA only; drop asha=promotion there")
    p = prepare("round_a", [*live, *overrides])
    brackets = Brackets.of(p)
    rungs = brackets.ladders[0]
    if promotion and len(brackets.ladders) > 1:
        raise SystemExit("search_surrogate: asha=promotion replays one bracket; drop scheduler.brackets there")
    rf = float(p.scfg.scheduler.reduction_factor)
    pool = [i for i, t in enumerate(table.trials) if t.random]
    if len(pool) < n_random:
        raise SystemExit(f"search_surrogate: {len(pool)} recorded random-search trials, fewer than n_random="
                         f"{n_random}; record more seeds or lower n_random")
    if oracle_share is not None:
        # the best recorded trial's neighbours, not the trial itself: its value is partly the luck of its
        # draw, which no searcher could pick in advance (on a flat objective the oracle then scores ~1×)
        best = min(range(len(table.trials)), key=lambda i: min(table.trials[i].vals))
        near = [i for i in table.by_distance(table.trials[best].config) if i != best]
        oracle_pool = near[:max(1, int(oracle_share * len(table.trials)))]
    rng = np.random.default_rng(seed)
    pairs, reached, budgets, curves = [], [], [], []
    for rep in range(reps):
        c_rnd = replay([table.trials[i].curve for i in rng.choice(pool, n_random, replace=False)], [], rf)
        budget, target = c_rnd[-1]
        need_rnd = compute_to_reach(c_rnd, target) or budget
        if oracle_share is None and promotion:
            c = promotion_curve(p, table, rungs, rf, budget, seed + rep)
        elif oracle_share is None:
            c = searcher_curve(p, table, brackets, rf, budget, seed + rep)
        else:  # the oracle's draws after the searcher's start-up (what it leaves to a model), or from the first
            c = searcher_curve(p, table, brackets, rf, budget, seed + rep, [int(i) for i in rng.permutation(oracle_pool)],
                               startup=None if after_startup else 0)
        got = compute_to_reach(within(c, budget), target)
        pairs.append((need_rnd, got if got is not None else budget))
        reached.append(got is not None)
        budgets.append({"budget_trial_s": budget})
        curves.append({"random": c_rnd, "asha_tpe": c})
    mean = mean_curve_speedup(budgets, curves, points=400, boot=0)  # repetitions as seeds: the papers' reading
    return {"setting": " ".join(setting) or "as run live",
            "rungs": rungs if len(brackets.ladders) == 1 else brackets.ladders, "reduction_factor": rf,
            "n_random": n_random, **ratio_stats(pairs), "reached": round(float(np.mean(reached)), 2),
            "mean_curve_speedup": mean["speedup"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", type=Path, nargs="+", help="--out folders of search_efficiency.py runs (same command)")
    ap.add_argument("--reps", type=int, default=200, help="repetitions per setting")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--setting", action="append", default=None,
                    help="a setting to replay: space-separated sweep-config overrides (n_random=N scales random "
                         "search; asha=promotion: promotion-type ASHA instead of Ray's); repeat for several; "
                         "default: the live one and one lever each")
    ap.add_argument("--oracle-share", type=float, default=0.05,
                    help="the oracle draws this share of the recorded trials, the nearest to the best (0: skip)")
    args = ap.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    summary, per_seed, _ = load_runs(args.runs)
    live_pooled = pooled_ratio(per_seed)
    space = args.runs[0] / "space.yaml"
    from ups.tune.space import load_space

    live = asha_tpe_overrides(summary, space)
    trials = load_trials(args.runs)
    table = Table(load_space(space), trials)
    settings = [s.split() for s in args.setting] if args.setting else DEFAULT_SETTINGS
    from ups.config import ConfigError

    try:
        rows = [replay_setting(live, s, table, args.reps, args.seed, summary["random_trials"]) for s in settings]
    except ConfigError as e:  # a mistyped --setting: the product's own message, without a traceback
        sys.exit(f"search_surrogate: --setting: {e}")
    if args.oracle_share > 0:
        rows.append({**replay_setting(live, [], table, args.reps, args.seed, summary["random_trials"],
                                      oracle_share=args.oracle_share), "setting": f"oracle ({args.oracle_share:.0%} nearest the best)"})
        first = [o for o in settings[0] if not o.startswith("asha=")]  # the oracle rows run under Ray's ASHA
        rows.append({**replay_setting(live, first, table, args.reps, args.seed, summary["random_trials"],
                                      oracle_share=args.oracle_share, after_startup=True),
                     "setting": f"oracle after the start-up of '{' '.join(first) or 'as run live'}'"})
    out = {"runs": [str(r) for r in args.runs], "seeds": [r["seed"] for r in per_seed],
           "recorded_full_length_trials": len(trials), "random_search_trials": sum(t.random for t in trials),
           "reps": args.reps, "live_ratio_pooled": live_pooled, "settings": rows,
           "best_recorded": [{"val_nrmse": round(min(t.vals), 4), **t.config}  # where the good region is
                             for t in sorted(trials, key=lambda t: min(t.vals))[:15]]}
    print(json.dumps(out))
    best = max(rows[:len(settings)], key=lambda r: r["ratio_pooled"])
    first = rows[0]  # the live setting by default; else the first --setting, named as such
    print(f"search_surrogate: {len(trials)} recorded trials, {args.reps} reps; '{first['setting']}' {first['ratio_pooled']}× "
          f"(live setting measured {live_pooled}×; seed-mean curves {first['mean_curve_speedup']}×); best setting "
          f"'{best['setting']}' {best['ratio_pooled']}× (seed-mean curves {best['mean_curve_speedup']}×)"
          + (f"; oracle {rows[-2]['ratio_pooled']}×, after the start-up {rows[-1]['ratio_pooled']}×"
             if args.oracle_share > 0 else "") + " (target ≥ 3×)")


if __name__ == "__main__":
    main()
