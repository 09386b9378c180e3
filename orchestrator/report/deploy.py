"""The deployment trade-off table: one row per model variant (float32, pruned, quantised…) of a ``deploy`` run.

The payload's ``deploy`` suite writes each variant's figures as samples of benchmark ``deploy`` with the
variant's name in ``metadata.variant`` (see docs/payload.md). This module turns them into the table a user reads:
size raw and gzipped (and each as a fraction of the float32 baseline's), batch-1 latency p50/p90, batched
throughput, accuracy and its change from the baseline, and the sparsity measured from the weights.
"""

from __future__ import annotations

import pandas as pd

from orchestrator.report.render import FittedTable, frame_table

BENCHMARK = "deploy"
BASELINE = "float32"
# The table's columns, in order: (metric in the samples, label).
METRICS = (
    ("model_bytes", "bytes"),
    ("model_bytes_gzip", "gzip bytes"),
    ("latency_ms_p50", "p50 ms"),
    ("latency_ms_p90", "p90 ms"),
    ("images_per_sec", "img/s"),
    ("accuracy", "accuracy"),
    ("accuracy_delta", "Δ acc pts"),
    ("sparsity", "sparsity"),
)

# Which columns a terminal too narrow for all of them keeps first (the run, host and variant are always shown).
PRIORITY = ("run_id", "host", "variant", "gzip bytes", "gzip ×", "p50 ms", "accuracy", "Δ acc pts", "img/s",
            "format", "bytes", "size ×", "p90 ms", "sparsity")

# How the terminal shows each column: whole bytes and images/s, latencies to the microsecond, signed deltas.
FORMATS = {
    "bytes": ",.0f", "gzip bytes": ",.0f", "p50 ms": ".3f", "p90 ms": ".3f", "img/s": ",.0f", "accuracy": ".4f",
    "Δ acc pts": "+.2f", "sparsity": ".3f", "size ×": ".3f", "gzip ×": ".3f",
}


def tradeoff_frame(samples: pd.DataFrame) -> pd.DataFrame:
    """Returns one row per (run, host, variant) of the samples' deploy figures, in the order the payload wrote them.

    Columns: run_id, host (the machine that measured; None in an old store), variant, format, then the labels
    of :data:`METRICS`, plus ``size ×`` and ``gzip ×`` (the variant's bytes over the float32 baseline's of the
    same run and host). Empty when there are no deploy samples.
    """
    columns = ["run_id", "host", "variant", "format", *(label for _, label in METRICS), "size ×", "gzip ×"]
    if samples.empty or "benchmark" not in samples.columns or "variant" not in samples.columns:
        return pd.DataFrame(columns=columns)
    deploy = samples[(samples["benchmark"] == BENCHMARK) & samples["variant"].notna()].copy()
    if deploy.empty:
        return pd.DataFrame(columns=columns)
    for key in ("format", "host"):  # a missing key is "-" while grouping (pandas drops NaN keys)
        deploy[key] = deploy[key].astype(object).fillna("-") if key in deploy.columns else "-"
    keys = ["run_id", "host", "variant"]
    order = list(dict.fromkeys(zip(*(deploy[key] for key in keys), strict=True)))
    wide = deploy.pivot_table(index=[*keys, "format"], columns="metric", values="value",
                              aggfunc="median").reset_index()
    wide.columns.name = None
    position = {key: i for i, key in enumerate(order)}
    wide = wide.iloc[sorted(range(len(wide)), key=lambda i: position[tuple(wide[key].iloc[i] for key in keys)])]
    for metric, _ in METRICS:
        if metric not in wide.columns:
            wide[metric] = float("nan")
    for metric, label in (("model_bytes", "size ×"), ("model_bytes_gzip", "gzip ×")):
        base = wide[wide["variant"] == BASELINE].set_index(["run_id", "host"])[metric]
        wide[label] = wide[metric] / base.reindex(pd.MultiIndex.from_frame(wide[["run_id", "host"]])).to_numpy()
    wide = wide.rename(columns=dict(METRICS)).assign(host=wide["host"].replace({"-": None}))
    return wide[columns].reset_index(drop=True)


def tradeoff_table(
    frame: pd.DataFrame, title: str = "deployment trade-offs (against the float32 baseline)"
) -> FittedTable:
    """Returns a :func:`tradeoff_frame` as a table for the terminal, each column in its own number format."""
    return frame_table(frame, title, formats=FORMATS, priority=PRIORITY,
                       caption="Δ acc pts: percentage points against float32; size ×: bytes over float32's")
