"""Published throughput figures, with their sources, as rows a report can show beside the user's runs.

The shipped ``references.csv`` is copied from the project's cited reference data (ResNet-50 mostly:
TensorFlow's own benchmark page for the K80 and P100, NVIDIA DeepLearningExamples for V100/A100/T4, and
Lambda's published tables for A100/H100). A "K80" there is one GK210, half a K80 board. Every row keeps
its source and is marked ``reference=True``; none of them was measured by Orchestrate.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import SpecError

if TYPE_CHECKING:
    import pandas as pd

SHIPPED_PATH = Path(__file__).with_name("references.csv")
COLUMNS = ("id", "gpu", "model", "workload", "framework", "precision", "batch_per_gpu", "gpus", "images_per_sec",
           "source", "notes", "reference")


def load_references(path: Path | None = None) -> pd.DataFrame:
    """Returns the published rows shaped like summary rows.

    Columns: ``run_id`` (the row's id, e.g. ``ref-01``, usable as a speed-up baseline), ``name`` (GPU,
    framework and precision), ``provider`` ("reference"), ``state`` ("published"), ``model``,
    ``precision``, ``batch_size`` (per GPU, when the source gives it), ``gpus``, ``train_images_per_sec`` or
    ``inference_images_per_sec`` (for all the row's GPUs), ``train_throughput_per_gpu.images_per_sec``,
    ``gpu``, ``framework``, ``reference`` (True), ``source`` and ``notes``.

    Raises:
        SpecError: the file cannot be read or lacks a column.
    """
    import pandas as pd

    path = path or SHIPPED_PATH
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError) as error:
        raise SpecError("references", str(path), "a readable references CSV",
                        message=f"cannot read references {path}: {error}") from None
    missing = [column for column in COLUMNS if column not in raw.columns]
    if missing:
        raise SpecError("references columns", ",".join(raw.columns), ",".join(COLUMNS))
    images_per_sec = pd.to_numeric(raw["images_per_sec"], errors="coerce")
    gpus = pd.to_numeric(raw["gpus"], errors="coerce").fillna(1).astype("int64")
    training = raw["workload"].str.startswith("training")
    return pd.DataFrame({
        "run_id": raw["id"],
        "name": raw["gpu"] + " · " + raw["framework"] + " · " + raw["precision"],
        "provider": "reference",
        "suite": raw["workload"],
        "state": "published",
        "model": raw["model"],
        "precision": raw["precision"],
        "batch_size": pd.to_numeric(raw["batch_per_gpu"], errors="coerce").astype("Int64"),
        "gpus": gpus,
        "train_images_per_sec": images_per_sec.where(training),
        "inference_images_per_sec": images_per_sec.where(~training),
        "train_throughput_per_gpu.images_per_sec": (images_per_sec / gpus).where(training),
        "gpu": raw["gpu"],
        "framework": raw["framework"],
        "reference": raw["reference"].str.lower().eq("true"),
        "source": raw["source"],
        "notes": raw["notes"],
    })


def with_references(summary: pd.DataFrame, references: pd.DataFrame | None = None) -> pd.DataFrame:
    """Returns the summary's rows (``reference=False``) followed by the published rows (``reference=True``)."""
    import pandas as pd

    references = load_references() if references is None else references
    own = summary.assign(reference=False)
    if own.empty:
        return references.reset_index(drop=True)
    return pd.concat([own, references], ignore_index=True)
