"""tf.distribute for the scaling suite: TF_CONFIG, local devices, synthetic input and the multi-worker loop.

TensorFlow-only. Nothing here imports TensorFlow or Keras at module import; the functions that need them
import them when called, inside a suite run.

Keras 3's ``model.fit`` fails under ``MultiWorkerMirroredStrategy`` (keras-team/keras#20585), so multi-worker
training uses ``train_step_function``: ``strategy.run`` of a ``tf.GradientTape`` step whose loss is
``tf.nn.compute_average_loss`` over the global batch. The Keras optimizer sums gradients across replicas in
``apply_gradients``, so the update equals one step on the global batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from keras_bench.errors import ParamError
from keras_bench.timing.steps import StepTimer

TF_CONFIG = "TF_CONFIG"
_TF_CONFIG_ECHO_CHARS = 300


@dataclass(frozen=True)
class WorkerRole:
    """This process's place in the cluster that TF_CONFIG describes."""

    workers: int  # chief + workers in the cluster
    task_type: str  # "chief" or "worker", as TF_CONFIG names it
    task_index: int  # index within task_type
    worker_index: int  # position among all workers, chief first: 0 is the chief

    @property
    def is_chief(self) -> bool:
        """Whether this process records the job-wide figures (the chief, else worker 0)."""
        return self.worker_index == 0


def _tf_config_error(problem: str, text: str) -> ParamError:
    shown = text if len(text) <= _TF_CONFIG_ECHO_CHARS else text[:_TF_CONFIG_ECHO_CHARS] + "..."
    return ParamError(f"environment variable {TF_CONFIG}: {problem}, received {shown}")


def read_tf_config(environ: Mapping[str, str]) -> WorkerRole | None:
    """Reads this worker's role from ``TF_CONFIG``.

    Accepts ``{"cluster": {"worker": ["host:port", ...], "chief": ["host:port"]}, "task": {"type": "worker",
    "index": 0}}``; ``chief`` is optional (without it, worker 0 is the chief).

    Args:
        environ: The process environment.

    Returns:
        The role, or None when TF_CONFIG is unset or empty.

    Raises:
        ParamError: When TF_CONFIG is not JSON, names a task the cluster does not have, or has a parameter
            server (MultiWorkerMirroredStrategy has none); the message echoes the value received.
    """
    text = environ.get(TF_CONFIG, "").strip()
    if not text:
        return None
    try:
        config = json.loads(text)
    except ValueError as exc:
        raise _tf_config_error(f"not JSON ({exc})", text) from exc
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not isinstance(task, dict):
        raise _tf_config_error('expected an object with "cluster" and "task"', text)
    if "ps" in cluster:
        raise _tf_config_error("parameter servers are not supported (MultiWorkerMirroredStrategy has none)", text)
    chiefs, workers = cluster.get("chief", []), cluster.get("worker", [])
    if not isinstance(chiefs, list) or not isinstance(workers, list) or len(chiefs) > 1:
        raise _tf_config_error('expected "cluster" lists "worker" (and at most one "chief") of host:port', text)
    task_type, task_index = task.get("type"), task.get("index", 0)
    members = {"chief": chiefs, "worker": workers}.get(task_type) if isinstance(task_type, str) else None
    valid_index = isinstance(task_index, int) and not isinstance(task_index, bool)
    if members is None or not valid_index or not 0 <= task_index < len(members):
        raise _tf_config_error('expected "task" to name a chief or worker listed in "cluster"', text)
    assert isinstance(task_type, str)
    worker_index = task_index if task_type == "chief" else len(chiefs) + task_index
    return WorkerRole(len(chiefs) + len(workers), task_type, task_index, worker_index)


def require_tensorflow_backend(suite: str, backend: str | None) -> None:
    """Rejects a Keras backend other than TensorFlow for a suite built on tf.distribute.

    Args:
        suite: The suite's name, for the message.
        backend: ``KERAS_BACKEND`` before Keras is imported, or ``keras.backend.backend()`` after; None or
            empty means the default, TensorFlow.

    Raises:
        ParamError: Naming the backend received.
    """
    if backend and backend != "tensorflow":
        raise ParamError(f"suite '{suite}': tf.distribute needs KERAS_BACKEND=tensorflow, received backend {backend}")


def configure_cpu_devices(count: int) -> None:
    """Splits the CPU into ``count`` logical devices; must run before TensorFlow initialises its devices.

    Args:
        count: Logical CPU devices wanted (at least 1).

    Raises:
        RuntimeError: When TensorFlow already initialised its devices with another split.
    """
    import tensorflow as tf  # lazy: suites import this module, and --check must not load TensorFlow

    cpu = tf.config.list_physical_devices("CPU")[0]
    wanted = [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, wanted)
    except RuntimeError as exc:
        raise RuntimeError(
            f"cannot split the CPU into {count} logical devices: TensorFlow initialised its devices first. "
            f"Received: cpu_devices={count}"
        ) from exc


def local_devices(cpu_devices: int) -> tuple[list[str], str]:
    """Lists the devices MirroredStrategy may use on this machine.

    Args:
        cpu_devices: 0 for the GPUs (or the one CPU when there is no GPU); N for N logical CPU devices, which
            ``configure_cpu_devices(N)`` must have made.

    Returns:
        (device names in index order, "gpu" or "cpu").
    """
    import tensorflow as tf  # lazy: suites import this module, and --check must not load TensorFlow

    if cpu_devices == 0:
        gpus = [device.name for device in tf.config.list_logical_devices("GPU")]
        if gpus:
            return gpus, "gpu"
    cpus = [device.name for device in tf.config.list_logical_devices("CPU")]
    return cpus[: max(cpu_devices, 1)], "cpu"


def synthetic_dataset(
    strategy: Any,
    global_batch: int,
    image_shape: tuple[int, int, int],
    num_classes: int,
    seed: int,
) -> Any:
    """Makes an endless distributed dataset of one fixed synthetic batch per replica.

    Each input pipeline (one per worker) draws one batch for each of its replicas once, from ``seed`` and its
    pipeline id, and repeats them; ``distribute_datasets_from_function`` prefetches each replica's batch to
    its device, so the step never waits for data.

    Args:
        strategy: A ``tf.distribute`` strategy.
        global_batch: Images per step over all replicas; a multiple of ``strategy.num_replicas_in_sync``.
        image_shape: One image, (H, W, C).
        num_classes: Labels are drawn uniformly from ``range(num_classes)``.
        seed: Seed of the draw.

    Returns:
        A ``tf.distribute.DistributedDataset`` yielding (images float32 in [0, 1), labels int32).
    """
    import tensorflow as tf  # lazy: suites import this module, and --check must not load TensorFlow

    def per_pipeline(context: Any) -> Any:
        batch = context.get_per_replica_batch_size(global_batch)
        # A pipeline's consecutive elements go to its replicas in turn: one distinct batch per replica.
        replicas = max(context.num_replicas_in_sync // context.num_input_pipelines, 1)
        pipeline = context.input_pipeline_id
        images = tf.random.stateless_uniform(
            (replicas, batch, *image_shape), seed=[seed, 2 * pipeline], dtype=tf.float32
        )
        labels = tf.random.stateless_uniform(
            (replicas, batch), seed=[seed, 2 * pipeline + 1], minval=0, maxval=num_classes, dtype=tf.int32
        )
        return tf.data.Dataset.from_tensor_slices((images, labels)).repeat()

    return strategy.distribute_datasets_from_function(per_pipeline)


def train_step_function(strategy: Any, model: Any, optimizer: Any, global_batch: int) -> Callable[[Any], Any]:
    """Builds a compiled training step for a custom loop under any tf.distribute strategy.

    Args:
        strategy: The strategy whose scope created ``model`` and ``optimizer``.
        model: A Keras classifier with softmax outputs.
        optimizer: A Keras optimizer, built on the model's trainable variables.
        global_batch: Images per step over all replicas; the loss is averaged over it.

    Returns:
        A ``tf.function`` taking a distributed iterator and returning the step's loss summed over replicas
        (the global mean loss).
    """
    import keras  # lazy: suites import this module, and --check must not load Keras
    import tensorflow as tf

    def replica_step(images: Any, labels: Any) -> Any:
        with tf.GradientTape() as tape:
            probabilities = model(images, training=True)
            per_example = keras.losses.sparse_categorical_crossentropy(labels, probabilities)
            loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        return loss

    def step(iterator: Any) -> Any:
        images, labels = next(iterator)
        per_replica_loss = strategy.run(replica_step, args=(images, labels))
        return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica_loss, axis=None)

    compiled: Callable[[Any], Any] = tf.function(step)
    return compiled


def run_timed_loop(
    step: Callable[[Any], Any],
    iterator: Any,
    timer: StepTimer,
    *,
    repeats: int,
    steps_per_repeat: int,
    global_batch: int,
    before_step: Callable[[], None] = lambda: None,
    after_repeat: Callable[[int, float], None] = lambda repeat, loss: None,
) -> list[float]:
    """Runs ``repeats`` passes of ``steps_per_repeat`` steps, timing every step into ``timer``.

    Each pass is one of the timer's epochs. Reading the loss as a Python float waits for the step (and, under
    MultiWorkerMirroredStrategy, for its all-reduce across workers), so a step's time is its real end.

    Args:
        step: From ``train_step_function``.
        iterator: ``iter()`` of a distributed dataset.
        timer: Receives epoch and batch events.
        repeats: Passes.
        steps_per_repeat: Steps per pass, warm-up included.
        global_batch: Images per step over all replicas.
        before_step: Called before each step, outside its timing; a stop check raises from here.
        after_repeat: Called after each pass with its 0-based index and mean loss.

    Returns:
        The mean loss of each pass.
    """
    losses = []
    for repeat in range(repeats):
        timer.epoch_begin()
        total = 0.0
        for _ in range(steps_per_repeat):
            before_step()
            timer.batch_begin()
            total += float(step(iterator))
            timer.batch_end(global_batch)
        losses.append(total / steps_per_repeat)
        after_repeat(repeat, losses[-1])
    return losses
