"""The suites this payload can run, by name. Importing this registry imports no Keras."""

from keras_bench.suites.accuracy import ACCURACY
from keras_bench.suites.base import Suite, SuiteRun
from keras_bench.suites.deploy import DEPLOY
from keras_bench.suites.hparams import HPARAMS
from keras_bench.suites.pipeline import PIPELINE
from keras_bench.suites.scaling import SCALING
from keras_bench.suites.smoke import SMOKE
from keras_bench.suites.throughput import THROUGHPUT
from keras_bench.suites.transfer import TRANSFER

SUITES: dict[str, Suite] = {SMOKE.name: SMOKE}
SUITES.update({suite.name: suite for suite in (ACCURACY, HPARAMS, TRANSFER)})
SUITES[SCALING.name] = SCALING
SUITES[THROUGHPUT.name] = THROUGHPUT
SUITES[PIPELINE.name] = PIPELINE
SUITES[DEPLOY.name] = DEPLOY

__all__ = ["SUITES", "Suite", "SuiteRun"]
