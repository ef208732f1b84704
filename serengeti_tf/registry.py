"""`Registry`: the names of one kind of choice (sampler, loss, ...) mapped to what builds each.

A registry is filled by its OWNER module, which registers each builder beside its code:

    @SAMPLERS.register("ros")
    def ros_targets(counts, sampler): ...

and every other place reads it: config rules, click choices, help texts and report ordering ask
`names()` / `in`, and the code that acts on a setting calls `lookup(name)`, whose one error names
the kind, the value and the known names. Adding a choice is therefore its function plus one
registration; nothing else lists the names.

The registry imports its owner the first time anyone asks it for names or a builder, so reading a
config or printing `--help` only imports the owners, never the modules their builders use. An
owner must therefore import without TensorFlow: a builder that needs TensorFlow or Keras imports
it inside its body (see `choices.py` for which module owns which kind).
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Iterator, Optional

from serengeti_tf.errors import UserError

_NO_BUILDER = object()


class Registry:
    """Names -> builders for one `kind` of choice, in registration order (the order help lists them)."""

    def __init__(self, kind: str, owner: Optional[str] = None):
        self.kind = kind
        self.owner = owner  # dotted module path that registers the builders when imported
        self._builders: dict[str, Any] = {}
        self._loaded = owner is None

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # first: the owner registers (and so calls back here) while it imports
        try:
            importlib.import_module(self.owner)
        except BaseException:
            self._loaded = False
            raise

    def register(self, name: str, builder: Any = _NO_BUILDER) -> Any:
        """`registry.register(name, builder)`, or `@registry.register(name)` above the builder.

        Returns the builder, so a decorated function stays usable under its own name.
        """
        if builder is _NO_BUILDER:
            return lambda function: self.register(name, function)
        self._load()
        if not isinstance(name, str) or not name:
            raise ValueError(f"a {self.kind} name must be a non-empty string, got {name!r}")
        if name in self._builders:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._builders[name] = builder
        return builder

    def unregister(self, name: str) -> None:
        """Removes a registration (for tests that register a toy choice and clean up after)."""
        self._load()
        del self._builders[name]

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
