"""What a suite is: a name, the params it accepts and a function that runs it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from keras_bench.params import ParamSpec, ParamValue
from keras_bench.recorder import RunRecorder

SuiteRun = Callable[[Mapping[str, ParamValue], RunRecorder], None]


@dataclass(frozen=True)
class Suite:
    """A runnable suite.

    ``run`` receives the effective params (checked, defaults filled) and records samples into the recorder
    as it goes, inside ``recorder.phase(...)`` blocks, so a failure keeps what was measured before it.
    It must import Keras and its backend itself, inside the ``import`` phase.
    """

    name: str
    description: str
    params: tuple[ParamSpec, ...]
    run: SuiteRun
