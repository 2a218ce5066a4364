import re

import pytest

from ups.config import PRESET_DIMS, ConfigError, apply_overrides, load_config


def test_defaults_and_override():
    cfg = load_config(["preset=dim64", "stages.operator.optimizer.lr=3e-4"])
    assert cfg.latent.dim == 64 and cfg.latent.tokens == 32
    assert cfg.operator.hidden_dim == 128 and cfg.operator.input_dim == 64
    assert cfg.diffusion.latent_dim == 64
    assert cfg.stages.operator.optimizer.lr == pytest.approx(3e-4)


@pytest.mark.parametrize("dim", PRESET_DIMS)
def test_presets_follow_scaling_rules(dim):
    cfg = load_config([f"preset=dim{dim}"])
    assert cfg.operator.hidden_dim == 2 * dim
    assert cfg.operator.hidden_dim % cfg.operator.heads == 0
    assert cfg.operator.hidden_dim % cfg.operator.group_size == 0


def test_misspelt_key_names_nearest():
    with pytest.raises(ConfigError, match="stages.operator.optimizer.lr"):
        load_config(["stages.operator.optimzer.lr=1e-3"])
    with pytest.raises(ConfigError, match="ttc.candidates"):
        apply_overrides(load_config(), {"ttc.candidatez": 3})


def test_a_hydra_sweep_list_is_refused_with_where_sweeps_go():
    """`stages.operator.epochs=2,3` (Hydra's multirun syntax) got Hydra's advice to add --multirun, which the
    sweep scripts do not use: the fix now points at the search space."""
    with pytest.raises(ConfigError, match=r"'stages.operator.epochs=2,3' lists several values\. Fix: one value "
                                          r"\(stages.operator.epochs=2\).*search_spaces/<round>.yaml"):
        load_config(["stages.operator.epochs=2,3"])


@pytest.mark.parametrize("typed, meant", [
    ("stages.operator.lr", "stages.operator.optimizer.lr"),  # spelling alone offered '…operator.scheduler'
    ("stages.operator.optimizer.optimizer.lr", "stages.operator.optimizer.lr"),
    ("ttc.mass", "ttc.weights.mass"),
])
def test_a_key_one_section_off_names_the_key_with_the_same_leaf(typed, meant):
    with pytest.raises(ConfigError, match=rf"Did you mean '{re.escape(meant)}'\?"):
        load_config([f"{typed}=1"])


@pytest.mark.parametrize("ov,key", [
    (["operator.heads=5"], "operator.heads"),
    (["data.nu=-1"], "data.nu"),
    (["ttc.beam_width=9", "ttc.candidates=4"], "ttc.beam_width"),
    (["preset=dim7"], r"unknown preset 'dim7'\. Fix: preset=<one of dim8, dim16"),
    # Path("s3://b/x") is the local ./s3:/b/x: 'file not found', or a run written there
    (["data.path=s3://b/d.hdf5"], "'data.path' = 's3://b/d.hdf5' is a URI: the data is read from a local HDF5 file. Fix"),
    (["data.cache_dir=s3://b/c"], "'data.cache_dir' = 's3://b/c' is a URI"),
    (["run.out_dir=s3://b/runs"], "'run.out_dir' = 's3://b/runs' is a URI"),
    (["eval.out_dir=gs://b/e"], "'eval.out_dir' = 'gs://b/e' is a URI"),
    # ran before, or failed only once the data loaded or a trial started
    (["data.seed=-1"], "'data.seed' = -1 must be ≥ 0. Fix"),
    (["training.seed=-1"], "'training.seed' = -1 must be ≥ 0. Fix"),
    (["data.t_final=0"], "'data.t_final'"),
    (["data.frames=1"], "'data.frames'"),
    (["data.test_ratio=1.5"], r"'data.test_ratio' = 1.5 must be in \(0, 1\)"),
    (["data.reduced_resolution=0"], "Fix: use data.reduced_resolution=1"),
    (["data.initial_step=0"], "'data.initial_step'"),
    (["training.val_max_samples=0"], r"'training.val_max_samples' = 0 must be -1 \(all\) or ≥ 1"),
    (["eval.max_samples=-2"], r"'eval.max_samples' = -2 must be -1 \(all\), 0"),
    (["stages.operator.optimizer.weight_decay=-0.1"], "'stages.operator.optimizer.weight_decay' must be ≥ 0"),
    # exactly at the limit: each was accepted by a check one step too loose
    (["diffusion.sigma_min=1.0", "diffusion.sigma_max=1.0"], "'diffusion.sigma_min' = 1.0 must be below"),
    (["ttc.beam_width=5", "ttc.candidates=4"], "'ttc.beam_width' = 5 exceeds ttc.candidates = 4"),
    (["ttc.gamma=0"], r"'ttc.gamma' = 0.0 must be in \(0, 1\]"),
    (["stages.operator.warmup_steps_ratio=1.0"], r"'stages.operator.warmup_steps_ratio' must be in \[0,1\)"),
    (["data.nu=0"], "'data.nu' = 0.0 must be > 0"),
    (["stages.operator.optimizer.betas=[0.9,1.0]"], r"'stages.operator.optimizer.betas' = \[0.9, 1.0\] is invalid"),
    (["latent.dim=0"], "'latent.dim' must be ≥ 1"),
])
def test_bad_values_refused(ov, key):
    with pytest.raises(ConfigError, match=key.split(".")[-1] if " " not in key else key):
        load_config(ov)


@pytest.mark.parametrize("ov,fix", [
    ("stages.operator.epochs=x", "Fix: give an integer (the default: stages.operator.epochs=15)"),
    ("stages.operator.optimizer.lr=abc", "Fix: give a number"),
    ("stages.operator.optimizer.betas=5", "Fix: give a list"),
])
def test_wrong_type_names_key_and_fix(ov, fix):
    with pytest.raises(ConfigError) as e:
        load_config([ov])
    assert ov.split("=")[0] in str(e.value) and fix in str(e.value)
    key, value = ov.split("=")
    with pytest.raises(ConfigError) as e:
        apply_overrides(load_config(["stages.operator.epochs=7"]), {key: value})
    assert key in str(e.value) and fix.split(" (")[0] in str(e.value)


@pytest.mark.parametrize("ov,key,fix", [
    # each raised ZeroDivisionError in validate_config, or was accepted and failed in every trial / was ignored
    (["operator.heads=0"], "operator.heads", "operator.heads=4"),
    (["operator.group_size=0"], "operator.group_size", "operator.group_size=8"),
    (["operator.hidden_dim=0"], "operator.hidden_dim", "operator.hidden_dim=64"),
    (["operator.heads=-4"], "operator.heads", "operator.heads=4"),
    (["operator.drop_path=1.5"], "operator.drop_path", "operator.drop_path=0.1"),
    (["training.lambda_rollout=-1"], "training.lambda_rollout", "training.lambda_rollout=1.0"),
    (["training.lambda_field=-0.1"], "training.lambda_field", "training.lambda_field=0"),
    (["training.device=gpu"], "training.device", "training.device=auto"),
    (["training.amp=fp16"], "training.amp", "training.amp=none or training.amp=bf16"),
    (["stages.operator.optimizer.name=sgdd"], "stages.operator.optimizer.name", "stages.operator.optimizer.name=adamw"),
    (["stages.diff_residual.grad_clip=-1"], "stages.diff_residual.grad_clip", "stages.diff_residual.grad_clip=1.0"),
    (["diffusion.sigma_min=2", "diffusion.sigma_max=1"], "diffusion.sigma_min", "diffusion.sigma_max=1.0"),
    (["stages.autoencoder.epochs=0", "stages.operator.epochs=0", "stages.diff_residual.epochs=0",
      "stages.consistency_distill.epochs=0"], "stages.*.epochs", "stages.operator.epochs=15"),
    (["stages.diff_residual.epochs=0"], "stages.consistency_distill.epochs",  # it diverged at batch 1
     "stages.consistency_distill.epochs=0 as well"),
    (["training.num_threads=-1"], "training.num_threads", "training.num_threads=2"),  # was read as 1, silently
])
def test_unusable_values_refused_naming_key_and_fix(ov, key, fix):
    with pytest.raises(ConfigError) as e:
        load_config(ov)
    msg = str(e.value)
    assert f"'{key}'" in msg and "Fix:" in msg and fix in msg, msg
    with pytest.raises(ConfigError, match=re.escape(f"'{key}'")):  # the sweeps' path (sampled values)
        apply_overrides(load_config(), dict(o.split("=") for o in ov))


@pytest.mark.parametrize("ov", [["training.device=cuda:1"], ["training.amp=bf16"], ["stages.operator.grad_clip=0"],
                                ["stages.operator.epochs=0"], ["operator.drop_path=0.5"],
                                ["ttc.beam_width=4", "ttc.candidates=4"]])
def test_usable_edge_values_still_accepted(ov):
    from ups.config import to_dict

    key, value = ov[0].split("=")
    node = to_dict(load_config(ov))
    for part in key.split("."):
        node = node[part]
    assert str(node) == value or float(node) == float(value), (key, node)  # accepted and applied


def test_every_value_rule_names_a_schema_key():
    from ups.config import VALUE_RULES, all_keys

    assert {k for k, *_ in VALUE_RULES} <= set(all_keys())


def test_the_config_hash_ignores_where_a_run_executes() -> None:
    """The same trial config got another config_hash on a machine with another cache folder, device or thread
    count (or after a resume that changed them); what it trains still changes the hash."""
    from ups.config import apply_overrides, config_hash, load_config

    base = load_config([])
    h = config_hash(base)
    for key, value in (("data.cache_dir", "/scratch/other"), ("training.num_threads", 7), ("training.device", "cuda")):
        assert config_hash(apply_overrides(base, {key: value}, source="t")) == h, key
    assert config_hash(apply_overrides(base, {"training.seed": 3}, source="t")) != h
    assert config_hash(apply_overrides(base, {"data.n": 64}, source="t")) != h


def test_an_unknown_key_whose_leaf_several_keys_share_lists_them() -> None:
    """`training.epochs=3` was offered `training.amp`, `lr=1e-3` the autoencoder's lr (round A searches the
    operator's): a leaf every stage has now lists those keys."""
    from ups.config import did_you_mean

    assert "'stages.operator.epochs'" in did_you_mean("training.epochs") and "training.amp" not in \
        did_you_mean("training.epochs")
    assert "one of" in did_you_mean("lr") and "'stages.operator.optimizer.lr'" in did_you_mean("lr")
    assert did_you_mean("stages.operator.lr") == " Did you mean 'stages.operator.optimizer.lr'?"
    assert did_you_mean("num_sample", ["num_samples", "name"]) == " Did you mean 'num_samples'?"


@pytest.mark.parametrize("ov,fix", [(["latent.tokens=512"], "latent.tokens ≤ 256, or a finer grid"),
                                    (["data.resolution=256", "data.reduced_resolution=32"], "latent.tokens ≤ 8")])
def test_more_latent_tokens_than_grid_points_is_refused_where_a_model_is_built(ov, fix):
    """Every trial failed inside Ray (the encoder's ValueError) and ups train ended in a traceback. Commands that
    build no model (data, baselines) still load such a config: tests read 16-point grids with the default model."""
    from ups.config import check_model_grid

    cfg = load_config(ov)
    with pytest.raises(ConfigError, match="'latent.tokens' = (512|16) exceeds") as e:
        check_model_grid(cfg)
    assert "Fix: " + fix in str(e.value), str(e.value)
    check_model_grid(load_config(["latent.tokens=256"]))
