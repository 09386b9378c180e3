"""A real install: the wheel built from this tree (no ``-e``), installed into a fresh venv, works on its own.

An editable install hides a package or data file that ``pyproject.toml`` leaves out (the source tree is on the path);
a wheel does not. Here the wheel's file list is held against the source tree, every module is imported from the
installed copy, and the verbs a new user tries first run from it: ``--help``, the dry runs of each provider, a sweep's
dry run, the catalog, and a real smoke run on this box.

The fresh venv takes the wheel's *dependencies* from the test venv (a ``.pth`` line naming its site-packages, which
holds no ``orchestrator``: the editable install's finder is only activated by a ``.pth`` in a site directory, and
``.pth`` files are not read in a directory another ``.pth`` added), so the test does not download TensorFlow; the
wheel itself is installed with pip, and every import is checked to come from the fresh venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO

# Its tests share one built wheel and venv (a module fixture): one worker (--dist loadgroup) builds it once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("install")]

# What a wheel is built from: the build files and the two trees it packages (plus the data folders mapped in).
SOURCES = ("pyproject.toml", "setup.py", "README.md", "orchestrator", "benchmarks", "images")
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
# Where each installed package's files come from in the source tree.
SOURCE_OF = {
    "orchestrator": REPO / "orchestrator",
    "keras_bench": REPO / "benchmarks" / "keras_bench",
    "keras_bench/suites_yaml": REPO / "benchmarks" / "suites",
    "orchestrator/cloud_init": REPO / "images" / "cloud-init",
}
SHIPPED_SUFFIXES = {".py", ".json", ".csv", ".yaml"}

IMPORT_ALL = """
import importlib, json, pkgutil, sys
names, origins = [], {}
for top in ("orchestrator", "keras_bench"):
    package = importlib.import_module(top)
    names.append(top)
    for info in pkgutil.walk_packages(package.__path__, top + "."):
        if info.name.endswith(".__main__"):
            continue  # runs the program when imported
        names.append(info.name)
for name in names:
    module = importlib.import_module(name)
    origins[name] = getattr(module, "__file__", None)
print(json.dumps(origins))
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The fresh venv's python, with the wheel built from a copy of this tree installed (no ``-e``)."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=SKIP)
        else:
            shutil.copy2(path, source / name)
    wheels = root / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels),
                            str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheels.glob("orchestrate-*.whl")
    fresh = root / "venv"
    venv.create(fresh, with_pip=False)
    python = fresh / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                              str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    (root / "wheel-path").write_text(str(wheel))
    yield python


def _wheel(python: Path) -> Path:
    return Path((python.parents[2] / "wheel-path").read_text())


def _run(python: Path, *args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PYTHON", "AWS_", "AZURE_", "ORCHESTRATE_"))}
    env.update({"ORCHESTRATE_HOME": str(cwd / "home"), "COLUMNS": "200", "HOME": str(cwd),
                "AWS_CONFIG_FILE": str(cwd / "no-aws-config"), "AWS_SHARED_CREDENTIALS_FILE": str(cwd / "no-aws")})
    orchestrate = python.parent / "orchestrate"
    command = [str(orchestrate), *args] if args and args[0] != "-c" else [str(python), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def test_wheel_ships_every_module_and_data_file_of_the_tree(installed: Path) -> None:
    shipped = set(zipfile.ZipFile(_wheel(installed)).namelist())
    missing = []
    for package, directory in SOURCE_OF.items():
        for path in directory.rglob("*"):
            if path.suffix not in SHIPPED_SUFFIXES or "__pycache__" in path.parts:
                continue
            relative = path.relative_to(directory)
            nested = [p for p in SOURCE_OF.values() if p != directory and p.is_relative_to(directory)]
            if any(path.is_relative_to(inner) for inner in nested):
                continue  # shipped under its own mapping
            if f"{package}/{relative.as_posix()}" not in shipped:
                missing.append(f"{package}/{relative.as_posix()}")
    assert not missing, f"left out of the wheel: {missing}"


def test_every_module_imports_from_the_installed_copy(installed: Path, tmp_path: Path) -> None:
    result = _run(installed, "-c", IMPORT_ALL, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    origins: dict[str, str | None] = json.loads(result.stdout.splitlines()[-1])
    assert {"orchestrator.campaign", "orchestrator.providers.azure", "keras_bench.suites"} <= set(origins)
    site = str(installed.parents[1])
    strays = {name: origin for name, origin in origins.items() if origin and not origin.startswith(site)}
    assert not strays, f"imported from outside the fresh venv: {strays}"


def test_first_commands_work_from_the_installed_copy(installed: Path, tmp_path: Path) -> None:
    assert "Examples" in _run(installed, "--help", cwd=tmp_path).stdout
    local = _run(installed, "run", "--provider", "local", "--dry-run", cwd=tmp_path)
    assert local.returncode == 0, local.stdout + local.stderr
    aws = _run(installed, "run", "--provider", "aws", "--gpu", "T4", "--dry-run", cwd=tmp_path)
    assert aws.returncode == 0 and "g4dn" in aws.stdout, aws.stdout + aws.stderr
    azure = _run(installed, "run", "--provider", "azure", "--gpu", "T4", "--dry-run", cwd=tmp_path)
    assert azure.returncode == 0 and "Standard_NC" in azure.stdout, azure.stdout + azure.stderr
    sweep_file = tmp_path / "dev-box.yaml"
    shutil.copy2(REPO / "benchmarks" / "sweeps" / "dev-box.yaml", sweep_file)
    sweep = _run(installed, "sweep", str(sweep_file), "--dry-run", cwd=tmp_path)
    assert sweep.returncode == 0 and "cell(s) to run" in sweep.stdout, sweep.stdout + sweep.stderr
    catalog = _run(installed, "catalog", "--json", cwd=tmp_path)
    assert catalog.returncode == 0, catalog.stderr
    assert json.loads(catalog.stdout), "the shipped catalog is empty"
    runs = _run(installed, "status", "--json", cwd=tmp_path)
    assert runs.returncode == 0 and json.loads(runs.stdout) == [], "a dry run recorded a run"


def test_smoke_run_on_this_box_from_the_installed_copy(installed: Path, tmp_path: Path) -> None:
    result = _run(installed, "run", "--provider", "local", "--suite", "smoke", "--set", "epochs=2",
                  cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    status = _run(installed, "status", "--last", "1", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    (run,) = json.loads(status.stdout)
    assert run["state"] == "succeeded" and run["suite"] == "smoke"
