"""`ups` command line: each subcommand lives in its own module exposing ``main(argv) -> int``."""
from __future__ import annotations

import importlib
import os
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "data": ("ups.data.cli", "generate / inspect Burgers HDF5 data (PDEBench layout)"),
    "baselines": ("ups.baselines", "persistence, linear and FNO baselines on the PDEBench protocol"),
    "train": ("ups.train.cli", "train the UPS model (staged) with Hydra overrides"),
    "eval": ("ups.eval", "evaluate a checkpoint on any PDEBench-layout file"),
    "sweep": ("ups.tune.cli", "run a named sweep round (same as python sweeps/<round>.py)"),
    "report": ("ups.reports.cli", "HTML report / comparison of sweep rounds"),
    "export": ("ups.reports.export", "export the champion to TorchScript / ONNX with a model card"),
    "cluster-check": ("ups.cloud.cluster_check", "validate cluster.yaml offline before spending money"),
}


def closed_stdout() -> int:
    """The exit status after the reader of stdout went away (``ups data info f | head``): no traceback, and no
    "Exception ignored" at exit (stdout now points at /dev/null); 141 = 128 + SIGPIPE, what a shell reports for a
    command a closed pipe stopped."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


def _usage() -> str:
    lines = ["usage: ups <command> [args…]", "", "commands:"]
    lines += [f"  {name:<14} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            print(_usage())
            sys.stdout.flush()
            return 0
        return _run(argv[0], argv[1:])
    except BrokenPipeError:
        return closed_stdout()


def _run(name: str, rest: list[str]) -> int:
    if name not in COMMANDS:
        print(f"ups: unknown command '{name}'.\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    from ups.config import ConfigError
    from ups.outputs import refusal_leaves_no_folders

    try:
        with refusal_leaves_no_folders():  # the output folders its checks made are not left behind by a refusal
            status = int(module.main(rest) or 0)
        sys.stdout.flush()  # inside the try: a closed pipe is reported here, not as "Exception ignored" at exit
        return status
    except ConfigError as e:
        print(f"ups {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
