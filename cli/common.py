"""Options and helpers every command shares."""

from __future__ import annotations

import functools
from typing import Any, Callable

import click

from serengeti_tf import config as cfg
from serengeti_tf import presets
from serengeti_tf.options_table import choices_help, value_text
from serengeti_tf.registry import Registry


class OutputPath(click.Path):
    """`click.Path` for an output: an empty string is refused (it would mean the working folder or a
    default, silently)."""

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.strip():
            self.fail("must not be empty (got '')", param, ctx)
        return super().convert(value, param, ctx)


# Seeds that are not config keys (demo, demo-data): the config's seed range, checked by click.
SEED = click.IntRange(0, cfg.SEED_LIMIT - 1)


class RegistryChoice(click.Choice):
    """`click.Choice` over `extra` and a registry's names, read when click needs them (not at import),
    so a choice registered later is accepted and listed in --help too."""

    def __init__(self, registry: Registry, *extra: str):
        self.registry, self.extra = registry, extra
        super().__init__(())

    @property
    def choices(self) -> tuple[str, ...]:
        return (*self.extra, *self.registry.names())

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns it; the registry is the source
        pass


class NamesInHelp(click.Option):
    """An option whose help has `{names}` replaced by a registry's names when help is shown
    (`@click.option(..., cls=NamesInHelp, names_from=REGISTRY, help="... {names} ...")`)."""

    def __init__(self, *args, names_from: Registry, **kwargs):
        super().__init__(*args, **kwargs)
        self.names_from = names_from

    def get_help_record(self, ctx: click.Context):
        record = super().get_help_record(ctx)
        if record is None:
            return None
        return record[0], record[1].replace("{names}", ", ".join(self.names_from.names()))


class ChoiceOption(click.Option):
    """An option taking one of a registry's names (`RegistryChoice`), whose help has `{choices}`
    replaced, when help is shown, by what each name is and its settings (`options_table.choices_help`):
    `@click.option("--loss", cls=ChoiceOption, registry=LOSSES, help="Training loss: {choices}")`."""

    def __init__(self, *args, registry: Registry, extra: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, type=RegistryChoice(registry, *extra), **kwargs)
        self.registry = registry

    def get_help_record(self, ctx: click.Context):
        record = super().get_help_record(ctx)
        if record is None:
            return None
        return record[0], record[1].replace("{choices}", choices_help(self.registry))


class SettingOption(click.Option):
    """A flag for one registered choice setting (`setting="train.focal_gamma"`): its help is the
    setting's own help and default, read from the registry when help is shown."""

    def __init__(self, *args, setting: str, **kwargs):
        super().__init__(*args, **kwargs)
        self.setting = setting

    def get_help_record(self, ctx: click.Context):
        section, name = self.setting.rsplit(".", 1)
        declared = cfg.registered_settings(section)[name]
        record = super().get_help_record(ctx)
        text = f"{declared.help[:1].upper()}{declared.help[1:]} ({', '.join(declared.choices)}; {self.setting}). " \
               f"[default: {value_text(declared.default)}]"
        return record[0], text


def config_options(func: Callable) -> Callable:
    """Adds `--preset NAME`, `--config FILE` (repeatable, later wins) and `--set section.key=value`.

    The command receives the preset as the first of its `config_files`, so the order is
    preset -> --config files -> --set -> the command's own flags (later wins).
    """

    @click.option("--preset", type=click.Choice(presets.names()), default=None,
                  help="A config shipped with serengeti-tf, by name (works from any folder); "
                       "read first, so --config, --set and flags override it.")
    @click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
                  help="YAML config file(s); each overrides only the keys it names.")
    @click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                  help="Override one config value, e.g. --set train.epochs=3.")
    @functools.wraps(func)
    def wrapper(*args, preset=None, config_files=(), **kwargs):
        preset_files = (presets.path(preset),) if preset else ()
        return func(*args, config_files=preset_files + tuple(config_files), **kwargs)

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
    """Defaults -> YAML files (a --preset first) -> --set overrides -> dedicated flags."""
    return cfg.resolve(config_files, overrides, [flag_updates(flags or {})])


def crop_settings_given(config_files, overrides) -> bool:
    """True when the user set crop settings (a --config file or a `--set data.crops.*`); otherwise the
    commands that cut detector crops use the run's or dataset's own `data.crops`."""
    return bool(config_files) or any(o.strip().startswith("data.crops.") for o in overrides)
