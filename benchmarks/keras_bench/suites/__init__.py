"""The suites this payload can run, by name. Importing this registry imports no Keras."""

from keras_bench.suites.base import Suite, SuiteRun
from keras_bench.suites.smoke import SMOKE

SUITES: dict[str, Suite] = {SMOKE.name: SMOKE}

__all__ = ["SUITES", "Suite", "SuiteRun"]
