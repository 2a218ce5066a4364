"""MODEL_CARD.md for an exported champion: what it is, how good, how fast, for what (and not)."""
from __future__ import annotations

import math
from typing import Any

from ups.config import PRESET_DIMS, preset_values
from ups.leaderboard import PDEBENCH_NAMES, is_round_reference

GATE_HELP = "gates compare conservation gap, BC violation and ECE against the baseline (see the sweep's gate config)"


def _f(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "not recorded"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def _mb(n: int | None) -> str:
    return "—" if n is None else f"{n / 1e6:.2f} MB"


def _has_sizes(cfg: dict[str, Any], sizes: dict[str, Any]) -> bool:
    return all((cfg.get(section) or {}).get(k) == v for section, keys in sizes.items() for k, v in keys.items())


def preset_text(cfg: dict[str, Any]) -> str:
    """``preset `dim32``` when the model has that preset's sizes (``ups.config.preset_values``), else which preset's
    sizes it has, if any.  The ``preset`` key keeps the base config's name when a sweep sets the sizes itself: every
    model of the dims round (latent dims 8-64, sized by the presets' rules) said ``preset `dim32```."""
    name = str(cfg.get("preset") or "")
    named = next((d for d in PRESET_DIMS if name == f"dim{d}"), None)
    if named is None or _has_sizes(cfg, preset_values(named)):
        return f"preset `{name or '—'}`"
    dim = (cfg.get("latent") or {}).get("dim")
    if dim in PRESET_DIMS and _has_sizes(cfg, preset_values(dim)):
        return f"the sizes of preset `dim{dim}`"
    return f"sizes set by the sweep (base preset `{name}`)"


def render_model_card(info: dict[str, Any]) -> str:
    """Markdown model card. ``info`` keys: see ``export.export_champion`` (all optional but name)."""
    m = info.get("metrics", {})
    cfg = info.get("config", {})
    data, lat, op, dec, enc = (cfg.get(k, {}) for k in ("data", "latent", "operator", "decoder", "encoder"))
    parity = info.get("parity", [])
    bench = info.get("latency", [])
    baselines = info.get("baselines", {})
    n_steps = info.get("n_steps")
    k = data.get("initial_step", 10)
    X = info.get("grid_size")
    ok = all(p["ok"] for p in parity) if parity else False
    lines = [f"# Model card: {info['name']}", ""]
    if not ok:
        lines += ["> **PARITY CHECK FAILED** — the exported files do not reproduce PyTorch to the tolerance "
                  "below. Do not deploy them.", ""]
    nr, nr_ttc = m.get("nrmse"), m.get("nrmse_ttc")
    if isinstance(nr, (int, float)) and not math.isnan(nr):
        beaten_by = {k: v for k, v in baselines.items() if v <= nr}
        if "persistence" in beaten_by:
            lines += [f"> **Warning:** test nRMSE {_f(nr)} does not beat persistence ({_f(beaten_by['persistence'])}): "
                      "on this protocol such a model is broken, not merely weak. Do not use it.", ""]
        elif beaten_by:
            lines += [f"> **Warning:** test nRMSE {_f(nr)} does not beat the "
                      + ", ".join(f"{k} baseline ({_f(v)})" for k, v in beaten_by.items())
                      + " of the same protocol. Prefer that baseline unless you need this model's speed or size.", ""]
    lines += [
        "UPS latent surrogate (encoder → latent operator → Fourier decoder) for 1D viscous Burgers, selected "
        f"by the UPS Sweeps pipeline ({info.get('source', 'champion')}).", "",
        "## At a glance", "",
        "| | |", "|---|---|",
        f"| run | `{info.get('run_id') or '—'}` |",
        f"| checkpoint | `{info.get('checkpoint')}` ({_mb(info.get('checkpoint_bytes'))}) |",
        f"| parameters (inference model incl. diffusion heads) | {_f(info.get('params'))} |",
        f"| parameters in the exported forecaster | {_f(info.get('export_params'))} |",
        f"| architecture | {preset_text(cfg)}: latent {lat.get('tokens', '—')} tokens × {lat.get('dim', '—')} dims, "
        f"operator hidden {op.get('hidden_dim', '—')} depths {op.get('depths', '—')} heads {op.get('heads', '—')}, "
        f"decoder hidden {dec.get('hidden_dim', '—')} × {dec.get('num_layers', '—')} layers, encoder sees "
        f"{enc.get('context_frames', '—')} frame(s) |",
        f"| grid | {X} points (periodic, cell centres on [0, 1)) |",
        "| training stage reached | " + ("training finished (final checkpoint)" if info.get("stage") == "done" else
                                           f"{info.get('stage', '—')} (epoch {info.get('epoch', '—')})") + " |",
        "",
        "## Accuracy (test split, PDEBench protocol)", "",
        "| metric | value |", "|---|---|",
        f"| nRMSE without TTC (predicted frames) | {_f(nr)} |",
        f"| nRMSE with TTC | {_f(nr_ttc)} |",
        f"| nRMSE, PDEBench convention (copied context frames averaged in) | {_f(m.get('nrmse_pdebench'))} |",
        f"| conservation gap | {_f(m.get('conservation_gap'))} |",
        f"| energy violation | {_f(m.get('energy_violation'))} |",
        f"| BC violation | {_f(m.get('bc_violation'))} |",
        f"| ECE (diffusion ensemble) | {_f(m.get('ece'))} |",
        f"| rollout horizon (ρ ≥ 0.8, frames) | {_f(m.get('rollout_horizon'))} |",
    ]
    pdebench = [(name, m.get(key)) for key, name in PDEBENCH_NAMES.items() if m.get(key) is not None]
    if pdebench:  # as PDEBench's metric_func computes them (ups.metrics.pdebench_metric_set), without TTC
        lines.append("| PDEBench metric set, without TTC (all frames, test batches of 50) | "
                     + ", ".join(f"{name} {_f(v)}" for name, v in pdebench) + " |")
    if m.get("recon_nrmse") is not None:  # ups.reconstruction: the error a perfect latent operator would leave
        lines.append(f"| autoencoder round trip of the true frames, nRMSE (what a perfect operator would leave) | "
                     f"{_f(m.get('recon_nrmse'))} |")
    if nr is not None and nr_ttc is not None and isinstance(nr, float) and isinstance(nr_ttc, float) \
            and not math.isnan(nr) and not math.isnan(nr_ttc) and nr > 0:
        lines.append(f"| TTC change | {100 * (nr_ttc - nr) / nr:+.1f}% |")
    if baselines:
        lines += ["", "Baselines on the same protocol (reference): " +
                  ", ".join(f"{k} {_f(v)}" for k, v in baselines.items()) + "."]
    lines += ["", f"Metrics source: {info.get('metrics_source', 'not recorded')}.", "",
              "## Physics gates", "",
              f"- passed: **{_f(info.get('gate_pass'))}**",
              f"- reasons: {info.get('gate_reasons') or '—'}",
              f"- ({GATE_HELP})", "",
              "## Exported artifacts (no TTC)", "",
              "| file | format | input | output | size |", "|---|---|---|---|---|"]
    for a in info.get("artifacts", []):
        lines.append(f"| `{a['file']}` | {a['format']} | {a['input']} | {a['output']} | {_mb(a.get('bytes'))} |")
    lines += ["",
              f"`step`: one autoregressive step, context (B, {k}, {X}) → next frame (B, {X}): decode(step(encode(context))). "
              f"The encoder uses the last {enc.get('context_frames', 1)} frame(s) of the context. To roll further, append "
              "the prediction to the context and call again (this re-encodes the decoded field, unlike the rollout).",
              f"`rollout`: fixed-length latent rollout, context (B, {k}, {X}) → (B, {n_steps}, {X}), identical to "
              "`UPSModel.rollout(context, n_steps)` without TTC (encode once, step in latent space, decode every frame). "
              "The batch dimension is dynamic (1–64 tested); time and grid sizes are fixed.",
              "Test-time conditioning (TTC: physics-reward beam search over diffusion samples) is **not** part of the "
              "exports; use the PyTorch checkpoint with `ups eval` for TTC results.", "",
              "## Parity (PyTorch eager vs TorchScript vs ONNX Runtime)", "",
              f"Batch: {info.get('parity_batch', '—')}. Tolerance: max |Δ| ≤ {info.get('tolerance', 1e-5):g} against "
              "PyTorch eager float32. The float32 floor is max |eager float32 − eager float64| of the same input: the "
              "round-off of the reference itself. An autoregressive rollout amplifies round-off (PyTorch alone gives "
              "different last digits at different batch sizes), so a rollout row also passes at ≤ 10 × that floor; "
              "the one-step graph must meet the tolerance.", "",
              "| artifact | runtime | batch | max abs diff | max rel diff | float32 floor | criterion | ok |",
              "|---|---|---|---|---|---|---|---|"]
    for p in parity:
        lines.append(f"| {p['artifact']} | {p['runtime']} | {p['batch']} | {p['max_abs']:.2e} | {p['max_rel']:.2e} | "
                     f"{p.get('f32_floor', float('nan')):.1e} | {p.get('criterion', '')} | {'yes' if p['ok'] else '**NO**'} |")
    env = info.get("environment", {})
    lines += ["", "## Inference latency and throughput", "",
              f"Device: {env.get('device', '—')}; torch {env.get('torch', '—')}, onnxruntime {env.get('onnxruntime', '—')}, "
              f"{env.get('threads', '—')} intra-op thread(s); median of {env.get('repeats', '—')} timed calls after warm-up. "
              f"{env.get('note', '')}", "",
              "| artifact | runtime | device | batch | latency (ms) | throughput (samples/s) |", "|---|---|---|---|---|---|"]
    for b in bench:
        lines.append(f"| {b['artifact']} | {b['runtime']} | {b['device']} | {b['batch']} | {b['latency_ms']:.3f} | "
                     f"{b['throughput']:.1f} |")
    nu = data.get("nu")
    lines += ["", "## Data and protocol (exact)", "",
              f"- Equation: ∂t u + ∂x(u²/2) = (ν/π) ∂xx u on x ∈ [0, 1), periodic; ν = {nu} "
              f"(diffusion coefficient {nu / math.pi:.6g})" if isinstance(nu, (int, float)) else "- Equation: 1D viscous Burgers",
              f"- Data: {data.get('n', '—')} trajectories, initial conditions PDEBench `init_multi` (k_tot=4), "
              f"seed {data.get('seed', '—')}, saved on {data.get('resolution', '—')} points, t ∈ [0, {data.get('t_final', '—')}] "
              f"with {data.get('frames', '—')} frames; source: `{data.get('path') or info.get('data_source') or 'generated (content-addressed cache)'}`"
              + (f", data hash `{info['data_hash']}`" if info.get("data_hash") else ""),
              f"- Protocol (PDEBench config_Bgs.yaml): reduced_resolution {data.get('reduced_resolution', '—')}, "
              f"reduced_resolution_t {data.get('reduced_resolution_t', '—')}, initial_step {k} context frames, "
              f"autoregressive rollout over the remaining {n_steps} frames; split: test ratio {data.get('test_ratio', '—')}, "
              f"validation ratio {data.get('val_ratio', '—')} of the training part.",
              "- nRMSE: per sample and time sqrt(mean_x err²)/sqrt(mean_x true²), mean over samples then time, "
              "over the predicted frames; the PDEBench-convention number also averages the copied context frames.",
              "", "## Recommended uses", "",
              f"- Fast surrogate forecasts of 1D periodic viscous Burgers at ν = {nu} on the {X}-point grid, from "
              f"{k} context frames, up to {n_steps} frames ahead (the trained horizon).",
              "- Screening, parameter studies and warm starts where a relative error of the order of the test nRMSE "
              "above is acceptable; batch inference (see the throughput table for the best batch size).",
              "- A reference point for the sweep: compare new rounds against this card's metrics.",
              "", "## Not recommended", "",
              "- Other PDEs, other viscosities, non-periodic boundaries, other grids or time steps: the model is "
              "trained on one (ν, grid, Δt) and is not validated outside it.",
              f"- Horizons beyond {n_steps} frames, or chaining exports without checking the error growth.",
              "- Anything safety-critical or where conservation must hold exactly (see the conservation gap).",
              "- Results that need TTC: the exported graphs do not run it.",
              ]
    if info.get("gate_pass") is False and not is_round_reference(info):  # the reference is the gates' yardstick
        lines.append("- Any production use until the failed physics gates above are understood.")
    lines += ["", "## Use", "", "```python", "import numpy as np, onnxruntime as ort, torch",
              f"ctx = np.zeros((8, {k}, {X}), np.float32)  # (B, {k} context frames, {X} points)",
              "sess = ort.InferenceSession('rollout.onnx', providers=['CPUExecutionProvider'])",
              "pred = sess.run(None, {'context': ctx})[0]  # (B, n_steps, X)",
              "ts = torch.jit.load('rollout.torchscript.pt')",
              "pred_ts = ts(torch.from_numpy(ctx))", "```", "",
              f"Generated by `ups export champion` on {info.get('generated', '—')}.", ""]
    return "\n".join(lines)
