"""The fleet templates (terraform/) and image templates (images/packer/): they parse, declare their variables, open
SSH to the allowed network only, pass checkov, and output what the inventory importer reads."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from collections.abc import Callable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_ssh_public_key
from hcl2.utils import SerializationOptions

from orchestrator.inventory.model import InventoryHost

REPO = Path(__file__).resolve().parents[2]
TERRAFORM = REPO / "terraform"
MODULES = {"aws": TERRAFORM / "aws", "azure": TERRAFORM / "azure"}
PACKER = REPO / "images" / "packer"
DATA = REPO / "tests" / "data"
OPEN_SSH_AWS = DATA / "iac" / "open_ssh"  # a security group with TCP 22 from 0.0.0.0/0
OPEN_SSH_AZURE = DATA / "iac" / "open_ssh_azure"  # three NSG rules that let the Internet reach port 22
RECORDED_OUTPUT = DATA / "terraform" / "output.json"  # `terraform output -json` of terraform/aws with 2 boxes
CHECKOV = REPO / ".venv-checkov" / "bin" / "checkov"
CHECKOV_TIMEOUT_S = 120

# Strings unquoted, blocks as plain lists of dicts: what FACTS.md settles on for python-hcl2 8.
HCL_OPTIONS = SerializationOptions(strip_string_quotes=True, explicit_blocks=False)
SSH_PORT = 22
OPEN_SOURCES = {"*", "internet", "any"}  # Azure's words for everyone; CIDRs of prefix 0 are caught apart
HOST_ATTRIBUTES = {"name", "host", "private_address", "port", "user", "host_key", "gpu_model", "gpu_count",
                   "price_per_hour"}
LOGIN_USERS = {"aws": "ubuntu", "azure": "azureuser"}
# What both modules must let the user set (Azure says location and size where AWS says region and instance_type).
COMMON_VARIABLES = {"spot", "ssh_public_key", "allowed_cidr", "instance_count", "tags", "name_prefix",
                    "price_per_hour", "gpu_model", "gpu_count"}
MODULE_VARIABLES = {"aws": COMMON_VARIABLES | {"region", "instance_type", "ami_id"},
                    "azure": COMMON_VARIABLES | {"location", "size", "max_bid_price"}}
SKIP_COMMENT = re.compile(r"checkov:skip=(?P<rest>\S*)(?P<tail>[^\n]*)")
SKIP_WITH_REASON = re.compile(r"checkov:skip=(CKV2?_[A-Z0-9]+_\d+):\s*\S+(\s+\S+){2,}")  # an id, then 3+ words


def _in_terraform_cache(path: Path) -> bool:
    return ".terraform" in path.parts  # modules and providers `terraform init` downloads are not ours


def terraform_files() -> list[Path]:
    return sorted(p for p in TERRAFORM.rglob("*.tf") if not _in_terraform_cache(p))


def packer_files() -> list[Path]:
    return sorted(PACKER.rglob("*.pkr.hcl")) if PACKER.is_dir() else []


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(REPO)) for p in paths]


@cache
def parse(path: Path) -> dict[str, Any]:
    """The file as python-hcl2 reads it (raises on a syntax error)."""
    with path.open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle, serialization_options=HCL_OPTIONS)
    return parsed


def parse_module(module: Path) -> dict[str, list[Any]]:
    """Every top-level block of a module's .tf files, by block type (``resource``, ``variable``, …)."""
    merged: dict[str, list[Any]] = {}
    for path in sorted(module.glob("*.tf")):
        for kind, blocks in parse(path).items():
            if isinstance(blocks, list):
                merged.setdefault(kind, []).extend(blocks)
    return merged


def resources(parsed: Mapping[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(type, name, body)`` of every resource block."""
    for block in parsed.get("resource", []):
        for resource_type, named in block.items():
            if not isinstance(named, dict):
                continue
            for name, body in named.items():
                if isinstance(body, dict):
                    yield resource_type, name, body


def named_blocks(parsed: Mapping[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    """The ``kind`` blocks with one label (``variable``, ``output``) by name."""
    found: dict[str, dict[str, Any]] = {}
    for block in parsed.get(kind, []):
        found.update({name: body for name, body in block.items() if isinstance(body, dict)})
    return found


# -- open SSH ----------------------------------------------------------------------------------------------------


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _is_open(source: Any) -> bool:
    """Whether a source names everyone: a CIDR of prefix 0, or Azure's ``*``, ``Internet``, ``Any``."""
    text = str(source).strip()
    if text.lower() in OPEN_SOURCES:
        return True
    try:
        return ipaddress.ip_network(text, strict=False).prefixlen == 0
    except ValueError:
        return False  # an expression such as ${var.allowed_cidr}: the variable's validation guards it


def _port(value: Any) -> int | None:
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def _aws_reaches_ssh(protocol: Any, from_port: Any, to_port: Any) -> bool:
    """Whether an AWS rule lets TCP 22 through; a port that is an expression counts as reaching it."""
    proto = str(protocol).strip().lower()
    if proto in {"-1", "all"}:
        return True
    if proto not in {"tcp", "6"}:
        return False
    low, high = _port(from_port), _port(to_port)
    return low is None or high is None or low <= SSH_PORT <= high


def _azure_reaches_ssh(port_range: Any) -> bool:
    text = str(port_range).strip()
    if text == "*":
        return True
    low, _, high = text.partition("-")
    first, last = _port(low), _port(high or low)
    return first is None or last is None or first <= SSH_PORT <= last


def _aws_rules(resource_type: str, body: dict[str, Any]) -> Iterator[tuple[str, bool, list[Any]]]:
    """``(where, reaches port 22, sources)`` of each ingress rule an AWS resource declares."""
    if resource_type == "aws_security_group":
        for index, rule in enumerate(_as_list(body.get("ingress"))):
            if isinstance(rule, dict):
                yield (f"ingress[{index}]",
                       _aws_reaches_ssh(rule.get("protocol"), rule.get("from_port"), rule.get("to_port")),
                       _as_list(rule.get("cidr_blocks")) + _as_list(rule.get("ipv6_cidr_blocks")))
    elif resource_type == "aws_security_group_rule" and str(body.get("type")) == "ingress":
        yield ("", _aws_reaches_ssh(body.get("protocol"), body.get("from_port"), body.get("to_port")),
               _as_list(body.get("cidr_blocks")) + _as_list(body.get("ipv6_cidr_blocks")))
    elif resource_type == "aws_vpc_security_group_ingress_rule":
        yield ("", _aws_reaches_ssh(body.get("ip_protocol"), body.get("from_port"), body.get("to_port")),
               _as_list(body.get("cidr_ipv4")) + _as_list(body.get("cidr_ipv6")))


def _azure_rules(resource_type: str, body: dict[str, Any]) -> Iterator[tuple[str, bool, list[Any]]]:
    """``(where, reaches port 22, sources)`` of each inbound allow rule an Azure resource declares."""
    if resource_type == "azurerm_network_security_group":
        rules = [(f"security_rule[{i}]", rule) for i, rule in enumerate(_as_list(body.get("security_rule")))]
    elif resource_type == "azurerm_network_security_rule":
        rules = [("", body)]
    else:
        return
    for where, rule in rules:
        if not isinstance(rule, dict):
            continue
        if str(rule.get("direction")).lower() != "inbound" or str(rule.get("access")).lower() != "allow":
            continue
        if str(rule.get("protocol")).lower() not in {"tcp", "*", "any"}:
            continue
        ports = _as_list(rule.get("destination_port_range")) + _as_list(rule.get("destination_port_ranges"))
        sources = _as_list(rule.get("source_address_prefix")) + _as_list(rule.get("source_address_prefixes"))
        yield where, any(_azure_reaches_ssh(port) for port in ports), sources


def open_ssh_rules(parsed: Mapping[str, Any]) -> list[str]:
    """The rules of a parsed Terraform file that let everyone reach TCP port 22.

    Everyone is 0.0.0.0/0, ::/0 (any CIDR of prefix 0), or Azure's ``*``, ``Internet`` and ``Any``. Covered: the
    ingress blocks of ``aws_security_group``, ``aws_security_group_rule``, ``aws_vpc_security_group_ingress_rule``,
    the inbound allow rules of ``azurerm_network_security_group`` and ``azurerm_network_security_rule``.

    Returns:
        One line per offending rule, e.g. ``"aws_security_group.web ingress[0]: port 22 from 0.0.0.0/0"``.
    """
    found = []
    for resource_type, name, body in resources(parsed):
        for where, reaches_ssh, sources in [*_aws_rules(resource_type, body), *_azure_rules(resource_type, body)]:
            everyone = [str(source) for source in sources if _is_open(source)]
            if reaches_ssh and everyone:
                found.append(f"{resource_type}.{name}{' ' + where if where else ''}: port 22 from "
                             + ", ".join(everyone))
    return found


def bad_skip_comments(text: str) -> list[str]:
    """The ``checkov:skip=`` comments of a file that do not name a check id and give a reason after the colon."""
    return [match.group(0) for match in SKIP_COMMENT.finditer(text) if not SKIP_WITH_REASON.match(match.group(0))]


# -- parsing and variables ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", terraform_files() + packer_files(), ids=_ids(terraform_files() + packer_files()))
def test_template_parses_with_python_hcl2(path: Path) -> None:
    assert isinstance(parse(path), dict)


@pytest.mark.parametrize("path", terraform_files() + packer_files(), ids=_ids(terraform_files() + packer_files()))
def test_every_variable_has_a_description_and_a_type(path: Path) -> None:
    lacking = [name for name, body in named_blocks(parse(path), "variable").items()
               if not str(body.get("description", "")).strip() or "type" not in body]
    assert lacking == [], f"{path.relative_to(REPO)}: variables without a description or a type: {lacking}"


@pytest.mark.parametrize("cloud", sorted(MODULES))
def test_module_lets_the_user_set_what_a_fleet_needs(cloud: str) -> None:
    declared = set(named_blocks(parse_module(MODULES[cloud]), "variable"))
    assert MODULE_VARIABLES[cloud] - declared == set()


@pytest.mark.parametrize("cloud", sorted(MODULES))
def test_allowed_cidr_refuses_the_whole_internet(cloud: str) -> None:
    variable = named_blocks(parse_module(MODULES[cloud]), "variable")["allowed_cidr"]
    conditions = " ".join(str(rule.get("condition")) for rule in _as_list(variable.get("validation")))
    assert "0.0.0.0/0" in conditions and "::/0" in conditions
    assert "default" not in variable  # the user must say who may connect


# -- open SSH ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", terraform_files(), ids=_ids(terraform_files()))
def test_no_rule_opens_ssh_to_everyone(path: Path) -> None:
    assert open_ssh_rules(parse(path)) == []


def test_open_ssh_check_flags_a_security_group_open_to_the_internet() -> None:
    assert open_ssh_rules(parse(OPEN_SSH_AWS / "main.tf")) == [
        "aws_security_group.open_ssh ingress[0]: port 22 from 0.0.0.0/0"]


def test_open_ssh_check_flags_each_azure_rule_open_to_the_internet() -> None:
    assert open_ssh_rules(parse(OPEN_SSH_AZURE / "main.tf")) == [
        "azurerm_network_security_group.open_ssh security_rule[0]: port 22 from Internet",
        "azurerm_network_security_rule.any_port_from_anywhere: port 22 from *",
        "azurerm_network_security_rule.port_range_from_any: port 22 from 0.0.0.0/0",
    ]


@pytest.mark.parametrize("cloud", sorted(MODULES))
def test_only_inbound_allow_rule_is_ssh_from_the_allowed_cidr(cloud: str) -> None:
    parsed = parse_module(MODULES[cloud])
    rules = [(where, reaches, sources) for resource_type, _, body in resources(parsed)
             for where, reaches, sources in [*_aws_rules(resource_type, body), *_azure_rules(resource_type, body)]]
    from_outside = [sources for _, _, sources in rules if sources]  # the intra-group rule names no address
    assert from_outside == [["${var.allowed_cidr}"]] or from_outside == [[
        "${local.ssh_ipv6 ? null : var.allowed_cidr}", "${local.ssh_ipv6 ? var.allowed_cidr : null}"]]
    assert all(reaches for _, reaches, sources in rules if sources)


# -- what the boxes boot with ------------------------------------------------------------------------------------


def _boxes(cloud: str) -> dict[str, Any]:
    kind = {"aws": "aws_instance", "azure": "azurerm_linux_virtual_machine"}[cloud]
    [box] = [body for resource_type, _, body in resources(parse_module(MODULES[cloud])) if resource_type == kind]
    return box


@pytest.mark.parametrize("cloud", sorted(MODULES))
def test_host_keys_are_ed25519_and_installed_through_cloud_init(cloud: str) -> None:
    keys = [body for resource_type, _, body in resources(parse_module(MODULES[cloud]))
            if resource_type == "tls_private_key"]
    assert [key["algorithm"] for key in keys] == ["ED25519"]
    box = _boxes(cloud)
    cloud_init = str(box.get("user_data") or box.get("custom_data"))
    assert "#cloud-config" in cloud_init
    assert "ed25519_private = tls_private_key.host[count.index].private_key_openssh" in cloud_init
    # The template that deletes the image's own host keys and generates none, as every Orchestrate machine has.
    locals_ = {k: v for block in parse_module(MODULES[cloud]).get("locals", []) for k, v in block.items()}
    assert "images/cloud-init/user-data.yaml" in str(locals_["cloud_config"])


def test_aws_boxes_require_imdsv2_and_encrypt_their_root_volume() -> None:
    box = _boxes("aws")
    assert [options["http_tokens"] for options in box["metadata_options"]] == ["required"]
    assert [volume["encrypted"] for volume in box["root_block_device"]] == [True]


def test_azure_boxes_log_in_by_key_only() -> None:
    box = _boxes("azure")
    assert box["disable_password_authentication"] is True
    assert "admin_password" not in box
    assert [key["public_key"] for key in box["admin_ssh_key"]] == ["${var.ssh_public_key}"]


# -- the output the importer reads -------------------------------------------------------------------------------


def _output_attributes(cloud: str) -> set[str]:
    value = str(named_blocks(parse_module(MODULES[cloud]), "output")["hosts"]["value"])
    body = value[value.index(": {") + 3:value.rindex("}")]
    return set(re.findall(r"(?:^|,)\s*(\w+)\s*=", body))


def _recorded() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(RECORDED_OUTPUT.read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("cloud", sorted(MODULES))
def test_module_outputs_the_hosts_the_importer_reads(cloud: str) -> None:
    assert set(named_blocks(parse_module(MODULES[cloud]), "output")) == {"hosts"}
    assert _output_attributes(cloud) == HOST_ATTRIBUTES


@pytest.mark.parametrize("cloud", sorted(MODULES))
def test_module_outputs_its_image_login_user(cloud: str) -> None:
    locals_ = {k: v for block in parse_module(MODULES[cloud]).get("locals", []) for k, v in block.items()}
    assert locals_["login_user"] == LOGIN_USERS[cloud]


def test_recorded_output_has_terraform_output_json_shape() -> None:
    recorded = _recorded()
    assert list(recorded) == ["hosts"]
    hosts = recorded["hosts"]
    assert set(hosts) == {"sensitive", "type", "value"} and hosts["sensitive"] is False
    kind, (element, attribute_types) = hosts["type"]
    assert (kind, element) == ("list", "object")
    assert set(attribute_types) == HOST_ATTRIBUTES
    assert len(hosts["value"]) == 2
    assert all(set(host) == HOST_ATTRIBUTES for host in hosts["value"])


def test_recorded_host_keys_are_ed25519_public_keys() -> None:
    for host in _recorded()["hosts"]["value"]:
        assert isinstance(load_ssh_public_key(host["host_key"].encode()), Ed25519PublicKey)


def test_recorded_hosts_fit_the_inventory() -> None:
    for host in _recorded()["hosts"]["value"]:
        entry = InventoryHost.model_validate({
            "name": host["name"], "host": host["host"], "port": host["port"], "user": host["user"],
            "key_path": "~/.ssh/id_ed25519", "host_key": host["host_key"],
            "private_address": host["private_address"],
            "gpu": {"model": host["gpu_model"], "count": host["gpu_count"]},
            "price": {"per_hour": host["price_per_hour"]},
        })
        assert entry.access().host_key == host["host_key"]


# -- checkov skip comments ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", terraform_files(), ids=_ids(terraform_files()))
def test_every_checkov_skip_names_a_check_and_a_reason(path: Path) -> None:
    assert bad_skip_comments(path.read_text(encoding="utf-8")) == []


@pytest.mark.parametrize("comment", [
    "#checkov:skip=CKV_AWS_88",
    "#checkov:skip=CKV_AWS_88:",
    "#checkov:skip=CKV_AWS_88:ok",
    "#checkov:skip=because we want to",
])
def test_skip_comment_check_flags_a_skip_without_id_or_reason(comment: str) -> None:
    assert bad_skip_comments(f"resource \"x\" \"y\" {{\n  {comment}\n}}\n") == [comment.lstrip("#")]


# -- checkov -----------------------------------------------------------------------------------------------------

needs_checkov = pytest.mark.skipif(not CHECKOV.exists(), reason=f"checkov is not installed at {CHECKOV} "
                                   "(`make test` makes that venv; or: python3 -m venv .venv-checkov && "
                                   ".venv-checkov/bin/pip install checkov==3.3.30)")


@pytest.fixture(scope="module")
def checkov() -> Callable[[Path], list[dict[str, Any]]]:
    """Runs checkov on a directory once, however many tests ask; returns its reports (one per framework)."""
    reports: dict[Path, list[dict[str, Any]]] = {}

    def run(directory: Path) -> list[dict[str, Any]]:
        if directory not in reports:
            done = subprocess.run(
                [str(CHECKOV), "-d", str(directory), "--skip-download", "--compact", "-o", "json", "--quiet"],
                capture_output=True, text=True, timeout=CHECKOV_TIMEOUT_S, cwd=REPO, check=False)
            assert done.returncode in (0, 1), f"checkov failed on {directory}: {done.stderr[-2000:]}"
            loaded = json.loads(done.stdout)
            reports[directory] = loaded if isinstance(loaded, list) else [loaded]
        return reports[directory]

    return run


def _failed(reports: list[dict[str, Any]]) -> list[str]:
    return [f"{check['check_id']} {check['resource']} ({check['check_name']})"
            for report in reports for check in report.get("results", {}).get("failed_checks", [])]


@needs_checkov
@pytest.mark.parametrize("cloud", sorted(MODULES))
def test_checkov_finds_nothing_wrong_with_the_module(
        cloud: str, checkov: Callable[[Path], list[dict[str, Any]]]) -> None:
    reports = checkov(MODULES[cloud])
    terraform = [report for report in reports if report.get("check_type") == "terraform"]
    assert terraform and terraform[0]["summary"]["resource_count"] > 0, "checkov scanned no Terraform resource"
    assert all(report.get("summary", {}).get("parsing_errors", 0) == 0 for report in reports)
    assert _failed(reports) == []


@needs_checkov
def test_checkov_fails_ssh_open_to_the_internet(checkov: Callable[[Path], list[dict[str, Any]]]) -> None:
    assert any(line.startswith("CKV_AWS_24 aws_security_group.open_ssh") for line in _failed(checkov(OPEN_SSH_AWS)))


TEMPLATE = REPO / "images" / "cloud-init" / "user-data.yaml"


@pytest.mark.parametrize("cloud", sorted(MODULES))
def test_each_module_fills_the_cloud_init_template_s_variables_as_the_providers_do(cloud: str) -> None:
    """The modules read images/cloud-init/user-data.yaml through templatefile() with every variable it uses, so no
    `${…}` reaches a box (file() would leave them literal)."""
    main = (MODULES[cloud] / "main.tf").read_text()
    assert "file(\"${path.module}/../../images/cloud-init/user-data.yaml\")" not in main
    call = re.search(r"templatefile\(\"\$\{path\.module\}/\.\./\.\./images/cloud-init/user-data\.yaml\",\s*\{(.*?)\}\)",
                     main, re.DOTALL)
    assert call is not None, "the template is not read through templatefile()"
    given = set(re.findall(r"^\s*(\w+)\s*=", call.group(1), re.MULTILINE))
    used = set(re.findall(r"\$\{(\w+)\}", TEMPLATE.read_text()))
    assert used and used <= given, f"{sorted(used - given)} are left unfilled"
