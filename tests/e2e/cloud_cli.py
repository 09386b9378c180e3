"""What the command-line runs against a cloud fake share (``test_run_aws``, ``test_run_azure``): a loopback sshd that
plays the cloud's machines for the run, and the smoke run with what it must leave behind on every cloud."""

from __future__ import annotations

import getpass
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.conftest import run_cli
from tests.fakes.loopback import Watcher, image_spec


@contextmanager
def served(watcher: Watcher, endpoint_variable: str) -> Iterator[dict[str, str]]:
    """Serves the cloud's machines with ``watcher`` in the block, which gets the environment that names it as their
    SSH endpoint (``endpoint_variable``: ORCHESTRATE_AWS_SSH_ENDPOINT, …); after the block, asserts it met no error.
    """
    watcher.start()
    try:
        yield {endpoint_variable: f"{getpass.getuser()}@127.0.0.1:{watcher.port}"}
    finally:
        watcher.stop()
    assert watcher.errors == []


def smoke_run(home: Path, tmp_path: Path, env: dict[str, str], *machine: str,
              **environment: str) -> tuple[str, dict[str, Any]]:
    """Runs the real smoke suite from the command line on ``machine`` (the provider and its arguments), on an "image"
    (:func:`image_spec`); asserts it succeeded, trained, and left neither the run's key nor its directory on the
    machine. Returns the run's id and its report row."""
    box, spec = image_spec(tmp_path, **environment)
    # Real Keras training, on two epochs: enough to learn (the accuracy asserted below), not the suite's ten.
    result = run_cli(home, "run", "-f", str(spec), *machine, "--allow-cidr", "127.0.0.1/32", "--quiet",
                     "--set", "epochs=2", timeout=600, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    [run] = json.loads(run_cli(home, "status", "--json", **env).stdout)
    assert run["state"] == "succeeded"
    run_id: str = run["id"]
    assert not (home / "keys" / run_id).exists()  # the private key went with the machine's key pair or group
    assert not (box / "runs" / run_id).exists()  # the run's directory on the machine was cleaned up
    [row] = json.loads(run_cli(home, "report", run_id, "--json", **env).stdout)
    assert row["train_images_per_sec"] > 0 and row["test_accuracy"] > 0.5  # real Keras training on digits
    return run_id, row
