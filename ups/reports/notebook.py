"""``ups report notebook`` — execute reports/analysis.ipynb headless (nbclient) into an executed copy.

    ups report notebook [experiment=<tune dir|s3://…>] [leaderboard=reports/leaderboard.csv] [champion=<file>] [out=<file.ipynb>]

The kernel runs in the repository root, so the notebook's relative defaults (``reports/leaderboard.csv``,
``runs/sweeps``) mean what they mean on the command line; ``out`` defaults to
``<leaderboard dir>/analysis.executed.ipynb``.  Uses only what ``pip install -e .[report]`` installs.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from ups.reports.sources import DEFAULT_LEADERBOARD, ReportError, champion_argument, parse_kv

if TYPE_CHECKING:
    import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO_ROOT / "reports" / "analysis.ipynb"
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terminal colour codes in a cell's error
NOTEBOOK_ARGS = {"experiment": "Tune experiment dir or s3://…", "leaderboard": "path to leaderboard.csv",
                 "storage": "the sweeps' storage_path", "champion": "the sweep's champion record (default: "
                 "champion.json beside the leaderboard)", "out": "executed notebook (.ipynb)",
                 "timeout": "seconds per cell"}


def error_text(traceback: str) -> str:
    """The error a cell raised, from its traceback: every line from the last ``SomeError: …`` on, joined (Ray's
    "No experiment snapshot … was found at: (local, /path)" comes a line before its "Please check …"), else the
    last line."""
    lines = [ln.strip() for ln in traceback.splitlines() if ln.strip()]
    starts = [i for i, ln in enumerate(lines) if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b:? ", ln)]
    return " ".join(lines[starts[-1]:]) if starts else (lines[-1] if lines else traceback)


def repo_path(value: str, root: Path = REPO_ROOT) -> str:
    """A notebook parameter as a path: URIs and absolute paths as given; a relative path made absolute, from the
    kernel's folder when it exists there, else from the repository root (where the commands in the docs run).
    Absolute, because Ray's ``ExperimentAnalysis`` reads a relative path as a URI and refuses it."""
    if not value or "://" in value or Path(value).is_absolute():
        return value
    return str(Path(value).resolve()) if Path(value).exists() else str(root / value)


@contextmanager
def _kernel_manager() -> Iterator[Any]:
    """The headless kernel on unix sockets in a private temp folder (mode 0700, removed after), where it can: over
    TCP, even on localhost, other users of a shared node can read its traffic (ipykernel warns so).  TCP where
    there are no unix sockets, or where the folder's path is too long for a socket address (108 bytes)."""
    from jupyter_client.manager import KernelManager

    if os.name != "posix":
        yield KernelManager(kernel_name="python3")
        return
    folder = tempfile.mkdtemp(prefix="ups-kernel-")
    try:
        ip = os.path.join(folder, "k")  # the sockets: k-1 … k-5
        conn = os.path.join(folder, "kernel.json")  # the connection file too (jupyter_client put it in $TMPDIR, kept)
        yield KernelManager(kernel_name="python3", transport="ipc", ip=ip, connection_file=conn) if len(ip) < 100 \
            else KernelManager(kernel_name="python3", connection_file=conn)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_notebook(argv: list[str]) -> int:
    args = parse_kv(argv, NOTEBOOK_ARGS, "ups report notebook")
    try:
        import nbformat
        from nbclient import NotebookClient
        from nbclient.exceptions import CellExecutionError
    except ImportError as e:
        raise ReportError(f"ups report notebook needs nbformat and nbclient ({e}). Fix: pip install -e '.[report]'") \
            from None
    lb = Path(args.get("leaderboard", DEFAULT_LEADERBOARD)).resolve()
    out = Path(args.get("out", lb.parent / "analysis.executed.ipynb"))
    if out.is_dir():  # found only after every cell had run: a raw IsADirectoryError
        raise ReportError(f"ups report notebook: out={out} is a folder; the executed notebook is one .ipynb file. "
                          f"Fix: out={out / 'analysis.executed.ipynb'}")
    env = {"UPS_LEADERBOARD": str(lb)}
    if "experiment" in args:
        exp = args["experiment"]
        env["UPS_EXPERIMENT"] = exp if "://" in exp else str(Path(exp).resolve())
    if "storage" in args:
        env["UPS_STORAGE"] = str(Path(args["storage"]).resolve())
    if "champion" in args:
        # a missing one was found by the last cell, after the kernel had started and every figure was drawn
        env["UPS_CHAMPION"] = str(champion_argument(args["champion"], lb, "the experiment's best trial").resolve())
    nb = nbformat.read(NOTEBOOK, as_version=4)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the parameters (the notebook's first cell reads them)
    try:
        with _kernel_manager() as km:
            NotebookClient(nb, timeout=int(args.get("timeout", 600)), kernel_name="python3", km=km,
                           resources={"metadata": {"path": str(REPO_ROOT)}}).execute()
    except CellExecutionError as e:
        said = error_text(ANSI.sub("", str(e)))  # IPython colours the name
        raise ReportError(f"{NOTEBOOK.name} stopped: {said}" + ("" if "Fix:" in said else
                          ". Fix: see the message; the parameters are experiment=, leaderboard=, storage=, "
                          "champion=")) from None
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    print(f"notebook: {out}")
    return 0


LEADERBOARD_TRIAL_COLUMNS = ("run_id", "stop_reason", "gate")


def trial_table(status: pd.DataFrame, last: pd.DataFrame, histories: dict[str, pd.DataFrame], metric: str,
                mode: str = "min", leaderboard: pd.DataFrame | None = None, experiment: str = "") -> pd.DataFrame:
    """The notebook's trial table, one row per trial: ``status`` (trial_id, status, error), its **last** report
    from ``last`` (``ExperimentAnalysis.dataframe()`` without a metric: a finished trial's final figures, its
    test ``nrmse``/``nrmse_ttc`` and its final ``metric``, as the leaderboard has them), the best ``metric`` any of
    its reports had in ``histories`` (trial id → its reports, ``ExperimentAnalysis.trial_dataframes``) as
    ``best_<metric>`` with the iteration it came at, and the leaderboard's run id, stop reason and small-eval gate
    for trial rows of the same trial id (in sweep ``experiment``, when given: another sweep's trial ids may repeat),
    the gate in the report's words (``ups.leaderboard.gate_word``).  A trial Tune restores unfinished (PENDING
    after a Ctrl-C) that the leaderboard records as ``interrupted`` has the status INTERRUPTED: ``resume=true``
    continues it.
    Sorted on the final ``metric``.  (``dataframe(metric, mode="min")``, the
    table before, showed each trial's best report: a val figure the leaderboard does not hold, and no test
    figures, which only the final report has.)"""
    df = status.merge(last, on="trial_id", how="left") if len(last) else status.copy()
    best, at = {}, {}
    for tid, h in histories.items():
        if metric in h and h[metric].notna().any():
            i = h[metric].idxmin() if mode == "min" else h[metric].idxmax()
            best[tid] = float(h.loc[i, metric])
            at[tid] = h.loc[i, "training_iteration"] if "training_iteration" in h else None
    df[f"best_{metric}"] = df["trial_id"].map(best)
    df[f"best_{metric}_iteration"] = df["trial_id"].map(at)
    if leaderboard is not None and "trial_id" in leaderboard and len(leaderboard):
        lb = leaderboard[leaderboard["kind"].astype(str) == "trial"]
        if experiment and "experiment" in lb:
            lb = lb[lb["experiment"].astype(str) == experiment]
        from ups.leaderboard import gate_word

        lb = lb.assign(gate=[gate_word(r) for _, r in lb.iterrows()],
                       _lb_status=lb["status"].astype(str) if "status" in lb else "")
        lb = lb[[c for c in ("trial_id", "_lb_status", *LEADERBOARD_TRIAL_COLUMNS) if c in lb.columns]]
        lb = lb.assign(trial_id=lb["trial_id"].astype(str)).drop_duplicates("trial_id", keep="last")
        df = df.merge(lb, on="trial_id", how="left", suffixes=("", "_leaderboard"))
        cut = df["_lb_status"].eq("interrupted")  # ups.tune.results.INTERRUPTED (Ray-free here)
        cut = cut & ~df["status"].isin(["TERMINATED", "ERROR"])
        df.loc[cut, "status"] = "INTERRUPTED"
    keep = ["trial_id", "status", *[c for c in LEADERBOARD_TRIAL_COLUMNS if c != "run_id"], metric,
            f"best_{metric}", f"best_{metric}_iteration", "training_iteration", "stage", "params", "nrmse",
            "nrmse_ttc", "time_total_s", "error", "run_id"]
    cols = [c for c in keep if c in df.columns] + [c for c in df.columns if str(c).startswith("config/")]
    df = df[cols]
    return df.sort_values(metric, ascending=mode == "min") if metric in df.columns else df.reset_index(drop=True)
