"""Plays the instances of a moto EC2 server with a loopback sshd, across processes: the piece that lets anyone run a
whole ``orchestrate run --provider aws`` against moto from the command line (README, "Testing without an AWS
account").

It watches the endpoint for instances tagged ``orchestrate:run-id`` and serves the newest live one on one loopback
port, the way the instance would: presenting the host key the run injected through its user-data (cloud-init's
``ssh_keys``) and authorising the run's client key (read from ``$ORCHESTRATE_HOME/keys/<run-id>/``). The run reaches
it through ``ORCHESTRATE_AWS_SSH_ENDPOINT=USER@127.0.0.1:PORT``. When that instance leaves ``running`` its sshd
stops, so the next run's instance can have the port.

    python -m tests.fakes.aws_loopback --home ~/.orchestrate --port 2222   # AWS_ENDPOINT_URL names moto
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from pathlib import Path
from typing import Any

from orchestrator.clouds import aws
from orchestrator.providers.aws import network
from orchestrator.providers.aws.instance import RUN_TAG
from tests.fakes.aws import REGION, write_host_key
from tests.integration.conftest import SSHServer, start_server

POLL_S = 0.2


class InstanceServer:
    """Serves the newest live Orchestrate instance of ``region`` on ``127.0.0.1:port`` until :meth:`stop`."""

    def __init__(self, home: Path, port: int, directory: Path, *, region: str = REGION) -> None:
        self.home = home
        self.port = port
        self.directory = directory
        self.region = region
        self.served: dict[str, SSHServer] = {}  # instance id → its sshd (one at a time holds the port)
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="aws-loopback", daemon=True)

    def start(self) -> InstanceServer:
        """Starts watching in a thread (with a client made now, from this moment's environment)."""
        self._ec2 = aws.client("ec2", region=self.region)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stops watching and every sshd it started."""
        self._stop.set()
        self._thread.join(timeout=10)
        for server in self.served.values():
            server.stop()

    def _loop(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self._tick(self._ec2)
            except Exception as error:  # noqa: BLE001 - a watcher thread reports, it does not die
                self.errors.append(f"{type(error).__name__}: {error}")

    def _tick(self, ec2: Any) -> None:
        pages = ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": [RUN_TAG]},
                                                {"Name": "instance-state-name", "Values": ["pending", "running"]}])
        live = [i for r in pages["Reservations"] for i in r["Instances"]]
        live_ids = {i["InstanceId"] for i in live}
        for instance_id in [i for i in self.served if i not in live_ids]:
            self.served.pop(instance_id).stop()  # that machine is gone: so is its sshd, and the port is free
        if self.served or not live:
            return
        instance = max(live, key=lambda i: (i["LaunchTime"], i["InstanceId"]))
        run_id = next(t["Value"] for t in instance["Tags"] if t["Key"] == RUN_TAG)
        key = network.key_dir(self.home, run_id) / network.KEY_FILE
        if not key.with_name(key.name + ".pub").exists():
            return  # not yet written (or another home's run): look again at the next poll
        where = self.directory / instance["InstanceId"]
        where.mkdir(parents=True, exist_ok=True)
        host_key = write_host_key(ec2, instance["InstanceId"], where / "host_key")
        self.served[instance["InstanceId"]] = start_server(
            where / f"sshd-{time.monotonic_ns()}", key, host_key, port=self.port, authorized_key=key)


def main() -> None:
    """Serves until Ctrl-C."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--home", type=Path, default=Path(os.environ.get("ORCHESTRATE_HOME", "~/.orchestrate")))
    parser.add_argument("--port", type=int, required=True, help="the port of ORCHESTRATE_AWS_SSH_ENDPOINT")
    parser.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", REGION))
    parser.add_argument("--directory", type=Path, default=Path("/tmp/orchestrate-aws-loopback"))
    args = parser.parse_args()
    server = InstanceServer(args.home.expanduser(), args.port, args.directory, region=args.region).start()
    print(f"serving Orchestrate instances of {os.environ.get('AWS_ENDPOINT_URL', 'AWS')} ({args.region}) "
          f"on 127.0.0.1:{args.port}; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(1)
            while server.errors:
                print(server.errors.pop(0), flush=True)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
