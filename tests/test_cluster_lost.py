"""The head of a joined cluster goes away mid-sweep (the head node stopped, ``ray stop`` on it, a network cut).

Before, the driver hung a minute in Ray's reconnect loop and Ray aborted it with "Failed to connect to GCS
within 60 seconds": no row for the running trials, no leaderboard, no resume command.  The sweep now watches
the joined cluster's GCS (``ups.tune.stop_signals.watch_cluster``) and, after ``cluster_lost_s`` without it,
records its running trials as interrupted, prints its leaderboard and the ``resume=true`` command, and exits 1.

A real cluster (``ray.cluster_utils.Cluster``) runs in one subprocess, which shuts it down on a signal file; the
sweep's driver runs in another and joins it by address, as a laptop joins ``ray up``'s head.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

HOLDER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from ray.cluster_utils import Cluster

    out = Path(sys.argv[1])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2}, shutdown_at_exit=False)
    (out / "address").write_text(cluster.address)
    deadline = time.time() + 600
    while not (out / "kill").exists() and time.time() < deadline:
        time.sleep(0.1)
    cluster.shutdown()
    (out / "gone").touch()
''')

DRIVER = textwrap.dedent('''
    import sys
    from pathlib import Path

    from ups.tune.launcher import run_round

    out = Path(sys.argv[1])
    MARKS = str(out / "marks")
    Path(MARKS).mkdir()

    def trainable(config):
        import time
        from pathlib import Path
        from ray import tune

        mark = Path(MARKS) / tune.get_context().get_trial_id()
        for it in range(1, 1201):
            time.sleep(0.25)
            tune.report({"stage": "operator", "epoch": it, "val_nrmse": 1.0 / it, "train_loss": 1.0 / it,
                         "val_conservation_gap": 0.0, "val_bc_violation": 0.0})
            mark.write_text(str(it))

    run_round("round_a", [f"ray_address={(out / 'address').read_text()}", "num_samples=2", "max_concurrent=2",
                          "searcher.name=random", "scheduler.name=fifo", "baselines=false", "wandb.enabled=false",
                          "gates.enabled=false", "promotion.top_k=0", "write_report=false", "verbose=0",
                          "cluster_lost_s=4", f"storage_path={out / 'runs'}", f"leaderboard={out / 'lb.csv'}",
                          f"champion={out / 'champ.json'}", "name=lost"], trainable=trainable)
''')


def _wait(cond, timeout: float, what: str, procs: list[subprocess.Popen]) -> None:
    deadline = time.time() + timeout
    while not cond():
        for p in procs:
            if p.poll() is not None:
                out, err = p.communicate()
                raise AssertionError(f"{what}: a process ended early (rc {p.returncode}):\n{out[-3000:]}\n{err[-3000:]}")
        if time.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


@pytest.mark.slow
def test_a_sweep_whose_cluster_goes_away_records_its_trials_and_says_how_to_resume(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=tmp_path, env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    driver = None
    try:
        _wait(lambda: (tmp_path / "address").exists(), 120, "the cluster's start", [holder])
        driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], cwd=tmp_path, env=env, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        marks = tmp_path / "marks"
        _wait(lambda: marks.is_dir() and len([m for m in marks.iterdir() if int(m.read_text() or 0) >= 4]) == 2,
              240, "both trials reporting", [holder, driver])
        (tmp_path / "kill").touch()
        _wait(lambda: (tmp_path / "gone").exists(), 60, "the cluster's shutdown", [driver])
        t0 = time.time()
        out, err = driver.communicate(timeout=55)  # Ray's own abort comes after 60 s
        took = time.time() - t0
    finally:
        for p in (driver, holder):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    assert driver.returncode == 1, (out[-3000:], err[-3000:])
    assert "the Ray cluster's GCS at " in out and "has not answered for 4 s" in out, out[-3000:]
    assert "cluster lost: when it is back" in out and "resume=true" in out and "name=lost" in out, out[-3000:]
    assert took < 50, took
    rows = pd.read_csv(tmp_path / "lb.csv")
    mine = rows[rows["experiment"] == "lost"]
    assert len(mine) == 2 and (mine["status"] == "interrupted").all(), mine[["run_id", "status", "stop_reason"]]
    assert mine["stop_reason"].str.endswith("resume=true continues it").all()
    assert (tmp_path / "runs" / "lost").is_dir() and not (tmp_path / "runs" / "lost" / "ups_driver.json").exists(), \
        "the driver's lease was left behind"
