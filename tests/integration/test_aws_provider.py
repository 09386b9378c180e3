"""The AWS provider against moto's EC2 in-process: the run's network and keys, zone failover on capacity errors
(injected into the provider's own clients, FACTS: moto never runs out), and the pinned host key over a real sshd."""

from __future__ import annotations

import getpass
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrator.clouds import aws
from orchestrator.errors import CapacityError, HostKeyMismatch, ProviderError, QuotaError, SpecError, SpotRefused
from orchestrator.machine import MachineState, Placement
from orchestrator.providers.aws import network
from orchestrator.providers.aws.instance import AwsProvider
from orchestrator.remote.connect import transport_to
from tests.fakes import aws as aws_fakes
from tests.fakes.aws import (
    CIDR,
    PLACEMENT,
    REGION,
    HookedClients,
    hook_run_instances,
    launch_request,
    refusal,
    zones_of,
)

moto_aws = aws_fakes.moto_aws  # the fixtures
sleeps = aws_fakes.sleeps
clients = aws_fakes.clients
provider = aws_fakes.provider

SPOT = replace(PLACEMENT, spot=True, price_per_hour=0.302)  # the catalog's spot price


@pytest.fixture
def ec2(moto_aws: None) -> Any:
    return aws.client("ec2", region=REGION)


def test_the_security_group_lets_only_ssh_in_and_only_from_the_given_address(provider: AwsProvider, ec2: Any) -> None:
    provider.launch(launch_request("r-sg", allowed_cidr="198.51.100.4/32"))
    [group] = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["orchestrate-r-sg"]}])[
        "SecurityGroups"]
    [vpc] = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    assert group["VpcId"] == vpc["VpcId"]
    assert [(p["IpProtocol"], p["FromPort"], p["ToPort"], [r["CidrIp"] for r in p["IpRanges"]],
             p.get("Ipv6Ranges", []), p.get("UserIdGroupPairs", [])) for p in group["IpPermissions"]] == [
        ("tcp", 22, 22, ["198.51.100.4/32"], [], [])]  # one machine: no rule between machines either
    assert {t["Key"]: t["Value"] for t in group["Tags"]}["orchestrate:run-id"] == "r-sg"


def test_machines_of_one_launch_share_a_zone_and_may_reach_each_other_but_only_ssh_comes_from_outside(
    provider: AwsProvider, clients: HookedClients, ec2: Any
) -> None:
    asked = hook_run_instances(clients, lambda zone: None)
    machines = provider.launch(launch_request("r-pair", count=2))
    assert len(asked) == 1 and len(machines) == 2  # one RunInstances for both
    instances = [i for r in ec2.describe_instances(InstanceIds=[m.id for m in machines])["Reservations"]
                 for i in r["Instances"]]
    assert len({i["Placement"]["AvailabilityZone"] for i in instances}) == 1
    assert len({i["SubnetId"] for i in instances}) == 1
    assert all(m.private_address for m in machines) and len({m.private_address for m in machines}) == 2
    [group] = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["orchestrate-r-pair"]}])[
        "SecurityGroups"]
    assert {i["SecurityGroups"][0]["GroupId"] for i in instances} == {group["GroupId"]}
    from_cidrs = [(p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), [r["CidrIp"] for r in p["IpRanges"]])
                  for p in group["IpPermissions"] if p.get("IpRanges") or p.get("Ipv6Ranges")]
    assert from_cidrs == [("tcp", 22, 22, [CIDR])]
    from_groups = [(p["IpProtocol"], [pair["GroupId"] for pair in p["UserIdGroupPairs"]])
                   for p in group["IpPermissions"] if p.get("UserIdGroupPairs")]
    assert from_groups == [("-1", [group["GroupId"]])]


def test_a_second_attempt_of_a_multi_machine_run_keeps_one_rule_between_its_machines(
    provider: AwsProvider, ec2: Any
) -> None:
    provider.launch(launch_request("r-again", count=2))
    provider.launch(launch_request("r-again", count=2, attempt=2))  # the group is reset, not duplicated or refused
    [group] = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["orchestrate-r-again"]}])[
        "SecurityGroups"]
    assert sorted(p["IpProtocol"] for p in group["IpPermissions"]) == ["-1", "tcp"]


@pytest.mark.parametrize("cidr", [None, "", "0.0.0.0/0", "::/0", "not-a-network"])
def test_a_launch_without_a_narrow_allowed_cidr_is_refused_before_anything_is_made(
    provider: AwsProvider, ec2: Any, cidr: str | None
) -> None:
    with pytest.raises(SpecError, match="allowed_cidr"):
        provider.launch(launch_request("r-open", allowed_cidr=cidr))
    assert provider.list_machines(run_id="r-open") == []
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["orchestrate-r-open"]}])[
        "SecurityGroups"] == []


def test_a_launch_without_an_image_is_refused(provider: AwsProvider) -> None:
    with pytest.raises(SpecError, match="image"):
        provider.launch(launch_request("r-noimage", image=None))


def test_instances_carry_the_run_s_tags_and_the_pinned_host_key(provider: AwsProvider, ec2: Any) -> None:
    [machine] = provider.launch(launch_request("r-tags", tags={"team": "vision"}))
    [instance] = [i for r in ec2.describe_instances(InstanceIds=[machine.id])["Reservations"] for i in r["Instances"]]
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["orchestrate:run-id"] == "r-tags" and tags["Name"] == "orchestrate-r-tags" and tags["team"] == "vision"
    assert tags["orchestrate:owner"] and tags["orchestrate:created-at"].startswith("20")
    assert tags["orchestrate:host-key"] == machine.access.host_key
    assert (machine.access.host_key or "").startswith("ssh-ed25519 ")
    assert (machine.access.via, machine.access.user, machine.access.port) == ("ssh", "ubuntu", 22)
    assert machine.access.host == instance["PublicIpAddress"]
    assert machine.private_address == instance["PrivateIpAddress"]
    assert machine.placement.zone == instance["Placement"]["AvailabilityZone"] and machine.state == MachineState.RUNNING
    assert machine.run_dir == "orchestrate/runs/r-tags" and machine.environment.prepare == "image"
    [listed] = provider.list_machines(run_id="r-tags")
    assert listed.access.host_key == machine.access.host_key  # a machine found by tag is pinned too


def test_the_host_key_s_private_half_is_in_the_user_data_only_never_on_disk(
    provider: AwsProvider, ec2: Any, tmp_path: Path
) -> None:
    from tests.fakes.aws import user_data_of

    [machine] = provider.launch(launch_request("r-hostkey"))
    document = user_data_of(ec2, machine.id)
    keys = document["ssh_keys"]
    assert keys["ed25519_public"] == machine.access.host_key
    # From images/cloud-init/user-data.yaml: the run's key is the only one sshd presents, no password login.
    # cloud-init generates no key when ssh_keys is given; the schema wants a non-empty ssh_genkeytypes all the same.
    assert document["ssh_deletekeys"] is True and document["ssh_genkeytypes"] == ["ed25519"]
    assert document["ssh_pwauth"] is False
    secret = "".join(keys["ed25519_private"].splitlines()[1:-1])  # the key's base64 body (its start is common)
    on_disk = [p for p in tmp_path.rglob("*") if p.is_file()
               and secret in "".join(p.read_text(errors="replace").splitlines())]
    assert on_disk == []


def test_the_key_pair_is_imported_and_deleted_with_the_local_key_at_terminate(
    provider: AwsProvider, ec2: Any, tmp_path: Path
) -> None:
    machines = provider.launch(launch_request("r-keys"))
    key = Path(machines[0].access.key_path or "")
    assert key == tmp_path / "home" / "keys" / "r-keys" / "id_ed25519"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    [pair] = ec2.describe_key_pairs(KeyNames=["orchestrate-r-keys"])["KeyPairs"]
    assert pair["KeyName"] == "orchestrate-r-keys"
    provider.terminate("r-keys", machines)
    assert [p["KeyName"] for p in ec2.describe_key_pairs()["KeyPairs"] if p["KeyName"] == "orchestrate-r-keys"] == []
    assert not key.parent.exists()
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["orchestrate-r-keys"]}])[
        "SecurityGroups"] == []
    [instance] = [i for r in ec2.describe_instances(InstanceIds=[machines[0].id])["Reservations"]
                  for i in r["Instances"]]
    assert instance["State"]["Name"] == "terminated"


def test_a_capacity_error_in_the_first_zone_launches_in_the_next(
    provider: AwsProvider, clients: HookedClients, ec2: Any
) -> None:
    first, second = zones_of(ec2)[:2]
    asked = hook_run_instances(clients, lambda zone: ("InsufficientInstanceCapacity", "We currently do not have "
                                                        "sufficient g5.xlarge capacity") if zone == first else None)
    machines = provider.launch(launch_request("r-zone", count=2))
    assert asked == [first, second]
    assert {m.placement.zone for m in machines} == {second}
    assert len(provider.list_machines(run_id="r-zone")) == 2


def test_no_capacity_in_any_zone_raises_a_capacity_error_naming_the_region(
    provider: AwsProvider, clients: HookedClients, ec2: Any
) -> None:
    asked = hook_run_instances(clients, lambda zone: ("InsufficientInstanceCapacity", "no capacity"))
    with pytest.raises(CapacityError, match=f"region {REGION}") as caught:
        provider.launch(launch_request("r-full"))
    assert asked == zones_of(ec2)  # each zone once: no retries of a refused zone
    assert all(zone in str(caught.value) for zone in asked)
    assert provider.list_machines(run_id="r-full") == []


def test_a_quota_error_names_the_quota_and_tries_no_other_zone(
    provider: AwsProvider, clients: HookedClients, ec2: Any
) -> None:
    asked = hook_run_instances(clients, lambda zone: (
        "VcpuLimitExceeded", "You have requested more vCPU capacity than your current vCPU limit of 0 allows"))
    with pytest.raises(QuotaError, match="VcpuLimitExceeded") as caught:
        provider.launch(launch_request("r-quota"))
    assert not isinstance(caught.value, CapacityError)
    assert asked == zones_of(ec2)[:1]


def test_a_spot_launch_asks_for_the_spot_market_at_the_max_price(
    provider: AwsProvider, clients: HookedClients
) -> None:
    sent: list[dict[str, Any]] = []
    clients.hooks["before-call.ec2.RunInstances"] = lambda params, **_: sent.append(params["body"])
    spot = Placement(provider="aws", instance_type="g5.xlarge", region=REGION, spot=True, max_price=0.5)
    [machine] = provider.launch(launch_request("r-spot", placement=spot))
    assert sent[0]["InstanceMarketOptions.MarketType"] == "spot"
    assert sent[0]["InstanceMarketOptions.SpotOptions.MaxPrice"] == "0.5000"
    assert machine.placement.spot and provider.list_machines(run_id="r-spot")[0].placement.spot


def test_spot_max_price_too_low_in_the_first_zone_is_refused_at_once_trying_no_other_zone(
    provider: AwsProvider, clients: HookedClients, ec2: Any
) -> None:
    asked = hook_run_instances(clients, lambda zone: (
        "SpotMaxPriceTooLow", "Your Spot request price of 0.05 is lower than the minimum required Spot request "
        "fulfillment price of 0.3125"))
    with pytest.raises(SpotRefused, match="SpotMaxPriceTooLow") as caught:
        provider.launch(launch_request("r-cheap", placement=replace(SPOT, max_price=0.05)))
    assert asked == zones_of(ec2)[:1]
    assert "max_price" in (caught.value.hint or "")
    assert provider.list_machines(run_id="r-cheap") == []


def test_the_spot_instance_count_refuses_spot_at_once_naming_the_spot_quota(
    provider: AwsProvider, clients: HookedClients, ec2: Any
) -> None:
    asked = hook_run_instances(clients, lambda zone: (
        "MaxSpotInstanceCountExceeded", "Max spot instance count exceeded"))
    with pytest.raises(SpotRefused, match="MaxSpotInstanceCountExceeded") as caught:
        provider.launch(launch_request("r-spotcount", placement=SPOT))
    assert asked == zones_of(ec2)[:1]
    assert f"\"All G and VT Spot Instance Requests\" in {REGION}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_dependency_violation_deleting_the_group_is_waited_out_and_the_group_deleted(
    provider: AwsProvider, clients: HookedClients, ec2: Any, sleeps: list[float]
) -> None:
    machines = provider.launch(launch_request("r-dep"))
    refusals = ["DependencyViolation"]

    def hook(**_: Any) -> Any:
        return refusal(refusals.pop(), "resource has a dependent object") if refusals else None

    for client in clients.clients:
        client.meta.events.register("before-call.ec2.DeleteSecurityGroup", hook)
    provider.terminate("r-dep", machines)
    assert refusals == [] and network.DELETE_FIRST_DELAY_S in sleeps
    assert ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["orchestrate-r-dep"]}])[
        "SecurityGroups"] == []


def test_a_machine_presenting_another_host_key_is_refused(
    tmp_path: Path, moto_aws: None, sshd: Callable[..., Any], make_host_key: Callable[..., Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.integration.conftest import free_port

    port = free_port()
    monkeypatch.setenv("ORCHESTRATE_AWS_SSH_ENDPOINT", f"{getpass.getuser()}@127.0.0.1:{port}")
    provider = AwsProvider(tmp_path / "home", sleep=lambda _: None)
    [machine] = provider.launch(launch_request("r-impostor"))
    key = network.key_dir(tmp_path / "home", "r-impostor") / network.KEY_FILE
    impostor = sshd(port=port, host_key_path=make_host_key(), authorized_key=key)  # the run's login works there
    assert impostor.host_key != machine.access.host_key
    assert (machine.access.host, machine.access.port) == ("127.0.0.1", port)
    with pytest.raises(HostKeyMismatch):
        transport_to(machine.access, tmp_path / "home", 10.0)
    provider.terminate("r-impostor", [machine])


def test_instances_that_never_start_time_out_on_the_injected_clock_leaving_them_findable(
    tmp_path: Path, moto_aws: None, clients: HookedClients
) -> None:
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    def still_pending(parsed: dict[str, Any], **_: Any) -> None:
        for reservation in parsed.get("Reservations", []):
            for instance in reservation["Instances"]:
                instance["State"] = {"Code": 0, "Name": "pending"}

    clients.hooks["after-call.ec2.DescribeInstances"] = still_pending
    provider = AwsProvider(tmp_path / "home", clock=lambda: now[0], sleep=sleep, client_factory=clients)
    with pytest.raises(ProviderError, match="not running after 600 s"):
        provider.launch(launch_request("r-slow"))
    assert all(1.5 <= s <= 2.5 for s in sleeps) and len(set(sleeps)) > 1  # ~2 s, jittered
    assert 240 <= len(sleeps) <= 400 and sum(sleeps) >= 600
    del clients.hooks["after-call.ec2.DescribeInstances"]
    for client in clients.clients:
        client.meta.events.unregister("after-call.ec2.DescribeInstances", still_pending)
    assert len(provider.list_machines(run_id="r-slow")) == 1  # the lifecycle's sweep will find it
    provider.terminate("r-slow")
    assert provider.list_machines(run_id="r-slow") == []


def test_the_registry_makes_the_aws_provider_lazily(tmp_path: Path) -> None:
    from orchestrator.providers import get_provider

    provider = get_provider("aws", tmp_path / "home")
    assert isinstance(provider, AwsProvider) and provider.name == "aws"
