"""The standard tests of a named choice, which every name of every registry gets by registering.

keras-hub gives each model the same shared test case; here each name registered in a registry of
`choices.ALL` gets the same checks, with no table to edit:

  - it is listed in `--help` of every command whose option offers the kind (a `click.Choice` over
    the registry, or an option whose help lists the registry's names),
  - config validation accepts it at every key that takes the kind's names,
  - a misspelling of it is refused: `lookup` raises the one-line `unknown <kind> '...'; known: ...`
    and each such config key the one-line `config: <key> must be ..., got ...` listing the names,
  - its builder is callable (a `lazy_function` stand-in: the function it names imports and is
    callable), or a dataclass record (an imbalance method's overrides),
  - docs/design.md mentions the kind.

Which config keys and options take a kind's names is found, not listed: a config key takes them
when validation's refusal of a name nobody registered lists them all; an option when its type is a
choice over the registry or its help is filled from it. A test module runs the checks by
subclassing `RegistryChoiceTests` (tests/test_registry.py does); a test that registers a toy
choice can call `check_choice` on it.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import types
import typing
from pathlib import Path

import click
import pytest

from serengeti_tf import choices
from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError
from serengeti_tf.registry import Registry, lazy_function

DESIGN_NOTES = Path(__file__).resolve().parents[1] / "docs" / "design.md"
_PROBE = "zz_no_such_choice"  # a value no registry holds: what config validation says of it names the kind's key
_LAZY_CODE = lazy_function("module:attribute").__code__


# ---- what is registered, and where its names show up -------------------------------------------

def every_kind() -> list:
    """One pytest param per registry of `choices.ALL`, id'd by its kind."""
    return [pytest.param(registry, id=registry.kind) for registry in choices.ALL]


def every_choice() -> list:
    """One pytest param (registry, name) per registered name, id'd `kind:name`."""
    return [pytest.param(registry, name, id=f"{registry.kind}:{name}")
            for registry in choices.ALL for name in registry.names()]


def _string_keys(section: type, prefix: str = "") -> list[tuple[str, bool]]:
    """(dotted key, takes a list) of every config field holding a string or a list of strings."""
    keys = []
    for field_name, hint in typing.get_type_hints(section).items():
        key = f"{prefix}{field_name}"
        if dataclasses.is_dataclass(hint):
            keys += _string_keys(hint, f"{key}.")
            continue
        optional = typing.get_origin(hint) in (typing.Union, types.UnionType)
        inner = [a for a in typing.get_args(hint) if a is not type(None)] if optional else [hint]
        if inner == [str]:
            keys.append((key, False))
        elif typing.get_origin(inner[0]) is list and typing.get_args(inner[0]) == (str,):
            keys.append((key, True))
    return keys


def nested(key: str, value) -> dict:
    """`{'a': {'b': value}}` for key `a.b`: a config update."""
    update: typing.Any = value
    for part in reversed(key.split(".")):
        update = {part: update}
    return update


def config_value(config: cfg.Config, key: str):
    for part in key.split("."):
        config = getattr(config, part)
    return config


@dataclasses.dataclass(frozen=True)
class ConfigKey:
    """A config key taking a kind's names: one name (`sampler.name`) or a list of them (`experiment.samplers`)."""

    key: str
    is_list: bool

    def value(self, name: str):
        return [name] if self.is_list else name


def config_keys(registry: Registry) -> list[ConfigKey]:
    """The config keys whose refusal of an unregistered name lists every name of `registry`."""
    listed = ", ".join(registry.names())
    found = []
    for key, is_list in _string_keys(cfg.Config):
        try:
            cfg.resolve(updates=[nested(key, [_PROBE] if is_list else _PROBE)])
        except UserError as err:
            if re.search(rf"{re.escape(listed)}(,|$| or\b|;)", str(err).split(", got ")[0]):
                found.append(ConfigKey(key, is_list))
    return found


def cli_group() -> click.Group:
    from serengeti_tf_cli.main import _register, cli

    _register()
    return cli


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def cli_options(registry: Registry) -> list[tuple[tuple[str, ...], click.Option]]:
    """(command path, option) of every option offering the kind: a choice over `registry`
    (`RegistryChoice`) or help filled with its names (`NamesInHelp`)."""
    return [(path, param) for path, command in _commands(cli_group()) for param in command.params
            if getattr(param.type, "registry", None) is registry or getattr(param, "names_from", None) is registry]


def help_text(command_path: tuple[str, ...]) -> str:
    """`serengeti-tf <command> --help` with its line breaks undone."""
    from click.testing import CliRunner

    result = CliRunner().invoke(cli_group(), [*command_path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return re.sub(r"\s+", " ", result.output)


def misspelt(registry: Registry, name: str) -> str:
    """`name` with its last letter doubled (or more), never a registered name."""
    bad = name + name[-1]
    while bad in registry:
        bad += "_"
    return bad


def lazy_target(builder) -> typing.Any:
    """The function a `lazy_function` stand-in names, imported; None for any other builder."""
    if getattr(builder, "__code__", None) is not _LAZY_CODE:
        return None
    names = inspect.getclosurevars(builder).nonlocals
    return getattr(importlib.import_module(names["module"]), names["attribute"])


def _mentions(text: str, word: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None


# ---- the checks ---------------------------------------------------------------------------------

def check_listed_in_help(registry: Registry, name: str) -> None:
    for path, option in cli_options(registry):
        if isinstance(option.type, click.Choice):
            assert name in option.type.choices, f"{' '.join(path)} {option.opts[-1]} does not accept {name!r}"
        assert _mentions(help_text(path), name), f"`{' '.join(path)} --help` does not list {name!r}"


def check_config_accepts(registry: Registry, name: str) -> None:
    for key in config_keys(registry):
        config = cfg.resolve(updates=[nested(key.key, key.value(name))])
        assert config_value(config, key.key) == key.value(name)


def check_misspelling_refused(registry: Registry, name: str) -> None:
    bad = misspelt(registry, name)
    with pytest.raises(UserError) as raised:
        registry.lookup(bad)
    assert str(raised.value) == f"unknown {registry.kind} {bad!r}; known: {', '.join(registry.names())}"
    for key in config_keys(registry):
        with pytest.raises(UserError) as raised:
            cfg.resolve(updates=[nested(key.key, key.value(bad))])
        message = str(raised.value)
        assert "\n" not in message and message.startswith(f"config: {key.key} must be "), message
        assert message.endswith(f", got {key.value(bad)!r}") and _mentions(message, name), message


def check_builder(registry: Registry, name: str) -> None:
    builder = registry.lookup(name)
    target = lazy_target(builder)
    if target is not None:
        assert callable(target), f"{registry.kind} {name!r}: the lazy builder names {target!r}, not a function"
    else:
        assert callable(builder) or (dataclasses.is_dataclass(builder) and not isinstance(builder, type)), \
            f"{registry.kind} {name!r}: builder {builder!r} is neither callable nor a dataclass record"


def check_documented(registry: Registry) -> None:
    kind = registry.kind.lower()
    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    text = re.sub(r"\s+", " ", DESIGN_NOTES.read_text(encoding="utf-8").lower())
    assert _mentions(text, kind) or _mentions(text, plural), f"docs/design.md does not mention {registry.kind}s"


def check_choice(registry: Registry, name: str) -> None:
    """Every per-name check, for a test that registered a toy choice itself."""
    check_listed_in_help(registry, name)
    check_config_accepts(registry, name)
    check_misspelling_refused(registry, name)
    check_builder(registry, name)


class RegistryChoiceTests:
    """Subclass as `class TestEveryChoice(RegistryChoiceTests)` in a test module to run the standard
    checks on every registered name (ids `kind:name`) and kind."""

    @pytest.mark.parametrize("registry, name", every_choice())
    def test_listed_in_help(self, registry, name):
        check_listed_in_help(registry, name)

    @pytest.mark.parametrize("registry, name", every_choice())
    def test_accepted_by_config_validation(self, registry, name):
        check_config_accepts(registry, name)

    @pytest.mark.parametrize("registry, name", every_choice())
    def test_misspelling_refused_in_one_line(self, registry, name):
        check_misspelling_refused(registry, name)

    @pytest.mark.parametrize("registry, name", every_choice())
    def test_builder_callable_or_loadable(self, registry, name):
        check_builder(registry, name)

    @pytest.mark.parametrize("registry", every_kind())
    def test_choice_options_offer_the_names_in_order(self, registry):
        for path, option in cli_options(registry):
            if isinstance(option.type, click.Choice):
                offered = tuple(option.type.choices)
                assert offered[len(offered) - len(registry.names()):] == registry.names(), (path, offered)

    @pytest.mark.parametrize("registry", every_kind())
    def test_kind_documented_in_design_notes(self, registry):
        check_documented(registry)

    @pytest.mark.parametrize("registry", every_kind())
    def test_kind_has_names_and_is_set_somewhere(self, registry):
        assert registry.names(), f"no {registry.kind} registered"
        assert config_keys(registry) or cli_options(registry), \
            f"neither a config key nor a command-line option takes {registry.kind} names"
