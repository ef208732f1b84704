from pathlib import Path

import pytest
import yaml

from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError


def test_defaults_are_the_papers_settings():
    config = cfg.resolve()
    assert config.train.learning_rate == 1e-3
    assert config.train.batch_size == 64
    assert config.data.split_fractions == [0.8, 0.1, 0.1]
    assert config.model.input_size == 224


def test_yaml_overrides_only_what_it_names(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\nsampler:\n  name: ros\n")
    config = cfg.resolve([path])
    assert config.train.epochs == 3 and config.sampler.name == "ros"
    assert config.train.batch_size == 64


def test_set_override_and_flag_update_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n")
    config = cfg.resolve([path], ["train.epochs=5"], [{"train": {"epochs": 7}}])
    assert config.train.epochs == 7
    assert cfg.resolve([path], ["train.epochs=5"]).train.epochs == 5


@pytest.mark.parametrize("override, message", [
    ("train.epoch=3", "unknown key 'train.epoch'"),
    ("train.epochs=abc", "train.epochs must be int, got 'abc'"),
    ("train.epochs=-3", "train.epochs must be an int >= 1, got -3"),
    ("sampler.name=smote", "sampler.name must be one of"),
    ("data.split_fractions=[0.5, 0.1, 0.1]", "data.split_fractions must be"),
])
def test_bad_values_name_the_key_and_value(override, message):
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        cfg.resolve(overrides=[override])


def test_saved_config_round_trips(tmp_path):
    config = cfg.resolve(overrides=["sampler.name=rus", "sampler.rus_cap=100"])
    cfg.save_config(config, tmp_path)
    assert cfg.load_saved(tmp_path / "config.yaml") == config


def test_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- 1\n- 2\n")
    with pytest.raises(UserError, match="must hold a mapping"):
        cfg.resolve([path])


def test_the_saved_config_keeps_its_keys_order_and_defaults():
    # tests/data/default_config.yaml: the default config.yaml as written before settings moved to
    # their choices; saved files must not change, and old ones must load.
    saved = (Path(__file__).parent / "data" / "default_config.yaml").read_text(encoding="utf-8")
    assert cfg.dump(cfg.resolve()) == saved
    assert cfg.from_dict(yaml.safe_load(saved)) == cfg.resolve()
