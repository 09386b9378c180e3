"""`make bench`: what a prepared image saves on every run — SSH reachable → payload started, `prepare: image` against
`prepare: venv` on a fresh box.

A real `orchestrate run --provider rented` on a loopback sshd box (as in bench_remote.py), once with the environment
already there (`prepare: image`: the box's Python has Keras) and once on a box that has only Python
(`prepare: venv`: a venv is made and the payload's requirements installed from PyPI, pip's cache off, as on a new
cloud machine). Seconds from the end of the connect step to the payload's process start (the run's events).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_remote import _run, _servers, _started_after_reachable  # noqa: E402
from benchlib import machine_line, median_range, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BEGIN = "<!-- bench:prepare:begin -->"
END = "<!-- bench:prepare:end -->"


def _payload_requirements() -> list[str]:
    """The payload extra's requirements, as prepare: venv installs them by default."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return list(extras["payload"])


def one(root: Path, mode: str) -> float:
    """One run on a fresh box in ``mode``; seconds from SSH reachable to payload started."""
    [server] = _servers(root, 1)
    try:
        host = {"name": "box0", "host": server.host, "port": server.port, "user": server.user,
                "key_path": str(server.client_key_path), "host_key": server.host_key, "python": sys.executable,
                "workdir": str(root / "box0"), "prepare": mode}
        if mode == "venv":
            # pip's cache off: a new cloud machine has none (pip reads options among its arguments too).
            host["requirements"] = ["--no-cache-dir", *_payload_requirements()]
        (root / "inventory.yaml").write_text(yaml.safe_dump({"hosts": [host]}))
        home = root / "home"
        env = {**os.environ, "ORCHESTRATE_HOME": str(home), "ORCHESTRATE_INVENTORY": str(root / "inventory.yaml")}
        _run(env, 1, "--set", "epochs=1")
        return _started_after_reachable(home)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=REPO / "docs" / "performance.md")
    parser.add_argument("--repeats", type=int, default=3, help="runs with prepare: image")
    parser.add_argument("--venv-repeats", type=int, default=1, help="runs with prepare: venv (minutes each)")
    args = parser.parse_args()
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    figures: dict[str, list[float]] = {"image": [], "venv": []}
    for mode, repeats in (("image", args.repeats), ("venv", args.venv_repeats)):
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                figures[mode].append(one(Path(tmp), mode))
    image, venv = figures["image"], figures["venv"]
    saved = sorted(venv)[len(venv) // 2] - sorted(image)[len(image) // 2]
    section = "\n".join([
        BEGIN,
        "## What a prepared image saves: SSH reachable → payload started (issue 14)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {machine_line()}: `orchestrate run --provider rented --set epochs=1`"
        " on a fresh loopback sshd box; seconds from the end of the connect step to the payload's process start; "
        "median (min, max).",
        "",
        "Command: `make bench` (runs `python benchmarks/bench_prepare.py --output docs/performance.md`).",
        "",
        "| prepare | runs | SSH reachable → payload started, s |",
        "|---|---|---|",
        f"| image (Keras already on the box: a Packer image, `images/packer/`) | {len(image)} | "
        f"{median_range(image)} |",
        f"| venv (a new venv, the payload's requirements from PyPI, pip cache off) | {len(venv)} | "
        f"{median_range(venv)} |",
        "",
        f"A prepared image saves **{saved:.0f} s** of billed time on every run of a fresh machine (more where the "
        "network to PyPI is slower than this one's; the venv is reused by later runs on the same long-lived box).",
        END,
    ])
    write_section(args.output, section, BEGIN, END)
    print(section)


if __name__ == "__main__":
    main()
