"""Share files through S3 with sha256 checksums: the Burgers dataset cache, leaderboard, reports.

The dataset is generated once (on the driver), uploaded with its sha256 in the object metadata
(``x-amz-meta-sha256``), and every worker downloads it into its local cache, verifies the checksum
and only then moves it into place (atomic rename).  A download whose checksum does not match is
deleted and refused with ``DatasetSyncError``; a local copy that disagrees with S3 is replaced.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
from pathlib import Path
from typing import Callable, Sequence

from ups.cloud.storage import StorageError, endpoint_url, parse_s3_uri, s3_client
from ups.filelock import exclusive_lock
from ups.outputs import atomic_path

SHA_META = "sha256"  # stored as x-amz-meta-sha256
_CHUNK = 8 * 1024 * 1024


class DatasetSyncError(StorageError):
    """A shared file is missing, or its bytes do not match the recorded checksum."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _file_lock(target: Path) -> contextlib.AbstractContextManager[None]:
    """Serialise processes on one node that sync the same file (trials start together)."""
    return exclusive_lock(target.with_name(f".{target.name}.lock"))


def _no_bucket(s3_uri: str, bucket: str) -> DatasetSyncError:
    return DatasetSyncError(f"{s3_uri}: bucket '{bucket}' does not exist at {endpoint_url() or 'AWS S3'}. Fix: create "
                            f"it (aws s3 mb s3://{bucket}) or correct the bucket name in the S3 URI.")


def _bucket_missing(bucket: str) -> bool:
    """Whether S3 says ``bucket`` does not exist (a HEAD of a key in it answers a bare 404 either way)."""
    from botocore.exceptions import ClientError

    try:
        s3_client().head_bucket(Bucket=bucket)
    except ClientError as e:
        return str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchBucket", "NotFound")
    return False


def remote_sha256(s3_uri: str) -> str | None:
    """The checksum recorded on the object, or None if the object does not exist (its bucket must)."""
    from botocore.exceptions import ClientError

    loc = parse_s3_uri(s3_uri)
    try:
        head = s3_client().head_object(Bucket=loc.bucket, Key=loc.prefix)
    except ClientError as e:
        if str(e.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            if _bucket_missing(loc.bucket):  # not "no object yet": generating the data would fail at the upload
                raise _no_bucket(s3_uri, loc.bucket) from None
            return None
        raise
    sha = head.get("Metadata", {}).get(SHA_META)
    if not sha:
        raise DatasetSyncError(
            f"{s3_uri}: object has no sha256 metadata, so its integrity cannot be checked. "
            "Fix: re-upload it with ups.cloud.dataset_sync.upload_file (or delete it to regenerate)."
        )
    return sha


def upload_file(local_path: str | os.PathLike[str], s3_uri: str, sha256: str | None = None) -> str:
    """Upload one file with its sha256 as object metadata (multipart for big files); returns the sha."""
    local = Path(local_path)
    if not local.is_file():
        raise DatasetSyncError(f"upload {local} → {s3_uri}: local file does not exist.")
    loc = parse_s3_uri(s3_uri)
    if not loc.prefix:
        raise DatasetSyncError(f"{s3_uri}: needs an object key after the bucket. Fix: s3://<bucket>/<key>.")
    sha = sha256 or sha256_file(local)
    from boto3.exceptions import S3UploadFailedError

    try:
        s3_client().upload_file(str(local), loc.bucket, loc.prefix, ExtraArgs={"Metadata": {SHA_META: sha}})
    except S3UploadFailedError as e:  # boto3 wraps the ClientError (its context) in its own, codeless
        if "NoSuchBucket" in str(e) or _bucket_missing(loc.bucket):
            raise _no_bucket(s3_uri, loc.bucket) from None
        raise
    return sha


def download_verified(s3_uri: str, local_path: str | os.PathLike[str], expected_sha256: str) -> Path:
    """Download to a temp file next to ``local_path``, verify, then rename; refuse a mismatch."""
    local = Path(local_path)
    loc = parse_s3_uri(s3_uri)
    with atomic_path(local, suffix=".part") as tmp:
        s3_client().download_file(loc.bucket, loc.prefix, str(tmp))
        got = sha256_file(tmp)
        if got != expected_sha256:
            raise DatasetSyncError(
                f"{s3_uri}: downloaded bytes have sha256 {got[:16]}… but the object records "
                f"{expected_sha256[:16]}…; the copy is corrupted and was discarded. Fix: re-upload the "
                f"file from a good copy (or delete {s3_uri} so it is regenerated)."
            )
    return local


def sync_dataset(
    local_path: str | os.PathLike[str],
    s3_uri: str,
    generate: Callable[[], object] | None = None,
) -> Path:
    """Make ``local_path`` and ``s3_uri`` hold the same verified bytes; return the local path.

    * S3 has it: a local copy with the same sha256 is kept, otherwise it is downloaded and verified.
    * S3 lacks it: the local file (generated by ``generate()`` if missing) is uploaded with its sha256.
    """
    local = Path(local_path).expanduser()
    with _file_lock(local):
        remote = remote_sha256(s3_uri)
        if remote is not None:
            if local.is_file() and sha256_file(local) == remote:
                return local
            return download_verified(s3_uri, local, remote)
        if not local.is_file():
            if generate is None:
                raise DatasetSyncError(
                    f"{s3_uri} does not exist and there is no local copy at {local}. Fix: generate the "
                    "dataset on the driver first (ups data generate …) or pass generate=."
                )
            generate()
            if not local.is_file():
                raise DatasetSyncError(f"generate() did not create {local}.")
        upload_file(local, s3_uri)
        return local


def upload_dir(local_dir: str | os.PathLike[str], s3_uri: str) -> list[str]:
    """Upload every file under ``local_dir`` to ``s3_uri/<relative path>`` (with sha256 metadata).

    Used at the end of a sweep for the leaderboard and reports; returns the S3 URIs written.
    """
    root = Path(local_dir)
    if not root.is_dir():
        raise DatasetSyncError(f"upload_dir: {root} is not a folder.")
    loc = parse_s3_uri(s3_uri)
    written: list[str] = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")):
        rel = path.relative_to(root).as_posix()
        uri = f"s3://{loc.bucket}/{loc.key(rel)}"
        upload_file(path, uri)
        written.append(uri)
    return written


def dataset_uri(data_cfg: object, s3_prefix: str) -> str:
    """``<s3_prefix>/datasets/<content-addressed file name>`` for a data config."""
    from ups.data.cache import cache_file

    loc = parse_s3_uri(s3_prefix)
    return f"s3://{loc.bucket}/{loc.key('datasets', cache_file(data_cfg).name)}"


def share_dataset(data_cfg: object, s3_prefix: str) -> Path:
    """The Burgers dataset for ``data_cfg`` in the local cache, shared through ``s3_prefix``.

    The first caller (the driver) generates it (``ups.data.cache.dataset_path``) and uploads it;
    every later caller on any node downloads and verifies it instead of regenerating.
    """
    from ups.data.cache import cache_file, dataset_path

    return sync_dataset(cache_file(data_cfg), dataset_uri(data_cfg, s3_prefix),
                        generate=lambda: dataset_path(data_cfg))


def publish_results(experiment_uri: str, leaderboard: str | os.PathLike[str],
                    report: str | os.PathLike[str] | None = None,
                    files: Sequence[str | os.PathLike[str]] = (),
                    wandb_offline: str | os.PathLike[str] | None = None) -> list[str]:
    """End of a sweep on S3: the leaderboard, other result ``files`` (the champion record and its history) and the
    report folder next to the Tune state, so that they outlive the head node (``ray down``).

    ``<experiment_uri>/leaderboard.csv``, ``<experiment_uri>/<each file's name>`` (those that exist),
    ``<experiment_uri>/reports/…`` and, for a sweep logged to W&B offline, its run folder as
    ``<experiment_uri>/wandb/<offline-run-…>/`` (``wandb sync`` it after a download); returns the URIs written.
    """
    loc = parse_s3_uri(experiment_uri)
    written: list[str] = []
    named = [(Path(leaderboard), "leaderboard.csv"), *((Path(f), Path(f).name) for f in files)]
    for f, name in named:
        if f.is_file():
            uri = f"s3://{loc.bucket}/{loc.key(name)}"
            upload_file(f, uri)
            written.append(uri)
    if report is not None and Path(report).exists():
        folder = Path(report) if Path(report).is_dir() else Path(report).parent
        written += upload_dir(folder, f"s3://{loc.bucket}/{loc.key('reports')}")
    if wandb_offline is not None and Path(wandb_offline).is_dir():
        run = Path(wandb_offline)
        written += upload_dir(run, f"s3://{loc.bucket}/{loc.key('wandb/' + run.name)}")
    return written
