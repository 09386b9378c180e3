"""Timed training and inference repeats, shared by the throughput suites; ``timing.rows`` writes their rows.

One training measurement is one ``model.fit`` of ``repeats`` epochs of ``warmup_steps + steps`` steps each. The
lean timed path: a model compiled with ``steps_per_execution`` K runs K steps per call of its training function
(a loop inside the compiled function on TensorFlow, JAX and torch alike), and the step-timing callback runs, and
syncs with the device, once per chunk of K steps, never per step. Warm-up and timed steps are rounded up to
whole chunks. The first ``warmup_steps`` steps of every epoch are excluded (tracing and compilation in the
first, iterator start-up in the others), the remaining ``steps`` are timed chunk by chunk by ``StepTimer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from keras_bench.stop import StopRequest
from keras_bench.timing.predict_chunks import use_looped_predict
from keras_bench.timing.spread import Spread
from keras_bench.timing.steps import StepTimer, ThroughputSummary, TrainStep, summarize_steps


@dataclass(frozen=True)
class TrainingTiming:
    """The timed part of each repeat."""

    repeats: tuple[ThroughputSummary, ...]
    steps_per_execution: int = 1  # steps per chunk: one timer span, one host sync
    warmup_steps: int = 0  # steps left out of each repeat (of the first only, for one training run), whole chunks

    @property
    def median_images_per_sec(self) -> float:
        """Images/sec of the median repeat (the spread's median)."""
        return self.spread.median

    @property
    def spread(self) -> Spread:
        """The repeats' images/sec."""
        return Spread(tuple(r.images_per_sec for r in self.repeats))

    @property
    def full_batch_steps(self) -> int:
        """The steps that ``step_ms`` covers: those of the timed spans whose batches were all full size."""
        return sum(r.full_batch_steps for r in self.repeats)

    @property
    def step_ms(self) -> tuple[float, ...]:
        """Every timed full-batch step time, in ms, over all repeats."""
        return tuple(ms for r in self.repeats for ms in r.full_batch_step_ms)


def summarize_repeats(
    steps: Sequence[TrainStep],
    warmup_steps: int,
    batch_size: int,
    steps_per_execution: int = 1,
    *,
    warmup_each_repeat: bool = True,
) -> TrainingTiming:
    """Splits the timer's spans by epoch (one epoch per repeat) and drops each epoch's warm-up steps.

    Args:
        steps: The spans a ``StepTimer`` recorded during fit (its ``steps``).
        warmup_steps: Leading steps of every epoch to exclude.
        batch_size: Full batch size.
        steps_per_execution: The model's steps per chunk, recorded with the figures.
        warmup_each_repeat: False to exclude the first ``warmup_steps`` steps of the whole fit only, whichever
            epochs they fall in (one training run whose later epochs need no new warm-up, as the smoke suite's).

    Returns:
        One summary per epoch that has timed steps left.
    """
    spans = list(steps)
    excluded = 0
    if not warmup_each_repeat:
        while spans and excluded < warmup_steps:
            excluded += spans.pop(0).steps
    summaries = []
    for epoch in sorted({span.epoch for span in spans}):
        summary = summarize_steps(
            [s for s in spans if s.epoch == epoch], warmup_steps if warmup_each_repeat else 0, batch_size
        )
        if summary is not None:
            summaries.append(summary)
    if warmup_each_repeat and summaries:
        excluded = summaries[0].warmup_steps
    return TrainingTiming(tuple(summaries), steps_per_execution, excluded)


def without_first_short_span(steps: Sequence[TrainStep], batch_size: int) -> list[TrainStep]:
    """Returns the spans without the first one that holds a short batch (the last batch of an epoch over a data
    set that the batch size does not divide): that batch's shape is new to the training function, so its first
    call traces and compiles it again, a one-off that would count as a slow step of the first epoch.

    Args:
        steps: The spans a ``StepTimer`` recorded, in order.
        batch_size: Images per full batch.
    """
    spans = list(steps)
    for index, span in enumerate(spans):
        if span.images < span.steps * batch_size:
            return spans[:index] + spans[index + 1 :]
    return spans


def whole_chunks(steps: int, steps_per_execution: int) -> int:
    """Rounds ``steps`` up to a whole number of chunks of ``steps_per_execution`` steps."""
    chunk = max(1, steps_per_execution)
    return -(-steps // chunk) * chunk


def time_training(
    model: Any,
    x: Any,
    y: Any,
    *,
    batch_size: int,
    warmup_steps: int,
    steps: int,
    repeats: int,
    stop: StopRequest,
) -> TrainingTiming:
    """Trains a compiled model for ``repeats`` epochs of ``warmup_steps + steps`` steps and times the steps.

    The model's ``steps_per_execution`` (set at compile time) is the chunk: warm-up and timed steps are each
    rounded up to whole chunks, so no chunk mixes the two.

    Args:
        model: A compiled Keras model.
        x: Arrays holding ``batch_size`` x (the rounded ``warmup_steps + steps``) examples (see
            ``chunked_steps``), or a repeating, batched
            ``tf.data.Dataset`` of (images, labels) (then ``y`` is None).
        y: Labels for array ``x``; None for a dataset.
        batch_size: Images per step.
        warmup_steps: Untimed steps at the start of every repeat.
        steps: Timed steps per repeat.
        repeats: Epochs.
        stop: Checked at every batch end.

    Returns:
        The timed steps per repeat.
    """
    # imports Keras at module level: lazy, so --check does not
    from keras_bench.timing.callbacks import StepTimerCallback, StopCheckCallback

    chunk = int(getattr(model, "steps_per_execution", 1) or 1)
    warmup_steps, steps = chunked_steps(warmup_steps, steps, chunk)
    steps_per_epoch = warmup_steps + steps
    timer = StepTimer()
    arrays = y is not None
    model.fit(
        x,
        y,
        batch_size=batch_size if arrays else None,
        epochs=repeats,
        steps_per_epoch=steps_per_epoch,
        shuffle=False,
        verbose=0,
        callbacks=[StepTimerCallback(timer, batch_size * steps_per_epoch, batch_size), StopCheckCallback(stop)],
    )
    return summarize_repeats(timer.steps, warmup_steps, batch_size, chunk)


def time_inference(
    model: Any,
    x: Any,
    *,
    batch_size: int,
    warmup_steps: int,
    steps: int,
    repeats: int,
    stop: StopRequest,
    callbacks: Sequence[Any] = (),
) -> TrainingTiming:
    """Times batched inference the way ``time_training`` times training: ``repeats`` passes of ``model.predict``
    over ``warmup_steps + steps`` batches, in chunks of the model's ``steps_per_execution`` batches.

    One call of the compiled predict function runs a whole chunk (on TensorFlow a while loop, see
    ``timing.predict_chunks``), and the timing callback reads one value of its last prediction back (one host sync per
    chunk, none per batch). Each pass leaves out its first
    ``warmup_steps`` batches (tracing in the first pass, iterator start-up in the others); warm-up and timed
    batches are rounded up to whole chunks, as for training.

    Args:
        model: A compiled Keras model (its ``steps_per_execution`` is the chunk).
        x: Inputs holding at least ``batch_size`` x (the rounded ``warmup_steps + steps``) examples.
        batch_size: Images per batch.
        warmup_steps: Untimed batches at the start of every pass.
        steps: Timed batches per pass.
        repeats: Passes.
        stop: Checked at every chunk end.
        callbacks: More callbacks for every ``predict`` call (tests count chunks with one).

    Returns:
        The timed chunks per pass (``repeats`` are the passes).
    """
    # imports Keras at module level: lazy, so --check does not
    from keras_bench.timing.callbacks import PredictTimerCallback, StopCheckCallback

    use_looped_predict(model)  # TensorFlow: a chunk is a loop in one graph, not K unrolled copies of the model
    chunk = int(getattr(model, "steps_per_execution", 1) or 1)
    warmup_steps, steps = chunked_steps(warmup_steps, steps, chunk)
    per_pass = warmup_steps + steps
    timer = StepTimer()
    every_call = [PredictTimerCallback(timer, batch_size * per_pass, batch_size), StopCheckCallback(stop), *callbacks]
    for _ in range(repeats):
        model.predict(x[: batch_size * per_pass], batch_size=batch_size, steps=per_pass, verbose=0,
                      callbacks=every_call)
    return summarize_repeats(timer.steps, warmup_steps, batch_size, chunk)


def chunked_steps(warmup_steps: int, steps: int, steps_per_execution: int) -> tuple[int, int]:
    """Returns (warm-up steps, timed steps), each rounded up to whole chunks of ``steps_per_execution``."""
    return whole_chunks(warmup_steps, steps_per_execution), whole_chunks(steps, steps_per_execution)
