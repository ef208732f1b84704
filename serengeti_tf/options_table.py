"""What the named choices and their settings are, in words, generated from the registries.

`choices_help(registry)` is the list a CLI option's `--help` ends with; `markdown()` is the README's
table of every choice and setting (between `BEGIN` and `END`; `tests/test_registry.py` checks the
README holds exactly this, and `python -m serengeti_tf.options_table README.md` rewrites it). Both
read only the registrations (a choice's `help`, its settings dataclass: default, rule, help), so a
new choice is described everywhere by registering it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from serengeti_tf import choices
from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import write_text
from serengeti_tf.registry import Registry, Setting

BEGIN = "<!-- choices table: generated from the registries by serengeti_tf/options_table.py -->"
END = "<!-- end of the choices table -->"


def value_text(value: Any) -> str:
    """A default as YAML writes it: null, true, 0.001, [10, 8, 6, 4]."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)


def _settings_of(registry: Registry, name: str) -> list[Setting]:
    return [s for s in registry.settings() if name in s.choices]


def choices_help(registry: Registry) -> str:
    """`name: what it is (its setting keys, with scalar defaults); ...` for every registered name, in
    registration order."""
    parts = []
    for name in registry.names():
        text = name + (f": {registry.help(name)}" if registry.help(name) else "")
        settings = _settings_of(registry, name)
        if settings:
            # A list default is too long for a help line; the README's table has it.
            text += " (" + ", ".join(s.key if isinstance(s.default, list) else f"{s.key} = {value_text(s.default)}"
                                     for s in settings) + ")"
        parts.append(text)
    return "; ".join(parts) + "."


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown() -> str:
    """One table per kind of choice (its config key, each name and what it is), and one of the
    settings those choices declare (key, default, allowed values, what it sets, which choices)."""
    lines = []
    for registry in choices.ALL:
        if registry in choices.CHOSEN_BY_CODE:  # no setting names them (recipes): nothing for a user to choose
            continue
        lines += ["", f"**`{registry.key}`** ({registry.kind}; registered in `{registry.owner}`)", "",
                  "| name | what it is |", "| --- | --- |"]
        lines += [f"| `{name}` | {_cell(registry.help(name))} |" for name in registry.names()]
        if registry.settings():
            lines += ["", "| setting | default | allowed | what it sets | read by |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| `{s.key}` | `{value_text(s.default)}` | {_cell(s.allowed)} | {_cell(s.help)} | "
                      f"{', '.join(f'`{name}`' for name in s.choices)} |" for s in registry.settings()]
    return "\n".join([BEGIN, *lines, "", END])


def readme_table(text: str) -> str:
    """The generated block of a README's text (markers included)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise UserError(f"the README has no choices table between {BEGIN!r} and {END!r}")
    return text[start:end + len(END)]


def update_readme(path: str | Path) -> bool:
    """Rewrites the choices table of the README at `path`; True when it changed."""
    text = Path(path).read_text(encoding="utf-8")
    new = text.replace(readme_table(text), markdown())
    if new != text:
        write_text(Path(path), new)
    return new != text


if __name__ == "__main__":
    print("updated" if update_readme(sys.argv[1] if len(sys.argv) > 1 else "README.md") else "up to date")
