"""keras_bench: the Orchestrate payload that benchmarks and trains Keras models.

Run it as ``python -m keras_bench --suite SUITE_JSON --out RESULTS_JSON``. Importing this package is cheap:
Keras and its backend are imported only inside a suite run, where the import is timed.

Layout. The top level is the run: ``cli`` reads the suite document (``suite_document``) and checks its params
(``params``), runs one suite with a ``recorder`` that collects its samples and phase times, and writes the results
document (``results``, checked against ``results.schema.json``) with the machine it ran on (``hostinfo``) and,
where there is a GPU, its utilisation (``utilisation``). ``errors``, ``progress`` and ``stop`` are the exception
family, the log lines and the SIGTERM request that every layer shares. ``suites/`` holds one module per suite and
the registry ``SUITES``; a suite is put together from the subpackages, one concept each:

- ``models/``: model builders by name, and the Keras backend they run on (facts, precision, XLA, the timed import);
- ``data/``: image splits in memory, TFRecord shards, and the feeds ``fit`` reads (tf.data, synthetic on device);
- ``training/``: compile and fit for the training suites, backups and TensorBoard logs, tf.distribute;
- ``timing/``: the step timer and its statistics, timed fit and predict repeats, and the sample rows they become;
- ``deploy/``: pruned, TFLite and Keras int8 variants of a trained model, and what is measured of each.

Imports run one way: ``cli`` → ``suites`` → the subpackages → the top-level modules they share; no subpackage
imports a suite.
"""

__version__ = "0.1.0"
