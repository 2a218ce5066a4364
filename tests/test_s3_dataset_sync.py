"""The dataset cache shared through S3 (moto_server on 127.0.0.1) with sha256 verification."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from ups.cloud.dataset_sync import (
    SHA_META,
    DatasetSyncError,
    remote_sha256,
    sha256_file,
    sync_dataset,
    upload_dir,
    upload_file,
)


def _write_h5(path, seed=0):
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f["tensor"] = rng.standard_normal((4, 11, 32)).astype(np.float32)
        f["x-coordinate"] = np.linspace(0, 1, 32, endpoint=False)
        f["t-coordinate"] = np.linspace(0, 2, 12)
    return path


def test_dataset_generated_once_uploaded_and_downloaded_by_workers(tmp_path, s3_client, s3_bucket):
    uri = f"s3://{s3_bucket}/datasets/burgers_nu0.01.h5"
    driver = tmp_path / "driver" / "burgers_nu0.01.h5"
    calls = []

    def generate():
        calls.append(1)
        driver.parent.mkdir(parents=True, exist_ok=True)
        _write_h5(driver)

    assert sync_dataset(driver, uri, generate=generate) == driver
    assert calls == [1]
    head = s3_client.head_object(Bucket=s3_bucket, Key="datasets/burgers_nu0.01.h5")
    assert head["Metadata"][SHA_META] == sha256_file(driver)

    # a second sync on the driver neither regenerates nor re-uploads
    sync_dataset(driver, uri, generate=generate)
    assert calls == [1]

    worker = tmp_path / "worker" / "cache" / "burgers_nu0.01.h5"
    assert sync_dataset(worker, uri) == worker
    with h5py.File(worker) as a, h5py.File(driver) as b:
        np.testing.assert_array_equal(a["tensor"][...], b["tensor"][...])


def test_corrupted_download_is_refused(tmp_path, s3_client, s3_bucket):
    good = _write_h5(tmp_path / "good.h5")
    uri = f"s3://{s3_bucket}/datasets/d.h5"
    sync_dataset(good, uri)
    sha = remote_sha256(uri)
    # corrupt the stored bytes but keep the recorded checksum (a bit-rot / truncated upload)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    s3_client.put_object(Bucket=s3_bucket, Key="datasets/d.h5", Body=bytes(data), Metadata={SHA_META: sha})

    worker_dir = tmp_path / "worker"
    with pytest.raises(DatasetSyncError, match="corrupted and was discarded"):
        sync_dataset(worker_dir / "d.h5", uri)
    assert not (worker_dir / "d.h5").exists()
    assert not list(worker_dir.glob("*.part")), "no half-written file is left behind"


def test_stale_local_copy_is_replaced(tmp_path, s3_bucket):
    uri = f"s3://{s3_bucket}/datasets/d.h5"
    sync_dataset(_write_h5(tmp_path / "a.h5", seed=1), uri)
    (tmp_path / "w").mkdir()
    local = _write_h5(tmp_path / "w" / "d.h5", seed=2)
    assert sha256_file(local) != remote_sha256(uri)
    sync_dataset(local, uri)
    assert sha256_file(local) == remote_sha256(uri)


def test_missing_everywhere_names_the_fix(tmp_path, s3_bucket):
    with pytest.raises(DatasetSyncError, match="ups data generate"):
        sync_dataset(tmp_path / "nothing.h5", f"s3://{s3_bucket}/datasets/nothing.h5")


def test_object_without_checksum_is_not_trusted(tmp_path, s3_client, s3_bucket):
    s3_client.put_object(Bucket=s3_bucket, Key="datasets/raw.h5", Body=b"abc")
    with pytest.raises(DatasetSyncError, match="no sha256 metadata"):
        sync_dataset(tmp_path / "raw.h5", f"s3://{s3_bucket}/datasets/raw.h5")


def test_upload_dir_for_leaderboard_and_reports(tmp_path, s3_client, s3_bucket):
    (tmp_path / "reports" / "round_a").mkdir(parents=True)
    (tmp_path / "reports" / "leaderboard.csv").write_text("run_id,nrmse\na,0.1\n")
    (tmp_path / "reports" / "round_a" / "index.html").write_text("<html></html>")
    written = upload_dir(tmp_path / "reports", f"s3://{s3_bucket}/exp/reports")
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == ["exp/reports/leaderboard.csv", "exp/reports/round_a/index.html"]
    assert len(written) == 2
    body = s3_client.get_object(Bucket=s3_bucket, Key="exp/reports/leaderboard.csv")["Body"].read()
    assert body == b"run_id,nrmse\na,0.1\n"


def test_share_dataset_generates_once_and_workers_download(tmp_path, s3_bucket):
    from ups.cloud.dataset_sync import dataset_uri, share_dataset
    from ups.config import load_config

    def data_cfg(cache):
        return load_config(["data.n=3", "data.resolution=32", "data.frames=6", "data.t_final=0.05",
                            f"data.cache_dir={cache}"]).data

    prefix = f"s3://{s3_bucket}/ups"
    driver = share_dataset(data_cfg(tmp_path / "driver"), prefix)
    assert driver.parent == tmp_path / "driver" and driver.is_file()
    uri = dataset_uri(data_cfg(tmp_path / "driver"), prefix)
    assert uri.startswith(f"{prefix}/datasets/burgers_") and remote_sha256(uri) == sha256_file(driver)
    worker = share_dataset(data_cfg(tmp_path / "worker"), prefix)
    assert worker.parent == tmp_path / "worker"
    # byte-identical (a regenerated file would carry a different created_unix attribute)
    assert sha256_file(worker) == sha256_file(driver)
    with h5py.File(worker) as f:
        assert f["tensor"].shape[0] == 3


def test_publish_results_puts_leaderboard_and_report_next_to_the_experiment(tmp_path, s3_client, s3_bucket):
    from ups.cloud.dataset_sync import publish_results

    (tmp_path / "reports" / "figs").mkdir(parents=True)
    (tmp_path / "reports" / "index.html").write_text("<html></html>")
    (tmp_path / "reports" / "figs" / "a.png").write_bytes(b"\x89PNG")
    lb = tmp_path / "lb.csv"
    lb.write_text("run_id\nx\n")
    champion = [tmp_path / "champion_full.json", tmp_path / "champion_full_history.jsonl"]  # as the launcher passes them
    uris = publish_results(f"s3://{s3_bucket}/sweeps/round_a-1", lb, tmp_path / "reports" / "index.html",
                           champion)  # no champion crowned yet: nothing to upload for it
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == ["sweeps/round_a-1/leaderboard.csv", "sweeps/round_a-1/reports/figs/a.png",
                    "sweeps/round_a-1/reports/index.html"]
    assert len(uris) == 3
    # the champion record and its history outlive the head node (ray down) beside the leaderboard, by their names
    (tmp_path / "champion_full.json").write_text('{"run_id": "t1"}')
    (tmp_path / "champion_full_history.jsonl").write_text('{"run_id": "t1"}\n')
    run = tmp_path / "wandb" / "offline-run-20261206_000000-round_a-2"  # an offline W&B run's folder
    (run / "files").mkdir(parents=True)
    (run / "run-round_a-2.wandb").write_bytes(b"\x00log")
    (run / "files" / "config.yaml").write_text("a: 1\n")
    uris = publish_results(f"s3://{s3_bucket}/sweeps/round_a-2", lb, None, champion, run)
    assert sorted(uris) == [f"s3://{s3_bucket}/sweeps/round_a-2/{n}" for n in
                            ("champion_full.json", "champion_full_history.jsonl", "leaderboard.csv",
                             f"wandb/{run.name}/files/config.yaml", f"wandb/{run.name}/run-round_a-2.wandb")]
    body = s3_client.get_object(Bucket=s3_bucket, Key="sweeps/round_a-2/champion_full.json")["Body"].read()
    assert body == b'{"run_id": "t1"}'


def test_a_missing_bucket_is_named_with_the_fix(tmp_path, s3_env):
    """A bucket that does not exist: the object's HEAD answers a bare 404, so it read as "no object yet": with a
    local file the upload ended in boto3's S3UploadFailedError, without one generate() ran first (minutes of
    data), and without generate= the message blamed the missing dataset."""
    uri = "s3://ups-no-such-bucket-zz/datasets/d.h5"
    calls = []
    for local, generate in ((_write_h5(tmp_path / "d.h5"), None), (tmp_path / "w" / "d.h5", lambda: calls.append(1)),
                            (tmp_path / "w" / "d.h5", None)):
        with pytest.raises(DatasetSyncError, match=r"bucket 'ups-no-such-bucket-zz' does not exist at .*Fix: create "
                                                   r"it \(aws s3 mb s3://ups-no-such-bucket-zz\)"):
            sync_dataset(local, uri, generate=generate)
    assert calls == []  # nothing generated for a bucket it cannot be uploaded to
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "leaderboard.csv").write_text("run_id,nrmse\na,0.1\n")
    with pytest.raises(DatasetSyncError, match="bucket 'ups-no-such-bucket-zz' does not exist"):
        upload_dir(tmp_path / "reports", "s3://ups-no-such-bucket-zz/exp/reports")  # publish_results' way


def test_upload_dir_leaves_lock_files_out(tmp_path, s3_client, s3_bucket) -> None:
    """The leaderboard's ``.leaderboard.csv.lock`` (ups.filelock) is local machinery, not a result to publish."""
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "leaderboard.csv").write_text("run_id\na\n")
    (tmp_path / "reports" / ".leaderboard.csv.lock").write_text("")
    written = upload_dir(tmp_path / "reports", f"s3://{s3_bucket}/exp")
    keys = sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=s3_bucket)["Contents"])
    assert keys == ["exp/leaderboard.csv"] and written == [f"s3://{s3_bucket}/exp/leaderboard.csv"]


def test_upload_needs_an_object_key(tmp_path, s3_bucket) -> None:
    """``s3://bucket`` alone names no object: refused with the fix before any upload."""
    f = tmp_path / "a.h5"
    f.write_bytes(b"x")
    with pytest.raises(DatasetSyncError, match="needs an object key after the bucket"):
        upload_file(f, f"s3://{s3_bucket}")


def test_a_generate_that_writes_nothing_is_named(tmp_path, s3_bucket) -> None:
    """A ``generate`` that returns without writing the file is named as such, not as a missing upload source."""
    with pytest.raises(DatasetSyncError, match=r"generate\(\) did not create"):
        sync_dataset(tmp_path / "d.h5", f"s3://{s3_bucket}/datasets/d.h5", generate=lambda: None)


def test_sync_waits_for_the_nodes_other_syncer(tmp_path, s3_client, s3_bucket) -> None:
    """Trials on one node start together: while one holds the file's lock (generating it), another neither
    generates nor uploads; it waits, then finds the first one's upload and keeps the local copy."""
    import threading
    import time

    from ups.filelock import exclusive_lock

    local = tmp_path / "d.h5"
    uri = f"s3://{s3_bucket}/datasets/d.h5"
    generated: list[str] = []

    def generate() -> None:
        generated.append("second")
        _write_h5(local, seed=1)

    with exclusive_lock(tmp_path / ".d.h5.lock"):  # the first syncer, mid-generation
        t = threading.Thread(target=lambda: sync_dataset(local, uri, generate=generate))
        t.start()
        time.sleep(0.5)
        assert generated == [] and "Contents" not in s3_client.list_objects_v2(Bucket=s3_bucket)
        _write_h5(local, seed=0)  # the first one generates and uploads, still holding the lock
        sha = upload_file(local, uri)
    t.join(timeout=30)
    assert not t.is_alive() and generated == []
    assert sha256_file(local) == sha == remote_sha256(uri)
