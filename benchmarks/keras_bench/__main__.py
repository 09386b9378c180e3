"""Entry point for ``python -m keras_bench``."""

from keras_bench.cli import main

raise SystemExit(main())
