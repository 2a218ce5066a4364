"""Checkpoint upload/restore speed: S3 (a local moto_server on 127.0.0.1) next to local disk.

Both sides go through the same code path Ray Tune uses to persist checkpoints
(``pyarrow.fs.copy_files`` with the filesystem from ``ups.cloud.storage.resolve_storage``), on a
real ``torch.save`` checkpoint folder.  Prints one JSON object, then a one-line summary.

    .venv/bin/python benchmarks/storage.py [--sizes-mb 8 64] [--repeats 3]

The S3/local ratio measures the S3 API overhead (HTTP, signing, multipart) on loopback; it is a lower
bound for real S3, where network bandwidth dominates.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ups.cloud.storage import resolve_storage  # noqa: E402


def start_moto(log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = Path(sys.executable).parent / "moto_server"
    fh = open(log, "wb")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=fh, stderr=fh,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"moto_server did not start; see {log}")


def make_checkpoint(folder: Path, size_mb: int) -> float:
    """A checkpoint folder like the trainer's: checkpoint.pt with weights + optimizer state."""
    folder.mkdir(parents=True, exist_ok=True)
    n = size_mb * 1024 * 1024 // 4 // 3  # weights, exp_avg, exp_avg_sq
    g = torch.Generator().manual_seed(0)
    state = {"model": {"w": torch.randn(n, generator=g)},
             "optimizer": {"exp_avg": torch.randn(n, generator=g), "exp_avg_sq": torch.rand(n, generator=g)},
             "epoch": 3, "config": {"latent": {"dim": 32}}}
    torch.save(state, folder / "checkpoint.pt")
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def timed_copy(src: str, dst: str, src_fs, dst_fs) -> float:
    import pyarrow.fs as pafs

    t0 = time.perf_counter()
    dst_fs.create_dir(dst, recursive=True)  # as Ray's StorageContext does before persisting
    pafs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes-mb", type=int, nargs="+", default=[8, 64])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    import boto3
    import pyarrow.fs as pafs

    work = Path(tempfile.mkdtemp(prefix="ups-bench-storage-"))
    proc, url = start_moto(work / "moto.log")
    try:
        os.environ.update(AWS_ENDPOINT_URL=url, AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                          AWS_DEFAULT_REGION="us-east-1", AWS_REGION="us-east-1", AWS_EC2_METADATA_DISABLED="true")
        boto3.client("s3", endpoint_url=url, region_name="us-east-1").create_bucket(Bucket="bench")
        s3_root, s3_fs = resolve_storage("s3://bench/ckpt")
        local_fs = pafs.LocalFileSystem()
        results = []
        for size in args.sizes_mb:
            src = work / f"src_{size}"
            mb = make_checkpoint(src, size)
            row: dict[str, float | int] = {"size_mb": round(mb, 2)}
            for target, fs, root in (("local", local_fs, str(work / "disk")), ("s3", s3_fs, s3_root)):
                ups, downs = [], []
                for r in range(args.repeats):
                    dst = f"{root}/{size}/{r}"
                    back = work / f"restore_{target}_{size}_{r}"
                    ups.append(timed_copy(str(src), dst, local_fs, fs))
                    downs.append(timed_copy(dst, str(back), fs, local_fs))
                    assert (back / "checkpoint.pt").stat().st_size == (src / "checkpoint.pt").stat().st_size
                    shutil.rmtree(back)
                row[f"{target}_upload_s_per_mb"] = statistics.median(ups) / mb
                row[f"{target}_restore_s_per_mb"] = statistics.median(downs) / mb
            row["upload_ratio_s3_vs_local"] = row["s3_upload_s_per_mb"] / row["local_upload_s_per_mb"]
            row["restore_ratio_s3_vs_local"] = row["s3_restore_s_per_mb"] / row["local_restore_s_per_mb"]
            results.append(row)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)
    out = {"benchmark": "checkpoint_storage", "baseline": "local disk (pyarrow LocalFileSystem)",
           "s3": "moto_server on 127.0.0.1 via resolve_storage()", "repeats": args.repeats,
           "cpu_count": os.cpu_count(), "results": results}
    print(json.dumps(out, indent=2))
    big = results[-1]
    print(f"checkpoint {big['size_mb']:.0f} MB: upload {big['s3_upload_s_per_mb'] * 1e3:.1f} ms/MB to S3(moto) vs "
          f"{big['local_upload_s_per_mb'] * 1e3:.2f} ms/MB local (x{big['upload_ratio_s3_vs_local']:.1f}); restore "
          f"{big['s3_restore_s_per_mb'] * 1e3:.1f} vs {big['local_restore_s_per_mb'] * 1e3:.2f} ms/MB "
          f"(x{big['restore_ratio_s3_vs_local']:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
