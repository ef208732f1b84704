"""The one exception type the CLI turns into a one-line error and a non-zero exit, and how a
message names a setting.

The library names a setting by what it is (a parameter such as `overwrite`, a config key such as
`train.batch_size`), never by a command-line flag: `setting(name)` marks the name inside a message,
and the CLI shows each marked name as the flag of the command the user typed (`render`).
"""

from __future__ import annotations

import re
from typing import Callable

# Control characters no path or value in a message carries; they only bracket a setting's name.
_OPEN, _CLOSE = "\x02", "\x03"
_SETTING = re.compile(f"{_OPEN}([^{_OPEN}{_CLOSE}]*){_CLOSE}")


def setting(name: str) -> str:
    """`name` marked as a setting inside a message (rendered by `render`)."""
    if not name or _OPEN in name or _CLOSE in name:
        raise ValueError(f"a setting name must be non-empty text without control characters, got {name!r}")
    return f"{_OPEN}{name}{_CLOSE}"


def settings_in(text: str) -> list[str]:
    """The names of the settings `text` marks, in order."""
    return _SETTING.findall(text)


def render(text: str, name_of: Callable[[str], str] = str) -> str:
    """`text` with each marked setting shown as `name_of(name)` (its plain name by default)."""
    return _SETTING.sub(lambda match: name_of(match.group(1)), text)


class UserError(Exception):
    """Bad input from the user: a missing file, an invalid config value, a refused overwrite.

    The message is shown as is, on one line, so it must name the problem and what was received.
    Settings in it are marked with `setting(name)`: `str(err)` shows their plain names, the CLI
    shows its flags (`err.render(name_of)`); `err.settings` lists them.
    """

    @property
    def message(self) -> str:
        """The message with its setting marks (for a caller that renders them itself)."""
        return str(self.args[0]) if self.args else ""

    @property
    def settings(self) -> list[str]:
        return settings_in(self.message)

    def render(self, name_of: Callable[[str], str] = str) -> str:
        return render(self.message, name_of)

    def __str__(self) -> str:
        return self.render()
