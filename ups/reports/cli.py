"""``ups report`` — render a round's HTML report, or compare two rounds.

    ups report [round=<name|all>] [leaderboard=reports/leaderboard.csv] [experiment=<tune dir|s3://…>] [out=<dir>]
               [report_dir=<dir>: out=<dir>/<round>, as a sweep's report_dir= places it]
               [champion=<file>] [data_hash=<prefix>]   # one test data set per report (smoke and full differ)
    ups report compare <round_a> <round_b> [leaderboard=…] [out=<file.html>]   # rounds, or sweeps (experiment names)
    ups report notebook [experiment=…] [leaderboard=…] [champion=…] [out=<file.ipynb>]   # reports/analysis.ipynb, executed

round defaults to the round of the most recent trial in the leaderboard; experiment defaults to the
experiment folder recorded in that round's rows; out defaults to <leaderboard dir>/<round>/.
"""
from __future__ import annotations

from pathlib import Path

from ups.reports.sources import (DEFAULT_LEADERBOARD, ReportError, champion_argument, load_leaderboard, parse_kv,
                                 rounds_in)

REPORT_ARGS = {"round": "name|all", "leaderboard": "path to leaderboard.csv", "experiment": "Tune experiment dir or s3://…",
               "out": "output folder", "report_dir": "folder of <round>/ folders, as the sweeps' report_dir=",
               "champion": "path to champion.json",
               "data_hash": "the test data whose trials to show, when the round's span several"}
COMPARE_ARGS = {"leaderboard": "path to leaderboard.csv", "out": "output .html"}


def main(argv: list[str]) -> int:
    if (argv and argv[0] == "help") or any(a in ("-h", "--help") for a in argv):  # compare/notebook --help too
        print(__doc__)
        return 0
    if argv and argv[0] == "compare":
        return _compare(argv[1:])
    if argv and argv[0] == "notebook":
        from ups.reports.notebook import run_notebook

        return run_notebook(argv[1:])
    from ups.reports.html import write_report
    from ups.reports.optuna_study import STUDY_FILE, sqlite_url

    args = parse_kv(argv, REPORT_ARGS, "ups report")
    lb_path = Path(args.get("leaderboard", DEFAULT_LEADERBOARD))
    round_name = args.get("round")
    if round_name is None:
        rounds = rounds_in(load_leaderboard(lb_path))
        if not rounds and "experiment" not in args:
            raise ReportError(f"leaderboard '{lb_path}' has no trial rows with a round. Fix: run a sweep first "
                              f"(python sweeps/round_a.py) or pass round=<name> experiment=<tune dir>")
        round_name = rounds[-1] if rounds else "all"
        print(f"ups report: round={round_name} (most recent in {lb_path}; rounds: {', '.join(rounds) or 'none'})")
    if "out" in args and "report_dir" in args:
        raise ReportError(f"ups report: out={args['out']} and report_dir={args['report_dir']} both name where the report "
                          f"goes. Fix: one of them (report_dir=<dir> is out=<dir>/{round_name})")
    out = Path(args["out"]) if "out" in args else Path(args.get("report_dir", lb_path.parent)) / round_name
    if out.exists() and not out.is_dir():  # found only when the rendered report moved in: a raw FileExistsError
        raise ReportError(f"ups report: out={out} is a file; a report is a folder (index.html, figures, table.csv). "
                          f"Fix: out=<a folder>, e.g. out={lb_path.parent / round_name}")
    champion = champion_argument(args["champion"], lb_path, "the round's best trial") if "champion" in args else None
    from ups.outputs import check_writable_folder

    check_writable_folder(out.parent, f"ups report out={out}", f"out=reports/{round_name}")  # it stages there
    index = write_report(args.get("experiment"), lb_path, round_name, out, champion_path=champion,
                         data_hash=args.get("data_hash"))
    print(f"report: {index}")
    if (db := Path(index).parent / STUDY_FILE).is_file():  # the round's sweeps as Optuna studies (not PBT)
        print(f"Optuna studies: {sqlite_url(db)} (optuna-dashboard {sqlite_url(db)})")
    return 0


def _compare(argv: list[str]) -> int:
    from ups.reports.compare import compare_main

    rounds = [a for a in argv if "=" not in a]
    if len(rounds) != 2:
        raise ReportError(f"ups report compare: expected two round (or sweep) names, got {rounds or 'none'}. "
                          f"Fix: ups report compare round_a round_b [leaderboard=…] [out=…]")
    args = parse_kv([a for a in argv if "=" in a], COMPARE_ARGS, "ups report compare")
    lb_path = Path(args.get("leaderboard", DEFAULT_LEADERBOARD))
    out = Path(args["out"]) if "out" in args else None
    if out is not None and out.is_dir():  # os.replace onto it raised IsADirectoryError and left its temp file
        raise ReportError(f"ups report compare: out={out} is a folder; the comparison is one .html file. Fix: "
                          f"out={out / f'compare_{rounds[0]}_vs_{rounds[1]}.html'}")
    compare_main(rounds[0], rounds[1], lb_path, out)
    return 0
