"""Batched inference timed in chunks like training: one call of the compiled predict function and one host sync per
chunk of ``steps_per_execution`` batches, each pass's warm-up left out, and metadata that says so."""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import pytest

from keras_bench.params import resolve_params
from keras_bench.recorder import RunRecorder
from keras_bench.stop import StopRequest
from keras_bench.suites import throughput
from keras_bench.timing.callbacks import PredictTimerCallback
from keras_bench.timing.predict_chunks import use_looped_predict
from keras_bench.timing.steps import StepTimer
from keras_bench.timing.throughput import time_inference

BATCH = 4
CHUNK = 3


def _model(steps_per_execution: int = CHUNK) -> Any:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten(), keras.layers.Dense(5)])
    model.compile(optimizer="adam", loss="mse", steps_per_execution=steps_per_execution)
    return model


class _CountChunks(keras.callbacks.Callback):  # type: ignore[misc]
    """Counts the predict hooks: Keras calls them once per call of the compiled predict function."""

    def __init__(self) -> None:
        super().__init__()
        self.ends: list[int] = []

    def on_predict_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self.ends.append(batch)


def test_inference_passes_run_one_compiled_call_per_chunk_and_drop_each_pass_warmup() -> None:
    model = _model()
    if not use_looped_predict(model):  # another backend: Keras's own chunked predict function
        model.make_predict_function()
    compiled = model.predict_function
    calls: list[int] = []

    def counting(*args: Any) -> Any:
        calls.append(1)
        return compiled(*args)

    model.predict_function = counting
    counter = _CountChunks()
    # warm-up 2 -> one chunk of 3; timed 5 -> two chunks (6 batches); 9 batches, 3 chunks per pass.
    timing = time_inference(model, np.zeros((BATCH * 9, 6, 6, 1), np.float32), batch_size=BATCH, warmup_steps=2,
                            steps=5, repeats=2, stop=StopRequest(), callbacks=[counter])

    assert len(calls) == 2 * 3  # passes x chunks: no call (and so no sync) per batch
    assert counter.ends == [2, 5, 8] * 2  # each chunk ends on its last batch index
    assert timing.steps_per_execution == CHUNK and timing.warmup_steps == 3
    assert [r.timed_steps for r in timing.repeats] == [6, 6]
    assert [r.timed_images for r in timing.repeats] == [6 * BATCH, 6 * BATCH]
    assert len(timing.step_ms) == 2 * 2  # two timed chunks per pass, the warm-up chunk left out of each


def test_a_chunk_traces_the_model_once_not_once_per_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _model(steps_per_execution=4)
    traced: list[int] = []
    step = model.predict_step

    def counting_step(*args: Any) -> Any:
        traced.append(1)  # Python runs only while tracing; the compiled loop runs the graph
        return step(*args)

    monkeypatch.setattr(model, "predict_step", counting_step)
    images = np.arange(BATCH * 8 * 36, dtype=np.float32).reshape(BATCH * 8, 6, 6, 1)
    time_inference(model, images, batch_size=BATCH, warmup_steps=4, steps=4, repeats=2, stop=StopRequest())

    if keras.backend.backend() == "tensorflow":
        assert len(traced) == 1
    # The chunk's predictions are every batch's, in order, as Keras's own predict gives them.
    np.testing.assert_allclose(model.predict(images, batch_size=BATCH, steps=8, verbose=0),
                               model.predict_on_batch(images), rtol=1e-5, atol=1e-5)


def test_predict_timer_syncs_once_per_chunk_and_records_one_span_per_chunk() -> None:
    model = _model()
    timer = StepTimer()
    callback = PredictTimerCallback(timer, BATCH * 6, BATCH)

    model.predict(np.zeros((BATCH * 6, 6, 6, 1), np.float32), batch_size=BATCH, steps=6, verbose=0,
                  callbacks=[callback])

    assert callback.syncs == 2
    assert [(span.epoch, span.steps, span.images) for span in timer.steps] == [(0, 3, 3 * BATCH), (0, 3, 3 * BATCH)]


def test_throughput_suite_records_chunked_inference_with_honest_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    def per_batch(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("inference must not be timed with predict_on_batch (a call and a sync per batch)")

    monkeypatch.setattr(keras.Model, "predict_on_batch", per_batch)
    params = resolve_params(throughput.THROUGHPUT.params, {
        "models": ["small_cnn"], "batch_sizes": [4], "precisions": ["float32"], "xla": [False], "image_size": 8,
        "num_classes": 3, "warmup_steps": 1, "steps": 4, "repeats": 3, "steps_per_execution": 2,
    })
    recorder = RunRecorder()

    throughput.run_throughput(params, recorder)

    rows = {s.metric: s for s in recorder.samples if s.benchmark == "inference_throughput"}
    figure = rows["images_per_sec"].metadata
    assert figure["steps_per_execution"] == 2 and figure["steps"] == 4 and figure["warmup_steps"] == 2
    assert figure["repeats_timed"] == 3
    repeats = [s for s in recorder.samples
               if (s.benchmark, s.metric) == ("inference_throughput", "images_per_sec_repeat")]
    assert [s.metadata["repeat_index"] for s in repeats] == [1, 2, 3]
    assert rows["images_per_sec"].value == sorted(s.value for s in repeats)[1]
    step = rows["step_time_ms_p50"].metadata
    assert step["timed_steps"] == 4 * 3 and step["timed_spans"] == 2 * 3  # two chunks of two batches per pass


def test_the_yardstick_times_a_plain_inference_loop_as_well_as_training() -> None:
    import yardstick

    loop = yardstick.Loop(yardstick.Workload("small_cnn", 8, 3, 4))
    assert loop.images_per_sec(1, 2, "inference") > 0
    assert loop.images_per_sec(1, 2, "train") > 0
