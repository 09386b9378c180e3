"""``python -m keras_bench --suite SUITE_JSON --out RESULTS_JSON``: run one suite, write one results document.

Exit codes: 0 success; 2 bad suite document or params (one line on stderr naming the field); 1 any other
failure (traceback on stderr), SIGTERM included: it is honoured at the suite's next batch or phase boundary and
says so in one line (an expected stop, no traceback).
Every exit after argument parsing writes RESULTS_JSON, atomically, with the samples measured so far and an
``errors`` entry for the failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType

from keras_bench import __version__
from keras_bench.errors import ParamError, SuiteDocumentError, TerminatedError
from keras_bench.hostinfo import host_info, software_info
from keras_bench.params import resolve_params
from keras_bench.progress import say
from keras_bench.recorder import RunRecorder
from keras_bench.results import ErrorEntry, Timings, build_document, utc_now_iso, validate_document
from keras_bench.stop import StopRequest
from keras_bench.suite_document import parse_suite_document, read_suite_document
from keras_bench.suites import SUITES, Suite
from keras_bench.utilisation import UtilisationSampler

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
UNKNOWN = "unknown"  # run_id and suite in the document when the suite document could not tell them


@dataclass
class _Outcome:
    """What the run produced, filled in as far as it got."""

    run_id: str = UNKNOWN
    suite: str = UNKNOWN
    params: dict[str, object] = field(default_factory=dict)
    errors: list[ErrorEntry] = field(default_factory=list)
    exit_code: int = EXIT_OK


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m keras_bench",
        description="Run one Orchestrate benchmark suite and write its results document.",
    )
    parser.add_argument("--suite", required=True, type=Path, help="suite document (JSON) from the orchestrator")
    parser.add_argument("--out", type=Path, help="where to write the results document (JSON)")
    parser.add_argument(
        "--check", action="store_true",
        help="only check the suite document and its params (no Keras import, nothing written); exit 0 or 2",
    )
    parser.add_argument("--version", action="version", version=f"keras_bench {__version__}")
    args = parser.parse_args(argv)
    if args.out is None and not args.check:
        parser.error("the following arguments are required: --out")
    return args


def check_suite(suite_path: Path, suites: Mapping[str, Suite]) -> int:
    """Checks a suite document and its params the way a run would, without running anything.

    The orchestrator calls this before it launches a machine, so a bad param costs no machine time.

    Returns:
        0 when the document and params are accepted; 2 after printing one line naming the field.
    """
    try:
        document = parse_suite_document(read_suite_document(suite_path), suites)
        resolve_params(suites[document.suite].params, document.params)
    except (SuiteDocumentError, ParamError) as exc:
        print(f"keras_bench: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_BAD_INPUT
    return EXIT_OK


@contextmanager
def _sigterm_requests_stop(stop: StopRequest) -> Iterator[None]:
    """Turns SIGTERM into a stop request while a suite runs, so partial results still get written.

    The suite raises TerminatedError at its next safe point. A second SIGTERM gets the default action
    and ends the process at once, for a suite stuck where it never checks.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.request("received SIGTERM")
        signal.signal(signal.SIGTERM, signal.SIG_DFL)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_suite(suite_path: Path, suites: Mapping[str, Suite], recorder: RunRecorder, outcome: _Outcome) -> None:
    raw = read_suite_document(suite_path)
    # Keep what identifies the run even if another field is bad, so the error document is attributable.
    if isinstance(raw.get("run_id"), str) and raw["run_id"]:
        outcome.run_id = str(raw["run_id"])
    if isinstance(raw.get("suite"), str) and raw["suite"]:
        outcome.suite = str(raw["suite"])
    received_params = raw.get("params")
    if isinstance(received_params, dict):
        outcome.params = dict(received_params)
    document = parse_suite_document(raw, suites)
    suite = suites[document.suite]
    effective = resolve_params(suite.params, document.params)
    outcome.params = dict(effective)
    say(f"suite {suite.name} run {document.run_id} params " + " ".join(f"{k}={v}" for k, v in effective.items()))
    suite.run(effective, recorder)


def _write_atomic(path: Path, document: Mapping[str, object]) -> None:
    """Writes JSON to a temporary file in the target's directory, then renames it over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def main(argv: Sequence[str] | None = None, suites: Mapping[str, Suite] | None = None) -> int:
    """Runs one suite and writes its results document.

    Args:
        argv: Command-line arguments without the program name; None reads ``sys.argv``.
        suites: The suite registry; None uses ``SUITES``. Tests register their own.

    Returns:
        The exit code: 0 success, 1 failure, 2 bad suite document or params.
    """
    started = time.perf_counter()
    started_at = utc_now_iso()
    # Set before any TensorFlow import, which happens inside a suite.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parse_args(argv)
    registry = SUITES if suites is None else suites
    if args.check:
        return check_suite(args.suite, registry)
    recorder = RunRecorder()
    outcome = _Outcome()
    # Every suite gets GPU utilisation samples; on a host without a GPU the list stays empty.
    sampler = UtilisationSampler(started=started)
    sampler.start()

    with _sigterm_requests_stop(recorder.stop):
        try:
            _run_suite(args.suite, registry, recorder, outcome)
        except SuiteDocumentError as exc:
            outcome.errors.append(ErrorEntry("suite_document", type(exc).__name__, str(exc)))
            outcome.exit_code = EXIT_BAD_INPUT
            print(f"keras_bench: error: {exc}", file=sys.stderr, flush=True)
        except ParamError as exc:
            outcome.errors.append(ErrorEntry("params", type(exc).__name__, str(exc)))
            outcome.exit_code = EXIT_BAD_INPUT
            print(f"keras_bench: error: {exc}", file=sys.stderr, flush=True)
        except TerminatedError as exc:
            outcome.errors.append(ErrorEntry(recorder.failed_stage or "run", type(exc).__name__, str(exc)))
            outcome.exit_code = EXIT_FAILED
            print(f"keras_bench: stopped: {exc}", file=sys.stderr, flush=True)
        except (Exception, KeyboardInterrupt) as exc:
            outcome.errors.append(ErrorEntry(recorder.failed_stage or "run", type(exc).__name__, str(exc)))
            outcome.exit_code = EXIT_FAILED
            traceback.print_exc(file=sys.stderr)
            sys.stderr.flush()
        finally:
            utilisation = [asdict(sample) for sample in sampler.stop()]

    # Failures the suite recorded and went on after (one grid point out of memory...) come first.
    outcome.errors[:0] = recorder.errors
    host = host_info()
    software = software_info()

    def document_now(errors: Sequence[ErrorEntry]) -> dict[str, object]:
        document = build_document(
            run_id=outcome.run_id,
            suite=outcome.suite,
            host=host,
            software=software,
            params=outcome.params,
            samples=recorder.samples,
            timings=Timings(
                started_at=started_at,
                finished_at=utc_now_iso(),
                import_s=recorder.seconds["import"],
                data_s=recorder.seconds["data"],
                compute_s=recorder.seconds["compute"],
                total_s=time.perf_counter() - started,
            ),
            errors=errors,
        )
        document["utilisation"] = utilisation
        return document

    document = document_now(outcome.errors)
    problems = validate_document(document)
    if problems:
        # The payload built a document its own contract rejects: a bug. Say so in the document itself.
        message = f"results document fails its schema: {'; '.join(problems[:5])}"
        print(f"keras_bench: error: {message}", file=sys.stderr, flush=True)
        outcome.errors.append(ErrorEntry("validate", "ValidationError", message))
        outcome.exit_code = EXIT_FAILED
        document = document_now(outcome.errors)
    try:
        _write_atomic(args.out, document)
    except (OSError, ValueError):
        traceback.print_exc(file=sys.stderr)
        return EXIT_FAILED
    say(
        f"wrote {args.out} ({len(recorder.samples)} samples, {len(outcome.errors)} errors) "
        f"exit {outcome.exit_code} total {time.perf_counter() - started:.1f}s"
    )
    return outcome.exit_code
