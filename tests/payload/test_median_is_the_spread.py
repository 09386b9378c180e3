"""The payload's median throughput is one figure: a timing's ``median_images_per_sec`` is its spread's median, not a
second computation that could drift from it."""

from __future__ import annotations

import pytest

from keras_bench.timing.inference import InferencePass, InferenceTiming
from keras_bench.timing.spread import Spread
from keras_bench.timing.steps import ThroughputSummary
from keras_bench.timing.throughput import TrainingTiming


def test_training_and_inference_medians_are_the_spreads_median(monkeypatch: pytest.MonkeyPatch) -> None:
    training = TrainingTiming(tuple(ThroughputSummary(ips, 10, 320, 320 / ips, ()) for ips in (90.0, 100.0, 130.0)))
    inference = InferenceTiming(tuple(InferencePass(ips, 1.0, ()) for ips in (40.0, 50.0)))
    assert training.median_images_per_sec == training.spread.median == 100.0
    assert inference.median_images_per_sec == inference.spread.median == 45.0
    # Whatever the spread says the median is, the timing says too: there is one place that computes it.
    monkeypatch.setattr(Spread, "median", property(lambda spread: -1.0))
    assert training.median_images_per_sec == -1.0 and inference.median_images_per_sec == -1.0
