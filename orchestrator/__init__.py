"""Orchestrate: launch a GPU machine, run a Keras benchmark on it, price it, tear it down, compare.

The control plane. It never imports TensorFlow, Keras, boto3 or Azure at import time.
"""

__version__ = "0.1.0"
