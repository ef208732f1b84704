"""What every benchmark script shares: where results go and how they are written.

Each script measures, then ends with `write_results(name, result, markdown)`: `results/NAME.json`
and `results/NAME.md` (written atomically through `serengeti_tf.io_utils`) and the Markdown printed.
Scripts run as `python benchmarks/NAME.py`, so this folder is on `sys.path` and `from _common
import ...` works; `use_checkout` makes `serengeti_tf` importable from a checkout that was never
installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def use_checkout() -> None:
    """Puts the repository root first on `sys.path` (once), so `serengeti_tf` imports without an install."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))


def write_results(name: str, result: dict, markdown: str, out: Path = RESULTS) -> None:
    """Writes OUT/NAME.json and OUT/NAME.md and prints the Markdown."""
    use_checkout()
    from serengeti_tf.io_utils import write_json, write_text

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", result)
    write_text(out / f"{name}.md", markdown)
    print(markdown)
