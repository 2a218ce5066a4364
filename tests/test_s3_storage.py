"""Storage preflight and resolution against a real S3 API server (moto_server on 127.0.0.1)."""
from __future__ import annotations

import re
import socket
import time

import pytest

from ups.cloud.storage import StorageError, parse_s3_uri, preflight, resolve_storage


def test_preflight_accepts_existing_bucket_and_leaves_nothing(s3_client, s3_bucket):
    preflight(f"s3://{s3_bucket}/sweeps/round_a")
    listed = s3_client.list_objects_v2(Bucket=s3_bucket)
    assert listed.get("KeyCount", 0) == 0, "the write probe must be deleted"


def test_preflight_rejects_missing_bucket_quickly(s3_env):
    t0 = time.monotonic()
    with pytest.raises(StorageError) as err:
        preflight("s3://no-such-bucket-ups/exp")
    msg = str(err.value)
    assert "no-such-bucket-ups" in msg and "does not exist" in msg and "aws s3 mb" in msg
    assert time.monotonic() - t0 < 30


def test_preflight_rejects_bad_credentials(s3_bucket, s3_auth_enforced, monkeypatch):
    preflight(f"s3://{s3_bucket}/exp")  # the valid key passes with auth enforced
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG1")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    with pytest.raises(StorageError) as err:
        preflight(f"s3://{s3_bucket}/exp")
    msg = str(err.value)
    assert "credentials were rejected" in msg and "InvalidAccessKeyId" in msg
    assert "IamInstanceProfile" in msg  # names the fix


def test_preflight_rejects_unreachable_endpoint(s3_env, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    with pytest.raises(StorageError, match="unreachable"):
        preflight("s3://some-bucket/exp")
    assert time.monotonic() - t0 < 30


@pytest.mark.parametrize("uri, fragment", [
    ("s3://", "no bucket"),
    ("s3://Bad_Bucket/x", "not a valid S3 bucket name"),
    ("gs://bucket/x", "not supported"),
    # boto3 took it: pyarrow refused it after the data, the baselines and ray.init, with a traceback
    ("s3://bucket/a//b", r"an empty folder name \('//'\) in the prefix\. Fix: s3://bucket/a/b"),
    # boto3 (preflight, the published leaderboard and report) kept x/../y as the key; pyarrow (Tune) wrote y/
    ("s3://bucket/x/../y", r"'\.' or '\.\.' in the prefix.*Fix: s3://bucket/y$"),
    ("s3://bucket/./sweeps/", r"'\.' or '\.\.' in the prefix.*Fix: s3://bucket/sweeps$"),
])
def test_bad_uris_fail_before_network(uri, fragment):
    with pytest.raises(StorageError, match=fragment):
        preflight(uri)


@pytest.mark.parametrize("uri, fix", [("S3://bucket/x", "s3://bucket/x"), ("s3a://bucket/x", "s3://bucket/x"),
                                      ("s3:/bucket/x", "s3://bucket/x"),
                                      ("gs://bucket/x", "use a local folder or s3://<bucket>/<prefix>")])
def test_a_mistyped_scheme_is_not_taken_for_a_local_folder(uri, fix, tmp_path, monkeypatch):
    """The sweep made a local folder './S3:/bucket/x' and stored the sweep there."""
    from ups.tune.prepare import resolve_storage_path

    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match=rf"is not supported\. Fix: {re.escape(fix)}"):
        resolve_storage_path(uri)
    assert not any(tmp_path.iterdir())


def test_preflight_local(tmp_path):
    preflight(tmp_path / "new" / "deeper")  # not yet created: the nearest parent is writable
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StorageError, match="is a file"):
        preflight(blocker / "sub")


def test_resolve_local_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path, fs = resolve_storage("runs/ray")
    assert fs is None and path == str(tmp_path / "runs" / "ray")
    assert resolve_storage(f"file://{tmp_path}")[0] == str(tmp_path)


def test_resolve_s3_returns_schemeless_path_and_working_fs(s3_client, s3_bucket):
    import pyarrow.fs as pafs

    path, fs = resolve_storage(f"s3://{s3_bucket}/sweeps/a/")
    assert path == f"{s3_bucket}/sweeps/a"
    assert isinstance(fs, pafs.S3FileSystem)
    with fs.open_output_stream(f"{path}/probe.txt") as f:
        f.write(b"hello")
    body = s3_client.get_object(Bucket=s3_bucket, Key="sweeps/a/probe.txt")["Body"].read()
    assert body == b"hello"


def test_parse_s3_uri():
    loc = parse_s3_uri("s3://bucket-1/a/b/")
    assert (loc.bucket, loc.prefix, loc.fs_path, loc.key("c")) == ("bucket-1", "a/b", "bucket-1/a/b", "a/b/c")


def test_a_refused_new_sweep_leaves_nothing_on_s3_and_an_interrupted_one_its_record(s3_client, s3_bucket):
    """A new sweep writes its folder and record before its data (ups.tune.sweep_record.provisional_folder), so
    resume=true finds a sweep stopped there; on S3 too, a refusal before Tune built it removes them again."""
    from ups.config import ConfigError
    from ups.tune.sweep_record import provisional_folder, read_record

    storage, fs = resolve_storage(f"s3://{s3_bucket}/sweeps")

    def keys() -> list[str]:  # the objects under the sweep folders (pyarrow's create_dir adds "…/" markers)
        found = s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="sweeps/round_a-").get("Contents", [])
        return sorted(o["Key"] for o in found if not o["Key"].endswith("/"))

    with pytest.raises(ConfigError):
        with provisional_folder(storage, fs, "round_a-1", {"round": "round_a"}, new=True):
            assert keys() == ["sweeps/round_a-1/ups_sweep.json"]
            raise ConfigError("data.path: not a PDEBench file")
    assert s3_client.list_objects_v2(Bucket=s3_bucket, Prefix="sweeps/round_a-1").get("KeyCount") == 0
    with pytest.raises(KeyboardInterrupt):
        with provisional_folder(storage, fs, "round_a-2", {"round": "round_a"}, new=True):
            raise KeyboardInterrupt
    assert keys() == ["sweeps/round_a-2/ups_sweep.json"] and read_record(storage, fs, "round_a-2") == {"round": "round_a"}


@pytest.mark.parametrize("uri", ["s3://ab/x", "s3://my..bucket/x"])
def test_bucket_names_s3_refuses_fail_before_network(uri: str) -> None:
    """S3 bucket names have 3-63 characters and no '..': a 2-letter or '..' name fails at once, not at Tune's write."""
    with pytest.raises(StorageError, match="not a valid S3 bucket name"):
        parse_s3_uri(uri)


def test_s3_location_forms() -> None:
    """The URI (in every preflight message), the pyarrow path and object keys of one location, with and without a
    prefix: a wrong '/' here sends the sweep's files and the messages naming them to different places."""
    loc = parse_s3_uri("s3://abc/sweeps/a/")
    assert (loc.uri, loc.fs_path, loc.key("reports", "x.html")) == ("s3://abc/sweeps/a", "abc/sweeps/a",
                                                                      "sweeps/a/reports/x.html")
    bare = parse_s3_uri("s3://abc")
    assert (bare.prefix, bare.uri, bare.fs_path, bare.key("leaderboard.csv")) == ("", "s3://abc", "abc",
                                                                                 "leaderboard.csv")


def test_an_empty_storage_path_is_refused(tmp_path, monkeypatch) -> None:
    """'' would resolve to the current folder and the sweep would write its state there."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StorageError, match="storage_path is empty"):
        resolve_storage("")


def test_the_s3_specific_endpoint_wins_over_the_generic_one(s3_bucket, monkeypatch) -> None:
    """botocore's order: AWS_ENDPOINT_URL_S3 before AWS_ENDPOINT_URL; here the generic one is a dead port, so
    preflight passes only if the S3 one (the moto server) is used."""
    import os

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", os.environ["AWS_ENDPOINT_URL"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{dead}")
    preflight(f"s3://{s3_bucket}/exp")


def _pickled_state(fs: object) -> dict:
    """What a pyarrow S3FileSystem carries when pickled to every trial (its reconstruct arguments)."""
    return fs.__reduce__()[1][0]  # type: ignore[attr-defined]


def test_the_filesystem_pickled_to_workers_carries_endpoint_region_and_keys(monkeypatch) -> None:
    """With an endpoint override, workers (no instance profile, no env) get the driver's endpoint, scheme, region
    (AWS_REGION before AWS_DEFAULT_REGION) and keys; an endpoint without a scheme is https."""
    from ups.cloud.storage import s3_filesystem

    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio.local:9000/")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "KEYID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "SECRET")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "TOKEN")
    state = _pickled_state(s3_filesystem())
    assert (state["scheme"], state["endpoint_override"], state["region"]) == ("http", "minio.local:9000", "eu-west-1")
    assert (state["access_key"], state["secret_key"], state["session_token"]) == ("KEYID", "SECRET", "TOKEN")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "minio.local:9000")
    assert _pickled_state(s3_filesystem())["scheme"] == "https"


def test_preflight_writes_its_probe_under_the_prefix(s3_env, s3_bucket, s3_auth_enforced, monkeypatch) -> None:
    """An identity allowed to write only under the sweep's prefix (the usual IAM policy) passes preflight: the write
    probe goes to <prefix>/.ups-preflight-…, not the bucket root, which it may not write."""
    import json

    import boto3

    admin_id, admin_secret = s3_auth_enforced
    iam = boto3.session.Session(aws_access_key_id=admin_id, aws_secret_access_key=admin_secret).client(
        "iam", endpoint_url=s3_env.endpoint, region_name="us-east-1")
    user = f"ups-scoped-{s3_bucket[-8:]}"
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:ListBucket", "s3:HeadBucket"],  # moto names HEAD of a bucket so
         "Resource": f"arn:aws:s3:::{s3_bucket}"},
        {"Effect": "Allow", "Action": ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
         "Resource": f"arn:aws:s3:::{s3_bucket}/sweeps/*"}]}
    iam.put_user_policy(UserName=user, PolicyName="sweeps-only", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
    preflight(f"s3://{s3_bucket}/sweeps")
    with pytest.raises(StorageError, match="access denied"):  # the policy bites: outside the prefix is refused
        preflight(f"s3://{s3_bucket}/elsewhere")
