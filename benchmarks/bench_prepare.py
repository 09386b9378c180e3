"""`make bench`: what a prepared image saves on every run — SSH reachable → payload started, `prepare: image` against
`prepare: venv` on a fresh box.

A real `orchestrate run --provider rented` on a loopback sshd box (as in bench_remote.py), once with the environment
already there (`prepare: image`: the box's Python has Keras) and once on a box that has only Python
(`prepare: venv`: a venv is made and the payload's requirements installed from PyPI, pip's cache off, as on a new
cloud machine). Seconds from the end of the connect step to the payload's process start (the run's events).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench_remote import inventory, loopback_boxes, run_rented, started_after_reachable
from benchlib import REPO, Section, bench_parser, make_bench_command, measured_on, median_range, prepare_sshd

SECTION = Section("prepare")


def _payload_requirements() -> list[str]:
    """The payload extra's requirements, as prepare: venv installs them by default."""
    import tomllib

    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return list(extras["payload"])


def one(root: Path, mode: str) -> float:
    """One run on a fresh box in ``mode``; seconds from SSH reachable to payload started."""
    with loopback_boxes(root, 1) as boxes:
        settings: dict[str, object] = {"prepare": mode}
        if mode == "venv":
            # pip's cache off: a new cloud machine has none (pip reads options among its arguments too).
            settings["requirements"] = ["--no-cache-dir", *_payload_requirements()]
        home = root / "home"
        env = {**os.environ, "ORCHESTRATE_HOME": str(home),
               "ORCHESTRATE_INVENTORY": str(inventory(root, boxes, **settings))}
        run_rented(env, 1, "--set", "epochs=1")
        return started_after_reachable(home)


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="runs with prepare: image")
    parser.add_argument("--venv-repeats", type=int, default=1, help="runs with prepare: venv (minutes each)")
    args = parser.parse_args()
    prepare_sshd()
    figures: dict[str, list[float]] = {"image": [], "venv": []}
    for mode, repeats in (("image", args.repeats), ("venv", args.venv_repeats)):
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as tmp:
                figures[mode].append(one(Path(tmp), mode))
    image, venv = figures["image"], figures["venv"]
    saved = sorted(venv)[len(venv) // 2] - sorted(image)[len(image) // 2]
    section = SECTION.text([
        "## What a prepared image saves: SSH reachable → payload started (issue 14)",
        "",
        f"{measured_on()}: `orchestrate run --provider rented --set epochs=1`"
        " on a fresh loopback sshd box; seconds from the end of the connect step to the payload's process start; "
        "median (min, max).",
        "",
        make_bench_command(__file__),
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
    ])
    SECTION.publish(args.output, section)


if __name__ == "__main__":
    main()
