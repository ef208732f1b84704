"""The one exception type the CLI turns into a one-line error and a non-zero exit."""


class UserError(Exception):
    """Bad input from the user: a missing file, an invalid config value, a refused overwrite.

    The message is shown as is, on one line, so it must name the problem and what was received.
    """
