"""AWS in-process for tests: moto's EC2, errors injected into the provider's own clients, and a loopback sshd that
plays the instances with the run's injected host key.

``moto_aws`` is a fixture (import it into a conftest or test module), as are ``sleeps``, ``clients``, ``provider``
and ``zones`` for the tests of the provider against moto in-process. :class:`HookedClients` is the provider's client
factory with a place to hang botocore ``before-call`` hooks (FACTS: capacity errors never happen in moto);
:func:`hook_run_instances` hangs one on RunInstances.
:class:`LoopbackAws` wraps an :class:`AwsProvider` so that every launch is reachable: it points the provider's SSH
endpoint at a fresh port, launches, reads the user-data back from moto and starts sshd there with the host key
cloud-init would have installed, authorising the run's client key.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from orchestrator.clouds import aws
from orchestrator.machine import LaunchRequest, Machine, Placement
from tests.fakes.loopback import CIDR as CIDR
from tests.fakes.loopback import LoopbackCloud, on_box

if TYPE_CHECKING:
    from orchestrator.providers.aws.instance import AwsProvider

REGION = "us-east-1"
IMAGE = "ami-12c6146b"  # one of moto's stock images
PLACEMENT = Placement(provider="aws", instance_type="g5.xlarge", region=REGION, price_per_hour=1.006,
                      billing_rule="aws_linux")
MOTO_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                    "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent"}


def point_at_moto(monkeypatch: pytest.MonkeyPatch, **extra: str) -> dict[str, str]:
    """Drops every AWS_ variable of the user's environment and sets moto's fake credentials and REGION, and ``extra``.

    Returns:
        What it set, for a subprocess's environment.
    """
    env = {**MOTO_CREDENTIALS, **extra}
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def moto_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto's AWS in this process, with fake credentials in the environment and nothing else of the user's."""
    from moto import mock_aws

    monkeypatch.delenv("ORCHESTRATE_AWS_SSH_ENDPOINT", raising=False)
    point_at_moto(monkeypatch)
    with mock_aws():
        yield


@pytest.fixture
def moto_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """A moto server on loopback; the environment that points boto3 (ours and the CLI's) at it."""
    from moto.server import ThreadedMotoServer

    from tests.integration.conftest import free_port

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = point_at_moto(monkeypatch, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", ORCHESTRATE_AWS_REGIONS=REGION)
    try:
        yield env
    finally:
        server.stop()


def refusal(code: str, message: str) -> tuple[Any, dict[str, Any]]:
    """What a ``before-call`` hook returns to make botocore raise ``ClientError(code)`` without a request."""
    from botocore.awsrequest import AWSResponse

    return AWSResponse("https://ec2.amazonaws.com/", 500, {}, None), {
        "Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 500}}


def spot_price_answer(*quotes: tuple[str, datetime], zone: str | None = None) -> Callable[..., Any]:
    """A ``before-call`` hook for DescribeSpotPriceHistory that answers these (price, set at) quotes for the zone
    asked (or ``zone``), as botocore would have parsed them; the requests it saw are kept in ``hook.asked``."""
    from botocore.awsrequest import AWSResponse

    asked: list[dict[str, Any]] = []

    def hook(params: dict[str, Any], **_: Any) -> Any:
        body = params["body"]
        asked.append(body)
        history = [{"AvailabilityZone": zone or body.get("AvailabilityZone"), "InstanceType": body["InstanceType.1"],
                    "ProductDescription": "Linux/UNIX", "SpotPrice": price, "Timestamp": at} for price, at in quotes]
        return AWSResponse("https://ec2.amazonaws.com/", 200, {}, None), {
            "SpotPriceHistory": history, "ResponseMetadata": {"HTTPStatusCode": 200}}

    hook.asked = asked  # type: ignore[attr-defined]
    return hook


@dataclass
class HookedClients:
    """The provider's client factory (clouds.aws clients), with hooks registered on every client it makes.

    ``hooks``: botocore event name → handler, e.g. ``{"before-call.ec2.RunInstances": refuse}``.
    """

    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    clients: list[Any] = field(default_factory=list)

    def __call__(self, region: str | None, retries: bool) -> Any:
        make = aws.client if retries else aws.client_without_retries
        client = make("ec2", region=region)
        for event, handler in self.hooks.items():
            client.meta.events.register(event, handler)
        self.clients.append(client)
        return client


@pytest.fixture
def sleeps() -> list[float]:
    """The waits the ``provider`` fixture asked its injected sleep for, in order."""
    return []


@pytest.fixture
def clients() -> HookedClients:
    """The ``provider`` fixture's client factory: hang hooks on it before the call they are for."""
    return HookedClients()


@pytest.fixture
def provider(tmp_path: Path, moto_aws: None, clients: HookedClients, sleeps: list[float]) -> AwsProvider:
    """The real AwsProvider against moto in-process (home under ``tmp_path``), its sleeps recorded, not slept."""
    from orchestrator.providers.aws.instance import AwsProvider

    return AwsProvider(tmp_path / "home", sleep=sleeps.append, client_factory=clients)


def zones_of(ec2: Any) -> list[str]:
    """The availability zones of the client's region, sorted (the order the provider tries them in)."""
    return sorted(z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"])


@pytest.fixture
def zones(moto_aws: None) -> list[str]:
    """The availability zones of moto's REGION, sorted."""
    return zones_of(aws.client("ec2", region=REGION))


def launch_request(run_id: str, **changes: Any) -> LaunchRequest:
    """A launch of one g5.xlarge (PLACEMENT) from IMAGE, SSH allowed from CIDR only; ``changes`` replace fields."""
    fields: dict[str, Any] = {"run_id": run_id, "placement": PLACEMENT, "image": IMAGE, "allowed_cidr": CIDR}
    return LaunchRequest(**{**fields, **changes})


def hook_run_instances(clients: HookedClients, refuse: Callable[[str], tuple[str, str] | None],
                       tokens: list[str] | None = None) -> list[str]:
    """Hooks RunInstances: ``refuse(zone)`` → (code, message) makes that call fail, None lets it through to moto.

    Returns the zone of each call, in order (and puts each call's client token in ``tokens``).
    """
    asked: list[str] = []

    def hook(params: dict[str, Any], **_: Any) -> Any:
        zone = params["body"]["Placement.AvailabilityZone"]
        asked.append(zone)
        if tokens is not None:
            tokens.append(params["body"]["ClientToken"])
        answer = refuse(zone)
        return refusal(*answer) if answer else None

    clients.hooks["before-call.ec2.RunInstances"] = hook
    return asked


def user_data_text(ec2: Any, instance_id: str) -> str:
    """The user-data the instance was launched with, as moto keeps it."""
    value = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")["UserData"]["Value"]
    return base64.b64decode(value).decode()


def user_data_of(ec2: Any, instance_id: str) -> dict[str, Any]:
    """The cloud-config the instance was launched with, as a document."""
    text = user_data_text(ec2, instance_id)
    assert text.startswith("#cloud-config\n"), text[:80]
    document: dict[str, Any] = yaml.safe_load(text)
    return document


class LoopbackAws(LoopbackCloud):
    """An AwsProvider whose launches are each served by a loopback sshd presenting the run's host key.

    Fills in what the contract suite's requests leave out (an image and the allowed CIDR).
    """

    def completed(self, request: LaunchRequest) -> LaunchRequest:
        return replace(super().completed(request), image=request.image or IMAGE)

    def cloud_config(self, machine: Machine) -> str | None:
        ec2 = aws.client("ec2", region=machine.placement.region)
        return user_data_text(ec2, machine.id)


class LoopbackBox(LoopbackAws):
    """The loopback sshd plays a Deep Learning AMI: its Python is this venv's, its home a test directory."""

    def launch(self, request: LaunchRequest) -> list[Machine]:
        return on_box(super().launch(request), self.directory / "box")
