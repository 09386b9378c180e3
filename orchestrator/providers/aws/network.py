"""What an AWS run needs around its instances: its SSH keys, its security group, its user-data.

Per run: an ed25519 client key pair made here (the private half 0600 under ``$ORCHESTRATE_HOME/keys/<run-id>/``,
the public half imported as key pair ``orchestrate-<run-id>``); a security group ``orchestrate-<run-id>`` in the
default VPC whose only ingress is TCP 22 from the run's allowed CIDR (and, for a run of several machines, all
traffic from the group itself, so they reach each other's private addresses); and an ed25519 *host* key made here whose
private half goes to the instance through cloud-init's ``ssh_keys`` (never to disk, never to a log) and whose
public half is the machine's pinned host key, so the first connection already knows whom to expect.

Every call takes an EC2 client (:mod:`orchestrator.clouds.aws` makes them) and raises our errors only.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from typing import Any

from orchestrator.clouds.aws import translate, translating
from orchestrator.errors import ProviderError
from orchestrator.providers.cloudinit import user_data as user_data
from orchestrator.providers.keys import KEY_FILE as KEY_FILE
from orchestrator.providers.keys import ClientKey as ClientKey
from orchestrator.providers.keys import HostKey as HostKey
from orchestrator.providers.keys import checked_cidr as checked_cidr
from orchestrator.providers.keys import client_key as client_key
from orchestrator.providers.keys import host_key as host_key
from orchestrator.providers.keys import key_dir as key_dir
from orchestrator.providers.keys import remove_client_key as remove_client_key

SSH_PORT = 22
DELETE_ATTEMPTS = 8  # tries to delete a security group still held by terminating instances' interfaces
DELETE_FIRST_DELAY_S = 2.0  # doubles after each DependencyViolation (2 + 4 + … ≈ 4 min in all, capped per wait)
DELETE_MAX_DELAY_S = 30.0


def resource_name(run_id: str) -> str:
    """The name of the run's key pair and security group."""
    return f"orchestrate-{run_id}"


def tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    """EC2's ``[{"Key": …, "Value": …}]`` form of a tag dict."""
    return [{"Key": key, "Value": value} for key, value in tags.items()]


def import_key_pair(ec2: Any, run_id: str, public: str, tags: Mapping[str, str], *, what: str) -> str:
    """Imports the run's public client key as key pair ``orchestrate-<run-id>`` (replacing a stale one).

    Returns:
        The key pair's name.
    """
    import botocore.exceptions

    name = resource_name(run_id)
    with translating(what=what):
        try:
            ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public.encode(),
                                TagSpecifications=[{"ResourceType": "key-pair", "Tags": tag_list(tags)}])
        except botocore.exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") != "InvalidKeyPair.Duplicate":
                raise
            # Left by an earlier attempt of this run, maybe with another key: ours is the one on disk now.
            ec2.delete_key_pair(KeyName=name)
            ec2.import_key_pair(KeyName=name, PublicKeyMaterial=public.encode(),
                                TagSpecifications=[{"ResourceType": "key-pair", "Tags": tag_list(tags)}])
    return name


def delete_key_pair(ec2: Any, run_id: str, *, what: str) -> None:
    """Deletes the run's key pair; not an error when it is already gone."""
    with translating(what=what):
        ec2.delete_key_pair(KeyName=resource_name(run_id))


def _default_vpc(ec2: Any, *, what: str) -> str:
    with translating(what=what):
        vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
    if not vpcs:
        raise ProviderError(f"{what}: the region has no default VPC",
                            hint="create one with `aws ec2 create-default-vpc`, or use another region")
    return str(vpcs[0]["VpcId"])


def _find_groups(ec2: Any, run_id: str, *, what: str) -> list[dict[str, Any]]:
    with translating(what=what):
        groups: list[dict[str, Any]] = ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [resource_name(run_id)]}]
        )["SecurityGroups"]
    return groups


def ensure_security_group(
    ec2: Any, run_id: str, cidr: str, tags: Mapping[str, str], *, what: str, intra_group: bool = False
) -> str:
    """Makes (or resets) the run's security group: its only ingress is TCP 22 from ``cidr``, plus all traffic from
    the group's own members when ``intra_group``.

    Args:
        ec2: an EC2 client of the run's region.
        run_id: the run.
        cidr: who may reach port 22 (from :func:`checked_cidr`).
        tags: the run's tags.
        what: who is asked, for error lines.
        intra_group: the run has several machines: let them reach each other on any port (multi-node training's
            ``TF_CONFIG`` addresses are their private ones); no address outside the group gains anything.

    Returns:
        The group's id.
    """
    vpc = _default_vpc(ec2, what=what)
    existing = [g for g in _find_groups(ec2, run_id, what=what) if g.get("VpcId") == vpc]
    with translating(what=what):
        if existing:  # an earlier attempt of this run: keep the group, reset its rules to ours
            group_id = str(existing[0]["GroupId"])
            if existing[0].get("IpPermissions"):
                ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=existing[0]["IpPermissions"])
        else:
            group_id = str(ec2.create_security_group(
                GroupName=resource_name(run_id), VpcId=vpc,
                Description=f"Orchestrate run {run_id}: SSH from {cidr}"
                + (", all traffic between its machines" if intra_group else " only"),
                TagSpecifications=[{"ResourceType": "security-group", "Tags": tag_list(tags)}],
            )["GroupId"])
        permission: dict[str, Any] = {"IpProtocol": "tcp", "FromPort": SSH_PORT, "ToPort": SSH_PORT}
        description = f"SSH for Orchestrate run {run_id}"
        if ipaddress.ip_network(cidr).version == 6:
            permission["Ipv6Ranges"] = [{"CidrIpv6": cidr, "Description": description}]
        else:
            permission["IpRanges"] = [{"CidrIp": cidr, "Description": description}]
        _authorize(ec2, group_id, permission)
        if intra_group:
            _authorize(ec2, group_id, {"IpProtocol": "-1", "UserIdGroupPairs": [
                {"GroupId": group_id, "Description": f"between the machines of Orchestrate run {run_id}"}]})
    return group_id


def _authorize(ec2: Any, group_id: str, permission: dict[str, Any]) -> None:
    """Adds one ingress rule to the group; a rule it already has is no error."""
    import botocore.exceptions

    try:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=[permission])
    except botocore.exceptions.ClientError as error:
        if error.response.get("Error", {}).get("Code") != "InvalidPermission.Duplicate":
            raise


def delete_security_group(
    ec2: Any,
    run_id: str,
    *,
    what: str,
    sleep: Callable[[float], None],
    attempts: int = DELETE_ATTEMPTS,
    first_delay_s: float = DELETE_FIRST_DELAY_S,
) -> None:
    """Deletes the run's security group, waiting out ``DependencyViolation`` (interfaces still detaching).

    Not an error when the group is already gone.

    Raises:
        ProviderError: it is still in use after ``attempts`` tries (the last error's line), or AWS refused.
    """
    import botocore.exceptions

    for group in _find_groups(ec2, run_id, what=what):
        group_id = group["GroupId"]
        delay = first_delay_s
        for attempt in range(1, attempts + 1):
            try:
                ec2.delete_security_group(GroupId=group_id)
                break
            except botocore.exceptions.ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code == "InvalidGroup.NotFound":
                    break
                if code != "DependencyViolation" or attempt == attempts:
                    raise translate(error, what=f"{what} (security group {group_id}, try {attempt} of {attempts})"
                                    ) from None
                sleep(delay)  # the terminated instances' interfaces are still being detached
                delay = min(delay * 2, DELETE_MAX_DELAY_S)
            except botocore.exceptions.BotoCoreError as error:
                raise translate(error, what=what) from None
