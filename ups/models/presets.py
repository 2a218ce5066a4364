"""Parameter counts of the model presets (``ups/conf/preset/dimN.yaml``).

    python -m ups.models.presets          # table of presets × modules
"""
from __future__ import annotations

from ups.config import PRESET_DIMS, load_config
from ups.models.ups_model import build_model, count_parameters, parameter_breakdown


def preset_parameter_counts(grid_size: int = 256) -> dict[str, dict[str, int]]:
    """{'dim32': {'total': …, 'encoder': …, 'operator': …, …}, …} on a ``grid_size`` grid."""
    out: dict[str, dict[str, int]] = {}
    for d in PRESET_DIMS:
        model = build_model(load_config([f"preset=dim{d}"]), grid_size=grid_size)
        out[f"dim{d}"] = {"total": count_parameters(model), **parameter_breakdown(model)}
    return out


def main() -> None:
    rows = preset_parameter_counts()
    cols = ["total", "encoder", "operator", "decoder", "diffusion", "consistency"]
    print(f"{'preset':<8}" + "".join(f"{c:>13}" for c in cols))
    for name, r in rows.items():
        print(f"{name:<8}" + "".join(f"{r[c]:>13,}" for c in cols))


if __name__ == "__main__":
    main()
