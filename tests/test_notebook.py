"""reports/analysis.ipynb executes headless (nbclient) on a real smoke sweep's results and shows the
dataframe, the figures and the champion's config."""
from __future__ import annotations

import base64
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient

from ups.leaderboard import read_leaderboard

NOTEBOOK = Path(__file__).resolve().parents[1] / "reports" / "analysis.ipynb"


def _outputs(nb, tag: str) -> list:
    cells = [c for c in nb.cells if c.cell_type == "code" and tag in c.metadata.get("tags", [])]
    assert len(cells) == 1, f"notebook needs exactly one cell tagged {tag!r}"
    return cells[0].outputs


def test_notebook_executes_on_smoke_sweep(report_sweep, monkeypatch, tmp_path, capfd, request) -> None:
    """Run the way the README says: ``ups report notebook experiment=… leaderboard=…``."""
    from ups.cli import main as ups_main

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    kernel_tmp = tmp_path / "kernel_tmp"  # the kernel's $TMPDIR: its Optuna study's temporary file must go
    kernel_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(kernel_tmp))
    import shutil
    import tempfile

    # this process's: the kernel's sockets and connection file must go. A short path, as the sockets' own (under
    # pytest-xdist tmp_path's is long enough to put them past a socket address's 108 bytes, and over TCP)
    here_tmp = Path(tempfile.mkdtemp(prefix="ups-nbtest-"))
    request.addfinalizer(lambda: shutil.rmtree(here_tmp, ignore_errors=True))
    monkeypatch.setattr(tempfile, "tempdir", str(here_tmp))
    assert all(not c.get("outputs") for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"), \
        "commit the notebook without outputs"
    before = sorted(p.name for p in report_sweep.reports.iterdir())
    out = tmp_path / "executed.ipynb"
    assert ups_main(["report", "notebook", f"experiment={report_sweep.experiment}",
                     f"leaderboard={report_sweep.leaderboard}", f"out={out}", "timeout=300"]) == 0
    nb = nbformat.read(out, as_version=4)
    # dataframe: one row per trial, with the ASHA metric
    html = "".join(o.get("data", {}).get("text/html", "") for o in _outputs(nb, "dataframe"))
    lb = read_leaderboard(report_sweep.leaderboard)
    for tid in lb.loc[lb["kind"] == "trial", "trial_id"]:
        assert str(tid) in html
    assert "val_nrmse" in html and "TERMINATED" in html and "best_val_nrmse" in html and "stop_reason" in html
    # the table's figures are the final ones, as on the leaderboard (each trial's best report had no test nRMSE)
    from ray.tune import ExperimentAnalysis

    from ups.reports.notebook import trial_table

    ea = ExperimentAnalysis(str(report_sweep.experiment), default_metric="val_nrmse", default_mode="min")
    status = pd.DataFrame([{"trial_id": t.trial_id, "status": t.status, "error": ""} for t in ea.trials])
    other = lb[lb["kind"] == "trial"].assign(experiment="another-sweep", stop_reason="asha: early stop", run_id="x")
    table = trial_table(status, ea.dataframe(), ea.trial_dataframes, "val_nrmse", "min",  # other sweeps' rows
                        leaderboard=pd.concat([lb, other]), experiment=report_sweep.experiment.name)  # left out
    trials = lb[lb["kind"] == "trial"].assign(trial_id=lambda d: d["trial_id"].astype(str)).set_index("trial_id")
    assert sorted(table["trial_id"]) == sorted(trials.index) and table["val_nrmse"].is_monotonic_increasing
    for _, t in table.iterrows():
        for col in ("nrmse", "nrmse_ttc", "val_nrmse", "stop_reason", "run_id"):
            want, got = trials.loc[t["trial_id"], col], t[col]
            if isinstance(want, float) and want != want:  # NaN: a trial without that figure has none here either
                assert got != got, (col, got)
            else:
                assert got == pytest.approx(want, rel=1e-4) if isinstance(want, float) else got == want, (col, got, want)
        assert t["best_val_nrmse"] <= t["val_nrmse"] + 1e-12 and t["best_val_nrmse_iteration"] >= 1
    # Optuna's view: every trial TPE was told of, with its leaderboard run_id
    study_out = _outputs(nb, "optuna")
    study_html = "".join(o.get("data", {}).get("text/html", "") for o in study_out)
    assert "Optuna study" in "".join(o.get("text", "") for o in study_out) and "user_attrs_run_id" in study_html
    for rid in lb.loc[lb["kind"] == "trial", "run_id"]:
        assert str(rid) in study_html
    # figures: real PNGs for every figure the notebook draws
    pngs = [base64.b64decode(o["data"]["image/png"]) for o in _outputs(nb, "plots") if "image/png" in o.get("data", {})]
    text = "".join(o.get("text", "") for o in _outputs(nb, "plots"))
    assert len(pngs) == 7 and all(len(p) > 5_000 and p[:4] == b"\x89PNG" for p in pngs), text
    assert "skipped" not in text
    # champion: the promoted champion's config
    champ_out = _outputs(nb, "champion")
    md = "".join(o.get("data", {}).get("text/markdown", "") for o in champ_out)
    assert "**Champion**" in md
    config_text = "".join(o.get("text", "") for o in champ_out)
    assert '"latent"' in config_text and '"dim": 8' in config_text
    # a round A sweep has no dims verdict, and says so
    assert "not a dims round" in "".join(o.get("text", "") for o in _outputs(nb, "dims"))
    # the notebook only reads results, and leaves no temporary file (an optuna.db in /tmp at each run, before)
    assert sorted(p.name for p in report_sweep.reports.iterdir()) == before
    assert "in memory (the sweep's report keeps it" in "".join(o.get("text", "") for o in study_out)
    assert not list(kernel_tmp.iterdir()), list(kernel_tmp.iterdir())
    assert not list(here_tmp.iterdir()), list(here_tmp.iterdir())
    # the kernel talked over unix sockets (the kernel process's own stderr, caught at the file descriptor)
    assert "running over TCP" not in capfd.readouterr().err
    # champion=: the sweep's own record (the full profile's champion_full.json); a corrupt one is refused naming it
    bad = tmp_path / "champion_full.json"
    bad.write_text("{not json")
    assert ups_main(["report", "notebook", f"experiment={report_sweep.experiment}", f"champion={bad}",
                     f"leaderboard={report_sweep.leaderboard}", f"out={tmp_path / 'x.ipynb'}", "timeout=300"]) == 2
    err = capfd.readouterr().err
    assert f"champion file '{bad}' is not valid JSON" in err and "Fix: re-run the promotion" in err, err
    assert "\x1b[" not in err  # the cell's error without the kernel's terminal colours
    # a champion= that does not exist: refused before a kernel starts, not by the last cell
    missing = tmp_path / "nope.json"
    assert ups_main(["report", "notebook", f"experiment={report_sweep.experiment}", f"champion={missing}",
                     f"leaderboard={report_sweep.leaderboard}", f"out={tmp_path / 'y.ipynb'}"]) == 2
    err = capfd.readouterr().err
    assert f"champion file '{missing}' does not exist. Fix: drop champion=" in err and "stopped" not in err, err


def test_notebook_names_the_fix_without_an_experiment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("UPS_EXPERIMENT", "")
    monkeypatch.setenv("UPS_LEADERBOARD", str(tmp_path / "missing.csv"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    from nbclient.exceptions import CellExecutionError

    with pytest.raises(CellExecutionError, match="UPS_EXPERIMENT"):
        NotebookClient(nb, timeout=120, kernel_name="python3",
                       resources={"metadata": {"path": str(tmp_path)}}).execute()


def test_notebook_paths_resolve_from_the_repo_root(tmp_path, monkeypatch) -> None:
    """Jupyter starts the kernel in reports/: the docs' relative paths still mean the repository's."""
    from ups.reports.notebook import repo_path

    monkeypatch.chdir(tmp_path)
    root = tmp_path / "repo"
    assert repo_path("reports/leaderboard.csv", root) == str(root / "reports" / "leaderboard.csv")
    (tmp_path / "here.csv").write_text("x")
    # found from the kernel's folder: made absolute there (Ray's ExperimentAnalysis refused 'runs/sweeps/<name>')
    assert repo_path("here.csv", root) == str(tmp_path / "here.csv")
    assert repo_path("s3://b/p", root) == "s3://b/p" and repo_path("/abs/x", root) == "/abs/x" and repo_path("") == ""


def test_notebook_dims_cell_shows_the_verdict_of_a_dims_experiment() -> None:
    """The dims cell on a dims experiment's leaderboard rows (two dims × two training seeds): one row per dim
    with its seeds, and the verdict's text."""
    import contextlib
    import io
    import json

    import numpy as np
    import pandas as pd

    cell = next(c for c in nbformat.read(NOTEBOOK, as_version=4).cells if "dims" in c.metadata.get("tags", []))
    rng = np.random.default_rng(0)
    rows = []
    for dim, gain in ((8, 0.1), (16, 0.02)):
        for seed in (0, 1):
            plain = rng.lognormal(-2.3, 0.4, 30)
            ttc = plain * (1 - gain)
            rows.append({"kind": "trial", "round": "dims", "experiment": "dims-x", "timestamp": f"2026-12-03T0{seed}:00:00",
                         "sampled_json": json.dumps({"latent.dim": dim, "training.seed": seed}), "params": dim * 100,
                         "nrmse": plain.mean(), "nrmse_ttc": ttc.mean(),
                         "eval_samples_json": json.dumps({"nrmse": plain.tolist(), "nrmse_ttc": ttc.tolist()})})
    shown: list = []
    exec(cell.source, {"lb": pd.DataFrame(rows), "exp_name": "dims-x", "pd": pd, "display": shown.append,
                       "Markdown": str})
    table, text = shown
    assert list(table.index) == [8, 16] and list(table["seeds"]) == [2, 2]
    assert "yes: TTC helps small models more" in text and "2 training seeds per dim" in text
    # another round that sweeps latent.dim among other knobs (round D here) gets no verdict
    printed = io.StringIO()
    other = pd.DataFrame(rows).assign(round="round_d", experiment="round_d-x")
    with contextlib.redirect_stdout(printed):
        exec(cell.source, {"lb": other, "exp_name": "round_d-x", "pd": pd, "display": shown.append, "Markdown": str})
    assert len(shown) == 2 and "not a dims round" in printed.getvalue()


def test_notebook_figures_show_only_the_baselines_of_the_experiments_data(report_sweep, monkeypatch, tmp_path) -> None:
    """A leaderboard shared by two profiles holds each data's baselines: the notebook drew the other data's
    persistence/linear/FNO lines beside this experiment's trials (the report keeps its data's only)."""
    import pandas as pd

    lb = pd.read_csv(report_sweep.leaderboard, dtype=str)
    other = lb[lb["kind"] == "baseline"].assign(data_hash="ffffffffffff", nrmse="0.03")
    other["run_id"] = other["run_id"] + "-other"
    path = tmp_path / "leaderboard.csv"
    pd.concat([lb, other]).to_csv(path, index=False)
    monkeypatch.setenv("UPS_EXPERIMENT", str(report_sweep.experiment))
    monkeypatch.setenv("UPS_LEADERBOARD", str(path))
    monkeypatch.setenv("UPS_CHAMPION", "")
    cells = [c for c in nbformat.read(NOTEBOOK, as_version=4).cells if c.cell_type == "code"]
    ns: dict = {"display": lambda *a, **k: None}
    for cell in cells[:4]:  # parameters, loading, dataframe, plots: the notebook's own code, in order
        exec(cell.source.replace("from IPython.display import Image, Markdown, display",
                                 "from IPython.display import Image, Markdown"), ns)
    shown = ns["rows"][ns["rows"]["kind"] == "baseline"]
    assert len(shown) == 3 and set(shown["data_hash"].str[:12]) == {lb.loc[lb["kind"] == "trial", "data_hash"].iloc[0][:12]}


def test_a_stopped_notebook_says_the_whole_error_not_its_last_line() -> None:
    """`ups report notebook experiment=/nope` said only Ray's second line ("Please check if you specified the
    correct experiment path …"), without the first, which names the path."""
    from ups.reports.notebook import error_text

    tb = ("-----\nValueError                                Traceback (most recent call last)\nCell In[2], line 19\n"
          "ValueError: No experiment snapshot file of form 'experiment_state-*.json' was found at: (local, /nope)\n"
          "Please check if you specified the correct experiment path.\n")
    assert error_text(tb) == ("ValueError: No experiment snapshot file of form 'experiment_state-*.json' was found at: "
                              "(local, /nope) Please check if you specified the correct experiment path.")
    assert error_text("x\nKeyError: 'a'") == "KeyError: 'a'" and error_text("one line") == "one line"


def test_trial_table_says_interrupted_and_reference_in_the_reports_words() -> None:
    """Tune restores a trial a Ctrl-C left running as PENDING, and the leaderboard records the round's reference
    trial with gate_pass False: the table showed "PENDING" and False where the report says interrupted and
    reference."""
    from ups.leaderboard import REFERENCE_REASON
    from ups.reports.notebook import trial_table

    status = pd.DataFrame({"trial_id": ["a", "b", "c", "d"], "status": ["TERMINATED", "TERMINATED", "PENDING", "PENDING"],
                           "error": ""})
    last = pd.DataFrame({"trial_id": ["a", "b", "c"], "val_nrmse": [0.1, 0.2, 0.3]})
    lb = pd.DataFrame({"kind": "trial", "trial_id": ["a", "b", "c"], "run_id": ["ra", "rb", "rc"],
                       "status": ["completed", "completed", "interrupted"], "stop_reason": "",
                       "gate_pass": [False, True, None],
                       "gate_reasons": [f"vs reference trial a: {REFERENCE_REASON}", "", ""]})
    table = trial_table(status, last, {}, "val_nrmse", leaderboard=lb).set_index("trial_id")
    assert table["status"].to_dict() == {"a": "TERMINATED", "b": "TERMINATED", "c": "INTERRUPTED", "d": "PENDING"}
    assert table["gate"].fillna("").to_dict() == {"a": "reference", "b": "pass", "c": "", "d": ""}
    assert "gate_pass" not in table.columns and "_lb_status" not in table.columns
