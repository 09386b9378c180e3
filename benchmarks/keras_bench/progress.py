"""Short, flushed, human-readable progress lines; the orchestrator tails them live."""

import sys

PREFIX = "[keras_bench]"


def say(message: str) -> None:
    """Prints one progress line to stdout and flushes it at once.

    Args:
        message: The line without prefix, e.g. ``"epoch 3/10 loss=0.21 acc=0.95"``.
    """
    print(f"{PREFIX} {message}", flush=True)


def warn(message: str) -> None:
    """Prints one warning line to stderr; warnings never change the exit code.

    Args:
        message: What is wrong, in one line.
    """
    print(f"keras_bench: warning: {message}", file=sys.stderr, flush=True)
