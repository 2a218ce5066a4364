"""``ups data`` — generate PDEBench-layout Burgers HDF5 files and inspect any such file.

    ups data generate nu=0.01 n=2000 resolution=1024 seed=2022 [--out FILE] [--threads N] [--workers N] [--device cuda]
    ups data info FILE [--json]

``generate`` takes keys of ``ups.config.DataCfg`` without the ``data.`` prefix; the file lands in the
content-addressed cache (``cache_dir=…``) and, with ``--out``, is also copied there atomically.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ups.config import ConfigError, DataCfg, is_local_path, load_config
from ups.outputs import atomic_path, make_writable_folder

DATA_KEYS = [f.name for f in dataclasses.fields(DataCfg)]


def parse_overrides(items: list[str]) -> list[str]:
    """``nu=0.01`` → ``data.nu=0.01``; unknown keys fail naming the nearest DataCfg key."""
    out = []
    for item in items:
        if "=" not in item:
            raise ConfigError(f"ups data generate: '{item}' is not key=value. Fix: e.g. nu=0.01 n=2000 resolution=1024")
        key, value = item.split("=", 1)
        key = key.strip().removeprefix("data.")
        if key == "path":
            raise ConfigError("ups data generate: 'path' names an existing file to load, not one to write. "
                              "Fix: use --out FILE to copy the generated file somewhere")
        if key not in DATA_KEYS:
            near = difflib.get_close_matches(key, DATA_KEYS, n=1, cutoff=0.4)
            hint = f" Did you mean '{near[0]}'?" if near else ""
            raise ConfigError(f"ups data generate: unknown key '{key}'.{hint} Valid keys: {', '.join(DATA_KEYS)}")
        out.append(f"data.{key}={value}")
    return out


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def check_out_path(out: Path) -> None:
    """``--out`` must be a file we can create: tried (folder and a probe file) before minutes of solving."""
    if out.exists() and out.is_dir():
        raise ConfigError(f"ups data generate: --out {out} is a folder. Fix: give a file name, e.g. {out}/burgers.hdf5")
    try:
        make_writable_folder(out.parent)
    except OSError as e:
        raise ConfigError(f"ups data generate: --out {out}: cannot write in {out.parent} ({e.strerror or e}). Fix: "
                          f"choose a path in a folder you can write, e.g. ./data/{out.name}") from None


def cmd_generate(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ups data generate", description="generate (or find cached) Burgers data")
    p.add_argument("overrides", nargs="*", help="DataCfg keys: nu=0.01 n=2000 resolution=1024 seed=2022 …")
    p.add_argument("--out", default=None, help="also copy the file here (atomic)")
    p.add_argument("--threads", type=int, default=None, help="torch threads for the solver")
    p.add_argument("--device", default="auto", help="cpu | cuda | auto (default: CUDA when available)")
    p.add_argument("--workers", type=int, default=None,
                   help="CPU only: solver processes over disjoint batches (default: one per core; 1: in-process)")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    if a.threads is not None and a.threads < 1:  # torch's set_num_threads raised a RuntimeError traceback
        p.error(f"--threads {a.threads}: must be ≥ 1 (torch threads for the solver). Fix: --threads 2, or leave it out")
    cfg = load_config(parse_overrides(a.overrides))
    if "torch" not in sys.modules:  # entry point: OpenMP threads wait passively (spinning is 10×+ slower when busy)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from ups.data.cache import cache_file, dataset_path

    if a.out is not None:
        if not is_local_path(a.out):  # Path("s3://b/x.h5") is the local ./s3:/b/x.h5, where the copy went
            raise ConfigError(f"ups data generate: --out {a.out} is a URI; --out copies the file to a local path. "
                              f"Fix: --out <local file>, then `aws s3 cp` it; to share one file through S3 between "
                              f"nodes, ups.cloud.dataset_sync (docs/CLUSTER.md)")
        a.out = Path(a.out)
        check_out_path(a.out)
    existed = cache_file(cfg.data).exists()
    path = dataset_path(cfg.data, progress=not a.no_progress, device=a.device, num_threads=a.threads,
                        workers=a.workers)
    print(f"{'cached' if existed else 'generated'}: {path}")
    if a.out is not None:
        _copy_atomic(path, a.out)
        print(f"copied to: {a.out}")
    return 0


def file_summary(path: Path, max_stats_samples: int = 64) -> dict[str, Any]:
    from ups.data.hdf5 import inspect_pdebench, read_pdebench

    info = inspect_pdebench(path)
    sample = read_pdebench(path, max_samples=max_stats_samples).tensor  # (n, T, X)
    dt = float(info.t[1] - info.t[0]) if info.t.size > 1 else 0.0
    return {
        "path": str(info.path), "size_mb": round(info.size_bytes / 2**20, 2),
        "tensor": {"shape": list(info.shape), "dtype": info.dtype},
        "x": {"points": int(info.x.size), "first": float(info.x[0]), "last": float(info.x[-1])},
        "t": {"frames": int(info.shape[1]), "entries": info.t_entries, "first": float(info.t[0]),
              "last": float(info.t[-1]), "dt": dt},
        "nu": info.nu,
        "stats_first_samples": {"n": int(sample.shape[0]), "min": float(sample.min()), "max": float(sample.max()),
                                "mean": float(sample.mean()), "finite": bool(np.isfinite(sample).all())},
        "attrs": {k: v for k, v in info.attrs.items() if k != "generation_key"},
    }


def cmd_info(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="ups data info", description="shape / coordinates / attributes of an HDF5 file")
    p.add_argument("file", type=Path)
    p.add_argument("--json", action="store_true", help="print JSON")
    a = p.parse_args(argv)
    if not a.file.expanduser().exists():  # the loader's own message offers data.path, which info does not take
        raise ConfigError(f"{a.file}: file not found. Fix: the path of an HDF5 file (a PDEBench "
                          "1D_Burgers_Sols_Nu*.hdf5, or one `ups data generate … --out <file>` wrote)")
    s = file_summary(a.file)
    if a.json:
        print(json.dumps(s, indent=2, default=str))
        return 0
    print(f"{s['path']}  ({s['size_mb']} MB)")
    print(f"  tensor        {tuple(s['tensor']['shape'])} {s['tensor']['dtype']}  (N, T, X)")
    print(f"  x-coordinate  {s['x']['points']} points, {s['x']['first']:.6g} … {s['x']['last']:.6g}")
    t = s["t"]
    print(f"  t-coordinate  {t['entries']} entries for {t['frames']} frames, {t['first']:.4g} … {t['last']:.4g}, dt={t['dt']:.4g}")
    print(f"  nu            {s['nu']}")
    st = s["stats_first_samples"]
    print(f"  values        first {st['n']} samples: min {st['min']:.4g} max {st['max']:.4g} mean {st['mean']:.4g}"
          f"{'' if st['finite'] else '  (NON-FINITE VALUES)'}")
    for k, v in s["attrs"].items():
        print(f"  @{k:<13} {v}")
    return 0


USAGE = "usage: ups data {generate,info} …\n  generate nu=0.01 n=2000 resolution=1024 seed=2022 [--out FILE]\n  info FILE [--json]"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd == "generate":
        return cmd_generate(rest)
    if cmd == "info":
        return cmd_info(rest)
    print(f"ups data: unknown subcommand '{cmd}'.\n{USAGE}", file=sys.stderr)
    return 2
