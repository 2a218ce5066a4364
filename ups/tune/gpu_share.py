"""Does a trial fit in the GPU share it asked for?

Ray's fractional GPUs (``resources.gpu=0.25``) share out a GPU's *count*, not its memory: four trials of
0.25 land on one GPU whatever memory each needs. Each trial reports the most GPU memory PyTorch held
(``gpu_mem_peak_mib``, ``ups.train.trainer.gpu_memory``) and the GPU's size; after a sweep,
``gpu_share_warning`` says which trial needed more than its share, and the fraction that fits.
"""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

# Per trial process, outside PyTorch's allocator (torch.cuda.max_memory_reserved does not count it): the CUDA
# context (618 MiB at the first CUDA tensor) plus the kernel modules and library handles a training run
# loads (148 MiB more), 766 MiB in all, measured by benchmarks/gpu_memory.py on an H200 with PyTorch
# 2.11 / CUDA 13 (docs/GPU.md); rounded up, since other GPUs, drivers and CUDA versions differ.
CUDA_CONTEXT_MIB = 800.0


def no_cuda_for_share(share: float, device: str, *, cuda_available: bool, where: str = "this node") -> str | None:
    """Why a trial Ray gave a GPU share cannot use it, or None: the share is > 0, ``training.device`` is not
    ``cpu`` and the trial's torch sees no CUDA device (a CPU-only torch on a GPU worker, a node started with a
    logical ``--num-gpus`` and no GPU, a missing driver). Such a trial would train on the CPU while its GPU share
    is held and priced."""
    if share <= 0 or device == "cpu" or cuda_available:
        return None
    return (f"the trial holds resources.gpu={share:g} of a GPU but torch on {where} sees no CUDA device "
            f"(training.device={device}): it would train on the CPU while the GPU share is held and priced. Fix: a "
            f"CUDA build of torch and the NVIDIA driver on the GPU workers (`ups cluster-check cluster.yaml` refuses a "
            f"CPU-only torch there), or resources.gpu=0 to run trials on CPUs, or training.device=cpu to hold the "
            f"share and train on the CPU anyway")


def trials_per_gpu(need_mib: float, total_mib: float) -> int:
    """How many trials needing ``need_mib`` each one GPU of ``total_mib`` holds (at least 1)."""
    return max(1, math.floor(total_mib / max(need_mib, 1e-9)))


def fraction_for(k: int) -> float:
    """``resources.gpu`` that packs k trials on a GPU: 1/k, rounded down to 4 decimals so k fit exactly."""
    return math.floor(10_000 / k) / 10_000


def gpu_share_warning(rows: pd.DataFrame, gpu_fraction: float, context_mib: float = CUDA_CONTEXT_MIB) -> str | None:
    """A line naming the trial with the largest GPU memory need when it exceeds ``gpu_fraction`` of its GPU,
    with the ``resources.gpu`` that fits; None when every trial fit, the trials ran on CPUs, or each had
    a GPU of its own (a trial too large for a whole GPU fails with CUDA's own out-of-memory error)."""
    if not 0 < gpu_fraction < 1 or rows is None or "gpu_mem_peak_mib" not in rows:
        return None
    peak = pd.to_numeric(rows["gpu_mem_peak_mib"], errors="coerce")
    total = pd.to_numeric(rows.get("gpu_mem_total_mib"), errors="coerce")
    ok = peak.notna() & total.notna() & (total > 0)
    if not ok.any():
        return None
    need = peak[ok] + context_mib
    share = need / total[ok]
    worst = share.idxmax()
    if share[worst] <= gpu_fraction:
        return None
    r: Any = rows.loc[worst]
    k = trials_per_gpu(float(need[worst]), float(total[worst]))
    name = r.get("trial_id") or r.get("run_id") or worst
    fix = (f"resources.gpu={fraction_for(k):g} ({k} per GPU of this size)" if k > 1
           else "resources.gpu=1 (a GPU per trial)")
    return (f"GPU memory: trial {name} needed about {need[worst]:.0f} MiB ({peak[worst]:.0f} MiB held by PyTorch + "
            f"~{context_mib:.0f} MiB for the CUDA context) of its {total[worst]:.0f} MiB GPU, more than its "
            f"resources.gpu={gpu_fraction:g} share ({gpu_fraction * total[worst]:.0f} MiB): {round(1 / gpu_fraction)} "
            f"such trials on one GPU can run out of memory. Fix: {fix}")
