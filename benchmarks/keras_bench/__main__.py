"""Entry point for ``python -m keras_bench``."""

import logging
import os
import sys

from keras_bench.cli import main

code = main()
if "tensorflow" in sys.modules:
    # The results document is written (atomically) and the log lines are out: flush what is buffered and leave
    # at once. The interpreter's teardown with TensorFlow loaded (module finalisers, its thread pools) takes
    # about a second and adds nothing to a finished run (docs/performance.md, "Orchestrator overhead").
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
raise SystemExit(code)
