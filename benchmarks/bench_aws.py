"""`make bench`: the orchestrator's own share of an AWS run, against moto with a fixed latency added to every call.

Runs the whole lifecycle in-process on the AWS provider (moto's EC2; a loopback sshd presenting the run's injected
host key plays the instance, as in tests/integration/test_aws_run.py) with a payload that exits at once, and counts
the EC2 API calls and the seconds:
  * from `orchestrate run` (the plan event) to the payload started (the execute step's start), and
  * from the payload's end (the execute step's end) to everything deleted (the teardown step's end),
with every EC2 call delayed by a fixed latency (``--latency-ms``), so that the figures are the orchestrator's calls and
waits, not a cloud's boot time (moto's instances are running at once).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections import Counter
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from benchlib import (
    Section,
    bench_parser,
    make_bench_command,
    measured_on,
    median_range,
    prepare_sshd,
    stand_in_payload,
    use_fake_aws_credentials,
)
from tests.fakes.reporter import QuietReporter

SECTION = Section("aws")
PAYLOAD_MAIN = """
    write([sample("train_throughput", "images_per_sec", 1.0)])
"""


def one_run(root: Path, latency_s: float, *, spot: bool = False) -> dict[str, Any]:
    """One run; returns the call counts by operation and the two spans in seconds."""
    from moto import mock_aws

    from orchestrator.catalog.spot import aws_quote
    from orchestrator.lifecycle import execute_plan
    from orchestrator.plan import make_plan
    from orchestrator.providers.aws.instance import AwsProvider
    from orchestrator.run_steps import RunContext
    from orchestrator.spec import RunSpec
    from orchestrator.store import Store
    from tests.fakes.aws import IMAGE, HookedClients, LoopbackAws, LoopbackBox
    from tests.integration.conftest import start_server

    calls: Counter[str] = Counter()

    def delay(model: Any, **_: Any) -> None:
        calls[model.name] += 1
        time.sleep(latency_s)

    home = root / "home"
    with mock_aws():
        clients = HookedClients({"before-call.ec2": delay})
        box: LoopbackAws = LoopbackBox(AwsProvider(home, client_factory=clients), root / "boxes", start_server)
        try:
            spec = RunSpec(provider="aws", machine={"instance_type": "g4dn.xlarge", "image": IMAGE, "spot": spot})
            plan = make_plan(spec, home=home)
            with Store(home) as store:
                # The spot price is asked by the run's launch step (catalog.spot), through the same counted clients.
                ctx = RunContext(store=store, home=home, reporter=QuietReporter(), provider_factory=lambda name: box,
                                 spot_quoter=lambda name: partial(aws_quote, ec2=lambda region: clients(region, True)),
                                 poll_interval_s=0.1, allowed_cidr="127.0.0.1/32")
                outcome = execute_plan(plan, ctx)
                assert outcome.state == "succeeded", outcome.error
                events = {e.step: e for e in store.events(outcome.run_id)}
        finally:
            box.stop()

    def at(text: str | None) -> datetime:
        assert text is not None
        return datetime.fromisoformat(text)

    return {
        "calls": calls,
        "to_payload_s": (at(events["execute"].started_at) - at(events["plan"].started_at)).total_seconds(),
        "to_deleted_s": (at(events["teardown"].ended_at) - at(events["execute"].ended_at)).total_seconds(),
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    args = parser.parse_args()
    use_fake_aws_credentials()
    prepare_sshd()
    markets: dict[str, list[dict[str, Any]]] = {"on-demand": [], "spot": []}
    for _ in range(args.repeats):
        for market, runs in markets.items():
            with tempfile.TemporaryDirectory() as tmp:
                os.environ["ORCHESTRATE_PAYLOAD_DIR"] = str(stand_in_payload(Path(tmp), PAYLOAD_MAIN))
                runs.append(one_run(Path(tmp), args.latency_ms / 1000.0, spot=market == "spot"))
    rows = []
    for market, runs in markets.items():
        calls = runs[-1]["calls"]
        rows += [
            f"| {market} | `orchestrate run` to payload started (plan → execute start) | "
            f"{median_range([r['to_payload_s'] for r in runs])} | {sum(calls.values())} in the whole run |",
            f"| {market} | payload end to everything deleted (execute end → teardown end) | "
            f"{median_range([r['to_deleted_s'] for r in runs])} | |",
        ]
    calls = markets["on-demand"][-1]["calls"]
    extra = markets["spot"][-1]["calls"] - calls
    by_operation = ", ".join(f"{name} {count}" for name, count in sorted(calls.items()))
    section = SECTION.text([
        "## An AWS run's orchestrator-side time (issue 12)",
        "",
        f"{measured_on()}: the whole lifecycle in-process on the AWS "
        f"provider against moto's EC2, every EC2 call delayed by {args.latency_ms:g} ms, a loopback sshd as the "
        f"instance, a payload that exits at once. Seconds; median (min, max) of {args.repeats} runs per market.",
        "",
        make_bench_command(__file__),
        "",
        "| market | span | seconds | EC2 calls |",
        "|---|---|---|---|",
        *rows,
        "",
        f"EC2 calls of one on-demand run, by operation: {by_operation}; a spot run adds "
        + (", ".join(f"{name} {count}" for name, count in sorted(extra.items())) or "nothing")
        + " (the zone's price, read once the instance exists). moto's instances are `running` at once and terminate "
        "at once, so a real cloud adds its boot and shutdown time (and the ~2 s polls that wait for them) to these. "
        "The first span also holds the test harness starting the loopback sshd once the instance exists (~0.1 s), and "
        "the SSH connect, prepare probe and payload upload over loopback.",
    ])
    SECTION.publish(args.output, section)


if __name__ == "__main__":
    main()
