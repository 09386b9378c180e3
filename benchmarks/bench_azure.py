"""`make bench`: how long an Azure launch and teardown wait on Azure's operations, with 1 s per operation.

The real AzureProvider (the real SDK) against the ARM fake (tests/fakes/arm.py) on loopback, every long-running
operation (a create, the group's delete) taking ``--latency-s`` seconds before it succeeds. Measured:
  * the launch's wall time and its operation time on the critical path (first operation's start → last VM's end),
    beside the sequential figure (every operation's time added up: what a launch that awaited each in turn waits);
  * the teardown's wall time (one resource-group delete, waited for).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

from benchlib import Section, bench_parser, make_bench_command, measured_on, median_range

SECTION = Section("azure")


def one_launch(root: Path, latency_s: float, count: int) -> dict[str, Any]:
    """One launch and teardown of ``count`` VMs; the seconds they took and the operations behind them."""
    from orchestrator.machine import LaunchRequest, Placement
    from tests.fakes.arm import ArmFake
    from tests.fakes.azure import provider_for

    fake = ArmFake(latency_s=latency_s).start()
    try:
        provider = provider_for(fake, root / "home")
        placement = Placement(provider="azure", instance_type="Standard_NC4as_T4_v3", region="eastus",
                              price_per_hour=0.526, billing_rule="per_minute_full")
        request = LaunchRequest(run_id="r-bench", placement=placement, count=count, allowed_cidr="203.0.113.7/32",
                                image="microsoft-dsvm:ubuntu-hpc:2204:latest")
        started = time.monotonic()
        provider.launch(request)
        launched = time.monotonic()
        operations = [dict(op) for op in fake.operations]
        provider.terminate("r-bench")
        gone = time.monotonic()
    finally:
        fake.stop()
    creates = [op for op in operations if op["method"] == "PUT"]
    return {
        "launch_s": launched - started,
        "critical_s": max(op["ended"] for op in creates) - min(op["started"] for op in creates),
        "sequential_s": sum(op["ended"] - op["started"] for op in creates),
        "operations": len(creates),
        "teardown_s": gone - launched,
    }


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-s", type=float, default=1.0)
    args = parser.parse_args()
    rows = []
    for count in (1, 2):
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(one_launch(Path(tmp), args.latency_s, count))
        rows.append(
            f"| {count} | {runs[-1]['operations']} | {median_range([r['launch_s'] for r in runs])} | "
            f"{median_range([r['critical_s'] for r in runs])} | {median([r['sequential_s'] for r in runs]):.2f} | "
            f"{median_range([r['teardown_s'] for r in runs])} |")
    section = SECTION.text([
        "## An Azure launch's wait on Azure (issue 13)",
        "",
        f"{measured_on()}: the real AzureProvider and SDK against the ARM "
        f"fake on loopback, every long-running operation taking {args.latency_s:g} s. Seconds; median (min, max) of "
        f"{args.repeats} launches each.",
        "",
        make_bench_command(__file__),
        "",
        "| VMs | create operations | launch, wall | operations on the critical path | operations one after another "
        "(sequential) | teardown (one group delete), wall |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "The critical path is group (a plain PUT) → virtual network, NSG and public IPs at once → the NICs at once → "
        "the VMs at once: three operations in a row after the group, each as long as the slowest of its level, "
        "where awaiting every operation in turn would wait their sum. Azure's own `Retry-After` paces the polls "
        "(the SDK polls once at once, then as told), so each level ends within a poll of its operation's end.",
    ])
    SECTION.publish(args.output, section)


if __name__ == "__main__":
    main()
