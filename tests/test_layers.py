"""Imports inside functions are only the documented lazy ones (docs/design.md, "Layers").

The layer order and the absence of cycles are import-linter contracts (setup.cfg `[importlinter]`,
run by `lint-imports` in .ci/run). What import-linter cannot say is WHY an import sits inside a
function; this test does. An import inside a function is allowed only when importing its module at
load time would pull in something on the lazy list below (directly, or through the module-level
imports of this package's modules), because that is the only reason to defer it:

- in the library (`serengeti_tf/`): `LIBRARY_LAZY`, the heavy or optional packages;
- in `cli/`: anything beyond what `serengeti-tf --help` loads (`HELP_LOADS`), because `--help`
  imports every command module and must stay light; a command imports the library when it runs.

Every other import goes at the top of its module. The check reads the source with `ast`; it needs
neither TensorFlow nor the optional packages installed.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"serengeti_tf": ROOT / "serengeti_tf", "serengeti_tf_cli": ROOT / "cli"}

# Packages the library imports only inside the function that needs them, and why.
LIBRARY_LAZY = {
    "tensorflow": "TensorFlow's start takes seconds: --help, config validation, prepare's planning and "
                  "the readers must not pay it",
    "keras": "imports TensorFlow (its backend)",
    "tensorflow_datasets": "imports TensorFlow",
    "matplotlib": "only the figure writers need it (and its font cache set-up)",
    "keras_hub": "optional extra [hub] (train --init-weights from a keras-hub preset)",
    "apache_beam": "optional extra [beam] (prepare --runner beam)",
    "ai_edge_litert": "optional extra [tflite] (export --format tflite agreement check)",
    "megadetector": "optional, installed by .ci/run for the --md-out validator tests",
    "h5py": "installed with Keras; read only for .weights.h5 initial weights",
}

# The only packages beyond the standard library that `serengeti-tf --help` loads: every command
# module is imported to list the commands, so a command's module-level imports must stay within these.
HELP_LOADS = {"click", "yaml", "serengeti_tf", "serengeti_tf_cli", "serengeti_tf_configs"}

@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the imported module (a `from package import module` names the module)
    line: int
    in_function: bool


def module_name(path: Path) -> str:
    for package, root in PACKAGES.items():
        if path.is_relative_to(root):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([package, *parts])
    raise ValueError(path)


def source_files() -> dict[str, Path]:
    return {module_name(p): p for root in PACKAGES.values() for p in sorted(root.rglob("*.py"))}


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.split(".")[:len(module.split(".")) - node.level + (1 if is_package else 0)]
        base = ".".join(parts + ([node.module] if node.module else []))
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]


def _in_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, modules) -> list[Import]:
    """Every import the module runs (not those under `if TYPE_CHECKING:`), marked in-function or not."""
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _in_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                for target in _targets(child, module, path.name == "__init__.py", modules):
                    found.append(Import(module, target, child.lineno, in_function))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


class ImportGraph:
    def __init__(self):
        self.files = source_files()
        self.imports = {m: imports_of(m, p, self.files) for m, p in self.files.items()}

    def loads(self, target: str) -> set[str]:
        """Every module importing `target` runs: it, its packages, and their module-level imports, transitively."""
        seen, stack = set(), [target]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            stack.extend(p for p in _parents(name) if p in self.files)
            stack.extend(i.target for i in self.imports.get(name, ()) if not i.in_function)
        return seen

    def lazy_imports(self) -> list[Import]:
        return [i for imports in self.imports.values() for i in imports if i.in_function]


def needless_reason(graph: ImportGraph, item: Import) -> str | None:
    """None when deferring the import is justified; else what makes it light enough for the top."""
    loaded = graph.loads(item.target)
    if item.module.startswith("serengeti_tf_cli"):
        heavy = sorted(m for m in loaded if m.split(".")[0] not in HELP_LOADS | sys.stdlib_module_names)
    else:
        heavy = sorted(m for m in loaded if m.split(".")[0] in LIBRARY_LAZY)
    return None if heavy else "it loads nothing heavy"


def test_every_in_function_import_is_a_documented_lazy_one():
    graph = ImportGraph()
    needless = [f"{i.module}:{i.line} imports {i.target} inside a function ({reason}): move it to the top"
                for i in graph.lazy_imports() if (reason := needless_reason(graph, i))]
    assert not needless, "\n".join(needless)


def test_the_lazy_list_is_documented_in_design_md():
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    layers = design[design.index("## Layers"):]
    missing = [name for name in LIBRARY_LAZY if f"`{name}`" not in layers]
    assert not missing, f"docs/design.md 'Layers' does not list the lazy imports {missing}"


@pytest.mark.parametrize("source, expected", [
    ("import numpy as np\n\ndef f():\n    import serengeti_tf.io_utils\n", ["serengeti_tf.io_utils"]),
    ("def f():\n    import tensorflow as tf\n", []),
    ("def f():\n    from serengeti_tf.models import resnet\n", []),  # resnet imports keras at its top
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import keras\n", []),
])
def test_the_check_tells_a_needless_lazy_import_from_a_justified_one(tmp_path, source, expected):
    graph = ImportGraph()
    path = tmp_path / "toy.py"
    path.write_text(source)
    items = [i for i in imports_of("serengeti_tf.toy", path, graph.files) if i.in_function]
    assert [i.target for i in items if needless_reason(graph, i)] == expected


def test_help_loads_no_third_party_package_but_click_and_yaml():
    # The in-function rule above keeps cli/'s heavy imports inside the commands; this checks the result.
    code = ("import sys\nfrom serengeti_tf_cli.main import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} - sys.stdlib_module_names))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded = set(ast.literal_eval(result.stdout.strip().splitlines()[-1]))
    # Private and interpreter-level names (`__main__`, the editable-install finder, PyYAML's Cython
    # runtime) are no packages a user installs.
    assert {m for m in loaded if not m.startswith("_")} - HELP_LOADS - {"sitecustomize", "cython_runtime"} == set()
