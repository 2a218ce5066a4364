"""``load_config`` composes each distinct (config folder, overrides) once and hands out copies: a copy a caller
changes, an edited config file, or a bad override must not leak through that cache."""
import shutil

import pytest
from omegaconf import OmegaConf

from ups.config import CONF_DIR, ConfigError, _compose_uncached, load_config


def test_a_changed_config_does_not_reach_the_next_load():
    first = load_config(["preset=dim16"])
    first.stages.operator.epochs = 99
    first.operator.depths.append(7)
    again = load_config(["preset=dim16"])
    assert again.stages.operator.epochs != 99 and list(again.operator.depths) == [1, 1, 1]
    assert again is not first


def test_a_cached_load_is_the_fresh_compose():
    overrides = ["preset=dim8", "stages.operator.epochs=3", "run.tags=[a,b]"]
    load_config(overrides)
    cached = load_config(overrides)
    fresh = _compose_uncached(overrides, "train", CONF_DIR)
    OmegaConf.resolve(fresh)
    assert OmegaConf.to_yaml(cached) == OmegaConf.to_yaml(fresh)
    assert OmegaConf.is_struct(cached) and OmegaConf.get_type(cached) is OmegaConf.get_type(fresh)
    with pytest.raises(Exception, match="Key 'no_such_key' not in 'UPSConfig'"):
        cached.no_such_key = 1


def test_an_edited_config_file_is_composed_again(tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF_DIR, conf)
    assert load_config(["preset=dim32"], config_dir=conf).latent.tokens == 16
    preset = conf / "preset" / "dim32.yaml"
    preset.write_text(preset.read_text().replace("tokens: 16", "tokens: 8\n# edited"))
    assert load_config(["preset=dim32"], config_dir=conf).latent.tokens == 8


def test_a_bad_override_fails_every_time():
    for _ in range(2):
        with pytest.raises(ConfigError, match="Did you mean 'stages.operator.optimizer.lr'"):
            load_config(["stages.operator.optimzer.lr=1e-3"])
    for _ in range(2):  # composes, then fails validation: the cached compose is validated again
        with pytest.raises(ConfigError, match="operator.heads"):
            load_config(["operator.heads=5"])
