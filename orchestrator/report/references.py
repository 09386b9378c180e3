"""Published throughput figures, with their sources, as rows a report can show beside the user's runs.

The shipped ``references.csv`` is copied from the project's cited reference data (ResNet-50 mostly:
TensorFlow's own benchmark page for the K80 and P100, NVIDIA DeepLearningExamples for V100/A100/T4, and
Lambda's published tables for A100/H100). A "K80" there is one GK210, half a K80 board. Every row keeps
its source and is marked ``reference=True``; none of them was measured by Orchestrate.

Each row says what was measured: framework, precision (as published, and in the payload's words), batch per
GPU, data (``synthetic`` where the source says so, else ``not stated``) and source, so that a speed-up is
taken like for like (:func:`orchestrator.report.metrics.compare_with_baseline`). Runs and references name
models and precisions differently; :func:`model_key` and :func:`precision_key` put both in one vocabulary.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator.errors import SpecError

# `orchestrate status` imports this module (api, through report.verbs): pandas loads inside the functions that read
# the references, so that status takes 0.4 s (1.3 s with pandas).
if TYPE_CHECKING:
    import pandas as pd

SHIPPED_PATH = Path(__file__).with_name("references.csv")
COLUMNS = ("id", "gpu", "model", "workload", "framework", "precision", "batch_per_gpu", "gpus", "images_per_sec",
           "source", "notes", "reference")
NOT_STATED = "not stated"  # the ``data`` of a row whose source does not say (and of a file without the column)
# Published precision words → the payload's precision (its PRECISIONS, and TF32, which is not float32: an
# Ampere GPU's TensorFloat-32 matmuls round to 10 mantissa bits). AMP and fp16 in these sources are mixed
# precision: float32 weights, float16 compute, as Keras' mixed_float16.
_PRECISIONS = {
    "fp32": "float32", "float32": "float32",
    "fp16": "mixed_float16", "amp": "mixed_float16", "mixed_float16": "mixed_float16",
    "bf16": "mixed_bfloat16", "mixed_bfloat16": "mixed_bfloat16",
    "tf32": "tf32",
}
_XLA = re.compile(r"\s*\+\s*xla\s*$", re.IGNORECASE)
# Variants of a network that is compared as the network itself, and the caveat said beside it. ResNet-50 v1.5
# (NVIDIA's: stride 2 in the bottleneck's 3×3 convolution, not its 1×1) is ResNet-50 with a few percent fewer
# images/s; Keras' ResNet50 is v1.
_VARIANTS = {"resnet50v1.5": ("resnet50", "v1.5 variant")}


def model_key(model: str) -> str:
    """Returns the key a run's model and a published model are matched by: lower case, without ``-``, ``_`` and
    spaces, a known variant (:data:`_VARIANTS`) as its network (``ResNet-50`` and ``ResNet-50 v1.5`` →
    ``resnet50``, ``mobilenet_v2`` → ``mobilenetv2``)."""
    return model_variant(model)[0]


def model_variant(model: str) -> tuple[str, str | None]:
    """Returns (:func:`model_key`, the variant's caveat or None): ``ResNet-50 v1.5`` → ("resnet50", "v1.5
    variant")."""
    key = re.sub(r"[-_\s]", "", str(model).lower())
    return _VARIANTS.get(key, (key, None))


def precision_key(precision: str) -> str:
    """Returns a precision in the payload's words: ``fp32`` → float32, ``fp16``/``AMP`` → mixed_float16,
    ``bf16`` → mixed_bfloat16, ``TF32`` → tf32 (not float32); ``+XLA`` dropped (see :func:`load_references`'s
    ``xla``). Words not known are kept, lower case, and match only themselves."""
    word = _XLA.sub("", str(precision)).strip().lower()
    return _PRECISIONS.get(word, word)


def load_references(path: Path | None = None) -> pd.DataFrame:
    """Returns the published rows shaped like summary rows.

    Columns: ``run_id`` (the row's id, e.g. ``ref-01``, usable as a speed-up baseline), ``name`` (GPU,
    framework and precision as published), ``provider`` ("reference"), ``suite`` (the workload: training or
    inference), ``state`` ("published"), ``model`` (as published), ``precision`` (the payload's words, see
    :func:`precision_key`), ``precision_published`` (the source's words, e.g. ``AMP+XLA``), ``xla`` (the source
    says +XLA), ``data`` (``synthetic``, or ``not stated``), ``batch_size`` (per GPU, when the source gives it),
    ``gpus``, ``train_images_per_sec`` or ``inference_images_per_sec`` (for all the row's GPUs),
    ``train_throughput_per_gpu.images_per_sec``, ``gpu``, ``framework``, ``reference`` (True), ``source`` and
    ``notes``.

    Raises:
        SpecError: the file cannot be read or lacks a column (``data`` may be left out: every row not stated).
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
    data = raw["data"].where(raw["data"].str.strip() != "", NOT_STATED) if "data" in raw.columns else NOT_STATED
    return pd.DataFrame({
        "run_id": raw["id"],
        "name": raw["gpu"] + " · " + raw["framework"] + " · " + raw["precision"],
        "provider": "reference",
        "suite": raw["workload"],
        "state": "published",
        "model": raw["model"],
        "precision": raw["precision"].map(precision_key),
        "precision_published": raw["precision"],
        "xla": raw["precision"].str.contains(_XLA),
        "data": data,
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
