"""HTML report from a real round_a smoke sweep: figures with real data, sortable table, headless Chromium,
round comparison, partly failed experiments."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread

from ups.leaderboard import read_leaderboard
from ups.reports.cli import main as report_main
from ups.reports.experiment import load_experiment
from ups.reports.html import FIGURES, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]


def _png_has_data(path: Path) -> None:
    assert path.exists() and path.stat().st_size > 5_000, f"{path} missing or tiny"
    img = imread(path)  # (H, W, 4) floats
    assert img.shape[0] > 200 and img.shape[1] > 400
    assert float(np.std(img[..., :3])) > 0.05, f"{path} looks blank"


@pytest.fixture(scope="module")
def round_report(report_sweep, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report") / "round_a"
    rc = report_main(["round=round_a", f"leaderboard={report_sweep.leaderboard}",
                      f"experiment={report_sweep.experiment}", f"out={out}"])
    assert rc == 0
    return out / "index.html"


def test_engine_report_keeps_the_leaderboard(report_sweep) -> None:
    # the sweep engine renders reports/<round>/index.html, next to leaderboard.csv and champion.json
    assert (report_sweep.reports / "round_a" / "index.html").exists()
    lb = read_leaderboard(report_sweep.leaderboard)
    assert (lb["kind"] == "trial").sum() == 3 and (lb["kind"] == "baseline").sum() >= 2
    assert report_sweep.champion.exists()


def test_report_has_every_figure_with_real_data(report_sweep, round_report) -> None:
    page = round_report.read_text()
    assert "skipped:" not in page, re.findall(r"skipped: [^<]*", page)
    for key, _, _ in FIGURES:
        assert f'id="fig-{key}"' in page and f'src="{key}.png"' in page
        _png_has_data(round_report.parent / f"{key}.png")
    lb = read_leaderboard(report_sweep.leaderboard)
    trials = lb[lb["kind"] == "trial"]
    for run_id in trials["run_id"]:  # every trial and baseline is a table row
        assert f">{run_id}<" in page
    for label in lb.loc[lb["kind"] == "baseline", "label"]:
        assert 'class="baseline"' in page and f">{label}<" in page
    champ = json.loads(report_sweep.champion.read_text())
    assert "Champion: champion" in page and champ["run_id"] in page
    table = pd.read_csv(round_report.parent / "table.csv")
    assert len(table) == len(lb) and set(trials["run_id"]) <= set(table["run_id"])


def test_experiment_reader_matches_tune(report_sweep) -> None:
    exp = load_experiment(report_sweep.experiment)
    lb = read_leaderboard(report_sweep.leaderboard)
    assert {t.trial_id for t in exp.trials} == set(lb.loc[lb["kind"] == "trial", "trial_id"].astype(str))
    hist = exp.histories()
    assert {"val_nrmse", "training_iteration"} <= set(hist.columns) and len(hist) >= 2
    assert all(t.status == "TERMINATED" for t in exp.trials)


@pytest.fixture
def short_tmp():
    """A temp folder of the test's own with a short path (``tmp_path`` under pytest-xdist is too long, below)."""
    folder = Path(tempfile.mkdtemp(prefix="ups-chromium-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                    reason="headless Chromium/chromedriver not installed (apt-get install chromium chromium-driver; "
                           "test.sh does this when run as root)")
@pytest.mark.parametrize("which", ["smoke", "failing"])
def test_report_renders_in_headless_chromium(which, round_report, failing_report, short_tmp, tmp_path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    page = round_report if which == "smoke" else failing_report
    opts = webdriver.ChromeOptions()
    for f in FLAGS:
        opts.add_argument(f)
    opts.binary_location = CHROMIUM
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Chromium puts its profile and singleton-socket folders under TMPDIR: keep them in a folder of this test's own,
    # with a short path: the socket's path must fit a unix socket address (107 bytes), which a pytest-xdist worker's
    # tmp_path (…/popen-gw0/test_report_renders_in_headl0/) left no room for ("Chrome instance exited")
    env = {**os.environ, "TMPDIR": str(short_tmp)}
    opts.add_argument(f"--user-data-dir={short_tmp / 'profile'}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER, env=env), options=opts)
    try:
        driver.set_window_size(1400, 1000)
        driver.get(page.as_uri())
        assert driver.execute_script("return document.body.getAttribute('data-sort-ready')") == "1"
        rows = driver.find_elements("css selector", "#leaderboard-table tbody tr")
        assert len(rows) >= 3
        imgs = driver.execute_script(
            "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth])")
        want = {f"{k}.png" for k, _, _ in FIGURES} if which == "smoke" else {"gates.png", "rung_survival.png"}
        loaded = {src for src, w in imgs if w and w > 100}
        assert want <= loaded, f"figures not rendered: {want - loaded}"
        # sorting: click the nrmse header twice → ascending then descending, empties last
        heads = driver.find_elements("css selector", "#leaderboard-table thead th")
        col = [h.text.strip() for h in heads].index("nrmse")
        values = []
        for _ in range(2):
            heads[col].click()
            keys = driver.execute_script(
                f"return Array.from(document.querySelectorAll('#leaderboard-table tbody tr'))"
                f".map(r => r.cells[{col}].getAttribute('data-v'))")
            values.append([float(k) for k in keys if k])
        assert values[0] == sorted(values[0]) and values[1] == sorted(values[1], reverse=True)
        shot = tmp_path / f"{which}.png"
        assert driver.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        errors = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        assert not errors, errors
    finally:
        driver.quit()


# ---------------------------------------------------------------------------- partly failed sweep
@pytest.fixture(scope="module")
def failing_report(failing_sweep, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("failing") / "faulty"
    return write_report(failing_sweep.experiment, failing_sweep.leaderboard, "faulty", out)


def test_partly_failed_experiment_still_renders_and_marks_failures(failing_sweep, failing_report) -> None:
    exp = load_experiment(failing_sweep.experiment)
    status = {float(t.config["training.lambda_spectral"]): t.status for t in exp.trials}
    assert status == {0.0: "TERMINATED", 1.0: "ERROR", 2.0: "ERROR"}
    errors = {t.error for t in exp.trials if t.error}
    assert any("before the first report" in e for e in errors) and any("partial report" in e for e in errors)
    page = failing_report.read_text()
    assert page.count('<tr class="failed"') == 2
    assert "Failed trials (2)" in page and "injected failure before the first report" in page
    for key in ("gates", "rung_survival", "learning_curves", "pareto"):
        assert f'src="{key}.png"' in page, key
        assert (failing_report.parent / f"{key}.png").stat().st_size > 5_000
    assert read_leaderboard(failing_sweep.leaderboard)["status"].str.lower().eq("error").sum() == 2


# ------------------------------------------------------------------------------------ comparison
def test_compare_rounds_side_by_side(report_sweep, failing_sweep, tmp_path, capsys) -> None:
    lb = pd.concat([read_leaderboard(report_sweep.leaderboard), read_leaderboard(failing_sweep.leaderboard)])
    path = tmp_path / "lb.csv"
    lb.to_csv(path, index=False)
    out = tmp_path / "cmp.html"
    assert report_main(["compare", "round_a", "faulty", f"leaderboard={path}", f"out={out}"]) == 0
    text = capsys.readouterr().out
    def best(r: str) -> float:  # the trial with the lowest val nRMSE (the sweep's own choice); its test nRMSE
        t = lb[(lb["round"] == r) & (lb["kind"] == "trial") & lb["nrmse"].notna()]
        t = t[t["gate_pass"] == True] if (t["gate_pass"] == True).any() else t  # noqa: E712
        return float(t.sort_values("val_nrmse")["nrmse"].iloc[0])

    best_a, best_b = best("round_a"), best("faulty")
    assert best_b == pytest.approx(0.4)  # lambda_spectral 0.0 completes with nrmse 0.4
    line = next(ln for ln in text.splitlines() if ln.startswith("nrmse "))
    assert f"{best_b - best_a:.4g}" in line
    html = out.read_text()
    assert "round_a" in html and "faulty" in html and 'id="compare-metrics"' in html


def test_report_reads_an_experiment_on_s3(failing_sweep, s3_bucket, tmp_path) -> None:
    from ups.cloud.dataset_sync import upload_dir

    uri = f"s3://{s3_bucket}/sweeps/{failing_sweep.experiment.name}"
    upload_dir(failing_sweep.experiment, uri)
    exp = load_experiment(uri)
    local = load_experiment(failing_sweep.experiment)
    assert {(t.trial_id, t.status, len(t.history)) for t in exp.trials} == \
        {(t.trial_id, t.status, len(t.history)) for t in local.trials}
    page = write_report(uri, failing_sweep.leaderboard, "faulty", tmp_path / "r").read_text()
    assert "Failed trials (2)" in page and f"experiment {uri}" in page
