"""Suite ``scaling``: training images/sec over 1..N replicas, and across workers from TF_CONFIG.

Without TF_CONFIG (or with a one-worker cluster) it trains with ``MirroredStrategy`` over each count in
``replica_counts`` of this machine's GPUs (or ``cpu_devices`` logical CPU devices), the per-replica batch fixed,
and records scaling efficiency. With TF_CONFIG naming more than one worker it joins that cluster under
``MultiWorkerMirroredStrategy`` with a custom training loop (Keras 3's fit fails there). TensorFlow only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from keras_bench.errors import ParamError
from keras_bench.models.backends import lean_imports
from keras_bench.models.builders import SMALL_CNN, build_model
from keras_bench.params import (
    ParamValue,
    fraction,
    list_of,
    non_negative_int,
    positive_float,
    positive_int,
    text,
)
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder
from keras_bench.results import MetadataValue
from keras_bench.suites.base import Suite
from keras_bench.timing.rows import add_spread, add_step_times, record_training
from keras_bench.timing.spread import Spread
from keras_bench.timing.steps import StepTimer
from keras_bench.timing.throughput import TrainingTiming, summarize_repeats
from keras_bench.training.distribute import (
    WorkerRole,
    configure_cpu_devices,
    local_devices,
    read_tf_config,
    require_tensorflow_backend,
    run_timed_loop,
    synthetic_dataset,
    train_step_function,
)

SUITE_NAME = "scaling"
CHANNELS = 3

# Keep names and defaults identical to benchmarks/suites/scaling.yaml.
SCALING_PARAMS = (
    text("model", SMALL_CNN),
    positive_int("image_size", 32),
    positive_int("num_classes", 10),
    positive_int("per_replica_batch", 64),
    list_of(positive_int("replica_counts", 1), [1, 2, 4, 8]),
    non_negative_int("cpu_devices", 0),
    positive_int("steps", 50),
    non_negative_int("warmup_steps", 10),
    positive_int("repeats", 3),
    positive_float("learning_rate", 0.001),
    fraction("dropout", 0.0),
    positive_int("worker_timeout_s", 600),
    non_negative_int("seed", 0),
)


@dataclass(frozen=True)
class ScalingParams:
    """The scaling suite's params, typed."""

    model: str
    image_size: int  # synthetic images are image_size x image_size x 3
    num_classes: int
    per_replica_batch: int  # fixed; the global batch is per_replica_batch x replicas
    replica_counts: tuple[int, ...]  # single-node mode only; counts above the devices present are skipped
    cpu_devices: int  # 0: GPUs (or the one CPU); N: split the CPU into N logical devices (tests, CPU hosts)
    steps: int  # timed steps per repeat
    warmup_steps: int  # untimed steps at the start of every repeat
    repeats: int
    learning_rate: float
    dropout: float
    worker_timeout_s: int  # multi-worker mode: a collective op waiting longer than this fails the run
    seed: int

    @classmethod
    def from_params(cls, params: Mapping[str, ParamValue]) -> ScalingParams:
        """Types the effective params of ``SCALING_PARAMS``."""
        counts = params["replica_counts"]
        assert isinstance(counts, list)
        return cls(
            model=str(params["model"]),
            image_size=int(params["image_size"]),
            num_classes=int(params["num_classes"]),
            per_replica_batch=int(params["per_replica_batch"]),
            replica_counts=tuple(sorted({int(count) for count in counts})),
            cpu_devices=int(params["cpu_devices"]),
            steps=int(params["steps"]),
            warmup_steps=int(params["warmup_steps"]),
            repeats=int(params["repeats"]),
            learning_rate=float(params["learning_rate"]),
            dropout=float(params["dropout"]),
            worker_timeout_s=int(params["worker_timeout_s"]),
            seed=int(params["seed"]),
        )

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """One synthetic image, (H, W, C)."""
        return (self.image_size, self.image_size, CHANNELS)


def record_worker_throughput(
    recorder: RunRecorder, timing: TrainingTiming, share: float, metadata: Mapping[str, MetadataValue]
) -> float:
    """Writes ``worker_train_throughput`` rows: this worker's images/sec with its repeats' spread (see
    ``timing.rows.add_spread``) and the step times it saw.

    Args:
        recorder: Receives the rows.
        timing: The timed repeats; their images are the global batch.
        share: This worker's fraction of the global batch (its replicas over all replicas).
        metadata: The recipe.

    Returns:
        The worker's images/sec: the median repeat's global figure times ``share``.
    """
    value = add_spread(
        recorder, "worker_train_throughput", Spread(tuple(v * share for v in timing.spread.values)), dict(metadata)
    )
    add_step_times(recorder, "worker_train_throughput", timing.step_ms, dict(metadata), timing.full_batch_steps)
    return value


def _record_losses(recorder: RunRecorder, losses: Sequence[float], metadata: Mapping[str, MetadataValue]) -> None:
    # The first and last repeat's mean training loss: the run trained when the last is lower.
    for epoch in sorted({1, len(losses)}):
        recorder.add("train", "loss", losses[epoch - 1], "", {**metadata, "split": "train", "epoch": epoch})


def _recipe(p: ScalingParams, backend: str) -> dict[str, MetadataValue]:
    return {
        "model": p.model,
        "batch_size": p.per_replica_batch,
        "per_replica_batch": p.per_replica_batch,
        "precision": "float32",
        "data": "synthetic",
        "image_size": p.image_size,
        "backend": backend,
        "warmup_steps": p.warmup_steps,
        "repeat": p.repeats,
    }


def _run_mirrored(p: ScalingParams, recorder: RunRecorder, recipe: dict[str, MetadataValue]) -> None:
    import keras  # loaded by the timed import already; at module level --check would load it
    import tensorflow as tf

    from keras_bench.timing.callbacks import ProgressCallback, StepTimerCallback, StopCheckCallback

    devices, device_type = local_devices(p.cpu_devices)
    counts = [count for count in p.replica_counts if count <= len(devices)]
    skipped = [count for count in p.replica_counts if count > len(devices)]
    if not counts:
        raise ParamError(
            f"param 'replica_counts': every count exceeds the {len(devices)} {device_type} device(s) available, "
            f"received {list(p.replica_counts)}"
        )
    base: dict[str, MetadataValue] = {**recipe, "strategy": "mirrored", "workers": 1, "device_type": device_type}
    base["devices_available"] = len(devices)
    if skipped:
        base["skipped_replica_counts"] = ",".join(str(count) for count in skipped)
        say(f"replica_counts {skipped} skipped: only {len(devices)} {device_type} device(s) available")
    steps_per_repeat = p.warmup_steps + p.steps
    throughput: dict[int, float] = {}
    for replicas in counts:
        global_batch = p.per_replica_batch * replicas
        strategy = tf.distribute.MirroredStrategy(devices[:replicas])
        metadata = {
            **base,
            "replicas": replicas,
            "global_batch": global_batch,
            "gpus": replicas if device_type == "gpu" else 0,
        }
        say(f"mirrored over {replicas} {device_type} device(s): global batch {global_batch}")
        with recorder.phase("data", "data"):
            dataset = synthetic_dataset(strategy, global_batch, p.image_shape, p.num_classes, p.seed)
        with recorder.phase("build", "compute"):
            keras.utils.set_random_seed(p.seed)
            with strategy.scope():
                model = build_model(p.model, p.image_shape, p.num_classes, dropout=p.dropout)
                model.compile(
                    optimizer=keras.optimizers.Adam(learning_rate=p.learning_rate),
                    loss="sparse_categorical_crossentropy",
                )
        timer = StepTimer()
        with recorder.phase("train", "compute"):
            history = model.fit(
                dataset,
                epochs=p.repeats,
                steps_per_epoch=steps_per_repeat,
                shuffle=False,  # the synthetic batches are fixed; there is nothing to shuffle
                verbose=0,
                callbacks=[
                    StepTimerCallback(timer, global_batch * steps_per_repeat, global_batch),
                    ProgressCallback(p.repeats),
                    StopCheckCallback(recorder.stop),
                ],
            )
        timing = summarize_repeats(timer.steps, p.warmup_steps, global_batch)
        images_per_sec = record_training(recorder, timing, metadata)
        assert images_per_sec is not None  # every repeat has `steps` >= 1 timed steps
        throughput[replicas] = images_per_sec
        _record_losses(recorder, [float(loss) for loss in history.history["loss"]], metadata)
        say(f"{replicas} replica(s): {throughput[replicas]:.0f} images/s (median of {p.repeats} repeats)")
        keras.backend.clear_session()
    _record_efficiency(recorder, throughput, base)


def _record_efficiency(
    recorder: RunRecorder, throughput: Mapping[int, float], base: Mapping[str, MetadataValue]
) -> None:
    """Scaling efficiency of each count against the smallest count measured (1 by default)."""
    if len(throughput) < 2:
        say("no scaling_efficiency: only one replica count was measured")
        return
    baseline = min(throughput)
    on_gpus = base["device_type"] == "gpu"
    for replicas, images_per_sec in sorted(throughput.items()):
        if replicas == baseline:
            continue
        efficiency = images_per_sec * baseline / (replicas * throughput[baseline])
        recorder.add(
            "train_throughput",
            "scaling_efficiency",
            efficiency,
            "fraction",
            {**base, "replicas": replicas, "baseline_replicas": baseline, "gpus": replicas if on_gpus else 0},
        )
        say(f"scaling efficiency {replicas} vs {baseline} replica(s): {efficiency:.3f}")


def _run_multi_worker(
    p: ScalingParams, role: WorkerRole, recorder: RunRecorder, recipe: dict[str, MetadataValue]
) -> None:
    import keras  # loaded by the timed import already; at module level --check would load it
    import tensorflow as tf

    say(f"multi-worker: {role.task_type} {role.task_index} of {role.workers} workers; waiting for the cluster")
    with recorder.phase("connect", "compute"):
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=p.worker_timeout_s)
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    replicas = int(strategy.num_replicas_in_sync)
    worker_devices = list(strategy.extended.worker_devices)
    device_type = "gpu" if "GPU" in worker_devices[0].upper() else "cpu"
    global_batch = p.per_replica_batch * replicas
    metadata: dict[str, MetadataValue] = {
        **recipe,
        "strategy": "multi_worker_mirrored",
        "workers": role.workers,
        "replicas": replicas,
        "local_replicas": len(worker_devices),
        "global_batch": global_batch,
        "device_type": device_type,
        "gpus": replicas if device_type == "gpu" else 0,
        "worker_index": role.worker_index,
        "task_type": role.task_type,
        "task_index": role.task_index,
    }
    say(f"cluster ready: {replicas} replicas, global batch {global_batch}")
    with recorder.phase("data", "data"):
        iterator = iter(synthetic_dataset(strategy, global_batch, p.image_shape, p.num_classes, p.seed))
    with recorder.phase("build", "compute"):
        keras.utils.set_random_seed(p.seed)
        with strategy.scope():
            model = build_model(p.model, p.image_shape, p.num_classes, dropout=p.dropout)
            optimizer = keras.optimizers.Adam(learning_rate=p.learning_rate)
            optimizer.build(model.trainable_variables)
        step = train_step_function(strategy, model, optimizer, global_batch)
    timer = StepTimer()
    with recorder.phase("train", "compute"):
        losses = run_timed_loop(
            step,
            iterator,
            timer,
            repeats=p.repeats,
            steps_per_repeat=p.warmup_steps + p.steps,
            global_batch=global_batch,
            before_step=recorder.stop.check,
            after_repeat=lambda repeat, loss: say(f"epoch {repeat + 1}/{p.repeats} loss={loss:.4f}"),
        )
    timing = summarize_repeats(timer.steps, p.warmup_steps, global_batch)
    own = record_worker_throughput(recorder, timing, len(worker_devices) / replicas, metadata)
    say(f"worker {role.worker_index}: {own:.0f} images/s of its own (median of {p.repeats} repeats)")
    if role.is_chief:
        total = record_training(recorder, timing, metadata)
        _record_losses(recorder, losses, metadata)
        say(f"cluster: {total or 0:.0f} images/s over {role.workers} workers")


def run_scaling(params: Mapping[str, ParamValue], recorder: RunRecorder) -> None:
    """Measures training throughput under MirroredStrategy or, from TF_CONFIG, MultiWorkerMirroredStrategy.

    Args:
        params: Effective params from ``SCALING_PARAMS``.
        recorder: Receives samples and phase timings.

    Raises:
        ParamError: For a backend other than TensorFlow, a malformed TF_CONFIG, or replica counts none of
            which fits the devices present.
    """
    p = ScalingParams.from_params(params)
    require_tensorflow_backend(SUITE_NAME, os.environ.get("KERAS_BACKEND"))
    role = read_tf_config(os.environ)
    multi_worker = role is not None and role.workers > 1

    with recorder.phase("import", "import"), lean_imports():
        import tensorflow  # noqa: F401  (first, so the CPU split below precedes device initialisation)

        if not multi_worker and p.cpu_devices > 0:
            configure_cpu_devices(p.cpu_devices)
        import keras  # timed: the run's first Keras import
    require_tensorflow_backend(SUITE_NAME, keras.backend.backend())
    say(f"imported keras {keras.__version__} (backend tensorflow) in {recorder.seconds['import']:.1f}s")

    recipe = _recipe(p, keras.backend.backend())
    if role is not None and multi_worker:
        if p.cpu_devices > 0:
            say("cpu_devices is ignored with more than one worker: each worker uses its GPUs, or its CPU")
        _run_multi_worker(p, role, recorder, recipe)
    else:
        _run_mirrored(p, recorder, recipe)


SCALING = Suite(
    name=SUITE_NAME,
    description="Training images/sec of a model on synthetic images under MirroredStrategy over 1..N local "
    "devices (scaling efficiency), or MultiWorkerMirroredStrategy across the workers in TF_CONFIG. TensorFlow only.",
    params=SCALING_PARAMS,
    run=run_scaling,
)
