"""The prepare step: make a machine's Python ready for the payload (``image``, ``venv`` or ``none``), then check it."""

from __future__ import annotations

import hashlib
import shlex

from orchestrator.errors import EnvironmentNotReady
from orchestrator.remote.payload import payload_requirements
from orchestrator.remote.transport import Transport, check

# Python run on a machine (prepare's probe, `inventory check`): its NVIDIA GPUs as "2 x NVIDIA H200", or "".
GPU_LISTING = """
import shutil, subprocess
def gpu_names():
    if not shutil.which("nvidia-smi"):
        return ""
    out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                         text=True, timeout=30).stdout
    names = [line.strip() for line in out.splitlines() if line.strip()]
    return ", ".join(f"{names.count(n)} x {n}" for n in sorted(set(names)))
"""

# Run by `inventory check` with a box's Python: versions, whether Keras really imports, and the GPUs, as JSON.
CHECK_PROBE = GPU_LISTING + """
import json, platform
facts = {"python": platform.python_version(), "keras": None, "backend": None, "gpus": gpu_names()}
try:
    import keras
    facts["keras"] = keras.__version__
    facts["backend"] = keras.backend.backend()
except Exception as error:
    facts["problem"] = "keras does not import: " + str(error).splitlines()[0][:200]
print(json.dumps(facts))
"""


def prepare_machine(
    transport: Transport,
    *,
    machine_id: str,
    address: str,
    mode: str,
    python: str,
    backend_module: str,
    workdir_base: str,
    requirements: str | None,
) -> tuple[str, str]:
    """Readies the payload's interpreter on a machine.

    Args:
        mode: ``image`` (Keras is there), ``venv`` (create one, cached by requirements hash) or ``none``.
        python: the interpreter that has Keras (image) or that creates the venv (venv).
        backend_module: the Keras backend's module that must be importable (``tensorflow``, ``jax``, ``torch``).
        workdir_base: the machine's Orchestrate directory (venvs live in ``<base>/venvs``).
        requirements: newline-separated requirements for the venv; None means the payload extra's list.

    Returns:
        The interpreter the payload will run with, and a detail line for the event.

    Raises:
        EnvironmentNotReady: Keras or the backend is missing; the message names what.
    """
    detail = ""
    if mode == "venv":
        python, detail = _venv(transport, machine_id, python, workdir_base, requirements)
        detail += "; "
    if mode == "none":
        return python, f"none: python {python}, not checked"
    modules = ["keras", backend_module]
    # find_spec, not import: TensorFlow's import costs seconds, and the payload imports it anyway.
    probe = GPU_LISTING + (
        "import importlib.util as u, sys\n"
        f"missing = [m for m in {modules!r} if u.find_spec(m) is None]\n"
        "print(' '.join(missing) or sys.version.split()[0])\n"
        "print(gpu_names() or 'no GPU')\n"
        "sys.exit(1 if missing else 0)\n"
    )
    result = transport.run(f"{shlex.quote(python)} -c {shlex.quote(probe)}", timeout=120.0)
    answer, _, gpus = result.stdout.decode(errors="replace").strip().partition("\n")
    if result.exit_code != 0:
        missing = answer or result.stderr.decode(errors="replace").strip()[-200:]
        raise EnvironmentNotReady(
            f"{detail}the payload's Python ({python}) on {address} lacks: {missing}",
            hint=_venv_hint(requirements) if mode == "venv" else
            "install the payload extra there (pip install 'orchestrate[payload]') or use prepare: venv",
        )
    return python, detail + f"python {answer} with {', '.join(modules)}; GPUs: {gpus.strip() or 'no GPU'}"


def _venv_hint(requirements: str | None) -> str:
    """What to change when the venv that prepare made lacks Keras or the backend."""
    listed = [r for r in (requirements or "").split("\n") if r.strip()]
    if requirements is None:
        return "prepare: venv installed the payload extra, which lacks it: list requirements for the box"
    if not listed:
        return ("prepare: venv installed requirements: [] (nothing): list keras and the backend there, "
                "or leave requirements out to install the payload extra")
    return (f"prepare: venv installed requirements: {', '.join(listed)}: add what is missing, "
            "or leave requirements out to install the payload extra")


def _venv(
    transport: Transport, machine_id: str, python: str, workdir_base: str, requirements: str | None
) -> tuple[str, str]:
    wanted = requirements.split("\n") if requirements is not None else payload_requirements()
    wanted = [r for r in wanted if r.strip()]
    digest = hashlib.sha256("\n".join([python, *sorted(wanted)]).encode()).hexdigest()[:16]
    base = shlex.quote(workdir_base)
    venv = f"{base}/venvs/{digest}"
    install = f" && {venv}/bin/python -m pip install -q {shlex.join(wanted)}" if wanted else ""
    command = (
        f"mkdir -p {base}/venvs && if [ -f {venv}/.ready ]; then echo reused; else rm -rf {venv} && "
        f"{shlex.quote(python)} -m venv {venv}{install} && touch {venv}/.ready && echo created; fi"
        f" && cd {venv} && pwd"
    )
    out = check(transport, command, what=f"preparing a venv on {machine_id}", timeout=1800.0)
    action, _, path = out.decode().strip().partition("\n")
    return f"{path.strip()}/bin/python", f"venv {digest} {action}"
