"""Kill a trial's worker process (SIGKILL) mid-trial: Tune retries it (FailureConfig(max_failures)),
the retry resumes from the trial's last checkpoint and the trial finishes.

The real UPS trainable runs on the session's Ray cluster; its training function is wrapped only to
log (pid, resume_from, global_epoch) per report to a file, so the test can find the trial's process
and see where the retry started.
"""
from __future__ import annotations

import functools
import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")

KILL_AT_EPOCH = 2


def recording_train(cfg: Any, *, events: str, report: Any, run_dir: Path, resume_from: Path | None = None,
                    data: Any = None) -> Any:
    """``ups.train.trainer.train`` with every report also logged as a JSON line to ``events``."""
    from ups.train.trainer import train

    def logged(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        report(metrics, checkpoint_dir)  # Tune persists the checkpoint before this returns
        with open(events, "a") as f:
            f.write(json.dumps({"trial": str(cfg.run.run_id), "pid": os.getpid(),
                                "resume_from": str(resume_from) if resume_from else None,
                                "global_epoch": int(metrics.get("global_epoch", -1)),
                                "checkpoint": checkpoint_dir is not None}) + "\n")

    return train(cfg, report=logged, run_dir=run_dir, resume_from=resume_from, data=data)


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []


def test_killed_trial_worker_restarts_from_checkpoint(ray_session, tmp_path, tiny_data, tiny_cache_dir):
    from ray import tune

    from ups.config import to_dict
    from ups.tune.prepare import prepare
    from ups.tune.launcher import run_round
    from ups.tune.trainable import ups_trial

    overrides = [
        "num_samples=1", "max_concurrent=1", "max_failures=2", "baselines=false", "promotion.top_k=0",
        "wandb.enabled=false", "scheduler.name=fifo", "searcher.name=random", "gates.enabled=false", "verbose=0",
        f"storage_path={tmp_path / 'ray'}", "name=fault-worker", f"leaderboard={tmp_path / 'lb.csv'}",
        f"report_dir={tmp_path / 'reports'}", f"champion={tmp_path / 'champ.json'}",
        "data.n=64", "data.resolution=256", f"data.cache_dir={tiny_cache_dir}",
        "stages.autoencoder.epochs=1", "stages.operator.epochs=3", "training.checkpoint_every=1",
    ]
    events = tmp_path / "events.jsonl"
    p = prepare("round_a", overrides)
    trainable = tune.with_parameters(ups_trial, base=to_dict(p.base), space=p.space, label="round_a", data=tiny_data,
                                     train_fn=functools.partial(recording_train, events=str(events)))

    killed: dict[str, Any] = {}
    stop = threading.Event()

    def killer() -> None:  # kill the trial's process once it has checkpointed epoch KILL_AT_EPOCH
        while not stop.is_set():
            for e in _events(events):
                if e["global_epoch"] >= KILL_AT_EPOCH and e["checkpoint"]:
                    killed.update(e)
                    os.kill(e["pid"], signal.SIGKILL)
                    return
            time.sleep(0.1)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        out = run_round("round_a", overrides, trainable=trainable)
    finally:
        stop.set()
        thread.join(timeout=5)

    log = "\n".join(map(str, _events(events)))
    assert killed, f"the trial finished before its worker could be killed:\n{log}"
    after = [e for e in _events(events) if e["trial"] == killed["trial"] and e["pid"] != killed["pid"]]
    assert after, f"the trial was not restarted in a new worker process:\n{log}"
    first = after[0]
    assert first["resume_from"] is not None, f"the retry started from scratch instead of the checkpoint:\n{log}"
    assert first["global_epoch"] > 1, f"the retry restarted at epoch {first['global_epoch']}:\n{log}"
    # the kill lands a little after the logged epoch (loaded machine): the retry continues right after the
    # last epoch the dead process reported, never later
    last_dead = max(e["global_epoch"] for e in _events(events) if e["pid"] == killed["pid"])
    assert first["global_epoch"] <= last_dead + 1, log
    final_epoch = max(e["global_epoch"] for e in after)
    assert final_epoch > killed["global_epoch"]

    rows = out.rows[out.rows["experiment"] == "fault-worker"]
    assert len(rows) == 1 and rows.iloc[0]["status"] == "completed", rows[["run_id", "status", "stop_reason"]].to_dict()
    assert rows["nrmse"].notna().all(), "the restarted trial did not reach its final evaluation"
    # the row says the trial was restarted (a lost node left no trace on the leaderboard before)
    assert "retried:1" in str(rows.iloc[0]["tags"]).split(";"), rows.iloc[0]["tags"]
