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
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

import yaml

from orchestrator.clouds.aws import translate, translating
from orchestrator.errors import ProviderError, SpecError

KEY_FILE = "id_ed25519"  # the run's private client key, in keys/<run-id>/
SSH_PORT = 22
TEMPLATE = "user-data.yaml"  # in images/cloud-init/: what every machine's cloud-config starts from
DELETE_ATTEMPTS = 8  # tries to delete a security group still held by terminating instances' interfaces
DELETE_FIRST_DELAY_S = 2.0  # doubles after each DependencyViolation (2 + 4 + … ≈ 4 min in all, capped per wait)
DELETE_MAX_DELAY_S = 30.0


def resource_name(run_id: str) -> str:
    """The name of the run's key pair and security group."""
    return f"orchestrate-{run_id}"


def key_dir(home: Path, run_id: str) -> Path:
    """Where the run's private client key lives."""
    return home / "keys" / run_id


@dataclass(frozen=True)
class ClientKey:
    """The run's SSH login key: a private key file and its public line."""

    path: Path
    public: str  # "ssh-ed25519 AAAA…"


@dataclass(frozen=True)
class HostKey:
    """The run's SSH host key. ``private`` goes into user-data only; ``public`` is pinned on every machine."""

    public: str  # "ssh-ed25519 AAAA…"
    private: str = field(repr=False)  # OpenSSH PEM; never written to disk or logged


def client_key(home: Path, run_id: str) -> ClientKey:
    """Returns the run's client key, making it (0600, in a 0700 directory) if it does not exist yet."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    directory = key_dir(home, run_id)
    path = directory / KEY_FILE
    if path.exists():
        loaded = serialization.load_ssh_private_key(path.read_bytes(), password=None)
        line = loaded.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        return ClientKey(path, line.decode())
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    public = private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    ).decode()
    partial = path.with_name(KEY_FILE + ".partial")
    partial.touch(mode=0o600)  # 0600 before a byte of the key is in it
    partial.chmod(0o600)
    partial.write_bytes(pem)
    partial.replace(path)
    path.with_name(KEY_FILE + ".pub").write_text(public + "\n")
    return ClientKey(path, public)


def remove_client_key(home: Path, run_id: str) -> None:
    """Removes the run's key directory (idempotent)."""
    shutil.rmtree(key_dir(home, run_id), ignore_errors=True)


def host_key() -> HostKey:
    """Makes a fresh ed25519 host key in memory."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    ).decode()
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return HostKey(public=public.decode(), private=pem)


def checked_cidr(cidr: str | None) -> str:
    """Returns the CIDR port 22 may be reached from, normalised.

    Raises:
        SpecError: none was given, it is not a network, or it opens port 22 to the whole Internet.
    """
    accepted = "the address (or small network) you connect from, e.g. 203.0.113.7/32"
    if not cidr:
        raise SpecError("allowed_cidr", cidr, accepted, hint="an AWS machine's SSH port is never opened to everyone")
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise SpecError("allowed_cidr", cidr, accepted) from None
    if network.prefixlen == 0:
        raise SpecError("allowed_cidr", cidr, accepted, hint="an AWS machine's SSH port is never opened to everyone")
    return str(network)


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


def user_data(host: HostKey, given: str | None) -> str:
    """Returns the instance's user-data: cloud-init installs the run's host key, then whatever ``given`` asks.

    A ``#cloud-config`` document is merged (its own ``ssh_keys`` are replaced); any other user-data (a shell
    script, a multipart document) is sent beside ours as a MIME multipart document, which cloud-init reads.
    """
    ours: dict[str, Any] = {**_template(),
                            "ssh_keys": {"ed25519_private": host.private, "ed25519_public": host.public}}
    if given is None or given.lstrip().startswith("#cloud-config"):
        document: dict[str, Any] = {}
        if given is not None:
            loaded = yaml.safe_load(given)
            if loaded is not None and not isinstance(loaded, dict):
                raise SpecError("user_data", given[:80], "a #cloud-config mapping, a script or a MIME document")
            document = dict(loaded or {})
        document.update(ours)
        return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False)
    multipart = MIMEMultipart()
    multipart.attach(MIMEText("#cloud-config\n" + yaml.safe_dump(ours, sort_keys=False), "cloud-config"))
    subtype = "x-shellscript" if given.startswith("#!") else "x-include-url" if given.startswith("#include") \
        else "plain"
    multipart.attach(MIMEText(given, subtype))
    return multipart.as_string()


def cloud_init_dir() -> Path:
    """The directory of the cloud-init template: ``images/cloud-init`` in a source checkout, shipped inside the
    package (``orchestrator/cloud_init``) when installed from a wheel."""
    package = Path(__file__).resolve().parents[2]
    for candidate in (package / "cloud_init", package.parent / "images" / "cloud-init"):
        if (candidate / TEMPLATE).is_file():
            return candidate
    raise FileNotFoundError(f"{TEMPLATE} is in neither {package / 'cloud_init'} nor images/cloud-init")


def _template() -> dict[str, Any]:
    """The settings of ``images/cloud-init/user-data.yaml`` every machine boots with (its ``ssh_keys`` left empty)."""
    loaded = yaml.safe_load((cloud_init_dir() / TEMPLATE).read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{TEMPLATE}: not a cloud-config mapping")
    return loaded
