"""`serengeti-tf`: the command group. Each verb lives in its own module and is registered here."""

from __future__ import annotations

import os
import sys

import click

from serengeti_tf import __version__
from serengeti_tf.errors import UserError


class CommandError(click.ClickException):
    """A UserError (or a full disk) as Click shows it: `Error: <one line>`, exit code 2."""

    exit_code = 2


class ToolGroup(click.Group):
    """The command group; turns the library's one-line errors into `Error: ...` + exit 2, with the
    settings they name shown as the running command's flags.

    Done here rather than only in `main` so Click's own test runner (and any embedding) sees the
    same message and exit code as the console script.
    """

    def invoke(self, ctx: click.Context):
        from serengeti_tf.io_utils import disk_full_message
        from serengeti_tf_cli.flags import error_text

        try:
            return super().invoke(ctx)
        except UserError as err:
            end_progress_bars()
            command = self.get_command(ctx, ctx.invoked_subcommand) if ctx.invoked_subcommand else None
            raise CommandError(error_text(err, command)) from None
        except Exception as err:  # a full disk: OSError(ENOSPC), or TensorFlow's own error types
            message = disk_full_message(err)
            if message is None:
                raise
            end_progress_bars()
            raise CommandError(message) from None


def end_progress_bars() -> None:
    """Closes progress bars an error left open, so `Error: ...` starts on a clean line of its own
    rather than after a bar's text (a closed bar ends its line or clears it)."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


@click.group(cls=ToolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="serengeti-tf")
def cli() -> None:
    """Train camera-trap species classifiers that stay good on rare species (two-phase training)."""


def _register() -> None:
    # Imported here so `serengeti-tf --help` stays quick and each verb is one module.
    from serengeti_tf_cli import commands

    for command in commands.ALL:
        cli.add_command(command)


MISSING_TENSORFLOW = (
    "TensorFlow is not installed (serengeti-tf leaves the choice to an extra). Install one: "
    "pip install 'serengeti-tf[cpu]' on a CPU-only machine, 'serengeti-tf[gpu]' with an NVIDIA GPU, "
    "or 'serengeti-tf[tensorflow]' elsewhere (from a checkout: pip install '.[cpu]')")


def _missing_tensorflow(err: ImportError) -> bool:
    """True when the import that failed is TensorFlow itself (not some other missing module)."""
    name = getattr(err, "name", None) or ""
    return name == "tensorflow" or name.startswith("tensorflow.") or (
        not name and "tensorflow" in str(err).lower() and "no module named" in str(err).lower())


# Verbs that run TensorFlow: it is started once, quietly, before they run (`tf_start.py`).
TENSORFLOW_VERBS = frozenset({"prepare", "train", "evaluate", "compare", "experiment", "predict", "demo", "export"})


def _starts_tensorflow(args: list[str]) -> bool:
    verb = next((a for a in args if not a.startswith("-")), None)
    return verb in TENSORFLOW_VERBS and not {"-h", "--help"} & set(args)


def main(argv=None) -> None:
    # TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) buries the tool's own output.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    _register()
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if _starts_tensorflow(args):
            from serengeti_tf.tf_start import quiet_start

            quiet_start()
        cli.main(args=args, prog_name="serengeti-tf", standalone_mode=False)
    except UserError as err:  # raised before any command ran (e.g. TensorFlow's start-up)
        from serengeti_tf_cli.flags import error_text

        end_progress_bars()
        click.echo(f"Error: {error_text(err, None)}", err=True)
        sys.exit(2)
    except ImportError as err:
        if not _missing_tensorflow(err):
            raise
        click.echo(f"Error: {MISSING_TENSORFLOW}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except click.exceptions.Exit as err:
        sys.exit(err.exit_code)


if __name__ == "__main__":
    main()
