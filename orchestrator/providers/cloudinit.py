"""The user-data every cloud machine boots with: ``images/cloud-init/user-data.yaml`` plus the run's host key, its
login user and the payload's directory, rendered by one function for every cloud provider."""

from __future__ import annotations

import re
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path
from string import Template
from typing import Any

import yaml

from orchestrator.errors import SpecError
from orchestrator.providers.keys import HostKey

TEMPLATE = "user-data.yaml"  # in images/cloud-init/: what every machine's cloud-config starts from
DEFAULT_USER = "ubuntu"  # the Ubuntu cloud images' login (AWS); Azure passes its admin user
DEFAULT_WORKDIR = "orchestrate"  # the payload's base directory, relative to the login's home (Environment.workdir)
# Lists a given #cloud-config extends rather than replaces: its commands run after ours, its files beside ours.
_APPENDED = frozenset({"bootcmd", "runcmd", "write_files", "packages"})
_LOGIN = re.compile(r"[a-z_][a-z0-9_-]{0,31}")
_PATH = re.compile(r"[\w.@+/-]{1,1000}")


def user_data(host: HostKey, given: str | None, *, user: str = DEFAULT_USER, workdir: str = DEFAULT_WORKDIR) -> str:
    """Returns the instance's user-data: cloud-init installs the run's host key, makes the payload's directory for
    the login user and records what the NVIDIA driver sees, then does whatever ``given`` asks.

    Args:
        host: the run's host key; its private half is the only secret the document holds.
        given: the user's own user-data, or None. A ``#cloud-config`` document is merged (ours wins on every key
            but the command and file lists, which run ours first, then its); any other user-data (a shell script,
            a multipart document) is sent beside ours as a MIME multipart document, which cloud-init reads.
        user: the login user the provider creates (``ubuntu`` on AWS, ``azureuser`` on Azure).
        workdir: the payload's base directory on the machine, relative to the login's home unless absolute.

    Raises:
        SpecError: ``given`` is a #cloud-config that is not a mapping, or ``user`` / ``workdir`` is not a plain
            login name / path.
    """
    ours: dict[str, Any] = {**_template(user, workdir),
                            "ssh_keys": {"ed25519_private": host.private, "ed25519_public": host.public}}
    if given is None or given.lstrip().startswith("#cloud-config"):
        document: dict[str, Any] = {}
        if given is not None:
            loaded = yaml.safe_load(given)
            if loaded is not None and not isinstance(loaded, dict):
                raise SpecError("user_data", given[:80], "a #cloud-config mapping, a script or a MIME document")
            document = dict(loaded or {})
        for key, value in ours.items():
            theirs = document.get(key)
            document[key] = [*value, *theirs] if key in _APPENDED and isinstance(theirs, list) else value
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
    package = Path(__file__).resolve().parents[1]
    for candidate in (package / "cloud_init", package.parent / "images" / "cloud-init"):
        if (candidate / TEMPLATE).is_file():
            return candidate
    raise FileNotFoundError(f"{TEMPLATE} is in neither {package / 'cloud_init'} nor images/cloud-init")


def payload_directory(user: str, workdir: str) -> str:
    """The absolute path of the payload's directory: ``workdir`` under ``/home/<user>`` unless it is absolute."""
    if not _LOGIN.fullmatch(user):
        raise SpecError("user", user, "a Linux login name (lower-case letters, digits, _ and -, at most 32)")
    if not _PATH.fullmatch(workdir) or ".." in workdir.split("/"):
        raise SpecError("workdir", workdir, "a path of letters, digits and ._@+/- without '..'")
    return workdir if workdir.startswith("/") else f"/home/{user}/{workdir}"


def _template(user: str, workdir: str) -> dict[str, Any]:
    """The settings of ``images/cloud-init/user-data.yaml`` for this login and workdir (its ``ssh_keys`` empty).

    The placeholders are filled in the parsed strings, never in the YAML text, so no value can add a key."""
    loaded = yaml.safe_load((cloud_init_dir() / TEMPLATE).read_text())
    if not isinstance(loaded, dict):
        raise ValueError(f"{TEMPLATE}: not a cloud-config mapping")
    values = {"user": user, "payload_dir": payload_directory(user, workdir)}

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            return Template(node).substitute(values)
        if isinstance(node, list):
            return [fill(item) for item in node]
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        return node

    filled: dict[str, Any] = fill(loaded)
    return filled
