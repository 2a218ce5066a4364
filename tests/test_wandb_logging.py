"""The driver's W&B logger (``ups.tune.wandb_logging``) with real wandb in offline mode: the runs it
writes are read back from their ``.wandb`` files (W&B's record log of protobuf ``Record``s)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from ups.config import load_config, to_dict
from ups.leaderboard import read_leaderboard
from ups.tune.gates import GateLimits
from ups.tune.results import LeaderboardCallback, RowContext
from ups.tune.space import load_space
from ups.tune.wandb_logging import WandbRoundLogger, default_group, resolve_mode

REPO = Path(__file__).resolve().parents[1]


class Trial:
    """What the callbacks read of a Tune trial."""

    checkpoint = None

    def __init__(self, trial_id: str, config: dict[str, Any], status: str = "RUNNING"):
        self.trial_id, self.config, self.status = trial_id, config, status
        self.last_result: dict[str, Any] = {}


def records(path: Path) -> list[Any]:
    """The records of a ``.wandb`` file (LevelDB-log framing: 32 KiB blocks, 7-byte chunk headers)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, out, buf, pos = path.read_bytes(), 32768, [], b"", 7
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        if left < 7 or (length == 0 and kind == 0):
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if len(chunk) < length:  # the tail W&B's service is still writing (finished() reads again until "exit")
            break
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def finished(f: Path, wait_s: float = 20.0) -> list[Any]:
    """The records of a finished run: W&B's service may still be writing them when ``finish()`` returns."""
    deadline = time.monotonic() + wait_s
    while True:
        recs = records(f)
        if any(r.WhichOneof("record_type") == "exit" for r in recs) or time.monotonic() > deadline:
            return recs
        time.sleep(0.1)


def runs(root: Path) -> dict[str, dict[str, Any]]:
    """offline run id → its folder, group, config, history rows, define_metric records and summary."""
    out = {}
    for f in root.rglob("offline-run-*/run-*.wandb"):
        recs = finished(f)
        run = next(r.run for r in recs if r.WhichOneof("record_type") == "run")
        summary: dict[str, Any] = {}
        for r in recs:
            if r.WhichOneof("record_type") == "summary":
                summary.update({(u.key or "/".join(u.nested_key)): json.loads(u.value_json) for u in r.summary.update})
        out[run.run_id] = {
            "folder": f.parent, "group": run.run_group,
            "config": {u.key: json.loads(u.value_json) for u in run.config.update},
            "history": [{(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in r.history.item}
                        for r in recs if r.WhichOneof("record_type") == "history"],
            "metrics": [r.metric for r in recs if r.WhichOneof("record_type") == "metric"],
            "summary": summary}
    return out


def table(run: dict[str, Any]) -> list[dict[str, Any]]:
    (f,) = run["folder"].rglob("trials_*.table.json")
    t = json.loads(f.read_text())
    return [dict(zip(t["columns"], row)) for row in t["data"]]


def logger(tmp_path: Path, **kw: Any) -> WandbRoundLogger:
    kw = {"project": "ups-test", "group": default_group("round_a"), "name": "round_a-20250101-000000",
          "mode": "offline", "directory": tmp_path / "wandb", **kw}
    return WandbRoundLogger(**kw)


def report(cbs: list[Any], trial: Trial, **result: Any) -> None:
    trial.last_result = {"training_iteration": len(getattr(trial, "_n", [])) + 1, **result}
    trial._n = [*getattr(trial, "_n", []), 1]
    for cb in cbs:
        cb.on_trial_result(0, [], trial, trial.last_result)


def test_groups_are_sota_sweep_round() -> None:
    """The playbook's groups (04: round A sota-sweep-round-a, round B sota-sweep-round-b, aggressive sota-aggressive),
    the same pattern for the rounds it names no group for."""
    assert [default_group(r) for r in ("round_a", "round_b", "round_c", "round_d", "aggressive", "dims")] == \
        ["sota-sweep-round-a", "sota-sweep-round-b", "sota-sweep-round-c", "sota-sweep-round-d", "sota-aggressive",
         "sota-sweep-dims"]


def test_each_trial_has_its_own_iteration_axis(tmp_path, capsys) -> None:
    cb = logger(tmp_path)
    cb.setup()
    a, b = Trial("a1", {"lr": 1}), Trial("b2", {"lr": 2})
    for _ in range(3):  # interleaved reports
        report([cb], a, train_loss=1.0, val_nrmse=0.5)
        report([cb], b, train_loss=2.0)
    cb.on_experiment_end([a, b])
    (run,) = runs(tmp_path / "wandb").values()
    # the sweep's end names the offline folder and the command that uploads it
    assert f"[ups sweep] W&B (offline): {run['folder']}; upload it with: wandb sync {run['folder']}" in \
        capsys.readouterr().out
    steps = {m.glob_name: m.step_metric for m in run["metrics"] if m.glob_name}
    assert steps == {"a1/*": "a1/training_iteration", "b2/*": "b2/training_iteration"}
    assert [h["a1/training_iteration"] for h in run["history"] if "a1/val_nrmse" in h] == [1, 2, 3]
    assert [h["b2/training_iteration"] for h in run["history"] if "b2/train_loss" in h] == [1, 2, 3]


def test_offline_resume_logs_a_second_run_that_names_the_first(tmp_path) -> None:
    """Offline W&B cannot resume a run (same id: a second folder whose sync replaces the first's history)."""
    first = logger(tmp_path)
    first.setup()
    t = Trial("a1", {})
    report([first], t, val_nrmse=0.5)
    first.on_experiment_end([t])
    second = logger(tmp_path, resume=True)
    second.setup()
    report([second], t, val_nrmse=0.4)
    second.on_experiment_end([t])
    found = runs(tmp_path / "wandb")
    assert len(found) == 2 and "round_a-20250101-000000" in found, sorted(found)
    (rid,) = set(found) - {"round_a-20250101-000000"}
    assert rid.startswith("round_a-20250101-000000-resume-")
    resumed = found[rid]
    assert resumed["group"] == found["round_a-20250101-000000"]["group"] == "sota-sweep-round-a"
    assert resumed["config"]["resumed_from"] == resumed["summary"]["resumed_from"] == "round_a-20250101-000000"
    assert [h["a1/val_nrmse"] for h in found["round_a-20250101-000000"]["history"] if "a1/val_nrmse" in h] == [0.5]
    assert [h["a1/val_nrmse"] for h in resumed["history"] if "a1/val_nrmse" in h] == [0.4]


def test_trials_table_has_every_trial_of_a_resumed_sweep_with_status_and_gate(tmp_path) -> None:
    """The table after a resume lists the trials finished before it (restored by Tune), gate stops and errors."""
    base = load_config(["preset=dim8"])
    space = load_space(REPO / "search_spaces" / "round_a.yaml", base)
    point = space.reference_point(base)
    ctx = RowContext(round="round_a", experiment="round_a-20250101-000000", space=space, base=to_dict(base),
                     reference_point=point, scheduler="asha")
    limits = GateLimits(conservation_gap=1.0)
    lb_path = tmp_path / "leaderboard.csv"
    done, cut, gated, broken = (Trial(i, dict(point)) for i in ("t1", "t2", "t3", "t4"))

    lb = LeaderboardCallback(lb_path, ctx, limits)  # the first driver: t1 finishes, t2 is cut by Ctrl-C
    cb = logger(tmp_path, leaderboard=lb)
    cb.setup()
    report([lb, cb], done, stage="operator", epoch=1, val_nrmse=0.3, final=True, nrmse=0.31)
    done.status = "TERMINATED"
    for c in (lb, cb):
        c.on_trial_complete(0, [], done)
    report([lb, cb], cut, stage="operator", epoch=1, val_nrmse=0.6)
    lb.on_step_end(0, [done, cut])
    cb.on_experiment_end([done, cut])
    assert {r["trial_id"]: r["status"] for r in table(next(iter(runs(tmp_path / "wandb").values())))} == \
        {"t1": "completed", "t2": "interrupted"}

    lb = LeaderboardCallback(lb_path, ctx, limits)  # resume=true: t1 restored, t2 goes on, t3 gated, t4 errors
    cb = logger(tmp_path, leaderboard=lb, resume=True)
    cb.setup()
    report([lb, cb], cut, stage="operator", epoch=2, val_nrmse=0.5, final=True, nrmse=0.52)
    report([lb, cb], gated, stage="operator", epoch=1, val_nrmse=0.9, val_conservation_gap=5.0)
    report([lb, cb], broken, stage="operator", epoch=1, val_nrmse=0.7)
    for c in (lb, cb):
        c.on_trial_complete(0, [], cut)
        c.on_trial_complete(0, [], gated)
        c.on_trial_error(0, [], broken)
    lb.on_step_end(0, [done, cut, gated, broken])
    cb.on_experiment_end([done, cut, gated, broken])
    (resumed,) = [r for rid, r in runs(tmp_path / "wandb").items() if "-resume-" in rid]
    rows = {r["trial_id"]: r for r in table(resumed)}
    assert set(rows) == {"t1", "t2", "t3", "t4"}
    assert {k: r["status"] for k, r in rows.items()} == {"t1": "completed", "t2": "completed", "t3": "stopped",
                                                         "t4": "error"}
    assert rows["t1"]["nrmse"] == pytest.approx(0.31) and rows["t2"]["epochs"] == 2
    assert rows["t3"]["gate"].startswith("gate:conservation") and rows["t3"]["stop_reason"] == rows["t3"]["gate"]
    assert rows["t1"]["gate"] == "" and rows["t4"]["stop_reason"].startswith("error")
    assert resumed["summary"]["trials_total"] == 4 and resumed["summary"]["trials_error"] == 1
    assert len(read_leaderboard(lb_path)) == 4


def test_a_wandb_failure_mid_sweep_switches_logging_off(tmp_path, capsys) -> None:
    cb = logger(tmp_path)
    cb.setup()
    t = Trial("a1", {})
    report([cb], t, val_nrmse=0.5)
    cb._run.finish()  # the run is gone under the logger: run.log raises
    report([cb], t, val_nrmse=0.4)
    report([cb], t, val_nrmse=0.3)
    cb.on_trial_complete(0, [], t)
    cb.on_experiment_end([t])
    err = capsys.readouterr().err
    assert err.count("logging switched off") == 1, err
    assert cb._run is None


def test_wandb_dir_and_dryrun_are_honoured(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # no network: dryrun must still mean offline
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "mine"))
    cb = logger(tmp_path, mode=resolve_mode("auto"), directory=None, default_directory=tmp_path / "default")
    cb.setup()
    cb.on_experiment_end([])
    assert runs(tmp_path / "mine") and not (tmp_path / "default").exists()
    explicit = logger(tmp_path, directory=tmp_path / "explicit", default_directory=tmp_path / "default")  # wandb.dir
    explicit.setup()
    explicit.on_experiment_end([])
    assert runs(tmp_path / "explicit")


def test_online_without_network_falls_back_to_offline_quickly(tmp_path, monkeypatch, capsys) -> None:
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: connection refused
    wandb.teardown()  # the W&B singleton reads the environment when it starts
    try:
        assert resolve_mode("auto") == "online"
        cb = logger(tmp_path, mode="online", init_timeout_s=2)
        t0 = time.monotonic()
        cb.setup()
        took = time.monotonic() - t0
        assert cb._run is not None and cb._run.settings.mode == "offline"
        report([cb], Trial("a1", {}), val_nrmse=0.5)
        cb.on_experiment_end([])
    finally:
        wandb.teardown()
    assert took < 30, took
    assert "logging offline instead" in capsys.readouterr().err
    (run,) = runs(tmp_path / "wandb").values()
    assert [h["a1/val_nrmse"] for h in run["history"] if "a1/val_nrmse" in h] == [0.5]


def test_a_failed_online_init_leaves_no_folder_for_wandb_sync(tmp_path, monkeypatch) -> None:
    """The failed online attempt's ``run-<time>-<id>`` folder is removed (``wandb sync`` of the folder would
    upload a broken run); the offline run and other runs' folders stay."""
    import wandb

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens: connection refused
    root = tmp_path / "wandb" / "wandb"
    others = [root / "run-20240101_000000-round_a-20240101-000000", root / "run-20240101_000000-round_a-20250101-000000"]
    for d in others:  # another sweep's online run; an earlier online run of this one
        d.mkdir(parents=True)
        (d / f"run-{d.name.split('-', 2)[2]}.wandb").write_bytes(b":W&B")
    wandb.teardown()
    try:
        cb = logger(tmp_path, mode="online", init_timeout_s=2)
        cb.setup()
        assert cb._run is not None and cb._run.settings.mode == "offline"
        cb.on_experiment_end([])
    finally:
        wandb.teardown()
    online = sorted(p.name for p in root.glob("run-*"))
    assert online == sorted(d.name for d in others), online
    (offline,) = root.glob("offline-run-*")
    assert (offline / "run-round_a-20250101-000000.wandb").is_file()


def test_resume_continues_the_run_only_after_online_only_logging(tmp_path) -> None:
    """An online resume reuses the sweep's run id (``resume="allow"``) only when every earlier run of that id was
    online: after offline logging (or with nothing known) a later ``wandb sync`` of the offline folder would clash
    with the continued run, so the resume logs to a new linked run, as an offline resume does."""
    from ups.tune.wandb_logging import earlier_modes, resume_run_id

    base, stamp = "round_a-20250101-000000", "20250102T000000Z"
    new = f"{base}-resume-{stamp}"
    for mode, resume, earlier, want in [
            ("online", False, set(), base), ("offline", False, {"offline"}, base),  # a fresh sweep
            ("online", True, {"online"}, base),  # online all along: continue the run
            ("online", True, {"offline"}, new), ("online", True, {"online", "offline"}, new),
            ("online", True, set(), new),  # unknown (folders cleaned, another machine): offline-safe
            ("offline", True, {"online"}, new), ("offline", True, set(), new)]:
        assert resume_run_id(base, mode, resume, earlier, stamp) == want, (mode, resume, earlier)

    root = tmp_path / "root"
    assert earlier_modes(root, base) == set()
    for folder, rid in [(f"run-20250101_000000-{base}", base), (f"run-20250101_000100-{base}-2", f"{base}-2"),
                        (f"offline-run-20250101_000000-{base}-resume-x", f"{base}-resume-x")]:
        (root / "wandb" / folder).mkdir(parents=True)
        (root / "wandb" / folder / f"run-{rid}.wandb").write_bytes(b":W&B")
    (root / "wandb" / f"offline-run-20250101_000200-{base}").mkdir()  # no record file: not a run of it
    assert earlier_modes(root, base) == {"online"}
    (root / ".wandb" / f"offline-run-20250101_000300-{base}-1").mkdir(parents=True)  # W&B's .wandb, suffixed
    (root / ".wandb" / f"offline-run-20250101_000300-{base}-1" / f"run-{base}.wandb").write_bytes(b":W&B")
    assert earlier_modes(root, base) == {"online", "offline"}


def test_an_online_resume_of_an_offline_sweep_logs_a_new_linked_run(tmp_path) -> None:
    """The run id an online resume chooses after a real offline run (no network needed: the choice is made before
    ``wandb.init``); offline→offline still gives the linked run."""
    first = logger(tmp_path)
    first.setup()
    first.on_experiment_end([])
    online = logger(tmp_path, mode="online", resume=True)
    rid, name, resumed_from = online.run_identity("online")
    assert rid.startswith("round_a-20250101-000000-resume-") and name.startswith("round_a-20250101-000000-resume-")
    assert resumed_from == "round_a-20250101-000000"
    assert logger(tmp_path, mode="online").run_identity("online") == ("round_a-20250101-000000",) * 2 + (None,)
    second = logger(tmp_path, resume=True)
    second.setup()
    second.on_experiment_end([])
    found = runs(tmp_path / "wandb")
    (rid,) = set(found) - {"round_a-20250101-000000"}
    assert rid.startswith("round_a-20250101-000000-resume-")
    assert found[rid]["config"]["resumed_from"] == "round_a-20250101-000000"
