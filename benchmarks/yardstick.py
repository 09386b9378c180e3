"""An independent yardstick for the payload's training throughput: a plain training loop per Keras backend.

Written apart from ``keras_bench`` on purpose: it imports nothing of the payload (no model builder, no data
feed, no timing code), so what it measures does not share the payload's set-up or its mistakes. It builds the
same architecture from ``keras.layers`` / ``keras.applications`` itself, makes its own random batch on the
device, and trains it with the plainest step each backend has:

* TensorFlow: a ``tf.function`` holding ``GradientTape`` and ``optimizer.apply_gradients``;
* JAX: one ``jax.jit``-compiled step over ``model.stateless_call`` and ``optimizer.stateless_apply``, the
  state threaded through and donated.

Inference (``--mode inference``) is the plainest forward pass: a ``tf.function`` (a ``jax.jit`` over
``stateless_call``) of ``model(images, training=False)``.

Timing: ``warmup`` steps (tracing and compilation) untimed, then ``steps`` steps back to back with one host
sync at the end of the window (the loss or a prediction read, or ``block_until_ready``), so no per-step Python
or sync is in the figure. ``python benchmarks/yardstick.py --backend tensorflow --model mobilenet_v2`` prints
one figure per window; ``--mode both --json`` trains, then predicts, and prints one JSON line (a process of its
own, as a payload run is).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass
from typing import Any

SEED = 0
CHANNELS = 3
LEARNING_RATE = 0.001
DROPOUT = 0.25


@dataclass(frozen=True)
class Workload:
    """What to train: model, square input side, classes, batch size and dtype policy."""

    model: str  # "small_cnn" or a keras.applications function name in snake case ("mobilenet_v2", "resnet50")
    image_size: int
    num_classes: int
    batch_size: int
    precision: str = "float32"  # a Keras dtype policy: float32, mixed_float16, mixed_bfloat16


APPLICATIONS = {"mobilenet_v2": "MobileNetV2", "resnet50": "ResNet50", "efficientnet_b0": "EfficientNetB0"}


def build(workload: Workload) -> Any:
    """Builds the workload's model from Keras alone: the small CNN, or an application + dropout + dense softmax."""
    import keras

    shape = (workload.image_size, workload.image_size, CHANNELS)
    keras.config.set_dtype_policy(workload.precision)
    try:
        if workload.model == "small_cnn":
            layers = [
                keras.Input(shape),
                keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
                keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
                keras.layers.MaxPooling2D(),
                keras.layers.Dropout(DROPOUT),
                keras.layers.Flatten(),
                keras.layers.Dense(128, activation="relu"),
                keras.layers.Dropout(DROPOUT),
                keras.layers.Dense(workload.num_classes, activation="softmax", dtype="float32"),
            ]
            return keras.Sequential(layers)
        application = getattr(keras.applications, APPLICATIONS[workload.model])
        inputs = keras.Input(shape)
        features = application(include_top=False, weights=None, input_shape=shape, pooling="avg")(inputs)
        features = keras.layers.Dropout(DROPOUT)(features)
        outputs = keras.layers.Dense(workload.num_classes, activation="softmax", dtype="float32")(features)
        return keras.Model(inputs, outputs)
    finally:
        keras.config.set_dtype_policy("float32")


class Loop:
    """A plain training loop on one backend: ``run(steps)`` trains that many steps and returns their seconds."""

    def __init__(self, workload: Workload) -> None:
        """Builds the model, the batch (on the device) and the compiled step; nothing is run yet."""
        import keras

        keras.utils.set_random_seed(SEED)
        self.workload = workload
        self.model = build(workload)
        self.optimizer = keras.optimizers.Adam(learning_rate=LEARNING_RATE)
        self.loss = keras.losses.SparseCategoricalCrossentropy()
        shape = (workload.batch_size, workload.image_size, workload.image_size, CHANNELS)
        self.images = keras.random.uniform(shape, seed=SEED)
        self.labels = keras.random.randint((workload.batch_size,), 0, workload.num_classes, seed=SEED + 1)
        self.backend = keras.backend.backend()
        if self.backend == "tensorflow":
            self._setup_tensorflow()
        elif self.backend == "jax":
            self._setup_jax()
        else:
            raise SystemExit(f"yardstick: backend {self.backend!r} has no plain loop here; use tensorflow or jax")

    def _setup_tensorflow(self) -> None:
        import tensorflow as tf

        model, optimizer, loss_fn = self.model, self.optimizer, self.loss
        scaled = self.workload.precision == "mixed_float16"
        if scaled:
            import keras

            optimizer = self.optimizer = keras.optimizers.LossScaleOptimizer(optimizer)

        @tf.function(jit_compile=False)  # type: ignore[untyped-decorator]
        def step(images: Any, labels: Any) -> Any:
            with tf.GradientTape() as tape:
                loss = loss_fn(labels, model(images, training=True))
                scaled_loss = optimizer.scale_loss(loss) if scaled else loss
            gradients = tape.gradient(scaled_loss, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
            return loss

        def run(steps: int) -> float:
            started = time.perf_counter()
            loss: Any = None
            for _ in range(steps):
                loss = step(self.images, self.labels)
            float(loss)  # the one host sync: waits for the last step
            return time.perf_counter() - started

        @tf.function(jit_compile=False)  # type: ignore[untyped-decorator]
        def predict(images: Any) -> Any:
            return model(images, training=False)

        def run_inference(steps: int) -> float:
            started = time.perf_counter()
            predictions: Any = None
            for _ in range(steps):
                predictions = predict(self.images)
            float(predictions[-1, 0])  # the one host sync: waits for the last batch
            return time.perf_counter() - started

        self._run = run
        self._run_inference = run_inference

    def _setup_jax(self) -> None:
        import jax

        model, optimizer, loss_fn = self.model, self.optimizer, self.loss
        optimizer.build(model.trainable_variables)

        def compute_loss(trainable: Any, non_trainable: Any, images: Any, labels: Any) -> Any:
            predictions, non_trainable = model.stateless_call(trainable, non_trainable, images, training=True)
            return loss_fn(labels, predictions), non_trainable

        gradient_fn = jax.value_and_grad(compute_loss, has_aux=True)

        def train_step(state: Any, images: Any, labels: Any) -> Any:
            trainable, non_trainable, optimizer_vars = state
            (loss, non_trainable), gradients = gradient_fn(trainable, non_trainable, images, labels)
            trainable, optimizer_vars = optimizer.stateless_apply(optimizer_vars, gradients, trainable)
            return loss, (trainable, non_trainable, optimizer_vars)

        step = jax.jit(train_step, donate_argnums=0)
        state: list[Any] = [(
            [v.value for v in model.trainable_variables],
            [v.value for v in model.non_trainable_variables],
            [v.value for v in optimizer.variables],
        )]

        def run(steps: int) -> float:
            started = time.perf_counter()
            loss = None
            for _ in range(steps):
                loss, state[0] = step(state[0], self.images, self.labels)
            jax.block_until_ready((loss, state[0]))  # type: ignore[no-untyped-call]  # the one host sync
            return time.perf_counter() - started

        def forward(state: Any, images: Any) -> Any:
            trainable, non_trainable, _ = state
            return model.stateless_call(trainable, non_trainable, images, training=False)[0]

        predict = jax.jit(forward)

        def run_inference(steps: int) -> float:
            started = time.perf_counter()
            predictions = None
            for _ in range(steps):
                predictions = predict(state[0], self.images)
            jax.block_until_ready(predictions)  # type: ignore[no-untyped-call]  # the one host sync
            return time.perf_counter() - started

        self._run = run
        self._run_inference = run_inference

    def run(self, steps: int) -> float:
        """Trains ``steps`` steps back to back; returns their wall seconds, synced once at the end."""
        return float(self._run(steps))

    def run_inference(self, steps: int) -> float:
        """Predicts ``steps`` batches back to back; returns their wall seconds, synced once at the end."""
        return float(self._run_inference(steps))

    def images_per_sec(self, warmup: int, steps: int, mode: str = "train") -> float:
        """One measurement: ``warmup`` untimed steps (each window starts with nothing in flight), then ``steps``.

        Args:
            warmup: Untimed steps first.
            steps: Timed steps.
            mode: ``train`` (training steps) or ``inference`` (forward passes).
        """
        run = self.run_inference if mode == "inference" else self.run
        if warmup:
            run(warmup)
        return self.workload.batch_size * steps / run(steps)


def main() -> None:
    """Prints the yardstick's images/sec for one workload, ``repeats`` times."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backend", default=os.environ.get("KERAS_BACKEND", "tensorflow"))
    parser.add_argument("--model", default="small_cnn")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mode", choices=("train", "inference", "both"), default="train",
                        help="train, predict, or train then predict (as the throughput suite does)")
    parser.add_argument("--json", action="store_true", help="print one JSON line: each mode's windows in images/s")
    args = parser.parse_args()
    os.environ["KERAS_BACKEND"] = args.backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    loop = Loop(Workload(args.model, args.image_size, args.classes, args.batch, args.precision))
    modes = ("train", "inference") if args.mode == "both" else (args.mode,)
    windows: dict[str, list[float]] = {}
    for mode in modes:
        for _ in range(args.repeats):
            windows.setdefault(mode, []).append(loop.images_per_sec(args.warmup, args.steps, mode))
            if not args.json:
                print(f"{mode}: {windows[mode][-1]:.1f} images/s")
    if args.json:
        import json

        print(json.dumps(windows))


if __name__ == "__main__":
    main()
