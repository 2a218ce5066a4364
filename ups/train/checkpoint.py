"""Self-describing checkpoints: weights, EMA, optimizer, scheduler, RNG states, stage, epoch, config.

Written atomically (temp file + rename) with ``torch.save``; read with ``torch.load(weights_only=True)``
so a checkpoint cannot execute code. ``load_checkpoint(path)`` rebuilds the model from the stored
config; a checkpoint whose model config differs from the one requested is refused with a key diff.
"""
from __future__ import annotations

import contextlib
import pickle
import random
import re
from pathlib import Path
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ups.config import config_from_dict, flatten, to_dict
from ups.outputs import atomic_path

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from ups.models.ups_model import UPSModel

FORMAT = "ups-checkpoint-v1"
CHECKPOINT_NAME = "checkpoint.pt"
MODEL_SECTIONS = ("latent", "encoder", "operator", "decoder", "diffusion")
# model keys that shape no weight (a regularisation rate), each with the training stage it acts in: a checkpoint loads
# under another value of them, as under another learning rate (a resume with another stochastic depth; PBT perturbing
# it between trials, which stops once that stage is trained: ups.tune.pbt)
WEIGHT_FREE_KEYS = {"operator.drop_path": "operator"}
REQUIRED = ("format", "config", "grid_size", "model", "stage", "epoch", "global_epoch")

CORRUPT_FIX = ("pass another checkpoint.pt written by `ups train` or a sweep; for a run of your own, resume "
               "from an earlier checkpoint of it (checkpoints/), or delete this file and retrain")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt or does not match the requested model; the message says the fix."""


# ------------------------------------------------------------------ RNG state (tensor-only, weights_only safe)
def capture_rng() -> dict[str, Any]:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]), "gauss": py_state[2]},
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------ save / load
def save_checkpoint(directory: Path, payload: dict[str, Any]) -> Path:
    """Write ``directory/checkpoint.pt`` atomically; returns its path."""
    directory = Path(directory)
    made = not directory.exists()
    directory.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, **payload}
    try:
        with atomic_path(directory / CHECKPOINT_NAME) as tmp:
            torch.save(payload, tmp)
    except BaseException:
        if made:  # interrupted (Ctrl-C in torch.save): no empty epoch_N/ folder is left behind
            with contextlib.suppress(OSError):
                directory.rmdir()
        raise
    return directory / CHECKPOINT_NAME


def resolve_path(path: Path | str) -> Path:
    """``path`` as the checkpoint.pt it names: the file, a folder holding it, or a Tune trial's folder (its newest
    ``checkpoint_N`` that holds one: the checkpoint its leaderboard row records)."""
    p = Path(path).expanduser()
    if p.is_dir():
        tune_ckpts = sorted((int(d.name.split("_", 1)[1]), d) for d in p.glob("checkpoint_*")
                            if d.name.split("_", 1)[1].isdigit() and (d / CHECKPOINT_NAME).is_file())
        p = p / CHECKPOINT_NAME
        if not p.exists() and tune_ckpts:
            p = tune_ckpts[-1][1] / CHECKPOINT_NAME
    if not p.exists():
        marker = p.parent / "checkpoints" / "LATEST"  # a run folder (ups train writes checkpoints/<name>/ and LATEST)
        latest = marker.read_text().strip() if marker.is_file() else ""
        latest = latest if latest and (marker.parent / latest / CHECKPOINT_NAME).is_file() else ""
        example = (f"{p.parent / 'checkpoints' / latest}, this run's latest" if latest
                   else "runs/<run_id>/checkpoints/final")
        raise CheckpointError(f"checkpoint '{p}' does not exist. Fix: pass the checkpoint.pt file or the "
                              f"folder that holds it (e.g. {example}).")
    return p


def read_checkpoint(path: Path | str) -> dict[str, Any]:
    """Load and validate the raw checkpoint dict (no model built)."""
    p = resolve_path(path)
    if p.is_file() and p.stat().st_size == 0:
        raise CheckpointError(f"checkpoint '{p}' is empty (0 bytes: a write that was killed or ran out of disk). "
                              "Fix: resume from an earlier checkpoint of the run, or delete this file and retrain.")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found:  # weights_only refuses objects a UPS checkpoint never holds
            raise CheckpointError(
                f"checkpoint '{p}' is not a UPS checkpoint: it holds Python objects ({found.group(1)}) that a "
                f"safe load refuses. Fix: pass a checkpoint.pt written by `ups train` or a sweep") from None
        why = re.search(r"(invalid load key[^\n]*?)\.?$", str(e), re.M)
        raise CheckpointError(
            f"checkpoint '{p}' is truncated or corrupt (not a torch file: "
            f"{why.group(1) if why else 'unpickling failed'}). Fix: {CORRUPT_FIX}") from None
    except Exception as e:  # truncated zip, garbage bytes …
        raise CheckpointError(
            f"checkpoint '{p}' is truncated or corrupt ({type(e).__name__}: {_first_line(e)}). "
            f"Fix: {CORRUPT_FIX}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint '{p}' is not a UPS checkpoint (format "
                              f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r}, "
                              f"expected {FORMAT!r}). Fix: pass a checkpoint.pt written by `ups train`.")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint '{p}' lacks keys {missing}. Fix: it was written by an incompatible "
                              "version; retrain or use a checkpoint from this version.")
    state["path"] = str(p)
    return state


def _first_line(e: BaseException) -> str:
    """An exception's first non-empty line, without terminal colour codes, at most 160 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:160]


def model_config_diff(stored: dict[str, Any], requested: dict[str, Any],
                      sections: tuple[str, ...] = MODEL_SECTIONS) -> list[str]:
    """Lines 'key: checkpoint=… requested=…' for every model key that differs (``WEIGHT_FREE_KEYS`` aside)."""
    a = {k: v for k, v in flatten(stored).items() if k.split(".")[0] in sections and k not in WEIGHT_FREE_KEYS}
    b = {k: v for k, v in flatten(requested).items() if k.split(".")[0] in sections and k not in WEIGHT_FREE_KEYS}
    return [f"{k}: checkpoint={a.get(k, '<absent>')!r} requested={b.get(k, '<absent>')!r}"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_compatible(state: dict[str, Any], cfg: Any, grid_size: int | None = None) -> None:
    """Refuse a checkpoint whose model config (or grid) differs from ``cfg``'s."""
    requested = to_dict(cfg) if not isinstance(cfg, dict) else cfg
    diff = model_config_diff(state["config"], requested)
    if grid_size is not None and int(state["grid_size"]) != int(grid_size):
        diff.append(f"grid_size: checkpoint={state['grid_size']} requested={grid_size}")
    if diff:
        raise CheckpointError(
            f"checkpoint '{state.get('path')}' was trained with a different model:\n  " + "\n  ".join(diff)
            + "\nFix: give the checkpoint's model settings (`ups train --resume` takes them from the checkpoint: "
              "drop the model overrides that differ), or start a new run without resuming from it.")


def saved_checkpoints(run: Path) -> list[str]:
    """The checkpoints an ``ups train`` run folder holds: names of ``<run>/checkpoints/<name>/`` with a checkpoint
    file in them (``epoch_NNNN``…, ``final``), sorted."""
    return sorted(p.parent.name for p in (Path(run) / "checkpoints").glob(f"*/{CHECKPOINT_NAME}"))


def run_folder(ckpt: Path) -> Path | None:
    """The ``ups train`` run folder a checkpoint lies in (``<run>/checkpoints/<name>/checkpoint.pt``), else None."""
    return ckpt.parents[2] if len(ckpt.parents) > 2 and ckpt.parents[1].name == "checkpoints" else None


def _weight_mismatch(want: Mapping[str, Any], got: Any) -> str:
    """What differs between the weights a model has (``want``) and a checkpoint's (``got``): the first keys of
    each kind, e.g. ``1 shape differs: operator.w: checkpoint [64, 32], model [64, 16]`` (empty when it cannot
    tell)."""
    if not isinstance(got, Mapping):
        return ""
    parts = []
    shapes = [f"{k}: checkpoint {list(got[k].shape)}, model {list(v.shape)}" for k, v in want.items()
              if k in got and torch.is_tensor(got[k]) and tuple(got[k].shape) != tuple(v.shape)]
    for what, keys in (("shape differs", shapes), ("missing", [k for k in want if k not in got]),
                       ("unexpected", [k for k in got if k not in want])):
        if keys:
            parts.append(f"{len(keys)} {what}: " + "; ".join(map(str, keys[:3])) + (" …" if len(keys) > 3 else ""))
    return " | ".join(parts)


def load_checkpoint(path: Path | str, cfg: Any = None,
                    device: str | torch.device = "cpu") -> tuple[UPSModel, DictConfig, dict[str, Any]]:
    """Rebuild the model stored in a checkpoint → (model, cfg, state).

    ``cfg``: if given, the checkpoint must have been trained with the same model config.
    The model gets the checkpoint's final weights (EMA weights are already folded in at stage ends).
    """
    from ups.models.ups_model import build_model

    state = read_checkpoint(path)
    if cfg is not None:
        check_compatible(state, cfg)
    stored_cfg = config_from_dict(state["config"], source=f"checkpoint '{state['path']}' config")
    model = None
    try:
        model = build_model(stored_cfg, grid_size=int(state["grid_size"]))
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError, TypeError) as e:
        which = _weight_mismatch(model.state_dict(), state["model"]) if model is not None else ""
        raise CheckpointError(f"checkpoint '{state['path']}' weights do not fit the model its config builds "
                              f"({which or _first_line(e)}). Fix: retrain; the file was edited or "
                              "written by an incompatible version.") from None
    bad = [k for k, v in state["model"].items() if torch.is_tensor(v) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"checkpoint '{state['path']}' has NaN/Inf weights ({len(bad)} tensors, e.g. "
                              f"{bad[0]}): the run diverged before it was saved. Fix: use an earlier checkpoint "
                              f"of the run (or its last_good/), or retrain with a lower learning rate")
    return model.to(device).eval(), stored_cfg, state
