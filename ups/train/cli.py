"""`ups train [--run-dir DIR] [--resume CKPT] [key=value …]`: staged UPS training from the command line."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ups.config import (ConfigError, apply_overrides, check_model_grid, config_from_dict, config_hash, data_file_key,
                        load_config, override_key, to_dict)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ups train", description=__doc__,
                                epilog="example: ups train preset=dim32 stages.operator.epochs=20 data.n=2000")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. preset=dim64 stages.operator.optimizer.lr=3e-4")
    p.add_argument("--run-dir", type=Path, default=None, help="output folder (default: run.out_dir/<run_id>)")
    p.add_argument("--resume", type=Path, default=None,
                   help="checkpoint.pt, its folder, or a run folder: the run goes on with the settings it was started "
                        "with, the overrides given here on top (in its own folder when they change nothing)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch lines: the final metrics and the checkpoint")
    return p


def resume_config(resume: Path, overrides: list[str]) -> tuple[Any, Path, Path | None]:
    """``--resume``: (the checkpoint's own config with this command's overrides on top, the checkpoint, the run
    folder to go on in).  A run resumes with the settings it was started with: `ups train --resume runs/<id>`
    without retyping them (it was refused, the defaults' model differing from the checkpoint's).  The run
    folder is the checkpoint's (``<run>/checkpoints/<name>/checkpoint.pt``) when the overrides change nothing;
    else None, and the run gets the folder its new config names.  A ``preset=`` other than the checkpoint's
    gives the command's own config, which the trainer then refuses, naming what differs."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    from ups.train.checkpoint import CheckpointError, read_checkpoint, run_folder
    from ups.train.trainer import resume_path

    try:
        state = read_checkpoint(resume_path(Path(resume).expanduser().resolve()))
    except CheckpointError as e:
        raise ConfigError(f"--resume: {e}") from None
    ckpt = Path(state["path"]).resolve()
    stored = config_from_dict(state["config"], source=f"--resume: checkpoint '{ckpt}' config")
    given = load_config(overrides, validate=False)  # validated on top of the stored config below
    keys = [override_key(o) for o in overrides]
    if "preset" in keys and given.preset != stored.preset:
        return load_config(overrides), ckpt, None
    values = {k: OmegaConf.select(given, k) for k in keys if k != "preset"}
    values = {k: OmegaConf.to_container(v) if isinstance(v, (DictConfig, ListConfig)) else v for k, v in values.items()}
    cfg = apply_overrides(stored, values, source="overrides")
    return cfg, ckpt, run_folder(ckpt) if to_dict(cfg) == to_dict(stored) else None


def check_no_earlier_run(run_dir: Path, run_id: str) -> None:
    """A new run (no ``--resume``, or a resume whose overrides give it a folder of its own) does not start in a
    folder that holds another run's checkpoints: it replaced ``final/`` and ``metrics.json`` there, and checkpoint
    pruning then removed the new run's epoch checkpoints while it kept the old run's newer ones, so the folder's
    newest epoch checkpoint was another run's."""
    from ups.train.checkpoint import saved_checkpoints

    found = saved_checkpoints(run_dir)
    if not found:
        return
    shown = ", ".join(found[:4]) + (" …" if len(found) > 4 else "")
    fresh = (f"--run-dir <another folder> or run.run_id=<a name> for a new run (the default folder is run.out_dir/"
             f"<preset>-<config hash>, here {run_id}), or delete {run_dir}")
    if "final" in found:
        raise ConfigError(f"run folder {run_dir} holds a finished run ({shown}); a new run there would mix its "
                          f"checkpoints with that one's. Fix: {fresh}; --resume {run_dir} redoes that run's final "
                          f"evaluation, or trains the stages it never trained")
    raise ConfigError(f"run folder {run_dir} already holds a run's checkpoints ({shown}); a new run there would mix "
                      f"its checkpoints with them. Fix: --resume {run_dir} to continue that run, or {fresh}")


def nu_notes(cfg: Any, overrides: list[str]) -> list[str]:
    """What the run records as ν when ``data.path`` names a file: the file's own (its attributes or PDEBench name)
    wins over ``data.nu``, silently until now, and a file that names none is recorded with ``data.nu``."""
    path = str(cfg.data.path or "")
    from ups.data.hdf5 import declared_nu

    readable, nu = declared_nu(path) if path else (False, None)
    if not readable:
        return []  # generated data (ν is data.nu), or a missing or malformed file (refused with its fix when loaded)
    given = any(override_key(o) in ("data.nu", "nu") for o in overrides)
    if nu is None:
        return [f"{path} names no ν (no nu/Nu attribute, no _Nu<ν> in its name): the run records data.nu="
                f"{float(cfg.data.nu):g}" + ("" if given else " (the default); give data.nu=<the file's ν> if it "
                                                              "is another")]
    if given and float(nu) != float(cfg.data.nu):
        return [f"{path} holds ν={float(nu):g}, which the run trains and records, not data.nu={float(cfg.data.nu):g}"]
    return []


def main(argv: list[str]) -> int:
    args = build_parser().parse_intermixed_args(argv)  # --run-dir between overrides, as they are typed
    # data=<file>, as ups eval takes it (a raw "str is not a subclass of DataCfg" error here)
    overrides = []
    for o in args.overrides:
        key = data_file_key(o, "", "leave it out to train on generated data")  # an empty data= is refused
        overrides.append(f"{key}={o.split('=', 1)[1]}" if "=" in o and override_key(o) == "data" else o)
    args.overrides = overrides
    resume_from, resumed_run = None, None
    if args.resume is not None:
        cfg, resume_from, resumed_run = resume_config(args.resume, args.overrides)
    else:
        cfg = load_config(args.overrides)
    from ups.models.ups_model import build_model, count_parameters, parameter_breakdown
    from ups.train.checkpoint import CheckpointError, saved_checkpoints
    from ups.train.trainer import TrainingDiverged, budget_cut_stage, train

    check_model_grid(cfg)  # before data and training: more latent tokens than the data's grid points
    try:
        probe = build_model(cfg)
    except ValueError as e:  # a shape the config checks let through: a refusal (exit 2), not a traceback
        raise ConfigError(f"config: the model cannot be built: {e}") from None
    parts = ", ".join(f"{k} {v:,}" for k, v in parameter_breakdown(probe).items())
    if not args.quiet:  # --quiet: the final metrics (and what the run needs to say: a resume, a budget cut)
        print(f"ups train: preset {cfg.preset}, {count_parameters(probe):,} parameters ({parts})", flush=True)
    run_id = cfg.run.run_id or f"{cfg.preset}-{config_hash(cfg)}"
    run_dir = args.run_dir or resumed_run or Path(cfg.run.out_dir).expanduser() / run_id
    from ups.outputs import check_writable_folder

    # the folder above it (the run folder is made when training writes): before data and training
    check_writable_folder(run_dir.parent, f"ups train run folder {run_dir}", f"--run-dir runs/{run_id}")
    if resume_from is None or resumed_run is None:  # a new run, or a changed one in a folder of its own
        check_no_earlier_run(run_dir, run_id)
    for note in nu_notes(cfg, args.overrides):
        print(f"ups train: note: {note}", flush=True)

    def report(m: dict, ckpt: Path | None) -> None:
        if args.quiet or m.get("done"):
            return
        trip = m.get("val_recon_nrmse")  # the autoencoder's round trip (ups.reconstruction): what its stage improves
        print(f"[{m['stage']:<19}] epoch {m['epoch']:>3} (global {m['global_epoch']:>3})  "
              f"loss {m['train_loss']:.4g}  val_nrmse {m['val_nrmse']:.4f}"
              + (f" (round trip {trip:.4f})" if trip is not None else "") + f"  {m['wall_clock']:.0f}s", flush=True)

    try:
        if resume_from is not None:
            print(f"ups train: resuming {resume_from} in {run_dir}", flush=True)
        res = train(cfg, report=report, run_dir=run_dir, resume_from=resume_from)
    except CheckpointError as e:  # --resume names a missing or unreadable checkpoint: refused before training
        raise ConfigError(f"--resume: {e}") from None
    except TrainingDiverged as e:  # its message names the stage, the epoch and the knob to lower: no traceback
        print(f"ups train: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line and the resume (a traceback from inside torch.save said neither)
        kept = saved_checkpoints(run_dir)
        print("\nups train: interrupted (Ctrl-C). "
              + (f"Its checkpoints ({', '.join(kept[-2:])}) are in {run_dir / 'checkpoints'}; to go on: ups train "
                 f"--resume {run_dir}" if kept else "No checkpoint was written yet: run the same command again"),
              file=sys.stderr)
        return 130
    keys = ("val_nrmse", "nrmse", "nrmse_ttc", "nrmse_pdebench", "recon_nrmse", "conservation_gap", "params",
            "wall_clock")
    print(json.dumps({k: res.metrics[k] for k in keys if k in res.metrics}, default=float))
    print(f"ups train: done in {res.metrics['wall_clock']:.0f}s; checkpoint {res.checkpoint}")
    if res.metrics.get("budget_exhausted"):  # it said "done" as if every stage had run its epochs
        last = budget_cut_stage(res.history)
        print(f"ups train: training.time_budget_s={float(cfg.training.time_budget_s):g} ran out"
              + (f" in the {last} stage" if last else "") + ": that stage stopped before its epochs and the stages "
              "after it were not trained (metrics.json: budget_exhausted). A resume of this run ends where it did; "
              "for the rest, train again with a larger budget", flush=True)
    return 0
