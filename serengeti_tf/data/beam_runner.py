"""`prepare --runner beam`: the image stage of `prepare` as an Apache Beam pipeline.

What runs where. Reading the metadata, filtering, splitting and planning the shards stay on the
launcher (`prepare.py`, the same code as the local runner): they are table operations over one row
per image (7.1M rows for all of Snapshot Serengeti fit in a few GB) and the split must see every
capture of a species at once. What scales with the pixels runs in Beam: each shard's plan becomes
chunks of `shards.CHUNK_SIZE` images, the chunks are spread over the workers (`Reshuffle`) and
decoded/resized/encoded by the same worker function as the local pool (`shards.worker_job`), then
grouped back per shard (`CoGroupByKey`) and written by the same `shards.write_shard`, in plan order.
So a shard's bytes are those the local runner writes, as long as the workers run the same Pillow
(libjpeg) version as the launcher.

The plan travels as one small pickle per shard under the output's `.prepare_state/beam-plan/`
(not inside the pipeline graph, which Dataflow limits in size); only shard names are in the graph.
Resuming is per shard, as locally: a shard whose done record matches its plan is not planned again.
"""

from __future__ import annotations

import os
import pickle
import shlex
from typing import Sequence

import pandas as pd

from serengeti_tf import events
from serengeti_tf.config import DataConfig
from serengeti_tf.data import shards, storage
from serengeti_tf.errors import UserError, setting

PLAN_DIR = "beam-plan"
INSTALL_HINT = "pip install 'serengeti-tf[beam]'"


def require_beam():
    """The apache_beam module, or the one-line error naming the extra that installs it."""
    try:
        import apache_beam
    except ImportError:
        raise UserError(f"{setting('runner')} beam needs Apache Beam, which is not installed: {INSTALL_HINT}") from None
    return apache_beam


def option_args(beam_options: str, workers: int) -> list[str]:
    """The pipeline arguments: the user's `--beam-options`, plus DirectRunner defaults they do not set
    (multi-process, one worker per `data.workers`)."""
    try:
        args = shlex.split(beam_options or "")
    except ValueError as err:
        raise UserError(f"{setting('beam_options')} {beam_options!r} is not a valid argument string: {err}") from None
    given = {a.split("=", 1)[0].lstrip("-") for a in args if a.startswith("--")}
    in_memory = any(a.replace(" ", "=") == "--direct_running_mode=in_memory" for a in args)
    defaults = {"runner": "DirectRunner", "direct_running_mode": "multi_processing",
                "direct_num_workers": "1" if in_memory else str(shards.resolve_workers(workers))}
    direct = "runner" not in given or any(a.replace(" ", "=") == "--runner=DirectRunner" for a in args)
    if direct:  # the local worker processes' INFO lines would bury the command's own output
        defaults["default_sdk_harness_log_level"] = "WARNING"
    return args + [f"--{key}={value}" for key, value in defaults.items() if key not in given]


def pipeline_options(beam_options: str, workers: int):
    """PipelineOptions from `option_args`; an unknown option is refused by name (Beam would ignore it)."""
    beam = require_beam()
    from apache_beam.options.pipeline_options import PipelineOptions

    args = option_args(beam_options, workers)
    options = PipelineOptions(args)
    known = options.get_all_options(retain_unknown_options=False)
    unknown = [a for a in args if a.startswith("--") and a.split("=", 1)[0][2:] not in known]
    if unknown:
        raise UserError(f"unknown Beam pipeline option(s) in {setting('beam_options')}: {', '.join(unknown)} "
                        f"(apache-beam {beam.__version__})")
    return options


def _plan_path(out_dir: str, file: str) -> str:
    return storage.join(out_dir, shards.STATE_DIR, PLAN_DIR, f"{file}.pkl")


def _write_plans(manifest: pd.DataFrame, todo, data: DataConfig, out_dir: str) -> None:
    """One pickle per shard to write: spec, digest, record rows and worker tasks, in plan order."""
    _, _, tasks = shards.worker_job(manifest, data)
    for spec, digest in todo:
        plan = {"spec": spec, "digest": digest, "rows": shards.shard_rows(manifest, spec),
                "tasks": [tasks[r] for r in spec.rows]}
        storage.write_bytes(_plan_path(out_dir, spec.file), pickle.dumps(plan, protocol=4))


def _load_plan(file: str, out_dir: str) -> tuple[str, dict]:
    return file, pickle.loads(storage.read_bytes(_plan_path(out_dir, file)))


def _chunks(keyed_plan: tuple[str, dict]):
    file, plan = keyed_plan
    tasks = plan["tasks"]
    for number, start in enumerate(range(0, len(tasks), shards.CHUNK_SIZE)):
        yield file, (number, tasks[start:start + shards.CHUNK_SIZE])


def _encode_chunk(keyed_chunk, job, job_args) -> tuple[str, tuple[int, list]]:
    file, (number, tasks) = keyed_chunk
    return file, (number, job(tasks, *job_args))


def _write_grouped(grouped, out_dir: str, labels: dict[str, int]) -> dict:
    """Writes one shard from its plan and its encoded chunks (arriving in any order)."""
    _, parts = grouped
    (plan,) = parts["plan"]
    chunks = sorted(parts["images"], key=lambda part: part[0])
    encoded = [result for _, results in chunks for result in results]
    return shards.write_shard(out_dir, plan["spec"], plan["digest"], plan["rows"], encoded, labels)


def write_shards(manifest: pd.DataFrame, plans: Sequence[shards.ShardSpec], class_names: Sequence[str],
                 data: DataConfig, out_dir: str | os.PathLike, beam_options: str = "",
                 progress: bool = True, on_event: events.EventSink = events.ignore) -> dict[str, dict]:
    """`shards.write_shards` on Beam: the same done records, the same shard files. With `progress`,
    what is sent to Beam is reported to `on_event` (Beam draws no per-image progress here)."""
    beam = require_beam()
    options = pipeline_options(beam_options, data.workers)
    out_dir = str(out_dir)
    labels = {name: i for i, name in enumerate(class_names)}
    _, todo = shards.pending_shards(manifest, plans, labels, data, out_dir)
    if todo:
        job, job_args, _ = shards.worker_job(manifest, data)
        _write_plans(manifest, todo, data, out_dir)
        if progress:
            on_event(events.Step(f"preparing {sum(len(s.rows) for s, _ in todo)} images in {len(todo)} shards "
                                 f"on Beam ({' '.join(option_args(beam_options, data.workers))})"))
        with beam.Pipeline(options=options) as pipeline:
            keyed_plans = (pipeline
                           | "shard names" >> beam.Create([spec.file for spec, _ in todo])
                           | "spread shards" >> beam.Reshuffle()
                           | "load plans" >> beam.Map(_load_plan, out_dir))
            encoded = (keyed_plans
                       | "chunks" >> beam.FlatMap(_chunks)
                       | "spread chunks" >> beam.Reshuffle()
                       | "decode resize encode" >> beam.Map(_encode_chunk, job, job_args))
            _ = ({"plan": keyed_plans, "images": encoded}
                 | "per shard" >> beam.CoGroupByKey()
                 | "write shards" >> beam.Map(_write_grouped, out_dir, labels))
        for spec, _ in todo:
            storage.remove(_plan_path(out_dir, spec.file))
    records, missing = shards.pending_shards(manifest, plans, labels, data, out_dir)
    if missing:
        raise UserError(f"the Beam pipeline finished but {len(missing)} shard(s) have no done record "
                        f"({', '.join(s.file for s, _ in missing[:3])}); rerun the same command to write them")
    return {spec.file: records[spec.file] for spec in plans}
