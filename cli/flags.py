"""The flag the user typed for each setting a library message names (`errors.setting`).

The library names settings by what they are (`overwrite`, `dataset_dir`, `train.batch_size`); the
command that runs decides how the user spells them. A setting is shown as the command's own option
of that name, else as the flag of the command that owns it (`ELSEWHERE`: experiment and demo run
training, compare evaluates), else as `--name-with-dashes`; a config key (`section.key`) no
option names stays as it is.
"""

from __future__ import annotations

from typing import Callable, Optional

import click

from serengeti_tf import errors

# Settings whose flag is not `--` + the name with dashes, for messages raised below a command that
# has no option of that name (e.g. training started by `experiment`, which has no --init).
ELSEWHERE = {
    "dataset_dir": "--data",
    "init_run": "--init",
    "learning_rate": "--lr",
    "overrides": "--set",
    "out_dir": "--out",
}


def option_flags(command: Optional[click.Command]) -> dict[str, str]:
    """{parameter name: its long flag} of `command`'s options (`--mixed-precision` for the pair)."""
    flags = {}
    for param in getattr(command, "params", ()):
        if isinstance(param, click.Option):
            long = [opt for opt in param.opts if opt.startswith("--")] or list(param.opts)
            flags[param.name] = long[0]
    return flags


def flag_namer(command: Optional[click.Command]) -> Callable[[str], str]:
    """`name -> flag` for messages shown while `command` runs (None: no command known)."""
    own = option_flags(command)

    def flag(name: str) -> str:
        if name in own:
            return own[name]
        if name in ELSEWHERE:
            return ELSEWHERE[name]
        return name if "." in name else "--" + name.replace("_", "-")

    return flag


def current_command() -> Optional[click.Command]:
    """The subcommand running now (None outside one)."""
    ctx = click.get_current_context(silent=True)
    return ctx.command if ctx is not None else None


def error_text(err: errors.UserError, command: Optional[click.Command]) -> str:
    """The one-line error as the user of `command` reads it: settings shown as its flags."""
    return err.render(flag_namer(command))


def message_text(message: str, command: Optional[click.Command] = None) -> str:
    """A progress message with its settings shown as the running command's flags."""
    return errors.render(message, flag_namer(command or current_command()))
