"""EC2 instances as machines: launch (all or nothing, zone by zone), list by tag, terminate by tag.

One ``RunInstances`` call makes every machine of a launch (MinCount = MaxCount = count), so a launch never leaves
half a cluster behind. The provider tries the region's zones in order on a capacity error and raises
:class:`CapacityError` naming the region when none has room; quota, auth and spot-market refusals
(:class:`SpotRefused`) go straight up (another zone would not help); a throttled ``RunInstances``
(``RequestLimitExceeded``) is retried with jittered backoff, six tries over at most 31 s. Which region, type and
market to try next is the lifecycle's business, not this module's, and so is a spot machine's price
(``orchestrator.catalog.spot``): a provider only makes machines.

Testing knob: ``ssh_endpoint`` (or ``ORCHESTRATE_AWS_SSH_ENDPOINT=[user@]127.0.0.1:PORT``) gives every machine
that SSH address instead of its public IP (and that login user instead of ``ubuntu``); the pinned host key stays
the run's own, so a loopback sshd must present it. Nothing else changes.
"""

from __future__ import annotations

import getpass
import os
import random
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Literal

from orchestrator.catalog.offers import load_offers
from orchestrator.clouds import aws
from orchestrator.errors import CapacityError, ProviderError, QuotaError, SpecError, SpotRefused
from orchestrator.machine import (
    Access,
    Capability,
    Environment,
    LaunchRequest,
    Machine,
    MachineState,
    Placement,
)
from orchestrator.providers.aws import network
from orchestrator.providers.keys import SSHEndpoint as SSHEndpoint

STATE_MAP = {
    "pending": MachineState.PENDING,
    "running": MachineState.RUNNING,
    "stopping": MachineState.STOPPING,
    "stopped": MachineState.STOPPED,
    "shutting-down": MachineState.TERMINATED,  # on its way out: never reachable again, still billed until gone
    "terminated": MachineState.TERMINATED,
}
LIVE_STATES = ("pending", "running", "stopping", "stopped", "shutting-down")

RUN_TAG = "orchestrate:run-id"
OWNER_TAG = "orchestrate:owner"
CREATED_TAG = "orchestrate:created-at"
HOST_KEY_TAG = "orchestrate:host-key"  # the pinned public host key, so a listed machine is reachable safely too

LOGIN_USER = "ubuntu"  # the Ubuntu-based Deep Learning AMIs' login
POLL_S = 2.0  # between DescribeInstances while waiting (not the 15 s of boto3's waiters), ±25 % jitter
RUNNING_TIMEOUT_S = 600.0
TERMINATED_TIMEOUT_S = 600.0
ENDPOINT_ENV = "ORCHESTRATE_AWS_SSH_ENDPOINT"

# Errors that say "not in this zone, now": the next zone of the region may have room. (The common capacity codes
# are mapped by orchestrator.clouds.aws; these are specific to one zone's subnet.)
_ZONE_CAPACITY_CODES = frozenset({"InsufficientFreeAddressesInSubnet"})

ClientFactory = Callable[[str | None, bool], Any]  # (region, retries) → an EC2 client


def _environment(image: str) -> Environment:
    """What the payload runs with on the image: the base Deep Learning AMI has NVIDIA drivers and Python but no
    Keras, so the payload gets a venv of its own (created once per requirements, then reused); any other image is
    taken to have Keras for ``python3`` (its ``prepare`` check says so if not)."""
    prepare: Literal["image", "venv"] = "venv" if "base-oss-nvidia-driver" in image else "image"
    return Environment(prepare=prepare, python="python3", workdir="orchestrate")


def service_quota(instance_type: str, *, spot: bool) -> str:
    """The EC2 Service Quotas quota (by its name in the console) that caps the vCPUs of this instance type's family.

    Names as the EC2 user guide lists them ("Amazon EC2 service quotas", "Spot Instance quotas").
    """
    family = instance_type.split(".", 1)[0].lower()
    if family.startswith(("g", "vt")):
        return "All G and VT Spot Instance Requests" if spot else "Running On-Demand G and VT instances"
    if family.startswith("p5"):
        return "All P5 Spot Instance Requests" if spot else "Running On-Demand P instances"
    if family.startswith("p"):
        return "All P4, P3 and P2 Spot Instance Requests" if spot else "Running On-Demand P instances"
    if family.startswith(("dl", "inf", "trn", "f", "x")):
        kind = next(k for k in ("DL", "Inf", "Trn", "F", "X") if family.startswith(k.lower()))
        return f"All {kind} Spot Instance Requests" if spot else f"Running On-Demand {kind} instances"
    return ("All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests" if spot
            else "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances")


class AwsProvider:
    """EC2 instances, one run's tagged with its run id.

    Args:
        home: the Orchestrate home; the run's private key lives in ``home/keys/<run-id>/``.
        region: the region to sweep and list in when no machine names one (default: boto3's configured region).
        profile: an AWS shared-config profile (default: boto3's chain).
        endpoint_url: another EC2 endpoint (default: boto3's, which honours ``AWS_ENDPOINT_URL``).
        clock: monotonic seconds (injected in tests).
        sleep: how to wait between polls and retries (injected in tests).
        ssh_endpoint: ``[user@]host:port`` where every machine's SSH is reached (default:
            ``$ORCHESTRATE_AWS_SSH_ENDPOINT``).
        client_factory: ``(region, retries) → EC2 client`` (default: :mod:`orchestrator.clouds.aws`; tests hook it).
    """

    name = "aws"
    capabilities: frozenset[Capability] = frozenset({Capability.SPOT, Capability.MULTI_NODE})

    def __init__(
        self,
        home: Path,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        ssh_endpoint: str | None = None,
        client_factory: ClientFactory | None = None,
        **_: object,
    ) -> None:
        self.home = home
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self.clock = clock
        self.sleep = sleep
        self.ssh_endpoint = SSHEndpoint.setting(ssh_endpoint, ENDPOINT_ENV)
        self._client_factory = client_factory or self._make_client
        self._clients: dict[tuple[str | None, bool], Any] = {}
        self._launched_regions: set[str] = set()

    # -- clients and regions -------------------------------------------------------------------------------------

    def _make_client(self, region: str | None, retries: bool) -> Any:
        make = aws.client if retries else aws.client_without_retries
        return make("ec2", region=region, profile=self.profile, endpoint_url=self.endpoint_url)

    def _ec2(self, region: str | None, *, retries: bool = True) -> Any:
        key = (region, retries)
        if key not in self._clients:
            self._clients[key] = self._client_factory(region, retries)
        return self._clients[key]

    def _default_region(self) -> str:
        if self.region:
            return self.region
        region = self._ec2(None).meta.region_name
        if not region:
            raise ProviderError("no AWS region configured", hint="set AWS_DEFAULT_REGION or name a region")
        return str(region)

    def _regions(self, machines: Sequence[Machine] = ()) -> list[str]:
        """Where this run's (or every run's) machines may be: the given machines', ours, the default region, and the
        regions a sweep covers (``ORCHESTRATE_AWS_REGIONS``, comma-separated; else every region the catalog prices
        for aws), so a process that never launched anything (``orchestrate down --all``) still finds them."""
        found = {m.placement.region for m in machines if m.provider == self.name and m.placement.region}
        return sorted({*found, *self._launched_regions, self._default_region(), *self._sweep_regions()})

    def _sweep_regions(self) -> set[str]:
        listed = os.environ.get("ORCHESTRATE_AWS_REGIONS")
        if listed:
            return {region.strip() for region in listed.split(",") if region.strip()}
        return {offer.region for offer in load_offers(home=self.home) if offer.provider == self.name}

    @staticmethod
    def _what(region: str) -> str:
        return f"EC2 API in {region}"

    # -- launch --------------------------------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> list[Machine]:
        """Launches ``request.count`` instances of one type in one region, trying its zones in order.

        Returns once every instance is ``running`` (SSH may still be starting: the connect step waits for it). With
        more than one machine, the run's security group lets them reach each other (multi-node training).

        Raises:
            SpecError: no image, no allowed CIDR (or one open to everyone), or no region.
            CapacityError: no zone of the region had room (every zone's answer in the line).
            SpotRefused: the spot market refused the request as a whole (no other zone is tried).
            QuotaError: the account's limit refuses the request (no other zone is tried).
            AuthError: the credentials are refused.
            ProviderError: AWS refused otherwise, or the instances did not come up in time.
        """
        placement = request.placement
        if not request.image:
            raise SpecError("image", request.image, "an AMI id (ami-…) or resolve:ssm:<parameter>",
                            hint="the aws provider needs the machine image to launch")
        if request.count < 1:
            raise SpecError("count", request.count, "1 or more machines")
        cidr = network.checked_cidr(request.allowed_cidr)
        region = placement.region or self._default_region()
        what = self._what(region)
        ec2 = self._ec2(region)
        self._launched_regions.add(region)
        tags = {**request.tags, RUN_TAG: request.run_id, OWNER_TAG: _owner(),
                CREATED_TAG: datetime.now(UTC).isoformat(timespec="seconds")}

        key = network.client_key(self.home, request.run_id)
        key_name = network.import_key_pair(ec2, request.run_id, key.public, tags, what=what)
        group_id = network.ensure_security_group(ec2, request.run_id, cidr, tags, what=what,
                                                 intra_group=request.count > 1)
        host_key = network.host_key()
        instance_tags = {**tags, HOST_KEY_TAG: host_key.public, "Name": network.resource_name(request.run_id)}
        params: dict[str, Any] = {
            "ImageId": request.image, "InstanceType": placement.instance_type,
            "MinCount": request.count, "MaxCount": request.count,  # all or nothing
            "KeyName": key_name, "SecurityGroupIds": [group_id],
            "UserData": network.user_data(host_key, request.user_data, user=LOGIN_USER, workdir="orchestrate"),
            "TagSpecifications": [{"ResourceType": kind, "Tags": network.tag_list(instance_tags)}
                                  for kind in ("instance", "volume")],
        }
        if placement.spot:
            spot: dict[str, Any] = {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}
            if placement.max_price is not None:
                spot["MaxPrice"] = f"{placement.max_price:.4f}"
            params["InstanceMarketOptions"] = {"MarketType": "spot", "SpotOptions": spot}

        instances = self._run_in_some_zone(region, placement, request.count, params, request.on_try)
        running = self._wait_until_running(ec2, [i["InstanceId"] for i in instances], what=what)
        machines = [self._machine(instance, region, placement, host_key.public, image=str(request.image))
                    for instance in running]
        return machines

    def _zones(self, region: str, placement: Placement) -> list[str]:
        if placement.zone:
            return [placement.zone]
        with aws.translating(what=self._what(region)):
            zones = self._ec2(region).describe_availability_zones(
                Filters=[{"Name": "state", "Values": ["available"]}])["AvailabilityZones"]
        names = sorted(z["ZoneName"] for z in zones if z.get("ZoneType", "availability-zone") == "availability-zone")
        if not names:
            raise ProviderError(f"{self._what(region)}: no available zone in {region}")
        return names

    def _run_in_some_zone(self, region: str, placement: Placement, count: int, params: dict[str, Any],
                          on_try: Callable[[str, str, str], None] | None = None) -> Any:
        """One RunInstances per zone, in order, until one has room; without botocore's retries, so a capacity
        refusal moves on at once (only throttling is retried, with jittered backoff: ``aws.retrying_throttled``).
        Each zone refused for capacity, and the one that launched, is told to ``on_try``."""
        import botocore.exceptions

        what = self._what(region)
        ec2 = self._ec2(region, retries=False)
        refusals: list[str] = []
        zones = self._zones(region, placement)
        tell = on_try or (lambda where, outcome, detail: None)
        for zone in zones:
            try:
                # One client token for every try in this zone: should a throttled-looking try have launched after
                # all, EC2 answers the retry with those instances instead of launching more (idempotent RunInstances).
                token = str(uuid.uuid4())
                instances = aws.retrying_throttled(
                    partial(ec2.run_instances, **params, Placement={"AvailabilityZone": zone}, ClientToken=token),
                    what=f"{what} ({zone})", sleep=self.sleep)["Instances"]
                tell(zone, "ok", ", ".join(i["InstanceId"] for i in instances))
                return instances
            except botocore.exceptions.ClientError as error:
                translated = aws.translate(error, what=f"{what} ({zone})")
                code = error.response.get("Error", {}).get("Code")
                if code in _ZONE_CAPACITY_CODES:
                    translated = CapacityError(str(translated), hint=translated.hint)
                if isinstance(translated, SpotRefused):  # the market's answer, the same in every zone
                    if code != "MaxSpotInstanceCountExceeded":
                        raise translated from None
                    quota = service_quota(placement.instance_type, spot=True)
                    raise SpotRefused(f"{translated}; the quota to raise: \"{quota}\" in {region}",
                                      hint=f"Service Quotas console → Amazon EC2 → \"{quota}\" → request an "
                                      "increase (in vCPUs); or run on-demand") from None
                if isinstance(translated, QuotaError):
                    quota = service_quota(placement.instance_type, spot=placement.spot)
                    raise QuotaError(f"{translated}; the quota to raise: \"{quota}\" in {region}",
                                     hint=f"Service Quotas console → Amazon EC2 → \"{quota}\" → request an "
                                     "increase (in vCPUs)") from None
                if not isinstance(translated, CapacityError):
                    raise translated from None
                refusals.append(f"{zone}: {code}")
                tell(zone, "failed", str(translated))
            except botocore.exceptions.BotoCoreError as error:
                raise aws.translate(error, what=what) from None
        market = "spot" if placement.spot else "on-demand"
        raise CapacityError(
            f"no capacity for {count} × {placement.instance_type} ({market}) in region {region}: "
            f"every zone tried refused ({'; '.join(refusals)})",
            hint="another region, instance type or market may have room; or try again later",
        )

    def _wait_until_running(self, ec2: Any, ids: list[str], *, what: str) -> list[dict[str, Any]]:
        deadline = self.clock() + RUNNING_TIMEOUT_S
        while True:
            instances = self._describe(ec2, what=what, InstanceIds=ids)
            states = {i["InstanceId"]: i["State"]["Name"] for i in instances}
            dead = [f"{i['InstanceId']} is {states[i['InstanceId']]}"
                    + (f" ({i['StateReason']['Message']})" if i.get("StateReason") else "")
                    for i in instances if states[i["InstanceId"]] in ("shutting-down", "terminated")]
            if dead:
                raise ProviderError(f"{what}: instances ended while starting: {'; '.join(dead)}")
            if len(instances) == len(ids) and all(state == "running" for state in states.values()):
                return sorted(instances, key=lambda i: (i.get("AmiLaunchIndex", 0), i["InstanceId"]))
            if self.clock() >= deadline:
                waiting = ", ".join(f"{k} {v}" for k, v in sorted(states.items()))
                raise ProviderError(f"{what}: instances not running after {RUNNING_TIMEOUT_S:g} s: {waiting}")
            self.sleep(_poll_delay())

    # -- list and terminate --------------------------------------------------------------------------------------

    def _describe(self, ec2: Any, *, what: str, **query: Any) -> list[dict[str, Any]]:
        with aws.translating(what=what):
            pages: Iterator[dict[str, Any]] = ec2.get_paginator("describe_instances").paginate(**query)
            return [instance for page in pages for reservation in page["Reservations"]
                    for instance in reservation["Instances"]]

    def _live(self, ec2: Any, region: str, run_id: str | None, ids: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The run's (or every run's) instances not yet terminated, by tag; plus ``ids`` if they are live."""
        states = {"Name": "instance-state-name", "Values": list(LIVE_STATES)}
        by_tag = ({"Name": f"tag:{RUN_TAG}", "Values": [run_id]} if run_id is not None
                  else {"Name": "tag-key", "Values": [RUN_TAG]})
        found = {i["InstanceId"]: i for i in self._describe(ec2, what=self._what(region), Filters=[by_tag, states])}
        if ids:
            given = [{"Name": "instance-id", "Values": list(ids)}, states]
            found.update({i["InstanceId"]: i for i in self._describe(ec2, what=self._what(region), Filters=given)})
        return list(found.values())

    def list_machines(self, *, run_id: str | None = None) -> list[Machine]:
        """Lists instances tagged by Orchestrate (one run's, or all) that are not terminated, in the known regions."""
        machines = []
        for region in self._regions():
            for instance in self._live(self._ec2(region), region, run_id):
                machines.append(self._machine(instance, region, None, None))
        return sorted(machines, key=lambda m: (m.run_id, m.id))

    def terminate(self, run_id: str, machines: Sequence[Machine] = ()) -> None:
        """Terminates every instance of the run (by tag, plus the given ones), waits until they are gone, then
        deletes the run's security group and key pair and the local key; idempotent.

        Raises:
            ProviderError: an instance did not terminate in time, or AWS refused a call.
        """
        for region in self._regions(machines):
            ec2 = self._ec2(region)
            what = self._what(region)
            given = [m.id for m in machines if m.provider == self.name
                     and (m.placement.region or self._default_region()) == region]
            ids = sorted(i["InstanceId"] for i in self._live(ec2, region, run_id, given))
            if ids:
                with aws.translating(what=what):
                    ec2.terminate_instances(InstanceIds=ids)
                self._wait_until_terminated(ec2, ids, what=what)
            network.delete_security_group(ec2, run_id, what=what, sleep=self.sleep)
            network.delete_key_pair(ec2, run_id, what=what)
        network.remove_client_key(self.home, run_id)

    def _wait_until_terminated(self, ec2: Any, ids: list[str], *, what: str) -> None:
        deadline = self.clock() + TERMINATED_TIMEOUT_S
        while True:
            left = [i["InstanceId"] for i in self._describe(
                ec2, what=what, Filters=[{"Name": "instance-id", "Values": ids},
                                         {"Name": "instance-state-name", "Values": list(LIVE_STATES)}])]
            if not left:
                return
            if self.clock() >= deadline:
                raise ProviderError(f"{what}: instances not terminated after {TERMINATED_TIMEOUT_S:g} s: "
                                    + ", ".join(sorted(left)), hint="check the EC2 console; they may still bill")
            self.sleep(_poll_delay())

    # -- machines ------------------------------------------------------------------------------------------------

    def _machine(self, instance: dict[str, Any], region: str, placement: Placement | None,
                 host_key: str | None, *, image: str | None = None) -> Machine:
        """The Machine an instance is; ``image`` is what the launch asked for (EC2 reports the AMI a
        ``resolve:ssm:`` name resolved to, which no longer says which family it is)."""
        tags = {t["Key"]: t["Value"] for t in instance.get("Tags") or ()}
        run_id = tags.get(RUN_TAG, "")
        spot = instance.get("InstanceLifecycle") == "spot"
        base = placement or Placement(provider=self.name, instance_type=instance["InstanceType"], spot=spot,
                                      billing_rule="aws_linux")
        placement = replace(base, region=region, zone=instance["Placement"]["AvailabilityZone"])
        private = instance.get("PrivateIpAddress")
        host = instance.get("PublicIpAddress") or private or ""
        port, user = network.SSH_PORT, LOGIN_USER
        if self.ssh_endpoint is not None:
            host, port, user = self.ssh_endpoint.reach(LOGIN_USER)
        access = Access(via="ssh", host=host, port=port, user=user,
                        key_path=str(network.key_dir(self.home, run_id) / network.KEY_FILE),
                        host_key=host_key or tags.get(HOST_KEY_TAG))
        return Machine(
            run_id=run_id, id=instance["InstanceId"], provider=self.name, placement=placement, access=access,
            environment=_environment(image or str(instance.get("ImageId", ""))),
            run_dir=f"orchestrate/runs/{run_id}", launched_at=instance["LaunchTime"].astimezone(UTC),
            state=STATE_MAP.get(instance["State"]["Name"], MachineState.UNKNOWN), private_address=private,
            extra={"image_id": str(instance.get("ImageId", ""))},
        )


def _poll_delay() -> float:
    """Seconds to the next poll: ~2 s, jittered so that many runs' polls do not fall into step."""
    return POLL_S * random.uniform(0.75, 1.25)  # noqa: S311 - spacing polls, not a secret


def _owner() -> str:
    """The local user, for the owner tag (who to ask about a machine found in the console)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
