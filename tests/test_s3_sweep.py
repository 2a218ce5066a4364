"""A smoke sweep with storage_path=s3://… lands Tune state, results and checkpoints in the bucket.

Runs ``run_round`` in-process on the session's Ray cluster, which was started before the S3
environment existed: the trial processes reach moto only through the filesystem that
``resolve_storage`` built on the driver (endpoint + keys), as on a cluster.
"""
from __future__ import annotations

import pytest

from ups.leaderboard import read_leaderboard

pytest.importorskip("ray")


def test_smoke_sweep_stores_state_results_checkpoints_on_s3(ray_session, tmp_path, s3_client, s3_bucket,
                                                             tiny_data, tiny_cache_dir):
    from ups.tune.launcher import run_round

    name = "s3-smoke"
    out = run_round("round_a", [
        "num_samples=2", "max_concurrent=2", "baselines=false", "promotion.top_k=1", "promotion.force=true",
        f"wandb.dir={tmp_path / 'wandb'}",  # offline (the suite's WANDB_MODE): its run is published too
        "scheduler.name=fifo", "searcher.name=random", "gates.enabled=false", "verbose=0",
        f"storage_path=s3://{s3_bucket}/sweeps", f"name={name}", f"leaderboard={tmp_path / 'lb.csv'}",
        f"report_dir={tmp_path / 'reports'}", f"champion={tmp_path / 'champ.json'}",
        "write_report=false", "data.n=64", "data.resolution=256", f"data.cache_dir={tiny_cache_dir}",
        "stages.autoencoder.epochs=1", "stages.operator.epochs=2", "training.checkpoint_every=1",
    ])
    assert out.experiment_path == f"s3://{s3_bucket}/sweeps/{name}"

    prefix = f"sweeps/{name}/"
    keys = [o["Key"] for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=s3_bucket, Prefix=prefix)
            for o in page.get("Contents", [])]
    rel = [k[len(prefix):] for k in keys]
    assert "tuner.pkl" in rel
    assert "leaderboard.csv" in rel  # published next to the Tune state at the end
    # so is the champion record (with its history), which lived only on the head node's disk and went with ray down
    assert {"champ.json", "champ_history.jsonl"} <= set(rel), rel
    published = s3_client.get_object(Bucket=s3_bucket, Key=prefix + "champ.json")["Body"].read()
    assert published == (tmp_path / "champ.json").read_bytes()
    # and the offline W&B run (on the head's disk, like the champion), ready for `wandb sync` after a download
    runs = list((tmp_path / "wandb").rglob("offline-run-*"))
    assert len(runs) == 1 and any(r.startswith(f"wandb/{runs[0].name}/") and r.endswith(".wandb") for r in rel), rel
    assert any(r.startswith("experiment_state-") and r.endswith(".json") for r in rel)
    assert not [r for r in rel if "/work/" in r or r.endswith("latent_cache.pt")], \
        "the trainer's scratch (its own checkpoints, latent cache) must not be uploaded"
    trials = sorted({r.split("/")[0] for r in rel if r.startswith("trial_")})
    assert len(trials) == 2
    for t in trials:
        assert f"{t}/result.json" in rel and f"{t}/params.json" in rel
        ckpts = [r for r in rel if r.startswith(f"{t}/checkpoint_") and r.endswith("/checkpoint.pt")]
        assert ckpts, f"no checkpoint of {t} in the bucket: {rel}"
        body = s3_client.get_object(Bucket=s3_bucket, Key=prefix + f"{t}/result.json")["Body"].read()
        assert b"val_nrmse" in body

    rows = read_leaderboard(tmp_path / "lb.csv")
    rows = rows[(rows["experiment"] == name) & (rows["kind"] == "trial")]
    assert len(rows) == 2 and rows["run_id"].is_unique and rows["nrmse"].notna().all()

    # champion.json / the full-eval row record where a checkpoint lives (never a temp download), and the
    # report/export side loads it back from there
    from ups.reports.sources import checkpoint_file
    from ups.train.checkpoint import load_checkpoint
    from ups.tune.promotion import checkpoint_uri, local_checkpoint
    from ups.cloud.storage import resolve_storage

    raw = str(rows["checkpoint"].iloc[0])
    _, fs = resolve_storage(f"s3://{s3_bucket}/sweeps")
    with local_checkpoint(raw, fs) as download:
        uri = checkpoint_uri(raw, download, fs)
        assert download.is_file()
    assert not download.parent.exists(), "the temporary download outlived the with block"
    assert uri.startswith(f"s3://{s3_bucket}/sweeps/{name}/trial_") and "/checkpoint_" in uri, uri
    with checkpoint_file(uri) as fetched:
        model, cfg, _ = load_checkpoint(fetched)
    assert sum(p.numel() for p in model.parameters()) > 0 and not fetched.parent.exists()


def test_a_resumed_pbt_sweep_reads_its_exploit_logs_back_from_s3(s3_client, s3_bucket) -> None:
    """``pbt_logs`` reads Ray PBT's log files next to the restored trials, here in a bucket (moto), through the
    filesystem Tune restored the results with; other files of the experiment are not taken."""
    from ray.tune import Result

    from ups.cloud.storage import resolve_storage
    from ups.tune.restore import pbt_logs

    prefix = "sweeps/pbt-s3"
    for key, body in {"pbt_global.txt": b'["1", "0", 4, 4, {}, {}]\n', "pbt_policy_t_00001.txt": b"line\n",
                      "experiment_state-x.json": b"{}", "trial_t_00001/result.json": b"{}\n"}.items():
        s3_client.put_object(Bucket=s3_bucket, Key=f"{prefix}/{key}", Body=body)
    root, fs = resolve_storage(f"s3://{s3_bucket}/sweeps")
    result = Result(metrics={}, checkpoint=None, error=None, path=f"{root}/pbt-s3/trial_t_00001",
                    _storage_filesystem=fs)
    assert pbt_logs([result]) == {"pbt_global.txt": '["1", "0", 4, 4, {}, {}]\n', "pbt_policy_t_00001.txt": "line\n"}
