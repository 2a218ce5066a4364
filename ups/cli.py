"""`ups` command line: each subcommand lives in its own module exposing ``main(argv) -> int``."""
from __future__ import annotations

import importlib
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


def _usage() -> str:
    lines = ["usage: ups <command> [args…]", "", "commands:"]
    lines += [f"  {name:<14} {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"ups: unknown command '{name}'.\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    from ups.config import ConfigError

    try:
        return int(module.main(rest) or 0)
    except ConfigError as e:
        print(f"ups {name}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
