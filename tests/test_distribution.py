"""The Keras version range setup.cfg declares, and the guard at the private-method patch site."""

from __future__ import annotations

import configparser
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from serengeti_tf.errors import UserError

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


def declared_keras() -> Requirement:
    parser = configparser.ConfigParser()
    parser.read(SETUP_CFG, encoding="utf-8")
    lines = [line.strip() for line in parser["options"]["install_requires"].splitlines()]
    (keras,) = [Requirement(line) for line in lines if line and not line.startswith("#")
                and Requirement(line).name == "keras"]
    return keras


def test_installed_keras_is_inside_the_declared_tested_range():
    requirement = declared_keras()
    assert requirement.specifier, "keras must carry a tested version range"
    assert any(spec.operator == "<" for spec in requirement.specifier), "the range needs an upper bound"
    installed = metadata.version("keras")
    assert requirement.specifier.contains(installed, prereleases=True), (installed, str(requirement))


def test_installed_keras_has_the_private_methods_the_multi_worker_patch_uses():
    import keras

    from serengeti_tf.train import distribution

    model = keras.Sequential([keras.layers.Dense(2)])
    distribution.require_patched_keras_methods(model)  # no error on the tested Keras


def test_missing_private_keras_method_is_one_line_naming_the_tested_range():
    from serengeti_tf.train import distribution

    class KerasWithoutTheMethods:
        pass

    with pytest.raises(UserError, match=r"Model\._maybe_symbolic_build, Model\._symbolic_build") as error:
        distribution.require_patched_keras_methods(KerasWithoutTheMethods())
    assert "\n" not in str(error.value)
    assert all(str(spec) in str(error.value) for spec in declared_keras().specifier)  # names the tested range
