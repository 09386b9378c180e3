"""`orchestrate report`: compare runs as a table, Markdown, CSV, JSON, Parquet or one HTML file.

Registered on the main group in :mod:`orchestrator.cli.runs`; thin over :func:`orchestrator.api.report_frames_derived`.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import click

from orchestrator.cli.console import check_output, err, out, print_tables, write_output
from orchestrator.errors import SpecError
from orchestrator.report.metrics import SPREAD_ACCEPTED, SPREAD_BOUND, bound_text, parse_spread_bound

# The command imports the control plane and the report stack lazily: `orchestrate --help` takes 0.2 s (+0.2 s with
# orchestrator.api, +0.7 s with the report stack's pandas).


@click.command()
@click.argument("run_ids", metavar="[RUN]...", nargs=-1)
@click.option("--last", type=click.IntRange(min=1), help="The newest N runs (default: all runs).")
@click.option("--format", "fmt", type=click.Choice(["table", "md", "csv", "json", "parquet", "html"]),
              default="table", show_default=True,
              help="Output format; parquet and html (one self-contained file with charts) need -o.")
@click.option("--view", type=click.Choice(["summary", "samples", "deploy"]), default="summary", show_default=True,
              help="One row per run, recipe and host (and a run total over several hosts); one row per sample; "
                   "or the deploy suite's trade-offs, one row per model variant (size, latency, accuracy).")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to a file instead of the terminal.")
@click.option("--all", "every_run", is_flag=True, help="Every recorded run (the default when no RUN or --last).")
@click.option("--baseline", metavar="RUN|ref-NN", help="Speed-up over this run (or published reference row).")
@click.option("--references", is_flag=True, help="Show published reference throughputs beside your runs.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json (for scripts).")
@click.option("--columns", metavar="NAME,…",
              help="Only these columns, in this order (names as in --format csv, e.g. run_id,name,host,state,"
                   "cost_usd); the table's default is what fits the terminal.")
@click.option("--spread-bound", metavar="FRACTION", default=bound_text(SPREAD_BOUND), show_default=True,
              callback=lambda _ctx, _param, value: _spread_bound(value),
              help="Mark a throughput whose repeats spread more than this (coefficient of variation) as noisy: a "
                   "fraction above 0 and below 1, or a percentage (5%).")
def report(
    run_ids: tuple[str, ...], last: int | None, fmt: str, view: str, output: Path | None, every_run: bool,
    baseline: str | None, references: bool, as_json: bool, columns: str | None, spread_bound: float,
) -> None:
    """Compare runs: training and inference images/sec, accuracy, duration and cost.

    Throughputs show their repeats' spread (812 ±7.1%); one above --spread-bound is marked (noisy) and named in
    the spread_flag column. A speed-up over --baseline compares the same model and precision only; the
    baseline_caveat column says what else differs (framework, batch, XLA, data).

    \b
    Examples:
      orchestrate report --last 1
      orchestrate report r-20261128-180102-3fa9 --format md
      orchestrate report --format csv --view samples -o samples.csv
      orchestrate report --all --format html -o report.html
      orchestrate report --references --baseline ref-01 --format md
      orchestrate report --last 1 --view deploy
      orchestrate report --columns run_id,name,host,state,train_images_per_sec,cost_usd
      orchestrate report --last 3 --spread-bound 2%
    """
    from orchestrator import api
    from orchestrator.report.deploy import FORMATS, tradeoff_frame, tradeoff_table
    from orchestrator.report.html import render_html
    from orchestrator.report.render import FILE_FORMATS, pick_columns, render_text, rich_table, write_parquet

    if fmt in FILE_FORMATS and output is None:
        raise click.UsageError(f"--format {fmt} writes a file: give its path with -o, e.g. -o report.{fmt}")
    if output is not None:
        check_output(output)
    if as_json:
        fmt = "json"
    if every_run and (run_ids or last):
        raise click.UsageError("--all reports every run: leave out RUN ids and --last")
    if columns is not None and fmt == "html":
        raise click.UsageError("--columns chooses the columns of a table, csv, json or parquet; the html report "
                               "has its own")
    # The summary view (and the HTML report, whose charts read only per-epoch curves) need not hold every sample.
    samples, summary = api.report_frames_derived(run_ids, last=last, baseline=baseline, references=references,
                                                 view="summary" if view == "summary" else None,
                                                 spread_bound=spread_bound)
    frame = {"summary": summary, "samples": samples}.get(view)
    if frame is None:  # the deploy view
        frame = tradeoff_frame(samples)
    picked = pick_columns(frame, columns) if columns is not None else None
    title = f"Orchestrate report ({view})"
    if view == "deploy":
        table = partial(tradeoff_table, title=title)
        frame = frame[picked] if picked else frame
    else:
        table = partial(rich_table, title=title, columns=picked, spread_bound=spread_bound)
    if fmt == "parquet" and output is not None:
        write_parquet(frame[picked] if picked else frame, output)
        err.print(f"wrote {output}")
        return
    if fmt == "html" and output is not None:
        # The HTML report always has both views: the table is the summary, the curves come from the samples.
        output.write_text(render_html(samples, summary, spread_bound=spread_bound), encoding="utf-8")
        err.print(f"wrote {output}")
        return
    if fmt == "table":
        if output is None and frame.empty:
            suite = "deploy" if view == "deploy" else "smoke"
            out.print(f"no {'deploy samples' if view == 'deploy' else 'runs'} to report: "
                      f"try `orchestrate run --provider local --suite {suite}`")
        else:
            print_tables([table(frame)], output)
        return
    write_output(render_text(frame, fmt, reading=view != "deploy", formats=FORMATS if view == "deploy" else None,
                             columns=picked, spread_bound=spread_bound), output)


def _spread_bound(value: str) -> float:
    """Reads ``report --spread-bound`` (see :func:`orchestrator.report.metrics.parse_spread_bound`).

    Raises:
        click.BadParameter: naming the value received and what is accepted (the option is named by click).
    """
    try:
        return parse_spread_bound(value)
    except SpecError:
        raise click.BadParameter(f"received {value!r}; accepted: {SPREAD_ACCEPTED}") from None
