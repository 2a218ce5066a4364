"""Concurrency on a cluster that grows: the limit follows the GPU workers as they join.

``cluster.yaml``'s head runs no trials and the autoscaler adds GPU workers while trials are pending, so
at launch the cluster holds 0 trials.  The sweep must still start, and must run more trials at a time as
workers join (4 per GPU at ``resources.gpu=0.25``).  The test starts a real multi-node Ray cluster on this
machine (``ray.cluster_utils.Cluster``: a head with ``num_cpus=0``, then worker nodes with one logical GPU
each, added while the sweep runs, as the autoscaler adds them for a pending trial) in a subprocess (the
suite's own Ray stays as it is), and records when each trial ran.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ups.tune.concurrency import cluster_slots, most_at_once, node_slots

ROOT = Path(__file__).resolve().parents[1]

DRIVER = textwrap.dedent('''
    import json, sys, threading, time
    from pathlib import Path

    from ray.cluster_utils import Cluster

    from ups.tune.launcher import run_round

    out = Path(sys.argv[1])
    PENDING = int(sys.argv[2])  # pending_trials
    marks = out / "marks"
    marks.mkdir(parents=True)
    MARKS = str(marks)

    def trainable(config):
        import time
        from pathlib import Path
        from ray import tune

        mark = Path(MARKS) / tune.get_context().get_trial_id()
        mark.with_suffix(".start").write_text(str(time.time()))
        release = Path(MARKS) / "release"
        # at least 5 s, and until the sweep has run 5 trials at once (or 5 minutes have passed): however
        # slow this machine starts workers and trial actors, the first worker's trials are still running
        # when the second worker's start
        for it in range(1, 601):
            time.sleep(0.5)
            tune.report({"stage": "operator", "epoch": it, "val_nrmse": 1.0 / it,
                         "train_loss": 1.0 / it, "val_conservation_gap": 0.0, "val_bc_violation": 0.0})
            if it >= 10 and release.exists():
                break
        mark.with_suffix(".end").write_text(str(time.time()))

    def running():
        return len(list(marks.glob("*.start"))) - len(list(marks.glob("*.end")))

    # the head runs no trial; shutdown_at_exit=False: nodes are added off the main thread (no SIGTERM
    # hook there), and the finally below shuts the cluster down
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0}, shutdown_at_exit=False)
    added = []

    def wait_running(n):  # generous: on a loaded 2-core machine a trial actor takes ~12 s to start
        deadline = time.time() + 240
        while running() < n and time.time() < deadline:
            time.sleep(0.2)

    demand = []  # most placement groups pending at once before the first worker: what an autoscaler sees

    def autoscaler():  # what Ray's autoscaler does for a pending trial: add a GPU worker (max_workers=2)
        from ray.util import placement_group_table

        deadline = time.time() + 120
        while not (out / "runs" / "grow").exists() and time.time() < deadline:
            time.sleep(0.2)
        def pending_groups():
            return sum(pg["state"] == "PENDING" for pg in placement_group_table().values())

        most, deadline = 0, time.time() + 30  # Tune's loop runs on a cluster that holds no trial
        while time.time() < deadline:
            most = max(most, pending_groups())
            if most >= PENDING:  # every trial Tune will keep pending is; a moment for one more to show
                time.sleep(2)
                most = max(most, pending_groups())
                break
            time.sleep(0.2)
        demand.append(most)
        cluster.add_node(num_cpus=2, num_gpus=1); added.append(time.time())
        wait_running(4)  # the first worker is full
        cluster.add_node(num_cpus=2, num_gpus=1); added.append(time.time())
        wait_running(5)  # the second worker took a trial: the trials may end
        (marks / "release").touch()

    t = threading.Thread(target=autoscaler, daemon=True)
    t.start()
    try:
        run_round("round_a", [f"ray_address={cluster.address}", "num_samples=10", "max_concurrent=0", "resources.gpu=0.25",
                              "resources.cpu=0.5", "searcher.name=optuna", "scheduler.name=fifo",
                              "searcher.n_startup_trials=3", f"pending_trials={PENDING}", "baselines=false",
                              "wandb.enabled=false",
                              "gates.enabled=false", "promotion.top_k=0", "write_report=false", "verbose=0",
                              f"storage_path={out / 'runs'}", f"leaderboard={out / 'lb.csv'}",
                              f"champion={out / 'champ.json'}", "name=grow"], trainable=trainable)
    finally:
        t.join(timeout=5)
        cluster.shutdown()
    spans = {p.stem: (float(p.read_text()), float(p.with_suffix(".end").read_text()))
             for p in marks.glob("*.start") if p.with_suffix(".end").exists()}
    (out / "spans.json").write_text(json.dumps({"spans": spans, "added": added, "demand": demand}))
''')


def test_slots_are_counted_per_node():
    g5 = {"CPU": 8.0, "GPU": 1.0}
    assert node_slots(g5, {"CPU": 2, "GPU": 0.25}) == 4  # cluster.yaml's worker at profile=full
    assert node_slots({"CPU": 4.0, "GPU": 1.0}, {"CPU": 2, "GPU": 0.25}) == 2  # CPUs bind (a g5.xlarge)
    assert node_slots({"CPU": 0.0}, {"CPU": 1, "GPU": 0}) == 0  # the head runs no trial
    # Ray keeps a share within one GPU: 0.4 packs 2 per GPU, so 4 on two GPUs (5 were counted, one left pending)
    assert node_slots({"CPU": 16.0, "GPU": 2.0}, {"CPU": 1, "GPU": 0.4}) == 4
    assert node_slots({"CPU": 16.0, "GPU": 4.0}, {"CPU": 1, "GPU": 0.3}) == 12
    assert node_slots({"CPU": 16.0, "GPU": 2.0}, {"CPU": 1, "GPU": 1.5}) == 1
    nodes = [{"Alive": True, "Resources": {"CPU": 0.0}}, {"Alive": True, "Resources": g5},
             {"Alive": False, "Resources": g5}, {"Alive": True, "Resources": {"CPU": 1.0, "GPU": 0.5}}]
    # trials never span nodes: two half-GPU leftovers do not make one trial
    assert cluster_slots({"CPU": 0.5, "GPU": 0.75}, nodes) == 1
    assert cluster_slots({"CPU": 2, "GPU": 0.25}, nodes) == 4 + 0  # the dead node and the 1-CPU node hold none


def test_the_local_instance_runs_what_its_cpus_and_gpus_both_hold():
    """Before, a local GPU instance ran GPUs / resources.gpu trials whatever its CPUs: 4 CPUs and 1 GPU at
    profile=full ({cpu: 2, gpu: 0.25}) got a limit of 4, two of them suggested and left waiting for CPUs."""
    from ups.tune.ray_session import local_concurrency
    from ups.tune.sweep_config import load_sweep_config

    full = load_sweep_config("round_a", ["profile=full"])
    assert (full.resources.cpu, full.resources.gpu) == (2, 0.25)
    assert local_concurrency(full, cpus=16, gpus=1) == 4  # GPU-bound (measured on an H200: docs/GPU.md)
    assert local_concurrency(full, cpus=4, gpus=1) == 2  # CPU-bound
    assert local_concurrency(full, cpus=1, gpus=1) == 1  # never 0 (check_local_fit refuses the unfit)
    smoke = load_sweep_config("round_a", [])
    assert local_concurrency(smoke, cpus=2, gpus=0) == 2
    assert local_concurrency(load_sweep_config("round_a", ["max_concurrent=3"]), cpus=16, gpus=1) == 3


@pytest.mark.slow
def test_concurrency_follows_gpu_workers_as_they_join(tmp_path):
    """With ``pending_trials=3`` the empty cluster shows the autoscaler 3 trials' demand (3 pending
    placement groups, not Tune's 1 for a limited searcher), and the limit still follows the workers."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), "3"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    assert "as many as the cluster holds (now 0, 3 more pending)" in proc.stdout, proc.stdout[-3000:]
    # the empty cluster is said in words, not only by Ray's "No trial is running" every minute
    assert ("note: no node of the cluster holds a trial now (0.5 CPU and 0.25 GPU per trial; its nodes have at most "
            "0 CPUs and 0 GPUs): the trials wait, pending, for workers to join") in proc.stdout, proc.stdout[-3000:]
    rec = json.loads((tmp_path / "spans.json").read_text())
    assert rec["demand"] == [3], rec  # exactly pending_trials: the limit holds the rest back
    spans = list(rec["spans"].values())
    assert len(spans) == 10, rec  # every trial ran to its end
    assert len(rec["added"]) == 2, rec
    first_start = min(s for s, _ in spans)
    assert first_start > rec["added"][0], "a trial ran before any worker could hold it"
    # one worker holds 4 (1 GPU / 0.25); with the second one joined, more ran at once than one worker holds
    most = most_at_once(spans)
    assert 4 < most <= 8, (most, rec)


def test_the_empty_cluster_note_names_what_a_trial_asks_for_and_what_the_nodes_have():
    from ups.tune.ray_session import empty_cluster_text

    nodes = [{"Alive": True, "Resources": {"CPU": 2.0}}, {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 0.0}},
             {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 1.0}}]  # a dead node holds nothing
    assert (empty_cluster_text({"CPU": 1.0, "GPU": 0.25}, nodes)
            == "1 CPU and 0.25 GPU per trial; its nodes have at most 8 CPUs and 0 GPUs")
    assert empty_cluster_text({"CPU": 4.0, "GPU": 0.0}, nodes[:1]) == "4 CPU per trial; its nodes have at most 2 CPUs and 0 GPUs"


def test_limiter_reads_the_cluster_and_survives_a_restore(ray_session):
    """On the suite's Ray (2 CPUs, no GPU): 2 one-CPU trials fit, so the limit is 3 (one pending); the
    limiter pickles with the experiment state, and a restored one (its clock from another process)
    reads the cluster again at its first suggestion."""
    from ray import cloudpickle, tune
    from ray.tune.search.optuna import OptunaSearch

    from ups.tune.concurrency import ClusterLimiter

    searcher = OptunaSearch(space={"x": tune.uniform(0, 1)}, metric="m", mode="min")
    lim = ClusterLimiter(searcher, {"CPU": 1, "GPU": 0})
    assert lim.max_concurrent == 3
    restored = cloudpickle.loads(cloudpickle.dumps(lim))
    restored.max_concurrent, restored.checked_at = 1, float("inf")  # another process's clock
    assert restored.suggest("t1") is not None
    assert restored.max_concurrent == 3
    for t in ("t2", "t3"):
        assert restored.suggest(t) is not None
    assert restored.suggest("t4") is None  # 3 live: the limit holds
    more = cloudpickle.loads(cloudpickle.dumps(ClusterLimiter(searcher, {"CPU": 1, "GPU": 0}, pending=3)))
    assert more.max_concurrent == 5 and more.pending == 3  # 2 fit + 3 pending, kept through a restore
    del more.pending  # a limiter pickled before pending_trials existed
    more.checked_at = float("inf")
    more.suggest("t5")
    assert more.max_concurrent == 3


def test_a_resume_sets_the_limit_and_the_saved_state_does_not_undo_it(ray_session):
    """Tune restores a limiter pickled when the sweep started, then at fit its saved state; what
    ``set_limit`` gave it in between (the resuming command's concurrency) must be what it runs with."""
    from ray import cloudpickle, tune
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    from ups.tune.concurrency import ADAPTIVE, ClusterLimiter, VariantLimiter, set_limit

    searcher = OptunaSearch(space={"x": tune.uniform(0, 1)}, metric="m", mode="min")
    one = ClusterLimiter(searcher, {"CPU": 1, "GPU": 0}, fixed=1)  # max_concurrent=1
    assert one.max_concurrent == 1 and one.suggest("t1") is not None and one.suggest("t2") is None
    saved = one.get_state()  # Tune's searcher state: live trials, and the settings of the time
    restored = cloudpickle.loads(cloudpickle.dumps(ClusterLimiter(searcher, {"CPU": 1, "GPU": 0}, fixed=1)))
    assert set_limit(restored, {"CPU": 1, "GPU": 0}, 2, ADAPTIVE) is None  # resumed: follow the cluster
    restored.set_state(saved)
    assert (restored.fixed, restored.pending, restored.max_concurrent) == (0, 2, 4)  # 2 fit + 2 pending
    assert restored.live_trials == {"t1"}  # the saved part is back
    assert set_limit(restored, {"CPU": 1, "GPU": 0}, 1, 2) is None and restored.max_concurrent == 2
    gen = VariantLimiter(max_concurrent=1)
    saved = gen.get_state()
    assert set_limit(gen, {"CPU": 1, "GPU": 0}, 1, 3) is None
    gen.set_state(saved)
    assert gen.max_concurrent == 3
    old = ConcurrencyLimiter(searcher, max_concurrent=2)  # a sweep started before limits could change
    assert "stays at 2 at a time" in set_limit(old, {"CPU": 1, "GPU": 0}, 1, 3)


def test_pending_trials_below_one_is_refused():
    from ups.config import ConfigError
    from ups.tune.sweep_config import load_sweep_config

    assert load_sweep_config("round_a", []).pending_trials == 1
    with pytest.raises(ConfigError, match=r"'pending_trials' = 0 must be ≥ 1\. Fix: pending_trials=1"):
        load_sweep_config("round_a", ["pending_trials=0"])


def test_a_node_with_a_fraction_of_a_gpu_holds_the_shares_that_fit_in_it():
    """A node whose GPU total is not whole (a fractional GPU resource): its leftover below one GPU still holds
    trials, e.g. 0.5 GPU → two 0.25 trials; 1.5 GPUs → three."""
    assert node_slots({"CPU": 8.0, "GPU": 0.5}, {"CPU": 1, "GPU": 0.25}) == 2
    assert node_slots({"CPU": 8.0, "GPU": 1.5}, {"CPU": 1, "GPU": 0.5}) == 3


def test_a_resumed_random_search_with_max_concurrent_0_is_unlimited():
    """``max_concurrent=0`` (ADAPTIVE) on a resume of a random/grid sweep: Ray's unlimited (0), not one at a time."""
    from ups.tune.concurrency import ADAPTIVE, VariantLimiter, set_limit

    gen = VariantLimiter(max_concurrent=2)
    assert set_limit(gen, {"CPU": 1}, 1, ADAPTIVE) is None and gen.max_concurrent == 0
    assert set_limit(gen, {"CPU": 1}, 1, 3) is None and gen.max_concurrent == 3


def test_spans_that_touch_do_not_run_together():
    """Start inclusive, end exclusive: a trial that starts as another ends did not run beside it."""
    assert most_at_once([(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]) == 1
    assert most_at_once([(0.0, 2.0), (1.0, 3.0), (2.0, 4.0)]) == 2
