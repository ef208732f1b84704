"""`Registry`: the names of one kind of choice (sampler, loss, ...) mapped to what builds each.

A registry is filled by its OWNER module, which registers each builder beside its code:

    @SAMPLERS.register("ros")
    def ros_targets(counts, sampler): ...

and every other place reads it: config rules, click choices, help texts and report ordering ask
`names()` / `in`, and the code that acts on a setting calls `lookup(name)`, whose one error names
the kind, the value and the known names. Adding a choice is therefore its function plus one
registration; nothing else lists the names.

A choice may bring settings: a small dataclass registered with it (TF Model Garden's one-of
pattern), each field made with `setting_field(default, rule, allowed, help)` so its validation
rule and help text sit beside it:

    @dataclass(frozen=True)
    class FocalSettings:
        focal_gamma: float = setting_field(2.0, lambda v: v >= 0, "a float >= 0", "focusing exponent")

    @LOSSES.register("focal", settings=FocalSettings, help="down-weights easy images")
    def focal(train_config, counts, weights): ...

A field's name is its config key in the registry's section (`train.focal_gamma`, beside
`train.loss`), so config files keep the flat keys they always had. Config validation, `--set`,
the CLI's help and the README's option table read these settings (`config.py`,
`options_table.py`); a builder reads its values with `registry.settings_for(name, section)`.
Several choices may share one settings class (ROS's thresholds serve `ros` and both ROS&RUS).

The registry imports its owner the first time anyone asks it for names or a builder, so reading a
config or printing `--help` only imports the owners, never the modules their builders use. An
owner must therefore import without TensorFlow: a builder that needs TensorFlow or Keras imports
it inside its body (see `choices.py` for which module owns which kind).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
import typing
from typing import Any, Callable, Iterator, Optional

from serengeti_tf.errors import UserError

_NO_BUILDER = object()
# The keys of a `setting` field's metadata.
_RULE, _ALLOWED, _HELP = "rule", "allowed", "help"


def setting_field(default: Any, rule: Callable[[Any], bool], allowed: str | Callable[[], str], help: str) -> Any:
    """A field of a choice's settings dataclass: its default, validation rule (a predicate on the
    value, after type checking), what the rule allows (the error's wording: `must be <allowed>`;
    a function giving it when it lists names registered later) and a one-line help text. A list
    default is copied for every instance."""
    metadata = {_RULE: rule, _ALLOWED: allowed, _HELP: help}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda: copy.deepcopy(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class Setting:
    """One config key a choice's settings declare: `key` (full, `train.focal_gamma`), its type,
    default, rule and texts, and the choices that read it."""

    key: str
    type: Any
    default: Any
    rule: Callable[[Any], bool]
    allowed_text: str | Callable[[], str]
    help: str
    choices: tuple[str, ...]

    @property
    def allowed(self) -> str:
        """What the rule allows, e.g. `a float >= 0`."""
        return self.allowed_text() if callable(self.allowed_text) else self.allowed_text

    @property
    def name(self) -> str:
        """The key inside its section (`focal_gamma`)."""
        return self.key.rsplit(".", 1)[1]

    @property
    def section(self) -> str:
        return self.key.rsplit(".", 1)[0]

    def fresh_default(self) -> Any:
        return copy.deepcopy(self.default)


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise ValueError(f"settings field {field.name!r} has no default; every setting needs one")


class Registry:
    """Names -> builders for one `kind` of choice, in registration order (the order help lists them).

    `key` is the config key that names the choice (`train.loss`); its section is where the
    choices' settings live.
    """

    def __init__(self, kind: str, owner: Optional[str] = None, key: Optional[str] = None):
        self.kind = kind
        self.owner = owner  # dotted module path that registers the builders when imported
        self.key = key
        self._builders: dict[str, Any] = {}
        self._settings: dict[str, Optional[type]] = {}
        self._help: dict[str, str] = {}
        self._declared: Optional[tuple[Setting, ...]] = None  # `settings()`, until the next (un)registration
        self._loaded = owner is None

    @property
    def section(self) -> Optional[str]:
        """The config section of `key` (`train` for `train.loss`, `data.crops` for `data.crops.select`)."""
        return None if self.key is None else self.key.rsplit(".", 1)[0]

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # first: the owner registers (and so calls back here) while it imports
        try:
            importlib.import_module(self.owner)
        except BaseException:
            self._loaded = False
            raise

    def register(self, name: str, builder: Any = _NO_BUILDER, *, settings: Optional[type] = None,
                 help: str = "") -> Any:
        """`registry.register(name, builder)`, or `@registry.register(name)` above the builder.

        `settings`: the choice's settings dataclass (fields made with `setting`), if it has any;
        `help`: a one-line description for `--help` and the README's option table.
        Returns the builder, so a decorated function stays usable under its own name.
        """
        if builder is _NO_BUILDER:
            return lambda function: self.register(name, function, settings=settings, help=help)
        self._load()
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._builders:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        if settings is not None:
            self._check_settings(name, settings)
        self._builders[name] = builder
        self._settings[name] = settings
        self._help[name] = help
        self._declared = None
        return builder

    def _check_settings(self, name: str, settings: type) -> None:
        if self.key is None:
            raise ValueError(f"{self.kind} {name!r} has settings but the registry has no config key")
        if not dataclasses.is_dataclass(settings):
            raise ValueError(f"the settings of {self.kind} {name!r} must be a dataclass, got {settings!r}")
        declared = {s.key: s for s in self.settings()}
        for field in dataclasses.fields(settings):
            if not {_RULE, _ALLOWED, _HELP} <= set(field.metadata):
                raise ValueError(f"settings field {settings.__name__}.{field.name} of {self.kind} {name!r} "
                                 f"must be made with registry.setting_field(default, rule, allowed, help)")
            other = declared.get(f"{self.section}.{field.name}")
            if other is not None and (other.default, other.help) != (_default_of(field), field.metadata[_HELP]):
                raise ValueError(f"{self.kind} {name!r} declares {other.key} unlike {', '.join(other.choices)} "
                                 f"(share their settings class instead)")

    def unregister(self, name: str) -> None:
        """Removes a registration (for tests that register a toy choice and clean up after)."""
        self._load()
        del self._builders[name]
        del self._settings[name]
        del self._help[name]
        self._declared = None

    def help(self, name: str) -> str:
        """The one-line description `name` was registered with ("" when none)."""
        self.lookup(name)
        return self._help[name]

    def settings_class(self, name: str) -> Optional[type]:
        """The settings dataclass `name` was registered with, or None."""
        self.lookup(name)
        return self._settings[name]

    def settings(self) -> tuple[Setting, ...]:
        """Every config key the choices' settings declare, once each, in registration order."""
        self._load()
        if self._declared is None:
            self._declared = self._collect_settings()
        return self._declared

    def _collect_settings(self) -> tuple[Setting, ...]:
        found: dict[str, Setting] = {}
        for name, settings in self._settings.items():
            if settings is None:
                continue
            hints = typing.get_type_hints(settings)
            for field in dataclasses.fields(settings):
                key = f"{self.section}.{field.name}"
                if key in found:
                    found[key] = dataclasses.replace(found[key], choices=(*found[key].choices, name))
                    continue
                found[key] = Setting(key, hints[field.name], _default_of(field), field.metadata[_RULE],
                                     field.metadata[_ALLOWED], field.metadata[_HELP], (name,))
        return tuple(found.values())

    def settings_for(self, name: str, section: Any) -> Any:
        """An instance of `name`'s settings class with the values of the config `section` object
        (`config.train` for a loss); None when `name` has no settings."""
        settings = self.settings_class(name)
        if settings is None:
            return None
        return settings(**{f.name: getattr(section, f.name) for f in dataclasses.fields(settings)})

    def lookup(self, name: str) -> Any:
        """The builder registered as `name`; UserError `unknown <kind> 'name'; known: ...` otherwise."""
        self._load()
        try:
            return self._builders[name]
        except (KeyError, TypeError):
            raise UserError(f"unknown {self.kind} {name!r}; known: {', '.join(self._builders)}") from None

    def names(self) -> tuple[str, ...]:
        """Every registered name, in registration order."""
        self._load()
        return tuple(self._builders)

    def one_of(self, *extra: str) -> str:
        """`one of a, b, c` over `extra` and the names: the wording of config errors and help."""
        return "one of " + ", ".join((*extra, *self.names()))

    def __contains__(self, name: object) -> bool:
        self._load()
        try:
            return name in self._builders
        except TypeError:  # an unhashable value (a list from YAML) is no name
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, owner={self.owner!r})"


def lazy_function(path: str) -> Callable[..., Any]:
    """A stand-in for the function at `'package.module:function'` that imports it on the first call.

    For registering a builder that lives in a module too heavy (or too circular) to import when the
    names are listed.
    """
    module, _, attribute = path.partition(":")

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), attribute)(*args, **kwargs)

    call.__name__ = call.__qualname__ = attribute
    call.__doc__ = f"`{path}`, imported when first called."
    return call
