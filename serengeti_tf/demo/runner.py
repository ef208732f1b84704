"""`serengeti-tf demo`: the whole job on the built-in synthetic data, end to end, on a CPU, in a time budget.

    OUT/
      demo.json      the budget, the measured throughput, the settings chosen and why, the wall time
      data/          synthetic LILA-layout Snapshot Serengeti dataset (demo-data)
      prepared/      class-sharded TFRecords (prepare)
      experiment/    baseline and two-phase runs, evaluations and the comparison report

The demo promises a wall time (`--minutes`, default 10) on any machine, and machines differ ~5x
in speed, so it measures before it sizes: a short timed training probe of the real ResNet-18 at
the candidate input sizes (`measure_throughput`), then `choose_settings` (a pure function:
throughput in, settings out) picks the richest preset of `PRESETS` (data scale, input size,
samplers) and the most epochs that fit `PLAN_FRACTION` of the budget, using the image-pass
accounting of `progress.py`. After the data is prepared, the epochs are re-fitted to the time
that is really left with the exact image counts. It prints what it chose and why; the choice goes
into demo.json, the experiment's config.yaml and the report.

Each step is resumable: a rerun in the same folder reuses the recorded choice (no new probe) and
continues. `--smoke` is a fixed, tiny, unmeasured version for CI. Whatever the numbers show is
what the report says: nothing here is tuned to make a method win.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import yaml

from serengeti_tf import config as cfg
from serengeti_tf.errors import UserError

# CI-sized: a few hundred images, one epoch per run, tiny inputs.
SMOKE_SETTINGS = {
    "data": {"image_size": 40},
    "model": {"input_size": 32},
    "train": {"epochs": 1, "batch_size": 32},
    "experiment": {"samplers": ["none", "rus"]},
}
SMOKE_SCALE = 0.003
# Three captures per class at least, so every class reaches train, val and test (as in the paper,
# where every class has test images) and per-class scores exist for the rarest classes too.
DEMO_MIN_CAPTURES = 3


def demo_settings_file():
    """configs/demo.yaml, installed with the package as `serengeti_tf_configs`."""
    from importlib import resources

    return resources.files("serengeti_tf_configs") / "demo.yaml"


def demo_config(smoke: bool = False, overrides: Sequence[str] = (),
                settings: Optional[DemoSettings] = None) -> cfg.Config:
    """configs/demo.yaml, then the smoke sizes or the budget's `settings` (if given), then `--set` overrides."""
    updates = [yaml.safe_load(demo_settings_file().read_text(encoding="utf-8"))]
    updates += [SMOKE_SETTINGS] if smoke else []
    updates += [settings.config_updates()] if settings is not None and not smoke else []
    updates += [cfg.nested(*cfg.parse_override(text)) for text in overrides]
    return cfg.resolve(updates=updates)


# ---------------------------------------------------------------------------------------------
# Budget sizing (pure: throughput in, settings out)
# ---------------------------------------------------------------------------------------------

DEFAULT_MINUTES = 10.0
# The plan fills this share of the budget; the rest absorbs estimate error and a machine that
# slows down mid-run (the promise is the budget + 20%).
PLAN_FRACTION = 0.8
# Report, plots and the process start (TensorFlow import) that are not part of any run.
FIXED_SECONDS = 30.0
# Per run: building/loading the model and tracing its train, validation and evaluation functions
# costs about this many times the probe's first-step (tracing) overhead; a run that trains no
# backbone (phase 2's fast path) traces less.
RUN_OVERHEAD_FACTOR = 3.0
HEAD_RUN_OVERHEAD_FACTOR = 1.5
# Training through the real input pipeline (decode, augment and validation share the same cores)
# ran at ~0.66 of the probe's bare in-memory steps at 32 px on the 2-core build machine; this
# share of the probed rate is what the estimate assumes.
PIPELINE_SHARE = 0.7
# prepare re-reads and re-encodes every drawn image: measured at ~0.15x the drawing time on the
# build machine; a quarter keeps the data stage estimate on the safe side.
PREPARE_SHARE = 0.25
PROBE_SIZES = (32, 64)


@dataclass(frozen=True)
class Preset:
    """One demo shape: data scale (of the paper's Table 4 counts), input px, samplers, epoch range."""

    scale: float
    input_size: int
    samplers: tuple[str, ...]
    max_epochs: int
    min_epochs: int


# Richest first. The first one is the demo as it was before budgets (~2,400 images, 64 px, three
# samplers); the leanest keeps the two-phase story (baseline vs ROS phase 1 -> phase 2).
PRESETS: tuple[Preset, ...] = (
    Preset(0.015, 64, ("none", "rus", "ros"), 8, 4),
    Preset(0.015, 48, ("none", "rus", "ros"), 8, 4),
    Preset(0.01, 48, ("none", "rus", "ros"), 8, 3),
    Preset(0.01, 32, ("none", "rus", "ros"), 8, 3),
    Preset(0.006, 32, ("none", "ros"), 6, 3),
    Preset(0.006, 32, ("none", "ros"), 3, 1),
)


@dataclass(frozen=True)
class Throughput:
    """What the probe measured on this machine."""

    train_images_per_second: dict[int, float]  # input px -> training images/s (forward + backward)
    first_step_overhead: dict[int, float]  # input px -> seconds of tracing before the first step
    save_seconds: float  # one full-model checkpoint save
    render_images_per_second: float  # demo images drawn + encoded per second

    def at(self, size: int) -> tuple[float, float]:
        """(img/s, first-step overhead s) at `size`: measured, or img/s on a power law of the pixel
        count through the two nearest measured sizes (with one measured size: proportional to the
        pixel count, which overstates the cost of small inputs) and the nearest size's overhead."""
        ips, over = self.train_images_per_second, self.first_step_overhead
        if size in ips:
            return ips[size], over[size]
        sizes = sorted(ips)
        below = [s for s in sizes if s < size]
        above = [s for s in sizes if s > size]
        if below and above:
            lo, hi = below[-1], above[0]
        else:
            lo, hi = (sizes[-2], sizes[-1]) if below and len(sizes) > 1 else (sizes[0], sizes[0])
        k = math.log(ips[lo] / ips[hi]) / math.log((hi / lo) ** 2) if hi != lo else 1.0
        k = max(k, 0.0)
        near = min(sizes, key=lambda s: abs(s - size))
        return ips[lo] * (lo / size) ** (2 * k), over[near]


@dataclass(frozen=True)
class DemoSettings:
    scale: float
    input_size: int
    image_size: int  # stored shorter side of the prepared images
    samplers: tuple[str, ...]
    epochs: int
    estimated_seconds: float
    budget_seconds: float
    fits: bool
    reason: str
    per_run_seconds: tuple[float, ...] = field(default_factory=tuple)

    def config_updates(self) -> dict:
        """The config sections these settings set (the paper's count rules scaled like the data)."""
        from serengeti_tf.demo.synthetic import scaled_paper_rules

        rules = scaled_paper_rules(self.scale)
        return {"data": {"image_size": self.image_size}, "model": {"input_size": self.input_size},
                "train": {"epochs": self.epochs}, "sampler": rules["sampler"], "eval": rules["eval"],
                "experiment": {"samplers": list(self.samplers), "seeds": 1}}


def stored_image_size(input_size: int) -> int:
    """Stored shorter side for an input crop (72 px for 64 px crops, as configs/demo.yaml had)."""
    return int(round(input_size * 1.125))


def approximate_counts(scale: float) -> tuple[dict[str, int], dict[str, int]]:
    """(train counts per class, images per split) the demo data at `scale` will have, before it
    exists: 80/10/10 of each class's images (prepare splits by capture, so this is approximate)."""
    from serengeti_tf.demo.synthetic import class_image_counts

    train = {}
    splits = {"train": 0, "val": 0, "test": 0}
    for name, n in class_image_counts(scale, DEMO_MIN_CAPTURES).items():
        if name in ("blank", "human"):  # dropped by prepare (data.drop_empty, data.drop_human)
            continue
        t = max(1, int(round(0.8 * n)))
        train[name] = t
        splits["train"] += t
        splits["val"] += (n - t) // 2
        splits["test"] += n - t - (n - t) // 2
    return train, splits


def estimate_run_seconds(preset: Preset, epochs: int, throughput: Throughput,
                         train_counts: dict[str, int], split_counts: dict[str, int]) -> list[float]:
    """Seconds of each run of the demo grid (training, validation, feature pass, test evaluation)."""
    from serengeti_tf.evaluate.experiment import grid_work, plan_runs

    config = cfg.resolve(updates=[DemoSettings(preset.scale, preset.input_size, stored_image_size(preset.input_size),
                                               preset.samplers, epochs, 0, 0, True, "").config_updates(),
                                  {"train": {"early_stopping_patience": 0}}])
    runs = plan_runs(config, Path("."))
    ips, overhead = throughput.at(preset.input_size)
    ips *= PIPELINE_SHARE
    seconds = []
    for work in grid_work(config, runs, train_counts, split_counts):
        epochs_with_saves = work.epochs or config.train.epochs  # phase 2's head epochs save checkpoints too
        factor = RUN_OVERHEAD_FACTOR if work.epochs else HEAD_RUN_OVERHEAD_FACTOR
        seconds.append(factor * overhead + work.units() / ips
                       + epochs_with_saves * 2 * throughput.save_seconds)
    return seconds


def estimate_data_seconds(scale: float, throughput: Throughput) -> float:
    """Drawing the demo images, then preparing them (`PREPARE_SHARE` of the drawing time)."""
    from serengeti_tf.demo.synthetic import class_image_counts

    images = sum(class_image_counts(scale, DEMO_MIN_CAPTURES).values()) * 1.05  # + blank/multi captures
    return (1 + PREPARE_SHARE) * images / throughput.render_images_per_second


def choose_settings(budget_seconds: float, throughput: Throughput, elapsed_seconds: float = 0.0,
                    presets: Sequence[Preset] = PRESETS, counts_for=approximate_counts) -> DemoSettings:
    """The richest preset, with the most epochs in its range, whose estimate fits PLAN_FRACTION of
    the budget (minus what is already spent); the leanest preset at its fewest epochs when none fits
    (then `fits` is False and `reason` says so)."""
    if not budget_seconds > 0:
        raise UserError(f"demo: the time budget must be > 0 minutes, got {budget_seconds / 60:g}")
    target = PLAN_FRACTION * budget_seconds - elapsed_seconds
    tried = []
    for preset in presets:
        train_counts, splits = counts_for(preset.scale)
        data = estimate_data_seconds(preset.scale, throughput)
        for epochs in range(preset.max_epochs, preset.min_epochs - 1, -1):
            runs = estimate_run_seconds(preset, epochs, throughput, train_counts, splits)
            total = FIXED_SECONDS + data + sum(runs)
            if total <= target:
                return _settings(preset, epochs, elapsed_seconds + total, budget_seconds, True, runs, (
                    f"{preset.input_size}px at {throughput.at(preset.input_size)[0]:.1f} img/s measured: "
                    f"{epochs} epoch(s) of "
                    f"{splits['train']} train images, {len(runs)} runs estimated {total / 60:.1f} min "
                    f"+ {elapsed_seconds / 60:.1f} min spent <= {PLAN_FRACTION:.0%} of "
                    f"{budget_seconds / 60:g} min" + (f"; richer presets did not fit ({'; '.join(tried)})"
                                                       if tried else "")))
        tried.append(f"{preset.scale} scale {preset.input_size}px {len(preset.samplers)} samplers "
                     f"{preset.min_epochs} epochs: {(FIXED_SECONDS + data + sum(runs)) / 60:.1f} min")
    preset = presets[-1]
    return _settings(preset, preset.min_epochs, elapsed_seconds + FIXED_SECONDS + data + sum(runs), budget_seconds,
                     False, runs, f"no preset fits {budget_seconds / 60:g} min on this machine; running the "
                                  f"leanest, estimated {(elapsed_seconds + FIXED_SECONDS + data + sum(runs)) / 60:.1f} min")


def refit_epochs(settings: DemoSettings, throughput: Throughput, elapsed_seconds: float,
                 train_counts: dict[str, int], split_counts: dict[str, int]) -> DemoSettings:
    """After prepare: the most epochs (at most the chosen ones, at least 1) that fit what is left of
    PLAN_FRACTION of the budget with the dataset's exact counts; scale, size and samplers stay."""
    preset = Preset(settings.scale, settings.input_size, settings.samplers, settings.epochs, 1)
    target = PLAN_FRACTION * settings.budget_seconds - elapsed_seconds - FIXED_SECONDS
    for epochs in range(settings.epochs, 0, -1):
        runs = estimate_run_seconds(preset, epochs, throughput, train_counts, split_counts)
        if sum(runs) <= target or epochs == 1:
            break
    if epochs == settings.epochs:
        return settings
    why = (f"{settings.reason}; after prepare, {epochs} epochs instead of {settings.epochs} fit the "
           f"{max(target, 0) / 60:.1f} min left") if sum(runs) <= target else (
           f"{settings.reason}; after prepare even 1 epoch needs {sum(runs) / 60:.1f} min of the "
           f"{max(target, 0) / 60:.1f} min left")
    return _settings(preset, epochs, elapsed_seconds + FIXED_SECONDS + sum(runs), settings.budget_seconds,
                     sum(runs) <= target, runs, why)


def _settings(preset: Preset, epochs: int, estimate: float, budget: float, fits: bool, runs: Sequence[float],
              reason: str) -> DemoSettings:
    return DemoSettings(preset.scale, preset.input_size, stored_image_size(preset.input_size), tuple(preset.samplers),
                        epochs, round(estimate, 1), budget, fits, reason, tuple(round(r, 1) for r in runs))


# ---------------------------------------------------------------------------------------------
# The probe
# ---------------------------------------------------------------------------------------------

def measure_throughput(budget_seconds: float, sizes: Sequence[int] = PROBE_SIZES, batch_size: int = 64,
                       steps: int = 3, num_classes: int = 52, print_fn: Callable[[str], None] = print) -> Throughput:
    """Times a few real training steps of ResNet-18 at each input size (smallest first, on random
    images, the demo's batch size), one checkpoint save and the demo image renderer. The first step (tracing) gives the per-run overhead; one more step warms up before
    the timed ones (the second step is still noticeably slower than the rest on CPU).

    A larger size is probed only if some preset at that size could fit even at the optimistic rate
    (img/s falling only linearly with the side), so a slow machine does not spend its budget probing.
    """
    import numpy as np

    started = time.perf_counter()
    import keras

    from serengeti_tf.demo.synthetic import rendering_rate
    from serengeti_tf.models.resnet import build_model, save_model
    from serengeti_tf.train.training import compile_model

    rng = np.random.default_rng(0)
    ips, overhead, save_seconds, model = {}, {}, 0.0, None
    for size in sorted(sizes):
        if ips and not _worth_probing(size, budget_seconds, ips, overhead, time.perf_counter() - started):
            print_fn(f"    probe: skipping {size}px (even an optimistic rate would not fit the budget)")
            continue
        keras.backend.clear_session()
        model = compile_model(build_model(cfg.ModelConfig(input_size=size), num_classes), cfg.TrainConfig(),
                              [1] * num_classes)
        x = rng.uniform(0, 1, (batch_size, size, size, 3)).astype("float32")
        y = rng.integers(0, num_classes, batch_size)
        t0 = time.perf_counter()
        model.train_on_batch(x, y)
        first = time.perf_counter() - t0
        model.train_on_batch(x, y)  # warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            model.train_on_batch(x, y)
        step = (time.perf_counter() - t0) / steps
        ips[size], overhead[size] = batch_size / step, max(0.0, first - step)
        print_fn(f"    probe: {size}px ResNet-18 trains at {ips[size]:.1f} img/s "
                 f"(first step {first:.1f}s incl. tracing)")
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_model(model, Path(tmp) / "probe.keras")
        save_seconds = time.perf_counter() - t0
    keras.backend.clear_session()
    render = rendering_rate()
    print_fn(f"    probe: checkpoint save {save_seconds:.1f}s, demo images drawn at {render:.0f} img/s")
    return Throughput(ips, overhead, save_seconds, render)


def _worth_probing(size: int, budget_seconds: float, ips: dict, overhead: dict, elapsed: float) -> bool:
    smallest = min(ips)
    optimistic = Throughput({size: ips[smallest] * smallest / size}, {size: overhead[smallest]}, 0.0, 1e9)
    presets = [p for p in PRESETS if p.input_size == size]
    return any(choose_settings(budget_seconds, optimistic, elapsed, presets=[p]).fits for p in presets)


# ---------------------------------------------------------------------------------------------
# The demo
# ---------------------------------------------------------------------------------------------

def _settings_record(out: Path) -> Optional[dict]:
    from serengeti_tf.io_utils import read_json

    path = out / "demo.json"
    return read_json(path) if path.is_file() else None


def plan_demo(out: Path, minutes: float, print_fn) -> tuple[DemoSettings, Optional[Throughput], float]:
    """The settings of this demo folder: recorded by an earlier (maybe interrupted) run, else measured
    and chosen now. Returns them, the throughput (None when reused) and the seconds spent."""
    started = time.perf_counter()
    record = _settings_record(out)
    if record is not None:
        if float(record["minutes"]) != float(minutes):
            raise UserError(f"demo: {out} was sized for a {record['minutes']:g}-minute budget, got --minutes "
                            f"{minutes:g}; rerun with --minutes {record['minutes']:g} to continue it or choose "
                            f"another --out")
        settings = DemoSettings(**{**record["settings"], "samplers": tuple(record["settings"]["samplers"]),
                                   "per_run_seconds": tuple(record["settings"]["per_run_seconds"])})
        print_fn(f"    reusing the settings chosen on the first run ({out / 'demo.json'})")
        return settings, None, 0.0
    budget = minutes * 60
    print_fn(f"    measuring this machine (a few timed training steps) to fit {minutes:g} minutes")
    throughput = measure_throughput(budget, print_fn=print_fn)
    settings = choose_settings(budget, throughput, elapsed_seconds=time.perf_counter() - started)
    return settings, throughput, time.perf_counter() - started


def _write_record(out: Path, minutes: float, settings: DemoSettings, throughput: Optional[Throughput],
                  extra: Optional[dict] = None) -> None:
    from serengeti_tf.io_utils import write_json

    record = _settings_record(out) or {}
    record.update({"minutes": minutes, "settings": asdict(settings)})
    if throughput is not None:
        record["throughput"] = {**asdict(throughput),
                                "train_images_per_second": {str(k): round(v, 2) for k, v in
                                                            throughput.train_images_per_second.items()},
                                "first_step_overhead": {str(k): round(v, 2) for k, v in
                                                        throughput.first_step_overhead.items()}}
    record.update(extra or {})
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "demo.json", record)


def describe(settings: DemoSettings) -> str:
    return (f"{settings.scale} of the paper's counts, {settings.input_size}px inputs, samplers "
            f"{', '.join(settings.samplers)}, {settings.epochs} epochs per run; estimated "
            f"{settings.estimated_seconds / 60:.1f} min of {settings.budget_seconds / 60:g}")


def run_demo(out_dir: str | Path, smoke: bool = False, overrides: Sequence[str] = (),
             seed: int = 0, minutes: float = DEFAULT_MINUTES, print_fn: Callable[[str], None] = print) -> dict:
    """(measure + size ->) demo-data -> prepare -> experiment (baseline and two-phase) -> report."""
    from serengeti_tf.locks import output_lock

    with output_lock(out_dir):  # one process per demo folder
        return _run_demo(Path(out_dir), smoke, overrides, seed, minutes, print_fn)


def _run_demo(out: Path, smoke: bool, overrides: Sequence[str], seed: int, minutes: float,
              print_fn: Callable[[str], None]) -> dict:
    from serengeti_tf.demo.synthetic import write_demo_dataset
    from serengeti_tf.evaluate.experiment import run_experiment, split_counts
    from serengeti_tf.data import dataset as ds_reader
    from serengeti_tf.data.prepare import format_summary, prepare_dataset

    started = time.perf_counter()
    settings = throughput = None
    if smoke:
        config, scale = demo_config(True, overrides), SMOKE_SCALE
    else:
        print_fn(f"0/3 sizing the demo for {minutes:g} minutes")
        settings, throughput, _ = plan_demo(out, minutes, print_fn)
        print_fn(f"    chose: {describe(settings)}")
        print_fn(f"    why: {settings.reason}")
        if not settings.fits:
            print_fn(f"    warning: this machine is too slow for {minutes:g} minutes; expect about "
                     f"{settings.estimated_seconds / 60:.0f} min")
        _write_record(out, minutes, settings, throughput)
        config, scale = demo_config(False, overrides, settings), settings.scale
        if overrides:
            print_fn(f"    --set {' '.join(overrides)} applied on top (not part of the time estimate)")
    data_dir, prepared_dir = out / "data", out / "prepared"
    print_fn(f"1/3 synthetic LILA-format data -> {data_dir}")
    if (data_dir / "SnapshotSerengeti_v2_1_images.csv").is_file():
        print_fn("    already written; reusing it")
    else:
        write_demo_dataset(data_dir, seed=seed, min_captures_per_class=DEMO_MIN_CAPTURES, scale=scale)
    config.data.metadata = [str(data_dir / "SnapshotSerengeti_v2_1_images.csv"),
                            str(data_dir / "SnapshotSerengeti_v2_1_annotations.csv")]
    config.data.image_root = str(data_dir)
    config.data.source_format = "lila_csv"
    config = cfg.validate(config)

    print_fn(f"2/3 prepare -> {prepared_dir}")
    summary = prepare_dataset(config, prepared_dir)
    print_fn(format_summary(summary))

    if throughput is not None and not any(o.startswith("train.epochs") for o in overrides):
        refitted = refit_epochs(settings, throughput, time.perf_counter() - started,
                                ds_reader.train_counts(prepared_dir), split_counts(prepared_dir))
        if refitted.epochs != settings.epochs:
            print_fn(f"    re-sized: {describe(refitted)}")
            settings = refitted
            config.train.epochs = settings.epochs
            _write_record(out, minutes, settings, throughput)

    print_fn(f"3/3 experiment ({', '.join(config.experiment.samplers)}) -> {out / 'experiment'}")
    result = run_experiment(config, prepared_dir, out / "experiment", print_fn=print_fn)
    if settings is not None:
        seconds = time.perf_counter() - started
        record = _settings_record(out) or {}
        # A rerun that only found finished work keeps the first run's wall time.
        if not record.get("wall_seconds") or seconds > 60:
            record_extra = {"wall_seconds": round(seconds, 1),
                            "within_budget": seconds <= minutes * 60,
                            "within_budget_plus_20_percent": seconds <= 1.2 * minutes * 60}
            _write_record(out, minutes, settings, None, record_extra)
        _add_report_section(Path(result["markdown"]), settings, _settings_record(out))
        print_fn(f"demo finished in {seconds / 60:.1f} min (budget {minutes:g} min)")
    return result


REPORT_SECTION = "## Demo settings"


def _add_report_section(report: Path, settings: DemoSettings, record: Optional[dict]) -> None:
    """Appends (or replaces) the section saying what the demo ran with and why."""
    from serengeti_tf.io_utils import write_text

    text = report.read_text(encoding="utf-8")
    text = text.split("\n" + REPORT_SECTION)[0].rstrip("\n")
    measured = (record or {}).get("throughput", {}).get("train_images_per_second", {})
    lines = [REPORT_SECTION, "",
             f"Sized for a {settings.budget_seconds / 60:g}-minute budget by `serengeti-tf demo` "
             f"(measured training speed: {', '.join(f'{k}px {v} img/s' for k, v in measured.items()) or 'see demo.json'}).",
             "",
             "| setting | value |", "| --- | --- |",
             f"| data scale (of the paper's Table 4 counts) | {settings.scale} |",
             f"| input size | {settings.input_size} px (stored {settings.image_size} px) |",
             f"| samplers | {', '.join(settings.samplers)} |",
             f"| epochs per run | {settings.epochs} |",
             f"| estimated time | {settings.estimated_seconds / 60:.1f} min |"]
    if record and record.get("wall_seconds"):
        lines.append(f"| wall time | {record['wall_seconds'] / 60:.1f} min |")
    lines += ["", f"Why: {settings.reason}.", ""]
    write_text(report, text + "\n\n" + "\n".join(lines))
