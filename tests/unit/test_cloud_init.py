"""The user-data every cloud machine boots with, checked against cloud-init's own JSON schema.

The schema (draft-04) comes from Debian's cloud-init package: ``images/cloud-init/fetch-schema.sh .cache/cloud-init``
(``make test`` runs it), or a copy named by ``$ORCHESTRATE_CLOUD_INIT_SCHEMA``.
"""

from __future__ import annotations

import email
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator

from orchestrator.errors import SpecError
from orchestrator.providers.aws.instance import LOGIN_USER as AWS_USER
from orchestrator.providers.azure.vm import LOGIN_USER as AZURE_USER
from orchestrator.providers.cloudinit import user_data
from orchestrator.providers.keys import HostKey, host_key

REPO = Path(__file__).resolve().parents[2]
SCHEMA_ENV = "ORCHESTRATE_CLOUD_INIT_SCHEMA"
GPU_LOG = "/var/log/orchestrate-gpu.txt"
# What a secret looks like in a document: a PEM/OpenSSH private block, a password or token key, a long base64 run.
_SECRET_KEY = re.compile(r"passw|secret|token|credential|private", re.IGNORECASE)
_PRIVATE_BLOCK = "PRIVATE KEY-----"
_LONG_BASE64 = re.compile(r"[A-Za-z0-9+/]{40,}")


@pytest.fixture(scope="module")
def validator() -> Draft4Validator:
    path = Path(os.environ.get(SCHEMA_ENV) or REPO / ".cache" / "cloud-init" / "schema-cloud-config-v1.json")
    if not path.is_file():
        pytest.skip(f"cloud-init's schema is not at {path}: run images/cloud-init/fetch-schema.sh "
                    f"{path.parent} (make test does), or set ${SCHEMA_ENV}")
    schema = json.loads(path.read_text())
    Draft4Validator.check_schema(schema)
    return Draft4Validator(schema)


@pytest.fixture(scope="module")
def key() -> HostKey:
    return host_key()


def _errors(validator: Draft4Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in validator.iter_errors(document)]


def _cloud_config(text: str) -> dict[str, Any]:
    assert text.startswith("#cloud-config\n"), text[:80]
    document = yaml.safe_load(text)
    assert isinstance(document, dict)
    return document


def _strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every (path, string) of a document, keys included, so a secret hidden anywhere is seen."""
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in [(f"{path}/({k})", str(k)), *_strings(v, f"{path}/{k}")]]
    if isinstance(node, list):
        return [pair for i, item in enumerate(node) for pair in _strings(item, f"{path}/{i}")]
    return []


@pytest.mark.parametrize("user", [AWS_USER, AZURE_USER])
def test_the_user_data_each_provider_renders_is_valid_cloud_config(
    validator: Draft4Validator, key: HostKey, user: str
) -> None:
    document = _cloud_config(user_data(key, None, user=user, workdir="orchestrate"))
    assert _errors(validator, document) == []


def test_a_given_cloud_config_merged_into_ours_is_still_valid_and_keeps_both_sets_of_commands(
    validator: Draft4Validator, key: HostKey
) -> None:
    given = "#cloud-config\npackages: [htop]\nruncmd:\n  - echo theirs > /tmp/theirs\nssh_pwauth: true\n"
    document = _cloud_config(user_data(key, given, user=AZURE_USER))
    assert _errors(validator, document) == []
    assert document["packages"] == ["htop"]
    assert document["runcmd"][-1] == "echo theirs > /tmp/theirs"  # theirs after ours
    assert any("/home/azureuser/orchestrate" in command for command in document["runcmd"][0])
    assert document["ssh_pwauth"] is False  # ours wins on the settings that keep the machine ours


def test_a_given_script_goes_beside_our_valid_cloud_config_in_a_multipart_document(
    validator: Draft4Validator, key: HostKey
) -> None:
    text = user_data(key, "#!/bin/sh\necho hello\n", user=AWS_USER)
    parts = {part.get_content_type(): part.get_payload(decode=True).decode()
             for part in email.message_from_string(text).walk() if not part.is_multipart()}
    assert set(parts) == {"text/cloud-config", "text/x-shellscript"}
    assert parts["text/x-shellscript"] == "#!/bin/sh\necho hello\n"
    assert _errors(validator, _cloud_config(parts["text/cloud-config"])) == []


@pytest.mark.parametrize("wrong", [{"ssh_deletekeys": "yes"}, {"runcmd": 5}, {"ssh_genkeytypes": []},
                                   {"ssh_keys": {"ed25519_private": 1}}])
def test_the_schema_rejects_a_document_with_a_wrong_value(
    validator: Draft4Validator, key: HostKey, wrong: dict[str, Any]
) -> None:
    document = {**_cloud_config(user_data(key, None)), **wrong}
    [field] = wrong
    assert any(error.startswith(field) for error in _errors(validator, document)), _errors(validator, document)


@pytest.mark.parametrize("user", [AWS_USER, AZURE_USER])
def test_the_only_secret_is_the_private_half_of_the_run_s_own_host_key(key: HostKey, user: str) -> None:
    document = _cloud_config(user_data(key, None, user=user))
    assert document["ssh_keys"] == {"ed25519_private": key.private, "ed25519_public": key.public}
    assert document["ssh_deletekeys"] is True and document["ssh_pwauth"] is False
    assert document["ssh_genkeytypes"] == ["ed25519"]  # unused while ssh_keys is given; the schema wants one
    looks_secret = [path for path, value in _strings(document)
                    if _PRIVATE_BLOCK in value or _LONG_BASE64.search(value) or _SECRET_KEY.search(value)]
    # The private half and its key's name; the public half's base64 body, which is no secret.
    assert looks_secret == ["/ssh_keys/(ed25519_private)", "/ssh_keys/ed25519_private", "/ssh_keys/ed25519_public"]
    assert user_data(key, None, user=user).count(_PRIVATE_BLOCK) == 2  # BEGIN and END of one key


@pytest.mark.parametrize(("user", "workdir", "directory"), [
    (AWS_USER, "orchestrate", "/home/ubuntu/orchestrate"),
    (AZURE_USER, "orchestrate", "/home/azureuser/orchestrate"),
    (AWS_USER, "/data/orchestrate", "/data/orchestrate"),
])
def test_the_payload_directory_is_made_for_the_login_user_and_the_gpu_check_is_recorded(
    key: HostKey, user: str, workdir: str, directory: str
) -> None:
    commands = _cloud_config(user_data(key, None, user=user, workdir=workdir))["runcmd"]
    assert ["install", "-d", "-m", "0700", "-o", user, "-g", user, directory] in commands
    [gpu_check] = [c for c in commands if GPU_LOG in " ".join(c)]
    assert "nvidia-smi -L" in gpu_check[-1] and "no NVIDIA driver" in gpu_check[-1]


@pytest.mark.parametrize(("user", "workdir", "field"), [
    ("ubuntu; rm -rf /", "orchestrate", "user"), ("Root", "orchestrate", "user"),
    ("ubuntu", "../../etc", "workdir"), ("ubuntu", "a b", "workdir"), ("ubuntu", "x\n- evil", "workdir"),
])
def test_a_login_or_workdir_that_is_not_a_plain_name_is_refused(
    key: HostKey, user: str, workdir: str, field: str
) -> None:
    with pytest.raises(SpecError, match=f"invalid {field}"):
        user_data(key, None, user=user, workdir=workdir)


def test_the_defaults_keep_existing_callers_on_the_ubuntu_login() -> None:
    document = _cloud_config(user_data(host_key(), None))
    assert ["install", "-d", "-m", "0700", "-o", "ubuntu", "-g", "ubuntu", "/home/ubuntu/orchestrate"] \
        in document["runcmd"]
