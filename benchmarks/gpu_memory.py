"""GPU memory of each round's largest trial at the full profile: does the round's GPU share hold it?

Ray's fractional GPUs share out a GPU's count, not its memory: at ``resources.gpu=0.25`` four trials land
on one GPU whatever each needs. For each round this takes the full profile's trial config (``profile=full``
with the round's own full-profile settings, as ``sweeps/<round>.py profile=full`` builds it) at the
*largest* point of the round's search space (every numeric choice, grid or int at its top, a list choice
at its largest sum, e.g. depths [2, 2, 2]; continuous knobs such as lr at the reference, they do not change
memory), trains it one epoch per stage on full-profile data and evaluates one eval batch with TTC (the
peak depends on the batch sizes, not on how many batches run), in this process, one round after another.

Per round it records what the product records per trial: PyTorch's peak (``gpu_mem_peak_mib``, the
allocator's reserved peak, ``ups.train.trainer.gpu_memory``) and the GPU's size; besides, what NVML saw
in use on the whole GPU (peak, sampled every 0.1 s, over what was in use when the round started), and
once the CUDA context alone (NVML before and after the first CUDA tensor). ``outside_allocator_mib``, the
context plus what the first round loaded outside PyTorch's allocator (kernel modules, library handles), is
what the allowance ``ups.tune.gpu_share.CUDA_CONTEXT_MIB`` stands for. From those, for the measured GPU and for a GPU of
``--other-gpu-mib`` (default 23,028 MiB: the total nvidia-smi gives for an A10, as listed in
modal-labs/modal-client pull request #2797; the A10G of ``cluster.yaml``'s g5 workers is AWS's 24 GB variant
of it; not measured here) it gives how many such trials fit,
against the round's ``resources.gpu``.

Round D starts from the champion; here its base is the aggressive round's largest config (the round a
champion of aggressive would come from), with round D's own largest point on top.

    python benchmarks/gpu_memory.py                 # every round (a GPU machine; ~2-3 min on an H200)
    python benchmarks/gpu_memory.py --rounds round_a --n 64 --resolution 256   # a CPU dry run: configs only

Prints one JSON object and a one-line summary per round (``--out`` also writes the JSON).
"""
from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "sweeps"))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402
from gpu_packing import GpuMonitor  # noqa: E402  (NVML sampling, shared with the packing benchmark)

ROUNDS = ("round_a", "round_b", "aggressive", "dims", "round_d")


def largest_point(space: Any, base: Any) -> dict[str, Any]:
    """The space's point (encoded) with every size-like knob at its top; continuous knobs at the reference."""
    point = space.reference_point(base)
    for key, p in space.params.items():
        if p.dist in ("choice", "grid") and p.values:
            def size(v: Any) -> float:
                if isinstance(v, (list, tuple)):
                    return float(sum(float(x) for x in v))
                return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float("-inf")
            top = max(p.values, key=size)
            if size(top) > float("-inf"):
                point[key] = p.encode(top)
        elif p.dist == "int" and p.high is not None:
            point[key] = p.encode(int(p.high))
    return point


def round_config(name: str, common: list[str], base_override: Any = None) -> tuple[Any, dict[str, Any]]:
    """(trial config, the searched values set) of round ``name``'s largest point at the full profile."""
    from ups.tune.prepare import prepare
    from ups.tune.space import load_space
    from ups.tune.sweep_config import default_space_path

    module = importlib.import_module(name)
    defaults = getattr(module, "DEFAULTS", {})
    if base_override is not None:  # round D: no champion here; its base is given
        space = load_space(default_space_path(name))
        base = base_override
    else:
        p = prepare(name, ["profile=full", *common], defaults=defaults)
        space, base = p.space, p.base
    point = largest_point(space, base)
    cfg, values = space.materialize(base, point)
    gpu = float(((defaults.get("full") or {}).get("resources") or {}).get("gpu", 0.25))
    return cfg, {"values": values, "resources_gpu": gpu}


def measure(cfg: Any, data: Any, run_dir: Path) -> dict[str, Any]:
    from ups.models.ups_model import build_model, count_parameters
    from ups.train.trainer import train

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    mon = GpuMonitor(period_s=0.1)  # a fresh sampler per round (a stopped one does not restart)
    before = mon.used_mib()
    t0 = time.perf_counter()
    with mon:
        res = train(cfg, run_dir=run_dir, data=data)
    m = res.metrics
    out = {"params": count_parameters(build_model(cfg, grid_size=int(data.train.shape[-1]))),
           "seconds": round(time.perf_counter() - t0, 1),
           "gpu_mem_peak_mib": m.get("gpu_mem_peak_mib"), "gpu_mem_total_mib": m.get("gpu_mem_total_mib"),
           "test_nrmse": m.get("nrmse"), "test_nrmse_ttc": m.get("nrmse_ttc")}
    peak = mon.summary().get("gpu_mem_peak_mib")
    if before is not None and peak is not None:
        out["nvml_peak_over_start_mib"] = round(peak - before, 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", default=",".join(ROUNDS))
    ap.add_argument("--n", type=int, default=2000, help="data.n (the full profile's 2000)")
    ap.add_argument("--resolution", type=int, default=1024, help="data.resolution (the full profile's 1024)")
    ap.add_argument("--eval-samples", type=int, default=64, help="eval.max_samples: one eval batch (eval.batch_size 64)")
    ap.add_argument("--other-gpu-mib", type=float, default=23028.0, help="another GPU's total memory to size for")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    from ups.data.protocol import load_protocol
    from ups.tune.gpu_share import CUDA_CONTEXT_MIB, trials_per_gpu

    t_start = time.perf_counter()
    out: dict[str, Any] = {"benchmark": "gpu_memory", "torch": torch.__version__,
                           "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                           "n": a.n, "resolution": a.resolution, "eval_samples": a.eval_samples,
                           "context_allowance_mib": CUDA_CONTEXT_MIB, "other_gpu_mib": a.other_gpu_mib, "rounds": {}}
    if torch.cuda.is_available():
        nvml = GpuMonitor()
        u0 = nvml.used_mib()
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
        u1 = nvml.used_mib()
        if u0 is not None and u1 is not None:
            out["cuda_context_mib"] = round(u1 - u0, 1)  # the context and kernel images, before any allocation
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        common = [f"data.n={a.n}", f"data.resolution={a.resolution}", f"data.cache_dir={root / 'data'}",
                  f"storage_path={root / 'runs'}", f"leaderboard={root / 'lb.csv'}", f"report_dir={root / 'rep'}",
                  "wandb.enabled=false"]
        short = ["stages.autoencoder.epochs=1", "stages.operator.epochs=1", "stages.diff_residual.epochs=1",
                 "stages.consistency_distill.epochs=1", f"eval.max_samples={a.eval_samples}", "eval.baselines=false",
                 "training.device=auto"]
        from ups.config import apply_overrides

        data, aggressive_cfg = None, None
        for name in [r.strip() for r in a.rounds.split(",") if r.strip()]:
            if name == "round_d":
                if aggressive_cfg is None:
                    aggressive_cfg, _ = round_config("aggressive", common)
                cfg, info = round_config(name, common, base_override=aggressive_cfg)
            else:
                cfg, info = round_config(name, common)
                if name == "aggressive":
                    aggressive_cfg = cfg
            cfg = apply_overrides(cfg, {o.split("=", 1)[0]: o.split("=", 1)[1] for o in short}, source="gpu_memory")
            if data is None:
                data = load_protocol(cfg.data)
            first = not out["rounds"]
            r = {**info, **measure(cfg, data, root / name)}
            if first and "cuda_context_mib" in out and r.get("nvml_peak_over_start_mib") is not None:
                # the first run in this process also loads kernel modules and library handles: what the
                # process holds outside PyTorch's allocator (ups.tune.gpu_share.CUDA_CONTEXT_MIB stands for it)
                out["outside_allocator_mib"] = round(out["cuda_context_mib"] + r["nvml_peak_over_start_mib"]
                                                     - r["gpu_mem_peak_mib"], 1)
            r["values"] = {k: v for k, v in r["values"].items() if not k.startswith("stages.")}
            peak, total = r.get("gpu_mem_peak_mib"), r.get("gpu_mem_total_mib")
            if peak is not None and total:
                need = peak + CUDA_CONTEXT_MIB
                r["need_mib"] = round(need, 1)
                r["fit_per_gpu_measured"] = trials_per_gpu(need, total)
                r["fit_per_gpu_other"] = trials_per_gpu(need, a.other_gpu_mib)
                r["round_packs"] = round(1 / r["resources_gpu"])
                r["share_ok_on_other"] = r["fit_per_gpu_other"] >= r["round_packs"]
            out["rounds"][name] = r
            print(f"gpu_memory {name}: params={r['params']:,} PyTorch peak={peak} MiB"
                  + (f", need ≈{r['need_mib']:.0f} MiB with the context → {r['fit_per_gpu_other']} per "
                     f"{a.other_gpu_mib:.0f} MiB GPU (round packs {r['round_packs']}: "
                     f"{'fits' if r['share_ok_on_other'] else 'DOES NOT FIT'}), {r['fit_per_gpu_measured']} per "
                     f"{out['device']}" if "need_mib" in r else " (no CUDA: configs only)")
                  + f" [{r['seconds']} s]", flush=True)
            if a.out:  # after each round: a run cut short keeps what it measured
                Path(a.out).write_text(json.dumps(out, default=str))
    out["total_s"] = round(time.perf_counter() - t_start, 1)
    text = json.dumps(out, default=str)
    if a.out:
        Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
