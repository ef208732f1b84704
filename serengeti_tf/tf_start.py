"""A quiet TensorFlow start for the command line.

TensorFlow's C++ runtime writes start-up notes straight to file descriptor 2 before its logging is
configured, so `TF_CPP_MIN_LOG_LEVEL` does not hide them: "All log messages before
absl::InitializeLog() ...", the oneDNN note, CPU-instruction notes, and on a CPU-only machine with
the `tensorflow` (GPU) wheel "Could not find cuda drivers" and an `E0000 ... failed call to cuInit`
error line that new users read as a failure. `quiet_start` imports TensorFlow and Keras and lists
the devices with fd 2 captured, then writes back every captured line that is not one of these
known notes (real errors and Python warnings still show). The CUDA lines are dropped only when
TensorFlow then finds no GPU, i.e. when they only say "running on CPU".
"""

from __future__ import annotations

import os
import sys
import tempfile

_NOTES = ("All log messages before absl::InitializeLog() is called",
          "oneDNN custom operations are on",
          "cpu_feature_guard.cc",
          "To enable the following instructions:",
          "TensorFlow binary is optimized to use available CPU instructions")
_CPU_ONLY_NOTES = ("Could not find cuda drivers", "failed call to cuInit", "cuda_executor.cc",
                   "Unable to register cu")


def kept_lines(text: str, gpu_found: bool) -> list[str]:
    """The captured start-up lines worth showing: everything but the known notes."""
    notes = _NOTES if gpu_found else _NOTES + _CPU_ONLY_NOTES
    return [line for line in text.splitlines() if line.strip() and not any(n in line for n in notes)]


def quiet_start() -> None:
    """Imports TensorFlow + Keras and initialises the devices with the start-up notes filtered out.

    An ImportError (TensorFlow not installed) propagates after the captured text is written back.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    gpu_found = False
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow as tf  # first, so a missing TensorFlow is reported as such

            gpu_found = bool(tf.config.list_physical_devices("GPU"))
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = kept_lines(captured.read().decode("utf-8", errors="replace"), gpu_found)
            if lines:
                sys.stderr.write("\n".join(lines) + "\n")
