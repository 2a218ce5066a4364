"""Inference latency of the exported forecaster: TorchScript and ONNX Runtime vs PyTorch eager (the baseline).

    python benchmarks/export_latency.py                         # dim32 preset, protocol grid, random weights
    python benchmarks/export_latency.py --checkpoint runs/…/checkpoint.pt --batch-sizes 1,8,64

Exports the one-step and the fixed-length rollout graphs with the same functions as ``ups export champion``
(``ups.reports.export``), checks parity, then times every runtime at each batch size on CPU (and PyTorch
eager on CUDA when present). Without ``--checkpoint`` the model has random weights: latency does not depend
on the weights. Prints a JSON object and a one-line summary with speed-ups relative to eager in this run.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ups.config import load_config  # noqa: E402
from ups.models.ups_model import build_model, count_parameters  # noqa: E402
from ups.reports.export import (RolloutForecaster, StepForecaster, _ort_session, benchmark,  # noqa: E402
                                export_onnx, export_torchscript, parity)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--preset", default="dim32")
    ap.add_argument("--batch-sizes", default="1,8,64")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--n-steps", type=int, default=31, help="rollout length (protocol: 31 predicted frames)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    if a.checkpoint:
        from ups.train.checkpoint import load_checkpoint

        model, cfg, _ = load_checkpoint(a.checkpoint)
        source = a.checkpoint
    else:
        cfg = load_config([f"preset={a.preset}"])
        model, source = build_model(cfg).eval(), f"preset {a.preset}, random weights"
    k, X = int(cfg.data.initial_step), int(model.grid_size)
    batches = [int(b) for b in a.batch_sizes.split(",")]
    ctx = torch.randn(max(batches), k, X)
    runners, rows_parity, export_s = {}, [], {}
    with tempfile.TemporaryDirectory() as d:
        for art, mod in (("step", StepForecaster(model).eval()), ("rollout", RolloutForecaster(model, a.n_steps).eval())):
            t0 = time.perf_counter()
            ts = torch.jit.load(str(export_torchscript(mod, ctx[:2], Path(d) / f"{art}.pt")))
            export_onnx(mod, ctx[:2], Path(d) / f"{art}.onnx")
            sess = _ort_session(Path(d) / f"{art}.onnx", a.threads)
            export_s[art] = time.perf_counter() - t0
            rows_parity += parity(mod, ts, sess, {b: ctx[:b] for b in batches}, art, 1e-5)
            runners[(art, "pytorch eager", "cpu")] = mod
            runners[(art, "torchscript", "cpu")] = ts
            runners[(art, "onnxruntime", "cpu")] = (lambda s: lambda x: s.run(None, {"context": x.numpy()}))(sess)
            if torch.cuda.is_available():
                import copy

                gm = copy.deepcopy(mod).to("cuda").eval()
                runners[(art, "pytorch eager", "cuda")] = gm
        rows = benchmark(runners, lambda b, dev: ctx[:b].to(dev), batches, a.repeats)
    eager = {(r["artifact"], r["device"], r["batch"]): r["latency_ms"] for r in rows if r["runtime"] == "pytorch eager"}
    for r in rows:
        r["speedup_vs_eager"] = eager[(r["artifact"], "cpu", r["batch"])] / r["latency_ms"]
    out = {"model": source, "params": count_parameters(model), "grid": X, "context_frames": k, "n_steps": a.n_steps,
           "threads": a.threads, "export_s": export_s, "parity_max_abs": max(p["max_abs"] for p in rows_parity),
           "parity_ok": all(p["ok"] for p in rows_parity), "rows": rows}
    print(json.dumps(out, indent=2))

    def sp(art: str, rt: str, b: int) -> float:
        return next(r["speedup_vs_eager"] for r in rows if (r["artifact"], r["runtime"], r["batch"], r["device"]) == (art, rt, b, "cpu"))

    b0, b1 = batches[0], batches[-1]
    print(f"export_latency: {source}; rollout({a.n_steps}) B={b0}: eager {eager[('rollout', 'cpu', b0)]:.1f} ms, "
          f"TorchScript ×{sp('rollout', 'torchscript', b0):.2f}, ONNX ×{sp('rollout', 'onnxruntime', b0):.2f}; "
          f"B={b1}: TorchScript ×{sp('rollout', 'torchscript', b1):.2f}, ONNX ×{sp('rollout', 'onnxruntime', b1):.2f}; "
          f"step B={b0}: TorchScript ×{sp('step', 'torchscript', b0):.2f}, ONNX ×{sp('step', 'onnxruntime', b0):.2f} "
          f"(speed-up vs eager, same run); parity {'ok' if out['parity_ok'] else 'FAILED'} "
          f"(max|Δ| {out['parity_max_abs']:.1e})")


if __name__ == "__main__":
    main()
