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
from collections.abc import Callable
from functools import partial
from pathlib import Path

from orchestrator.clouds import aws
from orchestrator.providers.aws.instance import RUN_TAG
from tests.fakes.aws import REGION, user_data_text
from tests.fakes.loopback import Watcher


class InstanceServer(Watcher):
    """Serves the newest live Orchestrate instance of ``region`` on ``127.0.0.1:port`` until :meth:`stop`."""

    def __init__(self, home: Path, port: int, directory: Path, *, region: str = REGION) -> None:
        super().__init__(home, port, directory, name="aws-loopback")
        self.region = region

    def start(self) -> InstanceServer:
        """Starts watching in a thread (with a client made now, from this moment's environment)."""
        self._ec2 = aws.client("ec2", region=self.region)
        super().start()
        return self

    def live(self) -> list[tuple[str, str, Callable[[], str | None]]]:
        pages = self._ec2.describe_instances(Filters=[
            {"Name": "tag-key", "Values": [RUN_TAG]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]}])
        instances = sorted((i for r in pages["Reservations"] for i in r["Instances"]),
                           key=lambda i: (i["LaunchTime"], i["InstanceId"]))
        return [(i["InstanceId"], next(t["Value"] for t in i["Tags"] if t["Key"] == RUN_TAG),
                 partial(user_data_text, self._ec2, i["InstanceId"])) for i in instances]


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
    server.serve_until_interrupted()


if __name__ == "__main__":
    main()
