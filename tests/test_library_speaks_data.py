"""The library names settings, not flags, and reports progress as events; the CLI renders both."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click

from serengeti_tf import errors, events
from serengeti_tf_cli.flags import error_text, flag_namer
from serengeti_tf_cli.progress import event_line

LIBRARY = Path(__file__).resolve().parents[1] / "serengeti_tf"
FLAG = re.compile(r"(?<![\w-])--[a-z]")

# String literals that must keep their flag text, each for a reason outside the library's messages:
ALLOWED = {
    # Values written into output files (fingerprints, folder kinds, the demo data's README): changing
    # them would change what is on disk and what earlier outputs are recognised by.
    "serengeti-tf predict --detections",
    "serengeti-tf predict --camtrap-dp-out",
    "prepare with --config config.yaml",
    "prepare --detections for crops",
    "serengeti-tf prepare PREPARED_DIR --config",
    "(add --preset demo",
    "--strip-prefix ",  # detections notes, written into the crop report and predict's summary JSON
    "); pass --strip-prefix",
    # Apache Beam's own pipeline options, passed through to Beam (not serengeti-tf flags).
    "--direct_running_mode=in_memory",
    "--runner=DirectRunner",
}


def _docstring_ids(tree: ast.AST) -> set[int]:
    """Docstrings document the command a module serves; they are not output."""
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                ids.add(id(first.value))
    return ids


def test_no_flag_text_in_library_strings():
    found = []
    for path in sorted(LIBRARY.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = _docstring_ids(tree)
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and FLAG.search(node.value) and not any(allowed in node.value for allowed in ALLOWED)):
                found.append(f"{path.relative_to(LIBRARY.parent)}:{node.lineno}: {node.value!r}")
    assert not found, "flag text below cli/ (name the setting with errors.setting):\n" + "\n".join(found)


def test_the_grep_catches_a_flag():
    tree = ast.parse('raise UserError(f"pass --overwrite {x}")')
    assert any(isinstance(n, ast.Constant) and FLAG.search(str(n.value)) for n in ast.walk(tree))


def test_an_error_names_the_setting_and_the_cli_shows_the_command_flag():
    err = errors.UserError(f"{errors.setting('dataset_dir')} overlaps; pass {errors.setting('overwrite')}")
    assert err.settings == ["dataset_dir", "overwrite"]
    assert str(err) == "dataset_dir overlaps; pass overwrite"

    @click.command("evaluate")
    @click.option("--dataset-dir")
    @click.option("--overwrite", is_flag=True)
    def evaluate(dataset_dir, overwrite):
        pass

    assert error_text(err, evaluate) == "--dataset-dir overlaps; pass --overwrite"
    assert error_text(err, None) == "--data overlaps; pass --overwrite"  # the flag of the command that owns it
    assert flag_namer(None)("train.batch_size") == "train.batch_size"


def test_events_render_as_the_terminal_lines():
    row = {"loss": 1.5, "accuracy": 0.25, "val_loss": 1.25, "val_accuracy": 0.5, "val_macro_f1": 0.375,
           "seconds": 2.0}
    epoch = events.EpochEnd(2, 3, row, best_score=0.375, best_epoch=2, eta_seconds=2.0)
    assert event_line(epoch) == ("epoch 2/3  loss 1.5000  acc 0.2500  val_loss 1.2500  val_acc 0.5000  "
                                 "val_macro_f1 0.3750  (best 0.3750 @ 2)  2.0s  ETA 0m02s")
    assert event_line(events.InRun(epoch, events.GridEta(None, None))).endswith("ETA 0m02s  | grid ETA ? (measuring)")
    assert event_line(events.Warning("slow", level=1)) == "    warning: slow"
    assert event_line(events.Step(f"{errors.setting('overwrite')}: discarding")) == "--overwrite: discarding"


def _calls_print(tree: ast.AST) -> list[int]:
    """Lines of `print(...)` calls, leaving out the body of an `if __name__ == "__main__":` block."""
    main_blocks = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "__main__" in ast.unparse(node.test) for n in ast.walk(node)}
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
            and n.func.id == "print" and id(n) not in main_blocks]


def test_the_library_draws_no_bars_and_prints_nothing():
    found = []
    for path in sorted(LIBRARY.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            found += [f"{path.relative_to(LIBRARY.parent)}:{node.lineno}: imports {name}"
                      for name in names if name.split(".")[0] == "tqdm"]
        found += [f"{path.relative_to(LIBRARY.parent)}:{line}: print(" for line in _calls_print(tree)]
    assert not found, "report progress as events (events.track / events.Tracker):\n" + "\n".join(found)


def test_the_check_catches_a_print_outside_main_only():
    tree = ast.parse('print("x")\nif __name__ == "__main__":\n    print("y")\n')
    assert _calls_print(tree) == [1]


def test_progress_events_draw_one_bar_per_task_on_stderr(capsys):
    from serengeti_tf_cli.progress import Terminal

    sink = Terminal()
    with events.Tracker(sink, "predict", total=3, unit="img", clock=lambda: 0.0) as bar:
        assert list(sink.bars.bars) == ["predict"]
        bar.advance(3)
    sink(events.Step("done"))
    captured = capsys.readouterr()
    assert "predict" in captured.err and "3/3" in captured.err
    assert captured.out == "done\n" and sink.bars.bars == {}


def test_a_command_shows_its_progress_as_a_bar_on_stderr(tmp_path, capsys):
    from serengeti_tf_cli.main import main

    main(["demo-data", str(tmp_path / "demo"), "--scale", "0.0005", "--size", "48x36"])
    captured = capsys.readouterr()
    assert "demo-data images" in captured.err and "img" in captured.err
    assert "demo-data images" not in captured.out
