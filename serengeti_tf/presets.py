"""Shipped configs by name: `--preset paper` is `configs/paper.yaml` as installed with serengeti-tf.

`configs/` installs as the package `serengeti_tf_configs` (setup.cfg), so a preset resolves from
any folder after `pip install .`; the names are its YAML files, never a list kept here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from serengeti_tf.errors import UserError

PACKAGE = "serengeti_tf_configs"
SUFFIX = ".yaml"


def names() -> tuple[str, ...]:
    """Every shipped preset: the installed configs package's YAML files, without `.yaml`."""
    return tuple(sorted(item.name[:-len(SUFFIX)] for item in resources.files(PACKAGE).iterdir()
                        if item.name.endswith(SUFFIX)))


def path(name: str) -> Path:
    """The installed file of preset `name`; an unknown name is a one-line error listing the known ones."""
    known = names()
    if name not in known:
        raise UserError(f"unknown preset '{name}'; known: {', '.join(known)}")
    # A plain folder after `pip install .` or `-e .` (never a zip), so a real path for load_yaml.
    return Path(str(resources.files(PACKAGE) / f"{name}{SUFFIX}"))
