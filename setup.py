"""Finds the packages to ship; everything else about the build is in pyproject.toml.

setuptools' declarative ``packages.find`` cannot also name the two data folders that ship as packages
(``benchmarks/suites`` as ``keras_bench.suites_yaml``, ``images/cloud-init`` as ``orchestrator.cloud_init``), so the
list is made here: every package under ``orchestrator/`` and ``benchmarks/keras_bench/``, found, plus those two.
tests/unit/test_packaging.py builds a wheel and imports every module from it.
"""

from setuptools import find_packages, setup

DATA_PACKAGES = ["keras_bench.suites_yaml", "orchestrator.cloud_init"]

setup(
    packages=[
        *find_packages(".", include=["orchestrator", "orchestrator.*"]),
        *find_packages("benchmarks", include=["keras_bench", "keras_bench.*"]),
        *DATA_PACKAGES,
    ],
)
