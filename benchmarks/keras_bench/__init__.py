"""keras_bench: the Orchestrate payload that benchmarks and trains Keras models.

Run it as ``python -m keras_bench --suite SUITE_JSON --out RESULTS_JSON``. Importing this package is cheap:
Keras and its backend are imported only inside a suite run, where the import is timed.
"""

__version__ = "0.1.0"
