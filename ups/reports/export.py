"""``ups export champion`` — TorchScript + ONNX of the champion's forecaster, parity, latency, model card.

    ups export champion [checkpoint=<ckpt.pt|dir>] [champion=reports/champion.json]
                        [leaderboard=reports/leaderboard.csv] [out=reports/export]
                        [batch_sizes=1,2,4,8,16,32,64] [threads=2] [repeats=20] [tolerance=1e-5]
                        [n_steps=<protocol horizon>] [onnx_exporter=legacy|dynamo]

Two graphs are exported, both **without TTC** (TTC is a search over diffusion samples scored by physics
rewards; it stays in PyTorch):
- ``step``: context (B, Tc, X) → next frame (B, X) = decode(step(encode(context)));
- ``rollout``: context (B, Tc, X) → (B, n_steps, X), the fixed-length latent rollout of
  ``UPSModel.rollout`` (n_steps = the protocol's predicted frames, 31 by default).
Each as TorchScript (``torch.jit.trace``) and ONNX opset 17 (``torch.onnx.export`` with a dynamic batch
axis; the legacy TorchScript-based exporter by default, ``onnx_exporter=dynamo`` for the torch.export one,
which is much slower on the unrolled rollout; the card says which was used).
PyTorch eager, TorchScript and ONNX Runtime outputs must agree to ≤ ``tolerance`` (max abs) on a test
batch (the protocol's test split when its data is on disk, else PDEBench-family initial conditions, named
in the card) at batch sizes 1, 8 and the largest benchmarked; latency/throughput are measured for batch
sizes 1–64 on CPU (and CUDA when present). Output: ``<out>/<run>/`` with the exports, ``parity.json``,
``latency.json``, ``export.json`` and ``MODEL_CARD.md``, written to a temp folder first and then moved in
file by file (other files in the folder are never touched).
Exit code 1 (and a card that says so) when parity fails.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import math
import os
import platform
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ups.leaderboard import EVAL_COLUMNS
from ups.outputs import fresh_temp_folder
from ups.reports.model_card import render_model_card
from ups.reports.sources import (DEFAULT_CHAMPION, DEFAULT_LEADERBOARD, ReportError, baselines_on, cell_text,
                                 champion_checkpoint, checkpoint_file, checkpoint_name, load_leaderboard,
                                 parse_kv, resolve_checkpoint)

ARGS = {"checkpoint": "path to checkpoint.pt or its folder", "champion": "path to champion.json",
        "leaderboard": "path to leaderboard.csv", "out": "output folder", "batch_sizes": "comma list, e.g. 1,8,64",
        "threads": "intra-op threads", "repeats": "timed calls per measurement", "tolerance": "max abs diff",
        "n_steps": "rollout length (default: protocol horizon)", "onnx_exporter": "legacy|dynamo"}
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64)
OWNED_FILES = {"step.torchscript.pt", "step.onnx", "rollout.torchscript.pt", "rollout.onnx", "parity.json",
               "latency.json", "export.json", "MODEL_CARD.md"}


# ------------------------------------------------------------------------------------ wrappers
class StepForecaster(nn.Module):
    """One autoregressive step without TTC: context (B, Tc, X) → next frame (B, X)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        z = self.model.encode(context)  # (B, N, D)
        z = self.model.step(z)  # (B, N, D)
        return self.model.decode(z)  # (B, X)


class RolloutForecaster(nn.Module):
    """Fixed-length rollout without TTC: context (B, Tc, X) → (B, n_steps, X)."""

    def __init__(self, model: nn.Module, n_steps: int) -> None:
        super().__init__()
        self.model, self.n_steps = model, int(n_steps)

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.model.rollout(context, self.n_steps)  # (B, n_steps, X)


# ------------------------------------------------------------------------------------- export
def export_torchscript(module: nn.Module, example: torch.Tensor, path: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings / torch.jit deprecation notices
        traced = torch.jit.trace(module, (example,), check_trace=False)  # parity is checked below
        traced.save(str(path))
    return path


def export_onnx(module: nn.Module, example: torch.Tensor, path: Path, exporter: str = "legacy") -> str:
    """ONNX (opset 17) with a dynamic batch axis; returns a description of the exporter used.

    ``legacy``: the TorchScript-based exporter (``dynamo=False``): seconds even for the unrolled
    rollout. ``dynamo``: the torch.export-based exporter; on this model it took ~15 s for one step and
    minutes for a 37-step rollout on 2 busy cores, so it is opt-in; it falls back to legacy on failure.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notice, tracer warnings
        note = ""
        if exporter == "dynamo":
            try:
                batch = torch.export.Dim("batch", min=1, max=4096)
                torch.onnx.export(module, (example,), str(path), input_names=["context"],
                                  output_names=["prediction"], dynamic_shapes={"context": {0: batch}},
                                  dynamo=True, external_data=False, verbose=False)
                return "torch.onnx dynamo exporter"
            except Exception as e:  # ops the dynamo exporter cannot handle: fall back, and say so
                note = f" (dynamo exporter failed: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})"
        torch.onnx.export(module, (example,), str(path), input_names=["context"], output_names=["prediction"],
                          dynamic_axes={"context": {0: "batch"}, "prediction": {0: "batch"}}, dynamo=False,
                          opset_version=17)
        return "torch.onnx legacy TorchScript-based exporter" + note


def _ort_session(path: Path, threads: int, providers: list[str] | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=so, providers=providers or ["CPUExecutionProvider"])


def parity(eager: nn.Module, ts: Any, ort_sess: Any, batches: dict[int, torch.Tensor], artifact: str,
           tolerance: float, reference64: nn.Module | None = None) -> list[dict[str, Any]]:
    """Max abs / rel differences of TorchScript and ONNX Runtime vs eager PyTorch, per batch size.

    ``reference64`` (the same forecaster in float64) gives the float32 round-off floor of the eager
    output itself, max |eager_f32 − eager_f64|. A one-step graph must agree to ``tolerance``. A long
    autoregressive rollout amplifies round-off (PyTorch alone differs between batch sizes by about the
    floor), so a rollout row also passes when max |Δ| ≤ 10 × floor; the card shows both numbers.
    """
    rows = []
    for b, x in batches.items():
        with torch.no_grad():
            ref = eager(x).numpy()
            outs = {"torchscript": ts(x).numpy(), "onnxruntime": ort_sess.run(None, {"context": x.numpy()})[0]}
            floor = 0.0
            if reference64 is not None:
                floor = float((reference64(x.double()).numpy() - ref.astype(np.float64)).__abs__().max())
        for runtime, y in outs.items():
            if y.shape != ref.shape:
                rows.append({"artifact": artifact, "runtime": runtime, "batch": b, "max_abs": float("inf"),
                             "max_rel": float("inf"), "f32_floor": floor, "ok": False,
                             "criterion": f"shape {y.shape} != {ref.shape}"})
                continue
            diff = np.abs(y.astype(np.float64) - ref.astype(np.float64))
            max_abs = float(diff.max()) if diff.size else 0.0
            max_rel = float((diff / (np.abs(ref) + 1e-6)).max()) if diff.size else 0.0
            finite = bool(np.isfinite(y).all() and np.isfinite(ref).all())
            if max_abs <= tolerance:
                ok, crit = finite, f"≤ {tolerance:g}"
            elif artifact == "rollout" and max_abs <= 10 * floor:
                ok, crit = finite, f"≤ 10 × float32 floor ({10 * floor:.1e})"
            else:
                ok, crit = False, f"> {tolerance:g}" + (" and > 10 × floor" if artifact == "rollout" else "")
            rows.append({"artifact": artifact, "runtime": runtime, "batch": b, "max_abs": max_abs,
                         "max_rel": max_rel, "f32_floor": floor, "ok": ok, "criterion": crit})
    return rows


def time_call(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] = lambda: None) -> list[float]:
    """Seconds per call: 2 warm-up calls, then ``repeats`` timed ones (stops early after ~1 s)."""
    for _ in range(2):
        fn()
    sync()
    times: list[float] = []
    budget = time.perf_counter() + 1.0
    while len(times) < repeats and (len(times) < 3 or time.perf_counter() < budget):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def benchmark(runners: dict[tuple[str, str, str], Callable[[torch.Tensor], Any]], make_input: Callable[[int, str], torch.Tensor],
              batch_sizes: list[int], repeats: int) -> list[dict[str, Any]]:
    """Median latency and throughput for each (artifact, runtime, device) runner and batch size."""
    rows = []
    for (artifact, runtime, device), run in runners.items():
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for b in batch_sizes:
            x = make_input(b, device)
            with torch.no_grad():
                times = time_call(lambda: run(x), repeats, sync)
            med = statistics.median(times)
            rows.append({"artifact": artifact, "runtime": runtime, "device": device, "batch": b,
                         "latency_ms": 1e3 * med, "p90_ms": 1e3 * float(np.percentile(times, 90)),
                         "throughput": b / med, "calls": len(times)})
    return rows


# ------------------------------------------------------------------------------------ inputs
def _load_model(ckpt: Path):
    from ups.config import ConfigError
    from ups.train.checkpoint import CheckpointError, load_checkpoint

    try:
        model, cfg, state = load_checkpoint(ckpt)
    except CheckpointError as e:
        raise ReportError(f"cannot export: {e}") from None
    except ConfigError as e:  # unknown keys / architecture options in the stored config
        raise ReportError(f"cannot export '{ckpt}': its stored config describes an architecture this version "
                          f"cannot build ({e}). Fix: export with the ups version that trained it, or retrain") from None
    from ups.models.ups_model import UPSModel

    if not isinstance(model, UPSModel):
        raise ReportError(f"cannot export '{ckpt}': unknown architecture {type(model).__name__} "
                          f"(only UPSModel forecasters are supported)")
    return model.eval(), cfg, state


def _test_batch(cfg: Any, grid_size: int, n: int) -> tuple[torch.Tensor, str, int]:
    """(context (n, Tc, X), description, n_steps) from the test split, else synthetic PDEBench ICs."""
    from ups.reports.html import _protocol_data_if_available
    from ups.reports.plots import PlotSkipped

    k = int(cfg.data.initial_step)
    T = (int(cfg.data.frames) - 1) // int(cfg.data.reduced_resolution_t) + 1
    try:
        data = _protocol_data_if_available(cfg)
        test = data.test
        if len(test) == 0:
            raise PlotSkipped("empty test split")
        if test.shape[-1] != grid_size:
            raise PlotSkipped(f"test grid {test.shape[-1]} != model grid {grid_size}")
        idx = torch.arange(n) % len(test)
        what = (f"{n} trajectories of the test split ({data.source})" if n <= len(test) else
                f"{n} contexts from the {len(test)} trajectories of the test split ({data.source}), each used "
                f"{n // len(test)}–{-(-n // len(test))} times")
        return test[idx, :k].contiguous().float(), what, int(test.shape[1]) - k
    except (PlotSkipped, ImportError, FileNotFoundError, ValueError) as e:
        from ups.data.initial import init_multi

        X = int(grid_size)
        x = (np.arange(X) + 0.5) / X
        u0 = init_multi(n * k, x, seed=1234)  # (n·k, X) PDEBench-family fields
        ctx = torch.from_numpy(np.asarray(u0, dtype=np.float32)).reshape(n, k, X)
        return ctx, (f"{n} synthetic contexts of PDEBench-family initial conditions (seed 1234) — test data "
                     f"not on disk: {e}"), T - k


def _metrics_for(run_id: str | None, ckpt: str, champion: dict[str, Any], lb_path: Path) -> tuple[dict, dict, str, dict]:
    """(metrics, gate info, source, baselines) from champion.json and the leaderboard row."""
    metrics = {k: champion.get(k) for k in EVAL_COLUMNS if champion.get(k) is not None}
    gates = {k: champion.get(k) for k in ("gate_pass", "gate_reasons") if champion.get(k) is not None}
    source = "champion.json" if metrics else ""
    baselines: dict[str, float] = {}
    data_hash = str(champion.get("data_hash") or "")
    if lb_path.exists():
        lb = load_leaderboard(lb_path)
        t = lb[lb["kind"] != "baseline"]
        ck = t["checkpoint"].astype(str)
        # the full-eval row holds the test metrics, the trial row the gates; fill from both in order
        candidates = [t[t["run_id"].astype(str) == str(rid)] for rid in (champion.get("full_eval_run_id"), run_id) if rid]
        candidates.append(t[(ck == ckpt) | (ck == ckpt.rsplit("/", 1)[0])])  # the file or its checkpoint_N folder
        used = []
        for row in candidates:
            if row.empty:
                continue
            r = row.iloc[-1]
            if r["run_id"] in used:
                continue
            used.append(str(r["run_id"]))
            data_hash = data_hash or cell_text(r.get("data_hash"))
            for k in EVAL_COLUMNS:
                v = r.get(k)
                if k not in metrics and v is not None and not (isinstance(v, float) and math.isnan(v)):
                    metrics[k] = float(v)
            for k in ("gate_pass", "gate_reasons"):
                v = r.get(k)
                if k not in gates and v is not None and not (isinstance(v, float) and math.isnan(v)):
                    gates[k] = v
        if used:
            source = f"leaderboard {lb_path} rows {', '.join(used)}" + (" + champion.json" if source else "")
        baselines = baselines_on(lb, data_hash)  # the champion's own test data: another profile's baselines differ
    if not metrics and (own := _run_metrics(ckpt)):  # an `ups train` run's final checkpoint: its own metrics.json
        metrics, source = own
    return metrics, gates, source or "not recorded", baselines


def _run_metrics(ckpt: str) -> tuple[dict[str, float], str] | None:
    """(test metrics, source) from ``<run>/metrics.json`` when ``ckpt`` is the final checkpoint of an ``ups train``
    run folder (``<run>/checkpoints/final/checkpoint.pt``, whose figures that file's ``final`` holds), else None."""
    from ups.train.checkpoint import run_folder

    if ckpt.startswith("s3://"):
        return None
    path = Path(ckpt)
    run = run_folder(path)
    if run is None or path.parent.name != "final" or not (run / "metrics.json").is_file():
        return None
    try:
        final = json.loads((run / "metrics.json").read_text()).get("final") or {}
    except (OSError, ValueError, AttributeError):
        return None
    got = {k: float(v) for k in EVAL_COLUMNS if isinstance(v := final.get(k), (int, float)) and math.isfinite(v)}
    return (got, f"run metrics {run / 'metrics.json'}") if got else None


# --------------------------------------------------------------------------------------- main
def export_champion(ckpt: Path, out_root: Path, *, champion: dict[str, Any] | None = None,
                    leaderboard: Path = DEFAULT_LEADERBOARD, batch_sizes: list[int] | None = None,
                    threads: int = 2, repeats: int = 20, tolerance: float = 1e-5, n_steps: int | None = None,
                    onnx_exporter: str = "legacy", stored_as: str | None = None) -> dict[str, Any]:
    """Export, check parity, benchmark, write the model card; returns the export summary.  Torch's CPU threads are
    ``threads`` while it runs (the benchmark's), and the caller's again after.

    ``stored_as``: where the checkpoint lives when ``ckpt`` is a temporary download of it (an ``s3://`` URI):
    what the card and summary name, and what the leaderboard's checkpoint column is matched against."""
    from ups.data.cache import torch_threads

    batch_sizes = sorted(set(batch_sizes or DEFAULT_BATCHES))
    if any(b < 1 for b in batch_sizes):
        raise ReportError(f"batch_sizes={batch_sizes}: every batch size must be ≥ 1. Fix: batch_sizes=1,8,64")
    with torch_threads(threads):
        return _export(ckpt, out_root, champion=dict(champion or {}), leaderboard=leaderboard, batch_sizes=batch_sizes,
                       repeats=repeats, tolerance=tolerance, n_steps=n_steps, onnx_exporter=onnx_exporter,
                       stored_as=stored_as, threads=threads)


def _export(ckpt: Path, out_root: Path, *, champion: dict[str, Any], leaderboard: Path, batch_sizes: list[int],
            threads: int, repeats: int, tolerance: float, n_steps: int | None, onnx_exporter: str,
            stored_as: str | None) -> dict[str, Any]:
    model, cfg, state = _load_model(ckpt)
    from ups.config import to_dict
    from ups.models.ups_model import count_parameters

    run_id = champion.get("run_id") or state.get("run_id") or (cfg.run.run_id if cfg.run.run_id else None)
    where = stored_as.rstrip("/") if stored_as else str(ckpt)  # a string: Path() would fold s3:// to s3:/
    from ups.train.checkpoint import run_folder

    run = None if stored_as else run_folder(Path(ckpt).resolve())  # an `ups train` run: <run>/checkpoints/<name>/
    # an `ups train` run's checkpoint: <run id, else its folder>-<checkpoint> (two runs' exports both went to
    # export/final/, and one run's final and epoch exports to one folder)
    name = str((f"{run_id or run.name}-{checkpoint_name(where)}" if run else run_id or checkpoint_name(where))
               or "champion")
    if onnx_exporter not in ("legacy", "dynamo"):
        raise ReportError(f"onnx_exporter='{onnx_exporter}' is unknown. Fix: onnx_exporter=legacy or dynamo")
    ctx, batch_desc, protocol_steps = _test_batch(cfg, int(model.grid_size), max(8, max(batch_sizes)))
    if n_steps is not None and n_steps < 1:
        raise ReportError(f"n_steps={n_steps} must be ≥ 1. Fix: leave it out for the protocol horizon ({protocol_steps})")
    n_steps = int(n_steps or protocol_steps)
    X = ctx.shape[-1]
    step, roll = StepForecaster(model).eval(), RolloutForecaster(model, n_steps).eval()

    out_root.mkdir(parents=True, exist_ok=True)
    final = out_root / _safe(name)
    tmp = fresh_temp_folder(out_root, _safe(name))
    try:
        example = ctx[:2]
        artifacts, exporters, parity_rows, ts_mods, ort_sess = [], {}, [], {}, {}
        check = {b: ctx[:b] for b in sorted({1, 8, max(batch_sizes)}) if b <= len(ctx)}
        model64 = copy.deepcopy(model).double().eval()
        ref64 = {"step": StepForecaster(model64).eval(), "rollout": RolloutForecaster(model64, n_steps).eval()}
        for art, mod, out_desc in (("step", step, f"(B, {X})"), ("rollout", roll, f"(B, {n_steps}, {X})")):
            ts_path = export_torchscript(mod, example, tmp / f"{art}.torchscript.pt")
            onnx_path = tmp / f"{art}.onnx"
            exporters[art] = export_onnx(mod, example, onnx_path, onnx_exporter)
            ts_mods[art] = torch.jit.load(str(ts_path))
            ort_sess[art] = _ort_session(onnx_path, threads)
            parity_rows += parity(mod, ts_mods[art], ort_sess[art], check, art, tolerance, ref64[art])
            in_desc = f"context (B, {ctx.shape[1]}, {X}) float32"
            artifacts += [{"file": ts_path.name, "format": "TorchScript (traced)", "input": in_desc, "output": out_desc,
                           "bytes": ts_path.stat().st_size},
                          {"file": onnx_path.name, "format": f"ONNX opset 17 ({exporters[art].split(' (')[0].removeprefix('torch.onnx ')})", "input": in_desc,
                           "output": out_desc, "bytes": onnx_path.stat().st_size}]
        ok = all(r["ok"] for r in parity_rows)
        del model64, ref64

        runners: dict[tuple[str, str, str], Callable[[torch.Tensor], Any]] = {}
        for art, mod in (("step", step), ("rollout", roll)):
            runners[(art, "pytorch eager", "cpu")] = mod
            runners[(art, "torchscript", "cpu")] = ts_mods[art]
            runners[(art, "onnxruntime", "cpu")] = (lambda s: lambda x: s.run(None, {"context": x.numpy()}))(ort_sess[art])
        device_note = ""
        if torch.cuda.is_available():
            for art, mod in (("step", step), ("rollout", roll)):
                gm = (StepForecaster(model) if art == "step" else RolloutForecaster(model, n_steps))
                gm = gm.to("cuda").eval()
                runners[(art, "pytorch eager", "cuda")] = gm
            device_note = f"GPU: {torch.cuda.get_device_name(0)}."

        def make_input(b: int, device: str) -> torch.Tensor:
            x = ctx[torch.arange(b) % len(ctx)]
            return x.to(device)

        latency = benchmark(runners, make_input, batch_sizes, repeats)
        model.to("cpu")
        env = {"device": f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} logical cores)",
               "torch": torch.__version__, "onnxruntime": _ort_version(), "threads": threads, "repeats": repeats,
               "note": device_note}
        info = {
            "name": name, "run_id": run_id, "checkpoint": where, "checkpoint_bytes": ckpt.stat().st_size,
            "params": count_parameters(model), "export_params": sum(p.numel() for n, p in model.named_parameters()
                                                                    if n.split(".")[0] in ("encoder", "operator", "decoder")),
            "config": to_dict(cfg), "grid_size": X, "n_steps": n_steps, "stage": state.get("stage"),
            "epoch": state.get("epoch"), "data_hash": state.get("data_hash") or None,
            "artifacts": artifacts, "exporters": exporters, "parity": parity_rows, "parity_ok": ok,
            "parity_batch": batch_desc, "tolerance": tolerance, "latency": latency, "environment": env,
            "source": champion.get("_source", "champion"),
            "generated": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        }
        metrics, gates, msource, baselines = _metrics_for(run_id, where, champion, leaderboard)
        info.update({"metrics": metrics, "metrics_source": msource, "baselines": baselines, **gates})
        (tmp / "parity.json").write_text(json.dumps(parity_rows, indent=2))
        (tmp / "latency.json").write_text(json.dumps({"environment": env, "rows": latency}, indent=2))
        (tmp / "export.json").write_text(json.dumps({k: v for k, v in info.items() if k not in ("latency",)},
                                                    indent=2, default=str))
        (tmp / "MODEL_CARD.md").write_text(render_model_card(info), encoding="utf-8")
        from ups.reports.html import publish

        publish(tmp, final, OWNED_FILES, last="MODEL_CARD.md")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    info["out_dir"] = str(final)
    return info


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:80] or "champion"


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def main(argv: list[str]) -> int:
    if not argv or argv[0] == "help" or any(a in ("-h", "--help") for a in argv):  # ups export champion --help too
        print(__doc__)
        return 0
    if argv[0] != "champion":
        raise ReportError(f"ups export: unknown target '{argv[0]}'. Fix: ups export champion [checkpoint=…]")
    args = parse_kv(argv[1:], ARGS, "ups export champion", remote_ok=frozenset({"champion"}))  # read, not written
    lb_path = Path(args.get("leaderboard", DEFAULT_LEADERBOARD))
    try:
        batches = [int(b) for b in args.get("batch_sizes", ",".join(map(str, DEFAULT_BATCHES))).split(",") if b.strip()]
        threads, repeats = int(args.get("threads", 2)), int(args.get("repeats", 20))
        tolerance = float(args.get("tolerance", 1e-5))
        n_steps = int(args["n_steps"]) if "n_steps" in args else None
    except ValueError as e:
        raise ReportError(f"ups export champion: bad number ({e}). Fix: batch_sizes=1,8,64 threads=2 repeats=20") from None
    bad = [said for wrong, said in (
        (not batches or min(batches) < 1, f"batch_sizes={args.get('batch_sizes')!s} needs one or more sizes ≥ 1 "
                                          f"(batch_sizes=1,8,64)"),
        (threads < 1, f"threads={threads} must be ≥ 1 (threads=2)"),
        (repeats < 1, f"repeats={repeats} must be ≥ 1 (repeats=20)"),
        (not tolerance > 0, f"tolerance={tolerance} must be > 0 (tolerance=1e-5)"),
        (n_steps is not None and n_steps < 1, f"n_steps={n_steps} must be ≥ 1 (or leave it out: the protocol's horizon)"),
    ) if wrong]
    if bad:
        raise ReportError(f"ups export champion: {'; '.join(bad)}. Fix: the value in brackets")
    champion: dict[str, Any] = {}
    base = None
    if "checkpoint" in args:
        stored = str(args["checkpoint"])
        champion["_source"] = f"checkpoint {stored}"
    else:
        cpath = str(args.get("champion", DEFAULT_CHAMPION))
        champion, stored, base = champion_checkpoint(cpath)
        champion["_source"] = f"champion {cpath}"
        if not stored.startswith("s3://"):
            try:
                resolve_checkpoint(stored, base)
            except ReportError:
                raise ReportError(f"champion file '{cpath}': its 'checkpoint' {stored!r} does not exist (looked for "
                                  f"the file and <dir>/checkpoint.pt: the trial's folder was deleted, or the sweep "
                                  f"ran elsewhere). Fix: pass checkpoint=<path/to/checkpoint.pt>, or "
                                  f"champion=<a record whose checkpoint is on this machine>") from None
    recorded = str(champion.get("leaderboard") or "")
    if "leaderboard" not in args and recorded and Path(recorded).is_file():  # the one the champion was crowned in
        lb_path = Path(recorded)
    if not lb_path.is_file():
        missing = f" (nor at {recorded}, where its champion record says it was crowned)" if recorded else ""
        print(f"note: no leaderboard at {lb_path}{missing}: the model card's figures, gates and baselines are what "
              f"the champion record (or an `ups train` run's metrics.json) holds. Fix: leaderboard=<the leaderboard.csv "
              f"that holds its rows>", file=sys.stderr)
    from ups.outputs import check_writable_folder

    check_writable_folder(Path(args.get("out", "reports/export")), f"ups export champion out={args.get('out', '')}",
                          "out=reports/export")  # before the model, the test data and the parity runs
    with checkpoint_file(stored, base=base) as ckpt:  # an S3 checkpoint's download is deleted afterwards
        info = export_champion(ckpt, Path(args.get("out", "reports/export")), champion=champion, leaderboard=lb_path,
                               batch_sizes=batches, threads=threads, repeats=repeats, tolerance=tolerance,
                               n_steps=n_steps, onnx_exporter=args.get("onnx_exporter", "legacy"),
                               stored_as=stored if stored.startswith("s3://") else None)
    worst = max(info["parity"], key=lambda r: r["max_abs"])
    print(f"exported {info['name']} → {info['out_dir']} (params {info['params']:,}); parity "
          f"{'OK' if info['parity_ok'] else 'FAILED'}: worst max|Δ| {worst['max_abs']:.2e} "
          f"({worst['artifact']}/{worst['runtime']}, tolerance {info['tolerance']:g})")
    for r in info["latency"]:
        if r["batch"] in (1, max(batches)):
            print(f"  {r['artifact']:<8}{r['runtime']:<15}{r['device']:<5} B={r['batch']:<3} "
                  f"{r['latency_ms']:8.3f} ms  {r['throughput']:10.1f} samples/s")
    return 0 if info["parity_ok"] else 1
