"""Two-phase training runs on a tiny generated dataset (32 px, a few steps, CPU).

In-process: run folder contents, phase-2 freeze (bit-for-bit), fast path == slow path, NaN stop,
bad input. Subprocesses (each needs a fresh TensorFlow runtime or a kill): resume after SIGKILL,
MirroredStrategy over two logical CPUs, two-process MultiWorkerMirroredStrategy on localhost.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from helpers import NUM_CLASSES, Printed, quiet, raises_as_cli, subprocess_env, tiny_config, train_cli, weights_of
from sklearn.metrics import f1_score

from serengeti_tf import config as cfg
from serengeti_tf.data import pipeline
from serengeti_tf.errors import UserError
from serengeti_tf.io_utils import file_digest
from serengeti_tf.models import resnet as M
from serengeti_tf.testing import write_tiny_dataset
from serengeti_tf.train import features as feature_cache
from serengeti_tf.train import runs, training

RUN_FILES = ("config.yaml", "lineage.json", "class_map.json", "metrics.csv", "model.keras", "timings.json",
             "versions.json", "checkpoints/state.json")
TINY_ARGS = ["--input-size", "32", "--batch-size", "8", "--set", "eval.batch_size=16",
             "--set", "sampler.shuffle_buffer=64"]


def read_metrics(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "metrics.csv")


# ---------------------------------------------------------------------------------------------
# Phase 1 and phase 2 run folders
# ---------------------------------------------------------------------------------------------

def tensorboard_scalars(folder: Path) -> dict[str, dict[int, float]]:
    """tag -> {step: value} of the scalars in a TensorBoard folder's event files."""
    import tensorflow as tf

    scalars: dict[str, dict[int, float]] = {}
    for events in sorted(folder.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                assert value.metadata.plugin_data.plugin_name == "scalars", value.tag
                scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


def test_phase1_writes_the_run_folder(phase1_run, tiny_dataset):
    for name in RUN_FILES:
        assert (phase1_run / name).is_file(), name
    assert list((phase1_run / "tensorboard").glob("events.out.tfevents.*"))
    metrics = read_metrics(phase1_run)
    assert list(metrics.columns) == list(runs.METRIC_COLUMNS)
    assert metrics["epoch"].tolist() == [1, 2]
    # The event files hold every epoch's scalars, tagged for TensorBoard's scalars plugin.
    scalars = tensorboard_scalars(phase1_run / "tensorboard")
    for key in ("loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1", "learning_rate"):
        assert scalars[key] == pytest.approx(dict(zip(metrics["epoch"], metrics[key])), rel=1e-6), key
    assert metrics[["loss", "accuracy", "val_loss", "val_accuracy", "val_macro_f1"]].notna().all().all()
    lineage = json.loads((phase1_run / "lineage.json").read_text())
    assert lineage["phase"] == 1 and lineage["sampler"] == "none" and lineage["init_run"] is None
    assert lineage["dataset_dir"] == str(Path(tiny_dataset).resolve()) and lineage["seed"] == 0
    assert json.loads((phase1_run / "class_map.json").read_text()) == json.loads(
        (Path(tiny_dataset) / "class_map.json").read_text())
    assert cfg.load_saved(phase1_run / "config.yaml").model.input_size == 32
    versions = json.loads((phase1_run / "versions.json").read_text())
    assert {"python", "tensorflow", "keras", "numpy"} <= set(versions)
    timings = json.loads((phase1_run / "timings.json").read_text())
    assert len(timings["epoch_seconds"]) == 2
    # Only the last epoch's resumable checkpoint and the best epoch's model are kept, plus the
    # back-up: the checkpoints of the state before (resumed from if the latest is corrupt).
    state = runs.read_state(runs.RunPaths(phase1_run))
    previous = json.loads((phase1_run / "checkpoints" / runs.PREVIOUS_STATE).read_text())
    assert previous["checkpoint"] == "epoch-001.keras" and previous["epochs_done"] == 1
    assert sorted(p.name for p in (phase1_run / "checkpoints").glob("*.keras")) == sorted(
        {"epoch-002.keras", f"best-epoch-{state.best_epoch:03d}.keras", previous["checkpoint"],
         previous["best_checkpoint"]})


def test_model_keras_is_the_best_epoch_by_val_macro_f1(phase1_run, tiny_dataset):
    metrics = read_metrics(phase1_run)
    best = int(metrics["val_macro_f1"].idxmax())  # the first of equal scores is kept
    timings = json.loads((phase1_run / "timings.json").read_text())
    assert timings["best_epoch"] == best + 1
    model = M.load_model(phase1_run / "model.keras")
    config = tiny_config()
    logits, labels = [], []
    for x, y in pipeline.make_eval_dataset(tiny_dataset, "val", config, batch_size=16):
        logits.append(np.asarray(model(x, training=False)))
        labels.append(np.asarray(y))
    predictions = np.concatenate(logits).argmax(axis=1)
    labels = np.concatenate(labels)
    # Selection's macro F1 averages over every class of the class map (metrics.SELECTION_METRIC).
    score = f1_score(labels, predictions, labels=range(NUM_CLASSES), average="macro", zero_division=0)
    assert score == pytest.approx(metrics["val_macro_f1"][best], abs=1e-9)


def _check_phase2(run: Path, phase1_run: Path, expect_head_change: bool = True) -> None:
    for name in RUN_FILES:
        assert (run / name).is_file(), name
    lineage = json.loads((run / "lineage.json").read_text())
    assert lineage["phase"] == 2 and lineage["training_sampler"] == "none"
    assert lineage["init_run"] == str(phase1_run.resolve())
    assert lineage["trainable_weights"] == 512 * NUM_CLASSES + NUM_CLASSES
    before = weights_of(M.load_model(phase1_run / "model.keras"))
    after = weights_of(M.load_model(run / "model.keras"))
    assert before.keys() == after.keys()
    for path, value in before.items():
        if path.startswith(M.HEAD_NAME + "/"):
            continue
        # Every backbone weight, BN moving statistics included, is bit-for-bit unchanged.
        np.testing.assert_array_equal(after[path], value, err_msg=path)
    head = [p for p in before if p.startswith(M.HEAD_NAME + "/")]
    assert len(head) == 2
    assert any(not np.array_equal(before[p], after[p]) for p in head) == expect_head_change


def test_phase2_fast_path_trains_only_the_head(phase1_run, tiny_dataset, tmp_path):
    run = tmp_path / "p2"
    lines = Printed()
    training.train(tiny_config(phase=2, epochs=3, early_stopping_patience=0), tiny_dataset, run,
                   init_run=phase1_run, on_event=lines)
    assert any(f"{512 * NUM_CLASSES + NUM_CLASSES:,} trainable weights" in line for line in lines)
    _check_phase2(run, phase1_run)
    lineage = json.loads((run / "lineage.json").read_text())
    assert lineage["fast_path"] is True and "un-augmented centre crop" in lineage["head_trained_on"]
    assert (run / "checkpoints" / "features-train.npz").is_file()
    assert read_metrics(run)["epoch"].tolist() == [1, 2, 3]


def test_phase2_slow_path_trains_only_the_head(phase1_run, tiny_dataset, tmp_path):
    run = tmp_path / "p2slow"
    training.train(tiny_config(phase=2, epochs=1, phase2_augment=True), tiny_dataset, run,
                   init_run=phase1_run, on_event=quiet)
    _check_phase2(run, phase1_run)
    assert json.loads((run / "lineage.json").read_text())["fast_path"] is False


def test_phase2_records_the_phase1_digest_and_refuses_a_retrained_phase1(phase1_run, tiny_dataset, tmp_path):
    parent = tmp_path / "p1"
    shutil.copytree(phase1_run, parent)
    run, config = tmp_path / "p2", tiny_config(phase=2, epochs=1)
    training.train(config, tiny_dataset, run, init_run=parent, on_event=quiet)
    old_digest = file_digest(parent / "model.keras")
    assert json.loads((run / "lineage.json").read_text())["init_model_sha256"] == old_digest
    with np.load(run / "checkpoints" / "features-train.npz") as cached:
        assert str(cached["source_sha256"]) == old_digest

    # Phase 1 retrained in place: same folder, new model.keras (here: one backbone weight changed).
    model = M.load_model(parent / "model.keras")
    kernel = model.get_layer("stem_conv").kernel
    kernel.assign(kernel.numpy() * 1.5)
    M.save_model(model, parent / "model.keras")
    new_digest = file_digest(parent / "model.keras")
    stamp = (run / "model.keras").stat().st_mtime_ns
    with raises_as_cli(match=f"sha256 {old_digest[:12]}.*now has sha256 {new_digest[:12]}.*--overwrite"):
        training.train(config, tiny_dataset, run, init_run=parent, on_event=quiet)
    assert (run / "model.keras").stat().st_mtime_ns == stamp  # nothing kept silently, nothing replaced

    lines = Printed()
    training.train(config, tiny_dataset, run, init_run=parent, overwrite=True, on_event=lines)
    assert json.loads((run / "lineage.json").read_text())["init_model_sha256"] == new_digest
    assert any(line.startswith("cached") and "features-train.npz" in line for line in lines)  # recomputed


def test_feature_cache_of_another_model_is_computed_again(tmp_path):
    calls: list[int] = []

    def compute():
        calls.append(1)
        return np.ones((3, 4), np.float32) * len(calls), np.arange(3, dtype=np.int32)

    path = tmp_path / "features-train.npz"
    first = feature_cache.cached_features(path, compute, quiet, source="aaa")
    again = feature_cache.cached_features(path, compute, quiet, source="aaa")
    assert len(calls) == 1 and np.array_equal(first[0], again[0])
    lines = Printed()
    other = feature_cache.cached_features(path, compute, lines, source="bbb")
    assert len(calls) == 2 and other[0][0, 0] == 2 and "computed by another model" in lines[0]


def test_augmented_views_dataset_is_reproducible_and_differs_from_the_eval_view(tiny_dataset):
    config = tiny_config(phase=2)
    n = 48  # the tiny dataset's train images
    views = [np.concatenate([x.numpy() for x, _ in pipeline.make_views_dataset(tiny_dataset, "train", config, 3,
                                                                               seed=s, batch_size=16)])
             for s in (0, 0, 1)]
    labels = np.concatenate([y.numpy() for _, y in pipeline.make_views_dataset(tiny_dataset, "train", config, 3, 0)])
    eval_view = np.concatenate([x.numpy() for x, _ in pipeline.make_eval_dataset(tiny_dataset, "train", config)])
    eval_labels = pipeline.split_metadata(tiny_dataset, "train")["label"].to_numpy()
    assert views[0].shape == (3 * n, 32, 32, 3)
    np.testing.assert_array_equal(labels, np.tile(eval_labels, 3))  # view by view, stored order
    np.testing.assert_array_equal(views[0], views[1])  # same seed, same views
    assert not np.allclose(views[0], views[2])
    first, second = views[0][:n], views[0][n:2 * n]
    assert not np.allclose(first, second) and not np.allclose(first, eval_view)


def test_phase2_fast_path_with_augmented_feature_views(phase1_run, tiny_dataset, tmp_path):
    run = tmp_path / "p2views"
    config = tiny_config(phase=2, epochs=2, feature_views=3)
    config.train.steps_per_epoch = None
    lines = Printed()
    training.train(config, tiny_dataset, run, init_run=phase1_run, on_event=lines)
    with np.load(run / "checkpoints" / "features-train-views3.npz") as cached:
        assert cached["features"].shape == (3 * 48, 512)
    assert not (run / "checkpoints" / "features-train.npz").exists()
    lineage = json.loads((run / "lineage.json").read_text())
    assert "3 random train-time augmented views" in lineage["head_trained_on"]
    # An epoch is still one row per image: 48 images / batch 8 = 6 steps, not 18.
    state = runs.read_state(runs.RunPaths(run))
    head = M.load_model(run / "checkpoints" / state.checkpoint, compile=True)
    assert int(head.optimizer.iterations) == 2 * 6
    _check_phase2(run, phase1_run)


def test_mixed_precision_run_keeps_float32_logits(tiny_dataset, tmp_path):
    run = tmp_path / "mixed"
    training.train(tiny_config(epochs=1, mixed_precision=True), tiny_dataset, run, on_event=quiet)
    assert json.loads((run / "lineage.json").read_text())["dtype_policy"] == "mixed_bfloat16"  # CPU
    assert keras.config.dtype_policy().name == "float32"  # the global policy is restored
    model = M.load_model(run / "model.keras")
    assert model.get_layer("stage2_block1_conv1").compute_dtype == "bfloat16"
    logits = model(np.zeros((1, 32, 32, 3), np.float32), training=False)
    assert logits.dtype.name == "float32" and np.isfinite(np.asarray(logits)).all()


def test_fast_path_gives_the_same_head_as_the_slow_path(phase1_run, tiny_dataset):
    """Same initial head, same batches in the same order: the cached-feature head equals the head
    trained through the frozen full model, within float tolerance."""
    config = tiny_config(phase=2)
    loss_counts = [30, 12, 5, 1]
    # Fixed order; repeat() + steps_per_epoch as in training (Keras counts an extra optimizer
    # iteration per epoch on a dataset of unknown length, which shifts Adam's bias correction).
    images = pipeline.make_eval_dataset(tiny_dataset, "train", config, batch_size=8)
    steps = 48 // 8

    slow = M.freeze_backbone(M.load_model(phase1_run / "model.keras"))
    training.compile_model(slow, config.train, loss_counts)
    slow.fit(images.repeat(), steps_per_epoch=steps, epochs=3, shuffle=False, verbose=0)

    full = M.freeze_backbone(M.load_model(phase1_run / "model.keras"))
    features, labels = feature_cache.extract_features(full, images)
    assert features.shape == (48, 512)
    head = training.compile_model(M.head_model(full), config.train, loss_counts)
    head.fit(feature_cache.feature_batches(features, labels, 8, seed=None).repeat(), steps_per_epoch=steps, epochs=3,
             shuffle=False, verbose=0)
    assert int(head.optimizer.iterations) == int(slow.optimizer.iterations) == 3 * steps
    M.set_head_weights(full, M.head_layer(head).get_weights())

    initial = M.head_layer(M.load_model(phase1_run / "model.keras")).get_weights()
    for fast_w, slow_w, init_w in zip(M.head_layer(full).get_weights(), M.head_layer(slow).get_weights(), initial):
        assert not np.allclose(slow_w, init_w)  # the head did train
        np.testing.assert_allclose(fast_w, slow_w, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# NaN loss, reruns, bad input
# ---------------------------------------------------------------------------------------------

def test_nan_loss_stops_names_the_epoch_and_keeps_the_last_good_checkpoint(tiny_dataset, tmp_path, monkeypatch):
    real = pipeline.make_train_dataset

    def poisoned(dataset_dir, plan, config, augment, seed=None):
        data, steps = real(dataset_dir, plan, config, augment, seed)
        bad = data.map(lambda x, y: (x * float("inf"), y))
        # Two good batches (epoch 1 at steps_per_epoch=2), then infinite images (epoch 2).
        return data.take(2).concatenate(bad.take(2)), steps

    monkeypatch.setattr(pipeline, "make_train_dataset", poisoned)
    run = tmp_path / "nan"
    with pytest.raises(UserError, match=r"loss became nan in epoch 2; the last good checkpoint \(epoch 1\)"):
        training.train(tiny_config(epochs=3), tiny_dataset, run, on_event=quiet)
    state = runs.read_state(runs.RunPaths(run))
    assert state.epochs_done == 1 and not state.finished
    assert (run / "checkpoints" / "epoch-001.keras").is_file()
    good = M.load_model(run / "checkpoints" / "epoch-001.keras")
    assert all(np.isfinite(w).all() for w in weights_of(good).values())
    assert read_metrics(run)["epoch"].tolist() == [1]
    assert not (run / "model.keras").exists()


def test_finished_run_is_not_retrained_and_other_folders_are_refused(phase1_run, tiny_dataset, tmp_path):
    stamp = (phase1_run / "model.keras").stat().st_mtime_ns
    lines = Printed()
    training.train(tiny_config(), tiny_dataset, phase1_run, on_event=lines)
    assert "already holds this finished run" in lines[0]
    assert (phase1_run / "model.keras").stat().st_mtime_ns == stamp
    with pytest.raises(UserError, match="already holds different output"):
        training.train(tiny_config(epochs=3), tiny_dataset, phase1_run, on_event=quiet)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty and was not written by serengeti-tf"):
        training.train(tiny_config(), tiny_dataset, foreign, on_event=quiet)
    assert (foreign / "notes.txt").read_text() == "mine"


def test_bad_input(phase1_run, tiny_dataset, tmp_path):
    with pytest.raises(UserError, match="prepared dataset folder not found"):
        training.train(tiny_config(), tmp_path / "nowhere", tmp_path / "r1", on_event=quiet)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="class_map.json missing"):
        training.train(tiny_config(), tmp_path / "empty", tmp_path / "r2", on_event=quiet)
    with raises_as_cli(match="phase 2 needs --init RUN_DIR"):
        training.train(tiny_config(phase=2), tiny_dataset, tmp_path / "r3", on_event=quiet)
    with raises_as_cli(match="--init is only used by phase 2"):
        training.train(tiny_config(), tiny_dataset, tmp_path / "r4", init_run=phase1_run, on_event=quiet)
    with pytest.raises(UserError, match="model.keras missing"):
        training.train(tiny_config(phase=2), tiny_dataset, tmp_path / "r5", init_run=tmp_path, on_event=quiet)
    other = write_tiny_dataset(tmp_path / "other", {"antelope": 4, "zebra": 4, "buffalo": 4})
    with raises_as_cli(match=r"class map of --init run .* \(4 classes\) differs from the dataset's .* \(3 classes\)"):
        training.train(tiny_config(phase=2), other, tmp_path / "r6", init_run=phase1_run, on_event=quiet)
    # Nothing was claimed for any refused run.
    assert not any((tmp_path / f"r{i}").exists() for i in range(1, 7))


def test_tidy_checkpoints_never_touches_hidden_temp_files(tmp_path):
    """A save in progress has a `.keras` temp name too; tidying must not delete it (issue 10)."""
    paths = runs.RunPaths(tmp_path)
    paths.checkpoints.mkdir()
    for name in ("epoch-001.keras", "epoch-002.keras", "epoch-003.keras", "best-epoch-001.keras",
                 ".epoch-004.keras.x1y2.keras", ".epoch-004.keras.x1y2.tmp"):
        (paths.checkpoints / name).write_bytes(b"x")
    runs.write_state(paths, runs.RunState(epochs_done=2, checkpoint="epoch-002.keras",
                                          best_checkpoint="best-epoch-001.keras"))
    runs.write_state(paths, runs.RunState(epochs_done=3, checkpoint="epoch-003.keras",
                                          best_checkpoint="best-epoch-001.keras"))
    runs.tidy_checkpoints(paths, runs.read_state(paths))
    # Kept: the latest, its back-up (the state before), the best, and the temp files of a save.
    assert sorted(p.name for p in paths.checkpoints.glob("*.keras")) == [
        ".epoch-004.keras.x1y2.keras", "best-epoch-001.keras", "epoch-002.keras", "epoch-003.keras"]
    assert (paths.checkpoints / ".epoch-004.keras.x1y2.tmp").exists()


def test_corrupt_state_without_a_back_up_is_one_line(tmp_path):
    paths = runs.RunPaths(tmp_path)
    paths.checkpoints.mkdir()
    (paths.checkpoints / "state.json").write_text('{"epochs_done": 2, "checkpo')
    with raises_as_cli(match=r"state.json is corrupt .* no earlier complete checkpoint is kept; "
                             r"rerun with --overwrite") as info:
        runs.resume_state(paths, quiet)
    assert "\n" not in str(info.value)


def test_truncated_latest_checkpoint_resumes_from_the_back_up(tiny_dataset, tmp_path, monkeypatch):
    run = tmp_path / "truncated"
    real_write_metrics = runs.write_metrics

    def stop_after_epoch_two(paths, history):
        real_write_metrics(paths, history)
        if len(history) == 2:
            raise KeyboardInterrupt  # a kill right after epoch 2 was saved

    monkeypatch.setattr(runs, "write_metrics", stop_after_epoch_two)
    config = tiny_config(epochs=3, early_stopping_patience=0)
    with pytest.raises(KeyboardInterrupt):
        training.train(config, tiny_dataset, run, on_event=quiet)
    monkeypatch.setattr(runs, "write_metrics", real_write_metrics)
    latest = run / "checkpoints" / "epoch-002.keras"
    assert runs.read_state(runs.RunPaths(run)).checkpoint == latest.name
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # a crash or full disk mid-write
    lines = Printed()
    training.train(config, tiny_dataset, run, on_event=lines)
    assert any(f"checkpoint {latest} is corrupt" in line and "epoch-001.keras (epoch 1)" in line for line in lines)
    assert "resuming" in "\n".join(lines) and [line.split()[1] for line in lines if line.startswith("epoch ")] \
        == ["2/3", "3/3"]
    assert read_metrics(run)["epoch"].tolist() == [1, 2, 3]
    assert runs.read_state(runs.RunPaths(run)).finished and runs.checkpoint_is_complete(latest)


def test_overwrite_keeps_files_the_user_put_in_the_run_folder(phase1_run, tiny_dataset, tmp_path):
    run = shutil.copytree(phase1_run, tmp_path / "run")  # a finished run of tiny_config()
    (run / "notes.txt").write_text("the user's")
    training.train(tiny_config(), tiny_dataset, run, overwrite=True, on_event=quiet)
    assert (run / "notes.txt").read_text() == "the user's" and (run / "model.keras").is_file()
    assert runs.read_state(runs.RunPaths(run)).finished


def test_cli_phase2_without_init_exits_2(tiny_dataset, tmp_path):
    result = subprocess.run(train_cli("--data", str(tiny_dataset), "--phase", "2", "--run-dir", str(tmp_path / "r")),
                            capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: phase 2 needs --init RUN_DIR")


class _StopBeforeTraining(Exception):
    pass


def test_sampler_seed_seeds_the_training_data(tiny_dataset, tmp_path, monkeypatch):
    """`sampler.seed` is the data stream's seed when set; null follows `train.seed` (was: ignored)."""
    seen: list = []

    def capture(dataset_dir, plan, config, augment, seed=None):
        seen.append(seed)
        raise _StopBeforeTraining

    monkeypatch.setattr(pipeline, "make_train_dataset", capture)
    for i, (train_seed, sampler_seed) in enumerate([(0, 5), (1, 5), (3, None)]):
        config = tiny_config(seed=train_seed)
        config.sampler.seed = sampler_seed
        with pytest.raises(_StopBeforeTraining):
            training.train(config, tiny_dataset, tmp_path / f"run{i}", on_event=quiet)
        assert json.loads((tmp_path / f"run{i}" / "lineage.json").read_text())["data_seed"] == seen[-1]
    assert seen == [5, 5, 3]
    assert pipeline.data_seed(cfg.Config()) == 0  # default: train.seed 0, reproducible


def test_default_run_dir(phase1_run):
    config = tiny_config()
    config.sampler.name = "ros"
    config.train.seed = 3
    assert runs.default_run_dir(config) == Path("runs/ros-phase1-seed3")
    config.train.phase = 2
    # Named after the phase-1 run's sampler (none), not the phase-2 config's.
    assert runs.default_run_dir(config, phase1_run) == Path("runs/none-phase2-seed3")


# ---------------------------------------------------------------------------------------------
# Subprocesses: resume after SIGKILL, distribution strategies
# ---------------------------------------------------------------------------------------------

def _wait_for(predicate, timeout: float, what: str, process=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if process is not None and process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            pytest.fail(f"process ended (code {process.returncode}) before {what}: {out[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_resume_after_sigkill_continues_with_optimizer_state(tiny_dataset, tmp_path):
    run = tmp_path / "resume"
    epochs, steps = 3, 4
    command = train_cli("--data", str(tiny_dataset), "--phase", "1", "--run-dir", str(run), "--epochs", str(epochs),
                  *TINY_ARGS, "--set", f"train.steps_per_epoch={steps}", "--set", "train.early_stopping_patience=0")
    first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=subprocess_env())
    state_file = run / "checkpoints" / "state.json"

    def epoch_done() -> bool:
        return state_file.exists() and json.loads(state_file.read_text())["epochs_done"] >= 1

    try:
        _wait_for(epoch_done, 240, "the first epoch", first)
        time.sleep(0.3)  # into the next epoch
        # A second train into the same run folder (this test's process) is refused while it runs.
        with pytest.raises(UserError, match=f"{run} is in use by process {first.pid}"):
            training.train(tiny_config(epochs=epochs), tiny_dataset, run, on_event=quiet)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    done_at_kill = json.loads(state_file.read_text())["epochs_done"]
    assert first.returncode == -signal.SIGKILL and 1 <= done_at_kill < epochs
    assert not (run / "model.keras").exists()

    second = subprocess.run(command, capture_output=True, text=True, env=subprocess_env(), timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]
    assert f"resuming {run} after epoch {done_at_kill}/{epochs}" in second.stdout
    trained = [line.split()[1] for line in second.stdout.splitlines() if line.startswith("epoch ")]
    assert trained == [f"{e}/{epochs}" for e in range(done_at_kill + 1, epochs + 1)]
    assert read_metrics(run)["epoch"].tolist() == list(range(1, epochs + 1))
    assert runs.read_state(runs.RunPaths(run)).finished
    # The optimizer state carried over: Adam took every planned step, not only the resumed ones.
    last = keras.models.load_model(run / "checkpoints" / f"epoch-{epochs:03d}.keras", compile=True)
    assert int(keras.ops.convert_to_numpy(last.optimizer.iterations)) == epochs * steps


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="module")
def distributed_runs(tiny_dataset, tmp_path_factory) -> dict:
    """One MirroredStrategy run and one two-worker MultiWorkerMirroredStrategy run, started together
    (three processes) to keep the file's wall time down; returns run folders, exit codes, outputs."""
    root = tmp_path_factory.mktemp("distributed")
    common = ["--data", str(tiny_dataset), "--phase", "1", "--epochs", "1", *TINY_ARGS,
              "--set", "train.steps_per_epoch=2"]
    jobs = {"mirrored": (train_cli(*common, "--run-dir", str(root / "mirrored"), "--strategy", "mirrored"),
                         subprocess_env(SERENGETI_TF_CPU_REPLICAS="2"))}
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    for index in range(2):
        tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        jobs[f"worker{index}"] = (train_cli(*common, "--run-dir", str(root / "multi"), "--strategy", "multi_worker"),
                                  subprocess_env(TF_CONFIG=tf_config))
    processes = {name: subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                        env=env) for name, (command, env) in jobs.items()}
    try:
        outputs = {name: p.communicate(timeout=400)[0] for name, p in processes.items()}
    finally:
        for p in processes.values():
            if p.poll() is None:
                p.kill()
    return {"root": root, "codes": {name: p.returncode for name, p in processes.items()}, "outputs": outputs}


def test_mirrored_strategy_over_two_logical_cpus(distributed_runs):
    assert distributed_runs["codes"]["mirrored"] == 0, distributed_runs["outputs"]["mirrored"][-3000:]
    run = distributed_runs["root"] / "mirrored"
    lineage = json.loads((run / "lineage.json").read_text())
    assert lineage["strategy"] == "mirrored" and lineage["replicas"] == 2
    assert read_metrics(run)["epoch"].tolist() == [1]
    model = M.load_model(run / "model.keras")
    # Two replicas: BN uses global batch statistics, so replicas keep equal moving statistics.
    assert model.get_layer("stem_conv_bn").synchronized


def test_multi_worker_strategy_two_processes_on_localhost(distributed_runs):
    outputs = [distributed_runs["outputs"][f"worker{i}"] for i in range(2)]
    for i, out in enumerate(outputs):
        assert distributed_runs["codes"][f"worker{i}"] == 0, out[-3000:]
    run = distributed_runs["root"] / "multi"
    lineage = json.loads((run / "lineage.json").read_text())
    assert lineage["strategy"] == "multi_worker" and lineage["replicas"] == 2
    assert read_metrics(run)["epoch"].tolist() == [1]
    assert (run / "model.keras").is_file()
    # Both workers trained the same epoch and, with synchronised weights and BN statistics, report
    # identical metrics (so their early-stopping decisions agree); only the chief wrote the run.
    summaries = [[line for line in out.splitlines() if line.startswith("epoch 1/1")] for out in outputs]
    assert len(summaries[0]) == 1 and [s.rsplit("  ", 2)[0] for s in summaries[0]] == [
        s.rsplit("  ", 2)[0] for s in summaries[1]]
