"""Secrets kept out: whole runs from the command line on every provider (AWS on moto with a loopback instance, Azure
on the ARM fake with a loopback VM, a rented box behind a real sshd, the local box), with distinctive fake cloud
credentials in the orchestrator's environment, then a scan of everything the runs left or said for them and for
private-key material.

Scanned: every file under the Orchestrate home (``state.db`` as bytes and its WAL, ``known_hosts``, local machines'
directories, the key directory once torn down), every file that reached the machine (run directory, payload cache,
and the members of the bundle the run pushed), what the payload itself saw (a stand-in that prints its environment
and every file it can read into its log and puts the environment in its results), what the payload's parameter
check saw on this computer, and what the CLI said (``run``, ``status RUN``, ``status --json``, ``logs RUN``,
``report RUN --json``, ``down RUN``).

Needles: the fake credential values, any ``-----BEGIN … PRIVATE KEY-----`` block, and the base64 lines of the run's
own private keys (its client key; the host key its cloud-init carries to the machine; the inventory's login key).
The one place a private key may be is ``$ORCHESTRATE_HOME/keys/<run>/id_ed25519`` while the run is up: 0600 in a
0700 directory, and gone after teardown. The clouds' runs also check that the SSH rule they made is open to the
given address alone (the providers' own tests, ``tests/integration/test_aws_provider.py`` and
``test_azure_provider.py``, pin the exact rule; here it is the rule a run from the CLI makes, and that no rule is
open to the world).
"""

from __future__ import annotations

import base64
import io
import json
import re
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.clouds import aws
from orchestrator.providers.keys import KEY_FILE, key_dir
from orchestrator.remote.payload import Bundle, build_bundle
from tests.conftest import FAKE_MAIN_HEADER, cli_env
from tests.e2e.test_run_aws import instances as instances  # the fixtures
from tests.e2e.test_run_azure import vms as vms
from tests.fakes import aws as aws_fakes
from tests.fakes import azure as azure_fakes
from tests.fakes.arm import ArmFake
from tests.fakes.aws import IMAGE, REGION, user_data_text
from tests.integration.conftest import SSHServer
from tests.integration.conftest import client_key as client_key  # the fixture
from tests.integration.conftest import make_host_key as make_host_key  # the fixture
from tests.integration.conftest import sshd as sshd  # the fixture
from tests.integration.conftest import sshd_binary as sshd_binary  # the fixture

moto_server = aws_fakes.moto_server  # the fixture
arm = azure_fakes.arm  # the fixture

# Distinctive and fake: found anywhere, they leaked. moto and the loopback ARM endpoint accept any credentials.
FAKE_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIAORCHFAKE0SECRET7Q",
    "AWS_SECRET_ACCESS_KEY": "orchFakeAwsSecretKey0x7d2b9c4e1f5a8NOTREAL",
    "AWS_SESSION_TOKEN": "orchFakeAwsSessionToken0x3e6f9a1c7b2dNOTREAL",
    "AZURE_CLIENT_SECRET": "orchFakeAzureClientSecret0x5c8e2a9f4b1dNOTREAL",
    "AZURE_CLIENT_ID": "0fa7e5c1-0rch-fake-c11e-17d0000c1d01",
    "AZURE_TENANT_ID": "0fa7e5c1-0rch-fake-7e4a-17d0000e4a47",
}
PRIVATE_KEY_BLOCK = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----")
AZURE_SIZE = "Standard_NC4as_T4_v3"

# The stand-in payload. Its parameter check (run on this computer, before any machine) records the environment it
# was given in $SECRETS_PROBE_DIR; on the machine it prints its environment and every file it can read (its run
# directory and the payload it was sent, contents included) to its log, and puts the environment in its results.
PROBE_CHECK = '''
import json, os, sys
if "--check" in sys.argv and os.environ.get("SECRETS_PROBE_DIR"):
    with open(os.path.join(os.environ["SECRETS_PROBE_DIR"], "check-%d.json" % os.getpid()), "w") as probe:
        json.dump(dict(os.environ), probe)
'''
PROBE_BODY = '''
seen = {}
for root in [os.getcwd(), *os.environ.get("PYTHONPATH", "").split(os.pathsep)]:
    for directory, _, names in os.walk(root):
        for name in names:
            path = os.path.join(directory, name)
            with open(path, "rb") as f:
                seen[path] = f.read().decode(errors="replace")
environment = json.dumps(dict(os.environ), sort_keys=True)
print("ENVIRONMENT " + environment)
print("FILES " + json.dumps(sorted(seen)))
for path, text in sorted(seen.items()):
    print("FILE " + path)
    print(text)
measured = sample("train_throughput", "images_per_sec", 50.0)
measured["metadata"]["environment"] = environment
write([measured])
'''


@dataclass
class Needles:
    """What must not be found: the fake credentials and the run's private keys (label → bytes), and any private-key
    block."""

    values: dict[str, bytes] = field(default_factory=lambda: {
        f"${name}": value.encode() for name, value in FAKE_CREDENTIALS.items()})

    def add_key(self, label: str, pem: str) -> None:
        """Adds every base64 line of a private key's body (any one of them found is a leak)."""
        body = [line for line in pem.strip().splitlines()[1:-1] if len(line) >= 40]
        assert body, f"{label}: no key body in {pem[:40]!r}"
        for index, line in enumerate(body):
            self.values[f"{label} (line {index + 1})"] = line.encode()

    def found_in(self, data: bytes) -> list[str]:
        """The needles ``data`` holds."""
        hits = [label for label, value in self.values.items() if value in data]
        return hits + (["a PRIVATE KEY block"] if PRIVATE_KEY_BLOCK.search(data) else [])


def _scan_tree(root: Path, needles: Needles, *, allowed: frozenset[Path] = frozenset()) -> dict[str, list[str]]:
    """Every file under ``root`` (but ``allowed``) holding a needle, with what it holds; asserts there are files."""
    files = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink() and p not in allowed]
    assert files, f"nothing to scan under {root}"
    return {str(p): hits for p in files if (hits := needles.found_in(p.read_bytes()))}


def _scan_bundle(bundle: Bundle, needles: Needles) -> dict[str, list[str]]:
    """Every member of the payload bundle holding a needle (the archive's bytes too, compressed as sent)."""
    leaks = {"bundle.tar.gz": hits} if (hits := needles.found_in(bundle.archive)) else {}
    with tarfile.open(fileobj=io.BytesIO(bundle.archive), mode="r:gz") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            if extracted is not None and (hits := needles.found_in(extracted.read())):
                leaks[f"bundle:{member.name}"] = hits
    return leaks


@dataclass
class Cli:
    """`orchestrate` as a user runs it, with the fake credentials in its environment; keeps everything it said."""

    env: dict[str, str]
    said: dict[str, bytes] = field(default_factory=dict)

    def __call__(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[bytes]:
        """Runs ``orchestrate ARGS``, which must succeed."""
        result = subprocess.run([sys.executable, "-m", "orchestrator", *args], capture_output=True, timeout=timeout,
                                env=self.env)
        self.said[" ".join(args)] = result.stdout + b"\n" + result.stderr
        assert result.returncode == 0, (args, result.stdout.decode(), result.stderr.decode())
        return result

    def last_run(self) -> str:
        """The id of the newest run."""
        run_id: str = json.loads(self("status", "--json", "--last", "1").stdout)[0]["id"]
        return run_id

    def ask_everything(self, run_id: str) -> None:
        """What a user asks about a run: its timeline, its log, its report (kept in ``said``)."""
        self("status", run_id)
        logs = self("logs", run_id).stdout.decode()
        # The payload did print its environment (the scan of this log can find what reached the machine).
        assert "ENVIRONMENT {" in logs and '"KERAS_BACKEND": "tensorflow"' in logs, logs[-2000:]
        [row] = json.loads(self("report", run_id, "--json").stdout)
        assert row["train_images_per_sec"] == 50.0


@pytest.fixture
def probe(tmp_path: Path, fake_payload: Callable[[str], Path]) -> dict[str, Path]:
    """The stand-in payload and the directory its parameter check writes to."""
    checks = tmp_path / "check-probe"
    checks.mkdir()
    return {"payload": fake_payload(PROBE_CHECK + FAKE_MAIN_HEADER + PROBE_BODY), "checks": checks}


def _cli(home: Path, probe: dict[str, Path], **extra: str) -> Cli:
    return Cli(cli_env(home, **{**extra, **FAKE_CREDENTIALS, "ORCHESTRATE_PAYLOAD_DIR": str(probe["payload"]),
                                "SECRETS_PROBE_DIR": str(probe["checks"])}))


def _bundle(probe: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Bundle:
    """The bundle the runs pushed (built from the same payload directory, so byte for byte the same)."""
    monkeypatch.setenv("ORCHESTRATE_PAYLOAD_DIR", str(probe["payload"]))
    return build_bundle()


def _assert_kept_out(home: Path, box: Path, cli: Cli, probe: dict[str, Path], bundle: Bundle, needles: Needles,
                     *, allowed: frozenset[Path] = frozenset()) -> None:
    """Nothing the run left (home, machine, bundle) or said (CLI, payload, its check) holds a needle."""
    checks = sorted(probe["checks"].iterdir())
    assert checks, "the payload's parameter check never ran with the probe"
    assert (home / "state.db").is_file()  # the store is among what is scanned, as bytes (its WAL too, if any)
    assert (box / "payload" / bundle.content_hash[:16]).is_dir(), "the machine holds no payload of this bundle"
    leaks = {**_scan_tree(home, needles, allowed=allowed), **_scan_tree(box, needles),
             **_scan_tree(probe["checks"], needles), **_scan_bundle(bundle, needles),
             **{f"`orchestrate {args}`": hits for args, said in cli.said.items() if (hits := needles.found_in(said))}}
    assert leaks == {}


def _assert_private(home: Path, run_id: str) -> Path:
    """The run's private client key is 0600 in a 0700 directory; returns its path."""
    directory = key_dir(home, run_id)
    key = directory / KEY_FILE
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert PRIVATE_KEY_BLOCK.search(key.read_bytes())  # the scan would see it: the one place it may be
    return key


def _image(tmp_path: Path, **environment: str) -> tuple[Path, Path]:
    """A run file whose "image" runs the payload with this venv's Python in a test directory (the machine's files)."""
    box, spec = tmp_path / "box", tmp_path / "image.yaml"
    image = {**environment, "python": sys.executable, "workdir": str(box)}
    spec.write_text(f"machine:\n  environment: {json.dumps(image)}\n")
    return box, spec


# AWS --------------------------------------------------------------------------------------------------------------




@pytest.mark.slow
def test_an_aws_run_kept_then_downed_leaves_no_secret_and_opens_ssh_to_the_given_address_only(
    home: Path, tmp_path: Path, instances: dict[str, str], probe: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = _cli(home, probe, **instances)
    box, spec = _image(tmp_path)
    cli("run", "-f", str(spec), "--provider", "aws", "--instance-type", "g4dn.xlarge", "--image", IMAGE,
        "--allow-cidr", "127.0.0.1/32", "--quiet", "--keep", timeout=600)
    run_id = cli.last_run()
    cli.ask_everything(run_id)

    ec2 = aws.client("ec2", region=REGION)
    pages = ec2.describe_instances(Filters=[{"Name": "tag:orchestrate:run-id", "Values": [run_id]}])
    [instance] = [i for r in pages["Reservations"] for i in r["Instances"]]
    [group] = [g for g in ec2.describe_security_groups()["SecurityGroups"] if run_id in g["GroupName"]]
    ingress = [(p["IpProtocol"], p.get("FromPort"), p.get("ToPort"), sorted(r["CidrIp"] for r in p["IpRanges"]),
                p.get("Ipv6Ranges", []), p.get("UserIdGroupPairs", [])) for p in group["IpPermissions"]]
    assert ingress == [("tcp", 22, 22, ["127.0.0.1/32"], [], [])]
    assert not {"0.0.0.0/0", "::/0"} & {r.get("CidrIp") or r.get("CidrIpv6") for p in group["IpPermissions"]
                                        for r in [*p["IpRanges"], *p.get("Ipv6Ranges", [])]}

    key = _assert_private(home, run_id)
    needles = Needles()
    needles.add_key("the run's client key", key.read_text())
    user_data = user_data_text(ec2, instance["InstanceId"])
    needles.add_key("the run's host key", yaml.safe_load(user_data)["ssh_keys"]["ed25519_private"])
    assert "the run's host key (line 1)" in needles.found_in(user_data.encode())  # the scan sees it where it is
    assert (box / "runs" / run_id / "payload.log").is_file()  # kept: the machine's files are all there to scan
    bundle = _bundle(probe, monkeypatch)
    _assert_kept_out(home, box, cli, probe, bundle, needles, allowed=frozenset({key}))

    cli("down", run_id)
    assert not key_dir(home, run_id).exists()
    assert not (box / "runs" / run_id).exists()
    _assert_kept_out(home, box, cli, probe, bundle, needles)


# Azure ------------------------------------------------------------------------------------------------------------




def _watch_puts(arm: ArmFake, kind: str) -> list[dict[str, Any]]:
    """The bodies of the PUTs of ``kind`` the fake receives (a fault that never fires, watching)."""
    bodies: list[dict[str, Any]] = []

    def keep(body: dict[str, Any]) -> bool:
        bodies.append(body)
        return False

    arm.fail(kind, "NeverRaised", when=keep)
    return bodies


@pytest.mark.slow
def test_an_azure_run_leaves_no_secret_removes_its_key_and_opens_ssh_to_the_given_address_only(
    home: Path, tmp_path: Path, arm: ArmFake, vms: dict[str, str], probe: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    nsgs, vm_puts = _watch_puts(arm, "networkSecurityGroups"), _watch_puts(arm, "virtualMachines")
    client_keys: list[str] = []

    def read_client_key(body: dict[str, Any]) -> bool:
        # The client key exists while the VM is made: read it then (the run removes it at teardown).
        client_keys.append((key_dir(home, body["tags"]["orchestrate-run-id"]) / KEY_FILE).read_text())
        return False

    arm.fail("virtualMachines", "NeverRaised", when=read_client_key)
    cli = _cli(home, probe, **vms)
    box, spec = _image(tmp_path, prepare="image")
    cli("run", "-f", str(spec), "--provider", "azure", "--instance-type", AZURE_SIZE, "--allow-cidr",
        "127.0.0.1/32", "--quiet", timeout=600)
    run_id = cli.last_run()
    cli.ask_everything(run_id)
    assert arm.groups() == [] and not key_dir(home, run_id).exists()

    [nsg] = nsgs
    inbound = [r["properties"] for r in nsg["properties"]["securityRules"]
               if r["properties"]["direction"] == "Inbound" and r["properties"]["access"] == "Allow"]
    assert [(r["protocol"], r["destinationPortRange"], r["sourceAddressPrefix"]) for r in inbound] == [
        ("Tcp", "22", "127.0.0.1/32")]
    assert not {"*", "0.0.0.0/0", "::/0", "Internet", "Any"} & {
        r["properties"].get("sourceAddressPrefix") for r in nsg["properties"]["securityRules"]}

    [vm] = vm_puts
    custom_data = base64.b64decode(vm["properties"]["osProfile"]["customData"]).decode()
    needles = Needles()
    needles.add_key("the run's host key", yaml.safe_load(custom_data)["ssh_keys"]["ed25519_private"])
    assert "the run's host key (line 1)" in needles.found_in(custom_data.encode())  # the scan sees it where it is
    [client] = client_keys
    needles.add_key("the run's client key", client)
    _assert_kept_out(home, box, cli, probe, _bundle(probe, monkeypatch), needles)


# Rented and local -------------------------------------------------------------------------------------------------


def _inventory(tmp_path: Path, server: SSHServer) -> tuple[Path, Path]:
    """An inventory of one box behind ``server``; returns it and the box's workdir."""
    workdir = tmp_path / "box0-home" / "orchestrate"
    host = {"name": "box0", "host": server.host, "port": server.port, "user": server.user,
            "key_path": str(server.client_key_path), "host_key": server.host_key, "prepare": "image",
            "python": sys.executable, "workdir": str(workdir), "price": {"per_hour": 1.0}}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"hosts": [host]}))
    return path, workdir


@pytest.mark.slow
def test_a_rented_run_leaves_no_secret_nor_a_copy_of_the_inventory_s_login_key(
    home: Path, tmp_path: Path, sshd: Callable[..., SSHServer], probe: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    server = sshd()
    inventory, workdir = _inventory(tmp_path, server)
    cli = _cli(home, probe, ORCHESTRATE_INVENTORY=str(inventory))
    cli("run", "--provider", "rented", "--host", "box0", "--quiet")
    run_id = cli.last_run()
    cli.ask_everything(run_id)
    assert not (workdir / "runs" / run_id).exists() and not (home / "keys").exists()
    needles = Needles()
    needles.add_key("the inventory's login key", server.client_key_path.read_text())
    _assert_kept_out(home, workdir, cli, probe, _bundle(probe, monkeypatch), needles)


@pytest.mark.slow
def test_a_local_run_s_payload_gets_no_cloud_credential_and_leaves_no_secret(
    home: Path, probe: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = _cli(home, probe, SSH_AUTH_SOCK="/tmp/orchestrate-fake-agent.sock")
    cli("run", "--provider", "local", "--quiet")
    run_id = cli.last_run()
    cli.ask_everything(run_id)
    environment = json.loads(cli.said[f"logs {run_id}"].split(b"ENVIRONMENT ", 1)[1].split(b"\n", 1)[0])
    assert "SSH_AUTH_SOCK" not in environment and not any(name.startswith(("AWS_", "AZURE_")) for name in environment)
    assert environment["SECRETS_PROBE_DIR"] == str(probe["checks"])  # the rest of the environment still reaches it
    # The local box's work directory is the Orchestrate home itself: the payload cache is scanned with it.
    _assert_kept_out(home, home, cli, probe, _bundle(probe, monkeypatch), Needles())


# The bundle ---------------------------------------------------------------------------------------------------------


def test_a_payload_directory_holding_a_private_key_is_not_packed_and_the_error_names_the_file(
    probe: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from orchestrator.errors import OrchestrateError
    from tests.integration.conftest import write_key_pair

    stray = probe["payload"] / "data" / "id_ed25519"
    stray.parent.mkdir()
    write_key_pair(stray)
    with pytest.raises(OrchestrateError, match="holds a private key") as refused:
        _bundle(probe, monkeypatch)
    assert str(stray) in str(refused.value) and str(probe["payload"]) in (refused.value.hint or "")
    stray.unlink()  # its public half may travel: it is no secret
    with tarfile.open(fileobj=io.BytesIO(_bundle(probe, monkeypatch).archive), mode="r:gz") as tar:
        assert "keras_bench/data/id_ed25519.pub" in tar.getnames()
