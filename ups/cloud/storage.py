"""Where Tune keeps experiment state, results and checkpoints: a local folder or ``s3://bucket/prefix``.

Two functions serve the sweep engine (``ups/tune``):

* ``preflight(storage_path)`` checks, in seconds and before any trial starts, that the location is
  usable: a local folder is writable; an S3 bucket exists, the credentials are valid and may write
  under the prefix, and the endpoint answers.  Problems raise ``StorageError`` (a ``ValueError``)
  naming the path and the fix.
* ``resolve_storage(storage_path)`` returns what to pass to
  ``RunConfig(storage_path=…, storage_filesystem=…)``: ``(absolute_dir, None)`` for local folders and
  ``("bucket/prefix", pyarrow.fs.S3FileSystem)`` for S3 (Ray 2.60: with a custom filesystem the
  path has no scheme).  ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` select an S3-compatible server
  (MinIO, moto); the filesystem is pickled to every trial, so workers use the same endpoint.

Credentials: on AWS the nodes use the IAM instance profile from ``cluster.yaml`` (no keys anywhere).
Only when an endpoint override is set (a non-AWS server whose workers have no instance profile) are
the keys from the driver's environment handed to the filesystem explicitly.
"""
from __future__ import annotations

import functools
import os
import re
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ups.config import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow.fs

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
PREFLIGHT_CONNECT_TIMEOUT_S = 3.0
PREFLIGHT_READ_TIMEOUT_S = 5.0
_CRED_FIX = (
    "On the cluster attach the IAM instance profile (cluster.yaml: IamInstanceProfile); locally set "
    "AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY for an identity with s3:ListBucket, "
    "s3:GetObject, s3:PutObject and s3:DeleteObject on the bucket."
)


class StorageError(ConfigError):
    """The storage location cannot be used; the message names the path and the fix.

    A ``ValueError`` (through ``ConfigError``), so ``ups <cmd>`` prints it cleanly with exit code 2.
    """


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # no leading/trailing slash; may be ""

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    @property
    def fs_path(self) -> str:
        """``bucket/prefix``: the path form a pyarrow S3FileSystem takes."""
        return f"{self.bucket}/{self.prefix}" if self.prefix else self.bucket

    def key(self, *parts: str) -> str:
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))


def is_s3(path: str | os.PathLike[str]) -> bool:
    return str(path).startswith("s3://")


def parse_s3_uri(uri: str) -> S3Location:
    """``s3://bucket/a/b`` → ``S3Location("bucket", "a/b")``; bad URIs raise StorageError."""
    if not is_s3(uri):
        raise StorageError(f"storage_path '{uri}': not an S3 URI. Fix: write s3://<bucket>/<prefix>.")
    rest = uri[len("s3://"):]
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise StorageError(f"storage_path '{uri}': no bucket name. Fix: write s3://<bucket>/<prefix>.")
    if not BUCKET_RE.match(bucket) or ".." in bucket:
        raise StorageError(
            f"storage_path '{uri}': '{bucket}' is not a valid S3 bucket name (3-63 characters: "
            "lower-case letters, digits, '.' and '-'). Fix: use the bucket's exact name."
        )
    if "//" in prefix.strip("/"):  # boto3 takes the key; pyarrow refused it only after the data and baselines
        raise StorageError(f"storage_path '{uri}': an empty folder name ('//') in the prefix. Fix: "
                           f"s3://{bucket}/{'/'.join(p for p in prefix.split('/') if p)}")
    parts = prefix.strip("/").split("/")
    if "." in parts or ".." in parts:  # boto3 writes the key as given; Tune's pyarrow filesystem resolves it
        kept: list[str] = []  # (s3://b/x/../y: the sweep state went to y/, the leaderboard and report to x/../y/)
        for part in parts:
            if part == "..":
                kept = kept[:-1]
            elif part != ".":
                kept.append(part)
        raise StorageError(f"storage_path '{uri}': '.' or '..' in the prefix: S3 keeps them as part of the key while "
                           f"Tune's filesystem resolves them, so the sweep's state and its leaderboard/report would land "
                           f"under different prefixes. Fix: s3://{'/'.join([bucket, *kept])}")
    return S3Location(bucket, prefix.strip("/"))


def endpoint_url() -> str | None:
    """The S3 endpoint override from the environment (botocore's names), or None for AWS."""
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def region() -> str | None:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None


def s3_client(*, connect_timeout: float = 10.0, read_timeout: float = 60.0, max_attempts: int = 5) -> Any:
    """A boto3 S3 client honouring AWS_ENDPOINT_URL(_S3) and the default credential chain.

    Cached per (endpoint, region, credentials from the environment, timeouts): creating a boto3
    session costs ~0.3 s, and clients are thread-safe.
    """
    env = tuple(os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
                                            "AWS_PROFILE"))
    return _cached_client(endpoint_url(), region() or "us-east-1", env, connect_timeout, read_timeout, max_attempts)


@functools.lru_cache(maxsize=16)
def _cached_client(endpoint: str | None, region_name: str, _env: tuple[str | None, ...], connect_timeout: float,
                   read_timeout: float, max_attempts: int) -> Any:
    import boto3
    from botocore.config import Config

    cfg = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        signature_version="s3v4",
    )
    return boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=region_name, config=cfg)


# ------------------------------------------------------------------------------------ resolve
def resolve_storage(storage_path: str | os.PathLike[str]) -> tuple[str, "pyarrow.fs.FileSystem | None"]:
    """What to pass to ``RunConfig(storage_path=…, storage_filesystem=…)``.

    Local folder (or ``file://``) → ``(absolute path, None)``.
    ``s3://bucket/prefix`` → ``("bucket/prefix", S3FileSystem)`` with the endpoint override and
    region resolved once on the driver.
    """
    path = str(storage_path)
    if not path:
        raise StorageError("storage_path is empty. Fix: pass a local folder or s3://<bucket>/<prefix>.")
    if is_s3(path):
        loc = parse_s3_uri(path)
        return loc.fs_path, s3_filesystem(loc.bucket)
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif "://" in path or re.match(r"(?i)s3:/[^/]", path):
        scheme = path.split(":/", 1)[0]
        like = f"s3://{path.split(':/', 1)[1].lstrip('/')}" if scheme.lower() in ("s3", "s3a", "s3n") else None
        raise StorageError(
            f"storage_path '{path}': scheme '{scheme}://' is not supported. "
            + (f"Fix: {like}." if like else "Fix: use a local folder or s3://<bucket>/<prefix>.")
        )
    return str(Path(path).expanduser().resolve()), None


def s3_filesystem(bucket: str | None = None) -> "pyarrow.fs.S3FileSystem":
    """A pyarrow S3FileSystem for AWS (default credential chain) or the endpoint override."""
    import pyarrow.fs as pafs

    kwargs: dict[str, Any] = {
        "connect_timeout": 5.0,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=5),
    }
    override = endpoint_url()
    if override:
        scheme, _, hostport = override.partition("://")
        if not hostport:
            scheme, hostport = "https", override
        kwargs.update(endpoint_override=hostport.rstrip("/"), scheme=scheme, region=region() or "us-east-1")
        # A non-AWS server: workers have no instance profile, so hand over the driver's keys.
        if os.environ.get("AWS_ACCESS_KEY_ID") and os.environ.get("AWS_SECRET_ACCESS_KEY"):
            kwargs.update(access_key=os.environ["AWS_ACCESS_KEY_ID"], secret_key=os.environ["AWS_SECRET_ACCESS_KEY"])
            if os.environ.get("AWS_SESSION_TOKEN"):
                kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    else:
        reg = region()
        if bucket is not None:
            try:
                reg = pafs.resolve_s3_region(bucket)
            except Exception:  # no network / no permission: fall back to the configured region
                pass
        if reg:
            kwargs["region"] = reg
    return pafs.S3FileSystem(**kwargs)


# ----------------------------------------------------------------------------------- preflight
def preflight(storage_path: str | os.PathLike[str]) -> None:
    """Fail fast (seconds) with a clear StorageError if ``storage_path`` cannot hold the sweep."""
    path = str(storage_path)
    if is_s3(path):
        _preflight_s3(parse_s3_uri(path))
        return
    local, _ = resolve_storage(path)
    _preflight_local(Path(local), path)


def _preflight_local(target: Path, shown: str) -> None:
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise StorageError(
            f"storage_path '{shown}': '{probe}' is a file, not a folder. Fix: choose a folder path."
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(
            f"storage_path '{shown}': folder '{probe}' is not writable. "
            "Fix: choose a folder you can write to, or fix its permissions."
        )
    if target.exists():  # check the disk really takes writes (read-only mounts pass os.access)
        try:
            with tempfile.NamedTemporaryFile(dir=target, prefix=".ups-preflight-"):
                pass
        except OSError as e:
            raise StorageError(f"storage_path '{shown}': cannot write to '{target}' ({e}). "
                               "Fix: choose a writable folder.") from None


def _preflight_s3(loc: S3Location) -> None:
    from botocore.exceptions import (
        ClientError,
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )

    where = f"storage_path '{loc.uri}'"
    endpoint = endpoint_url() or "AWS S3"
    client = s3_client(connect_timeout=PREFLIGHT_CONNECT_TIMEOUT_S, read_timeout=PREFLIGHT_READ_TIMEOUT_S,
                       max_attempts=2)
    probe_key = loc.key(f".ups-preflight-{uuid.uuid4().hex}")

    def explain(e: Exception, action: str) -> StorageError:
        if isinstance(e, (NoCredentialsError, PartialCredentialsError)):
            return StorageError(f"{where}: no AWS credentials found ({e}). Fix: {_CRED_FIX}")
        if isinstance(e, (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError)):
            return StorageError(
                f"{where}: S3 endpoint {endpoint} is unreachable ({e}). Fix: check the network and "
                "AWS_ENDPOINT_URL (unset it for AWS; for a local server start it first)."
            )
        if isinstance(e, ClientError):
            code = str(e.response.get("Error", {}).get("Code", ""))
            msg = e.response.get("Error", {}).get("Message", "")
            if code in ("404", "NoSuchBucket"):
                return StorageError(
                    f"{where}: bucket '{loc.bucket}' does not exist at {endpoint}. "
                    f"Fix: create it (aws s3 mb s3://{loc.bucket}) or correct the bucket name."
                )
            if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken",
                        "InvalidClientTokenId", "TokenRefreshRequired"):
                return StorageError(
                    f"{where}: the AWS credentials were rejected ({code}: {msg}). Fix: {_CRED_FIX}"
                )
            if code in ("403", "AccessDenied", "AllAccessDisabled"):
                return StorageError(
                    f"{where}: access denied for {action} ({code}). Either the credentials are wrong or "
                    f"they lack permission on bucket '{loc.bucket}'. Fix: {_CRED_FIX}"
                )
            if code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed"):
                return StorageError(
                    f"{where}: bucket '{loc.bucket}' lives in another region ({msg}). "
                    "Fix: set AWS_REGION to the bucket's region."
                )
            return StorageError(f"{where}: S3 {action} failed ({code}: {msg}). Fix: check the bucket and credentials.")
        return StorageError(f"{where}: S3 {action} failed ({type(e).__name__}: {e}).")

    try:
        client.head_bucket(Bucket=loc.bucket)
    except ClientError as e:
        code = str(e.response.get("Error", {}).get("Code", ""))
        if code in ("403", "400"):
            # HEAD responses carry no error body: ask again with a call that says why.
            try:
                client.list_objects_v2(Bucket=loc.bucket, MaxKeys=1)
            except Exception as e2:
                raise explain(e2, "listing the bucket") from None
        raise explain(e, "checking the bucket") from None
    except Exception as e:
        raise explain(e, "checking the bucket") from None
    try:
        client.put_object(Bucket=loc.bucket, Key=probe_key, Body=b"ups preflight")
        client.delete_object(Bucket=loc.bucket, Key=probe_key)
    except Exception as e:
        raise explain(e, f"writing s3://{loc.bucket}/{probe_key}") from None
