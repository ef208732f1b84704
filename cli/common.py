"""Options and helpers every command shares."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from serengeti_tf import config as cfg


def config_options(func: Callable) -> Callable:
    """Adds `--config FILE` (repeatable, later wins) and `--set section.key=value` (repeatable)."""

    @click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
                  help="YAML config file(s); each overrides only the keys it names.")
    @click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                  help="Override one config value, e.g. --set train.epochs=3.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)

    return wrapper


def flag_updates(mapping: dict[str, Any]) -> dict:
    """Turns `{'train.epochs': 3, 'sampler.name': None}` into a nested update, skipping unset flags."""
    update: dict = {}
    for key, value in mapping.items():
        if value is None or value == ():
            continue
        section, name = key.split(".")
        update.setdefault(section, {})[name] = list(value) if isinstance(value, tuple) else value
    return update


def resolve_config(config_files, overrides, flags: dict[str, Any] | None = None) -> cfg.Config:
    """Defaults -> YAML files -> --set overrides -> dedicated flags."""
    return cfg.resolve(config_files, overrides, [flag_updates(flags or {})])
